/**
 * Where the benchmarks run: the repository, the broker and the PostgreSQL target of this run, and the
 * BENCH_* settings read from the environment.
 */
import path from 'node:path';

export const REPO = path.resolve(__dirname, '..');

export const KAFKA_BROKERS = process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092';
export const KAFKA_VERSION = process.env.BENCH_KAFKA_VERSION ?? '4.4.0';
/**
 * Where bars_1m lives for this run: `plain` (a table on plain PostgreSQL, BENCH_PG_*) or `timescaledb`
 * (a hypertable with every migration, BENCH_TSDB_*: scripts/timescaledb.sh start gives one on 55432).
 * bench/all.ts runs the write path and the e2e drain on both, side by side; figures of the
 * `timescaledb` target are saved as "<section>@timescaledb".
 */
export const TARGET: 'plain' | 'timescaledb' =
  process.env.BENCH_TARGET === 'timescaledb' ? 'timescaledb' : 'plain';
const PREFIX = TARGET === 'timescaledb' ? 'BENCH_TSDB' : 'BENCH_PG';
export const PG = {
  host: process.env[`${PREFIX}_HOST`] ?? '127.0.0.1',
  port: Number(process.env[`${PREFIX}_PORT`] ?? (TARGET === 'timescaledb' ? 55432 : 5432)),
  user: process.env[`${PREFIX}_USER`] ?? 'postgres',
  database: process.env[`${PREFIX}_DATABASE`] ?? 'test',
};

/** An integer setting: positive, or from `min` when given (0 where 0 means "none"). */
export function envInt(name: string, def: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < min) {
    throw new Error(
      `${name} must be ${min === 1 ? 'a positive integer' : `an integer from ${min}`}, got "${raw}"`,
    );
  }
  return n;
}

export function envFlag(name: string): boolean {
  const v = process.env[name];
  return v === '1' || v === 'true';
}
