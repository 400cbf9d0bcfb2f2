/**
 * What one flush does to make batches durable: the FlushFn the scheduler calls. A flush covers the
 * batches of one or more partitions of a topic (the scheduler groups the partitions that are due at
 * the same time), in one transaction:
 *
 *   fence locks → COPY + upsert of the bars at or above each fence → dead letters for the rejected
 *   messages at or above their fence → fences advanced → COMMIT.
 *
 * Dead letters are sent inside the transaction, before COMMIT: if the send fails the transaction rolls
 * back and the batches are retried; if the fence has passed a message, its dead letter was sent.
 *
 * A row the database refuses (SQLSTATE class 22/23, which the contract should have caught) must not
 * block anything: a group is split into its partitions, and a partition's batch in halves, each
 * written in its own transaction, recursively, until the refused rows are alone; each is
 * dead-lettered with its SQLSTATE. One poison row costs about 2·log2(n) extra transactions, and the
 * other partitions of its group are written on their own. Transient and fatal errors are returned for
 * the scheduler to retry.
 */
import type { DeadLetterSink } from '../deadletter/producer';
import { refusedBar } from '../deadletter/records';
import { commitOffsetAfter } from '../offsets/resume';
import { classifyDbError } from '../store/errors';
import { withConnection, type Pool } from '../store/pool';
import { prepareStaging, writeGroup, type BarAtOffset, type PartitionWrite } from '../store/writeBatch';
import type { Batch, Entry, RejectedEntry } from './buffer';

export interface FlushJob {
  topic: string;
  partition: number;
  batch: Batch;
}

export interface FlushResult {
  /** Bars upserted. */
  written: number;
  /** Bars below the database fence (already written), skipped. */
  skippedFenced: number;
  /** Rejected messages sent to the dead-letter topic. */
  deadLettered: number;
  /** Offset to commit: the batch's nextOffset, or the database fence if that is further. */
  commitOffset: bigint;
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
}

/** A contiguous run of one partition's entries, written as one part of a transaction. */
interface Range {
  job: FlushJob;
  entries: readonly Entry[];
  nextOffset: bigint;
  total: FlushResult;
}

export function createFlush(deps: FlushDeps): FlushFn {
  return async (jobs: readonly FlushJob[]): Promise<FlushOutcome[]> => {
    const ranges: Range[] = jobs.map((job) => ({
      job,
      entries: job.batch.entries,
      nextOffset: job.batch.nextOffset,
      total: { written: 0, skippedFenced: 0, deadLettered: 0, commitOffset: job.batch.nextOffset },
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
        await writeRange(deps, r);
        outcomes.push({ ok: true, result: r.total });
      } catch (err) {
        outcomes.push({ ok: false, error: err });
      }
    }
    return outcomes;
  };
}

/** One transaction for every range (distinct partitions of one topic). */
async function writeTogether(deps: FlushDeps, ranges: readonly Range[]): Promise<void> {
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
    parts.push({ partition: r.job.partition, entries: bars, nextOffset: r.nextOffset });
  }
  const topic = ranges[0]!.job.topic;
  const deadLettered = new Map<number, number>();
  const sendDeadLetters =
    rejected.size === 0
      ? undefined
      : async (results: readonly { partition: number; fenceBefore: bigint }[]) => {
          for (const res of results) {
            const toSend = (rejected.get(res.partition) ?? []).filter((e) => e.offset >= res.fenceBefore);
            if (toSend.length === 0) continue;
            await deps.deadLetters.send(topic, res.partition, toSend);
            if (deps.deadLetters.enabled) deadLettered.set(res.partition, toSend.length);
          }
        };
  const out = await withConnection(
    deps.pool,
    (client) => writeGroup(client, deps.schema, deps.group, topic, parts, sendDeadLetters),
    prepareStaging,
  );
  for (const res of out.parts) {
    const r = ranges.find((x) => x.job.partition === res.partition)!;
    r.total.written += res.written;
    r.total.skippedFenced += res.skippedFenced;
    r.total.deadLettered += deadLettered.get(res.partition) ?? 0;
    r.total.commitOffset = commitOffsetAfter(r.total.commitOffset, res.fenceBefore);
  }
}

/** One partition's range; on a refused row, halves in their own transactions, recursively. */
async function writeRange(deps: FlushDeps, r: Range): Promise<void> {
  try {
    await writeTogether(deps, [r]);
  } catch (err) {
    if (classifyDbError(err).class !== 'data' || !r.entries.some((e) => e.kind === 'bar')) throw err;
    if (r.entries.length === 1) {
      // The refused row, alone: dead-letter it in place of writing it.
      const only = r.entries[0]!;
      if (only.kind !== 'bar') throw err;
      const poison: RejectedEntry = { kind: 'rejected', ...refusedBar(only, classifyDbError(err)) };
      await writeRange(deps, { ...r, entries: [poison] });
      return;
    }
    const mid = Math.ceil(r.entries.length / 2);
    const left = r.entries.slice(0, mid);
    const right = r.entries.slice(mid);
    await writeRange(deps, { ...r, entries: left, nextOffset: right[0]!.offset });
    await writeRange(deps, { ...r, entries: right });
  }
}
