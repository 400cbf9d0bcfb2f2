/**
 * bench:e2e — Kafka to bars_1m through the real service (`node dist/main.js`, default write config):
 *
 *   1. pre-produce BENCH_E2E_BARS bars (default 1,000,000; BENCH_E2E_SYMBOLS = 12,000 symbols, minute by
 *      minute) into a fresh 6-partition topic: keyed by symbol, no compression, 10,000 per send;
 *   2. "new": spawn the service with a fresh group on a fresh schema; time from spawn until the group's
 *      committed offsets reach the end of every partition; bars/s; peak RSS (VmRSS polled, VmHWM);
 *   3. "replay": the same topic, the same schema, a new group: every bar is written again, identical;
 *      bars/s, and the pg_stat_user_tables deltas of bars_1m across it (expected: 0 updates, 0 dead);
 *   4. the replay/new ratio, and e2e ÷ the psql reference (d) of bench:write when it is in
 *      bench/results/latest.json;
 *   5. the references of bench/references.ts on the same topic and rows, in this run: the bare kafkajs +
 *      JSON.parse consumer (CPU per message) and the lean psql load; printed with the targets: service
 *      CPU per bar ≤ 2.0 × the bare client's, bars/s ≥ 0.7 × lean psql's; and bars per CPU-second of the
 *      service and its PostgreSQL backends together.
 *
 * BENCH_E2E_EXTRAS=1 adds a pass "new, 2 extra columns": the same bars with two more fields (exchange,
 * a text; conditions, a bigint) in a topic of their own, written by the service configured with
 * BARS_EXTRA_COLUMNS into a schema with those columns; printed beside "new" with their ratio.
 *
 * BENCH_CPU_PROF=1 runs the "new" pass under `node --cpu-prof` (written to bench/results/) and prints
 * its top self-time functions; profiling slows the service, so that pass's figures are flagged.
 */
import path from 'node:path';
import { ident } from '../src/store/pool';
import { uniqueName } from '../test/support/common';
import { type Cleanup, runMain } from './cleanup';
import { drainOnce, type DrainResult } from './drain';
import { envFlag, envInt, TARGET } from './env';
import { BENCH_EXTRA_COLUMNS } from './bars';
import { prepareFeed } from './feed';
import { settledStats, statsDelta } from './postgres';
import { printProfile, summarizeProfile } from './profile-top';
import { bareConsumerPass, leanPsqlLoad } from './references';
import { fmtInt, log, printTable, ratio, round } from './report';
import { loadResults, RESULTS_DIR, RUN_ID, saveResult, sectionName } from './results';
import { buildService, configText, serviceEnv } from './serviceChild';

runMain('bench:e2e', async (cleanup: Cleanup) => {
  const total = envInt('BENCH_E2E_BARS', 1_000_000);
  const symbols = envInt('BENCH_E2E_SYMBOLS', 12_000);
  const partitions = envInt('BENCH_E2E_PARTITIONS', 6);
  const cpuProf = envFlag('BENCH_CPU_PROF');
  buildService();

  const { pool, machine, schema, admin, topic, groups, ends, produced } = await prepareFeed(cleanup, {
    tag: 'e2e',
    total,
    symbols,
    partitions,
    poolSize: 3,
  });
  const inTopic = Number([...ends.values()].reduce((a, b) => a + b, 0n));
  if (inTopic !== total) throw new Error(`topic holds ${inTopic} messages, expected ${total}`);

  const rowCount = async () =>
    Number(
      (await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ident(schema)}.bars_1m`)).rows[0]!
        .n,
    );

  /** The groups of the extra-columns pass, deleted with its topic (set when it runs). */
  let extrasGroups: string[] = [];
  const pass = async (
    name: string,
    extraNodeArgs: string[],
    on: {
      schema: string;
      topic: string;
      ends: Map<number, bigint>;
      admin: typeof admin;
      extra?: Record<string, string>;
    } = { schema, topic, ends, admin },
  ): Promise<DrainResult> => {
    const group = uniqueName(`bench_e2e_${name.replace(/\W+/g, '_')}`);
    (on.admin === admin ? groups : extrasGroups).push(group);
    log(`${name}: spawning the service (group ${group})`);
    const r = await drainOnce({
      cleanup,
      // Each topic's own admin: an admin that learnt a topic fails its metadata once the topic is deleted.
      admin: on.admin,
      env: serviceEnv({ schema: on.schema, topic: on.topic, group, extra: on.extra }),
      pool,
      topic: on.topic,
      group,
      ends: on.ends,
      nodeArgs: extraNodeArgs,
    });
    log(
      `  ${name}: ${fmtInt(r.barsPerSecond)} bars/s from spawn (${round(r.seconds, 2)} s; start-up ` +
        `${r.startupSeconds === null ? '?' : round(r.startupSeconds, 2)} s), peak RSS ${r.peakRssMiB} MiB, VmHWM ${r.vmHwmMiB} MiB, WAL ${r.walMiB} MiB`,
    );
    return r;
  };

  const profName = `e2e-service-${RUN_ID}.cpuprofile`;
  const profArgs = cpuProf
    ? ['--cpu-prof', `--cpu-prof-dir=${RESULTS_DIR}`, `--cpu-prof-name=${profName}`]
    : [];
  const fresh = await pass('new', profArgs);
  const rowsAfterNew = await rowCount();
  if (rowsAfterNew !== total)
    throw new Error(`bars_1m holds ${rowsAfterNew} rows after the first pass, expected ${total}`);
  const before = await settledStats(pool, schema, 'bars_1m');
  const replay = await pass('replay', []);
  const after = await settledStats(pool, schema, 'bars_1m');
  const delta = statsDelta(before, after);
  if ((await rowCount()) !== total) throw new Error('the replay changed the row count');

  // The same bars with two extra columns, side by side with "new".
  let extras: DrainResult | null = null;
  if (envFlag('BENCH_E2E_EXTRAS')) {
    const x = await prepareFeed(cleanup, {
      tag: 'e2e_x',
      total,
      symbols,
      partitions,
      poolSize: 2,
      extras: true,
    });
    extrasGroups = x.groups;
    extras = await pass('new, 2 extra columns', [], {
      schema: x.schema,
      topic: x.topic,
      ends: x.ends,
      admin: x.admin,
      extra: { BARS_EXTRA_COLUMNS: BENCH_EXTRA_COLUMNS },
    });
    const stored = await x.pool.query<{ n: string; filled: string }>(
      `SELECT count(*)::text AS n, count(exchange)::text AS filled FROM ${ident(x.schema)}.bars_1m`,
    );
    if (stored.rows[0]!.n !== String(total) || stored.rows[0]!.filled !== String(total))
      throw new Error(
        `the extra-columns pass stored ${JSON.stringify(stored.rows[0])}, expected ${total} filled rows`,
      );
  }

  // The references of this run: the bare client on the same topic, the lean psql load of the same rows.
  const bare = await bareConsumerPass({ topic, ends, groups });
  const lean = await leanPsqlLoad({ pool, cleanup, fromSchema: schema });
  if (lean.rows !== total) throw new Error(`the lean psql load wrote ${lean.rows} rows, expected ${total}`);

  // The psql reference of bench:write, when there is one.
  const wp = loadResults()[sectionName('writePath')] as
    | {
        runId?: string;
        at?: string;
        variants?: Record<string, { barsPerSecond: number }>;
        dSql?: { barsPerSecond: number };
      }
    | undefined;
  const d = wp?.variants?.d?.barsPerSecond ?? null;
  const c = wp?.variants?.c?.barsPerSecond ?? null;
  const dSql = wp?.dSql?.barsPerSecond ?? null;
  const sameRun = wp?.runId === RUN_ID;

  console.log('');
  console.log(
    `bench:e2e — ${fmtInt(total)} bars, ${fmtInt(symbols)} symbols, ${partitions} partitions, bars_1m on ${TARGET === 'timescaledb' ? 'a TimescaleDB hypertable' : 'plain PostgreSQL'}, ${configText()}, ` +
      `${machine.nproc} cores, load ${JSON.stringify(machine.loadAvgAtStart)}`,
  );
  const row = (name: string, r: DrainResult) => [
    name,
    round(r.seconds, 2),
    fmtInt(r.barsPerSecond),
    r.startupSeconds === null ? '?' : round(r.startupSeconds, 2),
    r.drainBarsPerSecond === null ? '?' : fmtInt(r.drainBarsPerSecond),
    r.peakRssMiB,
    r.vmHwmMiB ?? '?',
    r.peakHeapUsedMiB ?? '?',
    r.peakQueueDepth ?? '?',
    r.writes ?? '?',
    r.barsPerWrite ?? '?',
    r.msPerWrite ?? '?',
    r.waitedForRoomSeconds ?? '?',
  ];
  printTable([
    [
      'pass',
      'seconds',
      'bars/s',
      'start-up s',
      'bars/s after join',
      'peak RSS MiB',
      'VmHWM MiB',
      'heap MiB',
      'queue',
      'writes',
      'bars/write',
      'ms/write',
      'waited for room s',
    ],
    row(cpuProf ? 'new (under --cpu-prof)' : 'new', fresh),
    row('replay (new group)', replay),
    ...(extras ? [row('new, 2 extra columns', extras)] : []),
  ]);
  console.log(`replay ÷ new: ${ratio(replay.barsPerSecond, fresh.barsPerSecond).toFixed(3)}`);
  if (extras) {
    const perBar = (r: DrainResult) =>
      r.cpuSeconds.service === null ? null : (r.cpuSeconds.service * 1e6) / r.bars;
    const [a, b] = [perBar(fresh), perBar(extras)];
    console.log(
      `2 extra columns ÷ new: bars/s ${ratio(extras.barsPerSecond, fresh.barsPerSecond).toFixed(3)}` +
        (extras.drainBarsPerSecond !== null && fresh.drainBarsPerSecond !== null
          ? `, bars/s after join ${ratio(extras.drainBarsPerSecond, fresh.drainBarsPerSecond).toFixed(3)}`
          : '') +
        (a !== null && b !== null ? `, service CPU per bar ${(b / a).toFixed(3)}` : '') +
        `, backends' CPU per bar ${ratio(extras.cpuSeconds.postgresBackends, fresh.cpuSeconds.postgresBackends).toFixed(3)}`,
    );
  }
  console.log(
    `CPU seconds from spawn to done (µs per bar); the machine has ${machine.nproc} cores, shared with other work:`,
  );
  const us = (x: number | null, r: DrainResult) => (x === null ? '?' : `${x} (${round((x * 1e6) / r.bars)})`);
  printTable([
    ['pass', 'wall s', 'service', 'its PG backends', 'Kafka broker', 'rest of machine', 'machine busy cores'],
    ...(
      [
        ['new', fresh],
        ['replay', replay],
        ...(extras ? [['new, 2 extra columns', extras] as const] : []),
      ] as const
    ).map(([name, r]) => [
      name,
      round(r.seconds, 1),
      us(r.cpuSeconds.service, r),
      us(r.cpuSeconds.postgresBackends, r),
      us(r.cpuSeconds.kafkaBroker, r),
      us(r.cpuSeconds.restOfMachine, r),
      r.machineBusyCores,
    ]),
  ]);
  console.log(
    `bars_1m during the replay (pg_stat_user_tables delta): n_tup_ins ${delta.n_tup_ins}, n_tup_upd ${delta.n_tup_upd}, ` +
      `n_tup_hot_upd ${delta.n_tup_hot_upd}, n_dead_tup ${delta.n_dead_tup} (autovacuum runs meanwhile: ${delta.autovacuum_count})`,
  );
  if (d !== null) {
    const note = sameRun ? 'same bench run' : `from an earlier bench:write (${wp?.at ?? '?'}), not this run`;
    console.log(
      `vs bench:write (${note}): new ÷ (d) psql = ${ratio(fresh.barsPerSecond, d).toFixed(3)} (target ≥ 0.7)` +
        (dSql !== null ? `, new ÷ (d-sql) = ${ratio(fresh.barsPerSecond, dSql).toFixed(3)}` : '') +
        (c !== null ? `, new ÷ (c) = ${ratio(fresh.barsPerSecond, c).toFixed(3)}` : ''),
    );
  } else {
    console.log('no bench:write result in bench/results/latest.json: run npm run bench for e2e ÷ (d)');
  }

  // What the targets compare (service CPU per bar ÷ the bare client's; drain ÷ lean psql), and
  // bars per CPU-second of the service and its PostgreSQL backends together (what an operator sizes by).
  const serviceUs = fresh.serviceCpuSeconds === null ? null : (fresh.serviceCpuSeconds * 1e6) / fresh.bars;
  const cpuRatio = serviceUs === null ? null : serviceUs / bare.usPerMessage;
  const afterStartUs =
    fresh.serviceCpuAfterStartSeconds === null
      ? null
      : (fresh.serviceCpuAfterStartSeconds * 1e6) / fresh.bars;
  const afterStartRatio = afterStartUs === null ? null : afterStartUs / bare.usPerMessage;
  const workCpu =
    fresh.cpuSeconds.service === null || fresh.pgBackends === 0
      ? null
      : fresh.cpuSeconds.service + fresh.cpuSeconds.postgresBackends;
  const targets = {
    serviceUsPerBar: serviceUs === null ? null : round(serviceUs, 2),
    bareUsPerMessage: bare.usPerMessage,
    cpuOverBare: cpuRatio === null ? null : round(cpuRatio, 3),
    serviceUsPerBarAfterStart: afterStartUs === null ? null : round(afterStartUs, 2),
    cpuAfterStartOverBare: afterStartRatio === null ? null : round(afterStartRatio, 3),
    leanPsqlBarsPerSecond: lean.barsPerSecond,
    newOverLeanPsql: round(ratio(fresh.barsPerSecond, lean.barsPerSecond), 3),
    newAfterJoinOverLeanPsql:
      fresh.drainBarsPerSecond === null
        ? null
        : round(ratio(fresh.drainBarsPerSecond, lean.barsPerSecond), 3),
    barsPerCpuSecond: workCpu === null ? null : round(total / workCpu),
    // The service's backends are found through its TCP sockets: none over a Unix socket (no figure).
    backendUsPerBar:
      fresh.pgBackends === 0 ? null : round((fresh.cpuSeconds.postgresBackends * 1e6) / fresh.bars, 2),
    leanBackendUsPerBar:
      lean.backendCpuSeconds === null ? null : round((lean.backendCpuSeconds * 1e6) / lean.rows, 2),
  };
  console.log('');
  console.log('targets (this run, side by side):');
  printTable([
    ['measure', 'service', 'reference', 'ratio', 'target'],
    [
      'CPU µs per bar (service, after start-up) vs bare kafkajs + JSON.parse (after start-up)',
      targets.serviceUsPerBarAfterStart ?? '?',
      bare.usPerMessage,
      targets.cpuAfterStartOverBare ?? '?',
      '≤ 2.0',
    ],
    [
      'CPU µs per bar (service, spawn to done: module loading included) vs the same',
      targets.serviceUsPerBar ?? '?',
      bare.usPerMessage,
      targets.cpuOverBare ?? '?',
      '',
    ],
    [
      'bars/s (new, from spawn) vs lean psql \\copy + upsert',
      fmtInt(fresh.barsPerSecond),
      fmtInt(lean.barsPerSecond),
      targets.newOverLeanPsql,
      '≥ 0.7',
    ],
    [
      'bars/s (new, after the group join) vs lean psql',
      fresh.drainBarsPerSecond === null ? '?' : fmtInt(fresh.drainBarsPerSecond),
      fmtInt(lean.barsPerSecond),
      targets.newAfterJoinOverLeanPsql ?? '?',
      '',
    ],
    [
      "PostgreSQL backend CPU µs per bar: the service's (new) vs the lean psql load's",
      targets.backendUsPerBar ?? '?',
      targets.leanBackendUsPerBar ?? '?',
      targets.leanBackendUsPerBar === null || targets.backendUsPerBar === null
        ? '?'
        : round(targets.backendUsPerBar / targets.leanBackendUsPerBar, 3),
      '',
    ],
    [
      'bars per CPU-second, service + its PostgreSQL backends',
      targets.barsPerCpuSecond === null ? '?' : fmtInt(targets.barsPerCpuSecond),
      '',
      '',
      '',
    ],
  ]);

  let profile: unknown = null;
  if (cpuProf) {
    const file = path.join(RESULTS_DIR, profName);
    const s = summarizeProfile(file, 30);
    console.log('');
    printProfile(s);
    profile = s;
  }

  const summarize = (r: DrainResult) => ({
    ...r,
    seconds: round(r.seconds, 3),
    barsPerSecond: round(r.barsPerSecond),
    startupSeconds: r.startupSeconds === null ? null : round(r.startupSeconds, 3),
    drainSeconds: r.drainSeconds === null ? null : round(r.drainSeconds, 3),
    drainBarsPerSecond: r.drainBarsPerSecond === null ? null : round(r.drainBarsPerSecond),
    stopSeconds: round(r.stopSeconds, 2),
  });
  // A profiled pass is slower: keep it apart from the reference figures.
  saveResult(cpuProf ? 'e2e@cpu-prof' : 'e2e', {
    machine,
    bars: total,
    symbols,
    partitions,
    produce: { seconds: round(produced.seconds, 2), barsPerSecond: round(produced.barsPerSecond) },
    new: { ...summarize(fresh), underCpuProfiler: cpuProf },
    replay: summarize(replay),
    replayOverNew: ratio(replay.barsPerSecond, fresh.barsPerSecond),
    replayStatsDelta: delta,
    bare,
    leanPsql: lean,
    targets,
    vsWritePath:
      d === null
        ? null
        : {
            writePathRunId: wp?.runId,
            sameRun,
            newOverD: ratio(fresh.barsPerSecond, d),
            newOverDSql: dSql === null ? null : ratio(fresh.barsPerSecond, dSql),
            newOverC: c === null ? null : ratio(fresh.barsPerSecond, c),
          },
    profile,
  });
});
