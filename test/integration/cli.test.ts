/**
 * The operator CLI as operators run it (`node dist/cli/main.js`, which `npx bar-writer` runs), with only
 * the service's environment, against the real broker and database.
 */
import { Harness, makeBars, runCli, waitFor } from '../support/harness';

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
