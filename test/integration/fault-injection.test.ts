/**
 * Fault injection against the real services. A producer writes a known sequence (200,000 bars of 1,000
 * symbols over 6 partitions, then 20,000 corrections of earlier bars, with some invalid messages mixed
 * in) while three writer processes in one consumer group are SIGKILLed mid-batch, PostgreSQL goes away
 * (backends terminated, new connections refused) and comes back, the Kafka broker restarts, and
 * instances are stopped and started. A supervisor restarts writers that exit, as an orchestrator would.
 *
 * At the end, by querying the table: every (symbol, timestamp) present exactly once, every value equal
 * to the LAST produced version, the row count exact, bars_latest equal to each symbol's newest row, and
 * the group's committed offsets at the end of every partition. The suite owns its broker (it restarts it) and its database (it takes it away).
 */
import pg from 'pg';
import { PG } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  ownBroker,
  sleep,
  uniqueName,
  waitFor,
  type TestBar,
} from '../support/harness';

const broker = ownBroker(Number(process.env.TEST_FAULT_KAFKA_PORT ?? 19292));

const SYMBOLS = 1000;
const MINUTES = 200;
const PARTITIONS = 6;
const WRITERS = 3;

interface Writer {
  id: number;
  port: number;
  proc: ReturnType<Harness['spawnService']> | null;
  /** Set while the test stops it on purpose (the supervisor leaves it down). */
  held: boolean;
}

describe('fault injection', () => {
  const h = new Harness({ brokers: broker.brokers, database: uniqueName('bw_fault') });
  const writers: Writer[] = [];
  const faults: string[] = [];
  let supervising = true;
  let supervisorRestarts = 0;
  /** Cleared when the suite ends, pass or fail: the producer's resend loop must not outlive the broker. */
  let producing = true;

  beforeAll(async () => {
    broker.start();
    h.onCleanup(async () => broker.remove());
    await h.setupSchema();
    await h.createTopics(PARTITIONS);
  });
  afterAll(async () => {
    supervising = false;
    producing = false;
    await h.cleanup();
  });

  const env = {
    KAFKA_SESSION_TIMEOUT: '6s',
    BARS_DB_WRITE_INTERVAL: '300ms',
    BARS_DB_RETRY_DELAY: '100ms',
    BARS_DB_RETRY_MAX_DELAY: '2s',
    DB_STATEMENT_TIMEOUT: '10s',
    SHUTDOWN_TIMEOUT: '15s',
    LOG_LEVEL: 'warn',
  };

  function start(w: Writer): void {
    w.proc = h.spawnService({ ...env, HTTP_PORT: String(w.port), KAFKA_CLIENT_ID: `writer-${w.id}` });
    const proc = w.proc;
    proc.once('exit', (code, signal) => {
      if (!supervising || w.held || w.proc !== proc) return;
      // An unplanned exit (e.g. the consumer gave up while the broker was away): restart it.
      supervisorRestarts++;
      console.log(
        `writer ${w.id} exited (${code ?? signal}); restarting. Output tail:\n${proc.output().slice(-1500)}`,
      );
      setTimeout(() => supervising && !w.held && start(w), 500);
    });
  }

  async function consumed(w: Writer): Promise<number> {
    return metricValue((await httpGet(w.port, '/metrics')).body, 'bars_consumed_total');
  }

  /**
   * A graceful stop's outcome: "exit 0", or for exit 1 whether its log says everything taken was durable
   * and only offset commits were left (the group rebalancing, or its coordinator moving, in the
   * aftermath of a broker restart and a SIGKILLed member: the next owner resumes from the fence, and
   * nothing is replayed beyond it). Any other outcome prints the writer's log (warnings and up).
   */
  function stopOutcome(w: Writer, proc: NonNullable<Writer['proc']>, code: number | null): string {
    if (code === 0) return 'exit 0';
    const gaveUp = proc
      .output()
      .split('\n')
      .filter((l) => l.includes('shutdown deadline reached'))
      .map(
        (l) =>
          JSON.parse(l) as {
            depth?: number;
            stuck?: unknown[];
            pendingCommits?: number;
            lastCommitFailure?: string;
          },
      )
      .pop();
    if (
      code === 1 &&
      gaveUp &&
      gaveUp.depth === 0 &&
      gaveUp.stuck?.length === 0 &&
      (gaveUp.pendingCommits ?? 0) > 0
    )
      return `exit 1: everything durable, ${gaveUp.pendingCommits} partition(s) uncommitted (${gaveUp.lastCommitFailure})`;
    console.log(`writer ${w.id} exited ${code} on SIGTERM. Output tail:\n${proc.output().slice(-6000)}`);
    return `exit ${code}`;
  }

  /** SIGKILL a writer while it holds buffered or in-flight bars, then restart it. */
  async function killMidBatch(w: Writer): Promise<void> {
    await waitFor(
      `writer ${w.id} to hold bars`,
      async () => {
        const m = (await httpGet(w.port, '/metrics')).body;
        return (
          metricValue(m, 'timescale_write_queue_depth') > 0 || metricValue(m, 'kafka_assigned_partitions') > 0
        );
      },
      60_000,
      20,
    );
    w.held = true;
    const proc = w.proc!;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
    faults.push(`SIGKILL writer ${w.id}`);
    await sleep(1000);
    w.held = false;
    start(w);
  }

  test('no bar lost, none duplicated, none stale', async () => {
    // The sequence: 200,000 bars, then corrections (a later version) of every 10th, and 200 invalid messages.
    const base = makeBars(SYMBOLS, MINUTES, Date.UTC(2026, 10, 20, 14, 30), 21).map((b) => ({
      ...b,
      symbol: `F${b.symbol}`,
    }));
    const corrections = base
      .filter((_, i) => i % 10 === 3)
      .map((b) => ({ ...b, close: b.open, volume: b.volume + 7 }));
    const sequence: (TestBar | null)[] = [];
    for (let i = 0; i < base.length; i += 10_000) {
      sequence.push(...base.slice(i, i + 10_000));
      if (i >= 40_000) sequence.push(...corrections.slice((i / 10_000 - 4) * 1250, (i / 10_000 - 3) * 1250));
      sequence.push(...Array.from({ length: 10 }, () => null)); // invalid messages
    }
    const produced = sequence.filter((b): b is TestBar => b !== null);
    expect(produced.length).toBe(base.length + corrections.length);

    for (let i = 0; i < WRITERS; i++)
      writers.push({
        id: i + 1,
        port: 21000 + Math.floor(Math.random() * 9000) + i,
        proc: null,
        held: false,
      });
    writers.forEach(start);

    let sent = 0;
    let producerRetries = 0;
    const production = (async () => {
      const producer = await h.getProducer();
      const chunk = 4000;
      for (let i = 0; i < sequence.length && producing; i += chunk) {
        const messages = sequence
          .slice(i, i + chunk)
          .map((b, k) =>
            b === null
              ? { key: `bad-${i + k}`, value: `{"symbol":"BAD","timestamp":"not a time","seq":${i + k}}` }
              : { key: b.symbol, value: JSON.stringify(b) },
          );
        while (producing) {
          try {
            await producer.send({ topic: h.topic, acks: -1, messages });
            break;
          } catch {
            // Broker restarting: resend the same chunk (a duplicate of a version is harmless; order is kept).
            producerRetries++;
            await sleep(500);
          }
        }
        sent += messages.length;
        await sleep(150);
      }
    })();
    const progress = (fraction: number) =>
      waitFor(
        `production at ${fraction * 100}%`,
        async () => sent >= sequence.length * fraction,
        300_000,
        50,
      );

    // 1. SIGKILL writer 1 mid-batch.
    await progress(0.1);
    await killMidBatch(writers[0]!);

    // 2. PostgreSQL outage: refuse new connections, terminate the database's backends, restore.
    await progress(0.25);
    const admin = new pg.Client({ ...PG });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE "${h.database}" WITH ALLOW_CONNECTIONS false`);
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [h.database],
      );
      faults.push('PostgreSQL outage');
      await waitFor(
        'a writer to report not ready',
        async () => {
          for (const w of writers)
            if ((await httpGet(w.port, '/readyz').catch(() => ({ status: 0 }))).status === 503) return true;
          return false;
        },
        30_000,
        100,
      );
      await sleep(3000);
    } finally {
      await admin.query(`ALTER DATABASE "${h.database}" WITH ALLOW_CONNECTIONS true`);
      await admin.end();
    }

    // 3. SIGKILL writer 2 mid-batch.
    await progress(0.4);
    await killMidBatch(writers[1]!);

    // 4. Kafka broker restart (same data directory: topics and committed offsets survive).
    await progress(0.55);
    broker.stop();
    faults.push('Kafka broker restart');
    await sleep(2000);
    broker.restart();

    // 5. SIGKILL writer 3 mid-batch.
    await progress(0.7);
    await killMidBatch(writers[2]!);

    // 6. Stop writer 1 gracefully and start it again later; 7. SIGKILL writer 2 once more.
    await progress(0.8);
    writers[0]!.held = true;
    const w1 = writers[0]!.proc!;
    const w1exit = new Promise<number | null>((r) => w1.once('exit', (code) => r(code)));
    w1.kill('SIGTERM');
    // Shortly after a broker restart and a member's SIGKILL the group may still be settling.
    const w1stop = stopOutcome(writers[0]!, w1, await w1exit);
    expect(w1stop).toMatch(/^exit 0$|^exit 1: everything durable/);
    faults.push(`graceful stop writer 1 (${w1stop})`);
    await progress(0.9);
    await killMidBatch(writers[1]!);
    writers[0]!.held = false;
    start(writers[0]!);
    faults.push('start writer 1');

    await production;
    await waitFor('the group to catch up with every partition', () => h.caughtUp(), 300_000, 250);

    // The verdict, from the table.
    const expected = expectedTable(produced);
    const stored = await h.storedBars();
    const diffs = diffTables(expected, stored, 20);
    const lost = [...expected.keys()].filter((k) => !stored.has(k)).length;
    const stale = [...expected].filter(
      ([k, v]) => stored.has(k) && JSON.stringify(stored.get(k)) !== JSON.stringify(v),
    ).length;
    const dup = await h.pool.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM (SELECT symbol, "timestamp" FROM bars_1m GROUP BY 1, 2 HAVING count(*) > 1) d`,
    );
    const duplicated = Number(dup.rows[0]!.n);
    const writerStats = await Promise.all(writers.map((w) => consumed(w).catch(() => -1)));
    console.log(
      `fault-injection summary: produced=${produced.length} (+${sequence.length - produced.length} invalid) keys=${expected.size} ` +
        `stored=${stored.size} lost=${lost} stale=${stale} duplicated=${duplicated} faults=${faults.length} [${faults.join('; ')}] ` +
        `supervisor-restarts=${supervisorRestarts} producer-retries=${producerRetries} consumed-by-live-writers=${writerStats.join('/')}`,
    );
    expect(diffs).toEqual([]);
    expect({ lost, stale, duplicated, rows: await h.rowCount() }).toEqual({
      lost: 0,
      stale: 0,
      duplicated: 0,
      rows: expected.size,
    });
    expect(await h.caughtUp()).toBe(true);
    expect(faults.filter((f) => f.startsWith('SIGKILL')).length).toBeGreaterThanOrEqual(3);
    // bars_latest, kept by every write (crashed, replayed, corrected), is each symbol's newest bar.
    expect(await h.latestMismatches()).toBe(0);
    expect(Number((await h.pool.query(`SELECT count(*) FROM bars_latest`)).rows[0].count)).toBe(SYMBOLS);

    // Graceful stop of every writer: exit 0, nothing left behind.
    supervising = false;
    for (const w of writers) {
      const p = w.proc!;
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const code = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
      p.kill('SIGTERM');
      expect(stopOutcome(w, p, await code)).toBe('exit 0');
    }
  });
});
