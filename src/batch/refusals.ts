/**
 * The log of rows the database refused (isolated by ./flush.ts): a line per refusal, at most `perWindow`
 * lines per window; the refusals whose lines were suppressed are not lost: their positions, as ranges of
 * offsets per partition ("3:100-250"), go out with the next line, or at the end of the window when no
 * line comes (with the dead-letter topic disabled the log is their only record).
 */
import type { Logger } from '../observe/logger';

/** At most this many ranges in one line; beyond, their count. */
const MAX_RANGES = 200;

export class RefusalLog {
  private windowStart = -Infinity;
  private linesInWindow = 0;
  /** Suppressed refusals: per topic and partition, [from, to] offset ranges in arrival order. */
  private readonly suppressed = new Map<string, [bigint, bigint][]>();
  private suppressedCount = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly logger: Logger,
    private readonly perWindow = 10,
    private readonly windowMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A refused row: a line now (with what was suppressed before it), or kept for the next one. */
  refused(topic: string, partition: number, offset: bigint, fields: Record<string, unknown>): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.linesInWindow = 0;
    }
    if (this.linesInWindow < this.perWindow) {
      this.linesInWindow++;
      this.logger.warn(
        { topic, partition, offset: offset.toString(), ...fields, ...this.takeSuppressed() },
        'the database refused a bar the contract accepted; isolated and skipped',
      );
      return;
    }
    const key = `${topic}\u0000${partition}`;
    const ranges = this.suppressed.get(key) ?? [];
    const last = ranges[ranges.length - 1];
    if (last && offset === last[1] + 1n) last[1] = offset;
    else ranges.push([offset, offset]);
    this.suppressed.set(key, ranges);
    this.suppressedCount++;
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), Math.max(0, this.windowStart + this.windowMs - t));
      this.timer.unref();
    }
  }

  /** Says what was suppressed (the window ended without another line). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.suppressedCount === 0) return;
    this.logger.warn(
      this.takeSuppressed(),
      'the database refused more bars the contract accepted (lines suppressed by the rate limit): their offsets',
    );
  }

  private takeSuppressed(): { suppressed: number; suppressedOffsets?: string } {
    if (this.suppressedCount === 0) return { suppressed: 0 };
    const all: string[] = [];
    for (const [key, ranges] of this.suppressed) {
      const [topic, partition] = key.split('\u0000');
      for (const [from, to] of ranges)
        all.push(`${topic}/${partition}:${from === to ? from : `${from}-${to}`}`);
    }
    const shown = all.slice(0, MAX_RANGES).join(', ');
    const out = {
      suppressed: this.suppressedCount,
      suppressedOffsets:
        all.length > MAX_RANGES ? `${shown}, and ${all.length - MAX_RANGES} more range(s)` : shown,
    };
    this.suppressed.clear();
    this.suppressedCount = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return out;
  }
}
