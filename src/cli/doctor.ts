/**
 * `bar-writer doctor`: checks a deployment before it is trusted, one line per check, with the
 * configuration the service itself would run with. A failed check (✗) is something the running service
 * needs and does not have; a warning (!) works but deserves a look (no TimescaleDB, more privileges than
 * needed, a policy job that failed). Exit 0 only when nothing failed.
 */
import { registerCodecs } from '../consumer/codecs';
import { committedOf, createKafka } from '../consumer/kafkajs';
import { createLogger } from '../observe/logger';
import { AGGREGATES } from '../store/aggregates';
import {
  hypertableStatus,
  policyJobs,
  serverVersion,
  timescaleStatus,
  writerPrivileges,
} from '../store/catalog';
import { appliedMigrations, loadMigrations } from '../store/migrate';
import { createPool, type Pool } from '../store/pool';
import type { ExtraColumn } from '../contract/extras';
import { extraColumnsState } from '../store/extraColumns';
import { config, EXIT, guarded, oneLine, parse, type Command, type Io } from './command';
import { PROBE_HEADER } from './dlq';

type Verdict = 'ok' | 'warn' | 'fail';
const MARK: Record<Verdict, string> = { ok: '✓', warn: '!', fail: '✗' };

class Report {
  failed = 0;
  warned = 0;
  constructor(private readonly io: Io) {}
  line(verdict: Verdict, what: string, detail: string): void {
    if (verdict === 'fail') this.failed++;
    if (verdict === 'warn') this.warned++;
    this.io.out(`${MARK[verdict]} ${what}: ${detail}`);
  }
}

async function checkDatabase(
  r: Report,
  pool: Pool,
  schema: string,
  user: string,
  extraColumns: readonly ExtraColumn[],
): Promise<void> {
  let version: string;
  try {
    version = await serverVersion(pool);
  } catch (err) {
    r.line('fail', 'PostgreSQL', `unreachable: ${oneLine(err)}`);
    return;
  }
  r.line('ok', 'PostgreSQL', `reachable, version ${version}`);
  const ts = await timescaleStatus(pool);
  const timescale = ts.version !== null && ts.preloaded;
  if (timescale) r.line('ok', 'TimescaleDB', `extension ${ts.version}, preloaded`);
  else if (ts.available && !ts.preloaded)
    r.line(
      'fail',
      'TimescaleDB',
      'installed but not in shared_preload_libraries: add it and restart PostgreSQL',
    );
  else
    r.line('warn', 'TimescaleDB', 'not installed: bars_1m is a plain table (no compression, no aggregates)');

  const byVersion = await appliedMigrations(pool, schema).catch(() => null);
  const known = loadMigrations();
  if (byVersion === null) {
    r.line('fail', 'migrations', `none applied in schema ${schema}: run bar-writer migrate as the owner`);
    return;
  }
  const missing = known.filter((m) => !byVersion.has(m.version)).map((m) => m.name);
  const changed = known
    .filter((m) => byVersion.has(m.version) && byVersion.get(m.version) !== m.checksum)
    .map((m) => m.name);
  if (missing.length > 0)
    r.line('fail', 'migrations', `not applied: ${missing.join(', ')}: run bar-writer migrate`);
  else if (changed.length > 0)
    r.line('fail', 'migrations', `applied with other contents: ${changed.join(', ')}`);
  else r.line('ok', 'migrations', `${known.length} of ${known.length} applied in schema ${schema}`);

  if (timescale) {
    const ht = await hypertableStatus(pool, schema);
    if (ht.interval === null)
      r.line('warn', 'hypertable', `${schema}.bars_1m is a plain table in a TimescaleDB database`);
    else
      r.line(
        'ok',
        'hypertable',
        `bars_1m, chunks of ${ht.interval}, ${ht.chunks} chunks (${ht.compressed} compressed)`,
      );
    const jobs = await policyJobs(pool, schema);
    const compression = jobs.filter((j) => j.proc === 'policy_compression');
    r.line(
      ht.compression && compression.length > 0 ? 'ok' : 'warn',
      'compression',
      ht.compression ? `enabled, ${compression.length} policy` : 'not enabled (migration 003)',
    );
    const aggregates = jobs.filter((j) => j.proc === 'policy_refresh_continuous_aggregate');
    const names = aggregates.map((j) => j.name).sort();
    const failing = aggregates.filter((j) => j.status === 'Failed' || !j.scheduled);
    if (AGGREGATES.some((a) => !names.includes(a.name)))
      r.line(
        'warn',
        'aggregates',
        `refresh policies for ${names.join(', ') || 'none'} (expected ${AGGREGATES.map((a) => a.name).join(', ')})`,
      );
    else if (failing.length > 0)
      r.line(
        'warn',
        'aggregates',
        `${failing.map((j) => `${j.name} (${j.scheduled ? `last run ${j.status}` : 'unscheduled'})`).join(', ')}: see timescaledb_information.job_stats`,
      );
    else r.line('ok', 'aggregates', `${names.join(', ')}: policies scheduled, none failing`);
  }

  const extras = await extraColumnsState(pool, schema, extraColumns);
  if (extras.missing.length > 0 || extras.wrongType.length > 0)
    r.line(
      'fail',
      'extra columns',
      [
        ...(extras.missing.length > 0
          ? [
              `BARS_EXTRA_COLUMNS names ${extras.missing.join(', ')}, which the table lacks: run bar-writer migrate`,
            ]
          : []),
        ...extras.wrongType,
      ].join('; '),
    );
  else if (extras.unconfigured.length > 0)
    r.line(
      'warn',
      'extra columns',
      `bars_1m has ${extras.unconfigured.join(', ')}, not in BARS_EXTRA_COLUMNS: kept with their data, no longer written`,
    );
  else if (extraColumns.length > 0)
    r.line('ok', 'extra columns', `${extraColumns.map((c) => c.name).join(', ')} in bars_1m and bars_latest`);

  const { lacking, excess } = await writerPrivileges(pool, user, schema);
  if (lacking.length > 0)
    r.line('fail', `privileges of ${user}`, `lacks ${lacking.join('; ')} (GRANT bar_writer_rw TO ${user})`);
  else if (excess.length > 0)
    r.line(
      'warn',
      `privileges of ${user}`,
      `sufficient, and more than needed: ${excess.join(', ')} (run the service as a member of bar_writer_rw)`,
    );
  else r.line('ok', `privileges of ${user}`, 'what the writer needs and no more');
}

async function checkKafka(r: Report, cfg: ReturnType<typeof config>): Promise<void> {
  const missing = registerCodecs().filter((c) => !c.ok);
  if (missing.length > 0)
    r.line('fail', 'codecs', `cannot load ${missing.map((c) => `${c.codec} (${c.error})`).join(', ')}`);
  else r.line('ok', 'codecs', 'gzip, snappy, lz4 and zstd load');
  const kafka = createKafka(cfg.kafka, createLogger('silent'));
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    r.line(
      'ok',
      'Kafka',
      `reachable at ${cfg.kafka.brokers.join(',')}: ${cluster.brokers.length} broker(s), cluster ${cluster.clusterId}`,
    );
  } catch (err) {
    r.line('fail', 'Kafka', `unreachable at ${cfg.kafka.brokers.join(',')}: ${oneLine(err)}`);
    await admin.disconnect().catch(() => undefined);
    return;
  }
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(cfg.kafka.topic)) {
      r.line('fail', 'topic', `${cfg.kafka.topic} does not exist (the service does not create it)`);
    } else {
      const meta = await admin.fetchTopicMetadata({ topics: [cfg.kafka.topic] });
      const partitions = meta.topics[0]?.partitions ?? [];
      const leaderless = partitions.filter((p) => p.leader < 0).length;
      r.line(
        leaderless ? 'fail' : 'ok',
        'topic',
        `${cfg.kafka.topic}: ${partitions.length} partition(s)${leaderless ? `, ${leaderless} without a leader` : ''}`,
      );
      const [ends, committed, described] = await Promise.all([
        admin.fetchTopicOffsets(cfg.kafka.topic),
        admin.fetchOffsets({ groupId: cfg.kafka.groupId, topics: [cfg.kafka.topic] }),
        admin.describeGroups([cfg.kafka.groupId]),
      ]);
      const at = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, p.offset]));
      let lag = 0n;
      for (const e of ends) {
        const c = committedOf(at.get(e.partition) ?? '-1');
        lag += BigInt(e.high) - (c ?? BigInt(e.low));
      }
      const g = described.groups[0];
      r.line(
        'ok',
        'group',
        `${cfg.kafka.groupId}: ${g?.state ?? 'unknown'}, ${g?.members.length ?? 0} member(s), lag ${lag}`,
      );
    }
    const dlq = cfg.kafka.dlqTopic;
    if (!dlq) {
      r.line(
        'warn',
        'dead-letter topic',
        'KAFKA_DLQ_TOPIC is empty: rejected messages are only counted and logged',
      );
    } else if (!topics.includes(dlq)) {
      r.line(
        'warn',
        'dead-letter topic',
        `${dlq} does not exist yet (the service creates it at start when it may)`,
      );
    } else {
      // Writable: a probe record, marked so that dlq replay and consumers can skip it.
      const producer = kafka.producer();
      try {
        await producer.connect();
        await producer.send({
          topic: dlq,
          acks: -1,
          messages: [{ key: null, value: null, headers: { [PROBE_HEADER]: 'doctor' } }],
        });
        r.line(
          'ok',
          'dead-letter topic',
          `${dlq}: writable (a probe record with header ${PROBE_HEADER} was written)`,
        );
      } catch (err) {
        r.line('fail', 'dead-letter topic', `${dlq} is not writable: ${oneLine(err)}`);
      } finally {
        await producer.disconnect().catch(() => undefined);
      }
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

async function run(args: string[], io: Io): Promise<number> {
  parse(args, {});
  const cfg = config();
  const r = new Report(io);
  r.line(
    'ok',
    'configuration',
    `valid (database ${cfg.db.name}, schema ${cfg.db.schema}, topic ${cfg.kafka.topic}, group ${cfg.kafka.groupId})`,
  );
  const pool = createPool({ ...cfg.db, maxConnections: 1, maxIdleConnections: 0 }, 'bar-writer-doctor');
  try {
    await checkDatabase(r, pool, cfg.db.schema, cfg.db.user, cfg.write.extraColumns);
  } catch (err) {
    r.line('fail', 'database checks', oneLine(err));
  } finally {
    await pool.end().catch(() => undefined);
  }
  await checkKafka(r, cfg);
  io.out(
    r.failed === 0
      ? `ready: nothing failed (${r.warned} warning(s))`
      : `not ready: ${r.failed} check(s) failed`,
  );
  return r.failed === 0 ? EXIT.ok : EXIT.finding;
}

export const doctorCommand: Command = {
  summary: 'check a deployment (configuration, database, TimescaleDB, privileges, Kafka) before trusting it',
  help: `Usage: bar-writer doctor

Checks, one line each (✓ fine, ! works but deserves a look, ✗ the service needs it and it is missing),
with the service's own configuration: the configuration is valid; PostgreSQL answers (its version);
TimescaleDB is installed and preloaded; the migrations are applied; bars_1m is a hypertable with
compression and the continuous aggregates with their policies (and whether a policy job failed);
DB_USER has what the writer needs and no more; the codecs load; Kafka answers; the topic exists and
every partition has a leader; the group (state, members, lag); the dead-letter topic takes a probe
record (header ${PROBE_HEADER}, which dlq replay skips).

Exit: 0 nothing failed (warnings allowed); 3 a check failed; 2 invalid usage or configuration.`,
  run: (args, io) => guarded('doctor', io, () => run(args, io)),
};
