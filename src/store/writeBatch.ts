/**
 * The write of one flush, in one transaction covering one or more partitions of a topic:
 *
 *   1. COPY the bars (binary format) with their partition and offset into the staging table;
 *   2. create the partitions' fence rows if missing and lock them (in partition order): each holds the
 *      first offset not yet written by anyone in this group;
 *   3. one INSERT … SELECT … ON CONFLICT (symbol, "timestamp") DO UPDATE into bars_1m of the staged rows
 *      at or above their partition's fence (rows below were written before: by us before a crash, or by
 *      the instance that owned the partition after us, and writing them again could overwrite a newer
 *      version), keeping the latest message (highest offset) per key and skipping rows whose stored
 *      values are already identical, so a replay creates no dead tuples;
 *   4. advance each fence (it only ever moves forward) and COMMIT.
 *
 * All of it is one round trip (./transaction.ts, ./pipelinedCopy.ts). The caller commits Kafka offsets
 * only after this returns.
 */
import type { Bar } from '../contract/bar';
import { encodeCopyBinary, type BarOrigin } from './copyEncoding';
import type { PoolClient } from './pool';
import { runTransaction } from './transaction';
import { CREATE_STAGING, writeSql } from './writeSql';

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
  /** Bars sent to the upsert (at or above the fence). */
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

/**
 * Steps 1-4 above as one transaction on `client`. `beforeCommit` runs after the fences are advanced and
 * before COMMIT, with each partition's fence before the write (dead letters are sent there: if sending
 * fails, nothing is committed).
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
  const outcome = (fenceRows: (string | null)[][]): PartitionWriteResult[] => {
    const fences = new Map<number, bigint>();
    for (const row of fenceRows) fences.set(Number(row[0]), BigInt(row[1]!));
    if (fences.size !== partitions.length) throw new Error('fence rows missing after they were created');
    return ordered.map((part) => {
      const fenceBefore = fences.get(part.partition)!;
      let written = 0;
      for (const e of part.entries) if (e.offset >= fenceBefore) written++;
      return {
        partition: part.partition,
        written,
        skippedFenced: part.entries.length - written,
        fenceBefore,
      };
    });
  };
  const results = await runTransaction(
    client,
    [
      { name: 'stage', sql: sql.copyBinary, copyData: encodeCopyBinary(bars, origins) },
      { name: 'createFences', sql: sql.insertFences(group, topic, partitions) },
      { name: 'lockFences', sql: sql.lockFences(group, topic, partitions) },
      { name: 'upsert', sql: sql.upsert(group, topic) },
      {
        name: 'advanceFences',
        sql: sql.advanceFences(
          group,
          topic,
          ordered.map((p) => [p.partition, p.nextOffset] as const),
        ),
      },
    ],
    beforeCommit && ((r) => beforeCommit(outcome(r.rows('lockFences')))),
  );
  return { parts: outcome(results.rows('lockFences')), rowsChanged: results.count('upsert') };
}

const stagingReady = new WeakSet<object>();

/**
 * Creates the connection's staging table once, outside any transaction (so a rolled-back batch cannot
 * undo it). Pass as withConnection's `prepare`.
 */
export async function prepareStaging(client: PoolClient): Promise<void> {
  if (stagingReady.has(client)) return;
  await client.query(CREATE_STAGING);
  stagingReady.add(client);
}
