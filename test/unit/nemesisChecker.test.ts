/**
 * The nemesis checker (test/nemesis/checker.ts) on hand-made logs: it must fail where the version rule
 * is broken (the identical re-send case, unusable record times, a backfill's default version), accept
 * what MAY be missing and not what MUST be there, and measure stalls only while healthy.
 */
import { check, fingerprintOf, type CheckInput } from '../nemesis/checker';
import type { Incarnation, LogRecord, MessageSpec, Sample, StoredRow } from '../nemesis/model';

const T = Date.UTC(2026, 11, 6, 12, 0);
const BAR = Date.UTC(2024, 0, 2, 14, 30);

function bar(close: number) {
  return { symbol: 'AA', timestampMs: BAR, open: 10, high: 12, low: 9, close, volume: 100, vwap: null };
}
const value = (close: number, revision?: number) =>
  JSON.stringify({
    symbol: 'AA',
    timestamp: new Date(BAR).toISOString(),
    open: 10,
    high: 12,
    low: 9,
    close,
    volume: 100,
    ...(revision ? { revision } : {}),
  });

function rec(
  incarnation: number,
  partition: number,
  offset: number,
  timestampMs: number,
  v: string,
  id: string,
  headers: Record<string, string> = {},
): LogRecord {
  return {
    incarnation,
    partition,
    offset: BigInt(offset),
    timestampMs,
    value: Buffer.from(v),
    headers: { 'nemesis.id': id, ...headers },
    id,
  };
}

function input(records: LogRecord[][], stored: StoredRow[], more: Partial<CheckInput> = {}): CheckInput {
  const sent = new Map<string, { spec: MessageSpec; sentAtMs: number }>();
  for (const r of records.flat())
    sent.set(r.id!, {
      spec: {
        id: r.id!,
        key: 'AA',
        route: { kind: 'key' },
        time: { kind: 'client' },
        value: '',
        valid: !r.id!.startsWith('bad'),
      },
      sentAtMs: T,
    });
  const incarnations: Incarnation[] = records.map((rs, index) => ({
    index,
    createdAt: index * 1000,
    createdDbMs: T + index,
    partitions: 2,
    records: rs,
    fencesAtDeletion: null,
  }));
  return {
    incarnations,
    sent,
    skips: [],
    backfills: [],
    stored,
    hasOrigin: true,
    duplicated: 0,
    deadLetters: [],
    samples: [],
    windows: [],
    final: [],
    replays: [],
    ops: [],
    stallBoundMs: 90_000,
    ...more,
  };
}

const row = (close: number, revision: number, time: number, origin: bigint): StoredRow => ({
  ...bar(close),
  revision,
  sourceTimeMs: time,
  sourceOrigin: origin,
});
const P1 = 2n ** 48n;

describe('nemesis checker', () => {
  // A (close 1, t-60s) on partition 0, A' (identical, t) on 0, B (close 2, t-30s) on partition 1.
  const resend = [
    [
      rec(0, 0, 0, T - 60_000, value(1), 'a'),
      rec(0, 0, 1, T, value(1), 'a2'),
      rec(0, 1, 0, T - 30_000, value(2), 'b'),
    ],
  ];

  test('identical re-send: only the re-send with its version is right', () => {
    expect(check(input(resend, [row(1, 0, T, 1n)])).ok).toBe(true);
    const kept = check(input(resend, [row(1, 0, T - 60_000, 0n)]));
    expect(kept.figures.version).toBe(1);
    const older = check(input(resend, [row(2, 0, T - 30_000, P1)]));
    expect(older.figures.stale).toBe(1);
    expect(check(input(resend, [])).figures.lost).toBe(1);
  });

  test('an exact tie across partitions goes to the higher partition; a revision beats any time', () => {
    const tie = [[rec(0, 1, 0, T, value(1), 'x'), rec(0, 0, 5, T, value(2), 'y')]];
    expect(check(input(tie, [row(1, 0, T, P1)])).ok).toBe(true);
    expect(check(input(tie, [row(2, 0, T, 5n)])).figures.stale).toBe(1);
    const rev = [[rec(0, 0, 0, T, value(1), 'x'), rec(0, 1, 0, T - 300_000, value(3, 2), 'r')]];
    expect(check(input(rev, [row(3, 2, T - 300_000, P1)])).ok).toBe(true);
  });

  test('a record time years ahead or in microseconds is replaced by the close; a header overrides the record time', () => {
    const future = [[rec(0, 0, 0, T - 1000, value(1), 'x'), rec(0, 0, 1, T * 1000, value(2), 'm')]];
    // The micros message's version is the close (2024): the earlier message wins.
    expect(check(input(future, [row(1, 0, T - 1000, 0n)])).ok).toBe(true);
    expect(check(input(future, [row(2, 0, T * 1000, 1n)])).figures.stale).toBe(1);
    const header = [[rec(0, 0, 0, T + 5000, value(1), 'h', { 'bar-writer.version-time': String(T - 5000) })]];
    expect(check(input(header, [row(1, 0, T - 5000, 0n)])).ok).toBe(true);
    expect(check(input(header, [row(1, 0, T + 5000, 0n)])).figures.version).toBe(1);
  });

  test('a backfill at the default version loses to Kafka at the same revision, wins with a higher one', () => {
    const k = [[rec(0, 0, 0, T, value(1), 'k')]];
    const backfills = [
      {
        rows: [
          { ...bar(5), revision: 0 },
          { ...bar(6), timestampMs: BAR + 60_000, revision: 0 },
        ],
        versionTime: 0,
        ok: true,
      },
    ];
    const other = { ...row(6, 0, 0, 1n), timestampMs: BAR + 60_000 };
    expect(check(input(k, [row(1, 0, T, 0n), other], { backfills })).ok).toBe(true);
    expect(check(input(k, [row(5, 0, T, 0n), other], { backfills })).figures.stale).toBe(1);
    const higher = [{ rows: [{ ...bar(5), revision: 1 }], versionTime: 0, ok: true }];
    expect(check(input(k, [row(5, 1, 0, 0n)], { backfills: higher })).ok).toBe(true);
  });

  const del = (revision?: number) =>
    JSON.stringify({
      symbol: 'AA',
      timestamp: new Date(BAR).toISOString(),
      deleted: true,
      ...(revision ? { revision } : {}),
    });

  test('deletes: a deleted row still present, a restored row missing, a delete applied over a newer bar', () => {
    // Bar (t-60s), then a newer delete (t): no row.
    const deleted = [[rec(0, 0, 0, T - 60_000, value(1), 'b'), rec(0, 1, 0, T, del(), 'd')]];
    const ok = check(input(deleted, []));
    expect(ok.ok).toBe(true);
    expect(ok.figures).toMatchObject({ deleteRecords: 1, deletedKeys: 1 });
    const present = check(input(deleted, [row(1, 0, T - 60_000, 0n)]));
    expect(present.figures.deletedPresent).toBe(1);
    expect(present.discrepancies.join('\n')).toMatch(/deleted present/);
    // Delete (t-60s), then a newer bar (t): the bar restores the key.
    const restored = [[rec(0, 1, 0, T - 60_000, del(), 'd'), rec(0, 0, 0, T, value(2), 'b')]];
    expect(check(input(restored, [row(2, 0, T, 0n)])).figures).toMatchObject({
      restoredKeys: 1,
      deletedWrongly: 0,
    });
    expect(check(input(restored, [])).figures.deletedWrongly).toBe(1);
    // A bar (t) and an older delete (t-60s) arriving after it on another partition: the delete loses.
    const older = [[rec(0, 0, 0, T, value(3), 'b'), rec(0, 1, 0, T - 60_000, del(), 'd')]];
    expect(check(input(older, [row(3, 0, T, 0n)])).ok).toBe(true);
    const wrongly = check(input(older, []));
    expect(wrongly.figures.deletedWrongly).toBe(1);
    expect(wrongly.discrepancies.join('\n')).toMatch(/newer than the delete/);
    // A revision beats the time: a delete at revision 2 wins over a newer bar at revision 0.
    const rev = [[rec(0, 0, 0, T, value(4), 'b'), rec(0, 1, 0, T - 300_000, del(2), 'd')]];
    expect(check(input(rev, [])).ok).toBe(true);
    expect(check(input(rev, [row(4, 0, T, 0n)])).figures.deletedPresent).toBe(1);
  });

  test('deletes: within a partition the later offset wins a same-time pair; a delete wins an exact tie', () => {
    const barThenDelete = [[rec(0, 0, 0, T, value(1), 'b'), rec(0, 0, 1, T, del(), 'd')]];
    expect(check(input(barThenDelete, [])).ok).toBe(true);
    expect(check(input(barThenDelete, [row(1, 0, T, 0n)])).figures.deletedPresent).toBe(1);
    const deleteThenBar = [[rec(0, 0, 0, T, del(), 'd'), rec(0, 0, 1, T, value(1), 'b')]];
    expect(check(input(deleteThenBar, [row(1, 0, T, 1n)])).ok).toBe(true);
    expect(check(input(deleteThenBar, [])).figures.deletedWrongly).toBe(1);
    // Two backfills at the same --version-time, the same key on the same line: one version; the
    // delete wins it whichever load came first.
    const barRow = { ...bar(5), revision: 0 };
    const delRow = { ...bar(5), revision: 0, deleted: true };
    for (const rows of [
      [barRow, delRow],
      [delRow, barRow],
    ]) {
      const backfills = rows.map((r) => ({ rows: [r], versionTime: 0, ok: true }));
      expect(check(input([[]], [], { backfills })).ok).toBe(true);
      expect(check(input([[]], [row(5, 0, 0, 0n)], { backfills })).figures.deletedPresent).toBe(1);
    }
  });

  test('deletes: a MAY delete above a MUST bar excuses a missing row; bars_latest is the newest remaining bar', () => {
    // The delete is in a skipped range (MAY): the row may be there or not.
    const recs = [[rec(0, 0, 0, T - 60_000, value(1), 'b'), rec(0, 1, 0, T, del(), 'd')]];
    const skips = [{ incarnation: 0, partition: 1, fenceBefore: null, to: 1n }];
    expect(check(input(recs, [], { skips })).ok).toBe(true);
    expect(check(input(recs, [row(1, 0, T - 60_000, 0n)], { skips })).ok).toBe(true);
    // bars_latest still holding the deleted bar is reported.
    const latest = [row(1, 0, T - 60_000, 0n)];
    expect(check(input(recs, [], { latest })).figures.latestMismatch).toBe(1);
    expect(check(input(recs, [], { latest: [] })).ok).toBe(true);
  });

  test('MAY: a forward reset skips, an old incarnation beyond its fence; MUST below a fence of its own', () => {
    const logs = [
      [rec(0, 0, 0, T, value(1), 'old0'), rec(0, 0, 1, T + 1, value(2), 'old1')],
      [rec(1, 0, 0, T - 10, value(3), 'new0')],
    ];
    const fence = (next: number, r: LogRecord) => ({
      next: BigInt(next),
      fingerprint: fingerprintOf(r.offset, r.timestampMs, r.value),
      updatedMs: T,
    });
    // Nothing of incarnation 0 was written (no fence): the new one's bar is what MUST be there; old1 MAY.
    expect(check(input(logs, [row(3, 0, T - 10, 0n)])).ok).toBe(true);
    expect(check(input(logs, [row(2, 0, T + 1, 1n)])).ok).toBe(true);
    // The fence covered both old messages: old1 MUST have landed, and it is newer than the new one.
    const withFence = input(logs, [row(3, 0, T - 10, 0n)]);
    withFence.incarnations[0]!.fencesAtDeletion = new Map([[0, fence(2, logs[0]![1]!)]]);
    expect(check(withFence).figures.stale).toBe(1);
    // A forward reset over the new incarnation's message: it MAY be missing.
    const skipped = input(logs, [], { skips: [{ incarnation: 1, partition: 0, fenceBefore: null, to: 1n }] });
    expect(check(skipped).figures.lost).toBe(0);
    expect(check(input(logs, [])).figures.lost).toBe(1);
  });

  test('a replay may write the messages of a skip range that had not landed, and nothing else', () => {
    const logs = [
      [
        rec(0, 0, 0, T, value(1), 'a'),
        rec(0, 0, 1, T + 1, value(2), 'b'),
        rec(0, 0, 2, T + 2, value(3), 'c'),
      ],
    ];
    const stored = [row(3, 0, T + 2, 2n)];
    const skips = [{ incarnation: 0, partition: 0, fenceBefore: null, to: 2n }];
    const replay = (written: { partition: number; offset: number }[], tupleWrites = written.length) => ({
      rowsWritten: written.length,
      tupleWrites,
      messagesReplayed: 3,
      incarnation: 0,
      written,
    });
    // Offsets 0-1 were skipped by a forward reset: a replay that writes offset 1's message is explained.
    const explained = check(
      input(logs, stored, { skips, replays: [replay([{ partition: 0, offset: 1 }], 2)] }),
    );
    expect(explained.figures.replayWrites).toBe(0);
    expect(explained.figures.replaySkippedWrites).toBe(1);
    expect(explained.ok).toBe(true);
    // Offset 2 is no skip: its write is a discrepancy, and so is one without a skip range at all.
    const beyond = check(input(logs, stored, { skips, replays: [replay([{ partition: 0, offset: 2 }])] }));
    expect(beyond.figures.replayWrites).toBe(1);
    expect(beyond.discrepancies.join('\n')).toMatch(
      /replay .* wrote 1 rows .* 0 of them messages of skip ranges; the others hold partition:offset 0:2/,
    );
    expect(
      check(input(logs, stored, { replays: [replay([{ partition: 0, offset: 1 }])] })).figures.replayWrites,
    ).toBe(1);
    // Tuples written while no row shows it (nothing to explain them by) count too.
    expect(check(input(logs, stored, { skips, replays: [replay([], 4)] })).figures.replayWrites).toBe(4);
  });

  test('invalid messages never land and MUST be dead-lettered', () => {
    const logs = [[rec(0, 0, 0, T, '{"symbol":', 'bad1')]];
    expect(check(input(logs, [])).figures.notDeadLettered).toBe(1);
    const dl = [{ id: 'bad1', sourcePartition: 0, sourceOffset: 0n, reason: 'invalid_json' }];
    expect(check(input(logs, [], { deadLetters: dl })).ok).toBe(true);
    expect(check(input(logs, [row(1, 0, T, 0n)], { deadLetters: dl })).figures.extra).toBe(1);
  });

  test('stalls are measured while healthy and behind only', () => {
    const fence = { next: 5n, fingerprint: null, updatedMs: T + 10 };
    const samples: Sample[] = Array.from({ length: 121 }, (_, i) => ({
      t: i * 1000,
      incarnation: 0,
      partitions: [{ partition: 0, fence, logEnd: 9n }],
    }));
    const base = input([[]], [], { samples });
    expect(check(base).figures.stallMsByPartition.get(0)).toBe(120_000);
    expect(check(base).figures.stallsOverBound).toBe(1);
    const locked = check({
      ...base,
      windows: [{ from: 50_000, to: 60_000, partitions: [0], why: 'locked' }],
    });
    // The clock restarts at the first sample after the window (61 s).
    expect(locked.figures.stallMsByPartition.get(0)).toBe(59_000);
    expect(locked.ok).toBe(true);
    const ahead = samples.map((s) => ({
      ...s,
      partitions: [{ partition: 0, fence: { ...fence, next: 12n }, logEnd: 9n }],
    }));
    expect(check(input([[]], [], { samples: ahead })).figures.fenceAhead).toBe(121);
  });
});
