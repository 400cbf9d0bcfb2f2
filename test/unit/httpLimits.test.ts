import { BearerToken } from '../../src/http/auth';
import { Overloaded, ReadGate, ResponseBudget } from '../../src/http/limits';
import { nextPage } from '../../src/http/server';

/** A promise with its resolve, for reads that finish when the test says so. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('ReadGate', () => {
  afterEach(() => jest.useRealTimers());

  test('runs at most `concurrency` reads, queues up to `maxQueued`, refuses the next at once', async () => {
    const gate = new ReadGate(2, 1, 60_000);
    const reads = [deferred<string>(), deferred<string>(), deferred<string>()];
    const started: number[] = [];
    const run = (i: number) =>
      gate.run(() => {
        started.push(i);
        return reads[i]!.promise;
      });
    const a = run(0);
    const b = run(1);
    const c = run(2); // queued
    await flush();
    expect(started).toEqual([0, 1]);
    expect([gate.inFlight, gate.queued]).toEqual([2, 1]);
    await expect(gate.run(() => Promise.resolve('x'))).rejects.toEqual(new Overloaded('reads'));

    reads[0]!.resolve('a');
    await expect(a).resolves.toBe('a');
    await flush();
    expect(started).toEqual([0, 1, 2]); // the freed slot went to the waiter
    expect([gate.inFlight, gate.queued]).toEqual([2, 0]);
    reads[1]!.resolve('b');
    reads[2]!.resolve('c');
    await expect(Promise.all([b, c])).resolves.toEqual(['b', 'c']);
    expect([gate.inFlight, gate.queued]).toEqual([0, 0]);
  });

  test('a queued read gives up after maxWaitMs with Overloaded, and leaves the queue', async () => {
    jest.useFakeTimers();
    const gate = new ReadGate(1, 5, 1000);
    const first = deferred<void>();
    const running = gate.run(() => first.promise);
    const waiting = gate.run(() => Promise.resolve('never'));
    expect(gate.queued).toBe(1);
    jest.advanceTimersByTime(999);
    expect(gate.queued).toBe(1);
    jest.advanceTimersByTime(1);
    await expect(waiting).rejects.toBeInstanceOf(Overloaded);
    expect(gate.queued).toBe(0);
    first.resolve();
    await running;
    expect(gate.inFlight).toBe(0);
  });

  test('a failing read frees its slot and its error reaches the caller', async () => {
    const gate = new ReadGate(1, 0, 1000);
    await expect(gate.run(() => Promise.reject(new Error('db away')))).rejects.toThrow('db away');
    expect(gate.inFlight).toBe(0);
    await expect(gate.run(() => Promise.resolve(1))).resolves.toBe(1);
  });

  test('with maxQueued 0, a read beyond concurrency is refused at once', async () => {
    const gate = new ReadGate(1, 0, 1000);
    const first = deferred<void>();
    const running = gate.run(() => first.promise);
    await expect(gate.run(() => Promise.resolve())).rejects.toBeInstanceOf(Overloaded);
    first.resolve();
    await running;
  });
});

describe('ResponseBudget', () => {
  test('reserves up to the budget, refuses beyond it, and a release (once) makes room again', () => {
    const budget = new ResponseBudget(100);
    const r1 = budget.reserve(60)!;
    const r2 = budget.reserve(40)!;
    expect(budget.bytes).toBe(100);
    expect(budget.reserve(1)).toBeNull();
    r1();
    r1(); // idempotent: 'finish' and 'close' both release
    expect(budget.bytes).toBe(40);
    expect(budget.reserve(61)).toBeNull();
    const r3 = budget.reserve(60)!;
    expect(budget.bytes).toBe(100);
    r2();
    r3();
    expect(budget.bytes).toBe(0);
  });

  test('an answer larger than the whole budget goes out when nothing else is outstanding', () => {
    const budget = new ResponseBudget(100);
    const big = budget.reserve(500)!;
    expect(big).not.toBeNull();
    expect(budget.reserve(1)).toBeNull();
    big();
    expect(budget.reserve(1)).not.toBeNull();
  });
});

describe('BearerToken', () => {
  const token = new BearerToken('s3cret-token');

  test.each([
    ['Bearer s3cret-token', true],
    ['bearer s3cret-token', true],
    ['BEARER  s3cret-token ', true],
    ['Bearer s3cret-tokenX', false],
    ['Bearer s3cret-toke', false],
    ['Bearer', false],
    ['Basic czNjcmV0LXRva2Vu', false],
    ['s3cret-token', false],
    ['Bearer s3cret-token extra', false],
    ['', false],
  ])('%p → %p', (header, ok) => {
    expect(token.accepts(header)).toBe(ok);
  });

  test('no header is refused; an empty token cannot be configured', () => {
    expect(token.accepts(undefined)).toBe(false);
    expect(() => new BearerToken('')).toThrow('must not be empty');
  });
});

describe('nextPage', () => {
  const bar = (iso: string) => ({ symbol: 'A/B', timestampMs: Date.parse(iso), values: '"open":1' });

  test('the same range from the minute after the last bar, same limit, symbol encoded', () => {
    expect(nextPage('A/B', bar('2026-11-20T14:39:00Z'), Date.parse('2026-11-21T00:00:00Z'), 10)).toBe(
      '/v1/bars/A%2FB?from=2026-11-20T14:40:00.000Z&to=2026-11-21T00:00:00.000Z&limit=10',
    );
  });
});
