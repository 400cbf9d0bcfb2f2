/**
 * The PostgreSQL connection pool, the connection helper every write goes through, and its gauges.
 */
import fs from 'node:fs';
import pg from 'pg';
import type { Config } from '../config';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

/**
 * What a statement function of store/ takes: a pool, a pooled client or a client (each has this
 * `query`), or a transaction's client (./transaction.ts). Without values the text may hold several
 * statements (a simple query).
 */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; command?: string }>;
}

export interface PoolOptions {
  /** Idle connections kept; a released connection beyond this is closed (Go's SetMaxIdleConns). */
  maxIdle: number;
}

const poolOptions = new WeakMap<pg.Pool, PoolOptions>();

function sslOption(db: Config['db']): pg.PoolConfig['ssl'] {
  switch (db.sslMode) {
    case 'disable':
      return false;
    case 'require':
      // Encrypted, server certificate not verified (libpq's sslmode=require).
      return { rejectUnauthorized: false };
    case 'verify-full':
      return {
        rejectUnauthorized: true,
        ...(db.sslRootCert ? { ca: fs.readFileSync(db.sslRootCert, 'utf8') } : {}),
      };
  }
}

/**
 * The pool of the writer (or, with `queryTimeoutMs` and sizes of its own, of the read API). Nothing
 * but the user, database and application_name is sent at connection start: a pooler in transaction
 * mode (PgBouncer) refuses other startup parameters, so timeouts are set per transaction with SET LOCAL
 * (./transaction.ts). `queryTimeoutMs` (0: none) is the client's own limit on any one query: through a
 * pooler a query waits for a server connection instead of failing, and this ends the wait.
 */
export function createPool(
  db: Config['db'],
  applicationName = 'bar-writer',
  queryTimeoutMs = writerQueryTimeoutMs(db),
): pg.Pool {
  const pool = new pg.Pool({
    host: db.host,
    port: db.port,
    user: db.user,
    password: db.password,
    database: db.name,
    ssl: sslOption(db),
    max: db.maxConnections,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    maxLifetimeSeconds: Math.ceil(db.connMaxLifetimeMs / 1000),
    application_name: applicationName,
    ...(queryTimeoutMs > 0 ? { query_timeout: queryTimeoutMs } : {}),
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that
  // would crash the process. The next checkout gets a fresh connection.
  pool.on('error', () => undefined);
  poolOptions.set(pool, { maxIdle: db.maxIdleConnections });
  return pool;
}

/**
 * The read API's pool settings: its connection (DB_READ_*, each already resolved to the writer's when
 * empty) and its own size.
 */
export function readConnection(db: Config['db']): Config['db'] {
  return {
    ...db,
    host: db.readHost,
    port: db.readPort,
    user: db.readUser,
    password: db.readPassword,
    sslMode: db.readSslMode,
    sslRootCert: db.readSslRootCert,
    maxConnections: db.readMaxConnections,
    maxIdleConnections: db.readMaxConnections,
  };
}

/** Whether the read API reads another server than the writer's (a replica): DB_READ_HOST/PORT differ. */
export function readsElsewhere(db: Config['db']): boolean {
  return db.readHost !== db.host || db.readPort !== db.port;
}

/** How much longer than its statement_timeout a query may take in all (network, a pooler's queue). */
export const QUERY_TIMEOUT_MARGIN_MS = 5000;

/** The writer pool's query timeout: DB_STATEMENT_TIMEOUT plus the margin (0: none, as the statement's). */
export function writerQueryTimeoutMs(db: Pick<Config['db'], 'statementTimeoutMs'>): number {
  return db.statementTimeoutMs > 0 ? db.statementTimeoutMs + QUERY_TIMEOUT_MARGIN_MS : 0;
}

/** Release a client, closing it instead when the pool already keeps `maxIdle` idle connections. */
export function releaseClient(pool: pg.Pool, client: pg.PoolClient, err?: Error): void {
  const maxIdle = poolOptions.get(pool)?.maxIdle ?? Infinity;
  client.release(err ?? pool.idleCount >= maxIdle);
}

/**
 * Run `fn` on one pooled connection; `fn` opens and ends its own transaction (./transaction.ts). On any
 * error the connection is closed rather than reused (it may be broken).
 */
export async function withConnection<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let failure: Error | undefined;
  // A connection terminated between two statements (admin shutdown, failover) emits 'error' on the
  // checked-out client; unheard, that event would crash the process. Record it: the next statement fails
  // and the flush is retried; the broken client is then closed, not reused.
  const onError = (err: Error) => {
    failure ??= err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    client.off('error', onError);
    releaseClient(pool, client, failure);
  }
}

/** Double-quoted SQL identifier. */
export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}
