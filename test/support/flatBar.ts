import type { Bar } from '../../src/contract/bar';

/** A valid bar whose prices and volume are all 1: for tests about keys, order and paging. */
export function flatBar(symbol: string, timestampMs: number): Bar {
  return {
    symbol,
    timestampMs,
    open: 1,
    high: 1,
    low: 1,
    close: 1,
    volume: 1,
    vwap: null,
    revision: 0,
    tradeCount: null,
    deleted: false,
    extras: null,
  };
}
