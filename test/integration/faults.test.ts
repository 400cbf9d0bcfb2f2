/**
 * Faults the foundation must survive: the database refusing writes (offsets must not advance, readiness
 * turns false, everything lands after the fault is removed), the database refusing single rows (they
 * are isolated and dead-lettered, everything else lands), and SIGTERM with bars still buffered (all
 * written and committed before a clean exit).
 */
import { DLQ_HEADERS } from '../../src/deadletter/producer';
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

describe('database refuses writes', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(4);
  });
  afterAll(() => h.cleanup());

  test('no offset advances while writes fail; readiness reports it; everything lands after recovery', async () => {
    const s = `"${h.schema}"`;
    // The injected fault: every INSERT into bars_1m fails (a statement trigger raising an error).
    await h.pool.query(`CREATE FUNCTION ${s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected fault: writes refused' USING ERRCODE = '57P03'; END $$`);
    await h.pool.query(
      `CREATE TRIGGER refuse BEFORE INSERT ON ${s}.bars_1m FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse()`,
    );

    const bars = makeBars(200, 10, Date.UTC(2026, 10, 25, 14, 30), 3); // 2,000 bars
    await h.produceBars(bars);
    const service = await h.startService({
      BARS_DB_MAX_RETRIES: '2',
      BARS_DB_RETRY_DELAY: '50ms',
      BARS_DB_RETRY_MAX_DELAY: '300ms',
    });

    await waitFor('readiness to report failing writes', async () => {
      const r = await httpGet(service.port, '/readyz');
      return r.status === 503 && JSON.parse(r.body).checks.writes.ok === false ? r : null;
    });
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(
      metricValue(metrics, 'timescale_write_errors_total', { class: 'transient' }),
    ).toBeGreaterThanOrEqual(3);
    expect(metricValue(metrics, 'timescale_write_total')).toBe(0);
    // Nothing committed, nothing written, nothing recorded in the fence.
    const committed = await h.committedOffsets();
    expect([...committed.values()].every((o) => o === null)).toBe(true);
    expect(await h.rowCount()).toBe(0);
    expect(
      (await h.pool.query(`SELECT count(*)::int AS n FROM ${s}.bar_writer_offsets WHERE next_offset > 0`))
        .rows[0].n,
    ).toBe(0);
    await sleep(1000);
    expect([...(await h.committedOffsets()).values()].every((o) => o === null)).toBe(true);

    await h.pool.query(`DROP TRIGGER refuse ON ${s}.bars_1m`);
    await waitFor(
      'everything to land',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    await waitFor('readiness back', async () => (await httpGet(service.port, '/readyz')).status === 200);
    expect(await service.stop()).toBe(true);
  });
});

describe('database refuses single rows', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(4);
  });
  afterAll(() => h.cleanup());

  test('each refused row is isolated and dead-lettered with its SQLSTATE; every other row lands', async () => {
    // A rule the contract does not know: PostgreSQL refuses these rows (23514, check_violation).
    await h.pool.query(`ALTER TABLE "${h.schema}".bars_1m ADD CONSTRAINT no_poison CHECK (volume <> 424242)`);
    const bars = makeBars(100, 6, Date.UTC(2026, 10, 25, 15, 0), 5); // 600 bars over 4 partitions
    const poisoned = [7, 250, 251, 431, 599];
    for (const i of poisoned) bars[i]!.volume = 424242;
    await h.produceBars(bars);
    const service = await h.startService();
    const good = bars.filter((_, i) => !poisoned.includes(i));
    await waitFor(
      'every good row and the offsets',
      async () => (await h.rowCount()) === good.length && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable(good), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(poisoned.length);

    const dlq = await h.readDeadLetters(poisoned.length);
    expect(dlq).toHaveLength(poisoned.length);
    for (const d of dlq) {
      expect(d.headers[DLQ_HEADERS.reason]).toBe('database_rejected');
      expect(d.headers[DLQ_HEADERS.sqlstate]).toBe('23514');
      expect(JSON.parse(d.value!.toString()).volume).toBe(424242);
    }
    const symbolsMinutes = dlq.map((d) => {
      const v = JSON.parse(d.value!.toString()) as { symbol: string; timestamp: string };
      return `${v.symbol} ${v.timestamp}`;
    });
    expect(symbolsMinutes.sort()).toEqual(
      poisoned.map((i) => `${bars[i]!.symbol} ${bars[i]!.timestamp}`).sort(),
    );
    expect(await service.stop()).toBe(true);
  });
});

describe('SIGTERM with bars buffered', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(4);
  });
  afterAll(() => h.cleanup());

  test('the process writes every buffered bar, commits, and exits 0', async () => {
    const bars = makeBars(300, 10, Date.UTC(2026, 10, 26, 14, 30), 5); // 3,000 bars
    await h.produceBars(bars);
    const port = 18000 + Math.floor(Math.random() * 2000);
    const child = h.spawnService({
      HTTP_PORT: String(port),
      BARS_DB_WRITE_INTERVAL: '5m',
      KAFKA_SESSION_TIMEOUT: '10m',
      BARS_DB_WRITE_BATCH_SIZE: '100000',
      BARS_DB_WRITE_QUEUE_SIZE: '200000',
      BARS_DB_FLUSH_ON_CAUGHT_UP: 'false',
      SHUTDOWN_TIMEOUT: '20s',
    });
    await waitFor(
      'all bars buffered',
      async () => metricValue((await httpGet(port, '/metrics')).body, 'bars_consumed_total') === bars.length,
      60_000,
      200,
    );
    expect(await h.rowCount()).toBe(0);
    expect([...(await h.committedOffsets()).values()].every((o) => o === null)).toBe(true);

    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await exited;
    expect({ code, output: code === 0 ? '' : child.output() }).toEqual({ code: 0, output: '' });
    expect(await h.rowCount()).toBe(bars.length);
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    expect(await h.caughtUp()).toBe(true);
    expect(child.output()).toMatch(/"drained":true/);
  });
});

describe('backpressure while the database is slow', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(4);
  });
  afterAll(() => h.cleanup());

  test('buffers stay within BARS_DB_WRITE_QUEUE_SIZE, the consumer pauses, nothing is dropped', async () => {
    const QUEUE = 2000;
    // The test holds a lock that blocks every write into bars_1m.
    const locker = await h.pool.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE "${h.schema}".bars_1m IN EXCLUSIVE MODE`);
    let locked = true;
    h.onCleanup(async () => {
      if (locked) await locker.query('ROLLBACK');
      locker.release();
    });

    const bars = makeBars(400, 50, Date.UTC(2026, 10, 19, 14, 30), 9); // 20,000 bars
    await h.produceBars(bars);
    const service = await h.startService({
      BARS_DB_WRITE_QUEUE_SIZE: String(QUEUE),
      BARS_DB_WRITE_BATCH_SIZE: '500',
    });

    let maxDepth = 0;
    let maxConsumed = 0;
    let sawPaused = false;
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const m = (await httpGet(service.port, '/metrics')).body;
      maxDepth = Math.max(maxDepth, metricValue(m, 'timescale_write_queue_depth'));
      maxConsumed = Math.max(maxConsumed, metricValue(m, 'bars_consumed_total'));
      sawPaused ||= metricValue(m, 'kafka_paused_partitions') > 0;
      await sleep(50);
    }
    expect(maxDepth).toBe(QUEUE); // filled up to the cap, never beyond
    expect(maxConsumed).toBe(QUEUE); // nothing more was taken from Kafka
    expect(sawPaused).toBe(true);
    // It waited for room first (at most ROOM_WAIT_MS, once: later batches pause at once), then paused.
    const waited = metricValue(
      (await httpGet(service.port, '/metrics')).body,
      'kafka_fetch_backpressure_seconds_total',
    );
    expect(waited).toBeGreaterThan(0);
    expect(waited).toBeLessThan(3);
    expect(service.status().depth).toBeLessThanOrEqual(QUEUE);
    expect([...(await h.committedOffsets()).values()].every((o) => o === null)).toBe(true);

    await locker.query('ROLLBACK');
    locked = false;
    await waitFor(
      'everything to land',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});

describe('resuming from the database fence', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('a partition whose fence is ahead of the committed offset resumes at the fence and commits it', async () => {
    // Offsets 0..599 of partition 0 were written by an earlier run whose Kafka commit was lost: the
    // fence says 600, Kafka has no committed offset for the group.
    const bars = makeBars(10, 100, Date.UTC(2026, 10, 18, 14, 30), 13); // 1,000 bars
    await h.produceRaw(bars.map((b) => ({ key: b.symbol, value: JSON.stringify(b), partition: 0 })));
    await h.pool.query(
      `INSERT INTO "${h.schema}".bar_writer_offsets (consumer_group, topic, partition, next_offset) VALUES ($1, $2, 0, 600)`,
      [h.group, h.topic],
    );
    const service = await h.startService();
    await waitFor(
      'partition 0 committed at the end',
      async () => (await h.committedOffsets()).get(0) === 1000n,
    );
    // Only offsets 600..999 were taken from Kafka and written.
    expect(diffTables(expectedTable(bars.slice(600)), await h.storedBars())).toEqual([]);
    const m = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(m, 'bars_consumed_total')).toBe(400);
    expect(metricValue(m, 'bars_written_total')).toBe(400);
    expect(await service.stop()).toBe(true);
  });
});
