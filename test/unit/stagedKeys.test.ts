import { packBar, timestampOf, type PackedBar } from '../../src/contract/packedBar';
import { mulberry32 } from '../../src/demo/random';
import { stagedKeys } from '../../src/store/stagedKeys';
import { parseExtraColumns } from '../../src/contract/extras';
import { writeSql } from '../../src/store/writeSql';
import { flatBar } from '../support/flatBar';

const T0 = Date.UTC(2026, 10, 24, 14, 30);

const row = (symbol: string, minute: number): PackedBar => packBar(flatBar(symbol, T0 + minute * 60_000), 0);

/** The obvious answer: a set of every (symbol, timestamp) pair. */
const naive = (groups: PackedBar[][]) => {
  const seen = new Set<string>();
  for (const rows of groups)
    for (const bar of rows) {
      const k = JSON.stringify([bar.symbol, timestampOf(bar)]);
      if (seen.has(k)) return 'repeated';
      seen.add(k);
    }
  return 'unique';
};

describe('stagedKeys', () => {
  test('no rows, one row, distinct symbols: unique', () => {
    expect(stagedKeys([])).toBe('unique');
    expect(stagedKeys([[]])).toBe('unique');
    expect(stagedKeys([[row('AAA', 0)]])).toBe('unique');
    expect(stagedKeys([[row('AAA', 0), row('BBB', 0)], [row('CCC', 0)]])).toBe('unique');
  });

  test('one symbol at distinct minutes is unique; a minute again is repeated, at any position', () => {
    expect(stagedKeys([[row('AAA', 0), row('AAA', 1), row('AAA', 2)]])).toBe('unique');
    // The repeat is of the symbol's first bar, of a later one, within a group or across groups.
    expect(stagedKeys([[row('AAA', 0), row('AAA', 1), row('AAA', 0)]])).toBe('repeated');
    expect(stagedKeys([[row('AAA', 0), row('AAA', 1), row('AAA', 2), row('AAA', 1)]])).toBe('repeated');
    expect(stagedKeys([[row('AAA', 0)], [row('BBB', 0), row('AAA', 0)]])).toBe('repeated');
    expect(stagedKeys([[row('AAA', 1), row('AAA', 2)], [row('AAA', 2)]])).toBe('repeated');
  });

  test('keys are the exact pair: other symbols, other times, look-alike texts do not collide', () => {
    // `${timestamp}|${symbol}` must not make (1, "2|X") and (12, "|X")-like pairs equal.
    const odd = (symbol: string, ms: number): PackedBar => packBar(flatBar(symbol, ms), 0);
    expect(stagedKeys([[odd('2|X', 1), odd('2|X', 5), odd('|X', 12), odd('|X', 1)]])).toBe('unique');
    expect(stagedKeys([[odd('A', 1), odd('A', 2), odd('a', 1), odd('A ', 2)]])).toBe('unique');
    expect(stagedKeys([[odd('A', -60_000), odd('A', 60_000), odd('A', -60_000)]])).toBe('repeated');
  });

  test('agrees with the obvious set on 3,000 random flushes', () => {
    const rand = mulberry32(20261203);
    let repeated = 0;
    for (let n = 0; n < 3000; n++) {
      const symbols = 1 + Math.floor(rand() * 40);
      const minutes = 1 + Math.floor(rand() * 40);
      const groups: PackedBar[][] = [];
      for (let g = Math.floor(rand() * 4); g >= 0; g--) {
        const rows: PackedBar[] = [];
        for (let i = Math.floor(rand() * 12); i > 0; i--)
          rows.push(row(`S${Math.floor(rand() * symbols)}`, Math.floor(rand() * minutes)));
        groups.push(rows);
      }
      const expected = naive(groups);
      if (expected === 'repeated') repeated++;
      expect(stagedKeys(groups)).toBe(expected);
    }
    // Both answers are exercised, many times.
    expect(repeated).toBeGreaterThan(300);
    expect(repeated).toBeLessThan(2700);
  });
});

describe('the upsert by staged keys', () => {
  const sql = writeSql('s');
  test('repeated keys pick the newest version per key (DISTINCT ON); unique keys do not sort for it', () => {
    expect(sql.onConflict).toMatch(/^ON CONFLICT \(symbol, "timestamp"\) DO UPDATE SET/);
    for (const text of [sql.upsert('g', 't', 'repeated'), sql.upsertAll('repeated')]) {
      expect(text).toContain('DISTINCT ON (s.symbol, s."timestamp")');
      expect(text).toContain(
        's.revision DESC, s.source_time DESC, s.part DESC, s.kafka_offset DESC, s.seq DESC',
      );
    }
    for (const text of [sql.upsert('g', 't', 'unique'), sql.upsertAll('unique')]) {
      // (bars_latest's DISTINCT ON (c.symbol) is over the rows changed, whatever was staged.)
      expect(text).not.toContain('DISTINCT ON (s.');
      expect(text).toContain(
        'SELECT s.symbol, s."timestamp", s.open, s.high, s.low, s.close, s.volume, s.vwap, s.revision, s.trade_count, s.source_time',
      );
    }
    // Both write in key order (concurrent flushes lock rows in one order) and resolve conflicts alike.
    for (const keys of ['unique', 'repeated'] as const) {
      const text = sql.upsert('g', 't', keys);
      expect(text).toMatch(/ORDER BY s\.symbol, s\."timestamp"\s+ON CONFLICT/);
      expect(text).toContain(sql.onConflict);
      // bars_latest is kept in the same statement, from the rows changed, after them (lock order).
      expect(text).toMatch(
        /^WITH changed AS \(\s+INSERT INTO "s"\.bars_1m[^]*RETURNING[^]*\), newest AS \(\s+INSERT INTO "s"\.bars_latest[^]*FROM changed c ORDER BY c\.symbol/,
      );
      expect(text).toContain('WHERE s.kafka_offset >= f.next_offset');
      // Bars only, and only where no tombstone of the key is at least as new.
      expect(text).toMatch(/WHERE NOT s\.deleted\s+AND NOT EXISTS \(SELECT 1 FROM "s"\.bar_tombstones d/);
      // The deletes pick from the same rows, newest version per key alike.
      const deletes = sql.deletes('g', 't', keys);
      expect(deletes.includes('DISTINCT ON (s.symbol, s."timestamp")')).toBe(keys === 'repeated');
      expect(deletes).toContain('WHERE s.kafka_offset >= f.next_offset');
      expect(deletes).toMatch(/FROM [^]* WHERE s\.deleted\s+\), tombstone AS/);
    }
  });

  test('the statements of a setting of extra columns write them, and only them', () => {
    const withExtras = writeSql('s', parseExtraColumns('exchange:text(8),flags:bigint'));
    expect(withExtras).not.toBe(sql);
    expect(writeSql('s', parseExtraColumns('exchange:text(8),flags:bigint'))).toBe(withExtras);
    expect(withExtras.upsert('g', 't', 'unique')).toContain('s.source_time, s."exchange", s."flags"');
    expect(withExtras.onConflict).toContain('"exchange" = EXCLUDED."exchange", "flags" = EXCLUDED."flags"');
    expect(withExtras.copyBinary).toMatch(/"kafka_offset", "exchange", "flags"\) FROM STDIN/);
    expect(sql.upsert('g', 't', 'unique')).not.toContain('exchange');
  });
});
