/**
 * The staging table a write's COPY fills (./writeSql.ts, ./writeBatch.ts), its columns declared once:
 * the DDL, the COPY column list and the binary encoder's field order (./copyEncoding.ts checks it
 * against this list when loaded; test/unit/copyEncoding.test.ts decodes what it writes by this list)
 * all follow from STAGING_COLUMNS, then the extra columns of BARS_EXTRA_COLUMNS (stagingTable).
 *
 * A per-connection temporary table; ON COMMIT DELETE ROWS empties it at every commit (no catalog
 * churn); `part` and `kafka_offset` say where each row came from, so the fence filter runs in SQL; its
 * symbol sorts byte-wise (COLLATE "C"): the upsert's sort compares bytes instead of calling the
 * database's collation (equality, hence which rows are one key, is the same).
 */
import crypto from 'node:crypto';
import { sqlTypeOf, type ExtraColumn } from '../contract/extras';
import { ident } from './pool';

/** How a column's value travels in binary COPY: its PostgreSQL binary send format. */
export type StagingEncoding =
  | 'int4'
  | 'int8'
  | 'float8'
  | 'text'
  | 'bool'
  /** int8 microseconds since 2000-01-01 (timestamptz). */
  | 'timestamp';

export interface StagingColumn {
  name: string;
  /** Its type and constraints in the DDL. */
  type: string;
  encoding: StagingEncoding;
}

/** The staging table's columns, in COPY order, before the extra columns (BARS_EXTRA_COLUMNS). */
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
  { name: 'trade_count', type: 'bigint', encoding: 'int8' },
  // A delete (the contract's `deleted: true`): its key and version count, its numbers are 0.
  { name: 'deleted', type: 'boolean NOT NULL', encoding: 'bool' },
  // The version time (the Kafka record timestamp, bounded): with the revision, the bar's version.
  { name: 'source_time', type: 'timestamptz NOT NULL', encoding: 'timestamp' },
  { name: 'part', type: 'integer NOT NULL', encoding: 'int4' },
  { name: 'kafka_offset', type: 'bigint NOT NULL', encoding: 'int8' },
];

/** The staging column of an extra column: its SQL type, nullable, and how its values travel. */
export function extraStagingColumn(c: ExtraColumn): StagingColumn {
  const encoding: StagingEncoding =
    c.type === 'bigint'
      ? 'int8'
      : c.type === 'double precision'
        ? 'float8'
        : c.type === 'boolean'
          ? 'bool'
          : 'text';
  return { name: c.name, type: sqlTypeOf(c), encoding };
}

/** A staging table: its shape (the fixed columns, then the extra columns in their configured order). */
export interface StagingTable {
  /** Its name, with a hash of its shape (see stagingTableName). */
  name: string;
  columns: readonly StagingColumn[];
  /** The extra columns, in the order they follow the fixed ones. */
  extras: readonly ExtraColumn[];
  /** `(seq, symbol, "timestamp", …)`: the column list of the COPY. */
  columnList: string;
  /** Created inside each write's transaction when the connection lacks it (see ./writeBatch.ts). */
  create: string;
}

const tables = new Map<string, StagingTable>();

/** The staging table for `extras` (BARS_EXTRA_COLUMNS): one per shape, made once. */
export function stagingTable(extras: readonly ExtraColumn[] = []): StagingTable {
  const key = extras.map((c) => `${c.name}:${c.type}`).join(',');
  let table = tables.get(key);
  if (table) return table;
  const columns = [...STAGING_COLUMNS, ...extras.map(extraStagingColumn)];
  const columnsDdl = columns.map((c) => `${ident(c.name)} ${c.type}`).join(',\n  ');
  const name = stagingTableName(columnsDdl);
  table = {
    name,
    columns,
    extras,
    columnList: `(${columns.map((c) => ident(c.name)).join(', ')})`,
    create: `CREATE TEMP TABLE IF NOT EXISTS ${name} (
  ${columnsDdl}
) ON COMMIT DELETE ROWS`,
  };
  tables.set(key, table);
  return table;
}

/**
 * The staging table's name carries a hash of its shape. A temporary table outlives the transaction on
 * its server connection, and through a pooler (PgBouncer, transaction mode) writers of two versions
 * (or two settings of BARS_EXTRA_COLUMNS) share server connections during a rolling upgrade: with one
 * name, CREATE TEMP TABLE IF NOT EXISTS keeps whichever shape came first, and the other's COPY fails
 * (as data: bisection would dead-letter every bar). With the shape in the name each finds its own table.
 */
export function stagingTableName(columnsDdl: string): string {
  return `bar_writer_staging_${crypto.createHash('sha256').update(columnsDdl).digest('hex').slice(0, 12)}`;
}

/** The staging table without extra columns (tests, bench/). */
const BASE = stagingTable();
export const STAGING = BASE.name;
export const STAGING_COLUMN_LIST = BASE.columnList;
export const CREATE_STAGING = BASE.create;
