/**
 * bench:compressed — what a late correction into a compressed TimescaleDB chunk costs per bar, against a
 * write of the same number of bars into uncompressed chunks, side by side in one run (always on the
 * TimescaleDB target, BENCH_TSDB_*, a hypertable with every migration):
 *
 *   (u)  BENCH_COMPRESSED_BARS new bars (default 100,000: 1,000 symbols × 100 minutes) written into
 *        recent, uncompressed chunks;
 *   (k)  the same number of bars first loaded 40 days back and compressed (compress_chunk), then
 *        written again with other values: every row an upsert into a compressed chunk;
 *   (k=) the same corrections again (identical values: the upsert finds them equal and writes nothing).
 *
 * Each through the service's own write path (writeGroup: binary COPY, staging, fence, upsert), in
 * transactions of 1,000 bars × 3 partitions, one at a time. Printed: bars/s, µs per bar, and (k) ÷ (u).
 */
import type { Bar } from '../src/contract/bar';
import { BarSlabs } from '../src/contract/packedBar';
import { withConnection } from '../src/store/pool';
import { writeGroup, type BarAtOffset } from '../src/store/writeBatch';
import { uniqueName } from '../test/support/common';
import { makeBar } from './bars';
import { Cleanup, runMain } from './cleanup';
import { envInt, TARGET } from './env';
import { createBenchSchema, newPool } from './postgres';
import { fmtInt, log, nowMs, printTable, ratio, round } from './report';
import { saveResult } from './results';

const DAY = 86_400_000;

runMain('bench:compressed', async (cleanup: Cleanup) => {
  if (TARGET !== 'timescaledb')
    throw new Error('bench:compressed runs on TimescaleDB: BENCH_TARGET=timescaledb');
  const total = envInt('BENCH_COMPRESSED_BARS', 100_000);
  const symbols = 1000;
  const minutes = Math.ceil(total / symbols);
  const pool = newPool(2);
  cleanup.add('pool end', () => pool.end());

  const bars = (startMs: number, seed: number): Bar[] => {
    const out: Bar[] = [];
    for (let m = 0; m < minutes; m++)
      for (let s = 0; s < symbols && out.length < total; s++) out.push(makeBar(s, m, startMs, seed));
    return out;
  };
  /** Writes `list` in transactions of 1,000 bars × 3 partitions; returns seconds. */
  const write = async (schema: string, list: readonly Bar[], group: string): Promise<number> => {
    const recordMs = Date.now();
    const parts: BarAtOffset[][] = [[], [], []];
    const slabs = new BarSlabs();
    list.forEach((bar, i) => parts[i % 3]!.push(slabs.packedAt(bar, recordMs, BigInt(parts[i % 3]!.length))));
    const t0 = nowMs();
    for (let i = 0; i < parts[0]!.length; i += 1000) {
      await withConnection(pool, (c) =>
        writeGroup(
          c,
          schema,
          group,
          'bench',
          parts.map((p, k) => {
            const entries = p.slice(i, i + 1000);
            return {
              partition: k,
              entries,
              nextOffset: BigInt(i + entries.length),
              lastFingerprint: 'bench',
            };
          }),
        ),
      );
    }
    return (nowMs() - t0) / 1000;
  };

  const recentStart = Math.floor((Date.now() - 2 * DAY) / DAY) * DAY;
  const oldStart = Math.floor((Date.now() - 40 * DAY) / DAY) * DAY;

  const uSchema = uniqueName('bench_uncompressed');
  await createBenchSchema(pool, cleanup, uSchema);
  log(`(u) ${fmtInt(total)} new bars into uncompressed chunks`);
  const u = await write(uSchema, bars(recentStart, 1), 'u');

  const kSchema = uniqueName('bench_compressed');
  await createBenchSchema(pool, cleanup, kSchema);
  await write(kSchema, bars(oldStart, 1), 'load');
  const compressed = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT compress_chunk(c) FROM show_chunks('"${kSchema}".bars_1m') c) x`,
  );
  log(`(k) ${fmtInt(total)} corrections into ${compressed.rows[0]!.n} compressed chunks`);
  const corrections = bars(oldStart, 2); // other prices and volumes, same keys
  const k = await write(kSchema, corrections, 'k');
  log(`(k=) the same corrections again (identical values)`);
  const kSame = await write(kSchema, corrections, 'k2');

  const row = (name: string, seconds: number, note: string) => [
    name,
    fmtInt(total / seconds),
    round((seconds * 1e6) / total, 1),
    ratio(total / seconds, total / u).toFixed(3),
    note,
  ];
  console.log('');
  console.log(
    `bench:compressed — ${fmtInt(total)} bars each, 1,000 bars × 3 partitions per transaction, one at a time`,
  );
  printTable(
    [
      ['variant', 'bars/s', 'µs per bar', '÷ (u)', ''],
      row('(u)', u, 'new bars into uncompressed chunks'),
      row('(k)', k, 'corrections into compressed chunks'),
      row('(k=)', kSame, 'identical corrections into compressed chunks (nothing written)'),
    ],
    [0, 4],
  );
  saveResult('compressed', {
    bars: total,
    uncompressed: { seconds: round(u, 3), barsPerSecond: round(total / u) },
    compressed: { seconds: round(k, 3), barsPerSecond: round(total / k) },
    compressedIdentical: { seconds: round(kSame, 3), barsPerSecond: round(total / kSame) },
    compressedOverUncompressed: ratio(total / k, total / u),
  });
});
