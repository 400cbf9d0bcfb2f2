/**
 * Extra columns (BARS_EXTRA_COLUMNS): fields a vendor publishes beyond the contract's, each stored in a
 * nullable column of bars_1m of the same name, validated by its type. The setting is
 * `name:type,name:type,…` with types `bigint`, `double precision` (or `double`), `text` / `text(N)` (at
 * most N characters, default 256, at most 4096) and `boolean`.
 */

export type ExtraType = 'bigint' | 'double precision' | 'text' | 'boolean';

export interface ExtraColumn {
  name: string;
  type: ExtraType;
  /** Most characters of a text value (text only). */
  maxLength: number | null;
}

export type ExtraValue = number | string | boolean | null;

/** Columns bars_1m and its staging table already have: an extra column may not take their names. */
export const RESERVED_COLUMNS = new Set([
  'symbol',
  'timestamp',
  'open',
  'high',
  'low',
  'close',
  'volume',
  'vwap',
  'revision',
  'trade_count',
  'deleted',
  'source_time',
  'source_origin',
  'seq',
  'part',
  'kafka_offset',
]);

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;
export const DEFAULT_TEXT_LENGTH = 256;
export const MAX_TEXT_LENGTH = 4096;

/** Parses the setting; throws an Error naming the entry and the rule. */
export function parseExtraColumns(setting: string): ExtraColumn[] {
  const out: ExtraColumn[] = [];
  if (setting.trim() === '') return out;
  for (const raw of setting.split(',')) {
    const entry = raw.trim();
    const colon = entry.indexOf(':');
    if (colon < 0) throw new Error(`"${entry}" must be name:type`);
    const name = entry.slice(0, colon).trim();
    const typeText = entry
      .slice(colon + 1)
      .trim()
      .toLowerCase()
      .replace(/\s+/g, ' ');
    if (!NAME.test(name)) {
      throw new Error(
        `"${name}" must be a lower-case SQL name: letters, digits and _, not starting with a digit, at most 63`,
      );
    }
    if (RESERVED_COLUMNS.has(name)) throw new Error(`"${name}" is a column bar-writer already has`);
    if (out.some((c) => c.name === name)) throw new Error(`"${name}" is named twice`);
    let type: ExtraType;
    let maxLength: number | null = null;
    const text = /^text(?:\((\d+)\))?$/.exec(typeText);
    if (typeText === 'bigint') type = 'bigint';
    else if (typeText === 'double precision' || typeText === 'double') type = 'double precision';
    else if (typeText === 'boolean') type = 'boolean';
    else if (text) {
      type = 'text';
      maxLength = text[1] === undefined ? DEFAULT_TEXT_LENGTH : Number(text[1]);
      if (maxLength < 1 || maxLength > MAX_TEXT_LENGTH) {
        throw new Error(`"${entry}": a text bound must be from 1 to ${MAX_TEXT_LENGTH}`);
      }
    } else {
      throw new Error(`"${entry}": the type must be bigint, double precision, text, text(N) or boolean`);
    }
    out.push({ name, type, maxLength });
  }
  return out;
}

/** The SQL type of an extra column. */
export function sqlTypeOf(c: ExtraColumn): string {
  return c.type === 'text' ? 'text' : c.type;
}

/**
 * The value of extra column `c` in a message's field `v` (undefined or null: null), or why it is refused
 * (the field's name and the rule).
 */
export function extraValue(
  c: ExtraColumn,
  v: unknown,
): ExtraValue | { refused: string; reason: 'wrong_type' | 'invalid_extra' } {
  if (v === undefined || v === null) return null;
  switch (c.type) {
    case 'bigint':
      return typeof v === 'number' && Number.isSafeInteger(v)
        ? v + 0
        : {
            refused: `${c.name} must be an integer (a safe integer) or null, got ${shown(v)}`,
            reason: 'wrong_type',
          };
    case 'double precision':
      return typeof v === 'number' && Number.isFinite(v)
        ? v + 0
        : { refused: `${c.name} must be a finite number or null, got ${shown(v)}`, reason: 'wrong_type' };
    case 'boolean':
      return typeof v === 'boolean'
        ? v
        : { refused: `${c.name} must be true, false or null, got ${shown(v)}`, reason: 'wrong_type' };
    case 'text':
      if (typeof v !== 'string')
        return { refused: `${c.name} must be a string or null, got ${shown(v)}`, reason: 'wrong_type' };
      if (v.includes('\u0000'))
        return { refused: `${c.name} must not contain NUL characters`, reason: 'invalid_extra' };
      return [...v].length <= c.maxLength!
        ? v
        : {
            refused: `${c.name} must be at most ${c.maxLength} characters, got ${[...v].length}`,
            reason: 'invalid_extra',
          };
  }
}

function shown(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `a string ${JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v)}`;
  return `${typeof v} ${String(v)}`;
}
