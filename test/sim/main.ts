/**
 * `npm run sim -- [--seed S] [--seeds N] [--seconds T] [--rate R] [--trace]`: the operations simulation
 * (./run.ts) for many seeds, or one seed with its operations printed. Exit 1 on any problem; the
 * failing seeds are printed so each reproduces.
 */
import { parseArgs } from 'node:util';
import { simulate } from './run';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string' },
      seconds: { type: 'string' },
      trace: { type: 'boolean' },
      rate: { type: 'string' },
    },
  });
  const from = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
  const count = values.seeds !== undefined ? Number(values.seeds) : values.seed !== undefined ? 1 : 200;
  const seconds = values.seconds !== undefined ? Number(values.seconds) : 120;
  console.log(`simulation: seeds ${from}..${from + count - 1}, ${seconds} s of operations each`);
  const failed: number[] = [];
  const totals: Record<string, number> = {};
  let produced = 0;
  const started = Date.now();
  for (let seed = from; seed < from + count; seed++) {
    const r = await simulate(seed, {
      seconds,
      trace: values.trace === true || count === 1,
      operationRate: values.rate !== undefined ? Number(values.rate) : undefined,
    });
    produced += r.produced;
    for (const [k, v] of Object.entries(r.operations)) totals[k] = (totals[k] ?? 0) + v;
    if (r.problems.length > 0) {
      failed.push(seed);
      console.log(`seed ${seed}: FAILED\n  ${r.problems.join('\n  ')}`);
      if (count === 1 || values.trace) console.log(r.log.join('\n'));
    } else if (count === 1) {
      console.log(r.log.join('\n'));
      console.log(
        `seed ${seed}: ok, ${r.produced} produced, ${r.verdict?.mustKeys} keys, ${r.verdict?.stored} stored`,
      );
    }
  }
  console.log(
    `${count - failed.length}/${count} seeds ok in ${((Date.now() - started) / 1000).toFixed(1)} s; ${produced} messages; operations: ${Object.entries(
      totals,
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  if (failed.length > 0) {
    console.log(`failing seeds: ${failed.join(' ')}`);
    process.exit(1);
  }
}

void main();
