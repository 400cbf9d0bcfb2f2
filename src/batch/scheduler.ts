/**
 * The flush scheduler: decides when each partition flushes, runs the flushes in a bounded number of
 * slots, and handles their outcomes (offsets committed after success, retries with backoff after
 * failure).
 *
 * - A partition whose flush rule fires (./policy.ts) is *due*; a timer wakes it when only the interval
 *   rule will fire later.
 * - At most `concurrency` flushes run at once. A flush starts as soon as a slot is free and some
 *   partition is due, and takes in one transaction up to MAX_BATCHES_PER_FLUSH batches of every
 *   partition of that topic that holds entries and is not being written (group commit): the others
 *   ride along rather than wait for their own turn. While the database is busy, bars gather, so a
 *   backlog is written in large transactions (fewer commits, statements and round trips per bar), and
 *   a lone due partition never waits for company.
 * - A partition whose write failed is retried alone, once its backoff has passed, in a slot of its own
 *   (never all of them): one partition that cannot be written does not hold the others back (pump).
 * - Flushes of one partition are strictly sequential and in offset order: a partition is in at most one
 *   flush, and a failed batch is retried (same batch, exponential backoff with jitter) before anything
 *   after it.
 * - Invariant: an offset is handed to the committer only after the flush covering every entry below it
 *   has committed its transaction (onFlushed), and only with the generation the partition had when it
 *   was assigned (the committer drops it if the partition was revoked since).
 */
import { messageTimeOf } from '../contract/packedBar';
import type { ClassifiedDbError } from '../store/errors';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import type { OffsetCommitter } from '../offsets/committer';
import type { Admission } from './admission';
import type { Batch } from './buffer';
import type { FlushFn, FlushJob, FlushOutcome, FlushResult } from './flush';
import type { Partition } from './partition';
import { flushDecision, retryDelayMs, type FlushPolicy } from './policy';

export interface SchedulerSettings extends FlushPolicy {
  /** Flushes (transactions) in flight at once. */
  concurrency: number;
  maxRetries: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
}

export interface SchedulerDeps {
  flush: FlushFn;
  classify: (err: unknown) => ClassifiedDbError;
  committer: Pick<OffsetCommitter, 'durable'>;
  admission: Pick<Admission, 'release' | 'isFull' | 'atShare'>;
  metrics: Metrics;
  logger: Logger;
  now: () => number;
  random?: () => number;
}

/**
 * A flush takes up to this many batches of a partition that holds more than one (a backlog): fewer,
 * larger transactions, while the other flush slot still finds the rest. bench:e2e-configs, 1M bars,
 * 3 rounds each: 1 / 2 / 3 / all batches = 1.00 / 1.10 / 1.16 / 1.06 (bench/README.md).
 */
export const MAX_BATCHES_PER_FLUSH = 3;

export class Scheduler {
  private running = 0;
  /** Flushes in flight that retry a failed partition (alone). */
  private runningRetries = 0;
  private pumpRequested = false;
  private draining = false;
  private readonly flushes = new Set<Promise<void>>();

  constructor(
    private readonly settings: SchedulerSettings,
    private readonly deps: SchedulerDeps,
    /** The assigned partitions, in assignment order. */
    private readonly partitions: () => Iterable<Partition>,
  ) {}

  /** From now on every partition holding entries is due at once (graceful drain). */
  drainAll(): void {
    this.draining = true;
  }

  /** Flushes in flight. */
  inFlight(): Promise<void>[] {
    return [...this.flushes];
  }

  /** Applies the flush rule to a filling partition: due now, or a timer for when it will be. */
  consider(p: Partition): void {
    const m = p.mode;
    if (m.name !== 'filling') return;
    const d = flushDecision(
      this.settings,
      {
        barCount: p.buffer.barCount,
        entryCount: p.buffer.size,
        oldestArrivalMs: p.buffer.oldestArrivalMs,
        caughtUp: p.caughtUp,
        pressure: this.deps.admission.isFull() || this.deps.admission.atShare(p.key),
        draining: this.draining,
      },
      this.deps.now(),
    );
    if (d.reason !== null) {
      if (m.timer) clearTimeout(m.timer);
      m.timer = null;
      m.due = d.reason;
      this.requestPump();
    } else if (d.nextCheckMs !== null && m.timer === null) {
      m.timer = setTimeout(
        () => {
          m.timer = null;
          this.consider(p);
        },
        Math.max(0, d.nextCheckMs - this.deps.now()),
      );
      m.timer.unref();
    }
  }

  /** The buffers are full: every filling partition is due (flush whatever is there). */
  considerAll(): void {
    for (const p of this.partitions()) this.consider(p);
  }

  /**
   * Pumps once the current turn of the event loop is over: the partitions of one fetch (or all of
   * them under pressure) are marked due one by one, and should start in one transaction.
   */
  requestPump(): void {
    if (this.pumpRequested) return;
    this.pumpRequested = true;
    setImmediate(() => {
      this.pumpRequested = false;
      this.pump();
    });
  }

  /**
   * Starts flushes while a slot is free: first the partitions that are due, together (with every other
   * healthy partition of that topic holding entries); then, alone, a partition whose write failed and
   * whose backoff has passed. A failing partition is never retried in one transaction with healthy ones
   * (its failure would fail them too), and failing partitions take at most all slots but one, so a
   * partition that cannot be written (a lock held elsewhere, a dead-letter topic that refuses it) does
   * not stop the others.
   */
  pump(): void {
    while (this.running < this.settings.concurrency) {
      const group = this.healthyGroup() ?? this.retryAlone();
      if (group === null) return;
      const jobs: FlushJob[] = [];
      for (const p of group) {
        const m = p.mode;
        let batch: Batch;
        let attempts = 0;
        let lastError: ClassifiedDbError | null = null;
        if (m.name === 'filling') {
          const taken = p.buffer.take(this.settings.batchSize * MAX_BATCHES_PER_FLUSH);
          if (!taken) {
            p.to({ name: 'idle' });
            continue;
          }
          this.deps.logger.trace(
            { topic: p.topic, partition: p.partition, reason: m.due ?? 'along', size: taken.entries.length },
            'flush',
          );
          batch = taken;
        } else if (m.name === 'retrying') {
          ({ batch, attempts, lastError } = m);
        } else {
          continue;
        }
        p.to({ name: 'flushing', batch, attempts, lastError });
        jobs.push({ topic: p.topic, partition: p.partition, batch });
      }
      if (jobs.length === 0) continue;
      const members = group.filter((p) => p.name === 'flushing');
      const retry = members.some((p) => p.attempts > 0);
      this.running++;
      if (retry) this.runningRetries++;
      const done = this.run(members, jobs)
        .finally(() => {
          if (retry) this.runningRetries--;
        })
        .finally(() => this.flushes.delete(done));
      this.flushes.add(done);
    }
  }

  /** The first due partition and every other filling partition of its topic (group commit), or null. */
  private healthyGroup(): Partition[] | null {
    let topic: string | null = null;
    for (const p of this.partitions()) {
      if (p.mode.name === 'filling' && p.mode.due !== null) {
        topic = p.topic;
        break;
      }
    }
    if (topic === null) return null;
    const group: Partition[] = [];
    for (const p of this.partitions()) if (p.topic === topic && p.mode.name === 'filling') group.push(p);
    return group;
  }

  /** A failed partition whose backoff has passed, alone, while retries hold fewer than their slots. */
  private retryAlone(): Partition[] | null {
    if (this.runningRetries >= Math.max(1, this.settings.concurrency - 1)) return null;
    for (const p of this.partitions()) if (p.mode.name === 'retrying' && p.mode.ready) return [p];
    return null;
  }

  private async run(members: Partition[], jobs: FlushJob[]): Promise<void> {
    const { metrics } = this.deps;
    const started = process.hrtime.bigint();
    let outcomes: FlushOutcome[];
    try {
      outcomes = await this.deps.flush(jobs);
    } catch (err) {
      outcomes = jobs.map(() => ({ ok: false, error: err })); // a FlushFn should not throw; be safe
    }
    this.running--;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    let bars = 0;
    let failed = false;
    members.forEach((p, i) => {
      const outcome = outcomes[i]!;
      const batch = jobs[i]!.batch;
      if (outcome.ok) {
        bars += batch.barCount;
        this.onFlushed(p, batch, outcome.result);
      } else {
        failed = true;
        this.onFlushError(p, batch, outcome.error);
      }
    });
    if (!failed || bars > 0) {
      metrics.writeTotal.inc();
      metrics.writeLatency.observe(seconds);
      this.deps.logger.trace({ partitions: jobs.length, bars, ms: Math.round(seconds * 1000) }, 'flushed');
      metrics.batchSize.observe(bars);
    }
    for (const p of members) this.afterFlush(p);
    this.requestPump();
  }

  private onFlushed(p: Partition, batch: Batch, result: FlushResult): void {
    const { metrics, logger } = this.deps;
    metrics.barsWritten.inc(result.written);
    if (result.skippedFenced > 0) metrics.barsSkippedFenced.inc(result.skippedFenced);
    if (result.writtenCompressed > 0) metrics.barsWrittenCompressed.inc(result.writtenCompressed);
    if (result.deadLettered > 0) metrics.barsDeadLettered.inc(result.deadLettered);
    const committedAt = this.deps.now();
    for (const e of batch.entries) {
      if (e.kind === 'bar') metrics.endToEndDelay.observe(Math.max(0, committedAt - messageTimeOf(e)) / 1000);
    }
    if (p.attempts > this.settings.maxRetries) {
      logger.info({ topic: p.topic, partition: p.partition, attempts: p.attempts + 1 }, 'write recovered');
    }
    if (p.attempts > 0 && p.name !== 'revoked')
      metrics.partitionFailures.set({ partition: String(p.partition) }, 0);
    this.deps.admission.release(p.key, batch.entries.length, batch.bytes);
    // The rows are durable: now, and only now, the offsets (skipped if revoked meanwhile). Not awaited:
    // the committer sends one commit per partition at a time, always forward, and drain() waits for
    // pending commits; the next flush need not wait for the broker's answer.
    if (p.name !== 'revoked') {
      void this.deps.committer.durable(p.topic, p.partition, result.commitOffset, p.generation);
    }
  }

  private onFlushError(p: Partition, batch: Batch, err: unknown): void {
    const info = this.deps.classify(err);
    this.deps.metrics.writeErrors.inc({ class: info.class });
    if (p.name === 'revoked') {
      // Not written: the new owner replays it from the committed offset.
      this.deps.admission.release(p.key, batch.entries.length, batch.bytes);
      return;
    }
    const attempts = p.attempts + 1;
    const delay = retryDelayMs(
      attempts,
      this.settings.retryDelayMs,
      this.settings.retryMaxDelayMs,
      this.deps.random,
    );
    const fields = {
      topic: p.topic,
      partition: p.partition,
      attempt: attempts,
      class: info.class,
      code: info.code,
      error: info.message,
      retryInMs: delay,
      firstOffset: batch.entries[0]?.offset.toString(),
      nextOffset: batch.nextOffset.toString(),
    };
    if (attempts === this.settings.maxRetries + 1) {
      this.deps.logger.error(
        fields,
        'write keeps failing; partition not ready, data kept, retrying at the cap',
      );
    } else if (attempts <= this.settings.maxRetries) {
      this.deps.logger.warn(fields, 'write failed; retrying');
    }
    this.deps.metrics.partitionFailures.set({ partition: String(p.partition) }, attempts);
    const retrying = p.to({ name: 'retrying', batch, attempts, lastError: info, ready: false, timer: null });
    retrying.timer = setTimeout(() => {
      retrying.timer = null;
      if (p.mode !== retrying) return;
      retrying.ready = true;
      this.requestPump();
    }, delay);
    retrying.timer.unref();
  }

  private afterFlush(p: Partition): void {
    if (p.name !== 'flushing') return; // retrying or revoked
    if (p.buffer.size === 0) {
      p.to({ name: 'idle' });
      return;
    }
    p.to({ name: 'filling', due: null, timer: null });
    this.consider(p);
  }
}
