#!/usr/bin/env bash
# run.sh - the benchmark: builds dlq-sidecar and dlq-bench in Release mode, starts a private nats-server (JetStream) on a free 127.0.0.1 port (the cluster scenario starts 3 more), runs every scenario, prints the table and writes bench/results.json.
#
# usage: bench/run.sh [--quick|--full] [--out FILE] [--keep] [dlq-bench options: --n N, --scenarios LIST, ...]
#   --quick  small sizes (a few seconds; the CI smoke test); prints the table, writes JSON only with --out
#   --full   10,000,000 tasks in one sidecar (memory, stats and list(100) latency; about 6 GiB of RAM)
#            and the timer burst at 1,000,000 scheduled tasks; writes bench/results-full.json
#   --keep   keep the temp dir (nats-server and sidecar logs) even when everything passed
# Environment: DLQ_BENCH_BUILD_DIR (default build-bench) is the Release build directory;
#   DLQ_BENCH_NATS_SERVER the nats-server to run (default .deps/bin/nats-server, v2.15.3; e.g.
#   /usr/sbin/nats-server for Debian's 2.9.10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${DLQ_BENCH_BUILD_DIR:-$root/build-bench}
quick=0
full=0
keep=0
out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; args+=(--quick) ;;
    --full) full=1 ;;
    --keep) keep=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ "$full" = 1 ]; then
  # options given on the command line come after these and win
  args=(--n 10000000 --scenarios memory,admin,timer --timer-held 900000 --timer-burst "${args[@]}")
fi

if [ -x scripts/install-deps.sh ]; then
  scripts/install-deps.sh
fi

echo "bench: building (Release) in $build" >&2
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDLQ_TESTS=OFF >/dev/null
if ! ninja -C "$build" dlq-sidecar dlq-bench >"$build/bench-build.log" 2>&1; then
  cat "$build/bench-build.log" >&2
  exit 1
fi
bench=$build/bench/dlq-bench
sidecar=$build/sidecar/dlq-sidecar

work=$(mktemp -d /tmp/dlq-bench.XXXXXX)
# A quick run only prints its table unless --out names a file; a full run writes bench/results.json.
out_args=()
if [ -z "$out" ] && [ "$full" = 1 ]; then out=$root/bench/results-full.json; fi
if [ -z "$out" ] && [ "$quick" = 0 ]; then out=$root/bench/results.json; fi
if [ -n "$out" ]; then out_args=(--out "$out"); fi
nats_server=${DLQ_BENCH_NATS_SERVER:-$root/.deps/bin/nats-server}
[ -x "$nats_server" ] || nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
nats_pid=""

cleanup() {
  local rc=$?
  if [ -n "$nats_pid" ]; then
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
  if [ "$rc" -eq 0 ] && [ "$keep" = 0 ]; then
    rm -rf "$work"
  else
    echo "bench: logs kept in $work" >&2
  fi
}
trap cleanup EXIT

# A free port can be taken between the check and the bind: try a few.
port=""
for attempt in 1 2 3 4 5; do
  port=$("$bench" --free-port)
  "$nats_server" -a 127.0.0.1 -p "$port" -js -sd "$work/js" -l "$work/nats.log" &
  nats_pid=$!
  up=0
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    if ! kill -0 "$nats_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  [ "$up" = 1 ] && break
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  nats_pid=""
done
if [ -z "$nats_pid" ]; then
  echo "bench: nats-server did not start; log:" >&2
  tail -20 "$work/nats.log" >&2 || true
  exit 1
fi
echo "bench: nats-server $("$nats_server" --version 2>&1 | head -1) on 127.0.0.1:$port (JetStream in $work/js)" >&2

# The cluster scenario starts (and stops) its own 3 nodes of the same nats-server under $work/cluster.
"$bench" --url "nats://127.0.0.1:$port" --sidecar "$sidecar" --workdir "$work" "${out_args[@]}" \
  --nats-log "$work/nats.log" --nats-pid "$nats_pid" --nats-server "$nats_server" "${args[@]}"
