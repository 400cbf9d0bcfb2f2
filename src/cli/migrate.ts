/**
 * `npm run migrate`: applies pending migrations to DB_NAME / DB_SCHEMA, as the configured DB user
 * (run it as the owner; the service itself can run as a writer role, see migrations/005_writer_role.sql).
 * Then, on every run, makes the TimescaleDB retention policy of bars_1m match BARS_DB_RETENTION (added,
 * replaced, removed or left alone; skipped with a warning when bars_1m is not a hypertable).
 * Exit 0 when up to date, 1 on a database error, 2 on invalid configuration.
 */
import pg from 'pg';
import { ConfigError, loadConfig } from '../config';
import { applyRetention, migrate } from '../store/migrate';
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
    const retention = await applyRetention(client, config.db.schema, config.db.retentionMs);
    if (retention.action === 'unavailable') {
      if (config.db.retentionMs > 0) {
        process.stderr.write(
          `migrate: warning: BARS_DB_RETENTION is set but not applied: ${retention.reason ?? 'no TimescaleDB'}\n`,
        );
      }
    } else {
      process.stdout.write(
        `migrate: retention of bars_1m: ${retention.dropAfter ?? 'none'} (${retention.action})\n`,
      );
    }
  } catch (err) {
    process.stderr.write(`migrate: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    client?.release();
    await pool.end();
  }
}

void run();
