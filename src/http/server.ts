/**
 * HTTP: liveness, readiness, Prometheus metrics and the read API, on node:http (no framework needed for
 * five routes). Every input is validated and answered with a 400 naming the parameter and the rule.
 *
 * Nothing a client does can make the service hold unbounded resources (./limits.ts):
 * - connections: at most HTTP_MAX_CONNECTIONS; a request must arrive within HTTP_REQUEST_TIMEOUT
 *   (headers within 10 s); a connection that makes no progress for HTTP_IDLE_TIMEOUT, such as a client
 *   that stops reading its answer, is closed;
 * - reads: as many at once as the read pool has connections, a bounded queue with a bounded wait, then
 *   503 with Retry-After;
 * - answers: at most HTTP_MAX_LIMIT bars each (a range longer than that is paged: `next` is the link to
 *   the rest), and the bytes of answers not yet taken by clients are capped over all connections.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Bar } from '../contract/bar';
import { MAX_SYMBOL_LENGTH, parseTimestamp } from '../contract/bar';
import { errorMessage, type Logger } from '../observe/logger';
import type { HttpReadResult, Metrics } from '../observe/metrics';
import { allReady, type CheckResult } from '../observe/readiness';
import { BearerToken } from './auth';
import { Overloaded, ReadGate, ResponseBudget } from './limits';

/** The read operations the API serves (../store/readBars.ts on the read pool). */
export interface BarReads {
  range(symbol: string, startMs: number, endMs: number, limit: number): Promise<Bar[]>;
  latest(symbol: string, limit: number): Promise<Bar[]>;
}

export interface HttpLimits {
  maxRangeMs: number;
  maxLimit: number;
  maxConnections: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  /** Reads at once: the read pool's size. */
  readConcurrency: number;
  maxQueuedReads: number;
  /** How long a read waits for a slot before 503. */
  readWaitMs: number;
  responseBufferBytes: number;
  /** Empty: the read API is open. */
  readToken: string;
}

export interface HttpDeps {
  logger: Logger;
  registry: Registry;
  metrics: Pick<Metrics, 'httpReads' | 'httpConnections'>;
  liveness(): Record<string, CheckResult>;
  readiness(): Promise<Record<string, CheckResult>>;
  reads: BarReads | null;
  limits: HttpLimits;
}

/** Headers must be in within this long (or HTTP_REQUEST_TIMEOUT, if shorter). */
const HEADERS_TIMEOUT_MS = 10_000;
/** How often node checks the request and headers timeouts (its default, 30 s, would let them slip). */
const TIMEOUT_CHECK_MS = 1000;
const KEEP_ALIVE_MS = 5000;

class BadRequest extends Error {
  constructor(
    readonly parameter: string,
    message: string,
  ) {
    super(message);
  }
}

const SYMBOL_RE = /^[\x21-\x7e]+$/;

export function parseSymbol(raw: string): string {
  let symbol: string;
  try {
    symbol = decodeURIComponent(raw);
  } catch {
    throw new BadRequest('symbol', 'symbol is not valid percent-encoding');
  }
  if (symbol.length < 1 || symbol.length > MAX_SYMBOL_LENGTH || !SYMBOL_RE.test(symbol)) {
    throw new BadRequest(
      'symbol',
      `symbol must be 1-${MAX_SYMBOL_LENGTH} printable ASCII characters without whitespace`,
    );
  }
  return symbol;
}

export function parseTime(name: string, raw: string | null): number {
  if (raw === null || raw === '')
    throw new BadRequest(name, `${name} is required (ISO-8601 with zone, or epoch milliseconds)`);
  const value: unknown = /^-?\d+$/.test(raw) ? Number(raw) : raw;
  const parsed = parseTimestamp(value);
  if (!parsed.ok)
    throw new BadRequest(name, `${name}: ${parsed.rejection.detail.replace(/^timestamp/, 'value')}`);
  return parsed.ms;
}

export function parseLimit(raw: string | null, max: number, dflt: number): number {
  if (raw === null || raw === '') return Math.min(dflt, max);
  if (!/^\d+$/.test(raw)) throw new BadRequest('limit', 'limit must be a positive integer');
  const n = Number(raw);
  if (n < 1 || n > max) throw new BadRequest('limit', `limit must be from 1 to ${max}`);
  return n;
}

export function barJson(b: Bar) {
  return {
    symbol: b.symbol,
    timestamp: new Date(b.timestampMs).toISOString(),
    open: b.open,
    high: b.high,
    low: b.low,
    close: b.close,
    volume: b.volume,
    vwap: b.vwap,
  };
}

function sendText(
  res: http.ServerResponse,
  status: number,
  text: string,
  contentType: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendText(res, status, JSON.stringify(body), 'application/json', headers);
}

/** Connections beyond HTTP_MAX_CONNECTIONS kept for probes, and how long one waits for its request. */
const PROBE_RESERVE = 8;
const PROBE_WAIT_MS = 2000;
const PROBE_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

function overloaded(res: http.ServerResponse, err: Overloaded): void {
  send(res, 503, { error: err.message }, { 'retry-after': String(err.retryAfterS) });
}

export class HttpServer {
  private readonly server: http.Server;
  private readonly gate: ReadGate;
  private readonly budget: ResponseBudget;
  private readonly token: BearerToken | null;

  constructor(private readonly deps: HttpDeps) {
    const { limits } = deps;
    this.gate = new ReadGate(limits.readConcurrency, limits.maxQueuedReads, limits.readWaitMs);
    this.budget = new ResponseBudget(limits.responseBufferBytes);
    this.token = limits.readToken ? new BearerToken(limits.readToken) : null;
    this.server = http.createServer(
      {
        requestTimeout: limits.requestTimeoutMs,
        headersTimeout: Math.min(HEADERS_TIMEOUT_MS, limits.requestTimeoutMs),
        connectionsCheckingInterval: TIMEOUT_CHECK_MS,
      },
      (req, res) => {
        this.route(req, res).catch((err: unknown) => {
          deps.logger.error({ err, url: req.url }, 'http handler failed');
          if (!res.headersSent) send(res, 500, { error: 'internal error' });
          else res.end();
        });
      },
    );
    this.server.keepAliveTimeout = KEEP_ALIVE_MS;
    // HTTP_MAX_CONNECTIONS for everyone, and PROBE_RESERVE more that answer probes only: clients that
    // hold every ordinary connection (half-sent requests, say) never make /healthz or /readyz fail.
    this.server.maxConnections = limits.maxConnections + PROBE_RESERVE;
    // No progress on a socket for this long: node destroys it (no 'timeout' listener on the server),
    // whether the client sends nothing or stopped reading an answer.
    this.server.setTimeout(limits.idleTimeoutMs);
    let open = 0;
    this.server.on('connection', (socket: Socket) => {
      deps.metrics.httpConnections.set(++open);
      socket.once('close', () => deps.metrics.httpConnections.set(--open));
      if (open > limits.maxConnections) {
        // A reserved connection is for one quick probe: closed if its request is slow to come.
        const timer = setTimeout(() => socket.destroy(), PROBE_WAIT_MS);
        timer.unref();
        this.probeOnly.set(socket, timer);
        socket.once('close', () => clearTimeout(timer));
      }
    });
  }

  /** Connections accepted beyond HTTP_MAX_CONNECTIONS (with their wait for a request): probes only. */
  private readonly probeOnly = new WeakMap<Socket, NodeJS.Timeout>();

  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      // e.g. "GET http://[/ HTTP/1.1": the client's mistake, not a 500 with an error log line.
      send(res, 400, { error: 'the request target is not a valid URL' });
      return;
    }
    const path = url.pathname;
    const reserved = this.probeOnly.get(req.socket);
    if (reserved) {
      clearTimeout(reserved);
      res.setHeader('connection', 'close');
      if (!PROBE_PATHS.has(path)) {
        send(res, 503, { error: 'too many connections; retry later' }, { 'retry-after': '1' });
        return;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // RFC 9110 §15.5.6: a 405 must list the methods the resource supports.
      res.setHeader('allow', 'GET, HEAD');
      send(res, 405, { error: 'only GET is supported' });
      return;
    }
    if (path === '/healthz') {
      const checks = this.deps.liveness();
      const ok = Object.values(checks).every((c) => c.ok);
      send(res, ok ? 200 : 503, { status: ok ? 'ok' : 'failing', checks });
      return;
    }
    if (path === '/readyz') {
      const checks = await this.deps.readiness();
      const ok = allReady(checks);
      send(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks });
      return;
    }
    if (path === '/metrics') {
      sendText(res, 200, await this.deps.registry.metrics(), this.deps.registry.contentType);
      return;
    }
    const m = /^\/v1\/bars\/([^/]+)(\/latest)?$/.exec(path);
    if (m && this.deps.reads) {
      const result = await this.read(req, res, url, m[1]!, Boolean(m[2]), this.deps.reads);
      this.deps.metrics.httpReads.inc({ result });
      return;
    }
    send(res, 404, { error: 'not found' });
  }

  /** A read API request, answered in full; resolves to how it ended (for the metric). */
  private async read(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    rawSymbol: string,
    latest: boolean,
    reads: BarReads,
  ): Promise<HttpReadResult> {
    if (this.token && !this.token.accepts(req.headers.authorization)) {
      send(
        res,
        401,
        { error: 'the read API needs an Authorization: Bearer token' },
        { 'www-authenticate': 'Bearer realm="bar-writer"' },
      );
      return 'unauthorized';
    }
    const { maxLimit, maxRangeMs } = this.deps.limits;
    try {
      const symbol = parseSymbol(rawSymbol);
      let body: unknown;
      if (latest) {
        const limit = parseLimit(url.searchParams.get('limit'), maxLimit, 100);
        const bars = await this.gate.run(() => reads.latest(symbol, limit));
        body = { symbol, bars: bars.map(barJson) };
      } else {
        const from = parseTime('from', url.searchParams.get('from'));
        const to = parseTime('to', url.searchParams.get('to'));
        if (to <= from) throw new BadRequest('to', 'to must be later than from');
        if (to - from > maxRangeMs) {
          throw new BadRequest('to', `the range from..to must not exceed ${maxRangeMs / 60_000} minutes`);
        }
        const limit = parseLimit(url.searchParams.get('limit'), maxLimit, maxLimit);
        // One more than a page: whether there is a next one.
        const bars = await this.gate.run(() => reads.range(symbol, from, to, limit + 1));
        const page = bars.slice(0, limit);
        body = {
          symbol,
          from: new Date(from).toISOString(),
          to: new Date(to).toISOString(),
          bars: page.map(barJson),
          next: bars.length > limit ? nextPage(symbol, page[page.length - 1]!, to, limit) : null,
        };
      }
      const text = JSON.stringify(body);
      const release = this.budget.reserve(Buffer.byteLength(text));
      if (!release) throw new Overloaded('responses');
      // Given back once the answer is handed to the kernel in full, or the connection is gone.
      res.once('finish', release);
      res.once('close', release);
      sendText(res, 200, text, 'application/json');
      return 'ok';
    } catch (err) {
      if (err instanceof BadRequest) {
        send(res, 400, { error: err.message, parameter: err.parameter });
        return 'bad_request';
      }
      if (err instanceof Overloaded) {
        overloaded(res, err);
        return 'overloaded';
      }
      // The query itself is validated and bounded: a failure here is the database being away or slow.
      this.deps.logger.warn({ err: errorMessage(err), path: url.pathname }, 'read failed');
      send(res, 503, { error: 'the database is not available; retry later' }, { 'retry-after': '1' });
      return 'failed';
    }
  }
}

/**
 * The link to the page after `last` of a range: the same query from the minute after it (bars start on
 * a minute, so none is skipped).
 */
export function nextPage(symbol: string, last: Bar, toMs: number, limit: number): string {
  const from = new Date(last.timestampMs + 60_000).toISOString();
  const to = new Date(toMs).toISOString();
  return `/v1/bars/${encodeURIComponent(symbol)}?from=${from}&to=${to}&limit=${limit}`;
}
