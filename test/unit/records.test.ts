/**
 * The backfill file reader (src/cli/records.ts): RFC 4180 records (quoted line ends, "" for a quote,
 * CRLF), the same records however the input is cut into chunks, over-long records refused with their
 * line and never held, and one pass over the input.
 */
import { Readable } from 'node:stream';
import {
  MAX_RECORD_CHARS,
  RecordReader,
  TEXT_KEPT,
  readRecords,
  type FileRecord,
  type RecordFormat,
} from '../../src/cli/records';

function read(chunks: readonly string[], format: RecordFormat = 'csv', maxChars?: number): FileRecord[] {
  const reader = new RecordReader(format, maxChars);
  const out = chunks.flatMap((c) => reader.push(c));
  return [...out, ...reader.end()];
}

/** [line, fields or the refusal's reason, text] of each record. */
const brief = (records: FileRecord[]) => records.map((r) => [r.line, r.fields ?? r.refusal!.reason, r.text]);

describe('RecordReader, CSV', () => {
  test('a quoted field holds line ends; the records after it keep their line numbers', () => {
    expect(brief(read(['a,"two\nlines",c\nd,e,f\n']))).toEqual([
      [1, ['a', 'two\nlines', 'c'], 'a,"two\nlines",c'],
      [3, ['d', 'e', 'f'], 'd,e,f'],
    ]);
  });

  test('"" inside quotes is a quote; commas inside quotes are text', () => {
    expect(brief(read(['"say ""hi""","a,b",""\n']))).toEqual([
      [1, ['say "hi"', 'a,b', ''], '"say ""hi""","a,b",""'],
    ]);
  });

  test('CRLF: the carriage return belongs to no field and no text; inside quotes it is kept', () => {
    expect(brief(read(['a,b\r\n"c\r\nd","e\r"\r\nf,\r\n"g"\r\nlast\r']))).toEqual([
      [1, ['a', 'b'], 'a,b'],
      [2, ['c\r\nd', 'e\r'], '"c\r\nd","e\r"'],
      [4, ['f', ''], 'f,'],
      [5, ['g'], '"g"'],
      [6, ['last'], 'last'],
    ]);
  });

  test('empty and blank lines are records of their own (the caller skips them); a BOM is not text', () => {
    expect(brief(read(['\uFEFFsymbol\n\n  \n,\nx']))).toEqual([
      [1, ['symbol'], 'symbol'],
      [2, [''], ''],
      [3, ['  '], '  '],
      [4, ['', ''], ','],
      [5, ['x'], 'x'],
    ]);
  });

  test('a character after a closing quote: refused with its line, the rest of the line skipped', () => {
    const records = read(['"ab"c,"d\nok,1\n"x"\ry\n']);
    expect(brief(records)).toEqual([
      [1, 'invalid_csv', '"ab"c,"d'],
      [2, ['ok', '1'], 'ok,1'],
      [3, 'invalid_csv', '"x"\ry'],
    ]);
    expect(records[0]!.refusal!.detail).toBe('not a CSV record: a character follows a closing quote');
  });

  test('a quote still open at the end of the input: one record refused, without the last line end', () => {
    const records = read(['ok,1\n"unterminated,AAA\nlater,2\n']);
    expect(brief(records)).toEqual([
      [1, ['ok', '1'], 'ok,1'],
      [2, 'invalid_csv', '"unterminated,AAA\nlater,2'],
    ]);
    expect(records[1]!.refusal!.detail).toBe('not a CSV record: a quote is not closed');
  });

  test('every cut of the input into two chunks, and one character a chunk, gives the same records', () => {
    const input =
      '\uFEFFsymbol,"time\nstamp",note\r\n' +
      'AAPL,"2026-11-02T14:30:00Z","say ""hi"",\r\nthere"\r\n' +
      '\r\n' +
      '"bad"x,y\n' +
      'MSFT,2026,"é😀, ""q"""\n' +
      '"a""",b\r' +
      '\n"open,"\n""""\n';
    const whole = read([input]);
    expect(brief(whole)).toEqual([
      [1, ['symbol', 'time\nstamp', 'note'], 'symbol,"time\nstamp",note'],
      [
        3,
        ['AAPL', '2026-11-02T14:30:00Z', 'say "hi",\r\nthere'],
        'AAPL,"2026-11-02T14:30:00Z","say ""hi"",\r\nthere"',
      ],
      [5, [''], ''],
      [6, 'invalid_csv', '"bad"x,y'],
      [7, ['MSFT', '2026', 'é😀, "q"'], 'MSFT,2026,"é😀, ""q"""'],
      [8, ['a"', 'b'], '"a""",b'],
      [9, ['open,'], '"open,"'],
      [10, ['"'], '""""'],
    ]);
    for (let cut = 0; cut <= input.length; cut++) {
      expect([cut, brief(read([input.slice(0, cut), input.slice(cut)]))]).toEqual([cut, brief(whole)]);
    }
    expect(brief(read([...input]))).toEqual(brief(whole));
  });
});

/** A seeded generator (mulberry32): a failing case reproduces from the seed in its message. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('RecordReader, CSV written independently, cut at random', () => {
  const ALPHABET = ['a', 'b', ',', '"', '\n', '\r', ' ', 'é', '😀'];
  test.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'seed %i: every record comes back with its fields and its line',
    (seed) => {
      const next = random(seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!;
      const records = Array.from({ length: 200 }, () =>
        Array.from({ length: 1 + Math.floor(next() * 4) }, () =>
          Array.from({ length: Math.floor(next() * 6) }, () => pick(ALPHABET)).join(''),
        ),
      );
      // RFC 4180's writer: a field holding a comma, a quote or a line end is quoted, its quotes doubled.
      const field = (f: string) => (/[",\r\n]/.test(f) ? `"${f.replace(/"/g, '""')}"` : f);
      let text = '';
      const lines: number[] = [];
      for (const r of records) {
        lines.push(text.split('\n').length);
        text += r.map(field).join(',') + pick(['\n', '\r\n']);
      }
      const cuts = Array.from({ length: 30 }, () => Math.floor(next() * text.length)).sort((x, y) => x - y);
      const chunks = [0, ...cuts].map((at, k) => text.slice(at, [...cuts, text.length][k]));
      const got = read(chunks);
      expect({ seed, got: got.map((r) => [r.line, r.fields]) }).toEqual({
        seed,
        got: records.map((r, k) => [lines[k], r]),
      });
    },
  );
});

describe('RecordReader, a record longer than maxChars', () => {
  test('refused as record_too_long with its line, shown by its start; the records after it are read', () => {
    const long = 'x'.repeat(150);
    const records = read([`a,b\n"${long}\n${long}",c\nd,e\n${long}`], 'csv', 100);
    expect(brief(records)).toEqual([
      [1, ['a', 'b'], 'a,b'],
      // Shown: its start, as far as it had been read when it passed the limit (here, its first field).
      [2, 'record_too_long', `"${long}\n${long}"…`],
      [4, ['d', 'e'], 'd,e'],
      [5, 'record_too_long', long + '…'],
    ]);
    expect(records[1]!.refusal!.detail).toBe('the record starting at line 2 is longer than 100 characters');
  });

  test('exactly maxChars is read; one more is refused (a CR before the line end not counted apart)', () => {
    expect(brief(read(['x'.repeat(100) + '\n' + 'y'.repeat(101) + '\n'], 'csv', 100))).toEqual([
      [1, ['x'.repeat(100)], 'x'.repeat(100)],
      [2, 'record_too_long', 'y'.repeat(101) + '…'],
    ]);
  });

  test('a 5 MB line in 64 KiB chunks: refused, with bounded memory, each character looked at once', () => {
    const chunk = 'ab,"c""d",'.repeat(6554); // 65,540 characters: commas and escaped quotes, no line end
    const reader = new RecordReader('csv');
    const records: FileRecord[] = [];
    let total = 0;
    let mostHeld = 0;
    for (let k = 0; total < 5_000_000; k++) {
      records.push(...reader.push(chunk));
      total += chunk.length;
      mostHeld = Math.max(mostHeld, reader.retained);
    }
    records.push(...reader.push('\nnext,1\n'), ...reader.end());
    total += 8;
    expect(brief(records).map(([line, what]) => [line, what])).toEqual([
      [1, 'record_too_long'],
      [2, ['next', '1']],
    ]);
    expect(records[0]!.text).toHaveLength(TEXT_KEPT + 1);
    // Held: at most the record's text and fields up to the limit, and one chunk beyond it.
    expect(mostHeld).toBeLessThanOrEqual(2 * (MAX_RECORD_CHARS + chunk.length));
    expect(reader.retained).toBe(0);
    expect(reader.scanned).toBe(total);
  });

  test('lines: the same limit; a 5 MB JSON line pushed at once is refused without being held', () => {
    const reader = new RecordReader('lines');
    const records = [...reader.push('{"a":"' + 'z'.repeat(5_000_000) + '"}\n{"b":1}\n'), ...reader.end()];
    expect(brief(records).map(([line, what]) => [line, what])).toEqual([
      [1, 'record_too_long'],
      [2, ['{"b":1}']],
    ]);
    expect(reader.retained).toBe(0);
  });
});

describe('RecordReader, lines', () => {
  test('a record per line: quotes and commas are text, CRLF and a missing last line end as in CSV', () => {
    expect(brief(read(['{"a":"x,\\"y"}\r\n"open\n\nlast'], 'lines'))).toEqual([
      [1, ['{"a":"x,\\"y"}'], '{"a":"x,\\"y"}'],
      [2, ['"open'], '"open'],
      [3, [''], ''],
      [4, ['last'], 'last'],
    ]);
  });

  test('a BOM is kept (as before: such a JSON line is refused by the contract)', () => {
    expect(read(['\uFEFF{}\n'], 'lines')[0]!.text).toBe('\uFEFF{}');
  });
});

describe('readRecords', () => {
  test('decodes UTF-8 split anywhere across the stream’s chunks', async () => {
    const bytes = Buffer.from('s,n\n"é😀\nx",1\n', 'utf8');
    const chunks = [...bytes].map((b) => Buffer.from([b])); // one byte a chunk
    const records: FileRecord[] = [];
    for await (const r of readRecords(Readable.from(chunks), 'csv')) records.push(r);
    expect(brief(records)).toEqual([
      [1, ['s', 'n'], 's,n'],
      [2, ['é😀\nx', '1'], '"é😀\nx",1'],
    ]);
  });
});
