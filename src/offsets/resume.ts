/**
 * Where a partition resumes. Two records say how far a partition was written: the group's committed
 * offset in Kafka, and the database fence (bar_writer_offsets, moved in the same transaction as the
 * rows, with the fingerprint of the last message it covers). The fence is the truth for the log it was
 * written against; `decideResume` (pure) turns the facts into a decision, `ResumeReader` reads the
 * facts and moves a fence. The partition's state machine (../batch/partition.ts) runs both.
 *
 * Per partition (fence F, committed offset C, the log from L to its end E):
 * - no fence, while the group has fences for other partitions of the topic: never written by this group
 *   (a partition added later): F = 0, as below (so a committed offset moved ahead does not skip it).
 * - no fence at all for the topic (a deployment from before fences, a new database): the committed
 *   offset, when it lies within the log; below L (deleted by retention) the log start, counted; none,
 *   or beyond E (another log), the start policy (KAFKA_FROM_BEGINNING: L, else E).
 * - E < F: the log ends before the fence: it is not the log the fence was written against (topic
 *   re-created, or truncated): replaced.
 * - the message at F−1 still exists and the fence has its fingerprint: verify (sought to F−1; the first
 *   message fetched confirms the fence, or says the log was replaced).
 * - otherwise (F−1 deleted by retention, or a fence without a fingerprint): the fence is trusted; when
 *   F < L, the log start (what lay between was deleted before it was written: counted).
 * With a fence, C does not decide: C < F is moved up to F (written already), C > F is overruled (the
 *   fence wins; the offsets between are read again). Both are logged with the count, and counted.
 * Replaced: the fence moves to the new log's start (KAFKA_FROM_BEGINNING) or end; the committed offset
 * is not trusted there (it may be the old log's, or one kafkajs set while resetting).
 */
import type { ConsumerPort, LogOffsets } from '../consumer/port';

/** A fence as stored: the next offset to write, and the fingerprint of the message before it. */
export interface StoredFence {
  next: bigint;
  fingerprint: string | null;
}

/** What a resume decision is made from. */
export interface ResumeFacts {
  fence: StoredFence | null;
  committed: bigint | null;
  log: LogOffsets;
  /**
   * The group has fences for other partitions of this topic: a partition without one was never written
   * by it (added later, or never reached), and reads from its start whatever the committed offset says.
   */
  topicHasFences: boolean;
}

export type ResumeDecision =
  | { kind: 'replaced'; fence: bigint; why: string }
  | { kind: 'verify'; check: bigint; fingerprint: string; fence: bigint; committed: bigint | null }
  /** Consume from `next`; `retentionSkipped` offsets below it were deleted before they were written. */
  | { kind: 'at'; next: bigint; fence: bigint | null; committed: bigint | null; retentionSkipped: bigint };

export function decideResume(f: ResumeFacts, fromBeginning: boolean): ResumeDecision {
  const { committed, log } = f;
  const fence = f.fence ?? (f.topicHasFences ? { next: 0n, fingerprint: null } : null);
  const start = fromBeginning ? log.low : log.high;
  if (fence === null) {
    if (committed === null || committed > log.high) {
      return { kind: 'at', next: start, fence: null, committed, retentionSkipped: 0n };
    }
    if (committed < log.low) {
      return { kind: 'at', next: log.low, fence: null, committed, retentionSkipped: log.low - committed };
    }
    return { kind: 'at', next: committed, fence: null, committed, retentionSkipped: 0n };
  }
  if (log.high < fence.next) {
    return { kind: 'replaced', fence: fence.next, why: `a log that ends at ${log.high}` };
  }
  const named = fence.fingerprint === null ? null : fingerprintOffset(fence.fingerprint);
  if (named !== null && named >= log.low && named < fence.next) {
    return { kind: 'verify', check: named, fingerprint: fence.fingerprint!, fence: fence.next, committed };
  }
  if (fence.next < log.low) {
    return { kind: 'at', next: log.low, fence: log.low, committed, retentionSkipped: log.low - fence.next };
  }
  return { kind: 'at', next: fence.next, fence: fence.next, committed, retentionSkipped: 0n };
}

/** The offset a fingerprint names, or null when it does not parse (then the fence is not checked). */
export function fingerprintOffset(fp: string): bigint | null {
  const m = /^(\d+):/.exec(fp);
  return m ? BigInt(m[1]!) : null;
}

export interface ResumeReaderDeps {
  /** The database fences of a topic's partitions (all of them). */
  fences(topic: string): Promise<Map<number, StoredFence>>;
  /** Moves a partition's fence to `next` (back or forward), forgetting its fingerprint. */
  resetFence(topic: string, partition: number, next: bigint): Promise<void>;
  consumer: Pick<ConsumerPort, 'committedOffsets' | 'logOffsets'>;
}

/** Reads resume facts and moves fences: the I/O the partition machine asks for. */
export class ResumeReader {
  constructor(private readonly deps: ResumeReaderDeps) {}

  /** The facts of some partitions of `topic`; rejects when any of them cannot be read. */
  async read(topic: string, partitions: readonly number[]): Promise<Map<number, ResumeFacts>> {
    const [fences, committed, logs] = await Promise.all([
      this.deps.fences(topic),
      this.deps.consumer.committedOffsets(topic, [...partitions]),
      this.deps.consumer.logOffsets(topic),
    ]);
    const out = new Map<number, ResumeFacts>();
    for (const p of partitions) {
      const log = logs.get(p);
      if (!log) throw new Error(`partition ${p} of ${topic} has no log offsets (the topic changed?)`);
      out.set(p, {
        fence: fences.get(p) ?? null,
        committed: committed.get(p) ?? null,
        log,
        topicHasFences: fences.size > 0,
      });
    }
    return out;
  }

  /** Moves the fence to the log's start or end; resolves to that offset. */
  async moveFence(topic: string, partition: number, to: 'start' | 'end'): Promise<bigint> {
    const log = (await this.deps.consumer.logOffsets(topic)).get(partition);
    if (!log) throw new Error(`partition ${partition} of ${topic} has no log offsets (the topic changed?)`);
    const next = to === 'start' ? log.low : log.high;
    await this.deps.resetFence(topic, partition, next);
    return next;
  }
}
