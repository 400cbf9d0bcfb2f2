#!/usr/bin/env bash
# One command for a newcomer: installs dependencies, builds, starts the real Kafka broker, migrates a
# database, runs bar-writer and the bundled demo producer, and prints every 5 s one line: bars landed,
# bars/s, consumer lag, rejects, and (on TimescaleDB) the latest bars_5m bucket.
# Ctrl-C stops everything it started (the service drains first).
#
#   scripts/demo.sh                 TimescaleDB if it is at hand (below), else plain PostgreSQL
#   scripts/demo.sh --timescaledb   TimescaleDB from scripts/timescaledb.sh, built first if needed (2-4 min once)
#   scripts/demo.sh --postgres      plain PostgreSQL on 127.0.0.1:5432 even when TimescaleDB is at hand
#
# The database:
#   - DB_HOST or DB_PORT set: that server as it is (TimescaleDB or not: the demo says which);
#   - else TimescaleDB "at hand": scripts/timescaledb.sh runs one (status) on TSDB_PORT (55432), or has
#     built it (then a throw-away cluster is started for the demo and stopped at the end);
#   - else plain PostgreSQL on 127.0.0.1:5432, the quick path: bars_1m is then a regular table, with no
#     hypertable, compression or aggregates.
# Always database DB_NAME (postgres) as DB_USER (postgres), schema DB_SCHEMA (public).
#
# Defaults: Kafka 4.4.0 on 127.0.0.1:9092 (KAFKA_PORT), HTTP on :8080 (HTTP_PORT). Override with the
# service's own env names (DB_*, KAFKA_*, HTTP_PORT) and DEMO_* (src/demo/producer.ts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=auto
for arg in "$@"; do
  case $arg in
    --timescaledb) mode=timescaledb ;;
    --postgres) mode=postgres ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option $arg (see scripts/demo.sh --help)" >&2; exit 2 ;;
  esac
done

tsdb_port=${TSDB_PORT:-55432}
if [ "$mode" = auto ]; then
  if [ -n "${DB_HOST:-}${DB_PORT:-}" ]; then
    mode=given
  elif TSDB_PORT=$tsdb_port scripts/timescaledb.sh status >/dev/null 2>&1 \
    || scripts/timescaledb.sh built >/dev/null 2>&1; then
    mode=timescaledb
  else
    mode=postgres
  fi
fi
if [ "$mode" = timescaledb ]; then
  DB_HOST=127.0.0.1 DB_PORT=$tsdb_port
fi

export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432} DB_USER=${DB_USER:-postgres} DB_NAME=${DB_NAME:-postgres}
export DB_SCHEMA=${DB_SCHEMA:-public}
export KAFKA_PORT=${KAFKA_PORT:-9092}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT} KAFKA_TOPIC=${KAFKA_TOPIC:-bars.1m}
export HTTP_PORT=${HTTP_PORT:-8080} LOG_LEVEL=${LOG_LEVEL:-info}
if [ -n "${DB_PASSWORD:-}" ]; then export PGPASSWORD=$DB_PASSWORD; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$HTTP_PORT"; then
  echo "demo: port $HTTP_PORT is taken; choose another with HTTP_PORT=…" >&2
  exit 1
fi

# A node_modules that is a symbolic link (an install shared by git worktrees) is left alone: npm ci
# would empty the directory it points to, under every checkout that shares it.
if [ ! -L node_modules ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  npm ci --no-audit --no-fund
fi
npm run --silent build

# What this run started, stopped again at the end (and only that).
started_kafka=0
started_tsdb=0
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop || true; fi
  if [ "$started_tsdb" = 1 ]; then TSDB_PORT=$tsdb_port scripts/timescaledb.sh stop || true; fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

if [ "$mode" = timescaledb ] && ! TSDB_PORT=$tsdb_port scripts/timescaledb.sh status >/dev/null 2>&1; then
  TSDB_PORT=$tsdb_port scripts/timescaledb.sh start # builds it first when needed
  started_tsdb=1
fi
if ! scripts/kafka.sh status >/dev/null 2>&1; then
  scripts/kafka.sh start
  started_kafka=1
fi

npm run --silent migrate

sql() { psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -XAtqc "$1" 2>/dev/null; }
where="$DB_HOST:$DB_PORT (database $DB_NAME, schema $DB_SCHEMA)"
hypertable=$(sql "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = '$DB_SCHEMA' AND hypertable_name = 'bars_1m'" || echo 0)
if [ "$hypertable" = 1 ]; then
  echo "demo: TimescaleDB at $where"
  echo "demo: bars_1m is a hypertable (1-day chunks); bars_5m, bars_15m, bars_1h, bars_1d fill as bars land"
else
  echo "demo: plain PostgreSQL at $where"
  echo "demo: bars_1m is a regular table: no hypertable, no compression, no aggregates (bars_5m … bars_1d);"
  echo "demo: for those, scripts/demo.sh --timescaledb (builds TimescaleDB once, 2-4 min)"
fi

mkdir -p .demo
# Each child in a session of its own: a Ctrl-C on the terminal reaches only this script, which then
# stops them with one SIGTERM each (a second signal would cut the service's drain short).
setsid node dist/demo/producer.js >.demo/producer.log 2>&1 &
pids+=($!)
sleep 2 # the producer creates the topic (6 partitions) before the service subscribes
setsid node --single-threaded-gc dist/main.js >.demo/bar-writer.log 2>&1 & # as npm start runs it
pids+=($!)
base="http://127.0.0.1:$HTTP_PORT"
echo "demo: bar-writer running (logs: .demo/bar-writer.log, .demo/producer.log); Ctrl-C to stop"
echo "demo: try  curl -s $base/readyz   curl -s '$base/v1/bars/AA/latest?limit=2'"
if [ "$hypertable" = 1 ]; then
  echo "demo:      psql -h $DB_HOST -p $DB_PORT -U $DB_USER -d $DB_NAME -c 'SELECT * FROM $DB_SCHEMA.bars_1h ORDER BY \"timestamp\" DESC LIMIT 5'"
fi

# The sum of a metric's series in the service's /metrics, or "?" while it does not answer.
metric_sum() {
  local text
  text=$(curl -s --max-time 2 "$base/metrics" 2>/dev/null) || { echo "?"; return; }
  awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF; n++ } END { print n ? sum : "?" }' <<<"$text"
}
latest_5m() {
  sql "SELECT to_char(\"timestamp\" AT TIME ZONE 'UTC', 'HH24:MI') || 'Z, ' || count(*) || ' symbols'
         FROM $DB_SCHEMA.bars_5m WHERE \"timestamp\" = (SELECT max(\"timestamp\") FROM $DB_SCHEMA.bars_5m)
         GROUP BY \"timestamp\"" || echo "?"
}
chunks() {
  sql "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_schema = '$DB_SCHEMA' AND hypertable_name = 'bars_1m'" || echo "?"
}

last=$(sql "SELECT count(*) FROM $DB_SCHEMA.bars_1m" || echo 0)
while sleep 5; do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "demo: a process exited; see .demo/bar-writer.log and .demo/producer.log"; exit 1; }
  done
  now=$(sql "SELECT count(*) FROM $DB_SCHEMA.bars_1m" || echo "$last")
  line="$(date -u +%H:%M:%S) bars landed $now ($(((now - last) / 5))/s), lag $(metric_sum kafka_consumer_lag), rejects $(metric_sum bars_rejected_total)"
  if [ "$hypertable" = 1 ]; then line="$line, chunks $(chunks), latest bars_5m $(latest_5m)"; fi
  echo "demo: $line"
  last=$now
done
