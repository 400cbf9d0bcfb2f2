/**
 * What one flush does to make batches durable: the FlushFn the scheduler calls. A flush covers the
 * batches of one or more partitions of a topic (the scheduler groups partitions that are due at the
 * same time):
 *
 *   1. dead letters first, for the rejected messages at or above each partition's fence (read without a
 *      lock): no Kafka round trip ever runs while the write transaction holds its locks;
 *   2. one transaction, one round trip (../store/writeBatch.ts): COPY → fence rows locked → upsert of
 *      the bars at or above each fence → fences advanced, each with the fingerprint of the batch's last
 *      message → COMMIT.
 *
 * Dead letters are at least once: if the transaction then fails, the flush is retried and sends them
 * again (a consumer of the dead-letter topic deduplicates by bar-writer.source.* headers if it must);
 * they are never lost, since the fence (and so the offset commit) passes a message only after its dead
 * letter was sent.
 *
 * A row the database refuses (SQLSTATE class 22/23, which the contract should have caught) must not
 * block anything: a group is split into its partitions, and a partition's batch in halves, each
 * written in its own transaction, recursively, until the refused rows are alone; each is counted in
 * bars_rejected_total{reason="database_rejected"}, logged with where it came from, and dead-lettered
 * with its original bytes and SQLSTATE. One poison row costs about 2·log2(n) extra transactions, and
 * the other partitions of its group are written on their own. Transient and fatal errors are returned
 * for the scheduler to retry.
 */
import { messageTimeOf } from '../contract/packedBar';
import type { DeadLetterSink } from '../deadletter/producer';
import { DATABASE_REJECTED, refusedBar } from '../deadletter/records';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { fingerprint } from '../offsets/fingerprint';
import { classifyDbError } from '../store/errors';
import { readFences } from '../store/fences';
import { withConnection, type Pool } from '../store/pool';
import type { ExtraColumn } from '../contract/extras';
import { writeGroup, type BarAtOffset, type PartitionWrite } from '../store/writeBatch';
import { sourceOf, type Batch, type Entry, type RejectedEntry } from './buffer';
import { RefusalLog } from './refusals';

export interface FlushJob {
  topic: string;
  partition: number;
  batch: Batch;
  /**
   * The fence the partition last left (null: unknown). A fence found below it was moved back (an
   * operator's offsets reset): the job writes nothing and reports `rewound`.
   */
  expect: bigint | null;
}

export interface FlushResult {
  /** Bars upserted. */
  written: number;
  /** Bars below the database fence (already written), skipped. */
  skippedFenced: number;
  /** Of the bars upserted, those into compressed TimescaleDB chunks (late corrections). */
  writtenCompressed: number;
  /** Rejected messages sent to the dead-letter topic. */
  deadLettered: number;
  /** Offset to commit: the batch's nextOffset, or the database fence if that is further. */
  commitOffset: bigint;
  /** The fence found by the write. */
  fenceBefore: bigint;
  /** The fence was below the job's expectation: nothing written, nothing to commit. */
  rewound: boolean;
}

export type FlushOutcome = { ok: true; result: FlushResult } | { ok: false; error: unknown };

/**
 * Makes the batches of distinct partitions durable (database, dead letters), one outcome per job in
 * order; a failed job is retried. Never throws.
 */
export type FlushFn = (jobs: readonly FlushJob[]) => Promise<FlushOutcome[]>;

export interface FlushDeps {
  pool: Pool;
  schema: string;
  group: string;
  deadLetters: DeadLetterSink;
  metrics: Pick<Metrics, 'barsRejected' | 'barsDeleted'>;
  logger: Logger;
  /** lock_timeout of each write transaction (0: none). */
  lockTimeoutMs?: number;
  /** statement_timeout of each write transaction (0: none). */
  statementTimeoutMs?: number;
  /** Where compressed chunks are (../store/compressedChunks.ts), to count writes into them. */
  compressed?: { holds(timestampMs: number): boolean };
  /** BARS_EXTRA_COLUMNS: the columns beyond the contract's the bars carry. */
  extras?: readonly ExtraColumn[];
}

/** A contiguous run of one partition's entries, written as one part of a transaction. */
interface Range {
  job: FlushJob;
  entries: readonly Entry[];
  nextOffset: bigint;
  total: FlushResult;
}

export function createFlush(deps: FlushDeps): FlushFn {
  const refusedLog = new RefusalLog(deps.logger);
  return async (jobs: readonly FlushJob[]): Promise<FlushOutcome[]> => {
    const ranges: Range[] = jobs.map((job) => ({
      job,
      entries: job.batch.entries,
      nextOffset: job.batch.nextOffset,
      total: {
        written: 0,
        skippedFenced: 0,
        writtenCompressed: 0,
        deadLettered: 0,
        commitOffset: job.batch.nextOffset,
        fenceBefore: -1n,
        rewound: false,
      },
    }));
    try {
      await writeTogether(deps, ranges);
      return ranges.map((r) => ({ ok: true, result: r.total }));
    } catch (err) {
      if (classifyDbError(err).class !== 'data') return ranges.map(() => ({ ok: false, error: err }));
    }
    // A refused row somewhere: each partition on its own, bisected down to the refused rows.
    const outcomes: FlushOutcome[] = [];
    for (const r of ranges) {
      try {
        await writeRange(deps, r, refusedLog);
        outcomes.push({ ok: true, result: r.total });
      } catch (err) {
        outcomes.push({ ok: false, error: err });
      }
    }
    return outcomes;
  };
}

/** The fingerprint of a range's last message: what the fence will say it covers. */
function lastFingerprint(entries: readonly Entry[]): string {
  const last = entries[entries.length - 1]!;
  return last.kind === 'bar'
    ? fingerprint(last.offset, messageTimeOf(last), sourceOf(last))
    : fingerprint(last.offset, last.messageTimeMs, last.value);
}

/** Dead letters, then one transaction, for every range (distinct partitions of one topic). */
async function writeTogether(deps: FlushDeps, ranges: readonly Range[]): Promise<void> {
  const topic = ranges[0]!.job.topic;
  const parts: PartitionWrite[] = [];
  const rejected = new Map<number, RejectedEntry[]>();
  for (const r of ranges) {
    const bars: BarAtOffset[] = [];
    for (const e of r.entries) {
      if (e.kind === 'bar')
        bars.push(e); // a BarEntry is a BarAtOffset: no copy
      else {
        const list = rejected.get(r.job.partition) ?? [];
        list.push(e);
        rejected.set(r.job.partition, list);
      }
    }
    parts.push({
      partition: r.job.partition,
      entries: bars,
      nextOffset: r.nextOffset,
      lastFingerprint: lastFingerprint(r.entries),
      expect: r.job.expect,
    });
  }
  const deadLettered = await sendDeadLetters(deps, topic, rejected);
  const out = await withConnection(deps.pool, (client) =>
    writeGroup(client, deps.schema, deps.group, topic, parts, {
      lockTimeoutMs: deps.lockTimeoutMs ?? 0,
      statementTimeoutMs: deps.statementTimeoutMs ?? 0,
      inCompressedChunk: deps.compressed && ((ms) => deps.compressed!.holds(ms)),
      extras: deps.extras,
    }),
  );
  if (out.rowsDeleted > 0) deps.metrics.barsDeleted.inc(out.rowsDeleted);
  for (const res of out.parts) {
    const r = ranges.find((x) => x.job.partition === res.partition)!;
    if (r.total.fenceBefore < 0n) r.total.fenceBefore = res.fenceBefore;
    if (res.rewound) {
      r.total.rewound = true;
      continue;
    }
    r.total.written += res.written;
    r.total.skippedFenced += res.skippedFenced;
    r.total.writtenCompressed += res.writtenCompressed;
    r.total.deadLettered += deadLettered.get(res.partition) ?? 0;
    // Another writer got further than this batch: what lies between was written by it.
    r.total.commitOffset = maxOf(r.total.commitOffset, res.fenceBefore);
  }
}

const maxOf = (a: bigint, b: bigint): bigint => (a > b ? a : b);

/**
 * Sends the dead letters of the rejected messages at or above their partition's fence (below it, they
 * were handled before: a replay); returns how many per partition (0 when dead letters are disabled).
 */
async function sendDeadLetters(
  deps: FlushDeps,
  topic: string,
  rejected: ReadonlyMap<number, RejectedEntry[]>,
): Promise<Map<number, number>> {
  const sent = new Map<number, number>();
  if (rejected.size === 0) return sent;
  const fences = await readFences(deps.pool, deps.schema, deps.group, topic, [...rejected.keys()]);
  for (const [partition, entries] of rejected) {
    const fence = fences.get(partition)?.next ?? 0n;
    const toSend = entries.filter((e) => e.offset >= fence);
    if (toSend.length === 0) continue;
    await deps.deadLetters.send(topic, partition, toSend);
    if (deps.deadLetters.enabled) sent.set(partition, toSend.length);
  }
  return sent;
}

/** One partition's range; on a refused row, halves in their own transactions, recursively. */
async function writeRange(deps: FlushDeps, r: Range, refusedLog: RefusalLog): Promise<void> {
  if (r.total.rewound) return; // the fence moved back: nothing more of this job is written
  try {
    await writeTogether(deps, [r]);
  } catch (err) {
    if (classifyDbError(err).class !== 'data' || !r.entries.some((e) => e.kind === 'bar')) throw err;
    if (r.entries.length === 1) {
      // The refused row, alone: counted, logged, and dead-lettered in place of being written.
      const only = r.entries[0]!;
      if (only.kind !== 'bar') throw err;
      const info = classifyDbError(err);
      const poison: RejectedEntry = { kind: 'rejected', ...refusedBar(only, info) };
      deps.metrics.barsRejected.inc({ reason: DATABASE_REJECTED });
      refusedLog.refused(r.job.topic, r.job.partition, only.offset, {
        reason: DATABASE_REJECTED,
        sqlstate: info.code,
        detail: poison.rejection.detail,
        deadLetter: deps.deadLetters.enabled,
      });
      await writeRange(deps, { ...r, entries: [poison] }, refusedLog);
      return;
    }
    const mid = Math.ceil(r.entries.length / 2);
    const left = r.entries.slice(0, mid);
    const right = r.entries.slice(mid);
    await writeRange(deps, { ...r, entries: left, nextOffset: right[0]!.offset }, refusedLog);
    await writeRange(deps, { ...r, entries: right }, refusedLog);
  }
}
