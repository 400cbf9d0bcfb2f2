#!/usr/bin/env bash
# The full test suite, from a fresh clone: installs dependencies, type-checks and lints, builds, starts
# the real Kafka broker (4.4.x, the newest line, from Maven Central), a real TimescaleDB (scripts/timescaledb.sh: built
# once from ../shared/vendor into a cache, run as a throw-away cluster) and checks the machine's
# PostgreSQL; runs the unit tests, the integration tests on TimescaleDB (bars_1m a hypertable), the
# container image (built with podman or docker, then run against the same broker and database), the
# operations suite on fixed seeds (test/nemesis: random operations against real services, an
# independent checker), the write-path suites again on plain PostgreSQL, the core pipeline suites with the service behind PgBouncer
# in transaction mode (scripts/pgbouncer.sh; pgbouncer installed from Debian when missing), the read API
# on a streaming replica (scripts/replica.sh: a primary and a pg_basebackup hot standby), then the
# Kafka 3.9.x compatibility run and a shorter one on 4.1.x (the previous main line). Stops every
# broker, cluster and pooler it started, by pid.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    unit tests, type-check and lint only
#
# TimescaleDB elsewhere: TEST_TSDB_HOST/PORT/USER (a TimescaleDB 2.x server with the extension preloaded,
# database `test`) instead of building one. Without either, the TimescaleDB run is skipped with a warning,
# except in CI (CI=true), where that fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

main_version=${KAFKA_VERSION:-4.4.0}
compat_version=${KAFKA_COMPAT_VERSION:-3.9.1}
# The previous main line, a shorter run; KAFKA_PREVIOUS_VERSION= (empty) skips it.
previous_version=${KAFKA_PREVIOUS_VERSION-4.1.1}
previous_port=${TEST_KAFKA_PREVIOUS_PORT:-19492}
main_port=${TEST_KAFKA_PORT:-19092}
compat_port=${TEST_KAFKA_COMPAT_PORT:-19192}

step() { printf '\n== %s ==\n' "$*"; }

# Every jest run has a backstop: a handle a failing test leaves open (a retry loop, a child process)
# keeps jest alive after its summary ("Jest did not exit one second after the test run has
# completed"); the stage then fails after JEST_STAGE_TIMEOUT (default 30 min) instead of the whole
# run hanging to CI's limit. No stage takes a third of that on this machine.
jest=(timeout --kill-after=30s "${JEST_STAGE_TIMEOUT:-1800s}" npx jest)

# A node_modules that is a symbolic link (an install shared by git worktrees) is left alone: npm ci
# would empty the directory it points to, under every checkout that shares it.
if [ ! -L node_modules ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  step "npm ci"
  npm ci --no-audit --no-fund
fi

step "type-check and lint"
npx tsc --noEmit -p tsconfig.json
npm run --silent lint

step "unit tests"
"${jest[@]}" --selectProjects unit --ci

step "alert rules (promtool)"
scripts/prometheus.sh install
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

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
tsdb_started=""
# Every port this script's servers listen on lies below 32768, outside Linux's ephemeral range
# (32768-60999): a port in it can be taken at any moment by an outgoing connection's local end (the
# broker's own connections, a pool's), and a listener started then fails with "address already in use".
pgbouncer_port=${TEST_PGBOUNCER_PORT:-26432}
pgbouncer_started=""
prometheus_port=${TEST_PROMETHEUS_PORT:-19690}
replica_primary_port=${TEST_REPLICA_PRIMARY_PORT:-27432}
replica_standby_port=${TEST_REPLICA_STANDBY_PORT:-27433}
prometheus_started=""
replica_started=""
cleanup() {
  if [ -n "$replica_started" ]; then
    REPLICA_PRIMARY_PORT=$replica_primary_port REPLICA_STANDBY_PORT=$replica_standby_port scripts/replica.sh stop || true
  fi
  if [ -n "$prometheus_started" ]; then PROMETHEUS_PORT=$prometheus_port scripts/prometheus.sh stop || true; fi
  if [ -n "$pgbouncer_started" ]; then PGBOUNCER_PORT=$pgbouncer_port scripts/pgbouncer.sh stop || true; fi
  for spec in "${started[@]}"; do
    KAFKA_VERSION=${spec%@*} KAFKA_PORT=${spec#*@} scripts/kafka.sh stop || true
  done
  if [ -n "$tsdb_started" ]; then TSDB_PORT=$tsdb_started scripts/timescaledb.sh stop || true; fi
}
trap cleanup EXIT

step "TimescaleDB"
tsdb_port=${TEST_TSDB_PORT:-25432}
if [ -n "${TEST_TSDB_HOST:-}" ]; then
  echo "using the TimescaleDB server at $TEST_TSDB_HOST:$tsdb_port (TEST_TSDB_HOST)"
  tsdb_host=$TEST_TSDB_HOST
else
  tsdb_host=127.0.0.1
  # One already running (a developer's) is used and left running: only what this run starts is stopped.
  already=""
  if TSDB_PORT=$tsdb_port scripts/timescaledb.sh status >/dev/null 2>&1; then already=1; fi
  set +e
  TSDB_PORT=$tsdb_port scripts/timescaledb.sh start
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    if [ -z "$already" ]; then tsdb_started=$tsdb_port; fi
  elif [ $rc -eq 3 ] && [ "${CI:-}" != "true" ]; then
    echo "WARNING: no TimescaleDB (see above): the suites run on plain PostgreSQL only" >&2
    tsdb_host=""
  else
    echo "TimescaleDB is required here (CI=${CI:-}); see above" >&2
    exit 1
  fi
fi
if [ -n "$tsdb_host" ]; then
  export TEST_TSDB_HOST=$tsdb_host TEST_TSDB_PORT=$tsdb_port TEST_TSDB_BIN="$(scripts/timescaledb.sh bin)"
  # The write-path suites run on the hypertable: the harness checks that bars_1m is one.
  on_tsdb=(TEST_PG_HOST="$tsdb_host" TEST_PG_PORT="$tsdb_port" TEST_PG_USER="${TEST_TSDB_USER:-postgres}" TEST_PG_TIMESCALEDB=1)
else
  on_tsdb=()
fi
on_plain=(TEST_PG_HOST=127.0.0.1 TEST_PG_PORT=5432 TEST_PG_USER=postgres TEST_PG_TIMESCALEDB=0)

start_kafka() { # version port
  if ! KAFKA_VERSION=$1 KAFKA_PORT=$2 scripts/kafka.sh status >/dev/null 2>&1; then
    KAFKA_VERSION=$1 KAFKA_PORT=$2 scripts/kafka.sh start
    started+=("$1@$2")
  fi
}

step "integration tests on Kafka $main_version, TimescaleDB ${tsdb_host:+$tsdb_host:$tsdb_port}"
start_kafka "$main_version" "$main_port"
# Suites that start a broker of their own, and the interop suite's Java producer (kafka-clients), use
# the line under test.
export TEST_KAFKA_VERSION=$main_version
# A real Prometheus with the shipped rules and job, for prometheus.test.ts (which writes its targets).
if ! PROMETHEUS_PORT=$prometheus_port scripts/prometheus.sh status >/dev/null 2>&1; then
  prometheus_started=1 # set first: a start that fails half-way is stopped at exit too
  PROMETHEUS_PORT=$prometheus_port scripts/prometheus.sh start
fi
export TEST_PROMETHEUS_URL=http://127.0.0.1:$prometheus_port
export TEST_PROMETHEUS_TARGETS=$(PROMETHEUS_PORT=$prometheus_port scripts/prometheus.sh targets)
if [ ${#on_tsdb[@]} -gt 0 ]; then
  env "${on_tsdb[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$main_port "${jest[@]}" --selectProjects integration --ci --runInBand
else
  env "${on_plain[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$main_port "${jest[@]}" --selectProjects integration --ci --runInBand \
    --testPathIgnorePatterns 'test/integration/timescale\.test\.ts'
fi

if [ ${#on_tsdb[@]} -gt 0 ]; then
  step "operations suite (test/nemesis: fixed seeds, its own broker, TimescaleDB cluster and PgBouncer)"
  env "${on_tsdb[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$main_port "${jest[@]}" --selectProjects nemesis --ci --runInBand
fi

step "container image (scripts/image.sh: build, then test/image against the same broker and database)"
scripts/image.sh build
if [ ${#on_tsdb[@]} -gt 0 ]; then image_db=("${on_tsdb[@]}"); else image_db=("${on_plain[@]}"); fi
env "${image_db[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$main_port TEST_IMAGE=bar-writer:test \
  "${jest[@]}" --selectProjects image --ci --runInBand

if [ ${#on_tsdb[@]} -gt 0 ]; then
  step "write path on plain PostgreSQL (127.0.0.1:5432)"
  env "${on_plain[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$main_port "${jest[@]}" --selectProjects integration --ci --runInBand \
    --testPathPatterns 'test/integration/(pipeline|store|faults|privileges)\.test\.ts'
fi

step "core pipeline suites through PgBouncer (transaction mode, 127.0.0.1:$pgbouncer_port)"
if [ ${#on_tsdb[@]} -gt 0 ]; then bouncer_db=("${on_tsdb[@]}") bouncer_target=$tsdb_host:$tsdb_port
else bouncer_db=("${on_plain[@]}") bouncer_target=127.0.0.1:5432; fi
if PGBOUNCER_PORT=$pgbouncer_port scripts/pgbouncer.sh status >/dev/null 2>&1; then
  echo "using the PgBouncer already running on $pgbouncer_port"
else
  PGBOUNCER_PORT=$pgbouncer_port PGBOUNCER_TARGET_HOST=${bouncer_target%:*} PGBOUNCER_TARGET_PORT=${bouncer_target#*:} \
    PGBOUNCER_USERS=${TEST_TSDB_USER:-postgres} scripts/pgbouncer.sh start
  pgbouncer_started=1
fi
# The tests migrate and check directly; only the services under test go through the pooler.
env "${bouncer_db[@]}" TEST_PGBOUNCER_PORT=$pgbouncer_port TEST_KAFKA_BROKERS=127.0.0.1:$main_port \
  "${jest[@]}" --selectProjects integration --ci --runInBand \
  --testPathPatterns 'test/integration/(pipeline|rebalance|faults|http)\.test\.ts'
if [ -n "$pgbouncer_started" ]; then PGBOUNCER_PORT=$pgbouncer_port scripts/pgbouncer.sh stop; pgbouncer_started=""; fi

step "readers on a streaming replica (scripts/replica.sh: a primary and a pg_basebackup hot standby)"
replica_started=1 # set first: a start that fails half-way is stopped at exit too
REPLICA_PRIMARY_PORT=$replica_primary_port REPLICA_STANDBY_PORT=$replica_standby_port scripts/replica.sh start
env TEST_PG_HOST=127.0.0.1 TEST_PG_PORT=$replica_primary_port TEST_PG_USER=postgres TEST_PG_TIMESCALEDB=0 \
  TEST_REPLICA_PRIMARY_PORT=$replica_primary_port TEST_REPLICA_STANDBY_PORT=$replica_standby_port \
  TEST_KAFKA_BROKERS=127.0.0.1:$main_port \
  "${jest[@]}" --selectProjects integration --ci --runInBand test/integration/replica.test.ts
REPLICA_PRIMARY_PORT=$replica_primary_port REPLICA_STANDBY_PORT=$replica_standby_port scripts/replica.sh stop
replica_started=""

step "compatibility run on Kafka $compat_version"
start_kafka "$compat_version" "$compat_port"
if [ ${#on_tsdb[@]} -gt 0 ]; then compat_db=("${on_tsdb[@]}"); else compat_db=("${on_plain[@]}"); fi
env "${compat_db[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$compat_port TEST_KAFKA_VERSION=$compat_version \
  "${jest[@]}" --selectProjects integration --ci --runInBand \
  --testPathPatterns 'test/integration/(pipeline|rebalance|rejects|interop)\.test\.ts'

if [ -n "$previous_version" ]; then
  step "compatibility run on Kafka $previous_version"
  start_kafka "$previous_version" "$previous_port"
  env "${compat_db[@]}" TEST_KAFKA_BROKERS=127.0.0.1:$previous_port TEST_KAFKA_VERSION=$previous_version \
    "${jest[@]}" --selectProjects integration --ci --runInBand \
    --testPathPatterns 'test/integration/(pipeline|rejects|interop)\.test\.ts'
fi
