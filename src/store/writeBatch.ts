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
 * One round trip when nothing is dead-lettered (see writeGroup): `BEGIN; COPY …` with the COPY data
 * right behind it, then fence rows, the upsert, the fence advance and COMMIT in the same simple-query
 * string (the group and topic go in as escaped literals). Each round trip is a socket write and a
 * wake-up on both sides, which the profile showed to be a large part of a small flush.
 *
 * The caller commits Kafka offsets only after this returns.
 */
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Bar } from '../contract/bar';
import { encodeCopyBinary, type BarOrigin } from './copyEncoding';
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
// part and kafka_offset say where each row came from: the fence filter runs in SQL.
export const CREATE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING} (
  seq integer NOT NULL, symbol text NOT NULL, "timestamp" timestamptz NOT NULL,
  open double precision NOT NULL, high double precision NOT NULL,
  low double precision NOT NULL, close double precision NOT NULL,
  volume bigint NOT NULL, vwap double precision,
  part integer NOT NULL, kafka_offset bigint NOT NULL
) ON COMMIT DELETE ROWS`;
const stagingReady = new WeakSet<object>();

/**
 * The statements of the write path. The fence statements take the group and topic as escaped
 * literals: the whole flush goes out as one simple-query string.
 */
export interface WriteSql {
  /** Creates the partitions' fence rows if missing (no lock, no write when they exist). */
  insertFences(group: string, topic: string, partitions: readonly number[]): string;
  /** Locks the partitions' fence rows in partition order; reads `partition`, `next_offset` (text). */
  lockFences(group: string, topic: string, partitions: readonly number[]): string;
  /** Moves the partitions' fences forward (never back): [partition, next offset] pairs. */
  advanceFences(group: string, topic: string, advances: readonly (readonly [number, bigint])[]): string;
  /** COPY in text format, with origins (bench/ uses it for the psql reference). */
  copy: string;
  /** COPY in binary format, with origins: what the service sends. */
  copyBinary: string;
  /** The staged rows at or above their partition's fence (locked first), latest message per key. */
  upsert(group: string, topic: string): string;
}

const sqlCache = new Map<string, WriteSql>();

/** The fence rows of a group and topic, as escaped literals. */
function fenceKey(alias: string, group: string, topic: string): string {
  return `${alias}consumer_group = ${pg.escapeLiteral(group)} AND ${alias}topic = ${pg.escapeLiteral(topic)}`;
}

const partitionList = (partitions: readonly number[]) =>
  partitions.map((p) => String(Math.trunc(p))).join(',');

export function writeSql(schema: string): WriteSql {
  let sql = sqlCache.get(schema);
  if (sql) return sql;
  const bars = `${ident(schema)}.bars_1m`;
  const offsets = `${ident(schema)}.bar_writer_offsets`;
  const columns = `(seq, symbol, "timestamp", open, high, low, close, volume, vwap, part, kafka_offset)`;
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
      `UPDATE ${offsets} AS o SET next_offset = v.next_offset, updated_at = now()
       FROM (VALUES ${advances.map(([p, n]) => `(${Math.trunc(p)}, ${BigInt(n)}::bigint)`).join(', ')})
         AS v (partition, next_offset)
       WHERE ${fenceKey('o.', group, topic)} AND o.partition = v.partition AND o.next_offset < v.next_offset`,
    copy: `COPY pg_temp.${STAGING} ${columns} FROM STDIN`,
    copyBinary: `COPY pg_temp.${STAGING} ${columns} FROM STDIN (FORMAT binary)`,
    // DISTINCT ON … ORDER BY seq DESC keeps the latest message per key (seq follows offsets); ORDER BY
    // the key also makes concurrent flushes lock rows in one order, so they cannot deadlock.
    upsert: (group, topic) =>
      `INSERT INTO ${bars} AS t (symbol, "timestamp", open, high, low, close, volume, vwap)
       SELECT symbol, "timestamp", open, high, low, close, volume, vwap FROM (
         SELECT DISTINCT ON (s.symbol, s."timestamp") s.*
         FROM pg_temp.${STAGING} s
         JOIN ${offsets} f ON ${fenceKey('f.', group, topic)} AND f.partition = s.part
         WHERE s.kafka_offset >= f.next_offset
         ORDER BY s.symbol, s."timestamp", s.seq DESC
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
 *
 * One round trip: the COPY data goes out right behind its statement (PipelinedCopy), and the
 * statements after it in the same string: fence rows created if missing, locked, the upsert (which
 * filters by the fences in SQL), the fences advanced, COMMIT. A second one only to COMMIT after
 * `beforeCommit`.
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
  const bars: Bar[] = [];
  const origins: BarOrigin[] = [];
  for (const part of ordered) {
    for (const e of part.entries) {
      bars.push(e.bar);
      origins.push({ partition: part.partition, offset: e.offset });
    }
  }
  const advances = ordered.map((p) => [p.partition, p.nextOffset] as const);
  const statements = [
    'BEGIN',
    sql.copyBinary,
    sql.insertFences(group, topic, partitions),
    sql.lockFences(group, topic, partitions),
    sql.upsert(group, topic),
    sql.advanceFences(group, topic, advances),
    ...(beforeCommit ? [] : ['COMMIT']),
  ];
  const copy = new PipelinedCopy(statements.join(';\n'));
  await pipeline(Readable.from([encodeCopyBinary(bars, origins)]), client.query(copy));
  // One result per statement, in order: BEGIN, COPY, INSERT (fences), SELECT (fences), INSERT (bars), …
  const fences = new Map<number, bigint>();
  for (const row of copy.results[3]?.rows ?? []) fences.set(Number(row[0]), BigInt(row[1]!));
  if (fences.size !== partitions.length) throw new Error('fence rows missing after they were created');
  const rowsChanged = copy.results[4]?.rowCount ?? 0;

  const outcome: PartitionWriteResult[] = ordered.map((part) => {
    const fenceBefore = fences.get(part.partition)!;
    let written = 0;
    for (const e of part.entries) if (e.offset >= fenceBefore) written++;
    return { partition: part.partition, written, skippedFenced: part.entries.length - written, fenceBefore };
  });
  if (beforeCommit) {
    await beforeCommit(outcome);
    await client.query('COMMIT');
  }
  return { parts: outcome, rowsChanged };
}

/** One statement's outcome in a pipelined COPY string: its rows (text) and its command tag's count. */
interface StatementResult {
  rows: (string | null)[][];
  rowCount: number | null;
}

type CopyStream = ReturnType<typeof copyFrom>;
interface CopyStreamInternals {
  handleCopyInResponse(connection: unknown): void;
  handleCommandComplete(msg: unknown): void;
}
// pg-copy-streams exports a factory; the class of what it makes is the one to extend.
const CopyStreamQuery = Object.getPrototypeOf(copyFrom('')).constructor as new (text: string) => CopyStream;
const base = CopyStreamQuery.prototype as unknown as CopyStreamInternals;

/**
 * pg-copy-streams' COPY FROM STDIN with two changes. The data goes out right behind the query, without
 * waiting for CopyInResponse (the protocol allows it: when the statements before the copy fail,
 * PostgreSQL drops the CopyData and CopyDone that follow). And the query string may hold statements
 * around the COPY: their rows and command tags are kept in `results`, one per statement. So a whole
 * flush is one round trip: one wait for PostgreSQL, one turn of the event loop.
 */
class PipelinedCopy extends CopyStreamQuery {
  readonly results: StatementResult[] = [];
  private current: StatementResult = { rows: [], rowCount: null };

  override submit(connection: Parameters<CopyStream['submit']>[0]): void {
    super.submit(connection);
    base.handleCopyInResponse.call(this, connection);
  }

  handleRowDescription(): void {
    this.current.rows = [];
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.current.rows.push(msg.fields);
  }

  handleCommandComplete(msg: { text?: string }): void {
    base.handleCommandComplete.call(this, msg);
    const count = /\s(\d+)$/.exec(msg.text ?? '');
    this.current.rowCount = count ? Number(count[1]) : null;
    this.results.push(this.current);
    this.current = { rows: [], rowCount: null };
  }
}

/**
 * Creates the connection's staging table once, outside any transaction (so a rolled-back batch cannot
 * undo it). Pass as withConnection's `prepare`.
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
