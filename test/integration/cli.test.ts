/**
 * The operator CLI as operators run it (`node dist/cli/main.js`, which `npx bar-writer` runs), with only
 * the service's environment, against the real broker and database.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  diffTables,
  expectedTable,
  Harness,
  makeBars,
  runCli,
  waitFor,
  type TestBar,
} from '../support/harness';

const CLI = 'dist/cli/main.js';

describe('bar-writer: the command and its help', () => {
  test('every command has --help (exit 0); no command or an unknown one is a usage error (exit 2)', async () => {
    const top = await runCli(CLI, ['--help'], {});
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}(\w+) {2}/gm)].map((m) => m[1]!);
    expect(names).toEqual(expect.arrayContaining(['migrate', 'offsets']));
    for (const name of names) {
      const r = await runCli(CLI, [name, '--help'], {});
      expect({ name, code: r.code, usage: r.stdout.startsWith(`Usage: bar-writer ${name}`) }).toEqual({
        name,
        code: 0,
        usage: true,
      });
    }
    expect((await runCli(CLI, [], {})).code).toBe(2);
    const unknown = await runCli(CLI, ['frobnicate'], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  test('bad configuration is exit 2 naming the variable, before anything connects', async () => {
    const r = await runCli(CLI, ['offsets', 'show'], { DB_PORT: 'abc' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('DB_PORT (db.port): must be an integer from 1 to 65535');
  });
});

describe('bar-writer offsets', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  const positions = async () => {
    const r = await runCli(CLI, ['offsets', 'show', '--json'], h.env());
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    return (
      JSON.parse(r.stdout) as {
        partition: number;
        fence: string | null;
        committed: string | null;
        logEnd: string;
      }[]
    ).map((p) => [p.partition, p.fence, p.committed, p.logEnd]);
  };

  test('show: fence, committed offset and log end per partition; reset refused while the group is active', async () => {
    const bars = makeBars(20, 10, Date.UTC(2026, 10, 20, 14, 0), 71); // 200 bars
    await h.produceBars(bars);
    const child = h.spawnService();
    await waitFor('landed', async () => (await h.rowCount()) === 200 && (await h.caughtUp()));
    const ends = await h.endOffsets();
    expect(await positions()).toEqual(
      [0, 1].map((p) => [p, ends.get(p)!.toString(), ends.get(p)!.toString(), ends.get(p)!.toString()]),
    );
    const text = await runCli(CLI, ['offsets', 'show'], h.env());
    expect(text.stdout).toMatch(
      /^partition\s+fence\s+committed\s+log start\s+log end\s+lag\s+fence covers$/m,
    );

    const refused = await runCli(CLI, ['offsets', 'reset', '--topic', h.topic, '--to', 'earliest'], h.env());
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/has 1 active member\(s\): stop them/);
    expect(await positions()).toEqual(
      [0, 1].map((p) => [p, ends.get(p)!.toString(), ends.get(p)!.toString(), ends.get(p)!.toString()]),
    );
    expect(await h.terminate(child)).toBe(0);
  });

  test('reset moves fences and committed offsets together; the service then replays from there', async () => {
    const dry = await runCli(
      CLI,
      ['offsets', 'reset', '--topic', h.topic, '--to', 'earliest', '--dry-run'],
      h.env(),
    );
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('dry run: nothing changed');
    const ends = await h.endOffsets();
    const reset = await runCli(
      CLI,
      ['offsets', 'reset', '--topic', h.topic, '--partition', '1', '--to', 'earliest'],
      h.env(),
    );
    expect({ code: reset.code, stderr: reset.stderr }).toEqual({ code: 0, stderr: '' });
    expect(reset.stdout).toContain(`partition 1: fence ${ends.get(1)} → 0, committed ${ends.get(1)} → 0`);
    expect(await positions()).toEqual([
      [0, ends.get(0)!.toString(), ends.get(0)!.toString(), ends.get(0)!.toString()],
      [1, '0', '0', ends.get(1)!.toString()],
    ]);
    // A replay of partition 1: every bar fetched and written again (identical: nothing changes).
    const before = await h.tableStats();
    const child = h.spawnService();
    const port = await h.portOf(child);
    await waitFor('replayed', () => h.caughtUp());
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain(`bars_written_total ${ends.get(1)}`);
    expect((await h.tableStats()).n_tup_upd).toBe(before.n_tup_upd);
    expect(await h.terminate(child)).toBe(0);

    // By time: the first message at or after an instant (here after the last one: the log end).
    const later = await runCli(
      CLI,
      ['offsets', 'reset', '--topic', h.topic, '--to', new Date(Date.now() + 60_000).toISOString()],
      h.env(),
    );
    expect(later.code).toBe(0);
    expect((await positions()).map((p) => p[1] === p[3] && p[2] === p[3])).toEqual([true, true]);

    const bad = await runCli(CLI, ['offsets', 'reset', '--topic', h.topic, '--to', 'yesterday'], h.env());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--to must be earliest, latest, an offset or an ISO-8601 time with a zone');
  });
});

describe('bar-writer backfill', () => {
  const h = new Harness();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-backfill-'));
  beforeAll(() => h.setupSchema());
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await h.cleanup();
  });

  const csvLine = (b: TestBar) =>
    [b.close, b.symbol, b.timestamp, b.open, b.high, b.low, 'XNAS', b.volume, b.vwap ?? ''].join(',');

  test('CSV: rows land exactly, broken rows go to the rejects file with their line; a second run changes nothing', async () => {
    const bars = makeBars(30, 20, Date.UTC(2026, 10, 2, 14, 30), 81); // 600 bars
    const later = {
      ...bars[5]!,
      close: bars[5]!.open,
      high: Math.max(bars[5]!.high, bars[5]!.open),
      low: Math.min(bars[5]!.low, bars[5]!.open),
    };
    // One record a bar; the first spans two lines (RFC 4180: a quoted field may hold a line break).
    const lines = [
      'close,symbol,timestamp,open,high,low,exchange,volume,vwap', // any order, an extra column
      csvLine(bars[0]!).replace(',XNAS,', ',"XN\nAS ""Q"" ",'),
      ...bars.slice(1).map(csvLine),
      csvLine({ ...bars[0]!, timestamp: '1764600000' }), // epoch seconds
      csvLine({ ...bars[1]!, open: 'x' as unknown as number }),
      csvLine(later), // the same key again, later in the file: wins
      '"unterminated,AAA,2026-11-02T14:30:00Z', // a quote never closed: takes the rest of the file
    ];
    const file = path.join(dir, 'history.csv');
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const first = await runCli(CLI, ['backfill', file], h.env(), { cwd: dir });
    expect({ code: first.code, stderr: first.stderr.replace(/^backfill: \d[^\n]*\n/gm, '') }).toEqual({
      code: 3,
      stderr: '',
    });
    expect(first.stdout).toMatch(/^backfill: read 604, written 600, unchanged 1, rejected 3, /m);
    expect(first.stdout).toContain('rejected by reason: timestamp_in_seconds 1, wrong_type 1, invalid_csv 1');
    const stored = await h.storedBars();
    expect(diffTables(expectedTable([...bars, later]), stored)).toEqual([]);
    const rejects = fs
      .readFileSync(path.join(dir, 'history.csv.rejects.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; reason: string; text: string });
    // Rejects name the line a record starts on: one more than its index, and one more after bars[0].
    expect(rejects.map((r) => [r.line, r.reason, r.text])).toEqual([
      [603, 'timestamp_in_seconds', lines[601]],
      [604, 'wrong_type', lines[602]],
      [606, 'invalid_csv', lines[604]],
    ]);
    const before = await h.tableStats();
    const again = await runCli(CLI, ['backfill', file], h.env(), { cwd: dir });
    expect(again.code).toBe(3);
    expect(again.stdout).toMatch(/^backfill: read 604, written 0, unchanged 601, rejected 3, /m);
    expect((await h.tableStats()).n_tup_upd).toBe(before.n_tup_upd);
  });

  test('a backfill never replaces a bar Kafka delivered (a live correction) unless told to: --version-time now', async () => {
    const ts = '2026-11-04T14:30:00.000Z';
    // What the service wrote from Kafka: a correction, versioned at its record time.
    await h.pool.query(
      `INSERT INTO "${h.schema}".bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap, revision, source_time, source_origin)
       VALUES ('CORR', $1, 10, 12, 9, 11, 500, NULL, 0, now() - interval '1 minute', 42)`,
      [ts],
    );
    const file = path.join(dir, 'vendor.csv');
    fs.writeFileSync(
      file,
      [
        'symbol,timestamp,open,high,low,close,volume',
        `CORR,${ts},1,2,0.5,1.5,7`,
        `GAP,${ts},1,2,0.5,1.5,7`,
      ].join('\n') + '\n',
    );
    const close = async (symbol: string) =>
      (
        await h.pool.query<{ close: number }>(`SELECT close FROM "${h.schema}".bars_1m WHERE symbol = $1`, [
          symbol,
        ])
      ).rows[0]?.close;
    const byDefault = await runCli(CLI, ['backfill', '--no-refresh', file], h.env(), { cwd: dir });
    expect(byDefault.stdout).toMatch(/^backfill: read 2, written 1, unchanged 1, rejected 0, /m);
    expect([await close('CORR'), await close('GAP')]).toEqual([11, 1.5]); // the gap filled, the correction kept
    const told = await runCli(CLI, ['backfill', '--no-refresh', '--version-time', 'now', file], h.env(), {
      cwd: dir,
    });
    expect(told.stdout).toMatch(/^backfill: read 2, written 2, unchanged 0, rejected 0, /m);
    expect(await close('CORR')).toBe(1.5);
    const bad = await runCli(CLI, ['backfill', '--version-time', 'yesterday', file], h.env(), { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--version-time must be an ISO-8601 time with a zone or epoch milliseconds');
  });

  test('JSON lines, gzipped and from stdin, with --batch: the same validation as a Kafka message', async () => {
    const bars = makeBars(10, 30, Date.UTC(2026, 10, 3, 14, 30), 82); // 300 bars
    const text = bars.map((b) => JSON.stringify(b)).join('\n') + '\n{"symbol":"X"}\n';
    const gz = path.join(dir, 'feed.jsonl.gz');
    fs.writeFileSync(gz, zlib.gzipSync(text));
    const fromFile = await runCli(CLI, ['backfill', '--batch', '7', gz], h.env(), { cwd: dir });
    expect(fromFile.code).toBe(3);
    expect(fromFile.stdout).toMatch(/^backfill: read 301, written 300, unchanged 0, rejected 1, /m);
    const fromStdin = await runCli(CLI, ['backfill', '--format', 'jsonl', '-'], h.env(), {
      cwd: dir,
      input: text,
    });
    expect(fromStdin.stdout).toMatch(/^backfill: read 301, written 0, unchanged 300, rejected 1, /m);
    expect((await runCli(CLI, ['backfill', 'nope.txt'], h.env(), { cwd: dir })).code).toBe(2);
    expect((await runCli(CLI, ['backfill', '--batch', '0', gz], h.env(), { cwd: dir })).stderr).toContain(
      '--batch must be a positive integer',
    );
  });

  test('a file larger than the heap streams through in bounded memory', async () => {
    // 700,000 rows (~45 MB of CSV) with a 40 MB heap: the file alone is larger than the heap.
    const file = path.join(dir, 'large.csv');
    const out = fs.createWriteStream(file);
    out.write('symbol,timestamp,open,high,low,close,volume,vwap\n');
    for (let i = 0; i < 700_000; i++) {
      const ts = new Date(Date.UTC(2026, 9, 1) + Math.floor(i / 2000) * 60_000).toISOString();
      if (i % 50_000 === 0) await new Promise((r) => setImmediate(r));
      out.write(`L${i % 2000},${ts},10.5,11.25,10.125,11,${i},10.75\n`);
    }
    await new Promise((r) => out.end(r));
    expect(fs.statSync(file).size).toBeGreaterThan(42_000_000);
    const r = await runCli(CLI, ['backfill', '--no-refresh', file], h.env(), {
      cwd: dir,
      nodeArgs: ['--max-old-space-size=40'],
      timeoutMs: 170_000,
    });
    expect({ code: r.code, tail: r.stderr.slice(-300) }).toEqual({ code: 0, tail: expect.any(String) });
    expect(r.stdout).toMatch(/^backfill: read 700000, written 700000, unchanged 0, rejected 0, /m);
    const n = await h.pool.query(
      `SELECT count(*)::int AS n FROM "${h.schema}".bars_1m WHERE symbol LIKE 'L%'`,
    );
    expect(n.rows[0].n).toBe(700_000);
  });
});

describe('bar-writer dlq replay', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(() => h.cleanup());

  test('replays the letters of a fixed cause once, with their headers and original time; --dry-run counts', async () => {
    const good = makeBars(10, 5, Date.UTC(2026, 10, 4, 14, 30), 91);
    const old = makeBars(5, 4, Date.UTC(1985, 5, 3, 14, 30), 92); // refused: before BARS_MIN_TIMESTAMP
    await h.produceRaw([
      ...good.map((b) => ({ key: b.symbol, value: JSON.stringify(b) })),
      ...old.map((b) => ({ key: b.symbol, value: JSON.stringify(b), headers: { origin: 'vendor-x' } })),
      { key: 'junk', value: 'not json' },
    ]);
    let service = await h.startService();
    await waitFor('consumed', async () => (await h.rowCount()) === 50 && (await h.caughtUp()));
    expect(await service.stop()).toBe(true);
    const letters = await h.readDeadLetters(21);

    const dry = await runCli(CLI, ['dlq', 'replay', '--reason', 'timestamp_too_early', '--dry-run'], h.env());
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('would replay 20 to');
    expect(dry.stdout).toContain('(timestamp_too_early 20)');
    expect(dry.stdout).toContain('1 left out by the filters');

    // The contract widened for a history load; the letters go back, once.
    const replayed = await runCli(CLI, ['dlq', 'replay', '--reason', 'timestamp_too_early'], h.env());
    expect({ code: replayed.code, stderr: replayed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(replayed.stdout).toContain('replayed 20 to');
    const again = await runCli(CLI, ['dlq', 'replay', '--reason', 'timestamp_too_early'], h.env());
    expect(again.stdout).toContain('replayed 0 to');
    expect(again.stdout).toContain('20 replayed before');

    service = await h.startService({ BARS_MIN_TIMESTAMP: '1980-01-01T00:00:00Z' });
    await waitFor('the replayed bars', async () => (await h.rowCount()) === 70 && (await h.caughtUp()));
    expect(diffTables(expectedTable([...good, ...old]), await h.storedBars())).toEqual([]);
    expect(await service.stop()).toBe(true);
    // What was replayed carries the original headers and says where it came from.
    const admin = await h.getAdmin();
    const ends = await admin.fetchTopicOffsets(h.topic);
    expect(ends.reduce((n, e) => n + Number(e.high), 0)).toBe(71 + 20);
    // Each replayed letter names its original's version time: no newer than it was, whatever the
    // topic's timestamp type.
    const originalTime = new Map(
      letters.map((l) => [l.value!.toString(), l.headers['bar-writer.source.timestamp']]),
    );
    const replays = (await h.readTopic(h.topic, 91)).filter((m) => m.headers['bar-writer.replayed-from']);
    expect(replays).toHaveLength(20);
    for (const m of replays) {
      expect(m.headers).toMatchObject({
        origin: 'vendor-x',
        'bar-writer.version-time': originalTime.get(m.value!.toString()),
      });
    }
  });
});

describe('bar-writer doctor', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(3);
  });
  afterAll(() => h.cleanup());

  test('a ready deployment: exit 0, one line per check; a missing topic or migrations: exit 3 naming it', async () => {
    const ok = await runCli(CLI, ['doctor'], h.env());
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    for (const check of [
      'configuration',
      'PostgreSQL',
      'migrations',
      'codecs',
      'Kafka',
      'topic',
      'group',
      'dead-letter topic',
    ]) {
      expect(ok.stdout).toMatch(new RegExp(`^[✓!] ${check}: `, 'm'));
    }
    expect(ok.stdout).toMatch(/^✓ PostgreSQL: reachable, version \d+/m);
    expect(ok.stdout).toMatch(/^✓ topic: .*: 3 partition\(s\)$/m);
    expect(ok.stdout).toMatch(/^! privileges of postgres: sufficient, and more than needed: superuser/m);
    expect(ok.stdout).toMatch(/^ready: nothing failed/m);

    const noTopic = await runCli(CLI, ['doctor'], h.env({ KAFKA_TOPIC: 'no.such.topic' }));
    expect(noTopic.code).toBe(3);
    expect(noTopic.stdout).toMatch(/^✗ topic: no\.such\.topic does not exist/m);
    const noSchema = await runCli(CLI, ['doctor'], h.env({ DB_SCHEMA: 'bw_doctor_nothing_here' }));
    expect(noSchema.code).toBe(3);
    expect(noSchema.stdout).toMatch(/^✗ migrations: none applied in schema bw_doctor_nothing_here/m);
    const noBroker = await runCli(CLI, ['doctor'], h.env({ KAFKA_BROKERS: '127.0.0.1:1' }), {
      timeoutMs: 120_000,
    });
    expect(noBroker.code).toBe(3);
    expect(noBroker.stdout).toMatch(/^✗ Kafka: unreachable at 127\.0\.0\.1:1/m);
  });
});
