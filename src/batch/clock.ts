/**
 * Time as the batching stage sees it: the current time, a timer, and "soon" (after the current turn of
 * the event loop). Injected so the operations simulation (test/unit/simulation.test.ts) runs the real
 * decision code on a fake clock, thousands of seeded schedules in seconds.
 */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; returns the cancel. Timers never keep the process alive. */
  after(ms: number, fn: () => void): () => void;
  /** Calls `fn` once the current turn of the event loop is over. */
  soon(fn: () => void): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref();
    return () => clearTimeout(t);
  },
  soon: (fn) => void setImmediate(fn),
};

/** A promise resolved after `ms` on `clock`. */
export function sleepOn(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.after(ms, resolve));
}
