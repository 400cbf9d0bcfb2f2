/**
 * bench:reads — the scanner's reads (issue 29 §4, docs/reads.md) through the API beside the plain SQL a
 * user would write without bars_latest, in the same run, on the same data:
 *
 * - "latest bar of every symbol": GET /v1/latest vs `SELECT DISTINCT ON (symbol) … ORDER BY symbol,
 *   "timestamp" DESC`;
 * - "every symbol at one minute": GET /v1/minute/{T} vs `WHERE "timestamp" = T`;
 * - "one symbol, one day at 1h": GET /v1/bars/{symbol}?interval=1h vs a GROUP BY of bars_1m.
 *
 * Data: BENCH_READS_SYMBOLS (5000) × BENCH_READS_DAYS (10) trading days of 390 minute bars, made in SQL
 * with generate_series (bars_latest filled the way migration 011 does), analyzed; on TimescaleDB
 * (BENCH_TARGET=timescaledb) bars_1h is materialized but for the last day (real-time from there).
 * BENCH_READS_ITERATIONS (50) API reads each, BENCH_READS_SQL_ITERATIONS (5) plain SQL reads each. The
 * API is the service's HTTP server and BarReader in this process, on its own read pool, read from this
 * process and, as often, from a client in a process of its own (bench/readClient.ts, a scanner's view).
 *
 * Then the live feed (BENCH_READS_FEED_BARS, default 300,000 = an hour of all symbols; 0 skips it): the
 * real service (`node dist/main.js`, a child process, default settings) drains a fresh topic into the
 * same schema, four passes alternating without and with readers (each pass its own topic, the next
 * hour of the day after the data). The readers are a scanner polling: every BENCH_READS_POLL_MS
 * (1000) the three API reads above, one after the other. Printed: each pass's drain rate (partition
 * assignment → every offset committed), the readers' p50/p99 while the feed lands, and the drain with
 * readers ÷ without.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type pg from 'pg';
import { Registry } from 'prom-client';
import { HttpServer } from '../src/http/server';
import { createLogger } from '../src/observe/logger';
import { createMetrics } from '../src/observe/metrics';
import { BarReader } from '../src/store/readBars';
import { applyAggregateTimezone } from '../src/store/timescaleSettings';
import { uniqueName, sleep } from '../test/support/common';
import { symbolName } from './bars';
import { runMain, type Cleanup } from './cleanup';
import { drainOnce } from './drain';
import { envInt, REPO, TARGET } from './env';
import { produceFeed } from './feed';
import { connectAdmin, connectProducer, createTopics, endOffsets, newKafka } from './kafka';
import { createBenchSchema, newPool } from './postgres';
import { fmtInt, log, nowMs, percentile, printTable, round } from './report';
import { buildService, serviceEnv } from './serviceChild';

const execFileAsync = promisify(execFile);
const SYMBOLS = envInt('BENCH_READS_SYMBOLS', 5000);
const DAYS = envInt('BENCH_READS_DAYS', 10);
const ITERATIONS = envInt('BENCH_READS_ITERATIONS', 50);
const SQL_ITERATIONS = envInt('BENCH_READS_SQL_ITERATIONS', 5);
const FEED_BARS = envInt('BENCH_READS_FEED_BARS', 300_000, 0);
const POLL_MS = envInt('BENCH_READS_POLL_MS', 1000);
const FEED_PARTITIONS = 6;
/** The first trading day: Monday 2026-10-05, sessions 14:30-20:59 UTC. */
const FIRST_DAY_MS = Date.UTC(2026, 9, 5);
const SESSION_START_MIN = 14 * 60 + 30;

/** The i-th weekday from FIRST_DAY_MS, as epoch ms of its midnight UTC. */
function tradingDay(i: number): number {
  const week = Math.floor(i / 5);
  return FIRST_DAY_MS + (week * 7 + (i % 5)) * 86_400_000;
}

async function timed(n: number, fn: () => Promise<number>): Promise<{ ms: number[]; rows: number }> {
  const ms: number[] = [];
  let rows = 0;
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    rows = await fn();
    ms.push(nowMs() - t0);
  }
  return { ms, rows };
}

runMain('bench:reads', async (cleanup) => {
  if (FEED_BARS > 0) buildService(); // before the data: a build error ends the run early
  const pool = newPool(2);
  cleanup.add('close the pool', () => pool.end());
  const schema = `bench_reads_${process.pid}`;
  await createBenchSchema(pool, cleanup, schema);
  if (TARGET === 'timescaledb') {
    // What `migrate` does after the migrations: the aggregates of the current definition (trade_count).
    const client = await pool.connect();
    try {
      await applyAggregateTimezone(client, schema, 'UTC');
      await client.query(
        `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
        [schema],
      );
    } finally {
      client.release();
    }
  }
  const s = `"${schema}"`;
  const days = Array.from({ length: DAYS }, (_, i) => tradingDay(i));
  log(
    `bench:reads on ${TARGET}: ${fmtInt(SYMBOLS)} symbols × ${DAYS} days = ${fmtInt(SYMBOLS * DAYS * 390)} bars`,
  );
  const t0 = nowMs();
  for (const day of days) {
    const start = new Date(day + SESSION_START_MIN * 60_000).toISOString();
    await pool.query(
      `INSERT INTO ${s}.bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap, trade_count, revision, source_time)
       SELECT 'B' || lpad(sym::text, 5, '0'), $1::timestamptz + m * interval '1 minute',
              100 + (sym % 97) + m * 0.01, 101 + (sym % 97) + m * 0.01, 99 + (sym % 97) + m * 0.01,
              100.5 + (sym % 97) + m * 0.01, 1000 + (sym * 7 + m) % 5000, 100.2 + (sym % 97) + m * 0.01,
              10 + m % 50, 0, now()
       FROM generate_series(0, $2::int - 1) sym, generate_series(0, 389) m`,
      [start, SYMBOLS],
    );
  }
  await pool.query(
    `INSERT INTO ${s}.bars_latest (symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time, source_origin, trade_count)
     SELECT DISTINCT ON (symbol) symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time, source_origin, trade_count
     FROM ${s}.bars_1m ORDER BY symbol, "timestamp" DESC`,
  );
  await pool.query(`ANALYZE ${s}.bars_1m`);
  await pool.query(`ANALYZE ${s}.bars_latest`);
  const lastDay = days[days.length - 1]!;
  if (TARGET === 'timescaledb') {
    await pool.query(`CALL refresh_continuous_aggregate($1::regclass, NULL, $2::timestamptz)`, [
      `${s}.bars_1h`,
      new Date(lastDay).toISOString(),
    ]);
  }
  log(`data ready in ${round((nowMs() - t0) / 1000, 1)} s`);

  const readPool = newPool(2);
  cleanup.add('close the read pool', () => readPool.end());
  const metrics = createMetrics(new Registry(), false);
  const server = new HttpServer({
    logger: createLogger('silent'),
    registry: metrics.registry,
    metrics,
    liveness: () => ({}),
    readiness: () => Promise.resolve({}),
    reads: new BarReader(readPool, schema, 60_000),
    limits: {
      maxRangeMs: 31 * 86_400_000,
      maxLimit: Math.max(10_000, SYMBOLS),
      maxConnections: 64,
      requestTimeoutMs: 120_000,
      idleTimeoutMs: 120_000,
      readConcurrency: 2,
      maxQueuedReads: 16,
      readWaitMs: 60_000,
      responseBufferBytes: 512 * 1024 * 1024,
      readToken: '',
    },
  });
  const port = await server.listen(0, '127.0.0.1');
  cleanup.add('close the server', () => server.close());
  const api = async (path: string, key = 'bars'): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as Record<string, unknown[]>)[key]!.length;
  };
  /** The plain SQL's connection: the pool's, or one whose transaction dropped an index (withoutIndex). */
  let sqlClient: Pick<pg.PoolClient, 'query'> = pool;
  const sql = async (text: string): Promise<number> => (await sqlClient.query(text)).rowCount ?? 0;

  const minute = new Date(lastDay + (SESSION_START_MIN + 200) * 60_000).toISOString();
  const dayFrom = new Date(lastDay).toISOString();
  const dayTo = new Date(lastDay + 86_400_000).toISOString();
  const hourBucket =
    TARGET === 'timescaledb' ? `time_bucket('1 hour', "timestamp")` : `date_trunc('hour', "timestamp")`;
  const cases: {
    name: string;
    /** The API read (its answer's `bars`). */
    path: string;
    sql: () => Promise<number>;
    withoutIndex?: string;
  }[] = [
    {
      name: 'latest bar of every symbol',
      path: '/v1/latest',
      sql: () =>
        sql(
          `SELECT DISTINCT ON (symbol) symbol, "timestamp", open, high, low, close, volume, vwap
           FROM ${s}.bars_1m ORDER BY symbol, "timestamp" DESC`,
        ),
    },
    {
      name: 'every symbol at one minute',
      path: `/v1/minute/${minute}`,
      sql: () => sql(`SELECT * FROM ${s}.bars_1m WHERE "timestamp" = '${minute}' ORDER BY symbol`),
      // "Without this work": without the index the API reads (migration 013), as a user's schema is.
      withoutIndex: 'bars_1m_minute',
    },
    {
      name: 'one symbol, one day at 1h',
      path: `/v1/bars/${symbolName(42)}?interval=1h&from=${dayFrom}&to=${dayTo}`,
      sql: () =>
        sql(
          `SELECT ${hourBucket} AS h, (array_agg(open ORDER BY "timestamp"))[1], max(high), min(low),
                  (array_agg(close ORDER BY "timestamp" DESC))[1], sum(volume)
           FROM ${s}.bars_1m WHERE symbol = '${symbolName(42)}' AND "timestamp" >= '${dayFrom}' AND "timestamp" < '${dayTo}'
           GROUP BY 1 ORDER BY 1`,
        ),
    },
  ];
  /** Times `run` in a transaction that dropped `index` (rolled back: nothing else reads meanwhile). */
  const withoutIndex = async (index: string, run: () => Promise<number>) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`DROP INDEX ${s}.${index}`);
      sqlClient = client;
      return await timed(SQL_ITERATIONS, run);
    } finally {
      sqlClient = pool;
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
  };
  const rows: (string | number)[][] = [
    [
      'read',
      'rows',
      'API p50 ms',
      'API p99 ms',
      'own-process client p50 ms',
      'own-process client p99 ms',
      'SQL p50 ms',
      'SQL p99 ms',
      'SQL/API p50',
    ],
  ];
  for (const c of cases) {
    await api(c.path); // warm
    const a = await timed(ITERATIONS, () => api(c.path));
    const own = await readInOwnProcess(`http://127.0.0.1:${port}${c.path}`, ITERATIONS);
    const q =
      c.withoutIndex === undefined
        ? await timed(SQL_ITERATIONS, c.sql)
        : await withoutIndex(c.withoutIndex, c.sql);
    if (a.rows !== q.rows || own.rows !== q.rows) {
      throw new Error(`${c.name}: the API answered ${a.rows} and ${own.rows} rows, the SQL ${q.rows}`);
    }
    const ap50 = percentile(a.ms, 50);
    const qp50 = percentile(q.ms, 50);
    rows.push([
      c.name,
      a.rows,
      round(ap50, 1),
      round(percentile(a.ms, 99), 1),
      round(percentile(own.ms, 50), 1),
      round(percentile(own.ms, 99), 1),
      round(qp50, 1),
      round(percentile(q.ms, 99), 1),
      round(qp50 / ap50, 1),
    ]);
  }
  console.log(
    `\nbench:reads, ${TARGET}, ${fmtInt(SYMBOLS)} symbols × ${DAYS} days (${fmtInt(SYMBOLS * DAYS * 390)} bars); ` +
      `${ITERATIONS} API and ${SQL_ITERATIONS} SQL reads each, no live feed\n`,
  );
  printTable(rows);

  if (FEED_BARS > 0) {
    await liveFeed(cleanup, {
      pool,
      schema,
      feedStartMs: tradingDay(DAYS) + SESSION_START_MIN * 60_000,
      reads: cases.map((c) => ({ name: c.name, run: () => api(c.path) })),
    });
  }
});

/**
 * `n` reads of `url` by bench/readClient.ts in a process of its own: the API as a scanner on another
 * process sees it, its parse on its own core (the API above is read from this process, whose event
 * loop also runs the server).
 */
async function readInOwnProcess(url: string, n: number): Promise<{ ms: number[]; rows: number }> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', 'bench/readClient.ts', url, String(n), 'bars'],
    {
      cwd: REPO,
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  return JSON.parse(stdout) as { ms: number[]; rows: number };
}

/** Latencies of one read while a pass ran. */
type Samples = Map<string, number[]>;

/**
 * A scanner polling while the service drains: every POLL_MS the reads, one after the other, until
 * `stop()`; resolves to each read's latencies.
 */
function pollReads(reads: { name: string; run: () => Promise<number> }[]): { stop: () => Promise<Samples> } {
  const samples: Samples = new Map(reads.map((r) => [r.name, []]));
  let running = true;
  const loop = (async () => {
    while (running) {
      const round0 = nowMs();
      for (const r of reads) {
        const t0 = nowMs();
        await r.run();
        samples.get(r.name)!.push(nowMs() - t0);
      }
      const left = POLL_MS - (nowMs() - round0);
      if (left > 0 && running) await sleep(left);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

async function liveFeed(
  cleanup: Cleanup,
  o: {
    pool: ReturnType<typeof newPool>;
    schema: string;
    feedStartMs: number;
    reads: { name: string; run: () => Promise<number> }[];
  },
): Promise<void> {
  const kafka = newKafka('bench_reads');
  const admin = await connectAdmin(kafka, cleanup);
  const producer = await connectProducer(kafka, cleanup);
  const minutesPerPass = Math.ceil(FEED_BARS / SYMBOLS);
  const passes = [true, false, false, true].map((readers, i) => ({ readers, i }));
  const results: { readers: boolean; barsPerSecond: number; samples: Samples | null }[] = [];
  for (const { readers, i } of passes) {
    const topic = uniqueName(`bench.reads.feed${i}`).replace(/_/g, '.');
    const group = uniqueName(`bench_reads_feed${i}`);
    await createTopics(admin, cleanup, topic, FEED_PARTITIONS, () => [group]);
    // Pass i: the i-th next hour of minutes, so every pass writes new rows (a replay would write nothing).
    await produceFeed(producer, topic, FEED_BARS, SYMBOLS, {
      startMs: o.feedStartMs + i * minutesPerPass * 60_000,
    });
    const ends = await endOffsets(admin, topic);
    log(
      `live feed pass ${i + 1}/${passes.length} (${readers ? 'readers polling' : 'no readers'}): ${fmtInt(FEED_BARS)} bars`,
    );
    const poll = readers ? pollReads(o.reads) : null;
    const r = await drainOnce({
      cleanup,
      admin,
      env: serviceEnv({ schema: o.schema, topic, group }),
      pool: o.pool,
      topic,
      group,
      ends,
    });
    const samples = poll ? await poll.stop() : null;
    const barsPerSecond = r.drainBarsPerSecond ?? r.barsPerSecond;
    log(`  drained at ${fmtInt(barsPerSecond)} bars/s (assignment → committed)`);
    results.push({ readers, barsPerSecond, samples });
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const without = mean(results.filter((r) => !r.readers).map((r) => r.barsPerSecond));
  const withReaders = mean(results.filter((r) => r.readers).map((r) => r.barsPerSecond));
  console.log(
    `\nlive feed: ${fmtInt(FEED_BARS)} bars a pass (${SYMBOLS} symbols × ${minutesPerPass} min, ${FEED_PARTITIONS} partitions), ` +
      `the service with default settings; readers: the three reads above every ${POLL_MS} ms\n`,
  );
  printTable([
    ['pass', 'readers', 'drain bars/s'],
    ...results.map((r, i) => [i + 1, r.readers ? 'polling' : 'none', fmtInt(r.barsPerSecond)]),
  ]);
  const lat: (string | number)[][] = [['read during the feed', 'reads', 'API p50 ms', 'API p99 ms']];
  for (const { name } of o.reads) {
    const ms = results.flatMap((r) => r.samples?.get(name) ?? []);
    lat.push([name, ms.length, round(percentile(ms, 50), 1), round(percentile(ms, 99), 1)]);
  }
  console.log('');
  printTable(lat);
  console.log(`\ndrain with readers ÷ without (mean of two passes each): ${round(withReaders / without, 3)}`);
}
