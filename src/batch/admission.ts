/**
 * Admission to the buffers: the one owner of their totals (messages and estimated bytes), of the wait
 * for room when they are full, and of pausing and resuming partitions in the consumer.
 *
 * - Full: the buffers hold `queueSize` messages or `queueBytes` estimated bytes. A fetched batch that
 *   finds them full waits (at most `roomWaitMs`, heartbeating) until a flush frees some room, then its
 *   handler goes on: fetching stops meanwhile (the fetch loop waits for the handler) without dropping
 *   the fetched data, and the buffers stay full, so the database always has the next flush ready while
 *   Node decodes (bench/README.md: going on at any room drained 1.13-1.19x faster than waiting for half).
 * - If no room comes in time (the database is slow or down), the partition is paused for backpressure
 *   and the rest of its batch is not taken (kafkajs fetches it again after resume); until room comes
 *   back, later batches that find the buffers full pause at once, without a second wait. Every
 *   partition paused for backpressure resumes once the totals drain to half. Nothing is ever dropped to
 *   make room.
 * - A partition is paused in the consumer while any reason holds: its resume point is loading, it is
 *   paused for backpressure, or the pipeline has stopped taking messages. Only changes are sent.
 */
import type { ConsumerPort, TopicPartition } from '../consumer/port';
import { errorMessage, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';

export type PauseReason = 'loading' | 'backpressure';

export interface AdmissionLimits {
  queueSize: number;
  queueBytes: number;
  /** How long a fetched batch may wait for room in full buffers before its partition is paused. */
  roomWaitMs: number;
}

interface Tracked {
  tp: TopicPartition;
  reasons: Set<PauseReason>;
  /** What the consumer was last told. */
  paused: boolean;
}

/** A handler waiting for room heartbeats at least this often. */
const ROOM_HEARTBEAT_MS = 500;

export class Admission {
  private entries = 0;
  private bytes = 0;
  private waiters: (() => void)[] = [];
  /** A wait for room timed out and the buffers have not drained since: pause without waiting. */
  private waitTimedOut = false;
  private accepting = true;
  private readonly tracked = new Map<string, Tracked>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly deps: {
      consumer: Pick<ConsumerPort, 'pause' | 'resume'>;
      metrics: Metrics;
      logger: Logger;
      now: () => number;
    },
  ) {}

  get depth(): number {
    return this.entries;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  isFull(): boolean {
    return this.entries >= this.limits.queueSize || this.bytes >= this.limits.queueBytes;
  }

  /** At most half full: where partitions paused for backpressure resume. */
  private hasRoom(): boolean {
    return this.entries <= this.limits.queueSize / 2 && this.bytes <= this.limits.queueBytes / 2;
  }

  // ---- the totals -------------------------------------------------------------------------------

  /** Entries were taken into a buffer (per message: the gauge is published by publishDepth()). */
  add(entries: number, bytes: number): void {
    this.entries += entries;
    this.bytes += bytes;
  }

  /** Publishes the depth gauge (once per fetched batch, not per message). */
  publishDepth(): void {
    this.deps.metrics.queueDepth.set(this.entries);
  }

  /** Entries left the buffers (written, or dropped with a revoked partition): wake waiters, resume. */
  release(entries: number, bytes: number): void {
    this.entries -= entries;
    this.bytes -= bytes;
    this.publishDepth();
    this.wake();
    if (this.accepting && this.hasRoom()) this.liftBackpressure();
  }

  // ---- waiting for room ---------------------------------------------------------------------------

  /**
   * Waits until the buffers are no longer full (true), or gives up (false): after `roomWaitMs`, when
   * `live()` turns false (revoked, or the pipeline stopped taking messages), or when the heartbeat fails
   * (a rebalance: the consumer rejoins once the handler returns).
   */
  async waitForRoom(live: () => boolean, heartbeat?: () => Promise<void>): Promise<boolean> {
    // Once a wait has timed out, the others pause at once until room comes back (no 1 s each).
    if (this.waitTimedOut) return false;
    const started = this.deps.now();
    try {
      const room = await this.roomWithin(live, started + this.limits.roomWaitMs, heartbeat);
      if (!room && this.isFull()) this.waitTimedOut = true;
      return room;
    } finally {
      this.deps.metrics.backpressureSeconds.inc((this.deps.now() - started) / 1000);
    }
  }

  private async roomWithin(
    live: () => boolean,
    deadline: number,
    heartbeat?: () => Promise<void>,
  ): Promise<boolean> {
    while (this.isFull()) {
      const left = deadline - this.deps.now();
      if (left <= 0 || !this.accepting || !live()) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, ROOM_HEARTBEAT_MS)).unref();
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.push(done);
      });
      if (heartbeat) {
        try {
          await heartbeat();
        } catch (err) {
          this.deps.logger.debug({ err: errorMessage(err) }, 'heartbeat failed while waiting for room');
          return false;
        }
      }
    }
    return this.accepting && live();
  }

  /** Wakes every waiting handler (each looks again); a drained buffer also ends the no-wait period. */
  wake(): void {
    if (!this.isFull()) this.waitTimedOut = false;
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // ---- pausing ------------------------------------------------------------------------------------

  /** A partition was assigned: it starts paused, its resume point loading. */
  track(key: string, tp: TopicPartition): void {
    this.tracked.set(key, { tp, reasons: new Set(['loading']), paused: false });
  }

  /** A partition was revoked: nothing more is said to the consumer about it. */
  forget(key: string): void {
    this.tracked.delete(key);
    this.wake(); // a handler waiting for room on this partition gives up
    if (this.accepting && this.hasRoom()) this.liftBackpressure();
    this.updateGauge();
  }

  isPaused(key: string): boolean {
    const t = this.tracked.get(key);
    return t !== undefined && t.reasons.size > 0;
  }

  /** Adds or lifts a reason to pause `key`, then tells the consumer what changed. */
  hold(key: string, reason: PauseReason, on: boolean): void {
    const t = this.tracked.get(key);
    if (!t) return;
    if (on) t.reasons.add(reason);
    else t.reasons.delete(reason);
    if (on && reason === 'backpressure') {
      this.deps.logger.debug(
        { topic: t.tp.topic, partition: t.tp.partition, depth: this.entries },
        'buffers full; partition paused',
      );
    }
    this.sync([t]);
  }

  private liftBackpressure(): void {
    const lifted: Tracked[] = [];
    for (const t of this.tracked.values()) if (t.reasons.delete('backpressure')) lifted.push(t);
    if (lifted.length === 0) return;
    this.deps.logger.debug({ partitions: lifted.length, depth: this.entries }, 'buffers drained; resumed');
    this.sync(lifted);
  }

  /**
   * After a rebalance: kafkajs carries pause state across it, so the whole truth is told again; and
   * backpressure is dropped where the buffers are no longer full.
   */
  resync(): void {
    if (!this.isFull()) for (const t of this.tracked.values()) t.reasons.delete('backpressure');
    this.sync([...this.tracked.values()], true);
  }

  /** Stops taking messages: every partition is paused and stays so. */
  close(): void {
    this.accepting = false;
    this.wake();
    this.sync([...this.tracked.values()]);
  }

  private sync(list: Tracked[], force = false): void {
    const pause: TopicPartition[] = [];
    const resume: TopicPartition[] = [];
    for (const t of list) {
      const want = t.reasons.size > 0 || !this.accepting;
      if (!force && want === t.paused) continue;
      t.paused = want;
      (want ? pause : resume).push(t.tp);
    }
    if (pause.length > 0) this.deps.consumer.pause(pause);
    if (resume.length > 0) this.deps.consumer.resume(resume);
    this.updateGauge();
  }

  pausedCount(): number {
    let n = 0;
    for (const t of this.tracked.values()) if (t.paused) n++;
    return n;
  }

  private updateGauge(): void {
    this.deps.metrics.pausedPartitions.set(this.pausedCount());
  }
}
