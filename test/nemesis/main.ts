/**
 * `npm run nemesis -- --seed S --minutes M [--scenario random|issue] [--rate N] [--every-op N] [--keep]`:
 * one seeded randomized run against the suite's own broker, TimescaleDB and PgBouncer (./runner.ts).
 * Prints the seed first, the schedule as it runs and the checker's figures; exits 1 on any discrepancy,
 * 2 on bad arguments. Without --seed a random one is drawn (and printed). `--rate N` adds the bulk feed
 * (./bulk.ts: N valid live bars a second, checked like every other message; default 0); `--every-op N`
 * plans each operation kind at least N times (default 3 from 20 minutes on, else 0).
 * `--check DIR/check-input.json` checks a kept run (--keep) again without running anything. Set
 * KAFKA_WORK_DIR to reuse another checkout's broker jars (.kafka/), TEST_TSDB_BIN for the private
 * PostgreSQL (default: scripts/timescaledb.sh bin).
 */
import { parseArgs } from 'node:util';
import { check, readInput, renderFigures } from './checker';
import { runNemesis } from './runner';
import { generate } from './schedule';
import { emergencyStops } from './system';

// Interrupted: stop every instance and service this run started, then exit.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`nemesis: ${signal}: stopping what this run started`);
    for (const stop of emergencyStops) {
      try {
        stop();
      } catch (err) {
        console.error('nemesis: a stop failed:', err);
      }
    }
    process.exit(130);
  });
}

const USAGE =
  'usage: npm run nemesis -- --seed S --minutes M [--scenario random|issue] [--rate N] [--every-op N] [--keep] | --check FILE';

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seed: { type: 'string' },
        minutes: { type: 'string', default: '2' },
        scenario: { type: 'string', default: 'random' },
        keep: { type: 'boolean', default: false },
        'every-op': { type: 'string' },
        rate: { type: 'string', default: '0' },
        check: { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`nemesis: ${(err as Error).message}`);
    return 2;
  }
  if (values.check) {
    // Check a kept run's check-input.json again (after changing the checker, say).
    let t = performance.now();
    const input = readInput(values.check);
    const read = (performance.now() - t) / 1000;
    t = performance.now();
    const verdict = check(input);
    for (const line of [...renderFigures(verdict.figures), ...verdict.discrepancies]) console.log(line);
    console.log(
      `checker: read ${read.toFixed(1)} s, checked ${((performance.now() - t) / 1000).toFixed(1)} s; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
    );
    return verdict.ok ? 0 : 1;
  }
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  const minutes = Number(values.minutes);
  const everyOp = values['every-op'] === undefined ? undefined : Number(values['every-op']);
  const rate = Number(values.rate);
  if (
    !(Number.isSafeInteger(rate) && rate >= 0) ||
    !Number.isSafeInteger(seed) ||
    seed < 0 ||
    !(minutes > 0) ||
    (everyOp !== undefined && !(Number.isSafeInteger(everyOp) && everyOp >= 0)) ||
    (values.scenario !== 'random' && values.scenario !== 'issue')
  ) {
    console.error(USAGE);
    return 2;
  }
  console.log(`nemesis: seed ${seed}`);
  try {
    generate({ seed, minutes, scenario: values.scenario, everyOp, rate });
  } catch (err) {
    console.error(`nemesis: ${(err as Error).message}`);
    return 2;
  }
  const { verdict } = await runNemesis({
    seed,
    minutes,
    scenario: values.scenario,
    everyOp,
    rate,
    keep: values.keep,
  });
  return verdict.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('nemesis: the run failed:', err);
    process.exit(1);
  },
);
