/**
 * Guarantees under real operations, against the real broker and database:
 *
 *   1. the fence belongs to the log it was written against (topic re-created; a commit lost below
 *      the fence);
 *   2. one partition that cannot be written does not stop the others;
 *   3. the latest version wins across partitions (record time, then revision);
 *   4. nothing vanishes: database refusals counted and dead-lettered with the original message, no
 *      Kafka round trip while the fence rows are locked, labeled counters from the start, commits
 *      kafkajs would skip are refused;
 *   6. partitions added to a live topic are consumed promptly.
 * (5, wrong units, is in rejects.test.ts and the contract's unit tests.)
 */
import pg from 'pg';
import { KafkajsConsumer, createKafka } from '../../src/consumer/kafkajs';
import { StaleCommitError } from '../../src/consumer/port';
import { DLQ_HEADERS } from '../../src/deadletter/records';
import { createLogger } from '../../src/observe/logger';
import { PG } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  sleep,
  waitFor,
  type TestBar,
} from '../support/harness';

const minute = (d: number, h: number, m: number) => Date.UTC(2026, 10, d, h, m);

describe('1. the fence belongs to the log it was written against', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(3);
  });
  afterAll(() => h.cleanup());

  test('a topic deleted and created again is consumed from its start: none of its bars is skipped', async () => {
    const first = makeBars(30, 100, minute(20, 14, 0), 11); // 3,000 bars
    await h.produceBars(first);
    let child = h.spawnService();
    await waitFor(
      'the first feed',
      async () => (await h.rowCount()) === 3000 && (await h.caughtUp()),
      120_000,
    );
    expect(await h.terminate(child)).toBe(0);
    const fences = await h.pool.query<{ n: string }>(
      `SELECT next_offset::text AS n FROM "${h.schema}".bar_writer_offsets ORDER BY partition`,
    );
    expect(fences.rows.map((r) => Number(r.n)).reduce((a, b) => a + b, 0)).toBe(3000);

    const admin = await h.getAdmin();
    await admin.deleteTopics({ topics: [h.topic] });
    await waitFor('the topic to be gone', async () => !(await admin.listTopics()).includes(h.topic));
    await waitFor(
      'the topic to be created again',
      async () =>
        admin
          .createTopics({ topics: [{ topic: h.topic, numPartitions: 3 }], waitForLeaders: true })
          .then(() => true)
          .catch(() => false),
      30_000,
      500,
    );
    const second = makeBars(30, 300, minute(21, 14, 0), 12); // 9,000 bars, other minutes
    await h.produceBars(second);
    child = h.spawnService();
    const port = await h.portOf(child);
    await waitFor(
      'all 9,000 new bars',
      async () => (await h.rowCount()) === 12_000 && (await h.caughtUp()),
      120_000,
    );
    expect(diffTables(expectedTable([...first, ...second]), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(port, '/metrics')).body;
    expect(metricValue(metrics, 'kafka_log_replaced_total')).toBe(3);
    const warnings = child
      .output()
      .split('\n')
      .filter((l) => l.includes('is not the one the fence was written against'));
    expect(warnings).toHaveLength(3);
    for (const w of warnings) {
      const line = JSON.parse(w) as Record<string, unknown>;
      expect(line).toMatchObject({ level: 'warn', topic: h.topic, resumeAt: '0' });
      expect(Number(line.fence)).toBeGreaterThan(0);
    }
    expect(await h.terminate(child)).toBe(0);
  });

  test('the same log with a commit lost below the fence: skipped, said once with the count, counted', async () => {
    const admin = await h.getAdmin();
    const ends = await h.endOffsets();
    // As if the commits after the last writes were lost: the group's offsets back at 0.
    await admin.setOffsets({
      groupId: h.group,
      topic: h.topic,
      partitions: [...ends.keys()].map((partition) => ({ partition, offset: '0' })),
    });
    const before = await h.tableStats();
    const child = h.spawnService();
    const port = await h.portOf(child);
    await waitFor('the fence committed to Kafka', () => h.caughtUp(), 60_000);
    const metrics = (await httpGet(port, '/metrics')).body;
    expect(metricValue(metrics, 'kafka_resume_skipped_offsets_total')).toBe(9000);
    expect(metricValue(metrics, 'kafka_log_replaced_total')).toBe(0);
    expect(metricValue(metrics, 'bars_written_total')).toBe(0); // nothing fetched again below the fence
    const said = child
      .output()
      .split('\n')
      .filter((l) => l.includes('resuming from the database fence'))
      .map((l) => JSON.parse(l) as { skipped: string; committed: string });
    expect(said.map((l) => [l.committed, l.skipped]).sort()).toEqual(
      [...ends.values()].map((end) => ['0', end.toString()]).sort(),
    );
    expect((await h.tableStats()).n_tup_upd).toBe(before.n_tup_upd);
    // It goes on normally from there.
    const more = makeBars(30, 2, minute(22, 14, 0), 13);
    await h.produceBars(more);
    await waitFor('the next bars', async () => (await h.rowCount()) === 12_060 && (await h.caughtUp()));
    expect(await h.terminate(child)).toBe(0);
  });
});

describe('2. one partition that cannot be written does not stop the others', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(6);
  });
  afterAll(() => h.cleanup());

  test("partition 0's fence row held elsewhere: 1-5 reach their log end, /readyz and the metric name 0; then 0 lands too", async () => {
    const firstFeed = makeBars(60, 5, minute(20, 14, 0), 21);
    await h.produceBars(firstFeed);
    const service = await h.startService({
      BARS_DB_MAX_RETRIES: '1',
      BARS_DB_RETRY_MAX_DELAY: '2s',
      DB_LOCK_TIMEOUT: '1s',
    });
    await waitFor('the first feed', async () => (await h.rowCount()) === 300 && (await h.caughtUp()));

    const holder = new pg.Client({ ...PG, database: h.database });
    await holder.connect();
    h.onCleanup(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(
      `SELECT 1 FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1 AND partition = 0 FOR UPDATE`,
      [h.group],
    );
    const bars = makeBars(1200, 100, minute(21, 14, 0), 22); // 120,000 bars over 6 partitions
    await h.produceBars(bars);
    const ends = await h.endOffsets();
    const started = Date.now();
    await waitFor(
      'partitions 1-5 at their log end while 0 is held',
      async () => {
        const committed = await h.committedOffsets();
        return [1, 2, 3, 4, 5].every((p) => committed.get(p) === ends.get(p));
      },
      40_000,
      250,
    );
    const healthyMs = Date.now() - started;
    const committed0 = (await h.committedOffsets()).get(0);
    expect(committed0).not.toBe(ends.get(0));
    const ready = await waitFor('/readyz to name partition 0', async () => {
      const r = await httpGet(service.port, '/readyz');
      const body = JSON.parse(r.body) as { checks: { writes: { ok: boolean; detail: string } } };
      return r.status === 503 && !body.checks.writes.ok ? body.checks.writes.detail : null;
    });
    expect(ready).toMatch(
      /^partition\(s\) 0 failing past 1 retries \(transient error 55P03; the service log says more\)$/,
    );
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'timescale_write_partition_failures', { partition: '0' })).toBeGreaterThan(1);
    expect(metricValue(metrics, 'timescale_write_partition_failures', { partition: '3' })).toBe(0);

    await holder.query('ROLLBACK');
    await waitFor(
      'partition 0 too',
      async () => (await h.rowCount()) === 300 + 120_000 && (await h.caughtUp()),
      120_000,
    );
    expect(diffTables(expectedTable([...firstFeed, ...bars]), await h.storedBars())).toEqual([]);
    await waitFor('ready again', async () => (await httpGet(service.port, '/readyz')).status === 200);
    expect(await service.stop()).toBe(true);
    expect(healthyMs).toBeLessThan(40_000);
  });
});

describe('3. the latest version wins across partitions', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('an older record time arriving later through another partition does not replace; a higher revision does', async () => {
    const keys = makeBars(200, 1, minute(20, 15, 0), 31);
    const versionB = keys.map((b) => ({
      ...b,
      close: b.open,
      high: Math.max(b.high, b.open),
      low: Math.min(b.low, b.open),
    }));
    const versionA = keys;
    const now = Date.now();
    const send = (bars: TestBar[], partition: number, timestamp: number, extra: object = {}) =>
      h.produceRaw(
        bars.map((b) => ({
          key: b.symbol,
          value: JSON.stringify({ ...b, ...extra }),
          partition,
          timestamp: String(timestamp),
        })),
      );
    const service = await h.startService();
    await send(versionB, 1, now);
    await waitFor('version B', async () => (await h.rowCount()) === 200 && (await h.caughtUp()));
    await send(versionA, 0, now - 60_000);
    await waitFor('version A consumed', () => h.caughtUp());
    expect(diffTables(expectedTable(versionB), await h.storedBars())).toEqual([]);
    // A revision outranks record time: an old message that says revision 1 replaces B.
    await send(versionA, 0, now - 3_600_000, { revision: 1 });
    await waitFor('the revision consumed', () => h.caughtUp());
    expect(diffTables(expectedTable(versionA), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});

describe('4. nothing vanishes without a trace', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('every labeled counter exists at 0 from the start', async () => {
    const service = await h.startService();
    const metrics = (await httpGet(service.port, '/metrics')).body;
    for (const cls of ['transient', 'data', 'fatal'])
      expect(metrics).toContain(`timescale_write_errors_total{class="${cls}"} 0`);
    for (const reason of ['invalid_json', 'timestamp_in_seconds', 'database_rejected'])
      expect(metrics).toContain(`bars_rejected_total{reason="${reason}"} 0`);
    expect(metrics).toContain('kafka_offset_commits_total{result="failed"} 0');
    expect(await service.stop()).toBe(true);
  });

  test('a row the database refuses: counted and logged without a dead-letter topic; with one, its dead letter is the original message', async () => {
    await h.pool.query(`ALTER TABLE "${h.schema}".bars_1m ADD CONSTRAINT no_poison CHECK (volume <> 777)`);
    const bars = makeBars(50, 4, minute(20, 16, 0), 41);
    bars[17]!.volume = 777;
    bars[101]!.volume = 777;
    // The poisoned messages carry a key that is not the symbol, odd spacing in their JSON, and a
    // header sent twice: the dead letter must give all of it back.
    const messages = bars.map((b, i) => ({
      key: b.volume === 777 ? `key-${i}` : b.symbol,
      value: b.volume === 777 ? ` ${JSON.stringify(b, null, 1)}\n` : JSON.stringify(b),
      partition: i % 2,
      headers: b.volume === 777 ? { trace: [`t${i}-a`, `t${i}-b`], source: 'vendor' } : undefined,
    }));
    await h.produceRaw(messages);

    // Without a dead-letter topic: counted and logged all the same.
    const child = h.spawnService({ KAFKA_DLQ_TOPIC: '' });
    const port = await h.portOf(child);
    await waitFor('the good rows', async () => (await h.rowCount()) === 198 && (await h.caughtUp()));
    expect(
      metricValue((await httpGet(port, '/metrics')).body, 'bars_rejected_total', {
        reason: 'database_rejected',
      }),
    ).toBe(2);
    const logged = child
      .output()
      .split('\n')
      .filter((l) => l.includes('the database refused a bar'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.map((l) => [l.partition, l.offset, l.sqlstate, l.deadLetter]).sort()).toEqual([
      [1, String((101 - 1) / 2), '23514', false],
      [1, String((17 - 1) / 2), '23514', false],
    ]);
    expect(await h.terminate(child)).toBe(0);

    // With one (a new group replays the topic): the original key, bytes and every header.
    const service = await h.startService({ KAFKA_GROUP_ID: `${h.group}-dlq` });
    h.onCleanup(async () =>
      (await h.getAdmin()).deleteGroups([`${h.group}-dlq`]).then(
        () => undefined,
        () => undefined,
      ),
    );
    await waitFor('replayed', () => h.caughtUp(`${h.group}-dlq`));
    const dlq = await h.readDeadLetters(2);
    expect(dlq.map((d) => d.key).sort()).toEqual(['key-101', 'key-17']);
    for (const d of dlq) {
      const i = Number(d.key!.slice(4));
      expect(Buffer.compare(d.value!, Buffer.from(messages[i]!.value))).toBe(0);
      expect(d.headers[DLQ_HEADERS.reason]).toBe('database_rejected');
      expect(d.headers[DLQ_HEADERS.sqlstate]).toBe('23514');
      expect(d.headers.source).toBe('vendor');
      expect(d.repeated.trace).toEqual([`t${i}-a`, `t${i}-b`]);
    }
    expect(await service.stop()).toBe(true);
  });

  test('no Kafka round trip while the fence rows are locked: a dead-letter topic that refuses holds no lock, and the other partition flows', async () => {
    const service = await h.startService({ KAFKA_GROUP_ID: `${h.group}-locks`, BARS_DB_MAX_RETRIES: '1' });
    h.onCleanup(async () =>
      (await h.getAdmin()).deleteGroups([`${h.group}-locks`]).then(
        () => undefined,
        () => undefined,
      ),
    );
    await waitFor('caught up', () => h.caughtUp(`${h.group}-locks`), 60_000);
    const admin = await h.getAdmin();
    await admin.deleteTopics({ topics: [h.dlqTopic] }); // its sends now fail (no auto-creation)
    await waitFor('the dead-letter topic gone', async () => !(await admin.listTopics()).includes(h.dlqTopic));
    await h.produceRaw([{ key: 'bad', value: '{not json', partition: 0 }]);
    const more = makeBars(20, 1, minute(20, 18, 0), 43);
    await h.produceRaw(more.map((b) => ({ key: b.symbol, value: JSON.stringify(b), partition: 1 })));
    // While partition 0's dead letter keeps failing, its fence row is never held by the writer.
    const probe = new pg.Client({ ...PG, database: h.database });
    await probe.connect();
    h.onCleanup(() => probe.end());
    const deadline = Date.now() + 6000;
    let probes = 0;
    while (Date.now() < deadline) {
      await probe.query('BEGIN');
      await probe.query(
        `SELECT 1 FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1 AND partition = 0 FOR UPDATE NOWAIT`,
        [`${h.group}-locks`],
      ); // 55P03 (lock_not_available) here would fail the test
      await probe.query('ROLLBACK');
      probes++;
      await sleep(20);
    }
    expect(probes).toBeGreaterThan(50);
    const committed = await h.committedOffsets(`${h.group}-locks`);
    const ends = await h.endOffsets();
    expect(committed.get(1)).toBe(ends.get(1)); // the other partition went on
    expect(committed.get(0)).toBe(ends.get(0)! - 1n); // the rejected message waits for its dead letter
    await admin.createTopics({ topics: [{ topic: h.dlqTopic, numPartitions: 1 }], waitForLeaders: true });
    await waitFor('the dead letter sent, the offset committed', () => h.caughtUp(`${h.group}-locks`), 60_000);
    expect(await service.stop()).toBe(true);
  });

  test('a commit kafkajs would skip (the consumer stopping), or one made before a rejoin, is refused, not recorded', async () => {
    const logger = createLogger('silent');
    const settings = h.config({ KAFKA_GROUP_ID: `${h.group}-commits` }).kafka;
    h.onCleanup(async () =>
      (await h.getAdmin()).deleteGroups([`${h.group}-commits`]).then(
        () => undefined,
        () => undefined,
      ),
    );
    const epochs: number[] = [];
    const start = async () => {
      const consumer = new KafkajsConsumer(createKafka(settings, logger), settings, logger);
      await consumer.start({
        onBatch: async () => null,
        onAssignment: (_tps, epoch) => epochs.push(epoch),
        onFatal: () => undefined,
      });
      return consumer;
    };
    const a = await start();
    await waitFor('joined', async () => a.isJoined());
    const epoch = epochs.at(-1)!;
    await a.commit([{ topic: h.topic, partition: 0, offset: '3' }], epoch);
    // A second member joins: a rebalance, a new epoch for the first.
    const b = await start();
    await waitFor(
      'both joined again',
      async () => a.isJoined() && b.isJoined() && epochs.length >= 3,
      60_000,
    );
    await expect(a.commit([{ topic: h.topic, partition: 0, offset: '5' }], epoch)).rejects.toBeInstanceOf(
      StaleCommitError,
    );
    // Stopping: kafkajs would return without committing; the adapter refuses instead.
    const stopping = a.stop();
    await expect(
      a.commit([{ topic: h.topic, partition: 0, offset: '7' }], epochs.at(-1)!),
    ).rejects.toBeInstanceOf(StaleCommitError);
    await stopping;
    await b.stop();
    expect((await h.committedOffsets(`${h.group}-commits`)).get(0)).toBe(3n);
  });
});

describe('6. partitions added to a live topic', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(3);
  });
  afterAll(() => h.cleanup());

  test('are consumed within about KAFKA_METADATA_MAX_AGE, not kafkajs’s 5 minutes', async () => {
    const service = await h.startService({ KAFKA_METADATA_MAX_AGE: '5s' });
    const before = makeBars(30, 10, minute(20, 19, 0), 51);
    await h.produceBars(before);
    await waitFor('the first feed', async () => (await h.rowCount()) === 300 && (await h.caughtUp()));
    const admin = await h.getAdmin();
    await admin.createPartitions({ topicPartitions: [{ topic: h.topic, count: 6 }] });
    const bars = makeBars(100, 60, minute(21, 19, 0), 52); // 6,000 bars, spread over all 6 partitions
    // A producer of its own: the harness's one would not know the new partitions for 5 minutes either
    // (kafkajs drops messages for partitions missing from its metadata).
    const producer = h.kafka.producer();
    await producer.connect();
    h.onCleanup(() => producer.disconnect());
    await producer.send({
      topic: h.topic,
      acks: -1,
      messages: bars.map((b, i) => ({ key: b.symbol, value: JSON.stringify(b), partition: i % 6 })),
    });
    expect([...(await h.endOffsets()).entries()].filter(([p]) => p >= 3).map(([, end]) => end)).toEqual([
      1000n,
      1000n,
      1000n,
    ]);
    const started = Date.now();
    await waitFor(
      'the bars on the new partitions',
      async () => (await h.rowCount()) === 6300 && (await h.caughtUp()),
      60_000,
      250,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(diffTables(expectedTable([...before, ...bars]), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});
