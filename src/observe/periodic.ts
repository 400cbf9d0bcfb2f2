/**
 * Periodic background tasks (commit retries, lag, pool gauges, readiness): each runs on its own unref'd
 * timer, never overlaps itself, and a failure is logged (debug) rather than thrown. Stopped by the
 * service in its shutdown order.
 */
import type { Logger } from './logger';

export interface Periodic {
  stop(): void;
}

export function every(ms: number, what: string, fn: () => Promise<void> | void, logger: Logger): Periodic {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => logger.debug({ err, task: what }, 'periodic task failed'))
      .finally(() => {
        running = false;
      });
  }, ms);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
