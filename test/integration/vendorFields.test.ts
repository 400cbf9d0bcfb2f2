/**
 * Bars as vendors publish them (issue 31), end to end on the real broker and the real TimescaleDB:
 * trade_count and two extra columns (BARS_EXTRA_COLUMNS) from Kafka and from a backfill, a field of the
 * wrong type dead-lettered naming it; deletes: a delete removes its bar, a replay of the whole topic
 * from earliest (offsets reset) or an older version sent again keeps it deleted, a newer bar restores
 * it; bars_5m and bars_1h equal a recomputation from bars_1m after the deletes, trade_count summed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Service } from '../../src/service';
import { PG_IS_TIMESCALEDB } from '../support/env';
import { Harness, runCli } from '../support/harness';
import { waitFor } from '../support/common';

const CLI = 'dist/cli/main.js';
const EXTRAS = 'exchange:text(8),conditions:bigint';
const T0 = Date.UTC(2026, 10, 20, 14, 30); // a Friday afternoon, long enough ago for any chunk
const minute = (m: number) => new Date(T0 + m * 60_000).toISOString();

interface Message {
  symbol: string;
  m: number;
  close?: number;
  tradeCount?: number | null;
  exchange?: string | number | null;
  conditions?: number | null;
  revision?: number;
  deleted?: boolean;
}

/** A message value as a vendor's feed would send it. */
function value(x: Message): string {
  if (x.deleted) {
    return JSON.stringify({
      symbol: x.symbol,
      timestamp: minute(x.m),
      deleted: true,
      ...(x.revision !== undefined ? { revision: x.revision } : {}),
    });
  }
  const close = x.close ?? 10;
  return JSON.stringify({
    symbol: x.symbol,
    timestamp: minute(x.m),
    open: close,
    high: close + 1,
    low: close - 1,
    close,
    volume: 100 + x.m,
    ...(x.tradeCount !== undefined ? { trade_count: x.tradeCount } : {}),
    ...(x.exchange !== undefined ? { exchange: x.exchange } : {}),
    ...(x.conditions !== undefined ? { conditions: x.conditions } : {}),
    ...(x.revision !== undefined ? { revision: x.revision } : {}),
  });
}

interface Row {
  symbol: string;
  m: number;
  close: number;
  trade_count: string | null;
  exchange: string | null;
  conditions: string | null;
}

describe('bars as vendors publish them: trade_count, extra columns and deletes, through Kafka', () => {
  const h = new Harness({ extraColumns: EXTRAS });
  let service: Service | null = null;
  const start = async () => {
    service = await h.startService();
  };
  const stop = async () => {
    expect(await service!.stop()).toBe(true);
    service = null;
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bw-vendor-'));
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(2);
  });
  afterAll(async () => {
    await h.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const produce = (messages: readonly Message[], headers: Record<string, string> = {}) =>
    h.produceRaw(messages.map((x) => ({ key: x.symbol, value: value(x), headers })));
  const rows = async (symbolLike: string): Promise<Row[]> =>
    (
      await h.pool.query<Row>(
        `SELECT symbol, ((extract(epoch FROM "timestamp") * 1000 - $2) / 60000)::int AS m, close,
                trade_count::text, exchange, conditions::text
         FROM "${h.schema}".bars_1m WHERE symbol LIKE $1 ORDER BY symbol, "timestamp"`,
        [symbolLike, T0],
      )
    ).rows;
  const count = async (symbolLike: string) => (await rows(symbolLike)).length;
  const settled = (what: string, symbolLike: string, n: number) =>
    waitFor(what, async () => (await h.caughtUp()) && (await count(symbolLike)) === n, 60_000);
  const row = (
    symbol: string,
    m: number,
    close: number,
    tc: number | null = null,
    exchange: string | null = null,
    conditions: number | null = null,
  ): Row => ({
    symbol,
    m,
    close,
    trade_count: tc === null ? null : String(tc),
    exchange,
    conditions: conditions === null ? null : String(conditions),
  });

  test('the premise: bars_1m is a hypertable of the real TimescaleDB, with the columns of the setting', async () => {
    expect(PG_IS_TIMESCALEDB).toBe(true);
    const cols = await h.pool.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
       WHERE table_schema = $1 AND table_name = 'bars_1m' AND column_name IN ('trade_count', 'exchange', 'conditions')
       ORDER BY column_name`,
      [h.schema],
    );
    expect(cols.rows).toEqual([
      { column_name: 'conditions', data_type: 'bigint' },
      { column_name: 'exchange', data_type: 'text' },
      { column_name: 'trade_count', data_type: 'bigint' },
    ]);
  });

  test('trade_count and the extra columns land from Kafka; a field of the wrong type is dead-lettered naming it', async () => {
    await start();
    await produce([
      { symbol: 'TC1', m: 0, tradeCount: 17, exchange: 'XNYS', conditions: 12 },
      { symbol: 'TC1', m: 1, tradeCount: 0 },
      { symbol: 'TC1', m: 2, exchange: null, conditions: -3 },
      { symbol: 'TC2', m: 0, tradeCount: Number.MAX_SAFE_INTEGER, exchange: 'ARCX' },
      { symbol: 'TC2', m: 1, exchange: 5 }, // wrong type
      { symbol: 'TC2', m: 2, exchange: 'TOO-LONG-X' }, // 10 characters, the bound is 8
      { symbol: 'TC2', m: 3, tradeCount: -1 },
    ]);
    await settled('the bars of TC1 and TC2', 'TC%', 4);
    expect(await rows('TC%')).toEqual([
      row('TC1', 0, 10, 17, 'XNYS', 12),
      row('TC1', 1, 10, 0),
      row('TC1', 2, 10, null, null, -3),
      row('TC2', 0, 10, Number.MAX_SAFE_INTEGER, 'ARCX'),
    ]);
    const letters = await h.readDeadLetters(3);
    expect(
      letters.map((d) => [d.headers['bar-writer.reason'], d.headers['bar-writer.detail']]).sort(),
    ).toEqual([
      ['invalid_extra', 'exchange must be at most 8 characters, got 10'],
      ['invalid_trade_count', 'trade_count must be a non-negative safe integer, got -1'],
      ['wrong_type', 'exchange must be a string or null, got number 5'],
    ]);
    // The newest bar of each symbol, with its fields, in bars_latest.
    expect(await h.latestMismatches('TC%')).toBe(0);
    const latest = await h.pool.query(
      `SELECT symbol, trade_count::text, exchange FROM "${h.schema}".bars_latest WHERE symbol LIKE 'TC%' ORDER BY symbol`,
    );
    expect(latest.rows).toEqual([
      { symbol: 'TC1', trade_count: null, exchange: null },
      { symbol: 'TC2', trade_count: String(Number.MAX_SAFE_INTEGER), exchange: 'ARCX' },
    ]);
  });

  test('a delete removes its bar; replaying the topic from earliest keeps it deleted; an older version sent again too; a newer bar restores it', async () => {
    const bars: Message[] = [];
    for (const symbol of ['DL1', 'DL2', 'DL3'])
      for (let m = 0; m < 5; m++) bars.push({ symbol, m, close: 10 + m, tradeCount: m });
    await produce(bars);
    await settled('15 bars', 'DL%', 15);
    // The newest minute of DL1, the oldest of DL2, one in the middle of DL3 (with a revision: the bar
    // had none, so any time is newer); and one key never sent.
    await produce([
      { symbol: 'DL1', m: 4, deleted: true },
      { symbol: 'DL2', m: 0, deleted: true },
      { symbol: 'DL3', m: 2, deleted: true, revision: 1 },
      { symbol: 'DL3', m: 9, deleted: true },
    ]);
    await settled('3 bars deleted', 'DL%', 12);
    const remaining = bars
      .filter((b) => !['DL1 4', 'DL2 0', 'DL3 2'].includes(`${b.symbol} ${b.m}`))
      .map((b) => row(b.symbol, b.m, b.close!, b.tradeCount!));
    expect(await rows('DL%')).toEqual(remaining);
    // bars_latest: DL1 falls back to minute 3.
    expect(await h.latestMismatches('DL%')).toBe(0);
    const tombstones = await h.pool.query(
      `SELECT symbol, ((extract(epoch FROM "timestamp") * 1000 - $1) / 60000)::int AS m, revision::text
       FROM "${h.schema}".bar_tombstones WHERE symbol LIKE 'DL%' ORDER BY symbol, "timestamp"`,
      [T0],
    );
    expect(tombstones.rows).toEqual([
      { symbol: 'DL1', m: 4, revision: '0' },
      { symbol: 'DL2', m: 0, revision: '0' },
      { symbol: 'DL3', m: 2, revision: '1' },
      { symbol: 'DL3', m: 9, revision: '0' },
    ]);

    // Replay from earliest: every bar before its delete comes again, and stays out.
    const versions = () =>
      h.pool
        .query(
          `SELECT symbol, "timestamp", xmin::text FROM "${h.schema}".bars_1m WHERE symbol LIKE 'DL%' ORDER BY 1, 2`,
        )
        .then((r) => r.rows);
    const before = await versions();
    await stop();
    const reset = await runCli(CLI, ['offsets', 'reset', '--topic', h.topic, '--to', 'earliest'], h.env());
    expect({ code: reset.code, stderr: reset.stderr }).toEqual({ code: 0, stderr: '' });
    expect(await h.caughtUp()).toBe(false);
    await start();
    await waitFor('the replay', () => h.caughtUp(), 60_000);
    expect(await rows('DL%')).toEqual(remaining);
    expect(await h.latestMismatches('DL%')).toBe(0);
    // The replay wrote nothing: every row as it was, none inserted, updated or deleted.
    expect(await versions()).toEqual(before);

    // The deleted bar sent again with its old version (a dead-letter replay names the original time).
    await produce([{ symbol: 'DL1', m: 4, close: 99 }], { 'bar-writer.version-time': String(T0) });
    // A newer version of DL2's minute 0 restores it.
    await produce([{ symbol: 'DL2', m: 0, close: 50, tradeCount: 7 }]);
    await settled('DL2 minute 0 restored', 'DL%', 13);
    expect(await rows('DL%')).toEqual(
      [...remaining, row('DL2', 0, 50, 7)].sort((a, b) => (a.symbol + a.m < b.symbol + b.m ? -1 : 1)),
    );
    expect(await h.latestMismatches('DL%')).toBe(0);
  });

  test('bars_5m and bars_1h equal a recomputation from bars_1m after the deletes, trade_count summed', async () => {
    const views = await h.pool.query<{ view: string }>(
      `SELECT view_name AS view FROM timescaledb_information.continuous_aggregates
       WHERE view_schema = $1 AND view_name IN ('bars_5m', 'bars_1h') ORDER BY view_name`,
      [h.schema],
    );
    expect(views.rows.map((v) => v.view)).toEqual(['bars_1h', 'bars_5m']);
    const columns = `symbol, open, high, low, close, volume, vwap, trade_count`;
    const differences = async (view: string, width: string) => {
      // Materialized (the real-time part is off for the comparison), against a direct aggregation.
      await h.pool.query(`CALL refresh_continuous_aggregate($1::regclass, NULL, NULL)`, [
        `"${h.schema}".${view}`,
      ]);
      const direct = `SELECT symbol, time_bucket('${width}'::interval, "timestamp") AS "timestamp",
          first(open, "timestamp") AS open, max(high) AS high, min(low) AS low, last(close, "timestamp") AS close,
          sum(volume) AS volume,
          sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL) / nullif(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
          sum(trade_count) AS trade_count
        FROM "${h.schema}".bars_1m GROUP BY 1, 2`;
      const stored = `SELECT ${columns.replace('symbol', 'symbol, "timestamp"')} FROM "${h.schema}".${view}`;
      const r = await h.pool.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM (${stored} EXCEPT ${direct}) a) + (SELECT count(*) FROM (${direct} EXCEPT ${stored}) b))::int AS n`,
      );
      return r.rows[0]!.n;
    };
    expect(await differences('bars_5m', '5 minutes')).toBe(0);
    expect(await differences('bars_1h', '1 hour')).toBe(0);
    // The deletes are in: DL1's 5-minute bucket holds minutes 0-3 (its minute 4 deleted), trade counts
    // 0+1+2+3, and DL3's minute 2 is out of its bucket.
    const buckets = await h.pool.query(
      `SELECT symbol, volume::text, trade_count::text FROM "${h.schema}".bars_5m
       WHERE symbol IN ('DL1', 'DL3') ORDER BY symbol`,
    );
    expect(buckets.rows).toEqual([
      { symbol: 'DL1', volume: String(100 + 101 + 102 + 103), trade_count: '6' },
      { symbol: 'DL3', volume: String(100 + 101 + 103 + 104), trade_count: '8' },
    ]);
  });

  test('backfill: trade_count, the extra columns and deletes from a CSV file; an older version of a deleted bar stays out', async () => {
    await stop();
    const file = path.join(dir, 'history.csv');
    fs.writeFileSync(
      file,
      [
        'symbol,timestamp,open,high,low,close,volume,trade_count,exchange,conditions,deleted',
        `BF1,${minute(0)},1,2,0.5,1.5,10,3,XNAS,1,`,
        `BF1,${minute(1)},1,2,0.5,1.5,10,,,,false`,
        `BF1,${minute(2)},1,2,0.5,1.5,10,4,,,`,
        `BF1,${minute(2)},,,,,,,,,true`, // the same key again, later in the file: deleted
        `BF2,${minute(0)},1,2,0.5,1.5,10,x,,,`, // trade_count not a number
        `DL1,${minute(4)},1,2,0.5,1.5,10,1,,,`, // deleted through Kafka, with a newer version than this
        `DL3,${minute(3)},,,,,,,,,TRUE`, // a delete of a bar Kafka delivered: older, so it stays
      ].join('\n') + '\n',
    );
    const r = await runCli(CLI, ['backfill', file], h.env(), { cwd: dir });
    expect(r.code).toBe(3); // loaded, one row rejected
    expect(r.stdout).toMatch(
      /^backfill: read 7, written 2, deleted 0 \(of 2 deletes\), unchanged 2, rejected 1, /m,
    );
    expect(await rows('BF%')).toEqual([row('BF1', 0, 1.5, 3, 'XNAS', 1), row('BF1', 1, 1.5)]);
    expect((await rows('DL%')).filter((x) => x.symbol === 'DL1').map((x) => x.m)).toEqual([0, 1, 2, 3]);
    expect((await rows('DL%')).filter((x) => x.symbol === 'DL3').map((x) => x.m)).toEqual([0, 1, 3, 4]);
    const rejects = fs.readFileSync(path.join(dir, 'history.csv.rejects.jsonl'), 'utf8').trim().split('\n');
    expect(rejects.map((l) => (JSON.parse(l) as { reason: string }).reason)).toEqual(['wrong_type']);
  });
});
