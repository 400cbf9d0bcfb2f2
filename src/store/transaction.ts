/**
 * The one owner of BEGIN, COMMIT and ROLLBACK on the write path.
 *
 * A transaction is a list of named statements, exactly one of them a COPY FROM STDIN with its data, and
 * its settings (`SET LOCAL`). It goes out as one simple-query string (`BEGIN; SET LOCAL …; …; COMMIT`)
 * with the COPY data right behind it (PipelinedCopy): one round trip. Results are read back by statement
 * name, never by position. Nothing of it outlives the transaction (no session state), so it works the
 * same through a connection pooler in transaction mode.
 *
 * On any failure the transaction is rolled back (a failed statement leaves the session in an aborted
 * transaction block, since the rest of the string, COMMIT included, is skipped) and the error is
 * rethrown; the caller's connection helper then discards the connection.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from './pool';
import { PipelinedCopy, type StatementResult } from './pipelinedCopy';

export interface Statement<N extends string> {
  name: N;
  sql: string;
  /** COPY data: `sql` is a COPY … FROM STDIN and this is everything it reads. */
  copyData?: Buffer;
}

export class TransactionResults<N extends string> {
  constructor(private readonly byName: ReadonlyMap<N, StatementResult>) {}

  private get(name: N): StatementResult {
    const r = this.byName.get(name);
    if (!r) throw new Error(`no result for statement ${name}`);
    return r;
  }

  /** Rows of a statement, each a list of column values as text. */
  rows(name: N): (string | null)[][] {
    return this.get(name).rows;
  }

  /** The count of a statement's command tag (rows inserted, updated, copied …). */
  count(name: N): number {
    return this.get(name).rowCount ?? 0;
  }
}

/**
 * Settings of the transaction alone (`SET LOCAL`): timeouts are set here rather than as connection
 * parameters, because a connection pooler in transaction mode (PgBouncer) refuses those and hands each
 * transaction to whichever server connection is free. Numbers are milliseconds; 0 leaves it unset.
 */
export interface TransactionSettings {
  statementTimeoutMs?: number;
  lockTimeoutMs?: number;
}

/** The `SET LOCAL` statements of `settings`, for the start of a transaction. */
export function settingStatements(settings: TransactionSettings): string[] {
  const out = ['SET LOCAL client_min_messages = warning']; // no NOTICE per flush ("already exists, skipping")
  if (settings.statementTimeoutMs)
    out.push(`SET LOCAL statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
  if (settings.lockTimeoutMs) out.push(`SET LOCAL lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}`);
  return out;
}

/**
 * Runs `statements` as one transaction in one round trip; see the header. Nothing else happens while it
 * holds its locks: no other round trip (a Kafka send, say) can keep them.
 */
export async function runTransaction<N extends string>(
  client: PoolClient,
  statements: readonly Statement<N>[],
  settings: TransactionSettings = {},
): Promise<TransactionResults<N>> {
  const copies = statements.filter((s) => s.copyData !== undefined);
  if (copies.length !== 1) throw new Error('a pipelined transaction holds exactly one COPY');
  const prelude = ['BEGIN', ...settingStatements(settings)];
  const text = [...prelude, ...statements.map((s) => s.sql), 'COMMIT'].join(';\n');
  const query = new PipelinedCopy(text);
  try {
    await pipeline(Readable.from([copies[0]!.copyData!]), client.query(query));
    // One result per statement of the string, the prelude's first.
    const byName = new Map<N, StatementResult>();
    statements.forEach((s, i) => {
      const r = query.results[i + prelude.length];
      if (r) byName.set(s.name, r);
    });
    return new TransactionResults(byName);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
