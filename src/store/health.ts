/**
 * The database as readiness sees it: a `SELECT 1` on the pool, cached for a short while so probes and
 * the readiness timer do not load the database, and shared while one is in flight (never more than one
 * at a time). A check that has no answer within `answerWithinMs` reports the database unreachable at
 * once: through a pooler (PgBouncer) a query waits for a server connection instead of failing, and a
 * probe must not hang with it. The query itself ends by the pool's query timeout.
 *
 * /readyz is open to anyone who reaches the port: its detail names the error's class and code only
 * (publicDetail); the database's own words (host names, database and role names) go to the log, once
 * per change of what it says.
 */
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { every, type Periodic } from '../observe/periodic';
import type { CheckResult } from '../observe/readiness';
import { classifyDbError, type ClassifiedDbError } from './errors';
import type { Pool } from './pool';

export function databaseCheck(
  pool: Pick<Pool, 'query'>,
  ttlMs = 2000,
  now: () => number = Date.now,
  answerWithinMs = 2000,
  logger?: Logger,
): () => Promise<CheckResult> {
  let cached: { at: number; result: CheckResult } | null = null;
  let lastSaid: string | null = null;
  let inFlight: Promise<CheckResult> | null = null;
  const settle = (result: CheckResult): CheckResult => {
    cached = { at: now(), result };
    return result;
  };
  return () => {
    if (cached && now() - cached.at < ttlMs) return Promise.resolve(cached.result);
    inFlight ??= (async () => {
      let result: CheckResult;
      try {
        await pool.query('SELECT 1');
        result = { ok: true, detail: 'reachable' };
        lastSaid = null;
      } catch (err) {
        const info = classifyDbError(err);
        result = { ok: false, detail: `unreachable (${publicDetail(info)})` };
        if (info.message !== lastSaid)
          logger?.warn({ err: info.message, code: info.code }, 'database check failed');
        lastSaid = info.message;
      }
      inFlight = null;
      return settle(result);
    })();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(
        () => resolve(settle({ ok: false, detail: `unreachable (no answer within ${answerWithinMs} ms)` })),
        answerWithinMs,
      );
      timer.unref();
    });
    return Promise.race([inFlight, late]).finally(() => clearTimeout(timer));
  };
}

/**
 * A pool's gauge by state (total, idle, checkouts waiting for a connection), refreshed every `ms`:
 * db_pool_connections for the writer's, db_read_pool_connections for the read API's.
 */
export function reportPool(
  pool: Pool,
  gauge: Metrics['poolConnections'],
  logger: Logger,
  ms = 5000,
): Periodic {
  return every(
    ms,
    'pool gauges',
    () => {
      gauge.set({ state: 'total' }, pool.totalCount);
      gauge.set({ state: 'idle' }, pool.idleCount);
      gauge.set({ state: 'waiting' }, pool.waitingCount);
    },
    logger,
  );
}

/** What a readiness detail may say of a database error: its class and code, not its text. */
export function publicDetail(info: Pick<ClassifiedDbError, 'class' | 'code'>): string {
  return `${info.class} error${info.code ? ` ${info.code}` : ''}; the service log says more`;
}
