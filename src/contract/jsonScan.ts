/**
 * The JSON text scanners of the contract (bar.ts holds its rules):
 * - scanPlainBar: decodeBar's fast path, a flat bar object read in one pass into a PlainBarScan;
 * - countTopLevelKeys and findDuplicateTopLevelKey: the duplicate-key rule, on text JSON.parse accepted.
 * Pure functions of their text, but for PlainBarScan: the record scanPlainBar writes, owned by its caller.
 */

// ---- the fast path: a plain bar ----------------------------------------------------------------
//
// Nearly every message is a flat JSON object of the contract's fields with plain values. scanPlainBar
// reads such a text in one pass into a PlainBarScan, without JSON.parse's object and strings or the
// duplicate-key count. It gives up (returns false) on anything else: another key, a key seen twice, a
// string with an escape, a value of a kind the field does not take, a required field null, or text that
// is not JSON; decodeBar then takes the general path (JSON.parse), which decides and explains. What it
// does accept, it reads to the same values JSON.parse would (numbers: see numberAt), so both paths give
// the same result; test/unit/barFastPath.test.ts compares them on generated and mutated messages.

const F_SYMBOL = 1;
const F_TIMESTAMP = 2;
const F_OPEN = 4;
const F_HIGH = 8;
const F_LOW = 16;
const F_CLOSE = 32;
const F_VOLUME = 64;
const F_VWAP = 128;
const F_REVISION = 256;
const F_TRADE_COUNT = 512;
const F_REQUIRED = F_SYMBOL | F_TIMESTAMP | F_OPEN | F_HIGH | F_LOW | F_CLOSE | F_VOLUME;

/**
 * What scanPlainBar read: the fields of the contract (vwap, revision and trade_count null when absent), and where the
 * last number it read ends. Mutable, written over by every scan: one per decoder (bar.ts `BarDecoder`),
 * used by one decode at a time. A class, so that every scan record has the one shape the rules read.
 */
export class PlainBarScan {
  symbol = '';
  timestamp: string | number = '';
  open = 0;
  high = 0;
  low = 0;
  close = 0;
  volume = 0;
  vwap: number | null = null;
  revision: number | null = null;
  tradeCount: number | null = null;
  /** Where the number numberAt read last ends. */
  numberEnd = 0;
}

/** Whether `word` is in `s` at `at` (`s` holds at least word.length characters from there). */
function wordAt(s: string, at: number, word: string): boolean {
  for (let i = 1; i < word.length; i++) if (s.charCodeAt(at + i) !== word.charCodeAt(i)) return false;
  return true; // the first character was matched by the caller
}

/** The field a key (the text between `from` and `to`) names, or 0 for any other key. */
function fieldOf(s: string, from: number, to: number): number {
  const length = to - from;
  switch (s.charCodeAt(from)) {
    case 0x73 /* s */:
      return length === 6 && wordAt(s, from, 'symbol') ? F_SYMBOL : 0;
    case 0x74 /* t */:
      if (length === 9) return wordAt(s, from, 'timestamp') ? F_TIMESTAMP : 0;
      return length === 11 && wordAt(s, from, 'trade_count') ? F_TRADE_COUNT : 0;
    case 0x6f /* o */:
      return length === 4 && wordAt(s, from, 'open') ? F_OPEN : 0;
    case 0x68 /* h */:
      return length === 4 && wordAt(s, from, 'high') ? F_HIGH : 0;
    case 0x6c /* l */:
      return length === 3 && wordAt(s, from, 'low') ? F_LOW : 0;
    case 0x63 /* c */:
      return length === 5 && wordAt(s, from, 'close') ? F_CLOSE : 0;
    case 0x76 /* v */:
      if (length === 6) return wordAt(s, from, 'volume') ? F_VOLUME : 0;
      return length === 4 && wordAt(s, from, 'vwap') ? F_VWAP : 0;
    case 0x72 /* r */:
      return length === 8 && wordAt(s, from, 'revision') ? F_REVISION : 0;
    default:
      return 0;
  }
}

/** Past JSON whitespace from `i`. */
function skipSpace(s: string, i: number): number {
  for (;;) {
    const c = s.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else return i;
  }
}

/** 10^0 … 10^15, as literals (each exactly a double; numberAt divides by at most 10^15). */
const EXACT_POWERS_OF_TEN = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/**
 * The JSON number that starts at `from` (its end in `out.numberEnd`), or NaN when what starts there is not
 * one (a JSON number is never NaN). A number of at most 15 digits and no exponent is its digits as an
 * integer (exact below 2^53) divided by the power of ten its fraction has (exact: at most 10^15): one
 * correctly rounded division of exact operands, hence the same double as any correct decimal
 * conversion, JSON.parse's included. A longer one, or one with an exponent, goes through Number().
 */
function numberAt(s: string, from: number, out: PlainBarScan): number {
  let i = from;
  const negative = s.charCodeAt(i) === 0x2d; /* - */
  if (negative) i++;
  let c = s.charCodeAt(i);
  let mantissa = 0;
  let digits = 0;
  let fraction = 0;
  if (c === 0x30 /* 0 */) {
    c = s.charCodeAt(++i);
    digits = 1;
  } else if (c >= 0x31 && c <= 0x39) {
    do {
      mantissa = mantissa * 10 + (c - 0x30);
      digits++;
      c = s.charCodeAt(++i);
    } while (c >= 0x30 && c <= 0x39);
  } else {
    return NaN;
  }
  if (c === 0x2e /* . */) {
    c = s.charCodeAt(++i);
    if (!(c >= 0x30 && c <= 0x39)) return NaN;
    do {
      mantissa = mantissa * 10 + (c - 0x30);
      digits++;
      fraction++;
      c = s.charCodeAt(++i);
    } while (c >= 0x30 && c <= 0x39);
  }
  if (c === 0x65 || c === 0x45 /* e E */) {
    c = s.charCodeAt(++i);
    if (c === 0x2b || c === 0x2d) c = s.charCodeAt(++i);
    if (!(c >= 0x30 && c <= 0x39)) return NaN;
    do c = s.charCodeAt(++i);
    while (c >= 0x30 && c <= 0x39);
    out.numberEnd = i;
    return Number(s.slice(from, i));
  }
  out.numberEnd = i;
  if (digits > 15) return Number(s.slice(from, i));
  const value = fraction > 0 ? mantissa / EXACT_POWERS_OF_TEN[fraction]! : mantissa;
  return negative ? -value : value;
}

/**
 * Reads a plain bar message into `out`; false when the text is anything else (see above), `out` then
 * holding whatever was read before it gave up. A text with a backslash anywhere goes to the general
 * path, so a string ends at the next quote. A control character inside a string is not looked for: it
 * is not JSON, and no string the fast path keeps can hold one and pass (keys must be field names, the
 * symbol printable ASCII, the timestamp ISO-8601), so the general path decides those too.
 */
export function scanPlainBar(s: string, out: PlainBarScan): boolean {
  if (s.indexOf('\\') >= 0) return false;
  out.vwap = null;
  out.revision = null;
  out.tradeCount = null;
  let seen = 0;
  let i = skipSpace(s, 0);
  if (s.charCodeAt(i) !== 0x7b /* { */) return false;
  i = skipSpace(s, i + 1);
  for (;;) {
    if (s.charCodeAt(i) !== 0x22) return false;
    const keyEnd = s.indexOf('"', i + 1);
    if (keyEnd < 0) return false;
    const field = fieldOf(s, i + 1, keyEnd);
    if (field === 0 || (seen & field) !== 0) return false;
    seen |= field;
    i = keyEnd + 1;
    if (s.charCodeAt(i) !== 0x3a /* : */) {
      i = skipSpace(s, i);
      if (s.charCodeAt(i) !== 0x3a) return false;
    }
    i = skipSpace(s, i + 1);
    const c = s.charCodeAt(i);
    if (c === 0x22 /* a string */) {
      if (field !== F_SYMBOL && field !== F_TIMESTAMP) return false;
      const end = s.indexOf('"', i + 1);
      if (end < 0) return false;
      if (field === F_SYMBOL) out.symbol = s.slice(i + 1, end);
      else out.timestamp = s.slice(i + 1, end);
      i = end + 1;
    } else if (c === 0x6e /* n */) {
      if ((field !== F_VWAP && field !== F_REVISION && field !== F_TRADE_COUNT) || !s.startsWith('null', i))
        return false;
      i += 4; // null: as if absent
    } else {
      if (field === F_SYMBOL) return false;
      const v = numberAt(s, i, out);
      if (v !== v) return false; // NaN: not a number
      if (field === F_TIMESTAMP) out.timestamp = v;
      else if (field === F_OPEN) out.open = v;
      else if (field === F_HIGH) out.high = v;
      else if (field === F_LOW) out.low = v;
      else if (field === F_CLOSE) out.close = v;
      else if (field === F_VOLUME) out.volume = v;
      else if (field === F_VWAP) out.vwap = v;
      else if (field === F_REVISION) out.revision = v;
      else out.tradeCount = v;
      i = out.numberEnd;
    }
    let next = s.charCodeAt(i);
    if (next !== 0x2c && next !== 0x7d) {
      i = skipSpace(s, i);
      next = s.charCodeAt(i);
    }
    if (next === 0x2c /* , */) i = skipSpace(s, i + 1);
    else if (next === 0x7d /* } */)
      return skipSpace(s, i + 1) === s.length && (seen & F_REQUIRED) === F_REQUIRED;
    else return false;
  }
}

/** Whether decodeBar's fast path reads this (ASCII) text, rather than JSON.parse: for tests. */
export function isPlainBar(text: string): boolean {
  return scanPlainBar(text, new PlainBarScan());
}

// ---- duplicate keys ------------------------------------------------------------------------------
//
// JSON.parse keeps the last of duplicate keys; the contract refuses a message that has any.

/**
 * How many keys the top-level object of `text` (valid JSON whose value is an object) spells out, duplicates
 * included. Walks the text exactly as findDuplicateTopLevelKey does, without unescaping or remembering keys.
 */
export function countTopLevelKeys(text: string): number {
  let count = 0;
  let depth = 0;
  let i = 0;
  const n = text.length;
  let expectKey = false;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Skip a string literal: its end is the first quote not escaped by an odd run of backslashes.
      let j = text.indexOf('"', i + 1);
      for (;;) {
        if (j < 0) return count; // unterminated: not valid JSON, cannot happen after JSON.parse
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c /* \ */) k--;
        if ((j - 1 - k) % 2 === 0) break;
        j = text.indexOf('"', j + 1);
      }
      if (depth === 1 && expectKey) {
        count++;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1 && c === 0x7b) expectKey = true;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
    i++;
  }
  return count;
}

/**
 * JSON.parse silently keeps the last of duplicate keys; a producer sending {"close":1,"close":2} has a bug
 * we should surface rather than guess. Scans the (already valid) JSON text for the top-level object's keys.
 * Returns the first duplicated top-level key, or null.
 */
export function findDuplicateTopLevelKey(text: string): string | null {
  const seen = new Set<string>();
  let depth = 0;
  let i = 0;
  const n = text.length;
  let expectKey = false;
  while (i < n) {
    const c = text[i];
    if (c === '"') {
      // Read a string literal.
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        // Unescape only when needed: most keys have no backslash and are their own text.
        const raw = text.slice(i + 1, j);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, j + 1)) as string) : raw;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      depth++;
      if (depth === 1 && c === '{') expectKey = true;
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ',' && depth === 1) {
      expectKey = true;
    }
    i++;
  }
  return null;
}
