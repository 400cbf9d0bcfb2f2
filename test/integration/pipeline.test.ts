/**
 * The core pipeline against the real broker and real PostgreSQL: volume, exact contents, the latest
 * version wins within a batch, re-sends (changed and identical) and a replay, offsets after durability.
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

  test('a re-send replaces every row (identical values too: the newest version is stored); a replay of the same messages writes nothing', async () => {
    const xmins = async () =>
      new Map(
        (
          await h.pool.query<{ k: string; xmin: string }>(
            `SELECT symbol || '|' || "timestamp" AS k, xmin::text AS xmin FROM "${h.schema}".bars_1m`,
          )
        ).rows.map((r) => [r.k, r.xmin]),
      );
    // Summed over the chunks on TimescaleDB, where the rows of a hypertable live.
    const writes = async () => {
      const t = await h.tableStats();
      return t.n_tup_upd + t.n_tup_ins;
    };
    const changed = makeBars(500, 2).map((b) => ({
      ...b,
      close: b.open,
      high: Math.max(b.high, b.open),
      low: Math.min(b.low, b.open),
    }));
    // A backend reports its table statistics when it exits (while idle it may hold them up to 10 s),
    // so each phase ends by stopping the service, which closes its connections; then the count is stable.
    // Through PgBouncer the server connections outlive the service's: wait out the idle interval.
    const settleMs = SERVICE_PG === PG ? 500 : 11_000;
    const settledWrites = async () => {
      let last = await writes();
      for (;;) {
        await sleep(settleMs);
        const now = await writes();
        if (now === last) return now;
        last = now;
      }
    };
    const phase = async (bars: typeof changed) => {
      service = await h.startService({ BARS_DB_WRITE_BATCH_SIZE: '2000' });
      if (bars.length > 0) await h.produceBars(bars);
      all.push(...bars);
      await waitLanded(50_000);
      expect(await service.stop()).toBe(true);
      return settledWrites();
    };
    expect(await service!.stop()).toBe(true);
    const before = await settledWrites();

    // New messages for 1,000 stored keys: newer versions, each replaces its row.
    const afterChange = await phase(changed);
    expect(diffTables(expectedTable(all), await h.storedBars())).toEqual([]);
    expect(afterChange - before).toBe(1000);
    // The same values again, as new messages: newer versions still, so the stored version moves.
    const afterResend = await phase(changed);
    expect(afterResend - afterChange).toBe(1000);
    const xminsAfterResend = await xmins();

    // A replay of every message from the start of each partition (fences and committed offsets reset,
    // as `bar-writer offsets reset --to earliest` does with the service stopped): older or equal
    // versions only, so not one row is written.
    await h.pool.query(
      `UPDATE "${h.schema}".bar_writer_offsets SET next_offset = 0, last_fingerprint = NULL WHERE consumer_group = $1`,
      [h.group],
    );
    const admin = await h.getAdmin();
    await admin.setOffsets({
      groupId: h.group,
      topic: h.topic,
      partitions: [...Array(PARTITIONS).keys()].map((partition) => ({ partition, offset: '0' })),
    });
    expect(await phase([])).toBe(afterResend);
    expect(await xmins()).toEqual(xminsAfterResend);
    expect(diffTables(expectedTable(all), await h.storedBars())).toEqual([]);
  });

  test('stop() is idempotent: a second call answers like the first', async () => {
    expect(await service!.stop()).toBe(true);
  });
});
