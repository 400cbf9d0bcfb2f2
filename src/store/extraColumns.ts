/**
 * The extra columns of BARS_EXTRA_COLUMNS in the database: configuration, not schema, so `migrate`
 * applies them after the migrations on every run (under the migration lock), like the TimescaleDB
 * settings (./timescaleSettings.ts):
 *
 * - a column of the setting that bars_1m (or bars_latest) lacks is added, nullable and without a
 *   default: PostgreSQL adds it without rewriting the table, TimescaleDB without decompressing chunks;
 * - a column that exists with another type is an error naming both types: bar-writer never changes a
 *   column's type (that would rewrite the table and may not convert the values);
 * - a column dropped from the setting stays, with its data: nothing is ever dropped. The writer then
 *   leaves it alone (rows it writes keep what the column held), and `doctor` names it.
 */
import pg from 'pg';
import { RESERVED_COLUMNS, sqlTypeOf, type ExtraColumn } from '../contract/extras';
import { withMigrationLock } from './migrate';
import { ident, type Queryable } from './pool';

/** The tables that hold a bar's columns: the minute bars and each symbol's newest. */
export const BAR_TABLES = ['bars_1m', 'bars_latest'] as const;

/** Columns of bars_1m (or bars_latest) that bar-writer made itself, beyond the contract's. */
const OWN_COLUMNS = new Set([...RESERVED_COLUMNS]);

export interface ExtraColumnsState {
  /** Columns of the setting missing from a table: `table.column`. */
  missing: string[];
  /** Columns of the setting whose type in a table differs: a sentence each. */
  wrongType: string[];
  /** Columns of bars_1m that are neither bar-writer's nor in the setting (kept, not written). */
  unconfigured: string[];
}

/** The columns of `schema`.`table` with their types as format_type prints them. */
async function tableColumns(db: Queryable, schema: string, table: string): Promise<Map<string, string>> {
  const r = await db.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
     FROM pg_attribute a
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [`${ident(schema)}.${ident(table)}`],
  );
  return new Map(r.rows.map((c) => [c.name, c.type]));
}

/** How the setting and the tables compare (doctor, and migrate before it changes anything). */
export async function extraColumnsState(
  db: Queryable,
  schema: string,
  extras: readonly ExtraColumn[],
): Promise<ExtraColumnsState> {
  const state: ExtraColumnsState = { missing: [], wrongType: [], unconfigured: [] };
  for (const table of BAR_TABLES) {
    const columns = await tableColumns(db, schema, table);
    if (columns.size === 0) continue; // not migrated yet
    for (const c of extras) {
      const type = columns.get(c.name);
      if (type === undefined) state.missing.push(`${table}.${c.name}`);
      else if (type !== sqlTypeOf(c)) {
        state.wrongType.push(
          `${table}.${c.name} is ${type} and BARS_EXTRA_COLUMNS says ${sqlTypeOf(c)}: bar-writer never changes a column's type ` +
            '(give the setting the column’s type, or another name)',
        );
      }
    }
    if (table === 'bars_1m') {
      for (const name of columns.keys()) {
        if (!OWN_COLUMNS.has(name) && !extras.some((c) => c.name === name)) state.unconfigured.push(name);
      }
    }
  }
  return state;
}

export interface ApplyExtraColumnsResult {
  /** `table.column` added by this run. */
  added: string[];
  /** Columns of bars_1m kept though the setting no longer names them. */
  unconfigured: string[];
}

/** Adds the setting's missing columns to bars_1m and bars_latest; refuses a type mismatch. */
export async function applyExtraColumns(
  client: Queryable,
  schema: string,
  extras: readonly ExtraColumn[],
): Promise<ApplyExtraColumnsResult> {
  return withMigrationLock(client, async () => {
    const state = await extraColumnsState(client, schema, extras);
    if (state.wrongType.length > 0) throw new Error(`BARS_EXTRA_COLUMNS: ${state.wrongType.join('; ')}`);
    for (const qualified of state.missing) {
      const [table, name] = qualified.split('.') as [string, string];
      const c = extras.find((x) => x.name === name)!;
      await client.query(
        `ALTER TABLE ${ident(schema)}.${ident(table)} ADD COLUMN IF NOT EXISTS ${ident(c.name)} ${sqlTypeOf(c)} NULL`,
      );
      await client.query(
        `COMMENT ON COLUMN ${ident(schema)}.${ident(table)}.${ident(c.name)} IS ${pg.escapeLiteral(
          `bar-writer: BARS_EXTRA_COLUMNS ${c.name}:${c.type === 'text' ? `text(${c.maxLength})` : c.type}`,
        )}`,
      );
    }
    return { added: state.missing, unconfigured: state.unconfigured };
  });
}
