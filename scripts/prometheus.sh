#!/usr/bin/env bash
# A local Prometheus for the test suite, configured from deploy/prometheus/ (the shipped rule file and
# the bar-writer job; targets from a file the tests write, 1 s scrape and evaluation interval:
# test/support/prometheusConfig.ts).
#
#   scripts/prometheus.sh start    install prometheus (Debian) if missing, start it in the background, wait for it
#   scripts/prometheus.sh stop     stop the Prometheus started by `start` (by its pid)
#   scripts/prometheus.sh status   print whether it runs
#   scripts/prometheus.sh targets  print the targets file the tests write
#   scripts/prometheus.sh install  install prometheus and promtool (Debian) if missing
#
# Environment: PROMETHEUS_PORT (default 59090), PROMETHEUS_RUN_DIR (default /tmp/bar-writer-prometheus-<port>).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
port=${PROMETHEUS_PORT:-59090}
run=${PROMETHEUS_RUN_DIR:-/tmp/bar-writer-prometheus-$port}
pidfile=$run/prometheus.pid
targets=$run/targets.json

log() { printf 'prometheus.sh: %s\n' "$*" >&2; }

install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing prometheus (apt-get)"
    # Without recommends: Debian's prometheus recommends node-exporter, which would start a service of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
    # Debian's own instance (port 9090), if its init started one: ours runs on its own port and config.
    systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true
  else
    log "needs prometheus and promtool: install them (Debian: apt-get install -y prometheus)"; exit 1
  fi
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prometheus answers /-/ready (curl where installed, else node, which the repository needs anyway).
ready() {
  local url="http://127.0.0.1:$port/-/ready"
  if command -v curl >/dev/null; then curl -fsS "$url" >/dev/null 2>&1; return; fi
  node -e "fetch('$url').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
}

start() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then log "port $port is taken by another process; set PROMETHEUS_PORT"; exit 1; fi
  install
  rm -rf "$run"
  mkdir -p "$run/data"
  echo '[]' >"$targets"
  (cd "$repo" && node --import tsx test/support/prometheusConfig.ts "$targets") >"$run/prometheus.yml"
  promtool check config "$run/prometheus.yml" >"$run/check.log" 2>&1 || { cat "$run/check.log" >&2; exit 1; }
  setsid prometheus --config.file="$run/prometheus.yml" --storage.tsdb.path="$run/data" \
    --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=1d --web.enable-admin-api \
    >"$run/prometheus.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if ! running; then log "prometheus exited during start-up:"; tail -n 20 "$run/prometheus.log" >&2; exit 1; fi
    if ready; then
      log "Prometheus on 127.0.0.1:$port (pid $(cat "$pidfile")), targets from $targets"; return 0
    fi
    sleep 0.25
  done
  log "prometheus did not become ready within 30 s:"; tail -n 20 "$run/prometheus.log" >&2
  stop >/dev/null 2>&1 || true
  exit 1
}

# Stops it by its pid (when that pid is still a prometheus: a stale pid file is ignored), then removes
# its run directory (configuration, targets, data).
stop() {
  if ! running || ! grep -q prometheus "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
    log "not running"; rm -rf "$run"; return 0
  fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || { rm -rf "$run"; log "stopped"; return 0; }; sleep 0.25; done
  log "prometheus did not stop in 20 s; killing"; kill -9 "$pid" 2>/dev/null || true; rm -rf "$run"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
  targets) echo "$targets" ;;
  install) install ;;
  *) echo "usage: $0 start|stop|status|targets|install" >&2; exit 2 ;;
esac
