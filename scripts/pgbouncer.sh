#!/usr/bin/env bash
# A local PgBouncer in transaction mode, in front of a PostgreSQL server, for the test suite: how a
# managed PostgreSQL/TimescaleDB is usually reached. bar-writer works through it; migrations need a
# direct (or session-mode) connection, so the tests migrate directly and point only the service here.
#
#   scripts/pgbouncer.sh start    install pgbouncer (Debian) if missing, start it in the background, wait for it
#   scripts/pgbouncer.sh stop     stop the PgBouncer started by `start` (by its pid)
#   scripts/pgbouncer.sh status   print whether it runs
#
# Environment: PGBOUNCER_PORT (default 56432), PGBOUNCER_TARGET_HOST / PGBOUNCER_TARGET_PORT (default
# 127.0.0.1:5432, trust auth). Every database of the target is served under its own name, to the users
# in PGBOUNCER_USERS (default postgres). Startup parameters beyond PgBouncer's own list are refused
# (ignore_startup_parameters stays empty): a client that sends one (statement_timeout, say) is refused,
# as by a managed pooler.
set -euo pipefail

port=${PGBOUNCER_PORT:-56432}
target_host=${PGBOUNCER_TARGET_HOST:-127.0.0.1}
target_port=${PGBOUNCER_TARGET_PORT:-5432}
users=${PGBOUNCER_USERS:-postgres}
run=${PGBOUNCER_RUN_DIR:-/tmp/bar-writer-pgbouncer-$port}
pidfile=$run/pgbouncer.pid

log() { printf 'pgbouncer.sh: %s\n' "$*" >&2; }

# PgBouncer refuses to run as root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
  command -v pgbouncer >/dev/null && return 0
  [ -x /usr/sbin/pgbouncer ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing pgbouncer (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
    # Debian starts its own instance on 6432; ours runs on its own port and config.
    systemctl disable --now pgbouncer >/dev/null 2>&1 || service pgbouncer stop >/dev/null 2>&1 || true
  else
    log "needs pgbouncer: install it (Debian: apt-get install -y pgbouncer)"; exit 1
  fi
}

bin() { command -v pgbouncer 2>/dev/null || echo /usr/sbin/pgbouncer; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  rm -rf "$run"
  mkdir -p "$run"
  : >"$run/userlist.txt"
  for u in ${users//,/ }; do printf '"%s" ""\n' "$u" >>"$run/userlist.txt"; done
  cat >"$run/pgbouncer.ini" <<INI
[databases]
* = host=$target_host port=$target_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $run/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
server_reset_query =
ignore_startup_parameters =
logfile = $run/pgbouncer.log
admin_users = postgres
INI
  [ "$(id -u)" = 0 ] && chown -R postgres: "$run"
  return 0
}

start() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then log "port $port is taken by another process; set PGBOUNCER_PORT"; exit 1; fi
  install
  write_config
  # Foreground process in its own session; its pid is ours to stop.
  as_owner setsid "$(bin)" "$run/pgbouncer.ini" >"$run/stdout.log" 2>&1 </dev/null &
  local launcher=$!
  for _ in $(seq 1 80); do
    local pid
    pid=$(pgrep -f "^$(bin) $run/pgbouncer.ini" | head -n 1 || true)
    if [ -n "$pid" ] && port_open "$port"; then
      echo "$pid" >"$pidfile"
      log "PgBouncer (transaction mode) on 127.0.0.1:$port -> $target_host:$target_port (pid $pid)"
      return 0
    fi
    if ! kill -0 "$launcher" 2>/dev/null && [ -z "$pid" ]; then
      log "pgbouncer exited during start-up:"; cat "$run/stdout.log" "$run/pgbouncer.log" >&2 2>/dev/null || true; exit 1
    fi
    sleep 0.25
  done
  log "pgbouncer did not listen within 20 s; see $run/pgbouncer.log"; exit 1
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return 0; }; sleep 0.25; done
  log "pgbouncer did not stop in 10 s; killing"; kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
