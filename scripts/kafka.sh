#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) for development, the demo and the test suite.
#
#   scripts/kafka.sh fetch    download the broker jars from Maven Central into .kafka/<version>/libs
#   scripts/kafka.sh start    fetch if needed, format storage once, start in the background, wait until ready
#   scripts/kafka.sh stop     stop the broker started by `start` (by its pid)
#   scripts/kafka.sh status   print whether it runs
#
# Environment: KAFKA_VERSION (default 4.4.0, the newest line; 3.9.x and 4.1.x are the compatibility lines), KAFKA_PORT (default 9092;
# the controller listens on KAFKA_PORT+1), KAFKA_WORK_DIR (default <repo>/.kafka).
# KAFKA_SASL_USER and KAFKA_SASL_PASSWORD (both set): the client listener on KAFKA_PORT is SASL_PLAINTEXT
# with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for that user (brokers talk to each other on KAFKA_PORT+2).
# kafkajs 2.2.4 (the client bar-writer uses) works against 4.4.x, 4.1.x and 3.9.x with the classic group protocol.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${KAFKA_VERSION:-4.4.0}
port=${KAFKA_PORT:-9092}
cport=$((port + 1))
work=${KAFKA_WORK_DIR:-$repo/.kafka}
libs=$work/$version/libs
run=$work/run-$version-$port
pidfile=$run/kafka.pid

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Kafka from Maven Central"; exit 1; }
  command -v java >/dev/null || { log "Java 17 is required to run Kafka"; exit 1; }
  local profile=kafka4
  case $version in 3.*) profile='kafka3,!kafka4' ;; esac
  log "fetching org.apache.kafka:kafka_2.13:$version from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$repo/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -Dkafka.version="$version" -P"$profile"
  touch "$libs/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  mkdir -p "$run/data"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port" inter=PLAINTEXT
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" sasl=""
  if [ -n "${KAFKA_SASL_USER:-}" ]; then
    listeners="SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,INTERNAL://127.0.0.1:$((port + 2))"
    advertised="SASL_PLAINTEXT://127.0.0.1:$port,INTERNAL://127.0.0.1:$((port + 2))"
    inter=INTERNAL
    protocols="SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT"
    sasl="sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${KAFKA_SASL_USER}=\"${KAFKA_SASL_PASSWORD}\";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  fi
  cat >"$run/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=$inter
listener.security.protocol.map=$protocols
$sasl
log.dirs=$run/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.retention.hours=24
PROPS
  cat >"$run/log4j2.properties" <<'PROPS'
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=${sys:kafka.logs.dir}/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
logger.started.name=kafka.server.KafkaRaftServer
logger.started.level=INFO
PROPS
  cat >"$run/log4j.properties" <<'PROPS'
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=WARN
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.server.KafkaRaftServer=INFO
PROPS
}

java_opts() {
  printf '%s\n' -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$run" "-Dlog4j2.configurationFile=$run/log4j2.properties" \
    "-Dlog4j.configuration=file:$run/log4j.properties"
}

start() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then log "port $port is taken by another process; set KAFKA_PORT"; exit 1; fi
  fetch
  write_config
  local -a opts; mapfile -t opts < <(java_opts)
  if [ ! -f "$run/data/meta.properties" ]; then
    local id
    id=$(java "${opts[@]}" -cp "$libs/*" kafka.tools.StorageTool random-uuid | tail -n 1)
    local -a scram=()
    if [ -n "${KAFKA_SASL_USER:-}" ]; then
      scram=(--add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]"
             --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]")
    fi
    java "${opts[@]}" -cp "$libs/*" kafka.tools.StorageTool format -t "$id" -c "$run/server.properties" "${scram[@]}" >"$run/format.log" 2>&1 \
      || { cat "$run/format.log" >&2; exit 1; }
  fi
  # setsid: the broker must not share the caller's process group (a Ctrl-C in a test run is ours to handle).
  setsid java "${opts[@]}" -cp "$libs/*" kafka.Kafka "$run/server.properties" >"$run/stdout.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 240); do
    if ! running; then log "broker exited during start-up; last lines of $run/stdout.log and server.log:"; tail -n 30 "$run/stdout.log" "$run/server.log" >&2 2>/dev/null; exit 1; fi
    if port_open "$port" && grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$run/server.log" 2>/dev/null; then
      log "Kafka $version ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0
    fi
    sleep 0.25
  done
  log "broker did not become ready within 60 s; see $run/server.log"; exit 1
}

stop() {
  if ! running; then log "not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; log "stopped"; return 0; }; sleep 0.25; done
  log "broker did not stop in 30 s; killing"; kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"
}

case ${1:-} in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
