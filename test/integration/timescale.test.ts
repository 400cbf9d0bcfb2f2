/**
 * TimescaleDB for real: the migrations, the policies and the writer against a real TimescaleDB 2.28
 * server (TEST_TSDB_*, started by scripts/timescaledb.sh), and the same migrations on plain PostgreSQL.
 *
 * Background jobs of this build fail after running (see docs/timescaledb.md "How it is tested"), and waiting for a
 * scheduler is not a test: each schema's jobs are unscheduled right after migrating, and every policy
 * is run with `CALL run_job(id)`.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { Bar } from '../../src/contract/bar';
import { packBar } from '../../src/contract/packedBar';
import { loadConfig } from '../../src/config';
import { loadMigrations, migrate } from '../../src/store/migrate';
import { BarReader } from '../../src/store/readBars';
import { createPool, withConnection } from '../../src/store/pool';
import { CompressedChunks } from '../../src/store/compressedChunks';
import { AGGREGATES } from '../../src/store/aggregates';
import { applyAggregateTimezone, applyRetention } from '../../src/store/timescaleSettings';
import { writeGroup } from '../../src/store/writeBatch';
import { freePort, TempCluster } from '../support/cluster';
import { PG_IS_TIMESCALEDB, PLAIN_PG, TSDB, TSDB_BIN, type PgTarget } from '../support/env';
import { parseReadBars, readBarOf } from '../support/readBars';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  runCli,
  uniqueName,
  waitFor,
} from '../support/harness';

const NAMES = loadMigrations().map((m) => m.name);
const DAY = 86_400_000;
const WIDTH_MS: Record<string, number> = {
  bars_5m: 5 * 60_000,
  bars_15m: 15 * 60_000,
  bars_1h: 3_600_000,
  bars_1d: DAY,
};

/** A bar as inserted; `at` is a UTC minute like '2026-01-05T09:30'. */
interface InBar {
  symbol: string;
  at: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
  /** A delete (the contract's `deleted: true`). */
  deleted?: boolean;
}
/** A row of bars_1m or of an aggregate, as the tests read it (volume as text: bigint or numeric). */
interface OutBar {
  symbol: string;
  timestamp: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: string;
  vwap: number | null;
}

const b = (
  symbol: string,
  at: string,
  [open, high, low, close]: [number, number, number, number],
  volume: number,
  vwap: number | null,
): InBar => ({ symbol, at, open, high, low, close, volume, vwap });

// Prices, vwaps and volumes are exact in binary, so every sum below is exact and PostgreSQL and the
// reference computation agree to the last bit. The dates are long past (compression and retention
// policies act on them) and span 5-minute, 15-minute, hour and day boundaries.
const BARS: InBar[] = [
  b('AAA', '2026-01-05T09:30', [10, 11, 9.5, 10.5], 100, 10.25),
  b('AAA', '2026-01-05T09:31', [10.5, 12, 10, 11.75], 300, 11.5),
  b('AAA', '2026-01-05T09:34', [11.75, 11.75, 8.25, 9], 200, null), // no vwap: left out of the vwap
  b('AAA', '2026-01-05T09:35', [9, 9.5, 8.75, 9.25], 50, 9),
  b('AAA', '2026-01-05T09:44', [9.25, 10, 9, 9.75], 0, 9.5), // no volume: weighs nothing
  b('AAA', '2026-01-05T09:45', [9.75, 10.5, 9.5, 10.25], 400, 10),
  b('AAA', '2026-01-05T10:59', [10.25, 10.5, 10, 10], 10, 10.25),
  b('AAA', '2026-01-05T11:00', [10, 10.25, 9.75, 10], 20, 10),
  b('AAA', '2026-01-05T23:59', [12, 12.5, 11.5, 12.25], 70, 12),
  b('AAA', '2026-01-06T00:00', [12.25, 13, 12, 12.75], 80, 12.5),
  b('BBB', '2026-01-05T09:30', [100, 101, 99, 100.5], 1000, null), // a bucket without any vwap
  b('BBB', '2026-01-05T09:32', [100.5, 102, 100, 101], 2000, null),
  b('BBB', '2026-01-05T09:40', [101, 101, 100, 100], 0, 100.5), // vwap bars of zero volume only
  b('BBB', '2026-01-05T09:45', [100, 100.5, 99.5, 100.25], 500, 100.25),
  b('BBB', '2026-01-06T14:00', [90, 91, 89, 90.5], 123, 90.25),
];

const msOf = (at: string) => Date.parse(`${at}:00Z`);

const toOut = (x: InBar): OutBar => ({
  symbol: x.symbol,
  timestamp: new Date(msOf(x.at)).toISOString(),
  open: x.open,
  high: x.high,
  low: x.low,
  close: x.close,
  volume: String(x.volume),
  vwap: x.vwap,
});

const toBar = (x: InBar): Bar => ({
  symbol: x.symbol,
  timestampMs: msOf(x.at),
  open: x.open,
  high: x.high,
  low: x.low,
  close: x.close,
  volume: x.volume,
  vwap: x.vwap,
  revision: 0,
  tradeCount: null,
  deleted: x.deleted ?? false,
  extras: null,
});

const byKey = (x: InBar, y: InBar) => (x.symbol + x.at < y.symbol + y.at ? -1 : 1);

/** The reference: what each aggregate must hold for `bars`, ordered by symbol and bucket (UTC). */
function aggregate(bars: readonly InBar[], widthMs: number): OutBar[] {
  const groups = new Map<string, InBar[]>();
  for (const x of bars) {
    const bucket = Math.floor(msOf(x.at) / widthMs) * widthMs;
    const key = `${x.symbol}|${new Date(bucket).toISOString()}`;
    groups.set(key, [...(groups.get(key) ?? []), x]);
  }
  return [...groups.entries()]
    .sort(([a], [c]) => (a < c ? -1 : a > c ? 1 : 0))
    .map(([key, members]) => {
      const sorted = [...members].sort((p, q) => (p.at < q.at ? -1 : 1));
      const priced = sorted.filter((x) => x.vwap !== null);
      const pricedVolume = priced.reduce((s, x) => s + x.volume, 0);
      const [symbol, timestamp] = key.split('|') as [string, string];
      return {
        symbol,
        timestamp,
        open: sorted[0]!.open,
        high: Math.max(...sorted.map((x) => x.high)),
        low: Math.min(...sorted.map((x) => x.low)),
        close: sorted.at(-1)!.close,
        volume: String(sorted.reduce((s, x) => s + x.volume, 0)),
        vwap: pricedVolume === 0 ? null : priced.reduce((s, x) => s + x.vwap! * x.volume, 0) / pricedVolume,
      };
    });
}

/**
 * One schema on a server: migrated (jobs unscheduled, see the header), with helpers to read tables and
 * jobs and to write through the service's own write path (COPY → staging → upsert, as `user`).
 */
class Db {
  readonly pool: pg.Pool;
  readonly s: string;

  constructor(
    readonly target: PgTarget,
    readonly schema = uniqueName('bw_tsdb'),
  ) {
    this.pool = new pg.Pool({ ...target, max: 3 });
    this.pool.on('error', () => undefined);
    this.s = `"${schema}"`;
  }

  async q<R extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> {
    return (await this.pool.query<R>(text, params)).rows;
  }

  async setup(): Promise<Awaited<ReturnType<typeof migrate>>> {
    const c = await this.pool.connect();
    try {
      const result = await migrate(c, this.schema);
      if ((await c.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`)).rows.length > 0) {
        await c.query(
          `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
          [this.schema],
        );
      }
      return result;
    } finally {
      c.release();
    }
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.s} CASCADE`).catch(() => undefined);
    await this.pool.end();
  }

  readBars(table: string): Promise<OutBar[]> {
    return this.q<OutBar & { timestamp: Date }>(
      `SELECT symbol, "timestamp", open, high, low, close, volume::text AS volume, vwap
       FROM ${this.s}.${table} ORDER BY symbol, "timestamp"`,
    ).then((rows) => rows.map((r) => ({ ...r, timestamp: r.timestamp.toISOString() })));
  }

  jobs() {
    return this.q<{
      job_id: number;
      proc_name: string;
      hypertable_name: string;
      schedule_interval: string;
      config: Record<string, unknown>;
    }>(
      `SELECT job_id, proc_name, hypertable_name, schedule_interval::text AS schedule_interval, config
       FROM timescaledb_information.jobs WHERE hypertable_schema = $1 ORDER BY job_id`,
      [this.schema],
    );
  }

  /** Runs every job of `proc` once, in the foreground (not through the scheduler). */
  async runJobs(proc: string): Promise<number> {
    const jobs = (await this.jobs()).filter((j) => j.proc_name === proc);
    for (const j of jobs) await this.pool.query(`CALL run_job(${j.job_id})`);
    return jobs.length;
  }

  async refreshAll(): Promise<void> {
    for (const a of AGGREGATES) {
      await this.pool.query(`CALL refresh_continuous_aggregate('${this.schema}.${a.name}', NULL, NULL)`);
    }
  }

  async insert(bars: readonly InBar[]): Promise<void> {
    const params: unknown[] = [];
    const rows = bars.map((x) => {
      const at = params.length;
      params.push(x.symbol, new Date(msOf(x.at)), x.open, x.high, x.low, x.close, x.volume, x.vwap);
      return `(${Array.from({ length: 8 }, (_, i) => `$${at + i + 1}`).join(', ')})`;
    });
    await this.pool.query(
      `INSERT INTO ${this.s}.bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap)
       VALUES ${rows.join(', ')}`,
      params,
    );
  }

  /** Writes `bars` as the service does (binary COPY into staging, fence, upsert), as `user`. */
  async writeAsService(bars: readonly InBar[], user = this.target.user): Promise<void> {
    const config = loadConfig({
      DB_HOST: this.target.host,
      DB_PORT: String(this.target.port),
      DB_USER: user,
      DB_NAME: this.target.database,
      DB_SCHEMA: this.schema,
    });
    const pool = createPool({ ...config.db, maxConnections: 1, maxIdleConnections: 0 });
    try {
      // Record times increase with the offsets: later messages are newer versions.
      const entries = bars.map((x, i) => ({
        offset: BigInt(i),
        ...packBar(toBar(x), Date.now() + i),
      }));
      await withConnection(pool, (c) =>
        writeGroup(c, this.schema, uniqueName('g'), 'topic', [
          { partition: 0, entries, nextOffset: BigInt(bars.length), lastFingerprint: 'test' },
        ]),
      );
    } finally {
      await pool.end();
    }
  }

  /**
   * Buckets where `table` differs from a direct time_bucket aggregation of bars_1m (both directions),
   * bucketed in `zone` (null: UTC).
   */
  async staleBuckets(table: string, width: string, zone: string | null = null): Promise<number> {
    const bucket = zone
      ? `time_bucket('${width}'::interval, "timestamp", '${zone}')`
      : `time_bucket('${width}'::interval, "timestamp")`;
    const direct = `SELECT symbol, ${bucket} AS "timestamp", first(open, "timestamp") AS open, max(high) AS high,
        min(low) AS low, last(close, "timestamp") AS close, sum(volume) AS volume,
        sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL) / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap
      FROM ${this.s}.bars_1m GROUP BY 1, 2`;
    const agg = `SELECT symbol, "timestamp", open, high, low, close, volume, vwap FROM ${this.s}.${table}`;
    const [r] = await this.q<{ n: number }>(
      `SELECT ((SELECT count(*) FROM (${agg} EXCEPT ${direct}) x) + (SELECT count(*) FROM (${direct} EXCEPT ${agg}) y))::int AS n`,
    );
    return r!.n;
  }
}

const tsdbReachable = async (): Promise<string | null> => {
  const c = new pg.Client({ ...TSDB, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    const r = await c.query(`SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers'`);
    return r.rows.length === 1 ? null : `TimescaleDB is not preloaded at ${TSDB.host}:${TSDB.port}`;
  } catch (err) {
    return `no TimescaleDB at ${TSDB.host}:${TSDB.port} (${(err as Error).message}): scripts/timescaledb.sh start, or TEST_TSDB_*`;
  } finally {
    await c.end().catch(() => undefined);
  }
};

describe('migrations, policies and the writer on a real TimescaleDB', () => {
  const db = new Db(TSDB);
  let first: Awaited<ReturnType<typeof migrate>>;
  let current: InBar[] = [...BARS];

  beforeAll(async () => {
    const problem = await tsdbReachable();
    if (problem) throw new Error(problem);
    first = await db.setup();
  });
  afterAll(async () => {
    await db.pool.query(`DROP OWNED BY bw_tsdb_writer`).catch(() => undefined);
    await db.pool.query(`DROP ROLE IF EXISTS bw_tsdb_writer`).catch(() => undefined);
    await db.drop();
  });

  test('applies every migration once: bars_1m is a hypertable of 1-day chunks; a second run applies nothing', async () => {
    expect(first).toEqual({ applied: NAMES, skipped: [] });
    const c = await db.pool.connect();
    try {
      expect(await migrate(c, db.schema)).toEqual({ applied: [], skipped: NAMES });
    } finally {
      c.release();
    }
    expect(await db.q(`SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'`)).toEqual([
      { extversion: '2.28.3' },
    ]);
    expect(
      await db.q(
        `SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables
         WHERE hypertable_schema = $1`,
        [db.schema],
      ),
    ).toEqual([{ hypertable_name: 'bars_1m', compression_enabled: true }]);
    expect(
      await db.q(
        `SELECT column_name, time_interval::text AS time_interval FROM timescaledb_information.dimensions
         WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
        [db.schema],
      ),
    ).toEqual([{ column_name: 'timestamp', time_interval: '1 day' }]);
    // The primary key and the minute's index of migration 013, nothing else (create_default_indexes => false).
    expect(
      (
        await db.q<{ indexname: string }>(
          `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'bars_1m' ORDER BY indexname`,
          [db.schema],
        )
      ).map((r) => r.indexname),
    ).toEqual(['bars_1m_minute', 'bars_1m_pkey']);
  });

  test('compression: segment by symbol, order by "timestamp" DESC, policy after 7 days', async () => {
    expect(
      await db.q(
        `SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc
         FROM timescaledb_information.compression_settings
         WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'
         ORDER BY attname`,
        [db.schema],
      ),
    ).toEqual([
      { attname: 'symbol', segmentby_column_index: 1, orderby_column_index: null, orderby_asc: null },
      { attname: 'timestamp', segmentby_column_index: null, orderby_column_index: 1, orderby_asc: false },
    ]);
    const compression = (await db.jobs()).filter((j) => j.proc_name === 'policy_compression');
    expect(compression).toHaveLength(1);
    expect(compression[0]).toMatchObject({
      hypertable_name: 'bars_1m',
      config: { compress_after: '7 days' },
    });
  });

  test('four continuous aggregates, real-time, refreshed over all history by their policies', async () => {
    expect(
      await db.q(
        `SELECT view_name, hypertable_name, materialized_only FROM timescaledb_information.continuous_aggregates
         WHERE view_schema = $1 ORDER BY view_name`,
        [db.schema],
      ),
    ).toEqual(
      ['bars_15m', 'bars_1d', 'bars_1h', 'bars_5m'].map((view_name) => ({
        view_name,
        hypertable_name: 'bars_1m',
        materialized_only: false,
      })),
    );
    const refresh = (await db.jobs()).filter((j) => j.proc_name === 'policy_refresh_continuous_aggregate');
    expect(
      refresh.map((j) => ({
        name: j.hypertable_name,
        schedule: j.schedule_interval,
        start: j.config.start_offset,
        end: j.config.end_offset,
      })),
    ).toEqual([
      { name: 'bars_5m', schedule: '00:01:00', start: null, end: '00:01:00' },
      { name: 'bars_15m', schedule: '00:05:00', start: null, end: '00:01:00' },
      { name: 'bars_1h', schedule: '00:15:00', start: null, end: '00:01:00' },
      { name: 'bars_1d', schedule: '01:00:00', start: null, end: '00:01:00' },
    ]);
    for (const a of AGGREGATES) {
      expect(
        await db.q(
          `SELECT column_name, data_type FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
          [db.schema, a.name],
        ),
      ).toEqual([
        { column_name: 'symbol', data_type: 'text' },
        { column_name: 'timestamp', data_type: 'timestamp with time zone' },
        { column_name: 'open', data_type: 'double precision' },
        { column_name: 'high', data_type: 'double precision' },
        { column_name: 'low', data_type: 'double precision' },
        { column_name: 'close', data_type: 'double precision' },
        { column_name: 'volume', data_type: 'numeric' },
        { column_name: 'vwap', data_type: 'double precision' },
      ]);
    }
  });

  test('the writer (binary COPY, staging, upsert) lands bars in the hypertable; every aggregate is exact', async () => {
    await db.writeAsService(BARS);
    await db.refreshAll();
    expect(await db.readBars('bars_1m')).toEqual([...BARS].sort(byKey).map(toOut));
    for (const a of AGGREGATES) {
      expect({ aggregate: a.name, rows: await db.readBars(a.name) }).toEqual({
        aggregate: a.name,
        rows: aggregate(BARS, WIDTH_MS[a.name]!),
      });
      // Materialized, not only computed at query time.
      const [mat] = await db.q<{ schema: string; name: string }>(
        `SELECT materialization_hypertable_schema AS schema, materialization_hypertable_name AS name
         FROM timescaledb_information.continuous_aggregates WHERE view_schema = $1 AND view_name = $2`,
        [db.schema, a.name],
      );
      const [count] = await db.q<{ n: string }>(
        `SELECT count(*)::text AS n FROM "${mat!.schema}"."${mat!.name}"`,
      );
      expect(Number(count!.n)).toBe(aggregate(BARS, WIDTH_MS[a.name]!).length);
    }
    // The reference itself, checked by hand on a few buckets.
    const aaa5 = (await db.readBars('bars_5m')).find((r) => r.symbol === 'AAA')!;
    expect(aaa5).toEqual({
      symbol: 'AAA',
      timestamp: '2026-01-05T09:30:00.000Z',
      open: 10,
      high: 12,
      low: 8.25,
      close: 9,
      volume: '600',
      vwap: (10.25 * 100 + 11.5 * 300) / 400, // 11.1875: the 09:34 bar has no vwap
    });
    const bbb5 = (await db.readBars('bars_5m')).filter((r) => r.symbol === 'BBB');
    expect(bbb5.map((r) => [r.timestamp.slice(11, 16), r.volume, r.vwap])).toEqual([
      ['09:30', '3000', null], // no bar with a vwap
      ['09:40', '0', null], // vwap bars of zero volume
      ['09:45', '500', 100.25],
      ['14:00', '123', 90.25],
    ]);
  });

  test('newer bars show at once (real-time aggregation); changed buckets after a policy run', async () => {
    const late = b('AAA', '2026-01-07T10:00', [13, 14, 12.5, 13.5], 40, 13.25);
    await db.insert([late]);
    current = [...current, late];
    expect(
      (await db.readBars('bars_1h')).find((r) => r.timestamp === '2026-01-07T10:00:00.000Z'),
    ).toMatchObject({
      open: 13,
      volume: '40',
      vwap: 13.25,
    });
    await db.pool.query(
      `UPDATE ${db.s}.bars_1m SET volume = 1 WHERE symbol = 'BBB' AND "timestamp" = '2026-01-06T14:00Z'`,
    );
    current = current.map((x) =>
      x.symbol === 'BBB' && x.at === '2026-01-06T14:00' ? { ...x, volume: 1 } : x,
    );
    // Materialized and not yet refreshed: the old value.
    expect(
      (await db.readBars('bars_1d')).find((r) => r.symbol === 'BBB' && r.volume === '123'),
    ).toBeDefined();
    expect(await db.runJobs('policy_refresh_continuous_aggregate')).toBe(4);
    for (const a of AGGREGATES)
      expect(await db.readBars(a.name)).toEqual(aggregate(current, WIDTH_MS[a.name]!));
  });

  test('the compression policy compresses old chunks; the writer role upserts into them exactly and may do nothing else', async () => {
    expect(await db.runJobs('policy_compression')).toBe(1);
    const chunks = await db.q<{ is_compressed: boolean }>(
      `SELECT is_compressed FROM timescaledb_information.chunks
       WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m' ORDER BY range_start`,
      [db.schema],
    );
    expect(chunks.map((c) => c.is_compressed)).toEqual([true, true, true]);

    await db.pool.query(`DROP ROLE IF EXISTS bw_tsdb_writer`);
    await db.pool.query(`CREATE ROLE bw_tsdb_writer LOGIN IN ROLE bar_writer_rw`);
    const changed = { ...BARS[1]!, close: 11.5 }; // AAA 09:31, in a compressed chunk
    const added = b('CCC', '2026-01-05T09:33', [5, 5.5, 4.5, 5.25], 7, 5);
    // An older version of the changed bar first: the latest message per key wins.
    await db.writeAsService([{ ...changed, close: 10.75 }, changed, added, BARS[0]!], 'bw_tsdb_writer');
    current = [...current.map((x) => (x.symbol === 'AAA' && x.at === changed.at ? changed : x)), added];
    expect(await db.readBars('bars_1m')).toEqual([...current].sort(byKey).map(toOut));

    const c = new pg.Client({ ...TSDB, user: 'bw_tsdb_writer' });
    await c.connect();
    try {
      // The writer role sees which chunks are compressed (it counts its writes into them).
      const chunksSeen = new CompressedChunks(c, db.schema);
      await chunksSeen.refresh();
      expect(chunksSeen.holds(msOf('2026-01-05T09:31'))).toBe(true);
      expect(chunksSeen.holds(Date.now())).toBe(false);
      const refused: Record<string, string | undefined> = {};
      // DELETE on bars_1m is the writer's since deletes (migration 012): privileges.test.ts.
      for (const statement of [
        `TRUNCATE ${db.s}.bars_1m`,
        `DROP TABLE ${db.s}.bars_1m`,
        `ALTER TABLE ${db.s}.bars_1m ADD COLUMN x int`,
        `CREATE TABLE ${db.s}.x (i int)`,
        `DELETE FROM ${db.s}.bar_writer_offsets`,
        `SELECT * FROM ${db.s}.bar_writer_migrations`,
        `DROP MATERIALIZED VIEW ${db.s}.bars_5m`,
        `SELECT remove_compression_policy('${db.schema}.bars_1m')`,
        `SELECT decompress_chunk(c) FROM show_chunks('${db.schema}.bars_1m') c`,
        `CALL refresh_continuous_aggregate('${db.schema}.bars_5m', NULL, NULL)`,
      ]) {
        refused[statement] = await c.query(statement).then(
          () => 'succeeded',
          (err: { code?: string }) => err.code,
        );
      }
      expect(Object.entries(refused).filter(([, code]) => code !== '42501')).toEqual([]);
      expect((await c.query(`SELECT count(*)::int AS n FROM ${db.s}.bars_1d`)).rows).toEqual([{ n: 5 }]);
    } finally {
      await c.end();
    }
    await db.runJobs('policy_refresh_continuous_aggregate');
    for (const a of AGGREGATES)
      expect(await db.readBars(a.name)).toEqual(aggregate(current, WIDTH_MS[a.name]!));
  });

  test('late corrections of bars two months old reach every aggregate at the next policy run', async () => {
    // 2,000 bars two months old (100 symbols × 20 minutes), materialized and compressed ...
    const start = Math.floor((Date.now() - 60 * DAY) / DAY) * DAY + 14 * 3_600_000;
    const old: InBar[] = [];
    for (let m = 0; m < 20; m++) {
      for (let s = 0; s < 100; s++) {
        const p = 50 + s + m / 8;
        old.push(
          b(
            `OLD${s}`,
            new Date(start + m * 60_000).toISOString().slice(0, 16),
            [p, p + 1, p - 1, p + 0.5],
            100 + m,
            p,
          ),
        );
      }
    }
    await db.writeAsService(old);
    await db.runJobs('policy_refresh_continuous_aggregate');
    await db.runJobs('policy_compression');
    for (const a of AGGREGATES) expect(await db.staleBuckets(a.name, a.width)).toBe(0);
    // ... then corrected (new closes and volumes) through the writer: upserts into compressed chunks.
    const corrected = old.map((x) => ({ ...x, close: x.close - 0.25, volume: x.volume * 3 + 1 }));
    await db.writeAsService(corrected);
    const [landed] = await db.q<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${db.s}.bars_1m WHERE symbol LIKE 'OLD%' AND volume >= 301`,
    );
    expect(landed!.n).toBe(2000);
    // Before the policy runs, the materialized buckets are stale (the premise) ...
    expect(await db.staleBuckets('bars_5m', '5 minutes')).toBeGreaterThan(0);
    // ... and one run of each refresh policy brings every bucket back, whatever its age.
    await db.runJobs('policy_refresh_continuous_aggregate');
    for (const a of AGGREGATES) {
      expect({ aggregate: a.name, stale: await db.staleBuckets(a.name, a.width) }).toEqual({
        aggregate: a.name,
        stale: 0,
      });
    }
  });

  test('retention from configuration: added, kept, replaced, removed; the refresh windows follow it', async () => {
    const state = async () => {
      const jobs = await db.jobs();
      return {
        retention: jobs.filter((j) => j.proc_name === 'policy_retention').map((j) => j.config.drop_after),
        windows: [
          ...new Set(
            jobs
              .filter((j) => j.proc_name === 'policy_refresh_continuous_aggregate')
              .map((j) => j.config.start_offset),
          ),
        ],
      };
    };
    const c = await db.pool.connect();
    try {
      expect(await applyRetention(c, db.schema, 400 * DAY)).toEqual({
        action: 'added',
        dropAfter: '400 days',
        refreshPoliciesChanged: 4,
      });
      expect(await state()).toEqual({ retention: ['400 days'], windows: ['400 days'] });
      expect(await applyRetention(c, db.schema, 400 * DAY)).toEqual({
        action: 'unchanged',
        dropAfter: '400 days',
        refreshPoliciesChanged: 0,
      });
      expect(await applyRetention(c, db.schema, 36 * 3_600_000 * 10)).toEqual({
        action: 'replaced',
        dropAfter: '15 days',
        refreshPoliciesChanged: 4,
      });
      expect(await state()).toEqual({ retention: ['15 days'], windows: ['15 days'] });
      expect(await applyRetention(c, db.schema, 0)).toEqual({
        action: 'removed',
        dropAfter: null,
        refreshPoliciesChanged: 4,
      });
      expect(await applyRetention(c, db.schema, 0)).toEqual({
        action: 'none',
        dropAfter: null,
        refreshPoliciesChanged: 0,
      });
      expect(await state()).toEqual({ retention: [], windows: [null] });
    } finally {
      c.release();
    }
  });

  test('the retention and refresh policies run: old chunks go, the aggregates keep their buckets', async () => {
    const before = new Map<string, OutBar[]>();
    for (const a of AGGREGATES) before.set(a.name, await db.readBars(a.name));
    const c = await db.pool.connect();
    try {
      expect(await applyRetention(c, db.schema, 30 * DAY)).toMatchObject({ action: 'added' });
    } finally {
      c.release();
    }
    expect(await db.runJobs('policy_retention')).toBe(1);
    expect(await db.q(`SELECT count(*)::int AS n FROM ${db.s}.bars_1m`)).toEqual([{ n: 0 }]);
    // Dropping chunks invalidates their range; a refresh over it would erase the buckets. The windows
    // end at the retention horizon, so the policies leave them alone.
    expect(await db.runJobs('policy_refresh_continuous_aggregate')).toBe(4);
    for (const a of AGGREGATES) expect(await db.readBars(a.name)).toEqual(before.get(a.name));
  });
});

describe('the aggregates of an hour or a day bucket in BARS_DB_AGGREGATE_TIMEZONE', () => {
  const db = new Db(TSDB);
  const zone = 'America/New_York';
  // US daylight saving time began on 2026-03-08 at 02:00 EST (07:00 UTC): that day lasts 23 hours,
  // midnight is 05:00 UTC before it and 04:00 UTC after it.
  const DST: InBar[] = [
    b('NYC', '2026-03-08T04:59', [10, 11, 9, 10.5], 1, 10), // Sat 7 Mar 23:59 EST
    b('NYC', '2026-03-08T05:00', [10.5, 12, 10, 11], 2, 11), // Sun 8 Mar 00:00 EST
    b('NYC', '2026-03-08T06:59', [11, 11.5, 10.5, 11.25], 4, 11), // 01:59 EST
    b('NYC', '2026-03-08T07:00', [11.25, 11.5, 11, 11.5], 8, 11.25), // 03:00 EDT (02:00 never happened)
    b('NYC', '2026-03-09T03:59', [11.5, 13, 11, 12], 16, 12), // Sun 8 Mar 23:59 EDT
    b('NYC', '2026-03-09T04:00', [12, 12.5, 11.5, 12.25], 32, 12), // Mon 9 Mar 00:00 EDT
  ];

  beforeAll(async () => {
    const problem = await tsdbReachable();
    if (problem) throw new Error(problem);
    await db.setup();
    await db.insert(DST);
  });
  afterAll(() => db.drop());

  test('a change rebuilds bars_1h and bars_1d in the zone; days start at local midnight across DST', async () => {
    const c = await db.pool.connect();
    try {
      // Migration 004's aggregates lack trade_count (012): the first run rebuilds all four, saying why.
      expect(await applyAggregateTimezone(c, db.schema, 'UTC')).toEqual({
        action: 'rebuilt',
        timezone: 'UTC',
        rebuilt: ['bars_5m', 'bars_15m', 'bars_1h', 'bars_1d'].map((view) => ({
          view,
          why: 'to add trade_count (an aggregate cannot gain a column)',
        })),
      });
      expect(await applyAggregateTimezone(c, db.schema, 'UTC')).toEqual({
        action: 'unchanged',
        timezone: 'UTC',
      });
      expect(await applyAggregateTimezone(c, db.schema, zone)).toEqual({
        action: 'rebuilt',
        timezone: zone,
        rebuilt: [
          { view: 'bars_1h', why: `buckets in ${zone} (was UTC)` },
          { view: 'bars_1d', why: `buckets in ${zone} (was UTC)` },
        ],
      });
      expect(await applyAggregateTimezone(c, db.schema, zone)).toEqual({
        action: 'unchanged',
        timezone: zone,
      });
    } finally {
      c.release();
    }
    const days = await db.readBars('bars_1d');
    expect(days.map((d) => [d.timestamp, d.volume, d.open, d.close])).toEqual([
      ['2026-03-07T05:00:00.000Z', '1', 10, 10.5], // Saturday, EST
      ['2026-03-08T05:00:00.000Z', '30', 10.5, 12], // Sunday: 23 hours, 00:00 EST to 23:59 EDT
      ['2026-03-09T04:00:00.000Z', '32', 12, 12.25], // Monday, EDT
    ]);
    // Materialized (not only real-time), with the same values as a direct bucketing in the zone.
    expect(await db.staleBuckets('bars_1d', '1 day', zone)).toBe(0);
    expect(await db.staleBuckets('bars_1h', '1 hour', zone)).toBe(0);
    expect(await db.staleBuckets('bars_5m', '5 minutes')).toBe(0);
    // Policies and the writer role's grants came back with the views.
    const refresh = (await db.jobs()).filter((j) => j.proc_name === 'policy_refresh_continuous_aggregate');
    expect(
      refresh.map((j) => [j.hypertable_name, j.schedule_interval, j.config.start_offset]).sort(),
    ).toEqual([
      ['bars_15m', '00:05:00', null],
      ['bars_1d', '01:00:00', null],
      ['bars_1h', '00:15:00', null],
      ['bars_5m', '00:01:00', null],
    ]);
    expect(
      (
        await db.q<{ table_name: string }>(
          `SELECT table_name FROM information_schema.role_table_grants
           WHERE grantee = 'bar_writer_rw' AND table_schema = $1 AND privilege_type = 'SELECT' ORDER BY table_name`,
          [db.schema],
        )
      ).map((r) => r.table_name),
    ).toEqual([
      'bar_tombstones',
      'bar_writer_offsets',
      'bars_15m',
      'bars_1d',
      'bars_1h',
      'bars_1m',
      'bars_5m',
      'bars_latest',
    ]);
    // A correction on Sunday evening (EDT) lands in Sunday's bucket at the next policy run.
    await db.pool.query(
      `UPDATE ${db.s}.bars_1m SET volume = 100 WHERE symbol = 'NYC' AND "timestamp" = '2026-03-09T03:59Z'`,
    );
    await db.pool.query(
      `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
      [db.schema],
    );
    await db.runJobs('policy_refresh_continuous_aggregate');
    expect((await db.readBars('bars_1d'))[1]).toMatchObject({
      timestamp: '2026-03-08T05:00:00.000Z',
      volume: '114',
    });
  });

  test('a zone PostgreSQL does not know is refused; a rebuild that would lose dropped history is refused', async () => {
    const c = await db.pool.connect();
    try {
      await expect(applyAggregateTimezone(c, db.schema, 'Mars/Olympus_Mons')).rejects.toThrow(
        'BARS_DB_AGGREGATE_TIMEZONE: "Mars/Olympus_Mons" is not a time zone this PostgreSQL knows',
      );
      // The minute bars of Saturday are gone (as retention would drop them); its daily bucket is not.
      await db.pool.query(`DELETE FROM ${db.s}.bars_1m WHERE "timestamp" < '2026-03-08T05:00Z'`);
      await expect(applyAggregateTimezone(c, db.schema, 'UTC')).rejects.toThrow(
        /rebuilds bars_1h from bars_1m, which no longer holds the bars of its oldest buckets .*--allow-aggregate-loss/,
      );
      expect(await applyAggregateTimezone(c, db.schema, 'UTC', { allowLoss: true })).toMatchObject({
        action: 'rebuilt',
        timezone: 'UTC',
      });
    } finally {
      c.release();
    }
    expect((await db.readBars('bars_1d')).map((d) => d.timestamp)).toEqual([
      '2026-03-08T00:00:00.000Z',
      '2026-03-09T00:00:00.000Z',
    ]);
  });
});

describe('npm run migrate where TimescaleDB is installed but not preloaded, and other failures', () => {
  // The private PostgreSQL with TimescaleDB installed, without shared_preload_libraries: CREATE
  // EXTENSION there ends the connection with a FATAL. Password authentication over TCP.
  const secret = `pw-${crypto.randomBytes(4).toString('hex')}`;
  let cluster: TempCluster | null = null;
  const env = (extra: Record<string, string> = {}) => ({
    DB_HOST: '127.0.0.1',
    DB_PORT: String(cluster!.port),
    DB_USER: 'bw_owner',
    DB_PASSWORD: secret,
    DB_NAME: 'postgres',
    DB_SCHEMA: 'bars',
    ...extra,
  });
  const migrateCli = (extra: Record<string, string> = {}) => runCli('dist/cli/migrate.js', [], env(extra));

  beforeAll(async () => {
    if (!TSDB_BIN) throw new Error('TEST_TSDB_BIN is not set: run through scripts/test.sh');
    cluster = await new TempCluster({
      bin: TSDB_BIN,
      hba: ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256'],
    }).start();
    const admin = new pg.Client({
      host: cluster.dir,
      port: cluster.port,
      user: 'postgres',
      database: 'postgres',
    });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE bw_owner LOGIN SUPERUSER PASSWORD '${secret}'`);
      const available = await admin.query(`SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'`);
      expect(available.rows).toHaveLength(1); // the premise: installed on this server
    } finally {
      await admin.end();
    }
  }, 60_000);
  afterAll(() => cluster?.stop());

  test('stops before CREATE EXTENSION with one line naming the fix; nothing is created', async () => {
    const r = await migrateCli();
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: '' });
    expect(r.stderr).toBe(
      "migrate: TimescaleDB is installed on this server but not preloaded: add shared_preload_libraries = 'timescaledb' " +
        'to postgresql.conf (managed services: the parameter group), restart PostgreSQL and run the migration again; nothing was changed\n',
    );
    const admin = new pg.Client({
      host: cluster!.dir,
      port: cluster!.port,
      user: 'postgres',
      database: 'postgres',
    });
    await admin.connect();
    try {
      expect((await admin.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'bars'`)).rows).toEqual([]);
      expect((await admin.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`)).rows).toEqual(
        [],
      );
    } finally {
      await admin.end();
    }
  });

  test('a refused connection, a wrong password and a missing privilege: one line each, exit 1, no stack trace', async () => {
    const closedPort = await freePort();
    const refused = await migrateCli({ DB_PORT: String(closedPort) });
    const badPassword = await migrateCli({ DB_PASSWORD: 'wrong' });
    // A server without TimescaleDB, a user without CREATE on the database.
    const nobody = uniqueName('bw_nobody');
    const plain = new pg.Client(PLAIN_PG);
    await plain.connect();
    await plain.query(`CREATE ROLE "${nobody}" LOGIN`);
    let noPrivilege: Awaited<ReturnType<typeof migrateCli>>;
    try {
      noPrivilege = await runCli('dist/cli/migrate.js', [], {
        DB_HOST: PLAIN_PG.host,
        DB_PORT: String(PLAIN_PG.port),
        DB_USER: nobody,
        DB_NAME: PLAIN_PG.database,
        DB_SCHEMA: 'bw_nobody_schema',
      });
    } finally {
      await plain.query(`DROP ROLE "${nobody}"`);
      await plain.end();
    }
    const cases = { refused, badPassword, noPrivilege };
    for (const [name, r] of Object.entries(cases)) {
      expect({ name, code: r.code, lines: r.stderr.trimEnd().split('\n').length, stdout: r.stdout }).toEqual({
        name,
        code: 1,
        lines: 1,
        stdout: '',
      });
      expect(r.stderr).not.toMatch(/\n\s+at |Error:|node:internal/);
      expect(r.stderr).not.toContain(secret);
    }
    expect(refused.stderr).toMatch(
      new RegExp(
        `^migrate: cannot use PostgreSQL at 127\\.0\\.0\\.1:${closedPort}/postgres as bw_owner: .*ECONNREFUSED`,
      ),
    );
    expect(badPassword.stderr).toMatch(
      /^migrate: cannot use PostgreSQL at .*: password authentication failed for user "bw_owner" \(28P01\)\n$/,
    );
    expect(noPrivilege.stderr).toMatch(
      new RegExp(`^migrate: permission denied for database ${PLAIN_PG.database} \\(SQLSTATE 42501\\)\n$`),
    );
  });
});

describe('the same migrations on plain PostgreSQL', () => {
  const db = new Db(PLAIN_PG);
  beforeAll(() => db.setup());
  afterAll(() => db.drop());

  test('apply and are recorded, leave bars_1m a plain table and create no aggregates', async () => {
    // The premise: this server has no TimescaleDB.
    expect(await db.q(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`)).toEqual([]);
    expect(
      (await db.q(`SELECT name FROM ${db.s}.bar_writer_migrations ORDER BY version`)).map((r) => r.name),
    ).toEqual(NAMES);
    expect(
      await db.q(
        `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY c.relname`,
        [db.schema],
      ),
    ).toEqual([
      { relname: 'bar_tombstones', relkind: 'r' },
      { relname: 'bar_writer_dlq_replayed', relkind: 'r' },
      { relname: 'bar_writer_migrations', relkind: 'r' },
      { relname: 'bar_writer_offsets', relkind: 'r' },
      { relname: 'bars_1m', relkind: 'r' },
      { relname: 'bars_latest', relkind: 'r' },
    ]);
    const c = await db.pool.connect();
    try {
      expect(await migrate(c, db.schema)).toEqual({ applied: [], skipped: NAMES });
      expect(await applyRetention(c, db.schema, 400 * DAY)).toEqual({
        action: 'unavailable',
        dropAfter: null,
        refreshPoliciesChanged: 0,
        reason: 'the timescaledb extension is not installed',
      });
    } finally {
      c.release();
    }
  });

  test('npm run migrate: up to date; settings it cannot apply are warnings; a too short retention is refused', async () => {
    const run = (env: Record<string, string>) =>
      runCli('dist/cli/migrate.js', [], {
        DB_HOST: PLAIN_PG.host,
        DB_PORT: String(PLAIN_PG.port),
        DB_USER: PLAIN_PG.user,
        DB_NAME: PLAIN_PG.database,
        DB_SCHEMA: db.schema,
        ...env,
      });
    const ok = await run({ BARS_DB_RETENTION: '400d', BARS_DB_AGGREGATE_TIMEZONE: 'America/New_York' });
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({
      code: 0,
      stderr:
        'migrate: warning: BARS_DB_RETENTION is set but not applied: the timescaledb extension is not installed\n' +
        'migrate: warning: BARS_DB_AGGREGATE_TIMEZONE is set but not applied: the timescaledb extension is not installed\n',
    });
    expect(ok.stdout).toContain(`migrate: 0 applied, ${NAMES.length} already applied`);
    const quiet = await run({});
    expect({ code: quiet.code, stderr: quiet.stderr }).toEqual({ code: 0, stderr: '' });
    const short = await run({ BARS_DB_RETENTION: '12h' });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain(
      'BARS_DB_RETENTION (db.retentionMs): must be 0 (keep everything) or at least 3d',
    );
  });
});

describe('npm run migrate on TimescaleDB applies the configured settings', () => {
  const h = new Harness();
  afterAll(() => h.cleanup());

  test('retention, refresh windows and the time zone follow the environment; a second run changes nothing', async () => {
    const problem = await tsdbReachable();
    if (problem) throw new Error(problem);
    const schema = uniqueName('bw_cli');
    h.onCleanup(async () => {
      const c = new pg.Client(TSDB);
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    });
    const env = {
      DB_HOST: TSDB.host,
      DB_PORT: String(TSDB.port),
      DB_USER: TSDB.user,
      DB_NAME: TSDB.database,
      DB_SCHEMA: schema,
      BARS_DB_RETENTION: '400d',
      BARS_DB_AGGREGATE_TIMEZONE: 'America/New_York',
    };
    const first = await runCli('dist/cli/migrate.js', [], env, { timeoutMs: 120_000 });
    expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
    expect(first.stdout).toContain(`migrate: ${NAMES.length} applied, 0 already applied`);
    expect(first.stdout).toContain(
      'migrate: retention of bars_1m: 400 days (added); the aggregates refresh corrections up to 400 days old (4 policies changed)',
    );
    expect(first.stdout).toContain('migrate: bars_1h and bars_1d bucket in America/New_York (rebuilt)');
    const again = await runCli('dist/cli/migrate.js', [], env);
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: '' });
    expect(again.stdout).toContain(
      'migrate: retention of bars_1m: 400 days (unchanged); the aggregates refresh corrections up to 400 days old\n',
    );
    expect(again.stdout).toContain('migrate: bars_1h and bars_1d bucket in America/New_York (unchanged)');
  });
});

describe('the service writing late corrections into compressed chunks', () => {
  const h = new Harness();
  beforeAll(async () => {
    const problem = await tsdbReachable();
    if (problem) throw new Error(problem);
    if (!PG_IS_TIMESCALEDB) throw new Error('run with TEST_PG_* on TimescaleDB (scripts/test.sh does)');
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('land exactly, and are counted in bars_written_compressed_total', async () => {
    const start = Math.floor((Date.now() - 40 * DAY) / DAY) * DAY + 14 * 3_600_000;
    const bars = makeBars(50, 20, start, 61); // 1,000 bars, 40 days old
    await h.produceBars(bars);
    let service = await h.startService();
    await waitFor('the bars', async () => (await h.rowCount()) === 1000 && (await h.caughtUp()));
    expect(await service.stop()).toBe(true);
    const job = await h.pool.query<{ job_id: number }>(
      `SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_schema = $1 AND proc_name = 'policy_compression'`,
      [h.schema],
    );
    await h.pool.query(`CALL run_job(${job.rows[0]!.job_id})`);
    const compressed = await h.pool.query(
      `SELECT count(*)::int AS n FROM timescaledb_information.chunks
       WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m' AND is_compressed`,
      [h.schema],
    );
    expect(compressed.rows[0].n).toBeGreaterThan(0);

    const corrected = bars.map((b) => ({
      ...b,
      close: b.open,
      high: Math.max(b.high, b.open),
      low: Math.min(b.low, b.open),
    }));
    const recent = makeBars(10, 3, Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000, 62); // 30 recent bars
    service = await h.startService();
    await h.produceBars([...corrected, ...recent]);
    await waitFor('the corrections', async () => (await h.rowCount()) === 1030 && (await h.caughtUp()));
    expect(diffTables(expectedTable([...corrected, ...recent]), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_written_compressed_total')).toBe(1000);
    expect(metricValue(metrics, 'bars_written_total')).toBe(1030);
    expect(await service.stop()).toBe(true);
  });
});

describe('upgrading a deployment whose chunks are compressed', () => {
  const db = new Db(TSDB);
  afterAll(() => db.drop());

  test('007 to 013 apply on a hypertable with compressed chunks; old rows have the lowest version and no trade count; the writer replaces them; bars_latest is filled; the minute read answers from compressed chunks; the aggregates are rebuilt with trade_count; a delete reaches a compressed chunk', async () => {
    const problem = await tsdbReachable();
    if (problem) throw new Error(problem);
    const c = await db.pool.connect();
    try {
      const all = loadMigrations();
      await migrate(
        c,
        db.schema,
        all.filter((m) => m.version <= 6),
      );
      await db.insert(BARS);
      await c.query(`SELECT compress_chunk(ch) FROM show_chunks('${db.schema}.bars_1m') ch`);
      expect(await migrate(c, db.schema, all)).toMatchObject({
        applied: [
          '007_bar_versions',
          '008_fence_identity',
          '009_dlq_replayed',
          '010_bar_version_origin',
          '011_bars_latest',
          '012_trade_count_and_deletes',
          '013_bars_1m_minute_index',
        ],
      });
      // The aggregates of 004 lack trade_count: migrate's settings step rebuilds them from bars_1m.
      expect(await applyAggregateTimezone(c, db.schema, 'UTC')).toMatchObject({
        action: 'rebuilt',
        rebuilt: AGGREGATES.map((a) => ({ view: a.name })),
      });
    } finally {
      c.release();
    }
    const rows = await db.q<{ n: number; revision: string; source_time: string; counted: number }>(
      `SELECT count(*)::int AS n, max(revision)::text AS revision, max(source_time)::text AS source_time,
              count(trade_count)::int AS counted FROM ${db.s}.bars_1m`,
    );
    expect(rows).toEqual([{ n: BARS.length, revision: '0', source_time: '-infinity', counted: 0 }]);
    await db.refreshAll();
    for (const a of AGGREGATES) {
      expect({ aggregate: a.name, rows: await db.readBars(a.name) }).toEqual({
        aggregate: a.name,
        rows: aggregate(BARS, WIDTH_MS[a.name]!),
      });
    }
    // 011 read the compressed chunks without decompressing one: bars_latest holds each symbol's newest bar.
    const compressed = await db.q<{ is_compressed: boolean }>(
      `SELECT is_compressed FROM timescaledb_information.chunks
       WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
      [db.schema],
    );
    expect(compressed.length).toBeGreaterThan(1);
    expect(compressed.every((ch) => ch.is_compressed)).toBe(true);
    const latest = () =>
      db
        .q<OutBar & { timestamp: Date }>(
          `SELECT symbol, "timestamp", open, high, low, close, volume::text AS volume, vwap
         FROM ${db.s}.bars_latest ORDER BY symbol`,
        )
        .then((r) => r.map((x) => ({ ...x, timestamp: x.timestamp.toISOString() })));
    const newest = (symbol: string) =>
      toOut(
        [...BARS]
          .filter((x) => x.symbol === symbol)
          .sort(byKey)
          .at(-1)!,
      );
    expect(await latest()).toEqual([newest('AAA'), newest('BBB')]);
    // The minute read (the index of 013 exists on the hypertable; a compressed chunk is read as any
    // query reads it): every symbol's bar at 09:30 and at 09:45 of the first day.
    const reader = new BarReader(db.pool, db.schema, 5000);
    for (const at of ['2026-01-05T09:30', '2026-01-05T09:45']) {
      const got = await reader.minute(msOf(at), null, 10);
      expect(parseReadBars(got)).toEqual(BARS.filter((x) => x.at === at).map((x) => readBarOf(toBar(x))));
    }
    const changed = { ...BARS[0]!, close: 10.75 };
    await db.writeAsService([changed]);
    expect((await db.readBars('bars_1m'))[0]).toEqual(toOut(changed));
    // A correction of an older minute leaves bars_latest alone; a newer bar moves it.
    expect(await latest()).toEqual([newest('AAA'), newest('BBB')]);
    const later = b('AAA', '2026-01-06T00:01', [12.75, 13, 12.5, 12.5], 5, 12.75);
    await db.writeAsService([later]);
    expect(await latest()).toEqual([toOut(later), newest('BBB')]);
    // A delete of a bar in a compressed chunk: gone, its chunk still compressed.
    const gone = BARS[1]!;
    await db.writeAsService([{ ...gone, deleted: true }]);
    expect((await db.readBars('bars_1m')).map((x) => `${x.symbol} ${x.timestamp}`)).not.toContain(
      `${gone.symbol} ${new Date(msOf(gone.at)).toISOString()}`,
    );
    expect((await db.readBars('bars_1m')).length).toBe(BARS.length);
  });
});
