/**
 * The staging table's COPY: the service's encoder (src/store/copyEncoding.ts) decoded by the columns
 * src/store/staging.ts declares, and the references of test/support/copyReference.ts (text format, and
 * the binary format from Bar objects) it must agree with.
 */
import type { Bar } from '../../src/contract/bar';
import { BarSlabs, packBars } from '../../src/contract/packedBar';
import { encodeCopyBinaryParts } from '../../src/store/copyEncoding';
import { parseExtraColumns } from '../../src/contract/extras';
import {
  CREATE_STAGING,
  STAGING_COLUMN_LIST,
  STAGING_COLUMNS,
  stagingTable,
  type StagingColumn,
} from '../../src/store/staging';
import { encodeCopyBinary, encodeCopyRow, encodeCopyRows, escapeCopyText } from '../support/copyReference';

const BAR: Bar = {
  symbol: 'AAPL',
  timestampMs: Date.UTC(2026, 10, 24, 14, 31),
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
};

/**
 * Decodes binary COPY back by the staging table's declaration: field f of a row is column f of
 * STAGING_COLUMNS, read by its encoding (a reader independent of the encoder's code paths). Each row is
 * a list of [column name, value]; 10 fields (a Bar-object reference without origins) or all of them
 * (`columns`: a staging table with extra columns).
 */
function decodeByDeclaration(
  buf: Buffer,
  columns: readonly StagingColumn[] = STAGING_COLUMNS,
): [string, unknown][][] {
  expect(buf.subarray(0, 11).toString('latin1')).toBe('PGCOPY\n\xff\r\n\0');
  expect(buf.readInt32BE(11)).toBe(0);
  expect(buf.readInt32BE(15)).toBe(0);
  let at = 19;
  const rows: [string, unknown][][] = [];
  for (;;) {
    const fields = buf.readInt16BE(at);
    at += 2;
    if (fields === -1) break;
    expect([10, columns.length]).toContain(fields);
    const row: [string, unknown][] = [];
    for (const column of columns.slice(0, fields)) {
      const len = buf.readInt32BE(at);
      at += 4;
      if (len === -1) {
        row.push([column.name, null]);
        continue;
      }
      const v = buf.subarray(at, at + len);
      at += len;
      const width = { int4: 4, int8: 8, float8: 8, timestamp: 8, bool: 1, text: len }[column.encoding];
      expect([column.name, len]).toEqual([column.name, width]);
      const value = {
        int4: () => v.readInt32BE(0),
        int8: () => v.readBigInt64BE(0),
        timestamp: () => v.readBigInt64BE(0),
        float8: () => v.readDoubleBE(0),
        bool: () => {
          expect([0, 1]).toContain(v[0]);
          return v[0] === 1;
        },
        text: () => v.toString('utf8'),
      }[column.encoding]();
      row.push([column.name, value]);
    }
    rows.push(row);
  }
  expect(at).toBe(buf.length);
  return rows;
}

describe('the staging table, declared once', () => {
  test('the DDL and the COPY column list name the declared columns, in order', () => {
    const names = STAGING_COLUMNS.map((c) => `"${c.name}"`);
    expect(STAGING_COLUMN_LIST).toBe(`(${names.join(', ')})`);
    const ddl = [...CREATE_STAGING.matchAll(/^\s+("\w+") (.+?),?$/gm)].map((m) => [m[1], m[2]]);
    expect(ddl).toEqual(STAGING_COLUMNS.map((c) => [`"${c.name}"`, c.type]));
  });

  test('the service encoder writes exactly the declared columns: each value lands in its named column', () => {
    const t = Date.UTC(2026, 11, 1, 9, 30, 1, 234);
    const bar: Bar = {
      symbol: 'MSFT',
      timestampMs: Date.UTC(2026, 10, 24, 14, 31),
      open: 1.5,
      high: 2.5,
      low: 0.5,
      close: 2,
      volume: 1234,
      vwap: 1.75,
      revision: 3,
      tradeCount: null,
      deleted: false,
      extras: null,
    };
    const entry = new BarSlabs(1).packedAt(bar, t, 77n);
    const [row] = decodeByDeclaration(encodeCopyBinaryParts([{ partition: 4, entries: [entry] }]));
    const micros = (ms: number) => BigInt(ms - Date.UTC(2000, 0, 1)) * 1000n;
    expect(Object.fromEntries(row!)).toEqual({
      seq: 0,
      symbol: 'MSFT',
      timestamp: micros(bar.timestampMs),
      open: 1.5,
      high: 2.5,
      low: 0.5,
      close: 2,
      volume: 1234n,
      vwap: 1.75,
      revision: 3n,
      trade_count: null,
      deleted: false,
      source_time: micros(t),
      part: 4,
      kafka_offset: 77n,
    });
    expect(row!.map(([name]) => name)).toEqual(STAGING_COLUMNS.map((c) => c.name));
  });
});

describe('escapeCopyText', () => {
  test('plain printable ASCII is returned unchanged (fast path)', () => {
    expect(escapeCopyText('AAPL')).toBe('AAPL');
    expect(escapeCopyText('BRK.B')).toBe('BRK.B');
    expect(escapeCopyText('')).toBe('');
    expect(escapeCopyText('!"#$%&\'()*+,-./:;<=>?@[]^_`{|}~')).toBe('!"#$%&\'()*+,-./:;<=>?@[]^_`{|}~');
  });

  test.each([
    ['backslash', '\\', '\\\\'],
    ['tab', '\t', '\\t'],
    ['newline', '\n', '\\n'],
    ['carriage return', '\r', '\\r'],
    ['vertical tab', '\v', '\\v'],
    ['form feed', '\f', '\\f'],
    ['backspace', '\b', '\\b'],
  ])('%s is escaped', (_name, input, expected) => {
    expect(escapeCopyText(input)).toBe(expected);
    expect(escapeCopyText(`A${input}B`)).toBe(`A${expected}B`);
  });

  test('a mix of special characters, each escaped in place', () => {
    expect(escapeCopyText('a\tb\nc\rd\ve\ff\bg\\h')).toBe('a\\tb\\nc\\rd\\ve\\ff\\bg\\\\h');
  });

  test('two backslashes become four', () => {
    expect(escapeCopyText('A\\\\B')).toBe('A\\\\\\\\B');
  });

  test('non-ASCII and other characters pass through the slow path unchanged', () => {
    expect(escapeCopyText('É\t😀\u0001')).toBe('É\\t😀\u0001');
  });

  test('a string with no special characters is not altered even if non-ASCII', () => {
    expect(escapeCopyText('Ünïcødé 😀')).toBe('Ünïcødé 😀');
  });
});

describe('encodeCopyRow', () => {
  test('exact row: seq, symbol, ISO UTC timestamp with Z, prices, volume, \\N for null vwap', () => {
    expect(encodeCopyRow(0, BAR)).toBe('0\tAAPL\t2026-11-24T14:31:00.000Z\t1\t2\t0.5\t1.5\t10\t\\N\t0\n');
  });

  test('a numeric vwap is written as a number', () => {
    expect(encodeCopyRow(7, { ...BAR, vwap: 1.25 })).toBe(
      '7\tAAPL\t2026-11-24T14:31:00.000Z\t1\t2\t0.5\t1.5\t10\t1.25\t0\n',
    );
  });

  test('vwap 0 is written as 0, not NULL', () => {
    expect(encodeCopyRow(0, { ...BAR, open: 0, high: 0, low: 0, close: 0, vwap: 0 })).toBe(
      '0\tAAPL\t2026-11-24T14:31:00.000Z\t0\t0\t0\t0\t10\t0\t0\n',
    );
  });

  test('the symbol is escaped', () => {
    expect(encodeCopyRow(1, { ...BAR, symbol: 'A\\B' })).toBe(
      '1\tA\\\\B\t2026-11-24T14:31:00.000Z\t1\t2\t0.5\t1.5\t10\t\\N\t0\n',
    );
  });

  test('timestamps before 1970 and at 1900 are ISO UTC', () => {
    expect(encodeCopyRow(0, { ...BAR, timestampMs: Date.UTC(1900, 0, 1) }).split('\t')[2]).toBe(
      '1900-01-01T00:00:00.000Z',
    );
    expect(encodeCopyRow(0, { ...BAR, timestampMs: 0 }).split('\t')[2]).toBe('1970-01-01T00:00:00.000Z');
  });

  test.each([
    [0.1, '0.1'],
    [0.1 + 0.2, '0.30000000000000004'],
    [1e-7, '1e-7'],
    [1.5e300, '1.5e+300'],
    [123456789.123, '123456789.123'],
    [1e21, '1e+21'],
    [1e20, '100000000000000000000'],
    [5e-324, '5e-324'],
    [Number.MAX_VALUE, '1.7976931348623157e+308'],
    [-2.5, '-2.5'],
    [-0, '0'],
  ])('price %p is written as %s (shortest round-trip form)', (value, text) => {
    const row = encodeCopyRow(0, { ...BAR, open: value, high: value, low: value, close: value, vwap: value });
    expect(row.split('\t').slice(3, 7)).toEqual([text, text, text, text]);
    expect(row.endsWith(`\t${text}\t0\n`)).toBe(true);
    expect(Number(text)).toBe(value + 0);
  });

  test('volume is written as an integer, up to MAX_SAFE_INTEGER', () => {
    expect(encodeCopyRow(0, { ...BAR, volume: Number.MAX_SAFE_INTEGER }).split('\t')[7]).toBe(
      '9007199254740991',
    );
    expect(encodeCopyRow(0, { ...BAR, volume: 0 }).split('\t')[7]).toBe('0');
  });

  test('every row has exactly 10 fields (15 with an origin) and one trailing newline', () => {
    const row = encodeCopyRow(12, { ...BAR, vwap: 1 });
    expect(row.endsWith('\n')).toBe(true);
    expect(row.indexOf('\n')).toBe(row.length - 1);
    expect(row.slice(0, -1).split('\t')).toHaveLength(10);
    const withOrigin = encodeCopyRow(
      12,
      { ...BAR, revision: 7 },
      { partition: 2, offset: 9n, recordTimeMs: 1 },
    );
    expect(withOrigin.slice(0, -1).split('\t').slice(9)).toEqual([
      '7',
      '\\N',
      'f',
      '1970-01-01T00:00:00.001Z',
      '2',
      '9',
    ]);
    const counted = encodeCopyRow(
      0,
      { ...BAR, tradeCount: 12, deleted: true },
      { partition: 0, offset: 0n, recordTimeMs: 0 },
    );
    expect(counted.split('\t').slice(10, 12)).toEqual(['12', 't']);
  });

  test.each(['open', 'high', 'low', 'close', 'vwap'] as const)('non-finite %s → RangeError', (field) => {
    for (const bad of [Infinity, -Infinity, Number.NaN]) {
      expect(() => encodeCopyRow(0, { ...BAR, [field]: bad })).toThrow(RangeError);
      expect(() => encodeCopyRow(0, { ...BAR, [field]: bad })).toThrow(
        `non-finite number ${bad} cannot be written`,
      );
    }
  });
});

describe('encodeCopyRows', () => {
  test('empty batch → empty payload', () => {
    expect(encodeCopyRows([])).toBe('');
  });

  test('rows are numbered 0.. in order and concatenated', () => {
    const bars: Bar[] = [
      BAR,
      { ...BAR, symbol: 'MSFT', timestampMs: BAR.timestampMs + 60_000, vwap: 1.5 },
      { ...BAR, symbol: 'BRK.B', open: 0.1, high: 0.1, low: 0.1, close: 0.1, volume: 0 },
    ];
    expect(encodeCopyRows(bars)).toBe(
      '0\tAAPL\t2026-11-24T14:31:00.000Z\t1\t2\t0.5\t1.5\t10\t\\N\t0\n' +
        '1\tMSFT\t2026-11-24T14:32:00.000Z\t1\t2\t0.5\t1.5\t10\t1.5\t0\n' +
        '2\tBRK.B\t2026-11-24T14:31:00.000Z\t0.1\t0.1\t0.1\t0.1\t0\t\\N\t0\n',
    );
  });

  test('seq keeps counting over many rows', () => {
    const bars = Array.from({ length: 1000 }, (_, i) => ({ ...BAR, volume: i }));
    const rows = encodeCopyRows(bars).split('\n');
    expect(rows).toHaveLength(1001);
    expect(rows[1000]).toBe('');
    rows.slice(0, 1000).forEach((row, i) => {
      const fields = row.split('\t');
      expect(fields[0]).toBe(String(i));
      expect(fields[7]).toBe(String(i));
    });
  });

  test('a non-finite number anywhere in the batch throws RangeError', () => {
    expect(() => encodeCopyRows([BAR, { ...BAR, close: Number.NaN }])).toThrow(RangeError);
  });
});

describe('encodeCopyBinary', () => {
  const b = (over: Partial<Bar> = {}): Bar => ({
    symbol: 'AAPL',
    timestampMs: Date.UTC(2026, 10, 24, 14, 31),
    open: 1,
    high: 1.2,
    low: 0.9,
    close: 1.1,
    volume: 1200,
    vwap: 1.05,
    revision: 0,
    tradeCount: null,
    deleted: false,
    extras: null,
    ...over,
  });

  const decode = (buf: Buffer) => decodeByDeclaration(buf).map((row) => row.map(([, v]) => v));

  test('with origins: trade_count (int8 or NULL), deleted (bool), the record time (int8 µs since 2000), the partition (int4) and the Kafka offset (int8) after the revision, on every row', () => {
    const t = Date.UTC(2026, 11, 1, 9, 30, 1, 234); // any millisecond, not a minute
    const rows = decode(
      encodeCopyBinary(
        [b({ revision: 5, tradeCount: 17 }), b({ vwap: null, deleted: true })],
        [
          { partition: 3, offset: 42n, recordTimeMs: t },
          { partition: 0, offset: 2n ** 62n, recordTimeMs: Date.UTC(1999, 11, 31, 23, 59, 59, 999) },
        ],
      ),
    );
    expect(rows.map((r) => [r.length, ...r.slice(8)])).toEqual([
      [15, 1.05, 5n, 17n, false, BigInt(t - Date.UTC(2000, 0, 1)) * 1000n, 3, 42n],
      [15, null, 0n, null, true, -1000n, 0, 2n ** 62n],
    ]);
    expect(encodeCopyRows([b()], [{ partition: 3, offset: 42n, recordTimeMs: t }])).toMatch(
      /\t1\.05\t0\t\\N\tf\t2026-12-01T09:30:01\.234Z\t3\t42\n$/,
    );
  });

  test('every column, in order, exact', () => {
    expect(
      decode(encodeCopyBinary([b(), b({ symbol: 'A\\B', vwap: null, volume: Number.MAX_SAFE_INTEGER })])),
    ).toEqual([
      [
        0,
        'AAPL',
        BigInt(Date.UTC(2026, 10, 24, 14, 31) - Date.UTC(2000, 0, 1)) * 1000n,
        1,
        1.2,
        0.9,
        1.1,
        1200n,
        1.05,
        0n,
      ],
      [
        1,
        'A\\B',
        BigInt(Date.UTC(2026, 10, 24, 14, 31) - Date.UTC(2000, 0, 1)) * 1000n,
        1,
        1.2,
        0.9,
        1.1,
        BigInt(Number.MAX_SAFE_INTEGER),
        null,
        0n,
      ],
    ]);
  });

  test('timestamps before 2000 are negative; year 9999 does not lose precision past 2^53', () => {
    const rows = decode(
      encodeCopyBinary([
        b({ timestampMs: Date.UTC(1900, 0, 1) }),
        b({ timestampMs: Date.UTC(9999, 11, 31, 23, 59) }),
      ]),
    );
    expect(rows[0]![2]).toBe(BigInt(Date.UTC(1900, 0, 1) - Date.UTC(2000, 0, 1)) * 1000n);
    expect(rows[1]![2]).toBe(BigInt(Date.UTC(9999, 11, 31, 23, 59) - Date.UTC(2000, 0, 1)) * 1000n);
    expect(rows[1]![2] as bigint).toBeGreaterThan(BigInt(Number.MAX_SAFE_INTEGER));
  });

  test('doubles travel bit-exact; a non-finite one is refused', () => {
    const odd = [0.1 + 0.2, 1e-7, 1.7976931348623157e308, -1.5e300, 5e-324];
    const rows = decode(encodeCopyBinary(odd.map((x) => b({ open: x, high: x, low: x, close: x, vwap: x }))));
    expect(rows.map((r) => r[3])).toEqual(odd);
    expect(() => encodeCopyBinary([b({ close: Number.NaN })])).toThrow(RangeError);
  });

  test('an empty batch is header and trailer only', () => {
    expect(decode(encodeCopyBinary([]))).toEqual([]);
    expect(encodeCopyBinaryParts([])).toEqual(encodeCopyBinary([], []));
    expect(encodeCopyBinaryParts([{ partition: 1, entries: [] }])).toEqual(encodeCopyBinary([], []));
  });

  test("a flush's parts encode to the same bytes as their bars with origins, seq counting across parts", () => {
    const t = Date.UTC(2026, 11, 1, 9, 30, 1, 234);
    const parts = [
      {
        partition: 0,
        entries: [
          { bar: b(), offset: 7n, messageTimeMs: t },
          { bar: b({ symbol: 'Ä€𝄞', vwap: null, tradeCount: 0 }), offset: 8n, messageTimeMs: t + 1 }, // 2 + 3 + 4 bytes
        ],
      },
      {
        partition: 5,
        entries: [{ bar: b({ revision: 3, deleted: true }), offset: 2n ** 40n, messageTimeMs: 0 }],
      },
    ];
    const bars = parts.flatMap((p) => p.entries.map((e) => e.bar));
    const origins = parts.flatMap((p) =>
      p.entries.map((e) => ({ partition: p.partition, offset: e.offset, recordTimeMs: e.messageTimeMs })),
    );
    // As the service has them: numbers packed, several bars to a slab.
    const bytes = encodeCopyBinaryParts(
      parts.map((p) => {
        const packed = packBars(p.entries);
        return {
          partition: p.partition,
          entries: packed.map((q, i) => ({ ...q, offset: p.entries[i]!.offset })),
        };
      }),
    );
    expect(bytes).toEqual(encodeCopyBinary(bars, origins));
    const rows = decode(bytes);
    expect(rows.map((r) => [r[0], r[1], r[13], r[14]])).toEqual([
      [0, 'AAPL', 0, 7n],
      [1, 'Ä€𝄞', 0, 8n],
      [2, 'AAPL', 5, 2n ** 40n],
    ]);
  });
});

describe('extra columns (BARS_EXTRA_COLUMNS)', () => {
  const extras = parseExtraColumns('exchange:text(8),flags:bigint,adjusted:boolean,score:double');
  const table = stagingTable(extras);
  const bar = (values: Bar['extras'], over: Partial<Bar> = {}): Bar => ({
    symbol: 'AAPL',
    timestampMs: Date.UTC(2026, 10, 24, 14, 31),
    open: 1,
    high: 1,
    low: 1,
    close: 1,
    volume: 1,
    vwap: null,
    revision: 0,
    tradeCount: null,
    deleted: false,
    extras: values,
    ...over,
  });

  test('the staging table of a setting: the fixed columns, then the extras, nullable, by type', () => {
    expect(table.columns.slice(0, STAGING_COLUMNS.length)).toEqual(STAGING_COLUMNS);
    expect(table.columns.slice(STAGING_COLUMNS.length)).toEqual([
      { name: 'exchange', type: 'text', encoding: 'text' },
      { name: 'flags', type: 'bigint', encoding: 'int8' },
      { name: 'adjusted', type: 'boolean', encoding: 'bool' },
      { name: 'score', type: 'double precision', encoding: 'float8' },
    ]);
    expect(table.columnList).toBe(`(${table.columns.map((c) => `"${c.name}"`).join(', ')})`);
    const ddl = [...table.create.matchAll(/^\s+("\w+") (.+?),?$/gm)].map((m) => [m[1], m[2]]);
    expect(ddl).toEqual(table.columns.map((c) => [`"${c.name}"`, c.type]));
    // Each shape its own table (a rolling change of the setting through a pooler), the same shape the same.
    expect(table.name).not.toBe(stagingTable().name);
    expect(
      stagingTable(parseExtraColumns('exchange:text(8),flags:bigint,adjusted:boolean,score:double')),
    ).toBe(table);
    expect(stagingTable(parseExtraColumns('flags:bigint,exchange:text')).name).not.toBe(table.name);
  });

  test('each value lands in its named column; absent, null and a delete are NULL', () => {
    const slabs = new BarSlabs(4);
    const entries = [
      slabs.packedAt(bar(['XNYS', 2 ** 40, true, -0.25]), 0, 1n),
      slabs.packedAt(bar([null, null, false, null]), 0, 2n),
      slabs.packedAt(bar(['Zürich€😀', -1, null, 1e300]), 0, 3n),
      slabs.packedAt(bar(null, { deleted: true }), 0, 4n),
    ];
    const rows = decodeByDeclaration(
      encodeCopyBinaryParts([{ partition: 1, entries }], extras),
      table.columns,
    );
    expect(rows.map((r) => Object.fromEntries(r.slice(STAGING_COLUMNS.length)))).toEqual([
      { exchange: 'XNYS', flags: 2n ** 40n, adjusted: true, score: -0.25 },
      { exchange: null, flags: null, adjusted: false, score: null },
      { exchange: 'Zürich€😀', flags: -1n, adjusted: null, score: 1e300 },
      { exchange: null, flags: null, adjusted: null, score: null },
    ]);
    expect(rows.map((r) => Object.fromEntries(r).kafka_offset)).toEqual([1n, 2n, 3n, 4n]);
  });

  test('without a setting the encoder writes no extra field even when a bar carries values', () => {
    const entry = new BarSlabs(1).packedAt(bar(['X', 1, true, 1]), 0, 1n);
    const [row] = decodeByDeclaration(encodeCopyBinaryParts([{ partition: 0, entries: [entry] }]));
    expect(row!.map(([name]) => name)).toEqual(STAGING_COLUMNS.map((c) => c.name));
  });
});
