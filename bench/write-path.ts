/**
 * bench:write — the database write path alone, every variant on the same bars, in the same database,
 * in the same run, each on a fresh empty bars_1m (its own schema, created by src/store/migrate.ts):
 *
 *   (a)  one INSERT … ON CONFLICT DO UPDATE per bar, autocommit (a subset: BENCH_SINGLE_BARS)
 *   (b)  multi-row INSERT … VALUES (…),(…) … ON CONFLICT DO UPDATE, 1,000 rows per statement, autocommit
 *   (c)  ours as the service writes a backlog: writeGroup() through withConnection(), the bars split
 *        over 6 partitions by symbol, BARS_DB_WRITE_CONCURRENCY (2) transactions in flight, each
 *        writing one 1,000-bar batch (BARS_DB_WRITE_BATCH_SIZE) of each of its 3 partitions
 *   (c1) ours, one partition, one 1,000-bar transaction at a time
 *   (c5k), (c10k) the same with 5,000 and 10,000 bars per transaction
 *   (c6) ours before grouping: 6 partitions, a 1,000-bar transaction each, all 6 concurrently
 *   (d)  the physical reference: one psql process: BEGIN; \copy staging FROM file; our upsert; COMMIT
 *   (dbin) what-if: (d) with the same rows as a binary COPY file (what the service sends)
 *   (e)  an identical replay of (c) (new group, so the fence lets every bar through): bars/s and the
 *        pg_stat_user_tables deltas (expected: no insert, no update, no dead tuple)
 *
 * Env: BENCH_BARS (100000), BENCH_SYMBOLS (2000), BENCH_SINGLE_BARS (10000), BENCH_ROUNDS (1; the
 * median of the rounds is reported).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config';
import type { Bar } from '../src/contract/bar';
import { BarSlabs, messageTimeOf, unpackBar } from '../src/contract/packedBar';
import { createPool, ident, withConnection, type PoolClient } from '../src/store/pool';
import { fingerprint } from '../src/offsets/fingerprint';
import { writeGroup, type BarAtOffset } from '../src/store/writeBatch';
import { stagedKeys } from '../src/store/stagedKeys';
import { CREATE_STAGING, STAGING, STAGING_COLUMN_LIST } from '../src/store/staging';
import { ROWS_CHANGED, writeSql } from '../src/store/writeSql';
import { encodeCopyBinary as encodeCopyRowsBinary, encodeCopyRows } from '../test/support/copyReference';
import { uniqueName } from '../test/support/common';
import { feedBar } from './bars';
import { Cleanup, runMain } from './cleanup';
import { envInt, PG } from './env';
import {
  createBenchSchema,
  dropSchema,
  newPool,
  psqlArgs,
  settledStats,
  statsDelta,
  type TableStats,
  walBytesSince,
  walLsn,
} from './postgres';
import { fmtInt, log, nowMs, printTable, ratio, round } from './report';
import { machineInfo, saveResult } from './results';

interface VariantResult {
  key: string;
  label: string;
  bars: number;
  seconds: number;
  barsPerSecond: number;
  /** WAL written by the whole instance meanwhile (other sessions included). */
  walBytes: number;
  rowsChanged?: number;
  detail?: Record<string, unknown>;
}

const COLUMNS = '(symbol, "timestamp", open, high, low, close, volume, vwap)';

function barParams(b: Bar): unknown[] {
  return [b.symbol, new Date(b.timestampMs).toISOString(), b.open, b.high, b.low, b.close, b.volume, b.vwap];
}

/** Our upsert's ON CONFLICT clause, taken from writeSql() so every variant resolves conflicts alike. */
function onConflictClause(schema: string): string {
  return writeSql(schema).onConflict;
}

/** Record timestamps of the bars (any fixed instant: the write path only compares them). */
const BENCH_RECORD_MS = Date.UTC(2026, 10, 24, 15);

runMain('bench:write', async (cleanup: Cleanup) => {
  const total = envInt('BENCH_BARS', 100_000);
  const symbols = envInt('BENCH_SYMBOLS', 2000);
  const singleBars = Math.min(total, envInt('BENCH_SINGLE_BARS', 10_000));
  const rounds = envInt('BENCH_ROUNDS', 1);
  const base = uniqueName('bench');
  const appName = uniqueName('bwbench_w');

  const admin = newPool(3);
  cleanup.add('admin pool end', () => admin.end());
  const machine = await machineInfo(admin);

  const db = loadConfig({
    DB_HOST: PG.host,
    DB_PORT: String(PG.port),
    DB_USER: PG.user,
    DB_NAME: PG.database,
  }).db;
  let pool = createPool(db, appName);
  cleanup.add('write pool end', () => pool.end().catch(() => undefined));
  /** Closes every write connection (so their table statistics are flushed) and opens a new pool. */
  const recyclePool = async (): Promise<void> => {
    await pool.end();
    pool = createPool(db, appName);
  };

  log(`generating ${fmtInt(total)} bars (${symbols} symbols × ${Math.ceil(total / symbols)} minutes)`);
  const bars: Bar[] = Array.from({ length: total }, (_, i) => feedBar(i, symbols));

  const schemas: string[] = [];
  const freshSchema = async (tag: string): Promise<string> => {
    const schema = `${base}_${tag}`;
    schemas.push(schema);
    await createBenchSchema(admin, cleanup, schema);
    return schema;
  };

  const timed = async (
    key: string,
    label: string,
    n: number,
    fn: () => Promise<Partial<VariantResult> | void>,
  ): Promise<VariantResult> => {
    const lsn = await walLsn(admin);
    const t0 = nowMs();
    const extra = (await fn()) ?? {};
    const seconds = (nowMs() - t0) / 1000;
    const walBytes = await walBytesSince(admin, lsn);
    const r: VariantResult = { key, label, bars: n, seconds, barsPerSecond: n / seconds, walBytes, ...extra };
    log(`  ${key.padEnd(6)} ${fmtInt(r.barsPerSecond).padStart(9)} bars/s  (${round(seconds, 3)} s)`);
    return r;
  };

  const checkRows = async (schema: string, expected: number): Promise<string> => {
    const r = await admin.query<{ n: string; fp: string }>(
      `SELECT count(*)::text AS n,
              md5(string_agg(symbol || extract(epoch FROM "timestamp") || open || high || low || close || volume
                             || coalesce(vwap::text, '-'), ',' ORDER BY symbol, "timestamp")) AS fp
       FROM ${ident(schema)}.bars_1m`,
    );
    const n = Number(r.rows[0]!.n);
    if (n !== expected) throw new Error(`${schema}.bars_1m holds ${n} rows, expected ${expected}`);
    return r.rows[0]!.fp;
  };

  // ---- the variants ----

  const single = async (schema: string, n: number): Promise<void> => {
    const text = `INSERT INTO ${ident(schema)}.bars_1m AS t ${COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
      ${onConflictClause(schema)}`;
    const client = await pool.connect();
    try {
      for (let i = 0; i < n; i++) {
        await client.query({ name: `a_${schema}`, text, values: barParams(bars[i]!) });
      }
    } finally {
      client.release();
    }
  };

  const multiRow = async (schema: string, n: number, rowsPer: number): Promise<void> => {
    const texts = new Map<number, string>();
    const textFor = (rows: number): string => {
      let t = texts.get(rows);
      if (!t) {
        const tuples: string[] = [];
        for (let r = 0; r < rows; r++) {
          const p = r * 8;
          tuples.push(`($${p + 1},$${p + 2},$${p + 3},$${p + 4},$${p + 5},$${p + 6},$${p + 7},$${p + 8})`);
        }
        t = `INSERT INTO ${ident(schema)}.bars_1m AS t ${COLUMNS} VALUES ${tuples.join(',')} ${onConflictClause(schema)}`;
        texts.set(rows, t);
      }
      return t;
    };
    const client = await pool.connect();
    try {
      for (let i = 0; i < n; i += rowsPer) {
        const chunk = bars.slice(i, Math.min(n, i + rowsPer));
        const values: unknown[] = [];
        for (const b of chunk) values.push(...barParams(b));
        await client.query({ name: `b_${chunk.length}_${schema}`, text: textFor(chunk.length), values });
      }
    } finally {
      client.release();
    }
  };

  /**
   * Our write path: `lanes` run concurrently, each a sequence of transactions; a transaction writes
   * the next `batchSize` bars of each partition of its lane (writeGroup, as a flush of the service
   * does). A partition belongs to one lane, so its transactions stay in offset order, as in the service.
   * `phases`, when given, gets the time of each round trip added (see timedClient).
   */
  const ours = async (
    schema: string,
    lanes: readonly (readonly BarAtOffset[])[][],
    batchSize: number,
    group: string,
    phases?: Record<string, number>,
  ): Promise<number> => {
    let changed = 0;
    await Promise.all(
      lanes.map(async (partitions, lane) => {
        const longest = Math.max(...partitions.map((es) => es.length));
        for (let i = 0; i < longest; i += batchSize) {
          const parts = partitions
            .map((es, k) => ({ partition: lane * 100 + k, entries: es.slice(i, i + batchSize) }))
            .filter((p) => p.entries.length > 0)
            .map((p) => {
              const last = p.entries[p.entries.length - 1]!;
              return {
                ...p,
                nextOffset: last.offset + 1n,
                lastFingerprint: fingerprint(
                  last.offset,
                  messageTimeOf(last),
                  JSON.stringify(unpackBar(last)),
                ),
              };
            });
          const r = await withConnection(pool, (client) =>
            writeGroup(phases ? timedClient(client, phases) : client, schema, group, 'bench', parts),
          );
          changed += r.rowsChanged;
        }
      }),
    );
    return changed;
  };
  /** A client whose query() adds the time of each round trip to `phases`, by kind of statement. */
  const timedClient = (client: PoolClient, phases: Record<string, number>): PoolClient => {
    const kind = (q: unknown): string => {
      const text = typeof q === 'string' ? q : ((q as { text?: string }).text ?? '');
      if (text.startsWith('BEGIN')) return 'the round trip: BEGIN; COPY; fences; upsert; COMMIT';
      return text.split(/\s/)[0] ?? 'other';
    };
    const add = (k: string, t0: number) => (phases[k] = (phases[k] ?? 0) + (nowMs() - t0));
    return new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver) as unknown;
        return (q: unknown, ...rest: unknown[]) => {
          const t0 = nowMs();
          const k = kind(q);
          const r = (target.query as (...a: unknown[]) => unknown)(q, ...rest);
          if (r && typeof (r as Promise<unknown>).then === 'function') {
            return (r as Promise<unknown>).finally(() => add(k, t0));
          }
          (r as NodeJS.EventEmitter).once('finish', () => add(k, t0)); // a COPY stream
          return r;
        };
      },
    });
  };
  // Record timestamps: one per bar, increasing, as a producer's would be.
  const recordTime = (i: number) => BENCH_RECORD_MS + i;
  const slabs = new BarSlabs();
  const allEntries: BarAtOffset[] = bars.map((bar, i) => slabs.packedAt(bar, recordTime(i), BigInt(i)));
  const partitionEntries: BarAtOffset[][] = Array.from({ length: 6 }, () => []);
  for (const bar of bars) {
    const p = Number(bar.symbol.slice(1)) % 6;
    const offset = partitionEntries[p]!.length;
    partitionEntries[p]!.push(slabs.packedAt(bar, recordTime(offset), BigInt(offset)));
  }
  const serviceConfig = loadConfig({});
  const concurrency = serviceConfig.write.concurrency;
  const batchSize = serviceConfig.write.batchSize;
  /** (c): the 6 partitions dealt over the flush slots, as the service's groups end up in a backlog. */
  const serviceLanes = Array.from({ length: concurrency }, (_, lane) =>
    partitionEntries.filter((_, p) => p % concurrency === lane),
  );
  const one = (entries: readonly BarAtOffset[]) => [[entries]];

  const copyFile = path.join(os.tmpdir(), `${base}.copy`);
  const binaryFile = path.join(os.tmpdir(), `${base}.bin`);
  const scriptFile = path.join(os.tmpdir(), `${base}.sql`);
  cleanup.add('remove psql files', async () => {
    for (const f of [copyFile, binaryFile, scriptFile]) fs.rmSync(f, { force: true });
  });
  // (d) stages the rows as the service does: with their origin (one partition, offsets in order).
  const origins = bars.map((_, i) => ({ partition: 0, offset: BigInt(i), recordTimeMs: recordTime(i) }));
  fs.writeFileSync(copyFile, encodeCopyRows(bars, origins));
  fs.writeFileSync(binaryFile, encodeCopyRowsBinary(bars, origins));

  const psqlRun = async (schema: string, binary = false): Promise<Partial<VariantResult>> => {
    const sql = writeSql(schema);
    fs.writeFileSync(
      scriptFile,
      [
        '\\timing on',
        `${CREATE_STAGING};`,
        'BEGIN;',
        binary
          ? `\\copy pg_temp.${STAGING} ${STAGING_COLUMN_LIST} FROM '${binaryFile}' WITH (FORMAT binary)`
          : `\\copy pg_temp.${STAGING} ${STAGING_COLUMN_LIST} FROM '${copyFile}'`,
        // The service's statements after its COPY, verbatim (writeSql()).
        `${sql.insertFences('psql', 'bench', [0])};`,
        `${sql.lockFences('psql', 'bench', [0])};`,
        `${sql.upsert('psql', 'bench', stagedKeys([allEntries]))};`,
        `${sql.advanceFences('psql', 'bench', [{ partition: 0, next: BigInt(bars.length), fingerprint: 'psql' }])};`,
        'COMMIT;',
        '',
      ].join('\n'),
    );
    const text = await new Promise<string>((resolve, reject) => {
      const p = spawn('psql', psqlArgs('-f', scriptFile), {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PGAPPNAME: appName },
      });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`psql exited ${code}: ${out}`))));
    });
    const times = [...text.matchAll(/^Time: ([\d.]+) ms/gm)].map((m) => Number(m[1]));
    // The upsert answers its count of rows changed (writeSql ROWS_CHANGED) as a one-row table.
    const inserted = new RegExp(`^ *${ROWS_CHANGED}\\s*\\n-+\\n *(\\d+)`, 'm').exec(text);
    // Statement order: CREATE TEMP TABLE, BEGIN, \copy, fence insert, fence lock, upsert, fence advance, COMMIT.
    const fences = (times[3] ?? 0) + (times[4] ?? 0) + (times[6] ?? 0);
    return {
      rowsChanged: inserted ? Number(inserted[1]) : undefined,
      detail: {
        serverMs: {
          create: times[0],
          begin: times[1],
          copy: times[2],
          fences,
          upsert: times[5],
          commit: times[7],
        },
      },
    };
  };

  // ---- warm-up (JIT of the Node side; not reported) ----
  {
    const warm = await freshSchema('warm');
    const n = Math.min(total, 5000);
    await ours(warm, one(allEntries.slice(0, n)), 1000, 'warm');
    await ours(warm, one(allEntries.slice(0, n)), 1000, 'warm-replay');
    await multiRow(warm, n, 1000);
    await dropSchema(admin, warm);
  }

  const roundsOut: VariantResult[][] = [];
  let replayStats: { before: TableStats; after: TableStats; delta: TableStats } | null = null;
  for (let round_ = 1; round_ <= rounds; round_++) {
    log(`round ${round_}/${rounds}: ${fmtInt(total)} bars per variant`);
    const results: VariantResult[] = [];
    const fingerprints: Record<string, string> = {};

    const cLabel = `ours as the service writes a backlog: 6 partitions, ${concurrency} transactions in flight, each ${fmtInt(batchSize)} bars × ${6 / concurrency} partitions`;
    const sC = await freshSchema(`r${round_}_c`);
    results.push(
      await timed('c', cLabel, total, async () => ({
        rowsChanged: await ours(sC, serviceLanes, batchSize, 'bench'),
      })),
    );
    fingerprints.c = await checkRows(sC, total);

    // (e) the identical replay of (c), with the statistics of bars_1m around it.
    await recyclePool();
    const before = await settledStats(admin, sC, 'bars_1m', appName);
    const e = await timed('e', 'replay of (c): same rows again, same transactions', total, async () => ({
      rowsChanged: await ours(sC, serviceLanes, batchSize, 'bench-replay'),
    }));
    await recyclePool();
    const after = await settledStats(admin, sC, 'bars_1m', appName);
    replayStats = { before, after, delta: statsDelta(before, after) };
    e.detail = { statsDelta: replayStats.delta };
    results.push(e);
    if ((await checkRows(sC, total)) !== fingerprints.c) throw new Error('the replay changed bars_1m');

    for (const size of [1000, 5000, 10_000]) {
      const key = size === 1000 ? 'c1' : `c${size / 1000}k`;
      const s = await freshSchema(`r${round_}_${key}`);
      results.push(
        await timed(
          key,
          `ours, one partition, ${fmtInt(size)} per transaction, one at a time`,
          total,
          async () => ({
            rowsChanged: await ours(s, one(allEntries), size, 'bench'),
          }),
        ),
      );
      fingerprints[key] = await checkRows(s, total);
    }

    const s6 = await freshSchema(`r${round_}_c6`);
    results.push(
      await timed(
        'c6',
        'ours before grouping: 6 partitions, a 1,000-bar transaction each, 6 concurrently',
        total,
        async () => ({
          rowsChanged: await ours(
            s6,
            partitionEntries.map((es) => [es]),
            1000,
            'bench',
          ),
        }),
      ),
    );
    fingerprints.c6 = await checkRows(s6, total);

    const sB = await freshSchema(`r${round_}_b`);
    results.push(
      await timed('b', 'multi-row INSERT … VALUES, 1,000 rows per statement, autocommit', total, () =>
        multiRow(sB, total, 1000),
      ),
    );
    fingerprints.b = await checkRows(sB, total);

    const sA = await freshSchema(`r${round_}_a`);
    results.push(
      await timed(
        'a',
        `one INSERT per bar, autocommit (first ${fmtInt(singleBars)} bars only)`,
        singleBars,
        () => single(sA, singleBars),
      ),
    );
    await checkRows(sA, singleBars);

    const sD = await freshSchema(`r${round_}_d`);
    results.push(
      await timed('d', 'psql: \\copy into staging + our upsert, one transaction', total, () => psqlRun(sD)),
    );
    fingerprints.d = await checkRows(sD, total);

    const sDb = await freshSchema(`r${round_}_dbin`);
    results.push(
      await timed('dbin', 'what-if: (d) with a binary COPY file', total, () => psqlRun(sDb, true)),
    );
    fingerprints.dbin = await checkRows(sDb, total);

    const distinct = new Set(Object.values(fingerprints));
    if (distinct.size !== 1)
      throw new Error(`variants stored different tables: ${JSON.stringify(fingerprints)}`);
    roundsOut.push(results);
    for (const s of schemas.splice(0)) await dropSchema(admin, s);
  }

  // ---- report: the median of the rounds per variant ----
  const keys = roundsOut[0]!.map((r) => r.key);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const final: VariantResult[] = keys.map((k) => {
    const all = roundsOut.map((rs) => rs.find((r) => r.key === k)!);
    const rate = median(all.map((r) => r.barsPerSecond));
    const pick = all.find((r) => r.barsPerSecond === rate)!;
    return { ...pick, ...(rounds > 1 ? { rounds: all.map((r) => round(r.barsPerSecond)) } : {}) };
  });
  const byKey = Object.fromEntries(final.map((r) => [r.key, r]));
  const c = byKey.c!.barsPerSecond;
  const d = byKey.d!.barsPerSecond;
  const order = ['a', 'b', 'c', 'c1', 'c5k', 'c10k', 'c6', 'd', 'dbin', 'e'];

  // ---- where (c)'s time goes: (c) again with a clock around each round trip, new rows then a replay ----
  const phaseRuns: Record<string, Record<string, number>> = {};
  {
    const s = await freshSchema('phases');
    for (const [name, group] of [
      ['new rows', 'bench'],
      ['replay', 'bench-replay'],
    ] as const) {
      const ph: Record<string, number> = {};
      const t0 = nowMs();
      await ours(s, serviceLanes, batchSize, group, ph);
      const roundTrips = Object.values(ph).reduce((a, b) => a + b, 0);
      ph.total = (nowMs() - t0) * concurrency; // the lanes' time, added up like the phases
      ph['Node: filtering, encoding, between round trips'] = ph.total - roundTrips;
      phaseRuns[name] = Object.fromEntries(Object.entries(ph).map(([k, v]) => [k, round(v, 1)]));
    }
    await dropSchema(admin, s);
  }

  console.log('');
  console.log(
    `bench:write — ${fmtInt(total)} bars (${symbols} symbols × ${Math.ceil(total / symbols)} min), ` +
      `PostgreSQL ${String(machine.postgres).split(' ')[1]}, ${machine.nproc} cores, load ${JSON.stringify(machine.loadAvgAtStart)}` +
      (rounds > 1 ? `, median of ${rounds} rounds` : ''),
  );
  printTable(
    [
      ['variant', 'bars', 'seconds', 'bars/s', '÷ (c)', '÷ (d)', 'WAL MB*', 'what'],
      ...order.map((k) => {
        const r = byKey[k]!;
        return [
          `(${k})`,
          fmtInt(r.bars),
          round(r.seconds, 3),
          fmtInt(r.barsPerSecond),
          ratio(r.barsPerSecond, c).toFixed(3),
          ratio(r.barsPerSecond, d).toFixed(3),
          round(r.walBytes / 2 ** 20, 1),
          r.label,
        ];
      }),
    ],
    [0, 7],
  );
  console.log(
    `(a) ran on the first ${fmtInt(singleBars)} bars only (its rate, not its time, compares); ` +
      `*WAL is instance-wide (other sessions' writes included).`,
  );
  const psqlDetail = byKey.d!.detail as { serverMs: Record<string, number> } | undefined;
  const dSql = psqlDetail
    ? (psqlDetail.serverMs.copy ?? 0) +
      (psqlDetail.serverMs.fences ?? 0) +
      (psqlDetail.serverMs.upsert ?? 0) +
      (psqlDetail.serverMs.commit ?? 0)
    : NaN;
  const dSqlRate = total / (dSql / 1000);
  if (psqlDetail) {
    console.log(
      `(d) psql \\timing (ms): ${JSON.stringify(psqlDetail.serverMs)}; the rest of (d)'s time is psql start-up and connecting.`,
    );
    console.log(
      `(d-sql) \\copy + fence statements + upsert + COMMIT alone: ${round(dSql)} ms = ${fmtInt(dSqlRate)} bars/s; ` +
        `(c) ÷ (d-sql) = ${ratio(c, dSqlRate).toFixed(3)}`,
    );
  }
  if (replayStats) {
    const dlt = replayStats.delta;
    console.log(
      `(e) replay, pg_stat_user_tables delta on bars_1m: n_tup_ins ${dlt.n_tup_ins}, n_tup_upd ${dlt.n_tup_upd}, ` +
        `n_tup_hot_upd ${dlt.n_tup_hot_upd}, n_dead_tup ${dlt.n_dead_tup} (autovacuum runs meanwhile: ${dlt.autovacuum_count}); ` +
        `rows changed reported by the upsert: ${byKey.e!.rowsChanged}`,
    );
  }
  console.log('all variants stored identical tables (md5 over every row)');
  console.log('');
  console.log(
    `where (c)'s time goes: (c) with a clock around each round trip of writeGroup(), ${fmtInt(total)} bars; ` +
      `times of the ${concurrency} lanes added up`,
  );
  const phaseNames = Object.keys(phaseRuns['new rows']!).filter((k) => k !== 'total');
  printTable(
    [
      ['phase', ...Object.keys(phaseRuns).flatMap((n) => [`${n} ms`, '%'])],
      ...[...phaseNames, 'total'].map((k) => [
        k,
        ...Object.values(phaseRuns).flatMap((ph) => [ph[k] ?? 0, round((100 * (ph[k] ?? 0)) / ph.total!, 1)]),
      ]),
    ],
    [0],
  );

  saveResult('writePath', {
    machine,
    bars: total,
    symbols,
    singleBars,
    rounds,
    variants: Object.fromEntries(
      order.map((k) => {
        const r = byKey[k]!;
        return [
          k,
          {
            label: r.label,
            bars: r.bars,
            seconds: round(r.seconds, 3),
            barsPerSecond: round(r.barsPerSecond),
            ratioToC: ratio(r.barsPerSecond, c),
            ratioToD: ratio(r.barsPerSecond, d),
            walBytesInstanceWide: r.walBytes,
            ...(r.rowsChanged !== undefined ? { rowsChanged: r.rowsChanged } : {}),
            ...(r.detail ? { detail: r.detail } : {}),
            ...((r as { rounds?: number[] }).rounds ? { rounds: (r as { rounds?: number[] }).rounds } : {}),
          },
        ];
      }),
    ),
    dSql: { ms: round(dSql, 1), barsPerSecond: round(dSqlRate), ratioCToDSql: ratio(c, dSqlRate) },
    replayStats,
    phasesMs: phaseRuns,
  });
});
