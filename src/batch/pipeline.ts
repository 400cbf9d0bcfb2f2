/**
 * The batching stage: per-partition buffers between the Kafka fetch loop and the database.
 *
 * Per partition, a small state machine (asserted in `setState`):
 *
 *   idle ──push──▶ filling ──flush rule──▶ flushing ──ok──▶ idle | filling
 *                                 ▲           │
 *                                 │         error
 *                                 │           ▼
 *                                 └─timer─ retrying   (the same batch again, backoff with jitter)
 *
 *   any state ──revoked──▶ revoked (terminal: buffer dropped, timers cancelled; an in-flight write
 *   finishes but its offsets are not committed; the new owner replays from the committed offset)
 *
 * Pausing is orthogonal: when the buffers as a whole hold `queueSize` messages (or `queueBytes`), the
 * partition that brought more is paused and the rest of its batch is not taken (kafkajs fetches it
 * again after resume); every paused partition is resumed once the total drains below half. Nothing is
 * ever dropped to make room.
 *
 * The handler (`handleBatch`) only decodes and buffers: it never awaits the database, so fetching and
 * heartbeats go on while flushes run. Flushes of one partition are strictly sequential and in offset
 * order; different partitions flush concurrently (bounded by the pool).
 */
import { decodeBar, type Rejection } from '../contract/bar';
import type { InboundBatch, InboundMessage, TopicPartition } from '../consumer/port';
import { OffsetCommitter, tpKey } from '../offsets/committer';
import { RateLimiter, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { PartitionBuffer, type Batch, type Entry } from './buffer';
import { flushDecision, retryDelayMs, type FlushPolicy, type FlushReason } from './policy';

export interface PipelineSettings extends FlushPolicy {
  queueSize: number;
  queueBytes: number;
  maxRetries: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
}

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

/** Makes a batch durable (database, dead letters); throws to have it retried. */
export type FlushFn = (job: FlushJob) => Promise<FlushResult>;

export interface ErrorInfo {
  class: string;
  code: string | null;
  message: string;
}

export type PartitionStateName = 'idle' | 'filling' | 'flushing' | 'retrying' | 'revoked';

const TRANSITIONS: Record<PartitionStateName, PartitionStateName[]> = {
  idle: ['filling', 'revoked', 'flushing'],
  filling: ['flushing', 'revoked'],
  flushing: ['idle', 'filling', 'retrying', 'revoked', 'flushing'],
  retrying: ['flushing', 'revoked'],
  revoked: [],
};

class PartitionState {
  state: PartitionStateName = 'idle';
  readonly buffer = new PartitionBuffer();
  /** Next offset expected from Kafka; lower offsets are duplicates of what we hold (after a rejoin). */
  nextExpected: bigint | null = null;
  caughtUp = false;
  paused = false;
  /** The batch being written (kept across retries). */
  current: Batch | null = null;
  attempts = 0;
  lastError: ErrorInfo | null = null;
  flushTimer: NodeJS.Timeout | null = null;
  retryTimer: NodeJS.Timeout | null = null;
  flushDone: Promise<void> | null = null;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly generation: number,
  ) {}
}

export interface PipelineStatus {
  depth: number;
  bytes: number;
  assigned: number;
  paused: number;
  /** Partitions whose current batch has failed more than maxRetries times. */
  stuck: { topic: string; partition: number; attempts: number; error: ErrorInfo | null }[];
}

export class Pipeline {
  private readonly partitions = new Map<string, PartitionState>();
  private totalEntries = 0;
  private totalBytes = 0;
  private accepting = true;
  private draining = false;
  private readonly rejectLog = new RateLimiter(10, 10_000);

  constructor(
    private readonly settings: PipelineSettings,
    private readonly deps: {
      flush: FlushFn;
      classify: (err: unknown) => ErrorInfo;
      consumer: { pause(tps: TopicPartition[]): void; resume(tps: TopicPartition[]): void };
      committer: OffsetCommitter;
      metrics: Metrics;
      logger: Logger;
      now?: () => number;
      random?: () => number;
    },
  ) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  // ---- Kafka side ---------------------------------------------------------------------------

  /**
   * Takes a fetched batch into the partition's buffer; returns the last offset taken (or null).
   * Synchronous and non-throwing by design (see the port's contract).
   */
  handleBatch(batch: InboundBatch): string | null {
    const st = this.partitions.get(tpKey(batch.topic, batch.partition));
    if (!st || !this.accepting || st.paused) return null;
    const { metrics } = this.deps;
    const arrival = this.now();
    let last: string | null = null;
    let taken = 0;
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      if (st.nextExpected !== null && offset < st.nextExpected) {
        last = m.offset; // already held or written: a replay after a rejoin
        continue;
      }
      if (this.isFull()) {
        this.pause(st);
        break;
      }
      const entry = this.toEntry(batch, m, offset, arrival);
      const before = st.buffer.bytes;
      st.buffer.push(entry, arrival);
      this.totalEntries++;
      this.totalBytes += st.buffer.bytes - before;
      st.nextExpected = offset + 1n;
      last = m.offset;
      taken++;
    }
    if (taken > 0) {
      metrics.barsConsumed.inc(taken);
      metrics.queueDepth.set(this.totalEntries);
      if (st.state === 'idle') this.setState(st, 'filling');
    }
    if (last !== null) st.caughtUp = BigInt(last) + 1n >= BigInt(batch.highWatermark);
    this.schedule(st);
    if (this.isFull()) this.flushAllUnderPressure();
    return last;
  }

  private toEntry(batch: InboundBatch, m: InboundMessage, offset: bigint, arrival: number): Entry {
    const messageTimeMs = Number(m.timestamp) || arrival;
    const decoded = decodeBar(m.value, arrival);
    if (decoded.ok) return { kind: 'bar', offset, bar: decoded.bar, messageTimeMs };
    this.noteRejection(batch, m, decoded.rejection);
    const headers: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(m.headers ?? {})) {
      if (v === undefined) continue;
      const first = Array.isArray(v) ? v[0] : v;
      if (first !== undefined) headers[k] = Buffer.from(first); // copies: m.* views the fetch buffer
    }
    return {
      kind: 'rejected',
      offset,
      rejection: decoded.rejection,
      key: m.key ? Buffer.from(m.key) : null,
      value: m.value ? Buffer.from(m.value) : null,
      headers,
      messageTimeMs,
    };
  }

  private noteRejection(batch: InboundBatch, m: InboundMessage, r: Rejection): void {
    this.deps.metrics.barsRejected.inc({ reason: r.reason });
    const suppressed = this.rejectLog.take(r.reason);
    if (suppressed === null) return;
    this.deps.logger.warn(
      {
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        reason: r.reason,
        detail: r.detail,
        suppressed,
      },
      'message rejected by the bar contract; skipped',
    );
  }

  /**
   * A new assignment (after every group join). Revoked partitions are dropped; kept ones keep their
   * buffers and in-flight flushes (kafkajs refetches from the committed offset; duplicates are
   * skipped by offset); pause state is recomputed because kafkajs carries it across rebalances.
   */
  handleAssignment(assigned: TopicPartition[]): void {
    const generations = this.deps.committer.assign(assigned);
    const keep = new Set(generations.keys());
    for (const [key, st] of this.partitions) {
      if (keep.has(key)) continue;
      this.revoke(st);
      this.partitions.delete(key);
    }
    for (const tp of assigned) {
      const key = tpKey(tp.topic, tp.partition);
      if (!this.partitions.has(key))
        this.partitions.set(key, new PartitionState(tp.topic, tp.partition, generations.get(key)!));
    }
    const { metrics } = this.deps;
    metrics.rebalances.inc();
    metrics.assignedPartitions.set(this.partitions.size);
    metrics.queueDepth.set(this.totalEntries);
    // Recompute pauses: keep paused only what backpressure needs, resume the rest.
    const toResume: TopicPartition[] = [];
    const toPause: TopicPartition[] = [];
    const full = this.isFull() || !this.accepting;
    for (const st of this.partitions.values()) {
      st.paused = full && st.paused;
      (st.paused || !this.accepting ? toPause : toResume).push({ topic: st.topic, partition: st.partition });
    }
    this.deps.consumer.resume(toResume);
    this.deps.consumer.pause(toPause);
    metrics.pausedPartitions.set(toPause.length);
  }

  private revoke(st: PartitionState): void {
    const dropped = st.buffer.clear();
    this.totalEntries -= dropped.entries;
    this.totalBytes -= dropped.bytes;
    if (st.current && st.state === 'retrying') {
      // Not written: the new owner replays it from the committed offset.
      this.totalEntries -= st.current.entries.length;
      this.totalBytes -= st.current.bytes;
      st.current = null;
    }
    this.clearTimers(st);
    this.setState(st, 'revoked');
    if (dropped.entries > 0) {
      this.deps.logger.info(
        { topic: st.topic, partition: st.partition, dropped: dropped.entries },
        'partition revoked; buffered messages dropped (the new owner replays them)',
      );
    }
    this.maybeResume();
  }

  // ---- flushing -----------------------------------------------------------------------------

  private schedule(st: PartitionState): void {
    if (st.state !== 'filling') return;
    const d = flushDecision(
      this.settings,
      {
        barCount: st.buffer.barCount,
        entryCount: st.buffer.size,
        oldestArrivalMs: st.buffer.oldestArrivalMs,
        caughtUp: st.caughtUp,
        pressure: this.isFull(),
        draining: this.draining,
      },
      this.now(),
    );
    if (d.reason !== null) {
      this.startFlush(st, d.reason);
    } else if (d.nextCheckMs !== null && st.flushTimer === null) {
      st.flushTimer = setTimeout(
        () => {
          st.flushTimer = null;
          this.schedule(st);
        },
        Math.max(0, d.nextCheckMs - this.now()),
      );
      st.flushTimer.unref();
    }
  }

  private startFlush(st: PartitionState, reason: FlushReason): void {
    if (st.flushTimer) {
      clearTimeout(st.flushTimer);
      st.flushTimer = null;
    }
    const batch = st.buffer.take(this.settings.batchSize);
    if (!batch) {
      this.setState(st, 'idle');
      return;
    }
    st.current = batch;
    st.attempts = 0;
    this.setState(st, 'flushing');
    this.deps.logger.trace(
      { topic: st.topic, partition: st.partition, reason, size: batch.entries.length },
      'flush',
    );
    st.flushDone = this.runFlush(st, batch);
  }

  private async runFlush(st: PartitionState, batch: Batch): Promise<void> {
    const { metrics, logger } = this.deps;
    const started = process.hrtime.bigint();
    let result: FlushResult;
    try {
      result = await this.deps.flush({ topic: st.topic, partition: st.partition, batch });
    } catch (err) {
      this.onFlushError(st, batch, err);
      return;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    metrics.writeTotal.inc();
    metrics.writeLatency.observe(seconds);
    metrics.batchSize.observe(batch.barCount);
    metrics.barsWritten.inc(result.written);
    if (result.skippedFenced > 0) metrics.barsSkippedFenced.inc(result.skippedFenced);
    if (result.deadLettered > 0) metrics.barsDeadLettered.inc(result.deadLettered);
    const committedAt = this.now();
    for (const e of batch.entries) {
      if (e.kind === 'bar') metrics.endToEndDelay.observe(Math.max(0, committedAt - e.messageTimeMs) / 1000);
    }
    if (st.attempts > this.settings.maxRetries) {
      logger.info({ topic: st.topic, partition: st.partition, attempts: st.attempts + 1 }, 'write recovered');
    }
    this.release(batch);
    st.current = null;
    st.attempts = 0;
    st.lastError = null;
    // The rows are durable: now, and only now, the offsets (skipped if revoked meanwhile).
    if (st.state !== 'revoked') {
      await this.deps.committer.durable(st.topic, st.partition, result.commitOffset, st.generation);
    }
    this.afterFlush(st);
  }

  private onFlushError(st: PartitionState, batch: Batch, err: unknown): void {
    const info = this.deps.classify(err);
    this.deps.metrics.writeErrors.inc({ class: info.class });
    st.attempts++;
    st.lastError = info;
    if (st.state === 'revoked') {
      this.release(batch);
      st.current = null;
      return;
    }
    const delay = retryDelayMs(
      st.attempts,
      this.settings.retryDelayMs,
      this.settings.retryMaxDelayMs,
      this.deps.random,
    );
    const fields = {
      topic: st.topic,
      partition: st.partition,
      attempt: st.attempts,
      class: info.class,
      code: info.code,
      error: info.message,
      retryInMs: delay,
      firstOffset: batch.entries[0]?.offset.toString(),
      nextOffset: batch.nextOffset.toString(),
    };
    if (st.attempts === this.settings.maxRetries + 1) {
      this.deps.logger.error(
        fields,
        'write keeps failing; partition not ready, data kept, retrying at the cap',
      );
    } else if (st.attempts <= this.settings.maxRetries) {
      this.deps.logger.warn(fields, 'write failed; retrying');
    }
    this.setState(st, 'retrying');
    st.retryTimer = setTimeout(() => {
      st.retryTimer = null;
      if (st.state !== 'retrying' || st.current !== batch) return;
      this.setState(st, 'flushing');
      st.flushDone = this.runFlush(st, batch);
    }, delay);
    st.retryTimer.unref();
  }

  private afterFlush(st: PartitionState): void {
    st.flushDone = null;
    if (st.state === 'revoked') return;
    this.setState(st, st.buffer.size > 0 ? 'filling' : 'idle');
    this.maybeResume();
    this.schedule(st);
  }

  private release(batch: Batch): void {
    this.totalEntries -= batch.entries.length;
    this.totalBytes -= batch.bytes;
    this.deps.metrics.queueDepth.set(this.totalEntries);
  }

  private flushAllUnderPressure(): void {
    for (const st of this.partitions.values()) this.schedule(st);
  }

  // ---- backpressure ---------------------------------------------------------------------------

  private isFull(): boolean {
    return this.totalEntries >= this.settings.queueSize || this.totalBytes >= this.settings.queueBytes;
  }

  private pause(st: PartitionState): void {
    if (st.paused) return;
    st.paused = true;
    this.deps.consumer.pause([{ topic: st.topic, partition: st.partition }]);
    this.deps.metrics.pausedPartitions.inc();
    this.deps.logger.debug(
      { topic: st.topic, partition: st.partition, depth: this.totalEntries },
      'buffers full; partition paused',
    );
  }

  private maybeResume(): void {
    if (!this.accepting) return;
    if (this.totalEntries > this.settings.queueSize / 2 || this.totalBytes > this.settings.queueBytes / 2)
      return;
    const resume: TopicPartition[] = [];
    for (const st of this.partitions.values()) {
      if (st.paused) {
        st.paused = false;
        resume.push({ topic: st.topic, partition: st.partition });
      }
    }
    if (resume.length > 0) {
      this.deps.consumer.resume(resume);
      this.deps.metrics.pausedPartitions.set(0);
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
    this.draining = true;
    const all = [...this.partitions.values()].map((st) => ({ topic: st.topic, partition: st.partition }));
    this.deps.consumer.pause(all);
    while (this.now() < deadlineMs) {
      let busy = false;
      for (const st of this.partitions.values()) {
        if (st.state === 'filling' || (st.state === 'idle' && st.buffer.size > 0)) {
          if (st.state === 'idle') this.setState(st, 'filling');
          this.schedule(st);
        }
        if (st.state !== 'idle' && st.state !== 'revoked') busy = true;
      }
      if (!busy && this.totalEntries === 0) {
        await this.deps.committer.commitPending();
        if (this.deps.committer.pendingCount() === 0) return true;
      }
      const inFlight = [...this.partitions.values()]
        .map((st) => st.flushDone)
        .filter((p): p is Promise<void> => p !== null);
      const wait = Math.max(1, Math.min(100, deadlineMs - this.now()));
      await Promise.race([Promise.all(inFlight), sleep(wait)]);
    }
    return false;
  }

  /** Cancels timers (hard stop, after drain or at the deadline). */
  close(): void {
    this.accepting = false;
    for (const st of this.partitions.values()) this.clearTimers(st);
  }

  status(): PipelineStatus {
    const stuck: PipelineStatus['stuck'] = [];
    let paused = 0;
    for (const st of this.partitions.values()) {
      if (st.paused) paused++;
      if (st.attempts > this.settings.maxRetries) {
        stuck.push({ topic: st.topic, partition: st.partition, attempts: st.attempts, error: st.lastError });
      }
    }
    return {
      depth: this.totalEntries,
      bytes: this.totalBytes,
      assigned: this.partitions.size,
      paused,
      stuck,
    };
  }

  /** For tests: a partition's state. */
  stateOf(topic: string, partition: number): PartitionStateName | null {
    return this.partitions.get(tpKey(topic, partition))?.state ?? null;
  }

  private setState(st: PartitionState, next: PartitionStateName): void {
    if (st.state === next) return;
    if (!TRANSITIONS[st.state].includes(next)) {
      throw new Error(`partition ${st.topic}/${st.partition}: illegal transition ${st.state} -> ${next}`);
    }
    st.state = next;
  }

  private clearTimers(st: PartitionState): void {
    if (st.flushTimer) clearTimeout(st.flushTimer);
    if (st.retryTimer) clearTimeout(st.retryTimer);
    st.flushTimer = null;
    st.retryTimer = null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
