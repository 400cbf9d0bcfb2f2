#!/usr/bin/env bash
# The full test suite, from a fresh clone: installs dependencies, type-checks and lints, builds, starts
# the real Kafka broker (4.1.x, from Maven Central) and checks the machine's PostgreSQL, runs the unit
# and integration tests, then the Kafka 3.9.x compatibility run. Stops every broker it started.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    unit tests, type-check and lint only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

main_version=${KAFKA_VERSION:-4.1.1}
compat_version=${KAFKA_COMPAT_VERSION:-3.9.1}
main_port=${TEST_KAFKA_PORT:-19092}
compat_port=${TEST_KAFKA_COMPAT_PORT:-19192}

step() { printf '\n== %s ==\n' "$*"; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
fi

step "type-check and lint"
npx tsc --noEmit -p tsconfig.json
npm run --silent lint

step "unit tests"
npx jest --selectProjects unit --ci

[ "${1:-}" = "--quick" ] && exit 0

step "build"
npm run --silent build

step "PostgreSQL"
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start the machine's cluster" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 40); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432

started=()
cleanup() {
  for spec in "${started[@]}"; do
    KAFKA_VERSION=${spec%@*} KAFKA_PORT=${spec#*@} scripts/kafka.sh stop || true
  done
}
trap cleanup EXIT

start_kafka() { # version port
  if ! KAFKA_VERSION=$1 KAFKA_PORT=$2 scripts/kafka.sh status >/dev/null 2>&1; then
    KAFKA_VERSION=$1 KAFKA_PORT=$2 scripts/kafka.sh start
    started+=("$1@$2")
  fi
}

step "integration tests on Kafka $main_version"
start_kafka "$main_version" "$main_port"
TEST_KAFKA_BROKERS=127.0.0.1:$main_port npx jest --selectProjects integration --ci --runInBand

step "compatibility run on Kafka $compat_version"
start_kafka "$compat_version" "$compat_port"
TEST_KAFKA_BROKERS=127.0.0.1:$compat_port npx jest --selectProjects integration --ci --runInBand \
  --testPathPatterns 'test/integration/(pipeline|rebalance|rejects)\.test\.ts'
