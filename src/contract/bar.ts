/**
 * The message contract: decode and validate one Kafka message value into a Bar.
 *
 * Pure functions only (no I/O, no clock unless passed in), so every rule is unit-tested.
 * A message is either a Bar or a Rejection carrying a stable `reason` (bounded set, used as a
 * metric label and a dead-letter header) and a human `detail` naming the field and the rule.
 */
import { isAscii } from 'node:buffer';

/**
 * A validated 1-minute bar. `timestampMs` is the bar start in epoch milliseconds (UTC). `revision` is
 * the producer's optional version number of the bar (0 when the message has none): a higher revision
 * replaces a lower one whatever the record timestamps (README, "Which version wins").
 */
export interface Bar {
  symbol: string;
  timestampMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
  revision: number;
}

export const REJECT_REASONS = [
  'null_value',
  'empty_value',
  'too_large',
  'invalid_utf8',
  'invalid_json',
  'duplicate_key',
  'not_object',
  'missing_field',
  'wrong_type',
  'invalid_symbol',
  'invalid_timestamp',
  'timestamp_in_seconds',
  'timestamp_too_early',
  'unaligned_timestamp',
  'future_timestamp',
  'non_finite',
  'invalid_volume',
  'ohlc_inconsistent',
  'vwap_out_of_range',
  'invalid_revision',
  // Not a contract rule: the database refused a row that passed the contract (SQLSTATE class 22/23).
  'database_rejected',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface Rejection {
  reason: RejectReason;
  detail: string;
}

export type DecodeResult = { ok: true; bar: Bar } | { ok: false; rejection: Rejection };

/** Values above this size are rejected before parsing: a bar is ~150 bytes; 64 KiB leaves room for extras. */
export const MAX_VALUE_BYTES = 64 * 1024;
export const MAX_SYMBOL_LENGTH = 32;
export const MINUTE_MS = 60_000;
/** A bar may start at most this far after the consumer's clock. */
export const MAX_FUTURE_MS = 24 * 60 * 60 * 1000;
/** Earliest representable bar start (1900-01-01T00:00:00Z): anything earlier is a mistake, not history. */
export const MIN_TIMESTAMP_MS = Date.UTC(1900, 0, 1);
/**
 * The default earliest bar start of the service (BARS_MIN_TIMESTAMP): 1990-01-01, before the first
 * electronic minute bars of any market; history loads of older data widen it.
 */
export const DEFAULT_MIN_BAR_MS = Date.UTC(1990, 0, 1);
/**
 * Numeric timestamps below this (1973-03-03 as epoch ms) can only be epoch seconds sent by mistake
 * (1e11 seconds is the year 5138): rejected as `timestamp_in_seconds` rather than stored in 1970.
 */
export const SECONDS_LIMIT = 1e11;
/** Latest representable bar start (9999-12-31T23:59Z); beyond it neither ISO-8601 nor Date can express it. */
export const MAX_TIMESTAMP_MS = Date.UTC(9999, 11, 31, 23, 59);

const utf8 = new TextDecoder('utf-8', { fatal: true });

function reject(reason: RejectReason, detail: string): { ok: false; rejection: Rejection } {
  return { ok: false, rejection: { reason, detail } };
}

/**
 * Decode a raw message value. `nowMs` is the consumer's clock, used only for the future-timestamp rule;
 * `minTimestampMs` is the earliest bar start accepted (BARS_MIN_TIMESTAMP; the default only refuses
 * what no timestamp can express).
 */
export function decodeBar(
  value: Buffer | Uint8Array | null,
  nowMs: number,
  minTimestampMs: number = MIN_TIMESTAMP_MS,
): DecodeResult {
  return decode(value, nowMs, minTimestampMs, true);
}

/** decodeBar without its fast path (see scanPlainBar): the reference the fast path is tested against. */
export function decodeBarGeneral(
  value: Buffer | Uint8Array | null,
  nowMs: number,
  minTimestampMs: number = MIN_TIMESTAMP_MS,
): DecodeResult {
  return decode(value, nowMs, minTimestampMs, false);
}

/** Whether decodeBar's fast path reads this (ASCII) text, rather than JSON.parse: for tests. */
export function isPlainBar(text: string): boolean {
  return scanPlainBar(text);
}

function decode(
  value: Buffer | Uint8Array | null,
  nowMs: number,
  minTimestampMs: number,
  fast: boolean,
): DecodeResult {
  if (value === null)
    return reject('null_value', 'value is null (tombstone); a bar message needs a JSON value');
  if (value.length === 0) return reject('empty_value', 'value is empty; a bar message needs a JSON value');
  if (value.length > MAX_VALUE_BYTES) {
    return reject('too_large', `value is ${value.length} bytes; the limit is ${MAX_VALUE_BYTES}`);
  }
  const buf = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.length);
  // Read as Latin-1 (one character per byte, no validation): for ASCII, the usual case, that is the text.
  let text = buf.toString('latin1');
  // The fast path runs before the ASCII check: it accepts only ASCII. Every character it does not check
  // against a fixed set (structure, keys, digits) is in the symbol or the timestamp, which checkFields
  // accepts only as printable ASCII / ISO-8601; a byte of 0x80 or above fails one of those, and the
  // message takes the general path below, which decodes it as UTF-8.
  if (fast && scanPlainBar(text)) {
    const s = scanned;
    const result = checkFields(
      s.symbol,
      s.timestamp,
      s.open,
      s.high,
      s.low,
      s.close,
      s.volume,
      s.vwap,
      s.revision,
      nowMs,
      minTimestampMs,
    );
    if (result.ok) return result;
    // A rule refused it: the general path below says so, exactly as for any other message.
  }
  if (!isAscii(buf)) {
    try {
      text = utf8.decode(buf);
    } catch {
      return reject('invalid_utf8', 'value is not valid UTF-8');
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return reject('invalid_json', `value is not JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return reject('not_object', `value must be a JSON object, got ${describe(parsed)}`);
  }
  // JSON.parse keeps one property per distinct key, so the text has a duplicated top-level key exactly when
  // it holds more top-level keys than the parsed object: only then look for which one (the slow scan).
  if (countTopLevelKeys(text) !== Object.keys(parsed).length) {
    const duplicate = findDuplicateTopLevelKey(text);
    if (duplicate !== null) {
      return reject(
        'duplicate_key',
        `field "${duplicate}" appears more than once; which one is meant is ambiguous`,
      );
    }
  }
  const result = validateFields(parsed as Record<string, unknown>, nowMs, minTimestampMs);
  return result;
}

// ---- the fast path: a plain bar ----------------------------------------------------------------
//
// Nearly every message is a flat JSON object of the contract's fields with plain values. scanPlainBar
// reads such a text in one pass into `scanned`, without JSON.parse's object and strings or the
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
const F_REQUIRED = F_SYMBOL | F_TIMESTAMP | F_OPEN | F_HIGH | F_LOW | F_CLOSE | F_VOLUME;

/** What scanPlainBar read (one module-level record: decoding is synchronous and never re-entered). */
const scanned = {
  symbol: '',
  timestamp: '' as string | number,
  open: 0,
  high: 0,
  low: 0,
  close: 0,
  volume: 0,
  vwap: null as number | null,
  revision: null as number | null,
};

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
      return length === 9 && wordAt(s, from, 'timestamp') ? F_TIMESTAMP : 0;
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

/** Where the number numberAt read last ends. */
let numberEnd = 0;

/**
 * The JSON number that starts at `from` (its end in `numberEnd`), or NaN when what starts there is not
 * one (a JSON number is never NaN). A number of at most 15 digits and no exponent is its digits as an
 * integer (exact below 2^53) divided by the power of ten its fraction has (exact: at most 10^15): one
 * correctly rounded division of exact operands, hence the same double as any correct decimal
 * conversion, JSON.parse's included. A longer one, or one with an exponent, goes through Number().
 */
function numberAt(s: string, from: number): number {
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
    numberEnd = i;
    return Number(s.slice(from, i));
  }
  numberEnd = i;
  if (digits > 15) return Number(s.slice(from, i));
  const value = fraction > 0 ? mantissa / EXACT_POWERS_OF_TEN[fraction]! : mantissa;
  return negative ? -value : value;
}

/**
 * Reads a plain bar message into `scanned`; false when the text is anything else (see above). A text
 * with a backslash anywhere goes to the general path, so a string ends at the next quote. A control
 * character inside a string is not looked for: it is not JSON, and no string the fast path keeps can
 * hold one and pass (keys must be field names, the symbol printable ASCII, the timestamp ISO-8601), so
 * the general path decides those too.
 */
function scanPlainBar(s: string): boolean {
  if (s.indexOf('\\') >= 0) return false;
  const out = scanned;
  out.vwap = null;
  out.revision = null;
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
      if ((field !== F_VWAP && field !== F_REVISION) || !s.startsWith('null', i)) return false;
      i += 4; // null: as if absent
    } else {
      if (field === F_SYMBOL) return false;
      const v = numberAt(s, i);
      if (v !== v) return false; // NaN: not a number
      if (field === F_TIMESTAMP) out.timestamp = v;
      else if (field === F_OPEN) out.open = v;
      else if (field === F_HIGH) out.high = v;
      else if (field === F_LOW) out.low = v;
      else if (field === F_CLOSE) out.close = v;
      else if (field === F_VOLUME) out.volume = v;
      else if (field === F_VWAP) out.vwap = v;
      else out.revision = v;
      i = numberEnd;
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

/** Validate an already-parsed object against the contract (exported for producers and tests). */
export function validateFields(
  o: Record<string, unknown>,
  nowMs: number,
  minTimestampMs: number = MIN_TIMESTAMP_MS,
): DecodeResult {
  // Each field is read once; a field that is absent, undefined or null is missing. Checked in contract order.
  const symbol = o.symbol;
  if (symbol === undefined || symbol === null) return missing('symbol');
  const timestamp = o.timestamp;
  if (timestamp === undefined || timestamp === null) return missing('timestamp');
  const open = o.open;
  if (open === undefined || open === null) return missing('open');
  const high = o.high;
  if (high === undefined || high === null) return missing('high');
  const low = o.low;
  if (low === undefined || low === null) return missing('low');
  const close = o.close;
  if (close === undefined || close === null) return missing('close');
  const volume = o.volume;
  if (volume === undefined || volume === null) return missing('volume');
  return checkFields(
    symbol,
    timestamp,
    open,
    high,
    low,
    close,
    volume,
    o.vwap,
    o.revision,
    nowMs,
    minTimestampMs,
  );
}

/**
 * The contract's rules on the fields of a message, in contract order, once the required ones are known
 * to be present (neither undefined nor null); `v` (vwap) and `r` (revision) may be absent.
 */
function checkFields(
  symbol: unknown,
  timestamp: unknown,
  open: unknown,
  high: unknown,
  low: unknown,
  close: unknown,
  volume: unknown,
  v: unknown,
  r: unknown,
  nowMs: number,
  minTimestampMs: number,
): DecodeResult {
  if (typeof symbol !== 'string')
    return reject('wrong_type', `symbol must be a string, got ${describe(symbol)}`);
  if (symbol.length < 1 || symbol.length > MAX_SYMBOL_LENGTH) {
    return reject('invalid_symbol', `symbol must be 1-${MAX_SYMBOL_LENGTH} characters, got ${symbol.length}`);
  }
  for (let i = 0; i < symbol.length; i++) {
    const c = symbol.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      return reject(
        'invalid_symbol',
        `symbol must be printable ASCII without whitespace; character ${i} is U+${c.toString(16).padStart(4, '0').toUpperCase()}`,
      );
    }
  }

  const ts = timestampToMs(timestamp);
  if (typeof ts !== 'number') return { ok: false, rejection: ts };
  const timestampMs = ts;
  if (typeof timestamp === 'number' && timestamp >= 0 && timestamp < SECONDS_LIMIT) {
    return reject(
      'timestamp_in_seconds',
      `timestamp ${timestamp} is below ${SECONDS_LIMIT}: epoch seconds, not the epoch milliseconds the contract takes (${timestamp * 1000}?)`,
    );
  }
  if (timestampMs < minTimestampMs) {
    return reject(
      'timestamp_too_early',
      `timestamp ${iso(timestampMs)} is before the earliest bar accepted, ${iso(minTimestampMs)} (BARS_MIN_TIMESTAMP)`,
    );
  }
  if (timestampMs % MINUTE_MS !== 0) {
    return reject('unaligned_timestamp', `timestamp must fall on a minute boundary, got ${iso(timestampMs)}`);
  }
  if (timestampMs > nowMs + MAX_FUTURE_MS) {
    return reject('future_timestamp', `timestamp ${iso(timestampMs)} is more than 24 h in the future`);
  }

  if (typeof open !== 'number' || !Number.isFinite(open)) return badPrice('open', open);
  if (typeof high !== 'number' || !Number.isFinite(high)) return badPrice('high', high);
  if (typeof low !== 'number' || !Number.isFinite(low)) return badPrice('low', low);
  if (typeof close !== 'number' || !Number.isFinite(close)) return badPrice('close', close);
  if (low > Math.min(open, close)) {
    return reject('ohlc_inconsistent', `low (${low}) must be <= min(open, close) (${Math.min(open, close)})`);
  }
  if (high < Math.max(open, close)) {
    return reject(
      'ohlc_inconsistent',
      `high (${high}) must be >= max(open, close) (${Math.max(open, close)})`,
    );
  }

  if (typeof volume !== 'number')
    return reject('wrong_type', `volume must be a number, got ${describe(volume)}`);
  if (!Number.isSafeInteger(volume) || volume < 0) {
    return reject('invalid_volume', `volume must be a non-negative safe integer, got ${volume}`);
  }

  let vwap: number | null = null;
  if (v !== undefined && v !== null) {
    if (typeof v !== 'number')
      return reject('wrong_type', `vwap must be a number or null, got ${describe(v)}`);
    if (!Number.isFinite(v)) return reject('non_finite', `vwap must be finite, got ${v}`);
    if (v < low || v > high) {
      return reject('vwap_out_of_range', `vwap (${v}) must be within [low, high] = [${low}, ${high}]`);
    }
    vwap = v + 0;
  }

  let revision = 0;
  if (r !== undefined && r !== null) {
    if (typeof r !== 'number')
      return reject('wrong_type', `revision must be a number or null, got ${describe(r)}`);
    if (!Number.isSafeInteger(r) || r < 0) {
      return reject('invalid_revision', `revision must be a non-negative safe integer, got ${r}`);
    }
    revision = r + 0;
  }

  // Normalise -0 to 0: PostgreSQL and JSON consumers treat them alike, and it keeps replays byte-identical.
  return {
    ok: true,
    bar: {
      symbol,
      timestampMs,
      open: open + 0,
      high: high + 0,
      low: low + 0,
      close: close + 0,
      volume,
      vwap,
      revision,
    },
  };
}

function missing(field: string): DecodeResult {
  return reject('missing_field', `field "${field}" is required`);
}

/** The rejection for a price that is not a finite number (callers check `typeof` and finiteness first). */
function badPrice(field: string, v: unknown): DecodeResult {
  if (typeof v !== 'number') return reject('wrong_type', `${field} must be a number, got ${describe(v)}`);
  return reject('non_finite', `${field} must be finite, got ${v}`);
}

type TimestampResult = { ok: true; ms: number } | { ok: false; rejection: Rejection };

/** Parse the `timestamp` field: an ISO-8601 string with a zone, or epoch milliseconds (a JSON number). */
export function parseTimestamp(v: unknown): TimestampResult {
  const r = timestampToMs(v);
  return typeof r === 'number' ? { ok: true, ms: r } : { ok: false, rejection: r };
}

function badTimestamp(detail: string): Rejection {
  return { reason: 'invalid_timestamp', detail };
}

// The last ISO-8601 timestamp read, and its epoch ms: the bars of a partition come minute by minute, so
// consecutive messages mostly spell the same minute, and a string comparison replaces the parse.
let lastIso = '';
let lastIsoMs = 0;

/** parseTimestamp without the result wrapper (no allocation on success): epoch ms, or the rejection. */
function timestampToMs(v: unknown): number | Rejection {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v))
      return badTimestamp(`timestamp in epoch milliseconds must be an integer, got ${v}`);
    ms = v;
  } else if (typeof v === 'string') {
    if (v === lastIso) {
      ms = lastIsoMs;
    } else {
      const r = isoToMs(v);
      if (typeof r !== 'number') return r;
      lastIso = v;
      lastIsoMs = r;
      ms = r;
    }
  } else {
    return { reason: 'wrong_type', detail: `timestamp must be a string or number, got ${describe(v)}` };
  }
  if (ms < MIN_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is before 1900-01-01`);
  if (ms > MAX_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is after 9999-12-31T23:59:00Z`);
  return ms;
}

/** The value of the ASCII digit at `i`, or -1 if there is none (NaN past the end compares false). */
function digitAt(s: string, i: number): number {
  const d = s.charCodeAt(i) - 0x30;
  return d >= 0 && d <= 9 ? d : -1;
}

/** The two-digit number at `i`, or -1. */
function twoDigitsAt(s: string, i: number): number {
  const a = digitAt(s, i);
  const b = digitAt(s, i + 1);
  return a < 0 || b < 0 ? -1 : a * 10 + b;
}

function notIso(v: string): Rejection {
  return badTimestamp(
    `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(v.slice(0, 40))}`,
  );
}

/**
 * An ISO-8601 date-time with a zone: 2026-11-24T14:31:00Z, 2026-11-24T14:31Z, 2026-11-24T09:31:00.000-05:00,
 * +0530. Exactly the strings the regular expression
 *   /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|z|([+-])(\d{2}):?(\d{2}))$/
 * matches (digits are ASCII 0-9), read left to right without backtracking: no optional part can start
 * with what follows it. Returns epoch ms before the range check, or the rejection.
 */
function isoToMs(v: string): number | Rejection {
  const n = v.length;
  // Shortest 2026-11-24T14:31Z (17), longest 2026-11-24T14:31:00.123456789+05:30 (35).
  if (n < 17 || n > 35) return notIso(v);
  const y0 = digitAt(v, 0);
  const y1 = digitAt(v, 1);
  const y2 = digitAt(v, 2);
  const y3 = digitAt(v, 3);
  const month = twoDigitsAt(v, 5);
  const day = twoDigitsAt(v, 8);
  const hour = twoDigitsAt(v, 11);
  const minute = twoDigitsAt(v, 14);
  if (
    y0 < 0 ||
    y1 < 0 ||
    y2 < 0 ||
    y3 < 0 ||
    v.charCodeAt(4) !== 0x2d /* - */ ||
    month < 0 ||
    v.charCodeAt(7) !== 0x2d /* - */ ||
    day < 0 ||
    v.charCodeAt(10) !== 0x54 /* T */ ||
    hour < 0 ||
    v.charCodeAt(13) !== 0x3a /* : */ ||
    minute < 0
  ) {
    return notIso(v);
  }
  let p = 16;
  let second = 0;
  let fracStart = -1;
  let fracEnd = -1;
  if (v.charCodeAt(p) === 0x3a /* : */) {
    second = twoDigitsAt(v, p + 1);
    if (second < 0) return notIso(v);
    p += 3;
    if (v.charCodeAt(p) === 0x2e /* . */) {
      fracStart = ++p;
      while (p < n && digitAt(v, p) >= 0) p++;
      fracEnd = p;
      if (fracEnd === fracStart || fracEnd - fracStart > 9) return notIso(v);
    }
  }
  const z = v.charCodeAt(p);
  let sign = 0;
  let offH = 0;
  let offM = 0;
  if (z === 0x5a /* Z */ || z === 0x7a /* z */) {
    if (p + 1 !== n) return notIso(v);
  } else if (z === 0x2b /* + */ || z === 0x2d /* - */) {
    sign = z === 0x2d ? -1 : 1;
    offH = twoDigitsAt(v, p + 1);
    let q = p + 3;
    if (v.charCodeAt(q) === 0x3a /* : */) q++;
    offM = twoDigitsAt(v, q);
    if (offH < 0 || offM < 0 || q + 2 !== n) return notIso(v);
  } else {
    return notIso(v);
  }

  const year = y0 * 1000 + y1 * 100 + y2 * 10 + y3;
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return badTimestamp(`timestamp ${JSON.stringify(v)} is not a valid date-time`);
  }
  let offsetMin = 0;
  if (sign !== 0) {
    if (offH > 23 || offM > 59)
      return badTimestamp(`timestamp ${JSON.stringify(v)} has an invalid zone offset`);
    offsetMin = sign * (offH * 60 + offM);
  }
  // Sub-millisecond digits must be zero: a bar start is never between milliseconds.
  let fracMs = 0;
  if (fracStart >= 0) {
    for (let i = fracStart + 3; i < fracEnd; i++) {
      if (v.charCodeAt(i) !== 0x30 /* 0 */)
        return badTimestamp(`timestamp ${JSON.stringify(v)} has sub-millisecond digits`);
    }
    for (let i = fracStart, scale = 100; i < fracStart + 3; i++, scale /= 10) {
      if (i < fracEnd) fracMs += digitAt(v, i) * scale;
    }
  }
  // Exact integer arithmetic (ECMAScript's MakeDay/MakeTime, no Date object); years 0-99 are years 0-99.
  const days =
    dayFromYear(year) + DAYS_BEFORE_MONTH[month - 1]! + (month > 2 && isLeap(year) ? 1 : 0) + day - 1;
  return days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + fracMs - offsetMin * 60_000;
}

const DAYS_BEFORE_MONTH = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** Days from 1970-01-01 to January 1st of `year` (proleptic Gregorian; ECMAScript's DayFromYear). */
function dayFromYear(year: number): number {
  return (
    365 * (year - 1970) +
    Math.floor((year - 1969) / 4) -
    Math.floor((year - 1901) / 100) +
    Math.floor((year - 1601) / 400)
  );
}

/**
 * Length of `month` (1-12) in `year`. Kept as the Date.UTC(year, month, 0) it replaced computed it,
 * which reads years 0-99 as 1900-1999: February of year 0 has 28 days here (1900 is not a leap year).
 */
function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month - 1]!;
  return isLeap(year < 100 ? year + 1900 : year) ? 29 : 28;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function isoSafe(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `a string ${JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * How many keys the top-level object of `text` (valid JSON whose value is an object) spells out, duplicates
 * included. Walks the text exactly as findDuplicateTopLevelKey does, without unescaping or remembering keys.
 */
function countTopLevelKeys(text: string): number {
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
