/**
 * The fast, in-process variant of the operations suite (test/sim/: the real decision code on a virtual
 * clock against a modelled Kafka and database, an independent checker): a thousand seeded schedules of
 * productions and operations, each checked for lost, stale or invented bars, a replay that writes
 * something, a stall, a commit before durability, or buffers over their bound. A failing seed is named
 * and reproduces alone: `npm run sim -- --seed S --seconds T --rate R` prints its operations.
 * SIM_SEEDS widens the run (default 1000 short schedules and 20 long ones).
 */
import { simulate } from '../sim/run';

const SEEDS = Number(process.env.SIM_SEEDS ?? 1000);
const CHUNK = 250;

async function run(from: number, count: number, seconds: number, operationRate: number): Promise<string[]> {
  const failures: string[] = [];
  for (let seed = from; seed < from + count; seed++) {
    const r = await simulate(seed, { seconds, operationRate });
    if (r.problems.length > 0) {
      failures.push(
        `seed ${seed} (--seconds ${seconds} --rate ${operationRate}): ${r.problems.join(' | ').slice(0, 500)}`,
      );
    }
  }
  return failures;
}

describe('operations simulation (virtual time, real decision code, independent checker)', () => {
  for (let from = 1; from <= SEEDS; from += CHUNK) {
    const count = Math.min(CHUNK, SEEDS - from + 1);
    test(`seeds ${from}-${from + count - 1}: 30 s of operations each, dense`, async () => {
      expect(await run(from, count, 30, 0.1)).toEqual([]);
    });
  }

  test('20 long seeds: 3 minutes of operations each', async () => {
    expect(await run(50_001, Math.max(1, Math.round(SEEDS / 50)), 180, 0.04)).toEqual([]);
  });

  test('the checker fails when the stored table is wrong (it is not a test that cannot fail)', async () => {
    const { check } = await import('../sim/checker');
    const produced = [
      {
        id: 0,
        incarnation: 0,
        partition: 0,
        offset: 0n,
        valid: true,
        key: 'A|0',
        barStartMs: 0,
        values: '1',
        revision: 0,
        recordTime: 10,
        headerVersionTime: null,
        producedAt: 10,
      },
      {
        id: 1,
        incarnation: 0,
        partition: 0,
        offset: 1n,
        valid: true,
        key: 'A|0',
        barStartMs: 0,
        values: '2',
        revision: 0,
        recordTime: 10,
        headerVersionTime: null,
        producedAt: 10,
      },
      {
        id: 2,
        incarnation: 0,
        partition: 1,
        offset: 0n,
        valid: false,
        key: 'B|0',
        barStartMs: 0,
        values: '3',
        revision: 0,
        recordTime: 10,
        headerVersionTime: null,
        producedAt: 10,
      },
    ];
    const row = (values: string, offset: bigint) => ({ values, version: [0n, 10, offset] as const });
    expect(check(produced, [], 0, new Map([['A|0', row('2', 1n)]]))).toMatchObject({
      lost: [],
      stale: [],
      invented: [],
    });
    expect(check(produced, [], 0, new Map([['A|0', row('1', 0n)]])).stale).toHaveLength(1);
    expect(check(produced, [], 0, new Map()).lost).toEqual(['A|0']);
    expect(
      check(
        produced,
        [],
        0,
        new Map([
          ['A|0', row('2', 1n)],
          ['B|0', row('3', 0n)],
        ]),
      ).invented,
    ).toHaveLength(1);
    expect(check(produced, [], 0, new Map([['A|0', row('1', 1n)]])).invented).toHaveLength(1); // values of one, version of another
  });
});
