/**
 * JSON logs (pino). Secrets are redacted by path as a second line of defence: nothing in the service
 * logs the config's password or SASL credentials in the first place.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  '*.password',
  'db.password',
  'config.db.password',
  'sasl.password',
  '*.sasl.password',
  'connectionString',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'bar-writer' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** The message of anything thrown (an Error's, else its string form), for log fields and answers. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Lets through at most `perWindow` calls per key per window, then counts the rest and reports them
 * with the next call that passes. Rejected messages can arrive by the thousand; the log must not.
 */
export class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(
    private readonly perWindow = 10,
    private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns null to drop the line, or the number of lines suppressed since the last one let through. */
  take(key: string): number | null {
    const t = this.now();
    let w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: t, count: 0, suppressed: 0 };
      this.windows.set(key, w);
      w.count++;
      return suppressed;
    }
    if (w.count < this.perWindow) {
      w.count++;
      const s = w.suppressed;
      w.suppressed = 0;
      return s;
    }
    w.suppressed++;
    return null;
  }
}
