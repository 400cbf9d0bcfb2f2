/**
 * The write path of one flush, in one transaction:
 *
 *   1. lock this partition's row in bar_writer_offsets and read `next_offset`, the first offset not yet
 *      written by anyone in this group (the fence);
 *   2. drop the bars below it: they were written before (by us before a crash, or by the instance that
 *      owned the partition after us), and writing them again could overwrite a newer version;
 *   3. COPY the rest (binary format) into a per-connection temporary staging table;
 *   4. one INSERT … SELECT … ON CONFLICT (symbol, "timestamp") DO UPDATE into bars_1m, keeping the latest
 *      message (highest offset) per key and skipping rows whose stored values are already identical, so
 *      a replay creates no dead tuples;
 *   5. advance next_offset (it only ever moves forward) and COMMIT.
 *
 * The caller commits Kafka offsets only after this returns.
 */
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import type { Bar } from '../contract/bar';
import { encodeCopyBinary } from './copyEncoding';
import { ident, type PoolClient } from './pool';

export interface PartitionRef {
  group: string;
  topic: string;
  partition: number;
}

export interface BarAtOffset {
  offset: bigint;
  bar: Bar;
}

export interface WriteBatchResult {
  /** Bars sent to the upsert (after the fence). */
  written: number;
  /** Bars below the fence, skipped. */
  skippedFenced: number;
  /** Rows inserted or changed in bars_1m (identical rows are not counted). */
  rowsChanged: number;
  /** The fence before this write. */
  fenceBefore: bigint;
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
  lockFence: string;
  insertFence: string;
  advanceFence: string;
  /** COPY in text format (bench/ uses it for the psql reference). */
  copy: string;
  /** COPY in binary format: what the service sends. */
  copyBinary: string;
  upsert: string;
}

const sqlCache = new Map<string, WriteSql>();

export function writeSql(schema: string): WriteSql {
  let sql = sqlCache.get(schema);
  if (sql) return sql;
  const bars = `${ident(schema)}.bars_1m`;
  const offsets = `${ident(schema)}.bar_writer_offsets`;
  sql = {
    insertFence: `INSERT INTO ${offsets} (consumer_group, topic, partition, next_offset) VALUES ($1, $2, $3, 0)
                  ON CONFLICT (consumer_group, topic, partition) DO NOTHING`,
    lockFence: `SELECT next_offset::text AS next_offset FROM ${offsets}
                WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
    advanceFence: `UPDATE ${offsets} SET next_offset = $4::bigint, updated_at = now()
                   WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset < $4::bigint`,
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

/** COPY `bars` into the staging table and upsert them. Must run inside a transaction. */
export async function copyAndUpsert(
  client: PoolClient,
  schema: string,
  bars: readonly Bar[],
): Promise<number> {
  if (bars.length === 0) return 0;
  const sql = writeSql(schema);
  const stream = client.query(copyFrom(sql.copyBinary));
  await pipeline(Readable.from([encodeCopyBinary(bars)]), stream);
  const res = await client.query(sql.upsert);
  return res.rowCount ?? 0;
}

/**
 * Runs steps 1-5 above on `client`, which must be inside a transaction (see withTransaction).
 * `entries` are the batch's bars in offset order; `nextOffset` is the offset after the batch.
 */
export async function writeBatch(
  client: PoolClient,
  schema: string,
  ref: PartitionRef,
  entries: readonly BarAtOffset[],
  nextOffset: bigint,
): Promise<WriteBatchResult> {
  const sql = writeSql(schema);
  const key = [ref.group, ref.topic, ref.partition];
  await client.query(sql.insertFence, key);
  const fenceRes = await client.query<{ next_offset: string }>(sql.lockFence, key);
  const fenceBefore = BigInt(fenceRes.rows[0]!.next_offset);

  let bars: Bar[];
  if (entries.length > 0 && entries[0]!.offset >= fenceBefore) {
    bars = entries.map((e) => e.bar);
  } else {
    bars = [];
    for (const e of entries) if (e.offset >= fenceBefore) bars.push(e.bar);
  }
  const rowsChanged = await copyAndUpsert(client, schema, bars);
  if (nextOffset > fenceBefore) await client.query(sql.advanceFence, [...key, nextOffset.toString()]);
  return { written: bars.length, skippedFenced: entries.length - bars.length, rowsChanged, fenceBefore };
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
