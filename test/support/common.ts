/**
 * Helpers the integration tests (test/support/harness.ts) and the benchmarks (bench/) share: unique
 * names, sleeping, waiting for a condition, and reading metrics from Prometheus text. Nothing here
 * depends on jest or on a service: a benchmark runs it as a plain script.
 */
import crypto from 'node:crypto';

/** Lower-case, SQL-identifier-safe: `<prefix>_<time36>_<hex>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${crypto.randomBytes(3).toString('hex')}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `probe` every `intervalMs` until it gives a value (anything but null, undefined or false), and
 * returns that value. A probe that throws is tried again (what is awaited may not exist yet). Throws,
 * saying what it waited for and the probe's last error, once `timeoutMs` has passed; at once when
 * `stopIf` gives a reason (what is awaited can no longer happen, e.g. the process died).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  timeoutMs = 60_000,
  intervalMs = 100,
  stopIf?: () => string | null,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const stop = stopIf?.();
    if (stop) throw new Error(`stopped waiting for ${what}: ${stop}`);
    try {
      const v = await probe();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/**
 * The sum of the samples of metric `name` in Prometheus text whose labels include `labels` (all label
 * sets by default); null when there is none.
 */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number | null {
  let total: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`)))
      total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

/** metricSum, 0 when no sample matches: a counter's value, as a test asserts it. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  return metricSum(text, name, labels) ?? 0;
}
