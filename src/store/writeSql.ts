/**
 * The statements of the write path, by name. The fence statements take the group and topic as escaped
 * literals (never parameters): a whole flush goes out as one simple-query string (./transaction.ts).
 *
 * - the staging table (./staging.ts): a per-connection temporary table the COPY fills;
 * - the fence (bar_writer_offsets, per consumer group, topic and partition): the first offset not yet
 *   written; its rows are created if missing, locked in partition order, and moved only forward;
 * - the upsert: the staged rows at or above their partition's fence, the newest version per key, and a
 *   stored row replaced only by a strictly newer version (see `upsert`). Picking the newest version
 *   (DISTINCT ON) is needed only when a key is staged more than once; the caller says which (`StagedKeys`,
 *   ./stagedKeys.ts), and a flush whose keys are all distinct skips it: ~5% of the backend's work per row;
 * - in the same statement, bars_latest (migrations/011_bars_latest.sql): from the rows the upsert changed
 *   (its RETURNING), each symbol's latest minute replaces the symbol's row when it is later than the
 *   stored one, or the same minute with a newer version. Only changed rows count, so a replay touches
 *   neither table, and bars_latest is never ahead of or behind bars_1m.
 */
import pg from 'pg';
import { ident } from './pool';
import { STAGING, STAGING_COLUMN_LIST } from './staging';

export interface FenceAdvance {
  partition: number;
  next: bigint;
  fingerprint: string;
  /**
   * The fence this write expects to find at least (null: no expectation). A fence found below it was
   * moved back by someone (an operator's offsets reset): nothing of this partition is written nor
   * advanced, and the caller resumes from the fence instead.
   */
  expect?: bigint | null;
}

/**
 * Whether some (symbol, timestamp) key occurs more than once among a transaction's staged rows:
 * 'repeated' needs the newest version per key picked (DISTINCT ON); 'unique' does not.
 */
export type StagedKeys = 'unique' | 'repeated';

export interface WriteSql {
  /** Creates the partitions' fence rows if missing (no lock, no write when they exist). */
  insertFences(group: string, topic: string, partitions: readonly number[]): string;
  /** Locks the partitions' fence rows in partition order; reads `partition`, `next_offset` (text). */
  lockFences(group: string, topic: string, partitions: readonly number[]): string;
  /**
   * Moves the partitions' fences forward (never back), each with the fingerprint of the last message
   * it now covers (../offsets/fingerprint.ts).
   */
  advanceFences(group: string, topic: string, advances: readonly FenceAdvance[]): string;
  /** COPY in text format, with origins (bench/ uses it for the psql reference). */
  copy: string;
  /** COPY in binary format, with origins: what the service sends. */
  copyBinary: string;
  /**
   * The staged rows at or above their partition's fence (locked first), newest version per key; a
   * partition whose fence is below its expectation writes nothing.
   */
  upsert(group: string, topic: string, keys: StagedKeys, advances?: readonly FenceAdvance[]): string;
  /** Every staged row, newest version per key: loads that are not Kafka partitions (backfill). */
  upsertAll(keys: StagedKeys): string;
  /**
   * The ON CONFLICT clause of bars_1m alone (the version rule): bench/ gives it to its reference
   * variants, so that every variant resolves conflicts alike.
   */
  onConflict: string;
}

/**
 * The upsert statements answer one row, one column: the rows of bars_1m inserted or replaced (an older
 * or equal version is not counted).
 */
export const ROWS_CHANGED = 'rows_changed';

const sqlCache = new Map<string, WriteSql>();

/** The fence rows of a group and topic, as escaped literals. */
function fenceKey(alias: string, group: string, topic: string): string {
  return `${alias}consumer_group = ${pg.escapeLiteral(group)} AND ${alias}topic = ${pg.escapeLiteral(topic)}`;
}

/**
 * The third part of a staged row's version: partition × 2^48 + offset (an offset past 2^48 counts as
 * the largest), so a later message of a partition wins a tie and an exact tie across partitions goes
 * to the higher one (migrations/010_bar_version_origin.sql).
 */
const STAGED_ORIGIN = `(s.part::bigint * 281474976710656 + LEAST(s.kafka_offset, 281474976710655))`;

const partitionList = (partitions: readonly number[]) =>
  partitions.map((p) => String(Math.trunc(p))).join(',');

/** The least fence each partition's write accepts (-1: any), as a VALUES list `(partition, expect)`. */
const expected = (a: FenceAdvance): bigint =>
  a.expect === null || a.expect === undefined ? -1n : BigInt(a.expect);

export function writeSql(schema: string): WriteSql {
  let sql = sqlCache.get(schema);
  if (sql) return sql;
  const bars = `${ident(schema)}.bars_1m`;
  const latest = `${ident(schema)}.bars_latest`;
  const offsets = `${ident(schema)}.bar_writer_offsets`;
  const columns = 'symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time';
  const stagedColumns = columns
    .split(', ')
    .map((c) => `s.${c}`)
    .join(', ');
  const onConflict = `ON CONFLICT (symbol, "timestamp") DO UPDATE SET
       open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
       volume = EXCLUDED.volume, vwap = EXCLUDED.vwap,
       revision = EXCLUDED.revision, source_time = EXCLUDED.source_time, source_origin = EXCLUDED.source_origin
     WHERE (EXCLUDED.revision, EXCLUDED.source_time, EXCLUDED.source_origin)
           > (t.revision, t.source_time, COALESCE(t.source_origin, -1))`;
  /**
   * The upsert of the staged rows that `filter` (a join and WHERE on staging `s`) lets through: with
   * repeated keys the newest version of each (DISTINCT ON), else every row as it is. Both in key order.
   */
  const upsertFrom = (filter: string, keys: StagedKeys) => {
    const staged = `pg_temp.${STAGING} s ${filter}`;
    const rows =
      keys === 'unique'
        ? staged
        : `(SELECT DISTINCT ON (s.symbol, s."timestamp") s.* FROM ${staged}
            ORDER BY s.symbol, s."timestamp", s.revision DESC, s.source_time DESC, s.part DESC, s.kafka_offset DESC, s.seq DESC) s`;
    // Data-modifying CTEs run to completion whether read or not; `changed` is read in full (sorted)
    // before the first bars_latest row is locked, so every writer locks bars_1m rows first, in key order,
    // then bars_latest rows, in symbol order: no deadlock between concurrent flushes.
    return `WITH changed AS (
     INSERT INTO ${bars} AS t (${columns}, source_origin)
     SELECT ${stagedColumns}, ${STAGED_ORIGIN} FROM ${rows}
     ORDER BY s.symbol, s."timestamp"
     ${onConflict}
     RETURNING t.symbol, t."timestamp", t.open, t.high, t.low, t.close, t.volume, t.vwap,
               t.revision, t.source_time, t.source_origin
   ), newest AS (
     INSERT INTO ${latest} AS l (${columns}, source_origin)
     SELECT DISTINCT ON (c.symbol) c.* FROM changed c ORDER BY c.symbol, c."timestamp" DESC
     ON CONFLICT (symbol) DO UPDATE SET
       "timestamp" = EXCLUDED."timestamp", open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
       close = EXCLUDED.close, volume = EXCLUDED.volume, vwap = EXCLUDED.vwap,
       revision = EXCLUDED.revision, source_time = EXCLUDED.source_time, source_origin = EXCLUDED.source_origin
     WHERE (EXCLUDED."timestamp", EXCLUDED.revision, EXCLUDED.source_time, COALESCE(EXCLUDED.source_origin, -1))
           > (l."timestamp", l.revision, l.source_time, COALESCE(l.source_origin, -1))
   )
   SELECT count(*) AS ${ROWS_CHANGED} FROM changed`;
  };
  sql = {
    insertFences: (group, topic, partitions) =>
      `INSERT INTO ${offsets} (consumer_group, topic, partition, next_offset)
       SELECT ${pg.escapeLiteral(group)}, ${pg.escapeLiteral(topic)}, p, 0
       FROM unnest(ARRAY[${partitionList(partitions)}]::int[]) AS p
       ON CONFLICT (consumer_group, topic, partition) DO NOTHING`,
    lockFences: (group, topic, partitions) =>
      `SELECT partition, next_offset::text AS next_offset FROM ${offsets}
       WHERE ${fenceKey('', group, topic)} AND partition IN (${partitionList(partitions)})
       ORDER BY partition FOR UPDATE`,
    advanceFences: (group, topic, advances) =>
      `UPDATE ${offsets} AS o
       SET next_offset = v.next_offset, last_fingerprint = v.fingerprint, updated_at = now()
       FROM (VALUES ${advances
         .map(
           (a) =>
             `(${Math.trunc(a.partition)}, ${BigInt(a.next)}::bigint, ${pg.escapeLiteral(a.fingerprint)}, ${expected(a)}::bigint)`,
         )
         .join(', ')})
         AS v (partition, next_offset, fingerprint, expect)
       WHERE ${fenceKey('o.', group, topic)} AND o.partition = v.partition AND o.next_offset < v.next_offset
         AND o.next_offset >= v.expect`,
    copy: `COPY pg_temp.${STAGING} ${STAGING_COLUMN_LIST} FROM STDIN`,
    copyBinary: `COPY pg_temp.${STAGING} ${STAGING_COLUMN_LIST} FROM STDIN (FORMAT binary)`,
    // The version of a bar is (revision, source_time, source_origin): the producer's revision (0 when
    // none), the Kafka record timestamp (bounded: ../batch/intake.ts), then where the message came from
    // (STAGED_ORIGIN). DISTINCT ON keeps the newest version per key; a key staged once is its own
    // newest version. A stored row is replaced only by a strictly newer version, whatever its values:
    // the stored version is always the newest seen, and a replay of an older or equal version writes
    // nothing (no dead tuples). ORDER BY the key also makes concurrent flushes lock rows in one order,
    // so they cannot deadlock.
    upsert: (group, topic, keys, advances = []) =>
      upsertFrom(
        advances.some((a) => expected(a) >= 0n)
          ? `JOIN ${offsets} f ON ${fenceKey('f.', group, topic)} AND f.partition = s.part
         JOIN (VALUES ${advances.map((a) => `(${Math.trunc(a.partition)}, ${expected(a)}::bigint)`).join(', ')})
           AS e (part, expect) ON e.part = s.part
         WHERE s.kafka_offset >= f.next_offset AND f.next_offset >= e.expect`
          : `JOIN ${offsets} f ON ${fenceKey('f.', group, topic)} AND f.partition = s.part
         WHERE s.kafka_offset >= f.next_offset`,
        keys,
      ),
    upsertAll: (keys) => upsertFrom('', keys),
    onConflict,
  };
  sqlCache.set(schema, sql);
  return sql;
}
