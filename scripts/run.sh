#!/usr/bin/env bash
# run.sh - the README's first command: installs what is missing, builds, starts a local nats-server if none listens, runs the sidecar in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${DLQ_CONFIG:-config/dlq-sidecar.example.yaml}   # the sidecar's own DLQ_CONFIG, with the example as default
url=${DLQ_NATS_URL:-nats://127.0.0.1:4222}

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build dlq-sidecar dlqctl dlq-demo >/dev/null

# Start a nats-server for the quick start when nothing listens on the URL's host:port.
hostport=${url#*://}
hostport=${hostport%%,*}
host=${hostport%:*}
port=${hostport##*:}
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "run: no NATS server on $host:$port; starting nats-server there (log: build/nats-server.log)" >&2
  # its own session: Ctrl-C stops the sidecar first (it drains), then the trap stops the server
  setsid nats-server -a "$host" -p "$port" >build/nats-server.log 2>&1 &
  nats_pid=$!
  trap 'kill $nats_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break; sleep 0.1; done
fi

echo "run: starting dlq-sidecar with $config (Ctrl-C to stop)" >&2
build/sidecar/dlq-sidecar --config "$config" --nats.url "$url" "$@"
