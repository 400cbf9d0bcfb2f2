/**
 * Shared pieces of the benchmarks: environment, unique names, cleanup on exit and on signals,
 * deterministic bars, Kafka helpers, the service as a child process (by pid), /proc RSS sampling,
 * pg_stat_user_tables reads, percentiles, and bench/results/latest.json.
 *
 * Nothing here is imported by src/: the benchmarks use the service's own modules, never the reverse.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, Partitioners, type Admin, type Producer } from 'kafkajs';
import pg from 'pg';
import type { Bar } from '../src/contract/bar';
import { mulberry32 } from '../src/demo/random';
import { loadMigrations, migrate } from '../src/store/migrate';
import { ident } from '../src/store/pool';

export const REPO = path.resolve(__dirname, '..');
export const RESULTS_DIR = path.join(REPO, 'bench', 'results');
export const RESULTS_FILE = path.join(RESULTS_DIR, 'latest.json');

export const KAFKA_BROKERS = process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092';
export const KAFKA_VERSION = process.env.BENCH_KAFKA_VERSION ?? '4.4.0';
/**
 * Where bars_1m lives for this run: `plain` (a table on plain PostgreSQL, BENCH_PG_*) or `timescaledb`
 * (a hypertable with every migration, BENCH_TSDB_*: scripts/timescaledb.sh start gives one on 55432).
 * bench/all.ts runs the write path and the e2e drain on both, side by side; figures of the
 * `timescaledb` target are saved as "<section>@timescaledb".
 */
export const TARGET: 'plain' | 'timescaledb' =
  process.env.BENCH_TARGET === 'timescaledb' ? 'timescaledb' : 'plain';
const PREFIX = TARGET === 'timescaledb' ? 'BENCH_TSDB' : 'BENCH_PG';
export const PG = {
  host: process.env[`${PREFIX}_HOST`] ?? '127.0.0.1',
  port: Number(process.env[`${PREFIX}_PORT`] ?? (TARGET === 'timescaledb' ? 55432 : 5432)),
  user: process.env[`${PREFIX}_USER`] ?? 'postgres',
  database: process.env[`${PREFIX}_DATABASE`] ?? 'test',
};

/** A results section of this run's target: "e2e", or "e2e@timescaledb". */
export function sectionName(base: string): string {
  return TARGET === 'timescaledb' ? `${base}@timescaledb` : base;
}

// ---- small utilities ------------------------------------------------------------------------------

export function envInt(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

export function envFlag(name: string): boolean {
  const v = process.env[name];
  return v === '1' || v === 'true';
}

/** Lower-case, SQL-identifier-safe: bench_<time36>_<hex>. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${crypto.randomBytes(3).toString('hex')}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function nowMs(): number {
  return performance.now();
}

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

/** Nearest-rank percentile of `values` (p in 0..100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n);
}

export function ratio(a: number, b: number): number {
  return b > 0 ? round(a / b, 3) : NaN;
}

/** Prints an aligned text table (first row = header). */
export function printTable(rows: (string | number)[][], leftCols: number[] = [0]): void {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  cells.forEach((r, k) => {
    console.log(
      r
        .map((c, i) => (leftCols.includes(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    );
    if (k === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  });
}

// ---- cleanup --------------------------------------------------------------------------------------

/**
 * Cleanup steps run in reverse order of registration, once, on normal end, on failure and on
 * SIGINT/SIGTERM (the benchmark then exits 130).
 */
export class Cleanup {
  private readonly steps: { what: string; fn: () => Promise<unknown> }[] = [];
  private running: Promise<void> | null = null;
  /** Set by SIGINT/SIGTERM: a Ctrl-C also reached the service child (same process group). */
  interrupted = false;

  constructor() {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        this.interrupted = true;
        log(`${signal}: cleaning up`);
        void this.run().finally(() => process.exit(130));
      });
    }
  }

  add(what: string, fn: () => Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const step of this.steps.reverse()) {
        try {
          await step.fn();
        } catch (err) {
          log(`cleanup "${step.what}" failed: ${(err as Error).message}`);
        }
      }
      this.steps.length = 0;
    })();
    return this.running;
  }
}

/** Runs `main` with a Cleanup; cleans up whatever happens and sets the exit code. */
export function runMain(name: string, main: (cleanup: Cleanup) => Promise<void>): void {
  const cleanup = new Cleanup();
  main(cleanup)
    .then(
      () => cleanup.run(),
      async (err: unknown) => {
        log(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        process.exitCode = 1;
        await cleanup.run();
      },
    )
    .finally(() => {
      // Anything left (sockets of a client that failed to disconnect) must not keep us alive.
      setTimeout(() => process.exit(), 200).unref();
    });
}

// ---- deterministic bars ---------------------------------------------------------------------------

/** Minute 0 of every benchmark: in the past, so no bar is ever "from the future" for the contract. */
export const BENCH_START_MS = Date.UTC(2026, 0, 5, 0, 0);

export function symbolName(i: number): string {
  return `B${String(i).padStart(5, '0')}`;
}

/** A 32-bit hash of (symbol index, minute index, seed) → [0, 1) generator (mulberry32). */
function rngFor(s: number, m: number, seed: number): () => number {
  return mulberry32(
    Math.imul(s + 1, 0x9e3779b1) ^ Math.imul(m + 1, 0x85ebca6b) ^ Math.imul(seed, 0xc2b2ae35),
  );
}

const r4 = (x: number) => Math.round(x * 10_000) / 10_000;

/**
 * The bar of symbol `s` at minute `m`: a pure function, so any bar can be generated again for a
 * replay or streamed into Kafka without holding millions in memory. Valid under the contract.
 */
export function makeBar(s: number, m: number, startMs = BENCH_START_MS, seed = 1): Bar {
  const rand = rngFor(s, m, seed);
  const open = r4(10 + rand() * 490);
  const close = r4(open * (1 + (rand() - 0.5) * 0.01));
  const high = r4(Math.max(open, close) + rand() * 0.01);
  const low = r4(Math.min(open, close) - rand() * 0.01);
  const vwapRaw = rand() < 0.1 ? null : r4((low + high) / 2);
  return {
    symbol: symbolName(s),
    timestampMs: startMs + m * 60_000,
    open,
    high: Math.max(high, open, close),
    low: Math.min(low, open, close),
    close,
    volume: Math.floor(rand() * 1_000_000),
    revision: 0,
    vwap: vwapRaw === null ? null : Math.min(Math.max(vwapRaw, low), high),
  };
}

/** The i-th bar of a minute-major feed of `symbols` symbols (all symbols of minute 0, then minute 1…). */
export function feedBar(i: number, symbols: number, startMs = BENCH_START_MS): Bar {
  return makeBar(i % symbols, Math.floor(i / symbols), startMs);
}

/** The Kafka message value of a bar (the README's contract). */
export function barJson(bar: Bar): string {
  return JSON.stringify({
    symbol: bar.symbol,
    timestamp: new Date(bar.timestampMs).toISOString(),
    open: bar.open,
    high: bar.high,
    low: bar.low,
    close: bar.close,
    volume: bar.volume,
    vwap: bar.vwap,
  });
}

// ---- PostgreSQL -----------------------------------------------------------------------------------

/** psql's arguments for the benchmark database (no .psqlrc, stop at the first error), then `extra`. */
export function psqlArgs(...extra: string[]): string[] {
  return [
    '-X',
    '-v',
    'ON_ERROR_STOP=1',
    '-h',
    PG.host,
    '-p',
    String(PG.port),
    '-U',
    PG.user,
    '-d',
    PG.database,
    ...extra,
  ];
}

/** Runs `cmd`; resolves with its stdout and the wall seconds from spawn to exit, rejects with its output. */
export function runTimed(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ stdout: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const p = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', reject);
    p.once('close', (code) =>
      code === 0
        ? resolve({ stdout: out, seconds: (nowMs() - t0) / 1000 })
        : reject(new Error(`${cmd} exited ${code}: ${(err || out).slice(-800)}`)),
    );
  });
}

/**
 * The leanest load of a CSV file of bars (symbol, timestamp, open, high, low, close, volume, vwap) into
 * `schema`.bars_1m, as a psql script: one transaction, `\copy` into a temporary table, one
 * `INSERT … ON CONFLICT DO UPDATE`. The reference of bench:e2e (references.ts) and bench:backfill.
 */
export function leanLoadScript(csvFile: string, schema: string, header: boolean): string {
  const columns = 'symbol, "timestamp", open, high, low, close, volume, vwap';
  return [
    'BEGIN;',
    `CREATE TEMP TABLE s (symbol text, "timestamp" timestamptz, open float8, high float8, low float8, close float8, volume bigint, vwap float8) ON COMMIT DROP;`,
    `\\copy s FROM '${csvFile}' WITH (FORMAT csv${header ? ', HEADER' : ''})`,
    `INSERT INTO ${ident(schema)}.bars_1m AS t (${columns}) SELECT ${columns} FROM s
     ON CONFLICT (symbol, "timestamp") DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high,
       low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume, vwap = EXCLUDED.vwap;`,
    'COMMIT;',
    '',
  ].join('\n');
}

export function newPool(max = 4): pg.Pool {
  const pool = new pg.Pool({ ...PG, max, application_name: 'bar-writer-bench' });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * Creates `schema` with src/store/migrate.ts. Plain target: the migrations of bars_1m and the fence
 * (001, 002, 007, 008: what the write path uses; compression, aggregates and roles only with
 * BENCH_ALL_MIGRATIONS=1). TimescaleDB target: every migration, so bars_1m is the hypertable the
 * service writes into in production, with its compression and aggregates; the policies' background jobs
 * are unscheduled (they would act on the benchmark's data at their own time). Dropped at cleanup.
 */
export async function createBenchSchema(pool: pg.Pool, cleanup: Cleanup, schema: string): Promise<void> {
  cleanup.add(`drop schema ${schema}`, () => dropSchema(pool, schema));
  const writePath = new Set([1, 2, 7, 8]);
  const migrations = loadMigrations().filter(
    (m) => TARGET === 'timescaledb' || envFlag('BENCH_ALL_MIGRATIONS') || writePath.has(m.version),
  );
  const client = await pool.connect();
  try {
    await migrate(client, schema, migrations);
    if (TARGET === 'timescaledb') {
      const ht = await client.query(
        `SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
        [schema],
      );
      if (ht.rows.length !== 1)
        throw new Error(`BENCH_TARGET=timescaledb but ${schema}.bars_1m is not a hypertable`);
      await client.query(
        `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
        [schema],
      );
    }
  } finally {
    client.release();
  }
}

export async function dropSchema(pool: pg.Pool, schema: string): Promise<void> {
  if (TARGET === 'timescaledb') {
    await pool
      .query(`SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`, [
        schema,
      ])
      .catch(() => undefined);
  }
  await pool.query(`DROP SCHEMA IF EXISTS "${schema.replace(/"/g, '""')}" CASCADE`);
}

export interface TableStats {
  n_tup_ins: number;
  n_tup_upd: number;
  n_tup_hot_upd: number;
  n_tup_del: number;
  n_live_tup: number;
  n_dead_tup: number;
  vacuum_count: number;
  autovacuum_count: number;
  autoanalyze_count: number;
}

/**
 * pg_stat_user_tables of one table, after pg_stat_clear_snapshot() (fresh values, not a cached
 * snapshot); for a hypertable, summed over its chunks, where its rows live.
 */
export async function tableStats(pool: pg.Pool, schema: string, table: string): Promise<TableStats> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_stat_clear_snapshot()');
    const chunks =
      TARGET === 'timescaledb'
        ? `UNION ALL SELECT format('%I.%I', chunk_schema, chunk_name)::regclass FROM timescaledb_information.chunks
           WHERE hypertable_schema = $1 AND hypertable_name = $2`
        : '';
    const r = await client.query<Record<keyof TableStats, string>>(
      `SELECT sum(n_tup_ins) AS n_tup_ins, sum(n_tup_upd) AS n_tup_upd, sum(n_tup_hot_upd) AS n_tup_hot_upd,
              sum(n_tup_del) AS n_tup_del, sum(n_live_tup) AS n_live_tup, sum(n_dead_tup) AS n_dead_tup,
              sum(vacuum_count) AS vacuum_count, sum(autovacuum_count) AS autovacuum_count,
              sum(autoanalyze_count) AS autoanalyze_count
       FROM pg_stat_user_tables
       WHERE relid IN (SELECT format('%I.%I', $1::text, $2::text)::regclass ${chunks})
       HAVING count(*) > 0`,
      [schema, table],
    );
    const row = r.rows[0];
    if (!row) throw new Error(`no pg_stat_user_tables row for ${schema}.${table}`);
    const out = {} as TableStats;
    for (const [k, v] of Object.entries(row)) out[k as keyof TableStats] = Number(v);
    return out;
  } finally {
    client.release();
  }
}

export function statsDelta(before: TableStats, after: TableStats): TableStats {
  const out = {} as TableStats;
  for (const k of Object.keys(after) as (keyof TableStats)[]) out[k] = after[k] - before[k];
  return out;
}

/**
 * Backends flush their table statistics at exit (and otherwise only every 1–10 s when idle), so the
 * caller closes its connections first. This waits until no backend of `applicationName` is left, then
 * ~2 s more, and returns once two reads 1 s apart agree.
 */
export async function settledStats(
  pool: pg.Pool,
  schema: string,
  table: string,
  applicationName?: string,
): Promise<TableStats> {
  const deadline = Date.now() + 20_000;
  if (applicationName) {
    while (Date.now() < deadline) {
      const r = await pool.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = $1',
        [applicationName],
      );
      if (r.rows[0]!.n === '0') break;
      await sleep(100);
    }
  }
  await sleep(2000);
  let prev = await tableStats(pool, schema, table);
  while (Date.now() < deadline) {
    await sleep(1000);
    const next = await tableStats(pool, schema, table);
    if (JSON.stringify(next) === JSON.stringify(prev)) return next;
    prev = next;
  }
  return prev;
}

export async function walLsn(pool: pg.Pool): Promise<string> {
  return (await pool.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l;
}

export async function walBytesSince(pool: pg.Pool, lsn: string): Promise<number> {
  const r = await pool.query<{ d: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS d', [
    lsn,
  ]);
  return Number(r.rows[0]!.d);
}

/**
 * Every timed pass that writes bars (a drain of the service, a psql reference) starts right after a
 * CHECKPOINT, so that all start alike. A checkpoint that begins during a pass makes it write a full-page
 * image of every page it then touches first (WAL and time), and when the server begins one depends on
 * the WAL the passes before wrote: left to chance, it moved the lean psql load between 87,000 and
 * 120,000 bars/s in runs minutes apart. Needs a superuser or pg_checkpoint; otherwise logs it and goes on.
 * Returns the WAL position the pass starts at (for `walBytesSince`).
 */
export async function startAtCheckpoint(pool: pg.Pool): Promise<string> {
  try {
    await pool.query('CHECKPOINT');
  } catch (err) {
    log(
      `CHECKPOINT refused (${(err as Error).message}): the pass starts wherever the server's checkpoints are`,
    );
  }
  return walLsn(pool);
}

// ---- Kafka ----------------------------------------------------------------------------------------

export function newKafka(clientPrefix = 'bench'): Kafka {
  return new Kafka({
    clientId: uniqueName(clientPrefix),
    brokers: KAFKA_BROKERS.split(','),
    logLevel: logLevel.ERROR,
  });
}

export async function connectAdmin(kafka: Kafka, cleanup: Cleanup): Promise<Admin> {
  const admin = kafka.admin();
  await admin.connect();
  cleanup.add('admin disconnect', () => admin.disconnect());
  return admin;
}

/** Creates `topic` (and its DLQ topic, 1 partition); deletes both, and `groups()`, at cleanup. */
export async function createTopics(
  admin: Admin,
  cleanup: Cleanup,
  topic: string,
  partitions: number,
  groups: () => string[],
): Promise<string> {
  const dlq = `${topic}.dlq`;
  cleanup.add(`delete topics ${topic}, groups`, async () => {
    await deleteGroups(admin, groups());
    await admin.deleteTopics({ topics: [topic, dlq] });
  });
  await admin.createTopics({
    topics: [
      { topic, numPartitions: partitions },
      { topic: dlq, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });
  return dlq;
}

/**
 * Deletes consumer groups; one whose member was killed stays "not empty" until its session times out
 * (KAFKA_SESSION_TIMEOUT, 30 s by default), so that is retried for up to 45 s.
 */
async function deleteGroups(admin: Admin, groups: string[]): Promise<void> {
  let left = [...groups];
  const deadline = Date.now() + 45_000;
  let told = false;
  while (left.length > 0) {
    const failed: string[] = [];
    for (const g of left) {
      try {
        await admin.deleteGroups([g]);
      } catch (err) {
        const notEmpty = /NON_EMPTY_GROUP|not empty/i.test(
          JSON.stringify((err as { groups?: unknown }).groups ?? ''),
        );
        const missing = /GROUP_ID_NOT_FOUND|does not exist/i.test(
          JSON.stringify((err as { groups?: unknown }).groups ?? '') + String(err),
        );
        if (notEmpty) failed.push(g);
        else if (!missing) log(`could not delete group ${g}: ${(err as Error).message}`);
      }
    }
    left = failed;
    if (left.length === 0 || Date.now() > deadline) break;
    if (!told) log(`waiting for the session of group(s) ${left.join(', ')} to expire before deleting them`);
    told = true;
    await sleep(2000);
  }
  if (left.length > 0) log(`group(s) left behind (not empty): ${left.join(', ')}`);
}

export async function connectProducer(kafka: Kafka, cleanup: Cleanup): Promise<Producer> {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner, // murmur2, as the Java client (and no warning)
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  cleanup.add('producer disconnect', () => producer.disconnect());
  return producer;
}

/**
 * Produces bars 0..total-1 of a minute-major feed of `symbols` symbols, keyed by symbol, no
 * compression, acks=all, `chunk` messages per send, up to `inFlight` sends at once.
 */
export async function produceFeed(
  producer: Producer,
  topic: string,
  total: number,
  symbols: number,
  opts: { chunk?: number; inFlight?: number; startMs?: number; progress?: boolean } = {},
): Promise<{ seconds: number; barsPerSecond: number }> {
  const chunk = opts.chunk ?? 10_000;
  const inFlight = opts.inFlight ?? 3;
  const t0 = nowMs();
  const pending = new Set<Promise<unknown>>();
  let lastReport = t0;
  for (let i = 0; i < total; i += chunk) {
    const messages = [];
    for (let k = i; k < Math.min(total, i + chunk); k++) {
      const bar = feedBar(k, symbols, opts.startMs);
      messages.push({ key: bar.symbol, value: barJson(bar) });
    }
    const p = producer.send({ topic, acks: -1, messages }).finally(() => pending.delete(p));
    pending.add(p);
    if (pending.size >= inFlight) await Promise.race(pending);
    if (opts.progress && nowMs() - lastReport > 10_000) {
      lastReport = nowMs();
      log(`  produced ${fmtInt(i + chunk)} / ${fmtInt(total)}`);
    }
  }
  await Promise.all(pending);
  const seconds = (nowMs() - t0) / 1000;
  return { seconds, barsPerSecond: total / seconds };
}

/** What the drain benchmarks start from: a fresh schema, and a fresh topic holding the feed. */
export interface Feed {
  pool: pg.Pool;
  machine: Record<string, unknown>;
  schema: string;
  admin: Admin;
  topic: string;
  /** Consumer groups to delete at the end: push every group used. */
  groups: string[];
  /** Log end of every partition once produced. */
  ends: Map<number, bigint>;
  produced: { seconds: number; barsPerSecond: number };
}

/**
 * Schema `bench_<tag>_…` (migrations 001–002) and topic of the same name (dots for underscores) with
 * `total` feed bars of `symbols` symbols, 10,000 per send; all removed by `cleanup`.
 */
export async function prepareFeed(
  cleanup: Cleanup,
  o: { tag: string; total: number; symbols: number; partitions: number; poolSize: number },
): Promise<Feed> {
  const pool = newPool(o.poolSize);
  cleanup.add('pool end', () => pool.end());
  const machine = await machineInfo(pool);
  const schema = uniqueName(`bench_${o.tag}`);
  await createBenchSchema(pool, cleanup, schema);
  const kafka = newKafka();
  const admin = await connectAdmin(kafka, cleanup);
  const topic = schema.replace(/_/g, '.');
  const groups: string[] = [];
  await createTopics(admin, cleanup, topic, o.partitions, () => groups);
  log(
    `producing ${fmtInt(o.total)} bars (${fmtInt(o.symbols)} symbols) to ${topic} (${o.partitions} partitions)`,
  );
  const producer = await connectProducer(kafka, cleanup);
  const produced = await produceFeed(producer, topic, o.total, o.symbols, { chunk: 10_000, progress: true });
  await producer.disconnect();
  log(`  produced in ${round(produced.seconds, 1)} s (${fmtInt(produced.barsPerSecond)} bars/s)`);
  const ends = await endOffsets(admin, topic);
  return { pool, machine, schema, admin, topic, groups, ends, produced };
}

export async function endOffsets(admin: Admin, topic: string): Promise<Map<number, bigint>> {
  const res = await admin.fetchTopicOffsets(topic);
  return new Map(res.map((p) => [p.partition, BigInt(p.high)]));
}

/** True when `group` has committed the log end of every partition in `ends`. */
export async function groupCaughtUp(
  admin: Admin,
  group: string,
  topic: string,
  ends: Map<number, bigint>,
): Promise<boolean> {
  const res = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const committed = new Map(res[0]!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
  for (const [p, end] of ends) if (end > 0n && committed.get(p) !== end) return false;
  return true;
}

// ---- the service as a child process ---------------------------------------------------------------

/** `npm run build` (tsc into dist/), unless BENCH_NO_BUILD=1. */
export function buildService(): void {
  if (envFlag('BENCH_NO_BUILD')) {
    log('BENCH_NO_BUILD=1: using the existing dist/');
  } else {
    log('npm run build');
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: REPO, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal})`);
  }
  if (!fs.existsSync(path.join(REPO, 'dist', 'main.js'))) throw new Error('dist/main.js is missing');
}

/**
 * Extra service settings for experiments, BENCH_SERVICE_ENV="BARS_DB_WRITE_QUEUE_SIZE=20000,KAFKA_MAX_WAIT=100ms".
 * Empty by default: the benchmarks measure the default configuration.
 */
export function serviceOverrides(): Record<string, string> {
  return parsePairs(process.env.BENCH_SERVICE_ENV ?? '', 'BENCH_SERVICE_ENV');
}

/** `NAME=value,NAME=value` (a value may hold `=`); `source` names the variable in errors. */
export function parsePairs(raw: string, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`${source}: "${pair}" is not NAME=value`);
    out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

/** "default config", or the overrides in effect. */
export function configText(): string {
  const o = process.env.BENCH_SERVICE_ENV?.trim();
  return o ? `service overrides ${o}` : 'default config';
}

/** The service's environment, like test/support/harness.ts env(), with the default write config. */
export function serviceEnv(o: {
  schema: string;
  topic: string;
  group: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    DB_HOST: PG.host,
    DB_PORT: String(PG.port),
    DB_USER: PG.user,
    DB_NAME: PG.database,
    DB_SCHEMA: o.schema,
    KAFKA_BROKERS,
    KAFKA_TOPIC: o.topic,
    KAFKA_DLQ_TOPIC: `${o.topic}.dlq`,
    KAFKA_GROUP_ID: o.group,
    KAFKA_CLIENT_ID: uniqueName('bw_bench'),
    HTTP_PORT: '0',
    LOG_LEVEL: 'info',
    ...serviceOverrides(),
    ...o.extra,
  };
}

export interface ServiceChild {
  child: ChildProcess;
  pid: number;
  spawnedAt: number;
  /** performance.now() when the service logged its partition assignment (null: not yet). */
  assignedAt: () => number | null;
  /**
   * The service's CPU seconds when it logged "starting bar-writer" (its modules loaded and its
   * configuration read): what the bare client's "after start-up" leaves out too (null: not yet).
   */
  cpuAtStart: () => number | null;
  httpPort: () => number | null;
  tail: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (graceful drain), SIGKILL after `graceMs`. Resolves on exit. */
  stop: (graceMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The node flags of `npm start` (package.json `scripts.start`: `node [flags] dist/main.js`). */
function startNodeFlags(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  return pkg.scripts.start.split(/\s+/).filter((a) => a.startsWith('--'));
}

/**
 * Spawns `node [npm start's flags] [nodeArgs] dist/main.js` (node directly, not npm, so its pid is
 * the service's); it is stopped by pid at cleanup if still running.
 */
export function spawnService(
  env: Record<string, string>,
  cleanup: Cleanup,
  nodeArgs: string[] = [],
): ServiceChild {
  const spawnedAt = nowMs();
  const args = [...startNodeFlags(), ...nodeArgs, path.join(REPO, 'dist', 'main.js')];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not spawn the service');
  const pid = child.pid;
  const lines: string[] = [];
  let assignedAt: number | null = null;
  let cpuAtStart: number | null = null;
  let httpPort: number | null = null;
  let partial = '';
  // BENCH_SERVICE_LOG=file: every line the service prints, appended (with LOG_LEVEL=trace in
  // BENCH_SERVICE_ENV: each flush with its reason and size, each pause).
  const logFile = process.env.BENCH_SERVICE_LOG;
  const onData = (d: Buffer) => {
    if (logFile) fs.appendFileSync(logFile, d);
    partial += d.toString();
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      lines.push(line);
      if (lines.length > 200) lines.shift();
      if (cpuAtStart === null && line.includes('"starting bar-writer"')) cpuAtStart = processCpuSeconds(pid);
      if (assignedAt === null && line.includes('"partitions assigned"')) assignedAt = nowMs();
      if (httpPort === null && line.includes('"http listening"')) {
        const m = /"port":(\d+)/.exec(line);
        if (m) httpPort = Number(m[1]);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const stop = async (graceMs = 30_000) => {
    if (alive()) {
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (alive()) process.kill(pid, 'SIGKILL');
      }, graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    }
    return exited;
  };
  cleanup.add(`stop service pid ${pid}`, async () => {
    // After a Ctrl-C the child got the SIGINT too and is draining: a SIGTERM now would be its second
    // signal (exit at once, without leaving the group). Give it time to finish first.
    if (cleanup.interrupted && alive()) await Promise.race([exited, sleep(15_000)]);
    return stop(10_000);
  });
  return {
    child,
    pid,
    spawnedAt,
    assignedAt: () => assignedAt,
    cpuAtStart: () => cpuAtStart,
    httpPort: () => httpPort,
    tail: () => lines.slice(-40).join('\n'),
    exited,
    stop,
  };
}

/** Samples VmRSS of `pid` from /proc every `intervalMs`; VmHWM (the kernel's peak) on demand. */
export class RssSampler {
  private timer: NodeJS.Timeout;
  peakRssKb = 0;
  samples = 0;
  private series: { t: number; rssKb: number }[] = [];

  constructor(
    private readonly pid: number,
    intervalMs = 100,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.sample();
  }

  private read(): Record<string, number> {
    const out: Record<string, number> = {};
    try {
      const text = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
      for (const line of text.split('\n')) {
        const m = /^(Vm\w+):\s+(\d+) kB/.exec(line);
        if (m) out[m[1]!] = Number(m[2]);
      }
    } catch {
      // exited
    }
    return out;
  }

  private sample(): void {
    const rss = this.read().VmRSS;
    if (rss === undefined) return;
    this.samples++;
    if (rss > this.peakRssKb) this.peakRssKb = rss;
    if (this.samples % 10 === 1) this.series.push({ t: Math.round(nowMs()), rssKb: rss });
  }

  /** VmHWM: the process's peak resident set size, as the kernel counted it (read before it exits). */
  hwmKb(): number | null {
    return this.read().VmHWM ?? null;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** user+system CPU seconds of `pid` so far (/proc/<pid>/stat utime + stime), null once it is gone. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = 100; // getconf CLK_TCK on Linux x86_64

/** Bytes `pid` has read through read()-like calls, sockets included (/proc/<pid>/io rchar). */
export function processReadBytes(pid: number): number | null {
  try {
    const m = /^rchar:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Machine-wide CPU seconds (busy, total) from /proc/stat, summed over all cores. */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is already in user)
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
}

/** Polls `probe` every `intervalMs` until true; throws after `timeoutMs` or when `failIf()` says why. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  opts: { intervalMs?: number; timeoutMs?: number; failIf?: () => string | null } = {},
): Promise<number> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30 * 60_000);
  for (;;) {
    const failure = opts.failIf?.();
    if (failure) throw new Error(`${what}: ${failure}`);
    try {
      if (await probe()) return nowMs();
    } catch {
      // transient (e.g. the group does not exist yet); try again
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(opts.intervalMs ?? 200);
  }
}

/** Sum of a metric's samples in Prometheus text (all label sets). */
export function metricSum(text: string, name: string): number | null {
  let total: number | null = null;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

// ---- machine and results --------------------------------------------------------------------------

export async function machineInfo(pool: pg.Pool): Promise<Record<string, unknown>> {
  const pgVersion = (await pool.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
  const settings = await pool.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings
     WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size')`,
  );
  let git: Record<string, unknown>;
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO }).toString().trim();
    // --no-optional-locks: read-only, never refreshes the index.
    const dirty = execFileSync(
      'git',
      ['--no-optional-locks', 'status', '--porcelain', '--', 'src', 'migrations'],
      { cwd: REPO },
    )
      .toString()
      .trim();
    git = { head, srcDirty: dirty.length > 0 };
  } catch {
    git = { head: null };
  }
  return {
    nproc: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? null,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    loadAvgAtStart: os.loadavg().map((x) => round(x, 2)),
    node: process.version,
    postgres: pgVersion,
    postgresSettings: Object.fromEntries(
      settings.rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting]),
    ),
    kafka: KAFKA_VERSION,
    target: TARGET,
    git,
    serviceEnvOverrides: serviceOverrides(),
  };
}

export const RUN_ID = process.env.BENCH_RUN_ID ?? uniqueName('run');

/**
 * Replaces one section of bench/results/latest.json (other sections are kept), atomically. Runs with
 * BENCH_SERVICE_ENV overrides go to "<section>@<overrides>", so experiments never replace the
 * default-configuration figures.
 */
export function saveResult(baseSection: string, data: Record<string, unknown>): void {
  const overrides = process.env.BENCH_SERVICE_ENV?.trim();
  const section = overrides ? `${sectionName(baseSection)}@${overrides}` : sectionName(baseSection);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  let all: Record<string, unknown>;
  try {
    all = JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[section] = { runId: RUN_ID, at: new Date().toISOString(), ...data };
  const tmp = `${RESULTS_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n');
  fs.renameSync(tmp, RESULTS_FILE);
  log(`results written to ${path.relative(REPO, RESULTS_FILE)} (${section})`);
}

export function loadResults(): Record<string, Record<string, unknown> | undefined> {
  try {
    return JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8')) as Record<string, Record<string, unknown>>;
  } catch {
    return {};
  }
}
