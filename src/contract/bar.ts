/**
 * The message contract: decode and validate one Kafka message value into a Bar.
 *
 * Pure functions only (no I/O, no clock unless passed in), so every rule is unit-tested.
 * A message is either a Bar or a Rejection carrying a stable `reason` (bounded set, used as a
 * metric label and a dead-letter header) and a human `detail` naming the field and the rule.
 */

/** A validated 1-minute bar. `timestampMs` is the bar start in epoch milliseconds (UTC). */
export interface Bar {
  symbol: string;
  timestampMs: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  vwap: number | null;
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
  'unaligned_timestamp',
  'future_timestamp',
  'non_finite',
  'invalid_volume',
  'ohlc_inconsistent',
  'vwap_out_of_range',
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
/** Earliest accepted bar start (1900-01-01T00:00:00Z): anything earlier is a unit mistake, not history. */
export const MIN_TIMESTAMP_MS = Date.UTC(1900, 0, 1);
/** Latest representable bar start (9999-12-31T23:59Z); beyond it neither ISO-8601 nor Date can express it. */
export const MAX_TIMESTAMP_MS = Date.UTC(9999, 11, 31, 23, 59);

const utf8 = new TextDecoder('utf-8', { fatal: true });

function reject(reason: RejectReason, detail: string): DecodeResult {
  return { ok: false, rejection: { reason, detail } };
}

/**
 * Decode a raw message value. `nowMs` is the consumer's clock, used only for the future-timestamp rule.
 */
export function decodeBar(value: Buffer | Uint8Array | null, nowMs: number): DecodeResult {
  if (value === null)
    return reject('null_value', 'value is null (tombstone); a bar message needs a JSON value');
  if (value.length === 0) return reject('empty_value', 'value is empty; a bar message needs a JSON value');
  if (value.length > MAX_VALUE_BYTES) {
    return reject('too_large', `value is ${value.length} bytes; the limit is ${MAX_VALUE_BYTES}`);
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    return reject('invalid_utf8', 'value is not valid UTF-8');
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
  const duplicate = findDuplicateTopLevelKey(text);
  if (duplicate !== null) {
    return reject(
      'duplicate_key',
      `field "${duplicate}" appears more than once; which one is meant is ambiguous`,
    );
  }
  return validateFields(parsed as Record<string, unknown>, nowMs);
}

/** Validate an already-parsed object against the contract (exported for producers and tests). */
export function validateFields(o: Record<string, unknown>, nowMs: number): DecodeResult {
  for (const field of ['symbol', 'timestamp', 'open', 'high', 'low', 'close', 'volume'] as const) {
    if (!(field in o) || o[field] === undefined || o[field] === null) {
      return reject('missing_field', `field "${field}" is required`);
    }
  }

  const symbol = o.symbol;
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

  const ts = parseTimestamp(o.timestamp);
  if (!ts.ok) return { ok: false, rejection: ts.rejection };
  const timestampMs = ts.ms;
  if (timestampMs % MINUTE_MS !== 0) {
    return reject('unaligned_timestamp', `timestamp must fall on a minute boundary, got ${iso(timestampMs)}`);
  }
  if (timestampMs > nowMs + MAX_FUTURE_MS) {
    return reject('future_timestamp', `timestamp ${iso(timestampMs)} is more than 24 h in the future`);
  }

  const prices: Record<'open' | 'high' | 'low' | 'close', number> = { open: 0, high: 0, low: 0, close: 0 };
  for (const field of ['open', 'high', 'low', 'close'] as const) {
    const v = o[field];
    if (typeof v !== 'number') return reject('wrong_type', `${field} must be a number, got ${describe(v)}`);
    if (!Number.isFinite(v)) return reject('non_finite', `${field} must be finite, got ${v}`);
    prices[field] = v;
  }
  const { open, high, low, close } = prices;
  if (low > Math.min(open, close)) {
    return reject('ohlc_inconsistent', `low (${low}) must be <= min(open, close) (${Math.min(open, close)})`);
  }
  if (high < Math.max(open, close)) {
    return reject(
      'ohlc_inconsistent',
      `high (${high}) must be >= max(open, close) (${Math.max(open, close)})`,
    );
  }

  const volume = o.volume;
  if (typeof volume !== 'number')
    return reject('wrong_type', `volume must be a number, got ${describe(volume)}`);
  if (!Number.isSafeInteger(volume) || volume < 0) {
    return reject('invalid_volume', `volume must be a non-negative safe integer, got ${volume}`);
  }

  let vwap: number | null = null;
  if (o.vwap !== undefined && o.vwap !== null) {
    if (typeof o.vwap !== 'number')
      return reject('wrong_type', `vwap must be a number or null, got ${describe(o.vwap)}`);
    if (!Number.isFinite(o.vwap)) return reject('non_finite', `vwap must be finite, got ${o.vwap}`);
    if (o.vwap < low || o.vwap > high) {
      return reject('vwap_out_of_range', `vwap (${o.vwap}) must be within [low, high] = [${low}, ${high}]`);
    }
    vwap = o.vwap + 0;
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
    },
  };
}

// ISO-8601 date-time with a zone: 2026-11-24T14:31:00Z, 2026-11-24T14:31Z, 2026-11-24T09:31:00.000-05:00, +0530.
const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|z|([+-])(\d{2}):?(\d{2}))$/;

type TimestampResult = { ok: true; ms: number } | { ok: false; rejection: Rejection };

function badTimestamp(detail: string): TimestampResult {
  return { ok: false, rejection: { reason: 'invalid_timestamp', detail } };
}

/** Parse the `timestamp` field: an ISO-8601 string with a zone, or epoch milliseconds (a JSON number). */
export function parseTimestamp(v: unknown): TimestampResult {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v))
      return badTimestamp(`timestamp in epoch milliseconds must be an integer, got ${v}`);
    ms = v;
  } else if (typeof v === 'string') {
    const m = ISO_RE.exec(v);
    if (!m) {
      return badTimestamp(
        `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(v.slice(0, 40))}`,
      );
    }
    const [, y, mo, d, h, mi, s, frac, , sign, oh, om] = m;
    const year = Number(y);
    const month = Number(mo);
    const day = Number(d);
    const hour = Number(h);
    const minute = Number(mi);
    const second = s === undefined ? 0 : Number(s);
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
    if (sign !== undefined) {
      const offH = Number(oh);
      const offM = Number(om);
      if (offH > 23 || offM > 59)
        return badTimestamp(`timestamp ${JSON.stringify(v)} has an invalid zone offset`);
      offsetMin = (sign === '-' ? -1 : 1) * (offH * 60 + offM);
    }
    // Sub-millisecond digits must be zero: a bar start is never between milliseconds.
    let fracMs = 0;
    if (frac !== undefined) {
      const padded = frac.padEnd(9, '0');
      if (Number(padded.slice(3)) !== 0)
        return badTimestamp(`timestamp ${JSON.stringify(v)} has sub-millisecond digits`);
      fracMs = Number(padded.slice(0, 3));
    }
    // setUTCFullYear, not Date.UTC: the latter reads years 0-99 as 1900-1999.
    const date = new Date(0);
    date.setUTCFullYear(year, month - 1, day);
    date.setUTCHours(hour, minute, second, fracMs);
    ms = date.getTime() - offsetMin * 60_000;
  } else {
    return {
      ok: false,
      rejection: { reason: 'wrong_type', detail: `timestamp must be a string or number, got ${describe(v)}` },
    };
  }
  if (ms < MIN_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is before 1900-01-01`);
  if (ms > MAX_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is after 9999-12-31T23:59:00Z`);
  return { ok: true, ms };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
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
