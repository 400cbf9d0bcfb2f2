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
  type TestBar,
} from '../support/harness';

const good = makeBars(20, 3, Date.UTC(2026, 10, 24, 15, 0), 7); // 60 bars
const base: TestBar = {
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

// [class of bad input, expected reason, value]
const bad: [string, string, string | Buffer | null][] = [
  ['tombstone (null value)', 'null_value', null],
  ['empty value', 'empty_value', ''],
  ['truncated JSON', 'invalid_json', '{"symbol":"AAPL",'],
  ['invalid UTF-8', 'invalid_utf8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
  [
    'truncated UTF-8 sequence',
    'invalid_utf8',
    Buffer.concat([Buffer.from(j(base).slice(0, -1)), Buffer.from([0xe2, 0x82])]),
  ],
  ['JSON array', 'not_object', '[1,2,3]'],
  ['JSON string', 'not_object', '"AAPL"'],
  ['JSON null literal', 'not_object', 'null'],
  ['empty object', 'missing_field', '{}'],
  ['missing close', 'missing_field', j({ ...base, close: undefined })],
  ['price as a string', 'wrong_type', j({ ...base, open: '1.0' })],
  ['NaN as a string', 'wrong_type', j({ ...base, high: 'NaN' })],
  ['Infinity as a string', 'wrong_type', j({ ...base, low: 'Infinity' })],
  ['volume as a string', 'wrong_type', j({ ...base, volume: '10' })],
  ['timestamp as a boolean', 'wrong_type', j({ ...base, timestamp: true })],
  ['vwap as a string', 'wrong_type', j({ ...base, vwap: '1.05' })],
  ['symbol with a space', 'invalid_symbol', j({ ...base, symbol: 'HAS SPACE' })],
  ['symbol of 33 characters', 'invalid_symbol', j({ ...base, symbol: 'X'.repeat(33) })],
  ['symbol with a control character', 'invalid_symbol', j({ ...base, symbol: 'AB\u0007C' })],
  ['symbol with non-ASCII', 'invalid_symbol', j({ ...base, symbol: 'ÄPPLE' })],
  ['empty symbol', 'invalid_symbol', j({ ...base, symbol: '' })],
  ['timestamp without a zone', 'invalid_timestamp', j({ ...base, timestamp: '2026-11-24T14:31:00' })],
  ['timestamp with a space', 'invalid_timestamp', j({ ...base, timestamp: '2026-11-24 14:31:00Z' })],
  [
    'timestamp with an impossible offset',
    'invalid_timestamp',
    j({ ...base, timestamp: '2026-11-24T14:31:00+25:00' }),
  ],
  ['impossible date', 'invalid_timestamp', j({ ...base, timestamp: '2026-02-30T14:31:00Z' })],
  ['fractional epoch ms', 'invalid_timestamp', j({ ...base, timestamp: 1764000000000.5 })],
  ['timestamp before 1900', 'invalid_timestamp', j({ ...base, timestamp: '1899-12-31T23:59:00Z' })],
  // A frequent producer mistake: epoch seconds where the contract says milliseconds (→ January 1970).
  ['epoch seconds', 'timestamp_in_seconds', j({ ...base, timestamp: 1_764_000_000 })],
  [
    'a bar from 1985 (before BARS_MIN_TIMESTAMP, 1990 by default)',
    'timestamp_too_early',
    j({ ...base, timestamp: '1985-06-03T14:31:00Z' }),
  ],
  ['negative revision', 'invalid_revision', j({ ...base, revision: -1 })],
  ['revision as a string', 'wrong_type', j({ ...base, revision: '2' })],
  ['unaligned seconds', 'unaligned_timestamp', j({ ...base, timestamp: '2026-11-24T14:31:30Z' })],
  [
    'unaligned with an offset',
    'unaligned_timestamp',
    j({ ...base, timestamp: '2026-11-24T15:31:00.500+01:00' }),
  ],
  [
    'unaligned epoch ms',
    'unaligned_timestamp',
    j({ ...base, timestamp: Date.UTC(2026, 10, 24, 14, 31) + 1 }),
  ],
  [
    'far-future timestamp',
    'future_timestamp',
    j({
      ...base,
      timestamp: new Date(Math.floor(Date.now() / 60_000) * 60_000 + 3 * 86_400_000).toISOString(),
    }),
  ],
  [
    'huge number (overflows to Infinity)',
    'non_finite',
    '{"symbol":"BAD","timestamp":"2026-11-24T14:31:00Z","open":1e400,"high":1.2,"low":0.9,"close":1.1,"volume":1}',
  ],
  ['negative volume', 'invalid_volume', j({ ...base, volume: -5 })],
  ['fractional volume', 'invalid_volume', j({ ...base, volume: 1.5 })],
  ['volume beyond 2^53', 'invalid_volume', j({ ...base, volume: 1e20 })],
  ['low above min(open, close)', 'ohlc_inconsistent', j({ ...base, low: 1.15 })],
  ['low above high', 'ohlc_inconsistent', j({ ...base, low: 2, high: 1.5 })],
  ['vwap above high', 'vwap_out_of_range', j({ ...base, vwap: 5 })],
  ['vwap below low', 'vwap_out_of_range', j({ ...base, vwap: 0.1 })],
  [
    'duplicate JSON key',
    'duplicate_key',
    '{"symbol":"BAD","timestamp":"2026-11-24T14:31:00Z","open":1,"high":1.2,"low":0.9,"close":1.1,"close":1.0,"volume":1}',
  ],
  ['value over 64 KiB', 'too_large', j({ ...base, padding: 'x'.repeat(100_000) })],
  ['1 MB value', 'too_large', Buffer.alloc(1_000_000, 0x20)],
];

// Valid but unusual messages that must land exactly (escaping and timestamp forms).
const unusual: { value: unknown; stored: TestBar }[] = [
  {
    value: { ...base, symbol: 'A\\B', timestamp: '2026-11-24T09:31:00-05:00' },
    stored: { ...base, symbol: 'A\\B', timestamp: '2026-11-24T14:31:00.000Z' },
  },
  {
    value: {
      ...base,
      symbol: 'EPOCH',
      timestamp: Date.UTC(2026, 10, 24, 14, 32),
      vwap: null,
      extra: { nested: [1, 2] },
    },
    stored: { ...base, symbol: 'EPOCH', timestamp: '2026-11-24T14:32:00.000Z', vwap: null },
  },
  {
    value: { ...base, symbol: 'BRK.B', timestamp: '2026-11-24T20:01:00+0530', vwap: undefined },
    stored: { ...base, symbol: 'BRK.B', timestamp: '2026-11-24T14:31:00.000Z', vwap: null },
  },
  {
    // A UTF-8 byte-order mark before the JSON is tolerated (the decoder drops it, as RFC 8259 allows).
    value: '\uFEFF' + j({ ...base, symbol: 'BOM' }),
    stored: { ...base, symbol: 'BOM', timestamp: '2026-11-24T14:31:00.000Z' },
  },
];

describe('rejected messages', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
  });
  afterAll(() => h.cleanup());

  test(`${bad.length} classes of bad input are skipped, counted and dead-lettered; the good ones around them land`, async () => {
    expect(bad.length).toBeGreaterThanOrEqual(25);
    // Interleave: good, bad, good, bad, … all in partition 0.
    const messages: {
      key: string | null;
      value: string | Buffer | null;
      partition: number;
      headers?: Record<string, string>;
    }[] = [];
    let gi = 0;
    for (const u of unusual) {
      const value = typeof u.value === 'string' ? u.value : JSON.stringify(u.value);
      messages.push({ key: u.stored.symbol, value, partition: 0 });
    }
    for (const [i, [, , value]] of bad.entries()) {
      for (let k = 0; k < 3 && gi < good.length; k++, gi++)
        messages.push({ key: good[gi]!.symbol, value: JSON.stringify(good[gi]), partition: 0 });
      messages.push({ key: `bad-${i}`, value, partition: 0, headers: { 'trace-id': `t${i}` } });
    }
    for (; gi < good.length; gi++)
      messages.push({ key: good[gi]!.symbol, value: JSON.stringify(good[gi]), partition: 0 });
    await h.produceRaw(messages, 1); // one per request: the 1 MB value fills a request alone

    const service = await h.startService();
    const landed = [...good, ...unusual.map((u) => u.stored)];
    await waitFor(
      'good rows and offsets at the end',
      async () => (await h.rowCount()) === landed.length && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable(landed), await h.storedBars())).toEqual([]);

    const metrics = (await httpGet(service.port, '/metrics')).body;
    const byReason = new Map<string, number>();
    for (const [, reason] of bad) byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    for (const [reason, n] of byReason)
      expect([reason, metricValue(metrics, 'bars_rejected_total', { reason })]).toEqual([reason, n]);
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(bad.length);

    // The dead-letter topic holds each bad message once: original key, value and headers, plus why and where.
    const dlq = await h.readDeadLetters(bad.length);
    expect(dlq).toHaveLength(bad.length);
    const badOffsets = messages
      .map((m, offset) => ({ m, offset }))
      .filter(({ m }) => m.key?.startsWith('bad-'));
    for (const [i, [what, reason, value]] of bad.entries()) {
      const d = dlq.find((x) => x.key === `bad-${i}`)!;
      expect(d).toBeDefined();
      expect([what, d.headers[DLQ_HEADERS.reason]]).toEqual([what, reason]);
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

describe('BARS_MIN_TIMESTAMP', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
  });
  afterAll(() => h.cleanup());

  test('widened for a history load: a bar from 1985 lands; one from before the configured time does not', async () => {
    const old = { ...base, symbol: 'OLD', timestamp: '1985-06-03T14:31:00.000Z' };
    const older = { ...base, symbol: 'OLDER', timestamp: '1979-12-31T23:59:00.000Z' };
    await h.produceRaw([old, older].map((b) => ({ key: b.symbol, value: j(b), partition: 0 })));
    const service = await h.startService({ BARS_MIN_TIMESTAMP: '1980-01-01T00:00:00Z' });
    await waitFor('consumed', async () => (await h.rowCount()) === 1 && (await h.caughtUp()));
    expect(diffTables(expectedTable([old]), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_rejected_total', { reason: 'timestamp_too_early' })).toBe(1);
    expect(await service.stop()).toBe(true);
  });
});
