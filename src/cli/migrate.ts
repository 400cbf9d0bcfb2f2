/**
 * `bar-writer migrate` (also `npm run migrate` and `node dist/cli/migrate.js`): applies pending
 * migrations to DB_NAME / DB_SCHEMA as the configured DB user (run it as the owner; the service itself
 * runs as a writer role, see migrations/005_writer_role.sql). Then, on every run, makes the TimescaleDB
 * settings that are configuration rather than schema match the environment: retention
 * (BARS_DB_RETENTION, and with it the refresh windows of the aggregates) and the time zone of bars_1h
 * and bars_1d (BARS_DB_AGGREGATE_TIMEZONE).
 *
 * Exit 0 when up to date, 1 on any failure (one line on stderr naming it: refused connection, bad
 * password, missing privilege, a migration's error; never a stack trace), 2 on invalid configuration.
 */
import type pg from 'pg';
import { ConfigError, loadConfig, type Config } from '../config';
import { migrate } from '../store/migrate';
import { createPool } from '../store/pool';
import { applyExtraColumns } from '../store/extraColumns';
import { applyAggregateTimezone, applyRetention } from '../store/timescaleSettings';
import { EXIT, parse, processIo, type Command, type Io } from './command';

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

async function run(args: string[], io: Io): Promise<number> {
  // The migrate command keeps its "migrate:" prefix, which operators' scripts have grepped for.
  const say = (msg: string) => io.out(`migrate: ${msg}`);
  let options: ReturnType<typeof parse<{ 'allow-aggregate-loss': { type: 'boolean' } }>>;
  try {
    options = parse(args, { 'allow-aggregate-loss': { type: 'boolean' } });
  } catch (err) {
    io.err(`migrate: ${(err as Error).message} (see bar-writer migrate --help)`);
    return EXIT.usage;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`migrate: ${err.message}`);
      return EXIT.usage;
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
    const result = await migrate(client, config.db.schema, undefined, say);
    say(
      `${result.applied.length} applied, ${result.skipped.length} already applied (database ${config.db.name}, schema ${config.db.schema})`,
    );
    const extras = await applyExtraColumns(client, config.db.schema, config.write.extraColumns);
    if (config.write.extraColumns.length > 0 || extras.added.length > 0) {
      say(
        `extra columns (BARS_EXTRA_COLUMNS): ${config.write.extraColumns.map((c) => c.name).join(', ') || 'none'}` +
          (extras.added.length > 0 ? ` (added ${extras.added.join(', ')})` : ' (present)'),
      );
    }
    if (extras.unconfigured.length > 0) {
      say(
        `columns of bars_1m not in BARS_EXTRA_COLUMNS, kept with their data and no longer written: ${extras.unconfigured.join(', ')}`,
      );
    }
    const retention = await applyRetention(client, config.db.schema, config.db.retentionMs);
    if (retention.action === 'unavailable') {
      if (config.db.retentionMs > 0) {
        io.err(
          `migrate: warning: BARS_DB_RETENTION is set but not applied: ${retention.reason ?? 'no TimescaleDB'}`,
        );
      }
    } else {
      say(
        `retention of bars_1m: ${retention.dropAfter ?? 'none'} (${retention.action}); the aggregates refresh ` +
          `corrections ${retention.dropAfter ? `up to ${retention.dropAfter} old` : 'of any age'}` +
          (retention.refreshPoliciesChanged > 0
            ? ` (${retention.refreshPoliciesChanged} policies changed)`
            : ''),
      );
    }
    const zone = await applyAggregateTimezone(client, config.db.schema, config.db.aggregateTimezone, {
      allowLoss: options.values['allow-aggregate-loss'] === true,
      log: say,
    });
    if (zone.action === 'unavailable') {
      if (config.db.aggregateTimezone !== 'UTC') {
        io.err(
          `migrate: warning: BARS_DB_AGGREGATE_TIMEZONE is set but not applied: ${zone.reason ?? 'no TimescaleDB'}`,
        );
      }
    } else {
      say(`bars_1h and bars_1d bucket in ${zone.timezone} (${zone.action})`);
      for (const k of zone.kept ?? []) io.err(`migrate: warning: ${k.view} ${k.why}`);
    }
    return EXIT.ok;
  } catch (err) {
    io.err(`migrate: ${describeFailure(err, config.db)}`);
    return EXIT.failed;
  } finally {
    client?.release(true);
    await pool.end().catch(() => undefined);
  }
}

export const migrateCommand: Command = {
  summary: 'apply the database migrations and the TimescaleDB settings (retention, time zone)',
  help: `Usage: bar-writer migrate [--allow-aggregate-loss]

Applies pending migrations (migrations/NNN_*.sql) to DB_NAME / DB_SCHEMA as DB_USER (run it as the
schema owner), then makes the database match the settings of the environment on every run:
  BARS_EXTRA_COLUMNS          each a nullable column of bars_1m and bars_latest (added, never dropped
                              nor retyped)
  BARS_DB_RETENTION           retention of bars_1m (and the aggregates' refresh windows)
  BARS_DB_AGGREGATE_TIMEZONE  the time zone bars_1h and bars_1d bucket in (a change rebuilds them)
Safe to run twice and from several instances at once.

Options:
  --allow-aggregate-loss  let a time-zone change rebuild bars_1h/bars_1d (and an aggregate of an older
                          definition, without trade_count, be rebuilt) even where retention has
                          dropped the minute bars of their oldest buckets (those buckets are lost)

Exit: 0 up to date; 1 failed (one line on stderr); 2 invalid usage or configuration.`,
  run,
};

if (require.main === module) {
  migrateCommand.run(process.argv.slice(2), processIo).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = EXIT.failed;
    },
  );
}
