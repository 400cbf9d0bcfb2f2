/**
 * Why this exists: a flush is one transaction of several statements around a COPY, and each round trip
 * to PostgreSQL costs a wait on both sides and a turn of Node's event loop (which is busy decoding
 * fetches). Measured: one round trip instead of four took the 1M-bar drain from about 40,000 to 47,000
 * bars/s (bench/README.md). pg-copy-streams sends COPY data only after PostgreSQL's CopyInResponse and
 * expects a query string holding the COPY alone; this extends it in two ways:
 *
 * - the data goes out right behind the query, without waiting for CopyInResponse (the protocol allows
 *   it: when a statement before the COPY fails, PostgreSQL drops the CopyData and CopyDone that follow);
 * - the query string may hold statements before and after the COPY: each statement's rows (as text),
 *   command and command-tag count are kept in `results`, in order (./transaction.ts names them).
 *
 * So a whole flush is one simple-query string with its COPY data: one round trip. It relies on two
 * internals of pg-copy-streams 7 (handleCopyInResponse, handleCommandComplete), pinned in package.json.
 */
import { from as copyFrom } from 'pg-copy-streams';

/** One statement's outcome: its rows (text), its command tag's first word and count. */
export interface StatementResult {
  rows: (string | null)[][];
  rowCount: number | null;
  /** INSERT, COPY, COMMIT … (as pg's QueryResult.command). */
  command: string | null;
}

type CopyStream = ReturnType<typeof copyFrom>;
interface CopyStreamInternals {
  handleCopyInResponse(connection: unknown): void;
  handleCommandComplete(msg: unknown): void;
}
// pg-copy-streams exports a factory; the class of what it makes is the one to extend.
const CopyStreamQuery = Object.getPrototypeOf(copyFrom('')).constructor as new (text: string) => CopyStream;
const base = CopyStreamQuery.prototype as unknown as CopyStreamInternals;

export class PipelinedCopy extends CopyStreamQuery {
  readonly results: StatementResult[] = [];
  private current: StatementResult = { rows: [], rowCount: null, command: null };

  override submit(connection: Parameters<CopyStream['submit']>[0]): void {
    super.submit(connection);
    base.handleCopyInResponse.call(this, connection);
  }

  handleRowDescription(): void {
    this.current.rows = [];
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.current.rows.push(msg.fields);
  }

  handleCommandComplete(msg: { text?: string }): void {
    base.handleCommandComplete.call(this, msg);
    const tag = msg.text ?? '';
    const count = /\s(\d+)$/.exec(tag);
    this.current.rowCount = count ? Number(count[1]) : null;
    this.current.command = /^[A-Za-z]+/.exec(tag)?.[0] ?? null;
    this.results.push(this.current);
    this.current = { rows: [], rowCount: null, command: null };
  }
}
