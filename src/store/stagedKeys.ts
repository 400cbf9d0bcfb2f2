/**
 * Whether the rows of one write transaction repeat a (symbol, timestamp) key: only then does the
 * upsert have to pick the newest version per key with DISTINCT ON, a sort and a pass that cost the
 * database ~5% of its work per row (writeSql.ts). A flush of new bars rarely repeats a key; a replay
 * of corrections, or a key that changed partition, can.
 *
 * Keys are equal exactly as the staging table compares them: the symbol's characters (the contract's
 * symbols are ASCII; the staging column sorts and compares bytes) and the timestamp's epoch
 * milliseconds (staged as microseconds, ms × 1000).
 *
 * Cost: one Map lookup and insert per bar while each symbol comes once; a symbol seen again moves to
 * a set of its (timestamp, symbol) pairs.
 */
import { timestampOf, type PackedBar } from '../contract/packedBar';
import type { StagedKeys } from './writeSql';

/** The bars of one write, in groups (a partition's entries, say). */
export type StagedRows = Iterable<readonly PackedBar[]>;

export function stagedKeys(groups: StagedRows): StagedKeys {
  /** Symbol → timestamp of its first bar, while the symbol has been seen once. */
  const once = new Map<string, number>();
  /** `${timestampMs}|${symbol}` of the bars of symbols seen more than once (the number ends at '|'). */
  let again: Set<string> | null = null;
  for (const rows of groups) {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      const symbol = row.symbol;
      const timestampMs = timestampOf(row);
      const first = once.get(symbol);
      if (first === undefined) {
        once.set(symbol, timestampMs);
        continue;
      }
      if (first === timestampMs) return 'repeated';
      again ??= new Set();
      again.add(`${first}|${symbol}`); // idempotent: the symbol's first bar
      const key = `${timestampMs}|${symbol}`;
      if (again.has(key)) return 'repeated';
      again.add(key);
    }
  }
  return 'unique';
}
