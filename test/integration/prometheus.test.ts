/**
 * The shipped dashboard and alert rules against a real Prometheus (scripts/prometheus.sh: the rule file
 * and bar-writer job of deploy/prometheus/, a 1 s interval) scraping the service:
 *
 * - in normal operation every expression of deploy/grafana/dashboards/bar-writer.json returns at least
 *   one series (a panel never says "No data"), and no alert expression returns one;
 * - each alert's expression returns a series in the scenario it exists for, and the alert is pending:
 *   rejected messages (DeadLetters), the database refusing writes (NotReady, WriteErrors), a stalled
 *   database under load (LagGrowing, NoWrites), the service gone (Down).
 *
 * The `for:` durations (5-10 minutes) are left to the rule unit tests (deploy/prometheus/alerts.test.yml,
 * `promtool test rules`, run by scripts/test.sh).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PoolClient } from 'pg';
import { parse } from 'yaml';
import type { Service } from '../../src/service';
import { Harness, makeBars, REPO, sleep, waitFor } from '../support/harness';
import { Prometheus } from '../support/prometheus';

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(
  fs.readFileSync(path.join(REPO, 'deploy', 'grafana', 'dashboards', 'bar-writer.json'), 'utf8'),
) as { panels: Panel[] };
const PANEL_EXPRS = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
);

const rules = (
  parse(fs.readFileSync(path.join(REPO, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  }
).groups.flatMap((g) => g.rules);
const ruleExpr = (alert: string): string => {
  const r = rules.find((x) => x.alert === alert);
  if (!r) throw new Error(`no alert ${alert} in alerts.yml`);
  return r.expr;
};

describe('Prometheus, for real: the shipped dashboard and alerts', () => {
  let prom: Prometheus;
  beforeAll(async () => {
    prom = await Prometheus.connect();
  });
  afterAll(() => prom?.stop());

  /**
   * Points Prometheus at `service` alone, waits for a successful scrape of it and for the others to be
   * dropped, then forgets the series of earlier services.
   */
  async function scrape(service: Service): Promise<void> {
    const instance = `127.0.0.1:${service.port}`;
    prom.setTargets([instance]);
    await waitFor('Prometheus to scrape the service alone', async () => {
      const mine = (await prom.targets()).filter((t) => t.job === 'bar-writer');
      return mine.length === 1 && mine[0]!.scrapeUrl.includes(`//${instance}/`) && mine[0]!.health === 'up';
    });
    await prom.forgetOthers([instance]);
  }

  /** Waits until `expr` returns at least one series; resolves with them. */
  const returnsData = (what: string, expr: string, timeoutMs = 60_000) =>
    waitFor(
      `${what}: ${expr.trim()}`,
      async () => {
        const r = await prom.query(expr);
        return r.length > 0 ? r : null;
      },
      timeoutMs,
      500,
    );

  const pending = (alert: string) =>
    waitFor(
      `alert ${alert} pending or firing`,
      async () => (await prom.alerts()).some((a) => a.labels.alertname === alert),
      30_000,
      500,
    );

  describe('normal operation, then rejected messages', () => {
    const h = new Harness();
    afterAll(() => h.cleanup());

    test('every dashboard expression returns a series while 30,000 bars land; no alert expression does', async () => {
      await h.setupSchema();
      await h.createTopics(3);
      const service = await h.startService();
      await scrape(service);
      const bars = makeBars(300, 100, Date.UTC(2026, 10, 23, 14, 30), 5);
      await h.produceBars(bars);
      await waitFor(
        'the bars to land',
        async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      );

      // The lag gauges refresh every 10 s and rates need two scrapes after the writes: wait for all
      // expressions together, then name those still empty.
      const empty = async () => {
        const out: string[] = [];
        for (const { panel, expr } of PANEL_EXPRS)
          if ((await prom.query(expr)).length === 0) out.push(`${panel}: ${expr}`);
        return out;
      };
      const deadline = Date.now() + 60_000;
      let missing = await empty();
      while (missing.length > 0 && Date.now() < deadline) {
        await sleep(1000);
        missing = await empty();
      }
      expect(missing).toEqual([]);
      expect(PANEL_EXPRS.length).toBeGreaterThanOrEqual(30);
      // The labeled counters are there with every label value, at 0, before any error.
      const reasons = await prom.query('sum by (reason) (rate(bars_rejected_total{job="bar-writer"}[5m]))');
      expect(reasons.length).toBeGreaterThanOrEqual(10);
      expect(reasons.every((s) => Number(s.value[1]) === 0)).toBe(true);
      const classes = await prom.query(
        'sum by (class) (rate(timescale_write_errors_total{job="bar-writer"}[5m]))',
      );
      expect(classes.map((s) => s.metric.class).sort()).toEqual(['data', 'fatal', 'transient']);

      // No alert expression holds in normal operation.
      for (const r of rules)
        expect({ alert: r.alert, series: await prom.query(r.expr) }).toEqual({ alert: r.alert, series: [] });
    }, 180_000);

    test('rejected messages: the dead-letter rate passes 1/s, BarWriterDeadLetters is pending', async () => {
      for (let i = 0; i < 8; i++) {
        await h.produceRaw(
          Array.from({ length: 100 }, (_, k) => ({ key: `BAD${k}`, value: `not json ${i}-${k}` })),
        );
        await sleep(1000);
      }
      const series = await returnsData('BarWriterDeadLetters', ruleExpr('BarWriterDeadLetters'));
      expect(Number(series[0]!.value[1])).toBeGreaterThan(1);
      await pending('BarWriterDeadLetters');
      const reasons = await prom.query(
        'sum by (reason) (rate(bars_rejected_total{job="bar-writer"}[5m])) > 0',
      );
      expect(reasons.map((s) => s.metric.reason)).toEqual(['invalid_json']);
    }, 120_000);
  });

  describe('the database refuses writes', () => {
    const h = new Harness();
    afterAll(() => h.cleanup());

    test('BarWriterNotReady and BarWriterWriteErrors (transient) return a series and are pending', async () => {
      await h.setupSchema();
      await h.createTopics(2);
      const s = `"${h.schema}"`;
      await h.pool.query(`CREATE FUNCTION ${s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected fault: writes refused' USING ERRCODE = '57P03'; END $$`);
      await h.pool.query(
        `CREATE TRIGGER refuse BEFORE INSERT ON ${s}.bars_1m FOR EACH STATEMENT EXECUTE FUNCTION ${s}.refuse()`,
      );
      const service = await h.startService({ BARS_DB_MAX_RETRIES: '1', BARS_DB_RETRY_MAX_DELAY: '1s' });
      await scrape(service);
      const bars = makeBars(50, 4, Date.UTC(2026, 10, 23, 16, 0), 6);
      await h.produceBars(bars);

      const notReady = await returnsData('BarWriterNotReady', ruleExpr('BarWriterNotReady'));
      expect(notReady[0]!.metric.instance).toBe(`127.0.0.1:${service.port}`);
      const errors = await returnsData('BarWriterWriteErrors', ruleExpr('BarWriterWriteErrors'));
      expect(errors.map((x) => x.metric.class)).toEqual(['transient']);
      await pending('BarWriterNotReady');
      await pending('BarWriterWriteErrors');

      await h.pool.query(`DROP TRIGGER refuse ON ${s}.bars_1m`);
      await waitFor(
        'the bars to land after the fault',
        async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      );
      await waitFor(
        'NotReady to clear',
        async () => (await prom.query(ruleExpr('BarWriterNotReady'))).length === 0,
        30_000,
        500,
      );
    }, 180_000);
  });

  describe('a stalled database under load, then the service gone', () => {
    const h = new Harness();
    let blocker: PoolClient | null = null;
    afterAll(async () => {
      // A client whose ROLLBACK failed is not given back to the pool.
      const rolledBack = await blocker?.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      blocker?.release(rolledBack === false);
      await h.cleanup();
    });

    test('BarWriterLagGrowing and BarWriterNoWrites return a series; BarWriterDown once it stops', async () => {
      await h.setupSchema();
      await h.createTopics(3);
      const service = await h.startService();
      await scrape(service);
      // From now on every write waits for this lock (and gives up after DB_LOCK_TIMEOUT, to retry):
      // nothing lands. Taken once the service runs, so that its start-up is not what waits.
      blocker = await h.pool.connect();
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE "${h.schema}".bars_1m IN ACCESS EXCLUSIVE MODE`);
      const t0 = Date.UTC(2026, 10, 24, 14, 30);
      await h.produceBars(makeBars(200, 60, t0, 8)); // 12,000: over the alert's 10,000
      // The feed goes on: 200 bars a second until both expressions hold (the lag's slope is taken over
      // minute-aligned points, so it takes up to two minutes of growth).
      let minute = 60;
      const both = async () =>
        (await prom.query(ruleExpr('BarWriterLagGrowing'))).length > 0 &&
        (await prom.query(ruleExpr('BarWriterNoWrites'))).length > 0;
      const deadline = Date.now() + 200_000;
      while (!(await both())) {
        if (Date.now() > deadline) throw new Error('LagGrowing and NoWrites did not both hold within 200 s');
        await h.produceBars(makeBars(200, 1, t0 + minute++ * 60_000, minute));
        await sleep(1000);
      }
      await pending('BarWriterLagGrowing');
      await pending('BarWriterNoWrites');
      // Nothing was written (asked of the service: a count of bars_1m would wait for the lock too).
      const written = await prom.query(`bars_written_total{instance="127.0.0.1:${service.port}"}`);
      expect(written.map((s) => s.value[1])).toEqual(['0']);

      // Released: everything lands.
      await blocker.query('ROLLBACK');
      blocker.release();
      blocker = null;
      await waitFor(
        'the backlog to land',
        async () => (await h.rowCount()) === 200 * minute && (await h.caughtUp()),
        120_000,
      );

      // Gone: no target up.
      expect(await prom.query(ruleExpr('BarWriterDown'))).toEqual([]);
      expect(await service.stop()).toBe(true);
      await returnsData('BarWriterDown', ruleExpr('BarWriterDown'), 30_000);
      await pending('BarWriterDown');
    }, 420_000);
  });
});
