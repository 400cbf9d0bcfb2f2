/**
 * The nemesis suite's fixed seeds (jest project "nemesis"; not part of "integration"): each a seeded
 * schedule of produced messages and operations against the suite's own broker, TimescaleDB and
 * PgBouncer (started once for the file, restarted by the schedules), checked exactly by ./checker.ts.
 * Seed 1 runs the scenarios ('issue'); the others are random mixes. A failing seed reproduces
 * with `npm run nemesis -- --seed S --minutes M [--scenario issue]` (the report prints the command).
 */
import { runNemesis, Services } from './runner';

const SEEDS: { seed: number; minutes: number; scenario: 'random' | 'issue' }[] = [
  { seed: 1, minutes: 1.5, scenario: 'issue' },
  { seed: 25, minutes: 1.5, scenario: 'random' },
];

const log = (line: string) => process.stdout.write(`${line}\n`);

describe('nemesis', () => {
  let services: Services | null = null;

  beforeAll(async () => {
    services = await Services.start(log);
  }, 180_000);
  afterAll(() => {
    services?.stop();
  });

  test.each(SEEDS)(
    'seed $seed ($scenario, $minutes min): the table is exactly what the version rule says',
    async ({ seed, minutes, scenario }) => {
      const { verdict } = await runNemesis({ seed, minutes, scenario, log }, services!);
      expect(verdict.discrepancies).toEqual([]);
    },
    8 * 60_000,
  );
});
