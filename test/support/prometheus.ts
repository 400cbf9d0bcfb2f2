/**
 * The suite's real Prometheus (scripts/prometheus.sh: the shipped rule file and bar-writer job, 1 s
 * interval, targets from a file). scripts/test.sh starts one and exports TEST_PROMETHEUS_URL and
 * TEST_PROMETHEUS_TARGETS; a test run without them starts its own on a free port, stopped by its pid at
 * cleanup.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './cluster';
import { REPO } from './harness';

export interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PromAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

export class Prometheus {
  private constructor(
    readonly url: string,
    private readonly targetsFile: string,
    private readonly stopOwn: (() => void) | null,
  ) {}

  static async connect(): Promise<Prometheus> {
    const url = process.env.TEST_PROMETHEUS_URL;
    const targets = process.env.TEST_PROMETHEUS_TARGETS;
    if (url && targets) return new Prometheus(url, targets, null);
    const port = await freePort();
    const env = { ...process.env, PROMETHEUS_PORT: String(port) };
    const sh = (cmd: string) =>
      execFileSync(path.join(REPO, 'scripts', 'prometheus.sh'), [cmd], { env, stdio: 'pipe' })
        .toString()
        .trim();
    sh('start');
    return new Prometheus(`http://127.0.0.1:${port}`, sh('targets'), () => sh('stop'));
  }

  stop(): void {
    this.stopOwn?.();
  }

  /** Scrape these `host:port` targets (and only these) as the bar-writer job, from now on. */
  setTargets(targets: readonly string[]): void {
    const tmp = `${this.targetsFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify([{ targets }]));
    fs.renameSync(tmp, this.targetsFile);
  }

  /**
   * Forgets every bar-writer series but those of `keep` (instance labels): a test's alert expressions
   * then see its own service only, not the rates an earlier test's service left in the last minutes.
   * (The admin API: scripts/prometheus.sh starts the suite's Prometheus with it, on 127.0.0.1.)
   */
  async forgetOthers(keep: readonly string[]): Promise<void> {
    // A regex in a PromQL string: the dots of host:port escaped (a backslash is written \\ there).
    const instances = keep.map((k) => k.replace(/\./g, '\\\\.')).join('|');
    const match = `{job="bar-writer",instance!~"${instances}"}`;
    // Up to now only: a tombstone without an end would also hide the samples a later target with the
    // same labels sends.
    const end = (Date.now() / 1000).toFixed(3);
    const res = await fetch(
      `${this.url}/api/v1/admin/tsdb/delete_series?match[]=${encodeURIComponent(match)}&end=${end}`,
      { method: 'POST' },
    );
    if (res.status !== 204) throw new Error(`delete_series ${match}: HTTP ${res.status} ${await res.text()}`);
  }

  /** An instant query; throws with Prometheus's error for a bad expression. */
  async query(expr: string): Promise<PromSeries[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: unknown };
    };
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
    if (body.data!.resultType !== 'vector')
      throw new Error(`${expr}: a ${body.data!.resultType}, not a vector`);
    return body.data!.result as PromSeries[];
  }

  /** Alerts pending or firing now. */
  async alerts(): Promise<PromAlert[]> {
    const res = await fetch(`${this.url}/api/v1/alerts`);
    const body = (await res.json()) as { data: { alerts: PromAlert[] } };
    return body.data.alerts;
  }

  /** The bar-writer targets Prometheus scrapes and whether the last scrape worked. */
  async targets(): Promise<{ scrapeUrl: string; health: string; job: string }[]> {
    const res = await fetch(`${this.url}/api/v1/targets?state=active`);
    const body = (await res.json()) as {
      data: { activeTargets: { scrapeUrl: string; health: string; labels: Record<string, string> }[] };
    };
    return body.data.activeTargets.map((t) => ({
      scrapeUrl: t.scrapeUrl,
      health: t.health,
      job: t.labels.job!,
    }));
  }
}
