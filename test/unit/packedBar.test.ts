import { Registry } from 'prom-client';
import { SourceArena, sourceOf, type BarEntry } from '../../src/batch/buffer';
import { Intake } from '../../src/batch/intake';
import { decodeBar, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, type Bar } from '../../src/contract/bar';
import {
  BAR_SLOTS,
  BarSlabs,
  messageTimeOf,
  packBar,
  packBars,
  SLAB_BARS,
  timestampOf,
  unpackBar,
} from '../../src/contract/packedBar';
import { mulberry32 } from '../../src/demo/random';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { flatBar } from '../support/flatBar';

const T0 = Date.UTC(2026, 10, 24, 14, 31);

/** Prices that differ from one another, so a slot read for another shows. */
const base: Bar = { ...flatBar('AAPL', T0), high: 2, low: 0.5, close: 1.5, volume: 10 };

describe('packed bars', () => {
  test('a bar unpacks to itself: edge values, vwap null and 0 told apart, record time and timestamp', () => {
    const bars: Bar[] = [
      base,
      { ...base, vwap: 0 },
      { ...base, vwap: 1.25, revision: 3 },
      { ...base, volume: Number.MAX_SAFE_INTEGER, revision: Number.MAX_SAFE_INTEGER },
      { ...base, open: 5e-324, high: Number.MAX_VALUE, low: -Number.MAX_VALUE, close: 0.1 },
      { ...base, timestampMs: MIN_TIMESTAMP_MS },
      { ...base, timestampMs: MAX_TIMESTAMP_MS, symbol: 'Ä€𝄞' },
    ];
    bars.forEach((bar, i) => {
      const p = packBar(bar, T0 + i);
      expect(unpackBar(p)).toEqual(bar);
      expect(timestampOf(p)).toBe(bar.timestampMs);
      expect(messageTimeOf(p)).toBe(T0 + i);
    });
    expect(unpackBar(packBar(base, 0)).vwap).toBeNull();
    expect(unpackBar(packBar({ ...base, vwap: 0 }, 0)).vwap).toBe(0);
  });

  test('slabs: SLAB_BARS bars to a slab, then a new one; a packed bar is never written over', () => {
    const slabs = new BarSlabs();
    const rand = mulberry32(1203);
    const made: { bar: Bar; t: number; values: Float64Array; at: number }[] = [];
    for (let i = 0; i < 2 * SLAB_BARS + 5; i++) {
      const bar = { ...base, symbol: `S${i}`, open: rand(), close: rand(), volume: i, revision: i % 7 };
      const t = T0 + i;
      const at = slabs.pack(bar, t);
      made.push({ bar, t, values: slabs.values, at });
    }
    expect(new Set(made.map((m) => m.values)).size).toBe(3);
    expect(made[SLAB_BARS - 1]!.values).toBe(made[0]!.values);
    expect(made[SLAB_BARS]!.values).not.toBe(made[0]!.values);
    expect(made[SLAB_BARS]!.at).toBe(0);
    expect(made[1]!.at).toBe(BAR_SLOTS);
    for (const m of made) {
      const p = { symbol: m.bar.symbol, extras: null, values: m.values, at: m.at };
      expect(unpackBar(p)).toEqual(m.bar);
      expect(messageTimeOf(p)).toBe(m.t);
    }
  });

  test('packBars puts a whole load in one slab, in order', () => {
    const rows = Array.from({ length: 3000 }, (_, i) => ({
      bar: { ...base, timestampMs: T0 + i * 60_000 },
      messageTimeMs: i,
    }));
    const packed = packBars(rows);
    expect(new Set(packed.map((p) => p.values)).size).toBe(1);
    expect(packed.map(unpackBar)).toEqual(rows.map((r) => r.bar));
    expect(packed.map(messageTimeOf)).toEqual(rows.map((r) => r.messageTimeMs));
  });
});

describe('Intake.entry', () => {
  const intake = new Intake({
    metrics: createMetrics(new Registry(), false),
    logger: createLogger('silent'),
  });

  test('a valid message: its bar packed, its record time, value bytes and key kept as the message had them', () => {
    const stores = { bars: new BarSlabs(), sources: new SourceArena() };
    const rand = mulberry32(7);
    const entries: { entry: BarEntry; value: Buffer; expected: Bar; key: Buffer }[] = [];
    // Across slab boundaries: each entry must keep the slab its bar went into.
    for (let i = 0; i < 2 * SLAB_BARS + 3; i++) {
      const open = Math.round(rand() * 10_000) / 100;
      const json = {
        symbol: `S${i % 50}`,
        timestamp: new Date(T0 + (i % 7) * 60_000).toISOString(),
        open,
        high: open + 1,
        low: open - 1,
        close: open + 0.5,
        volume: i,
        ...(i % 3 === 0 ? { vwap: open } : {}),
        ...(i % 5 === 0 ? { revision: i } : {}),
      };
      const value = Buffer.from(JSON.stringify(json));
      const key = Buffer.from(i % 4 === 0 ? 'other' : json.symbol);
      const e = intake.entry(
        'bars',
        0,
        { offset: String(i), key, value, headers: {}, timestamp: String(T0 + 1000 + i) },
        BigInt(i),
        T0,
        stores,
      );
      const decoded = decodeBar(value, T0);
      if (e.kind !== 'bar' || !decoded.ok) throw new Error(`message ${i} was not taken as a bar`);
      entries.push({ entry: e, value, expected: decoded.bar, key });
    }
    entries.forEach(({ entry, value, expected, key }, i) => {
      expect(unpackBar(entry)).toEqual(expected);
      expect(entry.symbol).toBe(expected.symbol);
      expect(messageTimeOf(entry)).toBe(T0 + 1000 + i);
      expect(entry.offset).toBe(BigInt(i));
      expect(sourceOf(entry).equals(value)).toBe(true);
      // A key that spells the symbol is not copied; any other is.
      if (i % 4 === 0) expect(entry.key).toEqual(key);
      else expect(entry.key).toBeUndefined();
    });
  });

  test('a rejected message keeps its bytes and reason, and packs nothing', () => {
    const stores = { bars: new BarSlabs(), sources: new SourceArena() };
    const value = Buffer.from('{"symbol":"AAPL"}');
    const e = intake.entry(
      'bars',
      0,
      { offset: '5', key: null, value, headers: { h: 'x' }, timestamp: String(T0) },
      5n,
      T0,
      stores,
    );
    expect(e.kind).toBe('rejected');
    if (e.kind !== 'rejected') return;
    expect(e.rejection.reason).toBe('missing_field');
    expect(e.value).toEqual(value);
    expect(e.headers).toEqual({ h: [Buffer.from('x')] });
    expect(e.messageTimeMs).toBe(T0);
    expect(stores.bars.values.length).toBe(0);
  });
});
