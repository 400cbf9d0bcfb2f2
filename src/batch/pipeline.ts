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
 * Backpressure is orthogonal: when the buffers as a whole hold `queueSize` messages (or `queueBytes`),
 * the handler waits (at most `roomWaitMs`, heartbeating) until a flush it has made due frees some of
 * them, then goes on with its batch: fetching stops meanwhile (the fetch loop waits for the handler)
 * without dropping the fetched data, and the buffers stay full, so the database always has the next
 * flush ready while Node decodes (bench/README.md: going on at any room drained 1.13-1.19x faster than
 * waiting for half). If no room comes in time (the database is slow or down), the partition is paused
 * and the rest of its batch is not taken (kafkajs fetches it again after resume); every paused
 * partition is resumed once the total drains below half. Nothing is ever dropped to make room.
 *
 * The handler (`handleBatch`) only decodes and buffers: it never awaits the database (only room in the
 * buffers, as above), so fetching and heartbeats go on while flushes run. Flushes of one partition are
 * strictly sequential and in offset order. A partition whose flush rule fires is *due*; at most
 * `concurrency` flushes run at once. A flush starts as soon as a slot is free and some partition is
 * due, and takes in one transaction up to MAX_BATCHES_PER_FLUSH batches of every partition of that
 * topic that holds entries and is not being written (group commit): the others ride along rather than
 * wait for their own turn. While the database is busy,
 * bars gather, so a backlog is written in large transactions (fewer commits, statements and round
 * trips per bar), and a lone due partition never waits for company.
 */
import { decodeBar, type Rejection } from '../contract/bar';
import type { ConsumerPort, InboundBatch, InboundMessage, TopicPartition } from '../consumer/port';
import { OffsetCommitter, tpKey } from '../offsets/committer';
import { RateLimiter, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { PartitionBuffer, type Batch, type Entry } from './buffer';
import { flushDecision, retryDelayMs, type FlushPolicy, type FlushReason } from './policy';

export interface PipelineSettings extends FlushPolicy {
  /** Flushes (transactions) in flight at once. */
  concurrency: number;
  queueSize: number;
  queueBytes: number;
  /** How long a fetched batch may wait for room in full buffers before its partition is paused. */
  roomWaitMs: number;
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

export type FlushOutcome = { ok: true; result: FlushResult } | { ok: false; error: unknown };

/**
 * Makes the batches of distinct partitions durable (database, dead letters), one outcome per job in
 * order; a failed job is retried. Never throws.
 */
export type FlushFn = (jobs: readonly FlushJob[]) => Promise<FlushOutcome[]>;

export interface ErrorInfo {
  class: string;
  code: string | null;
  message: string;
}

export type PartitionStateName = 'idle' | 'filling' | 'flushing' | 'retrying' | 'revoked';

const TRANSITIONS: Record<PartitionStateName, PartitionStateName[]> = {
  idle: ['filling', 'revoked'],
  filling: ['flushing', 'idle', 'revoked'],
  flushing: ['idle', 'filling', 'retrying', 'revoked'],
  retrying: ['flushing', 'revoked'],
  revoked: [],
};

class PartitionState {
  state: PartitionStateName = 'idle';
  readonly buffer = new PartitionBuffer();
  /** Next offset expected from Kafka; lower offsets are duplicates of what we hold (after a rejoin). */
  nextExpected: bigint | null = null;
  caughtUp = false;
  /** Paused for backpressure (the buffers were full when it brought more). */
  backpressure = false;
  /** False until the database fence of a newly assigned partition is known (fetching paused meanwhile). */
  fenceLoaded = false;
  /** What we last told the consumer. */
  consumerPaused = false;
  /** Failed attempts at reading the fence (readiness). */
  fenceAttempts = 0;
  /** Why the partition is waiting for a flush slot, or null. */
  due: FlushReason | null = null;
  /** Retrying: the backoff has passed, the batch waits for a flush slot. */
  retryReady = false;
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
  private inFlight = 0;
  private pumpRequested = false;
  /** Handlers waiting for room in the buffers (see waitForRoom). */
  private roomWaiters: (() => void)[] = [];
  /** A wait for room timed out and the buffers have not drained since: pause without waiting. */
  private roomTimedOut = false;
  private readonly rejectLog = new RateLimiter(10, 10_000);

  constructor(
    private readonly settings: PipelineSettings,
    private readonly deps: {
      flush: FlushFn;
      classify: (err: unknown) => ErrorInfo;
      consumer: Pick<ConsumerPort, 'pause' | 'resume' | 'seek' | 'committedOffsets'>;
      /** The database fences (next offset to write) of some partitions of a topic. */
      fences: (topic: string, partitions: number[]) => Promise<Map<number, bigint>>;
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
   * Takes a fetched batch into the partition's buffer; resolves to the last offset taken (or null).
   * Never throws (see the port's contract). It only waits when the buffers are full: for room, at most
   * `roomWaitMs`, calling `heartbeat` (the consumer's, so the group does not time the member out).
   */
  async handleBatch(batch: InboundBatch, heartbeat?: () => Promise<void>): Promise<string | null> {
    const st = this.partitions.get(tpKey(batch.topic, batch.partition));
    if (!st || !this.accepting || st.backpressure || !st.fenceLoaded) return null;
    let arrival = this.now();
    let last: string | null = null;
    let lastTaken: bigint | null = null;
    let taken = 0;
    const expected = st.nextExpected; // offsets only grow within a batch: one comparison base
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      if (expected !== null && offset < expected) {
        last = m.offset; // already held or written: a replay after a rejoin
        continue;
      }
      if (this.isFull()) {
        this.took(st, taken, lastTaken, batch.highWatermark, last);
        taken = 0;
        if (!(await this.waitForRoom(st, heartbeat))) {
          if (st.state !== 'revoked' && this.accepting) this.pause(st);
          return last;
        }
        arrival = this.now();
      }
      const entry = this.toEntry(batch, m, offset, arrival);
      const before = st.buffer.bytes;
      st.buffer.push(entry, arrival);
      this.totalEntries++;
      this.totalBytes += st.buffer.bytes - before;
      lastTaken = offset;
      last = m.offset;
      taken++;
    }
    this.took(st, taken, lastTaken, batch.highWatermark, last);
    return last;
  }

  /** After taking `taken` entries of a batch (the last at `lastTaken`): metrics, state, flush rule. */
  private took(
    st: PartitionState,
    taken: number,
    lastTaken: bigint | null,
    highWatermark: string,
    last: string | null,
  ): void {
    if (lastTaken !== null) st.nextExpected = lastTaken + 1n;
    if (taken > 0) {
      this.deps.metrics.barsConsumed.inc(taken);
      this.deps.metrics.queueDepth.set(this.totalEntries);
      if (st.state === 'idle') this.setState(st, 'filling');
    }
    if (last !== null) st.caughtUp = BigInt(last) + 1n >= BigInt(highWatermark);
    this.schedule(st);
    if (this.isFull()) this.flushAllUnderPressure();
  }

  /**
   * Waits until the buffers are no longer full (true), or gives up (false): after `roomWaitMs`,
   * when the partition is revoked, when the service drains, or when the heartbeat fails (a rebalance:
   * the consumer rejoins once the handler returns).
   */
  private async waitForRoom(st: PartitionState, heartbeat?: () => Promise<void>): Promise<boolean> {
    // Once a wait has timed out, the others pause at once until room comes back (no 1 s each).
    if (this.roomTimedOut) return false;
    const started = this.now();
    try {
      const room = await this.roomWithin(st, started + this.settings.roomWaitMs, heartbeat);
      if (!room && this.isFull()) this.roomTimedOut = true;
      return room;
    } finally {
      this.deps.metrics.backpressureSeconds.inc((this.now() - started) / 1000);
    }
  }

  private async roomWithin(
    st: PartitionState,
    deadline: number,
    heartbeat?: () => Promise<void>,
  ): Promise<boolean> {
    while (this.isFull()) {
      const left = deadline - this.now();
      if (left <= 0 || !this.accepting || st.state === 'revoked') return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, ROOM_HEARTBEAT_MS)).unref();
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.roomWaiters.push(done);
      });
      if (heartbeat) {
        try {
          await heartbeat();
        } catch (err) {
          this.deps.logger.debug({ err: (err as Error).message }, 'heartbeat failed while waiting for room');
          return false;
        }
      }
    }
    return this.accepting && st.state !== 'revoked';
  }

  /** At most half full: where paused partitions resume. */
  private hasRoom(): boolean {
    return (
      this.totalEntries <= this.settings.queueSize / 2 && this.totalBytes <= this.settings.queueBytes / 2
    );
  }

  private wakeRoomWaiters(): void {
    if (!this.isFull()) this.roomTimedOut = false;
    const waiters = this.roomWaiters;
    if (waiters.length === 0) return;
    this.roomWaiters = [];
    for (const w of waiters) w();
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
    const added: PartitionState[] = [];
    for (const tp of assigned) {
      const key = tpKey(tp.topic, tp.partition);
      if (!this.partitions.has(key)) {
        const st = new PartitionState(tp.topic, tp.partition, generations.get(key)!);
        this.partitions.set(key, st);
        added.push(st);
      }
    }
    const { metrics } = this.deps;
    metrics.rebalances.inc();
    metrics.assignedPartitions.set(this.partitions.size);
    metrics.queueDepth.set(this.totalEntries);
    // kafkajs carries pause state across rebalances: tell it the whole truth again.
    if (!this.isFull()) for (const st of this.partitions.values()) st.backpressure = false;
    this.syncPause([...this.partitions.values()], true);
    if (added.length > 0) void this.loadFences(added, 1);
  }

  /**
   * Newly assigned partitions resume from the later of the group's Kafka-committed offset and the
   * database fence (the fence is ahead when a commit was lost after a durable write, or another
   * instance wrote further). Messages below the fence are then not even buffered, and the fence is
   * committed to Kafka so lag tooling agrees. Until this is known the partitions stay paused.
   */
  private async loadFences(states: PartitionState[], attempt: number): Promise<void> {
    const live = states.filter((st) => st.state !== 'revoked');
    if (live.length === 0) return;
    const topic = live[0]!.topic;
    try {
      const partitions = live.map((st) => st.partition);
      const [fences, committed] = await Promise.all([
        this.deps.fences(topic, partitions),
        this.deps.consumer.committedOffsets(topic, partitions),
      ]);
      for (const st of live) {
        if (st.state === 'revoked') continue;
        const fence = fences.get(st.partition) ?? 0n;
        const kafka = committed.get(st.partition) ?? null;
        if (fence > 0n && (kafka === null || fence > kafka)) {
          this.deps.consumer.seek({ topic, partition: st.partition }, fence.toString());
          st.nextExpected = fence;
          void this.deps.committer.durable(topic, st.partition, fence, st.generation);
          this.deps.logger.info(
            { topic, partition: st.partition, fence: fence.toString(), committed: kafka?.toString() ?? null },
            'resuming from the database fence (ahead of the committed offset)',
          );
        }
        st.fenceLoaded = true;
      }
      this.syncPause(live);
    } catch (err) {
      const delay = retryDelayMs(
        attempt,
        this.settings.retryDelayMs,
        this.settings.retryMaxDelayMs,
        this.deps.random,
      );
      if (attempt === 1 || attempt === this.settings.maxRetries + 1) {
        this.deps.logger.warn(
          { err: (err as Error).message, topic, attempt, retryInMs: delay },
          'cannot read the offset fence; partitions stay paused, retrying',
        );
      }
      for (const st of live) st.fenceAttempts = attempt;
      await sleep(delay);
      if (this.accepting) await this.loadFences(live, attempt + 1);
    }
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
    this.wakeRoomWaiters(); // a handler waiting for room on this partition gives up
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
      if (st.flushTimer) {
        clearTimeout(st.flushTimer);
        st.flushTimer = null;
      }
      st.due = d.reason;
      this.requestPump();
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

  /**
   * Pumps once the current turn of the event loop is over: the partitions of one fetch (or all of
   * them under pressure) are marked due one by one, and should start in one transaction.
   */
  private requestPump(): void {
    if (this.pumpRequested) return;
    this.pumpRequested = true;
    setImmediate(() => {
      this.pumpRequested = false;
      this.pump();
    });
  }

  /** Starts flushes while a slot is free and partitions are due (or their retry backoff has passed). */
  private pump(): void {
    while (this.inFlight < this.settings.concurrency) {
      let topic: string | null = null;
      for (const st of this.partitions.values()) {
        if ((st.state === 'filling' && st.due !== null) || (st.state === 'retrying' && st.retryReady)) {
          topic = st.topic;
          break;
        }
      }
      if (topic === null) return;
      // Every partition of that topic that is due or ready to retry, and every other one holding
      // entries: they ride along (group commit), each with up to MAX_BATCHES_PER_FLUSH batches.
      const members: PartitionState[] = [];
      for (const st of this.partitions.values()) {
        if (st.topic !== topic) continue;
        if (st.state === 'filling' || (st.state === 'retrying' && st.retryReady)) members.push(st);
      }
      const jobs: FlushJob[] = [];
      const flushing: PartitionState[] = [];
      for (const st of members) {
        const reason = st.due ?? 'along';
        st.due = null;
        if (st.state === 'retrying') {
          st.retryReady = false;
        } else {
          const batch = st.buffer.take(this.settings.batchSize * MAX_BATCHES_PER_FLUSH);
          if (!batch) {
            this.setState(st, 'idle');
            continue;
          }
          st.current = batch;
          st.attempts = 0;
          this.deps.logger.trace(
            { topic: st.topic, partition: st.partition, reason, size: batch.entries.length },
            'flush',
          );
        }
        this.setState(st, 'flushing');
        jobs.push({ topic: st.topic, partition: st.partition, batch: st.current! });
        flushing.push(st);
      }
      if (jobs.length === 0) continue;
      this.inFlight++;
      const done = this.runFlush(flushing, jobs);
      for (const st of flushing) st.flushDone = done;
    }
  }

  private async runFlush(members: PartitionState[], jobs: FlushJob[]): Promise<void> {
    const { metrics } = this.deps;
    const started = process.hrtime.bigint();
    let outcomes: FlushOutcome[];
    try {
      outcomes = await this.deps.flush(jobs);
    } catch (err) {
      outcomes = jobs.map(() => ({ ok: false, error: err })); // a FlushFn should not throw; be safe
    }
    this.inFlight--;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    let bars = 0;
    let failed = false;
    members.forEach((st, i) => {
      const outcome = outcomes[i]!;
      const batch = jobs[i]!.batch;
      if (outcome.ok) {
        bars += batch.barCount;
        this.onFlushed(st, batch, outcome.result);
      } else {
        failed = true;
        this.onFlushError(st, batch, outcome.error);
      }
    });
    if (!failed || bars > 0) {
      metrics.writeTotal.inc();
      metrics.writeLatency.observe(seconds);
      this.deps.logger.trace({ partitions: jobs.length, bars, ms: Math.round(seconds * 1000) }, 'flushed');
      metrics.batchSize.observe(bars);
    }
    for (const st of members) this.afterFlush(st);
    this.requestPump();
  }

  private onFlushed(st: PartitionState, batch: Batch, result: FlushResult): void {
    const { metrics, logger } = this.deps;
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
    // The rows are durable: now, and only now, the offsets (skipped if revoked meanwhile). Not awaited:
    // the committer sends one commit per partition at a time, always forward, and drain() waits for
    // pending commits; the next flush need not wait for the broker's answer.
    if (st.state !== 'revoked') {
      void this.deps.committer.durable(st.topic, st.partition, result.commitOffset, st.generation);
    }
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
    st.retryReady = false;
    st.retryTimer = setTimeout(() => {
      st.retryTimer = null;
      if (st.state !== 'retrying' || st.current !== batch) return;
      st.retryReady = true;
      this.requestPump();
    }, delay);
    st.retryTimer.unref();
  }

  private afterFlush(st: PartitionState): void {
    st.flushDone = null;
    if (st.state === 'retrying' || st.state === 'revoked') return;
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
    if (st.backpressure) return;
    st.backpressure = true;
    this.syncPause([st]);
    this.deps.logger.debug(
      { topic: st.topic, partition: st.partition, depth: this.totalEntries },
      'buffers full; partition paused',
    );
  }

  private maybeResume(): void {
    if (!this.accepting) return;
    this.wakeRoomWaiters();
    if (!this.hasRoom()) return;
    const released: PartitionState[] = [];
    for (const st of this.partitions.values()) {
      if (st.backpressure) {
        st.backpressure = false;
        released.push(st);
      }
    }
    if (released.length > 0) {
      this.deps.logger.debug(
        { partitions: released.length, depth: this.totalEntries },
        'buffers drained; resumed',
      );
    }
    this.syncPause(released);
  }

  /** Tells the consumer to pause or resume each partition whose wanted state changed (or all, forced). */
  private syncPause(states: PartitionState[], force = false): void {
    const pause: TopicPartition[] = [];
    const resume: TopicPartition[] = [];
    for (const st of states) {
      if (st.state === 'revoked') continue;
      const want = st.backpressure || !st.fenceLoaded || !this.accepting;
      if (!force && want === st.consumerPaused) continue;
      st.consumerPaused = want;
      (want ? pause : resume).push({ topic: st.topic, partition: st.partition });
    }
    this.deps.consumer.pause(pause);
    this.deps.consumer.resume(resume);
    let paused = 0;
    for (const st of this.partitions.values()) if (st.consumerPaused) paused++;
    this.deps.metrics.pausedPartitions.set(paused);
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
    this.wakeRoomWaiters();
    this.syncPause([...this.partitions.values()]);
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
      this.pump(); // now, not on the next turn: the wait below must see these flushes
      const inFlight = [...this.partitions.values()]
        .map((st) => st.flushDone)
        .filter((p): p is Promise<void> => p !== null);
      const wait = Math.max(1, Math.min(100, deadlineMs - this.now()));
      // Nothing in flight (a retry backing off): sleep, so timers and I/O get their turn.
      await (inFlight.length > 0 ? Promise.race([Promise.all(inFlight), sleep(wait)]) : sleep(wait));
    }
    return false;
  }

  /** Cancels timers (hard stop, after drain or at the deadline). */
  close(): void {
    this.accepting = false;
    this.wakeRoomWaiters();
    for (const st of this.partitions.values()) this.clearTimers(st);
  }

  status(): PipelineStatus {
    const stuck: PipelineStatus['stuck'] = [];
    let paused = 0;
    for (const st of this.partitions.values()) {
      if (st.consumerPaused) paused++;
      if (st.attempts > this.settings.maxRetries) {
        stuck.push({ topic: st.topic, partition: st.partition, attempts: st.attempts, error: st.lastError });
      } else if (!st.fenceLoaded && st.fenceAttempts > this.settings.maxRetries) {
        stuck.push({
          topic: st.topic,
          partition: st.partition,
          attempts: st.fenceAttempts,
          error: { class: 'fence', code: null, message: 'cannot read the offset fence' },
        });
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

  /** Partition numbers currently assigned. */
  assignedPartitions(): number[] {
    return [...this.partitions.values()].map((st) => st.partition);
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

/**
 * A flush takes up to this many batches of a partition that holds more than one (a backlog): fewer,
 * larger transactions, while the other flush slot still finds the rest. bench:e2e-configs, 1M bars,
 * 3 rounds each: 1 / 2 / 3 / all batches = 1.00 / 1.10 / 1.16 / 1.06 (bench/README.md).
 */
const MAX_BATCHES_PER_FLUSH = 3;
/** A handler waiting for room heartbeats at least this often. */
const ROOM_HEARTBEAT_MS = 500;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
