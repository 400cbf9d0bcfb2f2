/**
 * What bounds the read API's cost, whatever clients do:
 *
 * - ReadGate: at most `concurrency` reads at once (the read pool's size), at most `maxQueued` waiting,
 *   each for at most `maxWaitMs`; past that a read is refused at once (503 + Retry-After) instead of
 *   queueing without bound;
 * - ResponseBudget: bytes of answers handed to sockets but not yet taken by their clients, over all
 *   connections; an answer that would pass the budget is refused the same way. With the idle timeout
 *   (a client that stops reading is disconnected) it bounds the memory stalled readers can hold.
 */

/** A read refused because the read API is saturated; the client should retry after `retryAfterS`. */
export class Overloaded extends Error {
  constructor(
    readonly why: 'reads' | 'responses',
    readonly retryAfterS = 1,
  ) {
    super(
      why === 'reads'
        ? 'too many reads in progress; retry later'
        : 'too many answers waiting for their clients; retry later',
    );
    this.name = 'Overloaded';
  }
}

interface Waiter {
  grant(): void;
  timer: NodeJS.Timeout;
}

export class ReadGate {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued: number,
    private readonly maxWaitMs: number,
  ) {
    if (concurrency < 1) throw new Error('ReadGate concurrency must be at least 1');
  }

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `fn` once a slot is free; throws Overloaded when none frees up within the bounds. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxQueued) return Promise.reject(new Overloaded('reads'));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new Overloaded('reads'));
        }, this.maxWaitMs),
      };
      this.waiting.push(waiter);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    // The slot passes straight to the next waiter: `running` stays as it is.
    if (next) next.grant();
    else this.running--;
  }
}

export class ResponseBudget {
  private used = 0;

  constructor(private readonly maxBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  /**
   * Reserves `bytes`; returns the function that gives them back (idempotent), or null when they do not
   * fit. An answer larger than the whole budget still goes out when nothing else is outstanding, so a
   * small budget never makes a valid read impossible.
   */
  reserve(bytes: number): (() => void) | null {
    if (this.used > 0 && this.used + bytes > this.maxBytes) return null;
    this.used += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
    };
  }
}
