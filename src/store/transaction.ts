/**
 * The one owner of BEGIN, COMMIT and ROLLBACK: every transaction of store/ opens and ends here, in one
 * of three shapes.
 *
 * - withTransaction(db, fn, options): statements one at a time, `fn` deciding what comes next
 *   (migrations, the TimescaleDB settings). On a pool it takes one connection for the whole of it.
 * - runStatements(client, statements, options): named statements sent as one simple-query string
 *   (`BEGIN; SET LOCAL …; …; COMMIT`): one round trip (the read API).
 * - runTransaction(client, statements, options): the same with one COPY FROM STDIN among the
 *   statements, its data right behind the string (./pipelinedCopy.ts): one round trip (the write path).
 *
 * Results are named, never positional: the one-round-trip shapes get one result per statement of their
 * string and hand each to the statement it belongs to by name; a count that does not match (a
 * statement's text holding two statements, or none) or a result whose command tag is not the
 * statement's (a SELECT answered by an INSERT's tag) fails the transaction loudly instead of handing
 * out the wrong rows, and so does a COMMIT answered by ROLLBACK.
 *
 * Settings are the transaction's alone (`SET LOCAL`) and nothing outlives the transaction (no session
 * state), so every shape works the same through a connection pooler in transaction mode.
 *
 * On a failure the transaction is rolled back and the error rethrown. In the one-round-trip shapes a
 * failed statement leaves the session in an aborted transaction block (the rest of the string, COMMIT
 * included, is skipped), and ROLLBACK is sent only when the server answered with that error: after a
 * client-side timeout or a lost connection nothing would answer it, and the caller's connection helper
 * (./pool.ts withConnection) discards the connection anyway.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { withConnection, type PoolClient, type Queryable } from './pool';
import { PipelinedCopy, type StatementResult } from './pipelinedCopy';
import { classifyDbError } from './errors';

export interface Statement<N extends string> {
  name: N;
  sql: string;
  /** COPY data: `sql` is a COPY … FROM STDIN and this is everything it reads. */
  copyData?: Buffer;
}

/** What a statement of a one-round-trip transaction gives back. */
interface NamedResult<Row> {
  rows: Row[];
  rowCount: number | null;
  command: string | null;
}

export class TransactionResults<N extends string, Row = (string | null)[]> {
  constructor(private readonly byName: ReadonlyMap<N, NamedResult<Row>>) {}

  private get(name: N): NamedResult<Row> {
    const r = this.byName.get(name);
    if (!r) throw new Error(`no result for statement ${name}`);
    return r;
  }

  /** Whether the statement was sent (a step some writes leave out). */
  has(name: N): boolean {
    return this.byName.has(name);
  }

  /** Rows of a statement (runTransaction: each a list of column values as text). */
  rows(name: N): Row[] {
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

export interface TransactionOptions extends TransactionSettings {
  /** BEGIN READ ONLY: a write in it fails. */
  readOnly?: boolean;
}

/** The `SET LOCAL` statements of `settings`, for the start of a transaction. */
function settingStatements(settings: TransactionSettings): string[] {
  const out: string[] = [];
  if (settings.statementTimeoutMs)
    out.push(`SET LOCAL statement_timeout = ${Math.trunc(settings.statementTimeoutMs)}`);
  if (settings.lockTimeoutMs) out.push(`SET LOCAL lock_timeout = ${Math.trunc(settings.lockTimeoutMs)}`);
  return out;
}

/** BEGIN and the settings: what every transaction starts with. */
function opening(options: TransactionOptions): string[] {
  return [options.readOnly ? 'BEGIN READ ONLY' : 'BEGIN', ...settingStatements(options)];
}

/**
 * The command tag a statement's result carries: its first keyword (what pg's `command` holds), except
 * after WITH, where it is that of the statement the WITH leads to (not checked).
 */
function tagOf(sql: string): string | null {
  const verb = /^\s*([A-Za-z]+)/.exec(sql)?.[1]?.toUpperCase() ?? null;
  return verb === 'WITH' ? null : verb;
}

/** ROLLBACK answers a COMMIT whose transaction had failed: nothing of it was written. */
function checkCommitted(command: string | null | undefined): void {
  if (command === 'ROLLBACK')
    throw new Error('the transaction was rolled back at COMMIT: nothing was written');
}

/**
 * The results of a one-round-trip transaction, by the name of the statement each belongs to; `sent`
 * is every statement of the string in order, the opening and COMMIT included (name null).
 */
function nameResults<N extends string, Row>(
  sent: readonly { name: N | null; sql: string }[],
  results: readonly NamedResult<Row>[],
): TransactionResults<N, Row> {
  if (results.length !== sent.length) {
    throw new Error(
      `a transaction of ${sent.length} statements returned ${results.length} results: ` +
        'some statement text holds more or fewer than one statement',
    );
  }
  const byName = new Map<N, NamedResult<Row>>();
  sent.forEach((s, i) => {
    const r = results[i]!;
    const tag = tagOf(s.sql);
    if (tag === 'COMMIT') checkCommitted(r.command);
    if (tag !== null && r.command !== tag) {
      throw new Error(
        `statement ${s.name ?? s.sql} (${tag}) was answered by ${r.command ?? 'no command tag'}: results are out of step with statements`,
      );
    }
    if (s.name !== null) byName.set(s.name, r);
  });
  return new TransactionResults(byName);
}

/** The statements of a one-round-trip transaction, in the order the string holds them. */
function transactionStatements<N extends string>(
  opened: readonly string[],
  statements: readonly Statement<N>[],
): { name: N | null; sql: string }[] {
  return [
    ...opened.map((sql) => ({ name: null, sql })),
    ...statements.map((s) => ({ name: s.name, sql: s.sql })),
    { name: null, sql: 'COMMIT' },
  ];
}

/** After a one-round-trip transaction failed: ROLLBACK when the server answered (see the header). */
async function abandon(client: PoolClient, err: unknown): Promise<void> {
  if (err instanceof pg.DatabaseError) await client.query('ROLLBACK').catch(() => undefined);
}

/**
 * Runs `fn` in a transaction: BEGIN (with `options`), `fn`'s statements, COMMIT; ROLLBACK when `fn` or
 * COMMIT fails, and the error rethrown. On a pool, one connection is taken for all of it (and closed
 * rather than reused after an error, ./pool.ts withConnection); on a client, the caller's connection.
 */
export async function withTransaction<T>(
  db: pg.Pool | Queryable,
  fn: (tx: Queryable) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  if (db instanceof pg.Pool) return withConnection(db, (client) => withTransaction(client, fn, options));
  await db.query(opening(options).join(';\n'));
  try {
    const out = await fn(db);
    checkCommitted((await db.query('COMMIT')).command);
    return out;
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Runs `attempt` (a whole transaction) again while it fails with a transient error (./errors.ts), up to
 * `tries` times with a doubling backoff; any other error, or the last one, is rethrown. For
 * administrative transactions (migrate's rebuilds) that can meet a background job of the database.
 */
export async function withTransientRetry<T>(
  attempt: () => Promise<T>,
  tries = 6,
  baseMs = 200,
  capMs = 5_000,
): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (n >= tries || classifyDbError(err).class !== 'transient') throw err;
      // Doubling from baseMs up to capMs (store/ sits below batch/, whose policy paces the write path).
      await new Promise((r) => setTimeout(r, Math.min(capMs, baseMs * 2 ** (n - 1))));
    }
  }
}

/**
 * Runs `statements` (none a COPY) as one transaction in one round trip; see the header. Rows come
 * parsed as pg parses them, as objects of type `Row`.
 */
export async function runStatements<N extends string, Row extends pg.QueryResultRow = pg.QueryResultRow>(
  client: PoolClient,
  statements: readonly Statement<N>[],
  options: TransactionOptions = {},
): Promise<TransactionResults<N, Row>> {
  if (statements.some((s) => s.copyData !== undefined))
    throw new Error('runStatements sends no COPY data: use runTransaction');
  const sent = transactionStatements(opening(options), statements);
  try {
    const out = (await client.query<Row>(sent.map((s) => s.sql).join(';\n'))) as
      pg.QueryResult<Row> | pg.QueryResult<Row>[];
    return nameResults(sent, Array.isArray(out) ? out : [out]);
  } catch (err) {
    await abandon(client, err);
    throw err;
  }
}

/**
 * Runs `statements` as one transaction in one round trip, exactly one of them a COPY with its data;
 * see the header. Nothing else happens while it holds its locks: no other round trip (a Kafka send,
 * say) can keep them. Rows come as lists of column values as text.
 */
export async function runTransaction<N extends string>(
  client: PoolClient,
  statements: readonly Statement<N>[],
  settings: TransactionSettings = {},
): Promise<TransactionResults<N>> {
  const copies = statements.filter((s) => s.copyData !== undefined);
  if (copies.length !== 1) throw new Error('a pipelined transaction holds exactly one COPY');
  const opened = opening(settings);
  // No NOTICE per flush ("relation … already exists, skipping" from the staging table's CREATE).
  opened.splice(1, 0, 'SET LOCAL client_min_messages = warning');
  const sent = transactionStatements(opened, statements);
  const query = new PipelinedCopy(sent.map((s) => s.sql).join(';\n'));
  try {
    await pipeline(Readable.from([copies[0]!.copyData!]), client.query(query));
    return nameResults<N, StatementResult['rows'][number]>(sent, query.results);
  } catch (err) {
    await abandon(client, err);
    throw err;
  }
}
