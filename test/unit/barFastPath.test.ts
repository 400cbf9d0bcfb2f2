/**
 * decodeBar's fast path (a plain bar read without JSON.parse) against the general path, on the same
 * bytes: the same result (bar, text, rejection) for every message, whichever path reads it. Messages are
 * generated (every field in many spellings, optional fields present, null or absent, keys in any order,
 * whitespace anywhere JSON allows it) and mutated (characters deleted, inserted, replaced), from a fixed
 * seed. Each group also checks that the fast path did read a share of its messages, so the comparison
 * cannot pass by never taking it.
 */
import { decodeBar, decodeBarGeneral } from '../../src/contract/bar';
import { isPlainBar } from '../../src/contract/jsonScan';
import { mulberry32 } from '../../src/demo/random';

const NOW = Date.UTC(2026, 11, 3, 12, 0);

const rng = mulberry32;

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rand, n: number) => Math.floor(r() * n);

/** A price spelled many ways: integers, short and long decimals, exponents, -0, and odd ones. */
function priceText(r: Rand): string {
  switch (int(r, 9)) {
    case 0:
      return String(int(r, 1000));
    case 1:
      return (int(r, 100000) / 100).toString();
    case 2:
      return (r() * 1000).toString(); // up to 17 significant digits
    case 3:
      return `${int(r, 1000)}.${'0'.repeat(int(r, 4))}${int(r, 1000)}`; // trailing/leading zeros in the fraction
    case 4:
      return pick(r, ['1e2', '1E+2', '15e-1', '0.5e1', '-0', '0.0', '-0.0', '1e-7', '2.5E-3']);
    case 5:
      return `${int(r, 10)}.${String(int(r, 1e9)).padStart(9, '0')}${String(int(r, 1e6)).padStart(6, '0')}`; // 16 digits
    case 6:
      return pick(r, ['1e400', '-1e400', '123456789012345678', '0.1', '0.30000000000000004', '5e-324']);
    case 7:
      return `-${(int(r, 100000) / 1000).toString()}`;
    default:
      return String(r() * 10 ** int(r, 25));
  }
}

/** A timestamp spelled as ISO-8601 (several forms) or as epoch milliseconds. */
function timestampText(r: Rand): string {
  const minute = Date.UTC(2026, 10, 24, 14, 0) + int(r, 5000) * 60_000;
  switch (int(r, 7)) {
    case 0:
      return JSON.stringify(new Date(minute).toISOString());
    case 1:
      return JSON.stringify(new Date(minute).toISOString().replace('.000Z', 'Z'));
    case 2:
      return String(minute);
    case 3:
      return String(minute + int(r, 3) * 17); // unaligned sometimes
    case 4:
      return pick(r, [
        '"2026-11-24T09:31:00-05:00"',
        '"2026-11-24T14:31Z"',
        '"not a time"',
        '1732000000',
        '1.7e12',
      ]);
    case 5:
      return `"${new Date(minute).toISOString().replace('Z', '+00:00')}"`;
    default:
      return String(minute + 48 * 3_600_000 * int(r, 2)); // in the future sometimes
  }
}

function symbolText(r: Rand): string {
  switch (int(r, 6)) {
    case 0:
      return JSON.stringify(pick(r, ['AAPL', 'MSFT', 'BRK.B', 'X', 'A'.repeat(32), 'A'.repeat(33)]));
    case 1:
      return JSON.stringify(pick(r, ['A"B', 'A\\B', 'A B', '', 'Ä', 'AB\n'])); // escapes, rule breakers
    case 2:
      return pick(r, ['"\\u0041APL"', '42', 'null', '["AAPL"]', '{"s":"AAPL"}']);
    default: {
      let s = '';
      for (let i = 1 + int(r, 6); i > 0; i--) s += String.fromCharCode(0x41 + int(r, 26));
      return JSON.stringify(s);
    }
  }
}

/** Whitespace JSON allows between tokens (usually none). */
const ws = (r: Rand) => (r() < 0.8 ? '' : pick(r, [' ', '  ', '\n', '\t', '\r\n', ' \t ']));

/** One message: the contract's fields (sometimes with an optional, an extra, a missing or a repeated one). */
function message(r: Rand): string {
  const fields: [string, string][] = [
    ['symbol', symbolText(r)],
    ['timestamp', timestampText(r)],
    ['open', priceText(r)],
    ['high', priceText(r)],
    ['low', priceText(r)],
    ['close', priceText(r)],
    ['volume', pick(r, [String(int(r, 1e6)), '0', '-1', '1.5', '1e3', '9007199254740993', '"10"', 'null'])],
  ];
  // Mostly consistent prices, so that many messages are valid bars (and go all the way through).
  if (r() < 0.6) {
    const base = 1 + int(r, 50000) / 100;
    const spread = int(r, 300) / 100;
    fields[2]![1] = String(base);
    fields[3]![1] = String(base + spread);
    fields[4]![1] = String(Math.max(0, base - spread));
    fields[5]![1] = (base + spread / 2).toFixed(int(r, 4));
    if (r() < 0.7)
      fields[1]![1] = JSON.stringify(new Date(Date.UTC(2026, 10, 24) + int(r, 999) * 60_000).toISOString());
    if (r() < 0.7) fields[0]![1] = JSON.stringify(`S${int(r, 1000)}`);
    if (r() < 0.7) fields[6]![1] = String(int(r, 1e6));
  }
  const vwap = int(r, 4);
  if (vwap === 1) fields.push(['vwap', 'null']);
  if (vwap >= 2) fields.push(['vwap', r() < 0.7 ? fields[5]![1] : priceText(r)]);
  const revision = int(r, 5);
  if (revision === 1) fields.push(['revision', 'null']);
  if (revision === 2) fields.push(['revision', String(int(r, 10))]);
  if (revision === 3) fields.push(['revision', pick(r, ['-1', '1.5', '"2"', 'true', '1e1'])]);
  const odd = int(r, 12);
  if (odd === 0)
    fields.push([pick(r, ['extra', 'source', '__proto__']), pick(r, ['1', '"x"', 'true', '{}'])]);
  if (odd === 1) fields.splice(int(r, fields.length), 1); // a required field missing
  if (odd === 2) fields.push(pick(r, fields)); // a key repeated
  if (odd === 3) fields[int(r, 7)]![1] = 'null';
  if (odd === 4) fields[int(r, fields.length)]![0] = pick(r, ['Symbol', 'open ', 'vwa\\u0070', 'high\\n']);
  for (let i = fields.length - 1; i > 0 && r() < 0.3; i--) {
    const j = int(r, i + 1);
    [fields[i], fields[j]] = [fields[j]!, fields[i]!];
  }
  const body = fields.map(([k, v]) => `${ws(r)}"${k}"${ws(r)}:${ws(r)}${v}${ws(r)}`).join(',');
  return `${ws(r)}{${body}}${ws(r)}`;
}

/** A message with a few random edits: characters deleted, inserted or replaced. */
function mutate(r: Rand, text: string): string {
  let s = text;
  for (let n = 1 + int(r, 3); n > 0; n--) {
    const at = int(r, s.length + 1);
    const ch = pick(r, [
      '"',
      ',',
      ':',
      '{',
      '}',
      '[',
      ']',
      '\\',
      ' ',
      '0',
      '9',
      '.',
      '-',
      'e',
      'n',
      'x',
      '\u0001',
      'é',
    ]);
    const op = int(r, 3);
    if (op === 0) s = s.slice(0, at) + s.slice(at + 1);
    else if (op === 1) s = s.slice(0, at) + ch + s.slice(at);
    else s = s.slice(0, at) + ch + s.slice(at + 1);
  }
  return s;
}

/** Compares both paths on each text; counts the valid bars, and the texts the fast path reads. */
function compare(texts: string[]): { fast: number; valid: number } {
  let fast = 0;
  let valid = 0;
  for (const text of texts) {
    const bytes = Buffer.from(text, 'utf8');
    const general = decodeBarGeneral(bytes, NOW);
    const result = decodeBar(bytes, NOW);
    if (!Object.is(JSON.stringify(result), JSON.stringify(general)) || !sameNumbers(result, general)) {
      throw new Error(
        `paths differ for ${JSON.stringify(text)}:\n${JSON.stringify(result)}\n${JSON.stringify(general)}`,
      );
    }
    if (result.ok) valid++;
    if (isPlainBar(text)) fast++;
  }
  return { fast, valid };
}

/** Numbers compared with Object.is (JSON.stringify prints -0 as 0). */
function sameNumbers(a: ReturnType<typeof decodeBar>, b: ReturnType<typeof decodeBar>): boolean {
  if (!a.ok || !b.ok) return a.ok === b.ok;
  return (Object.keys(a.bar) as (keyof typeof a.bar)[]).every((k) => Object.is(a.bar[k], b.bar[k]));
}

describe('decodeBar fast path = general path', () => {
  test('20,000 generated messages', () => {
    const r = rng(20261203);
    const texts = Array.from({ length: 20_000 }, () => message(r));
    const { fast, valid } = compare(texts);
    expect(valid).toBeGreaterThan(3000);
    expect(fast).toBeGreaterThan(5000); // 8,074 with this seed (4,138 valid)
  });

  test('20,000 mutated messages', () => {
    const r = rng(7);
    const texts = Array.from({ length: 20_000 }, () => mutate(r, message(r)));
    const { fast } = compare(texts);
    expect(fast).toBeGreaterThan(500); // 1,060 with this seed
  });

  test('what the fast path reads and what it leaves to JSON.parse', () => {
    const plain =
      '{"symbol":"AAPL","timestamp":"2026-11-24T14:31:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}';
    expect(isPlainBar(plain)).toBe(true);
    expect(isPlainBar(` \n${plain.replace(/,/g, ' ,\t').replace(/:/g, ': ')}\r\n`)).toBe(true);
    expect(isPlainBar(plain.replace('}', ',"vwap":null,"revision":3}'))).toBe(true);
    expect(isPlainBar(plain.replace('"volume":10', '"volume":1e1'))).toBe(true);
    for (const other of [
      plain.replace('}', ',"extra":1}'), // another key
      plain.replace('}', ',"open":1}'), // a repeated key
      plain.replace('AAPL', 'A\\u0041PL'), // an escape
      plain.replace('"volume":10', '"volume":null'), // a required field null
      plain.replace('"open":1', '"open":"1"'), // a string where a number goes
      plain.replace('"symbol":"AAPL"', '"symbol":7'),
      plain.replace('"open":1', '"open":01'), // not JSON
      plain.replace('"open":1', '"open":1.'),
      plain + ' x',
      plain.replace('}', ',}'),
      '{}',
    ]) {
      expect(isPlainBar(other)).toBe(false);
    }
  });

  test('bytes of 0x80 and above: read as Latin-1 by the fast path, decided as UTF-8 by the general one', () => {
    const plain = Buffer.from(
      '{"symbol":"AAPL","timestamp":"2026-11-24T14:31:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}',
    );
    const swap = (from: string, to: number[]) => {
      const at = plain.indexOf(from);
      return Buffer.concat([plain.subarray(0, at), Buffer.from(to), plain.subarray(at + from.length)]);
    };
    const cases: [Buffer, string][] = [
      [swap('AAPL', [0x41, 0xc3, 0xa9]), 'invalid_symbol'], // "Aé": valid UTF-8, not printable ASCII
      [swap('AAPL', [0x41, 0xff]), 'invalid_utf8'],
      [swap('AAPL', [0xe2, 0x82, 0xac]), 'invalid_symbol'], // "€", whose Latin-1 reading has no C1 byte
      [swap('2026', [0xd9, 0xa2, 0x30, 0x32, 0x36]), 'invalid_timestamp'], // an Arabic-Indic digit
      [swap(',"open"', [0xc2, 0xa0, 0x2c, 0x22, 0x6f, 0x70, 0x65, 0x6e, 0x22]), 'invalid_json'], // a no-break space
      [swap('{', [0xef, 0xbb, 0xbf, 0x7b]), 'ok'], // a byte-order mark: the UTF-8 decoder drops it
    ];
    for (const [bytes, reason] of cases) {
      const fast = decodeBar(bytes, NOW);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(decodeBarGeneral(bytes, NOW)));
      expect(fast.ok ? 'ok' : fast.rejection.reason).toBe(reason);
    }
  });

  test('numbers read as JSON.parse reads them, exponents and long ones included', () => {
    const r = rng(99);
    for (let i = 0; i < 20_000; i++) {
      const n =
        i < 10
          ? [
              '0',
              '-0',
              '1e400',
              '5e-324',
              '9007199254740993',
              '0.1',
              '1.0000000000000002',
              '123456789012345',
              '1234567890123456',
              '0.000000000000000001',
            ][i]!
          : priceText(r);
      // Every price the same number: a valid bar whenever it is finite, so its value shows in the Bar.
      const text = `{"symbol":"A","timestamp":"2026-11-24T14:31:00Z","open":${n},"high":${n},"low":${n},"close":${n},"volume":0}`;
      expect(isPlainBar(text)).toBe(true);
      const general = decodeBarGeneral(Buffer.from(text), NOW);
      const fast = decodeBar(Buffer.from(text), NOW);
      expect(general.ok).toBe(Number.isFinite(Number(n)));
      expect(sameNumbers(fast, general)).toBe(true);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(general));
    }
  });
});
