/**
 * The core pipeline against the real broker and real PostgreSQL: volume, exact contents, the latest
 * version wins within a batch, replays (changed and identical), offsets after durability.
 */
import {
  diffTables,
  expectedTable,
  Harness,
  makeBars,
  sleep,
  waitFor,
  type TestBar,
} from '../support/harness';
import type { Service } from '../../src/service';
import { PG, SERVICE_PG } from '../support/env';

const PARTITIONS = 6;

describe('core pipeline', () => {
  const h = new Harness();
  let service: Service | null = null;

  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(PARTITIONS);
  });
  afterAll(async () => {
    await h.cleanup();
  });

  const waitLanded = async (expected: number) => {
    await waitFor(
      `${expected} rows and committed offsets at the log end`,
      async () => (await h.rowCount()) === expected && (await h.caughtUp()),
      120_000,
    );
  };

  const all: TestBar[] = [];

  test('50,000 bars over 6 partitions and 500 symbols land exactly, offsets committed to the end', async () => {
    const bars = makeBars(500, 100); // 50,000 bars
    // The same key twice in a row, in one partition (same key), before the service starts: one batch.
    const dup = { ...bars[0]!, close: bars[0]!.open, volume: 1 };
    const later = { ...bars[0]!, close: bars[0]!.open, volume: 2 };
    await h.produceBars([...bars, dup, later]);
    all.push(...bars, dup, later);
    service = await h.startService({ BARS_DB_WRITE_BATCH_SIZE: '2000' });
    await waitLanded(50_000);
    const stored = await h.storedBars();
    expect(stored.size).toBe(50_000);
    expect(diffTables(expectedTable(all), stored)).toEqual([]);
    expect(stored.get(`${later.symbol}|${new Date(later.timestamp).toISOString()}`)!.volume).toBe(2);
    const ends = await h.endOffsets();
    expect([...ends.values()].reduce((a, b) => a + b, 0n)).toBe(50_002n);
    // The fence recorded in the database matches the Kafka end offsets.
    const fences = await h.pool.query<{ partition: number; next_offset: string }>(
      `SELECT partition, next_offset::text AS next_offset FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1`,
      [h.group],
    );
    expect(new Map(fences.rows.map((r) => [r.partition, BigInt(r.next_offset)]))).toEqual(ends);
  });

  test('a replay with a changed close updates those rows; an identical replay changes nothing', async () => {
    const xmins = async () =>
      new Map(
        (
          await h.pool.query<{ k: string; xmin: string }>(
            `SELECT symbol || '|' || "timestamp" AS k, xmin::text AS xmin FROM "${h.schema}".bars_1m`,
          )
        ).rows.map((r) => [r.k, r.xmin]),
      );
    // Summed over the chunks on TimescaleDB, where the rows of a hypertable live.
    const updates = async () => (await h.tableStats()).n_tup_upd;
    const changed = makeBars(500, 2).map((b) => ({
      ...b,
      close: b.open,
      high: Math.max(b.high, b.open),
      low: Math.min(b.low, b.open),
    }));
    const current = expectedTable(all);
    const differing = [...expectedTable(changed)].filter(
      ([k, v]) => JSON.stringify(current.get(k)) !== JSON.stringify(v),
    ).length;
    expect(differing).toBeGreaterThan(900);
    // A backend reports its table statistics when it exits (while idle it may hold them up to 10 s),
    // so each phase ends by stopping the service, which closes its connections; then the count is stable.
    // Through PgBouncer the server connections outlive the service's: wait out the idle interval.
    const settleMs = SERVICE_PG === PG ? 500 : 11_000;
    const settledUpdates = async () => {
      let last = await updates();
      for (;;) {
        await sleep(settleMs);
        const now = await updates();
        if (now === last) return now;
        last = now;
      }
    };
    const phase = async (bars: typeof changed) => {
      service = await h.startService({ BARS_DB_WRITE_BATCH_SIZE: '2000' });
      await h.produceBars(bars);
      all.push(...bars);
      await waitLanded(50_000);
      expect(await service.stop()).toBe(true);
      return settledUpdates();
    };
    expect(await service!.stop()).toBe(true);
    const updBefore = await settledUpdates();
    const xminsBefore = await xmins();

    const updAfterChange = await phase(changed);
    expect(diffTables(expectedTable(all), await h.storedBars())).toEqual([]);
    expect(updAfterChange - updBefore).toBe(differing);
    const xminsAfterChange = await xmins();
    const rewritten = [...xminsAfterChange].filter(([k, x]) => xminsBefore.get(k) !== x).length;
    expect(rewritten).toBe(differing);

    // Identical replay (new messages, same values): not one row rewritten.
    expect(await phase(changed)).toBe(updAfterChange);
    expect(await xmins()).toEqual(xminsAfterChange);
  });

  test('stop() is idempotent: a second call answers like the first', async () => {
    expect(await service!.stop()).toBe(true);
  });
});
