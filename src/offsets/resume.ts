/**
 * Where a partition resumes, and which offset a write lets us commit. Two records say how far a
 * partition was written: the group's committed offset in Kafka, and the database fence
 * (bar_writer_offsets, moved in the same transaction as the rows, with the fingerprint of the last
 * message it covers). The fence is the truth for the log it was written against.
 *
 * On assignment, per partition (fence F, committed offset C, the log from L to its end E):
 * - no fence, or C > F (an operator moved the group forward): Kafka's committed offset decides.
 *   C = F is the usual restart, and checked like the rest: a topic re-created under the same name may
 *   keep neither, both, or stale offsets of the old log.
 * - E < F: the log ends before the fence: it is not the log the fence was written against (topic
 *   re-created, or truncated): replaced (below).
 * - the message at F−1 still exists and the fence has its fingerprint: the consumer is sought to F−1 and
 *   the batching stage compares the first message it fetches (`verify`): the same message confirms the
 *   fence (it is skipped, fetching goes on at F); another message means another log: replaced.
 * - otherwise (F−1 deleted by retention, or a fence written before fingerprints existed): the fence is
 *   trusted, sought to.
 * When the fence holds and C < F, the offsets between are skipped (written before a crash lost the
 * commit, or by another instance): logged once with the count, counted in
 * kafka_resume_skipped_offsets_total, and F is committed to Kafka so lag tooling agrees.
 * Replaced: logged with both positions, counted in kafka_log_replaced_total, the fence is moved to
 * where the new log is consumed from (C when the group has one within the log, else the start policy:
 * the log's start with KAFKA_FROM_BEGINNING, else its end), and the consumer is sought there. Never a
 * silent skip of the new log.
 */
import type { ConsumerPort, InboundMessage } from '../consumer/port';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { OffsetCommitter } from './committer';
import { fingerprint } from './fingerprint';

/** A partition to resume, with the ownership generation its commits must carry. */
export interface Resumable {
  partition: number;
  generation: number;
}

/** A fence as stored: the next offset to write, and the fingerprint of the message before it. */
export interface StoredFence {
  next: bigint;
  fingerprint: string | null;
}

/** Where a partition resumes. */
export type ResumePoint =
  /** Kafka's committed offset (or the start policy) decides. */
  | { kind: 'committed' }
  /** Sought to `next`: expect nothing below it. */
  | { kind: 'at'; next: bigint }
  /**
   * Sought to `offset`, the last message the fence covers: the first message fetched must be it, with
   * `fingerprint` (see confirm / replaced).
   */
  | { kind: 'verify'; offset: bigint; fingerprint: string; fence: bigint; committed: bigint | null };

/** What the batching stage calls. */
export interface ResumePort {
  /** Where each partition resumes; rejects when the fence or the offsets cannot be read (retried). */
  resume(topic: string, partitions: readonly Resumable[]): Promise<Map<number, ResumePoint>>;
  /**
   * The first message fetched after a `verify` point: 'same' when it is the message the fence covers
   * (confirmed: skip it), 'replaced' when it is another, 'unknown' when that offset is gone (the fence
   * is trusted).
   */
  check(
    point: Extract<ResumePoint, { kind: 'verify' }>,
    first: InboundMessage,
  ): 'same' | 'replaced' | 'unknown';
  /** The fence of a `verify` point holds: commits it to Kafka when ahead, logs and counts the skip. */
  confirmed(topic: string, p: Resumable, point: Extract<ResumePoint, { kind: 'verify' }>): void;
  /**
   * The log was replaced (`found`: what is there instead of the fence's message): moves the fence and
   * the consumer to where the new log is consumed from; resolves to the next offset to expect.
   */
  replaced(topic: string, p: Resumable, found: string, fence: bigint): Promise<bigint>;
}

export interface ResumeDeps {
  /** The database fences of some partitions of a topic. */
  fences(topic: string, partitions: readonly number[]): Promise<Map<number, StoredFence>>;
  /** Moves a partition's fence to `next` (back or forward), forgetting its fingerprint. */
  resetFence(topic: string, partition: number, next: bigint): Promise<void>;
  consumer: Pick<ConsumerPort, 'committedOffsets' | 'seek' | 'logOffsets'>;
  committer: Pick<OffsetCommitter, 'durable'>;
  /** KAFKA_FROM_BEGINNING: where a log without a committed offset is consumed from. */
  fromBeginning: boolean;
  metrics: Pick<Metrics, 'resumeSkippedOffsets' | 'logReplaced'>;
  logger: Logger;
}

export class ResumePoints implements ResumePort {
  constructor(private readonly deps: ResumeDeps) {}

  async resume(topic: string, partitions: readonly Resumable[]): Promise<Map<number, ResumePoint>> {
    const numbers = partitions.map((p) => p.partition);
    const [fences, committed, logs] = await Promise.all([
      this.deps.fences(topic, numbers),
      this.deps.consumer.committedOffsets(topic, numbers),
      this.deps.consumer.logOffsets(topic),
    ]);
    const out = new Map<number, ResumePoint>();
    for (const p of partitions) {
      const fence = fences.get(p.partition);
      const kafka = committed.get(p.partition) ?? null;
      const log = logs.get(p.partition);
      if (!fence || fence.next === 0n || (kafka !== null && kafka > fence.next)) {
        out.set(p.partition, { kind: 'committed' });
      } else if (log && log.high < fence.next) {
        const next = await this.replaced(topic, p, `a log that ends at ${log.high}`, fence.next);
        out.set(p.partition, { kind: 'at', next });
      } else if (
        fence.fingerprint !== null &&
        log &&
        log.low <= (fingerprintOffset(fence.fingerprint) ?? -1n)
      ) {
        // The message the fingerprint names: fence − 1, or earlier when the log has a gap there.
        const offset = fingerprintOffset(fence.fingerprint)!;
        this.deps.consumer.seek({ topic, partition: p.partition }, offset.toString());
        out.set(p.partition, {
          kind: 'verify',
          offset,
          fingerprint: fence.fingerprint,
          fence: fence.next,
          committed: kafka,
        });
      } else {
        this.deps.consumer.seek({ topic, partition: p.partition }, fence.next.toString());
        this.skip(topic, p, fence.next, kafka);
        out.set(p.partition, { kind: 'at', next: fence.next });
      }
    }
    return out;
  }

  check(
    point: Extract<ResumePoint, { kind: 'verify' }>,
    first: InboundMessage,
  ): 'same' | 'replaced' | 'unknown' {
    const offset = BigInt(first.offset);
    if (offset !== point.offset) return 'unknown';
    const found = fingerprint(offset, recordTime(first), first.value);
    return found === point.fingerprint ? 'same' : 'replaced';
  }

  confirmed(topic: string, p: Resumable, point: Extract<ResumePoint, { kind: 'verify' }>): void {
    this.skip(topic, p, point.fence, point.committed);
  }

  /** The fence holds and is ahead of the committed offset: say so, count it, commit the fence. */
  private skip(topic: string, p: Resumable, fence: bigint, committed: bigint | null): void {
    if (committed !== null && committed >= fence) return;
    const skipped = committed === null ? null : fence - committed;
    if (skipped !== null) this.deps.metrics.resumeSkippedOffsets.inc(Number(skipped));
    void this.deps.committer.durable(topic, p.partition, fence, p.generation);
    this.deps.logger.info(
      {
        topic,
        partition: p.partition,
        fence: fence.toString(),
        committed: committed?.toString() ?? null,
        skipped: skipped?.toString() ?? null,
      },
      'resuming from the database fence, ahead of the committed offset: the offsets between were written already (a commit lost in a crash, or another instance)',
    );
  }

  async replaced(topic: string, p: Resumable, found: string, fence: bigint): Promise<bigint> {
    const [committed, logs] = await Promise.all([
      this.deps.consumer.committedOffsets(topic, [p.partition]),
      this.deps.consumer.logOffsets(topic),
    ]);
    const log = logs.get(p.partition) ?? { low: 0n, high: 0n };
    const kafka = committed.get(p.partition) ?? null;
    const within = kafka !== null && kafka >= log.low && kafka <= log.high;
    const next = within ? kafka : this.deps.fromBeginning ? log.low : log.high;
    await this.deps.resetFence(topic, p.partition, next);
    this.deps.consumer.seek({ topic, partition: p.partition }, next.toString());
    this.deps.metrics.logReplaced.inc();
    this.deps.logger.warn(
      {
        topic,
        partition: p.partition,
        fence: fence.toString(),
        found,
        logStart: log.low.toString(),
        logEnd: log.high.toString(),
        committed: kafka?.toString() ?? null,
        resumeAt: next.toString(),
      },
      `the partition's log is not the one the fence was written against (topic re-created or log truncated): consuming it from ${within ? 'the committed offset' : this.deps.fromBeginning ? 'its start (KAFKA_FROM_BEGINNING)' : 'its end (KAFKA_FROM_BEGINNING=false)'}, not from the old fence`,
    );
    return next;
  }
}

/** The offset a fingerprint names, or null when it does not parse (then the fence is not checked). */
function fingerprintOffset(fp: string): bigint | null {
  const m = /^(\d+):/.exec(fp);
  return m ? BigInt(m[1]!) : null;
}

/** A message's Kafka record timestamp in epoch ms (0 when it has none), as the fence records it. */
export function recordTime(m: Pick<InboundMessage, 'timestamp'>): number {
  const s = m.timestamp;
  // Per message: a decimal string of up to 15 digits (epoch ms has 13) is read digit by digit, exactly
  // as Number() reads it, without the general number parser; anything else goes through Number().
  if (typeof s === 'string' && s.length > 0 && s.length <= 15) {
    let v = 0;
    for (let i = 0; i < s.length; i++) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) return Number(s) || 0;
      v = v * 10 + d;
    }
    return v;
  }
  return Number(s) || 0;
}

/**
 * The offset to commit once a batch is durable: the batch's end, or the fence it found if that is
 * further (another writer got there first: what lies between was written by it).
 */
export function commitOffsetAfter(batchNextOffset: bigint, fenceBefore: bigint): bigint {
  return fenceBefore > batchNextOffset ? fenceBefore : batchNextOffset;
}
