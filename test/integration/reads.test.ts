/**
 * The scanner's reads (issue 29, docs/reads.md) on the real database, written through Kafka by the
 * service: /v1/latest (paged, and a list of symbols), /v1/minute/{time} (paged), /v1/symbols,
 * /v1/bars/{symbol}?interval=1m|5m|1h|1d, each answer equal to bars_1m computed in SQL, after a
 * correction of an older minute and two deletes (one a symbol's newest bar); 1d buckets in
 * America/New_York across both 2026 DST changes; trade_count and an extra column in the minute bars;
 * every answer checked against the OpenAPI document the service serves. Runs on TimescaleDB (the
 * continuous aggregates, part materialized and part real-time) and on plain PostgreSQL (the buckets
 * computed from bars_1m).
 */
import type { Service } from '../../src/service';
import { applyAggregateTimezone } from '../../src/store/timescaleSettings';
import { PG_IS_TIMESCALEDB } from '../support/env';
import { Harness, waitFor } from '../support/harness';
import { check, responseSchema } from '../support/openapiCheck';

const ZONE = 'America/New_York';
const T0 = Date.UTC(2026, 10, 20, 14, 30);
const minute = (m: number) => new Date(T0 + m * 60_000).toISOString();
const MAIN = ['AAA', 'BBB', 'CCC', 'DDD'];
/** Every 20 minutes over three days around each DST change of 2026 in New York. */
const DST_RANGES = [Date.UTC(2026, 2, 7), Date.UTC(2026, 9, 31)];

type Json = Record<string, unknown>;

interface Message {
  key: string;
  value: string;
}

function bar(
  symbol: string,
  ms: number,
  close: number,
  tradeCount: number,
  exchange: string | null,
): Message {
  return {
    key: symbol,
    value: JSON.stringify({
      symbol,
      timestamp: new Date(ms).toISOString(),
      open: close,
      high: close + 1,
      low: close - 1,
      close,
      volume: 100 + (close % 50),
      vwap: close,
      trade_count: tradeCount,
      ...(exchange === null ? {} : { exchange }),
    }),
  };
}

const del = (symbol: string, m: number): Message => ({
  key: symbol,
  value: JSON.stringify({ symbol, timestamp: minute(m), deleted: true }),
});

describe('the read endpoints, exact against bars_1m', () => {
  const h = new Harness({ extraColumns: 'exchange:text(8)' });
  let service: Service;
  let port = 0;
  let doc: Json = {};
  /** Every answer read, checked against the OpenAPI document at the end. */
  const answers: { path: string; status: number; json: unknown }[] = [];

  const get = async (path: string): Promise<{ status: number; json: Json }> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    const json = (await res.json()) as Json;
    answers.push({ path: path.split('?')[0]!, status: res.status, json });
    return { status: res.status, json };
  };

  /** Follows `next` from `path`; the pages' bars (or symbols) in order, and the number of pages. */
  const pages = async (path: string, key = 'bars'): Promise<{ items: unknown[]; count: number }> => {
    const items: unknown[] = [];
    let next: string | null = path;
    let count = 0;
    while (next !== null) {
      const r = await get(next);
      expect(r.status).toBe(200);
      items.push(...(r.json[key] as unknown[]));
      next = r.json.next as string | null;
      count++;
    }
    return { items, count };
  };

  /** Rows of `sql` (columns symbol, ts, open … trade_count, exchange) as the API renders bars. */
  const expected = async (sql: string, extras = true): Promise<Json[]> => {
    const rows = (
      await h.pool.query<Json>(
        `SELECT symbol, (extract(epoch from ts) * 1000)::bigint::text AS ms, open, high, low, close,
                volume::text AS volume, vwap, trade_count::text AS trade_count${extras ? ', exchange' : ''}
         FROM (${sql}) q ORDER BY symbol, ts`,
      )
    ).rows;
    return rows.map((r) => ({
      symbol: r.symbol,
      timestamp: new Date(Number(r.ms)).toISOString(),
      open: r.open,
      high: r.high,
      low: r.low,
      close: r.close,
      volume: Number(r.volume),
      vwap: r.vwap,
      trade_count: r.trade_count === null ? null : Number(r.trade_count),
      ...(extras ? { exchange: r.exchange } : {}),
    }));
  };
  const bars1m = () =>
    `SELECT symbol, "timestamp" AS ts, open, high, low, close, volume, vwap, trade_count, exchange FROM "${h.schema}".bars_1m`;
  /** bars_1m of `symbol` aggregated by `bucket` (an expression of ts), the aggregates' rules. */
  const aggregated = (symbol: string, bucket: string, fromMs: number, toMs: number) => `
    SELECT symbol, ${bucket} AS ts, (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high,
           min(low) AS low, (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume,
           sum(vwap * volume) / sum(volume) AS vwap, sum(trade_count) AS trade_count
    FROM (${bars1m()}) m WHERE symbol = '${symbol}'
    GROUP BY symbol, ${bucket}
    HAVING ${bucket} >= to_timestamp(${fromMs / 1000}) AND ${bucket} < to_timestamp(${toMs / 1000})`;

  beforeAll(async () => {
    await h.setupSchema();
    if (PG_IS_TIMESCALEDB) {
      const client = await h.pool.connect();
      try {
        await applyAggregateTimezone(client, h.schema, ZONE);
        await client.query(
          `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_schema = $1`,
          [h.schema],
        );
      } finally {
        client.release();
      }
    }
    await h.createTopics(2);
    service = await h.startService({ BARS_DB_AGGREGATE_TIMEZONE: ZONE });
    port = service.port;

    const first: Message[] = [];
    for (let m = 0; m < 30; m++) {
      for (const s of MAIN) {
        if (s === 'CCC' && m === 10) continue;
        first.push(bar(s, T0 + m * 60_000, 100 + m, 10 + m, `X${s[0]}`));
      }
    }
    for (const start of DST_RANGES) {
      for (let i = 0; i < 3 * 72; i++) first.push(bar('NY', start + i * 20 * 60_000, 200, 1, null));
    }
    await h.produceRaw(first);
    await waitFor('the first bars', async () => {
      const r = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM "${h.schema}".bars_1m`);
      return Number(r.rows[0]!.n) === first.length;
    });
    // A correction of an older minute, a delete of an older minute, a delete of a symbol's newest bar.
    await h.produceRaw([bar('AAA', T0 + 3 * 60_000, 500, 99, 'XZ'), del('BBB', 5), del('DDD', 29)]);
    await waitFor('the correction and the deletes', async () => {
      const r = await h.pool.query<{ n: string; c: number }>(
        `SELECT (SELECT count(*) FROM "${h.schema}".bar_tombstones) AS n,
                (SELECT close FROM "${h.schema}".bars_1m WHERE symbol = 'AAA' AND "timestamp" = $1) AS c`,
        [minute(3)],
      );
      return Number(r.rows[0]!.n) === 2 && r.rows[0]!.c === 500;
    });
    if (PG_IS_TIMESCALEDB) {
      // Materialize part of each aggregate: the rest (the current buckets) is computed at read time.
      for (const [view, to] of [
        ['bars_5m', minute(15)],
        ['bars_1h', minute(0)],
        ['bars_1d', '2026-03-09T00:00:00Z'],
      ]) {
        await h.pool.query(`CALL refresh_continuous_aggregate($1::regclass, NULL, $2::timestamptz)`, [
          `"${h.schema}".${view}`,
          to,
        ]);
      }
    }
  }, 180_000);
  afterAll(() => h.cleanup());

  test('GET /v1/latest: every symbol newest bar, paged by symbol, and a list of symbols', async () => {
    const all = await expected(`SELECT DISTINCT ON (symbol) * FROM (${bars1m()}) b ORDER BY symbol, ts DESC`);
    expect(all.map((b) => [b.symbol, b.timestamp])).toEqual([
      ['AAA', minute(29)],
      ['BBB', minute(29)],
      ['CCC', minute(29)],
      ['DDD', minute(28)], // its newest bar deleted: the one before
      ['NY', '2026-11-02T23:40:00.000Z'],
    ]);
    expect(await get('/v1/latest')).toEqual({ status: 200, json: { bars: all, next: null } });
    const paged = await pages('/v1/latest?limit=2');
    expect(paged).toEqual({ items: all, count: 3 });
    expect((await get('/v1/latest?limit=2')).json.next).toBe('/v1/latest?after=BBB&limit=2');
    expect(await get('/v1/latest?after=NY')).toEqual({ status: 200, json: { bars: [], next: null } });
    expect(await get('/v1/latest?symbols=NY,DDD,ZZZ,DDD')).toEqual({
      status: 200,
      json: { bars: [all[3], all[4]], missing: ['ZZZ'] },
    });
    expect(await get('/v1/latest?symbols=A%20B')).toEqual({
      status: 400,
      json: {
        error: 'symbols must be 1-32 printable ASCII characters without whitespace',
        parameter: 'symbols',
      },
    });
    expect((await get('/v1/latest?symbols=AAA&limit=2')).json).toEqual({
      error: 'limit does not go with symbols',
      parameter: 'limit',
    });
  });

  test('GET /v1/minute/{time}: every symbol at that minute, paged; deleted and missing bars absent', async () => {
    for (const m of [3, 5, 10, 29]) {
      const want = await expected(`SELECT * FROM (${bars1m()}) b WHERE ts = '${minute(m)}'`);
      expect(await get(`/v1/minute/${minute(m)}`)).toEqual({
        status: 200,
        json: { timestamp: minute(m), bars: want, next: null },
      });
      expect(await pages(`/v1/minute/${minute(m)}?limit=1`)).toEqual({ items: want, count: want.length });
      const symbols = want.map((b) => b.symbol);
      if (m === 5) expect(symbols).toEqual(['AAA', 'CCC', 'DDD']);
      if (m === 10) expect(symbols).toEqual(['AAA', 'BBB', 'DDD']);
      if (m === 29) expect(symbols).toEqual(['AAA', 'BBB', 'CCC']);
      if (m === 3)
        expect(want[0]).toMatchObject({ symbol: 'AAA', close: 500, trade_count: 99, exchange: 'XZ' });
    }
    expect((await get(`/v1/minute/${T0 + 5 * 60_000}`)).json.bars).toHaveLength(3);
    expect(await get('/v1/minute/2026-11-20T14:31:30Z')).toEqual({
      status: 400,
      json: {
        error: 'time must be a whole minute (seconds and milliseconds zero), as bars start',
        parameter: 'time',
      },
    });
    expect((await get('/v1/minute/2026-11-20T14:31:00Z?after=%20')).status).toBe(400);
  });

  test('GET /v1/symbols: paged', async () => {
    expect(await get('/v1/symbols')).toEqual({
      status: 200,
      json: { symbols: ['AAA', 'BBB', 'CCC', 'DDD', 'NY'], next: null },
    });
    expect(await pages('/v1/symbols?limit=2', 'symbols')).toEqual({
      items: ['AAA', 'BBB', 'CCC', 'DDD', 'NY'],
      count: 3,
    });
    expect((await get('/v1/symbols?limit=0')).status).toBe(400);
  });

  test('GET /v1/bars/{symbol}?interval=1m: trade_count and the extra column; the correction', async () => {
    const want = await expected(`SELECT * FROM (${bars1m()}) b WHERE symbol = 'AAA'`);
    expect(want).toHaveLength(30);
    expect(want[3]).toMatchObject({ close: 500, trade_count: 99, exchange: 'XZ' });
    expect(want[4]).toMatchObject({ close: 104, trade_count: 14, exchange: 'XA' });
    for (const q of ['', '&interval=1m']) {
      expect((await get(`/v1/bars/AAA?from=${minute(0)}&to=${minute(30)}${q}`)).json).toEqual({
        symbol: 'AAA',
        interval: '1m',
        from: minute(0),
        to: minute(30),
        bars: want,
        next: null,
      });
    }
    expect(await get('/v1/bars/AAA/latest?limit=2')).toEqual({
      status: 200,
      json: { symbol: 'AAA', bars: [want[29], want[28]] },
    });
    const bbb = (await get(`/v1/bars/BBB?from=${minute(0)}&to=${minute(30)}`)).json.bars as Json[];
    expect(bbb.map((b) => b.timestamp)).not.toContain(minute(5));
    expect(bbb).toHaveLength(29);
  });

  test('5m and 1h: equal to bars_1m aggregated in SQL, the current bucket included; paging', async () => {
    const from = T0 - 3_600_000;
    const to = T0 + 3_600_000;
    const five = await expected(
      aggregated('AAA', `to_timestamp(floor(extract(epoch from ts) / 300) * 300)`, from, to),
      false,
    );
    expect(five).toHaveLength(6);
    expect(five[0]).toMatchObject({ open: 100, close: 104, high: 501, trade_count: 10 + 11 + 12 + 99 + 14 });
    const url = `/v1/bars/AAA?interval=5m&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`;
    expect((await get(url)).json).toMatchObject({ interval: '5m', bars: five, next: null });
    expect(await pages(`${url}&limit=4`)).toEqual({ items: five, count: 2 });
    const hour = await expected(aggregated('AAA', `date_trunc('hour', ts, '${ZONE}')`, from, to), false);
    expect(hour).toHaveLength(1); // 14:30-14:59 UTC: New York's 09:00 hour
    expect((await get(url.replace('5m', '1h'))).json.bars).toEqual(hour);
    expect(await get(url.replace('5m', '15m'))).toEqual({
      status: 400,
      json: { error: 'interval must be one of 1m, 5m, 1h, 1d', parameter: 'interval' },
    });
  });

  test('1d buckets in America/New_York across both DST changes of 2026', async () => {
    for (const [start, days] of [
      [DST_RANGES[0]!, ['2026-03-07T05:00:00.000Z', '2026-03-08T05:00:00.000Z', '2026-03-09T04:00:00.000Z']],
      [DST_RANGES[1]!, ['2026-10-31T04:00:00.000Z', '2026-11-01T04:00:00.000Z', '2026-11-02T05:00:00.000Z']],
    ] as const) {
      const from = start - 86_400_000;
      const to = start + 4 * 86_400_000;
      const want = await expected(aggregated('NY', `date_trunc('day', ts, '${ZONE}')`, from, to), false);
      const r = await get(
        `/v1/bars/NY?interval=1d&from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`,
      );
      expect(r.json.bars).toEqual(want);
      const got = r.json.bars as Json[];
      expect(got.map((b) => b.timestamp)).toEqual(expect.arrayContaining([...days]));
      // The day of the change holds 23 (March) or 25 (November) hours of bars, three an hour.
      const changeDay = got.find((b) => b.timestamp === days[1])!;
      expect(changeDay.trade_count).toBe(start === DST_RANGES[0] ? 69 : 75);
    }
  });

  test('every answer above matches the OpenAPI document the service serves', async () => {
    const r = await get('/v1/openapi.json');
    expect(r.status).toBe(200);
    doc = r.json;
    const bar = (doc.components as { schemas: { Bar: { properties: Json } } }).schemas.Bar;
    expect(Object.keys(bar.properties)).toEqual(expect.arrayContaining(['trade_count', 'exchange']));
    const seen = new Set<string>();
    for (const a of answers) {
      if (a.path === '/v1/openapi.json') continue;
      expect({ path: a.path, errors: check(doc, responseSchema(doc, a.path, a.status), a.json) }).toEqual({
        path: a.path,
        errors: [],
      });
      seen.add(`${a.path.replace(/^\/v1\/(bars|minute)\/[^/]+/, '/v1/$1/x')} ${a.status}`);
    }
    expect([...seen].sort()).toEqual(
      expect.arrayContaining([
        '/v1/bars/x 200',
        '/v1/bars/x 400',
        '/v1/bars/x/latest 200',
        '/v1/latest 200',
        '/v1/latest 400',
        '/v1/minute/x 200',
        '/v1/minute/x 400',
        '/v1/symbols 200',
        '/v1/symbols 400',
      ]),
    );
    // And a check that can fail: a symbol that is not a string is refused.
    expect(
      check(doc, responseSchema(doc, '/v1/symbols', 200), { symbols: [1], next: null }).length,
    ).toBeGreaterThan(0);
  });
});
