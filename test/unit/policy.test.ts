import { flushDecision, retryDelayMs, type FlushInput, type FlushPolicy } from '../../src/batch/policy';

const POLICY: FlushPolicy = { batchSize: 100, intervalMs: 1000, flushOnCaughtUp: true };
const OLDEST = 50_000;
/** A non-empty partition that is not due yet. */
const STATE: FlushInput = {
  barCount: 10,
  entryCount: 12,
  oldestArrivalMs: OLDEST,
  caughtUp: false,
  pressure: false,
  draining: false,
};
const EARLY = OLDEST + 400;

describe('flushDecision', () => {
  test('not due: no reason, look again when the oldest entry is interval old', () => {
    expect(flushDecision(POLICY, STATE, EARLY)).toEqual({ reason: null, nextCheckMs: OLDEST + 1000 });
  });

  test('empty buffer → null with no next check, whatever else is set', () => {
    const flags = { caughtUp: true, pressure: true, draining: true };
    expect(flushDecision(POLICY, { ...STATE, ...flags, barCount: 0, entryCount: 0 }, OLDEST + 1e9)).toEqual({
      reason: null,
      nextCheckMs: null,
    });
    expect(flushDecision(POLICY, { ...STATE, ...flags, oldestArrivalMs: null }, OLDEST + 1e9)).toEqual({
      reason: null,
      nextCheckMs: null,
    });
  });

  test('drain → drain', () => {
    expect(flushDecision(POLICY, { ...STATE, draining: true }, EARLY)).toEqual({
      reason: 'drain',
      nextCheckMs: null,
    });
  });

  test('size: barCount reaching batchSize → size; one less is not', () => {
    expect(flushDecision(POLICY, { ...STATE, barCount: 100, entryCount: 100 }, EARLY)).toEqual({
      reason: 'size',
      nextCheckMs: null,
    });
    expect(flushDecision(POLICY, { ...STATE, barCount: 250, entryCount: 250 }, EARLY).reason).toBe('size');
    expect(flushDecision(POLICY, { ...STATE, barCount: 99, entryCount: 500 }, EARLY)).toEqual({
      reason: null,
      nextCheckMs: OLDEST + 1000,
    });
  });

  test('size counts bars, not entries (rejected entries do not trigger it)', () => {
    expect(flushDecision(POLICY, { ...STATE, barCount: 0, entryCount: 1000 }, EARLY).reason).toBeNull();
  });

  test('pressure → pressure', () => {
    expect(flushDecision(POLICY, { ...STATE, pressure: true }, EARLY)).toEqual({
      reason: 'pressure',
      nextCheckMs: null,
    });
  });

  test('interval: due exactly at oldest + interval, not 1 ms before', () => {
    expect(flushDecision(POLICY, STATE, OLDEST + 1000)).toEqual({ reason: 'interval', nextCheckMs: null });
    expect(flushDecision(POLICY, STATE, OLDEST + 5000).reason).toBe('interval');
    expect(flushDecision(POLICY, STATE, OLDEST + 999)).toEqual({ reason: null, nextCheckMs: OLDEST + 1000 });
  });

  test('interval applies to a buffer holding only rejected entries', () => {
    expect(flushDecision(POLICY, { ...STATE, barCount: 0, entryCount: 3 }, OLDEST + 1000).reason).toBe(
      'interval',
    );
  });

  test('caught-up only when flushOnCaughtUp is set', () => {
    expect(flushDecision(POLICY, { ...STATE, caughtUp: true }, EARLY)).toEqual({
      reason: 'caught-up',
      nextCheckMs: null,
    });
    expect(flushDecision({ ...POLICY, flushOnCaughtUp: false }, { ...STATE, caughtUp: true }, EARLY)).toEqual(
      {
        reason: null,
        nextCheckMs: OLDEST + 1000,
      },
    );
    expect(flushDecision(POLICY, { ...STATE, caughtUp: false }, EARLY).reason).toBeNull();
  });

  test('nextCheckMs follows the policy interval', () => {
    expect(flushDecision({ ...POLICY, intervalMs: 250 }, STATE, OLDEST)).toEqual({
      reason: null,
      nextCheckMs: OLDEST + 250,
    });
  });

  test('precedence: drain > size > pressure > interval > caught-up', () => {
    const all = { ...STATE, barCount: 100, draining: true, pressure: true, caughtUp: true };
    const late = OLDEST + 1000;
    expect(flushDecision(POLICY, all, late).reason).toBe('drain');
    expect(flushDecision(POLICY, { ...all, draining: false }, late).reason).toBe('size');
    expect(flushDecision(POLICY, { ...all, draining: false, barCount: 1 }, late).reason).toBe('pressure');
    expect(
      flushDecision(POLICY, { ...all, draining: false, barCount: 1, pressure: false }, late).reason,
    ).toBe('interval');
    expect(
      flushDecision(POLICY, { ...all, draining: false, barCount: 1, pressure: false }, late - 1).reason,
    ).toBe('caught-up');
  });
});

describe('retryDelayMs', () => {
  const zero = () => 0;
  const one = () => 1;

  test('attempt 1 waits between base/2 and base', () => {
    expect(retryDelayMs(1, 100, 30_000, zero)).toBe(50);
    expect(retryDelayMs(1, 100, 30_000, one)).toBe(100);
    expect(retryDelayMs(1, 100, 30_000, () => 0.5)).toBe(75);
  });

  test('the ceiling doubles per attempt', () => {
    expect([1, 2, 3, 4, 5].map((a) => retryDelayMs(a, 100, 30_000, one))).toEqual([100, 200, 400, 800, 1600]);
    expect([1, 2, 3, 4, 5].map((a) => retryDelayMs(a, 100, 30_000, zero))).toEqual([50, 100, 200, 400, 800]);
  });

  test('attempts below 1 behave like attempt 1', () => {
    expect(retryDelayMs(0, 100, 30_000, one)).toBe(100);
    expect(retryDelayMs(-5, 100, 30_000, zero)).toBe(50);
  });

  test('capped: the ceiling never exceeds cap', () => {
    expect(retryDelayMs(9, 100, 30_000, one)).toBe(25_600);
    expect(retryDelayMs(10, 100, 30_000, one)).toBe(30_000);
    expect(retryDelayMs(10, 100, 30_000, zero)).toBe(15_000);
    expect(retryDelayMs(1000, 100, 30_000, one)).toBe(30_000);
    expect(retryDelayMs(1000, 100, 30_000, zero)).toBe(15_000);
  });

  test('the exponent stops at 30 (no overflow to Infinity for huge attempts)', () => {
    expect(retryDelayMs(31, 1, Number.MAX_SAFE_INTEGER, one)).toBe(2 ** 30);
    expect(retryDelayMs(1_000_000, 1, Number.MAX_SAFE_INTEGER, one)).toBe(2 ** 30);
  });

  test('a cap below base caps attempt 1 too', () => {
    expect(retryDelayMs(1, 100, 40, one)).toBe(40);
    expect(retryDelayMs(1, 100, 40, zero)).toBe(20);
  });

  test('rounded to whole milliseconds', () => {
    expect(retryDelayMs(1, 5, 1000, zero)).toBe(3); // 2.5 rounds up
    expect(retryDelayMs(1, 5, 1000, () => 0.3)).toBe(3); // 2.5 + 0.75 = 3.25
  });

  test('uses Math.random by default', () => {
    const spy = jest.spyOn(Math, 'random').mockReturnValue(0.5);
    try {
      expect(retryDelayMs(2, 100, 30_000)).toBe(150);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });
});
