/**
 * Migration runner: applies migrations/NNN_name.sql in order, each in its own transaction, recording
 * version, name and checksum in bar_writer_migrations.
 *
 * - Safe to run twice: applied versions are skipped (a changed checksum of an applied file is an error).
 * - Safe when several instances start at once: a transaction-level advisory lock serialises runners,
 *   and the list of applied versions is read after taking it.
 * - Runs in the configured schema (created if missing) through search_path, so the SQL files name
 *   tables unqualified.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { ident } from './pool';

export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
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

// Any constant works as long as every runner uses the same one.
const LOCK_KEY = 0x62617277; // 'barw'

export interface MigrateResult {
  applied: string[];
  skipped: string[];
}

export async function migrate(
  client: pg.ClientBase,
  schema: string,
  migrations: Migration[] = loadMigrations(),
  log: (msg: string) => void = () => undefined,
): Promise<MigrateResult> {
  const s = ident(schema);
  const result: MigrateResult = { applied: [], skipped: [] };
  // Serialise concurrent runners first: CREATE SCHEMA/TABLE IF NOT EXISTS can still race on the catalog.
  await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`SET search_path TO ${s}, public`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.bar_writer_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const applied = new Map(
      (
        await client.query<{ version: number; checksum: string }>(
          `SELECT version, checksum FROM ${s}.bar_writer_migrations`,
        )
      ).rows.map((r) => [r.version, r.checksum]),
    );
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
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query(
          `INSERT INTO ${s}.bar_writer_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
          [m.version, m.name, m.checksum],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      log(`applied ${m.name}`);
      result.applied.push(m.name);
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    await client.query('RESET search_path').catch(() => undefined);
  }
  return result;
}
