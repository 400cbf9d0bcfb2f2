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
import { MAX_SYMBOL_LENGTH, parseTimestamp } from '../contract/bar';
import { errorMessage, type Logger } from '../observe/logger';
import type { HttpReadResult, Metrics } from '../observe/metrics';
import { allReady, type CheckResult } from '../observe/readiness';
import { INTERVAL_MINUTES, INTERVALS, type Interval } from '../contract/intervals';
import type { ReadBar } from '../contract/readBar';
import { BearerToken } from './auth';
import { openApiDocument } from './openapi';
import { Overloaded, ReadGate, ResponseBudget } from './limits';

/** The read operations the API serves (../store/readBars.ts on the read pool; docs/reads.md). */
export interface BarReads {
  /** BARS_EXTRA_COLUMNS: the fields every minute bar carries beyond the contract's. */
  readonly extraNames: readonly string[];
  range(
    symbol: string,
    startMs: number,
    endMs: number,
    limit: number,
    interval?: Interval,
  ): Promise<ReadBar[]>;
  latest(symbol: string, limit: number): Promise<ReadBar[]>;
  latestOfAll(after: string | null, limit: number): Promise<ReadBar[]>;
  latestOf(symbols: readonly string[]): Promise<ReadBar[]>;
  minute(atMs: number, after: string | null, limit: number): Promise<ReadBar[]>;
  symbols(after: string | null, limit: number): Promise<string[]>;
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
const SYMBOL_RULE = `must be 1-${MAX_SYMBOL_LENGTH} printable ASCII characters without whitespace`;

/** A symbol as given (already decoded), checked by the contract's rule. */
function checkSymbol(name: string, symbol: string): string {
  if (symbol.length < 1 || symbol.length > MAX_SYMBOL_LENGTH || !SYMBOL_RE.test(symbol)) {
    throw new BadRequest(name, `${name} ${SYMBOL_RULE}`);
  }
  return symbol;
}

export function parseSymbol(raw: string): string {
  let symbol: string;
  try {
    symbol = decodeURIComponent(raw);
  } catch {
    throw new BadRequest('symbol', 'symbol is not valid percent-encoding');
  }
  return checkSymbol('symbol', symbol);
}

/** `after` of a page by symbol: absent (from the first symbol) or a symbol. */
export function parseAfter(raw: string | null): string | null {
  if (raw === null) return null;
  return checkSymbol('after', raw);
}

/** `symbols=A,B,…`: 1 to `max` symbols, each by the symbol rule; duplicates count once. */
export function parseSymbolList(raw: string, max: number): string[] {
  const list = raw.split(',');
  if (raw === '' || list.length > max) {
    throw new BadRequest('symbols', `symbols must be a comma-separated list of 1 to ${max} symbols`);
  }
  const symbols = list.map((s) => checkSymbol('symbols', s));
  return [...new Set(symbols)];
}

/** `interval`: one of INTERVALS (absent: 1m). */
export function parseInterval(raw: string | null): Interval {
  if (raw === null || raw === '') return '1m';
  if (!(INTERVALS as readonly string[]).includes(raw)) {
    throw new BadRequest('interval', `interval must be one of ${INTERVALS.join(', ')}`);
  }
  return raw as Interval;
}

/** The minute of `/v1/minute/{time}`: a time (as `from`/`to` take it) on a whole minute. */
export function parseMinute(raw: string): number {
  let text: string;
  try {
    text = decodeURIComponent(raw);
  } catch {
    throw new BadRequest('time', 'time is not valid percent-encoding');
  }
  const ms = parseTime('time', text);
  if (ms % 60_000 !== 0) {
    throw new BadRequest(
      'time',
      'time must be a whole minute (seconds and milliseconds zero), as bars start',
    );
  }
  return ms;
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

/** JSON text that goes into an answer as it is (a page of bars rendered by barsJson). */
export class JsonText {
  constructor(readonly text: string) {}
}

/**
 * Bars as the read API renders them: the contract's fields, trade_count, then the extra columns
 * (BARS_EXTRA_COLUMNS) by name when the bar has them (minute bars; an aggregated bar has none) — the
 * key here, the values as PostgreSQL wrote them (../contract/readBar.ts). An array, as JSON text.
 */
export function barsJson(bars: readonly ReadBar[]): JsonText {
  let lastMs = NaN;
  let lastIso = '';
  const items = bars.map((b) => {
    // A page of a minute or of the latest bars holds few distinct times: each written once.
    if (b.timestampMs !== lastMs) {
      lastMs = b.timestampMs;
      lastIso = new Date(b.timestampMs).toISOString();
    }
    return `{"symbol":${JSON.stringify(b.symbol)},"timestamp":"${lastIso}",${b.values}}`;
  });
  return new JsonText(`[${items.join(',')}]`);
}

/**
 * The JSON text of an answer: JSON.stringify's, but a JsonText value of a top-level member goes in as
 * it is (a page of bars is written once, not parsed and written again).
 */
export function answerJson(body: unknown): string {
  if (body instanceof JsonText) return body.text;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return JSON.stringify(body);
  const members = Object.entries(body as Record<string, unknown>).flatMap(([name, value]) =>
    value === undefined ? [] : [`${JSON.stringify(name)}:${answerJson(value)}`],
  );
  return `{${members.join(',')}}`;
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
    const reads = this.deps.reads;
    const answer = reads ? this.readRoute(path, url, reads) : null;
    if (answer) {
      const result = await this.read(req, res, url, answer);
      this.deps.metrics.httpReads.inc({ result });
      return;
    }
    send(res, 404, { error: 'not found' });
  }

  /** The read API's routes (docs/reads.md): the answer of `path`, or null when it is none of them. */
  private readRoute(path: string, url: URL, reads: BarReads): (() => Promise<unknown>) | null {
    const q = url.searchParams;
    const { maxLimit, maxRangeMs } = this.deps.limits;
    const extras = reads.extraNames;
    if (path === '/v1/openapi.json') return () => Promise.resolve(openApiDocument(extras));
    if (path === '/v1/latest') {
      return async () => {
        const list = q.get('symbols');
        if (list !== null) {
          for (const other of ['after', 'limit']) {
            if (q.has(other)) throw new BadRequest(other, `${other} does not go with symbols`);
          }
          const symbols = parseSymbolList(list, maxLimit);
          const bars = await this.gate.run(() => reads.latestOf(symbols));
          const found = new Set(bars.map((b) => b.symbol));
          return {
            bars: barsJson(bars),
            missing: symbols.filter((s) => !found.has(s)).sort(),
          };
        }
        const after = parseAfter(q.get('after'));
        const limit = parseLimit(q.get('limit'), maxLimit, maxLimit);
        const bars = await this.gate.run(() => reads.latestOfAll(after, limit + 1));
        const page = bars.slice(0, limit);
        return {
          bars: barsJson(page),
          next: bars.length > limit ? pageLink('/v1/latest', page[page.length - 1]!.symbol, limit) : null,
        };
      };
    }
    if (path === '/v1/symbols') {
      return async () => {
        const after = parseAfter(q.get('after'));
        const limit = parseLimit(q.get('limit'), maxLimit, maxLimit);
        const symbols = await this.gate.run(() => reads.symbols(after, limit + 1));
        const page = symbols.slice(0, limit);
        return {
          symbols: page,
          next: symbols.length > limit ? pageLink('/v1/symbols', page[page.length - 1]!, limit) : null,
        };
      };
    }
    const minute = /^\/v1\/minute\/([^/]+)$/.exec(path);
    if (minute) {
      return async () => {
        const atMs = parseMinute(minute[1]!);
        const after = parseAfter(q.get('after'));
        const limit = parseLimit(q.get('limit'), maxLimit, maxLimit);
        const bars = await this.gate.run(() => reads.minute(atMs, after, limit + 1));
        const page = bars.slice(0, limit);
        const time = new Date(atMs).toISOString();
        return {
          timestamp: time,
          bars: barsJson(page),
          next:
            bars.length > limit ? pageLink(`/v1/minute/${time}`, page[page.length - 1]!.symbol, limit) : null,
        };
      };
    }
    const m = /^\/v1\/bars\/([^/]+)(\/latest)?$/.exec(path);
    if (!m) return null;
    return async () => {
      const symbol = parseSymbol(m[1]!);
      if (m[2]) {
        const limit = parseLimit(q.get('limit'), maxLimit, 100);
        const bars = await this.gate.run(() => reads.latest(symbol, limit));
        return { symbol, bars: barsJson(bars) };
      }
      const interval = parseInterval(q.get('interval'));
      const from = parseTime('from', q.get('from'));
      const to = parseTime('to', q.get('to'));
      if (to <= from) throw new BadRequest('to', 'to must be later than from');
      // The same number of bars at most, whatever the interval.
      const maxRange = maxRangeMs * INTERVAL_MINUTES[interval];
      if (to - from > maxRange) {
        throw new BadRequest(
          'to',
          interval === '1m'
            ? `the range from..to must not exceed ${maxRangeMs / 60_000} minutes`
            : `the range from..to must not exceed ${maxRange / 60_000} minutes at interval ${interval}`,
        );
      }
      const limit = parseLimit(q.get('limit'), maxLimit, maxLimit);
      // One more than a page: whether there is a next one.
      const bars = await this.gate.run(() => reads.range(symbol, from, to, limit + 1, interval));
      const page = bars.slice(0, limit);
      return {
        symbol,
        interval,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        bars: barsJson(page),
        next: bars.length > limit ? nextPage(symbol, page[page.length - 1]!, to, limit, interval) : null,
      };
    };
  }

  /** A read API request, answered in full; resolves to how it ended (for the metric). */
  private async read(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    answer: () => Promise<unknown>,
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
    try {
      const body = await answer();
      const text = answerJson(body);
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
 * The link to the page after `last` of a range: the same query from the minute after it (bars and
 * buckets start on a minute, and buckets are at least that far apart, so none is skipped).
 */
export function nextPage(
  symbol: string,
  last: ReadBar,
  toMs: number,
  limit: number,
  interval: Interval = '1m',
): string {
  const from = new Date(last.timestampMs + 60_000).toISOString();
  const to = new Date(toMs).toISOString();
  const every = interval === '1m' ? '' : `&interval=${interval}`;
  return `/v1/bars/${encodeURIComponent(symbol)}?from=${from}&to=${to}&limit=${limit}${every}`;
}

/** The link to the page of `path` after symbol `last` (pages by symbol). */
export function pageLink(path: string, last: string, limit: number): string {
  return `${path}?after=${encodeURIComponent(last)}&limit=${limit}`;
}
