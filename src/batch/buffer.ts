/**
 * One partition's buffer: the messages taken from Kafka and not yet durable, in offset order.
 * Rejected messages stay in it as entries too (they are dead-lettered by the flush that covers them),
 * so a flush always covers a contiguous run of offsets and its commit offset is exact.
 */
import type { BarSlabs, PackedBar } from '../contract/packedBar';
import type { RejectedMessage } from '../deadletter/records';

/**
 * A valid bar and where it came from. Its numbers, the Kafka record timestamp among them (the bar's
 * version, the end-to-end delay), are packed in its partition's BarSlabs (../contract/packedBar.ts):
 * no heap object per number.
 */
export interface BarEntry extends PackedBar {
  kind: 'bar';
  offset: bigint;
  /**
   * The message as it came, for a dead letter should the database refuse the row and for the fence's
   * fingerprint: a copy of its value's bytes, in `sourceBytes` from `sourceStart` to `sourceEnd` (a slab
   * of the partition's SourceArena: no object per message for the garbage collector to move; see
   * sourceOf); its key (undefined: the same bytes as the symbol, the usual case, so nothing is copied)
   * and all its headers (null: none).
   */
  sourceBytes: Buffer;
  sourceStart: number;
  sourceEnd: number;
  key: Buffer | null | undefined;
  headers: Record<string, Buffer[]> | null;
}

/** The value bytes of a bar's message (a view of its arena's slab: slabs are never written twice). */
export function sourceOf(e: Pick<BarEntry, 'sourceBytes' | 'sourceStart' | 'sourceEnd'>): Buffer {
  return e.sourceBytes.subarray(e.sourceStart, e.sourceEnd);
}

/** Bytes of a SourceArena slab: ~100 bars. */
export const SOURCE_SLAB_BYTES = 16 * 1024;

/**
 * Copies of one partition's message values, bump-allocated in slabs outside the JavaScript heap; copies
 * are never written over. A slab is freed when no entry of it is left. A partition's entries leave in
 * offset order, so beyond its entries' own bytes it holds less than two slabs: the flushed part of its
 * oldest slab and the unused end of the one in use. Per partition, so one partition's stuck entries
 * never hold slabs another partition filled.
 */
export class SourceArena {
  slab: Buffer = Buffer.alloc(0);
  private at = 0;

  /** Copies `value` into the current slab (a new one when it does not fit); returns where it starts. */
  store(value: Uint8Array): number {
    if (this.at + value.length > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(Math.max(SOURCE_SLAB_BYTES, value.length));
      this.at = 0;
    }
    const start = this.at;
    this.slab.set(value, start);
    this.at = start + value.length;
    return start;
  }
}

/** Where a partition's bar entries keep their numbers and their value bytes (one of each per partition). */
export interface EntryStores {
  readonly bars: BarSlabs;
  readonly sources: SourceArena;
}

/** A message that will not be written: it stays in the buffer so the flush covering it dead-letters it. */
export interface RejectedEntry extends RejectedMessage {
  kind: 'rejected';
}

export type Entry = BarEntry | RejectedEntry;

/**
 * Bytes of a bar entry besides its symbol's characters and its value's copy: the entry object and its
 * offset (a BigInt) with the symbol string's header, ~144 on the heap (measured: 200,000 entries made
 * by Intake.entry held 155 bytes each with 6-character symbols), its packed numbers (96, in a slab)
 * and its two places in the buffer's arrays (16).
 */
export const BAR_ENTRY_BYTES = 256;

/** Bytes of an entry's extra-column values (BARS_EXTRA_COLUMNS): the array, a slot and a string each. */
function extrasBytes(extras: readonly unknown[]): number {
  let n = 16 + 8 * extras.length;
  for (const x of extras) if (typeof x === 'string') n += 16 + 2 * x.length;
  return n;
}

/** Estimated bytes of an entry: what the byte cap of the buffers counts. */
export function entryBytes(e: Entry): number {
  if (e.kind === 'bar') {
    let n = BAR_ENTRY_BYTES + 2 * e.symbol.length + (e.sourceEnd - e.sourceStart) + (e.key?.length ?? 0);
    if (e.headers) n += headerBytes(e.headers);
    if (e.extras) n += extrasBytes(e.extras);
    return n;
  }
  return (
    200 +
    (e.key?.length ?? 0) +
    (e.value?.length ?? 0) +
    2 * e.rejection.detail.length +
    headerBytes(e.headers)
  );
}

function headerBytes(headers: Record<string, Buffer[]>): number {
  let n = 0;
  for (const [k, vs] of Object.entries(headers)) {
    n += 2 * k.length + 40;
    for (const v of vs) n += v.length + 16;
  }
  return n;
}

/** A prefix of a partition's buffer, handed to one flush. */
export interface Batch {
  entries: Entry[];
  /** How many entries are bars. */
  barCount: number;
  bytes: number;
  /** The offset after the last entry: what to commit once the batch is durable. */
  nextOffset: bigint;
}

export class PartitionBuffer {
  private entries: Entry[] = [];
  private arrivals: number[] = [];
  private head = 0;
  private bars = 0;
  private bytesHeld = 0;

  get size(): number {
    return this.entries.length - this.head;
  }

  get barCount(): number {
    return this.bars;
  }

  get bytes(): number {
    return this.bytesHeld;
  }

  /** Arrival time (ms) of the oldest entry, or null when empty. */
  get oldestArrivalMs(): number | null {
    return this.size === 0 ? null : this.arrivals[this.head]!;
  }

  push(entry: Entry, arrivalMs: number): void {
    this.entries.push(entry);
    this.arrivals.push(arrivalMs);
    if (entry.kind === 'bar') this.bars++;
    this.bytesHeld += entryBytes(entry);
  }

  /**
   * Removes and returns the oldest entries holding at most `maxBars` bars (rejected entries ride
   * along, and a run of rejected entries is taken even with no bar). Returns null when empty.
   */
  take(maxBars: number): Batch | null {
    if (this.size === 0) return null;
    const start = this.head;
    let end = start;
    let bars = 0;
    let bytes = 0;
    while (end < this.entries.length) {
      const e = this.entries[end]!;
      if (e.kind === 'bar') {
        if (bars === maxBars) break;
        bars++;
      }
      bytes += entryBytes(e);
      end++;
    }
    if (end === start) return null;
    const taken = this.entries.slice(start, end);
    this.head = end;
    this.bars -= bars;
    this.bytesHeld -= bytes;
    if (this.head > 4096 && this.head * 2 > this.entries.length) this.compact();
    return { entries: taken, barCount: bars, bytes, nextOffset: taken[taken.length - 1]!.offset + 1n };
  }

  /** Drops everything (partition revoked); returns what was dropped, for accounting. */
  clear(): { entries: number; bytes: number } {
    const dropped = { entries: this.size, bytes: this.bytesHeld };
    this.entries = [];
    this.arrivals = [];
    this.head = 0;
    this.bars = 0;
    this.bytesHeld = 0;
    return dropped;
  }

  private compact(): void {
    this.entries = this.entries.slice(this.head);
    this.arrivals = this.arrivals.slice(this.head);
    this.head = 0;
  }
}
