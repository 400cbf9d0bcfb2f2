/**
 * Configuration: one convict schema, one validation pass at start-up, before anything connects.
 *
 * Sources, later wins: schema defaults < optional JSON file (CONFIG_FILE) < environment.
 * Every bad key is reported at once, each message naming the env variable and the rule. Secrets are
 * `sensitive` (convict prints them as [Sensitive]) and are never echoed in our own messages.
 */
import convict from 'convict';
import fs from 'node:fs';
import { parseExtraColumns, type ExtraColumn } from '../contract/extras';

/** Duration strings: `250ms`, `1s`, `5m`, `1h`, `400d` (days of 24 h), or a bare integer of milliseconds. */
const DURATION_RE = /^(\d+)(ms|s|m|h|d)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') throw new Error('must be a duration like 100ms, 1s, 5m or 1h');
  const m = DURATION_RE.exec(value.trim());
  if (!m) throw new Error(`must be a duration like 100ms, 1s, 5m or 1h, got "${value}"`);
  return Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!;
}

convict.addFormat({
  name: 'duration-ms',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new Error('must be a duration like 100ms, 1s, 5m or 1h');
    }
  },
  coerce(value: unknown) {
    try {
      return parseDuration(value);
    } catch {
      return value; // left as-is so validate() reports it with the key name
    }
  },
});

/** true/false (or 1/0) only: anything else is an error, never a silent default. */
convict.addFormat({
  name: 'strict-boolean',
  validate(value: unknown) {
    if (typeof value !== 'boolean') throw new Error('must be true or false');
  },
  coerce(value: unknown) {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    return value;
  },
});

/** Registers (once) and returns the name of an integer format with bounds; env strings are coerced. */
function intRange(min: number, max: number): string {
  const name = `int ${min}..${max}`;
  if (!registeredFormats.has(name)) {
    registeredFormats.add(name);
    convict.addFormat({
      name,
      validate(value: unknown) {
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
          throw new Error(`must be an integer from ${min} to ${max}`);
        }
      },
      coerce(value: unknown) {
        if (typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)) return Number(value);
        return value;
      },
    });
  }
  return name;
}
const registeredFormats = new Set<string>();

/** Epoch ms of an ISO-8601 date-time with an explicit zone (Z or ±HH:MM), or null. */
function isoInstant(value: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

/** An IANA zone name Node's ICU knows (PostgreSQL's list is checked again when it is applied). */
function isTimeZone(name: string): boolean {
  if (name.trim() !== name || name === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function positive(max: number) {
  return intRange(1, max);
}

function nonEmptyString(rule: string) {
  return (value: unknown) => {
    if (typeof value !== 'string' || value.trim() === '') throw new Error(rule);
  };
}

/**
 * A `format` of a setting that may be left empty, then another setting's value applies (DB_READ_PORT
 * empty: DB_PORT): '' or a value `accepts` takes. A number (from CONFIG_FILE) is taken as its digits.
 */
function emptyOr(rule: string, accepts: (value: string) => boolean) {
  return (value: unknown) => {
    const text = typeof value === 'number' ? String(value) : value;
    if (text === '') return;
    if (typeof text !== 'string' || !accepts(text)) throw new Error(`must be empty or ${rule}`);
  };
}

/** A port from its text (surrounding blanks allowed, as intRange allows them), or null. */
function portNumber(text: string): number | null {
  if (!/^\s*\d{1,5}\s*$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : null;
}

const SSL_MODES = ['disable', 'require', 'verify-full'] as const;
type SslMode = (typeof SSL_MODES)[number];

/**
 * A `format` that takes one of `values` (convict's list format), typed as their union; the leaf's
 * default is written `as const`, so that convict's typing checks it is one of them.
 */
function oneOf<T extends string>(...values: T[]): T[] {
  return values;
}

const schema = {
  db: {
    host: {
      doc: 'PostgreSQL host',
      format: nonEmptyString('must be a non-empty host name'),
      default: 'localhost',
      env: 'DB_HOST',
    },
    port: { doc: 'PostgreSQL port', format: intRange(1, 65535), default: 5432, env: 'DB_PORT' },
    user: {
      doc: 'PostgreSQL user',
      format: nonEmptyString('must be a non-empty user name'),
      default: 'postgres',
      env: 'DB_USER',
    },
    password: {
      doc: 'PostgreSQL password',
      format: String,
      default: '',
      env: 'DB_PASSWORD',
      sensitive: true,
    },
    passwordFile: {
      doc: 'File holding the PostgreSQL password (mounted secret); used when DB_PASSWORD is empty',
      format: String,
      default: '',
      env: 'DB_PASSWORD_FILE',
    },
    name: {
      doc: 'PostgreSQL database',
      format: nonEmptyString('must be a non-empty database name'),
      default: 'postgres',
      env: 'DB_NAME',
    },
    schema: {
      doc: 'Schema holding bars_1m and the bookkeeping tables',
      format: (value: unknown) => {
        if (typeof value !== 'string' || !/^[a-z_][a-z0-9_]{0,62}$/.test(value)) {
          throw new Error('must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)');
        }
      },
      default: 'public',
      env: 'DB_SCHEMA',
    },
    sslMode: {
      doc: 'TLS to PostgreSQL: disable; require (encrypted, not verified); verify-full (verified against DB_SSL_ROOT_CERT)',
      format: oneOf(...SSL_MODES),
      default: 'disable' as const,
      env: 'DB_SSL_MODE',
    },
    sslRootCert: {
      doc: 'CA bundle file for DB_SSL_MODE=verify-full',
      format: String,
      default: '',
      env: 'DB_SSL_ROOT_CERT',
    },
    maxConnections: {
      doc: "Connections of the writer's pool (the read API has its own)",
      format: positive(1000),
      default: 10,
      env: 'DB_MAX_CONNECTIONS',
    },
    maxIdleConnections: {
      doc: 'Idle connections kept open; a released connection beyond this is closed',
      format: intRange(0, 1000),
      default: 5,
      env: 'DB_MAX_IDLE_CONNS',
    },
    connMaxLifetimeMs: {
      doc: 'A connection is closed once this old (0 = no limit)',
      format: 'duration-ms',
      default: 30 * 60_000,
      env: 'DB_CONN_MAX_LIFETIME',
    },
    statementTimeoutMs: {
      doc: "statement_timeout of every write transaction, set per transaction with SET LOCAL so it works through PgBouncer in transaction mode (0 = none); any one query of the writer's pool also ends on the client after this plus 5s (a wait in a pooler's queue)",
      format: 'duration-ms',
      default: 30_000,
      env: 'DB_STATEMENT_TIMEOUT',
    },
    readMaxConnections: {
      doc: "Connections of the read API's own pool (never the writer's): at most this many reads run at once",
      format: positive(100),
      default: 2,
      env: 'DB_READ_MAX_CONNECTIONS',
    },
    readTimeoutMs: {
      doc: 'statement_timeout of each read (0 = none); also how long a read waits for a free read connection before the API answers 503',
      format: 'duration-ms',
      default: 5000,
      env: 'DB_READ_TIMEOUT',
    },
    readHost: {
      doc: "Host of the read API's database, e.g. a streaming replica (hot standby) of DB_HOST; empty: DB_HOST. /readyz names its state without it failing the writer's readiness",
      format: emptyOr('a host name', (v) => v.trim() !== ''),
      default: '',
      env: 'DB_READ_HOST',
    },
    readPort: {
      doc: "Port of the read API's database; empty: DB_PORT",
      format: emptyOr('an integer from 1 to 65535', (v) => portNumber(v) !== null),
      default: '',
      env: 'DB_READ_PORT',
    },
    readUser: {
      doc: "User of the read API's database (SELECT on bars_1m is enough); empty: DB_USER",
      format: emptyOr('a user name', (v) => v.trim() !== ''),
      default: '',
      env: 'DB_READ_USER',
    },
    readPassword: {
      doc: 'Password of DB_READ_USER; empty (and DB_READ_PASSWORD_FILE empty): DB_PASSWORD',
      format: String,
      default: '',
      env: 'DB_READ_PASSWORD',
      sensitive: true,
    },
    readPasswordFile: {
      doc: 'File holding the read password (mounted secret); used when DB_READ_PASSWORD is empty',
      format: String,
      default: '',
      env: 'DB_READ_PASSWORD_FILE',
    },
    readSslMode: {
      doc: "TLS to the read API's database, as DB_SSL_MODE; empty: DB_SSL_MODE",
      format: emptyOr('one of disable, require, verify-full', (v) => SSL_MODES.includes(v as SslMode)),
      default: '',
      env: 'DB_READ_SSL_MODE',
    },
    readSslRootCert: {
      doc: 'CA bundle file for DB_READ_SSL_MODE=verify-full; empty: DB_SSL_ROOT_CERT',
      format: String,
      default: '',
      env: 'DB_READ_SSL_ROOT_CERT',
    },
    lockTimeoutMs: {
      doc: 'lock_timeout of every write transaction (0 = none): a row another session holds fails the write after this long, and the partition is retried on its own',
      format: 'duration-ms',
      default: 5000,
      env: 'DB_LOCK_TIMEOUT',
    },
    retentionMs: {
      doc: "TimescaleDB only: bars_1m chunks older than this are dropped by a retention policy that `npm run migrate` sets (0 = keep everything; otherwise at least 3d, e.g. 400d); the aggregates' refresh windows end at the same horizon",
      format: 'duration-ms',
      default: 0,
      env: 'BARS_DB_RETENTION',
    },
    aggregateTimezone: {
      doc: 'TimescaleDB only: the time zone (IANA name) bars_1h and bars_1d bucket in, applied by `npm run migrate`',
      format: (value: unknown) => {
        if (typeof value !== 'string' || !isTimeZone(value)) {
          throw new Error('must be an IANA time zone name such as UTC or America/New_York');
        }
      },
      default: 'UTC',
      env: 'BARS_DB_AGGREGATE_TIMEZONE',
    },
  },
  write: {
    batchSize: {
      doc: 'Bars per partition that trigger a flush (a flush takes up to 3 batches of a partition in a backlog)',
      format: positive(1_000_000),
      default: 1000,
      env: 'BARS_DB_WRITE_BATCH_SIZE',
    },
    concurrency: {
      doc: 'Flush transactions in flight at once; each writes every partition that is due when it starts (at most DB_MAX_CONNECTIONS)',
      format: positive(1000),
      default: 2,
      env: 'BARS_DB_WRITE_CONCURRENCY',
    },
    intervalMs: {
      doc: 'Longest a buffered bar waits before its partition flushes',
      format: 'duration-ms',
      default: 1000,
      env: 'BARS_DB_WRITE_INTERVAL',
    },
    queueSize: {
      doc: 'Messages buffered across all partitions; when reached, fetching waits for room (up to 1s), then pauses',
      format: positive(10_000_000),
      default: 10_000,
      env: 'BARS_DB_WRITE_QUEUE_SIZE',
    },
    queueBytes: {
      doc: 'Estimated bytes buffered across all partitions; when reached, fetching pauses',
      format: positive(4 * 1024 * 1024 * 1024),
      default: 64 * 1024 * 1024,
      env: 'BARS_DB_WRITE_QUEUE_BYTES',
    },
    flushOnCaughtUp: {
      doc: 'Flush a partition at once when its fetch reached the end of the log (low latency for live bars)',
      format: 'strict-boolean',
      default: true,
      env: 'BARS_DB_FLUSH_ON_CAUGHT_UP',
    },
    maxRetries: {
      doc: 'Failed write attempts after which the service reports not ready (it keeps retrying at the cap)',
      format: intRange(0, 1000),
      default: 3,
      env: 'BARS_DB_MAX_RETRIES',
    },
    retryDelayMs: {
      doc: 'First retry delay; doubles per attempt, with jitter',
      format: 'duration-ms',
      default: 100,
      env: 'BARS_DB_RETRY_DELAY',
    },
    retryMaxDelayMs: {
      doc: 'Cap of the retry delay',
      format: 'duration-ms',
      default: 30_000,
      env: 'BARS_DB_RETRY_MAX_DELAY',
    },
    minTimestamp: {
      doc: 'Earliest bar start accepted (ISO-8601 with a zone, from 1900 on); older bars are rejected as timestamp_too_early',
      format: (value: unknown) => {
        const ms = typeof value === 'string' ? isoInstant(value) : null;
        if (ms === null)
          throw new Error('must be an ISO-8601 date-time with a zone, such as 1990-01-01T00:00:00Z');
        if (ms < Date.UTC(1900, 0, 1)) throw new Error('must not be before 1900-01-01T00:00:00Z');
      },
      default: '1990-01-01T00:00:00Z',
      env: 'BARS_MIN_TIMESTAMP',
    },
    versionMaxFutureMs: {
      doc: "A bar's version time (its record timestamp) further than this ahead of when the service receives it is not used: the bar is versioned at its close instead, and counted (a clock in microseconds, or years ahead, would pin the row against later corrections)",
      format: 'duration-ms',
      default: 3_600_000,
      env: 'BARS_VERSION_MAX_FUTURE',
    },
    extraColumns: {
      doc: 'Fields vendors publish beyond the contract, each kept in a nullable column of bars_1m of the same name (created by migrate; removing one from the setting never drops it): name:type,… with types bigint, double precision, text(N) (at most N characters; text alone: 256) and boolean. A message field of the wrong type is rejected (wrong_type)',
      format: (value: unknown) => {
        if (typeof value !== 'string') throw new Error('must be a list of name:type');
        parseExtraColumns(value); // throws, naming the entry and the rule
      },
      default: '',
      env: 'BARS_EXTRA_COLUMNS',
    },
  },
  kafka: {
    brokers: {
      doc: 'Comma-separated host:port list',
      format: (value: unknown) => {
        const list = typeof value === 'string' ? value.split(',') : [];
        if (list.length === 0 || list.some((b) => !/^[^\s:,]+:\d{1,5}$/.test(b.trim()))) {
          throw new Error('must be a comma-separated list of host:port');
        }
      },
      default: 'localhost:9092',
      env: 'KAFKA_BROKERS',
    },
    topic: {
      doc: 'Topic carrying bars',
      format: nonEmptyString('must be a non-empty topic name'),
      default: 'bars.1m',
      env: 'KAFKA_TOPIC',
    },
    groupId: {
      doc: 'Consumer group',
      format: nonEmptyString('must be a non-empty group id'),
      default: 'bar-writer',
      env: 'KAFKA_GROUP_ID',
    },
    clientId: {
      doc: 'Kafka client id',
      format: nonEmptyString('must be a non-empty client id'),
      default: 'bar-writer',
      env: 'KAFKA_CLIENT_ID',
    },
    dlqTopic: {
      doc: 'Dead-letter topic for rejected messages (empty: rejected messages are only counted and logged)',
      format: String,
      default: 'bars.1m.dlq',
      env: 'KAFKA_DLQ_TOPIC',
    },
    sessionTimeoutMs: {
      doc: 'Consumer group session timeout (must be longer than BARS_DB_WRITE_INTERVAL)',
      format: 'duration-ms',
      default: 30_000,
      env: 'KAFKA_SESSION_TIMEOUT',
    },
    stallTimeoutMs: {
      doc: 'An assigned partition behind its log end with nothing fetched and nothing written for this long is stalled: reported (readiness, kafka_partition_stalled) and recovered by leaving and joining the group again (at least 10s)',
      format: 'duration-ms',
      default: 60_000,
      env: 'KAFKA_STALL_TIMEOUT',
    },
    fromBeginning: {
      doc: 'Where a group with no committed offset starts (true: earliest, so nothing is skipped)',
      format: 'strict-boolean',
      default: true,
      env: 'KAFKA_FROM_BEGINNING',
    },
    maxBytesPerPartition: {
      doc: 'Fetch size per partition (bytes; kept below what the buffers take, see bench/README.md)',
      format: positive(64 * 1024 * 1024),
      // 256 KiB ≈ 1,000 bars: a fetch then holds about what the buffers take (see maxBytes).
      default: 256 * 1024,
      env: 'KAFKA_MAX_BYTES_PER_PARTITION',
    },
    maxBytes: {
      doc: 'Fetch size per broker (bytes; kept below what the buffers take, see bench/README.md)',
      format: positive(256 * 1024 * 1024),
      // 2 MiB ≈ 8,000 bars, below the default BARS_DB_WRITE_QUEUE_SIZE: a larger fetch than the buffers
      // can take is paused, dropped and fetched again (measured: 2.4x the bytes read per bar at 10 MiB).
      default: 2 * 1024 * 1024,
      env: 'KAFKA_MAX_BYTES',
    },
    metadataMaxAgeMs: {
      doc: "How often topic metadata is refreshed: partitions added to the topic are consumed this soon (kafkajs's own default is 5 minutes)",
      format: 'duration-ms',
      default: 30_000,
      env: 'KAFKA_METADATA_MAX_AGE',
    },
    maxWaitMs: {
      doc: "Longest a fetch waits for data (also kafkajs's idle wait while every partition is paused)",
      format: 'duration-ms',
      // Also kafkajs's idle sleep while every partition is paused: short, so a drained buffer refills fast.
      default: 100,
      env: 'KAFKA_MAX_WAIT',
    },
    ssl: { doc: 'TLS to the brokers', format: 'strict-boolean', default: false, env: 'KAFKA_SSL' },
    sslCaFile: {
      doc: 'CA bundle (PEM) for the brokers; empty: the system CAs',
      format: String,
      default: '',
      env: 'KAFKA_SSL_CA_FILE',
    },
    sslCertFile: {
      doc: 'Client certificate (PEM) for mutual TLS',
      format: String,
      default: '',
      env: 'KAFKA_SSL_CERT_FILE',
    },
    sslKeyFile: {
      doc: 'Client key (PEM) for mutual TLS',
      format: String,
      default: '',
      env: 'KAFKA_SSL_KEY_FILE',
    },
    sslRejectUnauthorized: {
      doc: 'Verify the brokers certificates (turn off only for tests)',
      format: 'strict-boolean',
      default: true,
      env: 'KAFKA_SSL_REJECT_UNAUTHORIZED',
    },
    saslMechanism: {
      doc: 'SASL mechanism',
      format: oneOf('none', 'plain', 'scram-sha-256', 'scram-sha-512'),
      default: 'none' as const,
      env: 'KAFKA_SASL_MECHANISM',
    },
    saslUsername: { doc: 'SASL user name', format: String, default: '', env: 'KAFKA_SASL_USERNAME' },
    saslPassword: {
      doc: 'SASL password',
      format: String,
      default: '',
      env: 'KAFKA_SASL_PASSWORD',
      sensitive: true,
    },
    saslPasswordFile: {
      doc: 'File holding the SASL password (mounted secret); used when KAFKA_SASL_PASSWORD is empty',
      format: String,
      default: '',
      env: 'KAFKA_SASL_PASSWORD_FILE',
    },
  },
  http: {
    port: {
      doc: 'Port of /healthz, /readyz, /metrics and the read API (0 = any free port)',
      format: intRange(0, 65535),
      default: 8080,
      env: 'HTTP_PORT',
    },
    readApi: {
      doc: 'Serve the read API (/v1/bars)',
      format: 'strict-boolean',
      default: true,
      env: 'HTTP_READ_API',
    },
    maxRangeMs: {
      doc: 'Widest from..to range the read API serves',
      format: 'duration-ms',
      default: 31 * 24 * 3_600_000,
      env: 'HTTP_MAX_RANGE',
    },
    maxLimit: {
      doc: 'Most bars in one answer: the largest limit of /latest, and of a page of a range (the rest follows by the `next` link)',
      format: positive(1_000_000),
      default: 10_000,
      env: 'HTTP_MAX_LIMIT',
    },
    maxConnections: {
      doc: 'Open HTTP connections at most; more are refused at accept (probes and Prometheus included)',
      format: positive(100_000),
      default: 256,
      env: 'HTTP_MAX_CONNECTIONS',
    },
    requestTimeoutMs: {
      doc: 'A request must be received in full (headers and body) within this long, headers within the lesser of this and 10s; then 408 and the connection is closed (at least 1s)',
      format: 'duration-ms',
      default: 15_000,
      env: 'HTTP_REQUEST_TIMEOUT',
    },
    idleTimeoutMs: {
      doc: 'A connection with no progress for this long (a client that stops reading its answer, or sends nothing) is closed (at least 1s)',
      format: 'duration-ms',
      default: 30_000,
      env: 'HTTP_IDLE_TIMEOUT',
    },
    maxQueuedReads: {
      doc: 'Reads waiting for a free read connection at most; beyond that the API answers 503 with Retry-After at once',
      format: intRange(0, 100_000),
      default: 32,
      env: 'HTTP_MAX_QUEUED_READS',
    },
    responseBufferBytes: {
      doc: 'Bytes of answers not yet taken by their clients, over all connections; a read that would pass it is answered 503 with Retry-After',
      format: positive(4 * 1024 * 1024 * 1024),
      default: 64 * 1024 * 1024,
      env: 'HTTP_RESPONSE_BUFFER_BYTES',
    },
    readToken: {
      doc: 'Bearer token the read API (/v1/*) requires (empty = open); /healthz, /readyz and /metrics stay open',
      format: String,
      default: '',
      env: 'HTTP_READ_TOKEN',
      sensitive: true,
    },
    readTokenFile: {
      doc: 'File holding the read API token (mounted secret); used when HTTP_READ_TOKEN is empty',
      format: String,
      default: '',
      env: 'HTTP_READ_TOKEN_FILE',
    },
  },
  logLevel: {
    doc: 'pino log level',
    format: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    default: 'info' as const,
    env: 'LOG_LEVEL',
  },
  shutdownTimeoutMs: {
    doc: 'Deadline of a graceful shutdown (at least 1s); keep it, plus 2s, below the orchestrator grace period',
    format: 'duration-ms',
    default: 25_000,
    env: 'SHUTDOWN_TIMEOUT',
  },
};

type Schema = typeof schema;

/** What a schema leaf holds once validated: one of its `format` list, else a value of its default's type. */
type LeafValue<L> = L extends { format: (infer V)[] } ? V : L extends { default: infer D } ? D : never;

/** The properties the schema describes (convict's getProperties()), derived from it. */
type Properties<S = Schema> = {
  [K in keyof S]: S[K] extends { default: unknown } ? LeafValue<S[K]> : Properties<S[K]>;
};

/** A key of the schema with its env variable: `db.port`, `logLevel`. */
type Key = {
  [G in keyof Schema]: Schema[G] extends { env: string } ? G : `${G}.${keyof Schema[G] & string}`;
}[keyof Schema];

/**
 * The configuration the service reads: the schema's properties, but for what loadConfig derives from
 * them. Secrets are read from their *_FILE (the file keys are not kept), the broker list is split, the
 * earliest bar start (BARS_MIN_TIMESTAMP) is epoch ms and the extra columns (BARS_EXTRA_COLUMNS) parsed.
 */
export type Config = Omit<Properties, 'db' | 'write' | 'kafka' | 'http'> & {
  db: Omit<Properties['db'], 'passwordFile' | 'readPasswordFile' | 'readPort' | 'readSslMode'> & {
    /**
     * The read API's connection (DB_READ_*), each resolved: an empty setting is the writer's (readHost
     * is DB_HOST when DB_READ_HOST is empty, and so on).
     */
    readPort: number;
    readSslMode: SslMode;
  };
  write: Omit<Properties['write'], 'minTimestamp' | 'extraColumns'> & {
    /** BARS_MIN_TIMESTAMP as epoch ms. */
    minTimestampMs: number;
    /** BARS_EXTRA_COLUMNS, parsed. */
    extraColumns: ExtraColumn[];
  };
  kafka: Omit<Properties['kafka'], 'brokers' | 'saslPasswordFile'> & { brokers: string[] };
  http: Omit<Properties['http'], 'readTokenFile'>;
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** The env variable that sets a convict key (db.port → DB_PORT), if the key is the schema's. */
function envOf(key: string): string | undefined {
  let node: unknown = schema;
  for (const part of key.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  return (node as { env?: string } | undefined)?.env;
}

/** A key as messages name it, for users to act on: its env variable and the key, `DB_PORT (db.port)`. */
function envNameOf(key: string): string {
  const env = envOf(key);
  return env ? `${env} (${key})` : key;
}

/** The env variable of a key of the schema, for a rule that names another setting. */
function envVar(key: Key): string {
  return envOf(key) ?? key;
}

/**
 * Load and validate configuration. Throws ConfigError listing every problem. `env` defaults to
 * process.env; tests pass their own.
 */
export function loadConfig(env: Env = process.env): Config {
  const c = convict<Properties>(schema, { env: env as NodeJS.ProcessEnv, args: [] });
  const problems: string[] = [];
  /** A problem with `key`, in words naming the setting: `DB_PORT (db.port): <rule>`. */
  const problem = (key: Key, rule: string): void => {
    problems.push(`${envNameOf(key)}: ${rule}`);
  };

  const file = env.CONFIG_FILE;
  if (file) {
    try {
      // convict re-applies env after load(), so env still wins over the file.
      c.load(JSON.parse(fs.readFileSync(file, 'utf8')));
    } catch (err) {
      // Never echo the parser's message: it quotes the text around the error, which may be a secret.
      const code = (err as NodeJS.ErrnoException).code;
      const position = /position (\d+)/.exec((err as Error).message)?.[1];
      const why = code
        ? `cannot read the file (${code})`
        : `not valid JSON${position ? ` (at character ${position})` : ''}`;
      problems.push(`CONFIG_FILE: ${file}: ${why}`);
    }
  }

  try {
    c.validate({ allowed: 'strict' });
  } catch (err) {
    for (const line of (err as Error).message.split('\n')) {
      const m = /^([\w.]+): (.*)$/.exec(line.trim());
      if (m) problems.push(`${envNameOf(m[1]!)}: ${m[2]}`);
      else if (line.trim()) problems.push(line.trim());
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const raw = c.getProperties();
  /** A secret given inline, else read from its *_FILE (a mounted secret; one trailing newline dropped). */
  const secret = (value: string, file: string, key: Key): string => {
    if (value || !file) return value;
    try {
      return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problem(key, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      return '';
    }
  };
  const { passwordFile, readPasswordFile, ...dbRest } = raw.db;
  const password = secret(dbRest.password, passwordFile, 'db.passwordFile');
  // The read API's connection: each DB_READ_* left empty is the writer's setting.
  const readPassword = secret(dbRest.readPassword, readPasswordFile, 'db.readPasswordFile');
  const db: Config['db'] = {
    ...dbRest,
    password,
    readHost: dbRest.readHost.trim() || dbRest.host,
    readPort: portNumber(String(dbRest.readPort)) ?? dbRest.port,
    readUser: dbRest.readUser.trim() || dbRest.user,
    readPassword: readPassword || password,
    readSslMode: (dbRest.readSslMode as SslMode | '') || dbRest.sslMode,
    readSslRootCert: dbRest.readSslRootCert || dbRest.sslRootCert,
  };
  const { saslPasswordFile, ...kafkaRest } = raw.kafka;
  const kafka: Config['kafka'] = {
    ...kafkaRest,
    brokers: kafkaRest.brokers.split(',').map((b) => b.trim()),
    saslPassword: secret(kafkaRest.saslPassword, saslPasswordFile, 'kafka.saslPasswordFile'),
  };
  const { readTokenFile, ...httpRest } = raw.http;
  const http: Config['http'] = {
    ...httpRest,
    readToken: secret(httpRest.readToken, readTokenFile, 'http.readTokenFile'),
  };
  const { minTimestamp, extraColumns, ...write } = raw.write;
  const config: Config = {
    ...raw,
    db,
    kafka,
    http,
    write: {
      ...write,
      minTimestampMs: isoInstant(minTimestamp)!,
      extraColumns: parseExtraColumns(extraColumns),
    },
  };

  // Cross-field rules. Each names its settings through the schema (envNameOf, envVar), never by hand.
  const w = config.write;
  if (w.intervalMs <= 0) problem('write.intervalMs', 'must be greater than 0');
  if (w.intervalMs >= config.kafka.sessionTimeoutMs) {
    problem('write.intervalMs', `must be shorter than ${envVar('kafka.sessionTimeoutMs')}`);
  }
  if (w.concurrency > config.db.maxConnections) {
    problem('write.concurrency', `must not exceed ${envVar('db.maxConnections')}`);
  }
  if (w.batchSize > w.queueSize) {
    problem('write.batchSize', `must not exceed ${envVar('write.queueSize')}`);
  }
  if (w.retryDelayMs <= 0) problem('write.retryDelayMs', 'must be greater than 0');
  if (w.retryMaxDelayMs < w.retryDelayMs) {
    problem('write.retryMaxDelayMs', `must be at least ${envVar('write.retryDelayMs')}`);
  }
  if (config.db.maxIdleConnections > config.db.maxConnections) {
    problem('db.maxIdleConnections', `must not exceed ${envVar('db.maxConnections')}`);
  }
  if (config.db.retentionMs !== 0 && config.db.retentionMs < 3 * UNIT_MS.d!) {
    problem(
      'db.retentionMs',
      "must be 0 (keep everything) or at least 3d (the daily aggregate's refresh window must hold two days)",
    );
  }
  if (config.db.sslMode === 'verify-full' && config.db.sslRootCert) {
    const why = unreadable(config.db.sslRootCert);
    if (why) problem('db.sslRootCert', why);
  }
  if (
    config.db.readSslMode === 'verify-full' &&
    raw.db.readSslRootCert &&
    raw.db.readSslRootCert !== config.db.sslRootCert
  ) {
    const why = unreadable(raw.db.readSslRootCert);
    if (why) problem('db.readSslRootCert', why);
  }
  const k = config.kafka;
  if (k.saslMechanism !== 'none' && (!k.saslUsername || !k.saslPassword)) {
    problem(
      'kafka.saslMechanism',
      `needs ${envVar('kafka.saslUsername')} and ${envVar('kafka.saslPassword')} (or ${envVar('kafka.saslPasswordFile')})`,
    );
  }
  for (const leaf of ['sslCaFile', 'sslCertFile', 'sslKeyFile'] as const) {
    const file = k[leaf];
    if (!file) continue;
    const why = k.ssl ? unreadable(file) : `is set but ${envVar('kafka.ssl')} is false`;
    if (why) problem(`kafka.${leaf}`, why);
  }
  if (Boolean(k.sslCertFile) !== Boolean(k.sslKeyFile)) {
    problem(
      'kafka.sslCertFile',
      `mutual TLS needs both ${envVar('kafka.sslCertFile')} and ${envVar('kafka.sslKeyFile')}`,
    );
  }
  if (config.kafka.dlqTopic === config.kafka.topic) {
    problem('kafka.dlqTopic', `must differ from ${envVar('kafka.topic')}`);
  }
  // 0 would switch node's timeout off: the very thing these bound.
  if (config.http.requestTimeoutMs < 1000) problem('http.requestTimeoutMs', 'must be at least 1s');
  if (config.http.idleTimeoutMs < 1000) problem('http.idleTimeoutMs', 'must be at least 1s');
  if (config.shutdownTimeoutMs < 1000) problem('shutdownTimeoutMs', 'must be at least 1s');
  if (k.stallTimeoutMs < 10_000)
    problem(
      'kafka.stallTimeoutMs',
      'must be at least 10s (a partition waits that long for its flush and its fetch)',
    );
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Why a file the service will read at start-up cannot be read, or null. */
function unreadable(file: string): string | null {
  try {
    fs.readFileSync(file);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'file does not exist' : `cannot read the file (${code ?? 'error'})`;
  }
}

/** A copy safe to log: secrets replaced. */
export function redactedConfig(config: Config): Config {
  return {
    ...config,
    db: {
      ...config.db,
      password: config.db.password ? '[redacted]' : '',
      readPassword: config.db.readPassword ? '[redacted]' : '',
    },
    kafka: { ...config.kafka, saslPassword: config.kafka.saslPassword ? '[redacted]' : '' },
    http: { ...config.http, readToken: config.http.readToken ? '[redacted]' : '' },
  };
}

/**
 * A duration in the form the parser reads back (parseDuration): the largest unit that divides it
 * exactly, `0` for none. The inverse of parseDuration on what it returns.
 */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit]! === 0) return `${ms / UNIT_MS[unit]!}${unit}`;
  }
  return `${ms}ms`;
}

/** One setting of the schema as a reference shows it (scripts/docs.ts writes docs/configuration.md). */
export interface Setting {
  /** The schema key: `db.port`, `logLevel`. */
  key: string;
  env: string;
  doc: string;
  /** The default as an environment variable would give it: a value the parser accepts back. */
  default: string;
  /** What the parser accepts, in words. */
  accepts: string;
  sensitive: boolean;
}

interface Leaf {
  doc: string;
  format: unknown;
  default: unknown;
  env: string;
  sensitive?: boolean;
}

/** Every setting of the schema, in schema order, described from the schema itself. */
export function settings(): Setting[] {
  const out: Setting[] = [];
  const visit = (node: Record<string, unknown>, prefix: string): void => {
    for (const [name, value] of Object.entries(node)) {
      const key = prefix + name;
      const leaf = value as Leaf;
      if (typeof leaf.env !== 'string') {
        visit(value as Record<string, unknown>, `${key}.`);
        continue;
      }
      out.push({
        key,
        env: leaf.env,
        doc: leaf.doc,
        default: defaultText(leaf),
        accepts: acceptsText(leaf.format),
        sensitive: leaf.sensitive === true,
      });
    }
  };
  visit(schema, '');
  return out;
}

function defaultText(leaf: Leaf): string {
  if (leaf.format === 'duration-ms') return formatDuration(leaf.default as number);
  return String(leaf.default);
}

/** The rule of a format: named ones by name; a validating function by the message it refuses with. */
function acceptsText(format: unknown): string {
  if (format === 'duration-ms') return 'a duration';
  if (format === 'strict-boolean') return '`true` or `false`';
  if (format === String) return 'text';
  if (Array.isArray(format)) return `one of ${format.map((v) => `\`${String(v)}\``).join(', ')}`;
  if (typeof format === 'string') {
    const range = /^int (\d+)\.\.(\d+)$/.exec(format);
    if (range) return `an integer from ${range[1]} to ${range[2]}`;
  }
  if (typeof format === 'function') {
    try {
      (format as (v: unknown) => void)(undefined);
    } catch (err) {
      return (err as Error).message.replace(/^must be /, '');
    }
  }
  throw new Error(`no description for the format ${String(format)}`);
}
