/**
 * Readiness: named checks, each answering ok or not with a detail for operators (GET /readyz shows
 * them all). Every evaluation also sets the bar_writer_ready gauge, so it stays current without a
 * probe (the service refreshes it on a timer).
 */
import type { Logger } from './logger';
import type { Metrics } from './metrics';
import { every, type Periodic } from './periodic';

export interface CheckResult {
  ok: boolean;
  detail: string;
  /** Shown, but not part of readiness: the read replica's state (the writer is ready without it). */
  advisory?: boolean;
}

/** Ready when every check is ok, advisory ones aside. */
export function allReady(checks: Record<string, CheckResult>): boolean {
  return Object.values(checks).every((c) => c.ok || c.advisory === true);
}

export type Check = () => CheckResult | Promise<CheckResult>;

export class Readiness {
  constructor(
    private readonly checks: Record<string, Check>,
    private readonly metrics: Pick<Metrics, 'ready'>,
  ) {}

  async evaluate(): Promise<Record<string, CheckResult>> {
    const names = Object.keys(this.checks);
    const results = await Promise.all(names.map((n) => this.checks[n]!()));
    const out: Record<string, CheckResult> = {};
    names.forEach((n, i) => (out[n] = results[i]!));
    this.metrics.ready.set(allReady(out) ? 1 : 0);
    return out;
  }

  /** Keeps bar_writer_ready current without a probe calling /readyz. */
  refreshEvery(ms: number, logger: Logger): Periodic {
    return every(ms, 'readiness', async () => void (await this.evaluate()), logger);
  }
}
