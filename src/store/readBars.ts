/**
 * Read operations. Both are parameterised and served by the primary key (symbol, "timestamp"):
 * a forward range scan, and a backward scan for the newest bars.
 */
import type { Bar } from '../contract/bar';
import { ident } from './pool';

interface Queryable {
  query<R extends object>(text: string, values?: unknown[]): Promise<{ rows: R[] }>;
}

interface BarRow {
  symbol: string;
  ts_ms: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: string;
  vwap: number | null;
  revision: string;
}

const COLUMNS = `symbol, (extract(epoch from "timestamp") * 1000)::bigint::text AS ts_ms,
                 open, high, low, close, volume::text AS volume, vwap, revision::text AS revision`;

function toBar(r: BarRow): Bar {
  return {
    symbol: r.symbol,
    timestampMs: Number(r.ts_ms),
    open: r.open,
    high: r.high,
    low: r.low,
    close: r.close,
    volume: Number(r.volume),
    vwap: r.vwap,
    revision: Number(r.revision),
  };
}

/** Bars of `symbol` with start <= timestamp < end, oldest first, at most `limit`. */
export async function getBars(
  db: Queryable,
  schema: string,
  symbol: string,
  startMs: number,
  endMs: number,
  limit = 100_000,
): Promise<Bar[]> {
  const res = await db.query<BarRow>(
    `SELECT ${COLUMNS} FROM ${ident(schema)}.bars_1m
     WHERE symbol = $1 AND "timestamp" >= to_timestamp($2::float8 / 1000) AND "timestamp" < to_timestamp($3::float8 / 1000)
     ORDER BY "timestamp" ASC LIMIT $4`,
    // Epoch milliseconds, not ISO strings: an end bound after 9999-12-31 has no ISO form PostgreSQL reads.
    [symbol, startMs, endMs, limit],
  );
  return res.rows.map(toBar);
}

/** The newest `limit` bars of `symbol`, newest first. */
export async function getLatestBars(
  db: Queryable,
  schema: string,
  symbol: string,
  limit: number,
): Promise<Bar[]> {
  const res = await db.query<BarRow>(
    `SELECT ${COLUMNS} FROM ${ident(schema)}.bars_1m
     WHERE symbol = $1 ORDER BY "timestamp" DESC LIMIT $2`,
    [symbol, limit],
  );
  return res.rows.map(toBar);
}
