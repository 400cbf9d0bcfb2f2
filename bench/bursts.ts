/**
 * bench:bursts — latency of live minute bursts through the running service (child process, default
 * config): 12,000 symbols, one bar each per simulated minute; each minute is one burst of 12,000
 * messages sent as fast as possible (one producer.send, acks=all, no compression). For each burst: the
 * time from the produce acknowledgement to all its rows being visible in bars_1m. The next burst is
 * sent after the previous one is visible plus a pause (BENCH_BURST_PAUSE_MS, 1000).
 *
 * Visibility probe (BENCH_BURST_PROBE):
 *   count  (default) SELECT count(*) FROM bars_1m WHERE "timestamp" = $minute, every 5 ms, until 12,000.
 *          bars_1m has no index leading on "timestamp", so this scans the table: each probe gets
 *          slower as minutes accumulate and competes with the writer for the 2 cores. Its own cost is
 *          reported (median probe duration), since it bounds the resolution.
 *   fence  SELECT sum(next_offset) FROM bar_writer_offsets (6 rows), every 5 ms, until it reaches the
 *          messages produced so far. The fence advances in the same transaction as the rows, so this is
 *          exactly "all rows committed", at a constant, tiny cost; count(*) is then checked once.
 *
 * Env: BENCH_BURSTS (30 measured), BENCH_BURST_WARMUP (2, not measured), BENCH_BURST_SYMBOLS (12000).
 */
import pg from 'pg';
import { ident } from '../src/store/pool';
import { sleep, uniqueName, waitFor } from '../test/support/common';
import { barJson, BENCH_START_MS, makeBar } from './bars';
import { type Cleanup, runMain } from './cleanup';
import { envInt, PG } from './env';
import { connectAdmin, connectProducer, createTopics, newKafka } from './kafka';
import { createBenchSchema, newPool } from './postgres';
import { RssSampler } from './procfs';
import { fmtInt, log, nowMs, percentile, printTable, round } from './report';
import { machineInfo, saveResult } from './results';
import { buildService, configText, serviceEnv, spawnService } from './serviceChild';

runMain('bench:bursts', async (cleanup: Cleanup) => {
  const symbols = envInt('BENCH_BURST_SYMBOLS', 12_000);
  const bursts = envInt('BENCH_BURSTS', 30);
  const warmup = Number(process.env.BENCH_BURST_WARMUP ?? 2);
  const pauseMs = Number(process.env.BENCH_BURST_PAUSE_MS ?? 1000);
  const probeKind = process.env.BENCH_BURST_PROBE ?? 'count';
  if (probeKind !== 'count' && probeKind !== 'fence')
    throw new Error('BENCH_BURST_PROBE must be count or fence');
  const partitions = 6;
  buildService();

  const pool = newPool(2);
  cleanup.add('pool end', () => pool.end());
  const machine = await machineInfo(pool);
  const schema = uniqueName('bench_burst');
  await createBenchSchema(pool, cleanup, schema);

  const kafka = newKafka();
  const admin = await connectAdmin(kafka, cleanup);
  const topic = schema.replace(/_/g, '.');
  const group = uniqueName('bench_burst');
  await createTopics(admin, cleanup, topic, partitions, () => [group]);

  // The service, running before the first burst, as in production.
  const svc = spawnService(serviceEnv({ schema, topic, group }), cleanup);
  const rss = new RssSampler(svc.pid, 100);
  cleanup.add('rss sampler', async () => rss.stop());
  let exited: string | null = null;
  void svc.exited.then((e) => (exited = `the service exited (${e.code ?? e.signal})`));
  try {
    await waitFor(
      'the service to be ready',
      async () => {
        const port = svc.httpPort();
        if (port === null) return false;
        const res = await fetch(`http://127.0.0.1:${port}/readyz`);
        return res.status === 200;
      },
      120_000,
      100,
      () => exited,
    );
  } catch (err) {
    log(`service output:\n${svc.tail()}`);
    throw err;
  }

  const producer = await connectProducer(kafka, cleanup);
  // One dedicated connection for the probe, with a prepared statement.
  const probeClient = new pg.Client({ ...PG, application_name: 'bar-writer-bench-probe' });
  await probeClient.connect();
  cleanup.add('probe client end', () => probeClient.end());
  const countSql = `SELECT count(*)::int AS n FROM ${ident(schema)}.bars_1m WHERE "timestamp" = $1`;
  const fenceSql = `SELECT coalesce(sum(next_offset), 0)::bigint::text AS n FROM ${ident(schema)}.bar_writer_offsets
                    WHERE consumer_group = $1 AND topic = $2`;
  const countRows = async (minuteIso: string): Promise<number> =>
    (await probeClient.query<{ n: number }>({ name: 'count', text: countSql, values: [minuteIso] })).rows[0]!
      .n;
  const fenceSum = async (): Promise<number> =>
    Number(
      (await probeClient.query<{ n: string }>({ name: 'fence', text: fenceSql, values: [group, topic] }))
        .rows[0]!.n,
    );

  const results: { minute: string; produceMs: number; latencyMs: number; probes: number; probeMs: number }[] =
    [];
  let produced = 0;
  log(`${warmup} warm-up + ${bursts} measured bursts of ${fmtInt(symbols)} bars (probe: ${probeKind})`);
  for (let i = 0; i < warmup + bursts; i++) {
    const minuteMs = BENCH_START_MS + i * 60_000;
    const minuteIso = new Date(minuteMs).toISOString();
    const messages = [];
    for (let s = 0; s < symbols; s++) {
      const bar = makeBar(s, i);
      messages.push({ key: bar.symbol, value: barJson(bar) });
    }
    const t0 = nowMs();
    await producer.send({ topic, acks: -1, messages });
    const acked = nowMs();
    produced += symbols;
    let probes = 0;
    let probeTime = 0;
    let visibleAt: number;
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (exited) throw new Error(`${exited}; last lines:\n${svc.tail()}`);
      const p0 = nowMs();
      const done =
        probeKind === 'count' ? (await countRows(minuteIso)) >= symbols : (await fenceSum()) >= produced;
      const p1 = nowMs();
      probes++;
      probeTime += p1 - p0;
      if (done) {
        visibleAt = p1;
        break;
      }
      if (Date.now() > deadline) throw new Error(`burst ${i} (${minuteIso}) not visible after 120 s`);
      await sleep(5);
    }
    if (probeKind === 'fence') {
      const n = await countRows(minuteIso);
      if (n !== symbols) throw new Error(`fence passed but bars_1m holds ${n} rows of ${minuteIso}`);
    }
    const r = {
      minute: minuteIso,
      produceMs: round(acked - t0, 1),
      latencyMs: round(visibleAt - acked, 1),
      probes,
      probeMs: round(probeTime / probes, 2),
    };
    if (i >= warmup) results.push(r);
    log(
      `  burst ${String(i + 1).padStart(2)}${i < warmup ? ' (warm-up)' : '          '} produce ${String(r.produceMs).padStart(6)} ms, ` +
        `ack → visible ${String(r.latencyMs).padStart(7)} ms (${probes} probes, ${r.probeMs} ms each)`,
    );
    await sleep(pauseMs);
  }
  const hwm = rss.hwmKb();
  rss.stop();
  const exit = await svc.stop(30_000);

  const lat = results.map((r) => r.latencyMs);
  const prod = results.map((r) => r.produceMs);
  const probeMs = results.map((r) => r.probeMs);
  const summary = {
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: Math.max(...lat),
    min: Math.min(...lat),
  };
  console.log('');
  console.log(
    `bench:bursts — ${bursts} bursts of ${fmtInt(symbols)} bars (+${warmup} warm-up), ${partitions} partitions, ` +
      `${configText()}, probe "${probeKind}" every 5 ms, ${machine.nproc} cores, load ${JSON.stringify(machine.loadAvgAtStart)}`,
  );
  printTable([
    ['ms', 'p50', 'p99', 'max', 'min'],
    ['produce ack → all rows visible', summary.p50, summary.p99, summary.max, summary.min],
    [
      'first send → produce ack',
      percentile(prod, 50),
      percentile(prod, 99),
      Math.max(...prod),
      Math.min(...prod),
    ],
    [
      'one probe query',
      percentile(probeMs, 50),
      percentile(probeMs, 99),
      Math.max(...probeMs),
      Math.min(...probeMs),
    ],
  ]);
  console.log(
    `p99 is nearest-rank over ${bursts} bursts (with fewer than 100 it is the maximum). ` +
      `Service peak RSS ${round(rss.peakRssKb / 1024, 1)} MiB, VmHWM ${hwm === null ? '?' : round(hwm / 1024, 1)} MiB, exit ${exit.code}.`,
  );
  saveResult(probeKind === 'count' ? 'bursts' : `bursts@probe=${probeKind}`, {
    machine,
    symbols,
    bursts,
    warmup,
    pauseMs,
    probe: probeKind,
    latencyMs: summary,
    produceMs: { p50: percentile(prod, 50), p99: percentile(prod, 99), max: Math.max(...prod) },
    probeQueryMs: { p50: percentile(probeMs, 50), max: Math.max(...probeMs) },
    peakRssMiB: round(rss.peakRssKb / 1024, 1),
    vmHwmMiB: hwm === null ? null : round(hwm / 1024, 1),
    perBurst: results,
  });
});
