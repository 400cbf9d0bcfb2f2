/**
 * bench:e2e-configs — the e2e drain ("new" rows) under several service configurations, side by side on
 * the same pre-produced topic in one run: for each configuration, bars_1m is emptied (TRUNCATE) and a
 * new consumer group drains the topic; bars/s and the ratio to the first configuration are printed.
 * With BENCH_ROUNDS > 1 the order alternates (A B C, C B A, …) and the median is reported.
 *
 *   BENCH_CONFIGS="default|KAFKA_MAX_WAIT=100ms|BARS_DB_WRITE_QUEUE_SIZE=30000"   (the default list)
 *   BENCH_E2E_BARS (200000), BENCH_E2E_SYMBOLS (12000)
 *
 * For experiments only: the reference figures are bench:e2e's, with the default configuration.
 */
import { ident } from '../src/store/pool';
import { uniqueName } from '../test/support/common';
import { type Cleanup, runMain } from './cleanup';
import { drainOnce, type DrainResult } from './drain';
import { envInt } from './env';
import { prepareFeed } from './feed';
import { fmtInt, log, printTable, ratio, round } from './report';
import { saveResult } from './results';
import { buildService, parsePairs, serviceEnv } from './serviceChild';

const DEFAULT_CONFIGS = 'default|KAFKA_MAX_WAIT=100ms|BARS_DB_WRITE_QUEUE_SIZE=30000';

function parseConfig(text: string): Record<string, string> {
  return text.trim() === 'default' ? {} : parsePairs(text, 'BENCH_CONFIGS');
}

runMain('bench:e2e-configs', async (cleanup: Cleanup) => {
  const total = envInt('BENCH_E2E_BARS', 200_000);
  const symbols = envInt('BENCH_E2E_SYMBOLS', 12_000);
  const rounds = envInt('BENCH_ROUNDS', 1);
  const configs = (process.env.BENCH_CONFIGS ?? DEFAULT_CONFIGS).split('|').map((c) => c.trim());
  buildService();

  const { pool, machine, schema, admin, topic, groups, ends } = await prepareFeed(cleanup, {
    tag: 'cfg',
    total,
    symbols,
    partitions: 6,
    poolSize: 3,
  });

  const runs = new Map<string, DrainResult[]>(configs.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? configs : [...configs].reverse();
    for (const config of order) {
      await pool.query(`TRUNCATE ${ident(schema)}.bars_1m`);
      const group = uniqueName('bench_cfg');
      groups.push(group);
      log(`round ${r + 1}: ${config}`);
      const res = await drainOnce({
        cleanup,
        admin,
        env: serviceEnv({ schema, topic, group, extra: parseConfig(config) }),
        topic,
        group,
        ends,
        pool,
      });
      log(
        `  ${fmtInt(res.barsPerSecond)} bars/s, service ${res.serviceCores} cores, machine ${res.machineBusyCores}`,
      );
      runs.get(config)!.push(res);
    }
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const rate = (c: string) => median(runs.get(c)!.map((x) => x.barsPerSecond));
  const base = rate(configs[0]!);
  console.log('');
  console.log(
    `bench:e2e-configs — ${fmtInt(total)} new bars per pass, ${rounds} round(s), ${machine.nproc} cores, ` +
      `load ${JSON.stringify(machine.loadAvgAtStart)}`,
  );
  printTable(
    [
      [
        'configuration',
        'bars/s (median)',
        `÷ ${configs[0]}`,
        'every pass, bars/s',
        'service cores',
        'machine cores',
        'peak RSS MiB',
        'read B/bar',
      ],
      ...configs.map((c) => {
        const rs = runs.get(c)!;
        return [
          c,
          fmtInt(rate(c)),
          ratio(rate(c), base).toFixed(3),
          rs.map((x) => fmtInt(x.barsPerSecond)).join(' '),
          rs.map((x) => x.serviceCores ?? '?').join(' '),
          rs.map((x) => x.machineBusyCores).join(' '),
          rs.map((x) => x.peakRssMiB).join(' '),
          rs.map((x) => x.serviceReadBytesPerBar ?? '?').join(' '),
        ];
      }),
    ],
    [0],
  );
  saveResult('e2eConfigs', {
    machine,
    bars: total,
    rounds,
    configs: Object.fromEntries(
      configs.map((c) => [
        c,
        {
          barsPerSecondMedian: round(rate(c)),
          ratioToFirst: ratio(rate(c), base),
          passes: runs.get(c)!.map((x) => ({
            barsPerSecond: round(x.barsPerSecond),
            serviceCores: x.serviceCores,
            machineBusyCores: x.machineBusyCores,
            cpuSeconds: x.cpuSeconds,
            peakRssMiB: x.peakRssMiB,
            serviceReadBytesPerBar: x.serviceReadBytesPerBar,
          })),
        },
      ]),
    ),
  });
});
