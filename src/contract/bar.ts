/**
 * The message contract: decode and validate one Kafka message value into a Bar.
 *
 * A message is either a Bar or a Rejection carrying a stable `reason` (bounded set, used as a metric
 * label and a dead-letter header) and a human `detail` naming the field and the rule. The rules are
 * functions of the message and of what the caller passes (the consumer's clock, the earliest bar start);
 * the text is read by the scanners of jsonScan.ts and the timestamps by isoTime.ts. What a decoder keeps
 * between messages (a scan record, the last timestamp string) lives in a BarDecoder; decodeBar,
 * decodeBarGeneral and validateFields share one, held by this module (see `sharedDecoder`).
 */
import { isAscii } from 'node:buffer';
import { isoToMs, IsoTimeCache, type IsoError } from './isoTime';
import { extraValue, type ExtraColumn, type ExtraValue } from './extras';
import { countTopLevelKeys, findDuplicateTopLevelKey, PlainBarScan, scanPlainBar } from './jsonScan';

/**
 * A validated 1-minute bar. `timestampMs` is the bar start in epoch milliseconds (UTC). `revision` is
 * the producer's optional version number of the bar (0 when the message has none): a higher revision
 * replaces a lower one whatever the record timestamps (docs/contract.md "Which version wins").
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
  /** The number of trades in the minute (optional `trade_count`; null when the message has none). */
  tradeCount: number | null;
  /**
   * A delete: no bar should exist at (symbol, timestamp) — every trade of the minute was cancelled. Its
   * prices and volume are 0 and mean nothing; only its key and its version count.
   */
  deleted: boolean;
  /** The values of BARS_EXTRA_COLUMNS, in their order (null: none configured, or a delete). */
  extras: readonly ExtraValue[] | null;
}

/**
 * Why the contract refuses a message: one reason per rule. (A row the database refuses after the contract
 * accepted it is a write outcome: deadletter/records.ts `DATABASE_REJECTED`.)
 */
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
  'invalid_trade_count',
  'invalid_extra',
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
 * Decodes message values, keeping between them what makes the next one cheaper: the record the fast
 * path scans into, and the last timestamp string with its epoch ms. Synchronous, one message at a time;
 * an owner that decodes on several paths at once (none does) would give each its own.
 */
export class BarDecoder {
  private readonly scan = new PlainBarScan();
  private readonly isoTimes = new IsoTimeCache();

  /** `extras`: BARS_EXTRA_COLUMNS, read from every message (a message naming one takes the general path). */
  constructor(private readonly extras: readonly ExtraColumn[] = []) {}

  /**
   * Decode a raw message value. `nowMs` is the consumer's clock, used only for the future-timestamp rule;
   * `minTimestampMs` is the earliest bar start accepted (BARS_MIN_TIMESTAMP; the default only refuses
   * what no timestamp can express). `fastPath` false sends every message the general way (JSON.parse):
   * the reference the fast path (scanPlainBar) is tested against.
   */
  decode(
    value: Buffer | Uint8Array | null,
    nowMs: number,
    minTimestampMs: number = MIN_TIMESTAMP_MS,
    fastPath = true,
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
    if (fastPath && scanPlainBar(text, this.scan)) {
      const result = checkFields(this.scan, nowMs, minTimestampMs, this.isoTimes);
      if (result.ok) {
        // The fast path reads only the contract's fields: a message with one of the extra columns is
        // not plain, so here every extra is absent.
        if (this.extras.length > 0) result.bar.extras = this.extras.map(() => null);
        return result;
      }
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
    // JSON.parse keeps one property per distinct key, so the text has a duplicated top-level key exactly
    // when it holds more top-level keys than the parsed object: only then look for which one (the slow scan).
    if (countTopLevelKeys(text) !== Object.keys(parsed).length) {
      const duplicate = findDuplicateTopLevelKey(text);
      if (duplicate !== null) {
        return reject(
          'duplicate_key',
          `field "${duplicate}" appears more than once; which one is meant is ambiguous`,
        );
      }
    }
    return this.validate(parsed as Record<string, unknown>, nowMs, minTimestampMs);
  }

  /** Validate an already-parsed object against the contract (for producers and tests). */
  validate(
    o: Record<string, unknown>,
    nowMs: number,
    minTimestampMs: number = MIN_TIMESTAMP_MS,
  ): DecodeResult {
    // Each field is read once; a field that is absent, undefined or null is missing. Checked in contract order.
    const symbol = o.symbol;
    if (symbol === undefined || symbol === null) return missing('symbol');
    const timestamp = o.timestamp;
    if (timestamp === undefined || timestamp === null) return missing('timestamp');
    const deleted = o.deleted;
    if (deleted !== undefined && deleted !== null && typeof deleted !== 'boolean') {
      return reject('wrong_type', `deleted must be true, false or null, got ${describe(deleted)}`);
    }
    if (deleted === true)
      return checkDelete(symbol, timestamp, o.revision, nowMs, minTimestampMs, this.isoTimes);
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
    const fields = {
      symbol,
      timestamp,
      open,
      high,
      low,
      close,
      volume,
      vwap: o.vwap,
      revision: o.revision,
      tradeCount: o.trade_count,
    };
    const checked = checkFields(fields, nowMs, minTimestampMs, this.isoTimes);
    if (!checked.ok || this.extras.length === 0) return checked;
    const extras: ExtraValue[] = [];
    for (const c of this.extras) {
      const v = extraValue(c, o[c.name]);
      if (v !== null && typeof v === 'object') return reject(v.reason, v.refused);
      extras.push(v);
    }
    checked.bar.extras = extras;
    return checked;
  }
}

/**
 * The decoder of decodeBar, decodeBarGeneral and validateFields: module-level mutable state (a scan
 * record, the last timestamp string), shared by every caller of those functions in the process. Sound
 * because a decode is synchronous and never re-entered, so no two decodes ever interleave; the cost of
 * sharing is only a timestamp cache miss when callers alternate minutes. The service's intake decodes
 * every message through it (one decoder per process: the bars of a fetch come partition by partition).
 */
const sharedDecoder = new BarDecoder();

type Decode = (value: Buffer | Uint8Array | null, nowMs: number, minTimestampMs?: number) => DecodeResult;

/** Decode a raw message value with the shared decoder (BarDecoder.decode). */
export const decodeBar: Decode = (value, nowMs, minTimestampMs) =>
  sharedDecoder.decode(value, nowMs, minTimestampMs);

/** decodeBar without its fast path: the reference the fast path is tested against. */
export const decodeBarGeneral: Decode = (value, nowMs, minTimestampMs) =>
  sharedDecoder.decode(value, nowMs, minTimestampMs, false);

/** Validate an already-parsed object against the contract, with the shared decoder (BarDecoder.validate). */
export const validateFields: BarDecoder['validate'] = (o, nowMs, minTimestampMs) =>
  sharedDecoder.validate(o, nowMs, minTimestampMs);

/**
 * A message's fields as read, before the rules: what checkFields checks. The required ones are known
 * present (neither undefined nor null); vwap and revision may be absent (undefined or null). A
 * PlainBarScan is one (the fast path), and so is the record validate builds from a parsed object.
 */
interface MessageFields {
  readonly symbol: unknown;
  readonly timestamp: unknown;
  readonly open: unknown;
  readonly high: unknown;
  readonly low: unknown;
  readonly close: unknown;
  readonly volume: unknown;
  readonly vwap: unknown;
  readonly revision: unknown;
  readonly tradeCount: unknown;
}

/**
 * The contract's rules on the fields of a message, in contract order. `isoTimes` remembers the last
 * timestamp string (null: parse every one).
 */
function checkFields(
  fields: MessageFields,
  nowMs: number,
  minTimestampMs: number,
  isoTimes: IsoTimeCache | null,
): DecodeResult {
  const { symbol, timestamp, open, high, low, close, volume, vwap: v, revision: r, tradeCount: n } = fields;
  const key = checkKey(symbol, timestamp, nowMs, minTimestampMs, isoTimes);
  if (typeof key !== 'number') return key;
  const timestampMs = key;

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

  const revision = revisionOf(r);
  if (typeof revision !== 'number') return revision;

  let tradeCount: number | null = null;
  if (n !== undefined && n !== null) {
    if (typeof n !== 'number')
      return reject('wrong_type', `trade_count must be a number or null, got ${describe(n)}`);
    if (!Number.isSafeInteger(n) || n < 0) {
      return reject('invalid_trade_count', `trade_count must be a non-negative safe integer, got ${n}`);
    }
    tradeCount = n + 0;
  }

  // Normalise -0 to 0: PostgreSQL and JSON consumers treat them alike, and it keeps replays byte-identical.
  return {
    ok: true,
    bar: {
      symbol: symbol as string, // checkKey: a string
      timestampMs,
      open: open + 0,
      high: high + 0,
      low: low + 0,
      close: close + 0,
      volume,
      vwap,
      revision,
      tradeCount,
      deleted: false,
      extras: null,
    },
  };
}

/** The revision field (absent or null: 0), or the rejection. */
function revisionOf(r: unknown): number | DecodeResult {
  if (r === undefined || r === null) return 0;
  if (typeof r !== 'number')
    return reject('wrong_type', `revision must be a number or null, got ${describe(r)}`);
  if (!Number.isSafeInteger(r) || r < 0) {
    return reject('invalid_revision', `revision must be a non-negative safe integer, got ${r}`);
  }
  return r + 0;
}

/**
 * The rules on a bar's key (symbol and timestamp), shared by bars and deletes: the bar start in epoch
 * ms, or the rejection.
 */
function checkKey(
  symbol: unknown,
  timestamp: unknown,
  nowMs: number,
  minTimestampMs: number,
  isoTimes: IsoTimeCache | null,
): number | { ok: false; rejection: Rejection } {
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

  const ts = timestampToMs(timestamp, isoTimes);
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

  return timestampMs;
}

/** A delete message: its key, its revision; prices and volume 0 (they mean nothing). */
function checkDelete(
  symbol: unknown,
  timestamp: unknown,
  r: unknown,
  nowMs: number,
  minTimestampMs: number,
  isoTimes: IsoTimeCache | null,
): DecodeResult {
  const key = checkKey(symbol, timestamp, nowMs, minTimestampMs, isoTimes);
  if (typeof key !== 'number') return key;
  const revision = revisionOf(r);
  if (typeof revision !== 'number') return revision;
  return {
    ok: true,
    bar: {
      symbol: symbol as string, // checkKey: a string
      timestampMs: key,
      open: 0,
      high: 0,
      low: 0,
      close: 0,
      volume: 0,
      vwap: null,
      revision,
      tradeCount: null,
      deleted: true,
      extras: null,
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

/**
 * Parse the `timestamp` field: an ISO-8601 string with a zone, or epoch milliseconds (a JSON number).
 * A pure function (no timestamp cache): for callers outside the decoder, such as the read API's query.
 */
export function parseTimestamp(v: unknown): TimestampResult {
  const r = timestampToMs(v, null);
  return typeof r === 'number' ? { ok: true, ms: r } : { ok: false, rejection: r };
}

function badTimestamp(detail: string): Rejection {
  return { reason: 'invalid_timestamp', detail };
}

/**
 * parseTimestamp without the result wrapper (no allocation on success): epoch ms, or the rejection.
 * `isoTimes` remembers the last ISO-8601 string read (null: none is remembered).
 */
function timestampToMs(v: unknown, isoTimes: IsoTimeCache | null): number | Rejection {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v))
      return badTimestamp(`timestamp in epoch milliseconds must be an integer, got ${v}`);
    ms = v;
  } else if (typeof v === 'string') {
    const r = isoTimes === null ? isoToMs(v) : isoTimes.toMs(v);
    if (typeof r !== 'number') return notIso(v, r);
    ms = r;
  } else {
    return { reason: 'wrong_type', detail: `timestamp must be a string or number, got ${describe(v)}` };
  }
  if (ms < MIN_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is before 1900-01-01`);
  if (ms > MAX_TIMESTAMP_MS) return badTimestamp(`timestamp ${isoSafe(ms)} is after 9999-12-31T23:59:00Z`);
  return ms;
}

/** The rejection of a timestamp string isoToMs refused, saying why. */
function notIso(v: string, why: IsoError): Rejection {
  switch (why) {
    case 'syntax':
      return badTimestamp(
        `timestamp must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(v.slice(0, 40))}`,
      );
    case 'invalid_date_time':
      return badTimestamp(`timestamp ${JSON.stringify(v)} is not a valid date-time`);
    case 'invalid_offset':
      return badTimestamp(`timestamp ${JSON.stringify(v)} has an invalid zone offset`);
    case 'sub_millisecond':
      return badTimestamp(`timestamp ${JSON.stringify(v)} has sub-millisecond digits`);
  }
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
