import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseDuration, redactedConfig, type Config } from '../../src/config/index';

type Env = Record<string, string | undefined>;

let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bar-writer-config-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function tempFile(name: string, content: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content, 'utf8');
  return file;
}

/** Runs loadConfig expecting a ConfigError; returns it. */
function configError(env: Env): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected loadConfig to throw a ConfigError');
}

const DEFAULTS: Config = {
  db: {
    host: 'localhost',
    port: 5432,
    user: 'postgres',
    password: '',
    name: 'postgres',
    schema: 'public',
    sslMode: 'disable',
    sslRootCert: '',
    maxConnections: 10,
    maxIdleConnections: 5,
    connMaxLifetimeMs: 1_800_000,
    statementTimeoutMs: 30_000,
    readMaxConnections: 2,
    readTimeoutMs: 5000,
    readHost: 'localhost',
    readPort: 5432,
    readUser: 'postgres',
    readPassword: '',
    readSslMode: 'disable',
    readSslRootCert: '',
    retentionMs: 0,
    aggregateTimezone: 'UTC',
    lockTimeoutMs: 5000,
  },
  write: {
    batchSize: 1000,
    concurrency: 2,
    intervalMs: 1000,
    queueSize: 10_000,
    queueBytes: 67_108_864,
    flushOnCaughtUp: true,
    maxRetries: 3,
    retryDelayMs: 100,
    retryMaxDelayMs: 30_000,
    minTimestampMs: Date.UTC(1990, 0, 1),
    versionMaxFutureMs: 3_600_000,
    extraColumns: [],
  },
  kafka: {
    brokers: ['localhost:9092'],
    topic: 'bars.1m',
    groupId: 'bar-writer',
    clientId: 'bar-writer',
    dlqTopic: 'bars.1m.dlq',
    sessionTimeoutMs: 30_000,
    stallTimeoutMs: 60_000,
    fromBeginning: true,
    maxBytesPerPartition: 262_144,
    maxBytes: 2_097_152,
    maxWaitMs: 100,
    metadataMaxAgeMs: 30_000,
    ssl: false,
    sslCaFile: '',
    sslCertFile: '',
    sslKeyFile: '',
    sslRejectUnauthorized: true,
    saslMechanism: 'none',
    saslUsername: '',
    saslPassword: '',
  },
  http: {
    port: 8080,
    readApi: true,
    maxRangeMs: 2_678_400_000,
    maxLimit: 10_000,
    maxConnections: 256,
    requestTimeoutMs: 15_000,
    idleTimeoutMs: 30_000,
    maxQueuedReads: 32,
    responseBufferBytes: 67_108_864,
    readToken: '',
  },
  logLevel: 'info',
  shutdownTimeoutMs: 25_000,
};

describe('parseDuration', () => {
  test.each([
    ['100ms', 100],
    ['250ms', 250],
    ['1s', 1000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['0', 0],
    ['0s', 0],
    ['250', 250],
    [' 2s ', 2000],
    ['90s', 90_000],
  ])('%p → %p ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  test('a non-negative safe integer number is taken as ms', () => {
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(1500)).toBe(1500);
  });

  test.each(['1.5s', '-1s', '1w', '', 'abc', '1 s', 's', '1S', '1ms5', '0x10'])('%p is rejected', (input) => {
    expect(() => parseDuration(input)).toThrow(`must be a duration like 100ms, 1s, 5m or 1h, got "${input}"`);
  });

  test.each([[-1], [1.5], [Number.NaN], [null], [undefined], [true], [{}]])(
    'non-string %p is rejected',
    (input) => {
      expect(() => parseDuration(input)).toThrow(/^must be a duration like 100ms, 1s, 5m or 1h$/);
    },
  );
});

describe('loadConfig: defaults', () => {
  test('an empty env gives every documented default', () => {
    expect(loadConfig({})).toEqual(DEFAULTS);
  });

  test('the result carries no passwordFile key', () => {
    expect(Object.keys(loadConfig({}).db)).not.toContain('passwordFile');
  });

  test('does not read process.env when an env object is passed', () => {
    const saved = process.env.DB_PORT;
    process.env.DB_PORT = 'not-a-port';
    try {
      expect(loadConfig({}).db.port).toBe(5432);
    } finally {
      if (saved === undefined) delete process.env.DB_PORT;
      else process.env.DB_PORT = saved;
    }
  });
});

describe('loadConfig: values from env', () => {
  test('every kind of value is parsed', () => {
    const c = loadConfig({
      DB_HOST: 'db.internal',
      DB_PORT: '6543',
      DB_USER: 'writer',
      DB_NAME: 'market',
      DB_SCHEMA: 'bars_v2',
      DB_SSL_MODE: 'require',
      DB_MAX_CONNECTIONS: '20',
      DB_MAX_IDLE_CONNS: '0',
      DB_CONN_MAX_LIFETIME: '1h',
      DB_STATEMENT_TIMEOUT: '0',
      BARS_DB_RETENTION: '400d',
      BARS_DB_AGGREGATE_TIMEZONE: 'America/New_York',
      DB_LOCK_TIMEOUT: '2s',
      BARS_MIN_TIMESTAMP: '1970-01-01T00:00:00Z',
      BARS_VERSION_MAX_FUTURE: '10m',
      BARS_EXTRA_COLUMNS: 'exchange:text(8), trade_flags:bigint,adjusted : Boolean,score:double',
      KAFKA_METADATA_MAX_AGE: '10s',
      BARS_DB_WRITE_BATCH_SIZE: '500',
      BARS_DB_WRITE_CONCURRENCY: '4',
      BARS_DB_WRITE_INTERVAL: '250ms',
      BARS_DB_WRITE_QUEUE_SIZE: '5000',
      BARS_DB_WRITE_QUEUE_BYTES: '1048576',
      BARS_DB_FLUSH_ON_CAUGHT_UP: 'false',
      BARS_DB_MAX_RETRIES: '0',
      BARS_DB_RETRY_DELAY: '1s',
      BARS_DB_RETRY_MAX_DELAY: '5m',
      KAFKA_BROKERS: 'k1:9092, k2:9093,k3:19092',
      KAFKA_TOPIC: 'bars.5m',
      KAFKA_GROUP_ID: 'g',
      KAFKA_CLIENT_ID: 'c',
      KAFKA_DLQ_TOPIC: '',
      KAFKA_SESSION_TIMEOUT: '45s',
      KAFKA_STALL_TIMEOUT: '2m',
      KAFKA_FROM_BEGINNING: '0',
      KAFKA_MAX_BYTES_PER_PARTITION: '2048',
      KAFKA_MAX_BYTES: '4096',
      KAFKA_MAX_WAIT: '100',
      HTTP_PORT: '0',
      HTTP_READ_API: 'false',
      HTTP_MAX_RANGE: '1h',
      HTTP_MAX_LIMIT: '50',
      HTTP_MAX_CONNECTIONS: '1000',
      HTTP_REQUEST_TIMEOUT: '1m',
      HTTP_IDLE_TIMEOUT: '2m',
      HTTP_MAX_QUEUED_READS: '5',
      HTTP_RESPONSE_BUFFER_BYTES: '2048',
      HTTP_READ_TOKEN: 'tok',
      DB_READ_MAX_CONNECTIONS: '3',
      DB_READ_TIMEOUT: '0',
      LOG_LEVEL: 'debug',
      SHUTDOWN_TIMEOUT: '1s',
    });
    expect(c).toEqual({
      db: {
        host: 'db.internal',
        port: 6543,
        user: 'writer',
        password: '',
        name: 'market',
        schema: 'bars_v2',
        sslMode: 'require',
        sslRootCert: '',
        maxConnections: 20,
        maxIdleConnections: 0,
        connMaxLifetimeMs: 3_600_000,
        statementTimeoutMs: 0,
        readMaxConnections: 3,
        readTimeoutMs: 0,
        readHost: 'db.internal',
        readPort: 6543,
        readUser: 'writer',
        readPassword: '',
        readSslMode: 'require',
        readSslRootCert: '',
        retentionMs: 34_560_000_000,
        aggregateTimezone: 'America/New_York',
        lockTimeoutMs: 2000,
      },
      write: {
        batchSize: 500,
        concurrency: 4,
        intervalMs: 250,
        queueSize: 5000,
        queueBytes: 1_048_576,
        flushOnCaughtUp: false,
        maxRetries: 0,
        retryDelayMs: 1000,
        retryMaxDelayMs: 300_000,
        minTimestampMs: 0,
        versionMaxFutureMs: 600_000,
        extraColumns: [
          { name: 'exchange', type: 'text', maxLength: 8 },
          { name: 'trade_flags', type: 'bigint', maxLength: null },
          { name: 'adjusted', type: 'boolean', maxLength: null },
          { name: 'score', type: 'double precision', maxLength: null },
        ],
      },
      kafka: {
        brokers: ['k1:9092', 'k2:9093', 'k3:19092'],
        topic: 'bars.5m',
        groupId: 'g',
        clientId: 'c',
        dlqTopic: '',
        sessionTimeoutMs: 45_000,
        stallTimeoutMs: 120_000,
        fromBeginning: false,
        maxBytesPerPartition: 2048,
        maxBytes: 4096,
        maxWaitMs: 100,
        metadataMaxAgeMs: 10_000,
        ssl: false,
        sslCaFile: '',
        sslCertFile: '',
        sslKeyFile: '',
        sslRejectUnauthorized: true,
        saslMechanism: 'none',
        saslUsername: '',
        saslPassword: '',
      },
      http: {
        port: 0,
        readApi: false,
        maxRangeMs: 3_600_000,
        maxLimit: 50,
        maxConnections: 1000,
        requestTimeoutMs: 60_000,
        idleTimeoutMs: 120_000,
        maxQueuedReads: 5,
        responseBufferBytes: 2048,
        readToken: 'tok',
      },
      logLevel: 'debug',
      shutdownTimeoutMs: 1000,
    });
  });

  test.each([
    ['100ms', 100],
    ['1s', 1000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['750', 750],
  ])('duration %p → %p ms', (value, ms) => {
    const c = loadConfig({ BARS_DB_WRITE_INTERVAL: value, KAFKA_SESSION_TIMEOUT: '2h' });
    expect(c.write.intervalMs).toBe(ms);
    expect(c.kafka.sessionTimeoutMs).toBe(7_200_000);
  });

  test('integers tolerate surrounding whitespace', () => {
    expect(loadConfig({ DB_PORT: ' 6000 ' }).db.port).toBe(6000);
  });

  test.each([
    ['true', true],
    ['1', true],
    ['false', false],
    ['0', false],
  ])('strict boolean %p → %p', (value, expected) => {
    expect(loadConfig({ KAFKA_FROM_BEGINNING: value }).kafka.fromBeginning).toBe(expected);
  });

  test('integer bounds are inclusive', () => {
    expect(loadConfig({ DB_PORT: '1' }).db.port).toBe(1);
    expect(loadConfig({ DB_PORT: '65535' }).db.port).toBe(65535);
  });
});

describe('loadConfig: invalid values', () => {
  test.each([
    ['exchange', 'BARS_EXTRA_COLUMNS (write.extraColumns): "exchange" must be name:type'],
    ['Exchange:text', 'BARS_EXTRA_COLUMNS (write.extraColumns): "Exchange" must be a lower-case SQL name'],
    ['1x:text', 'BARS_EXTRA_COLUMNS (write.extraColumns): "1x" must be a lower-case SQL name'],
    ['volume:bigint', 'BARS_EXTRA_COLUMNS (write.extraColumns): "volume" is a column bar-writer already has'],
    ['a:bigint,a:text', 'BARS_EXTRA_COLUMNS (write.extraColumns): "a" is named twice'],
    ['a:int', 'BARS_EXTRA_COLUMNS (write.extraColumns): "a:int": the type must be bigint, double precision'],
    [
      'a:text(0)',
      'BARS_EXTRA_COLUMNS (write.extraColumns): "a:text(0)": a text bound must be from 1 to 4096',
    ],
    ['a:text(5000)', 'BARS_EXTRA_COLUMNS (write.extraColumns): "a:text(5000)": a text bound must be from 1'],
  ])('BARS_EXTRA_COLUMNS=%p names the entry and the rule', (value, message) => {
    expect(() => loadConfig({ BARS_EXTRA_COLUMNS: value })).toThrow(message);
  });

  test.each([
    ['DB_PORT', 'abc', 'DB_PORT (db.port): must be an integer from 1 to 65535: value was "abc"'],
    // convict omits "value was" for falsy values such as 0
    ['DB_PORT', '0', 'DB_PORT (db.port): must be an integer from 1 to 65535'],
    ['DB_PORT', '65536', 'DB_PORT (db.port): must be an integer from 1 to 65535: value was 65536'],
    ['DB_PORT', '1.5', 'DB_PORT (db.port): must be an integer from 1 to 65535: value was "1.5"'],
    ['DB_HOST', ' ', 'DB_HOST (db.host): must be a non-empty host name: value was " "'],
    [
      'DB_SCHEMA',
      'Bars',
      'DB_SCHEMA (db.schema): must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters): value was "Bars"',
    ],
    [
      'DB_SSL_MODE',
      'allow',
      'DB_SSL_MODE (db.sslMode): must be one of the possible values: ["disable","require","verify-full"]: value was "allow"',
    ],
    ['DB_MAX_CONNECTIONS', '0', 'DB_MAX_CONNECTIONS (db.maxConnections): must be an integer from 1 to 1000'],
    [
      'BARS_DB_WRITE_INTERVAL',
      '1.5s',
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be a duration like 100ms, 1s, 5m or 1h: value was "1.5s"',
    ],
    [
      'BARS_DB_WRITE_INTERVAL',
      '-1s',
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be a duration like 100ms, 1s, 5m or 1h: value was "-1s"',
    ],
    [
      'KAFKA_FROM_BEGINNING',
      'maybe',
      'KAFKA_FROM_BEGINNING (kafka.fromBeginning): must be true or false: value was "maybe"',
    ],
    [
      'BARS_DB_FLUSH_ON_CAUGHT_UP',
      'yes',
      'BARS_DB_FLUSH_ON_CAUGHT_UP (write.flushOnCaughtUp): must be true or false: value was "yes"',
    ],
    ['HTTP_READ_API', 'TRUE', 'HTTP_READ_API (http.readApi): must be true or false: value was "TRUE"'],
    [
      'KAFKA_BROKERS',
      'nohost',
      'KAFKA_BROKERS (kafka.brokers): must be a comma-separated list of host:port: value was "nohost"',
    ],
    [
      'KAFKA_BROKERS',
      'a:1,',
      'KAFKA_BROKERS (kafka.brokers): must be a comma-separated list of host:port: value was "a:1,"',
    ],
    [
      'LOG_LEVEL',
      'loud',
      'LOG_LEVEL (logLevel): must be one of the possible values: ["fatal","error","warn","info","debug","trace","silent"]: value was "loud"',
    ],
    ['KAFKA_TOPIC', '', 'KAFKA_TOPIC (kafka.topic): must be a non-empty topic name'],
    [
      'BARS_MIN_TIMESTAMP',
      '1990-01-01',
      'BARS_MIN_TIMESTAMP (write.minTimestamp): must be an ISO-8601 date-time with a zone, such as 1990-01-01T00:00:00Z: value was "1990-01-01"',
    ],
    [
      'BARS_MIN_TIMESTAMP',
      '1899-12-31T23:59:00Z',
      'BARS_MIN_TIMESTAMP (write.minTimestamp): must not be before 1900-01-01T00:00:00Z: value was "1899-12-31T23:59:00Z"',
    ],
    [
      'BARS_DB_AGGREGATE_TIMEZONE',
      'New York',
      'BARS_DB_AGGREGATE_TIMEZONE (db.aggregateTimezone): must be an IANA time zone name such as UTC or America/New_York: value was "New York"',
    ],
    [
      'BARS_DB_AGGREGATE_TIMEZONE',
      'EST5EDT ',
      'BARS_DB_AGGREGATE_TIMEZONE (db.aggregateTimezone): must be an IANA time zone name such as UTC or America/New_York: value was "EST5EDT "',
    ],
  ])('%s=%p is reported naming the env variable', (key, value, problem) => {
    const err = configError({ [key]: value });
    expect(err.problems).toEqual([problem]);
    expect(err.name).toBe('ConfigError');
    expect(err.message).toBe(`invalid configuration:\n  - ${problem}`);
  });

  test('every bad key is reported at once, in one ConfigError', () => {
    const err = configError({
      DB_PORT: 'abc',
      DB_SCHEMA: 'Bad',
      BARS_DB_WRITE_INTERVAL: '1.5s',
      KAFKA_FROM_BEGINNING: 'maybe',
      KAFKA_BROKERS: 'nohost',
      LOG_LEVEL: 'loud',
    });
    expect(err).toBeInstanceOf(Error);
    expect(err.problems).toHaveLength(6);
    for (const name of [
      'DB_PORT (db.port)',
      'DB_SCHEMA (db.schema)',
      'BARS_DB_WRITE_INTERVAL (write.intervalMs)',
      'KAFKA_FROM_BEGINNING (kafka.fromBeginning)',
      'KAFKA_BROKERS (kafka.brokers)',
      'LOG_LEVEL (logLevel)',
    ]) {
      expect(err.problems.filter((p) => p.startsWith(`${name}: `))).toHaveLength(1);
      expect(err.message).toContain(`\n  - ${name}: `);
    }
  });
});

describe('loadConfig: cross-field rules', () => {
  test('write interval must be shorter than the session timeout', () => {
    expect(configError({ BARS_DB_WRITE_INTERVAL: '30s' }).problems).toEqual([
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be shorter than KAFKA_SESSION_TIMEOUT',
    ]);
    expect(configError({ BARS_DB_WRITE_INTERVAL: '10s', KAFKA_SESSION_TIMEOUT: '6s' }).problems).toEqual([
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be shorter than KAFKA_SESSION_TIMEOUT',
    ]);
    expect(loadConfig({ BARS_DB_WRITE_INTERVAL: '29999' }).write.intervalMs).toBe(29_999);
  });

  test('write interval 0 is rejected', () => {
    expect(configError({ BARS_DB_WRITE_INTERVAL: '0' }).problems).toEqual([
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be greater than 0',
    ]);
  });

  test('batch size must not exceed queue size (equal is fine)', () => {
    expect(configError({ BARS_DB_WRITE_BATCH_SIZE: '10001' }).problems).toEqual([
      'BARS_DB_WRITE_BATCH_SIZE (write.batchSize): must not exceed BARS_DB_WRITE_QUEUE_SIZE',
    ]);
    expect(configError({ BARS_DB_WRITE_QUEUE_SIZE: '999' }).problems).toEqual([
      'BARS_DB_WRITE_BATCH_SIZE (write.batchSize): must not exceed BARS_DB_WRITE_QUEUE_SIZE',
    ]);
    expect(loadConfig({ BARS_DB_WRITE_BATCH_SIZE: '10000' }).write.batchSize).toBe(10_000);
  });

  test('idle connections must not exceed max connections (equal is fine)', () => {
    expect(configError({ DB_MAX_IDLE_CONNS: '11' }).problems).toEqual([
      'DB_MAX_IDLE_CONNS (db.maxIdleConnections): must not exceed DB_MAX_CONNECTIONS',
    ]);
    expect(configError({ DB_MAX_CONNECTIONS: '2' }).problems).toEqual([
      'DB_MAX_IDLE_CONNS (db.maxIdleConnections): must not exceed DB_MAX_CONNECTIONS',
    ]);
    expect(loadConfig({ DB_MAX_IDLE_CONNS: '10' }).db.maxIdleConnections).toBe(10);
  });

  test('write concurrency must not exceed max connections (equal is fine)', () => {
    expect(configError({ BARS_DB_WRITE_CONCURRENCY: '11' }).problems).toEqual([
      'BARS_DB_WRITE_CONCURRENCY (write.concurrency): must not exceed DB_MAX_CONNECTIONS',
    ]);
    expect(configError({ BARS_DB_WRITE_CONCURRENCY: '0' }).problems[0]).toMatch(/^BARS_DB_WRITE_CONCURRENCY/);
    expect(loadConfig({ BARS_DB_WRITE_CONCURRENCY: '10' }).write.concurrency).toBe(10);
  });

  test('the dead-letter topic must differ from the topic', () => {
    expect(configError({ KAFKA_DLQ_TOPIC: 'bars.1m' }).problems).toEqual([
      'KAFKA_DLQ_TOPIC (kafka.dlqTopic): must differ from KAFKA_TOPIC',
    ]);
    expect(configError({ KAFKA_TOPIC: 'bars.1m.dlq' }).problems).toEqual([
      'KAFKA_DLQ_TOPIC (kafka.dlqTopic): must differ from KAFKA_TOPIC',
    ]);
  });

  test('retry delay must be > 0 and the cap at least the delay', () => {
    expect(configError({ BARS_DB_RETRY_DELAY: '0' }).problems).toEqual([
      'BARS_DB_RETRY_DELAY (write.retryDelayMs): must be greater than 0',
    ]);
    expect(configError({ BARS_DB_RETRY_DELAY: '2s', BARS_DB_RETRY_MAX_DELAY: '1999ms' }).problems).toEqual([
      'BARS_DB_RETRY_MAX_DELAY (write.retryMaxDelayMs): must be at least BARS_DB_RETRY_DELAY',
    ]);
    expect(
      loadConfig({ BARS_DB_RETRY_DELAY: '2s', BARS_DB_RETRY_MAX_DELAY: '2000' }).write.retryMaxDelayMs,
    ).toBe(2000);
  });

  test('retention is 0 or at least 3 days (the daily aggregate refreshes a window of two days)', () => {
    expect(configError({ BARS_DB_RETENTION: '71h' }).problems).toEqual([
      "BARS_DB_RETENTION (db.retentionMs): must be 0 (keep everything) or at least 3d (the daily aggregate's refresh window must hold two days)",
    ]);
    expect(loadConfig({ BARS_DB_RETENTION: '3d' }).db.retentionMs).toBe(259_200_000);
    expect(loadConfig({ BARS_DB_RETENTION: '0' }).db.retentionMs).toBe(0);
  });

  test('shutdown timeout must be at least 1s', () => {
    expect(configError({ SHUTDOWN_TIMEOUT: '999ms' }).problems).toEqual([
      'SHUTDOWN_TIMEOUT (shutdownTimeoutMs): must be at least 1s',
    ]);
  });

  test('verify-full with a missing CA file is rejected; an existing file or another mode is fine', () => {
    const missing = path.join(dir, 'no-such-ca.pem');
    expect(configError({ DB_SSL_MODE: 'verify-full', DB_SSL_ROOT_CERT: missing }).problems).toEqual([
      'DB_SSL_ROOT_CERT (db.sslRootCert): file does not exist',
    ]);
    const ca = tempFile('ca.pem', '-----BEGIN CERTIFICATE-----\n');
    expect(loadConfig({ DB_SSL_MODE: 'verify-full', DB_SSL_ROOT_CERT: ca }).db.sslRootCert).toBe(ca);
    expect(loadConfig({ DB_SSL_MODE: 'require', DB_SSL_ROOT_CERT: missing }).db.sslMode).toBe('require');
  });

  test('every cross-field problem is reported at once', () => {
    const err = configError({
      BARS_DB_WRITE_INTERVAL: '30s',
      BARS_DB_WRITE_BATCH_SIZE: '20000',
      DB_MAX_IDLE_CONNS: '11',
      KAFKA_DLQ_TOPIC: 'bars.1m',
      SHUTDOWN_TIMEOUT: '999',
      BARS_DB_RETRY_DELAY: '0',
    });
    expect(err.problems).toEqual([
      'BARS_DB_WRITE_INTERVAL (write.intervalMs): must be shorter than KAFKA_SESSION_TIMEOUT',
      'BARS_DB_WRITE_BATCH_SIZE (write.batchSize): must not exceed BARS_DB_WRITE_QUEUE_SIZE',
      'BARS_DB_RETRY_DELAY (write.retryDelayMs): must be greater than 0',
      'DB_MAX_IDLE_CONNS (db.maxIdleConnections): must not exceed DB_MAX_CONNECTIONS',
      'KAFKA_DLQ_TOPIC (kafka.dlqTopic): must differ from KAFKA_TOPIC',
      'SHUTDOWN_TIMEOUT (shutdownTimeoutMs): must be at least 1s',
    ]);
  });
});

describe('loadConfig: the read connection (DB_READ_*)', () => {
  const WRITER = {
    DB_HOST: 'primary.internal',
    DB_PORT: '6543',
    DB_USER: 'writer',
    DB_PASSWORD: 'writer-secret',
    DB_SSL_MODE: 'require',
  };

  test("each one left empty is the writer's setting", () => {
    const { db } = loadConfig({ ...WRITER, DB_READ_HOST: '', DB_READ_PORT: '' });
    expect(db).toMatchObject({
      readHost: 'primary.internal',
      readPort: 6543,
      readUser: 'writer',
      readPassword: 'writer-secret',
      readSslMode: 'require',
      readSslRootCert: '',
    });
  });

  test('each one set is its own', () => {
    const ca = tempFile('read-ca.pem', 'not checked here');
    const { db } = loadConfig({
      ...WRITER,
      DB_READ_HOST: 'replica.internal',
      DB_READ_PORT: ' 6544 ',
      DB_READ_USER: 'reader',
      DB_READ_PASSWORD: 'reader-secret',
      DB_READ_SSL_MODE: 'verify-full',
      DB_READ_SSL_ROOT_CERT: ca,
    });
    expect(db).toMatchObject({
      host: 'primary.internal',
      port: 6543,
      user: 'writer',
      password: 'writer-secret',
      sslMode: 'require',
      readHost: 'replica.internal',
      readPort: 6544,
      readUser: 'reader',
      readPassword: 'reader-secret',
      readSslMode: 'verify-full',
      readSslRootCert: ca,
    });
    expect(Object.keys(db)).not.toContain('readPasswordFile');
  });

  test('DB_READ_PASSWORD_FILE is read when DB_READ_PASSWORD is empty; a port from CONFIG_FILE may be a number', () => {
    const file = tempFile('read-password', 'file-reader\n');
    const json = tempFile('read.json', JSON.stringify({ db: { readPort: 7000 } }));
    const { db } = loadConfig({ ...WRITER, DB_READ_PASSWORD_FILE: file, CONFIG_FILE: json });
    expect(db.readPassword).toBe('file-reader');
    expect(db.readPort).toBe(7000);
  });

  test('bad values are reported naming the variable and the rule, never the password', () => {
    const err = configError({
      DB_READ_PASSWORD: 'hunter2-reader',
      DB_READ_HOST: '  ',
      DB_READ_PORT: '70000',
      DB_READ_USER: ' ',
      DB_READ_SSL_MODE: 'prefer',
    });
    expect(err.problems).toEqual([
      'DB_READ_HOST (db.readHost): must be empty or a host name: value was "  "',
      'DB_READ_PORT (db.readPort): must be empty or an integer from 1 to 65535: value was "70000"',
      'DB_READ_USER (db.readUser): must be empty or a user name: value was " "',
      'DB_READ_SSL_MODE (db.readSslMode): must be empty or one of disable, require, verify-full: value was "prefer"',
    ]);
    expect(err.message).not.toContain('hunter2-reader');
  });

  test('an unreadable DB_READ_SSL_ROOT_CERT for verify-full is reported', () => {
    const err = configError({
      DB_READ_SSL_MODE: 'verify-full',
      DB_READ_SSL_ROOT_CERT: path.join(dir, 'missing-ca.pem'),
    });
    expect(err.problems).toEqual(['DB_READ_SSL_ROOT_CERT (db.readSslRootCert): file does not exist']);
  });

  test('redactedConfig replaces the read password too', () => {
    const config = loadConfig({ DB_READ_PASSWORD: 'hunter2-reader' });
    const redacted = redactedConfig(config);
    expect(redacted.db.readPassword).toBe('[redacted]');
    expect(JSON.stringify(redacted)).not.toContain('hunter2-reader');
    // Defaulted to the writer's, it is that password: redacted all the same.
    expect(JSON.stringify(redactedConfig(loadConfig({ DB_PASSWORD: 'hunter2-w' })))).not.toContain(
      'hunter2-w',
    );
  });
});

describe('loadConfig: secrets', () => {
  const SECRET = 'hunter2-S3cr3t';

  test('DB_PASSWORD is loaded', () => {
    expect(loadConfig({ DB_PASSWORD: SECRET }).db.password).toBe(SECRET);
  });

  test('DB_PASSWORD never appears in a ConfigError (schema or cross-field problems)', () => {
    const schemaErr = configError({ DB_PASSWORD: SECRET, DB_PORT: 'abc', LOG_LEVEL: 'loud' });
    expect(schemaErr.problems).toHaveLength(2);
    expect(schemaErr.message).not.toContain(SECRET);
    expect(JSON.stringify(schemaErr.problems)).not.toContain(SECRET);

    const crossErr = configError({ DB_PASSWORD: SECRET, KAFKA_DLQ_TOPIC: 'bars.1m' });
    expect(crossErr.problems).toHaveLength(1);
    expect(crossErr.message).not.toContain(SECRET);
  });

  test('a password of the wrong type in CONFIG_FILE is reported without its value', () => {
    const file = tempFile('numeric-password.json', JSON.stringify({ db: { password: 918273645 } }));
    const err = configError({ CONFIG_FILE: file });
    expect(err.problems).toEqual(['DB_PASSWORD (db.password): must be of type String']);
    expect(err.message).not.toContain('918273645');
  });

  test('redactedConfig replaces the password and leaves the original untouched', () => {
    const config = loadConfig({ DB_PASSWORD: SECRET });
    const redacted = redactedConfig(config);
    expect(redacted.db.password).toBe('[redacted]');
    expect(JSON.stringify(redacted)).not.toContain(SECRET);
    expect({ ...redacted, db: { ...redacted.db, password: SECRET, readPassword: SECRET } }).toEqual(config);
    expect(config.db.password).toBe(SECRET);
  });

  test('redactedConfig keeps an empty password empty', () => {
    expect(redactedConfig(loadConfig({})).db.password).toBe('');
  });

  test('DB_PASSWORD_FILE is read when DB_PASSWORD is empty (one trailing newline stripped)', () => {
    const file = tempFile('password', 'file-secret\n');
    expect(loadConfig({ DB_PASSWORD_FILE: file }).db.password).toBe('file-secret');
    expect(loadConfig({ DB_PASSWORD: '', DB_PASSWORD_FILE: file }).db.password).toBe('file-secret');
  });

  test('DB_PASSWORD_FILE: CRLF is stripped, inner and extra newlines are kept', () => {
    expect(loadConfig({ DB_PASSWORD_FILE: tempFile('crlf', 'p4ss\r\n') }).db.password).toBe('p4ss');
    expect(loadConfig({ DB_PASSWORD_FILE: tempFile('plain', 'p4ss') }).db.password).toBe('p4ss');
    expect(loadConfig({ DB_PASSWORD_FILE: tempFile('two', 'p4ss\n\n') }).db.password).toBe('p4ss\n');
  });

  test('DB_PASSWORD wins over DB_PASSWORD_FILE', () => {
    const file = tempFile('password-unused', 'from-file\n');
    expect(loadConfig({ DB_PASSWORD: SECRET, DB_PASSWORD_FILE: file }).db.password).toBe(SECRET);
  });

  test('an unreadable DB_PASSWORD_FILE is a ConfigError naming the variable and the errno', () => {
    const err = configError({ DB_PASSWORD_FILE: path.join(dir, 'missing-password') });
    expect(err.problems).toEqual(['DB_PASSWORD_FILE (db.passwordFile): cannot read the file: ENOENT']);
  });

  test('an unreadable DB_PASSWORD_FILE is reported together with cross-field problems', () => {
    const err = configError({
      DB_PASSWORD_FILE: path.join(dir, 'missing-password'),
      KAFKA_DLQ_TOPIC: 'bars.1m',
    });
    expect(err.problems).toEqual([
      'DB_PASSWORD_FILE (db.passwordFile): cannot read the file: ENOENT',
      'KAFKA_DLQ_TOPIC (kafka.dlqTopic): must differ from KAFKA_TOPIC',
    ]);
  });

  test('HTTP_READ_TOKEN: inline, from HTTP_READ_TOKEN_FILE, the inline one winning; redacted', () => {
    expect(loadConfig({ HTTP_READ_TOKEN: SECRET }).http.readToken).toBe(SECRET);
    const file = tempFile('token', 'tok-from-file\n');
    expect(loadConfig({ HTTP_READ_TOKEN_FILE: file }).http.readToken).toBe('tok-from-file');
    expect(loadConfig({ HTTP_READ_TOKEN: SECRET, HTTP_READ_TOKEN_FILE: file }).http.readToken).toBe(SECRET);
    expect(Object.keys(loadConfig({ HTTP_READ_TOKEN_FILE: file }).http)).not.toContain('readTokenFile');
    const redacted = redactedConfig(loadConfig({ HTTP_READ_TOKEN: SECRET, DB_PASSWORD: 'pw' }));
    expect(redacted.http.readToken).toBe('[redacted]');
    expect(JSON.stringify(redacted)).not.toContain(SECRET);
    expect(redactedConfig(loadConfig({})).http.readToken).toBe('');
    expect(configError({ HTTP_READ_TOKEN_FILE: path.join(dir, 'missing-token') }).problems).toEqual([
      'HTTP_READ_TOKEN_FILE (http.readTokenFile): cannot read the file: ENOENT',
    ]);
  });

  test('the read API limits are read from their env names and checked', () => {
    const c = loadConfig({
      DB_READ_MAX_CONNECTIONS: '4',
      DB_READ_TIMEOUT: '2s',
      HTTP_MAX_CONNECTIONS: '64',
      HTTP_REQUEST_TIMEOUT: '5s',
      HTTP_IDLE_TIMEOUT: '10s',
      HTTP_MAX_QUEUED_READS: '0',
      HTTP_RESPONSE_BUFFER_BYTES: '1048576',
    });
    expect([c.db.readMaxConnections, c.db.readTimeoutMs]).toEqual([4, 2000]);
    expect(c.http).toEqual({
      ...DEFAULTS.http,
      maxConnections: 64,
      requestTimeoutMs: 5000,
      idleTimeoutMs: 10_000,
      maxQueuedReads: 0,
      responseBufferBytes: 1_048_576,
    });
    expect(configError({ DB_READ_MAX_CONNECTIONS: '0' }).problems).toEqual([
      'DB_READ_MAX_CONNECTIONS (db.readMaxConnections): must be an integer from 1 to 100',
    ]);
    expect(configError({ HTTP_IDLE_TIMEOUT: '0', HTTP_REQUEST_TIMEOUT: '500ms' }).problems).toEqual([
      'HTTP_REQUEST_TIMEOUT (http.requestTimeoutMs): must be at least 1s',
      'HTTP_IDLE_TIMEOUT (http.idleTimeoutMs): must be at least 1s',
    ]);
  });

  test('a malformed CONFIG_FILE does not echo its content (or the password) in the ConfigError', () => {
    // The password was left unquoted. JSON.parse's "Unexpected token" message in Node 20 quotes about
    // 10 characters either side of the error, and loadConfig copies that message into the problem.
    const secret = 'k9Qz2x';
    const file = tempFile('broken-with-secret.json', `{"db":{"password":${secret}}}`);
    const err = configError({ CONFIG_FILE: file });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(
      new RegExp(`^CONFIG_FILE: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON`),
    );
    expect(err.message).not.toContain(secret);
  });
});

describe('loadConfig: CONFIG_FILE', () => {
  test('values are loaded from the JSON file (durations and booleans as in env)', () => {
    const file = tempFile(
      'config.json',
      JSON.stringify({
        db: { host: 'file-host', port: 6543 },
        write: { intervalMs: '5s', batchSize: 200, flushOnCaughtUp: false },
        kafka: { topic: 'file.topic', sessionTimeoutMs: 60_000 },
        logLevel: 'warn',
      }),
    );
    const c = loadConfig({ CONFIG_FILE: file });
    expect(c).toEqual({
      ...DEFAULTS,
      db: { ...DEFAULTS.db, host: 'file-host', port: 6543, readHost: 'file-host', readPort: 6543 },
      write: { ...DEFAULTS.write, intervalMs: 5000, batchSize: 200, flushOnCaughtUp: false },
      kafka: { ...DEFAULTS.kafka, topic: 'file.topic', sessionTimeoutMs: 60_000 },
      logLevel: 'warn',
    });
  });

  test('env overrides the file', () => {
    const file = tempFile(
      'config-override.json',
      JSON.stringify({ db: { host: 'file-host', port: 6543, password: 'file-pw' }, logLevel: 'warn' }),
    );
    const c = loadConfig({ CONFIG_FILE: file, DB_PORT: '7000', LOG_LEVEL: 'error', DB_PASSWORD: 'env-pw' });
    expect(c.db.port).toBe(7000);
    expect(c.logLevel).toBe('error');
    expect(c.db.password).toBe('env-pw');
    expect(c.db.host).toBe('file-host');
  });

  test('a bad value in the file is reported naming the env variable', () => {
    const file = tempFile('bad-value.json', JSON.stringify({ db: { port: 'abc' } }));
    expect(configError({ CONFIG_FILE: file }).problems).toEqual([
      'DB_PORT (db.port): must be an integer from 1 to 65535: value was "abc"',
    ]);
  });

  test('an unknown key in the file is rejected (strict)', () => {
    const file = tempFile('unknown-key.json', JSON.stringify({ zzz: 1, db: { hots: 'x' } }));
    const err = configError({ CONFIG_FILE: file });
    expect(err.problems).toHaveLength(2);
    expect(err.problems).toEqual(
      expect.arrayContaining([
        "configuration param 'zzz' not declared in the schema",
        "configuration param 'db.hots' not declared in the schema",
      ]),
    );
  });

  test('a malformed file is reported with CONFIG_FILE and its path', () => {
    const file = tempFile('broken.json', '{"db": ');
    const err = configError({ CONFIG_FILE: file });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toBe(`CONFIG_FILE: ${file}: not valid JSON`);
  });

  test('a missing file is reported with CONFIG_FILE and its path', () => {
    const file = path.join(dir, 'no-such-config.json');
    const err = configError({ CONFIG_FILE: file });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(
      new RegExp(
        `^CONFIG_FILE: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read the file \\(ENOENT\\)`,
      ),
    );
  });

  test('a file problem and env problems are reported together', () => {
    const file = path.join(dir, 'no-such-config-2.json');
    const err = configError({ CONFIG_FILE: file, DB_PORT: 'abc' });
    expect(err.problems).toHaveLength(2);
    expect(err.problems[0]).toMatch(/^CONFIG_FILE: /);
    expect(err.problems[1]).toBe('DB_PORT (db.port): must be an integer from 1 to 65535: value was "abc"');
  });

  test('an empty CONFIG_FILE variable means no file', () => {
    expect(loadConfig({ CONFIG_FILE: '' })).toEqual(DEFAULTS);
  });
});

describe('loadConfig: Kafka TLS and SASL', () => {
  test('SASL needs a user name and a password; the error never shows a password', () => {
    const err = configError({ KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_PASSWORD: 'hunter2-secret' });
    expect(err.problems).toEqual([
      'KAFKA_SASL_MECHANISM (kafka.saslMechanism): needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)',
    ]);
    expect(err.message).not.toContain('hunter2-secret');
  });

  test('an unknown mechanism is refused', () => {
    expect(configError({ KAFKA_SASL_MECHANISM: 'gssapi' }).problems[0]).toMatch(
      /^KAFKA_SASL_MECHANISM \(kafka.saslMechanism\): must be one of/,
    );
  });

  test('the SASL password comes from env or a mounted file, and redactedConfig hides it', () => {
    const file = tempFile('sasl-password', 's3cr3t\n');
    const c = loadConfig({
      KAFKA_SASL_MECHANISM: 'plain',
      KAFKA_SASL_USERNAME: 'writer',
      KAFKA_SASL_PASSWORD_FILE: file,
    });
    expect(c.kafka.saslPassword).toBe('s3cr3t');
    expect(JSON.stringify(redactedConfig(c))).not.toContain('s3cr3t');
    expect(redactedConfig(c).kafka.saslPassword).toBe('[redacted]');
  });

  test('TLS files: must exist, need KAFKA_SSL, and cert and key go together', () => {
    const ca = tempFile('ca.pem', 'not really a CA');
    expect(configError({ KAFKA_SSL_CA_FILE: ca }).problems).toEqual([
      'KAFKA_SSL_CA_FILE (kafka.sslCaFile): is set but KAFKA_SSL is false',
    ]);
    expect(configError({ KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: '/nonexistent/ca.pem' }).problems).toEqual([
      'KAFKA_SSL_CA_FILE (kafka.sslCaFile): file does not exist',
    ]);
    expect(configError({ KAFKA_SSL: 'true', KAFKA_SSL_CERT_FILE: ca }).problems).toEqual([
      'KAFKA_SSL_CERT_FILE (kafka.sslCertFile): mutual TLS needs both KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE',
    ]);
    expect(loadConfig({ KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: ca }).kafka.ssl).toBe(true);
  });
});
