/**
 * Consumer lag of the partitions this instance owns (so a sum over replicas counts each partition
 * once), exported as kafka_consumer_lag{partition}: the log end minus the group's committed offset.
 */
import type { ConsumerPort, PartitionLag } from '../consumer/port';
import type { Logger } from '../observe/logger';
import type { Metrics } from '../observe/metrics';
import { every, type Periodic } from '../observe/periodic';

/** Messages behind: high watermark minus committed offset (no commit yet: the whole retained log). */
export function lagOf(p: PartitionLag): number {
  const lag = p.committed === null ? p.highWatermark - p.lowWatermark : p.highWatermark - p.committed;
  return Number(lag < 0n ? 0n : lag);
}

export async function refreshLag(
  consumer: Pick<ConsumerPort, 'lag'>,
  owned: readonly number[],
  metrics: Pick<Metrics, 'consumerLag'>,
): Promise<void> {
  const mine = new Set(owned);
  const lags = await consumer.lag();
  metrics.consumerLag.reset();
  for (const p of lags) {
    if (mine.has(p.partition)) metrics.consumerLag.set({ partition: String(p.partition) }, lagOf(p));
  }
}

/** Refreshes the lag of the partitions `owned()` returns every `ms`, while `running()`. */
export function reportLag(
  consumer: Pick<ConsumerPort, 'lag'>,
  owned: () => readonly number[],
  running: () => boolean,
  metrics: Pick<Metrics, 'consumerLag'>,
  logger: Logger,
  ms = 10_000,
): Periodic {
  return every(
    ms,
    'consumer lag',
    () => (running() ? refreshLag(consumer, owned(), metrics) : undefined),
    logger,
  );
}
