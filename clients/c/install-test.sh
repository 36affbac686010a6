#!/bin/sh
# install-test.sh BUILD_DIR - installs the build into a temporary prefix and builds the C client's examples against it with pkg-config, as a user would.
set -eu
build=$1
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name dlq-client.pc)
[ -n "$pc" ] || { echo "install-test: dlq-client.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
flags=$(pkg-config --cflags --libs dlq-client)
echo "install-test: pkg-config --cflags --libs dlq-client: $flags"
for ex in service worker; do
  # shellcheck disable=SC2086 # the flags are words
  cc -std=c11 -Wall -Wextra -Werror -o "$tmp/$ex" "$src/examples/$ex.c" $flags
done
# The installed library loads; with no server the examples say so and exit 1.
libdir=$(pkg-config --variable=libdir dlq-client)
for ex in service worker; do
  if LD_LIBRARY_PATH="$libdir" "$tmp/$ex" nats://127.0.0.1:1 2>"$tmp/$ex.err"; then
    echo "install-test: $ex ran without a server" >&2; exit 1
  fi
  grep -q "cannot connect" "$tmp/$ex.err" || { cat "$tmp/$ex.err" >&2; exit 1; }
done
echo "install-test: examples built and ran against $libdir"
