/**
 * The neighbours of last round's fixes (issue 28), each found failing silently on the code before this
 * round, against the real broker and database:
 *
 *   A. the topic deleted and re-created while the service runs (not only while it is stopped);
 *   B. four partitions whose fence rows are held, of twelve (not only one): the other eight flow;
 *   C. an identical re-send with a newer version, then a version between the two on another partition;
 *   D. a committed offset moved ahead of the fence with Kafka's own tools: the fence wins, said, counted;
 *   E. `offsets reset --force` while a member runs: picked up, not undone;
 *   F. a record timestamp from a clock in microseconds: the bar lands, and a later correction replaces it.
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
  runCli,
  waitFor,
  type TestBar,
} from '../support/harness';

const CLI = 'dist/cli/main.js';
const minute = (d: number, h: number, m: number) => Date.UTC(2026, 10, d, h, m);

describe('A. the topic deleted and re-created under a running service', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(3);
  });
  afterAll(() => h.cleanup());

  test('every bar of the new log lands; the replaced logs are said and counted', async () => {
    const first = makeBars(30, 100, minute(20, 14, 0), 61); // 3,000 bars
    await h.produceBars(first);
    const service = await h.startService({ KAFKA_METADATA_MAX_AGE: '5s' });
    await waitFor(
      'the first feed',
      async () => (await h.rowCount()) === 3000 && (await h.caughtUp()),
      120_000,
    );

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
    const second = makeBars(30, 300, minute(21, 14, 0), 62); // 9,000 bars, other minutes
    await h.produceBars(second);
    await waitFor(
      'all 9,000 new bars',
      async () => (await h.rowCount()) === 12_000 && (await h.caughtUp()),
      180_000,
      500,
    );
    expect(diffTables(expectedTable([...first, ...second]), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'kafka_log_replaced_total')).toBeGreaterThanOrEqual(1);
    expect(await service.stop()).toBe(true);
  });
});

describe('B. four partitions of twelve that cannot be written', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(12);
  });
  afterAll(() => h.cleanup());

  test('fence rows 0-3 held: the other eight reach their log end while they are; then 0-3 land too', async () => {
    const warm = makeBars(120, 2, minute(20, 14, 0), 71); // every partition gets a fence row
    await h.produceBars(warm);
    const service = await h.startService({ DB_LOCK_TIMEOUT: '1s', BARS_DB_RETRY_MAX_DELAY: '2s' });
    await waitFor('the first feed', async () => (await h.rowCount()) === 240 && (await h.caughtUp()));

    const holder = new pg.Client({ ...PG, database: h.database });
    await holder.connect();
    h.onCleanup(() => holder.end());
    await holder.query('BEGIN');
    await holder.query(
      `SELECT 1 FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1 AND partition IN (0, 1, 2, 3) FOR UPDATE`,
      [h.group],
    );
    const bars = makeBars(1200, 50, minute(21, 14, 0), 72); // 60,000 bars over 12 partitions
    await h.produceBars(bars);
    const ends = await h.endOffsets();
    await waitFor(
      'partitions 4-11 at their log end while 0-3 are held',
      async () => {
        const committed = await h.committedOffsets();
        return [4, 5, 6, 7, 8, 9, 10, 11].every((p) => committed.get(p) === ends.get(p));
      },
      90_000,
      250,
    );
    const committed = await h.committedOffsets();
    expect([0, 1, 2, 3].filter((p) => committed.get(p) === ends.get(p))).toEqual([]); // really held
    await holder.query('ROLLBACK');
    await waitFor(
      'partitions 0-3 too',
      async () => (await h.rowCount()) === 240 + 60_000 && (await h.caughtUp()),
      120_000,
    );
    expect(diffTables(expectedTable([...warm, ...bars]), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});

describe('C. the newest version is the stored one, identical re-sends included', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('X at revision 1 (p0), X again at revision 3 (p0), Y at revision 2 (p1): X stays, for 200 of 200 keys; by record time too', async () => {
    const x = makeBars(200, 1, minute(20, 14, 0), 81);
    const y = x.map((b) => ({
      ...b,
      close: b.open,
      high: Math.max(b.high, b.open),
      low: Math.min(b.low, b.open),
    }));
    const t0 = Date.now() - 600_000;
    const send = (bars: TestBar[], partition: number, revision: number | null, time: number) =>
      h.produceRaw(
        bars.map((b) => ({
          key: b.symbol,
          partition,
          timestamp: String(time),
          value: JSON.stringify(revision === null ? b : { ...b, revision }),
        })),
      );
    const service = await h.startService();
    const landed = async (count: number) =>
      waitFor(`${count} rows, caught up`, async () => (await h.rowCount()) === count && (await h.caughtUp()));
    // By revision.
    await send(x, 0, 1, t0);
    await landed(200);
    await send(x, 0, 3, t0 + 1000);
    await landed(200);
    await send(y, 1, 2, t0 + 2000);
    await landed(200);
    expect(diffTables(expectedTable(x), await h.storedBars())).toEqual([]);
    // By record time (no revision): X at t, X again at t+2, Y at t+1 through the other partition.
    const x2 = x.map((b) => ({ ...b, timestamp: new Date(minute(20, 15, 0)).toISOString() }));
    const y2 = y.map((b) => ({ ...b, timestamp: new Date(minute(20, 15, 0)).toISOString() }));
    await send(x2, 0, null, t0 + 10_000);
    await landed(400);
    await send(x2, 0, null, t0 + 12_000);
    await landed(400);
    await send(y2, 1, null, t0 + 11_000);
    await landed(400);
    expect(diffTables(expectedTable([...x, ...x2]), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
  });
});

describe('D and E. where a partition resumes when operators move it', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
  });
  afterAll(() => h.cleanup());

  const fence = async () =>
    Number(
      (
        await h.pool.query<{ n: string }>(
          `SELECT next_offset::text AS n FROM "${h.schema}".bar_writer_offsets WHERE consumer_group = $1 AND partition = 0`,
          [h.group],
        )
      ).rows[0]?.n ?? -1,
    );

  test('D. a committed offset moved ahead of the fence with Kafka tools: the fence wins, nothing is skipped, the re-read said and counted', async () => {
    const first = makeBars(10, 20, minute(20, 14, 0), 91); // 200 bars
    await h.produceBars(first);
    let service = await h.startService();
    await waitFor('200 bars', async () => (await h.rowCount()) === 200 && (await h.caughtUp()));
    expect(await service.stop()).toBe(true);
    // 100 more arrive while nothing runs; the group is moved past them with Kafka's own tools.
    const unseen = makeBars(10, 10, minute(20, 15, 0), 92);
    await h.produceBars(unseen);
    const admin = await h.getAdmin();
    await admin.setOffsets({
      groupId: h.group,
      topic: h.topic,
      partitions: [{ partition: 0, offset: '300' }],
    });
    service = await h.startService();
    await waitFor(
      'the 100 unseen bars, from the fence',
      async () => (await h.rowCount()) === 300 && (await h.caughtUp()),
    );
    expect(diffTables(expectedTable([...first, ...unseen]), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'kafka_resume_reread_offsets_total')).toBe(100);
    expect(await service.stop()).toBe(true);
  });

  test('E. offsets reset --force while a member runs: the member resumes from the new fence (nothing undone)', async () => {
    const service = await h.startService();
    await waitFor('caught up', () => h.caughtUp());
    expect(await fence()).toBe(300);
    const before = await h.tableStats();
    const r = await runCli(CLI, ['offsets', 'reset', '--topic', h.topic, '--to', '50', '--force'], h.env());
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/running member\(s\) resume from them/);
    // Picked up: the range from 50 is read and written again (a replay: no row changes), the fence
    // ends at the log end, not left at 50 nor moved on past what was re-read.
    await waitFor(
      'the member to pick the reset up and write the range again',
      async () => {
        const m = (await httpGet(service.port, '/metrics')).body;
        return (
          metricValue(m, 'kafka_position_doubts_total', { reason: 'fence_moved_back' }) >= 1 &&
          (await fence()) === 300
        );
      },
      30_000,
      250,
    );
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_skipped_already_written_total')).toBe(0);
    expect(metricValue(metrics, 'bars_written_total')).toBeGreaterThanOrEqual(250);
    const after = await h.tableStats();
    expect(after.n_tup_upd - before.n_tup_upd).toBe(0); // a replay writes nothing
    await waitFor('committed at the end again', () => h.caughtUp());
    expect(await service.stop()).toBe(true);
  });
});

describe('F. a version time from a clock nobody checks', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    // Kafka 4 refuses timestamps more than an hour ahead by default; 3.9 (and a topic so set) takes them.
    await h.createTopics(1, { 'message.timestamp.after.max.ms': '9223372036854775807' });
  });
  afterAll(() => h.cleanup());

  test('a record time in microseconds lands the bar, versioned at its close; a later correction replaces it', async () => {
    const bar = makeBars(1, 1, minute(20, 14, 0), 101)[0]!;
    const service = await h.startService();
    await h.produceRaw([
      { key: bar.symbol, value: JSON.stringify(bar), timestamp: String(Date.now() * 1000) },
    ]);
    await waitFor('the bar', async () => (await h.rowCount()) === 1 && (await h.caughtUp()));
    const stored = await h.pool.query<{ t: Date }>(`SELECT source_time AS t FROM "${h.schema}".bars_1m`);
    expect(stored.rows[0]!.t.getTime()).toBe(Date.parse(bar.timestamp) + 60_000);
    const correction = {
      ...bar,
      close: bar.open,
      high: Math.max(bar.high, bar.open),
      low: Math.min(bar.low, bar.open),
    };
    await h.produceRaw([{ key: bar.symbol, value: JSON.stringify(correction) }]);
    await waitFor(
      'the correction',
      async () => (await h.storedBars()).values().next().value?.close === correction.close,
    );
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_version_time_bounded_total')).toBe(1);
    expect(await service.stop()).toBe(true);
  });
});
