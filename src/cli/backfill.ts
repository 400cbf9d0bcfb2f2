/**
 * `bar-writer backfill`: loads bars from files (vendor history, a fixed export) through the same contract
 * and the same write path as the service: every row is validated like a Kafka message (same rules, same
 * reasons), and written by COPY into the staging table and one upsert per transaction.
 *
 * - Streamed: a file is read record by record (./records.ts: CSV as RFC 4180, quoted fields may span
 *   lines; JSON lines a record per line; a record longer than 1 MiB is rejected, never held) and
 *   written in batches of --batch rows, at most two transactions in flight (the next batch is parsed
 *   while the last one is written); memory stays bounded whatever the file's size. `.gz` files are
 *   decompressed on the way.
 * - Versions: the rows of a run are versioned at the time of the load (and by a `revision` column when
 *   the file has one), each batch a millisecond after the one before: the latest row of the file wins
 *   for a key, and the load replaces stored rows with other values unless they have a higher revision.
 *   A row with the values already stored is not rewritten, so running the same file again changes
 *   nothing, and a run stopped half-way can simply be run again.
 * - Broken rows never stop the load: each goes to the rejects file (JSON lines: file, line it starts
 *   on, reason, detail, text), and the summary counts them by reason; exit 3 then.
 * - Afterwards the continuous aggregates are refreshed over the time range loaded (their policies would
 *   catch up at their next run anyway).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { BarDecoder, type Bar, type DecodeResult } from '../contract/bar';
import type { ExtraColumn } from '../contract/extras';
import { continuousAggregates, refreshContinuousAggregate } from '../store/aggregates';
import { timescaleSchema } from '../store/catalog';
import { createPool, withConnection, type Pool } from '../store/pool';
import { writeBars, type LoadedBar } from '../store/writeBatch';
import { readRecords, type FileRecord, type Refusal } from './records';
import {
  config,
  EXIT,
  guarded,
  instant,
  oneLine,
  parse,
  positiveInt,
  UsageError,
  type Command,
  type Io,
} from './command';

type Format = 'csv' | 'jsonl';

const CSV_FIELDS = [
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
] as const;
/** Optional columns whose empty cell is null (as absent). */
const NULLABLE = new Set(['vwap', 'revision', 'trade_count', 'deleted']);
const REQUIRED = ['symbol', 'timestamp', 'open', 'high', 'low', 'close', 'volume'];
const NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * A CSV row as the message it stands for: numbers where the text is a number, epoch milliseconds where
 * the timestamp is all digits, true/false for `deleted` (and boolean extra columns), null for an empty
 * optional cell; anything else stays text (and the contract names it: "open must be a number, got a
 * string …"). The extra columns (BARS_EXTRA_COLUMNS) are read by their type: a text column as it is.
 */
function csvObject(
  columns: Map<string, number>,
  fields: string[],
  extras: readonly ExtraColumn[],
): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const name of CSV_FIELDS) {
    const at = columns.get(name);
    if (at === undefined) continue;
    const raw = fields[at];
    if (raw === undefined || raw === '') {
      if (NULLABLE.has(name)) o[name] = null;
      continue;
    }
    if (name === 'symbol') o[name] = raw;
    else if (name === 'timestamp') o[name] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
    else if (name === 'deleted') o[name] = booleanCell(raw);
    else o[name] = NUMBER.test(raw) ? Number(raw) : raw;
  }
  for (const c of extras) {
    const at = columns.get(c.name);
    if (at === undefined) continue;
    const raw = fields[at];
    if (raw === undefined || raw === '') o[c.name] = null;
    else if (c.type === 'text') o[c.name] = raw;
    else if (c.type === 'boolean') o[c.name] = booleanCell(raw);
    else o[c.name] = NUMBER.test(raw) ? Number(raw) : raw;
  }
  return o;
}

/** true / false (any case) as booleans; anything else stays text, for the contract to name. */
function booleanCell(raw: string): boolean | string {
  const v = raw.trim().toLowerCase();
  return v === 'true' ? true : v === 'false' ? false : raw;
}

interface Rejected {
  file: string;
  line: number;
  reason: string;
  detail: string;
  text: string;
}

class Progress {
  private last: number;
  constructor(
    private readonly io: Io,
    private readonly started: number,
    private readonly total: number | null,
  ) {
    this.last = started;
  }

  show(rows: number, bytes: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < (this.io.tty ? 250 : 5000)) return;
    this.last = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = rows / seconds;
    let text = `backfill: ${rows.toLocaleString('en-US')} rows, ${Math.round(rate).toLocaleString('en-US')} rows/s`;
    if (this.total) {
      const share = Math.min(1, bytes / this.total);
      const eta = share > 0 ? (seconds / share) * (1 - share) : 0;
      text += `, ${mib(bytes)} of ${mib(this.total)} MiB (${Math.round(share * 100)}%), ETA ${clock(eta)}`;
      if (this.io.tty) {
        const width = 24;
        const filled = Math.round(share * width);
        text = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`;
      }
    } else {
      text += `, ${mib(bytes)} MiB read`;
    }
    if (this.io.tty) process.stderr.write(`\r${text}\u001b[K`);
    else this.io.err(text);
  }

  done(): void {
    if (this.io.tty) process.stderr.write('\n');
  }
}

const mib = (b: number) => (b / 1048576).toFixed(1);
const clock = (s: number) => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, '0')}`;

interface Totals {
  read: number;
  written: number;
  /** Rows of bars_1m the file's deletes removed. */
  deleted: number;
  /** Delete rows read (valid). */
  deletes: number;
  rejected: Map<string, number>;
  minMs: number;
  maxMs: number;
}

/**
 * The time part of the load's versions (docs/contract.md "Which version wins"): 0 by default, the oldest there
 * is, so a backfill fills what Kafka has not delivered and never replaces a bar Kafka delivered at the
 * same revision (a live correction); `now`, or a time, to make the file win over what is older.
 */
function versionTime(value: string | undefined): number {
  if (value === undefined) return 0;
  if (value === 'now') return Date.now();
  const ms = instant('version-time', value)!;
  if (ms < 0 || ms > Date.now() + 3_600_000) {
    throw new UsageError('--version-time must lie between 1970 and an hour from now (or be "now")');
  }
  return ms;
}

async function run(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, {
    format: { type: 'string' },
    rejects: { type: 'string' },
    batch: { type: 'string' },
    'no-refresh': { type: 'boolean' },
    'version-time': { type: 'string' },
  });
  if (positionals.length === 0) throw new UsageError('name at least one FILE (or - for stdin)');
  if (values.format !== undefined && values.format !== 'csv' && values.format !== 'jsonl') {
    throw new UsageError(`--format must be csv or jsonl, got "${values.format}"`);
  }
  const batchSize = positiveInt('batch', values.batch, 10_000);
  const versionTimeMs = versionTime(values['version-time']);
  const formats = positionals.map((f) => formatOf(f, values.format as Format | undefined));
  // The configuration first, like every command: a setting that does not parse is named before a file.
  const cfg = config();
  for (const f of positionals) {
    if (f !== '-' && !fs.existsSync(f)) throw new UsageError(`${f}: no such file`);
  }
  const pool = createPool(
    { ...cfg.db, maxConnections: 2, maxIdleConnections: 2, statementTimeoutMs: 0 },
    'bar-writer-backfill',
  );
  const rejectsPath =
    values.rejects ??
    `${path.basename(positionals[0] === '-' ? 'stdin' : positionals[0]!).replace(/\.gz$/, '')}.rejects.jsonl`;
  let rejectsOut: fs.WriteStream | null = null;
  const reject = (r: Rejected) => {
    rejectsOut ??= fs.createWriteStream(rejectsPath, { flags: 'w' });
    rejectsOut.write(JSON.stringify(r) + '\n');
    totals.rejected.set(r.reason, (totals.rejected.get(r.reason) ?? 0) + 1);
  };
  const totals: Totals = {
    read: 0,
    written: 0,
    deleted: 0,
    deletes: 0,
    rejected: new Map(),
    minMs: Infinity,
    maxMs: -Infinity,
  };
  const extras = cfg.write.extraColumns;
  const decoder = new BarDecoder(extras);
  const started = Date.now();
  let ordinal = 0n;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  const flush = async (rows: LoadedBar[]) => {
    if (rows.length === 0) return;
    const p = withConnection(pool, (c) => writeBars(c, cfg.db.schema, rows, { extras }))
      .then((r) => {
        totals.written += r.rowsChanged;
        totals.deleted += r.rowsDeleted;
      })
      .catch((err: unknown) => void (failure ??= err))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 2) await Promise.race(inFlight);
    if (failure) throw failure;
  };
  try {
    const totalBytes = positionals.every((f) => f !== '-')
      ? positionals.reduce((n, f) => n + fs.statSync(f).size, 0)
      : null;
    const progress = new Progress(io, started, totalBytes);
    let bytesBefore = 0;
    for (const [k, file] of positionals.entries()) {
      const raw: Readable = file === '-' ? process.stdin : fs.createReadStream(file);
      let bytes = 0;
      raw.on('data', (chunk: Buffer) => (bytes += chunk.length));
      const input = file.endsWith('.gz') ? raw.pipe(zlib.createGunzip()) : raw;
      const name = file === '-' ? 'stdin' : file;
      let columns: Map<string, number> | null = null;
      let batch: LoadedBar[] = [];
      const now = Date.now();
      for await (const record of readRecords(input, formats[k] === 'csv' ? 'csv' : 'lines')) {
        if (formats[k] === 'csv' && columns === null) {
          columns = header(record, name);
          continue;
        }
        if (record.refusal === null && record.text.trim() === '') continue;
        totals.read++;
        let result: DecodeResult | { ok: false; rejection: Refusal };
        if (record.refusal !== null) {
          result = { ok: false, rejection: record.refusal };
        } else if (formats[k] === 'jsonl') {
          result = decoder.decode(Buffer.from(record.text, 'utf8'), now, cfg.write.minTimestampMs);
        } else {
          result = decoder.validate(
            csvObject(columns!, record.fields!, extras),
            now,
            cfg.write.minTimestampMs,
          );
        }
        if (!result.ok) {
          reject({
            file: name,
            line: record.line,
            reason: result.rejection.reason,
            detail: result.rejection.detail,
            text: record.text,
          });
          continue;
        }
        track(totals, result.bar);
        if (result.bar.deleted) totals.deletes++;
        batch.push({ bar: result.bar, recordTimeMs: versionTimeMs, ordinal: ordinal++ });
        if (batch.length >= batchSize) {
          await flush(batch);
          batch = [];
        }
        progress.show(totals.read, bytesBefore + bytes);
      }
      await flush(batch);
      bytesBefore += bytes;
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    progress.show(totals.read, bytesBefore, true);
    progress.done();
  } catch (err) {
    await Promise.allSettled(inFlight);
    await closeRejects(rejectsOut);
    await pool.end().catch(() => undefined);
    throw err;
  }
  await closeRejects(rejectsOut);
  const refreshed =
    values['no-refresh'] || totals.written + totals.deleted === 0
      ? null
      : await refreshAggregates(pool, cfg.db.schema, totals, io);
  await pool.end().catch(() => undefined);
  const seconds = (Date.now() - started) / 1000;
  const rejected = [...totals.rejected.values()].reduce((a, b) => a + b, 0);
  const deletes = totals.deletes > 0 ? `, deleted ${totals.deleted} (of ${totals.deletes} deletes)` : '';
  io.out(
    `backfill: read ${totals.read}, written ${totals.written}${deletes}, ` +
      `unchanged ${totals.read - rejected - totals.written - totals.deletes}, ` +
      `rejected ${rejected}, ${seconds.toFixed(1)} s (${Math.round(totals.read / Math.max(seconds, 0.001))} rows/s)`,
  );
  if (rejected > 0) {
    io.out(
      `backfill: rejected by reason: ${[...totals.rejected].map(([r, n]) => `${r} ${n}`).join(', ')}; rows in ${rejectsPath}`,
    );
  }
  if (refreshed) io.out(`backfill: ${refreshed}`);
  return rejected > 0 ? EXIT.finding : EXIT.ok;
}

function formatOf(file: string, given: Format | undefined): Format {
  if (given) return given;
  const base = file.replace(/\.gz$/, '');
  if (base.endsWith('.csv')) return 'csv';
  if (base.endsWith('.jsonl') || base.endsWith('.ndjson')) return 'jsonl';
  throw new UsageError(`${file}: cannot tell the format from its name; add --format csv or --format jsonl`);
}

function header(record: FileRecord, file: string): Map<string, number> {
  const names = (record.fields ?? []).map((n) => n.trim().toLowerCase());
  const columns = new Map<string, number>();
  names.forEach((n, i) => {
    if (!columns.has(n)) columns.set(n, i);
  });
  const missing = REQUIRED.filter((n) => !columns.has(n));
  if (missing.length > 0) {
    throw new Error(
      `${file}: the CSV header names no ${missing.join(', ')} column (found: ${names.join(', ')})`,
    );
  }
  return columns;
}

function track(t: Totals, bar: Bar): void {
  if (bar.timestampMs < t.minMs) t.minMs = bar.timestampMs;
  if (bar.timestampMs > t.maxMs) t.maxMs = bar.timestampMs;
}

function closeRejects(out: fs.WriteStream | null): Promise<void> {
  return out ? new Promise((resolve) => out.end(resolve)) : Promise.resolve();
}

/** Refreshes every continuous aggregate of bars_1m over the range loaded; a note, or null without any. */
async function refreshAggregates(pool: Pool, schema: string, t: Totals, io: Io): Promise<string | null> {
  // No TimescaleDB, or the aggregates cannot be listed: nothing to refresh (as before: no note).
  const timescale = await timescaleSchema(pool).catch(() => null);
  const views = timescale === null ? [] : await continuousAggregates(pool, schema).catch(() => []);
  if (timescale === null || views.length === 0) return null;
  const from = new Date(t.minMs - 2 * 86_400_000).toISOString();
  const to = new Date(t.maxMs + 2 * 86_400_000).toISOString();
  try {
    await withConnection(pool, async (client) => {
      for (const v of views) await refreshContinuousAggregate(client, timescale, schema, v.view, from, to);
    });
  } catch (err) {
    io.err(
      `backfill: warning: the aggregates were not refreshed (${oneLine(err)}); their policies will at their next run`,
    );
    return null;
  }
  return `refreshed ${views.map((v) => v.view).join(', ')} from ${from.slice(0, 10)} to ${to.slice(0, 10)}`;
}

export const backfillCommand: Command = {
  summary: 'load bars from CSV or JSON-lines files (plain or .gz) through the contract and the write path',
  help: `Usage: bar-writer backfill [--format csv|jsonl] [--rejects FILE] [--batch N] [--version-time T|now] [--no-refresh] FILE…

Loads bars from files (- for stdin; .gz is decompressed) into bars_1m of DB_SCHEMA, through the same
validation as a Kafka message (BARS_MIN_TIMESTAMP included) and the same COPY → staging → upsert write
path, streamed in transactions of --batch rows (default 10000).

  csv    a header line naming the columns symbol,timestamp,open,high,low,close,volume (vwap,
         revision, trade_count, deleted and the BARS_EXTRA_COLUMNS optional; any order; other columns
         ignored); timestamp ISO-8601 with a zone or epoch milliseconds; an empty optional cell is
         null; deleted true makes the row a delete (its prices may be empty); RFC 4180 quoting (""
         for a quote, a quoted field may hold commas and line breaks)
  jsonl  one message value (the Kafka contract's JSON object, deletes included) per line
A record (a CSV record, a JSON line) longer than 1 MiB is rejected (record_too_long).
The format comes from the file name (.csv, .jsonl, .ndjson, with or without .gz) or --format.

Versions (docs/contract.md "Which version wins"): a row's version is (its revision column or 0, --version-time,
its ordinal in the load). --version-time defaults to 0, the oldest: the load fills what Kafka has not
delivered and never replaces a bar Kafka delivered at the same revision (a live correction), while any
later Kafka message replaces what it loaded; the later line of the input wins for a key; running the
same file again writes nothing. --version-time now (or an ISO-8601 time with a zone, or epoch ms) makes
the file win over every stored version of its revision that is older. Rows the contract refuses go to the rejects
file (JSON lines: file, line, reason, detail, text; default <first file>.rejects.jsonl) and do not stop
the load. Afterwards the continuous aggregates are refreshed over the range loaded (--no-refresh: let
their policies do it).

Progress on stderr (a bar on a terminal), a summary on stdout: read, written, unchanged, rejected.
Exit: 0 everything loaded; 3 loaded, some rows rejected; 1 failed; 2 invalid usage or configuration.`,
  run: (args, io) => guarded('backfill', io, () => run(args, io)),
};
