/**
 * Scale-out by consumer group: instances join and leave while bars (including corrections of earlier
 * bars) keep arriving. Every rebalance moves partitions with buffered or in-flight bars; at the end the
 * table must hold exactly the last produced version of every key and the offsets must reach the end.
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

describe('rebalance between instances', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(6);
  });
  afterAll(() => h.cleanup());

  test('instances joining and leaving mid-stream lose nothing and leave no stale version', async () => {
    const base = makeBars(300, 40, Date.UTC(2026, 10, 23, 14, 30), 11); // 12,000 bars
    // After each 1,000 bars, corrections (a second version) of every 7th of them.
    const stream: TestBar[] = [];
    for (let i = 0; i < base.length; i += 1000) {
      const chunk = base.slice(i, i + 1000);
      stream.push(
        ...chunk,
        ...chunk.filter((_, k) => k % 7 === 0).map((b) => ({ ...b, close: b.open, volume: b.volume + 1 })),
      );
    }
    const chunks: TestBar[][] = [];
    for (let i = 0; i < stream.length; i += 500) chunks.push(stream.slice(i, i + 500));

    let produced = 0;
    const producing = (async () => {
      for (const c of chunks) {
        await h.produceBars(c);
        produced += c.length;
        await sleep(100);
      }
    })();

    const env = {
      BARS_DB_WRITE_BATCH_SIZE: '300',
      BARS_DB_WRITE_INTERVAL: '300ms',
      KAFKA_SESSION_TIMEOUT: '6s',
    };
    const a = await h.startService(env);
    await waitFor('some rows', async () => (await h.rowCount()) > 500);
    const b = await h.startService(env); // rebalance: a gives partitions to b
    await waitFor('b to own partitions', async () => b.status().assigned > 0 && a.status().assigned < 6);
    await waitFor('more rows', async () => produced > stream.length / 2);
    expect(await a.stop()).toBe(true); // rebalance: b takes everything
    const c = await h.startService(env); // rebalance again
    await waitFor('c to own partitions', async () => c.status().assigned > 0);
    // The membership changes happened while bars were still being produced.
    expect(produced).toBeLessThan(stream.length);
    await producing;
    await waitFor(
      'all keys and offsets at the end',
      async () => (await h.caughtUp()) && (await h.rowCount()) === base.length,
      120_000,
    );
    const diff = diffTables(expectedTable(stream), await h.storedBars());
    expect(diff).toEqual([]);
    expect(await b.stop()).toBe(true);
    expect(await c.stop()).toBe(true);
  });
});
