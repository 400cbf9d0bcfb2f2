/** The feed of the drain benchmarks: deterministic bars produced into a fresh topic, beside a fresh schema. */
import type { Admin, Producer } from 'kafkajs';
import type pg from 'pg';
import { uniqueName } from '../test/support/common';
import { barJson, BENCH_EXTRA_COLUMNS, feedBar, feedExtras } from './bars';
import { parseExtraColumns } from '../src/contract/extras';
import { applyExtraColumns } from '../src/store/extraColumns';
import type { Cleanup } from './cleanup';
import { connectAdmin, connectProducer, createTopics, endOffsets, newKafka } from './kafka';
import { createBenchSchema, newPool } from './postgres';
import { fmtInt, log, nowMs, round } from './report';
import { machineInfo } from './results';

/**
 * Produces bars 0..total-1 of a minute-major feed of `symbols` symbols, keyed by symbol, no
 * compression, acks=all, `chunk` messages per send, up to `inFlight` sends at once.
 */
export async function produceFeed(
  producer: Producer,
  topic: string,
  total: number,
  symbols: number,
  opts: { chunk?: number; inFlight?: number; startMs?: number; progress?: boolean; extras?: boolean } = {},
): Promise<{ seconds: number; barsPerSecond: number }> {
  const chunk = opts.chunk ?? 10_000;
  const inFlight = opts.inFlight ?? 3;
  const t0 = nowMs();
  const pending = new Set<Promise<unknown>>();
  let lastReport = t0;
  for (let i = 0; i < total; i += chunk) {
    const messages = [];
    for (let k = i; k < Math.min(total, i + chunk); k++) {
      const bar = feedBar(k, symbols, opts.startMs);
      const value = barJson(bar);
      // With extras, the two fields of BENCH_EXTRA_COLUMNS after the contract's.
      messages.push({
        key: bar.symbol,
        value: opts.extras ? `${value.slice(0, -1)},${JSON.stringify(feedExtras(k)).slice(1)}` : value,
      });
    }
    const p = producer.send({ topic, acks: -1, messages }).finally(() => pending.delete(p));
    pending.add(p);
    if (pending.size >= inFlight) await Promise.race(pending);
    if (opts.progress && nowMs() - lastReport > 10_000) {
      lastReport = nowMs();
      log(`  produced ${fmtInt(i + chunk)} / ${fmtInt(total)}`);
    }
  }
  await Promise.all(pending);
  const seconds = (nowMs() - t0) / 1000;
  return { seconds, barsPerSecond: total / seconds };
}

/** What the drain benchmarks start from: a fresh schema, and a fresh topic holding the feed. */
export interface Feed {
  pool: pg.Pool;
  machine: Record<string, unknown>;
  schema: string;
  admin: Admin;
  topic: string;
  /** Consumer groups to delete at the end: push every group used. */
  groups: string[];
  /** Log end of every partition once produced. */
  ends: Map<number, bigint>;
  produced: { seconds: number; barsPerSecond: number };
}

/**
 * Schema `bench_<tag>_…` (migrations 001–002) and topic of the same name (dots for underscores) with
 * `total` feed bars of `symbols` symbols, 10,000 per send; all removed by `cleanup`.
 */
export async function prepareFeed(
  cleanup: Cleanup,
  o: {
    tag: string;
    total: number;
    symbols: number;
    partitions: number;
    poolSize: number;
    /** Messages with the two fields of BENCH_EXTRA_COLUMNS, and their columns in the schema. */
    extras?: boolean;
  },
): Promise<Feed> {
  const pool = newPool(o.poolSize);
  cleanup.add('pool end', () => pool.end());
  const machine = await machineInfo(pool);
  const schema = uniqueName(`bench_${o.tag}`);
  await createBenchSchema(pool, cleanup, schema);
  if (o.extras) {
    const c = await pool.connect(); // one session: applyExtraColumns takes the migration lock
    try {
      await applyExtraColumns(c, schema, parseExtraColumns(BENCH_EXTRA_COLUMNS));
    } finally {
      c.release();
    }
  }
  const kafka = newKafka();
  const admin = await connectAdmin(kafka, cleanup);
  const topic = schema.replace(/_/g, '.');
  const groups: string[] = [];
  await createTopics(admin, cleanup, topic, o.partitions, () => groups);
  log(
    `producing ${fmtInt(o.total)} bars (${fmtInt(o.symbols)} symbols) to ${topic} (${o.partitions} partitions)`,
  );
  const producer = await connectProducer(kafka, cleanup);
  const produced = await produceFeed(producer, topic, o.total, o.symbols, {
    chunk: 10_000,
    progress: true,
    extras: o.extras === true,
  });
  await producer.disconnect();
  log(`  produced in ${round(produced.seconds, 1)} s (${fmtInt(produced.barsPerSecond)} bars/s)`);
  const ends = await endOffsets(admin, topic);
  return { pool, machine, schema, admin, topic, groups, ends, produced };
}
