/**
 * store/transaction.ts against a fake connection: what each shape sends, results named by the
 * statement they belong to (a count or a command tag out of step fails loudly), and when ROLLBACK goes.
 */
import pg from 'pg';
import type { PoolClient, Queryable } from '../../src/store/pool';
import { runStatements, withTransaction } from '../../src/store/transaction';

interface FakeResult {
  command: string;
  rows: unknown[];
  rowCount: number | null;
}

/** A connection that records what it is sent and answers each simple-query string by `answer`. */
function fakeClient(answer: (text: string) => FakeResult[] | Error = tagsOf) {
  const sent: string[] = [];
  const client = {
    sent,
    query: async (text: string) => {
      sent.push(text);
      const r = answer(text);
      if (r instanceof Error) throw r;
      return r.length === 1 ? r[0] : r;
    },
  };
  return client;
}

/** One result per statement of `text`, each with the tag PostgreSQL gives it, no rows. */
function tagsOf(text: string): FakeResult[] {
  return text.split(';\n').map((sql) => ({
    command: /^\s*([A-Za-z]+)/.exec(sql)![1]!.toUpperCase(),
    rows: [],
    rowCount: null,
  }));
}

const asClient = (c: ReturnType<typeof fakeClient>) => c as unknown as PoolClient;
const asDb = (c: ReturnType<typeof fakeClient>) => c as unknown as Queryable;

function serverError(message: string): pg.DatabaseError {
  return new pg.DatabaseError(message, 0, 'error');
}

describe('runStatements', () => {
  test('one string: BEGIN READ ONLY, the settings, the statements, COMMIT; rows by statement name', async () => {
    const c = fakeClient((text) =>
      tagsOf(text).map((r, i) =>
        i === 2 ? { ...r, rows: [{ a: 1 }] } : i === 3 ? { ...r, rows: [{ b: 2 }] } : r,
      ),
    );
    const results = await runStatements(
      asClient(c),
      [
        { name: 'first', sql: 'SELECT 1 AS a' },
        { name: 'second', sql: 'SELECT 2 AS b' },
      ],
      { readOnly: true, statementTimeoutMs: 1500.7 },
    );
    expect(c.sent).toEqual([
      'BEGIN READ ONLY;\nSET LOCAL statement_timeout = 1500;\nSELECT 1 AS a;\nSELECT 2 AS b;\nCOMMIT',
    ]);
    expect(results.rows('first')).toEqual([{ a: 1 }]);
    expect(results.rows('second')).toEqual([{ b: 2 }]);
  });

  test('a statement text holding two statements: the count is out of step, and it fails loudly', async () => {
    const c = fakeClient((text) => tagsOf(text.replace('SELECT 1', 'SELECT 1;\nSELECT 0')));
    await expect(runStatements(asClient(c), [{ name: 'x', sql: 'SELECT 1' }])).rejects.toThrow(
      'a transaction of 3 statements returned 4 results',
    );
  });

  test('a result whose command tag is not its statement’s fails instead of handing out its rows', async () => {
    const c = fakeClient(() => [
      { command: 'BEGIN', rows: [], rowCount: null },
      { command: 'INSERT', rows: [], rowCount: 1 },
      { command: 'COMMIT', rows: [], rowCount: null },
    ]);
    await expect(runStatements(asClient(c), [{ name: 'read', sql: 'SELECT 1' }])).rejects.toThrow(
      'statement read (SELECT) was answered by INSERT',
    );
  });

  test('WITH leads to any statement: its tag is not checked', async () => {
    const c = fakeClient(() => [
      { command: 'BEGIN', rows: [], rowCount: null },
      { command: 'SELECT', rows: [{ n: 1 }], rowCount: 1 },
      { command: 'COMMIT', rows: [], rowCount: null },
    ]);
    const r = await runStatements(asClient(c), [{ name: 'w', sql: 'WITH x AS (SELECT 1) SELECT 1 AS n' }]);
    expect(r.rows('w')).toEqual([{ n: 1 }]);
  });

  test('COMMIT answered by ROLLBACK fails: nothing was written', async () => {
    const c = fakeClient((text) =>
      tagsOf(text).map((r) => (r.command === 'COMMIT' ? { ...r, command: 'ROLLBACK' } : r)),
    );
    await expect(runStatements(asClient(c), [{ name: 'x', sql: 'SELECT 1' }])).rejects.toThrow(
      'the transaction was rolled back at COMMIT',
    );
  });

  test('a server error: ROLLBACK is sent; a client-side timeout: nothing more is sent', async () => {
    const failing = fakeClient((text) => (text === 'ROLLBACK' ? tagsOf(text) : serverError('boom')));
    await expect(runStatements(asClient(failing), [{ name: 'x', sql: 'SELECT 1' }])).rejects.toThrow('boom');
    expect(failing.sent.at(-1)).toBe('ROLLBACK');
    const silent = fakeClient(() => new Error('Query read timeout'));
    await expect(runStatements(asClient(silent), [{ name: 'x', sql: 'SELECT 1' }])).rejects.toThrow(
      'Query read timeout',
    );
    expect(silent.sent).toHaveLength(1);
  });

  test('COPY data is refused (runTransaction sends it)', async () => {
    await expect(
      runStatements(asClient(fakeClient()), [
        { name: 'c', sql: 'COPY t FROM STDIN', copyData: Buffer.alloc(0) },
      ]),
    ).rejects.toThrow('use runTransaction');
  });
});

describe('withTransaction', () => {
  test('BEGIN with its settings, the statements of fn, COMMIT; fn’s value returned', async () => {
    const c = fakeClient();
    const out = await withTransaction(
      asDb(c),
      async (tx) => {
        await tx.query('INSERT INTO t VALUES (1)');
        return 7;
      },
      { lockTimeoutMs: 200 },
    );
    expect(out).toBe(7);
    expect(c.sent).toEqual(['BEGIN;\nSET LOCAL lock_timeout = 200', 'INSERT INTO t VALUES (1)', 'COMMIT']);
  });

  test('fn fails: ROLLBACK, and its error rethrown', async () => {
    const c = fakeClient();
    await expect(
      withTransaction(asDb(c), async () => {
        throw new Error('nope');
      }),
    ).rejects.toThrow('nope');
    expect(c.sent).toEqual(['BEGIN', 'ROLLBACK']);
  });

  test('COMMIT answered by ROLLBACK (fn swallowed an error): it fails', async () => {
    const c = fakeClient((text) =>
      text === 'COMMIT' ? [{ command: 'ROLLBACK', rows: [], rowCount: null }] : tagsOf(text),
    );
    await expect(withTransaction(asDb(c), async () => undefined)).rejects.toThrow('rolled back at COMMIT');
  });

  test('on a pool: one connection for all of it, released afterwards', async () => {
    const pool = new pg.Pool();
    const c = fakeClient();
    const released: unknown[] = [];
    const client = Object.assign(c, {
      on: () => undefined,
      off: () => undefined,
      release: (err?: unknown) => void released.push(err),
    });
    pool.connect = (async () => client) as unknown as typeof pool.connect;
    pool.query = (() => {
      throw new Error('a statement went to the pool, not to the transaction’s connection');
    }) as unknown as typeof pool.query;
    await withTransaction(pool, (tx) => tx.query('SELECT 1'));
    expect(c.sent).toEqual(['BEGIN', 'SELECT 1', 'COMMIT']);
    expect(released).toHaveLength(1);
    await pool.end();
  });
});
