import type { ReadBar } from '../../src/contract/readBar';
import {
  answerJson,
  barsJson,
  JsonText,
  pageLink,
  parseAfter,
  parseInterval,
  parseLimit,
  parseMinute,
  parseSymbol,
  parseSymbolList,
  parseTime,
} from '../../src/http/server';
import { openApiDocument } from '../../src/http/openapi';

/** Runs fn expecting it to throw; returns the error with its `parameter`. */
function thrown(fn: () => unknown): { message: string; parameter: unknown } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    return { message: (err as Error).message, parameter: (err as { parameter?: unknown }).parameter };
  }
  throw new Error('expected a throw');
}

const SYMBOL_RULE = 'symbol must be 1-32 printable ASCII characters without whitespace';
const TS_MS = Date.UTC(2026, 10, 24, 14, 31);

describe('parseSymbol', () => {
  test.each([
    ['AAPL', 'AAPL'],
    ['BRK.B', 'BRK.B'],
    ['BF-B', 'BF-B'],
    ['BRK%2EB', 'BRK.B'],
    ['%5C', '\\'],
    ['A%2FB', 'A/B'],
    ['S'.repeat(32), 'S'.repeat(32)],
    ['%41'.repeat(32), 'A'.repeat(32)],
  ])('%p → %p', (raw, symbol) => {
    expect(parseSymbol(raw)).toBe(symbol);
  });

  test.each([
    ['empty', ''],
    ['33 characters', 'S'.repeat(33)],
    ['an encoded space', 'A%20B'],
    ['an encoded tab', 'A%09B'],
    ['an encoded non-ASCII É', '%C3%89'],
    ['a raw non-ASCII É', 'É'],
    ['an encoded control character', '%01'],
    ['an encoded DEL', '%7F'],
  ])('%s → 400 on symbol', (_name, raw) => {
    expect(thrown(() => parseSymbol(raw))).toEqual({ message: SYMBOL_RULE, parameter: 'symbol' });
  });

  test.each([['%'], ['%E9'], ['%ZZ'], ['A%2']])('bad percent-encoding %p → 400 on symbol', (raw) => {
    expect(thrown(() => parseSymbol(raw))).toEqual({
      message: 'symbol is not valid percent-encoding',
      parameter: 'symbol',
    });
  });
});

describe('parseTime', () => {
  test('ISO-8601 with a zone', () => {
    expect(parseTime('from', '2026-11-24T14:31:00Z')).toBe(TS_MS);
    expect(parseTime('from', '2026-11-24T09:31:00-05:00')).toBe(TS_MS);
  });

  test('epoch milliseconds as digits', () => {
    expect(parseTime('to', String(TS_MS))).toBe(TS_MS);
    expect(parseTime('to', '-60000')).toBe(-60_000);
  });

  test('no minute alignment is required for query bounds', () => {
    expect(parseTime('from', '2026-11-24T14:31:30Z')).toBe(TS_MS + 30_000);
    expect(parseTime('from', String(TS_MS + 1))).toBe(TS_MS + 1);
  });

  test.each([[null], ['']])('missing (%p) → 400 naming the parameter', (raw) => {
    expect(thrown(() => parseTime('from', raw))).toEqual({
      message: 'from is required (ISO-8601 with zone, or epoch milliseconds)',
      parameter: 'from',
    });
    expect(thrown(() => parseTime('to', raw)).parameter).toBe('to');
  });

  test('no zone → 400 with the contract rule, worded for a parameter', () => {
    expect(thrown(() => parseTime('to', '2026-11-24T14:31:00'))).toEqual({
      message:
        'to: value must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got "2026-11-24T14:31:00"',
      parameter: 'to',
    });
  });

  test('decimal epoch is treated as a string and rejected', () => {
    expect(thrown(() => parseTime('from', '1795530660000.5'))).toEqual({
      message:
        'from: value must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got "1795530660000.5"',
      parameter: 'from',
    });
  });

  test('invalid date → 400', () => {
    expect(thrown(() => parseTime('from', '2026-02-30T00:00:00Z'))).toEqual({
      message: 'from: value "2026-02-30T00:00:00Z" is not a valid date-time',
      parameter: 'from',
    });
  });

  test('before 1900 → 400', () => {
    expect(thrown(() => parseTime('from', '1899-12-31T23:59:00Z'))).toEqual({
      message: 'from: value 1899-12-31T23:59:00.000Z is before 1900-01-01',
      parameter: 'from',
    });
  });

  test('epoch digits beyond the safe integer range → 400', () => {
    expect(thrown(() => parseTime('to', '99999999999999999999'))).toEqual({
      message: 'to: value in epoch milliseconds must be an integer, got 100000000000000000000',
      parameter: 'to',
    });
  });

  test('epoch ms beyond the Date range is a 400, not a 500', () => {
    expect(thrown(() => parseTime('from', '8640000000060000')).parameter).toBe('from');
  });
});

describe('parseLimit', () => {
  test('absent or empty → the default, capped at max', () => {
    expect(parseLimit(null, 1000, 100)).toBe(100);
    expect(parseLimit('', 1000, 100)).toBe(100);
    expect(parseLimit(null, 50, 100)).toBe(50);
  });

  test.each([
    ['1', 1],
    ['42', 42],
    ['1000', 1000],
    ['007', 7],
  ])('%p → %p', (raw, n) => {
    expect(parseLimit(raw, 1000, 100)).toBe(n);
  });

  test.each([['0'], ['1001'], ['99999999999999999999']])('%p out of range → 400 on limit', (raw) => {
    expect(thrown(() => parseLimit(raw, 1000, 100))).toEqual({
      message: 'limit must be from 1 to 1000',
      parameter: 'limit',
    });
  });

  test.each([['-1'], ['1.5'], ['abc'], [' 5'], ['1e3'], ['+5'], ['0x10']])(
    '%p not digits → 400 on limit',
    (raw) => {
      expect(thrown(() => parseLimit(raw, 1000, 100))).toEqual({
        message: 'limit must be a positive integer',
        parameter: 'limit',
      });
    },
  );
});

describe('barsJson', () => {
  const bar = (symbol: string, timestampMs: number, values: string): ReadBar => ({
    symbol,
    timestampMs,
    values,
  });

  test('the key, an ISO UTC timestamp, then the values as PostgreSQL wrote them', () => {
    const text = barsJson([
      bar(
        'BRK.B',
        TS_MS,
        '"open":1,"high":2,"low":0.5,"close":1.5,"volume":10,"vwap":1.25,"trade_count":null',
      ),
    ]).text;
    expect(text).toBe(
      '[{"symbol":"BRK.B","timestamp":"2026-11-24T14:31:00.000Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10,"vwap":1.25,"trade_count":null}]',
    );
  });

  test('symbols are escaped as JSON strings; each bar keeps its own time, in any order of times', () => {
    const times = [TS_MS, TS_MS, 0, TS_MS, 0, 0, -60_000];
    const symbols = ['A"B', 'C\\D', 'É/€', 'X', 'tab\tY', 'Z', 'A"B'];
    const bars = times.map((t, i) => bar(symbols[i]!, t, `"open":${i}`));
    expect(JSON.parse(barsJson(bars).text)).toEqual(
      times.map((t, i) => ({ symbol: symbols[i], timestamp: new Date(t).toISOString(), open: i })),
    );
  });

  test('no bars: an empty array', () => {
    expect(barsJson([]).text).toBe('[]');
  });
});

describe('answerJson', () => {
  test.each([
    [{ a: 1, b: 'x', c: null, d: [1, { e: 2 }], f: undefined, g: { h: true } }],
    [{}],
    [[1, 2]],
    ['text'],
    [null],
    [{ error: 'limit must be from 1 to 10', parameter: 'limit' }],
  ])('without JsonText it is JSON.stringify: %j', (body) => {
    expect(answerJson(body)).toBe(JSON.stringify(body));
  });

  test('a JsonText member goes in as it is, in its place', () => {
    const text = answerJson({ timestamp: 'T', bars: new JsonText('[{"open":1e-07}]'), next: null });
    expect(text).toBe('{"timestamp":"T","bars":[{"open":1e-07}],"next":null}');
    expect(JSON.parse(text)).toEqual({ timestamp: 'T', bars: [{ open: 1e-7 }], next: null });
  });
});

describe('parseInterval', () => {
  test.each([
    [null, '1m'],
    ['', '1m'],
    ['1m', '1m'],
    ['5m', '5m'],
    ['1h', '1h'],
    ['1d', '1d'],
  ])('%p → %p', (raw, interval) => {
    expect(parseInterval(raw)).toBe(interval);
  });
  test.each([['15m'], ['1M'], ['1w'], ['60m'], ['1d ']])('%p → 400 naming the allowed ones', (raw) => {
    expect(thrown(() => parseInterval(raw))).toEqual({
      message: 'interval must be one of 1m, 5m, 1h, 1d',
      parameter: 'interval',
    });
  });
});

describe('parseMinute', () => {
  test('a whole minute, ISO (encoded or not) or epoch ms', () => {
    expect(parseMinute('2026-11-24T14:31:00Z')).toBe(TS_MS);
    expect(parseMinute('2026-11-24T09%3A31%3A00-05%3A00')).toBe(TS_MS);
    expect(parseMinute(String(TS_MS))).toBe(TS_MS);
  });
  test.each([['2026-11-24T14:31:30Z'], ['2026-11-24T14:31:00.001Z'], [String(TS_MS + 1)]])(
    '%p is not a whole minute → 400 on time',
    (raw) => {
      expect(thrown(() => parseMinute(raw))).toEqual({
        message: 'time must be a whole minute (seconds and milliseconds zero), as bars start',
        parameter: 'time',
      });
    },
  );
  test('not a time → 400 on time', () => {
    expect(thrown(() => parseMinute('yesterday')).parameter).toBe('time');
    expect(thrown(() => parseMinute('%E9')).parameter).toBe('time');
  });
});

describe('parseAfter and parseSymbolList', () => {
  test('after: absent or a symbol', () => {
    expect(parseAfter(null)).toBeNull();
    expect(parseAfter('BRK.B')).toBe('BRK.B');
    expect(thrown(() => parseAfter(''))).toEqual({
      message: 'after must be 1-32 printable ASCII characters without whitespace',
      parameter: 'after',
    });
  });
  test('symbols: a bounded list, duplicates once', () => {
    expect(parseSymbolList('B,A,B', 3)).toEqual(['B', 'A']);
    expect(parseSymbolList('A%2FB', 3)).toEqual(['A%2FB']); // already decoded by the query parser
    const rule = {
      message: 'symbols must be a comma-separated list of 1 to 3 symbols',
      parameter: 'symbols',
    };
    expect(thrown(() => parseSymbolList('', 3))).toEqual(rule);
    expect(thrown(() => parseSymbolList('A,B,C,D', 3))).toEqual(rule);
    expect(thrown(() => parseSymbolList('A,,B', 3))).toEqual({
      message: 'symbols must be 1-32 printable ASCII characters without whitespace',
      parameter: 'symbols',
    });
  });
  test('page links', () => {
    expect(pageLink('/v1/latest', 'A/B', 10)).toBe('/v1/latest?after=A%2FB&limit=10');
  });
});

describe('openApiDocument', () => {
  test('describes every read route, the extra columns in the bar schema', () => {
    const doc = openApiDocument(['exchange']) as {
      openapi: string;
      paths: Record<string, unknown>;
      components: { schemas: { Bar: { properties: Record<string, unknown> } } };
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/v1/bars/{symbol}',
      '/v1/bars/{symbol}/latest',
      '/v1/latest',
      '/v1/minute/{time}',
      '/v1/openapi.json',
      '/v1/symbols',
    ]);
    expect(Object.keys(doc.components.schemas.Bar.properties)).toContain('exchange');
    expect(Object.keys(doc.components.schemas.Bar.properties)).toContain('trade_count');
  });
});
