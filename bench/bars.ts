/** The deterministic bars of every benchmark and their Kafka message values. */
import type { Bar } from '../src/contract/bar';
import { mulberry32 } from '../src/demo/random';

/** Minute 0 of every benchmark: in the past, so no bar is ever "from the future" for the contract. */
export const BENCH_START_MS = Date.UTC(2026, 0, 5, 0, 0);

export function symbolName(i: number): string {
  return `B${String(i).padStart(5, '0')}`;
}

/** A 32-bit hash of (symbol index, minute index, seed) → [0, 1) generator (mulberry32). */
function rngFor(s: number, m: number, seed: number): () => number {
  return mulberry32(
    Math.imul(s + 1, 0x9e3779b1) ^ Math.imul(m + 1, 0x85ebca6b) ^ Math.imul(seed, 0xc2b2ae35),
  );
}

const r4 = (x: number) => Math.round(x * 10_000) / 10_000;

/**
 * The bar of symbol `s` at minute `m`: a pure function, so any bar can be generated again for a
 * replay or streamed into Kafka without holding millions in memory. Valid under the contract.
 */
export function makeBar(s: number, m: number, startMs = BENCH_START_MS, seed = 1): Bar {
  const rand = rngFor(s, m, seed);
  const open = r4(10 + rand() * 490);
  const close = r4(open * (1 + (rand() - 0.5) * 0.01));
  const high = r4(Math.max(open, close) + rand() * 0.01);
  const low = r4(Math.min(open, close) - rand() * 0.01);
  const vwapRaw = rand() < 0.1 ? null : r4((low + high) / 2);
  return {
    symbol: symbolName(s),
    timestampMs: startMs + m * 60_000,
    open,
    high: Math.max(high, open, close),
    low: Math.min(low, open, close),
    close,
    volume: Math.floor(rand() * 1_000_000),
    revision: 0,
    tradeCount: null,
    deleted: false,
    extras: null,
    vwap: vwapRaw === null ? null : Math.min(Math.max(vwapRaw, low), high),
  };
}

/** The i-th bar of a minute-major feed of `symbols` symbols (all symbols of minute 0, then minute 1…). */
export function feedBar(i: number, symbols: number, startMs = BENCH_START_MS): Bar {
  return makeBar(i % symbols, Math.floor(i / symbols), startMs);
}

/** The two extra columns bench:e2e's BENCH_E2E_EXTRAS pass configures (BARS_EXTRA_COLUMNS). */
export const BENCH_EXTRA_COLUMNS = 'exchange:text(8),conditions:bigint';
const EXCHANGES = ['XNAS', 'XNYS', 'ARCX', 'BATS'];

/** The i-th feed bar's values of BENCH_EXTRA_COLUMNS: a venue and a conditions bit set. */
export function feedExtras(i: number): { exchange: string; conditions: number } {
  return { exchange: EXCHANGES[i % EXCHANGES.length]!, conditions: (i * 7919) % 4096 };
}

/** The Kafka message value of a bar (the contract of docs/contract.md). */
export function barJson(bar: Bar): string {
  return JSON.stringify({
    symbol: bar.symbol,
    timestamp: new Date(bar.timestampMs).toISOString(),
    open: bar.open,
    high: bar.high,
    low: bar.low,
    close: bar.close,
    volume: bar.volume,
    vwap: bar.vwap,
  });
}
