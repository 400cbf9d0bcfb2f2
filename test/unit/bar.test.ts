import {
  MAX_FUTURE_MS,
  MAX_SYMBOL_LENGTH,
  MAX_VALUE_BYTES,
  MIN_TIMESTAMP_MS,
  REJECT_REASONS,
  BarDecoder,
  decodeBar,
  parseTimestamp,
  validateFields,
  type Bar,
  type DecodeResult,
  type RejectReason,
} from '../../src/contract/bar';
import { parseExtraColumns } from '../../src/contract/extras';
import { findDuplicateTopLevelKey } from '../../src/contract/jsonScan';

/** The consumer clock used throughout: 2026-11-24T14:31:00.000Z. */
const NOW = Date.UTC(2026, 10, 24, 14, 31, 0, 0);
const TS = '2026-11-24T14:31:00Z';
const TS_MS = 1_795_530_660_000;

const BASE = {
  symbol: 'AAPL',
  timestamp: TS,
  open: 1,
  high: 2,
  low: 0.5,
  close: 1.5,
  volume: 10,
};

function bytes(obj: unknown): Buffer {
  return Buffer.from(JSON.stringify(obj), 'utf8');
}

function decodeObj(obj: unknown, nowMs = NOW): DecodeResult {
  return decodeBar(bytes(obj), nowMs);
}

function decodeText(text: string, nowMs = NOW): DecodeResult {
  return decodeBar(Buffer.from(text, 'utf8'), nowMs);
}

function expectBar(r: DecodeResult): Bar {
  if (!r.ok) throw new Error(`expected a bar, got ${r.rejection.reason}: ${r.rejection.detail}`);
  return r.bar;
}

function expectReject(r: DecodeResult, reason: RejectReason, detail?: string | RegExp): string {
  if (r.ok) throw new Error(`expected rejection ${reason}, got a bar ${JSON.stringify(r.bar)}`);
  expect(r.rejection.reason).toBe(reason);
  if (detail !== undefined) {
    if (typeof detail === 'string') expect(r.rejection.detail).toBe(detail);
    else expect(r.rejection.detail).toMatch(detail);
  }
  return r.rejection.detail;
}

function withTimestamp(timestamp: unknown): DecodeResult {
  return decodeObj({ ...BASE, timestamp });
}

function without(field: string): Record<string, unknown> {
  const o: Record<string, unknown> = { ...BASE };
  delete o[field];
  return o;
}

describe('constants', () => {
  test('limits have the documented values', () => {
    expect(MAX_VALUE_BYTES).toBe(65_536);
    expect(MAX_SYMBOL_LENGTH).toBe(32);
    expect(MAX_FUTURE_MS).toBe(86_400_000);
    expect(MIN_TIMESTAMP_MS).toBe(-2_208_988_800_000);
    expect(new Date(MIN_TIMESTAMP_MS).toISOString()).toBe('1900-01-01T00:00:00.000Z');
    expect(TS_MS).toBe(NOW);
  });
});

describe('decodeBar: a valid bar', () => {
  test('decodes every field exactly', () => {
    const bar = expectBar(decodeObj({ ...BASE, vwap: 1.25 }));
    expect(bar).toEqual({
      symbol: 'AAPL',
      timestampMs: TS_MS,
      open: 1,
      high: 2,
      low: 0.5,
      close: 1.5,
      volume: 10,
      vwap: 1.25,
      revision: 0,
      tradeCount: null,
      deleted: false,
      extras: null,
    });
  });

  test('accepts a plain Uint8Array as well as a Buffer', () => {
    const u8 = new Uint8Array(bytes(BASE));
    expect(expectBar(decodeBar(u8, NOW)).timestampMs).toBe(TS_MS);
  });

  test('unknown extra fields (including nested objects and arrays) are ignored', () => {
    const bar = expectBar(
      decodeObj({ exchange: 'XNAS', ...BASE, meta: { a: [1, 2, { b: null }] }, trades: 17, note: 'É' }),
    );
    expect(Object.keys(bar).sort()).toEqual([
      'close',
      'deleted',
      'extras',
      'high',
      'low',
      'open',
      'revision',
      'symbol',
      'timestampMs',
      'tradeCount',
      'volume',
      'vwap',
    ]);
    expect(bar).toEqual({ ...bar, symbol: 'AAPL', vwap: null });
  });

  test('whitespace around tokens is fine', () => {
    const text =
      '\n {\t"symbol" : "MSFT" ,\r\n "timestamp":1795530660000, "open":1,"high":1,"low":1,"close":1,"volume":0 }\n';
    expect(expectBar(decodeText(text))).toEqual({
      symbol: 'MSFT',
      timestampMs: TS_MS,
      open: 1,
      high: 1,
      low: 1,
      close: 1,
      volume: 0,
      vwap: null,
      revision: 0,
      tradeCount: null,
      deleted: false,
      extras: null,
    });
  });

  test('-0 prices are normalised to +0', () => {
    const text =
      '{"symbol":"Z","timestamp":"2026-11-24T14:31:00Z","open":-0,"high":-0,"low":-0,"close":-0,"volume":0}';
    const bar = expectBar(decodeText(text));
    expect(Object.is(bar.open, 0)).toBe(true);
    expect(Object.is(bar.high, 0)).toBe(true);
    expect(Object.is(bar.low, 0)).toBe(true);
    expect(Object.is(bar.close, 0)).toBe(true);
  });

  test('validateFields applies the same rules to an already-parsed object', () => {
    expect(validateFields({ ...BASE }, NOW)).toEqual({
      ok: true,
      bar: {
        symbol: 'AAPL',
        timestampMs: TS_MS,
        open: 1,
        high: 2,
        low: 0.5,
        close: 1.5,
        volume: 10,
        vwap: null,
        revision: 0,
        tradeCount: null,
        deleted: false,
        extras: null,
      },
    });
    expect(validateFields({ ...BASE, volume: -1 }, NOW)).toEqual({
      ok: false,
      rejection: { reason: 'invalid_volume', detail: 'volume must be a non-negative safe integer, got -1' },
    });
  });
});

describe('decodeBar: raw value', () => {
  test('null value (tombstone) → null_value', () => {
    expectReject(
      decodeBar(null, NOW),
      'null_value',
      'value is null (tombstone); a bar message needs a JSON value',
    );
  });

  test('empty value → empty_value', () => {
    expectReject(
      decodeBar(Buffer.alloc(0), NOW),
      'empty_value',
      'value is empty; a bar message needs a JSON value',
    );
    expectReject(decodeBar(new Uint8Array(0), NOW), 'empty_value');
  });

  test('exactly MAX_VALUE_BYTES is accepted, one byte more → too_large', () => {
    const emptyPad = JSON.stringify({ ...BASE, pad: '' }).length;
    const exact = JSON.stringify({ ...BASE, pad: 'x'.repeat(MAX_VALUE_BYTES - emptyPad) });
    expect(Buffer.byteLength(exact)).toBe(MAX_VALUE_BYTES);
    expect(expectBar(decodeText(exact)).symbol).toBe('AAPL');

    const over = JSON.stringify({ ...BASE, pad: 'x'.repeat(MAX_VALUE_BYTES - emptyPad + 1) });
    expect(Buffer.byteLength(over)).toBe(MAX_VALUE_BYTES + 1);
    expectReject(decodeText(over), 'too_large', 'value is 65537 bytes; the limit is 65536');
  });

  test('size is checked in bytes before anything else', () => {
    expectReject(decodeBar(Buffer.alloc(MAX_VALUE_BYTES + 1, 0xff), NOW), 'too_large');
  });

  test.each([
    ['a lone 0xFF byte', [0x7b, 0xff, 0x7d]],
    ['an overlong NUL (C0 80)', [0x22, 0xc0, 0x80, 0x22]],
    ['an encoded surrogate (ED A0 80)', [0x22, 0xed, 0xa0, 0x80, 0x22]],
    ['a truncated 2-byte sequence at the end', [0x22, 0x41, 0x22, 0xc3]],
    ['a stray continuation byte', [0x22, 0x80, 0x22]],
  ])('%s → invalid_utf8', (_name, raw) => {
    expectReject(decodeBar(Buffer.from(raw), NOW), 'invalid_utf8', 'value is not valid UTF-8');
  });

  test('a plain Uint8Array, and a view into a larger buffer (as Kafka fetches give), decode alike', () => {
    const good = bytes(BASE);
    const plain = new Uint8Array(good);
    const framed = Buffer.concat([Buffer.from('xx{'), good, Buffer.from('}yy')]);
    const view = new Uint8Array(framed.buffer, framed.byteOffset + 3, good.length);
    expect(expectBar(decodeBar(plain, NOW))).toEqual(expectBar(decodeBar(good, NOW)));
    expect(expectBar(decodeBar(view, NOW))).toEqual(expectBar(decodeBar(good, NOW)));
    expect(expectBar(decodeBar(framed.subarray(3, 3 + good.length), NOW)).symbol).toBe('AAPL');
  });

  test('invalid UTF-8 inside an otherwise valid bar is rejected', () => {
    const good = bytes({ ...BASE, note: 'AB' });
    const i = good.indexOf('AB');
    good[i] = 0xc3; // start of a 2-byte sequence followed by ASCII 'B'
    expectReject(decodeBar(good, NOW), 'invalid_utf8');
  });

  test.each([
    ['truncated object', '{"symbol":'],
    ['bare word', 'not json'],
    ['trailing comma', '{"symbol":"A",}'],
    ['single quotes', "{'symbol':'A'}"],
    ['two values', '{} {}'],
    ['NaN literal', '{"open":NaN}'],
  ])('%s → invalid_json', (_name, text) => {
    expectReject(decodeText(text), 'invalid_json', /^value is not JSON: /);
  });

  test.each([
    ['an array', '[]', 'value must be a JSON object, got an array'],
    ['an array of bars', `[${JSON.stringify(BASE)}]`, 'value must be a JSON object, got an array'],
    ['a number', '42', 'value must be a JSON object, got number 42'],
    ['a string', '"AAPL"', 'value must be a JSON object, got a string "AAPL"'],
    ['null', 'null', 'value must be a JSON object, got null'],
    ['a boolean', 'true', 'value must be a JSON object, got boolean true'],
  ])('JSON %s → not_object', (_name, text, detail) => {
    expectReject(decodeText(text), 'not_object', detail);
  });
});

describe('decodeBar: duplicate keys', () => {
  test('a duplicated top-level key → duplicate_key naming the key', () => {
    const text =
      '{"symbol":"AAPL","timestamp":"2026-11-24T14:31:00Z","open":1,"high":2,"low":0.5,"close":1,"close":2,"volume":1}';
    expectReject(
      decodeText(text),
      'duplicate_key',
      'field "close" appears more than once; which one is meant is ambiguous',
    );
  });

  test('a duplicated unknown extra key is also rejected', () => {
    const text = JSON.stringify(BASE).replace(/}$/, ',"x":1,"x":1}');
    expectReject(decodeText(text), 'duplicate_key', /^field "x" appears more than once/);
  });

  test('a key spelled with a unicode escape duplicates its plain spelling', () => {
    const text = JSON.stringify(BASE).replace(/}$/, ',"\\u0073ymbol":"MSFT"}');
    expectReject(decodeText(text), 'duplicate_key', /^field "symbol" appears/);
  });

  test('duplicate keys inside nested objects and arrays are fine', () => {
    const text = JSON.stringify(BASE).replace(
      /}$/,
      ',"meta":{"a":1,"a":2},"list":[{"b":1,"b":2},{"open":3}]}',
    );
    expect(expectBar(decodeText(text)).open).toBe(1);
  });

  test('a nested key equal to a top-level key is fine', () => {
    const text = JSON.stringify(BASE).replace(/}$/, ',"meta":{"symbol":"X","open":9}}');
    expect(expectBar(decodeText(text)).symbol).toBe('AAPL');
  });

  test('string values that look like keys or contain escaped quotes do not confuse it', () => {
    const text = JSON.stringify({
      note: 'he said "symbol": "x", "open": 1',
      ...BASE,
      tag: 'open',
      path: 'C:\\',
    });
    expect(text).toContain('\\"symbol\\"');
    expect(text).toContain('"C:\\\\"');
    expect(expectBar(decodeText(text)).symbol).toBe('AAPL');
  });

  describe('findDuplicateTopLevelKey', () => {
    test.each([
      ['{}', null],
      ['{"a":1}', null],
      ['{"a":1,"b":2}', null],
      ['{"a":1,"a":2}', 'a'],
      ['{ "a" : 1 , "a" : 2 }', 'a'],
      ['{"a":1,"b":2,"b":3,"a":4}', 'b'],
      ['{"a":{"x":1,"x":2},"b":[{"y":1},{"y":2}]}', null],
      ['{"a":[1,{"a":2}],"b":{"a":3}}', null],
      ['{"a":"b","b":1}', null],
      ['{"a":"\\"b\\":1,\\"a\\":2"}', null],
      ['{"a":"x\\\\","a":1}', 'a'],
      ['{"a\\"b":1,"a\\"b":2}', 'a"b'],
      ['{"a":[],"c":{},"c":0}', 'c'],
      ['{"":1,"":2}', ''],
    ])('%s → %p', (text, expected) => {
      expect(findDuplicateTopLevelKey(text)).toBe(expected);
    });
  });
});

describe('decodeBar: required fields', () => {
  test.each(['symbol', 'timestamp', 'open', 'high', 'low', 'close', 'volume'])(
    'missing %s → missing_field',
    (field) => {
      expectReject(decodeObj(without(field)), 'missing_field', `field "${field}" is required`);
    },
  );

  test.each(['symbol', 'timestamp', 'open', 'high', 'low', 'close', 'volume'])(
    '%s: null → missing_field',
    (field) => {
      expectReject(decodeObj({ ...BASE, [field]: null }), 'missing_field', `field "${field}" is required`);
    },
  );

  test('an empty object reports the first required field (symbol)', () => {
    expectReject(decodeText('{}'), 'missing_field', 'field "symbol" is required');
  });

  test('several missing fields: reported in contract order', () => {
    expectReject(decodeObj({ symbol: 'A', volume: 1 }), 'missing_field', 'field "timestamp" is required');
  });

  test('vwap is optional (absent or null)', () => {
    expect(expectBar(decodeObj(BASE)).vwap).toBeNull();
    expect(expectBar(decodeObj({ ...BASE, vwap: null })).vwap).toBeNull();
  });
});

describe('decodeBar: wrong types', () => {
  test.each([
    ['symbol', 5, 'symbol must be a string, got number 5'],
    ['symbol', ['AAPL'], 'symbol must be a string, got an array'],
    ['symbol', { s: 'A' }, 'symbol must be a string, got an object'],
    ['open', '1.0', 'open must be a number, got a string "1.0"'],
    ['high', '2', 'high must be a number, got a string "2"'],
    ['low', 'NaN', 'low must be a number, got a string "NaN"'],
    ['close', 'Infinity', 'close must be a number, got a string "Infinity"'],
    ['open', true, 'open must be a number, got boolean true'],
    ['close', [1], 'close must be a number, got an array'],
    ['volume', true, 'volume must be a number, got boolean true'],
    ['volume', '10', 'volume must be a number, got a string "10"'],
    ['vwap', '1', 'vwap must be a number or null, got a string "1"'],
    ['vwap', false, 'vwap must be a number or null, got boolean false'],
    ['vwap', {}, 'vwap must be a number or null, got an object'],
    ['timestamp', true, 'timestamp must be a string or number, got boolean true'],
    ['timestamp', [TS], 'timestamp must be a string or number, got an array'],
    ['timestamp', { iso: TS }, 'timestamp must be a string or number, got an object'],
  ])('%s = %p → wrong_type', (field, value, detail) => {
    expectReject(decodeObj({ ...BASE, [field]: value }), 'wrong_type', detail);
  });

  test('long string values are truncated in the detail', () => {
    expectReject(
      decodeObj({ ...BASE, open: '123456789012345678901234567890' }),
      'wrong_type',
      'open must be a number, got a string "12345678901234567890…"',
    );
  });
});

describe('decodeBar: symbol', () => {
  test.each([['BRK.B'], ['BF-B'], ['A\\B'], ['X'], ['!#$%&\'()*+,-./:;<=>?@[]^_`{|}~"'], ['S'.repeat(32)]])(
    '%p is accepted unchanged',
    (symbol) => {
      expect(expectBar(decodeObj({ ...BASE, symbol })).symbol).toBe(symbol);
    },
  );

  test('empty → invalid_symbol', () => {
    expectReject(
      decodeObj({ ...BASE, symbol: '' }),
      'invalid_symbol',
      'symbol must be 1-32 characters, got 0',
    );
  });

  test('33 characters → invalid_symbol', () => {
    expectReject(
      decodeObj({ ...BASE, symbol: 'S'.repeat(33) }),
      'invalid_symbol',
      'symbol must be 1-32 characters, got 33',
    );
  });

  test.each([
    ['space', 'A B', 'character 1 is U+0020'],
    ['leading space', ' AB', 'character 0 is U+0020'],
    ['trailing space', 'AB ', 'character 2 is U+0020'],
    ['tab', 'A\tB', 'character 1 is U+0009'],
    ['newline', 'AB\n', 'character 2 is U+000A'],
    ['non-ASCII É', 'É', 'character 0 is U+00C9'],
    ['control \\u0001', 'A\u0001', 'character 1 is U+0001'],
    ['DEL', 'A\u007f', 'character 1 is U+007F'],
    ['NUL', '\u0000', 'character 0 is U+0000'],
    ['emoji', 'A😀', 'character 1 is U+D83D'],
  ])('%s → invalid_symbol', (_name, symbol, where) => {
    expectReject(
      decodeObj({ ...BASE, symbol }),
      'invalid_symbol',
      `symbol must be printable ASCII without whitespace; ${where}`,
    );
  });
});

describe('decodeBar: timestamp (ISO-8601)', () => {
  test.each([
    ['Z', '2026-11-24T14:31:00Z'],
    ['lower-case z', '2026-11-24T14:31:00z'],
    ['no seconds', '2026-11-24T14:31Z'],
    ['.000 fraction', '2026-11-24T14:31:00.000Z'],
    ['.0 fraction', '2026-11-24T14:31:00.0Z'],
    ['9 zero fraction digits', '2026-11-24T14:31:00.000000000Z'],
    ['-05:00', '2026-11-24T09:31:00-05:00'],
    ['+05:30', '2026-11-24T20:01:00+05:30'],
    ['+0530', '2026-11-24T20:01:00+0530'],
    ['-0500', '2026-11-24T09:31:00.000-0500'],
    ['+00:00', '2026-11-24T14:31:00+00:00'],
    ['-00:00', '2026-11-24T14:31:00-00:00'],
    ['+23:59 across a day boundary', '2026-11-25T14:30:00+23:59'],
    ['-09:30 across a day boundary', '2026-11-24T05:01:00-09:30'],
  ])('%s → 2026-11-24T14:31:00Z', (_name, ts) => {
    expect(expectBar(withTimestamp(ts)).timestampMs).toBe(TS_MS);
    expect(parseTimestamp(ts)).toEqual({ ok: true, ms: TS_MS });
  });

  test('offsets across a year boundary', () => {
    expect(parseTimestamp('2025-12-31T23:00:00-05:00')).toEqual({ ok: true, ms: Date.UTC(2026, 0, 1, 4, 0) });
    expect(parseTimestamp('2026-01-01T02:00:00+05:00')).toEqual({
      ok: true,
      ms: Date.UTC(2025, 11, 31, 21, 0),
    });
  });

  test('leap days: 2024-02-29 and 2000-02-29 valid; 2026-02-29 and 1900-02-29 invalid', () => {
    expect(parseTimestamp('2024-02-29T00:00:00Z')).toEqual({ ok: true, ms: Date.UTC(2024, 1, 29) });
    expect(parseTimestamp('2000-02-29T00:00:00Z')).toEqual({ ok: true, ms: Date.UTC(2000, 1, 29) });
    expectReject(withTimestamp('2026-02-29T00:00:00Z'), 'invalid_timestamp', /is not a valid date-time/);
    expectReject(withTimestamp('1900-02-29T00:00:00Z'), 'invalid_timestamp', /is not a valid date-time/);
  });

  test.each([
    '2026-02-30T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-11-00T00:00:00Z',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-11-24T24:00:00Z',
    '2026-11-24T23:60:00Z',
    '2026-11-24T23:59:60Z',
  ])('invalid date-time %s → invalid_timestamp', (ts) => {
    expectReject(
      withTimestamp(ts),
      'invalid_timestamp',
      `timestamp ${JSON.stringify(ts)} is not a valid date-time`,
    );
  });

  test.each(['2026-11-24T14:31:00+24:00', '2026-11-24T14:31:00+05:60', '2026-11-24T14:31:00-9999'])(
    'invalid zone offset %s → invalid_timestamp',
    (ts) => {
      expectReject(
        withTimestamp(ts),
        'invalid_timestamp',
        `timestamp ${JSON.stringify(ts)} has an invalid zone offset`,
      );
    },
  );

  test.each([
    ['no zone', '2026-11-24T14:31:00'],
    ['no zone with fraction', '2026-11-24T14:31:00.000'],
    ['space separator', '2026-11-24 14:31:00Z'],
    ['lower-case t', '2026-11-24t14:31:00Z'],
    ['date only', '2026-11-24'],
    ['hour-only offset', '2026-11-24T14:31:00+05'],
    ['single-digit month', '2026-1-24T14:31:00Z'],
    ['10 fraction digits', '2026-11-24T14:31:00.0000000000Z'],
    ['empty fraction', '2026-11-24T14:31:00.Z'],
    ['named zone', '2026-11-24T14:31:00 UTC'],
    ['numeric string', '1795530660000'],
    ['empty string', ''],
    ['RFC 2822', 'Tue, 24 Nov 2026 14:31:00 GMT'],
  ])('%s → invalid_timestamp', (_name, ts) => {
    expectReject(
      withTimestamp(ts),
      'invalid_timestamp',
      `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(ts)}`,
    );
  });

  test('the echoed value in the detail is cut at 40 characters', () => {
    const ts = 'x'.repeat(100);
    const detail = expectReject(withTimestamp(ts), 'invalid_timestamp');
    expect(detail.endsWith(`got "${'x'.repeat(40)}"`)).toBe(true);
  });

  test.each([
    '2026-11-24T14:31:00.0000001Z',
    '2026-11-24T14:31:00.000001Z',
    '2026-11-24T14:31:00.000000001Z',
  ])('non-zero sub-millisecond digits %s → invalid_timestamp', (ts) => {
    expectReject(
      withTimestamp(ts),
      'invalid_timestamp',
      `timestamp ${JSON.stringify(ts)} has sub-millisecond digits`,
    );
  });

  test('a non-zero millisecond part is parsed (and then unaligned)', () => {
    expect(parseTimestamp('2026-11-24T14:31:00.5Z')).toEqual({ ok: true, ms: TS_MS + 500 });
    expect(parseTimestamp('2026-11-24T14:31:00.001000Z')).toEqual({ ok: true, ms: TS_MS + 1 });
    expectReject(
      withTimestamp('2026-11-24T14:31:00.500Z'),
      'unaligned_timestamp',
      'timestamp must fall on a minute boundary, got 2026-11-24T14:31:00.500Z',
    );
  });

  test('non-zero seconds → unaligned_timestamp', () => {
    expectReject(
      withTimestamp('2026-11-24T14:31:30Z'),
      'unaligned_timestamp',
      'timestamp must fall on a minute boundary, got 2026-11-24T14:31:30.000Z',
    );
  });

  test('an offset with minutes keeps minute alignment', () => {
    expect(expectBar(withTimestamp('2026-11-24T20:16:00+05:45')).timestampMs).toBe(TS_MS);
  });
});

describe('decodeBar: timestamp (epoch milliseconds)', () => {
  test('an integer is taken as epoch ms', () => {
    expect(expectBar(withTimestamp(TS_MS)).timestampMs).toBe(TS_MS);
    expect(parseTimestamp(TS_MS)).toEqual({ ok: true, ms: TS_MS });
  });

  test('exponent notation that is an integer is fine', () => {
    expect(expectBar(decodeText(JSON.stringify(BASE).replace(`"${TS}"`, '1.79553066e12'))).timestampMs).toBe(
      TS_MS,
    );
  });

  test('negative epoch (before 1970, after 1900) is fine', () => {
    const ms = Date.UTC(1950, 5, 1, 9, 30);
    expect(expectBar(withTimestamp(ms)).timestampMs).toBe(ms);
  });

  test('a non-integer → invalid_timestamp', () => {
    expectReject(
      withTimestamp(TS_MS + 0.5),
      'invalid_timestamp',
      'timestamp in epoch milliseconds must be an integer, got 1795530660000.5',
    );
  });

  test('an integer beyond the safe range → invalid_timestamp', () => {
    expectReject(
      withTimestamp(2 ** 53),
      'invalid_timestamp',
      /^timestamp in epoch milliseconds must be an integer/,
    );
  });

  test('unaligned epoch → unaligned_timestamp', () => {
    expectReject(
      withTimestamp(TS_MS + 1),
      'unaligned_timestamp',
      'timestamp must fall on a minute boundary, got 2026-11-24T14:31:00.001Z',
    );
    expectReject(
      withTimestamp(TS_MS - 30_000),
      'unaligned_timestamp',
      'timestamp must fall on a minute boundary, got 2026-11-24T14:30:30.000Z',
    );
  });
});

describe('decodeBar: timestamp range', () => {
  test('exactly 24 h ahead of nowMs is accepted', () => {
    expect(expectBar(withTimestamp(NOW + MAX_FUTURE_MS)).timestampMs).toBe(NOW + MAX_FUTURE_MS);
  });

  test('one minute more than 24 h ahead → future_timestamp', () => {
    expectReject(
      withTimestamp(NOW + MAX_FUTURE_MS + 60_000),
      'future_timestamp',
      'timestamp 2026-11-25T14:32:00.000Z is more than 24 h in the future',
    );
  });

  test('the boundary is measured from nowMs exactly (to the millisecond)', () => {
    const t = NOW + MAX_FUTURE_MS;
    expect(decodeObj({ ...BASE, timestamp: t }, NOW).ok).toBe(true);
    expectReject(decodeObj({ ...BASE, timestamp: t }, NOW - 1), 'future_timestamp');
  });

  test('bars in the past (any distance after 1900) are fine', () => {
    expect(expectBar(withTimestamp('1999-12-31T23:59:00Z')).timestampMs).toBe(Date.UTC(1999, 11, 31, 23, 59));
  });

  test('1900-01-01T00:00:00Z exactly is accepted', () => {
    expect(expectBar(withTimestamp('1900-01-01T00:00:00Z')).timestampMs).toBe(MIN_TIMESTAMP_MS);
    expect(expectBar(withTimestamp(MIN_TIMESTAMP_MS)).timestampMs).toBe(MIN_TIMESTAMP_MS);
  });

  test('before 1900 → invalid_timestamp (ISO and epoch)', () => {
    expectReject(
      withTimestamp('1899-12-31T23:59:00Z'),
      'invalid_timestamp',
      'timestamp 1899-12-31T23:59:00.000Z is before 1900-01-01',
    );
    expectReject(
      withTimestamp(MIN_TIMESTAMP_MS - 60_000),
      'invalid_timestamp',
      'timestamp 1899-12-31T23:59:00.000Z is before 1900-01-01',
    );
    expectReject(
      withTimestamp(0 - 8_640_000_000_000_000 - 60_000),
      'invalid_timestamp',
      /is before 1900-01-01$/,
    );
  });

  test('an offset that moves 1900-01-01T00:00 earlier → invalid_timestamp', () => {
    expectReject(
      withTimestamp('1900-01-01T00:00:00+00:01'),
      'invalid_timestamp',
      'timestamp 1899-12-31T23:59:00.000Z is before 1900-01-01',
    );
    expect(expectBar(withTimestamp('1900-01-01T00:00:00-00:01')).timestampMs).toBe(MIN_TIMESTAMP_MS + 60_000);
  });

  test('years 0000-0099 are rejected, not read as 1900-1999 (Date.UTC maps two-digit years)', () => {
    expectReject(withTimestamp('0099-06-01T00:00:00Z'), 'invalid_timestamp', /before 1900-01-01/);
  });

  test('epoch ms beyond the Date range is rejected, not thrown', () => {
    // 8_640_000_000_060_000 is a safe, minute-aligned integer past the last valid Date (8.64e15 ms).
    let result: DecodeResult | undefined;
    expect(() => {
      result = withTimestamp(8_640_000_000_060_000);
    }).not.toThrow();
    expect(result?.ok).toBe(false);
  });
});

describe('decodeBar: prices', () => {
  test.each(['open', 'high', 'low', 'close'])('%s: 1e400 parses to Infinity → non_finite', (field) => {
    const text = JSON.stringify(BASE).replace(new RegExp(`"${field}":[0-9.]+`), `"${field}":1e400`);
    expectReject(decodeText(text), 'non_finite', `${field} must be finite, got Infinity`);
  });

  test('-1e400 → non_finite (-Infinity)', () => {
    const text = JSON.stringify(BASE).replace('"low":0.5', '"low":-1e400');
    expectReject(decodeText(text), 'non_finite', 'low must be finite, got -Infinity');
  });

  test('low above min(open, close) → ohlc_inconsistent', () => {
    expectReject(
      decodeObj({ ...BASE, open: 1, close: 1.5, low: 1.2, high: 2 }),
      'ohlc_inconsistent',
      'low (1.2) must be <= min(open, close) (1)',
    );
    expectReject(
      decodeObj({ ...BASE, open: 1.5, close: 1, low: 1.2, high: 2 }),
      'ohlc_inconsistent',
      'low (1.2) must be <= min(open, close) (1)',
    );
  });

  test('high below max(open, close) → ohlc_inconsistent', () => {
    expectReject(
      decodeObj({ ...BASE, open: 1, close: 1.5, low: 0.5, high: 1.4 }),
      'ohlc_inconsistent',
      'high (1.4) must be >= max(open, close) (1.5)',
    );
    expectReject(
      decodeObj({ ...BASE, open: 1.5, close: 1, low: 0.5, high: 1.4 }),
      'ohlc_inconsistent',
      'high (1.4) must be >= max(open, close) (1.5)',
    );
  });

  test('low above high is inconsistent', () => {
    expectReject(
      decodeObj({ ...BASE, open: 1, close: 1, low: 3, high: 2 }),
      'ohlc_inconsistent',
      /^low \(3\)/,
    );
  });

  test('equal values are consistent', () => {
    const flat = expectBar(decodeObj({ ...BASE, open: 5, high: 5, low: 5, close: 5 }));
    expect([flat.open, flat.high, flat.low, flat.close]).toEqual([5, 5, 5, 5]);
    const edges = expectBar(decodeObj({ ...BASE, open: 1, close: 2, low: 1, high: 2 }));
    expect([edges.open, edges.high, edges.low, edges.close]).toEqual([1, 2, 1, 2]);
  });

  test('price fields are checked in the order open, high, low, close', () => {
    const text = JSON.stringify({ ...BASE, high: 'x' }).replace('"open":1', '"open":1e400');
    expectReject(decodeText(text), 'non_finite', 'open must be finite, got Infinity');
  });
});

describe('decodeBar: volume', () => {
  test.each([0, 1, 123_456, Number.MAX_SAFE_INTEGER])('%p is accepted', (volume) => {
    expect(expectBar(decodeObj({ ...BASE, volume })).volume).toBe(volume);
  });

  test.each([
    [-1, 'volume must be a non-negative safe integer, got -1'],
    [1.5, 'volume must be a non-negative safe integer, got 1.5'],
    [Number.MAX_SAFE_INTEGER + 1, 'volume must be a non-negative safe integer, got 9007199254740992'],
  ])('%p → invalid_volume', (volume, detail) => {
    expectReject(decodeObj({ ...BASE, volume }), 'invalid_volume', detail);
  });

  test('1e400 (Infinity) → invalid_volume', () => {
    const text = JSON.stringify(BASE).replace('"volume":10', '"volume":1e400');
    expectReject(
      decodeText(text),
      'invalid_volume',
      'volume must be a non-negative safe integer, got Infinity',
    );
  });
});

describe('decodeBar: vwap', () => {
  test('within [low, high] including both ends is accepted', () => {
    expect(expectBar(decodeObj({ ...BASE, vwap: 0.5 })).vwap).toBe(0.5);
    expect(expectBar(decodeObj({ ...BASE, vwap: 2 })).vwap).toBe(2);
    expect(expectBar(decodeObj({ ...BASE, vwap: 1.337 })).vwap).toBe(1.337);
  });

  test('below low → vwap_out_of_range', () => {
    expectReject(
      decodeObj({ ...BASE, vwap: 0.4 }),
      'vwap_out_of_range',
      'vwap (0.4) must be within [low, high] = [0.5, 2]',
    );
  });

  test('above high → vwap_out_of_range', () => {
    expectReject(
      decodeObj({ ...BASE, vwap: 2.01 }),
      'vwap_out_of_range',
      'vwap (2.01) must be within [low, high] = [0.5, 2]',
    );
  });

  test('1e400 → non_finite', () => {
    const text = JSON.stringify({ ...BASE, vwap: 1 }).replace('"vwap":1', '"vwap":1e400');
    expectReject(decodeText(text), 'non_finite', 'vwap must be finite, got Infinity');
  });
});

describe('parseTimestamp', () => {
  test.each([
    [undefined, 'timestamp must be a string or number, got undefined undefined'],
    [null, 'timestamp must be a string or number, got null'],
    [true, 'timestamp must be a string or number, got boolean true'],
  ])('%p → wrong_type', (v, detail) => {
    expect(parseTimestamp(v)).toEqual({ ok: false, rejection: { reason: 'wrong_type', detail } });
  });

  test('does not check alignment (that is the caller’s rule)', () => {
    expect(parseTimestamp('2026-11-24T14:31:30Z')).toEqual({ ok: true, ms: TS_MS + 30_000 });
    expect(parseTimestamp(TS_MS + 7)).toEqual({ ok: true, ms: TS_MS + 7 });
  });

  test('NaN and Infinity numbers → invalid_timestamp', () => {
    expect(parseTimestamp(Number.NaN)).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp in epoch milliseconds must be an integer, got NaN',
      },
    });
    expect(parseTimestamp(Infinity)).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp in epoch milliseconds must be an integer, got Infinity',
      },
    });
  });
});

describe('every contract reject reason is reachable', () => {
  test('one sample per reason', () => {
    const samples: [RejectReason, DecodeResult][] = [
      ['null_value', decodeBar(null, NOW)],
      ['empty_value', decodeBar(Buffer.alloc(0), NOW)],
      ['too_large', decodeBar(Buffer.alloc(MAX_VALUE_BYTES + 1, 0x20), NOW)],
      ['invalid_utf8', decodeBar(Buffer.from([0xff]), NOW)],
      ['invalid_json', decodeText('{')],
      ['duplicate_key', decodeText('{"a":1,"a":1}')],
      ['not_object', decodeText('[]')],
      ['missing_field', decodeObj(without('close'))],
      ['wrong_type', decodeObj({ ...BASE, open: '1' })],
      ['invalid_symbol', decodeObj({ ...BASE, symbol: 'A B' })],
      ['invalid_timestamp', withTimestamp('2026-11-24T14:31:00')],
      ['unaligned_timestamp', withTimestamp(TS_MS + 1000)],
      ['future_timestamp', withTimestamp(NOW + 2 * MAX_FUTURE_MS)],
      ['non_finite', decodeText(JSON.stringify(BASE).replace('"open":1', '"open":1e999'))],
      ['invalid_volume', decodeObj({ ...BASE, volume: -5 })],
      ['ohlc_inconsistent', decodeObj({ ...BASE, high: 1 })],
      ['vwap_out_of_range', decodeObj({ ...BASE, vwap: 3 })],
      ['timestamp_in_seconds', withTimestamp(1_764_600_000)],
      [
        'timestamp_too_early',
        decodeBar(bytes({ ...BASE, timestamp: '1985-01-02T00:00:00Z' }), NOW, Date.UTC(1990, 0, 1)),
      ],
      ['invalid_revision', decodeObj({ ...BASE, revision: -1 })],
      ['invalid_trade_count', decodeObj({ ...BASE, trade_count: -1 })],
      [
        'invalid_extra',
        new BarDecoder(parseExtraColumns('exchange:text(4)')).decode(
          bytes({ ...BASE, exchange: 'XNASDAQ' }),
          NOW,
        ),
      ],
    ];
    for (const [reason, r] of samples) expectReject(r, reason);
    const covered = new Set(samples.map(([reason]) => reason));
    expect(REJECT_REASONS.filter((r) => !covered.has(r))).toEqual([]);
  });

  test('every detail names the field it is about', () => {
    const cases: [DecodeResult, string][] = [
      [decodeObj({ ...BASE, symbol: '' }), 'symbol'],
      [withTimestamp('nope'), 'timestamp'],
      [withTimestamp(TS_MS + 1), 'timestamp'],
      [withTimestamp(NOW + 2 * MAX_FUTURE_MS), 'timestamp'],
      [decodeObj({ ...BASE, high: 1 }), 'high'],
      [decodeObj({ ...BASE, low: 1.2 }), 'low'],
      [decodeObj({ ...BASE, volume: 0.5 }), 'volume'],
      [decodeObj({ ...BASE, vwap: 9 }), 'vwap'],
      [decodeObj({ ...BASE, close: 'x' }), 'close'],
      [decodeObj(without('open')), 'open'],
    ];
    for (const [r, field] of cases) {
      if (r.ok) throw new Error(`expected a rejection about ${field}`);
      expect(r.rejection.detail).toContain(field);
    }
  });
});

/** A seeded pseudo-random integer in [0, k) (mulberry32): generated cases are the same on every run. */
function prng(seed: number): (k: number) => number {
  let a = seed;
  return (k) => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * k);
  };
}

describe('decodeBar: byte-order mark and non-ASCII text', () => {
  const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

  test('one leading UTF-8 BOM is skipped (TextDecoder semantics)', () => {
    const r = decodeBar(Buffer.concat([BOM, bytes(BASE)]), NOW);
    expect(expectBar(r)).toEqual({
      symbol: 'AAPL',
      timestampMs: TS_MS,
      open: 1,
      high: 2,
      low: 0.5,
      close: 1.5,
      volume: 10,
      vwap: null,
      revision: 0,
      tradeCount: null,
      deleted: false,
      extras: null,
    });
  });

  test('a second BOM, a BOM after whitespace, or a BOM alone → invalid_json', () => {
    expectReject(
      decodeBar(Buffer.concat([BOM, BOM, bytes(BASE)]), NOW),
      'invalid_json',
      /^value is not JSON: /,
    );
    expectReject(decodeBar(Buffer.concat([Buffer.from(' '), BOM, bytes(BASE)]), NOW), 'invalid_json');
    expectReject(decodeBar(BOM, NOW), 'invalid_json', 'value is not JSON: Unexpected end of JSON input');
  });

  test('a BOM does not hide a duplicate key', () => {
    const text = JSON.stringify(BASE).replace(/}$/, ',"open":1}');
    expectReject(
      decodeBar(Buffer.concat([BOM, Buffer.from(text)]), NOW),
      'duplicate_key',
      /^field "open" appears/,
    );
  });

  test('multi-byte characters (2, 3 and 4 bytes) in extra fields are fine', () => {
    const bar = expectBar(decodeObj({ ...BASE, note: 'É€😀', clé: 'ü' }));
    expect(bar.symbol).toBe('AAPL');
  });

  test('a non-ASCII symbol → invalid_symbol naming the character', () => {
    expectReject(
      decodeObj({ ...BASE, symbol: 'É' }),
      'invalid_symbol',
      'symbol must be printable ASCII without whitespace; character 0 is U+00C9',
    );
    expectReject(decodeObj({ ...BASE, symbol: 'AB€' }), 'invalid_symbol', /character 2 is U\+20AC$/);
  });

  test.each([
    ['an overlong 3-byte sequence (E0 80 80)', [0x22, 0xe0, 0x80, 0x80, 0x22]],
    ['a code point above U+10FFFF (F4 90 80 80)', [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]],
    ['a truncated 4-byte sequence', [0x22, 0xf0, 0x9f, 0x98, 0x22]],
    ['a lone 0xFE byte after a BOM', [0xef, 0xbb, 0xbf, 0xfe]],
  ])('%s → invalid_utf8', (_name, raw) => {
    expectReject(decodeBar(Buffer.from(raw), NOW), 'invalid_utf8', 'value is not valid UTF-8');
  });

  test('a Uint8Array view into a larger buffer decodes only its own bytes', () => {
    const inner = bytes(BASE);
    const outer = Buffer.concat([Buffer.from('xx'), inner, Buffer.from([0xff])]);
    const view = new Uint8Array(outer.buffer, outer.byteOffset + 2, inner.length);
    expect(expectBar(decodeBar(view, NOW)).symbol).toBe('AAPL');
  });
});

describe('decodeBar: duplicate keys (the count check in front of findDuplicateTopLevelKey)', () => {
  const withExtra = (extra: string): string => JSON.stringify(BASE).replace(/}$/, `,${extra}}`);

  test.each([
    ['a key with an escaped quote, spelled two ways', withExtra('"a\\"b":1,"a\\u0022b":2'), 'a"b'],
    ['a key ending in an escaped backslash', withExtra('"x\\\\":1,"x\\\\":2'), 'x\\'],
    ['a key holding structural characters', withExtra('"a,{b}:[c]":1,"a,{b}:[c]":2'), 'a,{b}:[c]'],
    ['__proto__', withExtra('"__proto__":1,"__proto__":{}'), '__proto__'],
    ['a non-ASCII key spelled two ways', withExtra('"clé":1,"cl\\u00e9":2'), 'clé'],
    ['a numeric key', withExtra('"1":1,"1":2'), '1'],
    [
      'a required field after a nested object',
      withExtra('"meta":{"v":"}\\"{","w":[1,{"x":"]"}]},"volume":10'),
      'volume',
    ],
    ['the empty key', withExtra('"":1,"":2'), ''],
  ])('%s → duplicate_key', (_name, text, key) => {
    expectReject(
      decodeText(text),
      'duplicate_key',
      `field "${key}" appears more than once; which one is meant is ambiguous`,
    );
  });

  test.each([
    ['__proto__ once', withExtra('"__proto__":{"symbol":"X"}')],
    ['"1" and "01"', withExtra('"1":1,"01":2')],
    ['keys differing only in case', withExtra('"Open":1,"OPEN":2')],
    ['a value string ending in escaped backslashes', withExtra('"p":"\\\\\\\\","q":"\\\\\\"x"')],
    ['many distinct extra keys', withExtra(Array.from({ length: 50 }, (_, i) => `"k${i}":${i}`).join(','))],
    ['duplicates only inside nested values', withExtra('"m":{"open":1,"open":2},"l":[{"a":1,"a":1}]')],
  ])('%s is not a duplicate', (_name, text) => {
    expect(expectBar(decodeText(text)).symbol).toBe('AAPL');
  });

  test('agrees with findDuplicateTopLevelKey on generated objects', () => {
    const keys = ['a', 'b', 'a\\"', '\\u0061', 'open', '__proto__', 'x\\\\', 'é', '\\u00e9'];
    const values = ['1', '"s"', '"a\\\\"', '{"a":1,"a":2}', '[{"b":"\\""}]', 'null', '"{\\"a\\":1}"'];
    const rand = prng(12345);
    for (let t = 0; t < 2000; t++) {
      const members = Array.from(
        { length: rand(6) },
        () => `"${keys[rand(keys.length)]}"${rand(2) ? ' : ' : ':'}${values[rand(values.length)]}`,
      );
      const text = `{${members.join(rand(2) ? ', ' : ',')}}`;
      const expected = findDuplicateTopLevelKey(text);
      const r = decodeText(text);
      if (expected === null) {
        expect(r.ok ? 'ok' : r.rejection.reason).not.toBe('duplicate_key');
      } else {
        expectReject(
          r,
          'duplicate_key',
          `field "${expected}" appears more than once; which one is meant is ambiguous`,
        );
      }
    }
  });
});

describe('validateFields: field access', () => {
  test('inherited fields count, as with the `in` operator', () => {
    const o = Object.create({ ...BASE }) as Record<string, unknown>;
    expect(expectBar(validateFields(o, NOW)).symbol).toBe('AAPL');
  });

  test('a field that is present but undefined is missing', () => {
    expectReject(
      validateFields({ ...BASE, high: undefined }, NOW),
      'missing_field',
      'field "high" is required',
    );
  });

  test('the Bar has exactly these keys, in this order', () => {
    expect(Object.keys(expectBar(decodeObj({ ...BASE, vwap: 1 })))).toEqual([
      'symbol',
      'timestampMs',
      'open',
      'high',
      'low',
      'close',
      'volume',
      'vwap',
      'revision',
      'tradeCount',
      'deleted',
      'extras',
    ]);
  });

  test('a -0 vwap is normalised to +0', () => {
    const text =
      '{"symbol":"Z","timestamp":"2026-11-24T14:31:00Z","open":0,"high":0,"low":-0,"close":0,"volume":0,"vwap":-0}';
    expect(Object.is(expectBar(decodeText(text)).vwap, 0)).toBe(true);
  });

  test('type and finiteness are checked per price, in order', () => {
    expectReject(
      decodeObj({ ...BASE, open: 1, high: '2', low: 'x' }),
      'wrong_type',
      'high must be a number, got a string "2"',
    );
    expectReject(
      decodeText(JSON.stringify({ ...BASE, low: 'x' }).replace('"high":2', '"high":1e999')),
      'non_finite',
      'high must be finite, got Infinity',
    );
    expectReject(
      decodeObj({ ...BASE, close: true }),
      'wrong_type',
      'close must be a number, got boolean true',
    );
  });
});

describe('parseTimestamp: calendar and edge cases', () => {
  test.each([
    ['2100-02-29T00:00:00Z', false],
    ['2400-02-29T00:00:00Z', true],
    ['1904-02-29T00:00:00Z', true],
    ['9996-02-29T00:00:00Z', true],
    ['9999-02-29T00:00:00Z', false],
  ])('Feb 29 %s valid: %p', (ts, valid) => {
    const [y] = ts.split('-');
    if (valid) expect(parseTimestamp(ts)).toEqual({ ok: true, ms: Date.UTC(Number(y), 1, 29) });
    else
      expect(parseTimestamp(ts)).toEqual({
        ok: false,
        rejection: {
          reason: 'invalid_timestamp',
          detail: `timestamp ${JSON.stringify(ts)} is not a valid date-time`,
        },
      });
  });

  test('every month: its last day is valid, the day after is not (leap and common years)', () => {
    for (const year of [1900, 1999, 2000, 2024, 2026, 2100, 9999]) {
      for (let month = 1; month <= 12; month++) {
        const last = new Date(Date.UTC(year, month, 0)).getUTCDate();
        const mm = String(month).padStart(2, '0');
        expect(parseTimestamp(`${year}-${mm}-${last}T23:59:00Z`)).toEqual({
          ok: true,
          ms: Date.UTC(year, month - 1, last, 23, 59),
        });
        expect(parseTimestamp(`${year}-${mm}-${last + 1}T00:00:00Z`).ok).toBe(false);
      }
    }
  });

  test('years 0000-0099 are real years (no two-digit mapping) and before 1900', () => {
    expect(parseTimestamp('0004-02-29T00:00:00Z')).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp 0004-02-29T00:00:00.000Z is before 1900-01-01',
      },
    });
    expect(parseTimestamp('0000-01-01T00:00:00+01:00')).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp -000001-12-31T23:00:00.000Z is before 1900-01-01',
      },
    });
  });

  test('0000-02-29 is "not a valid date-time" (month lengths of years 0-99 are those of 1900-1999)', () => {
    expect(parseTimestamp('0000-02-29T00:00:00Z')).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp "0000-02-29T00:00:00Z" is not a valid date-time',
      },
    });
  });

  test('the last minute of 9999 is accepted; anything later is not', () => {
    expect(parseTimestamp('9999-12-31T23:59:00Z')).toEqual({ ok: true, ms: Date.UTC(9999, 11, 31, 23, 59) });
    expect(parseTimestamp('9999-12-31T23:59:00.001Z')).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp 9999-12-31T23:59:00.001Z is after 9999-12-31T23:59:00Z',
      },
    });
    expect(parseTimestamp('9999-12-31T23:59:00-00:01')).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: 'timestamp +010000-01-01T00:00:00.000Z is after 9999-12-31T23:59:00Z',
      },
    });
  });

  test('the epoch itself is +0, whatever the zone spelling', () => {
    for (const ts of [
      '1970-01-01T00:00:00Z',
      '1970-01-01T00:00Z',
      '1970-01-01T00:00:00-00:00',
      '1970-01-01T00:01+00:01',
    ]) {
      const r = parseTimestamp(ts);
      expect(r.ok && Object.is(r.ms, 0)).toBe(true);
    }
  });

  test.each([
    ['.1', 100],
    ['.12', 120],
    ['.123', 123],
    ['.1230', 123],
    ['.123000000', 123],
    ['.000000000', 0],
    ['.999', 999],
  ])('fraction %s → %p ms', (frac, ms) => {
    expect(parseTimestamp(`2026-11-24T14:31:00${frac}Z`)).toEqual({ ok: true, ms: TS_MS + ms });
    expect(parseTimestamp(`2026-11-24T20:01:00${frac}+05:30`)).toEqual({ ok: true, ms: TS_MS + ms });
  });

  test('checks run in order: date-time, then zone offset, then sub-milliseconds, then range', () => {
    expect(parseTimestamp('2026-02-30T00:00:00.0001+24:00')).toMatchObject({
      rejection: { detail: expect.stringMatching(/is not a valid date-time$/) },
    });
    expect(parseTimestamp('2026-11-24T14:31:00.0001+24:00')).toMatchObject({
      rejection: { detail: expect.stringMatching(/has an invalid zone offset$/) },
    });
    expect(parseTimestamp('1899-12-31T23:59:00.0001Z')).toMatchObject({
      rejection: { detail: expect.stringMatching(/has sub-millisecond digits$/) },
    });
  });

  test.each([
    '2026-11-24T14:31:00Z ',
    '2026-11-24T14:31:00Z\n',
    ' 2026-11-24T14:31:00Z',
    '2026-11-24T14:31:00ZZ',
    '2026-11-24T14:31:00+05:3',
    '2026-11-24T14:31:00+05:300',
    '2026-11-24T14:31:00+05::30',
    '2026-11-24T14:31:00+5:30',
    '2026-11-24T14:31:00:00Z',
    '2026-11-24T14:31:0Z',
    '2026-11-24T14:31.000Z',
    '2026-11-24T14:3Z',
    '+2026-11-24T14:31:00Z',
    '02026-11-24T14:31:00Z',
    '2026-11-24T14:31:00.123456789012345678Z',
    '\u0662\u0660\u0662\u0666-11-24T14:31:00Z',
    '２０２６-11-24T14:31:00Z',
    '2026/11/24T14:31:00Z',
    '2026-11-24T14-31-00Z',
    '2026-11-24T14:31:00\u221205:00',
  ])('%p → not ISO-8601', (ts) => {
    expect(parseTimestamp(ts)).toEqual({
      ok: false,
      rejection: {
        reason: 'invalid_timestamp',
        detail: `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(ts.slice(0, 40))}`,
      },
    });
  });

  // The regular expression and Date arithmetic parseTimestamp used before its hand-written parser; the two
  // must agree on every string (result, reason and detail).
  const REFERENCE_RE =
    /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|z|([+-])(\d{2}):?(\d{2}))$/;
  function referenceParse(v: string): unknown {
    const bad = (detail: string): unknown => ({
      ok: false,
      rejection: { reason: 'invalid_timestamp', detail },
    });
    const m = REFERENCE_RE.exec(v);
    if (!m) {
      return bad(
        `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(v.slice(0, 40))}`,
      );
    }
    const [, y, mo, d, h, mi, s, frac, , sign, oh, om] = m;
    const [year, month, day, hour, minute] = [y, mo, d, h, mi].map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const second = s === undefined ? 0 : Number(s);
    const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
    if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) {
      return bad(`timestamp ${JSON.stringify(v)} is not a valid date-time`);
    }
    let offsetMin = 0;
    if (sign !== undefined) {
      if (Number(oh) > 23 || Number(om) > 59)
        return bad(`timestamp ${JSON.stringify(v)} has an invalid zone offset`);
      offsetMin = (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om));
    }
    let fracMs = 0;
    if (frac !== undefined) {
      const padded = frac.padEnd(9, '0');
      if (Number(padded.slice(3)) !== 0)
        return bad(`timestamp ${JSON.stringify(v)} has sub-millisecond digits`);
      fracMs = Number(padded.slice(0, 3));
    }
    const date = new Date(0);
    date.setUTCFullYear(year, month - 1, day);
    date.setUTCHours(hour, minute, second, fracMs);
    const ms = date.getTime() - offsetMin * 60_000;
    if (ms < MIN_TIMESTAMP_MS) return bad(`timestamp ${new Date(ms).toISOString()} is before 1900-01-01`);
    if (ms > Date.UTC(9999, 11, 31, 23, 59))
      return bad(`timestamp ${new Date(ms).toISOString()} is after 9999-12-31T23:59:00Z`);
    return { ok: true, ms };
  }

  function agree(ts: string): void {
    const actual = parseTimestamp(ts);
    const expected = referenceParse(ts);
    if (JSON.stringify(actual) !== JSON.stringify(expected) || (actual.ok && Object.is(actual.ms, -0))) {
      throw new Error(
        `${JSON.stringify(ts)}: got ${JSON.stringify(actual)}, reference ${JSON.stringify(expected)}`,
      );
    }
  }

  test('agrees with the reference on generated date-times (fields in and out of range)', () => {
    const rand = prng(42);
    const pad = (x: number, w: number): string => String(x).padStart(w, '0');
    const pick = <T>(xs: T[]): T => xs[rand(xs.length)] as T;
    for (let t = 0; t < 20_000; t++) {
      const year = pick([
        rand(10_000),
        1900 + rand(300),
        pick([0, 4, 99, 100, 1899, 1900, 2000, 2100, 9999]),
      ]);
      const date = `${pad(year, 4)}-${pad(rand(14), 2)}-${pad(pick([rand(33), 28, 29, 30, 31]), 2)}`;
      const time = `${pad(rand(26), 2)}:${pad(rand(62), 2)}`;
      const seconds = pick(['', `:${pad(rand(62), 2)}`, `:00.${String(rand(1e9)).slice(0, 1 + rand(10))}`]);
      const secondsZeroPadded = pick([seconds, ':00.' + '0'.repeat(1 + rand(10)), `:00.${rand(1000)}000`]);
      const zone = pick([
        'Z',
        'z',
        `${pick(['+', '-'])}${pad(rand(26), 2)}${pick([':', ''])}${pad(rand(62), 2)}`,
      ]);
      agree(`${date}T${time}${rand(2) ? seconds : secondsZeroPadded}${zone}`);
    }
  });

  test('agrees with the reference on mutated strings (characters replaced, inserted, deleted)', () => {
    const seeds = [
      '2026-11-24T14:31:00Z',
      '2026-11-24T14:31Z',
      '2026-11-24T09:31:00.000-05:00',
      '2026-11-24T20:01:00+0530',
      '2024-02-29T23:59:59.123456789+23:59',
      '1900-01-01T00:00:00-00:01',
      '9999-12-31T23:59z',
    ];
    const alphabet = '0123456789-:T.Zz+ t9\u0660/';
    const rand = prng(7);
    for (let t = 0; t < 20_000; t++) {
      let s = seeds[rand(seeds.length)] as string;
      for (let e = 1 + rand(3); e > 0; e--) {
        const i = rand(s.length + 1);
        const c = alphabet[rand(alphabet.length)] as string;
        const op = rand(3);
        s =
          op === 0
            ? s.slice(0, i) + c + s.slice(i + 1)
            : op === 1
              ? s.slice(0, i) + c + s.slice(i)
              : s.slice(0, i) + s.slice(i + 1);
      }
      agree(s);
    }
  });
});

describe('trade_count', () => {
  test.each([
    [0, 0],
    [1, 1],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    [null, null],
    [undefined, null],
  ])('%p → %p, on both paths', (n, expected) => {
    const text = JSON.stringify({ ...BASE, trade_count: n });
    expect(expectBar(decodeText(text)).tradeCount).toBe(expected);
    expect(
      expectBar(new BarDecoder().decode(Buffer.from(text), NOW, MIN_TIMESTAMP_MS, false)).tradeCount,
    ).toBe(expected);
  });

  test.each([
    [-1, 'invalid_trade_count', 'trade_count must be a non-negative safe integer, got -1'],
    [1.5, 'invalid_trade_count', 'trade_count must be a non-negative safe integer, got 1.5'],
    [2 ** 53, 'invalid_trade_count', `trade_count must be a non-negative safe integer, got ${2 ** 53}`],
    ['7', 'wrong_type', 'trade_count must be a number or null, got a string "7"'],
    [true, 'wrong_type', 'trade_count must be a number or null, got boolean true'],
  ])('%p is rejected (%s)', (n, reason, detail) => {
    expectReject(decodeObj({ ...BASE, trade_count: n }), reason as RejectReason, detail);
  });

  test('-0 is stored as 0', () => {
    const text = JSON.stringify(BASE).replace('}', ',"trade_count":-0}');
    expect(Object.is(expectBar(decodeText(text)).tradeCount, 0)).toBe(true);
  });
});

describe('deleted', () => {
  const DELETE = { symbol: 'AAPL', timestamp: TS, deleted: true, revision: 3 };

  test('a delete needs only its key; its revision is its version, its numbers are 0', () => {
    expect(expectBar(decodeObj(DELETE))).toEqual({
      symbol: 'AAPL',
      timestampMs: TS_MS,
      open: 0,
      high: 0,
      low: 0,
      close: 0,
      volume: 0,
      vwap: null,
      revision: 3,
      tradeCount: null,
      deleted: true,
      extras: null,
    });
    expect(expectBar(decodeObj({ ...DELETE, revision: undefined })).revision).toBe(0);
  });

  test('the prices of a delete, whatever they are, are ignored', () => {
    const b = expectBar(decodeObj({ ...BASE, high: 0, ...DELETE }));
    expect([b.deleted, b.open, b.high]).toEqual([true, 0, 0]);
  });

  test('deleted false or null is a bar like any other, with every rule', () => {
    expect(expectBar(decodeObj({ ...BASE, deleted: false })).deleted).toBe(false);
    expect(expectBar(decodeObj({ ...BASE, deleted: null })).deleted).toBe(false);
    expectReject(decodeObj({ symbol: 'AAPL', timestamp: TS, deleted: false }), 'missing_field');
  });

  test.each([
    [
      { ...DELETE, deleted: 'true' },
      'wrong_type',
      'deleted must be true, false or null, got a string "true"',
    ],
    [{ ...DELETE, deleted: 1 }, 'wrong_type', 'deleted must be true, false or null, got number 1'],
    [{ ...DELETE, revision: -1 }, 'invalid_revision', undefined],
    [{ ...DELETE, timestamp: TS_MS + 1000 }, 'unaligned_timestamp', undefined],
    [{ ...DELETE, symbol: 'A B' }, 'invalid_symbol', undefined],
    [{ ...DELETE, timestamp: undefined }, 'missing_field', undefined],
    [{ ...DELETE, timestamp: 1_764_600_000 }, 'timestamp_in_seconds', undefined],
  ])('a delete keeps the rules on its key and version: %p', (obj, reason, detail) => {
    expectReject(decodeObj(obj), reason as RejectReason, detail);
  });
});

describe('extra columns', () => {
  const decoder = new BarDecoder(
    parseExtraColumns('exchange:text(4),trade_flags:bigint,adjusted:boolean,score:double'),
  );
  const decode = (o: unknown, fast = true) => decoder.decode(bytes(o), NOW, MIN_TIMESTAMP_MS, fast);

  test('read in the order configured, absent or null as null, on both paths', () => {
    for (const fast of [true, false]) {
      expect(
        expectBar(decode({ ...BASE, score: 0.5, exchange: 'XNYS', trade_flags: 7 }, fast)).extras,
      ).toEqual(['XNYS', 7, null, 0.5]);
      expect(expectBar(decode(BASE, fast)).extras).toEqual([null, null, null, null]);
      expect(expectBar(decode({ ...BASE, adjusted: false, exchange: null }, fast)).extras).toEqual([
        null,
        null,
        false,
        null,
      ]);
    }
  });

  test('without the setting, extra fields are ignored', () => {
    expect(expectBar(decodeObj({ ...BASE, exchange: 'XNYS' })).extras).toBeNull();
  });

  test.each([
    [{ exchange: 1 }, 'wrong_type', 'exchange must be a string or null, got number 1'],
    [{ exchange: 'XNASDAQ' }, 'invalid_extra', 'exchange must be at most 4 characters, got 7'],
    [{ exchange: 'a\u0000' }, 'invalid_extra', 'exchange must not contain NUL characters'],
    [
      { trade_flags: 1.5 },
      'wrong_type',
      'trade_flags must be an integer (a safe integer) or null, got number 1.5',
    ],
    [
      { trade_flags: '7' },
      'wrong_type',
      'trade_flags must be an integer (a safe integer) or null, got a string "7"',
    ],
    [{ adjusted: 0 }, 'wrong_type', 'adjusted must be true, false or null, got number 0'],
    [{ score: [1] }, 'wrong_type', 'score must be a finite number or null, got an array'],
  ])('%p is rejected, naming the field', (extra, reason, detail) => {
    const o = { ...BASE, ...extra };
    const text = JSON.stringify(o).replace('\\\\u0000', '\\u0000');
    expectReject(decoder.decode(Buffer.from(text), NOW), reason as RejectReason, detail);
  });

  test('text bounds count characters, not bytes or UTF-16 units', () => {
    expect(expectBar(decode({ ...BASE, exchange: 'ÉÉÉ😀' })).extras![0]).toBe('ÉÉÉ😀');
  });

  test('a delete carries no extras', () => {
    expect(expectBar(decode({ symbol: 'AAPL', timestamp: TS, deleted: true })).extras).toBeNull();
  });
});
