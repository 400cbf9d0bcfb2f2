/**
 * What the database says about itself: its version, TimescaleDB (installed, preloaded, where), bars_1m
 * as a hypertable, the background jobs of a schema, and what a role may do. Read by `bar-writer doctor`,
 * by the migration runner before it starts, and by the TimescaleDB settings and the aggregates' refresh
 * (which name the extension's functions by its schema).
 */
import { ident, type Queryable } from './pool';

/** The server's version, as `SHOW server_version` says it (e.g. "16.4"). */
export async function serverVersion(db: Queryable): Promise<string> {
  return (await db.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
}

export interface TimescaleStatus {
  /** The extension's version in this database; null: not created here. */
  version: string | null;
  /** Installed on the server (CREATE EXTENSION would find it). */
  available: boolean;
  /**
   * Loaded at server start (shared_preload_libraries): the loader defines its `timescaledb.*` settings
   * only then, and any role can see those (shared_preload_libraries itself only superusers).
   */
  preloaded: boolean;
}

export async function timescaleStatus(db: Queryable): Promise<TimescaleStatus> {
  return (
    await db.query<TimescaleStatus>(
      `SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS version,
              EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
              EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.max_background_workers') AS preloaded`,
    )
  ).rows[0]!;
}

/** The schema the timescaledb extension lives in (its functions are named by it); null without it. */
export async function timescaleSchema(db: Queryable): Promise<string | null> {
  const r = await db.query<{ schema: string }>(
    `SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'timescaledb'`,
  );
  return r.rows[0]?.schema ?? null;
}

export interface HypertableStatus {
  chunks: number;
  compressed: number;
  /** The chunk interval; null: `schema`.bars_1m is not a hypertable. */
  interval: string | null;
  compression: boolean | null;
}

/** bars_1m of `schema` as TimescaleDB sees it (only on a database with the extension). */
export async function hypertableStatus(db: Queryable, schema: string): Promise<HypertableStatus> {
  return (
    await db.query<HypertableStatus>(
      `SELECT (SELECT count(*)::int FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m') AS chunks,
              (SELECT count(*)::int FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m' AND is_compressed) AS compressed,
              (SELECT time_interval::text FROM timescaledb_information.dimensions WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m') AS interval,
              (SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m') AS compression`,
      [schema],
    )
  ).rows[0]!;
}

export interface PolicyJob {
  /** The hypertable or continuous aggregate the job acts on. */
  name: string;
  /** policy_compression, policy_refresh_continuous_aggregate, policy_retention … */
  proc: string;
  scheduled: boolean;
  /** The last run's status (Success, Failed); null: never ran. */
  status: string | null;
  failures: number | null;
}

/** The background jobs on the hypertables and aggregates of `schema`, with their run statistics. */
export async function policyJobs(db: Queryable, schema: string): Promise<PolicyJob[]> {
  return (
    await db.query<PolicyJob>(
      `SELECT j.hypertable_name AS name, j.proc_name AS proc, j.scheduled, s.last_run_status AS status,
              s.total_failures::int AS failures
       FROM timescaledb_information.jobs j LEFT JOIN timescaledb_information.job_stats s USING (job_id)
       WHERE j.hypertable_schema = $1 ORDER BY j.job_id`,
      [schema],
    )
  ).rows;
}

export interface WriterPrivileges {
  /** What the writer needs and `user` lacks, each as a GRANT would name it. */
  lacking: string[];
  /** What `user` holds beyond what the writer needs. */
  excess: string[];
}

/**
 * What `user` may do in `schema` against what the writer needs (migrations/005_writer_role.sql,
 * 011_bars_latest.sql and 012_trade_count_and_deletes.sql give bar_writer_rw exactly that): USAGE on
 * the schema, SELECT, INSERT, UPDATE and DELETE on bars_1m and bars_latest (a delete message removes a
 * bar), SELECT, INSERT and UPDATE on bar_tombstones and bar_writer_offsets, TEMPORARY on the database
 * (the staging table); and more than that (superuser, TRUNCATE on bars_1m, CREATE on the schema).
 */
export async function writerPrivileges(
  db: Queryable,
  user: string,
  schema: string,
): Promise<WriterPrivileges> {
  const s = ident(schema);
  const can = (table: number, privileges: string[]) =>
    privileges
      .map((p) => `coalesce(has_table_privilege($1, to_regclass($${table}), '${p}'), false)`)
      .join(' AND ');
  const p = (
    await db.query<
      Record<
        'usage' | 'bars' | 'latest' | 'tombstones' | 'fence' | 'temp' | 'superuser' | 'destroy' | 'ddl',
        boolean
      >
    >(
      `SELECT has_schema_privilege($1, $2, 'USAGE') AS usage,
              ${can(3, ['SELECT', 'INSERT', 'UPDATE', 'DELETE'])} AS bars,
              ${can(5, ['SELECT', 'INSERT', 'UPDATE', 'DELETE'])} AS latest,
              ${can(6, ['SELECT', 'INSERT', 'UPDATE'])} AS tombstones,
              ${can(4, ['SELECT', 'INSERT', 'UPDATE'])} AS fence,
              has_database_privilege($1, current_database(), 'TEMPORARY') AS temp,
              (SELECT rolsuper FROM pg_roles WHERE rolname = $1) AS superuser,
              has_table_privilege($1, $3, 'TRUNCATE') AS destroy,
              has_schema_privilege($1, $2, 'CREATE') AS ddl`,
      [user, schema, `${s}.bars_1m`, `${s}.bar_writer_offsets`, `${s}.bars_latest`, `${s}.bar_tombstones`],
    )
  ).rows[0]!;
  const needed: [boolean, string][] = [
    [p.usage, `USAGE on schema ${schema}`],
    [p.bars, 'SELECT, INSERT, UPDATE, DELETE on bars_1m'],
    [p.latest, 'SELECT, INSERT, UPDATE, DELETE on bars_latest'],
    [p.tombstones, 'SELECT, INSERT, UPDATE on bar_tombstones'],
    [p.fence, 'SELECT, INSERT, UPDATE on bar_writer_offsets'],
    [p.temp, 'TEMPORARY on the database'],
  ];
  const beyond: [boolean, string][] = [
    [p.superuser, 'superuser'],
    [p.destroy, 'TRUNCATE on bars_1m'],
    [p.ddl, `CREATE on schema ${schema}`],
  ];
  return {
    lacking: needed.filter(([has]) => !has).map(([, what]) => what),
    excess: beyond.filter(([has]) => has).map(([, what]) => what),
  };
}
