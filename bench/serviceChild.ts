/**
 * The service as a child process: built, configured through its environment, spawned by pid (node
 * directly, not npm) and stopped at cleanup.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sleep, uniqueName } from '../test/support/common';
import type { Cleanup } from './cleanup';
import { envFlag, KAFKA_BROKERS, PG, REPO } from './env';
import { processCpuSeconds } from './procfs';
import { log, nowMs } from './report';

/** `npm run build` (tsc into dist/), unless BENCH_NO_BUILD=1. */
export function buildService(): void {
  if (envFlag('BENCH_NO_BUILD')) {
    log('BENCH_NO_BUILD=1: using the existing dist/');
  } else {
    log('npm run build');
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: REPO, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status ?? r.signal})`);
  }
  if (!fs.existsSync(path.join(REPO, 'dist', 'main.js'))) throw new Error('dist/main.js is missing');
}

/**
 * Extra service settings for experiments, BENCH_SERVICE_ENV="BARS_DB_WRITE_QUEUE_SIZE=20000,KAFKA_MAX_WAIT=100ms".
 * Empty by default: the benchmarks measure the default configuration.
 */
export function serviceOverrides(): Record<string, string> {
  return parsePairs(process.env.BENCH_SERVICE_ENV ?? '', 'BENCH_SERVICE_ENV');
}

/** `NAME=value,NAME=value` (a value may hold `=`); `source` names the variable in errors. */
export function parsePairs(raw: string, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`${source}: "${pair}" is not NAME=value`);
    out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

/** "default config", or the overrides in effect. */
export function configText(): string {
  const o = process.env.BENCH_SERVICE_ENV?.trim();
  return o ? `service overrides ${o}` : 'default config';
}

/** The service's environment, like test/support/harness.ts env(), with the default write config. */
export function serviceEnv(o: {
  schema: string;
  topic: string;
  group: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    DB_HOST: PG.host,
    DB_PORT: String(PG.port),
    DB_USER: PG.user,
    DB_NAME: PG.database,
    DB_SCHEMA: o.schema,
    KAFKA_BROKERS,
    KAFKA_TOPIC: o.topic,
    KAFKA_DLQ_TOPIC: `${o.topic}.dlq`,
    KAFKA_GROUP_ID: o.group,
    KAFKA_CLIENT_ID: uniqueName('bw_bench'),
    HTTP_PORT: '0',
    LOG_LEVEL: 'info',
    ...serviceOverrides(),
    ...o.extra,
  };
}

export interface ServiceChild {
  child: ChildProcess;
  pid: number;
  spawnedAt: number;
  /** performance.now() when the service logged its partition assignment (null: not yet). */
  assignedAt: () => number | null;
  /**
   * The service's CPU seconds when it logged "starting bar-writer" (its modules loaded and its
   * configuration read): what the bare client's "after start-up" leaves out too (null: not yet).
   */
  cpuAtStart: () => number | null;
  httpPort: () => number | null;
  tail: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (graceful drain), SIGKILL after `graceMs`. Resolves on exit. */
  stop: (graceMs?: number) => Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The node flags of `npm start` (package.json `scripts.start`: `node [flags] dist/main.js`). */
function startNodeFlags(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  return pkg.scripts.start.split(/\s+/).filter((a) => a.startsWith('--'));
}

/**
 * Spawns `node [npm start's flags] [nodeArgs] dist/main.js` (node directly, not npm, so its pid is
 * the service's); it is stopped by pid at cleanup if still running.
 */
export function spawnService(
  env: Record<string, string>,
  cleanup: Cleanup,
  nodeArgs: string[] = [],
): ServiceChild {
  const spawnedAt = nowMs();
  const args = [...startNodeFlags(), ...nodeArgs, path.join(REPO, 'dist', 'main.js')];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not spawn the service');
  const pid = child.pid;
  const lines: string[] = [];
  let assignedAt: number | null = null;
  let cpuAtStart: number | null = null;
  let httpPort: number | null = null;
  let partial = '';
  // BENCH_SERVICE_LOG=file: every line the service prints, appended (with LOG_LEVEL=trace in
  // BENCH_SERVICE_ENV: each flush with its reason and size, each pause).
  const logFile = process.env.BENCH_SERVICE_LOG;
  const onData = (d: Buffer) => {
    if (logFile) fs.appendFileSync(logFile, d);
    partial += d.toString();
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      lines.push(line);
      if (lines.length > 200) lines.shift();
      if (cpuAtStart === null && line.includes('"starting bar-writer"')) cpuAtStart = processCpuSeconds(pid);
      if (assignedAt === null && line.includes('"partitions assigned"')) assignedAt = nowMs();
      if (httpPort === null && line.includes('"http listening"')) {
        const m = /"port":(\d+)/.exec(line);
        if (m) httpPort = Number(m[1]);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const stop = async (graceMs = 30_000) => {
    if (alive()) {
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (alive()) process.kill(pid, 'SIGKILL');
      }, graceMs);
      const r = await exited;
      clearTimeout(timer);
      return r;
    }
    return exited;
  };
  cleanup.add(`stop service pid ${pid}`, async () => {
    // After a Ctrl-C the child got the SIGINT too and is draining: a SIGTERM now would be its second
    // signal (exit at once, without leaving the group). Give it time to finish first.
    if (cleanup.interrupted && alive()) await Promise.race([exited, sleep(15_000)]);
    return stop(10_000);
  });
  return {
    child,
    pid,
    spawnedAt,
    assignedAt: () => assignedAt,
    cpuAtStart: () => cpuAtStart,
    httpPort: () => httpPort,
    tail: () => lines.slice(-40).join('\n'),
    exited,
    stop,
  };
}
