/**
 * The database as readiness sees it: a `SELECT 1` on the pool, cached for a short while so probes and
 * the readiness timer do not load the database, and shared while one is in flight.
 */
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { every, type Periodic } from '../observe/periodic';
import type { CheckResult } from '../observe/readiness';
import { classifyDbError } from './errors';
import type { Pool } from './pool';

export function databaseCheck(
  pool: Pool,
  ttlMs = 2000,
  now: () => number = Date.now,
): () => Promise<CheckResult> {
  let cached: { at: number; result: CheckResult } | null = null;
  let inFlight: Promise<CheckResult> | null = null;
  return () => {
    if (cached && now() - cached.at < ttlMs) return Promise.resolve(cached.result);
    inFlight ??= (async () => {
      let result: CheckResult;
      try {
        await pool.query('SELECT 1');
        result = { ok: true, detail: 'reachable' };
      } catch (err) {
        result = { ok: false, detail: `unreachable: ${classifyDbError(err).message}` };
      }
      cached = { at: now(), result };
      inFlight = null;
      return result;
    })();
    return inFlight;
  };
}

/** db_pool_connections{state} (total, idle, checkouts waiting for a connection), refreshed every `ms`. */
export function reportPool(
  pool: Pool,
  metrics: Pick<Metrics, 'poolConnections'>,
  logger: Logger,
  ms = 5000,
): Periodic {
  return every(
    ms,
    'pool gauges',
    () => {
      metrics.poolConnections.set({ state: 'total' }, pool.totalCount);
      metrics.poolConnections.set({ state: 'idle' }, pool.idleCount);
      metrics.poolConnections.set({ state: 'waiting' }, pool.waitingCount);
    },
    logger,
  );
}
