/**
 * Readers never hurt the writer (issue 14's reproduction): bars_1m holds one symbol over 31 days; 200
 * clients ask the read API for the widest range it allows and never read the answer. The service (run
 * as operators run it, `node dist/main.js`, with its default limits) must keep its memory well under
 * 400 MB, close at least 90% of those sockets within 90 s, and land the bars produced meanwhile on time.
 */
import fs from 'node:fs';
import net from 'node:net';
import { Harness, metricValue, sleep, uniqueName, waitFor } from '../support/harness';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 9, 1);
const CLIENTS = 200;

/** Sockets to `port` (any state but LISTEN) that process `pid` still holds open: from /proc. */
function heldSockets(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = parseInt(cols[1]!.split(':')[1]!, 16);
      if (localPort === port && cols[3] !== '0A') inodes.add(cols[9]!);
    }
  }
  let held = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) held++;
    } catch {
      // the fd closed while we looked
    }
  }
  return held;
}

/** Peak resident set size of `pid` so far, in MB (VmHWM). */
function peakRssMb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

/** Connects, sends one GET and never reads: the socket is paused before any data arrives. */
function stalledClient(port: number, target: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.pause();
    socket.on('error', () => undefined); // a reset from the server is the expected end
    socket.once('connect', () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, (err) =>
        err ? reject(err) : resolve(socket),
      );
    });
  });
}

describe('readers never hurt the writer', () => {
  const h = new Harness();
  const clients: net.Socket[] = [];

  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(3);
    // 31 days of one symbol, one bar per minute: 44,640 rows.
    await h.pool.query(
      `INSERT INTO "${h.schema}".bars_1m (symbol, "timestamp", open, high, low, close, volume, vwap)
       SELECT 'WIDE', t, 100 + i % 7, 101 + i % 7, 99 + i % 7, 100.5 + i % 7, 1000 + i, 100.25
       FROM generate_series(0, 31 * 1440 - 1) AS i, LATERAL (SELECT $1::timestamptz + i * interval '1 minute' AS t) s`,
      [new Date(T0).toISOString()],
    );
  });
  afterAll(async () => {
    for (const s of clients) s.destroy();
    await h.cleanup();
  });

  test('200 stalled clients of the widest range: bounded memory, sockets closed, bars on time', async () => {
    const child = h.spawnService();
    const port = await h.portOf(child);
    await waitFor('the service to join the group', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      return r.status === 200;
    });
    const pid = child.pid!;
    const target = `/v1/bars/WIDE?from=${new Date(T0).toISOString()}&to=${new Date(T0 + 31 * DAY).toISOString()}`;
    const sent = Date.now();
    for (let i = 0; i < CLIENTS; i++) clients.push(await stalledClient(port, target));

    // Bars produced while the readers stall: 20 every 500 ms for 15 s.
    const live = uniqueName('L').slice(0, 20);
    const start = Date.UTC(2026, 10, 20, 14, 30);
    let produced = 0;
    for (let round = 0; round < 30; round++) {
      const bars = Array.from({ length: 20 }, (_, k) => ({
        symbol: `${live}_${k}`,
        timestamp: new Date(start + round * 60_000).toISOString(),
        open: 10,
        high: 11,
        low: 9,
        close: 10.5,
        volume: round,
        vwap: 10.2,
      }));
      await h.produceBars(bars);
      produced += bars.length;
      await sleep(500);
    }
    const landed = async () => {
      const r = await h.pool.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM "${h.schema}".bars_1m WHERE symbol LIKE $1`,
        [`${live}_%`],
      );
      return Number(r.rows[0]!.n) === produced;
    };
    await waitFor('the bars produced during the stall to land', landed, 30_000);

    // Sockets: at least 90% closed by the service within 90 s of the requests.
    let held = heldSockets(pid, port);
    while (held > CLIENTS * 0.1 && Date.now() - sent < 90_000) {
      await sleep(1000);
      held = heldSockets(pid, port);
    }
    const closedAfterS = (Date.now() - sent) / 1000;
    const rss = peakRssMb(pid);

    // On time: every bar of the stall committed within 5 s of its Kafka record time.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const delays = {
      count: metricValue(metrics, 'bars_end_to_end_delay_seconds_count'),
      within5s: metricValue(metrics, 'bars_end_to_end_delay_seconds_bucket', { le: '5' }),
    };
    console.log(
      `stalled readers: peak RSS ${rss.toFixed(0)} MB, ${held}/${CLIENTS} sockets held after ${closedAfterS.toFixed(0)} s, ` +
        `${delays.within5s}/${delays.count} bars within 5 s`,
    );
    expect(rss).toBeLessThan(400);
    expect(held).toBeLessThanOrEqual(CLIENTS * 0.1);
    expect(delays.count).toBe(produced);
    expect(delays.within5s).toBe(produced);
    expect(await h.terminate(child)).toBe(0);
  }, 240_000);
});
