#!/usr/bin/python3
# generate.py - writes the shared test vectors (envelopes, outcomes) and manifest.json; run it after changing a vector.
#
# Debian's python3-msgpack (scripts/install-deps.sh) packs the MessagePack files. The expected
# decodings below are written by hand from DESIGN section 4 and section 6 and the README's
# "Wire contract", never computed by the sidecar's codec: the codec's tests, the C client's
# tests (and the Python and Go clients') all check themselves against them.
#
# Usage: tests/vectors/generate.py   (rewrites tests/vectors/{envelopes,outcomes,manifest.json})
import base64
import json
import os
import shutil
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))

# The contract's key order (DESIGN section 4's table). Canonical encodings (what a client
# library writes) put the keys in this order, each value in its smallest MessagePack form.
KEY_ORDER = ["task_id", "task", "error", "error_type", "error_category", "retry_policy",
             "max_retries", "retry_subject", "repos", "metadata", "failed_at", "enqueue",
             "backoff", "template", "priority", "depends_on"]  # the last four: issue 17


class Raw:
    """A value given as its exact MessagePack bytes (for what msgpack.packb cannot express)."""

    def __init__(self, mp, json_value=None):
        self.mp = mp
        self.json_value = json_value


class Ts:
    """A MessagePack timestamp extension (-1) of ms since the epoch (timestamp 96 form)."""

    def __init__(self, ms, rfc3339):
        self.ms = ms
        self.rfc3339 = rfc3339


def pack_value(v):
    """The canonical MessagePack of one value (maps keep their order)."""
    if isinstance(v, Raw):
        return v.mp
    if isinstance(v, Ts):
        secs, ms = divmod(v.ms, 1000)
        body = (ms * 1000000).to_bytes(4, "big") + secs.to_bytes(8, "big", signed=True)
        return b"\xc7\x0c\xff" + body
    if isinstance(v, dict):
        out = bytearray(msgpack.packb({}) if not v else b"")
        if v:
            n = len(v)
            out += bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
            for k, x in v.items():
                out += pack_value(k) + pack_value(x)
        return bytes(out)
    if isinstance(v, list):
        n = len(v)
        out = bytearray(bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big"))
        for x in v:
            out += pack_value(x)
        return bytes(out)
    return msgpack.packb(v, use_bin_type=True)


def json_value(v):
    """The JSON twin of a value: bin as {"$bin": base64}, a timestamp as its RFC 3339 text."""
    if isinstance(v, Raw):
        return v.json_value
    if isinstance(v, Ts):
        return v.rfc3339
    if isinstance(v, (bytes, bytearray)):
        return {"$bin": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, dict):
        return {k: json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [json_value(x) for x in v]
    return v


def envelope(*pairs):
    """A list of (key, value) pairs: order kept, duplicates allowed."""
    return list(pairs)


def pack_envelope(pairs):
    n = len(pairs)
    out = bytearray(bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big"))
    for k, v in pairs:
        out += pack_value(k) + pack_value(v)
    return bytes(out)


def json_envelope(pairs):
    """The JSON text of an envelope (duplicate keys written as given)."""
    parts = []
    for k, v in pairs:
        parts.append(json.dumps(str(k), ensure_ascii=False) + ":" +
                     json.dumps(json_value(v), ensure_ascii=False, separators=(",", ":")))
    return "{" + ",".join(parts) + "}"


TASK = {"x": 1}
BASE = [("task_id", "t-1"), ("task", TASK)]


def with_pairs(*extra):
    return envelope(*BASE, *extra)


# ---- valid envelopes ----------------------------------------------------------------------------
# Each: name, pairs, expected decoding (fields not named are absent), canonical (a client writes
# exactly these bytes from the JSON twin), json_envelope (the JSON twin is itself an envelope the
# sidecar accepts with the same decoding), client_refuses (a client library refuses it before
# publishing although the sidecar's decoder takes it: {"field","reason"}).
LONG_ID = "a" * 256
LONG_ID_UTF8 = "é" * 128  # 256 bytes
VALID = [
    dict(name="minimal", pairs=BASE, canonical=True,
         doc="the two required keys only"),
    dict(name="every_field", canonical=True,
         pairs=envelope(("task_id", "order-42"),
                        ("task", {"order": 42, "items": [1, -300, 2.5], "note": "hello"}),
                        ("error", "connection reset by peer"), ("error_type", "ConnectionError"),
                        ("error_category", "network"), ("retry_policy", "exponential"),
                        ("max_retries", 5), ("retry_subject", "dlq.retry.orders"),
                        ("repos", ["orders", "billing"]),
                        ("metadata", {"tenant": "acme", "attempt_ms": 1500, "tags": ["a", "b"]}),
                        ("failed_at", 1764800000123), ("enqueue", True)),
         doc="every key of the contract, failed_at as integer ms"),
    dict(name="binary_payload", canonical=True, json_envelope=False,
         pairs=envelope(("task_id", "bin-1"), ("task", b"\x00\xff\x10\x80\xc1"),
                        ("error", "bad frame")),
         doc="task is MessagePack bin (bytes 00 ff 10 80 c1); its JSON twin writes it as {\"$bin\": base64}"),
    dict(name="unicode", canonical=True,
         pairs=envelope(("task_id", "заказ-42-✓-🚀"), ("task", {"note": "héllo 世界", "emoji": "🙂"}),
                        ("error", "délai dépassé — ✗"), ("error_type", "ZeitüberschreitungError")),
         doc="UTF-8 in task_id, task, error and error_type"),
    dict(name="task_id_at_limit", canonical=True,
         pairs=envelope(("task_id", LONG_ID), ("task", TASK)),
         doc="task_id of 256 bytes, the default limits.max_task_id_len"),
    dict(name="task_id_at_limit_multibyte", canonical=True,
         pairs=envelope(("task_id", LONG_ID_UTF8), ("task", TASK)),
         doc="task_id of 128 two-byte characters: 256 bytes, at the limit"),
    dict(name="max_retries_0", canonical=True, pairs=with_pairs(("max_retries", 0)),
         doc="max_retries at its lower bound (the task is stored exhausted)"),
    dict(name="max_retries_100", canonical=True, pairs=with_pairs(("max_retries", 100)),
         doc="max_retries at its upper bound"),
    dict(name="policy_never", canonical=True,
         pairs=with_pairs(("error", "schema mismatch"), ("retry_policy", "never")),
         doc="a retry_policy other than the category's"),
    dict(name="failed_at_rfc3339", canonical=False,
         pairs=with_pairs(("failed_at", "2025-12-03T22:13:20.123Z")),
         expect_extra={"failed_at_ms": 1764800000123},
         doc="failed_at as an RFC 3339 string"),
    dict(name="failed_at_timestamp_ext", canonical=False,
         pairs=with_pairs(("failed_at", Ts(1764800000123, "2025-12-03T22:13:20.123Z"))),
         expect_extra={"failed_at_ms": 1764800000123},
         doc="failed_at as the MessagePack timestamp extension (-1); the JSON twin gives the RFC 3339 text"),
    dict(name="nil_optionals", canonical=False,
         pairs=with_pairs(("error", None), ("error_type", None), ("max_retries", None),
                          ("metadata", None), ("failed_at", None)),
         doc="optional keys given as nil mean absent (error: \"\")"),
    dict(name="error_as_bin", canonical=False, json_envelope=False,
         pairs=with_pairs(("error", b"disk full")),
         expect_extra={"error": "disk full"},
         doc="error given as bin is read as UTF-8 text"),
    dict(name="task_nil", canonical=False, pairs=envelope(("task_id", "t-nil"), ("task", None)),
         doc="task may be any value, nil included"),
    dict(name="unknown_key", canonical=False, pairs=with_pairs(("eror", "typo")),
         expect_extra={"unknown_keys": 1, "unknown": ["eror"]},
         doc="keys outside the contract are ignored, counted and named"),
    dict(name="unknown_category", canonical=True, pairs=with_pairs(("error_category", "bogus")),
         doc="an error_category outside the six is ignored (the classifier decides), not refused"),
    dict(name="policy_upper_case", canonical=True, pairs=with_pairs(("retry_policy", "EXPONENTIAL")),
         doc="retry_policy names are matched case-insensitively"),
    dict(name="retry_subject_not_a_subject", canonical=True,
         pairs=with_pairs(("retry_subject", "dlq.retry.bad subject")),
         client_refuses={"field": "retry_subject", "reason": "bad_value"},
         doc="the sidecar stores it parked (park_reason); a client library refuses it before publishing"),
]

# ---- invalid envelopes: one rule broken each ----------------------------------------------------
# stage: "codec" (codec_decode() refuses it) or "intake" (decoded, then refused by the
# sidecar's contract check: an unknown retry_policy). json: False when the break cannot be
# written in JSON (the twin is then left out).
META_65 = {"k%02d" % i: i for i in range(65)}
META_BIG = {"blob": "x" * 16400}
REPOS_65 = ["r%d" % i for i in range(65)]
DEEP = TASK
for _ in range(32):
    DEEP = [DEEP]
INVALID = [
    dict(name="task_id_missing", pairs=envelope(("task", TASK)), field="task_id",
         reason="task_id_missing", why="task_id: missing"),
    dict(name="task_id_nil", pairs=envelope(("task_id", None), ("task", TASK)), field="task_id",
         reason="task_id_missing", why="task_id: missing (nil)"),
    dict(name="task_id_empty", pairs=envelope(("task_id", ""), ("task", TASK)), field="task_id",
         reason="task_id_missing", why="task_id: empty"),
    dict(name="task_id_wrong_type", pairs=envelope(("task_id", 42), ("task", TASK)),
         field="task_id", reason="bad_type", why="task_id: must be a string, not an integer"),
    dict(name="task_id_too_long", pairs=envelope(("task_id", "a" * 257), ("task", TASK)),
         field="task_id", reason="too_big", why="task_id: 257 bytes, at most 256"),
    dict(name="task_id_control_char", pairs=envelope(("task_id", "a\nb"), ("task", TASK)),
         field="task_id", reason="bad_chars", why="task_id: control character at byte 1"),
    dict(name="task_id_bad_utf8", json=False,
         pairs=envelope(("task_id", Raw(b"\xa3a\xffb")), ("task", TASK)), field="task_id",
         reason="bad_utf8", why="task_id: not valid UTF-8 at byte 1"),
    dict(name="task_missing", pairs=envelope(("task_id", "t-1")), field="task",
         reason="task_missing", why="task: missing"),
    dict(name="task_too_deep", pairs=envelope(("task_id", "t-1"), ("task", DEEP)), field="task",
         reason="too_deep", why="task: nesting deeper than the limit at byte 49"),
    dict(name="error_wrong_type", pairs=with_pairs(("error", 42)), field="error",
         reason="bad_type", why="error: must be a string, not an integer"),
    dict(name="error_type_wrong_type", pairs=with_pairs(("error_type", ["a"])), field="error_type",
         reason="bad_type", why="error_type: must be a string, not an array"),
    dict(name="error_type_too_long", pairs=with_pairs(("error_type", "E" * 1025)),
         field="error_type", reason="too_big", why="error_type: 1025 bytes, at most 1024"),
    dict(name="error_category_wrong_type", pairs=with_pairs(("error_category", True)),
         field="error_category", reason="bad_type",
         why="error_category: must be a string, not a boolean"),
    dict(name="retry_policy_unknown", stage="intake", pairs=with_pairs(("retry_policy", "sometimes")),
         field="retry_policy", reason="bad_value",
         why="retry_policy: not one of never, linear, exponential, immediate"),
    dict(name="retry_policy_wrong_type", pairs=with_pairs(("retry_policy", 2)),
         field="retry_policy", reason="bad_type", why="retry_policy: must be a string, not an integer"),
    dict(name="max_retries_too_high", pairs=with_pairs(("max_retries", 101)), field="max_retries",
         reason="out_of_range", why="max_retries: 101 is out of range 0-100"),
    dict(name="max_retries_negative", pairs=with_pairs(("max_retries", -1)), field="max_retries",
         reason="out_of_range", why="max_retries: -1 is out of range 0-100"),
    dict(name="max_retries_string", pairs=with_pairs(("max_retries", "3")), field="max_retries",
         reason="bad_type", why="max_retries: must be an integer 0-100"),
    dict(name="max_retries_float", pairs=with_pairs(("max_retries", 3.0)), field="max_retries",
         reason="bad_type", why="max_retries: must be an integer 0-100"),
    dict(name="retry_subject_wrong_type", pairs=with_pairs(("retry_subject", {"s": 1})),
         field="retry_subject", reason="bad_type", why="retry_subject: must be a string, not a map"),
    dict(name="repos_not_array", pairs=with_pairs(("repos", "orders")), field="repos",
         reason="bad_type", why="repos: must be an array of strings, not a string"),
    dict(name="repos_entry_not_string", pairs=with_pairs(("repos", ["ok", 1])), field="repos",
         reason="bad_type", why="repos: entry 1 must be a string, not an integer"),
    dict(name="repos_too_many", pairs=with_pairs(("repos", REPOS_65)), field="repos",
         reason="too_big", why="repos: 65 entries, at most 64"),
    dict(name="metadata_not_map", pairs=with_pairs(("metadata", ["a"])), field="metadata",
         reason="bad_type", why="metadata: must be a map, not an array"),
    dict(name="metadata_too_many_keys", pairs=with_pairs(("metadata", META_65)), field="metadata",
         reason="too_many_keys", why="metadata: 65 keys, at most 64"),
    dict(name="metadata_too_big", pairs=with_pairs(("metadata", META_BIG)), field="metadata",
         reason="too_big", why="metadata: 16409 bytes, at most 16384"),
    dict(name="failed_at_not_a_date", pairs=with_pairs(("failed_at", "yesterday")),
         field="failed_at", reason="bad_timestamp", why="failed_at: not an RFC 3339 date-time"),
    dict(name="failed_at_wrong_type", pairs=with_pairs(("failed_at", True)), field="failed_at",
         reason="bad_type",
         why="failed_at: must be a timestamp, an integer (ms) or an RFC 3339 string"),
    dict(name="failed_at_out_of_range", pairs=with_pairs(("failed_at", 253402300800000)),
         field="failed_at", reason="bad_timestamp", why="failed_at: out of range (years 0000-9999)"),
    dict(name="enqueue_wrong_type", pairs=with_pairs(("enqueue", "yes")), field="enqueue",
         reason="bad_type", why="enqueue: must be a boolean, not a string"),
    dict(name="duplicate_key", pairs=envelope(("task_id", "t-1"), ("task", TASK), ("task_id", "t-2")),
         field="task_id", reason="duplicate_key", why="task_id: duplicate key", json_why=False),
    dict(name="not_a_map", raw=pack_value(["task_id", "t-1"]), json_text='["task_id","t-1"]', json_why=False,
         field="envelope", reason="not_a_map", why="envelope: expected a map, not an array"),
    dict(name="empty_message", raw=b"", json=False, field="envelope", reason="not_a_map",
         why="envelope: empty message"),
    dict(name="key_not_string", json=False,
         pairs=envelope(("task_id", "t-1"), ("task", TASK), (7, "x")), field="envelope",
         reason="bad_type", why="envelope: key 2 is an integer, not a string"),
    dict(name="trailing_bytes", json=False, raw=pack_envelope(BASE) + b"\xc0", field="envelope",
         reason="trailing_bytes", why="envelope: 1 trailing byte(s) after the map"),
    dict(name="truncated", json=False, raw=pack_envelope(BASE)[:-1], field="task",
         reason="truncated", why="task: a declared length passes the end of the input at byte 21"),
    dict(name="reserved_byte", json=False,
         raw=pack_envelope(envelope(("task_id", "t-1"), ("task", Raw(b"\xc1")))), field="task",
         reason="bad_msgpack", why="task: reserved byte 0xc1 at byte 18"),
]

# ---- outcomes: a worker's reply to a retry (DESIGN section 6) -------------------------------------
# ok: success (the task completes); else a failed attempt with error and error_type (null: none).
# canonical: the reply a client library's worker writes for that result, byte for byte.
OUTCOMES = [
    dict(name="empty", body=b"", ok=True, doc="an empty body is success"),
    dict(name="blank", body=b" \r\n", ok=True, doc="blanks only count as empty"),
    dict(name="ok_json", body=b'{"ok":true}', ok=True, canonical=True,
         doc="what a client's worker replies on success"),
    dict(name="ok_msgpack", body=pack_value({"ok": True}), ok=True),
    dict(name="fail_json", body=b'{"ok":false,"error":"boom","error_type":"ValueError"}', ok=False,
         error="boom", error_type="ValueError", canonical=True,
         doc="what a client's worker replies for a failure"),
    dict(name="fail_json_unicode",
         body=json.dumps({"ok": False, "error": "délai dépassé \"x\"\n✗", "error_type": "TimeoutError"},
                         ensure_ascii=False, separators=(",", ":")).encode(),
         ok=False, error="délai dépassé \"x\"\n✗", error_type="TimeoutError", canonical=True),
    dict(name="fail_msgpack", body=pack_value({"ok": False, "error": "boom", "error_type": "ValueError"}),
         ok=False, error="boom", error_type="ValueError"),
    dict(name="fail_no_error", body=b'{"ok":false}', ok=False, error="", error_type=None),
    dict(name="fail_error_object", body=b'{"ok":false,"error":{"code":503,"message":"busy"}}',
         ok=False, error="busy", error_type=None, doc="an error object's message is the error"),
    dict(name="fail_error_number", body=b'{"ok":false,"error":42}', ok=False, error="42",
         error_type=None, doc="a non-string error is rendered as JSON text"),
    dict(name="fail_error_bin", body=pack_value({"ok": False, "error": b"disk full"}), ok=False,
         error="disk full", error_type=None),
    dict(name="ok_not_boolean", body=b'{"ok":"yes"}', ok=False, error="unrecognised reply",
         error_type=None, doc="a map without a boolean ok is not an answer"),
    dict(name="not_a_map", body=pack_value([1, 2]), ok=False, error="unrecognised reply",
         error_type=None, doc="a MessagePack array"),
    dict(name="json_array", body=b"[1,2]", ok=False, error="malformed reply", error_type=None,
         doc="only a body starting with '{' is read as JSON: this one reads as MessagePack that does not parse"),
    dict(name="pub_ack", body=b'{"stream":"RETRIES","seq":7}', ok=False, error="unrecognised reply",
         error_type=None,
         doc="a JetStream PubAck: the decoder says unrecognised; the sidecar's dispatch never takes it "
             "as the outcome and keeps waiting for the worker (README, Wire contract)"),
    dict(name="malformed_json", body=b'{"ok":tru', ok=False, error="malformed reply", error_type=None),
    dict(name="malformed_msgpack", body=b"\x82\xa2ok", ok=False, error="malformed reply",
         error_type=None),
    dict(name="too_deep_msgpack", body=b"\x82\xa2ok\xc2\xa5error" + b"\x91" * 1000 + b"\xc0", ok=False,
         error="malformed reply", error_type=None,
         doc="nesting deeper than limits.max_depth (default 32, the reply map included) does not parse"),
    dict(name="depth_32_json", body=b'{"ok":false,"error":' + b"[" * 31 + b"1" + b"]" * 31 + b"}", ok=False,
         error="[" * 31 + "1" + "]" * 31, error_type=None,
         doc="32 levels of nesting (the reply map and 31 arrays) are still read, with the default max_depth"),
    dict(name="too_deep_json", body=b'{"ok":false,"error":' + b"[" * 32 + b"1" + b"]" * 32 + b"}", ok=False,
         error="malformed reply", error_type=None,
         doc="33 levels of nesting are refused with the default max_depth 32"),
    dict(name="duplicate_key_json", body=b'{"ok":true,"ok":false}', ok=False, error="malformed reply",
         error_type=None, doc="a JSON object that gives a key twice does not parse"),
    dict(name="lone_surrogate_json", body=b'{"ok":false,"error":"\\u0000\\ud800"}', ok=False,
         error="malformed reply", error_type=None,
         doc="a JSON string escaping a lone surrogate does not parse (\\u0000 alone would)"),
]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def expect_of(v):
    """The expected decoding of a valid envelope: every field, absent ones as null."""
    d = {k: x for k, x in v["pairs"]}
    e = {
        "task_id": d["task_id"],
        "task_hex": pack_value(d["task"]).hex(),
        "error": d.get("error") if isinstance(d.get("error"), str) else "",
        "error_type": d.get("error_type"),
        "error_category": d.get("error_category"),
        "retry_policy": d.get("retry_policy"),
        "max_retries": d.get("max_retries"),
        "retry_subject": d.get("retry_subject"),
        "repos_hex": pack_value(d["repos"]).hex() if d.get("repos") is not None else None,
        "metadata_hex": pack_value(d["metadata"]).hex() if d.get("metadata") is not None else None,
        "failed_at_ms": d.get("failed_at") if isinstance(d.get("failed_at"), int) else None,
        "enqueue": d.get("enqueue") is True,
        "unknown_keys": 0,
        "unknown": [],
    }
    e.update(v.get("expect_extra", {}))
    return e


def main():
    for sub in ("envelopes", "outcomes"):
        shutil.rmtree(os.path.join(HERE, sub), ignore_errors=True)
    manifest = {
        "version": 1,
        "doc": "Shared test vectors of the dlq-sidecar wire contract (DESIGN sections 4 and 6). "
               "Written by tests/vectors/generate.py; read by tests/codec/test_vectors.c and "
               "tests/integration/test_client_c.c. Paths are relative to this file. Expectations "
               "assume the default limits below.",
        "limits": {"max_task_id_len": 256, "max_string_len": 1024, "max_error_len": 4096,
                   "max_metadata_keys": 64, "max_metadata_bytes": 16384, "max_repos": 64,
                   "max_depth": 32},
        "key_order": KEY_ORDER,
        "envelopes": [],
        "outcomes": [],
    }
    for v in VALID:
        base = "envelopes/valid/" + v["name"]
        write(os.path.join(HERE, base + ".msgpack"), pack_envelope(v["pairs"]))
        write(os.path.join(HERE, base + ".json"), (json_envelope(v["pairs"]) + "\n").encode())
        entry = {"name": v["name"], "doc": v["doc"], "msgpack": base + ".msgpack",
                 "json": base + ".json", "valid": True,
                 "json_envelope": v.get("json_envelope", True), "canonical": v["canonical"],
                 "expect": expect_of(v)}
        if "client_refuses" in v:
            entry["client_refuses"] = v["client_refuses"]
        manifest["envelopes"].append(entry)
    for v in INVALID:
        base = "envelopes/invalid/" + v["name"]
        raw = v["raw"] if "raw" in v else pack_envelope(v["pairs"])
        write(os.path.join(HERE, base + ".msgpack"), raw)
        entry = {"name": v["name"], "msgpack": base + ".msgpack", "json": None, "valid": False,
                 "stage": v.get("stage", "codec"), "field": v["field"], "reason": v["reason"],
                 "why": v["why"]}
        if v.get("json", True):
            text = v.get("json_text") or json_envelope(v["pairs"])
            write(os.path.join(HERE, base + ".json"), (text + "\n").encode())
            entry["json"] = base + ".json"
            # The byte offsets and key numbers of a message refer to the MessagePack form.
            entry["json_why"] = v.get("json_why", "at byte" not in v["why"])
        manifest["envelopes"].append(entry)
    for o in OUTCOMES:
        path = "outcomes/" + o["name"] + ".bin"
        write(os.path.join(HERE, path), o["body"])
        entry = {"name": o["name"], "file": path, "ok": o["ok"],
                 "canonical": o.get("canonical", False)}
        if not o["ok"]:
            entry["error"] = o["error"]
            entry["error_type"] = o["error_type"]
        if "doc" in o:
            entry["doc"] = o["doc"]
        manifest["outcomes"].append(entry)
    with open(os.path.join(HERE, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d envelopes, %d outcomes" % (len(manifest["envelopes"]), len(manifest["outcomes"])),
          file=sys.stderr)


if __name__ == "__main__":
    main()
