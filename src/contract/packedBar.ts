/**
 * A bar with its numbers packed in a Float64Array slab: how bars wait in memory by the thousand (the
 * partitions' buffers, a flush on its way to the database).
 *
 * V8 keeps a number-valued field of an object as a pointer to a heap object of its own (a HeapNumber)
 * whenever the number is not a small integer: a Bar holds six of them (timestamp, four prices, vwap) and
 * its entry a seventh (the record timestamp). Every object that is alive when the young generation is
 * collected gets copied, once or twice, so a buffer of 10,000 bars meant ~80,000 objects for the
 * collector to move at each scavenge. A packed bar is its symbol and a place (`at`) in a slab whose
 * memory is outside the JavaScript heap: nothing there for the collector to trace or copy.
 *
 * Layout: BAR_SLOTS doubles per bar from `at`, in the SLOT_* order. Every number of a valid bar is a
 * double exactly (volume, revision and trade_count are safe integers); a missing vwap or trade_count is
 * NaN, which a valid bar's never is (the contract takes finite numbers only). A bar's extra columns
 * (BARS_EXTRA_COLUMNS) are not numbers only: they travel beside it, as `extras`.
 */
import type { Bar } from './bar';
import type { ExtraValue } from './extras';

export const SLOT_TIMESTAMP = 0;
export const SLOT_OPEN = 1;
export const SLOT_HIGH = 2;
export const SLOT_LOW = 3;
export const SLOT_CLOSE = 4;
export const SLOT_VOLUME = 5;
/** NaN when the bar has no vwap. */
export const SLOT_VWAP = 6;
export const SLOT_REVISION = 7;
/** The Kafka record timestamp of the bar's message (epoch ms; 0 when it had none): its fingerprint, delay. */
export const SLOT_MESSAGE_TIME = 8;
/** The time part of the bar's version (./version.ts): the record timestamp, bounded, or a header's. */
export const SLOT_VERSION_TIME = 9;
/** The bar's trade_count; NaN when it has none. */
export const SLOT_TRADE_COUNT = 10;
/** 1 for a delete (the contract's `deleted: true`), else 0. */
export const SLOT_DELETED = 11;
export const BAR_SLOTS = 12;

export interface PackedBar {
  readonly symbol: string;
  /** The values of BARS_EXTRA_COLUMNS, in their order; null when none are configured (or a delete). */
  readonly extras: readonly ExtraValue[] | null;
  /** The slab holding the bar's numbers, from `at` to `at + BAR_SLOTS - 1`. */
  readonly values: Float64Array;
  readonly at: number;
}

/**
 * Bars per slab: 18 KiB, of the order of a SourceArena slab (16 KiB, ~100 values): a partition holds
 * less than two slabs beyond its bars' own bytes, so a member with many partitions holds little more.
 */
export const SLAB_BARS = 256;

/**
 * Bump allocation of packed bars in slabs; a slab is never written twice and is freed with the last
 * bar that points into it. One per partition, so one partition's stuck bars never hold slabs another
 * partition filled (as SourceArena, ../batch/buffer.ts).
 */
export class BarSlabs {
  /** The slab in use: a bar packed now goes here. */
  values: Float64Array;
  private next = 0;

  /** `firstSlabBars`: room for this many bars in the first slab (a load of known size: one slab). */
  constructor(firstSlabBars = 0) {
    this.values = new Float64Array(firstSlabBars * BAR_SLOTS);
  }

  /**
   * Packs `bar` with its message's record time and its version time (ms; the record time unless
   * given) into `values`; returns where it starts.
   */
  pack(bar: Bar, messageTimeMs: number, versionTimeMs = messageTimeMs): number {
    if (this.next + BAR_SLOTS > this.values.length) {
      this.values = new Float64Array(SLAB_BARS * BAR_SLOTS);
      this.next = 0;
    }
    const v = this.values;
    const at = this.next;
    v[at + SLOT_TIMESTAMP] = bar.timestampMs;
    v[at + SLOT_OPEN] = bar.open;
    v[at + SLOT_HIGH] = bar.high;
    v[at + SLOT_LOW] = bar.low;
    v[at + SLOT_CLOSE] = bar.close;
    v[at + SLOT_VOLUME] = bar.volume;
    v[at + SLOT_VWAP] = bar.vwap === null ? NaN : bar.vwap;
    v[at + SLOT_REVISION] = bar.revision;
    v[at + SLOT_MESSAGE_TIME] = messageTimeMs;
    v[at + SLOT_VERSION_TIME] = versionTimeMs;
    v[at + SLOT_TRADE_COUNT] = bar.tradeCount ?? NaN;
    v[at + SLOT_DELETED] = bar.deleted === true ? 1 : 0;
    this.next = at + BAR_SLOTS;
    return at;
  }

  /**
   * pack() with the packed bar as an object of its own (for callers that keep no other object per bar).
   * To add fields, build one literal from pack() instead (as Intake does): an object made by spreading
   * this one reads its fields several times slower (measured: encodeCopyBinaryParts ~4x).
   */
  packed(bar: Bar, messageTimeMs: number): PackedBar {
    const at = this.pack(bar, messageTimeMs);
    return { symbol: bar.symbol, extras: bar.extras ?? null, values: this.values, at };
  }

  /** packed() with the bar's Kafka offset, as one literal (see above). */
  packedAt(
    bar: Bar,
    messageTimeMs: number,
    offset: bigint,
    versionTimeMs = messageTimeMs,
  ): PackedBar & { offset: bigint } {
    const at = this.pack(bar, messageTimeMs, versionTimeMs);
    return { offset, symbol: bar.symbol, extras: bar.extras ?? null, values: this.values, at };
  }
}

/** Packs bars that do not come by the thousand from Kafka (a file load, tests): one slab for them all. */
export function packBars(rows: readonly { bar: Bar; messageTimeMs: number }[]): PackedBar[] {
  const slabs = new BarSlabs(rows.length);
  return rows.map((r) => slabs.packed(r.bar, r.messageTimeMs));
}

/** packBars of one bar. */
export function packBar(bar: Bar, messageTimeMs: number): PackedBar {
  return packBars([{ bar, messageTimeMs }])[0]!;
}

/** The bar start (epoch ms). */
export function timestampOf(p: PackedBar): number {
  return p.values[p.at + SLOT_TIMESTAMP]!;
}

/** The record timestamp of the bar's message (epoch ms). */
export function messageTimeOf(p: PackedBar): number {
  return p.values[p.at + SLOT_MESSAGE_TIME]!;
}

/** The time part of the bar's version (epoch ms). */
export function versionTimeOf(p: PackedBar): number {
  return p.values[p.at + SLOT_VERSION_TIME]!;
}

/** The bar's trade_count, or null. */
export function tradeCountOf(p: PackedBar): number | null {
  const n = p.values[p.at + SLOT_TRADE_COUNT]!;
  return Number.isNaN(n) ? null : n;
}

/** Whether the packed bar is a delete. */
export function isDelete(p: PackedBar): boolean {
  return p.values[p.at + SLOT_DELETED] === 1;
}

/** The bar as an object again (a dead letter's key, tests). */
export function unpackBar(p: PackedBar): Bar {
  const v = p.values;
  const at = p.at;
  const vwap = v[at + SLOT_VWAP]!;
  return {
    symbol: p.symbol,
    timestampMs: v[at + SLOT_TIMESTAMP]!,
    open: v[at + SLOT_OPEN]!,
    high: v[at + SLOT_HIGH]!,
    low: v[at + SLOT_LOW]!,
    close: v[at + SLOT_CLOSE]!,
    volume: v[at + SLOT_VOLUME]!,
    vwap: Number.isNaN(vwap) ? null : vwap,
    revision: v[at + SLOT_REVISION]!,
    tradeCount: tradeCountOf(p),
    deleted: isDelete(p),
    extras: p.extras,
  };
}
