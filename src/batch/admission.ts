/**
 * Admission to the buffers: the one owner of their totals (messages and estimated bytes, in all and per
 * partition), of the wait for room when they are full, and of pausing and resuming partitions in the
 * consumer.
 *
 * - Full: the buffers hold `queueSize` messages or `queueBytes` estimated bytes in all, or one
 *   partition holds its share: the larger of an even split and `partitionFloor` messages (bytes in
 *   proportion), never more than all. So a partition that cannot be written (a locked fence row, a
 *   dead-letter topic that refuses its records) fills its share and no more; the others keep flowing.
 * - A fetched batch that finds no room waits (at most `roomWaitMs`, heartbeating) until a flush frees
 *   some, then its handler goes on: fetching stops meanwhile (the fetch loop waits for the handler)
 *   without dropping the fetched data, and the buffers stay full, so the database always has the next
 *   flush ready while Node decodes (bench/README.md: going on at any room drained 1.13-1.19x faster
 *   than waiting for half).
 * - If no room comes in time (the database is slow or down), or at once for a partition whose writes
 *   are failing (waiting cannot help it), the partition is paused for backpressure and the rest of its
 *   batch is not taken (kafkajs fetches it again after resume); until the totals have room again, later
 *   batches that find them full pause at once, without a second wait. A partition paused for its own
 *   share resumes once it holds half of it; every partition paused for backpressure resumes once the
 *   totals drain to half. Nothing is ever dropped to make room.
 * - A partition is paused in the consumer while any reason holds: its state machine does not fetch
 *   (./partition.ts: reading its resume point, moving its fence, backing off a failed write), it is
 *   paused for backpressure, or the pipeline has stopped taking messages. Only changes are sent.
 * - A partition whose writes fail holds nothing (its buffer is dropped and fetched again for the
 *   retry), so the room it leaves is the healthy partitions', however many fail.
 */
import type { ConsumerPort, TopicPartition } from '../consumer/port';
import { errorMessage, type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { Clock } from './clock';

export type PauseReason = 'machine' | 'backpressure';

export interface AdmissionLimits {
  queueSize: number;
  queueBytes: number;
  /** A partition may always hold this many messages (bounded by queueSize), whatever the even split. */
  partitionFloor: number;
  /** How long a fetched batch may wait for room in full buffers before its partition is paused. */
  roomWaitMs: number;
}

interface Tracked {
  tp: TopicPartition;
  /** Whose entries these counts are: a partition assigned again is another owner. */
  owner: object;
  entries: number;
  bytes: number;
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
  /** A wait for room timed out and the totals have not drained since: pause without waiting. */
  private waitTimedOut = false;
  private readonly tracked = new Map<string, Tracked>();

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly deps: {
      consumer: Pick<ConsumerPort, 'pause' | 'resume'>;
      metrics: Metrics;
      logger: Logger;
      clock: Clock;
      /** The pipeline stopped taking messages (its lifecycle: ./pipeline.ts). */
      stopping: () => boolean;
    },
  ) {}

  get depth(): number {
    return this.entries;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  /** The totals are full. */
  isFull(): boolean {
    return this.entries >= this.limits.queueSize || this.bytes >= this.limits.queueBytes;
  }

  /** Messages one partition may hold: an even split of the buffers, at least the floor, at most all. */
  private shareEntries(): number {
    const even = Math.ceil(this.limits.queueSize / Math.max(1, this.tracked.size));
    return Math.min(this.limits.queueSize, Math.max(even, this.limits.partitionFloor));
  }

  /** The partition holds its whole share. */
  atShare(key: string): boolean {
    const t = this.tracked.get(key);
    if (!t) return false;
    const share = this.shareEntries();
    return t.entries >= share || t.bytes >= (this.limits.queueBytes * share) / this.limits.queueSize;
  }

  /** Room for one more message of this partition. */
  hasRoomFor(key: string): boolean {
    return !this.isFull() && !this.atShare(key);
  }

  /** At most half full: where partitions paused for backpressure resume. */
  private hasRoom(): boolean {
    return this.entries <= this.limits.queueSize / 2 && this.bytes <= this.limits.queueBytes / 2;
  }

  // ---- the totals -------------------------------------------------------------------------------

  /** An entry was taken into a buffer (per message: the gauge is published by publishDepth()). */
  add(key: string, bytes: number): void {
    this.entries++;
    this.bytes += bytes;
    const t = this.tracked.get(key);
    if (t) {
      t.entries++;
      t.bytes += bytes;
    }
  }

  /** Publishes the depth gauge (once per fetched batch, not per message). */
  publishDepth(): void {
    this.deps.metrics.queueDepth.set(this.entries);
  }

  /**
   * Entries of `owner` left the buffers (written, or dropped): wake waiters, resume. The totals always
   * shrink; the partition's own counts only while `owner` still holds it (a flush of a partition revoked
   * and assigned again meanwhile ends under the new owner's key, and must not take its counts negative).
   */
  release(key: string, entries: number, bytes: number, owner: object): void {
    this.entries -= entries;
    this.bytes -= bytes;
    const found = this.tracked.get(key);
    const t = found && found.owner === owner ? found : undefined;
    if (t) {
      t.entries -= entries;
      t.bytes -= bytes;
    }
    this.publishDepth();
    this.wake();
    if (this.deps.stopping()) return;
    if (this.hasRoom()) this.liftBackpressure([...this.tracked.values()]);
    else if (t && !this.isFull() && t.entries <= this.shareEntries() / 2) this.liftBackpressure([t]);
  }

  // ---- waiting for room ---------------------------------------------------------------------------

  /**
   * Waits until there is room for `key` (true), or gives up (false): after `roomWaitMs`, when `live()`
   * turns false (revoked, or the pipeline stopped taking messages), or when the heartbeat fails (a
   * rebalance: the consumer rejoins once the handler returns).
   */
  async waitForRoom(key: string, live: () => boolean, heartbeat?: () => Promise<void>): Promise<boolean> {
    // Once a wait for the totals has timed out, the others pause at once until room comes back.
    if (this.waitTimedOut && this.isFull()) return false;
    const started = this.deps.clock.now();
    try {
      const room = await this.roomWithin(key, live, started + this.limits.roomWaitMs, heartbeat);
      if (!room && this.isFull()) this.waitTimedOut = true;
      return room;
    } finally {
      this.deps.metrics.backpressureSeconds.inc((this.deps.clock.now() - started) / 1000);
    }
  }

  private async roomWithin(
    key: string,
    live: () => boolean,
    deadline: number,
    heartbeat?: () => Promise<void>,
  ): Promise<boolean> {
    while (!this.hasRoomFor(key)) {
      const left = deadline - this.deps.clock.now();
      if (left <= 0 || this.deps.stopping() || !live()) return false;
      await new Promise<void>((resolve) => {
        const cancel = this.deps.clock.after(Math.min(left, ROOM_HEARTBEAT_MS), done);
        function done() {
          cancel();
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
    return !this.deps.stopping() && live();
  }

  /** Wakes every waiting handler (each looks again); drained totals also end the no-wait period. */
  wake(): void {
    if (!this.isFull()) this.waitTimedOut = false;
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // ---- pausing ------------------------------------------------------------------------------------

  /** A partition was assigned to `owner` (its state machine says at once whether it fetches). */
  track(key: string, tp: TopicPartition, owner: object): void {
    this.tracked.set(key, { tp, owner, entries: 0, bytes: 0, reasons: new Set(), paused: false });
  }

  /** What one partition holds (its own counts). */
  heldBy(key: string): { entries: number; bytes: number } | null {
    const t = this.tracked.get(key);
    return t ? { entries: t.entries, bytes: t.bytes } : null;
  }

  /** A partition was revoked: nothing more is said about it (its in-flight batch is released by its flush). */
  forget(key: string): void {
    this.tracked.delete(key);
    this.wake(); // a handler waiting for room on this partition gives up
    this.updateGauge();
  }

  isPaused(key: string): boolean {
    const t = this.tracked.get(key);
    return t !== undefined && t.reasons.size > 0;
  }

  /** Paused for backpressure: the buffers hold no room for it (not a stall of its own). */
  heldForRoom(key: string): boolean {
    return this.tracked.get(key)?.reasons.has('backpressure') ?? false;
  }

  /** Adds or lifts a reason to pause `key`, then tells the consumer what changed. */
  hold(key: string, reason: PauseReason, on: boolean): void {
    const t = this.tracked.get(key);
    if (!t) return;
    if (on) t.reasons.add(reason);
    else t.reasons.delete(reason);
    if (on && reason === 'backpressure') {
      this.deps.logger.debug(
        { topic: t.tp.topic, partition: t.tp.partition, depth: this.entries, held: t.entries },
        'no room for the partition; paused',
      );
    }
    this.sync([t]);
  }

  private liftBackpressure(candidates: Tracked[]): void {
    const lifted = candidates.filter((t) => t.reasons.delete('backpressure'));
    if (lifted.length === 0) return;
    this.deps.logger.debug({ partitions: lifted.length, depth: this.entries }, 'room again; resumed');
    this.sync(lifted);
  }

  /**
   * After a rebalance: kafkajs carries pause state across it, so the whole truth is told again; and
   * backpressure is dropped where there is room again.
   */
  resync(): void {
    for (const [key, t] of this.tracked) if (this.hasRoomFor(key)) t.reasons.delete('backpressure');
    this.sync([...this.tracked.values()], true);
  }

  /** The pipeline stopped taking messages: waiters give up, every partition is paused and stays so. */
  stopped(): void {
    this.wake();
    this.sync([...this.tracked.values()]);
  }

  private sync(list: Tracked[], force = false): void {
    const pause: TopicPartition[] = [];
    const resume: TopicPartition[] = [];
    for (const t of list) {
      const want = t.reasons.size > 0 || this.deps.stopping();
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
