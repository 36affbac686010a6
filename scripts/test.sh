#!/usr/bin/env bash
# test.sh - the README's test command: installs, builds with -Werror, runs every test, the sanitizer builds and the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)
fuzz_secs=${DLQ_FUZZ_SECONDS:-30}

scripts/install-deps.sh

step() { printf '\n==== %s\n' "$*"; }

step "build (RelWithDebInfo, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
ninja -C build

step "calls go one way: no two files of the product call each other in a loop (from the objects' symbols)"
python3 scripts/call-loops.py build

step "clang-tidy: the bug-prone checks of .clang-tidy, warnings are errors"
clang-tidy -p build --quiet common/*.c codec/*.c policy/*.c config/*.c persist/*.c dlq/*.c sidecar/*.c tools/*.c clients/c/*.c

step "all tests"
ctest --test-dir build --output-on-failure -j "$jobs" -LE opensearch  # the OpenSearch suite: see its step

step "core-mode integration tests against Debian's nats-server 2.9.10 (the suite above ran on .deps/bin's v2.15.3; the JetStream and cluster suites need it)"
DLQ_TEST_NATS_SERVER=/usr/sbin/nats-server DLQ_IT_TOLERANCE_MS=200 \
  ctest --test-dir build --output-on-failure -j "$jobs" -L integration -LE 'opensearch|jetstream|cluster'

step "deployment files: docker-compose config, the container's config, the systemd unit, scripts/cluster.sh"
docker-compose -f docker/docker-compose.yml config -q
# The daemon refuses DLQ_* variables it does not know (DLQ_FUZZ_SECONDS, DLQ_TEST_*, ...):
# check the container's config alone, without this shell's DLQ_* environment.
no_dlq_env=()
while IFS= read -r name; do no_dlq_env+=(-u "$name"); done < <(compgen -e | grep '^DLQ_' || true)
env "${no_dlq_env[@]}" build/sidecar/dlq-sidecar --config docker/dlq-sidecar.yaml --print-config >/dev/null
if command -v systemd-analyze >/dev/null; then
  unit_dir=$(mktemp -d)
  sed "s|/usr/local/bin/dlq-sidecar|$root/build/sidecar/dlq-sidecar|" docker/dlq-sidecar.service \
    >"$unit_dir/dlq-sidecar.service"
  systemd-analyze verify "$unit_dir/dlq-sidecar.service"
  rm -rf "$unit_dir"
fi
# scripts/cluster.sh (the README's "try it"): 2 sidecars on its 3-node cluster both answer
# `dlqctl members` and share the 32 partitions; SIGTERM stops everything it started.
try_dir=$(mktemp -d)
# Ports no one listens on (a shared machine may run another cluster on the defaults): client
# ports B..B+2, routes B+1000..B+1002, HTTP H..H+2.
read -r try_port try_http < <(python3 - <<'PY'
import socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
b = next(b for b in range(14222, 60000, 1111) if all(free(p) for k in range(3) for p in (b + k, b + 1000 + k)))
h = next(h for h in range(18080, 60000, 1111) if all(free(h + k) for k in range(3)))
print(b, h)
PY
)
TRY_CLUSTER_DIR=$try_dir TRY_CLUSTER_PORT=$try_port TRY_CLUSTER_HTTP_PORT=$try_http env "${no_dlq_env[@]}" \
  setsid scripts/cluster.sh 2 >"$try_dir/out" 2>&1 &
try_pid=$!
served=0
for _ in $(seq 120); do
  served=$(NATS_URL=nats://127.0.0.1:$try_port build/tools/dlqctl --json --timeout 2000 members 2>/dev/null |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(len(x["partitions"]) for x in m) if len(m)==2 else 0)' 2>/dev/null || echo 0)
  [ "$served" = 32 ] && break
  sleep 1
done
kill -TERM "$try_pid" 2>/dev/null || true
wait "$try_pid" 2>/dev/null || true
if [ "$served" != 32 ] || pgrep -f "$try_dir|nats://127.0.0.1:$try_port" >/dev/null; then
  echo "test.sh: scripts/cluster.sh did not serve 32 partitions with 2 sidecars, or left processes" >&2
  cat "$try_dir/out" "$try_dir"/s*.log >&2 || true
  pkill -f "$try_dir|nats://127.0.0.1:$try_port" || true
  exit 1
fi
rm -rf "$try_dir"

step "unit and integration tests under ASan+UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDLQ_SANITIZE=address >/dev/null
ninja -C build-asan
# Sanitized daemons run several times slower: the integration tests' wire-delay
# tolerance widens (their never-early bounds stay exact).
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  DLQ_TEST_QUICK=1 DLQ_IT_TOLERANCE_MS=200 ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE opensearch

step "the OpenSearch store against a real OpenSearch node (scripts/opensearch.sh; plain and ASan+UBSan builds)"
# One node for this run, in its own directory, stopped and removed however the script ends.
# A node that cannot start fails the run: the persistence suite never skips.
export DLQ_OPENSEARCH_DIR
DLQ_OPENSEARCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dlq-opensearch.XXXXXX")
trap 'scripts/opensearch.sh clean >/dev/null 2>&1 || true' EXIT
if ! DLQ_TEST_OPENSEARCH_URL=$(scripts/opensearch.sh start --fresh); then
  echo "test.sh: the OpenSearch node did not start (see above): failing" >&2
  exit 1
fi
export DLQ_TEST_OPENSEARCH_URL DLQ_TEST_OPENSEARCH_CTL="$root/scripts/opensearch.sh"
ctest --test-dir build --output-on-failure -L opensearch
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  DLQ_TEST_QUICK=1 ctest --test-dir build-asan --output-on-failure -L opensearch
scripts/opensearch.sh clean
trap - EXIT

step "threaded code under TSan"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDLQ_SANITIZE=thread >/dev/null
ninja -C build-tsan
TSAN_OPTIONS="halt_on_error=1 suppressions=$root/tests/tsan.supp" \
  DLQ_TEST_QUICK=1 DLQ_IT_TOLERANCE_MS=200 ctest --test-dir build-tsan --output-on-failure -L integration

step "fuzzers, ${fuzz_secs}s each (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDLQ_FUZZ=ON >/dev/null
ninja -C build-fuzz fuzz_envelope fuzz_config
for f in envelope config; do
  work=$(mktemp -d)
  cp -r "fuzz/corpus/$f/." "$work/"
  rc=0
  build-fuzz/fuzz/fuzz_$f -max_total_time="$fuzz_secs" -max_len=65536 -print_final_stats=1 \
    "$work" >"$work.log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' "$work.log" || true
  if [ "$rc" -ne 0 ]; then tail -50 "$work.log" >&2; echo "fuzz_$f failed (exit $rc)" >&2; exit 1; fi
  rm -f "$work.log"
  rm -rf "$work"
done

step "benchmark smoke run (bench/run.sh --quick: every scenario at small sizes; fails on errors or lost tasks, never on timings)"
bench/run.sh --quick

step "all passed"
