/**
 * npm run bench — bench:write and bench:e2e on each target of BENCH_TARGETS (default: plain PostgreSQL,
 * then a TimescaleDB hypertable when one answers on BENCH_TSDB_*), then bench:bursts (and bench:backlog
 * with BENCH_WITH_BACKLOG=1) on plain PostgreSQL, one after the other under one BENCH_RUN_ID so their
 * figures are compared with each other, then the summary table. The service is built once, first.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { uniqueName } from '../test/support/common';
import { REPO } from './env';
import { log } from './report';
import { buildService } from './serviceChild';
import { printSummary } from './summary';

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 2000 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
  });
}

async function targets(): Promise<string[]> {
  if (process.env.BENCH_TARGETS) return process.env.BENCH_TARGETS.split(',').map((t) => t.trim());
  const host = process.env.BENCH_TSDB_HOST ?? '127.0.0.1';
  const port = Number(process.env.BENCH_TSDB_PORT ?? 55432);
  if (await answers(host, port)) return ['plain', 'timescaledb'];
  log(`no TimescaleDB on ${host}:${port} (scripts/timescaledb.sh start): plain PostgreSQL only`);
  return ['plain'];
}

async function main(): Promise<number> {
  const runId = process.env.BENCH_RUN_ID ?? uniqueName('run');
  buildService();
  const scripts: [string, string][] = [
    ...(await targets()).flatMap((t): [string, string][] => [
      ['write-path', t],
      ['e2e', t],
    ]),
    ['bursts', 'plain'],
    ...(process.env.BENCH_WITH_BACKLOG === '1' ? [['backlog', 'plain'] as [string, string]] : []),
  ];
  let interrupted = false;
  // Ctrl-C reaches the running benchmark too (same process group): it cleans up; we stop after it.
  process.on('SIGINT', () => (interrupted = true));
  process.on('SIGTERM', () => (interrupted = true));
  const failed: string[] = [];
  for (const [name, target] of scripts) {
    if (interrupted) break;
    log(`==== bench:${name} on ${target} (run ${runId}) ====`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        // node --import tsx, not the tsx CLI: that one SIGKILLs its child 30 ms after relaying a
        // Ctrl-C, which would cut the benchmark's cleanup short.
        process.execPath,
        ['--import', 'tsx', path.join(REPO, 'bench', `${name}.ts`)],
        {
          cwd: REPO,
          stdio: 'inherit',
          env: { ...process.env, BENCH_RUN_ID: runId, BENCH_NO_BUILD: '1', BENCH_TARGET: target },
        },
      );
      child.on('exit', (c, s) => resolve(c ?? (s ? 128 : 1)));
    });
    if (code !== 0) failed.push(`${name} (${target})`);
  }
  printSummary(runId);
  if (failed.length > 0) log(`failed: ${failed.join(', ')}`);
  return failed.length > 0 || interrupted ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    log(`bench failed: ${String(err)}`);
    process.exit(1);
  },
);
