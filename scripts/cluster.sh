#!/usr/bin/env bash
# cluster.sh - tries cluster mode on one machine: a 3-node nats-server cluster with JetStream on loopback and N sidecars (default 3) in cluster mode, in the foreground until Ctrl-C.
#
# usage: scripts/cluster.sh [N]      N sidecars, 1-9 (default 3)
# Environment (not DLQ_*: the sidecar reads those as its configuration): TRY_CLUSTER_DIR (default build/cluster) keeps the nodes' data, configs and every log;
# TRY_CLUSTER_PORT (default 14222): client ports PORT, PORT+1, PORT+2; route ports PORT+1000...;
# TRY_CLUSTER_HTTP_PORT (default 18080): sidecar i serves HTTP on 127.0.0.1:(PORT+i). Extra sidecar flags: TRY_SIDECAR_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-3}
if ! [[ $n =~ ^[1-9]$ ]]; then
  echo "cluster: N must be 1-9 sidecars (got '$n')" >&2
  exit 2
fi
dir=${TRY_CLUSTER_DIR:-build/cluster}
base=${TRY_CLUSTER_PORT:-14222}
http_base=${TRY_CLUSTER_HTTP_PORT:-18080}

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build dlq-sidecar dlqctl dlq-demo >/dev/null
server=.deps/bin/nats-server
[ -x "$server" ] || { echo "cluster: $server is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }

mkdir -p "$dir"
pids=()
stop_all() {
  # Sidecars first (SIGTERM: they give their leases back and flush), then the servers.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${npids[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${npids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}
npids=()
trap stop_all EXIT
trap 'exit 130' INT TERM

# Every port this needs, checked before anything starts: a taken route or HTTP port would
# otherwise stop one node or one sidecar with the reason in its log only.
taken() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
urls=""
for i in 0 1 2; do
  for port in $((base + i)) $((base + 1000 + i)); do
    if taken "$port"; then
      echo "cluster: something already listens on 127.0.0.1:$port (set TRY_CLUSTER_PORT)" >&2
      exit 1
    fi
  done
  urls+="${urls:+,}nats://127.0.0.1:$((base + i))"
done
for i in $(seq 1 "$n"); do
  if taken "$((http_base + i))"; then
    echo "cluster: something already listens on 127.0.0.1:$((http_base + i)) (set TRY_CLUSTER_HTTP_PORT)" >&2
    exit 1
  fi
done
for i in 0 1 2; do
  mkdir -p "$dir/n$i"
  {
    echo "server_name: n$i"
    echo "listen: 127.0.0.1:$((base + i))"
    echo "jetstream { store_dir: \"$dir/n$i/js\" }"
    echo "cluster {"
    echo "  name: dlq-try"
    echo "  listen: 127.0.0.1:$((base + 1000 + i))"
    echo "  routes: [ nats-route://127.0.0.1:$((base + 1000)), nats-route://127.0.0.1:$((base + 1001)), nats-route://127.0.0.1:$((base + 1002)) ]"
    echo "}"
  } >"$dir/n$i.conf"
  setsid "$server" -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  npids+=($!)
done
echo "cluster: 3 nats-server nodes on $urls (logs: $dir/n*.log); waiting for JetStream's meta leader" >&2
ok=0
for _ in $(seq 100); do
  if grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" "$dir"/n*.log 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "cluster: the nodes elected no JetStream meta leader (see $dir/n*.log)" >&2; exit 1; }

# shellcheck disable=SC2206
extra=(${TRY_SIDECAR_FLAGS:-})
for i in $(seq 1 "$n"); do
  build/sidecar/dlq-sidecar --nats.url "$urls" \
    --cluster.enabled=true --cluster.member_id "s$i" --cluster.replicas 3 \
    --ingest.mode=jetstream --ingest.stream_replicas 3 \
    --store.backend=jetstream --store.jetstream.replicas 3 \
    --http.listen "127.0.0.1:$((http_base + i))" "${extra[@]}" >"$dir/s$i.log" 2>&1 &
  pids+=($!)
done
members=""
for i in $(seq 1 "$n"); do members+="${members:+ }s$i=pid ${pids[i - 1]}"; done
if [ "$n" -ge 2 ]; then
  takeover="  A takeover: kill -9 ${pids[1]}   (sidecar s2; the others own its partitions within lease_ms)."
else
  takeover="  A takeover needs 2 sidecars or more (scripts/cluster.sh 3)."
fi
cat >&2 <<EOF
cluster: $n sidecars in cluster mode (members s1..s$n, logs: $dir/s*.log, HTTP 127.0.0.1:$((http_base + 1))-$((http_base + n)))
  sidecars: $members
  try:  export NATS_URL=$urls
        build/tools/dlqctl members          # each member and the partitions it serves
        build/tools/dlqctl stats            # one member answers for all of them
        build/tools/dlq-demo --help         # or publish failures as the README's quick start does
$takeover
  Ctrl-C stops the sidecars (leases given back), then the nodes.
EOF
# Until every sidecar has stopped: one killed on purpose leaves the others (and the nodes) running.
wait "${pids[@]}" || true
echo "cluster: every sidecar stopped (see $dir/s*.log); stopping the nodes" >&2
