/**
 * One timed drain of a pre-produced topic by the real service (`node dist/main.js`, a child process):
 * from spawn until the group's committed offsets reach the log end of every partition (admin
 * fetchOffsets every 200 ms), with the child's RSS sampled from /proc and its heap and queue depth
 * read from /metrics. The child is then stopped by pid (SIGTERM: graceful drain, so a CPU profile is
 * written and its database sessions end, which flushes their table statistics).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { metricSum, waitFor } from '../test/support/common';
import { type Cleanup } from './cleanup';
import { KAFKA_VERSION, PG, REPO } from './env';
import { groupCaughtUp } from './kafka';
import { startAtCheckpoint, walBytesSince } from './postgres';
import { machineCpuSeconds, processCpuSeconds, processReadBytes, RssSampler } from './procfs';
import { log, nowMs } from './report';
import { spawnService } from './serviceChild';

/**
 * CPU seconds of the processes doing the work, sampled every second: the PostgreSQL backends serving
 * the service (found through its sockets: /proc/<pid>/fd → /proc/net/tcp local ports → pg_stat_activity
 * client_port; a backend's last sample counts, so one that closes loses at most a second) and the local
 * Kafka broker (scripts/kafka.sh's pid file; other clients of that broker are counted too).
 */
class WorkCpuTracker {
  private readonly backends = new Map<number, { first: number; last: number }>();
  private readonly brokerPid: number | null;
  private readonly brokerStart: number | null;
  private timer: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly servicePid: number,
    private readonly pool: pg.Pool,
  ) {
    let pid: number | null;
    try {
      const port = KAFKA_BROKERS_PORT();
      const file = path.join(REPO, '.kafka', `run-${KAFKA_VERSION}-${port}`, 'kafka.pid');
      pid = Number(fs.readFileSync(file, 'utf8').trim()) || null;
    } catch {
      pid = null;
    }
    this.brokerPid = pid;
    this.brokerStart = pid === null ? null : processCpuSeconds(pid);
    this.timer = setInterval(() => void this.sample(), 1000);
  }

  private pgPorts(): number[] {
    const inodes = new Set<string>();
    try {
      for (const fd of fs.readdirSync(`/proc/${this.servicePid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${this.servicePid}/fd/${fd}`));
          if (m) inodes.add(m[1]!);
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      return [];
    }
    const ports: number[] = [];
    const pgPortHex = PG.port.toString(16).toUpperCase().padStart(4, '0');
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10 || !inodes.has(f[9]!)) continue;
        if (f[2]!.endsWith(`:${pgPortHex}`)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
      }
    }
    return ports;
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const ports = this.pgPorts();
      if (ports.length === 0) return;
      const r = await this.pool.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
        [ports],
      );
      for (const { pid } of r.rows) {
        const cpu = processCpuSeconds(pid);
        if (cpu === null) continue;
        const b = this.backends.get(pid);
        if (b) b.last = cpu;
        else this.backends.set(pid, { first: 0, last: cpu }); // new backend: all its CPU is ours
      }
    } catch {
      // best effort
    } finally {
      this.busy = false;
    }
  }

  async finish(): Promise<{
    pgBackendsCpuSeconds: number;
    pgBackends: number;
    brokerCpuSeconds: number | null;
  }> {
    await this.sample();
    clearInterval(this.timer);
    let pgCpu = 0;
    for (const b of this.backends.values()) pgCpu += b.last - b.first;
    const brokerNow = this.brokerPid === null ? null : processCpuSeconds(this.brokerPid);
    return {
      pgBackendsCpuSeconds: Math.round(pgCpu * 100) / 100,
      pgBackends: this.backends.size,
      brokerCpuSeconds:
        brokerNow === null || this.brokerStart === null
          ? null
          : Math.round((brokerNow - this.brokerStart) * 100) / 100,
    };
  }
}

function KAFKA_BROKERS_PORT(): string {
  return (process.env.BENCH_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')[0]!.split(':')[1] ?? '9092';
}

export interface DrainResult {
  bars: number;
  /** Spawn → every partition's committed offset at the log end. */
  seconds: number;
  barsPerSecond: number;
  /** Spawn → the service logged its partition assignment (process start, connect, group join). */
  startupSeconds: number | null;
  /** Assignment → done: the draining proper. */
  drainSeconds: number | null;
  drainBarsPerSecond: number | null;
  /** Highest VmRSS seen by polling, and the kernel's VmHWM at the end (both MiB). */
  peakRssMiB: number;
  vmHwmMiB: number | null;
  rssSamples: number;
  /** From /metrics every second (null when not read). */
  peakHeapUsedMiB: number | null;
  peakQueueDepth: number | null;
  /** Write transactions (flushes) and their mean size, from /metrics once caught up. */
  writes: number | null;
  barsPerWrite: number | null;
  /** Mean time of one write transaction, from the flush starting to its COMMIT (ms). */
  msPerWrite: number | null;
  /** Seconds the fetch loop waited for room in full buffers (the database limiting), from /metrics. */
  waitedForRoomSeconds: number | null;
  exitCode: number | null;
  stopSeconds: number;
  /** CPU seconds the service used from spawn to done (user + system), and per 1,000 bars. */
  serviceCpuSeconds: number | null;
  serviceCpuMsPer1kBars: number | null;
  /**
   * The same after start-up (from the "starting bar-writer" line: modules loaded, configuration read),
   * as the bare client's CPU is measured: like for like.
   */
  serviceCpuAfterStartSeconds: number | null;
  /** Cores the service kept busy on average (CPU seconds ÷ wall seconds). */
  serviceCores: number | null;
  /** The whole machine meanwhile (every process, other engineers' included): busy cores on average. */
  machineBusyCores: number;
  /** CPU seconds, spawn → done: the service, its PostgreSQL backends, the broker, everything else. */
  cpuSeconds: {
    service: number | null;
    postgresBackends: number;
    kafkaBroker: number | null;
    restOfMachine: number | null;
  };
  pgBackends: number;
  /** Bytes the service read (sockets included: mostly Kafka fetches), per bar; a bar's record is ~190 B. */
  serviceReadBytesPerBar: number | null;
  /** WAL the server wrote, spawn → done (the pass starts at a fresh checkpoint: `startAtCheckpoint`), MiB. */
  walMiB: number;
}

export async function drainOnce(o: {
  cleanup: Cleanup;
  admin: Admin;
  env: Record<string, string>;
  topic: string;
  group: string;
  ends: Map<number, bigint>;
  /** For finding the service's PostgreSQL backends (CPU accounting). */
  pool: pg.Pool;
  nodeArgs?: string[];
  rssIntervalMs?: number;
  timeoutMs?: number;
}): Promise<DrainResult> {
  const bars = Number([...o.ends.values()].reduce((a, b) => a + b, 0n));
  const walStart = await startAtCheckpoint(o.pool);
  const machineBefore = machineCpuSeconds();
  const svc = spawnService(o.env, o.cleanup, o.nodeArgs ?? []);
  const rss = new RssSampler(svc.pid, o.rssIntervalMs ?? 100);
  const work = new WorkCpuTracker(svc.pid, o.pool);
  let peakHeap: number | null = null;
  let peakDepth: number | null = null;
  let metricsBusy = false;
  const metricsTimer = setInterval(() => {
    const port = svc.httpPort();
    if (port === null || metricsBusy) return;
    metricsBusy = true;
    fetch(`http://127.0.0.1:${port}/metrics`)
      .then((r) => r.text())
      .then((text) => {
        const heap = metricSum(text, 'nodejs_heap_size_used_bytes');
        const depth = metricSum(text, 'timescale_write_queue_depth');
        if (heap !== null) peakHeap = Math.max(peakHeap ?? 0, heap);
        if (depth !== null) peakDepth = Math.max(peakDepth ?? 0, depth);
      })
      .catch(() => undefined)
      .finally(() => (metricsBusy = false));
  }, 1000);
  let exitInfo: string | null = null;
  void svc.exited.then((e) => (exitInfo = `the service exited early (${e.code ?? e.signal})`));
  let doneAt: number;
  try {
    await waitFor(
      `group ${o.group} caught up`,
      () => groupCaughtUp(o.admin, o.group, o.topic, o.ends),
      o.timeoutMs ?? 60 * 60_000,
      200,
      () => exitInfo,
    );
    doneAt = nowMs();
  } catch (err) {
    log(`service output (last lines):\n${svc.tail()}`);
    throw err;
  } finally {
    clearInterval(metricsTimer);
  }
  let writes: number | null = null;
  let barsPerWrite: number | null = null;
  let msPerWrite: number | null = null;
  let waitedForRoomSeconds: number | null = null;
  const port = svc.httpPort();
  if (port !== null) {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`)
      .then((r) => r.text())
      .catch(() => '');
    writes = metricSum(text, 'timescale_write_batch_size_count');
    const sum = metricSum(text, 'timescale_write_batch_size_sum');
    if (writes && sum !== null) barsPerWrite = Math.round(sum / writes);
    const latency = metricSum(text, 'timescale_write_latency_seconds_sum');
    if (writes && latency !== null) msPerWrite = Math.round((latency / writes) * 1000 * 10) / 10;
    const waited = metricSum(text, 'kafka_fetch_backpressure_seconds_total');
    if (waited !== null) waitedForRoomSeconds = Math.round(waited * 100) / 100;
  }
  const cpu = processCpuSeconds(svc.pid);
  const cpuAtStart = svc.cpuAtStart();
  const readBytes = processReadBytes(svc.pid);
  const machineAfter = machineCpuSeconds();
  const workCpu = await work.finish();
  const walBytes = await walBytesSince(o.pool, walStart);
  const hwm = rss.hwmKb();
  rss.stop();
  const stopStart = nowMs();
  const exit = await svc.stop(30_000);
  const stopSeconds = (nowMs() - stopStart) / 1000;
  if (exit.code !== 0) log(`service exit ${exit.code ?? exit.signal}; last lines:\n${svc.tail()}`);
  const seconds = (doneAt - svc.spawnedAt) / 1000;
  const assigned = svc.assignedAt();
  const startupSeconds = assigned === null ? null : (assigned - svc.spawnedAt) / 1000;
  const drainSeconds = assigned === null ? null : (doneAt - assigned) / 1000;
  const mib = (kb: number) => Math.round((kb / 1024) * 10) / 10;
  return {
    bars,
    seconds,
    barsPerSecond: bars / seconds,
    startupSeconds,
    drainSeconds,
    drainBarsPerSecond: drainSeconds === null ? null : bars / drainSeconds,
    peakRssMiB: mib(rss.peakRssKb),
    vmHwmMiB: hwm === null ? null : mib(hwm),
    rssSamples: rss.samples,
    peakHeapUsedMiB: peakHeap === null ? null : Math.round((peakHeap / 2 ** 20) * 10) / 10,
    peakQueueDepth: peakDepth,
    writes,
    barsPerWrite,
    msPerWrite,
    waitedForRoomSeconds,
    exitCode: exit.code,
    stopSeconds,
    serviceCpuSeconds: cpu,
    serviceCpuMsPer1kBars: cpu === null ? null : Math.round((cpu * 1e9) / bars) / 1000,
    serviceCpuAfterStartSeconds:
      cpu === null || cpuAtStart === null ? null : Math.round((cpu - cpuAtStart) * 100) / 100,
    serviceCores: cpu === null ? null : Math.round((cpu / seconds) * 100) / 100,
    machineBusyCores: Math.round(((machineAfter.busy - machineBefore.busy) / seconds) * 100) / 100,
    cpuSeconds: {
      service: cpu,
      postgresBackends: workCpu.pgBackendsCpuSeconds,
      kafkaBroker: workCpu.brokerCpuSeconds,
      restOfMachine:
        cpu === null
          ? null
          : Math.round(
              (machineAfter.busy -
                machineBefore.busy -
                cpu -
                workCpu.pgBackendsCpuSeconds -
                (workCpu.brokerCpuSeconds ?? 0)) *
                100,
            ) / 100,
    },
    pgBackends: workCpu.pgBackends,
    serviceReadBytesPerBar: readBytes === null ? null : Math.round(readBytes / bars),
    walMiB: mib(walBytes / 1024),
  };
}
