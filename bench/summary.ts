/**
 * bench:summary — one table from bench/results/latest.json: the write-path variants, e2e (new and
 * replay) against the psql reference (d) of bench:write, bursts, and the backlog when present. Sections
 * from another run than the newest write-path one are marked, since only figures measured in one run
 * (same machine load) compare fairly.
 */
import { fmtInt, printTable, ratio, round } from './report';
import { loadResults, RESULTS_FILE } from './results';

interface Variant {
  label: string;
  bars: number;
  barsPerSecond: number;
  ratioToC: number;
  ratioToD: number;
}
interface Drain {
  barsPerSecond: number;
  seconds: number;
  peakRssMiB: number;
  vmHwmMiB: number | null;
  underCpuProfiler?: boolean;
}

export function printSummary(runId?: string): void {
  const all = loadResults();
  printTarget(all, '', runId);
  if (all['writePath@timescaledb'] || all['e2e@timescaledb']) printTarget(all, '@timescaledb', runId);
}

function printTarget(
  all: Record<string, Record<string, unknown> | undefined>,
  suffix: string,
  runId: string | undefined,
): void {
  const wp = all[`writePath${suffix}`] as
    | {
        runId: string;
        at: string;
        bars: number;
        variants: Record<string, Variant>;
        dSql?: { barsPerSecond: number };
      }
    | undefined;
  const e2e = all[`e2e${suffix}`] as
    | {
        runId: string;
        at: string;
        bars: number;
        new: Drain;
        replay: Drain;
        replayOverNew: number;
        replayStatsDelta: { n_tup_upd: number; n_dead_tup: number; n_tup_ins: number };
      }
    | undefined;
  const bursts = (suffix ? undefined : all.bursts) as
    | {
        runId: string;
        at: string;
        bursts: number;
        probe: string;
        latencyMs: { p50: number; p99: number; max: number };
      }
    | undefined;
  const backlog = (suffix ? undefined : all.backlog) as
    | {
        runId: string;
        at: string;
        bars: number;
        drainSeconds: number;
        barsPerSecond: number;
        peakRssMiB: number;
        vmHwmMiB: number | null;
      }
    | undefined;
  const ref = runId ?? wp?.runId ?? e2e?.runId;
  const mark = (s: { runId: string; at: string } | undefined) =>
    !s ? '' : s.runId === ref ? '' : ` [other run, ${s.at.slice(0, 16).replace('T', ' ')}]`;

  console.log('');
  console.log(
    `==== bench summary (${RESULTS_FILE.replace(/.*\/bench\//, 'bench/')}, run ${ref ?? '?'}), bars_1m on ${suffix ? 'a TimescaleDB hypertable' : 'plain PostgreSQL'} ====`,
  );
  const rows: (string | number)[][] = [['measure', 'value', '÷ (c) ours', '÷ (d) psql', 'note']];
  const d = wp?.variants.d?.barsPerSecond ?? NaN;
  const c = wp?.variants.c?.barsPerSecond ?? NaN;
  if (wp) {
    for (const [k, v] of Object.entries(wp.variants)) {
      rows.push([
        `write (${k}) bars/s`,
        fmtInt(v.barsPerSecond),
        v.ratioToC.toFixed(3),
        v.ratioToD.toFixed(3),
        v.label + mark(wp),
      ]);
    }
    if (wp.dSql)
      rows.push([
        'write (d-sql) bars/s',
        fmtInt(wp.dSql.barsPerSecond),
        ratio(wp.dSql.barsPerSecond, c).toFixed(3),
        ratio(wp.dSql.barsPerSecond, d).toFixed(3),
        'psql \\copy + upsert + COMMIT server time only' + mark(wp),
      ]);
  }
  if (e2e) {
    const target = ratio(e2e.new.barsPerSecond, d);
    rows.push([
      'e2e new bars/s',
      fmtInt(e2e.new.barsPerSecond),
      ratio(e2e.new.barsPerSecond, c).toFixed(3),
      target.toFixed(3),
      `${fmtInt(e2e.bars)} bars, spawn → committed; target ÷ (d) ≥ 0.7: ${Number.isNaN(target) ? 'n/a' : target >= 0.7 ? 'MET' : 'NOT MET'}` +
        (e2e.new.underCpuProfiler ? ' (under --cpu-prof)' : '') +
        mark(e2e),
    ]);
    rows.push([
      'e2e replay bars/s',
      fmtInt(e2e.replay.barsPerSecond),
      ratio(e2e.replay.barsPerSecond, c).toFixed(3),
      ratio(e2e.replay.barsPerSecond, d).toFixed(3),
      `replay ÷ new ${e2e.replayOverNew.toFixed(3)}; n_tup_upd +${e2e.replayStatsDelta.n_tup_upd}, n_dead_tup +${e2e.replayStatsDelta.n_dead_tup}` +
        mark(e2e),
    ]);
    rows.push([
      'e2e peak RSS MiB (new / replay)',
      `${e2e.new.peakRssMiB} / ${e2e.replay.peakRssMiB}`,
      '',
      '',
      `VmHWM ${e2e.new.vmHwmMiB} / ${e2e.replay.vmHwmMiB}` + mark(e2e),
    ]);
  }
  if (bursts) {
    const l = bursts.latencyMs;
    rows.push([
      'bursts ack → visible ms p50/p99/max',
      `${round(l.p50)} / ${round(l.p99)} / ${round(l.max)}`,
      '',
      '',
      `${bursts.bursts} bursts of 12,000, probe ${bursts.probe}` + mark(bursts),
    ]);
  }
  if (backlog) {
    rows.push([
      'backlog drain s / bars/s',
      `${round(backlog.drainSeconds, 1)} / ${fmtInt(backlog.barsPerSecond)}`,
      ratio(backlog.barsPerSecond, c).toFixed(3),
      ratio(backlog.barsPerSecond, d).toFixed(3),
      `${fmtInt(backlog.bars)} bars` + mark(backlog),
    ]);
    rows.push([
      'backlog peak RSS MiB',
      backlog.peakRssMiB,
      '',
      '',
      `VmHWM ${backlog.vmHwmMiB ?? '?'}` + mark(backlog),
    ]);
  }
  printTable(rows, [0, 4]);
}

if (require.main === module) printSummary();
