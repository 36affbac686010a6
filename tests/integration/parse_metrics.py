#!/usr/bin/env python3
"""parse_metrics.py - parses a Prometheus text exposition on stdin with prometheus_client (the
reference parser) and prints it as JSON for test_ops.c, with the naming problems it finds.

Output: {"families": {name: {"type": t, "help": h, "samples": [{"name", "labels", "value"}]}},
         "problems": ["..."]}. Exit 0 when the text parsed (problems may still be listed), 1 when
the parser refused it. NaN and infinities are written as strings so that the JSON stays valid.
"""
import json
import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

NAME_RE = re.compile(r"^dlq_[a-z0-9_]+$")
NON_BASE_UNIT_RE = re.compile(r"_(ms|milliseconds|microseconds|minutes|hours|days|kb|mb)(_|$)")


def number(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def main():
    text = sys.stdin.read()
    families, problems = {}, []
    try:
        parsed = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser's refusal is the test's failure
        print(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
        return 1
    for fam in parsed:
        if fam.name in families:
            problems.append("%s: family appears twice" % fam.name)
        if not NAME_RE.match(fam.name):
            problems.append("%s: not a dlq_ snake_case name" % fam.name)
        if fam.type == "unknown":
            problems.append("%s: no TYPE line" % fam.name)
        if not fam.documentation:
            problems.append("%s: no HELP text" % fam.name)
        if NON_BASE_UNIT_RE.search(fam.name):
            problems.append("%s: not in base units" % fam.name)
        if fam.type == "gauge" and fam.name.endswith("_total"):
            problems.append("%s: a gauge named like a counter" % fam.name)
        samples = []
        for s in fam.samples:
            if fam.type == "counter" and not s.name.endswith("_total"):
                problems.append("%s: counter sample %s lacks _total" % (fam.name, s.name))
            for key in s.labels:
                if key != "le" and len({x.labels.get(key) for x in fam.samples}) > 64:
                    problems.append("%s: label %s has high cardinality" % (fam.name, key))
            samples.append({"name": s.name, "labels": dict(s.labels), "value": number(s.value)})
        families[fam.name] = {"type": fam.type, "help": fam.documentation, "samples": samples}
    print(json.dumps({"families": families, "problems": sorted(set(problems))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
