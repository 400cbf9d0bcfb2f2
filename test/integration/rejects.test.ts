/**
 * Bad input never blocks a partition: rejected messages of many kinds, interleaved with good bars in the
 * same partition, are skipped, counted by reason and dead-lettered with their reason and origin; the good
 * bars around them all land and the offsets reach the end.
 */
import { DLQ_HEADERS } from '../../src/deadletter/producer';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  waitFor,
} from '../support/harness';

const good = makeBars(20, 3, Date.UTC(2026, 10, 24, 15, 0), 7); // 60 bars
const base = {
  symbol: 'BAD',
  timestamp: '2026-11-24T14:31:00Z',
  open: 1,
  high: 1.2,
  low: 0.9,
  close: 1.1,
  volume: 10,
  vwap: 1.05,
};
const j = (o: unknown) => JSON.stringify(o);

// [reason, value]
const bad: [string, string | Buffer | null][] = [
  ['null_value', null],
  ['empty_value', ''],
  ['invalid_json', '{"symbol":"AAPL",'],
  ['invalid_utf8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
  ['not_object', '[1,2,3]'],
  ['missing_field', j({ ...base, close: undefined })],
  ['wrong_type', j({ ...base, open: '1.0' })],
  ['wrong_type', j({ ...base, volume: 'NaN' })],
  ['invalid_symbol', j({ ...base, symbol: 'HAS SPACE' })],
  ['invalid_symbol', j({ ...base, symbol: 'X'.repeat(33) })],
  ['invalid_timestamp', j({ ...base, timestamp: '2026-11-24 14:31:00' })],
  ['unaligned_timestamp', j({ ...base, timestamp: '2026-11-24T14:31:30Z' })],
  [
    'future_timestamp',
    j({
      ...base,
      timestamp: new Date(Math.floor(Date.now() / 60_000) * 60_000 + 3 * 86_400_000).toISOString(),
    }),
  ],
  [
    'non_finite',
    '{"symbol":"BAD","timestamp":"2026-11-24T14:31:00Z","open":1e400,"high":1.2,"low":0.9,"close":1.1,"volume":1}',
  ],
  ['invalid_volume', j({ ...base, volume: -5 })],
  ['ohlc_inconsistent', j({ ...base, low: 1.15 })],
  ['vwap_out_of_range', j({ ...base, vwap: 5 })],
  [
    'duplicate_key',
    '{"symbol":"BAD","timestamp":"2026-11-24T14:31:00Z","open":1,"high":1.2,"low":0.9,"close":1.1,"close":1.0,"volume":1}',
  ],
  ['too_large', j({ ...base, padding: 'x'.repeat(100_000) })],
];

describe('rejected messages', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
  });
  afterAll(() => h.cleanup());

  test(`${bad.length} bad messages of ${new Set(bad.map((b) => b[0])).size} kinds are skipped, counted and dead-lettered; the good ones land`, async () => {
    // Interleave: good, bad, good, bad, … all in partition 0.
    const messages: {
      key: string | null;
      value: string | Buffer | null;
      partition: number;
      headers?: Record<string, string>;
    }[] = [];
    let gi = 0;
    for (const [i, [, value]] of bad.entries()) {
      for (let k = 0; k < 3 && gi < good.length; k++, gi++)
        messages.push({ key: good[gi]!.symbol, value: JSON.stringify(good[gi]), partition: 0 });
      messages.push({ key: `bad-${i}`, value, partition: 0, headers: { 'trace-id': `t${i}` } });
    }
    for (; gi < good.length; gi++)
      messages.push({ key: good[gi]!.symbol, value: JSON.stringify(good[gi]), partition: 0 });
    await h.produceRaw(messages, 10);

    const service = await h.startService();
    await waitFor(
      'good rows and offsets at the end',
      async () => (await h.rowCount()) === good.length && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable(good), await h.storedBars())).toEqual([]);

    const metrics = (await httpGet(service.port, '/metrics')).body;
    const byReason = new Map<string, number>();
    for (const [reason] of bad) byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    for (const [reason, n] of byReason)
      expect([reason, metricValue(metrics, 'bars_rejected_total', { reason })]).toEqual([reason, n]);
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(bad.length);

    // The dead-letter topic holds each bad message once: original key, value and headers, plus why and where.
    const dlq: { key: string | null; value: Buffer | null; headers: Record<string, string> }[] = [];
    const consumer = h.kafka.consumer({ groupId: `${h.group}-dlq-reader` });
    h.onCleanup(() => consumer.disconnect());
    await consumer.connect();
    await consumer.subscribe({ topic: h.dlqTopic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        dlq.push({ key: message.key?.toString() ?? null, value: message.value, headers });
      },
    });
    await waitFor('every dead letter', async () => dlq.length >= bad.length);
    await consumer.stop();
    expect(dlq).toHaveLength(bad.length);
    const badOffsets = messages
      .map((m, offset) => ({ m, offset }))
      .filter(({ m }) => m.key?.startsWith('bad-'));
    for (const [i, [reason, value]] of bad.entries()) {
      const d = dlq.find((x) => x.key === `bad-${i}`)!;
      expect(d).toBeDefined();
      expect(d.headers[DLQ_HEADERS.reason]).toBe(reason);
      expect(d.headers[DLQ_HEADERS.detail]!.length).toBeGreaterThan(5);
      expect(d.headers[DLQ_HEADERS.topic]).toBe(h.topic);
      expect(d.headers[DLQ_HEADERS.partition]).toBe('0');
      expect(d.headers[DLQ_HEADERS.offset]).toBe(String(badOffsets[i]!.offset));
      expect(d.headers['trace-id']).toBe(`t${i}`);
      if (value === null) expect(d.value).toBeNull();
      else expect(Buffer.compare(d.value ?? Buffer.alloc(0), Buffer.from(value))).toBe(0);
    }
    expect(await service.stop()).toBe(true);
  });
});
