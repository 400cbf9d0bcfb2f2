/** bench/results/latest.json: one section per benchmark (and target), with the machine it ran on. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { uniqueName } from '../test/support/common';
import { KAFKA_VERSION, REPO, TARGET } from './env';
import { log, round } from './report';
import { serviceOverrides } from './serviceChild';

export const RESULTS_DIR = path.join(REPO, 'bench', 'results');
export const RESULTS_FILE = path.join(RESULTS_DIR, 'latest.json');

/** A results section of this run's target: "e2e", or "e2e@timescaledb". */
export function sectionName(base: string): string {
  return TARGET === 'timescaledb' ? `${base}@timescaledb` : base;
}

export async function machineInfo(pool: pg.Pool): Promise<Record<string, unknown>> {
  const pgVersion = (await pool.query<{ v: string }>('SELECT version() AS v')).rows[0]!.v;
  const settings = await pool.query<{ name: string; setting: string; unit: string | null }>(
    `SELECT name, setting, unit FROM pg_settings
     WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'fsync', 'wal_level', 'max_wal_size')`,
  );
  let git: Record<string, unknown>;
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO }).toString().trim();
    // --no-optional-locks: read-only, never refreshes the index.
    const dirty = execFileSync(
      'git',
      ['--no-optional-locks', 'status', '--porcelain', '--', 'src', 'migrations'],
      { cwd: REPO },
    )
      .toString()
      .trim();
    git = { head, srcDirty: dirty.length > 0 };
  } catch {
    git = { head: null };
  }
  return {
    nproc: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? null,
    memoryGiB: round(os.totalmem() / 2 ** 30, 1),
    loadAvgAtStart: os.loadavg().map((x) => round(x, 2)),
    node: process.version,
    postgres: pgVersion,
    postgresSettings: Object.fromEntries(
      settings.rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting]),
    ),
    kafka: KAFKA_VERSION,
    target: TARGET,
    git,
    serviceEnvOverrides: serviceOverrides(),
  };
}

export const RUN_ID = process.env.BENCH_RUN_ID ?? uniqueName('run');

/**
 * Replaces one section of bench/results/latest.json (other sections are kept), atomically. Runs with
 * BENCH_SERVICE_ENV overrides go to "<section>@<overrides>", so experiments never replace the
 * default-configuration figures.
 */
export function saveResult(baseSection: string, data: Record<string, unknown>): void {
  const overrides = process.env.BENCH_SERVICE_ENV?.trim();
  const section = overrides ? `${sectionName(baseSection)}@${overrides}` : sectionName(baseSection);
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  let all: Record<string, unknown>;
  try {
    all = JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8')) as Record<string, unknown>;
  } catch {
    all = {};
  }
  all[section] = { runId: RUN_ID, at: new Date().toISOString(), ...data };
  const tmp = `${RESULTS_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n');
  fs.renameSync(tmp, RESULTS_FILE);
  log(`results written to ${path.relative(REPO, RESULTS_FILE)} (${section})`);
}

export function loadResults(): Record<string, Record<string, unknown> | undefined> {
  try {
    return JSON.parse(fs.readFileSync(RESULTS_FILE, 'utf8')) as Record<string, Record<string, unknown>>;
  } catch {
    return {};
  }
}
