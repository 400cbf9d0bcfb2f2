/**
 * HTTP: liveness, readiness, Prometheus metrics and the read API, on node:http (no framework needed for
 * five routes). Every input is validated and answered with a 400 naming the parameter and the rule.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Bar } from '../contract/bar';
import { MAX_SYMBOL_LENGTH, parseTimestamp } from '../contract/bar';
import { errorMessage, type Logger } from '../observe/logger';
import type { CheckResult } from '../observe/readiness';

export interface HttpDeps {
  logger: Logger;
  registry: Registry;
  liveness(): Record<string, CheckResult>;
  readiness(): Promise<Record<string, CheckResult>>;
  reads: {
    getBars(symbol: string, startMs: number, endMs: number, limit: number): Promise<Bar[]>;
    getLatestBars(symbol: string, limit: number): Promise<Bar[]>;
  } | null;
  maxRangeMs: number;
  maxLimit: number;
}

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

function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  contentType = 'application/json',
): void {
  const text = contentType === 'application/json' ? JSON.stringify(body) : String(body);
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(text);
}

export class HttpServer {
  private readonly server: http.Server;

  constructor(private readonly deps: HttpDeps) {
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        deps.logger.error({ err, url: req.url }, 'http handler failed');
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.end();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

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
      const ok = Object.values(checks).every((c) => c.ok);
      send(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks });
      return;
    }
    if (path === '/metrics') {
      send(res, 200, await this.deps.registry.metrics(), this.deps.registry.contentType);
      return;
    }
    const m = /^\/v1\/bars\/([^/]+)(\/latest)?$/.exec(path);
    if (m && this.deps.reads) {
      try {
        const symbol = parseSymbol(m[1]!);
        if (m[2]) {
          const limit = parseLimit(url.searchParams.get('limit'), this.deps.maxLimit, 100);
          const bars = await this.deps.reads.getLatestBars(symbol, limit);
          send(res, 200, { symbol, bars: bars.map(barJson) });
        } else {
          const from = parseTime('from', url.searchParams.get('from'));
          const to = parseTime('to', url.searchParams.get('to'));
          if (to <= from) throw new BadRequest('to', 'to must be later than from');
          if (to - from > this.deps.maxRangeMs) {
            throw new BadRequest(
              'to',
              `the range from..to must not exceed ${this.deps.maxRangeMs / 60_000} minutes`,
            );
          }
          // The range cap bounds the answer: at most one bar per minute of the range.
          const limit = Math.ceil((to - from) / 60_000);
          const bars = await this.deps.reads.getBars(symbol, from, to, limit);
          send(res, 200, {
            symbol,
            from: new Date(from).toISOString(),
            to: new Date(to).toISOString(),
            bars: bars.map(barJson),
          });
        }
      } catch (err) {
        if (err instanceof BadRequest) {
          send(res, 400, { error: err.message, parameter: err.parameter });
        } else {
          // The query itself is parameterised and bounded: a failure here is the database being away.
          this.deps.logger.warn({ err: errorMessage(err), path }, 'read failed');
          send(res, 503, { error: 'the database is not available; retry later' });
        }
      }
      return;
    }
    send(res, 404, { error: 'not found' });
  }
}
