/**
 * Migration runner: applies migrations/NNN_name.sql in order, recording version, name and checksum in
 * bar_writer_migrations.
 *
 * - Each migration runs in its own transaction (BEGIN, the file, the record, COMMIT), except one whose
 *   first line is exactly `-- bar-writer:no-transaction`: its statements are sent one at a time outside
 *   any transaction block (each autocommits), then it is recorded. That is for statements PostgreSQL or
 *   TimescaleDB refuse inside a transaction block (CALL refresh_continuous_aggregate, CREATE
 *   MATERIALIZED VIEW … WITH DATA, CREATE INDEX CONCURRENTLY). Such a file must be safe to run again
 *   from the start (IF NOT EXISTS, if_not_exists => true): when a statement fails, the ones before it
 *   stay applied and the migration is not recorded, so the next run repeats it all. Its statements are
 *   split on semicolons outside quotes, dollar quotes and comments (SQL-standard `BEGIN ATOMIC` bodies
 *   are not supported there; use `AS $$ … $$`).
 * - Safe to run twice: applied versions are skipped (a changed checksum of an applied file is an error).
 * - Safe when several instances start at once: a session-level advisory lock serialises runners (it
 *   also covers no-transaction migrations and applyRetention), and the list of applied versions is read
 *   after taking it.
 * - Runs in the configured schema (created if missing) through search_path, so the SQL files name
 *   tables unqualified.
 *
 * What is configuration rather than schema (retention, the aggregates' time zone) is applied after the
 * migrations on every run by src/store/timescaleSettings.ts, under the same lock.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../observe/logger';
import { timescaleStatus } from './catalog';
import { ident, type Queryable } from './pool';
import { withTransaction } from './transaction';

export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');

/** First line of a migration file that must run outside a transaction block. */
export const NO_TRANSACTION_MARKER = '-- bar-writer:no-transaction';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
  /** false: the file starts with NO_TRANSACTION_MARKER and runs statement by statement, autocommitted. */
  transaction: boolean;
}

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const files = fs.readdirSync(dir).filter((f) => /^\d+_.+\.sql$/.test(f));
  const migrations = files.map((file) => {
    const sql = fs.readFileSync(path.join(dir, file), 'utf8');
    return {
      version: Number(file.slice(0, file.indexOf('_'))),
      name: file.replace(/\.sql$/, ''),
      sql,
      checksum: crypto.createHash('sha256').update(sql).digest('hex'),
      transaction: sql.split(/\r?\n/, 1)[0]!.trimEnd() !== NO_TRANSACTION_MARKER,
    };
  });
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i]!.version === migrations[i - 1]!.version) {
      throw new Error(`two migrations share version ${migrations[i]!.version}`);
    }
  }
  return migrations;
}

/**
 * Splits SQL text into statements at semicolons that are outside single-quoted strings (including
 * E'…' escapes), double-quoted identifiers, dollar-quoted bodies, `--` and nested `/* *\/` comments.
 * Statements holding nothing but comments and whitespace are dropped; the rest are returned trimmed,
 * without their semicolon.
 */
export function splitSqlStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let meaningful = false; // the current statement has something besides comments and whitespace
  const n = sql.length;
  let i = 0;
  const isIdent = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
  const unterminated = (what: string) => new Error(`unterminated ${what} in SQL at character ${i + 1}`);
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const eol = sql.indexOf('\n', i);
      i = eol === -1 ? n : eol + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (depth > 0) {
        if (j >= n) throw unterminated('block comment');
        const pair = sql.slice(j, j + 2);
        if (pair === '/*' || pair === '*/') {
          depth += pair === '/*' ? 1 : -1;
          j += 2;
        } else {
          j++;
        }
      }
      i = j;
    } else if (c === "'") {
      const escapes = (sql[i - 1] === 'E' || sql[i - 1] === 'e') && !isIdent(sql[i - 2]);
      let j = i + 1;
      for (;;) {
        if (j >= n) throw unterminated('string');
        if (escapes && sql[j] === '\\') j += 2;
        else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j++;
      }
      meaningful = true;
      i = j + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= n) throw unterminated('quoted identifier');
        if (sql[j] === '"' && sql[j + 1] === '"') j += 2;
        else if (sql[j] === '"') break;
        else j++;
      }
      meaningful = true;
      i = j + 1;
    } else if (c === '$' && !isIdent(sql[i - 1])) {
      const tag = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(
        sql.slice(i, i + 64),
      )?.[0];
      meaningful = true;
      if (tag === undefined) {
        i++; // $1, a parameter
      } else {
        const end = sql.indexOf(tag, i + tag.length);
        if (end === -1) throw unterminated(`dollar-quoted string ${tag}`);
        i = end + tag.length;
      }
    } else if (c === ';') {
      if (meaningful) out.push(sql.slice(start, i).trim());
      start = i + 1;
      meaningful = false;
      i++;
    } else {
      if (!/\s/.test(c)) meaningful = true;
      i++;
    }
  }
  if (meaningful) out.push(sql.slice(start).trim());
  return out;
}

/**
 * TimescaleDB installed on the server but not in `shared_preload_libraries` is a common
 * misconfiguration, and a dangerous one here: `CREATE EXTENSION timescaledb` (migration 001) then ends
 * the connection with a FATAL that no exception handler can catch. Checked first: the loader defines
 * its `timescaledb.*` settings only when it was preloaded, which any role can see (shared_preload_libraries
 * itself is readable by superusers only). Stopping is deliberate: carrying on would make bars_1m a plain
 * table for good, and adding TimescaleDB later means migrating into a new schema.
 */
export async function checkTimescaleLoadable(client: Queryable): Promise<void> {
  const { version, available, preloaded } = await timescaleStatus(client);
  const created = version !== null;
  if ((created || available) && !preloaded) {
    throw new Error(
      `TimescaleDB is ${created ? 'created in this database' : 'installed on this server'} but not preloaded: ` +
        "add shared_preload_libraries = 'timescaledb' to postgresql.conf (managed services: the parameter group), " +
        'restart PostgreSQL and run the migration again; nothing was changed',
    );
  }
}

// Any constant works as long as every runner uses the same one.
const LOCK_KEY = 0x62617277; // 'barw'

/** Runs `fn` holding the migration runners' advisory lock (migrations and applied settings alike). */
export async function withMigrationLock<T>(client: Queryable, fn: () => Promise<T>): Promise<T> {
  await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
  try {
    return await fn();
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
  }
}

/** The migrations recorded in `schema`: version → checksum (fails when none ever ran there). */
export async function appliedMigrations(db: Queryable, schema: string): Promise<Map<number, string>> {
  const r = await db.query<{ version: number; checksum: string }>(
    `SELECT version, checksum FROM ${ident(schema)}.bar_writer_migrations`,
  );
  return new Map(r.rows.map((m) => [m.version, m.checksum]));
}

export interface MigrateResult {
  applied: string[];
  skipped: string[];
}

export async function migrate(
  client: Queryable,
  schema: string,
  migrations: Migration[] = loadMigrations(),
  log: (msg: string) => void = () => undefined,
): Promise<MigrateResult> {
  const s = ident(schema);
  const result: MigrateResult = { applied: [], skipped: [] };
  await checkTimescaleLoadable(client);
  // Serialise concurrent runners first: CREATE SCHEMA/TABLE IF NOT EXISTS can still race on the catalog.
  await withMigrationLock(client, async () => {
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`SET search_path TO ${s}, public`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.bar_writer_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = await appliedMigrations(client, schema);
      const record = `INSERT INTO ${s}.bar_writer_migrations (version, name, checksum) VALUES ($1, $2, $3)`;
      for (const m of migrations) {
        const done = applied.get(m.version);
        if (done !== undefined) {
          if (done !== m.checksum) {
            throw new Error(
              `migration ${m.name} was applied with different contents (checksum ${done.slice(0, 12)}…); never edit an applied migration, add a new one`,
            );
          }
          result.skipped.push(m.name);
          continue;
        }
        if (m.transaction) {
          await withTransaction(client, async (tx) => {
            await tx.query(m.sql);
            await tx.query(record, [m.version, m.name, m.checksum]);
          }).catch((err: unknown) => {
            throw new Error(`migration ${m.name} failed: ${errorMessage(err)}`, { cause: err });
          });
        } else {
          const statements = splitSqlStatements(m.sql);
          for (const [i, statement] of statements.entries()) {
            try {
              await client.query(statement);
            } catch (err) {
              throw new Error(
                `migration ${m.name} failed at statement ${i + 1} of ${statements.length}: ${errorMessage(err)} ` +
                  '(it runs without a transaction: the statements before stay applied, and it is not recorded, so the next run repeats it)',
                { cause: err },
              );
            }
          }
          await client.query(record, [m.version, m.name, m.checksum]);
        }
        log(`applied ${m.name}${m.transaction ? '' : ' (without a transaction)'}`);
        result.applied.push(m.name);
      }
    } finally {
      await client.query('RESET search_path').catch(() => undefined);
    }
  });
  return result;
}
