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
 *   neither table, and bars_latest is never ahead of or behind bars_1m;
 * - deletes (the contract's `deleted: true`), in a statement of their own sent only when a write stages
 *   one: a tombstone per key (bar_tombstones: the newest delete's version) and the stored bar deleted
 *   when the delete is at least as new; the upsert writes a bar only when no tombstone of its key is
 *   at least as new, so a replay of an older version does not bring a deleted bar back, and a newer one
 *   does. bars_latest of a symbol whose newest bar went falls back to its newest remaining bar.
 * - the extra columns (BARS_EXTRA_COLUMNS): the statements of a setting are made once, per schema.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { ExtraColumn } from '../contract/extras';
import { ident } from './pool';
import { stagingTable } from './staging';

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
   * The staged deletes at or above their partition's fence (as `upsert`): tombstones kept, stored bars
   * at most as new deleted. Answers ROWS_DELETED. Sent only when the write stages a delete.
   */
  deletes(group: string, topic: string, keys: StagedKeys, advances?: readonly FenceAdvance[]): string;
  /** Every staged delete (backfill). */
  deletesAll(keys: StagedKeys): string;
  /** After deletes: bars_latest of the symbols whose newest bar was deleted, in two statements. */
  repairLatest: readonly string[];
  /**
   * The advisory lock a write takes before its upsert: shared by writes of bars only, exclusive by a
   * write that stages a delete. A bar's write checks the tombstones in its statement's snapshot, and a
   * delete removes the bars of its snapshot: run concurrently, a bar written while its key is deleted
   * could survive a newer delete. Deletes are rare (a busted trade); this keeps them apart from other
   * writes of the schema at the cost of one shared lock per write.
   */
  lockForBars: string;
  lockForDeletes: string;
  /** CREATE TEMP TABLE IF NOT EXISTS of the staging table of the write's extra columns. */
  createStaging: string;
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
/** The delete statements answer one row, one column: the rows of bars_1m deleted. */
export const ROWS_DELETED = 'rows_deleted';

/** The advisory lock of the deletes (lockForDeletes): its class, then a key of the schema. */
const DELETES_LOCK_CLASS = 0x62617264; // 'bard'

/** A 32-bit key of the schema's name (the deletes' lock is per schema). */
function deletesLockKey(schema: string): number {
  return crypto.createHash('sha256').update(schema).digest().readInt32BE(0);
}

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

export function writeSql(schema: string, extras: readonly ExtraColumn[] = []): WriteSql {
  const cacheKey = `${schema}|${extras.map((c) => `${c.name}:${c.type}`).join(',')}`;
  let sql = sqlCache.get(cacheKey);
  if (sql) return sql;
  const staging = stagingTable(extras);
  const bars = `${ident(schema)}.bars_1m`;
  const latest = `${ident(schema)}.bars_latest`;
  const tombstones = `${ident(schema)}.bar_tombstones`;
  const offsets = `${ident(schema)}.bar_writer_offsets`;
  const extraNames = extras.map((c) => ident(c.name));
  /** The columns of a bar in bars_1m and bars_latest the write sets, but source_origin. */
  const barColumns = [
    'symbol',
    '"timestamp"',
    'open',
    'high',
    'low',
    'close',
    'volume',
    'vwap',
    'revision',
    'trade_count',
    'source_time',
    ...extraNames,
  ];
  const columns = barColumns.join(', ');
  const stagedColumns = barColumns.map((c) => `s.${c}`).join(', ');
  const set = (names: readonly string[]) => names.map((c) => `${c} = EXCLUDED.${c}`).join(', ');
  /** Every column of a bar but its key, and its version. */
  const values = ['open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count', ...extraNames];
  const version = ['revision', 'source_time', 'source_origin'];
  const onConflict = `ON CONFLICT (symbol, "timestamp") DO UPDATE SET
       ${set([...values, ...version])}
     WHERE (EXCLUDED.revision, EXCLUDED.source_time, EXCLUDED.source_origin)
           > (t.revision, t.source_time, COALESCE(t.source_origin, -1))`;
  /**
   * The staged rows that `filter` (a join and WHERE on staging `s`) lets through, as `s`: with repeated
   * keys the newest version of each key (DISTINCT ON; bars and deletes alike), else every row as it is.
   */
  const stagedRows = (filter: string, keys: StagedKeys) => {
    const staged = `(SELECT s.* FROM pg_temp.${staging.name} s ${filter}) s`;
    return keys === 'unique'
      ? staged
      : `(SELECT DISTINCT ON (s.symbol, s."timestamp") s.* FROM ${staged}
            ORDER BY s.symbol, s."timestamp", s.revision DESC, s.source_time DESC, s.part DESC, s.kafka_offset DESC, s.seq DESC) s`;
  };
  /**
   * The upsert of the bars among the staged rows `filter` lets through. A bar is written only when no
   * tombstone of its key is at least as new (a delete of an equal version wins), and replaces a stored
   * row only with a strictly newer version.
   */
  const upsertFrom = (filter: string, keys: StagedKeys) =>
    // Data-modifying CTEs run to completion whether read or not; `changed` is read in full (sorted)
    // before the first bars_latest row is locked, so every writer locks bars_1m rows first, in key order,
    // then bars_latest rows, in symbol order: no deadlock between concurrent flushes.
    `WITH changed AS (
     INSERT INTO ${bars} AS t (${columns}, source_origin)
     SELECT ${stagedColumns}, ${STAGED_ORIGIN} FROM ${stagedRows(filter, keys)}
     WHERE NOT s.deleted
       AND NOT EXISTS (SELECT 1 FROM ${tombstones} d
                       WHERE d.symbol = s.symbol AND d."timestamp" = s."timestamp"
                         AND (d.revision, d.source_time, d.source_origin)
                             >= (s.revision, s.source_time, ${STAGED_ORIGIN}))
     ORDER BY s.symbol, s."timestamp"
     ${onConflict}
     RETURNING ${barColumns.map((c) => `t.${c}`).join(', ')}, t.source_origin
   ), newest AS (
     INSERT INTO ${latest} AS l (${columns}, source_origin)
     SELECT DISTINCT ON (c.symbol) c.* FROM changed c ORDER BY c.symbol, c."timestamp" DESC
     ON CONFLICT (symbol) DO UPDATE SET
       ${set(['"timestamp"', ...values, ...version])}
     WHERE (EXCLUDED."timestamp", EXCLUDED.revision, EXCLUDED.source_time, COALESCE(EXCLUDED.source_origin, -1))
           > (l."timestamp", l.revision, l.source_time, COALESCE(l.source_origin, -1))
   )
   SELECT count(*) AS ${ROWS_CHANGED} FROM changed`;
  /**
   * The deletes among the staged rows `filter` lets through: each key's tombstone keeps the newest
   * delete's version, and a stored bar whose version is not newer than the delete's is deleted.
   * Answers the rows deleted.
   */
  const deleteFrom = (filter: string, keys: StagedKeys) =>
    `WITH d AS (
     SELECT s.symbol, s."timestamp", s.revision, s.source_time, ${STAGED_ORIGIN} AS source_origin
     FROM ${stagedRows(filter, keys)} WHERE s.deleted
   ), tombstone AS (
     INSERT INTO ${tombstones} AS b (symbol, "timestamp", revision, source_time, source_origin)
     SELECT d.* FROM d ORDER BY d.symbol, d."timestamp"
     ON CONFLICT (symbol, "timestamp") DO UPDATE SET ${set(version)}
     WHERE (EXCLUDED.revision, EXCLUDED.source_time, EXCLUDED.source_origin)
           > (b.revision, b.source_time, b.source_origin)
   ), gone AS (
     DELETE FROM ${bars} t USING d
     WHERE t.symbol = d.symbol AND t."timestamp" = d."timestamp"
       AND (d.revision, d.source_time, d.source_origin) >= (t.revision, t.source_time, COALESCE(t.source_origin, -1))
     RETURNING 1
   )
   SELECT count(*) AS ${ROWS_DELETED} FROM gone`;
  /** bars_1m rows of `b` for the key of bars_latest row `l`. */
  const latestGone = (l: string) =>
    `NOT EXISTS (SELECT 1 FROM ${bars} b WHERE b.symbol = ${l}.symbol AND b."timestamp" = ${l}."timestamp")`;
  const deletedSymbols = `(SELECT DISTINCT s.symbol FROM pg_temp.${staging.name} s WHERE s.deleted)`;
  // The fence filter of a flush of Kafka partitions: the staged rows at or above their partition's
  // fence, and none of a partition whose fence is below its expectation.
  const fenced = (group: string, topic: string, advances: readonly FenceAdvance[]) =>
    advances.some((a) => expected(a) >= 0n)
      ? `JOIN ${offsets} f ON ${fenceKey('f.', group, topic)} AND f.partition = s.part
         JOIN (VALUES ${advances.map((a) => `(${Math.trunc(a.partition)}, ${expected(a)}::bigint)`).join(', ')})
           AS e (part, expect) ON e.part = s.part
         WHERE s.kafka_offset >= f.next_offset AND f.next_offset >= e.expect`
      : `JOIN ${offsets} f ON ${fenceKey('f.', group, topic)} AND f.partition = s.part
         WHERE s.kafka_offset >= f.next_offset`;
  const lockKey = deletesLockKey(schema);
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
    copy: `COPY pg_temp.${staging.name} ${staging.columnList} FROM STDIN`,
    copyBinary: `COPY pg_temp.${staging.name} ${staging.columnList} FROM STDIN (FORMAT binary)`,
    createStaging: staging.create,
    // The version of a bar is (revision, source_time, source_origin): the producer's revision (0 when
    // none), the Kafka record timestamp (bounded: ../batch/intake.ts), then where the message came from
    // (STAGED_ORIGIN). DISTINCT ON keeps the newest version per key; a key staged once is its own
    // newest version. A stored row is replaced only by a strictly newer version, whatever its values:
    // the stored version is always the newest seen, and a replay of an older or equal version writes
    // nothing (no dead tuples). ORDER BY the key also makes concurrent flushes lock rows in one order,
    // so they cannot deadlock.
    upsert: (group, topic, keys, advances = []) => upsertFrom(fenced(group, topic, advances), keys),
    upsertAll: (keys) => upsertFrom('', keys),
    deletes: (group, topic, keys, advances = []) => deleteFrom(fenced(group, topic, advances), keys),
    deletesAll: (keys) => deleteFrom('', keys),
    repairLatest: [
      // A symbol whose newest bar was deleted: its newest remaining bar (read after the deletes: a
      // statement of its own).
      `UPDATE ${latest} AS l SET ("timestamp", ${values.join(', ')}, ${version.join(', ')})
         = (n."timestamp", ${values.map((c) => `n.${c}`).join(', ')}, ${version.map((c) => `n.${c}`).join(', ')})
       FROM ${deletedSymbols} u
       CROSS JOIN LATERAL (SELECT * FROM ${bars} b WHERE b.symbol = u.symbol ORDER BY b."timestamp" DESC LIMIT 1) n
       WHERE l.symbol = u.symbol AND ${latestGone('l')}`,
      // A symbol with no bar left.
      `DELETE FROM ${latest} AS l WHERE l.symbol IN ${deletedSymbols} AND ${latestGone('l')}`,
    ],
    lockForBars: `SELECT pg_advisory_xact_lock_shared(${DELETES_LOCK_CLASS}, ${lockKey})`,
    lockForDeletes: `SELECT pg_advisory_xact_lock(${DELETES_LOCK_CLASS}, ${lockKey})`,
    onConflict,
  };
  sqlCache.set(cacheKey, sql);
  return sql;
}
