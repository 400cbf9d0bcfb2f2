/**
 * Readers on a replica (issue 29 §3), on a real streaming replica: scripts/replica.sh runs a primary and
 * a hot standby made with pg_basebackup -R. The service writes to the primary (DB_*) and reads from the
 * standby (DB_READ_*). Proven by pausing the standby's replay: bars landed on the primary stay out of
 * the API's answers until replay resumes. Then the standby stops: bars keep landing on the primary,
 * /readyz stays ready and names the replica unreachable; it starts again and reads are answered again.
 *
 * Needs TEST_REPLICA_PRIMARY_PORT and TEST_REPLICA_STANDBY_PORT (scripts/test.sh sets them, with
 * TEST_PG_* pointed at the primary); skipped with a message without them.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import type { Service } from '../../src/service';
import { Harness, REPO, expectedTable, httpGet, makeBars, waitFor, type TestBar } from '../support/harness';
import { PG } from '../support/env';

const PRIMARY_PORT = process.env.TEST_REPLICA_PRIMARY_PORT;
const STANDBY_PORT = process.env.TEST_REPLICA_STANDBY_PORT;
const enabled = Boolean(PRIMARY_PORT && STANDBY_PORT);
if (!enabled) {
  console.warn(
    'replica.test.ts skipped: set TEST_REPLICA_PRIMARY_PORT and TEST_REPLICA_STANDBY_PORT (scripts/replica.sh start), with TEST_PG_PORT the primary',
  );
}

function replicaSh(cmd: 'stop-standby' | 'start-standby'): void {
  execFileSync(path.join(REPO, 'scripts', 'replica.sh'), [cmd], {
    env: { ...process.env, REPLICA_PRIMARY_PORT: PRIMARY_PORT, REPLICA_STANDBY_PORT: STANDBY_PORT },
    stdio: 'pipe',
  });
}

const SYMBOL = 'S0000';
const FROM = '2026-11-24T14:30:00.000Z';
const TO = '2026-11-24T16:30:00.000Z';

(enabled ? describe : describe.skip)('readers on a streaming replica', () => {
  const h = new Harness();
  let standby: pg.Pool;
  let service: Service;
  const bars = makeBars(2, 90, Date.parse(FROM), 29);
  const symbolBars = (list: TestBar[]) =>
    [...expectedTable(list).values()]
      .filter((b) => b.symbol === SYMBOL)
      .sort((a, b) => a.timestamp.localeCompare(b.timestamp))
      .map((b) => ({ ...b, trade_count: null })); // the test's bars carry no trade count
  const read = async () => {
    const r = await httpGet(service.port, `/v1/bars/${SYMBOL}?from=${FROM}&to=${TO}`);
    return { status: r.status, body: r.status === 200 ? (JSON.parse(r.body) as { bars: TestBar[] }) : null };
  };
  const standbyCount = async () =>
    Number(
      (await standby.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${h.schema}".bars_1m`)).rows[0]!
        .n,
    );
  const readyz = async () => {
    const r = await httpGet(service.port, '/readyz');
    return {
      status: r.status,
      body: JSON.parse(r.body) as { status: string; checks: Record<string, { ok: boolean; detail: string }> },
    };
  };

  beforeAll(async () => {
    expect(PG.port).toBe(Number(PRIMARY_PORT)); // the harness migrates and counts on the primary
    standby = new pg.Pool({ ...PG, port: Number(STANDBY_PORT), max: 2 });
    standby.on('error', () => undefined);
    h.onCleanup(() => standby.end());
    await h.setupSchema();
    await h.createTopics(2);
    service = await h.startService({
      DB_READ_HOST: '127.0.0.1',
      DB_READ_PORT: String(STANDBY_PORT),
    });
  }, 60_000);

  afterAll(async () => {
    replicaSh('start-standby');
    await h.cleanup();
  }, 60_000);

  test('reads are answered from the standby, exactly; a paused replay shows in them', async () => {
    const first = bars.slice(0, 120); // minutes 0..59 of both symbols
    await h.produceBars(first);
    await waitFor('the first bars on the primary', async () => (await h.rowCount()) === 120);
    await waitFor('the first bars replayed on the standby', async () => (await standbyCount()) === 120);
    const r = await read();
    expect(r.status).toBe(200);
    expect(r.body!.bars).toEqual(symbolBars(first));
    const activity = await standby.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'bar-writer-reads'`,
    );
    expect(activity.rows.length).toBeGreaterThan(0);

    // Replay paused on the standby: the next bars land on the primary, the API does not see them.
    await standby.query('SELECT pg_wal_replay_pause()');
    try {
      await h.produceBars(bars.slice(120));
      await waitFor('all bars on the primary', async () => (await h.rowCount()) === bars.length);
      expect((await read()).body!.bars).toEqual(symbolBars(first));
      const ready = await waitFor('readyz naming the paused replay', async () => {
        const r2 = await readyz();
        return /replay paused/.test(r2.body.checks.readReplica?.detail ?? '') ? r2 : null;
      });
      expect(ready.status).toBe(200);
      expect(ready.body.checks.readReplica).toMatchObject({ ok: true, advisory: true });
      expect(ready.body.checks.readReplica!.detail).toMatch(
        /^reachable, in recovery \(hot standby\), replay paused, replay lag \d+\.\d s$/,
      );
    } finally {
      await standby.query('SELECT pg_wal_replay_resume()');
    }
    await waitFor('the rest read from the standby', async () => {
      const now = await read();
      return now.body?.bars.length === symbolBars(bars).length ? now : null;
    });
    expect((await read()).body!.bars).toEqual(symbolBars(bars));
  }, 120_000);

  test('the standby stopped: bars keep landing, /readyz stays ready naming it unreachable; started: reads again', async () => {
    replicaSh('stop-standby');
    const more = makeBars(2, 30, Date.parse(FROM) + 90 * 60_000, 30);
    await h.produceBars(more);
    await waitFor(
      'the new bars on the primary',
      async () => (await h.rowCount()) === bars.length + more.length,
    );
    expect(await h.rowCount()).toBe(bars.length + more.length);
    const ready = await waitFor('readyz naming the replica unreachable', async () => {
      const r = await readyz();
      return /^unreachable/.test(r.body.checks.readReplica?.detail ?? '') ? r : null;
    });
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');
    expect(ready.body.checks.readReplica).toMatchObject({ ok: false, advisory: true });
    const detail = ready.body.checks.readReplica!.detail;
    expect(detail).not.toMatch(/127\.0\.0\.1|connect /);
    expect(detail).not.toContain(String(STANDBY_PORT));
    expect((await read()).status).toBe(503);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metrics).toMatch(/^db_read_target_up 0$/m);

    replicaSh('start-standby');
    const all = [...bars, ...more];
    const answered = await waitFor('reads answered from the standby again', async () => {
      const r = await read();
      return r.status === 200 && r.body!.bars.length === symbolBars(all).length ? r : null;
    });
    expect(answered.body!.bars).toEqual(symbolBars(all));
    await waitFor('readyz naming the replica reachable', async () =>
      /^reachable, in recovery/.test((await readyz()).body.checks.readReplica?.detail ?? ''),
    );
  }, 120_000);

  test("without DB_READ_*, reads go to the writer's database (no replica check)", async () => {
    const plain = new Harness();
    try {
      // The same schema, another (empty) topic: only its read API is used.
      await plain.createTopics(1);
      const env = { DB_SCHEMA: h.schema };
      const s = await plain.startService(env);
      replicaSh('stop-standby'); // reads on the standby would fail now
      try {
        const r = await httpGet(s.port, `/v1/bars/${SYMBOL}?from=${FROM}&to=${TO}`);
        expect(r.status).toBe(200);
        expect((JSON.parse(r.body) as { bars: TestBar[] }).bars.length).toBeGreaterThan(0);
        const checks = (JSON.parse((await httpGet(s.port, '/readyz')).body) as { checks: object }).checks;
        expect(Object.keys(checks)).not.toContain('readReplica');
      } finally {
        replicaSh('start-standby');
      }
    } finally {
      await plain.cleanup();
    }
  }, 60_000);
});
