/**
 * bar_writer_dlq_replayed (migrations/009_dlq_replayed.sql): the dead letters `bar-writer dlq replay`
 * has sent back to the input topic, so that a second run skips them. The service never touches it.
 */
import { ident, type Queryable } from './pool';

/** Of `offsets` (decimal strings) of a dead-letter partition, those replayed before. */
export async function replayedOffsets(
  db: Queryable,
  schema: string,
  topic: string,
  partition: number,
  offsets: readonly string[],
): Promise<Set<string>> {
  const r = await db.query<{ o: string }>(
    `SELECT dlq_offset::text AS o FROM ${ident(schema)}.bar_writer_dlq_replayed
     WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = ANY($3::bigint[])`,
    [topic, partition, offsets],
  );
  return new Set(r.rows.map((row) => row.o));
}

/** Records `offsets` of a dead-letter partition as replayed (once each: a repeat changes nothing). */
export async function recordReplayed(
  db: Queryable,
  schema: string,
  topic: string,
  partition: number,
  offsets: readonly string[],
): Promise<void> {
  await db.query(
    `INSERT INTO ${ident(schema)}.bar_writer_dlq_replayed (dlq_topic, dlq_partition, dlq_offset)
     SELECT $1, $2, unnest($3::bigint[]) ON CONFLICT DO NOTHING`,
    [topic, partition, offsets],
  );
}
