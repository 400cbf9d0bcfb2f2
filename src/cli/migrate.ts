/**
 * `npm run migrate`: applies pending migrations to DB_NAME / DB_SCHEMA, as the configured DB user
 * (run it as the owner; the service itself can run as a writer role, see migrations/005_writer_role.sql).
 * Then, on every run, makes the TimescaleDB settings that are configuration rather than schema match the
 * environment: retention (BARS_DB_RETENTION, and with it the refresh windows of the aggregates) and the
 * time zone of bars_1h and bars_1d (BARS_DB_AGGREGATE_TIMEZONE; `--allow-aggregate-loss` lets a change
 * rebuild them even where retention has dropped the minute bars of old buckets).
 *
 * Exit 0 when up to date, 1 on any failure (one line on stderr naming it: refused connection, bad
 * password, missing privilege, a migration's error; never a stack trace), 2 on invalid configuration.
 */
import type pg from 'pg';
import { ConfigError, loadConfig, type Config } from '../config';
import { migrate } from '../store/migrate';
import { applyAggregateTimezone, applyRetention } from '../store/timescaleSettings';
import { createPool } from '../store/pool';

function out(msg: string): void {
  process.stdout.write(`migrate: ${msg}\n`);
}

/** One line for any failure: the error's own message, with where it happened when it is a connection. */
export function describeFailure(err: unknown, db: Config['db']): string {
  const e = err as { message?: unknown; code?: unknown };
  const message = (typeof e?.message === 'string' ? e.message : String(err)).replace(/\s*\n\s*/g, ' ');
  const code = typeof e?.code === 'string' ? e.code : '';
  const where = `${db.host}:${db.port}/${db.name} as ${db.user}`;
  if (
    /^(E[A-Z]+|08\w{3}|28\w{3}|3D000|57P03|53300)$/.test(code) ||
    /timeout|terminated|connect/i.test(message)
  ) {
    return `cannot use PostgreSQL at ${where}: ${message}${code && !message.includes(code) ? ` (${code})` : ''}`;
  }
  return code && /^\w{5}$/.test(code) ? `${message} (SQLSTATE ${code})` : message;
}

async function run(): Promise<number> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`migrate: ${err.message}\n`);
      return 2;
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
    // A connection the server ends (a FATAL, a restart) emits 'error' on the client: the query in flight
    // fails with it, and is reported below; unheard, the event would crash the process with a stack trace.
    client.on('error', () => undefined);
    const result = await migrate(client, config.db.schema, undefined, out);
    out(
      `${result.applied.length} applied, ${result.skipped.length} already applied (database ${config.db.name}, schema ${config.db.schema})`,
    );
    const retention = await applyRetention(client, config.db.schema, config.db.retentionMs);
    if (retention.action === 'unavailable') {
      if (config.db.retentionMs > 0) {
        process.stderr.write(
          `migrate: warning: BARS_DB_RETENTION is set but not applied: ${retention.reason ?? 'no TimescaleDB'}\n`,
        );
      }
    } else {
      out(
        `retention of bars_1m: ${retention.dropAfter ?? 'none'} (${retention.action}); the aggregates refresh ` +
          `corrections ${retention.dropAfter ? `up to ${retention.dropAfter} old` : 'of any age'}` +
          (retention.refreshPoliciesChanged > 0
            ? ` (${retention.refreshPoliciesChanged} policies changed)`
            : ''),
      );
    }
    const zone = await applyAggregateTimezone(client, config.db.schema, config.db.aggregateTimezone, {
      allowLoss: process.argv.includes('--allow-aggregate-loss'),
      log: out,
    });
    if (zone.action === 'unavailable') {
      if (config.db.aggregateTimezone !== 'UTC') {
        process.stderr.write(
          `migrate: warning: BARS_DB_AGGREGATE_TIMEZONE is set but not applied: ${zone.reason ?? 'no TimescaleDB'}\n`,
        );
      }
    } else {
      out(`bars_1h and bars_1d bucket in ${zone.timezone} (${zone.action})`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`migrate: ${describeFailure(err, config.db)}\n`);
    return 1;
  } finally {
    client?.release(true);
    await pool.end().catch(() => undefined);
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
