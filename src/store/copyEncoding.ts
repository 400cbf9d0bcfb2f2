/**
 * Encoding of bars for PostgreSQL's COPY into the staging table, in its column order (writeSql.ts
 * STAGING_COLUMNS): seq, symbol, timestamp, open, high, low, close, volume, vwap, revision, and with
 * origins source_time, part, kafka_offset.
 *
 * - Binary format (at the end): what the service sends, encoded from packed bars (encodeCopyBinaryParts:
 *   the partitions' entries of a flush, a backfill's rows). Doubles travel as their 8 bytes, timestamps
 *   as microseconds since 2000: exact by construction, and cheaper to produce and to parse.
 *   encodeCopyBinary writes the same bytes from Bar objects (bench/ and the tests' reference).
 * - Text format (encodeCopyRows: tab-separated, \N for NULL, backslash escapes): bench/'s psql \copy
 *   reference reads it. Numbers use JavaScript's shortest round-trip form (e.g. 0.1, 1e-7, 1.5e+300),
 *   which float8in parses to the same double; timestamps are ISO-8601 UTC with an explicit Z, so the
 *   session TimeZone cannot change them.
 */
import type { Bar } from '../contract/bar';
import {
  SLOT_CLOSE,
  SLOT_HIGH,
  SLOT_LOW,
  SLOT_OPEN,
  SLOT_REVISION,
  SLOT_TIMESTAMP,
  SLOT_VOLUME,
  SLOT_VWAP,
  messageTimeOf,
  type PackedBar,
} from '../contract/packedBar';

/**
 * Where a staged bar came from. With origins, each row gets three more columns after revision:
 * `source_time` (the Kafka record timestamp, part of the bar's version), `part` and `kafka_offset` (the
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

/** One COPY row: seq, symbol, timestamp, open, high, low, close, volume, vwap, revision (, origin). */
export function encodeCopyRow(seq: number, bar: Bar, origin?: BarOrigin): string {
  const tail = origin
    ? `\t${bar.revision}\t${new Date(origin.recordTimeMs).toISOString()}\t${origin.partition}\t${origin.offset}\n`
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

// ---- binary COPY (what the service sends) -------------------------------------------------------
//
// PostgreSQL's binary COPY format: signature, flags, header extension; per row a field count (int16)
// and per field its byte length (int32, -1 for NULL) and value in network byte order; trailer int16 -1.
// Doubles travel as their 8 bytes (exact by construction: no printing in Node, no parsing in
// PostgreSQL), timestamps as int8 microseconds since 2000-01-01. Measured 1.29x the text format on the
// write path (bench/README.md). The text encoder above stays: psql's \copy reference in bench uses it.

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const TWO_32 = 2 ** 32;
/** Fixed bytes per row: field count, 10 length words, seq, timestamp, 4 prices, volume, vwap, revision. */
const ROW_FIXED = 2 + 10 * 4 + 4 + 8 + 4 * 8 + 8 + 8 + 8;
/** With an origin: 3 more length words, the source time (int8), the partition (int4), the offset (int8). */
const ORIGIN_FIXED = 3 * 4 + 8 + 4 + 8;

// Microseconds since 2000 exceed 2^53 after year 2285, so they are computed with BigInt, once per minute.
const pgTimeCache = new Map<number, bigint>();

function pgMicros(ms: number): bigint {
  let us = pgTimeCache.get(ms);
  if (us === undefined) {
    if (pgTimeCache.size >= ISO_CACHE_MAX) pgTimeCache.clear();
    us = BigInt(ms - PG_EPOCH_MS) * 1000n;
    pgTimeCache.set(ms, us);
  }
  return us;
}

/**
 * Writes one COPY payload into a buffer through a DataView (its setters are compiled inline, where
 * Buffer's write methods are calls with range checks each); `at` is where the next byte goes.
 */
class CopyWriter {
  readonly buf: Buffer;
  private readonly view: DataView;
  at: number;

  /**
   * A buffer for `rows` rows whose symbols have `symbolChars` UTF-16 units in all, with the header
   * written. Room for 3 UTF-8 bytes per unit (the most one takes; a surrogate pair's two take 4),
   * without measuring each symbol's UTF-8 length: the contract's symbols are ASCII, and end() cuts the
   * rest.
   */
  constructor(rows: number, symbolChars: number, withOrigins: boolean) {
    const size =
      SIGNATURE.length + 8 + 2 + rows * (ROW_FIXED + (withOrigins ? ORIGIN_FIXED : 0)) + 3 * symbolChars;
    this.buf = Buffer.allocUnsafe(size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, size);
    this.at = SIGNATURE.copy(this.buf, 0);
    this.int32(0); // flags
    this.int32(0); // header extension length
  }

  int16(v: number): void {
    this.view.setInt16(this.at, v);
    this.at += 2;
  }

  int32(v: number): void {
    this.view.setInt32(this.at, v);
    this.at += 4;
  }

  /** An int4 field: length word and value. */
  int4Field(v: number): void {
    this.view.setInt32(this.at, 4);
    this.view.setInt32(this.at + 4, v);
    this.at += 8;
  }

  /** An int8 field of a safe integer (two 32-bit words; floor division keeps two's complement). */
  safeInt8Field(v: number): void {
    const hi = Math.floor(v / TWO_32);
    this.view.setInt32(this.at, 8);
    this.view.setInt32(this.at + 4, hi);
    this.view.setUint32(this.at + 8, v - hi * TWO_32);
    this.at += 12;
  }

  bigInt8Field(v: bigint): void {
    this.view.setInt32(this.at, 8);
    this.view.setBigInt64(this.at + 4, v);
    this.at += 12;
  }

  float8Field(v: number): void {
    if (!Number.isFinite(v)) throw new RangeError(`non-finite number ${v} cannot be written`);
    this.view.setInt32(this.at, 8);
    this.view.setFloat64(this.at + 4, v);
    this.at += 12;
  }

  /**
   * A timestamp of any millisecond (a record timestamp, not a minute: no cache) as an int8 field of
   * microseconds since 2000, in Number arithmetic while that is exact (until the year 2285), else BigInt.
   */
  timestampField(ms: number): void {
    const us = (ms - PG_EPOCH_MS) * 1000;
    if (Number.isSafeInteger(us)) this.safeInt8Field(us);
    else this.bigInt8Field(BigInt(ms - PG_EPOCH_MS) * 1000n);
  }

  /** A text field, UTF-8: ASCII byte by byte (the contract's symbols), anything else by Buffer.write. */
  textField(s: string): void {
    const start = this.at + 4;
    const n = s.length;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      this.buf[start + i] = c;
    }
    const bytes = i === n ? n : this.buf.write(s, start, 'utf8');
    this.view.setInt32(this.at, bytes);
    this.at = start + bytes;
  }

  /** One row's columns up to the revision (the field count is written by the caller). */
  bar(seq: number, b: Bar): void {
    this.int4Field(seq);
    this.textField(b.symbol);
    this.bigInt8Field(pgMicros(b.timestampMs));
    this.float8Field(b.open);
    this.float8Field(b.high);
    this.float8Field(b.low);
    this.float8Field(b.close);
    this.safeInt8Field(b.volume);
    if (b.vwap === null) this.int32(-1);
    else this.float8Field(b.vwap);
    this.safeInt8Field(b.revision);
  }

  /** bar() of a packed bar (its missing vwap is NaN). */
  packedBar(seq: number, p: PackedBar): void {
    const v = p.values;
    const at = p.at;
    this.int4Field(seq);
    this.textField(p.symbol);
    this.bigInt8Field(pgMicros(v[at + SLOT_TIMESTAMP]!));
    this.float8Field(v[at + SLOT_OPEN]!);
    this.float8Field(v[at + SLOT_HIGH]!);
    this.float8Field(v[at + SLOT_LOW]!);
    this.float8Field(v[at + SLOT_CLOSE]!);
    this.safeInt8Field(v[at + SLOT_VOLUME]!);
    const vwap = v[at + SLOT_VWAP]!;
    if (vwap !== vwap) this.int32(-1);
    else this.float8Field(vwap);
    this.safeInt8Field(v[at + SLOT_REVISION]!);
  }

  /** The origin columns: source_time, part, kafka_offset. */
  origin(partition: number, offset: bigint, recordTimeMs: number): void {
    this.timestampField(recordTimeMs);
    this.int4Field(partition);
    this.bigInt8Field(offset);
  }

  /** The trailer; the buffer cut to what was written (a symbol's UTF-8 may be shorter than counted). */
  end(): Buffer {
    this.int16(-1);
    return this.at === this.buf.length ? this.buf : this.buf.subarray(0, this.at);
  }
}

/**
 * The batch in binary COPY format, columns as encodeCopyRow: seq, symbol, timestamp, o, h, l, c,
 * volume, vwap, revision (and source_time, part, kafka_offset with origins).
 */
export function encodeCopyBinary(bars: readonly Bar[], origins?: readonly BarOrigin[]): Buffer {
  let symbolChars = 0;
  for (const b of bars) symbolChars += b.symbol.length;
  const w = new CopyWriter(bars.length, symbolChars, origins !== undefined);
  for (let i = 0; i < bars.length; i++) {
    w.int16(origins ? 13 : 10);
    w.bar(i, bars[i]!);
    if (origins) {
      const o = origins[i]!;
      w.origin(o.partition, o.offset, o.recordTimeMs);
    }
  }
  return w.end();
}

/** A bar as it was consumed, its numbers and record time packed: what a staged row is made of. */
export interface ConsumedBar extends PackedBar {
  offset: bigint;
}

/**
 * The bars of one flush, with origins, straight from the partitions' entries (no per-row origin
 * object): the same bytes as encodeCopyBinary of the bars in this order with their origins.
 */
export function encodeCopyBinaryParts(
  parts: readonly { partition: number; entries: readonly ConsumedBar[] }[],
): Buffer {
  let rows = 0;
  let symbolChars = 0;
  for (let k = 0; k < parts.length; k++) {
    const entries = parts[k]!.entries;
    rows += entries.length;
    for (let i = 0; i < entries.length; i++) symbolChars += entries[i]!.symbol.length;
  }
  const w = new CopyWriter(rows, symbolChars, true);
  let seq = 0;
  for (let k = 0; k < parts.length; k++) {
    const { partition, entries } = parts[k]!;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      w.int16(13);
      w.packedBar(seq++, e);
      w.origin(partition, e.offset, messageTimeOf(e));
    }
  }
  return w.end();
}
