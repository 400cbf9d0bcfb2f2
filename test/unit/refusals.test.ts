/**
 * The log of rows the database refused (src/batch/refusals.ts): rate-limited lines, and every refusal
 * whose line was suppressed still named (as offset ranges) by the next line or at the window's end.
 */
import { RefusalLog } from '../../src/batch/refusals';
import type { Logger } from '../../src/observe/logger';

function setup() {
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  const logger = {
    warn: (fields: Record<string, unknown>, msg: string) => void lines.push({ fields, msg }),
  } as unknown as Logger;
  let t = 0;
  const log = new RefusalLog(logger, 10, 10_000, () => t);
  return { lines, log, at: (ms: number) => (t = ms) };
}

describe('RefusalLog', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('ten lines a window; the rest named as ranges by the next line', () => {
    const { lines, log, at } = setup();
    for (let i = 0; i < 25; i++) log.refused('t', 3, BigInt(100 + i), { sqlstate: '23514' });
    log.refused('t', 1, 7n, {});
    expect(lines).toHaveLength(10);
    expect(lines.map((l) => l.fields.offset)).toEqual([
      '100',
      '101',
      '102',
      '103',
      '104',
      '105',
      '106',
      '107',
      '108',
      '109',
    ]);
    at(10_000);
    log.refused('t', 3, 500n, {});
    expect(lines[10]!.fields).toMatchObject({
      offset: '500',
      suppressed: 16,
      suppressedOffsets: 't/3:110-124, t/1:7',
    });
  });

  test('when no line follows, the window’s end says what was suppressed', () => {
    const { lines, log } = setup();
    for (let i = 0; i < 12; i++) log.refused('t', 0, BigInt(i * 2), {});
    expect(lines).toHaveLength(10);
    jest.advanceTimersByTime(10_000);
    expect(lines[10]).toEqual({
      fields: { suppressed: 2, suppressedOffsets: 't/0:20, t/0:22' },
      msg: expect.stringMatching(/suppressed by the rate limit/),
    });
  });
});
