/**
 * Flush slots: which due partitions are written together, when, and in how many transactions at once.
 * It decides nothing about a partition itself (its state machine, ./partition.ts, says when it is due,
 * what a failure means, what to commit): it hands out slots and reports each write's outcome as an
 * event.
 *
 * - At most `concurrency` flushes run at once. A flush starts as soon as a slot is free and some healthy
 *   partition is due, and takes in one transaction up to `maxBarsPerFlush` bars of every healthy
 *   partition of that topic that holds entries and is not being written (group commit): the others
 *   ride along rather than wait for their own turn. While the database is busy, bars gather, so a
 *   backlog is written in large transactions, and a lone due partition never waits for company.
 * - A partition whose write failed is retried alone (its failure would fail the others too), and
 *   retries take at most all slots but one: a retry slot is granted to a partition whose backoff has
 *   passed, it fetches its batch again, and that batch is written alone. However many partitions fail,
 *   one slot stays with the healthy ones.
 * - Flushes of one partition are strictly sequential and in offset order: a partition is in at most one
 *   flush (its machine is `flushing` meanwhile).
 * - Invariant: an offset is committed only after the transaction covering every entry below it has
 *   committed: the machine asks for the commit on the `flushed` event, never before.
 */
import { messageTimeOf } from '../contract/packedBar';
import type { ClassifiedDbError } from '../store/errors';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { Clock } from './clock';
import type { Batch } from './buffer';
import type { FlushFn, FlushJob, FlushOutcome } from './flush';
import type { BatchInfo, Event, Partition } from './partition';

/** The pipeline's one stopping state: taking messages, draining what it holds, or closed. */
export type Lifecycle = 'running' | 'draining' | 'closed';

export interface SchedulerSettings {
  /** Flushes (transactions) in flight at once. */
  concurrency: number;
  /** Most bars one flush takes from a partition. */
  maxBarsPerFlush: number;
}

export interface SchedulerDeps {
  flush: FlushFn;
  classify: (err: unknown) => ClassifiedDbError;
  /** Entries of a partition left the buffers (written, or failed: the machine refetches them). */
  release: (p: Partition, entries: number, bytes: number) => void;
  /** Steps a partition's machine and carries out the effects (the pipeline). */
  apply: (p: Partition, event: Event) => void;
  /** The pipeline's lifecycle: draining still writes what is due (no retries); closed writes nothing. */
  lifecycle: () => Lifecycle;
  metrics: Metrics;
  logger: Logger;
  clock: Clock;
}

/**
 * A flush takes up to this many batches of a partition that holds more than one (a backlog): fewer,
 * larger transactions, while the other flush slot still finds the rest. bench:e2e-configs, 1M bars,
 * 3 rounds each: 1 / 2 / 3 / all batches = 1.00 / 1.10 / 1.16 / 1.06 (bench/README.md).
 */
export const MAX_BATCHES_PER_FLUSH = 3;

export function batchInfo(b: Batch): BatchInfo {
  return { first: b.entries[0]!.offset, next: b.nextOffset, entries: b.entries.length, bars: b.barCount };
}

export class Scheduler {
  private running = 0;
  private pumpRequested = false;
  private readonly flushes = new Set<Promise<void>>();

  constructor(
    private readonly settings: SchedulerSettings,
    private readonly deps: SchedulerDeps,
    /** The assigned partitions, in assignment order. */
    private readonly partitions: () => Iterable<Partition>,
  ) {}

  /** Flushes in flight. */
  inFlight(): Promise<void>[] {
    return [...this.flushes];
  }

  /**
   * Pumps once the current turn of the event loop is over: the partitions of one fetch (or all of
   * them under pressure) are marked due one by one, and should start in one transaction.
   */
  requestPump(): void {
    if (this.pumpRequested) return;
    this.pumpRequested = true;
    this.deps.clock.soon(() => {
      this.pumpRequested = false;
      this.pump();
    });
  }

  /** Grants retry slots, then starts flushes while a slot is free: healthy groups first, retries alone. */
  pump(): void {
    const lifecycle = this.deps.lifecycle();
    if (lifecycle === 'closed') return;
    if (lifecycle === 'running') this.grantRetrySlots();
    while (this.running < this.settings.concurrency) {
      const group = this.healthyGroup() ?? this.retry();
      if (group === null) return;
      const jobs: FlushJob[] = [];
      const members: Partition[] = [];
      for (const p of group) {
        const batch = p.buffer.take(this.settings.maxBarsPerFlush);
        if (!batch) continue;
        this.deps.apply(p, { kind: 'flushStarted', batch: batchInfo(batch) });
        this.deps.logger.trace(
          { topic: p.topic, partition: p.partition, size: batch.entries.length },
          'flush',
        );
        members.push(p);
        jobs.push({ topic: p.topic, partition: p.partition, batch, expect: p.state.written });
      }
      if (jobs.length === 0) continue;
      this.running++;
      const done = this.run(members, jobs).finally(() => this.flushes.delete(done));
      this.flushes.add(done);
    }
  }

  /** Retries at once: partitions fetching their failed batch again, or writing it. */
  private retriesActive(): number {
    let n = 0;
    for (const p of this.partitions()) {
      const m = p.mode;
      if (p.state.failing?.stage !== 'write') continue;
      if (
        (m.name === 'retrying' && m.phase === 'refetching') ||
        m.name === 'filling' ||
        m.name === 'flushing'
      )
        n++;
    }
    return n;
  }

  /** Retry slots to the partitions ready longest first: one that keeps failing fast never starves another. */
  private grantRetrySlots(): void {
    const max = Math.max(1, this.settings.concurrency - 1);
    let active = this.retriesActive();
    if (active >= max) return;
    const ready: { p: Partition; since: number }[] = [];
    for (const p of this.partitions()) {
      const m = p.mode;
      if (m.name === 'retrying' && m.phase === 'ready') ready.push({ p, since: m.since });
    }
    ready.sort((a, b) => a.since - b.since);
    for (const { p } of ready) {
      if (active >= max) return;
      this.deps.apply(p, { kind: 'retrySlot' });
      active++;
    }
  }

  /** The first due healthy partition and every other healthy filling partition of its topic, or null. */
  private healthyGroup(): Partition[] | null {
    let topic: string | null = null;
    for (const p of this.partitions()) {
      if (p.mode.name === 'filling' && p.mode.due !== null && p.state.failing === null) {
        topic = p.topic;
        break;
      }
    }
    if (topic === null) return null;
    const group: Partition[] = [];
    for (const p of this.partitions()) {
      if (p.topic === topic && p.mode.name === 'filling' && p.state.failing === null) group.push(p);
    }
    return group;
  }

  /** A failed partition holding its refetched batch (its retry slot was granted), alone. */
  private retry(): Partition[] | null {
    for (const p of this.partitions()) {
      if (p.mode.name === 'filling' && p.mode.due !== null && p.state.failing !== null) return [p];
    }
    return null;
  }

  private async run(members: Partition[], jobs: FlushJob[]): Promise<void> {
    const { metrics } = this.deps;
    const started = this.deps.clock.now();
    let outcomes: FlushOutcome[];
    try {
      outcomes = await this.deps.flush(jobs);
    } catch (err) {
      outcomes = jobs.map(() => ({ ok: false, error: err })); // a FlushFn should not throw; be safe
    }
    this.running--;
    const seconds = (this.deps.clock.now() - started) / 1000;
    let bars = 0;
    let failed = false;
    members.forEach((p, i) => {
      const outcome = outcomes[i]!;
      const { batch } = jobs[i]!;
      this.deps.release(p, batch.entries.length, batch.bytes);
      const info = batchInfo(batch);
      if (outcome.ok) {
        const r = outcome.result;
        bars += batch.barCount;
        metrics.barsWritten.inc(r.written);
        if (r.skippedFenced > 0) metrics.barsSkippedFenced.inc(r.skippedFenced);
        if (r.writtenCompressed > 0) metrics.barsWrittenCompressed.inc(r.writtenCompressed);
        if (r.deadLettered > 0) metrics.barsDeadLettered.inc(r.deadLettered);
        if (!r.rewound) {
          const committedAt = this.deps.clock.now();
          for (const e of batch.entries) {
            if (e.kind === 'bar')
              metrics.endToEndDelay.observe(Math.max(0, committedAt - messageTimeOf(e)) / 1000);
          }
        }
        this.deps.apply(p, {
          kind: 'flushed',
          batch: info,
          commitOffset: r.commitOffset,
          fenceBefore: r.fenceBefore,
          rewound: r.rewound,
        });
      } else {
        failed = true;
        const error = this.deps.classify(outcome.error);
        metrics.writeErrors.inc({ class: error.class });
        this.deps.apply(p, { kind: 'flushFailed', batch: info, error });
      }
    });
    if (!failed || bars > 0) {
      metrics.writeTotal.inc();
      metrics.writeLatency.observe(seconds);
      this.deps.logger.trace({ partitions: jobs.length, bars, ms: Math.round(seconds * 1000) }, 'flushed');
      metrics.batchSize.observe(bars);
    }
    this.requestPump();
  }
}
