/**
 * Many partitions and big messages. 64 partitions on one instance with small buffers: every bar lands
 * exactly and the buffered depth never exceeds BARS_DB_WRITE_QUEUE_SIZE while the backlog drains.
 * Messages far bigger than the fetch limits (KAFKA_MAX_BYTES_PER_PARTITION / KAFKA_MAX_BYTES): valid
 * padded bars land, values over the contract's 64 KiB are dead-lettered as too_large, nothing stalls.
 */
import { DLQ_HEADERS } from '../../src/deadletter/producer';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  sleep,
  waitFor,
  type TestBar,
} from '../support/harness';

/** A partition number derived from the symbol (S0000…), so each symbol stays in one partition. */
function partitionOf(bar: TestBar, partitions: number): number {
  return Number(bar.symbol.slice(1)) % partitions;
}

describe('64 partitions on one instance, small buffers', () => {
  const PARTITIONS = 64;
  const QUEUE_SIZE = 2000;
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(PARTITIONS);
  });
  afterAll(() => h.cleanup());

  test(`bars over all ${PARTITIONS} partitions land exactly; the queue depth never exceeds ${QUEUE_SIZE}`, async () => {
    const bars = makeBars(512, 30, Date.UTC(2026, 10, 24, 9, 0), 41); // 15,360 bars, 240 per partition
    await h.produceRaw(
      bars.map((b) => ({ key: b.symbol, value: JSON.stringify(b), partition: partitionOf(b, PARTITIONS) })),
      2000,
    );
    const ends = await h.endOffsets();
    expect(ends.size).toBe(PARTITIONS);
    expect([...ends.values()].every((end) => end === BigInt(bars.length / PARTITIONS))).toBe(true);

    const service = await h.startService({
      BARS_DB_WRITE_QUEUE_SIZE: String(QUEUE_SIZE),
      BARS_DB_WRITE_BATCH_SIZE: '500',
    });
    // Sample the metrics every 50 ms while the backlog drains.
    const depths: number[] = [];
    let maxPaused = 0;
    let assigned = 0;
    let done = false;
    let nextCheck = 0;
    const deadline = Date.now() + 120_000;
    while (!done) {
      if (Date.now() > deadline) throw new Error(`not drained in time: ${await h.rowCount()} rows`);
      const metrics = (await httpGet(service.port, '/metrics')).body;
      depths.push(metricValue(metrics, 'timescale_write_queue_depth'));
      maxPaused = Math.max(maxPaused, metricValue(metrics, 'kafka_paused_partitions'));
      assigned = Math.max(assigned, metricValue(metrics, 'kafka_assigned_partitions'));
      if (Date.now() >= nextCheck) {
        done = (await h.rowCount()) === bars.length && (await h.caughtUp());
        nextCheck = Date.now() + 500;
      }
      await sleep(50);
    }
    expect(assigned).toBe(PARTITIONS);
    expect(depths.length).toBeGreaterThan(10);
    expect(Math.max(...depths)).toBeLessThanOrEqual(QUEUE_SIZE);
    expect(Math.max(...depths)).toBeGreaterThan(0);
    // The buffers did fill (backpressure, not luck): the fetch loop waited for room, or paused.
    const final = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(final, 'kafka_fetch_backpressure_seconds_total') + maxPaused).toBeGreaterThan(0);
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    expect(metricValue(final, 'bars_written_total')).toBe(bars.length);
    expect(await service.stop()).toBe(true);
  });
});

describe('messages bigger than the fetch limits', () => {
  const PARTITIONS = 4;
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(PARTITIONS);
  });
  afterAll(() => h.cleanup());

  test('~20 KB bars land, values over 64 KiB are dead-lettered as too_large, nothing stalls', async () => {
    const bars = makeBars(40, 5, Date.UTC(2026, 10, 24, 11, 0), 43); // 200 bars
    // An ignored extra field pads each valid bar to ~20 KB (the contract allows up to 64 KiB).
    const valid = bars.map((b, i) => ({
      key: b.symbol,
      value: JSON.stringify({ ...b, padding: 'p'.repeat(19_800 + (i % 7) * 50) }),
      partition: partitionOf(b, PARTITIONS),
    }));
    // Too large, 70-125 KB each: a run of 12 on partition 0 (~1.2 MB together, more than the broker takes
    // in one record batch, so their dead letters cannot go out in one request), and 4 more elsewhere.
    const big = Array.from({ length: 16 }, (_, i) => ({
      key: `big-${i}`,
      value: JSON.stringify({
        ...bars[i]!,
        symbol: `BIG${i}`,
        padding: 'q'.repeat(70_000 + (i % 12) * 5_000),
      }),
      partition: i < 12 ? 0 : i - 12,
      headers: { 'trace-id': `big-${i}` },
    }));
    const messages = [...valid.slice(0, 100), ...big, ...valid.slice(100)];
    expect(valid.every((m) => m.value.length > 19_000 && m.value.length < 64 * 1024)).toBe(true);
    expect(big.every((m) => m.value.length > 64 * 1024)).toBe(true);
    // Small sends: a record batch must stay under the broker's message.max.bytes (1 MiB).
    await h.produceRaw(messages, 4);

    const service = await h.startService({
      KAFKA_MAX_BYTES_PER_PARTITION: '1024',
      KAFKA_MAX_BYTES: '4096',
      // Each fetch brings about one record batch; a partition's messages then gather into one flush.
      BARS_DB_WRITE_INTERVAL: '2s',
      BARS_DB_FLUSH_ON_CAUGHT_UP: 'false',
    });
    const deadline = Date.now() + 90_000;
    while (!((await h.rowCount()) === bars.length && (await h.caughtUp()))) {
      if (Date.now() > deadline) {
        const m = (await httpGet(service.port, '/metrics')).body;
        throw new Error(
          `stalled: ${await h.rowCount()}/${bars.length} rows, consumed ${metricValue(m, 'bars_consumed_total')}, ` +
            `status ${JSON.stringify(service.status())}`,
        );
      }
      await sleep(250);
    }
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_rejected_total', { reason: 'too_large' })).toBe(big.length);
    expect(metricValue(metrics, 'bars_rejected_total')).toBe(big.length);
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(big.length);

    const dlq = await h.readDeadLetters(big.length);
    expect(dlq.map((d) => d.key).sort()).toEqual(big.map((b) => b.key).sort());
    for (const b of big) {
      const d = dlq.find((x) => x.key === b.key)!;
      expect(d.value?.equals(Buffer.from(b.value))).toBe(true);
      expect(d.headers).toMatchObject({
        'trace-id': b.headers['trace-id'],
        [DLQ_HEADERS.reason]: 'too_large',
        [DLQ_HEADERS.partition]: String(b.partition),
      });
    }
    expect(await service.stop()).toBe(true);
  });
});

describe('a dead letter too large for the dead-letter topic, by its key or its headers', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    // A dead-letter topic that takes 20 KB records at most.
    await h.createTopics(1, {}, { 'max.message.bytes': '20000' });
  });
  afterAll(() => h.cleanup());

  test('it loses its value, then its key and own headers (each said with its size); the partition goes on', async () => {
    const bars = makeBars(10, 3, Date.UTC(2026, 10, 24, 11, 0), 44); // 30 bars
    const fat = [
      { key: 'k'.repeat(30_000), value: 'not json' },
      { key: 'small', value: '{"symbol":"X"}', headers: { 'big-header': 'h'.repeat(30_000), keep: 'x' } },
      { key: 'valuey', value: 'v'.repeat(30_000) },
    ];
    await h.produceRaw([...fat, ...bars.map((b) => ({ key: b.symbol, value: JSON.stringify(b) }))], 1);
    const service = await h.startService();
    await waitFor(
      'the bars after them',
      async () => (await h.rowCount()) === 30 && (await h.caughtUp()),
      60_000,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    const dlq = await h.readDeadLetters(3);
    const byReason = (stage: (d: (typeof dlq)[number]) => boolean) => dlq.filter(stage);
    const keyless = byReason((d) => d.headers[DLQ_HEADERS.keyDropped] !== undefined);
    expect(
      keyless
        .map((d) => [d.key, d.headers[DLQ_HEADERS.keyDropped], d.headers[DLQ_HEADERS.headersDropped]])
        .sort(),
    ).toEqual([
      [null, '30000', '0'],
      [null, '5', String('big-header'.length + 30_000 + 'keep'.length + 1)],
    ]);
    for (const d of keyless) {
      expect(d.value).toBeNull();
      expect(d.headers[DLQ_HEADERS.reason]).toBeDefined();
      expect(d.headers[DLQ_HEADERS.offset]).toBeDefined();
    }
    const valueless = dlq.filter((d) => d.key === 'valuey')[0]!;
    expect(valueless.headers[DLQ_HEADERS.valueDropped]).toBe('30000');
    expect(await service.stop()).toBe(true);
  });
});
