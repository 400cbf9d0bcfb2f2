/**
 * The store against real PostgreSQL, batch by batch: the latest message per key wins inside one batch,
 * the fence skips what was written and only moves forward, every value the contract allows survives
 * COPY escaping, the read operations, and the migrations (twice, and concurrently).
 */
import type { Bar } from '../../src/contract/bar';
import { parseExtraColumns } from '../../src/contract/extras';
import { applyExtraColumns, extraColumnsState } from '../../src/store/extraColumns';
import { packBar } from '../../src/contract/packedBar';
import { STAGING, stagingTableName } from '../../src/store/staging';
import { BarReader, minuteSql } from '../../src/store/readBars';
import { migrate, loadMigrations } from '../../src/store/migrate';
import { withConnection } from '../../src/store/pool';
import {
  writeGroup,
  type BarAtOffset,
  type PartitionWrite,
  type WriteOptions,
} from '../../src/store/writeBatch';
import { Harness, uniqueName } from '../support/harness';
import { parseReadBars, readBarOf } from '../support/readBars';

const T0 = Date.UTC(2026, 10, 24, 14, 31);
const bar = (symbol: string, minute: number, close: number, extra: Partial<Bar> = {}): Bar => ({
  symbol,
  timestampMs: T0 + minute * 60_000,
  open: close,
  high: close + 1,
  low: close - 1,
  close,
  volume: 100,
  vwap: close,
  revision: 0,
  tradeCount: null,
  deleted: false,
  extras: null,
  ...extra,
});
/** Record timestamps: the bar's version after its revision. */
const REC = Date.UTC(2026, 10, 24, 15);
const at = (offset: bigint, b: Bar, recordMs = REC): BarAtOffset => ({
  offset,
  ...packBar(b, recordMs),
});
/** A partition's share of a write; the fingerprint only has to be recorded as given. */
const part = (partition: number, entries: BarAtOffset[], nextOffset: bigint): PartitionWrite => ({
  partition,
  entries,
  nextOffset,
  lastFingerprint: `${nextOffset - 1n}:test`,
});

describe('store', () => {
  const h = new Harness();
  const reader = () => {
    const r = new BarReader(h.pool, h.schema, 5000);
    return {
      range: async (symbol: string, startMs: number, endMs: number, limit: number) =>
        parseReadBars(await r.range(symbol, startMs, endMs, limit)),
      latest: async (symbol: string, limit: number) => parseReadBars(await r.latest(symbol, limit)),
    };
  };
  const ref = { group: 'g', topic: 't', partition: 0 };
  beforeAll(() => h.setupSchema());
  afterAll(() => h.cleanup());

  const write = async (
    entries: BarAtOffset[],
    next: bigint,
    options: WriteOptions = {},
    group = ref.group,
  ) => {
    const r = await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, group, ref.topic, [part(ref.partition, entries, next)], options),
    );
    const { written, skippedFenced, fenceBefore } = r.parts[0]!;
    return { written, skippedFenced, fenceBefore, rowsChanged: r.rowsChanged };
  };

  test('the latest message per key wins inside one batch; a new message moves the version, a replay writes nothing', async () => {
    const r = await write(
      [
        at(0n, bar('AAA', 0, 10)),
        at(1n, bar('AAA', 0, 11)),
        at(2n, bar('BBB', 0, 20)),
        at(3n, bar('AAA', 0, 12)),
      ],
      4n,
    );
    expect(r).toEqual({ written: 4, skippedFenced: 0, rowsChanged: 2, fenceBefore: 0n });
    const latest = await reader().latest('AAA', 10);
    expect(latest).toEqual([readBarOf(bar('AAA', 0, 12))]);
    // The same values again as a new message (a later offset: a newer version): the version moves.
    const again = await write([at(4n, bar('AAA', 0, 12))], 5n);
    expect(again.rowsChanged).toBe(1);
    // That very message again (a replay past a fresh fence: an equal version): nothing is written.
    const replay = await write([at(4n, bar('AAA', 0, 12))], 5n, {}, 'g-replay');
    expect(replay).toMatchObject({ written: 1, rowsChanged: 0 });
  });

  test('the fence skips offsets already written and never moves back', async () => {
    // A late writer replays offsets 0..3 with an older close: all skipped.
    const r = await write([at(2n, bar('BBB', 0, 99))], 3n);
    expect(r).toEqual({ written: 0, skippedFenced: 1, rowsChanged: 0, fenceBefore: 5n });
    expect((await reader().latest('BBB', 1))[0]!.close).toBe(20);
    // A batch straddling the fence writes only its part above.
    const s = await write([at(4n, bar('CCC', 0, 1)), at(5n, bar('CCC', 1, 2))], 6n);
    expect(s).toMatchObject({ written: 1, skippedFenced: 1, fenceBefore: 5n });
    const fence = await h.pool.query(
      `SELECT next_offset::text AS n FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1`,
      [ref.group],
    );
    expect(fence.rows).toEqual([{ n: '6' }]);
  });

  test('a write that finds its fence moved back (below what it expects) writes nothing and leaves the fence', async () => {
    const group = uniqueName('rewound');
    const w = (entries: BarAtOffset[], next: bigint, expect: bigint | null) =>
      withConnection(h.pool, (c) =>
        writeGroup(c, h.schema, group, ref.topic, [{ ...part(0, entries, next), expect }]),
      );
    await w([at(0n, bar('RWD', 0, 1))], 200n, null);
    const fence = () =>
      h.pool
        .query(
          `SELECT next_offset::text AS n FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1`,
          [group],
        )
        .then((r) => r.rows);
    // An operator moves the fence back to 50 while the writer expects it at 200.
    await h.pool.query(
      `UPDATE "${h.schema}".bar_writer_offsets SET next_offset = 50 WHERE consumer_group = $1`,
      [group],
    );
    const r = await w([at(200n, bar('RWD', 0, 2)), at(201n, bar('RWD', 1, 2))], 210n, 200n);
    expect(r.parts).toEqual([
      { partition: 0, written: 0, skippedFenced: 0, fenceBefore: 50n, rewound: true, writtenCompressed: 0 },
    ]);
    expect(r.rowsChanged).toBe(0);
    expect(await fence()).toEqual([{ n: '50' }]);
    expect((await reader().latest('RWD', 5)).map((b) => b.close)).toEqual([1]);
    // Expecting what is there (or less): written, the fence advanced.
    const ok = await w([at(50n, bar('RWD', 0, 3))], 51n, 50n);
    expect(ok.parts[0]).toMatchObject({ written: 1, rewound: false });
    expect(await fence()).toEqual([{ n: '51' }]);
  });

  test('one transaction for several partitions: a fence each, all or nothing', async () => {
    // A group and topic that need escaping (they go into the statements as literals).
    const group = `g'q\\"x`;
    const topic = `t'${uniqueName('grp')}`;
    const fences = async () =>
      (
        await h.pool.query<{ partition: number; n: string; fp: string | null }>(
          `SELECT partition, next_offset::text AS n, last_fingerprint AS fp FROM "${h.schema}".bar_writer_offsets
           WHERE consumer_group = $1 AND topic = $2 ORDER BY partition`,
          [group, topic],
        )
      ).rows;
    const rowsOf = async (symbol: string) =>
      (await reader().range(symbol, T0, T0 + 10 * 60_000, 100_000)).length;
    const parts = (close: number) => [
      part(3, [at(0n, bar('GRP3', 0, close))], 2n),
      part(1, [at(10n, bar('GRP1', 0, close)), at(11n, bar('GRP1', 1, close))], 12n),
    ];
    const writeParts = (ps: PartitionWrite[]) =>
      withConnection(h.pool, (c) => writeGroup(c, h.schema, group, topic, ps));

    // One partition's row is refused: nothing of either partition is written, no fence row is left.
    await h.pool.query(`ALTER TABLE "${h.schema}".bars_1m ADD CONSTRAINT no_666 CHECK (close <> 666)`);
    try {
      await expect(
        writeParts([parts(1)[0]!, part(1, [at(10n, bar('GRP1', 0, 666))], 11n)]),
      ).rejects.toMatchObject({
        code: '23514',
      });
    } finally {
      await h.pool.query(`ALTER TABLE "${h.schema}".bars_1m DROP CONSTRAINT no_666`);
    }
    expect(await fences()).toEqual([]);
    expect(await rowsOf('GRP1')).toBe(0);
    expect(await rowsOf('GRP3')).toBe(0);

    // The same again, succeeding: each partition's fence before the write, in partition order, and
    // the fingerprint of each partition's last message recorded with its fence.
    const r = await writeParts(parts(1));
    expect(r.parts.map(({ partition, fenceBefore }) => ({ partition, fenceBefore }))).toEqual([
      { partition: 1, fenceBefore: 0n },
      { partition: 3, fenceBefore: 0n },
    ]);
    expect(r.rowsChanged).toBe(3);
    expect(await fences()).toEqual([
      { partition: 1, n: '12', fp: '11:test' },
      { partition: 3, n: '2', fp: '1:test' },
    ]);

    // A replay of partition 1 with a changed close is fenced; partition 3's new offset is not.
    const again = await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, group, topic, [
        { ...parts(2)[1]!, entries: parts(2)[1]!.entries, nextOffset: 12n },
        part(3, [at(2n, bar('GRP3', 0, 2))], 3n),
      ]),
    );
    expect(again.parts).toEqual([
      { partition: 1, written: 0, skippedFenced: 2, fenceBefore: 12n, rewound: false, writtenCompressed: 0 },
      { partition: 3, written: 1, skippedFenced: 0, fenceBefore: 2n, rewound: false, writtenCompressed: 0 },
    ]);
    expect(again.rowsChanged).toBe(1);
    expect((await reader().latest('GRP1', 2)).map((b) => b.close)).toEqual([1, 1]);
    expect((await reader().latest('GRP3', 1))[0]!.close).toBe(2);
    expect(await fences()).toEqual([
      { partition: 1, n: '12', fp: '11:test' },
      { partition: 3, n: '3', fp: '2:test' },
    ]);
  });

  test('every value the contract allows round-trips exactly through COPY', async () => {
    const odd = [
      bar('A\\B', 0, 1), // backslash: the COPY escape character
      bar('!"#$%&\'()*+,-./:;<=>?@[]^_`{|}~', 0, 2),
      bar('X'.repeat(32), 0, 3),
      bar('TINY', 0, 1e-7, { open: 1e-7, high: 2e-7, low: 5e-8, vwap: null }),
      bar('HUGE', 0, 1.5e300, { open: 1.5e300, high: 1.7976931348623157e308, low: -1.5e300, vwap: 0.1 }),
      bar('FRAC', 0, 0.1 + 0.2, { volume: Number.MAX_SAFE_INTEGER }),
      bar('NEG', 0, -3.25, { volume: 0 }),
      bar('OLD', -60 * 24 * 365 * 120, 5), // 1906: before PostgreSQL's epoch (negative microseconds)
      { ...bar('FIRST', 0, 5), timestampMs: Date.UTC(1900, 0, 1) }, // the earliest the contract accepts
      { ...bar('LAST', 0, 5), timestampMs: Date.UTC(9999, 11, 31, 23, 59) }, // beyond 2^53 microseconds
      { ...bar('EPOCH2K', 0, 5), timestampMs: Date.UTC(2000, 0, 1) }, // zero microseconds
    ];
    await write(
      odd.map((b, i) => at(10n + BigInt(i), b)),
      100n,
    );
    for (const b of odd) {
      const got = await reader().range(b.symbol, b.timestampMs, b.timestampMs + 60_000, 100_000);
      expect(got).toEqual([readBarOf(b)]);
    }
  });

  test('reads: range is [start, end) ascending; latest N is newest first', async () => {
    await write(
      [0, 1, 2, 3, 4].map((m) => at(200n + BigInt(m), bar('RNG', m, 10 + m))),
      205n,
    );
    const range = await reader().range('RNG', T0 + 60_000, T0 + 4 * 60_000, 100_000);
    expect(range.map((b) => b.close)).toEqual([11, 12, 13]);
    expect((await reader().latest('RNG', 2)).map((b) => b.close)).toEqual([14, 13]);
    expect(await reader().latest('NONE', 2)).toEqual([]);
  });

  test('the minute read is one range of the minute index, never a scan of the chunk', async () => {
    // 300 symbols × 60 minutes, analyzed: enough rows that a scan would cost the planner more.
    const t0 = new Date(T0 + 3 * 86_400_000).toISOString();
    await h.pool.query(
      `INSERT INTO "${h.schema}".bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time)
       SELECT 'MIX' || lpad(s::text, 4, '0'), $1::timestamptz + m * interval '1 minute', 1, 2, 0.5, 1.5, 10, NULL, 0, now()
       FROM generate_series(1, 300) s, generate_series(0, 59) m`,
      [t0],
    );
    await h.pool.query(`ANALYZE "${h.schema}".bars_1m`);
    const atMs = Date.parse(t0) + 30 * 60_000;
    /** Every node of a JSON plan, depth first. */
    const nodes = (n: { [k: string]: unknown; Plans?: unknown[] }): Record<string, unknown>[] => [
      n,
      ...((n.Plans ?? []) as (typeof n)[]).flatMap(nodes),
    ];
    for (const after of [null, 'MIX0150']) {
      const plan = await h.pool.query<{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] }>(
        `EXPLAIN (FORMAT JSON) ${minuteSql(h.schema, [], atMs, after, 1000)}`,
      );
      const all = nodes(plan.rows[0]!['QUERY PLAN'][0].Plan);
      expect(all.filter((n) => String(n['Node Type']).includes('Seq Scan'))).toEqual([]);
      expect(all.some((n) => String(n['Index Name'] ?? '').endsWith('bars_1m_minute'))).toBe(true);
      const got = parseReadBars(await new BarReader(h.pool, h.schema, 5000).minute(atMs, after, 1000));
      expect(got.map((b) => b.symbol)).toEqual(
        Array.from({ length: 300 }, (_, i) => `MIX${String(i + 1).padStart(4, '0')}`).filter(
          (x) => after === null || x > after,
        ),
      );
      expect(new Set(got.map((b) => b.timestampMs))).toEqual(new Set([atMs]));
    }
  });

  test('latest version wins across partitions and groups: record time, then revision; ties keep the no-op replay', async () => {
    const stored = async (symbol: string) => {
      const r = await h.pool.query<{ close: number; revision: string; source_time: Date }>(
        `SELECT close, revision::text AS revision, source_time FROM "${h.schema}".bars_1m WHERE symbol = $1`,
        [symbol],
      );
      return r.rows.map((x) => ({
        close: x.close,
        revision: Number(x.revision),
        at: x.source_time.getTime(),
      }));
    };
    // Version B (record time T) lands first; version A (60 s older) arrives later, through another
    // partition's fence (another group here): it must not replace B.
    await write([at(0n, bar('VER', 0, 20), REC)], 1n, {}, 'gB');
    const older = await write([at(0n, bar('VER', 0, 10), REC - 60_000)], 1n, {}, 'gA');
    expect(older).toMatchObject({ written: 1, rowsChanged: 0 });
    expect(await stored('VER')).toEqual([{ close: 20, revision: 0, at: REC }]);
    // A newer record time replaces it; the same message replayed (another group's fresh fence) writes
    // nothing; a new message with the same record time and values is newer (a later offset).
    await write([at(1n, bar('VER', 0, 30), REC + 1000)], 2n, {}, 'gA');
    expect((await write([at(1n, bar('VER', 0, 30), REC + 1000)], 2n, {}, 'gC')).rowsChanged).toBe(0);
    expect((await write([at(2n, bar('VER', 0, 30), REC + 1000)], 3n, {}, 'gA')).rowsChanged).toBe(1);
    expect(await stored('VER')).toEqual([{ close: 30, revision: 0, at: REC + 1000 }]);
    // A higher revision wins whatever the record times; a lower one never does.
    await write([at(3n, bar('VER', 0, 40, { revision: 2 }), REC - 3_600_000)], 4n, {}, 'gA');
    await write([at(4n, bar('VER', 0, 50, { revision: 1 }), REC + 3_600_000)], 5n, {}, 'gA');
    expect(await stored('VER')).toEqual([{ close: 40, revision: 2, at: REC - 3_600_000 }]);
    // Within one batch, the newest version wins, not the last offset.
    await write(
      [
        at(10n, bar('VER2', 0, 1), REC + 5),
        at(11n, bar('VER2', 0, 2), REC + 9),
        at(12n, bar('VER2', 0, 3), REC + 1),
      ],
      13n,
      {},
      'gA',
    );
    expect(await stored('VER2')).toEqual([{ close: 2, revision: 0, at: REC + 9 }]);
  });

  test('the version rule as docs/contract.md states it: identical re-sends move the version; ties go by offset', async () => {
    const stored = async (symbol: string) =>
      (
        await h.pool.query<{ close: number; revision: string; origin: string }>(
          `SELECT close, revision::text, source_origin::text AS origin FROM "${h.schema}".bars_1m WHERE symbol = $1`,
          [symbol],
        )
      ).rows;
    const on = (partition: number, entries: BarAtOffset[], next: bigint, group: string) =>
      withConnection(h.pool, (c) => writeGroup(c, h.schema, group, 'tv', [part(partition, entries, next)]));
    const origin = (partition: number, offset: bigint) => String((BigInt(partition) << 48n) + offset);
    // (1) X at revision 1 from partition 0; (2) X again, identical, at revision 3, partition 0; (3) Y at
    // revision 2 (between the two) from partition 1: the stored version is revision 3, so Y loses.
    await on(0, [at(0n, bar('RSD', 0, 10, { revision: 1 }))], 1n, 'gv');
    expect((await on(0, [at(1n, bar('RSD', 0, 10, { revision: 3 }))], 2n, 'gv')).rowsChanged).toBe(1);
    expect((await on(1, [at(0n, bar('RSD', 0, 99, { revision: 2 }))], 1n, 'gv')).rowsChanged).toBe(0);
    expect(await stored('RSD')).toEqual([{ close: 10, revision: '3', origin: origin(0, 1n) }]);
    // A correction produced in the same millisecond as the bar it corrects, in a later flush: the later
    // offset wins; a replay of both (a fresh fence: another group) writes nothing, whatever the order.
    await on(2, [at(5n, bar('TIE', 0, 1))], 6n, 'gt');
    await on(2, [at(6n, bar('TIE', 0, 2))], 7n, 'gt');
    expect(await stored('TIE')).toEqual([{ close: 2, revision: '0', origin: origin(2, 6n) }]);
    expect((await on(2, [at(5n, bar('TIE', 0, 1))], 6n, 'gt-replay')).rowsChanged).toBe(0);
    expect((await on(2, [at(6n, bar('TIE', 0, 2))], 7n, 'gt-replay')).rowsChanged).toBe(0);
    // An exact tie across partitions goes to the higher partition, in either order of arrival.
    await on(3, [at(9n, bar('XP', 0, 3))], 10n, 'gx');
    await on(1, [at(9n, bar('XP', 0, 4))], 10n, 'gx');
    expect(await stored('XP')).toEqual([{ close: 3, revision: '0', origin: origin(3, 9n) }]);
    // Rows written before migration 010 (no origin) are the oldest of their revision and time.
    await h.pool.query(`UPDATE "${h.schema}".bars_1m SET source_origin = NULL WHERE symbol = 'XP'`);
    expect((await on(0, [at(0n, bar('XP', 0, 5))], 1n, 'gx2')).rowsChanged).toBe(1);
  });

  test("the staging table's name follows its shape: another version's table on the same connection is no obstacle", async () => {
    expect(STAGING).toMatch(/^bar_writer_staging_[0-9a-f]{12}$/);
    expect(stagingTableName('"seq" integer NOT NULL')).not.toBe(STAGING);
    await withConnection(h.pool, async (c) => {
      // Behind PgBouncer a server connection keeps the temporary tables of whoever used it before: an
      // older writer's staging table, of another shape, under the old name and under a hashed one.
      await c.query(
        `CREATE TEMP TABLE IF NOT EXISTS bar_writer_staging (seq integer, symbol text) ON COMMIT DELETE ROWS`,
      );
      await c.query(
        `CREATE TEMP TABLE IF NOT EXISTS ${stagingTableName('"seq" integer')} (seq integer) ON COMMIT DELETE ROWS`,
      );
      const r = await writeGroup(c, h.schema, 'g-shape', ref.topic, [
        part(0, [at(0n, bar('SHP', 0, 1))], 1n),
      ]);
      expect(r.parts[0]).toMatchObject({ written: 1, rewound: false });
    });
    expect((await reader().latest('SHP', 1)).map((b) => b.close)).toEqual([1]);
  });

  test('a fence row another session holds fails the write after lock_timeout, not the statement timeout', async () => {
    await write([at(300n, bar('LCK', 0, 1))], 301n, {}, 'gLock');
    const holder = await h.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `SELECT 1 FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = 'gLock' FOR UPDATE`,
      );
      const started = Date.now();
      await expect(
        write([at(301n, bar('LCK', 1, 2))], 302n, { lockTimeoutMs: 300 }, 'gLock'),
      ).rejects.toMatchObject({
        code: '55P03',
      });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    expect(await write([at(301n, bar('LCK', 1, 2))], 302n, { lockTimeoutMs: 300 }, 'gLock')).toMatchObject({
      written: 1,
    });
  });

  test('bars_latest: the newest minute of each symbol, by the version rule, in the same transaction', async () => {
    const latest = async (symbol: string) => {
      const r = await h.pool.query<{ minute: number; close: number; revision: string; origin: string }>(
        `SELECT (extract(epoch FROM "timestamp") * 1000 - $2::bigint) / 60000 AS minute, close,
                revision::text AS revision, source_origin::text AS origin
         FROM "${h.schema}".bars_latest WHERE symbol = $1`,
        [symbol, T0],
      );
      return r.rows.map((x) => ({ ...x, minute: Number(x.minute) }))[0] ?? null;
    };
    const g = 'g-latest';
    // A new symbol, several minutes in one flush, out of order: its latest minute wins.
    await write([at(0n, bar('LT1', 3, 30)), at(1n, bar('LT1', 1, 10)), at(2n, bar('LT1', 2, 20))], 3n, {}, g);
    expect(await latest('LT1')).toEqual({ minute: 3, close: 30, revision: '0', origin: '0' });
    // A later minute moves it; a correction of an older minute does not move it back.
    await write([at(3n, bar('LT1', 4, 40)), at(4n, bar('LT1', 1, 11))], 5n, {}, g);
    expect(await latest('LT1')).toEqual({ minute: 4, close: 40, revision: '0', origin: '3' });
    expect((await reader().range('LT1', T0 + 60_000, T0 + 120_000, 1))[0]!.close).toBe(11);
    // A correction of the newest minute (a newer version) replaces it; an older version does not.
    await write([at(5n, bar('LT1', 4, 41))], 6n, {}, g);
    expect(await latest('LT1')).toEqual({ minute: 4, close: 41, revision: '0', origin: '5' });
    await write([at(6n, bar('LT1', 4, 39), REC - 1000)], 7n, {}, g);
    expect(await latest('LT1')).toEqual({ minute: 4, close: 41, revision: '0', origin: '5' });
    // A higher revision wins whatever its record time, in bars_1m and bars_latest alike.
    await write([at(7n, bar('LT1', 4, 42, { revision: 2 }), REC - 5000)], 8n, {}, g);
    expect(await latest('LT1')).toEqual({ minute: 4, close: 42, revision: '2', origin: '7' });
    // A replay (another group: the fence lets it through) changes no row of bars_1m, so bars_latest is
    // not touched at all: not updated, not even locked (xmin and xmax as they were).
    const tuple = async () =>
      (
        await h.pool.query<{ xmin: string; xmax: string }>(
          `SELECT xmin::text, xmax::text FROM "${h.schema}".bars_latest WHERE symbol = 'LT1'`,
        )
      ).rows[0];
    const tupleBefore = await tuple();
    const replay = await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, 'g-latest-replay', ref.topic, [
        part(0, [at(0n, bar('LT1', 3, 30)), at(3n, bar('LT1', 4, 40)), at(5n, bar('LT1', 4, 41))], 6n),
      ]),
    );
    expect(replay.rowsChanged).toBe(0);
    expect(await tuple()).toEqual(tupleBefore);
    expect(await latest('LT1')).toEqual({ minute: 4, close: 42, revision: '2', origin: '7' });
    // Two symbols of two partitions in one transaction, and every symbol written so far: in step.
    await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, g, ref.topic, [
        part(1, [at(0n, bar('LT2', 9, 90)), at(1n, bar('LT3', 2, 20))], 2n),
        part(2, [at(0n, bar('LT2', 8, 80)), at(1n, bar('LT3', 5, 50))], 2n),
      ]),
    );
    expect([await latest('LT2'), await latest('LT3')]).toEqual([
      { minute: 9, close: 90, revision: '0', origin: String(1n * 2n ** 48n) },
      { minute: 5, close: 50, revision: '0', origin: String(2n * 2n ** 48n + 1n) },
    ]);
    expect(await h.latestMismatches('LT%')).toBe(0);
  });

  test('migrations: the table shape, no redundant index, idempotent, safe when run concurrently', async () => {
    const cols = await h.pool.query(
      `SELECT column_name, data_type, is_nullable FROM information_schema.columns
       WHERE table_schema = $1 AND table_name = 'bars_1m' ORDER BY ordinal_position`,
      [h.schema],
    );
    expect(cols.rows).toEqual([
      { column_name: 'symbol', data_type: 'text', is_nullable: 'NO' },
      { column_name: 'timestamp', data_type: 'timestamp with time zone', is_nullable: 'NO' },
      { column_name: 'open', data_type: 'double precision', is_nullable: 'NO' },
      { column_name: 'high', data_type: 'double precision', is_nullable: 'NO' },
      { column_name: 'low', data_type: 'double precision', is_nullable: 'NO' },
      { column_name: 'close', data_type: 'double precision', is_nullable: 'NO' },
      { column_name: 'volume', data_type: 'bigint', is_nullable: 'NO' },
      { column_name: 'vwap', data_type: 'double precision', is_nullable: 'YES' },
      { column_name: 'revision', data_type: 'bigint', is_nullable: 'NO' },
      { column_name: 'source_time', data_type: 'timestamp with time zone', is_nullable: 'NO' },
      { column_name: 'source_origin', data_type: 'bigint', is_nullable: 'YES' },
      { column_name: 'trade_count', data_type: 'bigint', is_nullable: 'YES' },
    ]);
    const idx = await h.pool.query(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'bars_1m'`,
      [h.schema],
    );
    // The key, and the minute's index of GET /v1/minute (migration 013): nothing else costs the writes.
    expect(idx.rows).toHaveLength(2);
    expect(idx.rows.map((r: { indexdef: string }) => r.indexdef).sort()).toEqual([
      expect.stringMatching(/^CREATE INDEX bars_1m_minute ON .* \("timestamp", symbol\)$/),
      expect.stringMatching(/^CREATE UNIQUE INDEX bars_1m_pkey ON .* \(symbol, "timestamp"\)$/),
    ]);

    // Twice on the same schema: nothing applied the second time.
    const c1 = await h.pool.connect();
    try {
      expect(await migrate(c1, h.schema)).toEqual({
        applied: [],
        skipped: loadMigrations().map((m) => m.name),
      });
    } finally {
      c1.release();
    }
    // Three runners at once on a fresh schema: each migration applied exactly once.
    const fresh = uniqueName('bw_mig');
    h.onCleanup(async () => {
      await h.dropSchema(fresh);
    });
    const results = await Promise.all(
      [1, 2, 3].map(async () => {
        const c = await h.pool.connect();
        try {
          return await migrate(c, fresh);
        } finally {
          c.release();
        }
      }),
    );
    expect(results.flatMap((r) => r.applied).sort()).toEqual(
      loadMigrations()
        .map((m) => m.name)
        .sort(),
    );
    const recorded = await h.pool.query(
      `SELECT version FROM "${fresh}".bar_writer_migrations ORDER BY version`,
    );
    expect(recorded.rows.map((r) => r.version)).toEqual(loadMigrations().map((m) => m.version));
  });
});

describe('store: trade_count, deletes and extra columns', () => {
  const EXTRAS = 'exchange:text(8),conditions:bigint';
  const h = new Harness({ extraColumns: EXTRAS });
  const extras = parseExtraColumns(EXTRAS);
  beforeAll(() => h.setupSchema());
  afterAll(() => h.cleanup());

  let offset = 0n;
  /** One write of `bars` (each a message of the next offset, record time REC + offset) in a fresh group. */
  const write = async (bars: Bar[], options: WriteOptions = { extras }) => {
    const entries = bars.map((b) => {
      const o = offset++;
      return at(o, b, REC + Number(o));
    });
    const r = await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, uniqueName('g'), 't', [part(0, entries, offset)], options),
    );
    return { rowsChanged: r.rowsChanged, rowsDeleted: r.rowsDeleted };
  };
  const del = (symbol: string, minute: number, revision = 0): Bar => ({
    ...bar(symbol, minute, 0),
    open: 0,
    high: 0,
    low: 0,
    vwap: null,
    volume: 0,
    revision,
    deleted: true,
  });
  const stored = async (symbol: string) =>
    (
      await h.pool.query<{ minute: number; close: number; revision: string; trade_count: string | null }>(
        `SELECT ((extract(epoch FROM "timestamp") * 1000 - $2) / 60000)::int AS minute, close,
                revision::text, trade_count::text
         FROM "${h.schema}".bars_1m WHERE symbol = $1 ORDER BY "timestamp"`,
        [symbol, T0],
      )
    ).rows;
  const tombstone = async (symbol: string) =>
    (
      await h.pool.query<{ revision: string }>(
        `SELECT revision::text FROM "${h.schema}".bar_tombstones WHERE symbol = $1`,
        [symbol],
      )
    ).rows;

  test('trade_count is stored, replaced with its version, and null when a message has none', async () => {
    await write([bar('TC1', 0, 10, { tradeCount: 42 }), bar('TC1', 1, 10)]);
    expect(await stored('TC1')).toEqual([
      { minute: 0, close: 10, revision: '0', trade_count: '42' },
      { minute: 1, close: 10, revision: '0', trade_count: null },
    ]);
    await write([bar('TC1', 0, 11, { tradeCount: Number.MAX_SAFE_INTEGER })]);
    expect((await stored('TC1'))[0]).toEqual({
      minute: 0,
      close: 11,
      revision: '0',
      trade_count: String(Number.MAX_SAFE_INTEGER),
    });
    expect(await h.latestMismatches('TC%')).toBe(0);
  });

  test('a delete removes the bar and leaves a tombstone; an older or equal version stays deleted, a newer one restores it', async () => {
    await write([bar('DL1', 0, 10), bar('DL1', 1, 11), bar('DL1', 2, 12)]);
    // Deleting the newest minute: bars_latest falls back to the newest remaining bar.
    expect(await write([del('DL1', 2)])).toEqual({ rowsChanged: 0, rowsDeleted: 1 });
    expect((await stored('DL1')).map((r) => r.minute)).toEqual([0, 1]);
    expect(await tombstone('DL1')).toEqual([{ revision: '0' }]);
    expect(await h.latestMismatches('DL1')).toBe(0);
    // An older version arriving later (a higher offset, but a lower revision than the delete's? no:
    // the same revision and an older record time): a replay of the deleted bar's message.
    const replayed = at(2n, bar('DL1', 2, 12), REC + 2);
    const r = await withConnection(h.pool, (c) =>
      writeGroup(c, h.schema, uniqueName('g'), 't', [part(0, [replayed], 3n)], { extras }),
    );
    expect(r.rowsChanged).toBe(0);
    expect((await stored('DL1')).map((x) => x.minute)).toEqual([0, 1]);
    // A newer version (a later message) restores it, and bars_latest with it.
    expect(await write([bar('DL1', 2, 13)])).toEqual({ rowsChanged: 1, rowsDeleted: 0 });
    expect((await stored('DL1')).map((x) => [x.minute, x.close])).toEqual([
      [0, 10],
      [1, 11],
      [2, 13],
    ]);
    expect(await h.latestMismatches('DL1')).toBe(0);
  });

  test('a delete older than the stored bar leaves it; a higher revision deletes whatever the times', async () => {
    await write([bar('DL2', 0, 10, { revision: 5 })]);
    expect(await write([del('DL2', 0, 4)])).toEqual({ rowsChanged: 0, rowsDeleted: 0 });
    expect((await stored('DL2')).map((x) => x.revision)).toEqual(['5']);
    // The tombstone holds revision 4: a bar of revision 4 stays out, one of 5 or more does not.
    expect(await tombstone('DL2')).toEqual([{ revision: '4' }]);
    expect(await write([del('DL2', 0, 6)])).toEqual({ rowsChanged: 0, rowsDeleted: 1 });
    expect(await write([bar('DL2', 0, 20, { revision: 5 })])).toEqual({ rowsChanged: 0, rowsDeleted: 0 });
    expect(await stored('DL2')).toEqual([]);
    expect(await tombstone('DL2')).toEqual([{ revision: '6' }]);
    // Deleting a symbol's only bar removes its bars_latest row.
    expect(await h.latestMismatches('DL2')).toBe(0);
    const latest = await h.pool.query(`SELECT 1 FROM "${h.schema}".bars_latest WHERE symbol = 'DL2'`);
    expect(latest.rows).toEqual([]);
    expect(await write([bar('DL2', 0, 21, { revision: 7 })])).toEqual({ rowsChanged: 1, rowsDeleted: 0 });
    expect(await h.latestMismatches('DL2')).toBe(0);
  });

  test('in one write, the newest message of a key decides: a bar after its delete restores it, a delete after its bar deletes it', async () => {
    await write([bar('DL3', 0, 10), bar('DL4', 0, 10)]);
    expect(await write([del('DL3', 0), bar('DL3', 0, 11), bar('DL4', 0, 11), del('DL4', 0)])).toEqual({
      rowsChanged: 1,
      rowsDeleted: 1,
    });
    expect(await stored('DL3')).toMatchObject([{ close: 11 }]);
    expect(await stored('DL4')).toEqual([]);
    expect(await h.latestMismatches('DL%')).toBe(0);
  });

  test('a delete of a key never stored leaves only its tombstone: the bar, sent later with an older version, stays out', async () => {
    expect(await write([del('DL5', 3, 2)])).toEqual({ rowsChanged: 0, rowsDeleted: 0 });
    expect(await write([bar('DL5', 3, 10, { revision: 2 })])).toEqual({ rowsChanged: 1, rowsDeleted: 0 });
    // Revision 2 with a later record time is newer than the delete (revision 2, earlier record time).
    expect(await stored('DL5')).toHaveLength(1);
    expect(await write([del('DL5', 4, 9), bar('DL6', 0, 1)])).toEqual({ rowsChanged: 1, rowsDeleted: 0 });
    expect(await write([bar('DL5', 4, 10, { revision: 8 })])).toEqual({ rowsChanged: 0, rowsDeleted: 0 });
  });

  test('extra columns: each value in its column, null when absent, replaced with the version; a delete leaves none', async () => {
    await write([
      bar('EX1', 0, 10, { extras: ['XNYS', 7] }),
      bar('EX1', 1, 10, { extras: [null, null] }),
      bar('EX1', 2, 10, { extras: ['Zürich€', -(2 ** 53 - 1)] }),
    ]);
    const read = async () =>
      (
        await h.pool.query<{ exchange: string | null; conditions: string | null }>(
          `SELECT exchange, conditions::text FROM "${h.schema}".bars_1m WHERE symbol = 'EX1' ORDER BY "timestamp"`,
        )
      ).rows;
    expect(await read()).toEqual([
      { exchange: 'XNYS', conditions: '7' },
      { exchange: null, conditions: null },
      { exchange: 'Zürich€', conditions: String(-(2 ** 53 - 1)) },
    ]);
    await write([bar('EX1', 0, 11, { extras: ['BATS', null] })]);
    expect((await read())[0]).toEqual({ exchange: 'BATS', conditions: null });
    const latest = await h.pool.query(
      `SELECT exchange, conditions::text FROM "${h.schema}".bars_latest WHERE symbol = 'EX1'`,
    );
    expect(latest.rows).toEqual([{ exchange: 'Zürich€', conditions: String(-(2 ** 53 - 1)) }]);
    // Its newest minute deleted, bars_latest falls back to minute 1, which had no extras.
    await write([del('EX1', 2)]);
    expect(
      (await h.pool.query(`SELECT exchange FROM "${h.schema}".bars_latest WHERE symbol = 'EX1'`)).rows,
    ).toEqual([{ exchange: null }]);
    await write([del('EX1', 1)]);
    expect(
      (await h.pool.query(`SELECT exchange FROM "${h.schema}".bars_latest WHERE symbol = 'EX1'`)).rows,
    ).toEqual([{ exchange: 'BATS' }]);
  });

  test('the setting against the tables: a missing column is added by migrate, a different type refused, a dropped one kept', async () => {
    const more = parseExtraColumns(`${EXTRAS},score:double precision`);
    expect(await extraColumnsState(h.pool, h.schema, more)).toEqual({
      missing: ['bars_1m.score', 'bars_latest.score'],
      wrongType: [],
      unconfigured: [],
    });
    const c = await h.pool.connect();
    try {
      expect(await applyExtraColumns(c, h.schema, more)).toEqual({
        added: ['bars_1m.score', 'bars_latest.score'],
        unconfigured: [],
      });
      expect(await applyExtraColumns(c, h.schema, more)).toEqual({ added: [], unconfigured: [] });
      await expect(applyExtraColumns(c, h.schema, parseExtraColumns('exchange:bigint'))).rejects.toThrow(
        "BARS_EXTRA_COLUMNS: bars_1m.exchange is text and BARS_EXTRA_COLUMNS says bigint: bar-writer never changes a column's type",
      );
      // Dropped from the setting: kept, named, never written.
      expect(await applyExtraColumns(c, h.schema, extras)).toEqual({ added: [], unconfigured: ['score'] });
    } finally {
      c.release();
    }
    await write([bar('EX2', 0, 1, { extras: ['X', 1] })]);
    expect(
      (await h.pool.query(`SELECT exchange, score FROM "${h.schema}".bars_1m WHERE symbol = 'EX2'`)).rows,
    ).toEqual([{ exchange: 'X', score: null }]);
  });
});

describe('the values PostgreSQL writes for the read API', () => {
  const EXTRAS = 'exch:text(16),cond:bigint,ratio:double,odd:boolean';
  const h = new Harness({ extraColumns: EXTRAS });
  beforeAll(() => h.setupSchema());
  afterAll(() => h.cleanup());

  test('every value type, extremes and escapes included, parses to the stored value', async () => {
    const rows: [
      string,
      number,
      number,
      number | null,
      number | null,
      string | null,
      number | null,
      number | null,
      boolean | null,
    ][] = [
      // symbol, close, volume, vwap, trade_count, exch, cond, ratio, odd
      ['V1', 0.1 + 0.2, Number.MAX_SAFE_INTEGER, null, null, 'q"b\\s/é\u0001', -9007199254740991, 1e-7, true],
      ['V2', 1.7976931348623157e308, 0, 5e-324, 0, '', 0, -1.5e300, false],
      ['V3', -3.25, 7, 0.1, 12, null, null, null, null],
    ];
    const at = Date.UTC(2026, 10, 24, 14, 31);
    for (const [symbol, close, volume, vwap, tradeCount, exch, cond, ratio, odd] of rows) {
      await h.pool.query(
        `INSERT INTO "${h.schema}".bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap, trade_count,
           revision, source_time, exch, cond, ratio, odd)
         VALUES ($1, to_timestamp($2::float8 / 1000), $3, $3, $3, $3, $4, $5, $6, 0, now(), $7, $8, $9, $10)`,
        [symbol, at, close, volume, vwap, tradeCount, exch, cond, ratio, odd],
      );
    }
    const reader = new BarReader(h.pool, h.schema, 5000, { extras: parseExtraColumns(EXTRAS) });
    const got = await reader.minute(at, null, 10);
    expect(got.map((b) => b.symbol)).toEqual(['V1', 'V2', 'V3']);
    expect(got.map((b) => JSON.parse(`{${b.values}}`) as unknown)).toEqual(
      rows.map(([, close, volume, vwap, tradeCount, exch, cond, ratio, odd]) => ({
        open: close,
        high: close,
        low: close,
        close,
        volume,
        vwap,
        trade_count: tradeCount,
        exch,
        cond,
        ratio,
        odd,
      })),
    );
    // In the API's order: the contract's values, trade_count, then the extra columns.
    expect(Object.keys(JSON.parse(`{${got[0]!.values}}`) as object)).toEqual([
      'open',
      'high',
      'low',
      'close',
      'volume',
      'vwap',
      'trade_count',
      'exch',
      'cond',
      'ratio',
      'odd',
    ]);
  });
});
