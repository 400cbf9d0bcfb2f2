/**
 * The OpenAPI 3.1 document of the read API, served at GET /v1/openapi.json (docs/reads.md). The bar
 * schema lists the extra columns (BARS_EXTRA_COLUMNS) the service is configured with; the integration
 * test test/integration/reads.test.ts checks real answers of every route against it.
 */
import { MAX_SYMBOL_LENGTH } from '../contract/bar';
import { INTERVALS } from '../contract/intervals';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (type: string): Schema => ({ type: [type, 'null'] });

const symbolParam = (name: string, where: 'path' | 'query', description: string): Schema => ({
  name,
  in: where,
  required: where === 'path',
  description,
  schema: { type: 'string', minLength: 1, maxLength: MAX_SYMBOL_LENGTH },
});
const limitParam = (description: string): Schema => ({
  name: 'limit',
  in: 'query',
  required: false,
  description,
  schema: { type: 'integer', minimum: 1 },
});
const afterParam = symbolParam('after', 'query', 'The page after this symbol (the `next` link carries it).');

/** The answers every read route may give besides its 200. */
const ERRORS = {
  '400': {
    description: 'A parameter is invalid: the error names it and the rule.',
    content: { 'application/json': { schema: ref('BadRequest') } },
  },
  '401': {
    description: 'HTTP_READ_TOKEN is set and the request has no valid bearer token.',
    content: { 'application/json': { schema: ref('Error') } },
  },
  '503': {
    description: 'Too many reads, or the database is not available: retry after Retry-After.',
    content: { 'application/json': { schema: ref('Error') } },
  },
};

function ok(description: string, schema: string): Schema {
  return {
    '200': { description, content: { 'application/json': { schema: ref(schema) } } },
    ...ERRORS,
  };
}

/** The document, its bar schema carrying `extraNames` (their values may be of any JSON scalar type). */
export function openApiDocument(extraNames: readonly string[]): Schema {
  const extraProps = Object.fromEntries(
    extraNames.map((n) => [
      n,
      { type: ['string', 'number', 'boolean', 'null'], description: `BARS_EXTRA_COLUMNS ${n}` },
    ]),
  );
  const pageOf = (items: Schema, extra: Schema = {}): Schema => ({
    type: 'object',
    required: [...Object.keys(extra), 'bars', 'next'],
    additionalProperties: false,
    properties: { ...extra, bars: { type: 'array', items }, next: nullable('string') },
  });
  return {
    openapi: '3.1.0',
    info: {
      title: 'bar-writer read API',
      version: '1',
      description:
        'Reads of the 1-minute bars bar-writer stores, and of their 5-minute, hourly and daily aggregates. ' +
        'Timestamps are ISO-8601 UTC; a bar is named by its start. See docs/reads.md.',
    },
    paths: {
      '/v1/bars/{symbol}': {
        get: {
          summary: "One symbol's bars with from <= timestamp < to, oldest first, paged.",
          parameters: [
            symbolParam('symbol', 'path', 'The symbol, percent-encoded.'),
            {
              name: 'interval',
              in: 'query',
              required: false,
              description:
                '1m (default): minute bars; 5m, 1h, 1d: aggregated bars (1h and 1d in BARS_DB_AGGREGATE_TIMEZONE).',
              schema: { type: 'string', enum: [...INTERVALS] },
            },
            { name: 'from', in: 'query', required: true, schema: { type: 'string' } },
            { name: 'to', in: 'query', required: true, schema: { type: 'string' } },
            limitParam('Bars per page (default and largest: HTTP_MAX_LIMIT).'),
          ],
          responses: ok('A page of bars; `next` links to the next page, null on the last.', 'Range'),
        },
      },
      '/v1/bars/{symbol}/latest': {
        get: {
          summary: "One symbol's newest minute bars, newest first.",
          parameters: [
            symbolParam('symbol', 'path', 'The symbol, percent-encoded.'),
            limitParam('How many (default 100, at most HTTP_MAX_LIMIT).'),
          ],
          responses: ok("The symbol's newest bars.", 'SymbolLatest'),
        },
      },
      '/v1/latest': {
        get: {
          summary: "Every symbol's newest minute bar, in symbol order, paged; or those of a list of symbols.",
          parameters: [
            afterParam,
            limitParam('Bars per page (default and largest: HTTP_MAX_LIMIT).'),
            {
              name: 'symbols',
              in: 'query',
              required: false,
              description:
                'A comma-separated list of at most HTTP_MAX_LIMIT symbols (not with after or limit).',
              schema: { type: 'string' },
            },
          ],
          responses: {
            '200': {
              description: 'A page of bars, or with symbols: their bars and the symbols that have none.',
              content: {
                'application/json': { schema: { oneOf: [ref('LatestPage'), ref('LatestOfSymbols')] } },
              },
            },
            ...ERRORS,
          },
        },
      },
      '/v1/minute/{time}': {
        get: {
          summary: "Every symbol's bar at one minute, in symbol order, paged.",
          parameters: [
            {
              name: 'time',
              in: 'path',
              required: true,
              description: 'ISO-8601 with a zone, or epoch milliseconds, on a whole minute.',
              schema: { type: 'string' },
            },
            afterParam,
            limitParam('Bars per page (default and largest: HTTP_MAX_LIMIT).'),
          ],
          responses: ok('A page of bars.', 'MinutePage'),
        },
      },
      '/v1/symbols': {
        get: {
          summary: 'The symbols that have a bar, in symbol order, paged.',
          parameters: [afterParam, limitParam('Symbols per page (default and largest: HTTP_MAX_LIMIT).')],
          responses: ok('A page of symbols.', 'SymbolPage'),
        },
      },
      '/v1/openapi.json': {
        get: {
          summary: 'This document.',
          responses: {
            '200': {
              description: 'The OpenAPI document.',
              content: { 'application/json': { schema: { type: 'object' } } },
            },
          },
        },
      },
    },
    components: {
      schemas: {
        Bar: {
          type: 'object',
          required: ['symbol', 'timestamp', 'open', 'high', 'low', 'close', 'volume', 'vwap', 'trade_count'],
          additionalProperties: false,
          properties: {
            symbol: { type: 'string' },
            timestamp: { type: 'string', format: 'date-time', description: 'The bar (bucket) start, UTC.' },
            open: { type: 'number' },
            high: { type: 'number' },
            low: { type: 'number' },
            close: { type: 'number' },
            volume: { type: 'integer', minimum: 0 },
            vwap: nullable('number'),
            trade_count: { type: ['integer', 'null'], minimum: 0 },
            ...extraProps,
          },
        },
        Range: {
          type: 'object',
          required: ['symbol', 'interval', 'from', 'to', 'bars', 'next'],
          additionalProperties: false,
          properties: {
            symbol: { type: 'string' },
            interval: { type: 'string', enum: [...INTERVALS] },
            from: { type: 'string', format: 'date-time' },
            to: { type: 'string', format: 'date-time' },
            bars: { type: 'array', items: ref('Bar') },
            next: nullable('string'),
          },
        },
        SymbolLatest: {
          type: 'object',
          required: ['symbol', 'bars'],
          additionalProperties: false,
          properties: { symbol: { type: 'string' }, bars: { type: 'array', items: ref('Bar') } },
        },
        LatestPage: pageOf(ref('Bar')),
        LatestOfSymbols: {
          type: 'object',
          required: ['bars', 'missing'],
          additionalProperties: false,
          properties: {
            bars: { type: 'array', items: ref('Bar') },
            missing: { type: 'array', items: { type: 'string' } },
          },
        },
        MinutePage: pageOf(ref('Bar'), { timestamp: { type: 'string', format: 'date-time' } }),
        SymbolPage: {
          type: 'object',
          required: ['symbols', 'next'],
          additionalProperties: false,
          properties: { symbols: { type: 'array', items: { type: 'string' } }, next: nullable('string') },
        },
        Error: {
          type: 'object',
          required: ['error'],
          additionalProperties: false,
          properties: { error: { type: 'string' } },
        },
        BadRequest: {
          type: 'object',
          required: ['error', 'parameter'],
          additionalProperties: false,
          properties: { error: { type: 'string' }, parameter: { type: 'string' } },
        },
      },
    },
  };
}
