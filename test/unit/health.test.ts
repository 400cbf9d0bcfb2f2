import type { Logger } from '../../src/observe/logger';
import { allReady } from '../../src/observe/readiness';
import { databaseCheck, replicaCheck } from '../../src/store/health';

/** A pool whose queries settle when the test says so; counts the queries sent. */
function fakePool() {
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  return {
    pending,
    query: () =>
      new Promise<never>((resolve, reject) => {
        pending.push({ resolve: () => resolve(undefined as never), reject });
      }),
  };
}

describe('databaseCheck', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('a query with no answer reports unreachable after answerWithinMs; one query at a time', async () => {
    const pool = fakePool();
    let t = 0;
    const check = databaseCheck(pool, 2000, () => t, 1000);
    const first = check();
    const second = check(); // shares the query in flight
    expect(pool.pending).toHaveLength(1);
    jest.advanceTimersByTime(1000);
    t = 1000;
    const away = { ok: false, detail: 'unreachable (no answer within 1000 ms)' };
    await expect(first).resolves.toEqual(away);
    await expect(second).resolves.toEqual(away);
    // Past the cache: still the same query in flight, no second one.
    t = 5000;
    const third = check();
    expect(pool.pending).toHaveLength(1);
    jest.advanceTimersByTime(1000);
    await expect(third).resolves.toEqual(away);
    // It answers at last: the next check after the cache sends a new query and reports reachable.
    pool.pending[0]!.resolve();
    await Promise.resolve();
    await Promise.resolve();
    t = 10_000;
    const fourth = check();
    expect(pool.pending).toHaveLength(2);
    pool.pending[1]!.resolve();
    await expect(fourth).resolves.toEqual({ ok: true, detail: 'reachable' });
  });

  test('an error is reported by its class and code (its text only in the log, once), and cached for ttlMs', async () => {
    const pool = fakePool();
    let t = 0;
    const warned: unknown[] = [];
    const logger = { warn: (fields: unknown) => void warned.push(fields) } as unknown as Logger;
    const check = databaseCheck(pool, 2000, () => t, 1000, logger);
    const r = check();
    pool.pending[0]!.reject(
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    );
    const said = {
      ok: false,
      detail: 'unreachable (transient error ECONNREFUSED; the service log says more)',
    };
    await expect(r).resolves.toEqual(said);
    t = 1999;
    await expect(check()).resolves.toEqual(said);
    expect(pool.pending).toHaveLength(1);
    expect(warned).toEqual([{ err: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' }]);
    expect(JSON.stringify(said)).not.toContain('127.0.0.1');
  });
});

describe('replicaCheck', () => {
  const gauges = () => {
    const seen: Record<string, number> = {};
    const g = (name: string) => ({ set: (v: number) => void (seen[name] = v) });
    return {
      seen,
      metrics: {
        readTargetUp: g('up'),
        readTargetInRecovery: g('recovery'),
        readTargetReplayLag: g('lag'),
      } as never,
    };
  };

  test('a standby: reachable, in recovery, its lag; advisory, so readiness is not failed', async () => {
    const { seen, metrics } = gauges();
    const pool = { query: async () => ({ rows: [{ recovery: true, paused: false, lag: 1.25 }] }) };
    const r = await replicaCheck(pool as never, metrics)();
    expect(r).toEqual({
      ok: true,
      advisory: true,
      detail: 'reachable, in recovery (hot standby), replay lag 1.3 s',
    });
    expect(seen).toEqual({ up: 1, recovery: 1, lag: 1.25 });
  });

  test('unreachable: the class and code only, never the text; ready all the same', async () => {
    const { seen, metrics } = gauges();
    const pool = {
      query: async () => {
        throw Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5433'), { code: 'ECONNREFUSED' });
      },
    };
    const r = await replicaCheck(pool as never, metrics)();
    expect(r.ok).toBe(false);
    expect(r.advisory).toBe(true);
    expect(r.detail).toMatch(/^unreachable \(/);
    expect(r.detail).not.toContain('10.1.2.3');
    expect(seen.up).toBe(0);
    expect(allReady({ database: { ok: true, detail: 'reachable' }, readReplica: r })).toBe(true);
    expect(allReady({ database: { ok: false, detail: 'x' }, readReplica: r })).toBe(false);
  });
});
