#!/usr/bin/env bash
# install-deps.sh - apt-installs every Debian package the build, the tests and the quick start need; idempotent and quiet.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config clang clang-tidy libclang-rt-14-dev
  libnats-dev libmsgpack-dev libevent-dev libcurl4-openssl-dev libyaml-dev
  libjansson-dev libpcre2-dev libcmocka-dev libssl-dev libcrypt-dev nats-server
  # test_ops parses /metrics with prometheus_client; CI checks docker/docker-compose.yml.
  python3 python3-prometheus-client docker-compose
  # test_persist makes a throwaway CA and certificate for its TLS proxy (tests/integration/tls_proxy.py).
  openssl
  # the README's examples read /metrics and /readyz with curl and pick JSON fields with jq.
  curl jq
  # tests/vectors/generate.py packs the shared test vectors (envelopes, outcomes) with python3-msgpack.
  python3-msgpack
  # the venvs of the Python client (.deps/python) and of schemathesis (.deps/venv) when the python3
  # on PATH is Debian's: its venv module.
  python3-venv
  # the web console's browser test (tests/browser): Debian's headless chromium, driven by
  # playwright-core from npm (installed below with npm ci; it never downloads a browser).
  chromium
)
# Node.js and npm: whatever the machine has (ours has Node 20 from NodeSource, whose nodejs
# package ships npm and conflicts with Debian's npm package); Debian's only when there is none.
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)

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

# Two Go programs go to .deps/bin (Debian has no nats CLI, and its nats-server 2.9.10 is from 2022):
# the nats CLI v0.5.0 (the admin integration tests and the README's examples) and nats-server
# v2.15.3 (every integration test runs against it; CI also runs the core-mode tests on 2.9.10).
deps_root=$(cd "$(dirname "$0")/.." && pwd)
go_bin=$(command -v go || echo /usr/local/go/bin/go)

# go_install NAME MODULE VERSION WHY: installs MODULE@VERSION as .deps/bin/NAME unless that
# binary already reports VERSION; fails naming what needs it.
go_install() {
  local name=$1 module=$2 version=$3 why=$4 bin="$deps_root/.deps/bin/$1"
  if [ -x "$bin" ] && "$bin" --version 2>&1 | grep -q "${version#v}"; then
    return 0
  fi
  if [ ! -x "$go_bin" ]; then
    echo "install-deps: cannot install $name $version (.deps/bin/$name, needed by $why):" \
      "no Go toolchain (go on PATH or /usr/local/go/bin/go); install Go >= 1.26 (Debian 12's" \
      "golang package is too old), or put a $name $version binary at $bin" >&2
    exit 1
  fi
  echo "install-deps: installing $name $version into .deps/bin" >&2
  if ! GOBIN="$deps_root/.deps/bin" "$go_bin" install "$module@$version" || [ ! -x "$bin" ]; then
    echo "install-deps: 'go install $module@$version' failed (see above) with" \
      "$("$go_bin" version 2>/dev/null || echo "$go_bin") (it needs Go >= 1.26): $name" \
      "(.deps/bin/$name) is needed by $why" >&2
    exit 1
  fi
}

go_install nats github.com/nats-io/natscli/nats v0.5.0 "the admin integration tests"
go_install nats-server github.com/nats-io/nats-server/v2 v2.15.3 "the integration tests and the benchmark"

# The Python client's tests (clients/python) run in a venv, .deps/python, with the pinned packages
# of clients/python/requirements-test.txt (nats-py, msgpack, pytest, setuptools) from PyPI. A venv
# whose stamp matches the requirements and the interpreter is kept as it is: no network then.
python_venv() {
  local venv="$deps_root/.deps/python" req="$deps_root/clients/python/requirements-test.txt"
  local py="" cand stamp
  for cand in "$(command -v python3 || true)" /usr/bin/python3; do
    if [ -n "$cand" ] && [ -x "$cand" ] &&
      "$cand" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$cand
      break
    fi
  done
  if [ -z "$py" ]; then
    echo "install-deps: no python3 >= 3.11 with venv and ensurepip for the Python client's tests" \
      "(.deps/python); install python3-venv, or put a Python 3.11 first on PATH" >&2
    exit 1
  fi
  stamp="$("$py" -c 'import sys; print(sys.version)' | head -1) $(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.dlq-stamp" 2>/dev/null)" = "$stamp" ] &&
    "$venv/bin/python" -c 'import nats, msgpack, pytest, setuptools' 2>/dev/null; then
    return 0
  fi
  echo "install-deps: making the Python venv .deps/python ($py) with clients/python/requirements-test.txt" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install -q -r "$req"; then
    echo "install-deps: pip could not install clients/python/requirements-test.txt into .deps/python" \
      "(see above); the Python client's tests need it" >&2
    rm -rf "$venv"
    exit 1
  fi
  echo "$stamp" >"$venv/.dlq-stamp"
}
python_venv

# The Go client's modules (clients/go/go.mod: nats.go, vmihailenco/msgpack and theirs) into the
# module cache, from the machine's Go proxy; a no-op once they are there (go.sum checks them).
if [ -x "$go_bin" ]; then
  if ! (cd "$deps_root/clients/go" && GOFLAGS=-mod=mod "$go_bin" mod download); then
    echo "install-deps: 'go mod download' in clients/go failed (see above): the Go client's" \
      "modules are needed by the client_go test" >&2
    exit 1
  fi
fi

# schemathesis from PyPI (Debian has none) tests the HTTP admin API against its OpenAPI document
# (CTest integration_schemathesis), in a venv under .deps/venv. Pinned: schemathesis 3.39.16's
# Hypothesis strategies break on the newest Hypothesis (6.170 gave "'many' object has no
# attribute 'more'" on every operation); 6.115.0 works.
st_version=3.39.16
hyp_version=6.115.0
venv="$deps_root/.deps/venv"
if ! { [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q "$st_version" &&
       "$venv/bin/python" -c "import hypothesis, sys; sys.exit(hypothesis.__version__ != '$hyp_version')" 2>/dev/null; }; then
  echo "install-deps: installing schemathesis $st_version into .deps/venv" >&2
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$st_version" "hypothesis==$hyp_version"; then
    echo "install-deps: pip could not install schemathesis $st_version from PyPI (needed by the" \
      "integration_schemathesis test)" >&2
    exit 1
  fi
fi

# playwright-core (tests/browser/package.json, pinned in its package-lock.json: 1.61.1, the last
# release that runs on Debian 12's Node 18; this machine's Node 20 runs it too) drives /usr/bin/chromium in the browser_console test.
# npm ci installs exactly the lock file into tests/browser/node_modules (gitignored); skipped when
# that version is there already. PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: never fetch a browser.
browser_dir="$deps_root/tests/browser"
pw_want=$(sed -n 's/.*"playwright-core": "\([0-9.]*\)".*/\1/p' "$browser_dir/package.json")
pw_have=""  # none yet on a fresh clone (sed's failure would end this script under pipefail)
if [ -f "$browser_dir/node_modules/playwright-core/package.json" ]; then
  pw_have=$(sed -n 's/.*"version": "\([0-9.]*\)".*/\1/p' "$browser_dir/node_modules/playwright-core/package.json" | head -1)
fi
if [ "$pw_have" != "$pw_want" ]; then
  echo "install-deps: installing playwright-core $pw_want into tests/browser/node_modules (npm ci)" >&2
  if ! (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); then
    echo "install-deps: 'npm ci' in tests/browser failed (see above): playwright-core is needed by" \
      "the browser_console test" >&2
    exit 1
  fi
fi
