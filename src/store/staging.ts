/**
 * The staging table a write's COPY fills (./writeSql.ts, ./writeBatch.ts), its columns declared once:
 * the DDL, the COPY column list and the binary encoder's field order (./copyEncoding.ts checks it
 * against this list when loaded; test/unit/copyEncoding.test.ts decodes what it writes by this list)
 * all follow from STAGING_COLUMNS.
 *
 * A per-connection temporary table; ON COMMIT DELETE ROWS empties it at every commit (no catalog
 * churn); `part` and `kafka_offset` say where each row came from, so the fence filter runs in SQL; its
 * symbol sorts byte-wise (COLLATE "C"): the upsert's sort compares bytes instead of calling the
 * database's collation (equality, hence which rows are one key, is the same).
 */
import crypto from 'node:crypto';
import { ident } from './pool';

/** How a column's value travels in binary COPY: its PostgreSQL binary send format. */
export type StagingEncoding =
  | 'int4'
  | 'int8'
  | 'float8'
  | 'text'
  /** int8 microseconds since 2000-01-01 (timestamptz). */
  | 'timestamp';

export interface StagingColumn {
  name: string;
  /** Its type and constraints in the DDL. */
  type: string;
  encoding: StagingEncoding;
}

/** The staging table's columns, in COPY order. */
export const STAGING_COLUMNS: readonly StagingColumn[] = [
  { name: 'seq', type: 'integer NOT NULL', encoding: 'int4' },
  { name: 'symbol', type: 'text COLLATE "C" NOT NULL', encoding: 'text' },
  { name: 'timestamp', type: 'timestamptz NOT NULL', encoding: 'timestamp' },
  { name: 'open', type: 'double precision NOT NULL', encoding: 'float8' },
  { name: 'high', type: 'double precision NOT NULL', encoding: 'float8' },
  { name: 'low', type: 'double precision NOT NULL', encoding: 'float8' },
  { name: 'close', type: 'double precision NOT NULL', encoding: 'float8' },
  { name: 'volume', type: 'bigint NOT NULL', encoding: 'int8' },
  { name: 'vwap', type: 'double precision', encoding: 'float8' },
  { name: 'revision', type: 'bigint NOT NULL', encoding: 'int8' },
  // The Kafka record timestamp: with the revision, the bar's version.
  { name: 'source_time', type: 'timestamptz NOT NULL', encoding: 'timestamp' },
  { name: 'part', type: 'integer NOT NULL', encoding: 'int4' },
  { name: 'kafka_offset', type: 'bigint NOT NULL', encoding: 'int8' },
];

/** `(seq, symbol, "timestamp", …)`: the column list of the COPY. */
export const STAGING_COLUMN_LIST = `(${STAGING_COLUMNS.map((c) => ident(c.name)).join(', ')})`;

const COLUMNS_DDL = STAGING_COLUMNS.map((c) => `${ident(c.name)} ${c.type}`).join(',\n  ');

/**
 * The staging table's name carries a hash of its shape. A temporary table outlives the transaction on
 * its server connection, and through a pooler (PgBouncer, transaction mode) writers of two versions
 * share server connections during a rolling upgrade: with one name, CREATE TEMP TABLE IF NOT EXISTS
 * keeps whichever shape came first, and the other version's COPY fails (as data: bisection would
 * dead-letter every bar). With the shape in the name each version finds its own table.
 */
export const STAGING = stagingTableName(COLUMNS_DDL);

/** The staging table's name for a shape (its columns' DDL). */
export function stagingTableName(columnsDdl: string): string {
  return `bar_writer_staging_${crypto.createHash('sha256').update(columnsDdl).digest('hex').slice(0, 12)}`;
}

/** Created inside each write's transaction when the connection lacks it (see ./writeBatch.ts). */
export const CREATE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING} (
  ${COLUMNS_DDL}
) ON COMMIT DELETE ROWS`;
