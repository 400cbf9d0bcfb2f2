/**
 * The batching stage: per-partition buffers between the Kafka fetch loop and the database. This file
 * wires its parts and is what the consumer and the service call:
 *
 *   fetched batch ──▶ intake (message → entry) ──▶ admission (room? else wait, then pause)
 *                 ──▶ partition buffer ──▶ scheduler (flush rule, slots, group commit, retries)
 *                 ──▶ flush (store + dead letters) ──▶ committer (offsets, after durability)
 *
 * - ./partition.ts: one partition's buffer and mode (the state machine, with its diagram);
 * - ./admission.ts: the buffers' totals, waiting for room, pausing and resuming;
 * - ./intake.ts: a message becomes a bar entry or a rejected entry;
 * - ./scheduler.ts: when a partition flushes, flush slots, outcomes and retries;
 * - ./flush.ts: what a flush does; ./policy.ts: the flush rule and the backoff, as pure functions;
 * - ../offsets/resume.ts: where a newly assigned partition resumes.
 *
 * The handler (`handleBatch`) only decodes and buffers: it never awaits the database (only room in the
 * buffers), so fetching and heartbeats go on while flushes run.
 */
import type { ConsumerPort, InboundBatch, InboundMessage, TopicPartition } from '../consumer/port';
import type { ClassifiedDbError } from '../store/errors';
import { errorMessage, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { tpKey, type OffsetCommitter } from '../offsets/committer';
import type { ResumePort } from '../offsets/resume';
import { Admission, type AdmissionLimits } from './admission';
import type { FlushFn } from './flush';
import { Intake } from './intake';
import { Partition } from './partition';
import { retryDelayMs } from './policy';
import { Scheduler, type SchedulerSettings } from './scheduler';

export interface PipelineSettings extends SchedulerSettings, AdmissionLimits {
  /** BARS_MIN_TIMESTAMP: the earliest bar start accepted. */
  minTimestampMs?: number;
}

export interface PipelineDeps {
  flush: FlushFn;
  classify: (err: unknown) => ClassifiedDbError;
  consumer: Pick<ConsumerPort, 'pause' | 'resume'>;
  resume: ResumePort;
  committer: OffsetCommitter;
  metrics: Metrics;
  logger: Logger;
  now?: () => number;
  random?: () => number;
}

export interface StuckPartition {
  topic: string;
  partition: number;
  attempts: number;
  /** What keeps failing: reading where it resumes, or writing its batch. */
  stage: 'resume' | 'write';
  error: ClassifiedDbError | null;
}

export interface PipelineStatus {
  depth: number;
  bytes: number;
  assigned: number;
  paused: number;
  /** Partitions whose current batch (or resume point) has failed more than maxRetries times. */
  stuck: StuckPartition[];
}

export class Pipeline {
  private readonly partitions = new Map<string, Partition>();
  private readonly admission: Admission;
  private readonly intake: Intake;
  private readonly scheduler: Scheduler;
  private readonly now: () => number;
  private accepting = true;

  constructor(
    private readonly settings: PipelineSettings,
    private readonly deps: PipelineDeps,
  ) {
    this.now = deps.now ?? Date.now;
    this.admission = new Admission(settings, {
      consumer: deps.consumer,
      metrics: deps.metrics,
      logger: deps.logger,
      now: this.now,
    });
    this.intake = new Intake({ ...deps, minTimestampMs: settings.minTimestampMs });
    this.scheduler = new Scheduler(settings, { ...deps, admission: this.admission, now: this.now }, () =>
      this.partitions.values(),
    );
  }

  // ---- Kafka side ---------------------------------------------------------------------------

  /**
   * Takes a fetched batch into the partition's buffer; resolves to the last offset taken (or null).
   * Never throws (see the port's contract). It only waits when the buffers are full: for room, at most
   * `roomWaitMs`, calling `heartbeat` (the consumer's, so the group does not time the member out).
   */
  async handleBatch(batch: InboundBatch, heartbeat?: () => Promise<void>): Promise<string | null> {
    const key = tpKey(batch.topic, batch.partition);
    const p = this.partitions.get(key);
    if (!p || !this.accepting || this.admission.isPaused(key)) return null;
    if (p.mode.name === 'verifying' && !this.verify(key, p, batch)) return null;
    const live = () => p.name !== 'revoked' && this.accepting;
    let arrival = this.now();
    let last: string | null = null;
    let lastTaken: bigint | null = null;
    let taken = 0;
    const expected = p.nextExpected; // offsets only grow within a batch: one comparison base
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      if (expected !== null && offset < expected) {
        last = m.offset; // already held or written: a replay after a rejoin, or the checked fence
        continue;
      }
      if (!this.admission.hasRoomFor(key)) {
        this.took(p, taken, lastTaken, batch.highWatermark, last);
        taken = 0;
        // A partition whose writes keep failing cannot make room by waiting: it pauses at once.
        const failing = p.attempts > 0;
        if (failing || !(await this.admission.waitForRoom(key, live, heartbeat))) {
          if (live()) this.admission.hold(key, 'backpressure', true);
          return last;
        }
        arrival = this.now();
      }
      const before = p.buffer.bytes;
      p.buffer.push(this.intake.entry(batch.topic, batch.partition, m, offset, arrival, p), arrival);
      this.admission.add(key, p.buffer.bytes - before);
      lastTaken = offset;
      last = m.offset;
      taken++;
    }
    this.took(p, taken, lastTaken, batch.highWatermark, last);
    return last;
  }

  /**
   * The first batch after a `verify` resume point: is the fence's last message still there (go on from
   * the fence), or is this another log (back to loading while the fence moves; nothing taken)?
   */
  private verify(key: string, p: Partition, batch: InboundBatch): boolean {
    if (p.mode.name !== 'verifying') return true;
    const first = batch.messages[0];
    if (!first) return false;
    const point = p.mode.point;
    const verdict = this.deps.resume.check(point, first);
    const owner = { partition: p.partition, generation: p.generation };
    if (verdict === 'replaced') {
      p.to({ name: 'loading', attempts: 0, lastError: null });
      this.admission.hold(key, 'loading', true);
      void this.replaced(p, first, point.fence, 1);
      return false;
    }
    if (verdict === 'unknown') {
      this.deps.logger.info(
        { topic: p.topic, partition: p.partition, expected: point.offset.toString(), first: first.offset },
        "the fence's last message is no longer in the log (retention or compaction); the fence is trusted",
      );
    }
    this.deps.resume.confirmed(p.topic, owner, point);
    p.nextExpected = point.fence;
    p.to({ name: 'idle' });
    return true;
  }

  /** A replaced log: the fence moves to where the new log is consumed from; retried until it does. */
  private async replaced(p: Partition, first: InboundMessage, fence: bigint, attempt: number): Promise<void> {
    const found = `${first.offset}:${first.timestamp}`;
    try {
      const next = await this.deps.resume.replaced(p.topic, p, found, fence);
      if (p.name !== 'loading') return;
      p.nextExpected = next;
      p.to({ name: 'idle' });
      this.admission.hold(tpKey(p.topic, p.partition), 'loading', false);
    } catch (err) {
      const delay = this.noteResumeFailure([p], err, attempt);
      await sleep(delay);
      if (this.accepting && p.name === 'loading') await this.replaced(p, first, fence, attempt + 1);
    }
  }

  /** After taking `taken` entries of a batch (the last at `lastTaken`): metrics, mode, flush rule. */
  private took(
    p: Partition,
    taken: number,
    lastTaken: bigint | null,
    highWatermark: string,
    last: string | null,
  ): void {
    if (lastTaken !== null) p.nextExpected = lastTaken + 1n;
    if (taken > 0) {
      this.deps.metrics.barsConsumed.inc(taken);
      this.admission.publishDepth();
      if (p.name === 'idle') p.to({ name: 'filling', due: null, timer: null });
    }
    if (last !== null) p.caughtUp = BigInt(last) + 1n >= BigInt(highWatermark);
    this.scheduler.consider(p);
    if (this.admission.isFull()) this.scheduler.considerAll();
  }

  /**
   * A new assignment (after every group join). Revoked partitions are dropped; kept ones keep their
   * buffers and in-flight flushes (kafkajs refetches from the committed offset; duplicates are
   * skipped by offset); pause state is told again because kafkajs carries it across rebalances.
   */
  handleAssignment(assigned: TopicPartition[], epoch = 0): void {
    const generations = this.deps.committer.assign(assigned, epoch);
    for (const [key, p] of this.partitions) {
      if (generations.has(key)) continue;
      this.revoke(key, p);
    }
    const added: Partition[] = [];
    for (const tp of assigned) {
      const key = tpKey(tp.topic, tp.partition);
      if (this.partitions.has(key)) continue;
      const p = new Partition(key, tp.topic, tp.partition, generations.get(key)!);
      this.partitions.set(key, p);
      this.admission.track(key, tp);
      this.deps.metrics.partitionFailures.set({ partition: String(tp.partition) }, 0);
      added.push(p);
    }
    const { metrics } = this.deps;
    metrics.rebalances.inc();
    metrics.assignedPartitions.set(this.partitions.size);
    this.admission.resync();
    const byTopic = new Map<string, Partition[]>();
    for (const p of added) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p]);
    for (const list of byTopic.values()) void this.resume(list, 1);
  }

  /**
   * Newly assigned partitions of one topic learn where they resume (../offsets/resume.ts), then leave
   * `loading` and are fetched. Retried with backoff while the fence or the committed offsets cannot be
   * read (they stay paused meanwhile).
   */
  private async resume(partitions: Partition[], attempt: number): Promise<void> {
    const live = partitions.filter((p) => p.name === 'loading');
    if (live.length === 0) return;
    const topic = live[0]!.topic;
    try {
      const points = await this.deps.resume.resume(
        topic,
        live.map((p) => ({ partition: p.partition, generation: p.generation })),
      );
      for (const p of live) {
        if (p.name !== 'loading') continue;
        const point = points.get(p.partition) ?? { kind: 'committed' };
        if (point.kind === 'verify') {
          p.to({ name: 'verifying', point });
        } else {
          if (point.kind === 'at') p.nextExpected = point.next;
          p.to({ name: 'idle' });
        }
        this.admission.hold(tpKey(p.topic, p.partition), 'loading', false);
      }
    } catch (err) {
      const delay = this.noteResumeFailure(live, err, attempt);
      await sleep(delay);
      if (this.accepting) await this.resume(live, attempt + 1);
    }
  }

  /** A failed attempt at reading or moving the fence: logged (first and past maxRetries), recorded. */
  private noteResumeFailure(partitions: Partition[], err: unknown, attempt: number): number {
    const delay = retryDelayMs(
      attempt,
      this.settings.retryDelayMs,
      this.settings.retryMaxDelayMs,
      this.deps.random,
    );
    if (attempt === 1 || attempt === this.settings.maxRetries + 1) {
      this.deps.logger.warn(
        { err: errorMessage(err), topic: partitions[0]?.topic, attempt, retryInMs: delay },
        'cannot read the offset fence; partitions stay paused, retrying',
      );
    }
    const info = this.deps.classify(err);
    const lastError = { ...info, message: `cannot read the offset fence: ${info.message}` };
    for (const p of partitions)
      if (p.name === 'loading') p.to({ name: 'loading', attempts: attempt, lastError });
    return delay;
  }

  private revoke(key: string, p: Partition): void {
    const dropped = p.buffer.clear();
    const held = p.mode.name === 'retrying' ? p.mode.batch : null; // a flushing batch is released when its write ends
    p.to({ name: 'revoked' });
    this.partitions.delete(key);
    this.deps.metrics.partitionFailures.remove({ partition: String(p.partition) });
    this.admission.forget(
      key,
      dropped.entries + (held?.entries.length ?? 0),
      dropped.bytes + (held?.bytes ?? 0),
    );
    if (dropped.entries > 0) {
      this.deps.logger.info(
        { topic: p.topic, partition: p.partition, dropped: dropped.entries },
        'partition revoked; buffered messages dropped (the new owner replays them)',
      );
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Graceful drain: take no more messages, pause fetching, flush every buffer and commit, retrying
   * failed writes until `deadlineMs` (epoch ms). Resolves true when everything taken is durable and
   * committed, false at the deadline.
   */
  async drain(deadlineMs: number): Promise<boolean> {
    this.accepting = false;
    this.scheduler.drainAll();
    this.admission.close();
    while (this.now() < deadlineMs) {
      let busy = false;
      for (const p of this.partitions.values()) {
        this.scheduler.consider(p);
        if (p.name === 'filling' || p.name === 'flushing' || p.name === 'retrying') busy = true;
      }
      if (!busy && this.admission.depth === 0) {
        await this.deps.committer.commitPending();
        if (this.deps.committer.pendingCount() === 0) return true;
      }
      this.scheduler.pump(); // now, not on the next turn: the wait below must see these flushes
      const inFlight = this.scheduler.inFlight();
      const wait = Math.max(1, Math.min(100, deadlineMs - this.now()));
      // Nothing in flight (a retry backing off): sleep, so timers and I/O get their turn.
      await (inFlight.length > 0 ? Promise.race([Promise.all(inFlight), sleep(wait)]) : sleep(wait));
    }
    return false;
  }

  /** Cancels timers (hard stop, after drain or at the deadline). */
  close(): void {
    this.accepting = false;
    this.admission.close();
    for (const p of this.partitions.values()) {
      const m = p.mode;
      if ((m.name === 'filling' || m.name === 'retrying') && m.timer) {
        clearTimeout(m.timer);
        m.timer = null;
      }
    }
  }

  status(): PipelineStatus {
    const stuck: StuckPartition[] = [];
    for (const p of this.partitions.values()) {
      if (p.attempts <= this.settings.maxRetries) continue;
      stuck.push({
        topic: p.topic,
        partition: p.partition,
        attempts: p.attempts,
        stage: p.name === 'loading' ? 'resume' : 'write',
        error: p.lastError,
      });
    }
    return {
      depth: this.admission.depth,
      bytes: this.admission.heldBytes,
      assigned: this.partitions.size,
      paused: this.admission.pausedCount(),
      stuck,
    };
  }

  /** Partition numbers currently assigned. */
  assignedPartitions(): number[] {
    return [...this.partitions.values()].map((p) => p.partition);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
