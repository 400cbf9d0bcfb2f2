/**
 * Kafka SASL against a real broker whose client listener requires it (PLAIN, SCRAM-SHA-256 and
 * SCRAM-SHA-512 for one user): the service consumes and commits with each mechanism; with a wrong
 * password it stays up, not ready, and neither the password nor the wrong one appears in its output.
 */
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  ownBroker,
  waitFor,
} from '../support/harness';

const PORT = Number(process.env.TEST_SASL_KAFKA_PORT ?? 19392);
const USER = 'bar-writer';
const PASSWORD = `pw-${Math.random().toString(36).slice(2)}`;
const broker = ownBroker(PORT, { KAFKA_SASL_USER: USER, KAFKA_SASL_PASSWORD: PASSWORD });

describe('Kafka SASL', () => {
  beforeAll(() => {
    broker.start();
  });
  afterAll(() => {
    broker.remove();
  });

  test.each(['plain', 'scram-sha-256', 'scram-sha-512'] as const)(
    '%s: bars land and offsets are committed',
    async (mechanism) => {
      const h = new Harness({
        brokers: broker.brokers,
        sasl: { mechanism, username: USER, password: PASSWORD },
      });
      try {
        await h.setupSchema();
        await h.createTopics(2);
        const bars = makeBars(50, 4, Date.UTC(2026, 10, 17, 14, 30), 17);
        await h.produceBars(bars);
        const service = await h.startService({
          KAFKA_SASL_MECHANISM: mechanism,
          KAFKA_SASL_USERNAME: USER,
          KAFKA_SASL_PASSWORD: PASSWORD,
        });
        await waitFor(
          'bars and offsets',
          async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
        );
        expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
        expect(await service.stop()).toBe(true);
      } finally {
        await h.cleanup();
      }
    },
  );

  test('a wrong password: the process stays up, not ready, and no password is printed', async () => {
    const h = new Harness({
      brokers: broker.brokers,
      sasl: { mechanism: 'plain', username: USER, password: PASSWORD },
    });
    try {
      await h.setupSchema();
      await h.createTopics(1);
      const wrong = `wrong-${Math.random().toString(36).slice(2)}`;
      const port = 23000 + Math.floor(Math.random() * 2000);
      const child = h.spawnService({
        HTTP_PORT: String(port),
        KAFKA_SASL_MECHANISM: 'scram-sha-512',
        KAFKA_SASL_USERNAME: USER,
        KAFKA_SASL_PASSWORD: wrong,
        LOG_LEVEL: 'debug',
      });
      const ready = await waitFor('a readiness answer naming kafka', async () => {
        const r = await httpGet(port, '/readyz');
        return r.status === 503 && JSON.parse(r.body).checks.kafka.ok === false ? r : null;
      });
      expect(ready.status).toBe(503);
      expect(child.exitCode).toBeNull();
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      await exited;
      expect(child.output()).not.toContain(wrong);
      expect(child.output()).not.toContain(PASSWORD);
      expect(child.output()).toContain('[redacted]');
    } finally {
      await h.cleanup();
    }
  });
});
