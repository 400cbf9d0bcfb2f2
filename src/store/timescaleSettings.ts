/**
 * TimescaleDB settings that are configuration, not schema: applied by the migrate CLI after the
 * migrations on every run, under the migration lock, so they follow the environment (a changed value
 * is applied, an unchanged one leaves everything alone). Each does nothing (`unavailable`) unless
 * bars_1m is a hypertable of the timescaledb extension.
 *
 * - Retention (BARS_DB_RETENTION): the retention policy of bars_1m, and with it the start of every
 *   refresh policy's window (see migrations/006_aggregates_cover_history.sql): all history without
 *   retention, the retention interval with it, so a refresh never reaches a dropped chunk and erases
 *   its buckets, and a correction of any bar still kept reaches the aggregates at the next policy run.
 * - Time zone of the aggregates (BARS_DB_AGGREGATE_TIMEZONE): bars_1h and bars_1d bucket in it (a US
 *   equity's day starts at midnight New York time, not UTC). Every zone's offset is a multiple of 15
 *   minutes, so bars_5m and bars_15m are the same in every zone and stay UTC. A change rebuilds the two
 *   aggregates from bars_1m.
 * - The aggregates' columns: an aggregate made before trade_count (migration 012) lacks its sum, and a
 *   continuous aggregate cannot gain a column: it is rebuilt from bars_1m, once, saying so (and kept as
 *   it is, with a warning, where retention has dropped the minute bars of its oldest buckets).
 */
import pg from 'pg';
import { AGGREGATES, refreshContinuousAggregate } from './aggregates';
import { timescaleSchema } from './catalog';
import { withMigrationLock } from './migrate';
import { ident, type Queryable } from './pool';
import { withTransaction, withTransientRetry } from './transaction';

const DAY_MS = 86_400_000;

/** `400 days` for whole days, else milliseconds: a literal PostgreSQL reads as an interval. */
export function retentionInterval(retentionMs: number): string {
  return retentionMs % DAY_MS === 0 ? `${retentionMs / DAY_MS} days` : `${retentionMs} milliseconds`;
}

interface Hypertable {
  /** The extension's schema: the caller's search_path may not include it. */
  extension: string;
  /** The same, quoted. */
  ts: string;
}

/** The extension's schema when `schema`.bars_1m is a hypertable; else why not. */
async function hypertable(client: Queryable, schema: string): Promise<Hypertable | string> {
  const extension = await timescaleSchema(client);
  if (extension === null) return 'the timescaledb extension is not installed';
  const ht = await client.query(
    `SELECT 1 FROM timescaledb_information.hypertables
     WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
    [schema],
  );
  if (ht.rows.length === 0) return `${schema}.bars_1m is not a hypertable`;
  return { extension, ts: ident(extension) };
}

// ---- retention ------------------------------------------------------------------------------------

/** What applyRetention found or did. */
export interface RetentionResult {
  action: 'unavailable' | 'none' | 'unchanged' | 'added' | 'replaced' | 'removed';
  /** The retention interval in force afterwards (null: none). */
  dropAfter: string | null;
  /** Refresh policies changed to start at `dropAfter` (or at the start of history). */
  refreshPoliciesChanged: number;
  /** Why retention is unavailable (no timescaledb, or bars_1m not a hypertable). */
  reason?: string;
}

interface RefreshPolicy {
  job_id: number;
  view: string;
  start_offset: string | null;
}

async function refreshPolicies(client: Queryable, schema: string): Promise<RefreshPolicy[]> {
  return (
    await client.query<RefreshPolicy>(
      `SELECT j.job_id, j.hypertable_name AS view, j.config->>'start_offset' AS start_offset
       FROM timescaledb_information.jobs j
       JOIN timescaledb_information.continuous_aggregates ca
         ON ca.view_schema = j.hypertable_schema AND ca.view_name = j.hypertable_name
       WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
         AND ca.hypertable_schema = $1 AND ca.hypertable_name = 'bars_1m'
       ORDER BY j.job_id`,
      [schema],
    )
  ).rows;
}

/** How long a refresh job already running may take to finish before a rebuild gives up on it. */
const JOB_WAIT_MS = 120_000;

/**
 * Unschedules every scheduled job of `policies` and waits until none of them is running; returns the
 * ids it unscheduled (the caller schedules them again).
 */
async function pauseRefreshJobs(client: Queryable, policies: RefreshPolicy[]): Promise<Set<number>> {
  const ids = policies.map((p) => p.job_id);
  if (ids.length === 0) return new Set();
  const unscheduled = await client.query<{ job_id: number }>(
    `SELECT j.job_id, alter_job(j.job_id, scheduled => false)
     FROM timescaledb_information.jobs j WHERE j.job_id = ANY($1) AND j.scheduled`,
    [ids],
  );
  const until = Date.now() + JOB_WAIT_MS;
  for (;;) {
    const running = await client.query<{ job_id: number }>(
      `SELECT job_id FROM timescaledb_information.job_stats WHERE job_id = ANY($1) AND job_status = 'Running'`,
      [ids],
    );
    if (running.rows.length === 0) break;
    if (Date.now() > until) {
      throw new Error(
        `refresh job(s) ${running.rows.map((r) => r.job_id).join(', ')} still running ` +
          `after ${JOB_WAIT_MS / 1000} s; run migrate again when they finish`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return new Set(unscheduled.rows.map((r) => r.job_id));
}

/**
 * Makes the retention policy of `schema`.bars_1m match `retentionMs` (0 = none), and every refresh
 * policy of its aggregates start where retention ends (or at the start of history), in one transaction.
 */
export async function applyRetention(
  client: Queryable,
  schema: string,
  retentionMs: number,
): Promise<RetentionResult> {
  return withMigrationLock(client, async () => {
    const found = await hypertable(client, schema);
    if (typeof found === 'string') {
      return { action: 'unavailable', dropAfter: null, refreshPoliciesChanged: 0, reason: found };
    }
    const { ts } = found;
    const table = `${ident(schema)}.bars_1m`;
    const current = (
      await client.query<{ drop_after: string }>(
        `SELECT config->>'drop_after' AS drop_after FROM timescaledb_information.jobs
         WHERE proc_name = 'policy_retention' AND hypertable_schema = $1 AND hypertable_name = 'bars_1m'`,
        [schema],
      )
    ).rows[0]?.drop_after;
    const wanted = retentionMs === 0 ? null : retentionInterval(retentionMs);
    const sameInterval = async (a: string | null | undefined, b: string | null): Promise<boolean> => {
      if (a === undefined || a === null || b === null) return (a ?? null) === b;
      const r = await client.query<{ same: boolean }>('SELECT $1::interval = $2::interval AS same', [a, b]);
      return r.rows[0]!.same;
    };
    const stale: RefreshPolicy[] = [];
    for (const p of await refreshPolicies(client, schema)) {
      if (!(await sameInterval(p.start_offset, wanted))) stale.push(p);
    }
    const retentionSame = await sameInterval(current, wanted);
    if (retentionSame && stale.length === 0) {
      return { action: wanted === null ? 'none' : 'unchanged', dropAfter: wanted, refreshPoliciesChanged: 0 };
    }
    await withTransaction(client, async (tx) => {
      // Windows first: inside this transaction the scheduler sees both changes at once anyway.
      for (const p of stale) {
        await tx.query(
          `SELECT ${ts}.alter_job($1, config => config || jsonb_build_object('start_offset', $2::text))
           FROM timescaledb_information.jobs WHERE job_id = $1`,
          [p.job_id, wanted],
        );
      }
      if (!retentionSame) {
        if (current !== undefined) {
          await tx.query(`SELECT ${ts}.remove_retention_policy($1::regclass, if_exists => true)`, [table]);
        }
        if (wanted !== null) {
          await tx.query(`SELECT ${ts}.add_retention_policy($1::regclass, drop_after => $2::interval)`, [
            table,
            wanted,
          ]);
        }
      }
    });
    const action: RetentionResult['action'] = retentionSame
      ? wanted === null
        ? 'none'
        : 'unchanged'
      : wanted === null
        ? 'removed'
        : current === undefined
          ? 'added'
          : 'replaced';
    return { action, dropAfter: wanted, refreshPoliciesChanged: stale.length };
  });
}

// ---- time zone of the aggregates ------------------------------------------------------------------

export interface TimezoneResult {
  action: 'unavailable' | 'unchanged' | 'rebuilt';
  /** The zone bars_1h and bars_1d bucket in afterwards. */
  timezone: string | null;
  reason?: string;
  /** The aggregates rebuilt, each with why (its zone, its columns). */
  rebuilt?: { view: string; why: string }[];
  /** Aggregates of an older definition kept as they are: rebuilding them would lose buckets. */
  kept?: { view: string; why: string }[];
}

/** The columns an aggregate of the current definition has beyond those of migration 004. */
const NEWER_COLUMNS = ['trade_count'];

/** Recorded on each zoned aggregate, so a later run knows the zone it was built with. */
const ZONE_COMMENT = 'bar-writer: buckets in time zone ';

/**
 * The SELECT of an aggregate: the columns and rules of migration 004 (see its header), bucketed in
 * `timezone` when given, and trade_count: the sum of the bucket's trade counts (null when none of its
 * bars has one; bars without one count for nothing, as for vwap).
 */
function aggregateQuery(width: string, timezone: string | null): string {
  const bucket = timezone
    ? `time_bucket(${pg.escapeLiteral(width)}::interval, "timestamp", ${pg.escapeLiteral(timezone)})`
    : `time_bucket(${pg.escapeLiteral(width)}::interval, "timestamp")`;
  return `SELECT symbol,
                 ${bucket} AS "timestamp",
                 first(open, "timestamp") AS open,
                 max(high) AS high,
                 min(low) AS low,
                 last(close, "timestamp") AS close,
                 sum(volume) AS volume,
                 sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
                     / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
                 sum(trade_count) AS trade_count
          FROM bars_1m
          GROUP BY symbol, ${bucket}`;
}

/**
 * Makes bars_1h and bars_1d bucket in `timezone` (an IANA name such as America/New_York; UTC is the
 * default of migration 004), and every aggregate have the current columns (NEWER_COLUMNS). A change
 * drops and re-creates the aggregate (the current columns, same policy, grants) and re-materializes it
 * from bars_1m. That recomputes every bucket from the minute bars, so a zone change refuses when the
 * aggregate holds buckets older than bars_1m's oldest bar (chunks dropped by retention: their buckets
 * would be lost), unless `allowLoss`; a rebuild for the columns alone is then skipped (`kept`).
 */
export async function applyAggregateTimezone(
  client: Queryable,
  schema: string,
  timezone: string,
  options: { allowLoss?: boolean; log?: (msg: string) => void } = {},
): Promise<TimezoneResult> {
  return withMigrationLock(client, async () => {
    const found = await hypertable(client, schema);
    if (typeof found === 'string') return { action: 'unavailable', timezone: null, reason: found };
    const { extension, ts } = found;
    const zone = await client.query<{ name: string }>(
      `SELECT name FROM pg_timezone_names WHERE lower(name) = lower($1) ORDER BY name = $1 DESC LIMIT 1`,
      [timezone],
    );
    if (zone.rows.length === 0) {
      throw new Error(
        `BARS_DB_AGGREGATE_TIMEZONE: "${timezone}" is not a time zone this PostgreSQL knows (pg_timezone_names)`,
      );
    }
    const wanted = zone.rows[0]!.name;
    const s = ident(schema);
    const present = await client.query<{ view: string; comment: string | null; columns: string[] }>(
      `SELECT c.relname AS view, obj_description(c.oid, 'pg_class') AS comment,
              array(SELECT a.attname::text FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relname = ANY($2)`,
      [schema, AGGREGATES.map((a) => a.name)],
    );
    if (present.rows.length === 0) {
      return { action: 'unavailable', timezone: null, reason: 'the continuous aggregates do not exist' };
    }
    const zoneOf = (comment: string | null) =>
      comment?.startsWith(ZONE_COMMENT) ? comment.slice(ZONE_COMMENT.length) : 'UTC';
    /** Each aggregate to rebuild, with why; the zone it was built with. */
    const todo: { a: (typeof AGGREGATES)[number]; was: string; why: string; zoneChange: boolean }[] = [];
    for (const a of AGGREGATES) {
      const row = present.rows.find((r) => r.view === a.name);
      const was = zoneOf(row?.comment ?? null);
      const zoneChange = a.zoned && (!row || was !== wanted);
      const missing = row ? NEWER_COLUMNS.filter((c) => !row.columns.includes(c)) : [];
      if (!zoneChange && missing.length === 0) continue;
      const why = zoneChange
        ? `buckets in ${wanted} (was ${was})`
        : `to add ${missing.join(', ')} (an aggregate cannot gain a column)`;
      todo.push({ a, was, why, zoneChange });
    }
    if (todo.length === 0) return { action: 'unchanged', timezone: wanted };

    const kept: { view: string; why: string }[] = [];
    if (!options.allowLoss) {
      for (const t of [...todo]) {
        const { a, was } = t;
        // The aggregate's oldest bucket against the bucket of bars_1m's oldest bar, in the zone it was built with.
        const r = await client.query<{ agg: Date | null; raw: Date | null }>(
          `SELECT a.agg, time_bucket($1::interval, r.raw, $2) AS raw
           FROM (SELECT min("timestamp") AS agg FROM ${s}.${ident(a.name)}) a,
                (SELECT min("timestamp") AS raw FROM ${s}.bars_1m) r`,
          [a.width, was],
        );
        const { agg, raw } = r.rows[0]!;
        if (agg !== null && (raw === null || agg.getTime() < raw.getTime())) {
          const lost =
            `rebuilds ${a.name} from bars_1m, which no longer holds the bars of its oldest buckets ` +
            `(from ${agg.toISOString()}; bars_1m starts ${raw?.toISOString() ?? 'empty'}): they would be lost`;
          if (t.zoneChange) {
            throw new Error(
              `changing the aggregates' time zone to ${wanted} ${lost}. Keep the zone, or accept the loss with --allow-aggregate-loss`,
            );
          }
          kept.push({
            view: a.name,
            why: `${t.why}: not rebuilt, it ${lost} (--allow-aggregate-loss rebuilds it)`,
          });
          todo.splice(todo.indexOf(t), 1);
        }
      }
    }

    const policies = await refreshPolicies(client, schema);
    // Each rebuilt aggregate keeps its policy's window (retention sets it: applyRetention); one that
    // had none takes another's.
    const windowOf = (view: string) =>
      (policies.find((p) => p.view === view) ?? policies[0])?.start_offset ?? null;
    const writerRole = (await client.query(`SELECT 1 FROM pg_roles WHERE rolname = 'bar_writer_rw'`)).rows
      .length;
    // The aggregates' refresh jobs are paused for the rebuild and waited for: a refresh running while
    // its view is dropped makes the DROP fail ("tuple concurrently deleted", XX000), and a fresh
    // deployment's jobs start the moment migration 004 creates them. Each rebuilt view's new job is
    // scheduled as its old one was (a new view's, scheduled), once every rebuild is done.
    const paused = await pauseRefreshJobs(client, policies);
    const reschedule: string[] = [];
    for (const { a, why } of todo) {
      const view = `${s}.${ident(a.name)}`;
      const zone = a.zoned ? wanted : 'UTC';
      options.log?.(`${a.name}: rebuilding it ${why}; materializing it from bars_1m`);
      const old = policies.find((p) => p.view === a.name);
      if (!old || paused.has(old.job_id)) reschedule.push(a.name);
      await withTransientRetry(() =>
        withTransaction(client, async (tx) => {
          await tx.query(`SET LOCAL search_path TO ${s}, public`);
          await tx.query(`DROP MATERIALIZED VIEW IF EXISTS ${view}`);
          await tx.query(
            `CREATE MATERIALIZED VIEW ${view}
           WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
           ${aggregateQuery(a.width, zone === 'UTC' ? null : zone)}
           WITH NO DATA`,
          );
          await tx.query(
            `SELECT ${ts}.add_continuous_aggregate_policy($1::regclass, start_offset => $2::interval,
             end_offset => '1 minute'::interval, schedule_interval => $3::interval)`,
            [view, windowOf(a.name), a.schedule],
          );
          if (a.zoned)
            await tx.query(`COMMENT ON VIEW ${view} IS ${pg.escapeLiteral(ZONE_COMMENT + wanted)}`);
          if (writerRole) await tx.query(`GRANT SELECT ON ${view} TO bar_writer_rw`);
          await tx.query(
            `SELECT ${ts}.alter_job(j.job_id, scheduled => false) FROM timescaledb_information.jobs j
           WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
             AND j.hypertable_schema = $1 AND j.hypertable_name = $2`,
            [schema, a.name],
          );
        }),
      );
      // Outside a transaction block: refresh_continuous_aggregate refuses to run inside one.
      await refreshContinuousAggregate(client, extension, schema, a.name, null, null);
    }
    // Every job paused above and not replaced by a rebuild is scheduled again; so is each rebuilt
    // view's new job when its old one was scheduled.
    const after = await refreshPolicies(client, schema);
    for (const p of after) {
      const rebuiltView = todo.some((t) => t.a.name === p.view);
      if (rebuiltView ? reschedule.includes(p.view) : paused.has(p.job_id)) {
        await client.query(`SELECT ${ts}.alter_job($1, scheduled => true)`, [p.job_id]);
      }
    }
    const rebuilt = todo.map((t) => ({ view: t.a.name, why: t.why }));
    const keptNote = kept.length > 0 ? { kept } : {};
    if (rebuilt.length === 0) return { action: 'unchanged', timezone: wanted, ...keptNote };
    return { action: 'rebuilt', timezone: wanted, rebuilt, ...keptNote };
  });
}
