#!/usr/bin/env bash
# install-deps.sh - apt-installs every Debian package the build, the tests and the quick start need; idempotent and quiet.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config clang clang-tidy libclang-rt-14-dev
  libnats-dev libmsgpack-dev libevent-dev libcurl4-openssl-dev libyaml-dev
  libjansson-dev libpcre2-dev libcmocka-dev libssl-dev nats-server
  # test_ops parses /metrics with prometheus_client; CI checks docker/docker-compose.yml.
  python3 python3-prometheus-client docker-compose
  # test_persist makes a throwaway CA and certificate for its TLS proxy (tests/integration/tls_proxy.py).
  openssl
  # the README's examples read /metrics and /readyz with curl and pick JSON fields with jq.
  curl jq
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The nats CLI v0.5.0 (the admin integration tests and the README's examples) goes to .deps/bin/nats.
deps_root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$deps_root/.deps/bin/nats" ]; then
  go_bin=$(command -v go || echo /usr/local/go/bin/go)
  if [ ! -x "$go_bin" ]; then
    echo "install-deps: cannot install the nats CLI v0.5.0 (.deps/bin/nats, needed by the admin integration tests):" \
      "no Go toolchain (go on PATH or /usr/local/go/bin/go); install Go >= 1.26 (natscli v0.5.0's go.mod" \
      "asks for it; Debian 12's golang package is too old), or put a nats v0.5.0 binary at" \
      "$deps_root/.deps/bin/nats" >&2
    exit 1
  fi
  echo "install-deps: installing the nats CLI v0.5.0 into .deps/bin" >&2
  if ! GOBIN="$deps_root/.deps/bin" "$go_bin" install github.com/nats-io/natscli/nats@v0.5.0 \
    || [ ! -x "$deps_root/.deps/bin/nats" ]; then
    echo "install-deps: 'go install github.com/nats-io/natscli/nats@v0.5.0' failed (see above) with" \
      "$("$go_bin" version 2>/dev/null || echo "$go_bin") (it needs Go >= 1.26): the nats CLI" \
      "(.deps/bin/nats) is needed by the admin integration tests" >&2
    exit 1
  fi
fi
