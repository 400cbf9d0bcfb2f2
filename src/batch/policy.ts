/**
 * The flush rule and the retry delay, as pure functions.
 */

export interface FlushPolicy {
  batchSize: number;
  intervalMs: number;
  /** Flush at once when the partition's last fetch reached the log end (low latency for live bursts). */
  flushOnCaughtUp: boolean;
}

/** Why a partition flushes: its flush rule, or a failed batch fetched again for its retry. */
export type FlushReason = 'size' | 'interval' | 'caught-up' | 'pressure' | 'drain' | 'retry';

export interface FlushInput {
  barCount: number;
  entryCount: number;
  oldestArrivalMs: number | null;
  caughtUp: boolean;
  /** The buffers as a whole are full: flush whatever is there. */
  pressure: boolean;
  draining: boolean;
}

/** Why the partition should flush now, or null; when null, `nextCheckMs` says when to look again. */
export function flushDecision(
  p: FlushPolicy,
  s: FlushInput,
  nowMs: number,
): { reason: FlushReason | null; nextCheckMs: number | null } {
  if (s.entryCount === 0 || s.oldestArrivalMs === null) return { reason: null, nextCheckMs: null };
  if (s.draining) return { reason: 'drain', nextCheckMs: null };
  if (s.barCount >= p.batchSize) return { reason: 'size', nextCheckMs: null };
  if (s.pressure) return { reason: 'pressure', nextCheckMs: null };
  const due = s.oldestArrivalMs + p.intervalMs;
  if (nowMs >= due) return { reason: 'interval', nextCheckMs: null };
  if (p.flushOnCaughtUp && s.caughtUp) return { reason: 'caught-up', nextCheckMs: null };
  return { reason: null, nextCheckMs: due };
}

/**
 * Exponential backoff with full jitter: attempt 1 waits up to `base`, attempt n up to base·2^(n-1),
 * never more than `cap`. `random` is injectable for tests.
 */
export function retryDelayMs(
  attempt: number,
  base: number,
  cap: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  // Half fixed, half random: never a hot loop, and retries of many partitions spread out.
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
