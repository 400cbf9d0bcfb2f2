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
  return probedCheck(
    async () => {
      await pool.query('SELECT 1');
      return { ok: true, detail: 'reachable' };
    },
    (detail) => ({ ok: false, detail }),
    'database check failed',
    ttlMs,
    now,
    answerWithinMs,
    logger,
  );
}

/** What the read replica's state query answers. */
interface ReplicaRow {
  recovery: boolean;
  paused: boolean;
  lag: number | null;
}

/**
 * The state of the read API's own server (DB_READ_HOST, a streaming replica): reachable or not, in
 * recovery (a hot standby) or not, its replay paused, and its replay lag in seconds: 0 when it has
 * replayed all the WAL it received, else the age of the last transaction it replayed. The check is
 * `advisory`: it never fails the writer's readiness (reads answer 503 while the replica is away, the
 * writer goes on). Like databaseCheck, cached, one query at a time, an answer within `answerWithinMs`,
 * and the database's own words only in the log. Sets db_read_target_up, db_read_target_in_recovery and
 * db_read_target_replay_lag_seconds.
 */
export function replicaCheck(
  pool: Pick<Pool, 'query'>,
  metrics: Pick<Metrics, 'readTargetUp' | 'readTargetInRecovery' | 'readTargetReplayLag'>,
  logger?: Logger,
  ttlMs = 2000,
  now: () => number = Date.now,
  answerWithinMs = 2000,
): () => Promise<CheckResult> {
  return probedCheck(
    async () => {
      const r = await pool.query<ReplicaRow>(REPLICA_STATE_SQL);
      const row = r.rows[0]!;
      metrics.readTargetUp.set(1);
      metrics.readTargetInRecovery.set(row.recovery ? 1 : 0);
      if (!row.recovery) {
        metrics.readTargetReplayLag.set(0);
        return { ok: true, advisory: true, detail: 'reachable, not in recovery (a primary)' };
      }
      const lag = row.lag === null ? null : Math.max(0, Number(row.lag));
      if (lag !== null) metrics.readTargetReplayLag.set(lag);
      const lagText = lag === null ? 'replay lag unknown' : `replay lag ${lag.toFixed(1)} s`;
      return {
        ok: true,
        advisory: true,
        detail: `reachable, in recovery (hot standby), ${row.paused ? 'replay paused, ' : ''}${lagText}`,
      };
    },
    (detail) => {
      metrics.readTargetUp.set(0);
      return { ok: false, advisory: true, detail: `${detail}; reads answer 503, the writer is not affected` };
    },
    'read replica check failed',
    ttlMs,
    now,
    answerWithinMs,
    logger,
  );
}

export const REPLICA_STATE_SQL = `SELECT pg_is_in_recovery() AS recovery,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END AS paused,
  CASE WHEN NOT pg_is_in_recovery() THEN 0
       WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
       ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8 AS lag`;

/**
 * A check by `probe`, cached for `ttlMs`, one probe at a time, answered within `answerWithinMs`; a
 * failure is said by `failed` with the error's class and code (publicDetail), its text logged once per
 * change.
 */
function probedCheck(
  probe: () => Promise<CheckResult>,
  failed: (detail: string) => CheckResult,
  logLine: string,
  ttlMs: number,
  now: () => number,
  answerWithinMs: number,
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
        result = await probe();
        lastSaid = null;
      } catch (err) {
        const info = classifyDbError(err);
        result = failed(`unreachable (${publicDetail(info)})`);
        if (info.message !== lastSaid) logger?.warn({ err: info.message, code: info.code }, logLine);
        lastSaid = info.message;
      }
      inFlight = null;
      return settle(result);
    })();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<CheckResult>((resolve) => {
      timer = setTimeout(
        () => resolve(settle(failed(`unreachable (no answer within ${answerWithinMs} ms)`))),
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
