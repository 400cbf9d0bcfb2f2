/**
 * A what-if for the write path, used by bench:write's extra variants (cbin) and (dbin) only: the same
 * staging rows as src/store/copyEncoding.ts encodeCopyRows(), in PostgreSQL's binary COPY format
 * (COPY … FROM STDIN (FORMAT binary)). Doubles travel as 8 bytes (no shortest-round-trip printing in
 * Node, no float8in parsing in PostgreSQL), timestamps as int8 microseconds since 2000-01-01 (no
 * toISOString, no timestamptz_in).
 *
 * Layout: signature, flags, header extension; per row a field count (int16) and per field its length
 * (int32, -1 for NULL) and value (network byte order); trailer int16 -1.
 */
import type { Bar } from '../src/contract/bar';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const TWO_32 = 2 ** 32;

function writeInt64(buf: Buffer, value: number, at: number): number {
  // value is a safe integer: split into the high and low 32 bits (two's complement for negatives).
  const hi = Math.floor(value / TWO_32);
  const lo = value - hi * TWO_32;
  buf.writeInt32BE(hi, at);
  buf.writeUInt32BE(lo, at + 4);
  return at + 8;
}

/** seq, symbol, timestamp, open, high, low, close, volume, vwap: the staging table's columns. */
export function encodeCopyRowsBinary(bars: readonly Bar[]): Buffer {
  let size = SIGNATURE.length + 8 + 2;
  for (const b of bars) size += 98 + Buffer.byteLength(b.symbol);
  const buf = Buffer.allocUnsafe(size);
  let at = SIGNATURE.copy(buf, 0);
  at = buf.writeInt32BE(0, at); // flags
  at = buf.writeInt32BE(0, at); // header extension length
  for (let i = 0; i < bars.length; i++) {
    const b = bars[i]!;
    at = buf.writeInt16BE(9, at);
    at = buf.writeInt32BE(4, at);
    at = buf.writeInt32BE(i, at);
    const symLen = buf.write(b.symbol, at + 4, 'utf8');
    buf.writeInt32BE(symLen, at);
    at += 4 + symLen;
    at = buf.writeInt32BE(8, at);
    at = writeInt64(buf, (b.timestampMs - PG_EPOCH_MS) * 1000, at);
    for (const v of [b.open, b.high, b.low, b.close]) {
      at = buf.writeInt32BE(8, at);
      at = buf.writeDoubleBE(v, at);
    }
    at = buf.writeInt32BE(8, at);
    at = writeInt64(buf, b.volume, at);
    if (b.vwap === null) {
      at = buf.writeInt32BE(-1, at);
    } else {
      at = buf.writeInt32BE(8, at);
      at = buf.writeDoubleBE(b.vwap, at);
    }
  }
  at = buf.writeInt16BE(-1, at);
  return at === size ? buf : buf.subarray(0, at);
}
