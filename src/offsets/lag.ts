/**
 * Consumer lag of a partition, as kafka_consumer_lag{partition} reports it for the partitions this
 * instance owns (so a sum over replicas counts each partition once; the service's watch sets it): the
 * log end minus the group's committed offset.
 */
import type { PartitionLag } from '../consumer/port';

/** Messages behind: high watermark minus committed offset (no commit yet: the whole retained log). */
export function lagOf(p: PartitionLag): number {
  const lag = p.committed === null ? p.highWatermark - p.lowWatermark : p.highWatermark - p.committed;
  return Number(lag < 0n ? 0n : lag);
}
