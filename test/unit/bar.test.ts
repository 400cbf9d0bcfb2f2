import {
  MAX_FUTURE_MS,
  MAX_SYMBOL_LENGTH,
  MAX_VALUE_BYTES,
  MIN_TIMESTAMP_MS,
  REJECT_REASONS,
  decodeBar,
  findDuplicateTopLevelKey,
  parseTimestamp,
  validateFields,
  type Bar,
  type DecodeResult,
  type RejectReason,
} from '../../src/contract/bar';

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
      'high',
      'low',
      'open',
      'symbol',
      'timestampMs',
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
    ];
    for (const [reason, r] of samples) expectReject(r, reason);
    const covered = new Set(samples.map(([reason]) => reason));
    expect(REJECT_REASONS.filter((r) => !covered.has(r))).toEqual(['database_rejected']);
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
