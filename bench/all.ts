/**
 * npm run bench — bench:write, then bench:e2e, then bench:bursts (and bench:backlog with
 * BENCH_WITH_BACKLOG=1), one after the other under one BENCH_RUN_ID so their figures are compared with
 * each other, then the summary table. The service is built once, first.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO, buildService, log, uniqueName } from './lib';
import { printSummary } from './summary';

async function main(): Promise<number> {
  const runId = process.env.BENCH_RUN_ID ?? uniqueName('run');
  buildService();
  const scripts = [
    'write-path',
    'e2e',
    'bursts',
    ...(process.env.BENCH_WITH_BACKLOG === '1' ? ['backlog'] : []),
  ];
  let interrupted = false;
  // Ctrl-C reaches the running benchmark too (same process group): it cleans up; we stop after it.
  process.on('SIGINT', () => (interrupted = true));
  process.on('SIGTERM', () => (interrupted = true));
  const failed: string[] = [];
  for (const name of scripts) {
    if (interrupted) break;
    log(`==== bench:${name} (run ${runId}) ====`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        // node --import tsx, not the tsx CLI: that one SIGKILLs its child 30 ms after relaying a
        // Ctrl-C, which would cut the benchmark's cleanup short.
        process.execPath,
        ['--import', 'tsx', path.join(REPO, 'bench', `${name}.ts`)],
        {
          cwd: REPO,
          stdio: 'inherit',
          env: { ...process.env, BENCH_RUN_ID: runId, BENCH_NO_BUILD: '1' },
        },
      );
      child.on('exit', (c, s) => resolve(c ?? (s ? 128 : 1)));
    });
    if (code !== 0) failed.push(name);
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
