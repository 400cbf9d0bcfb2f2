/**
 * Read operations, served by the primary key (symbol, "timestamp"): a forward range scan and a backward
 * scan for the newest bars.
 *
 * Reads run on their own small pool (never the writer's connections) and each is one read-only
 * transaction with its own statement_timeout, sent as one simple-query string (./transaction.ts
 * runStatements):
 *
 *   BEGIN READ ONLY; SET LOCAL statement_timeout = N; SELECT …; COMMIT
 *
 * One round trip, no startup parameter and no session state, so it works the same through PgBouncer in
 * transaction mode. The SELECT therefore carries its values as literals: the symbol escaped by
 * pg.escapeLiteral, times and limits as integers checked here.
 */
import pg from 'pg';
import type { Bar } from '../contract/bar';
import { ident, withConnection, type Pool } from './pool';
import { runStatements } from './transaction';

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
    tradeCount: null,
    deleted: false,
    extras: null,
  };
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

export class BarReader {
  /**
   * @param pool the readers' pool (not the writer's)
   * @param timeoutMs statement_timeout of each read (0: none)
   */
  constructor(
    private readonly pool: Pool,
    private readonly schema: string,
    private readonly timeoutMs: number,
  ) {}

  /** Bars of `symbol` with start <= timestamp < end, oldest first, at most `limit`. */
  async range(symbol: string, startMs: number, endMs: number, limit: number): Promise<Bar[]> {
    return this.select(
      `SELECT ${COLUMNS} FROM ${ident(this.schema)}.bars_1m
       WHERE symbol = ${pg.escapeLiteral(symbol)}
         AND "timestamp" >= ${at('start', startMs)} AND "timestamp" < ${at('end', endMs)}
       ORDER BY "timestamp" ASC LIMIT ${int('limit', limit)}`,
    );
  }

  /** The newest `limit` bars of `symbol`, newest first. */
  async latest(symbol: string, limit: number): Promise<Bar[]> {
    return this.select(
      `SELECT ${COLUMNS} FROM ${ident(this.schema)}.bars_1m
       WHERE symbol = ${pg.escapeLiteral(symbol)} ORDER BY "timestamp" DESC LIMIT ${int('limit', limit)}`,
    );
  }

  private async select(sql: string): Promise<Bar[]> {
    // On an error (a timeout, say) withConnection closes the connection, and its transaction with it.
    const results = await withConnection(this.pool, (client) =>
      runStatements<'bars', BarRow>(client, [{ name: 'bars', sql }], {
        readOnly: true,
        statementTimeoutMs: this.timeoutMs,
      }),
    );
    return results.rows('bars').map(toBar);
  }
}
