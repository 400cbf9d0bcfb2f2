#!/usr/bin/env bash
# A real TimescaleDB for the test suite, the benchmarks and the demo: built once from source into a
# cache outside the repository, installed into a private, relocated copy of the machine's PostgreSQL 15
# (never into the system PostgreSQL: see docs/testing.md "The real TimescaleDB"), and run as a throw-away cluster with
# `shared_preload_libraries = 'timescaledb'` on its own port.
#
#   scripts/timescaledb.sh build    build (or reuse) TimescaleDB into the cache
#   scripts/timescaledb.sh start    build if needed, create a fresh cluster, start it, create database `test`
#   scripts/timescaledb.sh stop     stop the cluster started by `start` (pg_ctl, by its pid) and delete it
#   scripts/timescaledb.sh status   print whether it runs
#   scripts/timescaledb.sh built    print whether the build is in the cache (exit 1 if not): the demo uses it then
#   scripts/timescaledb.sh bin      print the directory of the private PostgreSQL's binaries
#
# Environment:
#   TIMESCALEDB_TARBALL   source tarball (default ../shared/vendor/timescaledb-2.28.3.tar.gz next to the repo,
#                         or next to the origin checkout of a local clone)
#   TIMESCALEDB_SHA256    its expected sha256 (default: that of the 2.28.3 tarball)
#   TSDB_PORT             port of the cluster (default 55432); TSDB_RUN_DIR its data directory
#                         (default /tmp/bar-writer-tsdb-<port>)
#   BAR_WRITER_CACHE      cache directory (default /var/cache/bar-writer as root, else ~/.cache/bar-writer)
#
# Without the tarball, this script cannot provide a server: it says what to install instead (any
# TimescaleDB 2.x server with the extension preloaded) and how to point the tests at it (TEST_PG_*).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=2.28.3
tarball=${TIMESCALEDB_TARBALL:-$repo/../shared/vendor/timescaledb-$version.tar.gz}
# A clone elsewhere (e.g. a clean clone under /tmp) of a checkout that has shared/ beside it: look there.
if [ -z "${TIMESCALEDB_TARBALL:-}" ] && [ ! -f "$tarball" ]; then
  origin=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  if [ -n "$origin" ] && [ -d "$origin" ] && [ -f "$origin/../shared/vendor/timescaledb-$version.tar.gz" ]; then
    tarball=$(cd "$origin/.." && pwd)/shared/vendor/timescaledb-$version.tar.gz
  fi
fi
sha256=${TIMESCALEDB_SHA256:-ec2f7de0ba53a473c01e0a57e09053898c6b1f7487228caff0f1d31c8cb2dedb}
pg_major=15
sys_pg=/usr/lib/postgresql/$pg_major
port=${TSDB_PORT:-55432}
run=${TSDB_RUN_DIR:-/tmp/bar-writer-tsdb-$port}
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/bar-writer; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/bar-writer; fi
cache=${BAR_WRITER_CACHE:-$default_cache}
# Keyed by version, PostgreSQL major and the tarball's hash: a different source never reuses a build.
root=$cache/timescaledb-$version-pg$pg_major-${sha256:0:12}
bin=$root/usr/lib/postgresql/$pg_major/bin

log() { printf 'timescaledb.sh: %s\n' "$*" >&2; }

missing_tarball() {
  log "the TimescaleDB source $tarball is not here (it ships with this workplace in ../shared/vendor/)."
  log "Instead, run any TimescaleDB 2.x server for PostgreSQL $pg_major+ with shared_preload_libraries = 'timescaledb'"
  log "(e.g. the image timescale/timescaledb:$version-pg$pg_major), with a database 'test' and a superuser, and point the"
  log "suite at it: TEST_TSDB_HOST=… TEST_TSDB_PORT=… TEST_TSDB_USER=… scripts/test.sh"
  log "(or TIMESCALEDB_TARBALL=/path/to/timescaledb-$version.tar.gz to build it here)."
  exit 3
}

# Runs a command as the cluster's owner: PostgreSQL refuses to run as root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

need_packages() {
  local -a want=()
  [ -x "$sys_pg/bin/pg_config" ] || [ -x /usr/bin/pg_config ] || want+=(postgresql-server-dev-$pg_major)
  [ -f /usr/include/postgresql/$pg_major/server/postgres.h ] || want+=(postgresql-server-dev-$pg_major)
  command -v cmake >/dev/null || want+=(cmake)
  command -v gcc >/dev/null || want+=(gcc)
  [ -x "$sys_pg/bin/postgres" ] || want+=(postgresql-$pg_major)
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${want[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}" >/dev/null
  else
    log "needs ${want[*]}: install them (Debian: apt-get install -y ${want[*]})"; exit 1
  fi
}

build() {
  if [ -f "$root/.complete" ]; then return 0; fi
  [ -f "$tarball" ] || missing_tarball
  local got; got=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "$got" != "$sha256" ]; then log "sha256 of $tarball is $got, expected $sha256; refusing to build"; exit 1; fi
  need_packages
  local work; work=$(mktemp -d /tmp/bar-writer-tsdb-build.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  log "building TimescaleDB $version for PostgreSQL $pg_major (once, ~4 min on 2 cores) into $root"
  tar -xzf "$tarball" -C "$work"
  local src; src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  (cd "$src" && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
      -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=NO -DUSE_TELEMETRY=OFF \
      -DPG_CONFIG="$sys_pg/bin/pg_config" >"$work/cmake.log" 2>&1) \
    || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
  make -C "$src/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 30 "$work/make.log" >&2; exit 1; }
  make -C "$src/build" install DESTDIR="$work/stage" >"$work/install.log" 2>&1 \
    || { tail -n 30 "$work/install.log" >&2; exit 1; }
  # A private PostgreSQL: the machine's binaries are relocatable (share and lib dirs are found relative
  # to bin/), so a copy under $root with the extension laid over it never touches the system server.
  rm -rf "$root.tmp"
  mkdir -p "$root.tmp/usr/lib/postgresql" "$root.tmp/usr/share/postgresql"
  cp -a "$sys_pg" "$root.tmp/usr/lib/postgresql/"
  cp -a "/usr/share/postgresql/$pg_major" "$root.tmp/usr/share/postgresql/"
  cp -a "$work/stage/usr/." "$root.tmp/usr/"
  rm -rf "$root"
  mv "$root.tmp" "$root"
  chmod -R a+rX "$cache"
  touch "$root/.complete"
  log "built: $root"
}

running() {
  [ -f "$run/data/postmaster.pid" ] && kill -0 "$(head -n 1 "$run/data/postmaster.pid")" 2>/dev/null
}

start() {
  if running; then log "already running on 127.0.0.1:$port ($run)"; return 0; fi
  build
  if [ "$(id -u)" = 0 ] && [ ! -x "$bin/postgres" ]; then log "$bin/postgres missing"; exit 1; fi
  # The owner must reach the binaries: every directory above them must be traversable.
  if ! as_owner test -x "$bin/postgres"; then
    log "user postgres cannot reach $bin (set BAR_WRITER_CACHE to a directory it can read)"; exit 1
  fi
  rm -rf "$run"
  mkdir -p "$run"
  [ "$(id -u)" = 0 ] && chown postgres: "$run"
  as_owner "$bin/initdb" -D "$run/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$run/initdb.log" 2>&1 \
    || { cat "$run/initdb.log" >&2; exit 1; }
  cat >>"$run/data/postgresql.conf" <<CONF
shared_preload_libraries = 'timescaledb'
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$run'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
max_wal_size = 2GB
CONF
  as_owner "$bin/pg_ctl" -D "$run/data" -l "$run/server.log" -w -t 60 start >/dev/null \
    || { tail -n 30 "$run/server.log" >&2; exit 1; }
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAtc 'CREATE DATABASE test' >/dev/null
  log "TimescaleDB $version on PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port (pid $(head -n 1 "$run/data/postmaster.pid"))"
}

stop() {
  if ! running; then log "not running"; rm -rf "$run"; return 0; fi
  as_owner "$bin/pg_ctl" -D "$run/data" -m fast -w -t 60 stop >/dev/null || {
    log "pg_ctl stop failed; killing by pid"; kill -9 "$(head -n 1 "$run/data/postmaster.pid")" 2>/dev/null || true
  }
  rm -rf "$run"
  log "stopped"
}

case ${1:-} in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running on 127.0.0.1:$port ($run)"; else echo "not running"; exit 1; fi ;;
  built) if [ -f "$root/.complete" ]; then echo "built: $root"; else echo "not built"; exit 1; fi ;;
  bin) echo "$bin" ;;
  *) echo "usage: $0 build|start|stop|status|built|bin" >&2; exit 2 ;;
esac
