/**
 * Reading the fence (bar_writer_offsets) outside a write: where a newly assigned partition resumes, and
 * lag tooling. Writes lock and move it inside their transaction (./writeBatch.ts).
 */
import { ident } from './pool';

interface Queryable {
  query<R extends object>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

/** The recorded next offsets of a group's partitions of `topic` (only `partitions`, when given). */
export async function readFences(
  db: Queryable,
  schema: string,
  group: string,
  topic: string,
  partitions?: readonly number[],
): Promise<Map<number, bigint>> {
  const res = await db.query<{ partition: number; next_offset: string }>(
    `SELECT partition, next_offset::text AS next_offset FROM ${ident(schema)}.bar_writer_offsets
     WHERE consumer_group = $1 AND topic = $2 AND ($3::int[] IS NULL OR partition = ANY($3::int[]))`,
    [group, topic, partitions ?? null],
  );
  return new Map(res.rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}
