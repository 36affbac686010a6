#!/bin/sh
# test.sh SIDECAR NATS_SERVER - the Go client's checks for CTest: gofmt, go vet, then go test (the shared vectors, then a real nats-server and the sidecar).
set -eu
cd "$(dirname "$0")"
go=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$go" ]; then
  echo "clients/go: no Go toolchain (go on PATH or /usr/local/go/bin/go; Go >= 1.26, see scripts/install-deps.sh)" >&2
  exit 1
fi
# Modules come from the module cache, else the machine's proxy (scripts/install-deps.sh fills the cache).
GOFLAGS="$("$go" env GOFLAGS) -mod=mod"
GOPROXY=${GOPROXY:-$("$go" env GOPROXY)}
export GOFLAGS GOPROXY
export DLQ_TEST_SIDECAR="$1"
export DLQ_TEST_NATS_SERVER="${DLQ_TEST_NATS_SERVER:-$2}"

unformatted=$("$("$go" env GOROOT)/bin/gofmt" -l .)
if [ -n "$unformatted" ]; then
  echo "clients/go: not gofmt-formatted: $unformatted" >&2
  exit 1
fi
"$go" vet ./...
"$go" test -count=1 -timeout 540s -v ./...
