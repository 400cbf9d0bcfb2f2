/**
 * bench:micro — CPU cost per bar of the service's per-message JavaScript, in isolation (no I/O), to put
 * numbers on what the e2e CPU profile points at: decoding (src/contract/bar.ts) and COPY encoding
 * (src/store/copyEncoding.ts), against baselines (the JSON.parse alone; the text COPY and the binary
 * COPY from Bar objects of test/support/copyReference.ts). The "alone:" rows time one step by itself (not additive: JIT and GC
 * differ). Best of BENCH_MICRO_REPS (7) passes over BENCH_MICRO_BARS (100000) bars, so a
 * busy machine inflates the figures less than it does the end-to-end ones.
 */
import { Registry } from 'prom-client';
import { PartitionBuffer, SourceArena } from '../src/batch/buffer';
import { Intake } from '../src/batch/intake';
import type { InboundMessage } from '../src/consumer/port';
import { decodeBar, decodeBarGeneral, parseTimestamp, type Bar } from '../src/contract/bar';
import { findDuplicateTopLevelKey } from '../src/contract/jsonScan';
import { BarSlabs } from '../src/contract/packedBar';
import { createLogger } from '../src/observe/logger';
import { createMetrics } from '../src/observe/metrics';
import { encodeCopyBinaryParts } from '../src/store/copyEncoding';
import {
  encodeCopyBinary as encodeCopyRowsBinary,
  encodeCopyRows,
  type BarOrigin,
} from '../test/support/copyReference';
import { barJson, feedBar } from './bars';
import { envInt } from './env';
import { nowMs, printTable, round } from './report';
import { saveResult } from './results';

const n = envInt('BENCH_MICRO_BARS', 100_000);
const reps = envInt('BENCH_MICRO_REPS', 7);
const bars: Bar[] = Array.from({ length: n }, (_, i) => feedBar(i, 12_000));
const values: Buffer[] = bars.map((b) => Buffer.from(barJson(b)));
const texts: string[] = values.map((v) => v.toString('utf8'));
const isoStrings: string[] = bars.map((b) => new Date(b.timestampMs).toISOString());
const now = Date.now();
let sink = 0;

function best(fn: () => void): number {
  let min = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = nowMs();
    fn();
    min = Math.min(min, nowMs() - t0);
  }
  return (min * 1000) / n; // µs per bar
}

const batches = (size: number): Bar[][] => {
  const out: Bar[][] = [];
  for (let i = 0; i < n; i += size) out.push(bars.slice(i, i + size));
  return out;
};
const b1000 = batches(1000);

// Messages as kafkajs hands them over (offset and timestamp as decimal strings, the key the symbol).
const messages: InboundMessage[] = bars.map((b, i) => ({
  offset: String(1_000_000 + i),
  key: Buffer.from(b.symbol),
  value: values[i]!,
  headers: {},
  timestamp: String(b.timestampMs + 1500),
}));
const flushBars = batches(1000);
const flushSlabs = new BarSlabs();
const flushParts = flushBars.map((bs, k) => ({
  partition: k % 6,
  entries: bs.map((bar, i) => flushSlabs.packedAt(bar, bar.timestampMs + 1500, BigInt(k * 1000 + i))),
}));
const intake = new Intake({ metrics: createMetrics(new Registry(), false), logger: createLogger('silent') });

const rows: [string, number][] = [
  [
    'decodeBar (src/contract/bar.ts), whole',
    best(() => {
      for (const v of values) sink += decodeBar(v, now).ok ? 1 : 0;
    }),
  ],
  [
    '  decodeBarGeneral: the same without the fast path (JSON.parse)',
    best(() => {
      for (const v of values) sink += decodeBarGeneral(v, now).ok ? 1 : 0;
    }),
  ],
  [
    '  alone: TextDecoder + JSON.parse (baseline)',
    best(() => {
      const dec = new TextDecoder('utf-8', { fatal: true });
      for (const v of values) sink += (JSON.parse(dec.decode(v)) as { volume: number }).volume > 0 ? 1 : 0;
    }),
  ],
  [
    '  alone: findDuplicateTopLevelKey',
    best(() => {
      for (const t of texts) sink += findDuplicateTopLevelKey(t) === null ? 1 : 0;
    }),
  ],
  [
    '  alone: parseTimestamp',
    best(() => {
      for (const s of isoStrings) sink += parseTimestamp(s).ok ? 1 : 0;
    }),
  ],
  [
    'encodeCopyRows, text (test/support/copyReference.ts)',
    best(() => {
      for (const b of b1000) sink += encodeCopyRows(b).length;
    }),
  ],
  [
    '  alone: String(double) ×5 (the num() calls)',
    best(() => {
      for (const b of bars)
        sink +=
          String(b.open).length +
          String(b.high).length +
          String(b.low).length +
          String(b.close).length +
          (b.vwap === null ? 0 : String(b.vwap).length);
    }),
  ],
  [
    '  alone: new Date(ms).toISOString()',
    best(() => {
      for (const b of bars) sink += new Date(b.timestampMs).toISOString().length;
    }),
  ],
  [
    'intake: per message as handleBatch does it (BigInt offset, Intake.entry, PartitionBuffer.push)',
    best(() => {
      const buffer = new PartitionBuffer();
      const stores = { bars: new BarSlabs(), sources: new SourceArena() };
      for (const m of messages) {
        buffer.push(intake.entry('bars', 0, m, BigInt(m.offset), now, stores), now);
        if (buffer.barCount === 1000) sink += buffer.take(1000)!.entries.length;
      }
    }),
  ],
  [
    'flush encoding: encodeCopyBinaryParts, 1,000 consumed bars per flush (src/store/copyEncoding.ts)',
    best(() => {
      for (const p of flushParts) sink += encodeCopyBinaryParts([p]).length;
    }),
  ],
  [
    '  what-if: Bar objects and origin arrays, then encodeCopyBinary (writeGroup before 2026-12-03)',
    best(() => {
      flushParts.forEach((p, k) => {
        const bs = flushBars[k]!;
        const origins: BarOrigin[] = [];
        for (let i = 0; i < bs.length; i++) {
          origins.push({
            partition: p.partition,
            offset: p.entries[i]!.offset,
            recordTimeMs: bs[i]!.timestampMs + 1500,
          });
        }
        sink += encodeCopyRowsBinary(bs, origins).length;
      });
    }),
  ],
  [
    'encodeCopyRowsBinary (encodeCopyBinary in test/support/copyReference.ts, what-if)',
    best(() => {
      for (const b of b1000) sink += encodeCopyRowsBinary(b).length;
    }),
  ],
];

console.log(`bench:micro — µs per bar, best of ${reps} passes over ${n.toLocaleString('en-US')} bars`);
printTable([['what', 'µs/bar'], ...rows.map(([k, v]) => [k, round(v, 3)])], [0]);
if (sink === 42) console.log('');
saveResult('micro', {
  bars: n,
  reps,
  microsecondsPerBar: Object.fromEntries(rows.map(([k, v]) => [k.trim(), round(v, 3)])),
});
