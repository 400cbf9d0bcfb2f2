/**
 * Where the integration tests find their services. scripts/test.sh starts Kafka and exports these;
 * PostgreSQL is the machine's own (127.0.0.1:5432, trust auth, database `test`).
 */
export const KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:9092';
export const PG = {
  host: process.env.TEST_PG_HOST ?? '127.0.0.1',
  port: Number(process.env.TEST_PG_PORT ?? 5432),
  user: process.env.TEST_PG_USER ?? 'postgres',
  database: process.env.TEST_PG_DATABASE ?? 'test',
};
