/**
 * Kafka offset commits, after durability only.
 *
 * Invariant enforced here: an offset is committed only when the flush that covers every message below
 * it has committed its database transaction (the pipeline calls `durable()` after that), only for a
 * partition this member still owns in the same ownership generation, and only forwards.
 *
 * Ownership generations: every time a partition starts from a freshly read resume point (assigned, or
 * its position doubted: ../batch/partition.ts) it gets a new generation (`renew`), with nothing durable
 * or committed yet. A flush carries the generation it started under: one that finishes after its
 * partition was revoked or resumed again cannot commit, and a replaced log's offsets (lower than the
 * old log's) are committed from scratch, not held back by the old ones.
 *
 * Failed commits (rebalance in progress, coordinator moved, broker away) are not rethrown: the
 * offset stays pending and `commitPending()` (called on a timer and after every flush) retries it. The
 * database fence makes any replay caused by a lost commit harmless.
 */
import { kafkaErrorType } from '../consumer/errors';
import { StaleCommitError, type ConsumerPort, type TopicPartition } from '../consumer/port';
import type { Logger } from '../observe/logger';
import { every, type Periodic } from '../observe/periodic';
import type { Metrics } from '../observe/metrics';

interface Owned {
  generation: number;
  durable: bigint | null;
  committed: bigint | null;
  inFlight: Promise<void> | null;
}

export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

export class OffsetCommitter {
  private readonly owned = new Map<string, Owned>();
  private nextGeneration = 1;
  /** The consumer's join epoch of the current assignment: every commit is made under it. */
  private epoch = 0;
  /** Why the latest failed commit failed (the Kafka error type, or the message), for a stop that gives up. */
  private lastFailure: string | null = null;

  constructor(
    private readonly consumer: Pick<ConsumerPort, 'commit'>,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** New assignment (join `epoch`): every commit is made under it; revoked partitions are forgotten. */
  assign(partitions: readonly TopicPartition[], epoch = 0): void {
    this.epoch = epoch;
    const keep = new Set(partitions.map((tp) => tpKey(tp.topic, tp.partition)));
    for (const key of [...this.owned.keys()]) if (!keep.has(key)) this.owned.delete(key);
  }

  /** A partition starts from a new resume point: a new generation, nothing durable or committed yet. */
  renew(topic: string, partition: number): number {
    const generation = this.nextGeneration++;
    this.owned.set(tpKey(topic, partition), { generation, durable: null, committed: null, inFlight: null });
    return generation;
  }

  generation(topic: string, partition: number): number | null {
    return this.owned.get(tpKey(topic, partition))?.generation ?? null;
  }

  /**
   * Everything below `offset` in this partition is durable in the database. Commits it (awaits the
   * attempt; never throws). Ignored when the partition is no longer owned in `generation`.
   */
  async durable(topic: string, partition: number, offset: bigint, generation: number): Promise<void> {
    const o = this.owned.get(tpKey(topic, partition));
    if (!o || o.generation !== generation) {
      this.logger.debug(
        { topic, partition, offset: offset.toString() },
        'partition no longer owned; offset not committed',
      );
      return;
    }
    if (o.durable === null || offset > o.durable) o.durable = offset;
    await this.commitOne(topic, partition, o);
  }

  /** Retries pending commits every `ms` (a failed commit stays pending) until the returned task stops. */
  retryEvery(ms: number): Periodic {
    return every(ms, 'offset commit retries', () => this.commitPending(), this.logger);
  }

  /** Retries every commit still pending. */
  async commitPending(): Promise<void> {
    const jobs: Promise<void>[] = [];
    for (const [key, o] of this.owned) {
      const [topic, p] = key.split('\u0000') as [string, string];
      if (o.durable !== null && (o.committed === null || o.durable > o.committed))
        jobs.push(this.commitOne(topic, Number(p), o));
    }
    await Promise.all(jobs);
  }

  /** Partitions with a durable offset not yet committed. */
  pendingCount(): number {
    let n = 0;
    for (const o of this.owned.values())
      if (o.durable !== null && (o.committed === null || o.durable > o.committed)) n++;
    return n;
  }

  /** What a stop that gives up reports: partitions still pending and the latest commit failure. */
  pendingSummary(): { pendingCommits: number; lastCommitFailure: string | null } {
    return { pendingCommits: this.pendingCount(), lastCommitFailure: this.lastFailure };
  }

  private async commitOne(topic: string, partition: number, o: Owned): Promise<void> {
    // One commit per partition at a time; a newer durable offset is picked up by the loop.
    while (o.inFlight) await o.inFlight;
    const target = o.durable;
    if (target === null || (o.committed !== null && target <= o.committed)) return;
    if (this.owned.get(tpKey(topic, partition)) !== o) return;
    o.inFlight = (async () => {
      try {
        await this.consumer.commit([{ topic, partition, offset: target.toString() }], this.epoch);
        if (o.committed === null || target > o.committed) o.committed = target;
        this.metrics.offsetCommits.inc({ result: 'ok' });
      } catch (err) {
        this.metrics.offsetCommits.inc({ result: 'failed' });
        this.lastFailure = kafkaErrorType(err) ?? (err instanceof Error ? err.message : String(err));
        // Refused while the group rebalances: expected, and retried once joined again.
        const stale = err instanceof StaleCommitError;
        this.logger[stale ? 'debug' : 'warn'](
          { err, topic, partition, offset: target.toString(), kafkaError: kafkaErrorType(err) },
          'offset commit failed; will retry (rows are durable, a replay is harmless)',
        );
      } finally {
        o.inFlight = null;
      }
    })();
    await o.inFlight;
  }
}
