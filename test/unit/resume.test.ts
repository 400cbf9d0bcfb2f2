/**
 * Where a partition resumes (src/offsets/resume.ts): the pure decision from the fence, the committed
 * offset and the log's bounds, every case of its header; the reader that gathers those facts and moves
 * a fence; and the record time the fingerprint reads (src/consumer/recordTime.ts).
 */
import { recordTime } from '../../src/consumer/recordTime';
import { fingerprint } from '../../src/offsets/fingerprint';
import { decideResume, ResumeReader, type ResumeFacts } from '../../src/offsets/resume';

const fp = (offset: bigint, ms = 1000, value = 'bar') => fingerprint(offset, ms, value);
const log = (low: bigint, high: bigint) => ({ low, high });

describe('decideResume', () => {
  const cases: [string, ResumeFacts, boolean, ReturnType<typeof decideResume>][] = [
    // No fence: the committed offset within the log, else the start policy; below the log start, the start.
    [
      'no fence, committed within the log',
      { fence: null, committed: 5n, log: log(0n, 20n), topicHasFences: false },
      true,
      { kind: 'at', next: 5n, fence: null, committed: 5n, retentionSkipped: 0n },
    ],
    [
      'no fence, none committed, from the beginning',
      { fence: null, committed: null, log: log(3n, 20n), topicHasFences: false },
      true,
      { kind: 'at', next: 3n, fence: null, committed: null, retentionSkipped: 0n },
    ],
    [
      'no fence, none committed, from the end',
      { fence: null, committed: null, log: log(3n, 20n), topicHasFences: false },
      false,
      { kind: 'at', next: 20n, fence: null, committed: null, retentionSkipped: 0n },
    ],
    [
      'no fence, committed below the log start (retention)',
      { fence: null, committed: 1n, log: log(3n, 20n), topicHasFences: false },
      true,
      { kind: 'at', next: 3n, fence: null, committed: 1n, retentionSkipped: 2n },
    ],
    [
      'no fence, committed beyond the log end (another log)',
      { fence: null, committed: 50n, log: log(0n, 20n), topicHasFences: false },
      true,
      { kind: 'at', next: 0n, fence: null, committed: 50n, retentionSkipped: 0n },
    ],
    // No fence for this partition while the topic has others: never written by this group (added later);
    // a committed offset ahead (another deployment, Kafka's tools) does not skip it.
    [
      'no fence here, fences elsewhere: from the log start, the committed offset overruled',
      { fence: null, committed: 15n, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'at', next: 0n, fence: 0n, committed: 15n, retentionSkipped: 0n },
    ],
    [
      'no fence here, fences elsewhere, the log start moved by retention',
      { fence: null, committed: null, log: log(4n, 20n), topicHasFences: true },
      false,
      { kind: 'at', next: 4n, fence: 4n, committed: null, retentionSkipped: 4n },
    ],
    // A fence: checked by its fingerprint where the message still exists.
    [
      'a fence with a fingerprint',
      { fence: { next: 10n, fingerprint: fp(9n) }, committed: 4n, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'verify', check: 9n, fingerprint: fp(9n), fence: 10n, committed: 4n },
    ],
    [
      'the usual restart (committed = fence) is checked too',
      { fence: { next: 10n, fingerprint: fp(9n) }, committed: 10n, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'verify', check: 9n, fingerprint: fp(9n), fence: 10n, committed: 10n },
    ],
    [
      'a committed offset ahead of the fence does not decide: checked, the fence wins',
      { fence: { next: 10n, fingerprint: fp(9n) }, committed: 15n, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'verify', check: 9n, fingerprint: fp(9n), fence: 10n, committed: 15n },
    ],
    [
      'a fingerprint naming an earlier message (a gap before the fence)',
      { fence: { next: 10n, fingerprint: fp(7n) }, committed: null, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'verify', check: 7n, fingerprint: fp(7n), fence: 10n, committed: null },
    ],
    [
      'a log that ends before the fence: replaced',
      {
        fence: { next: 810n, fingerprint: fp(809n) },
        committed: null,
        log: log(0n, 300n),
        topicHasFences: true,
      },
      true,
      { kind: 'replaced', fence: 810n, why: 'a log that ends at 300' },
    ],
    [
      'a fence without a fingerprint: trusted',
      { fence: { next: 10n, fingerprint: null }, committed: 7n, log: log(0n, 20n), topicHasFences: true },
      true,
      { kind: 'at', next: 10n, fence: 10n, committed: 7n, retentionSkipped: 0n },
    ],
    [
      'a fence whose message retention deleted: trusted',
      { fence: { next: 10n, fingerprint: fp(9n) }, committed: 7n, log: log(10n, 20n), topicHasFences: true },
      true,
      { kind: 'at', next: 10n, fence: 10n, committed: 7n, retentionSkipped: 0n },
    ],
    [
      'a fence below the log start: the log start, the gap counted',
      { fence: { next: 10n, fingerprint: null }, committed: null, log: log(15n, 20n), topicHasFences: true },
      true,
      { kind: 'at', next: 15n, fence: 15n, committed: null, retentionSkipped: 5n },
    ],
    [
      'a fence at 0 (reset to the start of an empty log)',
      { fence: { next: 0n, fingerprint: null }, committed: 40n, log: log(0n, 0n), topicHasFences: true },
      true,
      { kind: 'at', next: 0n, fence: 0n, committed: 40n, retentionSkipped: 0n },
    ],
    [
      'an unparsable fingerprint: trusted',
      {
        fence: { next: 10n, fingerprint: 'garbage' },
        committed: null,
        log: log(0n, 20n),
        topicHasFences: true,
      },
      true,
      { kind: 'at', next: 10n, fence: 10n, committed: null, retentionSkipped: 0n },
    ],
  ];
  test.each(cases)('%s', (_name, facts, fromBeginning, expected) => {
    expect(decideResume(facts, fromBeginning)).toEqual(expected);
  });
});

describe('ResumeReader', () => {
  function reader(logs: Record<number, { low: bigint; high: bigint }>) {
    const resets: string[] = [];
    const r = new ResumeReader({
      fences: async () => new Map([0, 1].map((p) => [p, { next: 10n + BigInt(p), fingerprint: null }])),
      resetFence: async (_topic, partition, next) => void resets.push(`${partition}:${next}`),
      consumer: {
        committedOffsets: async (_t, partitions) => new Map(partitions.map((p) => [p, p === 1 ? null : 5n])),
        logOffsets: async () => new Map(Object.entries(logs).map(([p, l]) => [Number(p), l])),
      },
    });
    return { r, resets };
  }

  test('reads the facts of several partitions together', async () => {
    const { r } = reader({ 0: log(0n, 20n), 1: log(0n, 30n), 2: log(1n, 2n) });
    expect(await r.read('t', [0, 1, 2])).toEqual(
      new Map([
        [
          0,
          { fence: { next: 10n, fingerprint: null }, committed: 5n, log: log(0n, 20n), topicHasFences: true },
        ],
        [
          1,
          {
            fence: { next: 11n, fingerprint: null },
            committed: null,
            log: log(0n, 30n),
            topicHasFences: true,
          },
        ],
        [2, { fence: null, committed: 5n, log: log(1n, 2n), topicHasFences: true }],
      ]),
    );
  });

  test('a partition the log offsets do not know (the topic changed) fails the read: it is retried', async () => {
    const { r } = reader({ 0: log(0n, 20n) });
    await expect(r.read('t', [0, 1])).rejects.toThrow(/partition 1 of t has no log offsets/);
  });

  test("moves a fence to the log's start or end", async () => {
    const { r, resets } = reader({ 0: log(40n, 300n) });
    expect(await r.moveFence('t', 0, 'start')).toBe(40n);
    expect(await r.moveFence('t', 0, 'end')).toBe(300n);
    expect(resets).toEqual(['0:40', '0:300']);
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
