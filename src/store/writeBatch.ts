/**
 * The write of one flush, in one transaction covering one or more partitions of a topic:
 *
 *   1. COPY the bars (binary format) with their partition and offset into the staging table;
 *   2. create the partitions' fence rows if missing and lock them (in partition order): each holds the
 *      first offset not yet written by anyone in this group;
 *   3. one INSERT … SELECT … ON CONFLICT (symbol, "timestamp") DO UPDATE into bars_1m of the staged rows
 *      at or above their partition's fence (rows below were written before: by us before a crash, or by
 *      the instance that owned the partition after us, and writing them again could overwrite a newer
 *      version), keeping the newest version per key when a key is staged more than once (./stagedKeys.ts)
 *      and replacing a stored row only with a strictly newer version, so a replay writes nothing;
 *      The same statement keeps bars_latest, each symbol's newest bar, from the rows it changed;
 *      Before it, an advisory lock: shared, or exclusive when the write stages a delete (see
 *      ./writeSql.ts lockForBars), then the deletes and the repair of bars_latest when there are any;
 *   4. advance each fence (it only ever moves forward) and COMMIT.
 *
 * The staging table is created inside the transaction when the connection lacks it (CREATE TEMP TABLE
 * IF NOT EXISTS), never beforehand on the session: through a pooler in transaction mode each transaction
 * may run on another server connection.
 *
 * All of it is one round trip (./transaction.ts, ./pipelinedCopy.ts). The caller commits Kafka offsets
 * only after this returns.
 */
import type { Bar } from '../contract/bar';
import type { ExtraColumn } from '../contract/extras';
import { BarSlabs, isDelete, timestampOf, type PackedBar } from '../contract/packedBar';
import { encodeCopyBinaryParts, type ConsumedBar } from './copyEncoding';
import type { PoolClient } from './pool';
import { stagedKeys } from './stagedKeys';
import { runTransaction, type Statement } from './transaction';
import { ROWS_CHANGED, ROWS_DELETED, writeSql, type StagedKeys, type WriteSql } from './writeSql';

/** A bar at its Kafka offset, with its record timestamp (with the revision, the bar's version). */
export type BarAtOffset = ConsumedBar;

/**
 * One partition's share of a write: its bars in offset order, the offset after its batch, and the
 * fingerprint of the batch's last message (the fence records it: ../offsets/fingerprint.ts).
 */
export interface PartitionWrite {
  partition: number;
  entries: readonly BarAtOffset[];
  nextOffset: bigint;
  lastFingerprint: string;
  /** The least fence this write accepts (null or absent: any); see FenceAdvance.expect. */
  expect?: bigint | null;
}

export interface WriteOptions {
  /**
   * lock_timeout of the transaction (0: none): a fence row or a bar row another session holds fails
   * the write after this long, instead of holding it (and every partition written with it) for the
   * whole statement timeout.
   */
  lockTimeoutMs?: number;
  /** statement_timeout of the transaction (0: none), set with SET LOCAL (see ./transaction.ts). */
  statementTimeoutMs?: number;
  /** Whether a bar of this start time goes into a compressed chunk (counted in the result). */
  inCompressedChunk?: (timestampMs: number) => boolean;
  /** BARS_EXTRA_COLUMNS: the columns beyond the contract's the bars carry (none when absent). */
  extras?: readonly ExtraColumn[];
}

export interface PartitionWriteResult {
  partition: number;
  /** Bars sent to the upsert (at or above the fence). */
  written: number;
  /** Bars below the fence, skipped. */
  skippedFenced: number;
  /** The fence before this write. */
  fenceBefore: bigint;
  /** The fence was below the write's expectation (moved back): nothing of this partition was written. */
  rewound: boolean;
  /** Of the bars written, those whose chunk is compressed (by `inCompressedChunk`). */
  writtenCompressed: number;
}

export interface WriteGroupResult {
  parts: PartitionWriteResult[];
  /** Rows inserted or replaced in bars_1m (an older or equal version is not counted). */
  rowsChanged: number;
  /** Rows of bars_1m deleted by the write's deletes. */
  rowsDeleted: number;
}

/** Whether any of the rows is a delete. */
function stagesDelete(groups: readonly (readonly PackedBar[])[]): boolean {
  for (const rows of groups) for (let i = 0; i < rows.length; i++) if (isDelete(rows[i]!)) return true;
  return false;
}

/**
 * The steps after the fences: the advisory lock (exclusive when a delete is staged), the upsert, and
 * the deletes with the repair of bars_latest when there are any.
 */
function writeSteps(
  sql: WriteSql,
  groups: readonly (readonly PackedBar[])[],
  upsert: (keys: StagedKeys) => string,
  deletes: (keys: StagedKeys) => string,
): Statement<string>[] {
  const keys = stagedKeys(groups);
  if (!stagesDelete(groups)) {
    return [
      { name: 'lock', sql: sql.lockForBars },
      { name: 'upsert', sql: upsert(keys) },
    ];
  }
  return [
    { name: 'lock', sql: sql.lockForDeletes },
    { name: 'upsert', sql: upsert(keys) },
    { name: 'deletes', sql: deletes(keys) },
    ...sql.repairLatest.map((text, i) => ({ name: `repairLatest${i}`, sql: text })),
  ];
}

/** The count a statement answers in its one row (ROWS_CHANGED, ROWS_DELETED); 0 when it was not sent. */
function answeredCount(rows: readonly (string | null)[][] | null, what: string): number {
  if (rows === null) return 0;
  const n = Number(rows[0]?.[0]);
  if (rows.length !== 1 || !Number.isSafeInteger(n)) throw new Error(`the write did not answer ${what}`);
  return n;
}

/** Steps 1-4 above as one transaction on `client`, in one round trip. */
export async function writeGroup(
  client: PoolClient,
  schema: string,
  group: string,
  topic: string,
  parts: readonly PartitionWrite[],
  options: WriteOptions = {},
): Promise<WriteGroupResult> {
  const sql = writeSql(schema, options.extras);
  const ordered = [...parts].sort((x, y) => x.partition - y.partition);
  const partitions = ordered.map((p) => p.partition);
  const outcome = (fenceRows: (string | null)[][]): PartitionWriteResult[] => {
    const fences = new Map<number, bigint>();
    for (const row of fenceRows) fences.set(Number(row[0]), BigInt(row[1]!));
    if (fences.size !== partitions.length) throw new Error('fence rows missing after they were created');
    return ordered.map((part) => {
      const fenceBefore = fences.get(part.partition)!;
      if (part.expect !== null && part.expect !== undefined && fenceBefore < part.expect) {
        return {
          partition: part.partition,
          written: 0,
          skippedFenced: 0,
          fenceBefore,
          rewound: true,
          writtenCompressed: 0,
        };
      }
      const compressed = options.inCompressedChunk;
      let written = 0;
      let writtenCompressed = 0;
      for (const e of part.entries) {
        if (e.offset < fenceBefore) continue;
        written++;
        if (compressed?.(timestampOf(e))) writtenCompressed++;
      }
      return {
        partition: part.partition,
        written,
        skippedFenced: part.entries.length - written,
        fenceBefore,
        rewound: false,
        writtenCompressed,
      };
    });
  };
  const advances = ordered.map((p) => ({
    partition: p.partition,
    next: p.nextOffset,
    fingerprint: p.lastFingerprint,
    expect: p.expect,
  }));
  const results = await runTransaction(
    client,
    [
      { name: 'createStaging', sql: sql.createStaging },
      { name: 'stage', sql: sql.copyBinary, copyData: encodeCopyBinaryParts(ordered, options.extras) },
      { name: 'createFences', sql: sql.insertFences(group, topic, partitions) },
      { name: 'lockFences', sql: sql.lockFences(group, topic, partitions) },
      ...writeSteps(
        sql,
        ordered.map((p) => p.entries),
        (keys) => sql.upsert(group, topic, keys, advances),
        (keys) => sql.deletes(group, topic, keys, advances),
      ),
      { name: 'advanceFences', sql: sql.advanceFences(group, topic, advances) },
    ],
    { lockTimeoutMs: options.lockTimeoutMs, statementTimeoutMs: options.statementTimeoutMs },
  );
  return {
    parts: outcome(results.rows('lockFences')),
    rowsChanged: answeredCount(results.rows('upsert'), ROWS_CHANGED),
    rowsDeleted: answeredCount(results.has('deletes') ? results.rows('deletes') : null, ROWS_DELETED),
  };
}

/**
 * A bar of a load that is not a Kafka partition (backfill), with the time part of its version and its
 * ordinal in the load (the last part: a later row wins a tie).
 */
export interface LoadedBar {
  bar: Bar;
  recordTimeMs: number;
  ordinal: bigint;
}

/** What writeBars changed. */
export interface WriteBarsResult {
  /** Rows of bars_1m inserted or replaced. */
  rowsChanged: number;
  /** Rows of bars_1m deleted. */
  rowsDeleted: number;
}

/**
 * The same COPY → staging → upsert (and deletes) as writeGroup, for bars that come from a file rather
 * than a Kafka partition: no fence. One transaction, one round trip.
 */
export async function writeBars(
  client: PoolClient,
  schema: string,
  rows: readonly LoadedBar[],
  options: Pick<WriteOptions, 'statementTimeoutMs' | 'lockTimeoutMs' | 'extras'> = {},
): Promise<WriteBarsResult> {
  const sql = writeSql(schema, options.extras);
  const slabs = new BarSlabs(rows.length);
  const entries = rows.map((r): ConsumedBar => slabs.packedAt(r.bar, r.recordTimeMs, r.ordinal));
  const results = await runTransaction(
    client,
    [
      { name: 'createStaging', sql: sql.createStaging },
      {
        name: 'stage',
        sql: sql.copyBinary,
        copyData: encodeCopyBinaryParts([{ partition: 0, entries }], options.extras),
      },
      ...writeSteps(sql, [entries], sql.upsertAll, sql.deletesAll),
    ],
    { statementTimeoutMs: options.statementTimeoutMs, lockTimeoutMs: options.lockTimeoutMs },
  );
  return {
    rowsChanged: answeredCount(results.rows('upsert'), ROWS_CHANGED),
    rowsDeleted: answeredCount(results.has('deletes') ? results.rows('deletes') : null, ROWS_DELETED),
  };
}
