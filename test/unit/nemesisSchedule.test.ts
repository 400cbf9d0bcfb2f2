/**
 * The nemesis schedule generator (test/nemesis/schedule.ts): pure and seeded; the every-op guarantee
 * plans each operation kind at least N times in a long enough run, under the constraints the random
 * draws respect, and changes nothing where it is off (short runs: the fixed seeds).
 */
import { OP_KINDS, type OpKind, type Schedule } from '../nemesis/model';
import { CONFLICTS_WITH_LOCK, defaultEveryOp, generate, planOperations } from '../nemesis/schedule';

const counts = (s: Pick<Schedule, 'ops'>) => {
  const c = new Map<OpKind, number>(OP_KINDS.map((k) => [k, 0]));
  for (const { op } of s.ops) c.set(op.kind, c.get(op.kind)! + 1);
  return c;
};

describe('nemesis schedule: every operation kind', () => {
  test('the guarantee is on from 20 minutes by default, off below; off, it changes nothing', () => {
    expect(defaultEveryOp(1.5)).toBe(0);
    expect(defaultEveryOp(19.9)).toBe(0);
    expect(defaultEveryOp(20)).toBe(3);
    for (const [seed, minutes, scenario] of [
      [1, 1.5, 'issue'],
      [25, 1.5, 'random'],
      [7, 3, 'random'],
    ] as const) {
      const s = generate({ seed, minutes, scenario });
      expect(s.everyOp).toBeUndefined();
      expect(generate({ seed, minutes, scenario, everyOp: 0 })).toEqual(s);
    }
    expect(generate({ seed: 7, minutes: 20 }).everyOp).toBe(3);
    // An explicit 0 on a long run is the planner's random draws alone.
    expect(generate({ seed: 7, minutes: 30, everyOp: 0 }).everyOp).toBeUndefined();
  });

  test.each([20, 30])('%d minutes: every kind at least 3 times, whatever the seed', (minutes) => {
    for (let seed = 1; seed <= 40; seed++) {
      for (const scenario of ['random', 'issue'] as const) {
        const s = planOperations({ seed, minutes, scenario });
        for (const [kind, n] of counts(s)) if (n < 3) throw new Error(`seed ${seed}: ${kind} ${n}`);
      }
    }
  });

  test('--every-op N is honoured, with no lock-conflicting operation while fence rows are locked', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = planOperations({ seed, minutes: 30, everyOp: 6 });
      for (const [kind, n] of counts(s)) if (n < 6) throw new Error(`seed ${seed}: ${kind} ${n}`);
      for (const { at, op } of s.ops) {
        if (op.kind !== 'lock-fences') continue;
        const during = s.ops.filter(
          (o) => o.at > at && o.at < at + op.holdMs + 2000 && CONFLICTS_WITH_LOCK.has(o.op.kind),
        );
        expect(during).toEqual([]);
      }
    }
  });

  test('a run too short for the guarantee is refused, naming the kinds short', () => {
    expect(() => planOperations({ seed: 7, minutes: 3, everyOp: 3 })).toThrow(/does not fit in 3 minutes/);
  });

  test('the same seed gives the same schedule', () => {
    expect(planOperations({ seed: 11, minutes: 25 })).toEqual(planOperations({ seed: 11, minutes: 25 }));
  });

  test('deletes: a seed produces them (keyed and routed to slots, with a bar beside some), deterministically; backfills carry some', () => {
    const deletesOf = (seed: number) => {
      const sc = generate({ seed, minutes: 3 });
      const msgs = sc.produce.flatMap((e) => e.messages);
      const deletes = msgs.filter(
        (m) => m.valid && (JSON.parse(m.value) as { deleted?: unknown }).deleted === true,
      );
      const rows = sc.ops.flatMap(({ op }) => (op.kind === 'backfill' ? op.rows : []));
      return { sc, deletes, rows };
    };
    const a = deletesOf(25);
    expect(deletesOf(25).deletes).toEqual(a.deletes);
    expect(a.deletes.length).toBeGreaterThan(10);
    expect(a.deletes.some((m) => m.route.kind === 'key')).toBe(true);
    expect(a.deletes.some((m) => m.route.kind === 'slot')).toBe(true);
    // Paired with a bar of the same key in one event (older deletes, restores, same-ms ties).
    const paired = a.sc.produce.some(
      (e) =>
        e.kind === 'delete' &&
        e.messages.some((m) => !m.value.includes('"deleted"')) &&
        e.messages.some((m) => m.value.includes('"deleted":true')),
    );
    expect(paired).toBe(true);
    // An invalid delete (deleted as a string) is among the invalid kinds.
    const invalid = [1, 2, 3, 4, 5].flatMap((seed) =>
      generate({ seed, minutes: 3 }).produce.flatMap((e) =>
        e.messages.filter((m) => m.invalidKind === 'delete_wrong_type'),
      ),
    );
    expect(invalid.length).toBeGreaterThan(0);
    const rows = [1, 2, 3, 4, 5, 25].flatMap((seed) => deletesOf(seed).rows);
    expect(rows.some((r) => r.deleted)).toBe(true);
    expect(rows.some((r) => !r.deleted)).toBe(true);
  });
});
