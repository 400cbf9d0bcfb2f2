/**
 * Binary COPY of a write's rows into the staging table (./staging.ts declares its columns, in COPY
 * order: seq, symbol, timestamp, open, high, low, close, volume, vwap, revision, trade_count, deleted,
 * source_time, part, kafka_offset, then the extra columns), encoded straight from packed bars (encodeCopyBinaryParts: the partitions' entries of a
 * flush, a backfill's rows). Doubles travel as their 8 bytes, timestamps as microseconds since 2000:
 * exact by construction, and cheaper to produce and to parse than text.
 *
 * The references bench/ and the tests compare against (the same bytes from Bar objects, and the text
 * format psql's \copy reads) are in test/support/copyReference.ts, written with CopyWriter.
 */
import {
  SLOT_CLOSE,
  SLOT_DELETED,
  SLOT_HIGH,
  SLOT_LOW,
  SLOT_OPEN,
  SLOT_REVISION,
  SLOT_TIMESTAMP,
  SLOT_TRADE_COUNT,
  SLOT_VOLUME,
  SLOT_VWAP,
  versionTimeOf,
  type PackedBar,
} from '../contract/packedBar';
import type { ExtraColumn, ExtraValue } from '../contract/extras';
import { STAGING_COLUMNS, type StagingEncoding } from './staging';

// PostgreSQL's binary COPY format: signature, flags, header extension; per row a field count (int16)
// and per field its byte length (int32, -1 for NULL) and value in network byte order; trailer int16 -1.
// Doubles travel as their 8 bytes (exact by construction: no printing in Node, no parsing in
// PostgreSQL), timestamps as int8 microseconds since 2000-01-01. Measured 1.29x the text format on the
// write path (bench/README.md).

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
/** timestamptz's finite range in microseconds since 2000-01-01: 4713 BC to 294276 AD (exclusive). */
const PG_MIN_US = -211813488000000000n;
const PG_MAX_US = 9223371331200000000n - 1n;
const TWO_32 = 2 ** 32;

/** Bytes of a value by its encoding (text: its UTF-8 bytes, counted apart). */
const WIDTH: Record<StagingEncoding, number> = {
  int4: 4,
  int8: 8,
  float8: 8,
  timestamp: 8,
  bool: 1,
  text: 0,
};
/** Fixed bytes per row: the field count, and per staging column its length word and value. */
const ROW_FIXED = 2 + STAGING_COLUMNS.reduce((n, c) => n + 4 + WIDTH[c.encoding], 0);

/**
 * The fields of a row of encodeCopyBinaryParts (the literal in its loop) before the extra columns:
 * packedBar() then origin(), in the staging table's order (test/unit/copyEncoding.test.ts decodes them
 * by the declaration's names and encodings).
 */
const ROW_FIELDS = 15;
if (STAGING_COLUMNS.length !== ROW_FIELDS) {
  throw new Error(
    `the staging table has ${STAGING_COLUMNS.length} columns and encodeCopyBinaryParts writes ${ROW_FIELDS}: change both (./staging.ts)`,
  );
}

// Bars of one flush share a handful of minutes (a live burst: one): each minute's microseconds are
// computed once. They exceed 2^53 after year 2285, so they are computed with BigInt.
const pgTimeCache = new Map<number, bigint>();
const PG_TIME_CACHE_MAX = 4096;

function pgMicros(ms: number): bigint {
  let us = pgTimeCache.get(ms);
  if (us === undefined) {
    if (pgTimeCache.size >= PG_TIME_CACHE_MAX) pgTimeCache.clear();
    us = BigInt(ms - PG_EPOCH_MS) * 1000n;
    pgTimeCache.set(ms, us);
  }
  return us;
}

/**
 * Writes one COPY payload into a buffer through a DataView (its setters are compiled inline, where
 * Buffer's write methods are calls with range checks each); `at` is where the next byte goes. Exported
 * for the Bar-object reference (test/support/copyReference.ts).
 */
export class CopyWriter {
  readonly buf: Buffer;
  private readonly view: DataView;
  at: number;

  /**
   * A buffer for `rows` rows whose symbols (and text extras) have `symbolChars` UTF-16 units in all,
   * with `extraBytes` more per row for the extra columns' fixed parts, and the header written. Room for
   * 3 UTF-8 bytes per unit (the most one takes; a surrogate pair's two take 4), without measuring each
   * symbol's UTF-8 length: the contract's symbols are ASCII, and end() cuts the rest.
   */
  constructor(rows: number, symbolChars: number, extraBytes = 0) {
    const size = SIGNATURE.length + 8 + 2 + rows * (ROW_FIXED + extraBytes) + 3 * symbolChars;
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

  /** A nullable int8 field of a safe integer; NaN is NULL. */
  nullableInt8Field(v: number): void {
    if (v !== v) this.int32(-1);
    else this.safeInt8Field(v);
  }

  boolField(v: boolean): void {
    this.view.setInt32(this.at, 1);
    this.buf[this.at + 4] = v ? 1 : 0;
    this.at += 5;
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
    if (Number.isSafeInteger(us)) {
      this.safeInt8Field(us);
      return;
    }
    // Beyond ±285 years of 2000 (the contract and the version time bound what reaches here): exact,
    // and refused past what timestamptz holds rather than wrapped around int64.
    const big = Number.isFinite(ms) ? BigInt(Math.trunc(ms) - PG_EPOCH_MS) * 1000n : PG_MAX_US + 1n;
    if (big < PG_MIN_US || big > PG_MAX_US) {
      throw new RangeError(`timestamp ${ms} ms is outside PostgreSQL's timestamptz range`);
    }
    this.bigInt8Field(big);
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

  /**
   * One row's columns up to `deleted`, from a packed bar (its missing vwap and trade_count are NaN);
   * the field count is written by the caller.
   */
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
    this.nullableInt8Field(v[at + SLOT_TRADE_COUNT]!);
    this.boolField(v[at + SLOT_DELETED] === 1);
  }

  /**
   * The extra columns' values (`values`: null, a delete or a bar without them, writes NULL in each),
   * in the order of `extras`.
   */
  extraFields(extras: readonly ExtraColumn[], values: readonly ExtraValue[] | null): void {
    for (let i = 0; i < extras.length; i++) {
      const x = values === null ? null : values[i]!;
      if (x === null) this.int32(-1);
      else if (extras[i]!.type === 'text') this.textField(x as string);
      else if (extras[i]!.type === 'boolean') this.boolField(x as boolean);
      else if (extras[i]!.type === 'bigint') this.safeInt8Field(x as number);
      else this.float8Field(x as number);
    }
  }

  /** The origin columns: source_time (the bar's version time), part, kafka_offset. */
  origin(partition: number, offset: bigint, versionTimeMs: number): void {
    this.timestampField(versionTimeMs);
    this.int4Field(partition);
    this.bigInt8Field(offset);
  }

  /** The trailer; the buffer cut to what was written (a symbol's UTF-8 may be shorter than counted). */
  end(): Buffer {
    this.int16(-1);
    return this.at === this.buf.length ? this.buf : this.buf.subarray(0, this.at);
  }
}

/** A bar as it was consumed, its numbers and record time packed: what a staged row is made of. */
export interface ConsumedBar extends PackedBar {
  offset: bigint;
}

/**
 * The bars of one flush, with origins, straight from the partitions' entries (no per-row origin
 * object): every column of the staging table of `extras` (./staging.ts stagingTable), in its order.
 */
export function encodeCopyBinaryParts(
  parts: readonly { partition: number; entries: readonly ConsumedBar[] }[],
  extras: readonly ExtraColumn[] = [],
): Buffer {
  let rows = 0;
  let symbolChars = 0;
  for (let k = 0; k < parts.length; k++) {
    const entries = parts[k]!.entries;
    rows += entries.length;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      symbolChars += e.symbol.length;
      if (e.extras !== null && extras.length > 0) symbolChars += textChars(e.extras);
    }
  }
  // Per extra column at most a length word and 8 bytes (a text's characters are counted above).
  const w = new CopyWriter(rows, symbolChars, 12 * extras.length);
  const fields = ROW_FIELDS + extras.length;
  let seq = 0;
  for (let k = 0; k < parts.length; k++) {
    const { partition, entries } = parts[k]!;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      w.int16(fields);
      w.packedBar(seq++, e);
      w.origin(partition, e.offset, versionTimeOf(e));
      if (extras.length > 0) w.extraFields(extras, e.extras);
    }
  }
  return w.end();
}

/** UTF-16 units of the text values among `values`. */
function textChars(values: readonly ExtraValue[]): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (typeof x === 'string') n += x.length;
  }
  return n;
}
