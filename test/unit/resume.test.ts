/**
 * Where a partition resumes (src/offsets/resume.ts), with fakes for the database fence and Kafka: the
 * fence is checked against the log before it is trusted, a replaced log is consumed from the committed
 * offset or the start policy, and skipping below the fence is counted.
 */
import { Registry } from 'prom-client';
import { createLogger } from '../../src/observe/logger';
import { createMetrics } from '../../src/observe/metrics';
import { fingerprint } from '../../src/offsets/fingerprint';
import { recordTime, ResumePoints, type StoredFence } from '../../src/offsets/resume';

const TOPIC = 'bars.1m';

function setup(
  fences: Record<number, StoredFence>,
  committed: Record<number, bigint | null>,
  logs: Record<number, { low: bigint; high: bigint }>,
  fromBeginning = true,
) {
  const metrics = createMetrics(new Registry(), false);
  const resets: string[] = [];
  const durable: string[] = [];
  const consumer = {
    seek: jest.fn(),
    committedOffsets: jest.fn(async () => new Map(Object.entries(committed).map(([p, o]) => [Number(p), o]))),
    logOffsets: jest.fn(async () => new Map(Object.entries(logs).map(([p, l]) => [Number(p), l]))),
  };
  const resume = new ResumePoints({
    fences: async () => new Map(Object.entries(fences).map(([p, f]) => [Number(p), f])),
    resetFence: async (_topic, partition, next) => void resets.push(`${partition}:${next}`),
    consumer,
    committer: { durable: async (_t, partition, offset) => void durable.push(`${partition}:${offset}`) },
    fromBeginning,
    metrics,
    logger: createLogger('silent'),
  });
  const value = async (name: 'resumeSkippedOffsets' | 'logReplaced') =>
    (await metrics[name].get()).values[0]?.value ?? 0;
  return { resume, consumer, resets, durable, value };
}

const fp = (offset: bigint, ms = 1000, value = 'bar') => fingerprint(offset, ms, value);
const message = (offset: bigint, ms = 1000, value = 'bar') => ({
  offset: offset.toString(),
  key: null,
  value: Buffer.from(value),
  headers: {},
  timestamp: String(ms),
});
const P0 = [{ partition: 0, generation: 1 }];

describe('ResumePoints.resume', () => {
  test('no fence, or a committed offset past it (moved forward by an operator): Kafka decides, nothing sought', async () => {
    for (const [fences, committed] of [
      [{}, { 0: 5n }],
      [{ 0: { next: 10n, fingerprint: fp(9n) } }, { 0: 12n }],
    ] as const) {
      const { resume, consumer } = setup(fences, committed, { 0: { low: 0n, high: 20n } });
      expect((await resume.resume(TOPIC, P0)).get(0)).toEqual({ kind: 'committed' });
      expect(consumer.seek).not.toHaveBeenCalled();
    }
  });

  test('a fence with a fingerprint is checked: sought to the message it names', async () => {
    const { resume, consumer } = setup(
      { 0: { next: 10n, fingerprint: fp(9n) } },
      { 0: 4n },
      { 0: { low: 0n, high: 20n } },
    );
    expect((await resume.resume(TOPIC, P0)).get(0)).toEqual({
      kind: 'verify',
      offset: 9n,
      fingerprint: fp(9n),
      fence: 10n,
      committed: 4n,
    });
    expect(consumer.seek).toHaveBeenCalledWith({ topic: TOPIC, partition: 0 }, '9');
  });

  test('a committed offset equal to the fence (the usual restart) is checked too', async () => {
    const { resume } = setup(
      { 0: { next: 10n, fingerprint: fp(9n) } },
      { 0: 10n },
      { 0: { low: 0n, high: 20n } },
    );
    const point = (await resume.resume(TOPIC, P0)).get(0)!;
    expect(point).toMatchObject({ kind: 'verify', offset: 9n, committed: 10n });
  });

  test('the same message there: confirmed, the skip is logged and counted, the fence committed', async () => {
    const { resume, durable, value } = setup(
      { 0: { next: 10n, fingerprint: fp(9n) } },
      { 0: 4n },
      { 0: { low: 0n, high: 20n } },
    );
    const point = (await resume.resume(TOPIC, P0)).get(0)!;
    if (point.kind !== 'verify') throw new Error('expected verify');
    expect(resume.check(point, message(9n))).toBe('same');
    resume.confirmed(TOPIC, P0[0]!, point);
    expect(durable).toEqual(['0:10']);
    expect(await value('resumeSkippedOffsets')).toBe(6);
  });

  test('another message at that offset (another timestamp or value): replaced', async () => {
    const { resume } = setup(
      { 0: { next: 10n, fingerprint: fp(9n) } },
      { 0: null },
      { 0: { low: 0n, high: 30n } },
    );
    const point = (await resume.resume(TOPIC, P0)).get(0)!;
    if (point.kind !== 'verify') throw new Error('expected verify');
    expect(resume.check(point, message(9n, 2000))).toBe('replaced');
    expect(resume.check(point, message(9n, 1000, 'other'))).toBe('replaced');
    expect(resume.check(point, message(11n))).toBe('unknown'); // that offset is gone: not checkable
  });

  test('a log that ends before the fence is replaced at once: the fence moves to its start, not skipped', async () => {
    const { resume, consumer, resets, value } = setup(
      { 0: { next: 810n, fingerprint: fp(809n) } },
      { 0: null },
      { 0: { low: 0n, high: 300n } },
    );
    expect((await resume.resume(TOPIC, P0)).get(0)).toEqual({ kind: 'at', next: 0n });
    expect(resets).toEqual(['0:0']);
    expect(consumer.seek).toHaveBeenCalledWith({ topic: TOPIC, partition: 0 }, '0');
    expect(await value('logReplaced')).toBe(1);
  });

  test('replaced: the committed offset when it lies in the new log, else its start or end by the start policy', async () => {
    const within = setup({}, { 0: 120n }, { 0: { low: 0n, high: 300n } });
    expect(await within.resume.replaced(TOPIC, P0[0]!, 'x', 810n)).toBe(120n);
    const outside = setup({}, { 0: 900n }, { 0: { low: 50n, high: 300n } });
    expect(await outside.resume.replaced(TOPIC, P0[0]!, 'x', 810n)).toBe(50n);
    const latest = setup({}, { 0: null }, { 0: { low: 50n, high: 300n } }, false);
    expect(await latest.resume.replaced(TOPIC, P0[0]!, 'x', 810n)).toBe(300n);
    expect(latest.resets).toEqual(['0:300']);
  });

  test('a fence without a fingerprint, or whose message retention deleted: trusted, sought to, the skip counted', async () => {
    for (const fence of [
      { next: 10n, fingerprint: null },
      { next: 10n, fingerprint: fp(9n) },
    ]) {
      const { resume, consumer, durable, value } = setup(
        { 0: fence },
        { 0: 7n },
        { 0: { low: 9n + (fence.fingerprint ? 1n : 0n), high: 20n } },
      );
      expect((await resume.resume(TOPIC, P0)).get(0)).toEqual({ kind: 'at', next: 10n });
      expect(consumer.seek).toHaveBeenCalledWith({ topic: TOPIC, partition: 0 }, '10');
      expect(durable).toEqual(['0:10']);
      expect(await value('resumeSkippedOffsets')).toBe(3);
    }
  });
});

describe('recordTime', () => {
  test('reads a record timestamp exactly as Number() does, 0 for none or nonsense', () => {
    const cases = [
      '1733212345678',
      '0',
      '007',
      '999999999999999',
      '1000000000000000',
      '9007199254740993',
      '-1',
      '1e3',
      '',
      ' 12',
      '12 ',
      'abc',
      '1.5',
      '0x10',
    ];
    for (const s of cases) expect([s, recordTime({ timestamp: s })]).toEqual([s, Number(s) || 0]);
    expect(recordTime({ timestamp: undefined as unknown as string })).toBe(0);
  });
});
