/**
 * Reference encoders of the staging table's COPY, for the tests and bench/ (the service encodes packed
 * bars: src/store/copyEncoding.ts encodeCopyBinaryParts). Columns in the order of
 * src/store/staging.ts: seq, symbol, timestamp, open, high, low, close, volume, vwap, revision, and
 * with origins trade_count, deleted, source_time, part, kafka_offset.
 *
 * - Text format (encodeCopyRows: tab-separated, \N for NULL, backslash escapes): bench/'s psql \copy
 *   reference reads it. Numbers use JavaScript's shortest round-trip form (e.g. 0.1, 1e-7, 1.5e+300),
 *   which float8in parses to the same double; timestamps are ISO-8601 UTC with an explicit Z, so the
 *   session TimeZone cannot change them.
 * - Binary format from Bar objects (encodeCopyBinary): the same bytes as encodeCopyBinaryParts writes
 *   for the same bars with their origins (what writeGroup sent before bars were packed); the tests
 *   compare the two, and bench/micro.ts times it as a what-if.
 */
import type { Bar } from '../../src/contract/bar';
import { CopyWriter } from '../../src/store/copyEncoding';

/**
 * Where a staged bar came from. With origins, each row gets five more columns after revision: the
 * bar's trade_count and deleted, `source_time` (the Kafka record timestamp, part of the bar's version), `part` and `kafka_offset` (the
 * write path filters rows below the partition's fence in SQL).
 */
export interface BarOrigin {
  partition: number;
  offset: bigint;
  /** Kafka record timestamp, epoch ms. */
  recordTimeMs: number;
}

/** Escapes a text field for COPY text format: backslash, and the delimiter/row characters. */
export function escapeCopyText(s: string): string {
  // Fast path: the contract allows printable ASCII symbols, of which only backslash needs escaping.
  if (!/[\\\t\n\r\v\f\b]/.test(s)) return s;
  let out = '';
  for (const ch of s) {
    switch (ch) {
      case '\\':
        out += '\\\\';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\v':
        out += '\\v';
        break;
      case '\f':
        out += '\\f';
        break;
      case '\b':
        out += '\\b';
        break;
      default:
        out += ch;
    }
  }
  return out;
}

// Bars of one flush share a handful of minutes (a live burst: one), so formatting each timestamp once
// per minute instead of once per bar saves a Date allocation and toISOString() per row.
const isoCache = new Map<number, string>();
const ISO_CACHE_MAX = 4096;

function isoMinute(ms: number): string {
  let s = isoCache.get(ms);
  if (s === undefined) {
    if (isoCache.size >= ISO_CACHE_MAX) isoCache.clear();
    s = new Date(ms).toISOString();
    isoCache.set(ms, s);
  }
  return s;
}

function num(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`non-finite number ${n} cannot be written`);
  return String(n);
}

/**
 * One COPY row: seq, symbol, timestamp, open, high, low, close, volume, vwap, revision (, trade_count,
 * deleted, origin).
 */
export function encodeCopyRow(seq: number, bar: Bar, origin?: BarOrigin): string {
  const tail = origin
    ? `\t${bar.revision}\t${bar.tradeCount ?? '\\N'}\t${bar.deleted ? 't' : 'f'}\t${new Date(origin.recordTimeMs).toISOString()}\t${origin.partition}\t${origin.offset}\n`
    : `\t${bar.revision}\n`;
  return (
    seq +
    '\t' +
    escapeCopyText(bar.symbol) +
    '\t' +
    isoMinute(bar.timestampMs) +
    '\t' +
    num(bar.open) +
    '\t' +
    num(bar.high) +
    '\t' +
    num(bar.low) +
    '\t' +
    num(bar.close) +
    '\t' +
    String(bar.volume) +
    '\t' +
    (bar.vwap === null ? '\\N' : num(bar.vwap)) +
    tail
  );
}

/** The whole COPY payload for a batch; `seq` is the bar's position (offset order) within the batch. */
export function encodeCopyRows(bars: readonly Bar[], origins?: readonly BarOrigin[]): string {
  const parts = new Array<string>(bars.length);
  for (let i = 0; i < bars.length; i++) parts[i] = encodeCopyRow(i, bars[i]!, origins?.[i]);
  return parts.join('');
}

// ---- binary COPY of Bar objects ------------------------------------------------------------------

/** One row's columns up to the revision (the field count is written by the caller). */
function writeBar(w: CopyWriter, seq: number, b: Bar): void {
  w.int4Field(seq);
  w.textField(b.symbol);
  w.timestampField(b.timestampMs);
  w.float8Field(b.open);
  w.float8Field(b.high);
  w.float8Field(b.low);
  w.float8Field(b.close);
  w.safeInt8Field(b.volume);
  if (b.vwap === null) w.int32(-1);
  else w.float8Field(b.vwap);
  w.safeInt8Field(b.revision);
}

/**
 * The batch in binary COPY format, columns as encodeCopyRow: seq, symbol, timestamp, o, h, l, c,
 * volume, vwap, revision (and trade_count, deleted, source_time, part, kafka_offset with origins).
 */
export function encodeCopyBinary(bars: readonly Bar[], origins?: readonly BarOrigin[]): Buffer {
  let symbolChars = 0;
  for (const b of bars) symbolChars += b.symbol.length;
  const w = new CopyWriter(bars.length, symbolChars);
  for (let i = 0; i < bars.length; i++) {
    w.int16(origins ? 15 : 10);
    const b = bars[i]!;
    writeBar(w, i, b);
    if (origins) {
      if (b.tradeCount === null) w.int32(-1);
      else w.safeInt8Field(b.tradeCount);
      w.boolField(b.deleted);
      const o = origins[i]!;
      w.origin(o.partition, o.offset, o.recordTimeMs);
    }
  }
  return w.end();
}
