#!/usr/bin/env bash
# schemathesis.sh - CTest integration_schemathesis: a real nats-server and sidecar with a few tasks, then schemathesis (PyPI, .deps/venv) against /api/v1/openapi.json: every operation, valid and hostile inputs, no 5xx and only documented statuses, content types and response shapes.
# usage: schemathesis.sh SIDECAR NATS_SERVER NATS_CLI VENV_DIR; DLQ_SCHEMATHESIS_EXAMPLES (default 40) and DLQ_SCHEMATHESIS_SEED (default 14) tune the run.
set -euo pipefail

sidecar=$1 nats_server=${DLQ_TEST_NATS_SERVER:-$2} nats_cli=$3 venv=$4
st="$venv/bin/st"
if [ ! -x "$st" ]; then
  echo "schemathesis.sh: $st is missing: run scripts/install-deps.sh (it installs schemathesis from PyPI into .deps/venv)" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/dlq-it-schemathesis-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nport=$(free_port)
hport=$(free_port)
url="nats://127.0.0.1:$nport"
base="http://127.0.0.1:$hport"

"$nats_server" -a 127.0.0.1 -p "$nport" >"$dir/nats.log" 2>&1 &
pids+=($!)
# The daemon refuses DLQ_* variables it does not know (DLQ_TEST_*, DLQ_SCHEMATHESIS_*): none reach it.
no_dlq_env=()
while IFS= read -r name; do no_dlq_env+=(-u "$name"); done < <(compgen -e | grep '^DLQ_' || true)
env "${no_dlq_env[@]}" "$sidecar" --nats.url="$url" --http.listen="127.0.0.1:$hport" --log.level=info \
  >"$dir/sidecar.log" 2>&1 &
sidecar_pid=$!
pids+=($sidecar_pid)

ready=0
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [ $ready -ne 1 ]; then
  echo "schemathesis.sh: the sidecar did not get ready; its log:" >&2
  tail -20 "$dir/sidecar.log" >&2
  exit 1
fi

# A few tasks, so that list, get, retry and archive have something to work on.
for i in 1 2 3 4 5; do
  if ! out=$("$nats_cli" --server "$url" request --timeout 5s dlq.failed.orders \
    "{\"task_id\":\"st-$i\",\"task\":{\"n\":$i},\"error\":\"ValueError: bad field $i\"}" 2>&1); then
    echo "schemathesis.sh: filing task st-$i failed: $out" >&2
    exit 1
  fi
done

set +e
"$st" run "$base/api/v1/openapi.json" --base-url "$base" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --data-generation-method all \
  --hypothesis-max-examples "${DLQ_SCHEMATHESIS_EXAMPLES:-40}" \
  --hypothesis-seed "${DLQ_SCHEMATHESIS_SEED:-14}" \
  --hypothesis-derandomize --no-color --show-trace
rc=$?
set -e

# The sidecar must have survived it all, and still answer.
if ! kill -0 "$sidecar_pid" 2>/dev/null || ! curl -fsS -o /dev/null -X POST "$base/api/v1/stats"; then
  echo "schemathesis.sh: the sidecar is gone or does not answer after the run; its log:" >&2
  tail -40 "$dir/sidecar.log" >&2
  rc=1
fi
if [ $rc -eq 0 ]; then rm -rf "$dir"; else echo "schemathesis.sh: logs kept in $dir" >&2; fi
exit $rc
