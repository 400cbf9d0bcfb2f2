/**
 * Shared pieces of the integration tests: a unique schema, topic and group per test file, a producer,
 * in-process and child-process services, and exact reads of the database and the group's offsets.
 * Every resource registers its cleanup where it is created; `cleanup()` runs them in reverse order.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel, type Admin, type Producer, type IHeaders, type SASLOptions } from 'kafkajs';
import pg from 'pg';
import { Registry } from 'prom-client';
import { loadConfig, type Config } from '../../src/config';
import { registerCodecs } from '../../src/consumer/codecs';
import { createLogger } from '../../src/observe/logger';
import { Service } from '../../src/service';
import { parseExtraColumns, type ExtraColumn } from '../../src/contract/extras';
import { applyExtraColumns } from '../../src/store/extraColumns';
import { migrate } from '../../src/store/migrate';
import { applyAggregateTimezone } from '../../src/store/timescaleSettings';
import { sleep, uniqueName, waitFor } from './common';
import { KAFKA_BROKERS, PG, PG_IS_TIMESCALEDB, SERVICE_PG } from './env';

// The helpers the benchmarks share too, where the tests have always found them.
export { metricValue, sleep, uniqueName, waitFor } from './common';

export const REPO = path.resolve(__dirname, '..', '..');

export interface TestBar {
  symbol: string;
  timestamp: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
}

/** A row of bars_1m as storedBars() reads it (timestamp as ISO-8601 UTC). */
export type StoredBar = TestBar;

/** Deterministic bars: `symbols` × `minutes`, random-walk-ish but reproducible from `seed`. */
export function makeBars(
  symbols: number,
  minutes: number,
  startMs = Date.UTC(2026, 10, 24, 14, 30),
  seed = 1,
): TestBar[] {
  const out: TestBar[] = [];
  let x = seed;
  const rand = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
  for (let m = 0; m < minutes; m++) {
    for (let s = 0; s < symbols; s++) {
      const open = Math.round((10 + rand() * 490) * 10_000) / 10_000;
      const close = Math.round(open * (1 + (rand() - 0.5) * 0.01) * 10_000) / 10_000;
      const high = Math.max(open, close) + Math.round(rand() * 100) / 10_000;
      const low = Math.min(open, close) - Math.round(rand() * 100) / 10_000;
      const vwap = rand() < 0.1 ? null : Math.round(((low + high) / 2) * 10_000) / 10_000;
      out.push({
        symbol: `S${String(s).padStart(4, '0')}`,
        timestamp: new Date(startMs + m * 60_000).toISOString(),
        open,
        high,
        low,
        close,
        volume: Math.floor(rand() * 1_000_000),
        vwap,
      });
    }
  }
  return out;
}

export interface HarnessOptions {
  /** Another broker than the suite's (a test that restarts its own). */
  brokers?: string;
  /** A dedicated database, created by setupSchema() and dropped at cleanup (a test that takes it away). */
  database?: string;
  /** SASL credentials of the test's own Kafka clients (admin, producer). */
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  /** BARS_EXTRA_COLUMNS of the test: its columns created by setupSchema(), its services configured with it. */
  extraColumns?: string;
}

/** A message read back from the dead-letter topic (headers as strings; all values of each in `repeated`). */
export interface DeadLetter {
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  repeated: Record<string, string[]>;
}

export class Harness {
  readonly schema: string;
  readonly topic = uniqueName('bars').replace(/_/g, '.');
  readonly group = uniqueName('group');
  readonly dlqTopic = `${this.topic}.dlq`;
  readonly brokers: string;
  readonly database: string;
  readonly kafka: Kafka;
  readonly pool: pg.Pool;
  /** Connected to the suite's database, for creating and dropping a dedicated one. */
  private readonly adminPool: pg.Pool | null;
  private admin: Admin | null = null;
  private producer: Producer | null = null;
  private readonly cleanups: (() => Promise<void>)[] = [];
  /** BARS_EXTRA_COLUMNS of the test ('' for none). */
  readonly extraColumnsSetting: string;
  private readonly extraColumns: ExtraColumn[];

  constructor(options: HarnessOptions = {}) {
    registerCodecs();
    this.extraColumnsSetting = options.extraColumns ?? '';
    this.extraColumns = parseExtraColumns(this.extraColumnsSetting);
    this.brokers = options.brokers ?? KAFKA_BROKERS;
    this.database = options.database ?? PG.database;
    this.schema = options.database ? 'public' : uniqueName('bw_test');
    this.kafka = new Kafka({
      clientId: uniqueName('test'),
      brokers: this.brokers.split(','),
      logLevel: logLevel.NOTHING,
      ...(options.sasl ? { sasl: options.sasl as SASLOptions } : {}),
    });
    this.pool = new pg.Pool({ ...PG, database: this.database, max: 4 });
    this.pool.on('error', () => undefined); // a test may terminate its backends on purpose
    this.adminPool = options.database ? new pg.Pool({ ...PG, max: 1 }) : null;
    const adminPool = this.adminPool;
    if (adminPool) {
      this.cleanups.push(async () => {
        await adminPool.query(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
        await adminPool.end();
      });
    }
    this.cleanups.push(() => this.pool.end());
  }

  onCleanup(fn: () => Promise<void>): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      await fn().catch((err: unknown) => console.error('cleanup failed:', err));
    }
    this.cleanups.length = 0;
  }

  /** Creates the schema and runs the migrations in it. */
  async setupSchema(): Promise<void> {
    if (this.adminPool) await this.adminPool.query(`CREATE DATABASE "${this.database}"`);
    const client = await this.pool.connect();
    try {
      await migrate(client, this.schema);
      // What `migrate` does after the migrations: the aggregates of the current definition (migration
      // 004 made them without trade_count), the extra columns the test configures.
      await applyAggregateTimezone(client, this.schema, 'UTC');
      if (this.extraColumns.length > 0) await applyExtraColumns(client, this.schema, this.extraColumns);
      if (PG_IS_TIMESCALEDB) {
        // The run that claims to be on TimescaleDB must really write into a hypertable.
        const ht = await client.query(
          `SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
          [this.schema],
        );
        if (ht.rows.length !== 1) throw new Error(`${this.schema}.bars_1m is not a hypertable on ${PG.port}`);
        // The policies act on data older than days (the tests' bars are), and a background job that
        // compresses a chunk in the middle of a test makes it depend on the scheduler's timing. Tests
        // that exercise a policy run it themselves with CALL run_job(id).
        await client.query(
          `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
          [this.schema],
        );
      }
    } finally {
      client.release();
    }
    if (!this.adminPool) {
      this.cleanups.push(async () => {
        await this.dropSchema(this.schema);
      });
    }
  }

  /**
   * Drops a schema of this test. On TimescaleDB its policy jobs are deleted first and a drop that
   * meets a background job of the schema mid-run (XX000 "tuple concurrently deleted") is retried.
   */
  async dropSchema(schema: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const ext = await this.pool.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
        if (ext.rows.length > 0) {
          await this.pool.query(
            `SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
            [schema],
          );
        }
        await this.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        return;
      } catch (err) {
        if (attempt >= 10) throw err;
        await sleep(200 * attempt);
      }
    }
  }

  /**
   * Reads the dead-letter topic from the beginning until `count` messages are in, then 500 ms more, so
   * a message beyond `count` would show too; fails if fewer than `count` came within 60 s. The reader
   * group is deleted at cleanup.
   */
  async readDeadLetters(count: number): Promise<DeadLetter[]> {
    return this.readTopic(this.dlqTopic, count);
  }

  /** readDeadLetters of any topic (the input topic after a replay, say). */
  async readTopic(topic: string, count: number): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    const groupId = `${this.group}-reader-${uniqueName('r')}`;
    const consumer = this.kafka.consumer({ groupId, maxBytes: 16 * 1024 * 1024 });
    this.onCleanup(async () => {
      await consumer.disconnect();
      await (await this.getAdmin()).deleteGroups([groupId]).catch(() => undefined);
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        const repeated: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) {
          if (v === undefined) continue;
          repeated[k] = (Array.isArray(v) ? v : [v]).map(String);
          headers[k] = repeated[k]!.join(',');
        }
        out.push({ key: message.key?.toString() ?? null, value: message.value, headers, repeated });
      },
    });
    try {
      await waitFor(`${count} messages on ${topic}`, async () => {
        if (out.length < count) throw new Error(`${out.length} so far`);
        return true;
      });
      await sleep(500);
    } finally {
      await consumer.stop();
    }
    return out;
  }

  async getAdmin(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
      this.cleanups.push(() => admin.disconnect());
    }
    return this.admin;
  }

  /** The input topic (with `configs`, topic-level settings) and the dead-letter topic (`dlqConfigs`). */
  async createTopics(
    partitions: number,
    configs: Record<string, string> = {},
    dlqConfigs: Record<string, string> = {},
  ): Promise<void> {
    const admin = await this.getAdmin();
    const entries = (c: Record<string, string>) =>
      Object.entries(c).map(([name, value]) => ({ name, value }));
    await admin.createTopics({
      topics: [
        { topic: this.topic, numPartitions: partitions, configEntries: entries(configs) },
        { topic: this.dlqTopic, numPartitions: 1, configEntries: entries(dlqConfigs) },
      ],
      waitForLeaders: true,
    });
    this.cleanups.push(async () => {
      await admin.deleteTopics({ topics: [this.topic, this.dlqTopic] }).catch(() => undefined);
      await admin.deleteGroups([this.group]).catch(() => undefined);
    });
  }

  async getProducer(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      this.producer = producer;
      this.cleanups.push(() => producer.disconnect());
    }
    return this.producer;
  }

  /** Produces bars keyed by symbol (so a symbol stays on one partition), in chunks. */
  async produceBars(bars: readonly TestBar[], chunk = 5000): Promise<void> {
    await this.produceRaw(
      bars.map((b) => ({ key: b.symbol, value: JSON.stringify(b) })),
      chunk,
    );
  }

  async produceRaw(
    messages: readonly {
      key: string | Buffer | null;
      value: string | Buffer | null;
      partition?: number;
      headers?: IHeaders;
      /** Record timestamp, epoch ms as a string (default: the producer's clock). */
      timestamp?: string;
    }[],
    chunk = 5000,
  ): Promise<void> {
    const producer = await this.getProducer();
    for (let i = 0; i < messages.length; i += chunk) {
      await producer.send({ topic: this.topic, acks: -1, messages: messages.slice(i, i + chunk) as never });
    }
  }

  /** The service's configuration for this test, through the same env names operators use. */
  config(env: Record<string, string> = {}): Config {
    return loadConfig(this.env(env));
  }

  env(env: Record<string, string> = {}): Record<string, string> {
    return {
      DB_HOST: SERVICE_PG.host,
      DB_PORT: String(SERVICE_PG.port),
      DB_USER: SERVICE_PG.user,
      DB_NAME: this.database,
      DB_SCHEMA: this.schema,
      KAFKA_BROKERS: this.brokers,
      KAFKA_TOPIC: this.topic,
      KAFKA_DLQ_TOPIC: this.dlqTopic,
      KAFKA_GROUP_ID: this.group,
      KAFKA_CLIENT_ID: uniqueName('bw'),
      KAFKA_SESSION_TIMEOUT: '10s',
      KAFKA_MAX_WAIT: '100ms',
      HTTP_PORT: '0',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      BARS_DB_WRITE_INTERVAL: '200ms',
      ...(this.extraColumnsSetting ? { BARS_EXTRA_COLUMNS: this.extraColumnsSetting } : {}),
      ...env,
    };
  }

  /** An in-process service instance; stopped at cleanup if the test did not stop it. */
  async startService(env: Record<string, string> = {}): Promise<Service> {
    const config = this.config(env);
    const service = new Service(config, { logger: createLogger(config.logLevel), registry: new Registry() });
    this.cleanups.push(async () => {
      await service.stop(Date.now() + 5000);
    });
    await service.start();
    return service;
  }

  /** `node dist/main.js` as operators run it; killed at cleanup if still running. */
  spawnService(env: Record<string, string> = {}): ChildProcess & { output: () => string } {
    const child = spawn(process.execPath, [path.join(REPO, 'dist', 'main.js')], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', ...this.env({ LOG_LEVEL: 'info', ...env }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    this.cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
    });
    return Object.assign(child, { output: () => out });
  }

  /** The HTTP port a spawned service printed ("http listening"), once it has. */
  async portOf(child: ChildProcess & { output: () => string }): Promise<number> {
    return waitFor('the HTTP port in the log', async () => {
      if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}:\n${child.output()}`);
      const m = /"port":(\d+),"msg":"http listening"/.exec(child.output());
      return m ? Number(m[1]) : null;
    });
  }

  /** SIGTERM to a spawned service; resolves with its exit code. */
  async terminate(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null) return child.exitCode;
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    return exited;
  }

  /** The group's committed offsets (null: none), per partition. */
  async committedOffsets(group = this.group): Promise<Map<number, bigint | null>> {
    const admin = await this.getAdmin();
    const res = await admin.fetchOffsets({ groupId: group, topics: [this.topic] });
    return new Map(res[0]!.partitions.map((p) => [p.partition, p.offset === '-1' ? null : BigInt(p.offset)]));
  }

  async endOffsets(): Promise<Map<number, bigint>> {
    const admin = await this.getAdmin();
    const res = await admin.fetchTopicOffsets(this.topic);
    return new Map(res.map((p) => [p.partition, BigInt(p.high)]));
  }

  /** True when the group's committed offset equals the log end on every partition. */
  async caughtUp(group = this.group): Promise<boolean> {
    const [committed, ends] = await Promise.all([this.committedOffsets(group), this.endOffsets()]);
    for (const [p, end] of ends)
      if (committed.get(p) !== end && !(end === 0n && committed.get(p) === null)) return false;
    return true;
  }

  /**
   * Activity statistics of bars_1m summed over the table and, on TimescaleDB, its chunks (where a
   * hypertable's rows live). Fresh values: the snapshot is cleared first.
   */
  async tableStats(): Promise<{ n_tup_ins: number; n_tup_upd: number; n_dead_tup: number }> {
    await this.pool.query('SELECT pg_stat_clear_snapshot()');
    const hyper = await this.pool.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
    const chunks = hyper.rows.length
      ? `UNION ALL SELECT format('%I.%I', chunk_schema, chunk_name)::regclass FROM timescaledb_information.chunks
         WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`
      : '';
    const r = await this.pool.query<{ n_tup_ins: string; n_tup_upd: string; n_dead_tup: string }>(
      `SELECT coalesce(sum(n_tup_ins), 0)::text AS n_tup_ins, coalesce(sum(n_tup_upd), 0)::text AS n_tup_upd,
              coalesce(sum(n_dead_tup), 0)::text AS n_dead_tup
       FROM pg_stat_user_tables
       WHERE relid IN (SELECT format('%I.bars_1m', $1::text)::regclass ${chunks})`,
      [this.schema],
    );
    const row = r.rows[0]!;
    return {
      n_tup_ins: Number(row.n_tup_ins),
      n_tup_upd: Number(row.n_tup_upd),
      n_dead_tup: Number(row.n_dead_tup),
    };
  }

  async rowCount(): Promise<number> {
    const r = await this.pool.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM "${this.schema}".bars_1m`,
    );
    return Number(r.rows[0]!.n);
  }

  /**
   * Rows where bars_latest differs from the newest row of each symbol in bars_1m (values and version;
   * both directions), of the symbols LIKE `symbolLike`: 0 when the writer kept it in step.
   */
  async latestMismatches(symbolLike = '%'): Promise<number> {
    const cols =
      'symbol, "timestamp", open, high, low, close, volume, vwap, revision, trade_count, source_time, source_origin';
    const s = `"${this.schema}"`;
    const newest = `(SELECT DISTINCT ON (symbol) ${cols} FROM ${s}.bars_1m WHERE symbol LIKE $1 ORDER BY symbol, "timestamp" DESC)`;
    const kept = `(SELECT ${cols} FROM ${s}.bars_latest WHERE symbol LIKE $1)`;
    const r = await this.pool.query<{ n: string }>(
      `SELECT ((SELECT count(*) FROM (${kept} EXCEPT ${newest}) a)
             + (SELECT count(*) FROM (${newest} EXCEPT ${kept}) b))::text AS n`,
      [symbolLike],
    );
    return Number(r.rows[0]!.n);
  }

  /** Every stored row, keyed "symbol|ISO timestamp". */
  async storedBars(): Promise<Map<string, StoredBar>> {
    const r = await this.pool.query<StoredBar & { ts: Date; volume: string }>(
      `SELECT symbol, "timestamp" AS ts, open, high, low, close, volume::text AS volume, vwap FROM "${this.schema}".bars_1m`,
    );
    const out = new Map<string, StoredBar>();
    for (const row of r.rows) {
      const timestamp = row.ts.toISOString();
      out.set(`${row.symbol}|${timestamp}`, {
        symbol: row.symbol,
        timestamp,
        open: row.open,
        high: row.high,
        low: row.low,
        close: row.close,
        volume: Number(row.volume),
        vwap: row.vwap,
      });
    }
    return out;
  }
}

/** The expected table: the last version of every (symbol, timestamp), normalised like storedBars(). */
export function expectedTable(bars: readonly TestBar[]): Map<string, StoredBar> {
  const out = new Map<string, StoredBar>();
  for (const b of bars) {
    const timestamp = new Date(b.timestamp).toISOString();
    out.set(`${b.symbol}|${timestamp}`, { ...b, timestamp, vwap: b.vwap ?? null });
  }
  return out;
}

function canonical(b: StoredBar): string {
  return JSON.stringify([b.symbol, b.timestamp, b.open, b.high, b.low, b.close, b.volume, b.vwap]);
}

/** Compares stored rows with expected ones; returns a short list of differences (empty when equal). */
export function diffTables(
  expected: Map<string, StoredBar>,
  stored: Map<string, StoredBar>,
  max = 5,
): string[] {
  const diffs: string[] = [];
  for (const [k, e] of expected) {
    const s = stored.get(k);
    if (!s) diffs.push(`missing ${k}`);
    else if (canonical(s) !== canonical(e))
      diffs.push(`differs ${k}: stored ${canonical(s)} expected ${canonical(e)}`);
    if (diffs.length >= max) return diffs;
  }
  for (const k of stored.keys()) {
    if (!expected.has(k)) diffs.push(`unexpected ${k}`);
    if (diffs.length >= max) break;
  }
  return diffs;
}

/**
 * Runs one of the built CLIs (`dist/...`) as operators do, with only PATH and `env` in its environment;
 * resolves with its exit code and everything it printed (stdout then stderr, each kept apart too).
 */
export function runCli(
  script: string,
  args: string[],
  env: Record<string, string>,
  options: { timeoutMs?: number; input?: string | Buffer; nodeArgs?: string[]; cwd?: string } = {},
): Promise<{ code: number | null; output: string; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), path.join(REPO, script), ...args], {
      cwd: options.cwd ?? REPO,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: stdout + stderr, stdout, stderr });
    });
  });
}

export async function httpGet(port: number, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, body: await res.text() };
}

/**
 * A Kafka broker of the test's own (scripts/kafka.sh on its own port and data directory), for a test
 * that restarts or reconfigures it. `start()` begins from an empty data directory; `remove()` stops it
 * by its pid and deletes the directory; `stop()`/`restart()` keep the data (topics, offsets survive).
 */
export function ownBroker(port: number, extraEnv: Record<string, string> = {}) {
  const version = process.env.TEST_KAFKA_VERSION ?? '4.4.0';
  const env = { ...process.env, KAFKA_VERSION: version, KAFKA_PORT: String(port), ...extraEnv };
  // Where kafka.sh keeps the broker's run directory (KAFKA_WORK_DIR: another checkout's jars, say).
  const runDir = path.join(process.env.KAFKA_WORK_DIR ?? path.join(REPO, '.kafka'), `run-${version}-${port}`);
  const sh = (cmd: 'start' | 'stop') =>
    execFileSync(path.join(REPO, 'scripts', 'kafka.sh'), [cmd], { env, stdio: 'pipe' });
  return {
    brokers: `127.0.0.1:${port}`,
    runDir,
    start(): void {
      fs.rmSync(runDir, { recursive: true, force: true });
      sh('start');
    },
    stop(): void {
      sh('stop');
    },
    restart(): void {
      sh('start');
    },
    remove(): void {
      sh('stop');
      fs.rmSync(runDir, { recursive: true, force: true });
    },
  };
}
