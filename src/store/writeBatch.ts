/**
 * The write path of one flush, in one transaction covering one or more partitions of a topic:
 *
 *   1. lock these partitions' rows in bar_writer_offsets (in partition order) and read each
 *      `next_offset`, the first offset not yet written by anyone in this group (the fence);
 *   2. drop the bars below their partition's fence: they were written before (by us before a crash, or
 *      by the instance that owned the partition after us), and writing them again could overwrite a
 *      newer version;
 *   3. COPY the rest (binary format) into a per-connection temporary staging table;
 *   4. one INSERT … SELECT … ON CONFLICT (symbol, "timestamp") DO UPDATE into bars_1m, keeping the latest
 *      message (highest offset) per key and skipping rows whose stored values are already identical, so
 *      a replay creates no dead tuples;
 *   5. advance each next_offset (it only ever moves forward) and COMMIT.
 *
 * Three round trips when nothing is dead-lettered: `BEGIN; lock` → COPY → `upsert; advance; COMMIT`
 * (simple-query strings; the group and topic go in as escaped literals). Each round trip is a socket
 * write and a wake-up on both sides, which the profile showed to be a large part of a small flush.
 *
 * The caller commits Kafka offsets only after this returns.
 */
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Bar } from '../contract/bar';
import { encodeCopyBinary } from './copyEncoding';
import { ident, type PoolClient } from './pool';

export interface BarAtOffset {
  offset: bigint;
  bar: Bar;
}

/** One partition's share of a write: its bars in offset order and the offset after its batch. */
export interface PartitionWrite {
  partition: number;
  entries: readonly BarAtOffset[];
  nextOffset: bigint;
}

export interface PartitionWriteResult {
  partition: number;
  /** Bars sent to the upsert (after the fence). */
  written: number;
  /** Bars below the fence, skipped. */
  skippedFenced: number;
  /** The fence before this write. */
  fenceBefore: bigint;
}

export interface WriteGroupResult {
  parts: PartitionWriteResult[];
  /** Rows inserted or changed in bars_1m (identical rows are not counted). */
  rowsChanged: number;
}

const STAGING = 'bar_writer_staging';
// ON COMMIT DELETE ROWS: created once per connection, emptied by every commit, no catalog churn.
const CREATE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING} (
  seq integer NOT NULL, symbol text NOT NULL, "timestamp" timestamptz NOT NULL,
  open double precision NOT NULL, high double precision NOT NULL,
  low double precision NOT NULL, close double precision NOT NULL,
  volume bigint NOT NULL, vwap double precision
) ON COMMIT DELETE ROWS`;
const stagingReady = new WeakSet<object>();

export interface WriteSql {
  /** Creates missing fence rows: $1 group, $2 topic, $3 int[] partitions. */
  insertFences: string;
  /** Locks the partitions' fence rows in partition order; reads `partition`, `next_offset` (text). */
  lockFences(group: string, topic: string, partitions: readonly number[]): string;
  /** Moves the partitions' fences forward (never back): [partition, next offset] pairs. */
  advanceFences(group: string, topic: string, advances: readonly (readonly [number, bigint])[]): string;
  /** COPY in text format (bench/ uses it for the psql reference). */
  copy: string;
  /** COPY in binary format: what the service sends. */
  copyBinary: string;
  upsert: string;
}

const sqlCache = new Map<string, WriteSql>();

/** The fence rows of a group and topic, as escaped literals (the statements go out as simple queries). */
function fenceKey(alias: string, group: string, topic: string): string {
  return `${alias}consumer_group = ${pg.escapeLiteral(group)} AND ${alias}topic = ${pg.escapeLiteral(topic)}`;
}

export function writeSql(schema: string): WriteSql {
  let sql = sqlCache.get(schema);
  if (sql) return sql;
  const bars = `${ident(schema)}.bars_1m`;
  const offsets = `${ident(schema)}.bar_writer_offsets`;
  sql = {
    lockFences: (group, topic, partitions) =>
      `SELECT partition, next_offset::text AS next_offset FROM ${offsets}
       WHERE ${fenceKey('', group, topic)} AND partition IN (${partitions.map(Number).join(',')})
       ORDER BY partition FOR UPDATE`,
    advanceFences: (group, topic, advances) =>
      `UPDATE ${offsets} AS o SET next_offset = v.next_offset, updated_at = now()
       FROM (VALUES ${advances.map(([p, n]) => `(${Number(p)}, ${BigInt(n)}::bigint)`).join(', ')})
         AS v (partition, next_offset)
       WHERE ${fenceKey('o.', group, topic)} AND o.partition = v.partition AND o.next_offset < v.next_offset`,
    insertFences: `INSERT INTO ${offsets} (consumer_group, topic, partition, next_offset)
                   SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p
                   ON CONFLICT (consumer_group, topic, partition) DO NOTHING`,
    copy: `COPY pg_temp.${STAGING} (seq, symbol, "timestamp", open, high, low, close, volume, vwap) FROM STDIN`,
    copyBinary: `COPY pg_temp.${STAGING} (seq, symbol, "timestamp", open, high, low, close, volume, vwap) FROM STDIN (FORMAT binary)`,
    // DISTINCT ON … ORDER BY seq DESC keeps the latest message per key (seq follows offsets); ORDER BY
    // the key also makes concurrent flushes lock rows in one order, so they cannot deadlock.
    upsert: `INSERT INTO ${bars} AS t (symbol, "timestamp", open, high, low, close, volume, vwap)
             SELECT symbol, "timestamp", open, high, low, close, volume, vwap FROM (
               SELECT DISTINCT ON (symbol, "timestamp") *
               FROM pg_temp.${STAGING}
               ORDER BY symbol, "timestamp", seq DESC
             ) latest
             ORDER BY symbol, "timestamp"
             ON CONFLICT (symbol, "timestamp") DO UPDATE SET
               open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
               volume = EXCLUDED.volume, vwap = EXCLUDED.vwap
             WHERE (t.open, t.high, t.low, t.close, t.volume, t.vwap)
                   IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.vwap)`,
  };
  sqlCache.set(schema, sql);
  return sql;
}

/**
 * Steps 1-5 above as one transaction on `client`, which must not be in a transaction (see
 * withConnection). `beforeCommit` runs after the fences are advanced and before COMMIT (dead letters
 * are sent there: if sending fails, nothing is committed). On an error the caller rolls back.
 */
export async function writeGroup(
  client: PoolClient,
  schema: string,
  group: string,
  topic: string,
  parts: readonly PartitionWrite[],
  beforeCommit?: (results: readonly PartitionWriteResult[]) => Promise<void>,
): Promise<WriteGroupResult> {
  const sql = writeSql(schema);
  const ordered = [...parts].sort((x, y) => x.partition - y.partition);
  const partitions = ordered.map((p) => p.partition);
  const lock = sql.lockFences(group, topic, partitions);
  const fences = fenceMap(results(await client.query(`BEGIN; ${lock}`))[1]!);
  if (fences.size < partitions.length) {
    // First write of a partition by this group: create its row, then lock it.
    const missing = partitions.filter((p) => !fences.has(p));
    await client.query(sql.insertFences, [group, topic, missing]);
    for (const [p, f] of fenceMap((await client.query(lock)) as pg.QueryResult)) fences.set(p, f);
  }

  const bars: Bar[] = [];
  const outcome: PartitionWriteResult[] = [];
  const advances: [number, bigint][] = [];
  for (const part of ordered) {
    const fenceBefore = fences.get(part.partition)!;
    const before = bars.length;
    for (const e of part.entries) if (e.offset >= fenceBefore) bars.push(e.bar);
    const written = bars.length - before;
    outcome.push({
      partition: part.partition,
      written,
      skippedFenced: part.entries.length - written,
      fenceBefore,
    });
    if (part.nextOffset > fenceBefore) advances.push([part.partition, part.nextOffset]);
  }

  const statements: string[] = [];
  if (bars.length > 0) {
    const stream = client.query(copyFrom(sql.copyBinary));
    await pipeline(Readable.from([encodeCopyBinary(bars)]), stream);
    statements.push(sql.upsert);
  }
  if (advances.length > 0) statements.push(sql.advanceFences(group, topic, advances));
  if (!beforeCommit) statements.push('COMMIT');
  const res = results(await client.query(statements.join(';\n')));
  const rowsChanged = bars.length > 0 ? (res[0]!.rowCount ?? 0) : 0;
  if (beforeCommit) {
    await beforeCommit(outcome);
    await client.query('COMMIT');
  }
  return { parts: outcome, rowsChanged };
}

/** A simple-query string of several statements answers with one result each. */
function results(r: pg.QueryResult | pg.QueryResult[]): pg.QueryResult[] {
  return Array.isArray(r) ? r : [r];
}

function fenceMap(r: pg.QueryResult): Map<number, bigint> {
  const rows = r.rows as { partition: number; next_offset: string }[];
  return new Map(rows.map((row) => [row.partition, BigInt(row.next_offset)]));
}

/**
 * Creates the connection's staging table once, outside any transaction (so a rolled-back batch cannot
 * undo it). Pass as withTransaction's `prepare`.
 */
export async function prepareStaging(client: PoolClient): Promise<void> {
  if (stagingReady.has(client)) return;
  await client.query(CREATE_STAGING);
  stagingReady.add(client);
}

/** Reads the recorded next offsets of a group's partitions (for resuming and lag). */
export async function readFences(
  client: { query: PoolClient['query'] },
  schema: string,
  group: string,
  topic: string,
): Promise<Map<number, bigint>> {
  const res = await client.query<{ partition: number; next_offset: string }>(
    `SELECT partition, next_offset::text AS next_offset FROM ${ident(schema)}.bar_writer_offsets
     WHERE consumer_group = $1 AND topic = $2`,
    [group, topic],
  );
  return new Map(res.rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}
