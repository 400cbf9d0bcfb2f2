/**
 * Where a partition resumes, and which offset a write lets us commit. Two records say how far a
 * partition was written: the group's committed offset in Kafka, and the database fence
 * (bar_writer_offsets, moved in the same transaction as the rows). The fence is the truth: it is ahead
 * of the committed offset when a commit was lost after a durable write, or when another instance wrote
 * further.
 *
 * A newly assigned partition resumes from the later of the two. When the fence is ahead, the consumer is
 * sought to it (messages below it are then not even fetched again) and the fence is committed to Kafka,
 * so lag tooling agrees. Until this is known the pipeline keeps the partition paused.
 */
import type { ConsumerPort } from '../consumer/port';
import type { Logger } from '../observe/logger';
import type { OffsetCommitter } from './committer';

/** A partition to resume, with the ownership generation its commits must carry. */
export interface Resumable {
  partition: number;
  generation: number;
}

/** What the batching stage calls when partitions are assigned. */
export interface ResumePort {
  /**
   * For each partition, the next offset to expect from Kafka when the fence decides it (the consumer has
   * been sought there), or null when Kafka's committed offset does. Rejects when the fence or the
   * committed offsets cannot be read; the caller retries.
   */
  resume(topic: string, partitions: readonly Resumable[]): Promise<Map<number, bigint | null>>;
}

export interface ResumeDeps {
  /** The database fences (next offset to write) of some partitions of a topic. */
  fences(topic: string, partitions: readonly number[]): Promise<Map<number, bigint>>;
  consumer: Pick<ConsumerPort, 'committedOffsets' | 'seek'>;
  committer: Pick<OffsetCommitter, 'durable'>;
  logger: Logger;
}

export class ResumePoints implements ResumePort {
  constructor(private readonly deps: ResumeDeps) {}

  async resume(topic: string, partitions: readonly Resumable[]): Promise<Map<number, bigint | null>> {
    const numbers = partitions.map((p) => p.partition);
    const [fences, committed] = await Promise.all([
      this.deps.fences(topic, numbers),
      this.deps.consumer.committedOffsets(topic, numbers),
    ]);
    const out = new Map<number, bigint | null>();
    for (const { partition, generation } of partitions) {
      const fence = fences.get(partition) ?? 0n;
      const kafka = committed.get(partition) ?? null;
      if (fence > 0n && (kafka === null || fence > kafka)) {
        this.deps.consumer.seek({ topic, partition }, fence.toString());
        void this.deps.committer.durable(topic, partition, fence, generation);
        this.deps.logger.info(
          { topic, partition, fence: fence.toString(), committed: kafka?.toString() ?? null },
          'resuming from the database fence (ahead of the committed offset)',
        );
        out.set(partition, fence);
      } else {
        out.set(partition, null);
      }
    }
    return out;
  }
}

/**
 * The offset to commit once a batch is durable: the batch's end, or the fence it found if that is
 * further (another writer got there first: what lies between was written by it).
 */
export function commitOffsetAfter(batchNextOffset: bigint, fenceBefore: bigint): bigint {
  return fenceBefore > batchNextOffset ? fenceBefore : batchNextOffset;
}
