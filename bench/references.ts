/**
 * The two references bench:e2e measures the service against, in the same run (issue: CPU per bar
 * within 2x of the bare client, drain at least 0.7x the leanest psql load):
 *
 * - the bare client: bench/bare-consumer.ts, a kafkajs eachBatch consumer that only JSON.parses every
 *   message of the same topic (a fresh group): its CPU per message after start-up;
 * - the lean psql load: the rows the service wrote, exported as CSV, loaded by one psql process into
 *   a fresh schema made like the service's (plain table or hypertable): `\copy` into a temporary table,
 *   then one `INSERT … ON CONFLICT DO UPDATE`, one transaction; wall seconds from psql's spawn to its exit.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { ident } from '../src/store/pool';
import { uniqueName } from '../test/support/common';
import { type Cleanup } from './cleanup';
import { KAFKA_BROKERS, REPO } from './env';
import {
  createBenchSchema,
  leanLoadScript,
  psqlArgs,
  runTimed,
  startAtCheckpoint,
  walBytesSince,
} from './postgres';
import { log, round } from './report';

export interface BareResult {
  messages: number;
  cpuSeconds: number;
  usPerMessage: number;
  wallSeconds: number;
}

/** The bare client over the whole topic (`ends`: the log end of each partition), in a fresh group. */
export async function bareConsumerPass(o: {
  topic: string;
  ends: Map<number, bigint>;
  groups: string[];
}): Promise<BareResult> {
  const group = uniqueName('bench_bare');
  o.groups.push(group);
  log(`bare kafkajs + JSON.parse consumer (group ${group})`);
  const env = {
    ...process.env,
    BARE_BROKERS: KAFKA_BROKERS,
    BARE_TOPIC: o.topic,
    BARE_GROUP: group,
    BARE_ENDS: JSON.stringify(Object.fromEntries([...o.ends].map(([p, e]) => [String(p), e.toString()]))),
  };
  const r = await runTimed(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'bench', 'bare-consumer.ts')],
    env,
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const out = JSON.parse(line) as { messages: number; cpuSeconds: number };
  const total = Number([...o.ends.values()].reduce((a, b) => a + b, 0n));
  if (out.messages !== total)
    throw new Error(`the bare consumer read ${out.messages} messages, expected ${total}`);
  const result = {
    messages: out.messages,
    cpuSeconds: round(out.cpuSeconds, 3),
    usPerMessage: round((out.cpuSeconds * 1e6) / out.messages, 2),
    wallSeconds: round(r.seconds, 2),
  };
  log(
    `  bare: ${result.usPerMessage} µs CPU per message (${result.cpuSeconds} s), ${result.wallSeconds} s wall`,
  );
  return result;
}

export interface PsqlResult {
  rows: number;
  seconds: number;
  barsPerSecond: number;
  /** WAL the server wrote during the load (which starts at a fresh checkpoint), MiB. */
  walMiB: number;
  /** CPU seconds of the load's PostgreSQL backend (its /proc/self/stat, read at the end; null if refused). */
  backendCpuSeconds: number | null;
}

/** user + system CPU seconds from a /proc/<pid>/stat line (fields 14 and 15, in clock ticks of 1/100 s). */
function statCpuSeconds(stat: string): number | null {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [utime, stime] = [Number(fields[11]), Number(fields[12])];
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / 100 : null;
}

/** The lean psql load of the rows of `fromSchema`.bars_1m into a fresh schema (dropped at cleanup). */
export async function leanPsqlLoad(o: {
  pool: pg.Pool;
  cleanup: Cleanup;
  fromSchema: string;
}): Promise<PsqlResult> {
  const file = path.join(os.tmpdir(), `${uniqueName('bench_lean')}.csv`);
  o.cleanup.add('remove the lean CSV file', async () => fs.rmSync(file, { force: true }));
  const columns = 'symbol, "timestamp", open, high, low, close, volume, vwap';
  await runTimed(
    'psql',
    psqlArgs(
      '-q',
      '-c',
      `\\copy (SELECT ${columns} FROM ${ident(o.fromSchema)}.bars_1m) TO '${file}' WITH (FORMAT csv)`,
    ),
  );
  const schema = uniqueName('bench_lean');
  await createBenchSchema(o.pool, o.cleanup, schema);
  const script = `${file}.sql`;
  o.cleanup.add('remove the lean psql script', async () => fs.rmSync(script, { force: true }));
  // Last, the backend's own CPU (pg_read_file: a superuser or pg_read_server_files; else no figure).
  const cpuQuery = `\\set ON_ERROR_STOP 0\nSELECT 'backend-stat ' || pg_read_file('/proc/self/stat');\n`;
  fs.writeFileSync(script, leanLoadScript(file, schema, false) + cpuQuery);
  log('lean psql reference: \\copy into a temporary table + one INSERT … ON CONFLICT DO UPDATE');
  const walStart = await startAtCheckpoint(o.pool);
  const r = await runTimed('psql', psqlArgs('-q', '-At', '-f', script));
  const stat = /^backend-stat (.*)$/m.exec(r.stdout);
  const backendCpuSeconds = stat ? statCpuSeconds(stat[1]!) : null;
  const walMiB = round((await walBytesSince(o.pool, walStart)) / 2 ** 20, 1);
  const rows = Number(
    (await o.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ident(schema)}.bars_1m`)).rows[0]!
      .n,
  );
  const result = {
    rows,
    seconds: round(r.seconds, 3),
    barsPerSecond: round(rows / r.seconds),
    walMiB,
    backendCpuSeconds,
  };
  log(
    `  lean psql: ${rows} rows in ${result.seconds} s (${result.barsPerSecond} bars/s), WAL ${walMiB} MiB, ` +
      `its backend ${backendCpuSeconds ?? '?'} CPU s`,
  );
  return result;
}
