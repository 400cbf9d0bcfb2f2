/**
 * The bulk feed (`--rate N`): N valid live bars a second on top of the produce track, for volume. Its
 * messages are never listed (a MessageSpec costs ~450 bytes of heap: 2.7M of them would not fit a
 * run). A bulk index g names one bar: symbol B{g mod S} (S = `BULK_SYMBOLS`) at minute ⌊g / S⌋ after
 * BASE_MS, its values drawn by `drawBar` from mulberry32 seeded with a hash of (seed, g); the schedule
 * describes the feed as events (a send time and a range of indices), the producer derives each message
 * when it sends it (key = symbol, the client's record time, the id header only), the read-back keeps a
 * record of it as four numbers when its value, key and headers are byte for byte what (seed, g) derives
 * (`BulkColumns`: anything else stays a full record, which the checker reports), and the checker
 * derives the bar again. Bulk symbols are the feed's own: no other message has their keys.
 */
import { mulberry32 } from '../../src/demo/random';
import type { BarFields, BulkPlan, BulkRecords, StoredBulk, StoredRow } from './model';
import { BASE_MS, drawBar } from './schedule';

export function bulkSymbol(i: number): string {
  return `B${String(i).padStart(4, '0')}`;
}

/** A bulk event's indices: first … first + count − 1. */
export type BulkRange = Pick<BulkPlan['events'][number], 'first' | 'count'>;

/** How many bulk indices a plan covers (0 … total − 1). */
export function bulkTotal(plan: { events: readonly BulkRange[] }): number {
  const last = plan.events.at(-1);
  return last ? last.first + last.count : 0;
}

/** The event of index g (binary search over the events' first indices), or -1. */
export function bulkEventOf(plan: { events: readonly BulkRange[] }, g: number): number {
  let lo = 0;
  let hi = plan.events.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const e = plan.events[mid]!;
    if (g < e.first) hi = mid - 1;
    else if (g >= e.first + e.count) lo = mid + 1;
    else return mid;
  }
  return -1;
}

/** A 32-bit hash of (seed, g < 2^32) (murmur3's finalizer): the seed of g's values. */
function mix(seed: number, g: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ g;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The minute (bar start, epoch ms) of bulk index g. */
export function bulkMinuteMs(symbols: number, g: number): number {
  return BASE_MS + Math.floor(g / symbols) * 60_000;
}

/** The bar of bulk index g. */
export function bulkBar(seed: number, symbols: number, g: number): BarFields {
  return drawBar(mulberry32(mix(seed >>> 0, g)), bulkSymbol(g % symbols), bulkMinuteMs(symbols, g));
}

/** A bulk bar's message value (`Number#toString` is JSON's text of a finite number). */
export function bulkValueOf(b: BarFields): string {
  return `{"symbol":"${b.symbol}","timestamp":"${new Date(b.timestampMs).toISOString()}","open":${b.open},"high":${b.high},"low":${b.low},"close":${b.close},"volume":${b.volume},"vwap":${b.vwap}}`;
}

export function bulkValue(seed: number, symbols: number, g: number): string {
  return bulkValueOf(bulkBar(seed, symbols, g));
}

/** A bulk message's id (ID_HEADER): `seed/g` in base 36 (the other ids have no '/'). */
export function bulkId(seed: number, g: number): string {
  return `${(seed >>> 0).toString(36)}/${g.toString(36)}`;
}

/** The bulk index an id names for `seed` (null: not a bulk id of this seed). */
export function bulkIndexOf(seed: number, id: string | null): number | null {
  if (id === null) return null;
  const slash = id.indexOf('/');
  if (slash < 0 || id.slice(0, slash) !== (seed >>> 0).toString(36)) return null;
  const rest = id.slice(slash + 1);
  if (!/^[0-9a-z]{1,11}$/.test(rest)) return null;
  const g = parseInt(rest, 36);
  return Number.isSafeInteger(g) && g.toString(36) === rest ? g : null;
}

/** Whether an id has the bulk form (of any seed). */
export function isBulkId(id: string | null): boolean {
  return id !== null && id.includes('/');
}

/** The bulk index of a stored row's key (null: not a key of the feed's first `total` bars). */
export function bulkIndexOfKey(
  symbols: number,
  total: number,
  symbol: string,
  timestampMs: number,
): number | null {
  if (!/^B\d{4}$/.test(symbol)) return null;
  const s = Number(symbol.slice(1));
  const minute = (timestampMs - BASE_MS) / 60_000;
  if (s >= symbols || !Number.isSafeInteger(minute) || minute < 0) return null;
  const g = minute * symbols + s;
  return g < total ? g : null;
}

/**
 * Bulk records of one topic log, as read back, in growing typed arrays: partition, offset, record time,
 * index. `finish` sorts them by partition and offset (the read-back appends per partition in offset
 * order, partitions interleaved).
 */
export class BulkColumns {
  private n = 0;
  private partition = new Int32Array(1 << 16);
  private offset = new Float64Array(1 << 16);
  private timestampMs = new Float64Array(1 << 16);
  private index = new Uint32Array(1 << 16);

  get length(): number {
    return this.n;
  }

  push(partition: number, offset: number, timestampMs: number, g: number): void {
    if (this.n === this.partition.length) {
      const grow = <T extends Int32Array | Uint32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.partition = grow(this.partition);
      this.offset = grow(this.offset);
      this.timestampMs = grow(this.timestampMs);
      this.index = grow(this.index);
    }
    this.partition[this.n] = partition;
    this.offset[this.n] = offset;
    this.timestampMs[this.n] = timestampMs;
    this.index[this.n] = g;
    this.n++;
  }

  /** The records sorted by partition and offset, each (partition, offset) once. */
  finish(): BulkRecords {
    const order = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) order[i] = i;
    order.sort((a, b) => this.partition[a]! - this.partition[b]! || this.offset[a]! - this.offset[b]!);
    let m = 0;
    for (let i = 0; i < this.n; i++) {
      const a = order[i]!;
      const b = m > 0 ? order[m - 1]! : -1;
      if (b >= 0 && this.partition[a] === this.partition[b] && this.offset[a] === this.offset[b]) continue;
      order[m++] = a;
    }
    const out: BulkRecords = {
      partition: new Int32Array(m),
      offset: new Float64Array(m),
      timestampMs: new Float64Array(m),
      index: new Uint32Array(m),
    };
    for (let to = 0; to < m; to++) {
      const from = order[to]!;
      out.partition[to] = this.partition[from]!;
      out.offset[to] = this.offset[from]!;
      out.timestampMs[to] = this.timestampMs[from]!;
      out.index[to] = this.index[from]!;
    }
    return out;
  }
}

/** The row of `records` at (partition, offset), or -1 (binary search: they are sorted). */
export function findBulk(records: BulkRecords, partition: number, offset: number): number {
  let lo = 0;
  let hi = records.partition.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = records.partition[mid]! - partition || records.offset[mid]! - offset;
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** An empty StoredBulk for bulk indices 0 … total − 1. */
export function newStoredBulk(total: number): StoredBulk {
  const f = () => new Float64Array(total).fill(NaN);
  return {
    present: new Uint8Array(total),
    open: f(),
    high: f(),
    low: f(),
    close: f(),
    volume: f(),
    vwap: f(),
    revision: f(),
    sourceTimeMs: f(),
    sourceOrigin: f(),
  };
}

const exact = (x: number) => Number.isFinite(x) && (Number.isSafeInteger(x) || !Number.isInteger(x));

/**
 * Keeps `row` as g's stored row when it is the first of g and every number of it is held exactly by a
 * double that is not NaN (the origin below 2^53); false otherwise (the caller keeps it as a StoredRow).
 */
export function storeBulkRow(sb: StoredBulk, g: number, row: StoredRow, hasOrigin: boolean): boolean {
  if (sb.present[g] === 1) return false;
  const nums = [row.open, row.high, row.low, row.close, row.volume, row.revision];
  if (
    !nums.every(Number.isFinite) ||
    !Number.isSafeInteger(row.volume) ||
    !Number.isSafeInteger(row.revision)
  )
    return false;
  if (row.vwap !== null && !Number.isFinite(row.vwap)) return false;
  if (row.sourceTimeMs !== null && !exact(row.sourceTimeMs)) return false;
  const origin = row.sourceOrigin;
  if (hasOrigin && origin !== null && origin !== undefined) {
    if (origin < 0n || origin > BigInt(Number.MAX_SAFE_INTEGER)) return false;
  }
  sb.present[g] = 1;
  sb.open[g] = row.open;
  sb.high[g] = row.high;
  sb.low[g] = row.low;
  sb.close[g] = row.close;
  sb.volume[g] = row.volume;
  sb.vwap[g] = row.vwap ?? NaN;
  sb.revision[g] = row.revision;
  sb.sourceTimeMs[g] = row.sourceTimeMs ?? NaN;
  sb.sourceOrigin[g] = hasOrigin && origin !== null && origin !== undefined ? Number(origin) : NaN;
  return true;
}

/** g's stored row as a StoredRow (undefined: none), for the checker's judgement of its key. */
export function storedBulkRow(
  sb: StoredBulk,
  g: number,
  symbols: number,
  hasOrigin: boolean,
): StoredRow | undefined {
  if (sb.present[g] !== 1) return undefined;
  const nan = (x: number) => (Number.isNaN(x) ? null : x);
  return {
    symbol: bulkSymbol(g % symbols),
    timestampMs: bulkMinuteMs(symbols, g),
    open: sb.open[g]!,
    high: sb.high[g]!,
    low: sb.low[g]!,
    close: sb.close[g]!,
    volume: sb.volume[g]!,
    vwap: nan(sb.vwap[g]!),
    revision: sb.revision[g]!,
    sourceTimeMs: nan(sb.sourceTimeMs[g]!),
    ...(hasOrigin
      ? { sourceOrigin: Number.isNaN(sb.sourceOrigin[g]!) ? null : BigInt(sb.sourceOrigin[g]!) }
      : {}),
  };
}
