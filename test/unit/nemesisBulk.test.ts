/**
 * The nemesis bulk feed (test/nemesis/bulk.ts): its bars derived from the seed and a bulk index alone
 * (deterministic, valid by the service's own decoder), its plan drawing nothing from the seed's sequence,
 * the read-back's columns, and the checker's judgement of bulk keys: the same verdicts as the full-record
 * path on the same logs, MUST/MAY by the same rules, and a kept input that reads back the same.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeBar } from '../../src/contract/bar';
import {
  BulkColumns,
  bulkBar,
  bulkId,
  bulkIndexOf,
  bulkIndexOfKey,
  bulkTotal,
  bulkValue,
  findBulk,
  isBulkId,
  newStoredBulk,
  storeBulkRow,
} from '../nemesis/bulk';
import {
  check,
  fingerprintOf,
  parseBar,
  readInput,
  writeInput,
  type BulkInput,
  type CheckInput,
} from '../nemesis/checker';
import type { Incarnation, LogRecord, MessageSpec, StoredRow } from '../nemesis/model';
import { BULK_SYMBOLS, generate, planBulk } from '../nemesis/schedule';

const SEED = 7;
const S = BULK_SYMBOLS;
const T = Date.UTC(2026, 11, 6, 12, 0);
const P1 = 2n ** 48n;

describe('nemesis bulk feed: derivation', () => {
  test('a bar is a function of (seed, index): the same every time, another for another seed', () => {
    for (const g of [0, 1, 4999, 5000, 123_456, 2_699_999]) {
      expect(bulkValue(SEED, S, g)).toBe(bulkValue(SEED, S, g));
      expect(bulkBar(SEED, S, g)).toEqual(bulkBar(SEED, S, g));
      expect(bulkValue(SEED + 1, S, g)).not.toBe(bulkValue(SEED, S, g));
    }
    expect(bulkBar(SEED, S, 5001)).toMatchObject({
      symbol: 'B0001',
      timestampMs: Date.UTC(2024, 0, 2, 14, 31),
    });
  });

  test('every value is valid to the service and decodes to the derived bar (revision 0)', () => {
    const now = Date.now();
    for (let g = 0; g < 20_000; g += 7) {
      const b = bulkBar(SEED, S, g);
      const value = bulkValue(SEED, S, g);
      const decoded = decodeBar(Buffer.from(value), now);
      expect(decoded).toEqual({
        ok: true,
        bar: { ...b, revision: 0, tradeCount: null, deleted: false, extras: null },
      });
      expect(parseBar(value)).toEqual({ fields: b, revision: 0 });
    }
  });

  test('ids name (seed, index) and nothing else', () => {
    expect(bulkIndexOf(SEED, bulkId(SEED, 123_456))).toBe(123_456);
    expect(bulkIndexOf(SEED + 1, bulkId(SEED, 5))).toBeNull();
    expect(bulkIndexOf(SEED, '7.b5')).toBeNull(); // a produce-track id (seed.n in base 36)
    expect(bulkIndexOf(SEED, `7/05`)).toBeNull(); // not the canonical text of 5
    expect(isBulkId(bulkId(SEED, 1))).toBe(true);
    expect(isBulkId('7.1')).toBe(false);
    expect(bulkIndexOfKey(S, 10_000, 'B0042', Date.UTC(2024, 0, 2, 14, 31))).toBe(5042);
    expect(bulkIndexOfKey(S, 5042, 'B0042', Date.UTC(2024, 0, 2, 14, 31))).toBeNull();
    expect(bulkIndexOfKey(S, 10_000, 'NZ042', Date.UTC(2024, 0, 2, 14, 31))).toBeNull();
    expect(bulkIndexOfKey(S, 10_000, 'B0042', Date.UTC(2024, 0, 2, 14, 31, 30))).toBeNull();
  });

  test('the plan: a send a second of the rate (chunks above 2,500/s), nothing drawn from the seed', () => {
    expect(planBulk(0, 300, 60_000)).toBeNull();
    const p = planBulk(1500, 300, 60_300)!;
    expect(p.events).toHaveLength(60);
    expect(p.events[1]).toEqual({ at: 1300, first: 1500, count: 1500 });
    expect(bulkTotal(p)).toBe(90_000);
    const fast = planBulk(10_000, 0, 1000)!;
    expect(fast.events.map((e) => e.at)).toEqual([0, 250, 500, 750]);
    expect(bulkTotal(fast)).toBe(10_000);
    const plain = generate({ seed: 25, minutes: 1.5 });
    const { bulk, ...rest } = generate({ seed: 25, minutes: 1.5, rate: 1500 });
    expect(rest).toEqual(plain);
    expect(bulkTotal(bulk!)).toBe(1500 * Math.ceil((plain.durationMs - 300) / 1000));
  });

  test('the read-back columns: sorted by partition and offset, a record fetched twice kept once', () => {
    const c = new BulkColumns();
    for (let i = 0; i < 100_000; i++) c.push(i % 3, Math.floor(i / 3), T + i, i);
    c.push(1, 5, T, 16); // fetched again
    const r = c.finish();
    expect(r.index).toHaveLength(100_000);
    expect(Array.from(r.partition.subarray(0, 3))).toEqual([0, 0, 0]);
    expect(Array.from(r.offset.subarray(0, 3))).toEqual([0, 1, 2]);
    const j = findBulk(r, 1, 5);
    expect(r.index[j]).toBe(16);
    expect(findBulk(r, 1, 40_000)).toBe(-1);
  });
});

// ---- the checker ----

interface Rec {
  inc: number;
  p: number;
  off: number;
  ts: number;
  g: number;
}

const EVENTS = [
  { first: 0, count: 6000 },
  { first: 6000, count: 6000 },
];

function storedOf(g: number, time: number, origin: bigint, close?: number): StoredRow {
  const b = bulkBar(SEED, S, g);
  return { ...b, close: close ?? b.close, revision: 0, sourceTimeMs: time, sourceOrigin: origin };
}

/** The same logs twice: as bulk columns, and as full records with their specs (the generic path). */
function inputs(
  recs: Rec[],
  stored: StoredRow[],
  more: Partial<CheckInput> = {},
  incarnations = 1,
): { bulk: CheckInput; full: CheckInput } {
  const total = bulkTotal({ events: EVENTS });
  const sb = newStoredBulk(total);
  for (const row of stored) {
    const g = bulkIndexOfKey(S, total, row.symbol, row.timestampMs)!;
    expect(storeBulkRow(sb, g, row, true)).toBe(true);
  }
  const bulkInput: BulkInput = {
    seed: SEED,
    symbols: S,
    events: EVENTS,
    sentAtMs: new Float64Array([T - 1000, T - 500]),
    stored: sb,
  };
  const incs = (withBulk: boolean): Incarnation[] =>
    Array.from({ length: incarnations }, (_, index) => {
      const mine = recs.filter((r) => r.inc === index);
      const cols = new BulkColumns();
      for (const r of mine) cols.push(r.p, r.off, r.ts, r.g);
      const full: LogRecord[] = mine.map((r) => ({
        incarnation: index,
        partition: r.p,
        offset: BigInt(r.off),
        timestampMs: r.ts,
        value: Buffer.from(bulkValue(SEED, S, r.g)),
        headers: { 'nemesis.id': bulkId(SEED, r.g) },
        id: bulkId(SEED, r.g),
      }));
      return {
        index,
        createdAt: index,
        createdDbMs: T - 10_000 + index,
        partitions: 4,
        records: withBulk ? [] : full,
        ...(withBulk && mine.length > 0 ? { bulk: cols.finish() } : {}),
        fencesAtDeletion: null,
      };
    });
  const base = {
    skips: [],
    backfills: [],
    hasOrigin: true,
    duplicated: 0,
    deadLetters: [],
    samples: [],
    windows: [],
    final: [],
    replays: [],
    ops: [],
    stallBoundMs: 90_000,
  };
  const sent = new Map<string, { spec: MessageSpec; sentAtMs: number }>();
  for (const r of recs)
    sent.set(bulkId(SEED, r.g), {
      spec: {
        id: bulkId(SEED, r.g),
        key: bulkBar(SEED, S, r.g).symbol,
        route: { kind: 'key' },
        time: { kind: 'client' },
        value: bulkValue(SEED, S, r.g),
        valid: true,
      },
      sentAtMs: r.g < 6000 ? T - 1000 : T - 500,
    });
  return {
    bulk: { ...base, incarnations: incs(true), sent: new Map(), stored: [], bulk: bulkInput, ...more },
    full: { ...base, incarnations: incs(false), sent, stored, ...more },
  };
}

const verdicts = (x: { bulk: CheckInput; full: CheckInput }) => {
  const [b, f] = [check(x.bulk), check(x.full)];
  const pick = (v: ReturnType<typeof check>) => {
    // The full-record path knows no bulk feed, and counts sent messages by spec.
    const rest: Partial<typeof v.figures> = { ...v.figures };
    delete rest.bulkRecords;
    delete rest.bulkSent;
    delete rest.messagesSent;
    return { ...rest, ok: v.ok };
  };
  expect(pick(b)).toEqual(pick(f));
  return b;
};

describe('nemesis bulk feed: the checker', () => {
  // g 0 on partition 0 (twice: a retried send, the later copy newer), g 1 and g 6001 on partition 1.
  const recs: Rec[] = [
    { inc: 0, p: 0, off: 0, ts: T - 900, g: 0 },
    { inc: 0, p: 1, off: 0, ts: T - 900, g: 1 },
    { inc: 0, p: 0, off: 1, ts: T - 800, g: 0 },
    { inc: 0, p: 1, off: 1, ts: T - 400, g: 6001 },
  ];
  const right = [storedOf(0, T - 800, 1n), storedOf(1, T - 900, P1), storedOf(6001, T - 400, P1 + 1n)];

  test('exactly the newest version of each key: ok; the same verdicts as full records', () => {
    const v = verdicts(inputs(recs, right));
    expect(v.ok).toBe(true);
    expect(v.figures).toMatchObject({ bulkRecords: 4, bulkSent: 12_000, keys: 3, mustKeys: 3, stored: 3 });
  });

  test('lost, stale, version and extra are found, as the full-record path finds them', () => {
    const lost = verdicts(inputs(recs, right.slice(1)));
    expect(lost.figures.lost).toBe(1);
    const stale = verdicts(inputs(recs, [storedOf(0, T - 800, 1n, 1.5), ...right.slice(1)]));
    expect(stale.figures.stale).toBe(1);
    // The older copy's version (the retried send's first copy): values right, version not.
    const version = verdicts(inputs(recs, [storedOf(0, T - 900, 0n), ...right.slice(1)]));
    expect(version.figures.version).toBe(1);
    const extra = verdicts(inputs(recs, [...right, storedOf(7, T, 0n)]));
    expect(extra.figures.extra).toBe(1);
  });

  test('MAY: a deleted incarnation beyond its fence; MUST below a fence that names one of its records', () => {
    // Incarnation 0 has g 2 (partition 0, offsets 0 and 1: g 2 then g 3); incarnation 1 has g 6001.
    const two: Rec[] = [
      { inc: 0, p: 0, off: 0, ts: T - 900, g: 2 },
      { inc: 0, p: 0, off: 1, ts: T - 900, g: 3 },
      { inc: 1, p: 0, off: 0, ts: T - 400, g: 6001 },
    ];
    const stored = [storedOf(6001, T - 400, 0n)];
    // No fence at deletion: incarnation 0's records MAY be missing.
    expect(verdicts(inputs(two, stored, {}, 2)).ok).toBe(true);
    // A fence at 1 whose fingerprint is g 2's record: g 2 MUST have landed, g 3 MAY.
    const fp = fingerprintOf(0n, T - 900, Buffer.from(bulkValue(SEED, S, 2)));
    const x = inputs(two, stored, {}, 2);
    for (const i of [x.bulk, x.full])
      i.incarnations[0]!.fencesAtDeletion = new Map([[0, { next: 1n, fingerprint: fp, updatedMs: T }]]);
    const v = verdicts(x);
    expect(v.figures.lost).toBe(1);
    expect(v.figures.mustRecords).toBe(2);
    expect(v.figures.mayRecords).toBe(1);
  });

  test('a forward reset makes the records it skips MAY', () => {
    const x = inputs(recs, right.slice(0, 2), {
      skips: [{ incarnation: 0, partition: 1, fenceBefore: null, to: 2n }],
    });
    const v = verdicts(x);
    expect(v.ok).toBe(true);
    expect(v.figures.mayRecords).toBe(2);
  });

  test('a record of an event never sent, or a bulk record dead-lettered, is reported', () => {
    const x = inputs(recs, right);
    x.bulk.bulk!.sentAtMs[1] = NaN;
    expect(check(x.bulk).discrepancies.join('\n')).toMatch(
      /unknown record: 1\n.*bulk index 6001, never sent/,
    );
    const dl = [{ id: bulkId(SEED, 1), sourcePartition: 1, sourceOffset: 0n, reason: 'invalid_json' }];
    expect(check({ ...inputs(recs, right).bulk, deadLetters: dl }).figures.validDeadLettered).toBe(1);
  });

  test('a kept input (header, JSON, typed arrays) reads back to the same verdict', () => {
    const x = inputs(recs, [storedOf(0, T - 900, 0n), ...right.slice(1)]);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nemesis-bulk-')), 'check-input.json');
    try {
      writeInput(file, x.bulk);
      const back = readInput(file);
      expect(back.bulk!.sentAtMs).toEqual(x.bulk.bulk!.sentAtMs);
      expect(back.incarnations[0]!.bulk).toEqual(x.bulk.incarnations[0]!.bulk);
      expect(check(back)).toEqual(check(x.bulk));
      // A full-record input with Buffers, bigints and Maps too.
      writeInput(file, x.full);
      expect(check(readInput(file))).toEqual(check(x.full));
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });
});
