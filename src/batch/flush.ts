/**
 * What one flush does to make a batch durable (the FlushFn the pipeline calls):
 *
 *   one transaction: fence lock → COPY + upsert of the bars at or above the fence → dead letters for the
 *   rejected messages at or above the fence → fence advanced → COMMIT.
 *
 * Dead letters are sent inside the transaction, before COMMIT: if the send fails the transaction rolls
 * back and the whole batch is retried; if the fence has passed a message, its dead letter was sent.
 *
 * A row the database refuses (SQLSTATE class 22/23, which the contract should have caught) must not
 * block the partition: the batch is split in halves, each written in its own transaction, recursively,
 * until the refused rows are alone; each is dead-lettered with its SQLSTATE. One poison row costs
 * about 2·log2(n) extra transactions. Transient and fatal errors are thrown for the pipeline to retry.
 */
import type { Pool } from '../store/pool';
import { withTransaction } from '../store/pool';
import { classifyDbError } from '../store/errors';
import { prepareStaging, writeBatch, type BarAtOffset } from '../store/writeBatch';
import type { DeadLetterSink } from '../deadletter/producer';
import type { Entry, RejectedEntry } from './buffer';
import type { FlushFn, FlushJob, FlushResult } from './pipeline';

export interface FlushDeps {
  pool: Pool;
  schema: string;
  group: string;
  deadLetters: DeadLetterSink;
}

export function createFlush(deps: FlushDeps): FlushFn {
  return async (job: FlushJob): Promise<FlushResult> => {
    const total: FlushResult = {
      written: 0,
      skippedFenced: 0,
      deadLettered: 0,
      commitOffset: job.batch.nextOffset,
    };
    await writeRange(deps, job, job.batch.entries, job.batch.nextOffset, total);
    return total;
  };
}

async function writeRange(
  deps: FlushDeps,
  job: FlushJob,
  entries: readonly Entry[],
  nextOffset: bigint,
  total: FlushResult,
): Promise<void> {
  const bars: BarAtOffset[] = [];
  const rejected: RejectedEntry[] = [];
  for (const e of entries) {
    if (e.kind === 'bar') bars.push({ offset: e.offset, bar: e.bar });
    else rejected.push(e);
  }
  try {
    const r = await withTransaction(
      deps.pool,
      async (client) => {
        const res = await writeBatch(
          client,
          deps.schema,
          { group: deps.group, topic: job.topic, partition: job.partition },
          bars,
          nextOffset,
        );
        const toSend = rejected.filter((e) => e.offset >= res.fenceBefore);
        await deps.deadLetters.send(job.topic, job.partition, toSend);
        return { ...res, deadLettered: deps.deadLetters.enabled ? toSend.length : 0 };
      },
      prepareStaging,
    );
    total.written += r.written;
    total.skippedFenced += r.skippedFenced;
    total.deadLettered += r.deadLettered;
    if (r.fenceBefore > total.commitOffset) total.commitOffset = r.fenceBefore;
  } catch (err) {
    if (classifyDbError(err).class !== 'data' || bars.length === 0) throw err;
    if (entries.length === 1) {
      // The refused row, alone: dead-letter it in place of writing it.
      const only = entries[0]!;
      if (only.kind !== 'bar') throw err;
      const info = classifyDbError(err);
      const poison: RejectedEntry = {
        kind: 'rejected',
        offset: only.offset,
        rejection: { reason: 'database_rejected', detail: `the database refused the row: ${info.message}` },
        key: Buffer.from(only.bar.symbol),
        value: Buffer.from(
          JSON.stringify({ ...only.bar, timestamp: new Date(only.bar.timestampMs).toISOString() }),
        ),
        headers: {},
        messageTimeMs: only.messageTimeMs,
        ...(info.code ? { sqlstate: info.code } : {}),
      };
      await writeRange(deps, job, [poison], nextOffset, total);
      return;
    }
    const mid = Math.ceil(entries.length / 2);
    const left = entries.slice(0, mid);
    const right = entries.slice(mid);
    await writeRange(deps, job, left, right[0]!.offset, total);
    await writeRange(deps, job, right, nextOffset, total);
  }
}
