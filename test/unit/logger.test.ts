import { RateLimiter } from '../../src/observe/logger';

function clock(start = 0) {
  const c = { t: start, now: () => c.t };
  return c;
}

describe('RateLimiter', () => {
  test('lets perWindow calls through, suppresses the rest, reports the count on the next window', () => {
    const c = clock(1000);
    const rl = new RateLimiter(3, 1000, c.now);
    expect([rl.take('k'), rl.take('k'), rl.take('k')]).toEqual([0, 0, 0]);
    expect([rl.take('k'), rl.take('k')]).toEqual([null, null]);
    c.t = 1999;
    expect(rl.take('k')).toBeNull();
    c.t = 2000;
    expect(rl.take('k')).toBe(3);
    // The new window counts the reporting call: two more pass, then suppression again.
    expect([rl.take('k'), rl.take('k'), rl.take('k')]).toEqual([0, 0, null]);
    c.t = 3000;
    expect(rl.take('k')).toBe(1);
  });

  test('the suppressed count is reported once, then reset', () => {
    const c = clock();
    const rl = new RateLimiter(1, 100, c.now);
    expect(rl.take('k')).toBe(0);
    expect(rl.take('k')).toBeNull();
    expect(rl.take('k')).toBeNull();
    c.t = 100;
    expect(rl.take('k')).toBe(2);
    c.t = 200;
    expect(rl.take('k')).toBe(0);
  });

  test('the count survives idle windows and is reported by the next call', () => {
    const c = clock();
    const rl = new RateLimiter(1, 100, c.now);
    rl.take('k');
    rl.take('k');
    rl.take('k');
    rl.take('k');
    c.t = 10_000;
    expect(rl.take('k')).toBe(3);
  });

  test('a window starts at its first call, not on a fixed grid', () => {
    const c = clock();
    const rl = new RateLimiter(1, 1000, c.now);
    expect(rl.take('k')).toBe(0);
    c.t = 1500; // new window starting at 1500
    expect(rl.take('k')).toBe(0);
    c.t = 2400; // still within [1500, 2500)
    expect(rl.take('k')).toBeNull();
    c.t = 2500;
    expect(rl.take('k')).toBe(1);
  });

  test('keys are limited independently', () => {
    const c = clock();
    const rl = new RateLimiter(2, 1000, c.now);
    expect([rl.take('a'), rl.take('a'), rl.take('a')]).toEqual([0, 0, null]);
    expect([rl.take('b'), rl.take('b')]).toEqual([0, 0]);
    expect(rl.take('b')).toBeNull();
    expect(rl.take('b')).toBeNull();
    c.t = 1000;
    expect(rl.take('a')).toBe(1);
    expect(rl.take('b')).toBe(2);
  });

  test('defaults: 10 per 10 s', () => {
    const c = clock();
    const rl = new RateLimiter(undefined, undefined, c.now);
    const first = Array.from({ length: 12 }, () => rl.take('k'));
    expect(first).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, null, null]);
    c.t = 9999;
    expect(rl.take('k')).toBeNull();
    c.t = 10_000;
    expect(rl.take('k')).toBe(3);
  });
});
