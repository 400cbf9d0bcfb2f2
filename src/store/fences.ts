/**
 * The fence (bar_writer_offsets) outside a write: reading it (where a newly assigned partition resumes,
 * dead letters, lag tooling, the offsets CLI) and moving it on purpose (a replaced log, an operator's
 * reset). Writes lock and advance it inside their transaction (./writeBatch.ts).
 */
import { ident, type Queryable } from './pool';

export interface Fence {
  /** The first offset not yet written. */
  next: bigint;
  /** "<offset>:<record ms>:<hash>" of the last message written (../offsets/fingerprint.ts); null: unknown. */
  fingerprint: string | null;
}

/** The fences of a group's partitions of `topic` (only `partitions`, when given). */
export async function readFences(
  db: Queryable,
  schema: string,
  group: string,
  topic: string,
  partitions?: readonly number[],
): Promise<Map<number, Fence>> {
  const res = await db.query<{ partition: number; next_offset: string; last_fingerprint: string | null }>(
    `SELECT partition, next_offset::text AS next_offset, last_fingerprint FROM ${ident(schema)}.bar_writer_offsets
     WHERE consumer_group = $1 AND topic = $2 AND ($3::int[] IS NULL OR partition = ANY($3::int[]))`,
    [group, topic, partitions ?? null],
  );
  return new Map(
    res.rows.map((r) => [r.partition, { next: BigInt(r.next_offset), fingerprint: r.last_fingerprint }]),
  );
}

/**
 * Sets a partition's fence to `next` (back or forward) with the fingerprint of the message before it
 * when the caller knows it (null: forgotten; the fence is then trusted as it is at the next resume):
 * the offsets from `next` on will be written again (the upsert's version rule keeps what is newer).
 */
export async function resetFence(
  db: Queryable,
  schema: string,
  group: string,
  topic: string,
  partition: number,
  next: bigint,
  fingerprint: string | null = null,
): Promise<void> {
  await db.query(
    `INSERT INTO ${ident(schema)}.bar_writer_offsets AS o (consumer_group, topic, partition, next_offset, last_fingerprint)
     VALUES ($1, $2, $3, $4::bigint, $5)
     ON CONFLICT (consumer_group, topic, partition)
     DO UPDATE SET next_offset = EXCLUDED.next_offset, last_fingerprint = EXCLUDED.last_fingerprint, updated_at = now()`,
    [group, topic, partition, next.toString(), fingerprint],
  );
}
