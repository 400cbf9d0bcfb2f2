/**
 * CompressedChunks.holds: which bar start times lie in compressed chunks, from a fake catalog.
 */
import { CompressedChunks } from '../../src/store/compressedChunks';

const DAY = 86_400_000;

function catalog(ranges: [number, number][] | null) {
  return {
    query: async <R extends object>(text: string): Promise<{ rows: R[] }> => {
      if (text.includes('pg_extension'))
        return { rows: (ranges === null ? [] : [{ schema: 'public' }]) as R[] };
      return {
        rows: (ranges ?? []).map(([s, e]) => ({ start_ms: String(s), end_ms: String(e) })) as unknown as R[],
      };
    },
  };
}

describe('CompressedChunks', () => {
  test('a bar is in a compressed chunk when its start lies in one of the ranges [start, end)', async () => {
    const c = new CompressedChunks(
      catalog([
        [0, DAY],
        [2 * DAY, 3 * DAY],
        [5 * DAY, 6 * DAY],
      ]),
      's',
    );
    await c.refresh();
    expect(
      [0, DAY - 60_000, DAY, 2 * DAY, 3 * DAY - 1, 3 * DAY, 4 * DAY, 5 * DAY, 6 * DAY, 10 * DAY].map((t) =>
        c.holds(t),
      ),
    ).toEqual([true, true, false, true, true, false, false, true, false, false]);
  });

  test('nothing is compressed before the first refresh, or without TimescaleDB', async () => {
    expect(new CompressedChunks(catalog([[0, DAY]]), 's').holds(0)).toBe(false);
    const plain = new CompressedChunks(catalog(null), 's');
    await plain.refresh();
    expect(plain.holds(0)).toBe(false);
  });
});
