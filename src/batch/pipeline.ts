/**
 * The batching stage: per-partition buffers between the Kafka fetch loop and the database. This file
 * wires its parts, is what the consumer and the service call, and carries out what the partitions'
 * state machines ask for:
 *
 *   fetched batch ──▶ partition machine (take? from where?) ──▶ intake (message → entry)
 *                 ──▶ admission (room? else wait, then pause) ──▶ partition buffer
 *                 ──▶ scheduler (slots, group commit) ──▶ flush (store + dead letters)
 *                 ──▶ partition machine (commit, retry, doubt) ──▶ committer (offsets, after durability)
 *
 * - ./partition.ts: one partition's whole life as a pure state machine, with its diagram: where a
 *   partition resumes, when it flushes, how it retries, when its position is in doubt;
 * - ./admission.ts: the buffers' totals, waiting for room, pausing and resuming;
 * - ./intake.ts: a message becomes a bar entry or a rejected entry;
 * - ./scheduler.ts: flush slots, group commit, retry slots;
 * - ./flush.ts: what a flush does; ./policy.ts: the flush rule and the backoff, as pure functions;
 * - ../offsets/resume.ts: where a partition resumes (decided from the fence, the committed offset and
 *   the log's bounds).
 *
 * The handler (`handleBatch`) only decodes and buffers: it never awaits the database (only room in the
 * buffers), so fetching and heartbeats go on while flushes run. The pipeline has one lifecycle
 * (running → draining → closed): nothing is taken once it drains.
 */
import type { ConsumerPort, InboundBatch, TopicPartition } from '../consumer/port';
import type { ClassifiedDbError } from '../store/errors';
import { type Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { tpKey, type OffsetCommitter } from '../offsets/committer';
import { messageFingerprint } from '../offsets/fingerprint';
import type { ResumeFacts } from '../offsets/resume';
import { Admission, type AdmissionLimits } from './admission';
import { systemClock, type Clock } from './clock';
import type { FlushFn } from './flush';
import { Intake } from './intake';
import type { ExtraColumn } from '../contract/extras';
import { assigned, Partition, type Effect, type Event, type MachineSettings } from './partition';
import { MAX_BATCHES_PER_FLUSH, Scheduler, type Lifecycle } from './scheduler';

export interface PipelineSettings
  extends Omit<MachineSettings, 'maxBarsPerFlush' | 'refetchWaitMs'>, AdmissionLimits {
  /** Flushes (transactions) in flight at once. */
  concurrency: number;
  /** BARS_MIN_TIMESTAMP: the earliest bar start accepted. */
  minTimestampMs?: number;
  /** BARS_VERSION_MAX_FUTURE: how far ahead of receipt a version time is taken as it is. */
  versionMaxFutureMs?: number;
  /** BARS_EXTRA_COLUMNS: read from every message (../contract/extras.ts). */
  extraColumns?: readonly ExtraColumn[];
  /** How long a retry slot waits for the refetched batch (default 10 s). */
  refetchWaitMs?: number;
}

/** The I/O a partition's resume asks for (../offsets/resume.ts ResumeReader). */
export interface ResumeIo {
  read(topic: string, partitions: readonly number[]): Promise<Map<number, ResumeFacts>>;
  moveFence(topic: string, partition: number, to: 'start' | 'end'): Promise<bigint>;
}

export interface PipelineDeps {
  flush: FlushFn;
  classify: (err: unknown) => ClassifiedDbError;
  consumer: Pick<ConsumerPort, 'pause' | 'resume' | 'seek'>;
  resume: ResumeIo;
  committer: Pick<OffsetCommitter, 'assign' | 'renew' | 'durable' | 'commitPending' | 'pendingCount'>;
  metrics: Metrics;
  logger: Logger;
  clock?: Clock;
  random?: () => number;
  /** A partition stalled (behind, no progress): the service rejoins the group to recover. */
  onStalled?: (topic: string, partition: number) => void;
}

export interface StuckPartition {
  topic: string;
  partition: number;
  attempts: number;
  /** What keeps failing: reading or moving its fence, or writing its batch. */
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
  /** Partitions behind their log end with no progress for longer than the stall bound. */
  stalled: { topic: string; partition: number }[];
}

/** What the periodic watch saw of one partition. */
export interface Observation {
  highWatermark: bigint | null;
  fence: bigint | null;
}

/** How long a retry slot waits for the failed batch to be fetched again before it is given back. */
const REFETCH_WAIT_MS = 10_000;

export class Pipeline {
  private readonly partitions = new Map<string, Partition>();
  private readonly admission: Admission;
  private readonly intake: Intake;
  private readonly scheduler: Scheduler;
  private readonly clock: Clock;
  private readonly settings: MachineSettings;
  private lifecycle: Lifecycle = 'running';
  private readonly timers = new Map<Partition, () => void>();
  /** Resume reads asked for in this turn, per topic (read together). */
  private readonly resumeReads = new Map<string, Map<Partition, number>>();

  constructor(
    settings: PipelineSettings,
    private readonly deps: PipelineDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.settings = {
      ...settings,
      maxBarsPerFlush: settings.batchSize * MAX_BATCHES_PER_FLUSH,
      refetchWaitMs: settings.refetchWaitMs ?? REFETCH_WAIT_MS,
    };
    this.admission = new Admission(settings, {
      consumer: deps.consumer,
      metrics: deps.metrics,
      logger: deps.logger,
      clock: this.clock,
      stopping: () => this.lifecycle !== 'running',
    });
    this.intake = new Intake({
      ...deps,
      minTimestampMs: settings.minTimestampMs,
      versionMaxFutureMs: settings.versionMaxFutureMs,
      extraColumns: settings.extraColumns,
    });
    this.scheduler = new Scheduler(
      { concurrency: settings.concurrency, maxBarsPerFlush: this.settings.maxBarsPerFlush },
      {
        flush: deps.flush,
        classify: deps.classify,
        release: (p, entries, bytes) => this.admission.release(p.key, entries, bytes, p),
        apply: (p, e) => void this.apply(p, e),
        lifecycle: () => this.lifecycle,
        metrics: deps.metrics,
        logger: deps.logger,
        clock: this.clock,
      },
      () => this.partitions.values(),
    );
  }

  // ---- the machine and its effects -------------------------------------------------------------

  /** Steps `p` with `event` and carries out the effects (a `take` is left to the caller). */
  private apply(p: Partition, event: Event): Effect[] {
    const effects = p.apply(event, {
      now: this.clock.now(),
      pressure: this.admission.isFull() || this.admission.atShare(p.key),
      stopping: this.lifecycle !== 'running',
      settings: this.settings,
      random: this.deps.random ?? Math.random,
    });
    for (const e of effects) this.carryOut(p, e);
    return effects;
  }

  private carryOut(p: Partition, e: Effect): void {
    const { metrics, logger } = this.deps;
    const label = { partition: String(p.partition) };
    switch (e.kind) {
      case 'pause':
      case 'resume':
        this.admission.hold(p.key, 'machine', e.kind === 'pause');
        return;
      case 'seek':
        this.deps.consumer.seek({ topic: p.topic, partition: p.partition }, e.offset.toString());
        return;
      case 'readResume':
        this.requestResume(p);
        return;
      case 'moveFence':
        this.deps.resume.moveFence(p.topic, p.partition, e.to).then(
          (next) => this.apply(p, { kind: 'fenceMoved', next }),
          (err: unknown) => this.apply(p, { kind: 'fenceMoveFailed', error: this.deps.classify(err) }),
        );
        return;
      case 'timer': {
        this.timers.get(p)?.();
        const cancel = this.clock.after(e.ms, () => {
          if (this.timers.get(p) !== cancel) return;
          this.timers.delete(p);
          this.apply(p, { kind: 'timer' });
        });
        this.timers.set(p, cancel);
        return;
      }
      case 'cancelTimer':
        this.timers.get(p)?.();
        this.timers.delete(p);
        return;
      case 'take':
        return; // read by handleBatch
      case 'wantSlot':
        this.scheduler.requestPump();
        return;
      case 'dropBuffer': {
        const dropped = p.buffer.clear();
        if (dropped.entries > 0) this.admission.release(p.key, dropped.entries, dropped.bytes, p);
        return;
      }
      case 'commit':
        void this.deps.committer.durable(p.topic, p.partition, e.offset, p.state.generation);
        return;
      case 'failures':
        if (this.partitions.get(p.key) === p) metrics.partitionFailures.set(label, e.attempts);
        return;
      case 'stalled':
        if (e.on) {
          metrics.partitionStalled.set(label, 1);
          this.deps.onStalled?.(p.topic, p.partition);
        } else if (this.partitions.get(p.key) === p) {
          metrics.partitionStalled.set(label, 0);
        }
        return;
      case 'log':
        logger[e.level](e.fields, e.msg);
        return;
      case 'count':
        if (e.counter === 'positionDoubts') metrics.positionDoubts.inc({ reason: e.reason ?? 'other' }, e.n);
        else metrics[e.counter].inc(e.n);
        return;
    }
  }

  /** Resume reads of one topic asked for in one turn go out together (one query, two admin calls). */
  private requestResume(p: Partition): void {
    let pending = this.resumeReads.get(p.topic);
    if (!pending) {
      pending = new Map();
      this.resumeReads.set(p.topic, pending);
      this.clock.soon(() => void this.readResumes(p.topic));
    }
    pending.set(p, this.deps.committer.renew(p.topic, p.partition));
  }

  private async readResumes(topic: string): Promise<void> {
    const pending = this.resumeReads.get(topic);
    this.resumeReads.delete(topic);
    if (!pending || this.lifecycle === 'closed') return;
    const list = [...pending];
    try {
      const facts = await this.deps.resume.read(
        topic,
        list.map(([p]) => p.partition),
      );
      for (const [p, generation] of list) {
        this.apply(p, { kind: 'resumeRead', facts: facts.get(p.partition)!, generation });
      }
    } catch (err) {
      const error = this.deps.classify(err);
      for (const [p] of list) this.apply(p, { kind: 'resumeFailed', error });
    }
  }

  // ---- Kafka side ---------------------------------------------------------------------------

  /**
   * Takes a fetched batch into the partition's buffer; resolves to the last offset consumed (or null).
   * Never throws (see the port's contract). It only waits when the buffers are full: for room, at most
   * `roomWaitMs`, calling `heartbeat` (the consumer's, so the group does not time the member out).
   */
  async handleBatch(batch: InboundBatch, heartbeat?: () => Promise<void>): Promise<string | null> {
    const key = tpKey(batch.topic, batch.partition);
    const p = this.partitions.get(key);
    const first = batch.messages[0];
    if (!p || !first || this.lifecycle !== 'running' || this.admission.isPaused(key)) return null;
    const hwm = BigInt(batch.highWatermark);
    const decision = this.apply(p, {
      kind: 'fetched',
      first: BigInt(first.offset),
      firstFingerprint: messageFingerprint(first),
      highWatermark: hwm,
    }).find((e) => e.kind === 'take');
    if (!decision) return null;
    const live = () => this.partitions.get(key) === p && this.lifecycle === 'running' && takes(p);
    let arrival = this.clock.now();
    let lastSeen: bigint | null = null;
    let taken = 0;
    const { from, max } = decision;
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      if (offset < from) {
        lastSeen = offset; // below where the partition resumes: the checked fence message, a gap
        continue;
      }
      if (max !== null && taken >= max) break;
      if (!this.admission.hasRoomFor(key)) {
        this.took(p, taken, lastSeen, hwm);
        taken = 0;
        // A partition whose writes keep failing cannot make room by waiting: it pauses at once.
        if (p.state.failing !== null || !(await this.admission.waitForRoom(key, live, heartbeat))) {
          if (live()) this.admission.hold(key, 'backpressure', true);
          return lastSeen === null ? null : lastSeen.toString();
        }
        arrival = this.clock.now();
      }
      const before = p.buffer.bytes;
      p.buffer.push(this.intake.entry(batch.topic, batch.partition, m, offset, arrival, p), arrival);
      this.admission.add(key, p.buffer.bytes - before);
      lastSeen = offset;
      taken++;
    }
    this.took(p, taken, lastSeen, hwm);
    return lastSeen === null ? null : lastSeen.toString();
  }

  private took(p: Partition, taken: number, lastSeen: bigint | null, highWatermark: bigint): void {
    if (taken > 0) {
      this.deps.metrics.barsConsumed.inc(taken);
      this.admission.publishDepth();
    }
    if (this.partitions.get(p.key) !== p) return;
    this.apply(p, { kind: 'took', taken, lastSeen, highWatermark });
    if (this.admission.isFull()) this.reconsiderAll();
  }

  /** Pressure or the lifecycle changed: every filling partition applies its flush rule again. */
  private reconsiderAll(): void {
    for (const p of this.partitions.values())
      if (p.mode.name === 'filling') this.apply(p, { kind: 'reconsider' });
  }

  /**
   * A new assignment (after every group join). Revoked partitions are dropped; kept ones check their
   * position again (kafkajs fetches them again from the committed offset); new ones read where they
   * resume. Pause state is told again because kafkajs carries it across rebalances.
   */
  handleAssignment(assignedNow: TopicPartition[], epoch = 0): void {
    this.deps.committer.assign(assignedNow, epoch);
    const keep = new Set(assignedNow.map((tp) => tpKey(tp.topic, tp.partition)));
    for (const [key, p] of this.partitions) {
      if (keep.has(key)) continue;
      this.revoke(key, p);
    }
    for (const tp of assignedNow) {
      const key = tpKey(tp.topic, tp.partition);
      const kept = this.partitions.get(key);
      if (kept) {
        this.apply(kept, { kind: 'reassigned' });
        continue;
      }
      const start = assigned(tp.topic, tp.partition, this.clock.now());
      const p = new Partition(key, start.state);
      this.partitions.set(key, p);
      this.admission.track(key, tp, p);
      this.deps.metrics.partitionFailures.set({ partition: String(tp.partition) }, 0);
      this.deps.metrics.partitionStalled.set({ partition: String(tp.partition) }, 0);
      for (const e of start.effects) this.carryOut(p, e);
    }
    const { metrics } = this.deps;
    metrics.rebalances.inc();
    metrics.assignedPartitions.set(this.partitions.size);
    this.admission.resync();
  }

  private revoke(key: string, p: Partition): void {
    const held = p.buffer.size;
    this.apply(p, { kind: 'revoked' });
    this.partitions.delete(key);
    this.timers.delete(p);
    this.deps.metrics.partitionFailures.remove({ partition: String(p.partition) });
    this.deps.metrics.partitionStalled.remove({ partition: String(p.partition) });
    this.admission.forget(key);
    if (held > 0) {
      this.deps.logger.info(
        { topic: p.topic, partition: p.partition, dropped: held },
        'partition revoked; buffered messages dropped (the new owner replays them)',
      );
    }
  }

  /** A sign from outside that a partition's position may not belong to its log (kafkajs reset it). */
  doubt(topic: string, partition: number, reason: string): void {
    const p = this.partitions.get(tpKey(topic, partition));
    if (p && this.lifecycle === 'running') this.apply(p, { kind: 'doubt', reason });
  }

  /** Every partition's position may not belong to its log (the topic was deleted, perhaps re-created). */
  doubtAll(reason: string): void {
    if (this.lifecycle !== 'running') return;
    for (const p of this.partitions.values()) this.apply(p, { kind: 'doubt', reason });
  }

  /** What the periodic watch saw (log ends, fences): doubts and stalls are the machines' to decide. */
  observe(seen: ReadonlyMap<string, Observation>): void {
    if (this.lifecycle !== 'running') return;
    for (const [key, p] of this.partitions) {
      const o = seen.get(key);
      if (!o) continue;
      this.apply(p, {
        kind: 'observed',
        highWatermark: o.highWatermark,
        fence: o.fence,
        heldForRoom: this.admission.heldForRoom(key),
      });
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Graceful drain: take no more messages, pause fetching, flush every buffer and commit. Resolves true
   * when everything taken is durable and committed, false at the deadline or when some partition's
   * writes were failing (it holds nothing: the next owner replays its range).
   */
  async drain(deadlineMs: number): Promise<boolean> {
    if (this.lifecycle === 'running') {
      this.lifecycle = 'draining';
      this.admission.stopped();
      this.reconsiderAll();
    }
    while (this.clock.now() < deadlineMs) {
      let busy = false;
      for (const p of this.partitions.values()) {
        const m = p.mode.name;
        if (m === 'filling' || m === 'flushing' || m === 'settling') busy = true;
      }
      if (!busy && this.admission.depth === 0) {
        await this.deps.committer.commitPending();
        if (this.deps.committer.pendingCount() === 0) return this.stuckWrites() === 0;
      }
      this.scheduler.pump(); // now, not on the next turn: the wait below must see these flushes
      const inFlight = this.scheduler.inFlight();
      const wait = Math.max(1, Math.min(100, deadlineMs - this.clock.now()));
      const nap = new Promise<void>((r) => this.clock.after(wait, r));
      await (inFlight.length > 0 ? Promise.race([Promise.all(inFlight), nap]) : nap);
    }
    return false;
  }

  private stuckWrites(): number {
    let n = 0;
    for (const p of this.partitions.values()) if (p.state.failing?.stage === 'write') n++;
    return n;
  }

  /** Hard stop (after drain or at the deadline): nothing more is written, timers cancelled. */
  close(): void {
    if (this.lifecycle === 'running') this.admission.stopped();
    this.lifecycle = 'closed';
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
  }

  status(): PipelineStatus {
    const stuck: StuckPartition[] = [];
    const stalled: { topic: string; partition: number }[] = [];
    for (const p of this.partitions.values()) {
      const { failing } = p.state;
      if (p.state.stalled) stalled.push({ topic: p.topic, partition: p.partition });
      if (!failing || failing.attempts <= this.settings.maxRetries) continue;
      stuck.push({
        topic: p.topic,
        partition: p.partition,
        attempts: failing.attempts,
        stage: failing.stage,
        error: failing.error,
      });
    }
    return {
      depth: this.admission.depth,
      bytes: this.admission.heldBytes,
      assigned: this.partitions.size,
      paused: this.admission.pausedCount(),
      stuck,
      stalled,
    };
  }

  /** The partitions currently assigned, with what the watch compares: where each is. */
  assigned(): TopicPartition[] {
    return [...this.partitions.values()].map((p) => ({ topic: p.topic, partition: p.partition }));
  }

  /** Partition numbers currently assigned. */
  assignedPartitions(): number[] {
    return [...this.partitions.values()].map((p) => p.partition);
  }
}

function takes(p: Partition): boolean {
  const m = p.mode;
  return (
    m.name === 'idle' ||
    m.name === 'filling' ||
    m.name === 'flushing' ||
    (m.name === 'retrying' && m.phase === 'refetching')
  );
}
