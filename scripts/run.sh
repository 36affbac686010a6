#!/usr/bin/env bash
# run.sh - the README's first command: installs what is missing, builds, starts a local nats-server if none listens, runs the sidecar in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${DLQ_CONFIG:-config/dlq-sidecar.example.yaml}   # the sidecar's own DLQ_CONFIG, with the example as default

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build dlq-sidecar dlqctl dlq-demo >/dev/null

# The NATS URL the sidecar will use: DLQ_NATS_URL when set (then also passed as --nats.url),
# else nats.url as the sidecar itself resolves it from $config and the extra flags.
url_flag=()
if [ -n "${DLQ_NATS_URL:-}" ]; then
  url=$DLQ_NATS_URL
  url_flag=(--nats.url "$url")
else
  printed=$(build/sidecar/dlq-sidecar --config "$config" "$@" --print-config) || exit $?
  url=$(printf '%s\n' "$printed" | awk '/^nats:/ { s = 1; next } /^[^ ]/ { s = 0 } s && /^  url: / { sub(/^  url: /, ""); gsub(/^"|"$/, ""); print; exit }')
  if [ -z "$url" ]; then
    echo "run: cannot read nats.url from 'dlq-sidecar --config $config --print-config'" >&2
    exit 1
  fi
fi

# Start a nats-server for the quick start when the URL points at this machine and nothing
# listens on its host:port (a remote server is the user's to run: the sidecar retries until it answers).
# The first URL of a list; any user:pass@ or token@ and any path dropped; [v6]:port
# understood; no port means NATS's 4222.
hostport=${url%%,*}
hostport=${hostport#*://}
hostport=${hostport##*@}
hostport=${hostport%%/*}
if [[ $hostport == \[*\]* ]]; then
  host=${hostport%%]*}
  host=${host#[}
  port=${hostport#*]}
  port=${port#:}
elif [[ $hostport == *:* ]]; then
  host=${hostport%:*}
  port=${hostport##*:}
else
  host=$hostport
  port=""
fi
host=${host:-127.0.0.1}
port=${port:-4222}
if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  echo "run: cannot read a port from the NATS URL '$url' (got '$port')" >&2
  exit 1
fi
case $host in
  localhost | 127.* | ::1) local_host=1 ;;
  *) local_host=0 ;;
esac
# Whether something accepts TCP connections on $1:$2 (at most 2 s: a remote host may drop SYNs).
listening() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
if listening "$host" "$port"; then
  :
elif [ "$local_host" = 0 ]; then
  echo "run: no NATS server answers on $host:$port yet; the sidecar keeps retrying until one does" >&2
else
  # The nats-server the tests run against (v2.15.3, installed by install-deps.sh) with JetStream
  # on, so that --ingest.mode=jetstream works too (its stream is kept in build/nats-js);
  # the one on PATH (Debian's 2.9.10: core mode only) when it is missing. On another port than
  # 4222 the files and the log are the port's own (build/nats-js-PORT, build/nats-server-PORT.log):
  # a second run.sh of this checkout on another port must not open the first server's store.
  js_dir=build/nats-js
  log=build/nats-server.log
  if [ "$port" != 4222 ]; then
    js_dir=build/nats-js-$port
    log=build/nats-server-$port.log
  fi
  server=.deps/bin/nats-server
  js_args=(-js -sd "$js_dir")
  if [ ! -x "$server" ]; then server=nats-server; js_args=(); fi
  echo "run: no NATS server on $host:$port; starting $server ${js_args[*]} there (log: $log)" >&2
  # its own session: Ctrl-C stops the sidecar first (it drains), then the trap stops the server
  setsid "$server" -a "$host" -p "$port" "${js_args[@]}" >"$log" 2>&1 &
  nats_pid=$!
  trap 'kill $nats_pid 2>/dev/null || true; wait $nats_pid 2>/dev/null || true' EXIT
  up=0
  for _ in $(seq 50); do
    if listening "$host" "$port"; then up=1; break; fi
    kill -0 "$nats_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$up" = 0 ]; then
    echo "run: the nats-server started on $host:$port did not accept connections; $log:" >&2
    tail -20 "$log" >&2 || true
    exit 1
  fi
fi

echo "run: starting dlq-sidecar with $config (Ctrl-C to stop)" >&2
build/sidecar/dlq-sidecar --config "$config" "${url_flag[@]}" "$@"
