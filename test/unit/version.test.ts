/**
 * The time part of a bar's version (src/contract/version.ts): a record timestamp no clock should give
 * is bounded to the bar's close, counted; a version-time header names it instead; and what reaches the
 * COPY encoder stays within PostgreSQL's range (src/store/copyEncoding.ts refuses rather than wraps).
 */
import { Registry } from 'prom-client';
import { SourceArena, type BarEntry } from '../../src/batch/buffer';
import { Intake } from '../../src/batch/intake';
import { BarSlabs, messageTimeOf, versionTimeOf } from '../../src/contract/packedBar';
import { boundedVersionTime, headerVersionTime, VERSION_TIME_HEADER } from '../../src/contract/version';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { encodeCopyBinaryParts } from '../../src/store/copyEncoding';

const T0 = Date.UTC(2026, 10, 24, 14, 31);
const HOUR = 3_600_000;
const CLOSE = T0 + 60_000;

describe('boundedVersionTime', () => {
  test.each([
    ['a record time now', T0 + 5_000, T0 + 5_000],
    ['10 minutes ahead (a fast clock): taken as it is', T0 + 600_000, T0 + 600_000],
    ['exactly the bound ahead', T0 + 3_000 + HOUR, T0 + 3_000 + HOUR],
    ['just past the bound', T0 + 3_001 + HOUR, CLOSE],
    ['years ahead', Date.UTC(2031, 0, 1), CLOSE],
    ['microseconds (1.7e15)', (T0 + 3_000) * 1000, CLOSE],
    ['1e16 ms (PostgreSQL refuses it: 22008)', 1e16, CLOSE],
    ['2^63 - 1 (wrapped to 1970 by the encoder)', 2 ** 63 - 1, CLOSE],
    ['negative', -1, CLOSE],
    ['0 (no timestamp): the oldest version', 0, 0],
  ])('%s', (_what, claimed, expected) => {
    expect(boundedVersionTime(claimed, T0 + 3_000, T0, HOUR)).toBe(expected);
  });
});

describe('headerVersionTime', () => {
  test.each([
    [{}, null],
    [{ [VERSION_TIME_HEADER]: '1764000000000' }, 1764000000000],
    [{ [VERSION_TIME_HEADER]: Buffer.from('42') }, 42],
    [{ [VERSION_TIME_HEADER]: [Buffer.from('7'), Buffer.from('9')] }, 7],
    [{ [VERSION_TIME_HEADER]: '-5' }, null],
    [{ [VERSION_TIME_HEADER]: '1e3' }, null],
    [{ [VERSION_TIME_HEADER]: ' 12' }, null],
    [{ [VERSION_TIME_HEADER]: '12345678901234567' }, null],
  ] as [Record<string, string | Buffer | Buffer[]>, number | null][])('%j → %s', (headers, expected) => {
    expect(headerVersionTime(headers)).toBe(expected);
  });
});

describe('Intake: the version time packed with the bar', () => {
  const bar = Buffer.from(
    JSON.stringify({
      symbol: 'AAPL',
      timestamp: new Date(T0).toISOString(),
      open: 1,
      high: 2,
      low: 0.5,
      close: 1.5,
      volume: 3,
    }),
  );
  function entry(timestamp: string, headers: Record<string, string> = {}) {
    const metrics = createMetrics(new Registry(), false);
    const intake = new Intake({ metrics, logger: createLogger('silent'), versionMaxFutureMs: HOUR });
    const stores = { bars: new BarSlabs(), sources: new SourceArena() };
    const e = intake.entry(
      't',
      0,
      { offset: '1', key: null, value: bar, headers, timestamp },
      1n,
      T0 + 3_000,
      stores,
    );
    if (e.kind !== 'bar') throw new Error('not a bar');
    return { e, metrics };
  }
  const bounded = async (m: ReturnType<typeof createMetrics>) =>
    (await m.versionTimeBounded.get()).values[0]?.value ?? 0;

  test('the record time, kept as the message had it, is also the version time', async () => {
    const { e, metrics } = entry(String(T0 + 2_000));
    expect([messageTimeOf(e), versionTimeOf(e)]).toEqual([T0 + 2_000, T0 + 2_000]);
    expect(await bounded(metrics)).toBe(0);
  });

  test('a record time in microseconds: versioned at the close, counted; the fingerprint keeps the record time', async () => {
    const { e, metrics } = entry(String((T0 + 2_000) * 1000));
    expect([messageTimeOf(e), versionTimeOf(e)]).toEqual([(T0 + 2_000) * 1000, CLOSE]);
    expect(await bounded(metrics)).toBe(1);
  });

  test('a version-time header (a dlq replay on a LogAppendTime topic) wins over the record time', async () => {
    const { e, metrics } = entry(String(T0 + 9_000_000), { [VERSION_TIME_HEADER]: String(T0 + 2_000) });
    expect([messageTimeOf(e), versionTimeOf(e)]).toEqual([T0 + 9_000_000, T0 + 2_000]);
    expect(await bounded(metrics)).toBe(0);
  });

  test('the encoder writes what was bounded, and refuses a time beyond timestamptz rather than wrap it', () => {
    const { e } = entry(String(2 ** 63 - 1));
    expect(() => encodeCopyBinaryParts([{ partition: 0, entries: [e as BarEntry] }])).not.toThrow();
    const slabs = new BarSlabs();
    const forced = slabs.packedAt(
      {
        symbol: 'X',
        timestampMs: T0,
        open: 1,
        high: 1,
        low: 1,
        close: 1,
        volume: 1,
        vwap: null,
        revision: 0,
        tradeCount: null,
        deleted: false,
        extras: null,
      },
      0,
      2n,
      2 ** 63 - 1,
    );
    expect(() => encodeCopyBinaryParts([{ partition: 0, entries: [forced] }])).toThrow(
      /outside PostgreSQL's timestamptz range/,
    );
  });
});
