/**
 * bench:backfill — `bar-writer backfill` of a CSV file against the leanest load of the same file with
 * psql, side by side in one run, each into a fresh schema:
 *
 *   (p)  one psql process: a temporary table, `\copy … FROM file (FORMAT csv, HEADER)`, one
 *        `INSERT INTO bars_1m SELECT … ON CONFLICT (symbol, "timestamp") DO UPDATE`, COMMIT; timed from
 *        spawn to exit (no validation at all);
 *   (b)  `node dist/cli/main.js backfill --no-refresh FILE`, as operators run it: every row through the
 *        contract, batches of 10,000 through COPY → staging → upsert; timed from spawn to exit.
 *
 * BENCH_BACKFILL_ROWS rows (default 1,000,000; 2,000 symbols, minute by minute). Target: (b) ≥ 0.5 × (p).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ident } from '../src/store/pool';
import { uniqueName } from '../test/support/common';
import { makeBar } from './bars';
import { Cleanup, runMain } from './cleanup';
import { envInt, PG, REPO, TARGET } from './env';
import {
  createBenchSchema,
  leanLoadScript,
  newPool,
  psqlArgs,
  runTimed,
  startAtCheckpoint,
} from './postgres';
import { fmtInt, log, printTable, ratio, round } from './report';
import { saveResult } from './results';
import { buildService } from './serviceChild';

/** Wall seconds of `cmd` from spawn to exit. */
async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return (await runTimed(cmd, args, env)).seconds;
}

runMain('bench:backfill', async (cleanup: Cleanup) => {
  const total = envInt('BENCH_BACKFILL_ROWS', 1_000_000);
  const symbols = 2000;
  buildService();
  const pool = newPool(2);
  cleanup.add('pool end', () => pool.end());
  const file = path.join(os.tmpdir(), `${uniqueName('bench_backfill')}.csv`);
  cleanup.add('remove the CSV file', async () => fs.rmSync(file, { force: true }));
  log(`writing ${fmtInt(total)} rows to ${file}`);
  const out = fs.createWriteStream(file);
  out.write('symbol,timestamp,open,high,low,close,volume,vwap\n');
  for (let i = 0; i < total; i++) {
    const b = makeBar(i % symbols, Math.floor(i / symbols));
    if (
      !out.write(
        `${b.symbol},${new Date(b.timestampMs).toISOString()},${b.open},${b.high},${b.low},${b.close},${b.volume},${b.vwap ?? ''}\n`,
      )
    ) {
      await new Promise<void>((r) => out.once('drain', () => r()));
    }
  }
  await new Promise((r) => out.end(r));
  const mib = fs.statSync(file).size / 1048576;

  const pSchema = uniqueName('bench_bf_psql');
  await createBenchSchema(pool, cleanup, pSchema);
  const script = path.join(os.tmpdir(), `${pSchema}.sql`);
  cleanup.add('remove the psql script', async () => fs.rmSync(script, { force: true }));
  fs.writeFileSync(script, leanLoadScript(file, pSchema, true));
  log('(p) psql \\copy + upsert');
  await startAtCheckpoint(pool);
  const p = await timed('psql', psqlArgs('-q', '-f', script), process.env);

  const bSchema = uniqueName('bench_bf_cli');
  await createBenchSchema(pool, cleanup, bSchema);
  log('(b) bar-writer backfill');
  await startAtCheckpoint(pool);
  const b = await timed(
    process.execPath,
    [path.join(REPO, 'dist', 'cli', 'main.js'), 'backfill', '--no-refresh', file],
    {
      PATH: process.env.PATH ?? '',
      DB_HOST: PG.host,
      DB_PORT: String(PG.port),
      DB_USER: PG.user,
      DB_NAME: PG.database,
      DB_SCHEMA: bSchema,
    },
  );
  const count = async (schema: string) =>
    Number(
      (await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ident(schema)}.bars_1m`)).rows[0]!
        .n,
    );
  const [np, nb] = [await count(pSchema), await count(bSchema)];
  if (np !== total || nb !== total)
    throw new Error(`rows loaded: psql ${np}, backfill ${nb}, expected ${total}`);

  console.log('');
  console.log(
    `bench:backfill — ${fmtInt(total)} rows (${round(mib, 1)} MiB of CSV) into a fresh bars_1m on ${TARGET === 'timescaledb' ? 'a TimescaleDB hypertable' : 'plain PostgreSQL'}`,
  );
  printTable(
    [
      ['load', 'seconds', 'rows/s', '÷ (p)', ''],
      [
        '(p)',
        round(p, 2),
        fmtInt(total / p),
        '1.000',
        'psql: \\copy into a temporary table + one upsert (no validation)',
      ],
      [
        '(b)',
        round(b, 2),
        fmtInt(total / b),
        ratio(p, b).toFixed(3),
        'bar-writer backfill: the contract, COPY → staging → upsert per 10,000 rows',
      ],
    ],
    [0, 4],
  );
  console.log(`target: (b) ≥ 0.5 × (p): ${ratio(p, b) >= 0.5 ? 'MET' : 'NOT MET'}`);
  saveResult('backfill', {
    rows: total,
    mib: round(mib, 1),
    psql: { seconds: round(p, 3), rowsPerSecond: round(total / p) },
    backfill: { seconds: round(b, 3), rowsPerSecond: round(total / b) },
    backfillOverPsql: ratio(p, b),
  });
});
