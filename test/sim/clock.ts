/**
 * Virtual time for the operations simulation: timers fire in time order (ties in creation order), "soon"
 * callbacks run before time advances, and promise continuations are drained between steps. Timers
 * belong to a scope: a crashed member's scope is dropped, and its timers never fire.
 */
import type { Clock } from '../../src/batch/clock';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  scope: Scope;
  cancelled: boolean;
}

export class Scope {
  dead = false;
}

export class SimClock {
  private t = 0;
  private seq = 0;
  private timers: Timer[] = [];
  private soonQueue: { fn: () => void; scope: Scope }[] = [];

  constructor(start: number) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  /** A Clock for code under test, whose timers belong to `scope`. */
  clockFor(scope: Scope): Clock {
    return {
      now: () => this.t,
      after: (ms, fn) => this.after(ms, fn, scope),
      soon: (fn) => void this.soonQueue.push({ fn, scope }),
    };
  }

  after(ms: number, fn: () => void, scope: Scope = ROOT): () => void {
    const timer: Timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, scope, cancelled: false };
    // Sorted insert (timers are few: tens).
    let i = this.timers.length;
    while (
      i > 0 &&
      (this.timers[i - 1]!.at > timer.at ||
        (this.timers[i - 1]!.at === timer.at && this.timers[i - 1]!.seq > timer.seq))
    )
      i--;
    this.timers.splice(i, 0, timer);
    return () => {
      timer.cancelled = true;
    };
  }

  /** A promise resolved after `ms` of virtual time. */
  sleep(ms: number, scope: Scope = ROOT): Promise<void> {
    return new Promise((r) => this.after(ms, r, scope));
  }

  /** Runs "soon" callbacks and promise continuations until nothing more is ready at this instant. */
  async settle(): Promise<void> {
    for (let round = 0; round < 10_000; round++) {
      await drainMicrotasks();
      const queue = this.soonQueue;
      if (queue.length === 0) return;
      this.soonQueue = [];
      for (const s of queue) if (!s.scope.dead) s.fn();
    }
    throw new Error('the simulation does not settle: a loop of "soon" callbacks');
  }

  /** Advances to the next timer at or before `until` and fires it; false when there is none. */
  async step(until: number): Promise<boolean> {
    await this.settle();
    while (this.timers.length > 0 && (this.timers[0]!.cancelled || this.timers[0]!.scope.dead))
      this.timers.shift();
    const next = this.timers[0];
    if (!next || next.at > until) {
      this.t = Math.max(this.t, until);
      return false;
    }
    this.timers.shift();
    this.t = Math.max(this.t, next.at);
    next.fn();
    await this.settle();
    return true;
  }

  /** Runs until virtual time `until`. */
  async runUntil(until: number): Promise<void> {
    while (await this.step(until));
  }
}

export const ROOT = new Scope();

/** One macrotask turn: every promise continuation queued before it (and what they queue) has run. */
function drainMicrotasks(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
