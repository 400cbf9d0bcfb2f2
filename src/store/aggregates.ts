/**
 * The continuous aggregates of bars_1m: the list migration 004 creates, the ones a database holds, and
 * their refresh. TimescaleDB only; on plain PostgreSQL there are none.
 */
import { ident, type Queryable } from './pool';

/** The continuous aggregates of migration 004, with their refresh policies' schedule. */
export const AGGREGATES = [
  { name: 'bars_5m', width: '5 minutes', schedule: '1 minute', zoned: false },
  { name: 'bars_15m', width: '15 minutes', schedule: '5 minutes', zoned: false },
  { name: 'bars_1h', width: '1 hour', schedule: '15 minutes', zoned: true },
  { name: 'bars_1d', width: '1 day', schedule: '1 hour', zoned: true },
] as const;

export interface StoredAggregate {
  /** The view's name, in the schema of its bars_1m. */
  view: string;
  /** Its bucket width, as PostgreSQL prints the interval. */
  width: string;
}

/** The continuous aggregates on `schema`.bars_1m, as the database holds them. */
export async function continuousAggregates(db: Queryable, schema: string): Promise<StoredAggregate[]> {
  return (
    await db.query<{ view: string; width: string }>(
      `SELECT ca.view_name AS view, d.time_interval::text AS width
       FROM timescaledb_information.continuous_aggregates ca
       JOIN timescaledb_information.dimensions d ON d.hypertable_schema = ca.materialization_hypertable_schema
         AND d.hypertable_name = ca.materialization_hypertable_name
       WHERE ca.hypertable_schema = $1 AND ca.hypertable_name = 'bars_1m'`,
      [schema],
    )
  ).rows;
}

/**
 * Materializes `schema`.`view` over [from, to) (ISO-8601 instants; null: unbounded on that side).
 * The procedure is named by `timescale`, the extension's schema (./catalog.ts timescaleSchema): the
 * caller's search_path need not include it. PostgreSQL refuses it inside a transaction block: `db` is
 * a connection outside one, or a pool.
 */
export async function refreshContinuousAggregate(
  db: Queryable,
  timescale: string,
  schema: string,
  view: string,
  from: string | null,
  to: string | null,
): Promise<void> {
  await db.query(
    `CALL ${ident(timescale)}.refresh_continuous_aggregate($1::regclass, $2::timestamptz, $3::timestamptz)`,
    [`${ident(schema)}.${ident(view)}`, from, to],
  );
}
