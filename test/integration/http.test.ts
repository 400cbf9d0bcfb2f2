/**
 * The HTTP side against a real in-process service (real Kafka, real PostgreSQL): the read API with
 * exact answers and every 400, 404/405, liveness and readiness (including a database outage for this
 * service only, with no bar lost), and /metrics after a known load.
 */
import net from 'node:net';
import pg from 'pg';
import type { Service } from '../../src/service';
import { migrate } from '../../src/store/migrate';
import { PG, SERVICE_PG } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  sleep,
  uniqueName,
  waitFor,
  type StoredBar,
  type TestBar,
} from '../support/harness';

const T0 = Date.UTC(2026, 10, 20, 14, 30);
const at = (minute: number): number => T0 + minute * 60_000;
const iso = (ms: number): string => new Date(ms).toISOString();

const SYMBOL_RULE = 'symbol must be 1-32 printable ASCII characters without whitespace';
const NOT_ISO = (name: string, got: string) =>
  `${name}: value must be ISO-8601 with a zone (e.g. 2026-11-24T14:31:00Z) or epoch milliseconds, got ${JSON.stringify(got)}`;

interface Answer {
  status: number;
  contentType: string | null;
  allow: string | null;
  body: string;
}

async function request(port: number, path: string, method = 'GET'): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    allow: res.headers.get('allow'),
    body: await res.text(),
  };
}

/** A request line sent as is (fetch would normalise or refuse it); answers status line and body. */
function rawGet(port: number, target: string): Promise<{ statusLine: string; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
    );
    let out = '';
    socket.on('data', (d: Buffer) => (out += d.toString()));
    socket.on('error', reject);
    socket.on('end', () => {
      const head = out.slice(0, out.indexOf('\r\n\r\n'));
      const chunked = /transfer-encoding: chunked/i.test(head);
      let body = out.slice(head.length + 4);
      if (chunked)
        body = body
          .split('\r\n')
          .filter((_, i) => i % 2 === 1)
          .join('');
      resolve({ statusLine: head.split('\r\n')[0]!, body });
    });
  });
}

async function getJson(port: number, path: string): Promise<{ status: number; json: unknown }> {
  const r = await request(port, path);
  expect(r.contentType).toBe('application/json');
  return { status: r.status, json: JSON.parse(r.body) as unknown };
}

/** A bar as the read API renders it (the same key order, so raw bodies compare too). */
function rendered(b: TestBar) {
  return {
    symbol: b.symbol,
    timestamp: iso(Date.parse(b.timestamp)),
    open: b.open,
    high: b.high,
    low: b.low,
    close: b.close,
    volume: b.volume,
    vwap: b.vwap,
    trade_count: null,
  };
}

/** Every sample line of a /metrics text, keyed `name{labels}` exactly as exposed. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function readyBody(group: string, partitions: number) {
  return {
    status: 'ready',
    checks: {
      database: { ok: true, detail: 'reachable' },
      kafka: { ok: true, detail: `joined group ${group}, ${partitions} partition(s) assigned` },
      writes: { ok: true, detail: '0 message(s) buffered, 0 partition(s) paused' },
    },
  };
}

describe('read API, health, readiness and metrics', () => {
  const h = new Harness();
  const PARTITIONS = 3;
  // S0000 and S0001: 130 minutes each (more than the default latest limit of 100 and the 60-minute range cap).
  const bulk = makeBars(2, 130, T0, 7);
  const special: TestBar[] = [
    // vwap null, the largest safe volume, a price that is not a short decimal.
    {
      symbol: 'BRK.B',
      timestamp: iso(at(0)),
      open: 0.1,
      high: 0.30000000000000004,
      low: 0.1,
      close: 0.2,
      volume: Number.MAX_SAFE_INTEGER,
      vwap: null,
    },
    {
      symbol: 'BRK.B',
      timestamp: iso(at(1)),
      open: 0.2,
      high: 0.25,
      low: 0.15,
      close: 0.2,
      volume: 0,
      vwap: 0.2,
    },
    // A second version of the same key, later in the partition: it wins.
    {
      symbol: 'BRK.B',
      timestamp: iso(at(1)),
      open: 0.2,
      high: 0.26,
      low: 0.15,
      close: 0.21,
      volume: 7,
      vwap: 0.22,
    },
    // Timestamps with a zone offset in the message: stored and served as UTC.
    {
      symbol: 'BRK.B',
      timestamp: '2026-11-20T09:32:00-05:00',
      open: 1e-7,
      high: 12345.678901,
      low: 1e-7,
      close: 12345.678901,
      volume: 1,
      vwap: 100.5,
    },
    { symbol: 'A/B', timestamp: iso(at(0)), open: 5, high: 6, low: 4, close: 5.5, volume: 100, vwap: 5.25 },
    {
      symbol: 'A/B',
      timestamp: iso(at(1)),
      open: 5.5,
      high: 5.5,
      low: 5.5,
      close: 5.5,
      volume: 0,
      vwap: null,
    },
    {
      symbol: '^GSPC',
      timestamp: iso(at(0)),
      open: 6000,
      high: 6010.5,
      low: 5990.25,
      close: 6005,
      volume: 0,
      vwap: null,
    },
  ];
  const all = [...bulk, ...special];
  const rows = expectedTable(all);
  const symbols = ['S0000', 'S0001', 'BRK.B', 'A/B', '^GSPC'];
  const series = (symbol: string) =>
    [...rows.values()]
      .filter((b) => b.symbol === symbol)
      .sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  let service: Service;
  let port: number;

  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(PARTITIONS);
    await h.produceBars(all);
    service = await h.startService({ HTTP_MAX_RANGE: '1h', HTTP_MAX_LIMIT: '120' });
    port = service.port;
    await waitFor(
      'every bar to land',
      async () => (await h.rowCount()) === rows.size && (await h.caughtUp()),
    );
    expect(diffTables(rows, await h.storedBars())).toEqual([]);
  });
  afterAll(() => h.cleanup());

  test('range: oldest first, from inclusive, to exclusive; ISO-8601 and epoch-ms bounds answer alike', async () => {
    const expected = {
      symbol: 'S0000',
      interval: '1m',
      from: iso(at(10)),
      to: iso(at(15)),
      bars: series('S0000').slice(10, 15).map(rendered),
      next: null, // the whole range fits one page
    };
    const byIso = await request(port, `/v1/bars/S0000?from=${iso(at(10))}&to=${iso(at(15))}`);
    expect(byIso.status).toBe(200);
    expect(byIso.contentType).toBe('application/json');
    expect(byIso.body).toBe(JSON.stringify(expected));
    expect(JSON.parse(byIso.body)).toEqual(expected);
    expect(expected.bars).toHaveLength(5);
    expect(expected.bars[0]!.timestamp).toBe('2026-11-20T14:40:00.000Z');

    const sameAnswer = [
      `from=${at(10)}&to=${at(15)}`, // epoch milliseconds
      `from=${iso(at(10))}&to=${at(15)}`, // mixed
      `from=2026-11-20T14:40Z&to=2026-11-20T14:45:00.000Z`, // seconds omitted / fractional zero
      `from=2026-11-20T09:40:00-05:00&to=2026-11-20T09:45:00-0500`, // zone offsets
      `from=${encodeURIComponent('2026-11-20T20:10:00+05:30')}&to=${encodeURIComponent('2026-11-20T20:15:00+05:30')}`,
    ];
    for (const q of sameAnswer) {
      expect({ q, ...(await request(port, `/v1/bars/S0000?${q}`)) }).toEqual({ q, ...byIso });
    }
  });

  test('range bounds need no minute alignment; the answer is exact at millisecond edges', async () => {
    const s = series('S0001').map(rendered);
    const range = async (from: number, to: number) => {
      const r = await getJson(port, `/v1/bars/S0001?from=${from}&to=${to}`);
      expect(r.status).toBe(200);
      return r.json as { from: string; to: string; bars: unknown[] };
    };
    // Seconds inside the minute (allowed for query bounds, unlike bar timestamps).
    const r1 = await getJson(port, `/v1/bars/S0001?from=2026-11-20T14:39:30Z&to=2026-11-20T14:44:30Z`);
    expect(r1).toEqual({
      status: 200,
      json: {
        symbol: 'S0001',
        interval: '1m',
        from: '2026-11-20T14:39:30.000Z',
        to: '2026-11-20T14:44:30.000Z',
        bars: s.slice(10, 15),
        next: null,
      },
    });
    expect((await range(at(10) + 1, at(15))).bars).toEqual(s.slice(11, 15)); // from just after a bar
    expect((await range(at(10), at(10) + 1)).bars).toEqual(s.slice(10, 11)); // a 1 ms range
    expect((await range(at(10) - 1, at(10))).bars).toEqual([]); // to is exclusive
    expect((await range(at(10), at(15) + 1)).bars).toEqual(s.slice(10, 16));
    // The widest range allowed (HTTP_MAX_RANGE=1h) answers all 60 bars in it.
    const widest = await range(at(0), at(60));
    expect(widest.bars).toHaveLength(60);
    expect(widest.bars).toEqual(s.slice(0, 60));
    // Past the data, and a symbol with no data: 200 with no bars.
    expect((await range(at(200), at(210))).bars).toEqual([]);
    expect(await getJson(port, `/v1/bars/NOPE?from=${at(0)}&to=${at(10)}`)).toEqual({
      status: 200,
      json: { symbol: 'NOPE', interval: '1m', from: iso(at(0)), to: iso(at(10)), bars: [], next: null },
    });
  });

  test('a range longer than a page is paged: following `next` yields every bar once, in order', async () => {
    const pages: { bars: unknown[]; next: string | null }[] = [];
    let link: string | null = `/v1/bars/S0000?from=${iso(at(0))}&to=${iso(at(60))}&limit=25`;
    while (link) {
      const r = await getJson(port, link);
      expect(r.status).toBe(200);
      const page = r.json as { from: string; to: string; bars: unknown[]; next: string | null };
      expect(page.to).toBe(iso(at(60)));
      pages.push(page);
      link = page.next;
    }
    expect(pages.map((p) => p.bars.length)).toEqual([25, 25, 10]);
    expect(pages.map((p) => p.next)).toEqual([
      `/v1/bars/S0000?from=${iso(at(25))}&to=${iso(at(60))}&limit=25`,
      `/v1/bars/S0000?from=${iso(at(50))}&to=${iso(at(60))}&limit=25`,
      null,
    ]);
    expect(pages.flatMap((p) => p.bars)).toEqual(series('S0000').slice(0, 60).map(rendered));
    // A page exactly as long as what is left has no next; the default page is HTTP_MAX_LIMIT (120).
    expect((await getJson(port, `/v1/bars/S0000?from=${at(50)}&to=${at(60)}&limit=10`)).json).toMatchObject({
      next: null,
    });
    const whole = (await getJson(port, `/v1/bars/S0000?from=${at(0)}&to=${at(60)}`)).json as {
      bars: unknown[];
    };
    expect(whole.bars).toHaveLength(60);
    // The next link escapes the symbol.
    const ab = (await getJson(port, `/v1/bars/A%2FB?from=${at(0)}&to=${at(2)}&limit=1`)).json as {
      next: string;
    };
    expect(ab.next).toBe(`/v1/bars/A%2FB?from=${iso(at(1))}&to=${iso(at(2))}&limit=1`);
  });

  test('latest: newest first, default 100, limit N up to HTTP_MAX_LIMIT', async () => {
    const newestFirst = series('S0001').map(rendered).reverse();
    const dflt = await request(port, '/v1/bars/S0001/latest');
    expect(dflt.status).toBe(200);
    expect(dflt.body).toBe(JSON.stringify({ symbol: 'S0001', bars: newestFirst.slice(0, 100) }));
    expect(JSON.parse(dflt.body).bars[0].timestamp).toBe(iso(at(129)));
    expect(JSON.parse(dflt.body).bars[99].timestamp).toBe(iso(at(30)));

    expect(await getJson(port, '/v1/bars/S0001/latest?limit=3')).toEqual({
      status: 200,
      json: { symbol: 'S0001', bars: newestFirst.slice(0, 3) },
    });
    expect(await getJson(port, '/v1/bars/S0001/latest?limit=120')).toEqual({
      status: 200,
      json: { symbol: 'S0001', bars: newestFirst.slice(0, 120) },
    });
    expect(await getJson(port, '/v1/bars/S0001/latest?limit=001')).toEqual({
      status: 200,
      json: { symbol: 'S0001', bars: newestFirst.slice(0, 1) },
    });
    expect(await getJson(port, '/v1/bars/S0001/latest?limit=')).toEqual({
      status: 200,
      json: { symbol: 'S0001', bars: newestFirst.slice(0, 100) },
    });
    expect(await getJson(port, '/v1/bars/NOPE/latest')).toEqual({
      status: 200,
      json: { symbol: 'NOPE', bars: [] },
    });
  });

  test('numbers stay JSON numbers, vwap null stays null, the latest version of a key is served', async () => {
    const r = await request(port, '/v1/bars/BRK.B/latest?limit=10');
    expect(r.status).toBe(200);
    // The values as PostgreSQL writes them (src/store/readBars.ts): shortest exact, as JSON.stringify
    // would, but an exponent of two digits at least (1e-07): the same JSON number.
    expect(r.body).toBe(
      '{"symbol":"BRK.B","bars":[' +
        '{"symbol":"BRK.B","timestamp":"2026-11-20T14:32:00.000Z","open":1e-07,"high":12345.678901,"low":1e-07,"close":12345.678901,"volume":1,"vwap":100.5,"trade_count":null},' +
        '{"symbol":"BRK.B","timestamp":"2026-11-20T14:31:00.000Z","open":0.2,"high":0.26,"low":0.15,"close":0.21,"volume":7,"vwap":0.22,"trade_count":null},' +
        '{"symbol":"BRK.B","timestamp":"2026-11-20T14:30:00.000Z","open":0.1,"high":0.30000000000000004,"low":0.1,"close":0.2,"volume":9007199254740991,"vwap":null,"trade_count":null}' +
        ']}',
    );
    const bars = (JSON.parse(r.body) as { bars: Record<string, unknown>[] }).bars;
    expect(bars[2]!.volume).toBe(Number.MAX_SAFE_INTEGER);
    expect(bars[2]!.vwap).toBeNull();
    expect(bars[0]!.open).toBe(1e-7);
    for (const b of bars) {
      expect(b.timestamp).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00\.000Z$/);
      for (const k of ['open', 'high', 'low', 'close', 'volume']) expect(typeof b[k]).toBe('number');
    }
  });

  test('symbols with URL-encoded characters', async () => {
    const brk = await request(port, '/v1/bars/BRK.B/latest');
    expect(brk.status).toBe(200);
    expect(await request(port, '/v1/bars/BRK%2EB/latest')).toEqual(brk);
    expect(await request(port, '/v1/bars/BRK%2eB/latest')).toEqual(brk);

    const ab = { symbol: 'A/B', bars: series('A/B').map(rendered).reverse() };
    expect(ab.bars).toHaveLength(2);
    expect(ab.bars[0]!.vwap).toBeNull();
    expect(await getJson(port, '/v1/bars/A%2FB/latest')).toEqual({ status: 200, json: ab });
    expect(await getJson(port, '/v1/bars/A%2fB/latest')).toEqual({ status: 200, json: ab });
    expect(await getJson(port, `/v1/bars/${encodeURIComponent('A/B')}?from=${at(0)}&to=${at(2)}`)).toEqual({
      status: 200,
      json: {
        symbol: 'A/B',
        interval: '1m',
        from: iso(at(0)),
        to: iso(at(2)),
        bars: series('A/B').map(rendered),
        next: null,
      },
    });
    // An unencoded slash is a path separator: no such route.
    expect(await getJson(port, '/v1/bars/A/B/latest')).toEqual({ status: 404, json: { error: 'not found' } });
    expect(await getJson(port, `/v1/bars/A/B?from=${at(0)}&to=${at(2)}`)).toEqual({
      status: 404,
      json: { error: 'not found' },
    });

    const gspc = { status: 200, json: { symbol: '^GSPC', bars: series('^GSPC').map(rendered) } };
    expect(await getJson(port, '/v1/bars/^GSPC/latest')).toEqual(gspc);
    expect(await getJson(port, '/v1/bars/%5EGSPC/latest')).toEqual(gspc);
    // Symbols are case-sensitive.
    expect(await getJson(port, '/v1/bars/brk.b/latest')).toEqual({
      status: 200,
      json: { symbol: 'brk.b', bars: [] },
    });
  });

  test('every bad input is a 400 whose body names the parameter and the rule', async () => {
    const range = `from=${at(0)}&to=${at(10)}`;
    const cases: [string, string, string][] = [
      // symbol (checked first)
      [`/v1/bars/${'S'.repeat(33)}/latest`, 'symbol', SYMBOL_RULE],
      [`/v1/bars/${'S'.repeat(33)}?${range}`, 'symbol', SYMBOL_RULE],
      ['/v1/bars/A%20B/latest', 'symbol', SYMBOL_RULE],
      ['/v1/bars/A B/latest', 'symbol', SYMBOL_RULE], // fetch sends it as %20
      ['/v1/bars/A%09B/latest', 'symbol', SYMBOL_RULE],
      ['/v1/bars/%C3%89/latest', 'symbol', SYMBOL_RULE],
      ['/v1/bars/%00/latest', 'symbol', SYMBOL_RULE],
      ['/v1/bars/%E9/latest', 'symbol', 'symbol is not valid percent-encoding'],
      ['/v1/bars/%/latest', 'symbol', 'symbol is not valid percent-encoding'],
      ['/v1/bars/A%20B/latest?limit=0', 'symbol', SYMBOL_RULE],
      // from / to missing or unparseable (from is checked before to)
      [`/v1/bars/S0000?to=${at(10)}`, 'from', 'from is required (ISO-8601 with zone, or epoch milliseconds)'],
      [
        `/v1/bars/S0000?from=&to=${at(10)}`,
        'from',
        'from is required (ISO-8601 with zone, or epoch milliseconds)',
      ],
      [`/v1/bars/S0000?from=${at(0)}`, 'to', 'to is required (ISO-8601 with zone, or epoch milliseconds)'],
      ['/v1/bars/S0000', 'from', 'from is required (ISO-8601 with zone, or epoch milliseconds)'],
      [`/v1/bars/S0000?from=yesterday&to=${at(10)}`, 'from', NOT_ISO('from', 'yesterday')],
      [`/v1/bars/S0000?from=yesterday&to=tomorrow`, 'from', NOT_ISO('from', 'yesterday')],
      [`/v1/bars/S0000?from=${at(0)}&to=2026-11-20T14:40:00`, 'to', NOT_ISO('to', '2026-11-20T14:40:00')],
      [`/v1/bars/S0000?from=${at(0)}.5&to=${at(10)}`, 'from', NOT_ISO('from', `${at(0)}.5`)],
      [
        `/v1/bars/S0000?from=2026-02-30T00:00:00Z&to=${at(10)}`,
        'from',
        'from: value "2026-02-30T00:00:00Z" is not a valid date-time',
      ],
      [
        `/v1/bars/S0000?from=1899-12-31T23:00:00Z&to=${at(10)}`,
        'from',
        'from: value 1899-12-31T23:00:00.000Z is before 1900-01-01',
      ],
      // An unencoded "+" in a query string is a space (form encoding): the offset must be sent as %2B.
      [
        `/v1/bars/S0000?from=2026-11-20T20:00:00+05:30&to=${at(10)}`,
        'from',
        NOT_ISO('from', '2026-11-20T20:00:00 05:30'),
      ],
      // the range
      [`/v1/bars/S0000?from=${at(10)}&to=${at(0)}`, 'to', 'to must be later than from'],
      [`/v1/bars/S0000?from=${at(10)}&to=${at(10)}`, 'to', 'to must be later than from'],
      [
        `/v1/bars/S0000?from=${at(0)}&to=${at(60) + 1}`,
        'to',
        'the range from..to must not exceed 60 minutes',
      ],
      [
        `/v1/bars/S0000?from=${iso(at(0))}&to=${iso(at(61))}`,
        'to',
        'the range from..to must not exceed 60 minutes',
      ],
      // limit
      [`/v1/bars/S0000?from=${at(0)}&to=${at(10)}&limit=121`, 'limit', 'limit must be from 1 to 120'],
      [`/v1/bars/S0000?from=${at(0)}&to=${at(10)}&limit=x`, 'limit', 'limit must be a positive integer'],
      ['/v1/bars/S0000/latest?limit=0', 'limit', 'limit must be from 1 to 120'],
      ['/v1/bars/S0000/latest?limit=121', 'limit', 'limit must be from 1 to 120'],
      ['/v1/bars/S0000/latest?limit=99999999999999999999', 'limit', 'limit must be from 1 to 120'],
      ['/v1/bars/S0000/latest?limit=abc', 'limit', 'limit must be a positive integer'],
      ['/v1/bars/S0000/latest?limit=-1', 'limit', 'limit must be a positive integer'],
      ['/v1/bars/S0000/latest?limit=1.5', 'limit', 'limit must be a positive integer'],
      ['/v1/bars/S0000/latest?limit=1e2', 'limit', 'limit must be a positive integer'],
    ];
    for (const [path, parameter, error] of cases) {
      const r = await request(port, path);
      expect({
        path,
        status: r.status,
        contentType: r.contentType,
        body: JSON.parse(r.body) as unknown,
      }).toEqual({ path, status: 400, contentType: 'application/json', body: { error, parameter } });
    }
  });

  test('404 for unknown paths, 405 (with Allow) for other methods', async () => {
    for (const path of [
      '/',
      '/v1',
      '/v1/bars',
      '/v1/bars/',
      '/v1/bars/S0000/',
      '/v1/bars/S0000/latest/',
      '/v1/bars/S0000/latest/extra',
      '/v1/bars/S0000/oldest',
      '/v2/bars/S0000/latest',
      '/healthz/',
      '/metrics/x',
      '/READYZ',
    ]) {
      const r = await request(port, path);
      expect({ path, status: r.status, body: r.body }).toEqual({
        path,
        status: 404,
        body: '{"error":"not found"}',
      });
    }
    for (const [method, path] of [
      ['POST', '/v1/bars/S0000/latest'],
      ['POST', `/v1/bars/S0000?from=${at(0)}&to=${at(10)}`],
      ['PUT', '/healthz'],
      ['DELETE', '/v1/bars/S0000/latest'],
      ['PATCH', '/metrics'],
      ['POST', '/no/such/path'],
    ] as const) {
      expect({ method, path, ...(await request(port, path, method)) }).toEqual({
        method,
        path,
        status: 405,
        contentType: 'application/json',
        allow: 'GET, HEAD',
        body: '{"error":"only GET is supported"}',
      });
    }
    const head = await request(port, '/healthz', 'HEAD');
    expect({ status: head.status, body: head.body }).toEqual({ status: 200, body: '' });
  });

  test('a request target that is not a URL is a 400, not a 500', async () => {
    for (const target of ['http://[/healthz', '//[', 'http://host:99999/v1/bars/S0000/latest']) {
      expect({ target, ...(await rawGet(port, target)) }).toEqual({
        target,
        statusLine: 'HTTP/1.1 400 Bad Request',
        body: '{"error":"the request target is not a valid URL"}',
      });
    }
    // Absolute-form targets are served like origin-form ones.
    expect(await rawGet(port, 'http://example.invalid/v1/bars/%5EGSPC/latest?limit=1')).toEqual({
      statusLine: 'HTTP/1.1 200 OK',
      body: JSON.stringify({ symbol: '^GSPC', bars: series('^GSPC').map(rendered) }),
    });
  });

  test('/healthz and /readyz once joined', async () => {
    expect(await getJson(port, '/healthz')).toEqual({
      status: 200,
      json: { status: 'ok', checks: { eventLoop: { ok: true, detail: 'responding' } } },
    });
    expect(await getJson(port, '/readyz')).toEqual({ status: 200, json: readyBody(h.group, PARTITIONS) });
  });

  test('/metrics after the bars landed: exact counts, no symbol in any line', async () => {
    // The pool gauges and bar_writer_ready refresh every 5 s, the lag every 10 s.
    const text = await waitFor(
      'the periodic gauges',
      async () => {
        const t = (await httpGet(port, '/metrics')).body;
        const m = samples(t);
        const lagsZero = [0, 1, 2].every((p) => m.get(`kafka_consumer_lag{partition="${p}"}`) === 0);
        return m.has('db_pool_connections{state="total"}') && m.get('bar_writer_ready') === 1 && lagsZero
          ? t
          : null;
      },
      30_000,
      250,
    );
    const m = samples(text);
    const messages = all.length; // 267 messages, 266 keys (one key twice)
    expect(messages).toBe(rows.size + 1);
    const writes = metricValue(text, 'timescale_write_total');
    expect({
      consumed: metricValue(text, 'bars_consumed_total'),
      written: metricValue(text, 'bars_written_total'),
      batchSizeCount: metricValue(text, 'timescale_write_batch_size_count'),
      batchSizeSum: metricValue(text, 'timescale_write_batch_size_sum'),
      latencyCount: metricValue(text, 'timescale_write_latency_seconds_count'),
      e2eCount: metricValue(text, 'bars_end_to_end_delay_seconds_count'),
      queueDepth: m.get('timescale_write_queue_depth'),
      assigned: m.get('kafka_assigned_partitions'),
      paused: m.get('kafka_paused_partitions'),
      rejected: metricValue(text, 'bars_rejected_total'),
      deadLettered: m.get('bars_dead_lettered_total'),
      skipped: m.get('bars_skipped_already_written_total'),
      writeErrors: metricValue(text, 'timescale_write_errors_total'),
      commitFailures: metricValue(text, 'kafka_offset_commits_total', { result: 'failed' }),
      poolWaiting: m.get('db_pool_connections{state="waiting"}'),
      ready: m.get('bar_writer_ready'),
    }).toEqual({
      consumed: messages,
      written: messages,
      batchSizeCount: writes,
      batchSizeSum: messages,
      latencyCount: writes,
      e2eCount: messages,
      queueDepth: 0,
      assigned: PARTITIONS,
      paused: 0,
      rejected: 0,
      deadLettered: 0,
      skipped: 0,
      writeErrors: 0,
      commitFailures: 0,
      poolWaiting: 0,
      ready: 1,
    });
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThanOrEqual(messages);
    expect(metricValue(text, 'kafka_rebalances_total')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'kafka_offset_commits_total', { result: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(m.get('db_pool_connections{state="total"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('db_pool_connections{state="total"}')).toBeLessThanOrEqual(10);
    expect(m.has('db_pool_connections{state="idle"}')).toBe(true);
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect([...m.keys()].filter((k) => k.startsWith('kafka_consumer_lag')).sort()).toEqual([
      'kafka_consumer_lag{partition="0"}',
      'kafka_consumer_lag{partition="1"}',
      'kafka_consumer_lag{partition="2"}',
    ]);
    // No label carries a symbol: not in any line, sample or help.
    for (const symbol of symbols) {
      expect({ symbol, lines: text.split('\n').filter((l) => l.includes(symbol)) }).toEqual({
        symbol,
        lines: [],
      });
    }
  });
});

describe('read API limits: token, saturation, timeouts, connections', () => {
  const h = new Harness();
  const TOKEN = 'rd-T0ken-9f8e7d';
  const auth = { authorization: `Bearer ${TOKEN}` };
  let child: ReturnType<Harness['spawnService']>;
  let port: number;

  const get = async (path: string, headers: Record<string, string> = auth) => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
    return {
      status: r.status,
      retryAfter: r.headers.get('retry-after'),
      wwwAuthenticate: r.headers.get('www-authenticate'),
      body: JSON.parse(await r.text()) as unknown,
    };
  };

  /** Opens a socket; resolves once it is connected. */
  const connect = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });

  /** What a socket receives until the server closes it, and how long that took. */
  const untilClosed = (s: net.Socket) =>
    new Promise<{ data: string; ms: number }>((resolve) => {
      const t0 = Date.now();
      let data = '';
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve({ data, ms: Date.now() - t0 }));
    });

  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
    await h.produceBars(makeBars(1, 5, T0, 3));
    child = h.spawnService({
      HTTP_READ_TOKEN: TOKEN,
      DB_READ_MAX_CONNECTIONS: '1',
      DB_READ_TIMEOUT: '2s',
      HTTP_MAX_QUEUED_READS: '1',
      HTTP_REQUEST_TIMEOUT: '2s',
      HTTP_MAX_CONNECTIONS: '12',
    });
    port = await h.portOf(child);
    await waitFor('the bars to land', async () => (await h.rowCount()) === 5 && (await h.caughtUp()));
  });
  afterAll(() => h.cleanup());

  test('HTTP_READ_TOKEN: /v1 needs the bearer token; probes and metrics stay open; never logged', async () => {
    const path = `/v1/bars/S0000?from=${at(0)}&to=${at(5)}`;
    const denied = {
      status: 401,
      retryAfter: null,
      wwwAuthenticate: 'Bearer realm="bar-writer"',
      body: { error: 'the read API needs an Authorization: Bearer token' },
    };
    expect(await get(path, {})).toEqual(denied);
    expect(await get(path, { authorization: `Bearer ${TOKEN}x` })).toEqual(denied);
    expect(await get('/v1/bars/S0000/latest', { authorization: `Basic ${TOKEN}` })).toEqual(denied);
    // Bad parameters without the token: still 401 (nothing is said about the API to strangers).
    expect((await get('/v1/bars/%20/latest', {})).status).toBe(401);
    const ok = await get(path);
    expect(ok.status).toBe(200);
    expect((ok.body as { bars: unknown[] }).bars).toHaveLength(5);
    for (const open of ['/healthz', '/readyz']) expect((await get(open, {})).status).toBe(200);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(metricValue(text, 'bar_writer_http_reads_total', { result: 'unauthorized' })).toBe(4);
    expect(text).not.toContain(TOKEN);
    expect(child.output()).toContain('"readToken":"[redacted]"');
    expect(child.output()).not.toContain(TOKEN);
  });

  test('reads saturated: 503 with Retry-After at once; a read past DB_READ_TIMEOUT is a 503; then 200 again', async () => {
    // A lock that blocks every read of bars_1m (and, here, the writer too: no bars are produced).
    const blocker = await h.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE "${h.schema}".bars_1m IN ACCESS EXCLUSIVE MODE`);
      const path = '/v1/bars/S0000/latest';
      const running = get(path); // takes the one read connection and waits for the lock
      let runningSettled = false;
      void running.finally(() => (runningSettled = true));
      // Polled from another session: inside the blocker's transaction pg_stat_activity is a snapshot
      // taken at its first read.
      await waitFor('the read to wait for the lock', async () => {
        const r = await h.pool.query(
          `SELECT 1 FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE 'BEGIN READ ONLY;%' AND query LIKE $1`,
          [`%"${h.schema}".bars_1m%`],
        );
        return r.rows.length === 1;
      });
      const queued = get(path); // the one queue place
      await sleep(100);
      const refused = await get(path);
      expect(refused).toEqual({
        status: 503,
        retryAfter: '1',
        wwwAuthenticate: null,
        body: { error: 'too many reads in progress; retry later' },
      });
      expect(runningSettled).toBe(false); // refused at once, while the first still waits
      expect(await running).toEqual({
        status: 503,
        retryAfter: '1',
        wwwAuthenticate: null,
        body: { error: 'the database is not available; retry later' },
      });
      // The queued one either timed out in the queue or got the slot and then its own timeout.
      const second = await queued;
      expect([second.status, second.retryAfter]).toEqual([503, '1']);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    expect((await get('/v1/bars/S0000/latest')).status).toBe(200);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metricValue(text, 'bar_writer_http_reads_total', { result: 'overloaded' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(metricValue(text, 'bar_writer_http_reads_total', { result: 'failed' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'db_read_pool_connections', { state: 'total' })).toBeLessThanOrEqual(1);
  });

  test('a request whose headers never finish is answered 408 and closed (HTTP_REQUEST_TIMEOUT=2s)', async () => {
    const s = await connect();
    const closed = untilClosed(s);
    s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n'); // no blank line: the headers never end
    const { data, ms } = await closed;
    expect(data).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeGreaterThanOrEqual(1500);
  });

  test('HTTP_MAX_CONNECTIONS: held connections never stop probes (a reserve answers them); beyond it all, refused', async () => {
    const held: net.Socket[] = [];
    try {
      // Twelve connections, each with half a request: every ordinary connection is taken.
      for (let i = 0; i < 12; i++) {
        const s = await connect();
        s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
        held.push(s);
      }
      // Probes still answer, on connections from the reserve; a read there is told to come back.
      for (const probe of ['/healthz', '/readyz', '/metrics']) {
        expect([probe, (await fetch(`http://127.0.0.1:${port}${probe}`)).status]).toEqual([
          probe,
          probe === '/readyz' ? 200 : 200,
        ]);
      }
      // (On a new connection: fetch would reuse a kept-alive ordinary one.)
      const reader = await connect();
      const answer = untilClosed(reader);
      reader.write(
        `GET /v1/bars/S0000/latest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`,
      );
      expect((await answer).data).toMatch(/^HTTP\/1\.1 503 [^]*retry-after: 1[^]*too many connections/i);
      // A reserved connection that sends nothing is closed within its short wait, saying nothing.
      const idle = await connect();
      const { data, ms } = await untilClosed(idle);
      expect(data).toBe('');
      expect(ms).toBeLessThan(5000);
      // Beyond the reserve too: refused at once.
      const reserve: net.Socket[] = [];
      for (let i = 0; i < 8; i++) reserve.push(await connect());
      held.push(...reserve);
      const extra = await connect();
      expect((await untilClosed(extra)).data).toBe('');
      // The held ones are served.
      const first = held[0]!;
      const answered = untilClosed(first);
      first.write('Connection: close\r\n\r\n');
      expect((await answered).data).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const s of held) s.destroy();
    }
    await waitFor(
      'a free connection',
      async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200,
    );
  });
});

describe('HTTP_READ_API=false', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(1);
  });
  afterAll(() => h.cleanup());

  test('/v1/bars answers 404; health, readiness and metrics still answer', async () => {
    const bars = makeBars(2, 3, T0, 9);
    await h.produceBars(bars);
    const service = await h.startService({ HTTP_READ_API: 'false' });
    await waitFor(
      'the bars to land',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
    );
    for (const path of [
      '/v1/bars/S0000/latest',
      `/v1/bars/S0000?from=${at(0)}&to=${at(3)}`,
      '/v1/bars/A%20B/latest', // not even validated
    ]) {
      expect({ path, ...(await getJson(service.port, path)) }).toEqual({
        path,
        status: 404,
        json: { error: 'not found' },
      });
    }
    expect((await httpGet(service.port, '/healthz')).status).toBe(200);
    expect(await getJson(service.port, '/readyz')).toEqual({ status: 200, json: readyBody(h.group, 1) });
    const metrics = await httpGet(service.port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metricValue(metrics.body, 'bars_written_total')).toBe(bars.length);
  });
});

describe('readiness follows the database', () => {
  const h = new Harness();
  const database = uniqueName('bw_http');
  const PARTITIONS = 2;

  /** A short-lived connection to the dedicated database (a pool would keep terminated clients around). */
  async function onDb<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ ...PG, database });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async function storedBars(): Promise<Map<string, StoredBar>> {
    const r = await onDb((c) =>
      c.query<Omit<StoredBar, 'timestamp' | 'volume'> & { ts: Date; volume: string }>(
        `SELECT symbol, "timestamp" AS ts, open, high, low, close, volume::text AS volume, vwap FROM "${h.schema}".bars_1m`,
      ),
    );
    const out = new Map<string, StoredBar>();
    for (const row of r.rows) {
      const timestamp = row.ts.toISOString();
      const { symbol, open, high, low, close, vwap } = row;
      out.set(`${symbol}|${timestamp}`, {
        symbol,
        timestamp,
        open,
        high,
        low,
        close,
        volume: Number(row.volume),
        vwap,
      });
    }
    return out;
  }

  const rowCount = async () =>
    onDb(async (c) => {
      const r = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${h.schema}".bars_1m`);
      return Number(r.rows[0]!.n);
    });

  const setAllowConnections = async (allow: boolean) => {
    await h.pool.query(`ALTER DATABASE "${database}" WITH ALLOW_CONNECTIONS ${allow}`);
  };

  beforeAll(async () => {
    await h.pool.query(`CREATE DATABASE "${database}"`);
    h.onCleanup(async () => {
      await h.pool.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    });
    await onDb((c) => migrate(c, h.schema));
    await h.createTopics(PARTITIONS);
  });
  afterAll(() => h.cleanup());

  test('503 naming the database while it is away, 200 after; bars produced meanwhile land', async () => {
    const before = makeBars(20, 3, Date.UTC(2026, 10, 21, 14, 30), 11); // 60 bars
    const during = makeBars(20, 3, Date.UTC(2026, 10, 21, 14, 33), 12); // 60 more, the next 3 minutes
    await h.produceBars(before);
    const service = await h.startService({
      DB_NAME: database,
      // Through PgBouncer a write waits for a server connection until the query timeout (this + 5 s).
      DB_STATEMENT_TIMEOUT: '3s',
      BARS_DB_MAX_RETRIES: '1',
      BARS_DB_RETRY_DELAY: '50ms',
      BARS_DB_RETRY_MAX_DELAY: '500ms',
    });
    const port = service.port;
    await waitFor(
      'the first bars to land',
      async () => (await rowCount()) === before.length && (await h.caughtUp()),
    );
    const ready = await waitFor('ready', async () => {
      const r = await getJson(port, '/readyz');
      return r.status === 200 ? r : null;
    });
    expect(ready.json).toEqual(readyBody(h.group, PARTITIONS));
    const committedBefore = await h.committedOffsets();

    // Take the database away from this service only: no new connection, existing ones terminated.
    await setAllowConnections(false);
    await h.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [
      database,
    ]);
    const refused = `database "${database}" is not currently accepting connections`;
    // Directly, PostgreSQL's own refusal; through PgBouncer, the pooler's words for it (its login retry,
    // or no answer in time).
    const direct = SERVICE_PG === PG;
    // /readyz names the error's class and code, never the database's words (they name the database).
    const awayDetail = direct
      ? 'unreachable (transient error 55000; the service log says more)'
      : expect.stringMatching(/^unreachable \(.+\)$/);
    // The database check is cached for 2 s: poll.
    const away = await waitFor(
      'readiness to report the database away',
      async () => {
        const r = await getJson(port, '/readyz');
        return r.status === 503 ? r : null;
      },
      15_000,
    );
    expect(away.json).toEqual({
      status: 'not ready',
      checks: {
        database: { ok: false, detail: awayDetail },
        kafka: { ok: true, detail: `joined group ${h.group}, ${PARTITIONS} partition(s) assigned` },
        writes: { ok: true, detail: '0 message(s) buffered, 0 partition(s) paused' },
      },
    });

    // Bars produced during the outage are taken and their writes fail: the failing partitions hold
    // nothing and fetch their batch again for each retry; nothing is committed.
    await h.produceBars(during);
    const stuck = await waitFor(
      'every outage bar taken and the writes check failing too',
      async () => {
        if (metricValue((await httpGet(port, '/metrics')).body, 'bars_consumed_total') < 120) return null;
        const r = await getJson(port, '/readyz');
        const checks = (r.json as { checks: Record<string, { ok: boolean; detail: string }> }).checks;
        return r.status === 503 && !checks.writes!.ok && !checks.writes!.detail.includes(refused)
          ? checks
          : null;
      },
      30_000,
    );
    expect(stuck.writes!.detail).toMatch(/^partition\(s\) \d(, \d)* failing past 1 retries \(\w+ error/);
    expect(stuck.database).toEqual({ ok: false, detail: awayDetail });
    expect(stuck.kafka!.ok).toBe(true);
    const duringOutage = (await httpGet(port, '/metrics')).body;
    expect({
      written: metricValue(duringOutage, 'bars_written_total'),
      ready: metricValue(duringOutage, 'bar_writer_ready'),
    }).toEqual({ written: 60, ready: 0 });
    expect(metricValue(duringOutage, 'bars_consumed_total')).toBeGreaterThanOrEqual(120); // refetched per retry
    expect(metricValue(duringOutage, 'timescale_write_queue_depth')).toBeLessThanOrEqual(60);
    expect(metricValue(duringOutage, 'timescale_write_errors_total')).toBeGreaterThanOrEqual(2);
    expect(await h.committedOffsets()).toEqual(committedBefore);
    // A read while the database is away: 503 (retry later), with no detail leaked.
    expect(await request(port, '/v1/bars/S0000/latest')).toEqual({
      status: 503,
      contentType: 'application/json',
      allow: null,
      body: '{"error":"the database is not available; retry later"}',
    });

    // Give it back: ready again, and every bar lands exactly once.
    await setAllowConnections(true);
    const back = await waitFor(
      'readiness back',
      async () => {
        const r = await getJson(port, '/readyz');
        return r.status === 200 ? r : null;
      },
      30_000,
    );
    expect(back.json).toEqual(readyBody(h.group, PARTITIONS));
    await waitFor(
      'the outage bars to land',
      async () => (await rowCount()) === before.length + during.length && (await h.caughtUp()),
      30_000,
    );
    expect(diffTables(expectedTable([...before, ...during]), await storedBars())).toEqual([]);
    const after = await waitFor(
      'bar_writer_ready back to 1',
      async () => {
        const t = (await httpGet(port, '/metrics')).body;
        return metricValue(t, 'bar_writer_ready') === 1 ? t : null;
      },
      15_000,
    );
    expect({
      written: metricValue(after, 'bars_written_total'),
      e2eCount: metricValue(after, 'bars_end_to_end_delay_seconds_count'),
      queueDepth: metricValue(after, 'timescale_write_queue_depth'),
    }).toEqual({ written: 120, e2eCount: 120, queueDepth: 0 });
    // The read side serves the outage bars too.
    const s0 = [...expectedTable([...before, ...during]).values()]
      .filter((b) => b.symbol === 'S0000')
      .sort((a, b) => b.timestamp.localeCompare(a.timestamp));
    expect(await getJson(port, '/v1/bars/S0000/latest?limit=6')).toEqual({
      status: 200,
      json: { symbol: 'S0000', bars: s0.map(rendered) },
    });
    expect(await service.stop()).toBe(true);
  });
});
