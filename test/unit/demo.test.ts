/**
 * The demo feed publishes finalized bars only: minute M once it has closed.
 */
import { isClosed } from '../../src/demo/producer';

describe('demo feed: isClosed', () => {
  const M = Date.UTC(2026, 11, 1, 14, 31);
  test('minute M is not final during M, and is from M + 1 min on', () => {
    expect([M, M + 1, M + 59_999, M + 60_000, M + 120_000].map((now) => isClosed(M, now))).toEqual([
      false,
      false,
      false,
      true,
      true,
    ]);
  });
});
