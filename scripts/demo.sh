#!/usr/bin/env bash
# One command for a newcomer: installs dependencies, builds, starts the real Kafka broker, migrates the
# local PostgreSQL, runs bar-writer and the bundled demo producer, and shows rows landing in bars_1m.
# Ctrl-C stops everything it started (the service drains first).
#
# Defaults: Kafka 4.4.0 on 127.0.0.1:9092, PostgreSQL 127.0.0.1:5432 database `postgres` as `postgres`,
# HTTP on :8080. Override with the service's own env names (DB_*, KAFKA_*, HTTP_PORT) and DEMO_*.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-5432} DB_USER=${DB_USER:-postgres} DB_NAME=${DB_NAME:-postgres}
export DB_SCHEMA=${DB_SCHEMA:-public}
export KAFKA_PORT=${KAFKA_PORT:-9092}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT} KAFKA_TOPIC=${KAFKA_TOPIC:-bars.1m}
export HTTP_PORT=${HTTP_PORT:-8080} LOG_LEVEL=${LOG_LEVEL:-info}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi
npm run --silent build

started_kafka=0
if ! scripts/kafka.sh status >/dev/null 2>&1; then scripts/kafka.sh start; started_kafka=1; fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop; fi
}
trap cleanup INT TERM EXIT

npm run --silent migrate

mkdir -p .demo
node dist/demo/producer.js &
pids+=($!)
sleep 2 # the producer creates the topic (6 partitions) before the service subscribes
node --single-threaded-gc dist/main.js > .demo/bar-writer.log 2>&1 & # as npm start runs it
pids+=($!)
echo "demo: bar-writer running (logs: .demo/bar-writer.log); http://127.0.0.1:$HTTP_PORT/readyz /metrics /v1/bars/AA/latest"
echo "demo: Ctrl-C to stop"

psql_count() {
  psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -Atc \
    "SELECT count(*) || ' rows, ' || count(DISTINCT symbol) || ' symbols, latest ' || coalesce(max(\"timestamp\")::text, '-') FROM \"$DB_SCHEMA\".bars_1m" 2>/dev/null || echo "?"
}
while sleep 5; do
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "demo: a process exited; see .demo/bar-writer.log"; exit 1; }; done
  echo "demo: bars_1m: $(psql_count)"
done
