/**
 * bench:backlog — memory and time while the service drains a large backlog: BENCH_BACKLOG_BARS
 * (default 5,000,000; 12,000 symbols, minute by minute) pre-produced into a fresh 6-partition topic,
 * then the service (child process, default config) started on a fresh schema and group. Reports the
 * time to drain (spawn → the group's committed offsets at the log end of every partition), bars/s, and
 * the child's peak RSS: VmRSS polled every 100 ms from /proc/<pid>/status, and VmHWM at the end; also
 * the peak V8 heap used and buffered messages, from /metrics every second.
 */
import { ident } from '../src/store/pool';
import { uniqueName } from '../test/support/common';
import { type Cleanup, runMain } from './cleanup';
import { drainOnce } from './drain';
import { envInt } from './env';
import { prepareFeed } from './feed';
import { fmtInt, log, printTable, round } from './report';
import { saveResult } from './results';
import { buildService, configText, serviceEnv } from './serviceChild';

runMain('bench:backlog', async (cleanup: Cleanup) => {
  const total = envInt('BENCH_BACKLOG_BARS', 5_000_000);
  const symbols = envInt('BENCH_BACKLOG_SYMBOLS', 12_000);
  const partitions = 6;
  buildService();

  const { pool, machine, schema, admin, topic, groups, ends, produced } = await prepareFeed(cleanup, {
    tag: 'backlog',
    total,
    symbols,
    partitions,
    poolSize: 2,
  });
  const group = uniqueName('bench_backlog');
  groups.push(group);

  log('draining with the service');
  const r = await drainOnce({
    cleanup,
    admin,
    env: serviceEnv({ schema, topic, group }),
    pool,
    topic,
    group,
    ends,
  });
  const rows = Number(
    (await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ident(schema)}.bars_1m`)).rows[0]!.n,
  );
  if (rows !== total) throw new Error(`bars_1m holds ${rows} rows, expected ${total}`);

  console.log('');
  console.log(
    `bench:backlog — ${fmtInt(total)} bars pre-produced, ${fmtInt(symbols)} symbols, ${partitions} partitions, ` +
      `${configText()}, ${machine.nproc} cores, load ${JSON.stringify(machine.loadAvgAtStart)}`,
  );
  printTable([
    ['drain', 'value'],
    ['time to drain (spawn → committed = log end), s', round(r.seconds, 1)],
    ['bars/s from spawn', fmtInt(r.barsPerSecond)],
    [
      'start-up (spawn → partitions assigned), s',
      r.startupSeconds === null ? '?' : round(r.startupSeconds, 2),
    ],
    ['peak VmRSS (polled every 100 ms), MiB', r.peakRssMiB],
    ['VmHWM at the end, MiB', r.vmHwmMiB ?? '?'],
    ['peak V8 heap used (/metrics, 1 s), MiB', r.peakHeapUsedMiB ?? '?'],
    ['peak buffered messages (/metrics, 1 s)', r.peakQueueDepth ?? '?'],
    ['graceful stop after the drain, s', round(r.stopSeconds, 2)],
    ['service CPU, ms per 1,000 bars', r.serviceCpuMsPer1kBars ?? '?'],
    ['service cores busy on average', r.serviceCores ?? '?'],
    [
      'CPU s: service / its PG backends / Kafka broker / rest of machine',
      `${r.cpuSeconds.service} / ${r.cpuSeconds.postgresBackends} / ${r.cpuSeconds.kafkaBroker ?? '?'} / ${r.cpuSeconds.restOfMachine ?? '?'}`,
    ],
    ['machine cores busy on average (everything)', r.machineBusyCores],
  ]);
  saveResult('backlog', {
    machine,
    bars: total,
    symbols,
    partitions,
    produce: { seconds: round(produced.seconds, 1), barsPerSecond: round(produced.barsPerSecond) },
    drainSeconds: round(r.seconds, 2),
    barsPerSecond: round(r.barsPerSecond),
    startupSeconds: r.startupSeconds === null ? null : round(r.startupSeconds, 2),
    peakRssMiB: r.peakRssMiB,
    vmHwmMiB: r.vmHwmMiB,
    rssSamples: r.rssSamples,
    peakHeapUsedMiB: r.peakHeapUsedMiB,
    peakQueueDepth: r.peakQueueDepth,
    exitCode: r.exitCode,
    serviceCpuMsPer1kBars: r.serviceCpuMsPer1kBars,
    serviceCores: r.serviceCores,
    machineBusyCores: r.machineBusyCores,
    cpuSeconds: r.cpuSeconds,
  });
});
