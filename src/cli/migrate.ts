/**
 * `npm run migrate`: applies pending migrations to DB_NAME / DB_SCHEMA, as the configured DB user
 * (run it as the owner; the service itself can run as a writer role). Exit 0 when up to date.
 */
import pg from 'pg';
import { ConfigError, loadConfig } from '../config';
import { migrate } from '../store/migrate';
import { createPool } from '../store/pool';

async function run(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`migrate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const pool = createPool(
    { ...config.db, maxConnections: 1, maxIdleConnections: 1, statementTimeoutMs: 0 },
    'bar-writer-migrate',
  );
  let client: pg.PoolClient | undefined;
  try {
    client = await pool.connect();
    const result = await migrate(client, config.db.schema, undefined, (msg) =>
      process.stdout.write(`migrate: ${msg}\n`),
    );
    process.stdout.write(
      `migrate: ${result.applied.length} applied, ${result.skipped.length} already applied (database ${config.db.name}, schema ${config.db.schema})\n`,
    );
  } catch (err) {
    process.stderr.write(`migrate: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    client?.release();
    await pool.end();
  }
}

void run();
