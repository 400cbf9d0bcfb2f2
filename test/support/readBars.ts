/**
 * The store's read answers (src/store/readBars.ts) as tests compare them: each ReadBar with its values
 * parsed, and a contract Bar in the same shape (the fields the read API answers, no extra columns).
 */
import type { Bar } from '../../src/contract/bar';
import type { ReadBar } from '../../src/contract/readBar';

/** A bar as the reader answers it, its values parsed (as PostgreSQL wrote them for the API). */
export interface ParsedReadBar {
  symbol: string;
  timestampMs: number;
  close: number;
  [name: string]: unknown;
}

export function parseReadBars(bars: readonly ReadBar[]): ParsedReadBar[] {
  return bars.map((b) => ({
    symbol: b.symbol,
    timestampMs: b.timestampMs,
    ...(JSON.parse(`{${b.values}}`) as { close: number; [name: string]: unknown }),
  }));
}

/** `b` as parseReadBars gives it back once stored and read. */
export function readBarOf(b: Bar): ParsedReadBar {
  return {
    symbol: b.symbol,
    timestampMs: b.timestampMs,
    open: b.open,
    high: b.high,
    low: b.low,
    close: b.close,
    volume: b.volume,
    vwap: b.vwap,
    trade_count: b.tradeCount,
  };
}
