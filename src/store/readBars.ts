/**
 * Read operations of the read API (docs/reads.md). Every one is answered from an index, never by
 * scanning a chunk:
 *
 * - one symbol's minute bars: bars_1m's primary key (symbol, "timestamp"), forward for a range, backward
 *   for the newest ones;
 * - one symbol's 5m, 1h and 1d bars: the continuous aggregates bars_5m, bars_1h, bars_1d on TimescaleDB
 *   (real-time: the buckets not yet materialized are computed from bars_1m at read time); on plain
 *   PostgreSQL (no aggregates) the same buckets computed from bars_1m in SQL (bucketSql), with the
 *   aggregates' rules (migration 004);
 * - every symbol's newest bar, the list of symbols: bars_latest (migration 011), which the writer keeps
 *   in its write transaction, by its primary key;
 * - every symbol's bar at one minute: bars_1m's index ("timestamp", symbol) (migration 013), one range
 *   in symbol order, stopping at a page's end.
 *
 * bars_1m never holds a deleted bar: a delete removes the row (its version is kept in bar_tombstones,
 * migration 012), and bars_latest falls back to the newest remaining bar, so no read filters anything.
 *
 * Reads run on their own small pool (never the writer's connections) and each is one read-only
 * transaction with its own statement_timeout, sent as one simple-query string (./transaction.ts
 * runStatements):
 *
 *   BEGIN READ ONLY; SET LOCAL statement_timeout = N; SELECT …; COMMIT
 *
 * One round trip, no startup parameter and no session state, so it works the same through PgBouncer in
 * transaction mode. The SELECT therefore carries its values as literals: symbols escaped by
 * pg.escapeLiteral, times and limits as integers checked here.
 */
import pg from 'pg';
import type { ExtraColumn } from '../contract/extras';
import type { Interval } from '../contract/intervals';
import type { ReadBar } from '../contract/readBar';
import { ident, withConnection, type Pool } from './pool';
import { runStatements } from './transaction';

/** Each coarser interval: its aggregate, its width, and whether it buckets in the aggregates' zone. */
const AGGREGATED: Record<Exclude<Interval, '1m'>, { view: string; width: string; zoned: boolean }> = {
  '5m': { view: 'bars_5m', width: '5 minutes', zoned: false },
  '1h': { view: 'bars_1h', width: '1 hour', zoned: true },
  '1d': { view: 'bars_1d', width: '1 day', zoned: true },
};

/** A row of every bar read: the bar's key, and its values as JSON members (../contract/readBar.ts). */
interface ReadRow {
  symbol: string;
  ts_ms: string;
  bar_values: string;
}

/**
 * The SQL of JSON members `"name":value` for `values` ([name, SQL expression of the value's JSON text]),
 * comma-separated, in their order, SQL NULL as `null`. The names are the API's (plain [a-z0-9_]).
 */
function membersSql(values: ReadonlyArray<readonly [string, string]>): string {
  return `concat(${values
    .map(
      ([name, json], i) =>
        `${pg.escapeLiteral(`${i === 0 ? '' : ','}"${name}":`)}, coalesce(${json}, 'null')`,
    )
    .join(', ')})`;
}

/**
 * The JSON text of a value of `type`: a number or a boolean as PostgreSQL writes it (a double in its
 * shortest exact form, as JSON.stringify writes it; bars_1m holds finite numbers only, the contract
 * refuses the others), text quoted and escaped by to_json (twice the cost: only where needed).
 */
function jsonOf(expr: string, type: 'number' | ExtraColumn['type']): string {
  return type === 'text' ? `to_json(${expr})::text` : `(${expr})::text`;
}

/** The values every bar has, in the API's order (all numbers). */
const BAR_VALUES = ['open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count'] as const;

/**
 * The key and time columns of every read, table alias `t`. The time in epoch ms from date_part (a
 * double, exact to the millisecond over the contract's years 1900-9999 once rounded), not extract (a
 * numeric: ~4 ms more a page of 5,000 bars).
 */
const keyColumns = (t: string) =>
  `${t}.symbol, round(date_part('epoch', ${t}."timestamp") * 1000)::bigint::text AS ts_ms`;

/** The columns of a minute bar (bars_1m, bars_latest), table alias `t`: its values, then the extra columns. */
function minuteColumns(extras: readonly ExtraColumn[], t = 'b'): string {
  const values = [
    ...BAR_VALUES.map((c) => [c, jsonOf(`${t}.${c}`, 'number')] as const),
    ...extras.map((c) => [c.name, jsonOf(`${t}.${ident(c.name)}`, c.type)] as const),
  ];
  return `${keyColumns(t)}, ${membersSql(values)} AS bar_values`;
}

/** The columns of an aggregated bar (an aggregate's row, or bucketSql's), table alias `a`. */
const AGGREGATED_COLUMNS = `${keyColumns('a')}, ${membersSql(
  BAR_VALUES.map((c) => [c, jsonOf(`a.${c}`, 'number')] as const),
)} AS bar_values`;

/**
 * The read of every symbol's bar at minute `atMs` after `after`: one range of bars_1m's index
 * ("timestamp", symbol) (migration 013), in symbol order, never a scan of the minute's chunk.
 */
export function minuteSql(
  schema: string,
  extras: readonly ExtraColumn[],
  atMs: number,
  after: string | null,
  limit: number,
): string {
  return `SELECT ${minuteColumns(extras)} FROM ${ident(schema)}.bars_1m b
          WHERE b."timestamp" = ${at('at', atMs)}${after === null ? '' : ` AND b.symbol > ${pg.escapeLiteral(after)}`}
          ORDER BY b.symbol LIMIT ${int('limit', limit)}`;
}

/** An integer for a SQL literal; anything else is a programming error, never sent. */
function int(name: string, n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be a safe integer, got ${n}`);
  return String(n);
}

/** Epoch milliseconds as a timestamptz literal expression (an ISO string cannot say year 10000+). */
function at(name: string, ms: number): string {
  return `to_timestamp(${int(name, ms)}::float8 / 1000)`;
}

/**
 * The bucket of `"timestamp"` for `width` as TimescaleDB's time_bucket computes it (origin Monday
 * 2000-01-03; with a zone, on the local time, converted back): the same boundaries as the aggregates,
 * on plain PostgreSQL (date_bin, PostgreSQL 14+).
 */
export function bucketSql(width: string, timezone: string | null): string {
  const w = `${pg.escapeLiteral(width)}::interval`;
  if (timezone === null) return `date_bin(${w}, "timestamp", timestamptz '2000-01-03 00:00:00+00')`;
  const z = pg.escapeLiteral(timezone);
  return `(date_bin(${w}, "timestamp" AT TIME ZONE ${z}, timestamp '2000-01-03 00:00:00') AT TIME ZONE ${z})`;
}

export interface ReaderOptions {
  /** BARS_EXTRA_COLUMNS: returned with every minute bar. */
  extras?: readonly ExtraColumn[];
  /**
   * BARS_DB_AGGREGATE_TIMEZONE: the zone of 1h and 1d buckets computed on plain PostgreSQL (on
   * TimescaleDB the aggregates bucket in the zone `migrate` built them with, the same setting).
   */
  timezone?: string;
}

export class BarReader {
  private readonly extras: readonly ExtraColumn[];
  private readonly timezone: string;
  /** Whether the continuous aggregates exist (TimescaleDB), learnt on the first coarser read. */
  private aggregates: boolean | null = null;

  /**
   * @param pool the readers' pool (not the writer's)
   * @param timeoutMs statement_timeout of each read (0: none)
   */
  constructor(
    private readonly pool: Pool,
    private readonly schema: string,
    private readonly timeoutMs: number,
    options: ReaderOptions = {},
  ) {
    this.extras = options.extras ?? [];
    this.timezone = options.timezone ?? 'UTC';
  }

  /** The names of the extra columns every minute bar carries, in their order. */
  get extraNames(): readonly string[] {
    return this.extras.map((c) => c.name);
  }

  /** A table or view of the schema (names of this file, plain identifiers). */
  private table(name: string): string {
    return `${ident(this.schema)}.${name}`;
  }

  /**
   * Bars of `symbol` at `interval` with start <= timestamp < end (a coarser bar's timestamp is its
   * bucket's start), oldest first, at most `limit`.
   */
  async range(
    symbol: string,
    startMs: number,
    endMs: number,
    limit: number,
    interval: Interval = '1m',
  ): Promise<ReadBar[]> {
    if (interval === '1m') {
      return this.select(
        `SELECT ${minuteColumns(this.extras)} FROM ${this.table('bars_1m')} b
         WHERE b.symbol = ${pg.escapeLiteral(symbol)}
           AND b."timestamp" >= ${at('start', startMs)} AND b."timestamp" < ${at('end', endMs)}
         ORDER BY b."timestamp" ASC LIMIT ${int('limit', limit)}`,
      );
    }
    const sql = (await this.hasAggregates())
      ? this.aggregateRangeSql(interval, symbol, startMs, endMs, limit)
      : this.computedRangeSql(interval, symbol, startMs, endMs, limit);
    return this.select(sql);
  }

  /** A range of a continuous aggregate (real-time: the current bucket included). */
  private aggregateRangeSql(
    interval: Exclude<Interval, '1m'>,
    symbol: string,
    startMs: number,
    endMs: number,
    limit: number,
  ): string {
    return `SELECT ${AGGREGATED_COLUMNS} FROM ${this.table(AGGREGATED[interval].view)} a
            WHERE symbol = ${pg.escapeLiteral(symbol)}
              AND "timestamp" >= ${at('start', startMs)} AND "timestamp" < ${at('end', endMs)}
            ORDER BY "timestamp" ASC LIMIT ${int('limit', limit)}`;
  }

  /**
   * The same range computed from bars_1m (plain PostgreSQL): the aggregates' rules (migration 004):
   * open the first bar's, close the last's, high the max, low the min, volume and trade_count summed,
   * vwap weighted by volume over the bars that have one. The bars read are those of the buckets that
   * start in the range: a day either side (a day in a zone is 23 to 25 hours) bounds the index scan.
   */
  private computedRangeSql(
    interval: Exclude<Interval, '1m'>,
    symbol: string,
    startMs: number,
    endMs: number,
    limit: number,
  ): string {
    const { width, zoned } = AGGREGATED[interval];
    const bucket = bucketSql(width, zoned ? this.timezone : null);
    const start = at('start', startMs);
    const end = at('end', endMs);
    return `SELECT ${AGGREGATED_COLUMNS} FROM (
              SELECT symbol, bucket AS "timestamp",
                     (array_agg(open ORDER BY ts))[1] AS open,
                     max(high) AS high,
                     min(low) AS low,
                     (array_agg(close ORDER BY ts DESC))[1] AS close,
                     sum(volume) AS volume,
                     sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
                       / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
                     sum(trade_count) AS trade_count
              FROM (SELECT symbol, "timestamp" AS ts, ${bucket} AS bucket, open, high, low, close, volume, vwap, trade_count
                    FROM ${this.table('bars_1m')}
                    WHERE symbol = ${pg.escapeLiteral(symbol)}
                      AND "timestamp" >= ${start} - interval '2 days' AND "timestamp" < ${end} + interval '2 days') m
              WHERE bucket >= ${start} AND bucket < ${end}
              GROUP BY symbol, bucket
            ) a
            ORDER BY "timestamp" ASC LIMIT ${int('limit', limit)}`;
  }

  /** The newest `limit` minute bars of `symbol`, newest first. */
  async latest(symbol: string, limit: number): Promise<ReadBar[]> {
    return this.select(
      `SELECT ${minuteColumns(this.extras)} FROM ${this.table('bars_1m')} b
       WHERE b.symbol = ${pg.escapeLiteral(symbol)} ORDER BY b."timestamp" DESC LIMIT ${int('limit', limit)}`,
    );
  }

  /** The newest bar of every symbol after `after` (null: from the first), in symbol order, at most `limit`. */
  async latestOfAll(after: string | null, limit: number): Promise<ReadBar[]> {
    return this.select(
      `SELECT ${minuteColumns(this.extras)} FROM ${this.table('bars_latest')} b
       ${after === null ? '' : `WHERE b.symbol > ${pg.escapeLiteral(after)}`}
       ORDER BY b.symbol LIMIT ${int('limit', limit)}`,
    );
  }

  /** The newest bar of each of `symbols` that has one, in symbol order. */
  async latestOf(symbols: readonly string[]): Promise<ReadBar[]> {
    if (symbols.length === 0) return [];
    return this.select(
      `SELECT ${minuteColumns(this.extras)} FROM ${this.table('bars_latest')} b
       WHERE b.symbol = ANY (ARRAY[${symbols.map((s) => pg.escapeLiteral(s)).join(', ')}]::text[])
       ORDER BY b.symbol`,
    );
  }

  /**
   * Every symbol's bar at minute `atMs`, for the symbols after `after` in symbol order, at most `limit`
   * (minuteSql).
   */
  async minute(atMs: number, after: string | null, limit: number): Promise<ReadBar[]> {
    return this.select(minuteSql(this.schema, this.extras, atMs, after, limit));
  }

  /** The symbols that have a bar, after `after` (null: from the first), in symbol order, at most `limit`. */
  async symbols(after: string | null, limit: number): Promise<string[]> {
    const rows = await this.run<{ symbol: string }>(
      `SELECT symbol FROM ${this.table('bars_latest')}
       ${after === null ? '' : `WHERE symbol > ${pg.escapeLiteral(after)}`}
       ORDER BY symbol LIMIT ${int('limit', limit)}`,
    );
    return rows.map((r) => r.symbol);
  }

  /** Whether the schema has the continuous aggregates (TimescaleDB); asked once. */
  private async hasAggregates(): Promise<boolean> {
    if (this.aggregates === null) {
      const rows = await this.run<{ present: boolean }>(
        `SELECT count(*) = ${Object.keys(AGGREGATED).length} AS present FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ${pg.escapeLiteral(this.schema)}
           AND c.relname IN (${Object.values(AGGREGATED)
             .map((a) => pg.escapeLiteral(a.view))
             .join(', ')})`,
      );
      this.aggregates = rows[0]?.present === true;
    }
    return this.aggregates;
  }

  /** The bars of `sql` (its columns: minuteColumns or AGGREGATED_COLUMNS). */
  private async select(sql: string): Promise<ReadBar[]> {
    return (await this.run<ReadRow>(sql)).map((r) => ({
      symbol: r.symbol,
      timestampMs: Number(r.ts_ms),
      values: r.bar_values,
    }));
  }

  private async run<Row extends pg.QueryResultRow>(sql: string): Promise<Row[]> {
    // On an error (a timeout, say) withConnection closes the connection, and its transaction with it.
    const results = await withConnection(this.pool, (client) =>
      runStatements<'read', Row>(client, [{ name: 'read', sql }], {
        readOnly: true,
        statementTimeoutMs: this.timeoutMs,
      }),
    );
    return results.rows('read');
  }
}
