/**
 * The runner: sets up a run (its own database, schema, topic, group; the services unless given), runs
 * the schedule's two tracks at once (the producer and the operations, one after another), samples the
 * fences and log ends every second, then quiesces (stops producing, brings everything up, waits until
 * every partition's fence and committed offset are at its log end), reads back everything the checker
 * needs and hands it over. Prints the seed first, the schedule as it runs, and the figures at the end.
 * Every process it starts is stopped by its pid, also on failure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import { registerCodecs } from '../../src/consumer/codecs';
import { applyAggregateTimezone } from '../../src/store/timescaleSettings';
import { migrate } from '../../src/store/migrate';
import { sleep, uniqueName, waitFor } from '../support/common';
import { runCli } from '../support/harness';
import { bulkIndexOfKey, bulkTotal, newStoredBulk, storeBulkRow } from './bulk';
import { check, renderFigures, writeInput, type CheckInput, type Verdict } from './checker';
import { NemesisProducer, readDeadLetters, readLog, type BulkKey } from './kafka';
import { OP_KINDS } from './model';
import type {
  BackfillDone,
  FenceRow,
  Incarnation,
  OpDone,
  ReplayMeasure,
  Sample,
  Schedule,
  SkipRange,
  StoredBulk,
  StoredRow,
  Window,
} from './model';
import { Noop, operations } from './operations';
import { CONFLICTS_WITH_LOCK, defaultEveryOp, describeOp, generate } from './schedule';
import {
  broker,
  emergencyStops,
  freePorts,
  Instances,
  PgBouncer,
  Postgres,
  tsdbBin,
  type Broker,
} from './system';

/** CLI failures an operator would answer by running the command again. */
const TRANSIENT =
  /EPIPE|ECONNRESET|ECONNREFUSED|server_login_retry|\(08\w{3}\)|\(57P0\d\)|terminat\w+ connection|Connection terminated/;

/** KAFKA_STALL_TIMEOUT of the instances, and the longest stall the checker accepts while healthy. */
export const STALL_TIMEOUT = '20s';
export const STALL_BOUND_MS = 90_000;

/** The services a run restarts: its own broker, TimescaleDB cluster and PgBouncer. */
export class Services {
  private constructor(
    readonly dir: string,
    readonly broker: Broker,
    readonly pg: Postgres,
    readonly bouncer: PgBouncer,
  ) {}

  static async start(log: (line: string) => void = console.log): Promise<Services> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nemesis-services-'));
    fs.chmodSync(dir, 0o755);
    const [kafkaPort, pgPort, bouncerPort] = [await freePorts(3), await freePorts(1), await freePorts(1)];
    const b = broker(kafkaPort);
    const pgc = new Postgres(tsdbBin(), path.join(dir, 'pg'), pgPort);
    const bouncer = new PgBouncer(bouncerPort, path.join(dir, 'pgbouncer'), pgPort);
    const services = new Services(dir, b, pgc, bouncer);
    emergencyStops.add(services.stopper);
    try {
      log(`nemesis: starting Kafka on ${b.brokers}, TimescaleDB on ${pgPort}, PgBouncer on ${bouncerPort}`);
      b.start();
      pgc.init();
      pgc.start();
      bouncer.start();
    } catch (err) {
      services.stop();
      throw err;
    }
    return services;
  }

  private readonly stopper = () => this.stop();

  /** Stops everything it started (each step tried). */
  stop(): void {
    emergencyStops.delete(this.stopper);
    for (const step of [() => this.bouncer.stop(), () => this.pg.remove(), () => this.broker.remove()]) {
      try {
        step();
      } catch (err) {
        console.error('nemesis: stopping a service failed:', (err as Error).message);
      }
    }
    fs.rmSync(this.broker.runDir, { recursive: true, force: true });
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RunOptions {
  seed: number;
  minutes: number;
  scenario?: 'random' | 'issue';
  /** Each operation kind at least this many times (default: 3 from 20 minutes on, else 0). */
  everyOp?: number;
  /** Messages a second of the bulk feed (./bulk.ts; default 0: none). */
  rate?: number;
  /** Keep the run's directory: instance logs, schedule.json, report.txt, and the PostgreSQL and broker logs. */
  keep?: boolean;
  log?: (line: string) => void;
}

export interface RunResult {
  verdict: Verdict;
  report: string[];
  schedule: Schedule;
  workDir: string;
}

const ms = (t: number) => `${(t / 1000).toFixed(1).padStart(6)}s`;

export class Run {
  readonly schedule: Schedule;
  readonly db = uniqueName('nemesis');
  readonly schema = uniqueName('nm');
  readonly topic = uniqueName('nemesis').replace(/_/g, '.');
  readonly dlqTopic = `${this.topic}.dlq`;
  readonly group = uniqueName('nemesis_group');
  readonly workDir: string;
  readonly kafka: Kafka;
  admin!: Admin;
  readonly producer: NemesisProducer;
  readonly instances: Instances;
  readonly pool: pg.Pool;

  partitions: number;
  topicMissing = false;
  lockDone: Promise<void> = Promise.resolve();
  /** Fence rows are held locked (lock-fences) right now. */
  locked = false;
  readonly incarnations: Incarnation[] = [];
  readonly windows: Window[] = [];
  readonly skips: SkipRange[] = [];
  readonly backfills: BackfillDone[] = [];
  readonly replays: ReplayMeasure[] = [];
  readonly opsDone: OpDone[] = [];
  readonly samples: Sample[] = [];
  /** CLI runs repeated after a transient failure (reported, not a discrepancy). */
  readonly cliRetries: string[] = [];
  private readonly t0 = Date.now();
  private noInstanceSince: number | null = 0;
  private monitoring = false;
  private monitorLoop: Promise<void> = Promise.resolve();
  private versionTimeOption: boolean | null = null;
  readonly print: (line: string) => void;

  constructor(
    readonly options: RunOptions,
    readonly services: Services,
  ) {
    registerCodecs();
    this.print = options.log ?? ((line) => console.log(line));
    this.schedule = generate({
      seed: options.seed,
      minutes: options.minutes,
      scenario: options.scenario ?? 'random',
      everyOp: options.everyOp,
      rate: options.rate,
    });
    this.partitions = this.schedule.initialPartitions;
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), `nemesis-${this.schedule.seed}-`));
    this.kafka = new Kafka({
      clientId: uniqueName('nemesis'),
      brokers: [services.broker.brokers],
      logLevel: logLevel.NOTHING,
    });
    this.producer = new NemesisProducer(
      this.kafka,
      () => this.topic,
      () => this.partitions,
      this.schedule.bulk ? { seed: this.schedule.seed, plan: this.schedule.bulk } : null,
    );
    this.pool = new pg.Pool({
      host: '127.0.0.1',
      port: services.pg.port,
      user: 'postgres',
      database: this.db,
      max: 4,
      application_name: 'nemesis',
    });
    this.pool.on('error', () => undefined); // PostgreSQL restarts under it
    this.instances = new Instances(
      (id) => this.instanceEnv(id),
      this.workDir,
      (n) => this.instanceCount(n),
    );
  }

  /** What the read-backs need to know the bulk feed's records (undefined: the run has none). */
  get bulkKey(): BulkKey | undefined {
    const b = this.schedule.bulk;
    return b ? { seed: this.schedule.seed, symbols: b.symbols } : undefined;
  }

  get broker(): Broker {
    return this.services.broker;
  }
  get pg(): Postgres {
    return this.services.pg;
  }
  get bouncer(): PgBouncer {
    return this.services.bouncer;
  }

  now(): number {
    return Date.now() - this.t0;
  }

  log(line: string): void {
    this.print(`[${ms(this.now())}] ${line}`);
  }

  /** The environment operators give the service and the CLI: through PgBouncer, this run's names. */
  private baseEnv(): Record<string, string> {
    return {
      DB_HOST: '127.0.0.1',
      DB_PORT: String(this.bouncer.port),
      DB_USER: 'postgres',
      DB_NAME: this.db,
      DB_SCHEMA: this.schema,
      KAFKA_BROKERS: this.broker.brokers,
      KAFKA_TOPIC: this.topic,
      KAFKA_DLQ_TOPIC: this.dlqTopic,
      KAFKA_GROUP_ID: this.group,
      LOG_LEVEL: 'warn',
    };
  }

  private instanceEnv(id: number): Record<string, string> {
    return {
      ...this.baseEnv(),
      KAFKA_CLIENT_ID: `nemesis-${id}`,
      KAFKA_SESSION_TIMEOUT: '10s',
      KAFKA_STALL_TIMEOUT: STALL_TIMEOUT,
      KAFKA_METADATA_MAX_AGE: '5s',
      KAFKA_MAX_WAIT: '100ms',
      BARS_DB_WRITE_INTERVAL: '200ms',
      BARS_DB_RETRY_MAX_DELAY: '2s',
      DB_STATEMENT_TIMEOUT: '10s',
      DB_MAX_CONNECTIONS: '4',
      DB_MAX_IDLE_CONNS: '2',
      SHUTDOWN_TIMEOUT: '15s',
      HTTP_PORT: '0',
    };
  }

  private instanceCount(n: number): void {
    if (n === 0 && this.noInstanceSince === null) this.noInstanceSince = this.now();
    if (n > 0 && this.noInstanceSince !== null) {
      this.windows.push({ from: this.noInstanceSince, to: this.now(), partitions: null, why: 'no instance' });
      this.noInstanceSince = null;
    }
  }

  /** The running instance the schedule means (its id when running, else one of the running ones). */
  pickInstance(id: number): number | null {
    const ids = this.instances.ids();
    if (ids.length === 0) return null;
    return ids.includes(id) ? id : ids[id % ids.length]!;
  }

  /** Stops every instance and waits until the group has no members (else starts them again and throws). */
  async stopAllInstances(): Promise<number[]> {
    const ids = await this.instances.terminateAll();
    try {
      await this.waitFor(
        'the group to have no members',
        async () => {
          const d = await this.admin.describeGroups([this.group]);
          return (d.groups[0]?.members.length ?? 0) === 0;
        },
        30_000,
        500,
      );
    } catch (err) {
      this.instances.resumeAll(ids);
      throw err;
    }
    return ids;
  }

  waitFor<T>(
    what: string,
    probe: () => Promise<T | null | undefined | false>,
    timeoutMs: number,
    intervalMs = 250,
  ): Promise<T> {
    return waitFor(what, probe, timeoutMs, intervalMs);
  }

  /**
   * Runs the CLI as an operator would: a run that fails on a transient connection error (the pooler
   * refusing logins for a while after PostgreSQL restarted, a pooled connection the restart broke) is
   * run again after 5 s, up to 3 times ("an interrupted run is simply run again"); each retry is
   * reported. `outputs` gets the output of every attempt (a reset prints what it moves before moving).
   */
  async cli(args: string[], outputs: string[] = []): Promise<Awaited<ReturnType<typeof runCli>>> {
    for (let attempt = 1; ; attempt++) {
      const res = await runCli('dist/cli/main.js', args, this.baseEnv(), { timeoutMs: 120_000 });
      outputs.push(res.stdout);
      if (res.code !== 1 || attempt > 3 || !TRANSIENT.test(res.stderr)) return res;
      const said = res.stderr.trim().split('\n').slice(-1)[0] ?? '';
      this.cliRetries.push(`${args.slice(0, 2).join(' ')}: ${said}`);
      this.log(`   ${args.slice(0, 2).join(' ')} failed (${said}); running it again in 5 s`);
      await sleep(5000);
    }
  }

  /** bars_1m's chunks that hold compressed rows, and its compression job's runs so far (diagnostics). */
  async compression(): Promise<string> {
    const r = await this.pool.query<{ compressed: string; chunks: string; runs: string | null }>(
      `SELECT (SELECT count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks
               WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m')::text AS compressed,
              (SELECT count(*) FROM timescaledb_information.chunks
               WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m')::text AS chunks,
              (SELECT sum(s.total_runs)::text FROM timescaledb_information.job_stats s
               JOIN timescaledb_information.jobs j USING (job_id)
               WHERE j.hypertable_schema = $1 AND j.hypertable_name = 'bars_1m' AND j.proc_name = 'policy_compression') AS runs`,
      [this.schema],
    );
    const row = r.rows[0]!;
    return `${row.compressed}/${row.chunks} chunks compressed, compression job run ${row.runs ?? 0} time(s)`;
  }

  async backfillHasVersionTime(): Promise<boolean> {
    if (this.versionTimeOption === null) {
      const res = await this.cli(['backfill', '--help']);
      this.versionTimeOption = res.output.includes('--version-time');
    }
    return this.versionTimeOption;
  }

  async directClient(): Promise<pg.Client> {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: this.pg.port,
      user: 'postgres',
      database: this.db,
      application_name: 'nemesis',
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  }

  /** The fence rows of the run's group and topic. */
  async fences(): Promise<Map<number, FenceRow>> {
    const r = await this.pool.query<{
      partition: number;
      next_offset: string;
      last_fingerprint: string | null;
      updated_ms: number;
    }>(
      `SELECT partition, next_offset::text AS next_offset, last_fingerprint,
              (extract(epoch FROM updated_at) * 1000)::float8 AS updated_ms
       FROM "${this.schema}".bar_writer_offsets WHERE consumer_group = $1 AND topic = $2`,
      [this.group, this.topic],
    );
    return new Map(
      r.rows.map((x) => [
        x.partition,
        { next: BigInt(x.next_offset), fingerprint: x.last_fingerprint, updatedMs: x.updated_ms },
      ]),
    );
  }

  async logEnds(): Promise<Map<number, bigint>> {
    return new Map(
      (await this.admin.fetchTopicOffsets(this.topic)).map((o) => [o.partition, BigInt(o.high)]),
    );
  }

  async committed(): Promise<Map<number, bigint | null>> {
    const res = await this.admin.fetchOffsets({ groupId: this.group, topics: [this.topic] });
    return new Map(
      (res[0]?.partitions ?? []).map((p) => [p.partition, p.offset === '-1' ? null : BigInt(p.offset)]),
    );
  }

  /**
   * Every partition's fence and committed offset at its log end, twice in a row. With the bulk feed the
   * wait grows by 1 s per 5,000 records of the topic's log: a reset to earliest (the replay, an
   * operator's) has the instances read the whole log again, millions of records in a long run.
   */
  async waitCaughtUp(timeoutMs: number): Promise<void> {
    let streak = 0;
    let last = '';
    if (this.schedule.bulk) {
      const ends = await this.logEnds().catch(() => new Map<number, bigint>());
      timeoutMs += Number([...ends.values()].reduce((a, b) => a + b, 0n)) / 5;
    }
    try {
      await this.waitFor(
        'every partition caught up (fence = committed = log end)',
        async () => {
          const fences = await this.fences();
          const [ends, committed] = [await this.logEnds(), await this.committed()];
          const behind = [...ends]
            .filter(([p, end]) => (fences.get(p)?.next ?? 0n) !== end || (committed.get(p) ?? 0n) !== end)
            .map(
              ([p, end]) =>
                `${p}: fence ${fences.get(p)?.next ?? '-'} committed ${committed.get(p) ?? '-'} end ${end}`,
            );
          last = behind.join('; ');
          streak = behind.length === 0 ? streak + 1 : 0;
          return streak >= 2;
        },
        timeoutMs,
        500,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message} (behind: ${last})`, { cause: err });
    }
  }

  /** An outage window around `fn` (every partition). */
  async outage(why: string, fn: () => Promise<void>): Promise<string> {
    const from = this.now();
    try {
      await fn();
    } finally {
      this.windows.push({ from, to: this.now(), partitions: null, why });
    }
    return `${why}: ${((this.now() - from) / 1000).toFixed(1)} s`;
  }

  /**
   * Creates the topic (or the dead-letter topic) and waits until every partition has a leader. A fresh
   * broker may answer the creation's own leader wait with UNKNOWN_TOPIC_OR_PARTITION after creating it,
   * and a topic just deleted may still be refused for a moment: the creation is tried again until the
   * topic's offsets can be read with its partition count (called only when no other topic of that name
   * exists: a unique name, or after the old one is gone).
   */
  async createTopic(partitions: number, topic = this.topic): Promise<void> {
    await this.waitFor(
      `${topic} created with ${partitions} partitions, each with a leader`,
      async () => {
        await this.admin
          .createTopics({
            topics: [
              {
                topic,
                numPartitions: partitions,
                // Record times years ahead are part of the schedule: the broker must take them.
                configEntries: [{ name: 'message.timestamp.after.max.ms', value: '9223372036854775807' }],
              },
            ],
            waitForLeaders: true,
          })
          .catch((err: unknown) => this.log(`creating ${topic}: ${(err as Error).message}`));
        const offsets = await this.admin.fetchTopicOffsets(topic);
        if (offsets.length !== partitions) throw new Error(`${offsets.length} partitions`);
        return true;
      },
      60_000,
      1000,
    );
  }

  async newIncarnation(partitions: number): Promise<void> {
    const r = await this.pool.query<{ ms: number }>(
      `SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`,
    );
    this.partitions = partitions;
    this.incarnations.push({
      index: this.incarnations.length,
      createdAt: this.now(),
      createdDbMs: r.rows[0]!.ms,
      partitions,
      records: [],
      fencesAtDeletion: null,
    });
  }

  /**
   * Database writes so far: n_tup_ins + n_tup_upd of bars_1m (table and chunks; idle server
   * connections are ended first, which flushes their statistics), and the rows written since
   * transaction `sinceXid` (by xmin).
   */
  async writeCounters(sinceXid?: string): Promise<{ tuples: number; xid: string; rowsSince: number }> {
    await this.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> 'nemesis' AND state = 'idle'`,
      [this.db],
    );
    await sleep(500);
    const c = await this.pool.connect();
    try {
      await c.query('SELECT pg_stat_force_next_flush()');
      await c.query('SELECT pg_stat_clear_snapshot()');
      const t = await c.query<{ n: string }>(
        `SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::text AS n FROM pg_stat_user_tables
         WHERE relid IN (SELECT format('%I.bars_1m', $1::text)::regclass
                         UNION ALL SELECT format('%I.%I', chunk_schema, chunk_name)::regclass
                         FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m')`,
        [this.schema],
      );
      const x = await c.query<{ xid: string }>(`SELECT (txid_current() % 4294967296)::text AS xid`);
      const rows = sinceXid
        ? await c.query<{ n: string }>(
            `SELECT count(*)::text AS n FROM "${this.schema}".bars_1m WHERE xmin::text::bigint >= $1::bigint`,
            [sinceXid],
          )
        : null;
      return { tuples: Number(t.rows[0]!.n), xid: x.rows[0]!.xid, rowsSince: Number(rows?.rows[0]?.n ?? 0) };
    } finally {
      c.release();
    }
  }

  // ---- the run ----

  private async setup(): Promise<void> {
    const admin = new pg.Client({
      host: '127.0.0.1',
      port: this.pg.port,
      user: 'postgres',
      database: 'postgres',
    });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${this.db}"`);
    } finally {
      await admin.end();
    }
    const c = await this.directClient();
    try {
      await migrate(c, this.schema);
      await applyAggregateTimezone(c, this.schema, 'UTC'); // as `migrate` does: trade_count in the aggregates
      // The policies act on old data (these bars are), and this build's background jobs fail after
      // running (../shared/notes/timescaledb.md): the run does not depend on the job scheduler.
      await c.query(
        `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000`,
      );
    } finally {
      await c.end();
    }
    this.admin = this.kafka.admin();
    await this.admin.connect();
    await this.createTopic(this.schedule.initialPartitions);
    await this.createTopic(1, this.dlqTopic);
    await this.newIncarnation(this.schedule.initialPartitions);
    for (let i = 1; i <= this.schedule.initialInstances; i++) this.instances.start(i);
  }

  private startMonitor(): void {
    this.monitoring = true;
    this.monitorLoop = (async () => {
      while (this.monitoring) {
        const started = Date.now();
        const inc = this.incarnations.length - 1;
        try {
          if (!this.topicMissing) {
            // The fences first, then the log ends: a fence read before its log end is never ahead of it.
            const fences = await this.fences();
            const ends = await this.logEnds();
            if (!this.topicMissing && inc === this.incarnations.length - 1) {
              this.samples.push({
                t: this.now(),
                incarnation: inc,
                partitions: [...ends].map(([partition, logEnd]) => ({
                  partition,
                  fence: fences.get(partition) ?? null,
                  logEnd,
                })),
              });
            }
          }
        } catch {
          // the broker or the database away: no sample
        }
        await sleep(Math.max(0, 1000 - (Date.now() - started)));
      }
    })();
  }

  private async produceTrack(): Promise<void> {
    const counts = new Map<string, number>();
    let lastSummary = 0;
    for (const ev of this.schedule.produce) {
      const wait = ev.at - this.now();
      if (wait > 0) await sleep(wait);
      if (ev.kind.startsWith('identical-resend'))
        this.log(`produce ${ev.kind}: ${ev.messages.length} messages`);
      await this.producer.send(ev);
      counts.set(ev.kind, (counts.get(ev.kind) ?? 0) + ev.messages.length);
      if (this.now() - lastSummary > 15_000) {
        lastSummary = this.now();
        this.log(`produced so far: ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);
      }
    }
    this.log(
      `produce track done: ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}; ${this.producer.sendFailures} send attempts failed`,
    );
  }

  /**
   * The bulk feed: each event at its time (late ones back to back: after a pause the feed catches up),
   * through its own producer. Logs its progress every 30 s and how far behind its schedule it fell.
   */
  private async bulkTrack(): Promise<void> {
    const plan = this.schedule.bulk;
    if (!plan) return;
    let sent = 0;
    let behindMs = 0;
    let last = { t: this.now(), sent: 0 };
    for (let i = 0; i < plan.events.length; i++) {
      const ev = plan.events[i]!;
      const wait = ev.at - this.now();
      if (wait > 0) await sleep(wait);
      behindMs = Math.max(behindMs, this.now() - ev.at);
      sent += await this.producer.sendBulk(i);
      if (this.now() - last.t >= 30_000) {
        const rate = ((sent - last.sent) * 1000) / (this.now() - last.t);
        this.log(
          `bulk feed: ${sent} messages sent (${rate.toFixed(0)}/s over the last ${((this.now() - last.t) / 1000).toFixed(0)} s; ${((this.now() - ev.at) / 1000).toFixed(1)} s behind its schedule)${this.lagText()}`,
        );
        last = { t: this.now(), sent };
      }
    }
    const secs = (this.now() - plan.events[0]!.at) / 1000;
    this.log(
      `bulk feed done: ${sent} of ${bulkTotal(plan)} messages sent in ${secs.toFixed(0)} s (${(sent / secs).toFixed(0)}/s; at most ${(behindMs / 1000).toFixed(1)} s behind its schedule)`,
    );
  }

  /**
   * Messages behind: per partition of the current topic, its log end minus its fence (a fence moved
   * before the topic was created counts as 0), from the monitor's newest sample (null: none in 3 s; at
   * most a second old otherwise: the operation track does not wait for a reading of its own).
   */
  lagNow(): { total: bigint; max: bigint; partition: number } | null {
    const s = this.samples.at(-1);
    const inc = this.incarnations[s?.incarnation ?? -1];
    if (!s || !inc || s.incarnation !== this.incarnations.length - 1 || this.now() - s.t > 3000) return null;
    return lagOf(s, inc.createdDbMs);
  }

  private lagText(l = this.lagNow()): string {
    if (l === null) return '';
    return `; lag ${l.total}${l.total > 0n ? ` (most: partition ${l.partition}, ${l.max})` : ''}`;
  }

  private async opTrack(): Promise<void> {
    for (const { at, op } of this.schedule.ops) {
      const wait = at - this.now();
      if (wait > 0) await sleep(wait);
      if (CONFLICTS_WITH_LOCK.has(op.kind)) await this.lockDone;
      const from = this.now();
      this.log(`op ${op.kind}: ${describeOp(op)}${this.lagText()}`);
      const done: OpDone = { kind: op.kind, from, to: from, detail: '' };
      try {
        const said = await (operations[op.kind] as (run: Run, o: typeof op) => Promise<string | Noop>)(
          this,
          op,
        );
        done.detail = said instanceof Noop ? said.detail : said;
        if (said instanceof Noop) done.noop = true;
        this.log(
          `   → ${done.detail}${done.noop ? ' (nothing done)' : ''} (${((this.now() - from) / 1000).toFixed(1)} s)${this.lagText()}`,
        );
      } catch (err) {
        done.failure = (err as Error).message;
        this.log(`   → FAILED: ${done.failure}`);
      }
      done.to = this.now();
      this.opsDone.push(done);
    }
  }

  private async quiesce(): Promise<string | null> {
    this.log('quiescing: producing stopped; waiting for locks, instances and every partition to catch up');
    await this.lockDone;
    if (this.instances.running.size === 0) this.instances.start(1);
    try {
      await this.waitCaughtUp(180_000);
      this.log('caught up');
      return null;
    } catch (err) {
      this.log(`NOT caught up: ${(err as Error).message}`);
      return (err as Error).message;
    }
  }

  /** Every row of `table` (bars_1m or bars_latest) as the checker reads it; null if it does not exist. */
  private async storedRows(
    table: 'bars_1m' | 'bars_latest',
    hasOrigin: boolean,
  ): Promise<StoredRow[] | null> {
    const exists = await this.pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [
      `"${this.schema}".${table}`,
    ]);
    if (exists.rows[0]!.t === null) return null;
    const rows = await this.pool.query<{
      symbol: string;
      ts: string;
      open: number;
      high: number;
      low: number;
      close: number;
      volume: string;
      vwap: number | null;
      revision: string;
      st: string | null;
      origin?: string | null;
    }>(
      `SELECT symbol, (extract(epoch FROM "timestamp") * 1000)::bigint::text AS ts, open, high, low, close,
              volume::text AS volume, vwap, revision::text AS revision,
              CASE WHEN source_time = '-infinity' THEN NULL ELSE (extract(epoch FROM source_time) * 1000)::text END AS st
              ${hasOrigin ? ', source_origin::text AS origin' : ''}
       FROM "${this.schema}".${table}`,
    );
    return rows.rows.map((r) => ({
      symbol: r.symbol,
      timestampMs: Number(r.ts),
      open: r.open,
      high: r.high,
      low: r.low,
      close: r.close,
      volume: Number(r.volume),
      vwap: r.vwap,
      revision: Number(r.revision),
      sourceTimeMs: r.st === null ? null : Number(r.st),
      ...(hasOrigin
        ? { sourceOrigin: r.origin === null || r.origin === undefined ? null : BigInt(r.origin) }
        : {}),
    }));
  }

  private async collect(quiesceFailure: string | null): Promise<CheckInput> {
    this.monitoring = false;
    await this.monitorLoop;
    const final = await (async () => {
      const fences = await this.fences();
      const [ends, committed] = [await this.logEnds(), await this.committed()];
      return [...ends].map(([partition, logEnd]) => ({
        partition,
        fence: fences.get(partition) ?? null,
        committed: committed.get(partition) ?? null,
        logEnd,
      }));
    })();
    const current = this.incarnations.at(-1)!;
    let t = this.now();
    Object.assign(
      current,
      await readLog(this.kafka, this.admin, this.topic, current.index, { bulk: this.bulkKey }),
    );
    const records = this.incarnations.reduce((a, i) => a + i.records.length + (i.bulk?.index.length ?? 0), 0);
    this.log(
      `read back incarnation ${current.index} in ${((this.now() - t) / 1000).toFixed(1)} s (all incarnations: ${records} records, ${this.incarnations.reduce((a, i) => a + (i.bulk?.index.length ?? 0), 0)} of them the bulk feed's)`,
    );
    const deadLetters = await readDeadLetters(this.kafka, this.admin, this.dlqTopic);
    const cols = await this.pool.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'bars_1m'`,
      [this.schema],
    );
    const hasOrigin = cols.rows.some((r) => r.column_name === 'source_origin');
    t = this.now();
    const { stored, storedBulk } = await this.readTable(hasOrigin);
    this.log(
      `read bars_1m in ${((this.now() - t) / 1000).toFixed(1)} s: ${stored.length + (storedBulk ? storedBulk.present.reduce((a, b) => a + b, 0) : 0)} rows`,
    );
    const latest = await this.storedRows('bars_latest', hasOrigin);
    const dup = await this.pool.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM (SELECT 1 FROM "${this.schema}".bars_1m GROUP BY symbol, "timestamp" HAVING count(*) > 1) d`,
    );
    if (quiesceFailure)
      this.opsDone.push({
        kind: 'quiesce',
        from: this.now(),
        to: this.now(),
        detail: '',
        failure: quiesceFailure,
      });
    if (this.noInstanceSince !== null)
      this.windows.push({ from: this.noInstanceSince, to: this.now(), partitions: null, why: 'no instance' });
    return {
      incarnations: this.incarnations,
      sent: this.producer.sent,
      skips: this.skips,
      backfills: this.backfills,
      stored,
      hasOrigin,
      ...(latest ? { latest } : {}),
      duplicated: Number(dup.rows[0]!.n),
      deadLetters,
      samples: this.samples,
      windows: this.windows,
      final,
      replays: this.replays,
      ops: this.opsDone,
      stallBoundMs: STALL_BOUND_MS,
      ...(this.schedule.bulk && storedBulk
        ? {
            bulk: {
              seed: this.schedule.seed,
              symbols: this.schedule.bulk.symbols,
              events: this.schedule.bulk.events.map(({ first, count }) => ({ first, count })),
              sentAtMs: this.producer.bulkSentAt,
              stored: storedBulk,
            },
          }
        : {}),
    };
  }

  /**
   * bars_1m, read through a cursor 50,000 rows at a time: the bulk feed's rows into StoredBulk columns
   * (by bulk index), the others as StoredRows.
   */
  private async readTable(
    hasOrigin: boolean,
  ): Promise<{ stored: StoredRow[]; storedBulk: StoredBulk | null }> {
    const plan = this.schedule.bulk;
    const total = plan ? bulkTotal(plan) : 0;
    const storedBulk = plan ? newStoredBulk(total) : null;
    const stored: StoredRow[] = [];
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query(
        `DECLARE bars NO SCROLL CURSOR FOR
         SELECT symbol, (extract(epoch FROM "timestamp") * 1000)::bigint::text AS ts, open, high, low, close,
                volume::text AS volume, vwap, revision::text AS revision,
                CASE WHEN source_time = '-infinity' THEN NULL ELSE (extract(epoch FROM source_time) * 1000)::text END AS st
                ${hasOrigin ? ', source_origin::text AS origin' : ''}
         FROM "${this.schema}".bars_1m`,
      );
      for (;;) {
        const rows = await c.query<{
          symbol: string;
          ts: string;
          open: number;
          high: number;
          low: number;
          close: number;
          volume: string;
          vwap: number | null;
          revision: string;
          st: string | null;
          origin?: string | null;
        }>('FETCH 50000 FROM bars');
        if (rows.rows.length === 0) break;
        for (const r of rows.rows) {
          const row: StoredRow = {
            symbol: r.symbol,
            timestampMs: Number(r.ts),
            open: r.open,
            high: r.high,
            low: r.low,
            close: r.close,
            volume: Number(r.volume),
            vwap: r.vwap,
            revision: Number(r.revision),
            sourceTimeMs: r.st === null ? null : Number(r.st),
            ...(hasOrigin
              ? { sourceOrigin: r.origin === null || r.origin === undefined ? null : BigInt(r.origin) }
              : {}),
          };
          const g = plan ? bulkIndexOfKey(plan.symbols, total, row.symbol, row.timestampMs) : null;
          if (g !== null && storeBulkRow(storedBulk!, g, row, hasOrigin)) continue;
          stored.push(row);
        }
      }
      await c.query('COMMIT');
    } finally {
      c.release();
    }
    return { stored, storedBulk };
  }

  private async teardown(): Promise<void> {
    this.monitoring = false;
    await this.monitorLoop.catch(() => undefined);
    await this.lockDone.catch(() => undefined);
    await this.instances.close();
    await this.producer.close().catch(() => undefined);
    {
      await this.admin?.deleteTopics({ topics: [this.topic, this.dlqTopic] }).catch(() => undefined);
      await this.admin?.deleteGroups([this.group]).catch(() => undefined);
    }
    await this.admin?.disconnect().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
    {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: this.pg.port,
        user: 'postgres',
        database: 'postgres',
      });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS "${this.db}" WITH (FORCE)`);
      } catch (err) {
        console.error('nemesis: dropping the database failed:', (err as Error).message);
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  }

  printSchedule(): void {
    const s = this.schedule;
    const kinds = new Map<string, number>();
    for (const ev of s.produce) kinds.set(ev.kind, (kinds.get(ev.kind) ?? 0) + ev.messages.length);
    this.print(
      `nemesis: seed ${s.seed}, ${s.minutes} min, scenario ${s.scenario}; ${s.initialPartitions} partitions, ${s.initialInstances} instances; ` +
        `topic ${this.topic}, group ${this.group}, database ${this.db}, schema ${this.schema}; work dir ${this.workDir}`,
    );
    this.print(
      `schedule: ${s.produce.length} produce events (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}), ${s.ops.length} operations:`,
    );
    if (s.bulk)
      this.print(
        `bulk feed: ${s.bulk.rate} messages/s, ${bulkTotal(s.bulk)} messages in ${s.bulk.events.length} sends of up to ${s.bulk.events[0]!.count} (symbols B0000…B${String(s.bulk.symbols - 1).padStart(4, '0')}, one bar each a minute)`,
      );
    for (const { at, op } of s.ops) this.print(`  ${ms(at)}  ${describeOp(op)}`);
    const planned = new Map<string, number>(OP_KINDS.map((k) => [k, 0]));
    for (const { op } of s.ops) planned.set(op.kind, planned.get(op.kind)! + 1);
    this.print(
      `operations planned by kind${s.everyOp ? ` (each at least ${s.everyOp} times)` : ''}: ${[...planned].map(([k, n]) => `${k} ${n}`).join(', ')}`,
    );
  }

  /** The lag over the run, from the monitor's samples (one a second). */
  private lagSummary(): string {
    const lags = this.samples.map((s) => ({
      t: s.t,
      ...lagOf(s, this.incarnations[s.incarnation]!.createdDbMs),
    }));
    if (lags.length === 0) return 'lag: no samples';
    const sorted = lags.map((l) => Number(l.total)).sort((a, b) => a - b);
    const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))]!;
    const max = lags.reduce((m, l) => (l.total > m.total ? l : m));
    return `lag (Σ log end − fence, ${lags.length} samples, operations included): median ${q(0.5)}, p90 ${q(0.9)}, p99 ${q(0.99)}, max ${max.total} at ${(max.t / 1000).toFixed(0)} s`;
  }

  /** With --every-op: whether every kind was done that many times (no-ops and failures not counted). */
  private coverage(): string[] {
    const n = this.schedule.everyOp ?? 0;
    if (n === 0) return [];
    const done = new Map<string, number>();
    for (const o of this.opsDone) if (!o.noop && !o.failure) done.set(o.kind, (done.get(o.kind) ?? 0) + 1);
    const short = OP_KINDS.filter((k) => (done.get(k) ?? 0) < n);
    return [
      `every operation kind at least ${n} times (done, not counting no-ops and failures): ${short.length === 0 ? 'yes' : `NO: ${short.map((k) => `${k} ${done.get(k) ?? 0}`).join(', ')}`}`,
    ];
  }

  async execute(): Promise<RunResult> {
    this.printSchedule();
    fs.writeFileSync(
      path.join(this.workDir, 'schedule.json'),
      JSON.stringify(this.schedule, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 1),
    );
    let verdict: Verdict;
    let checkerLine: string;
    try {
      await this.setup();
      this.startMonitor();
      await Promise.all([this.produceTrack(), this.bulkTrack(), this.opTrack()]);
      const failure = await this.quiesce();
      const input = await this.collect(failure);
      if (this.options.keep) writeInput(path.join(this.workDir, 'check-input.json'), input);
      const t = performance.now();
      verdict = check(input);
      checkerLine = `checker: ${((performance.now() - t) / 1000).toFixed(1)} s; peak RSS of this process so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;
    } catch (err) {
      this.log(`the run failed: ${(err as Error).stack ?? String(err)}`);
      if (!this.options.keep) fs.rmSync(this.workDir, { recursive: true, force: true });
      throw err;
    } finally {
      await this.teardown();
    }
    const s = this.schedule;
    const report = [
      `nemesis: seed ${s.seed} (${s.minutes} min, scenario ${s.scenario}): ${verdict.ok ? 'OK' : 'DISCREPANCIES'}`,
      ...renderFigures(verdict.figures),
      this.lagSummary(),
      checkerLine,
      ...(this.cliRetries.length
        ? [
            `CLI commands run again after a transient failure: ${this.cliRetries.length} (${this.cliRetries.join('; ')})`,
          ]
        : []),
      ...(this.instances.unplannedExits.length
        ? [`unplanned instance exits: ${this.instances.unplannedExits.length}`]
        : []),
      ...this.coverage(),
      ...verdict.discrepancies,
      `reproduce: ${reproduce(s)}`,
    ];
    fs.writeFileSync(
      path.join(this.workDir, 'report.txt'),
      report.join('\n') + '\n\n' + this.instances.unplannedExits.join('\n\n') + '\n',
    );
    for (const line of report) this.print(line);
    if (!this.options.keep) fs.rmSync(this.workDir, { recursive: true, force: true });
    else {
      for (const [from, to] of [
        [path.join(this.pg.dir, 'postgres.log'), 'postgres.log'],
        [path.join(this.broker.runDir, 'server.log'), 'kafka-server.log'],
      ] as const)
        fs.copyFileSync(from, path.join(this.workDir, to));
      this.print(
        `kept: ${this.workDir} (instance logs, schedule.json, check-input.json, report.txt, postgres.log, kafka-server.log)`,
      );
    }
    return { verdict, report, schedule: s, workDir: this.workDir };
  }
}

/** A sample's lag: Σ over partitions of log end − fence (a fence older than `createdDbMs` counts as 0). */
export function lagOf(s: Sample, createdDbMs: number): { total: bigint; max: bigint; partition: number } {
  let total = 0n;
  let max = -1n;
  let partition = -1;
  for (const p of s.partitions) {
    const pos = p.fence && p.fence.updatedMs >= createdDbMs ? p.fence.next : 0n;
    const behind = p.logEnd > pos ? p.logEnd - pos : 0n;
    total += behind;
    if (behind > max) [max, partition] = [behind, p.partition];
  }
  return { total, max: max < 0n ? 0n : max, partition };
}

/** The command that runs `s` again. */
export function reproduce(s: Schedule): string {
  return [
    `npm run nemesis -- --seed ${s.seed} --minutes ${s.minutes}`,
    ...(s.scenario === 'issue' ? ['--scenario issue'] : []),
    ...(s.bulk ? [`--rate ${s.bulk.rate}`] : []),
    ...((s.everyOp ?? 0) !== defaultEveryOp(s.minutes) ? [`--every-op ${s.everyOp ?? 0}`] : []),
  ].join(' ');
}

/** One run; with `services` the caller's (a jest file shares them across seeds), else its own. */
export async function runNemesis(options: RunOptions, services?: Services): Promise<RunResult> {
  const own = services ?? (await Services.start(options.log));
  try {
    return await new Run(options, own).execute();
  } finally {
    if (!services) own.stop();
  }
}
