/**
 * The benchmark database: psql and timed commands, pools, a migrated schema per run (dropped at
 * cleanup), pg_stat_user_tables reads, WAL positions and checkpoints.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { loadMigrations, migrate } from '../src/store/migrate';
import { ident } from '../src/store/pool';
import { sleep } from '../test/support/common';
import type { Cleanup } from './cleanup';
import { envFlag, PG, REPO, TARGET } from './env';
import { log, nowMs } from './report';

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
 * Creates `schema` with src/store/migrate.ts. Plain target: the migrations of bars_1m, the fence and
 * bars_latest, the tombstones and the minute index (001, 002, 007, 008, 010-013: what the write path uses and
 * writes; compression, aggregates and roles only with
 * BENCH_ALL_MIGRATIONS=1). TimescaleDB target: every migration, so bars_1m is the hypertable the
 * service writes into in production, with its compression and aggregates; the policies' background jobs
 * are unscheduled (they would act on the benchmark's data at their own time). Dropped at cleanup.
 */
export async function createBenchSchema(pool: pg.Pool, cleanup: Cleanup, schema: string): Promise<void> {
  cleanup.add(`drop schema ${schema}`, () => dropSchema(pool, schema));
  const writePath = new Set([1, 2, 7, 8, 10, 11, 12, 13]);
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
