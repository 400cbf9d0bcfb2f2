/**
 * Which time ranges of bars_1m are in compressed TimescaleDB chunks, so that the writer can count the
 * bars it upserts into them (bars_written_compressed_total): late corrections there cost a
 * decompression of the rows they touch. Read from timescaledb_information.chunks, refreshed on a timer
 * (compression is a background policy acting on chunks days old, so a minute-old view is close enough);
 * nothing is ever compressed on plain PostgreSQL.
 */
import { timescaleSchema } from './catalog';
import type { Queryable } from './pool';

export class CompressedChunks {
  /** Sorted, disjoint [start, end) in epoch ms. */
  private ranges: { start: number; end: number }[] = [];
  private maxEnd = -Infinity;

  constructor(
    private readonly db: Queryable,
    private readonly schema: string,
  ) {}

  /** Reads the compressed chunks again; on plain PostgreSQL (no such view) there are none. */
  async refresh(): Promise<void> {
    if ((await timescaleSchema(this.db)) === null) return this.set([]);
    const r = await this.db.query<{ start_ms: string; end_ms: string }>(
      `SELECT (extract(epoch FROM range_start) * 1000)::bigint::text AS start_ms,
              (extract(epoch FROM range_end) * 1000)::bigint::text AS end_ms
       FROM timescaledb_information.chunks
       WHERE hypertable_schema = $1 AND hypertable_name = 'bars_1m' AND is_compressed
       ORDER BY range_start`,
      [this.schema],
    );
    this.set(r.rows.map((x) => ({ start: Number(x.start_ms), end: Number(x.end_ms) })));
  }

  private set(ranges: { start: number; end: number }[]): void {
    this.ranges = ranges;
    this.maxEnd = ranges.length > 0 ? ranges[ranges.length - 1]!.end : -Infinity;
  }

  /** Whether a bar starting at `timestampMs` lies in a compressed chunk (as of the last refresh). */
  holds(timestampMs: number): boolean {
    if (timestampMs >= this.maxEnd) return false; // the usual case: a recent bar
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (timestampMs < r.start) hi = mid - 1;
      else if (timestampMs >= r.end) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
