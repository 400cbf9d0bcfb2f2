import {
  PartitionBuffer,
  SOURCE_SLAB_BYTES,
  SourceArena,
  BAR_ENTRY_BYTES,
  entryBytes,
  sourceOf,
  type BarEntry,
  type Entry,
  type RejectedEntry,
} from '../../src/batch/buffer';
import { packBar } from '../../src/contract/packedBar';
import { flatBar } from '../support/flatBar';

const T0 = Date.UTC(2026, 10, 24, 14, 31);

function bar(offset: number, symbol = 'AAPL'): BarEntry {
  return {
    kind: 'bar',
    offset: BigInt(offset),
    ...packBar(flatBar(symbol, T0), T0),
    sourceBytes: Buffer.alloc(120, 'x'),
    sourceStart: 10,
    sourceEnd: 110,
    key: undefined,
    headers: null,
  };
}

function rejected(offset: number): RejectedEntry {
  return {
    kind: 'rejected',
    offset: BigInt(offset),
    rejection: { reason: 'invalid_json', detail: 'abc' },
    key: Buffer.from('k'),
    value: Buffer.from('{'),
    headers: {},
    messageTimeMs: T0,
  };
}

const BAR_BYTES = 364; // BAR_ENTRY_BYTES (256) + 2 * 'AAPL'.length + 100 (the source bytes)
const REJ_BYTES = 208; // 200 + 1 + 1 + 2 * 'abc'.length

function offsets(entries: Entry[]): number[] {
  return entries.map((e) => Number(e.offset));
}

describe('entryBytes', () => {
  test('a bar: 256 + 2 per symbol character + its source text, key and headers when kept', () => {
    expect(entryBytes(bar(0))).toBe(BAR_BYTES);
    // The fixed part of the estimate is the exported BAR_ENTRY_BYTES: the rest grows with the entry.
    expect(entryBytes(bar(0)) - 2 * 'AAPL'.length - 100).toBe(BAR_ENTRY_BYTES);
    expect(entryBytes(bar(0, 'BRK.B'))).toBe(366);
    // A key that is not the symbol (kept), and a header with two values: 364 + 3 + (2 + 40) + 2 × (1 + 16).
    expect(
      entryBytes({
        ...bar(0),
        key: Buffer.from('key'),
        headers: { h: [Buffer.from('a'), Buffer.from('b')] },
      }),
    ).toBe(443);
  });

  test('a rejected entry: 200 + key + value + 2 per detail char + headers', () => {
    expect(entryBytes(rejected(0))).toBe(REJ_BYTES);
    const withHeaders: RejectedEntry = {
      ...rejected(0),
      key: null,
      value: null,
      rejection: { reason: 'too_large', detail: 'xy' },
      headers: { h: [Buffer.from('ab')], trace: [Buffer.alloc(10)] },
    };
    // 200 + 0 + 0 + 4 + (2 + 40 + 2 + 16) + (10 + 40 + 10 + 16)
    expect(entryBytes(withHeaders)).toBe(340);
  });
});

describe('PartitionBuffer', () => {
  test('a new buffer is empty', () => {
    const b = new PartitionBuffer();
    expect(b.size).toBe(0);
    expect(b.barCount).toBe(0);
    expect(b.bytes).toBe(0);
    expect(b.oldestArrivalMs).toBeNull();
    expect(b.take(10)).toBeNull();
  });

  test('push counts entries, bars and bytes; oldestArrivalMs is the first arrival', () => {
    const b = new PartitionBuffer();
    b.push(bar(0), 1000);
    b.push(rejected(1), 1001);
    b.push(bar(2), 1002);
    expect(b.size).toBe(3);
    expect(b.barCount).toBe(2);
    expect(b.bytes).toBe(2 * BAR_BYTES + REJ_BYTES);
    expect(b.oldestArrivalMs).toBe(1000);
  });

  test('take returns at most maxBars bars, oldest first, with nextOffset = last taken + 1', () => {
    const b = new PartitionBuffer();
    for (let i = 0; i < 5; i++) b.push(bar(i), 1000 + i);
    const batch = b.take(2);
    expect(batch).not.toBeNull();
    expect(offsets(batch!.entries)).toEqual([0, 1]);
    expect(batch!.barCount).toBe(2);
    expect(batch!.bytes).toBe(2 * BAR_BYTES);
    expect(batch!.nextOffset).toBe(2n);
    expect(b.size).toBe(3);
    expect(b.barCount).toBe(3);
    expect(b.bytes).toBe(3 * BAR_BYTES);
    expect(b.oldestArrivalMs).toBe(1002);
  });

  test('the taken entries are the very objects pushed', () => {
    const b = new PartitionBuffer();
    const e = bar(7);
    b.push(e, 1);
    expect(b.take(1)!.entries[0]).toBe(e);
  });

  test('taking everything returns counts and bytes to 0 and oldestArrivalMs to null', () => {
    const b = new PartitionBuffer();
    b.push(bar(10), 5);
    b.push(rejected(11), 6);
    b.push(bar(12), 7);
    const batch = b.take(1000)!;
    expect(offsets(batch.entries)).toEqual([10, 11, 12]);
    expect(batch.barCount).toBe(2);
    expect(batch.bytes).toBe(2 * BAR_BYTES + REJ_BYTES);
    expect(batch.nextOffset).toBe(13n);
    expect(b.size).toBe(0);
    expect(b.barCount).toBe(0);
    expect(b.bytes).toBe(0);
    expect(b.oldestArrivalMs).toBeNull();
    expect(b.take(1000)).toBeNull();
  });

  test('rejected entries ride along with the bars before the next bar', () => {
    const b = new PartitionBuffer();
    b.push(bar(0), 1);
    b.push(rejected(1), 2);
    b.push(rejected(2), 3);
    b.push(bar(3), 4);
    b.push(rejected(4), 5);
    const first = b.take(1)!;
    expect(offsets(first.entries)).toEqual([0, 1, 2]);
    expect(first.barCount).toBe(1);
    expect(first.bytes).toBe(BAR_BYTES + 2 * REJ_BYTES);
    expect(first.nextOffset).toBe(3n);
    expect(b.oldestArrivalMs).toBe(4);
    const second = b.take(1)!;
    expect(offsets(second.entries)).toEqual([3, 4]);
    expect(second.nextOffset).toBe(5n);
    expect(b.size).toBe(0);
  });

  test('a leading run of rejected entries is taken even with maxBars 0', () => {
    const b = new PartitionBuffer();
    b.push(rejected(0), 1);
    b.push(rejected(1), 2);
    b.push(bar(2), 3);
    const batch = b.take(0)!;
    expect(offsets(batch.entries)).toEqual([0, 1]);
    expect(batch.barCount).toBe(0);
    expect(batch.nextOffset).toBe(2n);
    expect(b.size).toBe(1);
    expect(b.barCount).toBe(1);
    expect(b.bytes).toBe(BAR_BYTES);
  });

  test('a buffer of only rejected entries is taken whole', () => {
    const b = new PartitionBuffer();
    for (let i = 0; i < 3; i++) b.push(rejected(100 + i), i);
    const batch = b.take(5)!;
    expect(offsets(batch.entries)).toEqual([100, 101, 102]);
    expect(batch.barCount).toBe(0);
    expect(batch.bytes).toBe(3 * REJ_BYTES);
    expect(batch.nextOffset).toBe(103n);
    expect(b.bytes).toBe(0);
  });

  test('nextOffset follows the last taken offset even across offset gaps', () => {
    const b = new PartitionBuffer();
    b.push(bar(10), 1);
    b.push(bar(15), 2);
    b.push(bar(20), 3);
    expect(b.take(2)!.nextOffset).toBe(16n);
    expect(b.take(2)!.nextOffset).toBe(21n);
  });

  test('offsets beyond 2^53 are exact', () => {
    const b = new PartitionBuffer();
    const big = 2n ** 62n;
    b.push({ ...bar(0), offset: big }, 1);
    expect(b.take(1)!.nextOffset).toBe(big + 1n);
  });

  test('clear() drops everything and returns what was dropped', () => {
    const b = new PartitionBuffer();
    b.push(bar(0), 1);
    b.push(rejected(1), 2);
    b.push(bar(2), 3);
    b.push(bar(3), 4);
    b.take(1); // takes offsets 0, 1
    expect(b.clear()).toEqual({ entries: 2, bytes: 2 * BAR_BYTES });
    expect(b.size).toBe(0);
    expect(b.barCount).toBe(0);
    expect(b.bytes).toBe(0);
    expect(b.oldestArrivalMs).toBeNull();
    expect(b.take(10)).toBeNull();
    expect(b.clear()).toEqual({ entries: 0, bytes: 0 });
  });

  test('the buffer is usable after clear()', () => {
    const b = new PartitionBuffer();
    b.push(bar(0), 1);
    b.clear();
    b.push(bar(50), 99);
    expect(b.oldestArrivalMs).toBe(99);
    const batch = b.take(10)!;
    expect(offsets(batch.entries)).toEqual([50]);
    expect(batch.nextOffset).toBe(51n);
  });

  test('10,000 entries taken in chunks keep their order and accounting (compaction)', () => {
    const b = new PartitionBuffer();
    const N = 10_000;
    let expectedBars = 0;
    let expectedBytes = 0;
    for (let i = 0; i < N; i++) {
      const e = i % 7 === 3 ? rejected(i) : bar(i);
      if (e.kind === 'bar') expectedBars++;
      expectedBytes += entryBytes(e);
      b.push(e, 1_000_000 + i);
    }
    expect(b.size).toBe(N);
    expect(b.barCount).toBe(expectedBars);
    expect(b.bytes).toBe(expectedBytes);

    const seen: number[] = [];
    let next = 0n;
    let batches = 0;
    for (let batch = b.take(100); batch !== null; batch = b.take(100)) {
      batches++;
      expect(batch.entries[0]!.offset).toBe(next);
      expect(batch.barCount).toBeLessThanOrEqual(100);
      expect(batch.barCount).toBe(batch.entries.filter((e) => e.kind === 'bar').length);
      expect(batch.bytes).toBe(batch.entries.reduce((n, e) => n + entryBytes(e), 0));
      next = batch.nextOffset;
      expect(next).toBe(batch.entries[batch.entries.length - 1]!.offset + 1n);
      seen.push(...offsets(batch.entries));
      expectedBars -= batch.barCount;
      expectedBytes -= batch.bytes;
      expect(b.barCount).toBe(expectedBars);
      expect(b.bytes).toBe(expectedBytes);
      expect(b.size).toBe(N - seen.length);
      expect(b.oldestArrivalMs).toBe(b.size === 0 ? null : 1_000_000 + seen.length);
    }
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(batches).toBe(Math.ceil(8572 / 100)); // 8572 bars: 10,000 minus 1428 rejected (i % 7 === 3)
    expect(next).toBe(BigInt(N));
    expect(b.barCount).toBe(0);
    expect(b.bytes).toBe(0);
  });

  test('pushes interleaved with large takes (past the compaction threshold) keep order', () => {
    const b = new PartitionBuffer();
    let pushed = 0;
    const push = (n: number) => {
      for (let i = 0; i < n; i++, pushed++) b.push(bar(pushed), pushed);
    };
    push(6000);
    const first = b.take(5000)!; // head 5000 > 4096 and more than half: compacts
    expect(first.entries).toHaveLength(5000);
    expect(first.nextOffset).toBe(5000n);
    expect(b.size).toBe(1000);
    expect(b.oldestArrivalMs).toBe(5000);
    push(10);
    const second = b.take(2000)!;
    expect(offsets(second.entries)).toEqual(Array.from({ length: 1010 }, (_, i) => 5000 + i));
    expect(second.nextOffset).toBe(6010n);
    expect(b.size).toBe(0);
    push(5000);
    const third = b.take(4097)!;
    expect(third.entries[0]!.offset).toBe(6010n);
    expect(third.nextOffset).toBe(6010n + 4097n);
    expect(b.oldestArrivalMs).toBe(6010 + 4097);
    push(1);
    const rest = b.take(10_000)!;
    expect(rest.entries).toHaveLength(904);
    expect(rest.entries[0]!.offset).toBe(10_107n);
    expect(rest.nextOffset).toBe(11_011n);
    expect(b.bytes).toBe(0);
  });
});

describe('SourceArena', () => {
  test('copies values into shared slabs; each copy reads back, whatever happens to the original', () => {
    const arena = new SourceArena();
    const stored: { view: () => Buffer; expected: Buffer }[] = [];
    const slabs = new Set<Buffer>();
    for (let i = 0; i < 500; i++) {
      const value = Buffer.from(`{"symbol":"S${i}","n":${'9'.repeat(i % 200)}}`);
      const expected = Buffer.from(value);
      const sourceStart = arena.store(value);
      const entry = { sourceBytes: arena.slab, sourceStart, sourceEnd: sourceStart + value.length };
      slabs.add(arena.slab);
      value.fill(0); // the fetch buffer may be reused: the copy must not care
      stored.push({ view: () => sourceOf(entry), expected });
    }
    for (const s of stored) expect(s.view().equals(s.expected)).toBe(true);
    const total = stored.reduce((n, s) => n + s.expected.length, 0);
    expect(slabs.size).toBeGreaterThan(1); // a new slab when one is full
    expect(slabs.size).toBeLessThanOrEqual(Math.ceil(total / (SOURCE_SLAB_BYTES - 250)));
  });

  test('a value larger than a slab gets a slab of its own size', () => {
    const arena = new SourceArena();
    arena.store(Buffer.from('small'));
    const big = Buffer.alloc(64 * 1024, 'b');
    const start = arena.store(big);
    expect(start).toBe(0);
    expect(arena.slab.length).toBe(64 * 1024);
    expect(
      sourceOf({ sourceBytes: arena.slab, sourceStart: start, sourceEnd: start + big.length }).equals(big),
    ).toBe(true);
  });
});
