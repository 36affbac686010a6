#!/usr/bin/env bash
# run-tests.sh - runs the Python client's tests (CTest): vectors, integration (a real nats-server and sidecar), or install (pip install into a temporary target).
#
# Usage: clients/python/run-tests.sh vectors|integration|install
# The venv is .deps/python (scripts/install-deps.sh). integration reads DLQ_SIDECAR_BIN and
# DLQ_TEST_NATS_SERVER (CTest sets both; DLQ_TEST_NATS_SERVER set by the caller wins).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=$root/.deps/python/bin/python
if [ ! -x "$py" ]; then
  echo "run-tests.sh: $py is missing: run scripts/install-deps.sh (it makes the venv .deps/python)" >&2
  exit 1
fi
export PYTHONDONTWRITEBYTECODE=1 DLQ_VECTORS_DIR="$root/tests/vectors"
pytest=("$py" -m pytest -p no:cacheprovider -rs --rootdir "$here" -c "$here/pyproject.toml")

case "${1:-}" in
  vectors)
    PYTHONPATH="$here/src" exec "${pytest[@]}" "$here/tests/test_vectors.py"
    ;;
  integration)
    export DLQ_TEST_NATS_SERVER=${DLQ_TEST_NATS_SERVER:-${DLQ_NATS_SERVER_DEFAULT:-}}
    PYTHONPATH="$here/src" exec "${pytest[@]}" -v "$here/tests/test_integration.py"
    ;;
  install)
    # pip install from a copy of the folder (the build writes beside the sources), offline, into a
    # temporary target; then the vector tests run against the installed copy, not the sources.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -r "$here" "$tmp/src"
    rm -rf "$tmp/src/build" "$tmp/src"/src/*.egg-info
    "$py" -m pip install -q --no-deps --no-build-isolation --no-index --target "$tmp/site" "$tmp/src"
    PYTHONPATH="$tmp/site" "$py" -c '
import sys, dlq_client, pathlib
p = pathlib.Path(dlq_client.__file__).resolve()
assert str(p).startswith(sys.argv[1]), f"imported {p}, not the installed copy"
assert (p.parent / "py.typed").exists(), "py.typed is not installed"
print("installed", dlq_client.__version__, "at", p.parent)' "$tmp/site"
    PYTHONPATH="$tmp/site" "${pytest[@]}" -q "$here/tests/test_vectors.py"
    ;;
  *)
    echo "usage: $0 vectors|integration|install" >&2
    exit 2
    ;;
esac
