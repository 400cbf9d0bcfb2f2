/**
 * The PostgreSQL connection pool, the connection helper every write goes through, and its gauges.
 */
import fs from 'node:fs';
import pg from 'pg';
import type { Config } from '../config';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

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

export function createPool(db: Config['db'], applicationName = 'bar-writer'): pg.Pool {
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
    ...(db.statementTimeoutMs > 0 ? { statement_timeout: db.statementTimeoutMs } : {}),
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that
  // would crash the process. The next checkout gets a fresh connection.
  pool.on('error', () => undefined);
  poolOptions.set(pool, { maxIdle: db.maxIdleConnections });
  return pool;
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
  /** Runs on the connection first (per-connection set-up such as temp tables), outside any transaction. */
  prepare?: (client: pg.PoolClient) => Promise<void>,
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
    if (prepare) await prepare(client);
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
