#!/usr/bin/env bash
# opensearch.sh - a real single-node OpenSearch for the tests: fetch (Maven Central) | start | stop | pause | resume | status | url | clean.
#
# The node is the official "integ-test-zip" distribution of OpenSearch
# (org.opensearch.distribution.integ-test-zip:opensearch:<version>:zip on
# Maven Central): the real server with only its transport module, hence no
# security plugin. It is fetched with mvn into the local Maven repository,
# unpacked under <repo>/.deps/ (git-ignored), and run with its own bin/opensearch
# on 127.0.0.1, on a free HTTP port chosen at the first start and kept in the
# run directory, so that `stop` then `start` brings the same node back on the
# same URL with its data (the tests use that to stop OpenSearch under load).
#
# Environment:
#   DLQ_OPENSEARCH_VERSION  default 2.19.6
#   DLQ_OPENSEARCH_DIR      run directory (config, data, logs, pid, port); default
#                           ${TMPDIR:-/tmp}/dlq-opensearch-<hash of the repo path>
#   DLQ_OPENSEARCH_HEAP     JVM heap, default "-Xms512m -Xmx1g"
#   DLQ_OPENSEARCH_WAIT_S   how long `start` waits for the cluster to turn green/yellow, default 240
#
# `start [--fresh]` prints the URL on stdout and exits 0 once the cluster
# health is green (or yellow), non-zero when the node could not start (the log
# tail goes to stderr). --fresh wipes the data first. OpenSearch refuses to run
# as root: as root the node runs as the user nobody (setpriv).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${DLQ_OPENSEARCH_VERSION:-2.19.6}
deps="$root/.deps"
home="$deps/opensearch-$version"
hash=$(printf '%s' "$root" | md5sum | cut -c1-8)
run=${DLQ_OPENSEARCH_DIR:-${TMPDIR:-/tmp}/dlq-opensearch-$hash}
heap=${DLQ_OPENSEARCH_HEAP:--Xms512m -Xmx1g}
wait_s=${DLQ_OPENSEARCH_WAIT_S:-240}
artifact="org.opensearch.distribution.integ-test-zip:opensearch:$version:zip"

log() { echo "opensearch.sh: $*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Installs Java 17 and Maven from Debian when they are missing (a fresh machine).
need_tools() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v curl >/dev/null || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  is_root || sudo="sudo"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

java_home() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME"
  else
    dirname "$(dirname "$(readlink -f "$(command -v java)")")"
  fi
}

# Downloads the distribution with mvn (cached in ~/.m2) and unpacks it under .deps/.
fetch() {
  need_tools
  if [ -x "$home/bin/opensearch" ]; then
    return 0
  fi
  mkdir -p "$deps"
  log "fetching $artifact from Maven Central"
  mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory="$deps" -Dmdep.overWriteReleases=false \
    >"$deps/mvn-opensearch.log" 2>&1 || { cat "$deps/mvn-opensearch.log" >&2; log "mvn failed"; return 1; }
  local zip="$deps/opensearch-$version.zip" tmp
  tmp=$(mktemp -d "$deps/unpack.XXXXXX")
  unzip -q "$zip" -d "$tmp"
  rm -rf "$home"
  mv "$tmp/opensearch-$version" "$home"
  rm -rf "$tmp" "$zip"
  log "unpacked into $home"
}

pid_alive() {
  [ -f "$run/pid" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null
}

free_port() {
  python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

url() { echo "http://127.0.0.1:$(cat "$run/port")"; }

health() {
  curl -s -m 5 "$(url)/_cluster/health" 2>/dev/null || true
}

# The directory the node runs from: .deps/ itself when the user nobody can read it, else a copy.
node_home() {
  if ! is_root; then echo "$home"; return; fi
  if setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$home/lib" -a -x "$home/bin" 2>/dev/null; then
    echo "$home"
  else
    if [ ! -x "$run/home/bin/opensearch" ]; then
      rm -rf "$run/home"
      cp -a "$home" "$run/home"
    fi
    echo "$run/home"
  fi
}

start() {
  local fresh=0
  [ "${1:-}" = "--fresh" ] && fresh=1
  fetch
  mkdir -p "$run"
  if pid_alive; then
    if [ $fresh -eq 0 ]; then
      url
      return 0
    fi
    stop
  fi
  [ $fresh -eq 1 ] && rm -rf "$run/data" "$run/logs"
  mkdir -p "$run/data" "$run/logs" "$run/tmp" "$run/config"
  chmod 755 "$run" # mktemp -d makes 0700: the node's user must get in
  local p tp
  if [ -f "$run/port" ]; then
    p=$(cat "$run/port")
  else
    p=$(free_port)
    echo "$p" >"$run/port"
  fi
  tp=$(free_port)
  while [ "$tp" = "$p" ]; do tp=$(free_port); done
  if port_busy "$p"; then
    log "port $p is taken by another process"
    return 1
  fi
  # Our own config: the distribution's log4j2 settings, a small heap, no GC log files.
  cp "$home/config/log4j2.properties" "$run/config/"
  : >"$run/config/opensearch.yml"
  cat >"$run/config/jvm.options" <<EOF
-XX:+UseG1GC
-Djava.io.tmpdir=\${OPENSEARCH_TMPDIR}
-XX:-HeapDumpOnOutOfMemoryError
18-:-Djava.security.manager=allow
-Djava.util.concurrent.ForkJoinPool.common.threadFactory=org.opensearch.secure_sm.SecuredForkJoinWorkerThreadFactory
EOF
  local nh
  nh=$(node_home)
  local as=()
  if is_root; then
    chown -R 65534:65534 "$run/data" "$run/logs" "$run/tmp" "$run/config"
    as=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all)
  fi
  log "starting OpenSearch $version on 127.0.0.1:$p (run dir $run)"
  (
    cd "$run"
    export JAVA_HOME
    JAVA_HOME=$(java_home)
    export OPENSEARCH_PATH_CONF="$run/config" OPENSEARCH_TMPDIR="$run/tmp" OPENSEARCH_JAVA_OPTS="$heap"
    exec setsid "${as[@]}" "$nh/bin/opensearch" \
      -Ecluster.name="dlq-test-$hash" -Enode.name=node-1 -Ediscovery.type=single-node \
      -Enetwork.host=127.0.0.1 -Ehttp.port="$p" -Etransport.port="$tp" \
      -Epath.data="$run/data" -Epath.logs="$run/logs" \
      -Eaction.auto_create_index=true -Ecluster.routing.allocation.disk.threshold_enabled=false \
      >"$run/stdout.log" 2>&1 </dev/null
  ) &
  echo $! >"$run/pid"
  local deadline=$((SECONDS + wait_s)) h
  while [ $SECONDS -lt $deadline ]; do
    if ! pid_alive; then
      log "OpenSearch exited during start-up; last lines of $run/stdout.log:"
      tail -40 "$run/stdout.log" >&2 || true
      return 1
    fi
    h=$(health)
    case "$h" in
      *'"status":"green"'*|*'"status":"yellow"'*)
        log "ready: $(url) ($(echo "$h" | sed -E 's/.*"status":"([a-z]+)".*/\1/'))"
        url
        return 0 ;;
    esac
    sleep 1
  done
  log "OpenSearch did not turn green within ${wait_s}s; last lines of $run/stdout.log:"
  tail -40 "$run/stdout.log" >&2 || true
  stop
  return 1
}

stop() {
  if ! pid_alive; then
    rm -f "$run/pid"
    return 0
  fi
  local pid
  pid=$(cat "$run/pid")
  # The pid is setsid's child: the JVM itself (exec), leader of its own session.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "OpenSearch did not stop within 30s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for _ in $(seq 40); do
    port_busy "$(cat "$run/port")" || break
    sleep 0.25
  done
  rm -f "$run/pid"
  log "stopped"
}

status() {
  if pid_alive && [ -n "$(health)" ]; then
    echo "$(url) $(health)"
    return 0
  fi
  echo "not running"
  return 1
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  restart) stop; start ;;
  # SIGSTOP / SIGCONT of the node: a store that does not answer for a while (tests/integration/test_cluster.c)
  pause) pid_alive && kill -STOP "$(cat "$run/pid")" ;;
  resume) pid_alive && kill -CONT "$(cat "$run/pid")" ;;
  status) status ;;
  url) [ -f "$run/port" ] && url ;;
  clean) stop; rm -rf "$run" ;;
  *) echo "usage: $0 fetch | start [--fresh] | stop | restart | pause | resume | status | url | clean" >&2; exit 2 ;;
esac
