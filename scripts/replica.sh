#!/usr/bin/env bash
# A streaming replica pair for the read-replica test (test/integration/replica.test.ts): a throw-away
# primary cluster of the machine's PostgreSQL 15 and a hot standby made from it with
# `pg_basebackup -R` (streaming replication), each on its own port, run as user postgres, stopped by pid.
#
#   scripts/replica.sh start           create both (fresh), start them, create database `test` on the primary
#   scripts/replica.sh stop            stop both (pg_ctl, by pid) and delete their data
#   scripts/replica.sh stop-standby    stop the standby only (its data kept)
#   scripts/replica.sh start-standby   start the standby again (it catches up by streaming)
#   scripts/replica.sh status          print whether each runs
#
# Environment: REPLICA_PRIMARY_PORT (default 57432), REPLICA_STANDBY_PORT (default 57433),
# REPLICA_RUN_DIR (default /tmp/bar-writer-replica-<primary port>), PG_BIN (default
# /usr/lib/postgresql/15/bin).
set -euo pipefail

primary_port=${REPLICA_PRIMARY_PORT:-57432}
standby_port=${REPLICA_STANDBY_PORT:-57433}
run=${REPLICA_RUN_DIR:-/tmp/bar-writer-replica-$primary_port}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf 'replica.sh: %s\n' "$*" >&2; }

# PostgreSQL refuses to run as root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { # data directory
  [ -f "$1/postmaster.pid" ] && kill -0 "$(head -n 1 "$1/postmaster.pid")" 2>/dev/null
}

start_server() { # name data-dir
  as_owner "$bin/pg_ctl" -D "$2" -l "$run/$1.log" -w -t 60 start >/dev/null \
    || { tail -n 30 "$run/$1.log" >&2; exit 1; }
}

stop_server() { # name data-dir
  if ! running "$2"; then return 0; fi
  as_owner "$bin/pg_ctl" -D "$2" -m fast -w -t 60 stop >/dev/null || {
    log "pg_ctl stop of the $1 failed; killing by pid"; kill -9 "$(head -n 1 "$2/postmaster.pid")" 2>/dev/null || true
  }
}

start() {
  if running "$run/primary" && running "$run/standby"; then log "already running ($run)"; return 0; fi
  stop_server standby "$run/standby"
  stop_server primary "$run/primary"
  rm -rf "$run"
  mkdir -p "$run"
  [ "$(id -u)" = 0 ] && chown postgres: "$run"
  as_owner "$bin/initdb" -D "$run/primary" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$run/initdb.log" 2>&1 || { cat "$run/initdb.log" >&2; exit 1; }
  cat >>"$run/primary/postgresql.conf" <<CONF
port = $primary_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$run'
wal_level = replica
max_wal_senders = 4
hot_standby = on
max_connections = 50
shared_buffers = 64MB
fsync = off
CONF
  echo "host replication postgres 127.0.0.1/32 trust" >>"$run/primary/pg_hba.conf"
  start_server primary "$run/primary"
  "$bin/psql" -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres -qAtc 'CREATE DATABASE test' >/dev/null
  as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$run/standby" -R -X stream \
    -c fast >"$run/basebackup.log" 2>&1 || { cat "$run/basebackup.log" >&2; exit 1; }
  # The copy's settings, but its own port (standby.signal and primary_conninfo written by -R).
  echo "port = $standby_port" >>"$run/standby/postgresql.auto.conf"
  start_server standby "$run/standby"
  log "primary on 127.0.0.1:$primary_port (pid $(head -n 1 "$run/primary/postmaster.pid")), hot standby on 127.0.0.1:$standby_port (pid $(head -n 1 "$run/standby/postmaster.pid"))"
}

stop() {
  stop_server standby "$run/standby"
  stop_server primary "$run/primary"
  rm -rf "$run"
  log "stopped"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  stop-standby) stop_server standby "$run/standby"; log "standby stopped" ;;
  start-standby) if running "$run/standby"; then log "standby already running"; else start_server standby "$run/standby"; log "standby started"; fi ;;
  status)
    p=$(running "$run/primary" && echo running || echo "not running")
    s=$(running "$run/standby" && echo running || echo "not running")
    echo "primary 127.0.0.1:$primary_port $p; standby 127.0.0.1:$standby_port $s"
    [ "$p" = running ] && [ "$s" = running ]
    ;;
  *) echo "usage: $0 start|stop|stop-standby|start-standby|status" >&2; exit 2 ;;
esac
