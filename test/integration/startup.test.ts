/**
 * Start-up without its dependencies, as operators run it (`node dist/main.js`): the process stays up,
 * says why it is not ready (once, not once per attempt), does not spin, starts consuming when the missing
 * piece appears, and SIGTERM still ends it within SHUTDOWN_TIMEOUT.
 *
 *   (a) the input topic does not exist yet   (b) no broker answers   (c) the database does not answer
 *   (d) stop() while start-up is still going
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createHook } from 'node:async_hooks';
import fs from 'node:fs';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/observe/logger';
import { Service } from '../../src/service';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  sleep,
  waitFor,
} from '../support/harness';

type Spawned = ChildProcess & { output: () => string };

const SHUTDOWN_TIMEOUT_MS = 5000;
const STARTUP_LINE = /"msg":"start-up: /;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function lines(child: Spawned, re: RegExp = /./): string[] {
  return child
    .output()
    .split('\n')
    .filter((l) => l.length > 0 && re.test(l));
}

async function readyz(
  port: number,
): Promise<{ status: number; checks: Record<string, { ok: boolean; detail: string }> }> {
  const r = await httpGet(port, '/readyz');
  return { status: r.status, checks: (JSON.parse(r.body) as { checks: never }).checks };
}

/** User + system CPU time of a process, in seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime (14), stime (15)
}

/** SIGTERM; resolves with the exit code and how long the process took to exit. */
async function terminate(child: Spawned): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  const limitMs = SHUTDOWN_TIMEOUT_MS + 5000;
  let timer: NodeJS.Timeout | undefined;
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('exit', (c) => resolve(c));
    timer = setTimeout(() => reject(new Error(`still running ${limitMs} ms after SIGTERM`)), limitMs);
    child.kill('SIGTERM');
  }).finally(() => clearTimeout(timer));
  return { code, ms: Date.now() - started };
}

function expectExitWithinDeadline(child: Spawned, r: { code: number | null; ms: number }): void {
  expect({ codeIs0or1: r.code === 0 || r.code === 1, withinDeadline: r.ms <= SHUTDOWN_TIMEOUT_MS }).toEqual({
    codeIs0or1: true,
    withinDeadline: true,
  });
  expect(child.output()).toMatch(/"msg":"stopped"/);
}

describe('(a) the input topic does not exist yet', () => {
  const h = new Harness();
  beforeAll(() => h.setupSchema());
  afterAll(() => h.cleanup());

  test('waits with one log line and a reason in /readyz, then consumes once the topic exists', async () => {
    const admin = await h.getAdmin();
    // The service creates the dead-letter topic itself; the test creates the input topic later.
    h.onCleanup(async () => {
      await admin.deleteTopics({ topics: [h.topic, h.dlqTopic] }).catch(() => undefined);
      await admin.deleteGroups([h.group]).catch(() => undefined);
    });
    const child = h.spawnService({ SHUTDOWN_TIMEOUT: '5s' });
    const port = await h.portOf(child);

    const waiting = `waiting for topic ${h.topic} to exist`;
    await waitFor('the start-up state in the log', async () => lines(child, STARTUP_LINE).length > 0, 30_000);
    await sleep(10_000); // several attempts, with backoff
    expect(child.exitCode).toBeNull();
    const startup = lines(child, STARTUP_LINE);
    expect(startup).toHaveLength(1);
    expect(startup[0]).toContain(`"level":"warn"`);
    expect(startup[0]).toContain(waiting);
    expect(startup[0]).toContain('does not host this topic-partition');
    expect((await httpGet(port, '/healthz')).status).toBe(200);
    const notReady = await readyz(port);
    expect(notReady.status).toBe(503);
    expect(notReady.checks.kafka!.ok).toBe(false);
    expect(notReady.checks.kafka!.detail).toContain(waiting);
    expect(notReady.checks.database!.ok).toBe(true);

    await admin.createTopics({ topics: [{ topic: h.topic, numPartitions: 2 }], waitForLeaders: true });
    const bars = makeBars(50, 4, Date.UTC(2026, 10, 22, 14, 30), 31); // 200 bars
    await h.produceBars(bars);
    await waitFor(
      'the bars to land once the topic exists',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      120_000,
      250,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    await waitFor('readiness', async () => (await readyz(port)).status === 200, 30_000);
    expect(lines(child, STARTUP_LINE)).toHaveLength(1);
    expect(lines(child, /"msg":"consumer running"/)).toHaveLength(1);
    // Once consuming, one line names the broker's Kafka line (read from its API versions).
    const line = (process.env.TEST_KAFKA_VERSION ?? '4.4.0').split('.').slice(0, 2).join('.');
    await waitFor(
      'the broker line in the log',
      async () =>
        lines(child, new RegExp(`"kafka":"${line.replace('.', '\\.')}".*"msg":"Kafka broker runs Kafka `))
          .length === 1,
    );

    const r = await terminate(child);
    expectExitWithinDeadline(child, r);
    expect(r.code).toBe(0);
  });
});

describe('(b) no broker answers', () => {
  const h = new Harness();
  afterAll(() => h.cleanup());

  test('stays up, live but not ready, without spinning or flooding the log; SIGTERM ends it', async () => {
    const child = h.spawnService({ KAFKA_BROKERS: '127.0.0.1:1', SHUTDOWN_TIMEOUT: '5s' });
    const port = await h.portOf(child);
    await sleep(2000); // past module loading and start-up work
    const cpuBefore = cpuSeconds(child.pid!);
    const linesBefore = lines(child).length;
    await sleep(10_000);
    const cpu = cpuSeconds(child.pid!) - cpuBefore;
    const logged = lines(child).slice(linesBefore);
    expect(child.exitCode).toBeNull();
    expect(cpu).toBeLessThan(1);
    // kafkajs logs each failed connection attempt of its retrier (two lines each, with backoff): a few
    // dozen at most, and bar-writer's own start-up line at most once.
    expect(logged.length).toBeLessThanOrEqual(30);
    expect(lines(child, STARTUP_LINE).length).toBeLessThanOrEqual(1);
    expect((await httpGet(port, '/healthz')).status).toBe(200);
    const notReady = await readyz(port);
    expect(notReady.status).toBe(503);
    expect(notReady.checks.kafka!.ok).toBe(false);

    // Once the first attempt has given up: one warn line, and /readyz says why.
    await waitFor('the start-up state', async () => lines(child, STARTUP_LINE).length > 0, 60_000, 250);
    const startup = lines(child, STARTUP_LINE);
    expect(startup).toHaveLength(1);
    expect(startup[0]).toContain('start-up: waiting for kafka');
    expect(startup[0]).toContain('ECONNREFUSED');
    expect((await readyz(port)).checks.kafka!.detail).toContain('ECONNREFUSED');
    expect(lines(child, /could not check or create the dead-letter topic/)).toHaveLength(0);

    expectExitWithinDeadline(child, await terminate(child));
  });
});

describe('(c) the database does not answer', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('nothing is written or committed, readiness names the database; everything lands later', async () => {
    const bars = makeBars(50, 4, Date.UTC(2026, 10, 23, 14, 30), 37); // 200 bars
    await h.produceBars(bars);
    const child = h.spawnService({ DB_PORT: '1', SHUTDOWN_TIMEOUT: '5s' });
    const port = await h.portOf(child);

    const notReady = await waitFor(
      'the consumer to join while the database is down',
      async () => {
        const r = await readyz(port);
        return r.checks.kafka!.ok ? r : null;
      },
      60_000,
      250,
    );
    expect(notReady.status).toBe(503);
    expect(notReady.checks.database!.ok).toBe(false);
    expect(notReady.checks.database!.detail).toMatch(
      /^unreachable \(transient error ECONNREFUSED; the service log says more\)$/,
    );
    await sleep(3000);
    const metrics = (await httpGet(port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_written_total')).toBe(0);
    expect(metricValue(metrics, 'timescale_write_total')).toBe(0);
    expect(metricValue(metrics, 'bar_writer_ready')).toBe(0);
    expect(await h.rowCount()).toBe(0);
    expect([...(await h.committedOffsets()).values()]).toEqual([null, null]);
    expect((await readyz(port)).status).toBe(503);

    const r = await terminate(child);
    expectExitWithinDeadline(child, r);
    expect([...(await h.committedOffsets()).values()]).toEqual([null, null]);

    // Nothing was lost: an instance with the database back writes every bar.
    const service = await h.startService();
    await waitFor(
      'every bar',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      60_000,
      250,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});

describe('(d) stop() during start-up', () => {
  const h = new Harness();
  afterAll(() => h.cleanup());

  let closeTracking = () => {};
  afterAll(() => closeTracking());

  /**
   * Timers created from now on and still pending, by where they were created; those jest creates (its
   * reporter runs in this process with --runInBand) and this test's own sleeps are not counted, by the
   * frame that called setTimeout (the service's timers count whoever called the service).
   */
  function trackTimers(): { pending: () => string[]; close: () => void } {
    const live = new Map<number, string>();
    const hook = createHook({
      init(id, type) {
        if (type !== 'Timeout') return;
        const limit = Error.stackTraceLimit;
        Error.stackTraceLimit = 30;
        const stack = new Error('timer created').stack ?? '';
        Error.stackTraceLimit = limit;
        // Who called setTimeout: the first frame past this hook and Node's timer internals.
        const caller = stack
          .split('\n')
          .slice(1)
          .find((f) => !/AsyncHook\.init|node:internal\/|\(node:timers/.test(f));
        if (
          caller &&
          !/node_modules\/(@jest|jest-)|test\/support\/(harness|common)\.ts|startup\.test\.ts/.test(caller)
        )
          live.set(id, stack);
      },
      destroy(id) {
        live.delete(id);
      },
    }).enable();
    return { pending: () => [...live.values()], close: () => hook.disable() };
  }

  test('leaves nothing behind: HTTP closed, no periodic task, start() resolves; a start() after stop() is a new run, stopped the same way', async () => {
    const timers = trackTimers();
    closeTracking = timers.close;
    const config = h.config({ KAFKA_BROKERS: '127.0.0.1:1', SHUTDOWN_TIMEOUT: '5s' });
    const service = new Service(config, { logger: createLogger('silent'), registry: new Registry() });
    const started = service.start();
    // Right away, and again while start-up is waiting for the broker.
    const stopped = service.stop();
    expect(service.stop()).toBe(stopped); // idempotent: the stop in flight
    await expect(stopped).resolves.toBe(true);
    await expect(started).resolves.toBeUndefined();
    if (service.port > 0) {
      await expect(httpGet(service.port, '/healthz')).rejects.toThrow(/fetch failed/);
    }
    // Restartable: a new run listens again, and its stop closes it too.
    const again = service.start();
    expect(service.start()).toBe(again); // idempotent: the start in flight
    await waitFor(
      'HTTP listening again',
      async () => (await httpGet(service.port, '/healthz')).status === 200,
    );
    await expect(service.stop()).resolves.toBe(true);
    await expect(again).resolves.toBeUndefined();
    await expect(httpGet(service.port, '/healthz')).rejects.toThrow(/fetch failed/);
    await sleep(1200); // past every periodic task's first tick
    expect(timers.pending()).toEqual([]);

    // Later, at several points of the start-up loop: inside a connection attempt, between attempts.
    for (const delayMs of [300, 900, 1500, 2400]) {
      const later = new Service(config, { logger: createLogger('silent'), registry: new Registry() });
      const laterStart = later.start();
      await waitFor('HTTP listening', async () => later.port > 0);
      await sleep(delayMs);
      await expect(later.stop()).resolves.toBe(true);
      await expect(laterStart).resolves.toBeUndefined();
      await expect(httpGet(later.port, '/healthz')).rejects.toThrow(/fetch failed/);
      await sleep(1200);
      expect({ delayMs, pending: timers.pending() }).toEqual({ delayMs, pending: [] });
    }
  });
});
