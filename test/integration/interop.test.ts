/**
 * Interoperability: batches written by the Apache Kafka Java client (test/support/java/BarProducer.java,
 * run on the broker's own kafka-clients jar) with each compression codec, batched, with keys and headers,
 * land exactly; a rejected one keeps its headers in the dead-letter topic. A topic the broker compresses
 * itself (compression.type=zstd) fed uncompressed by kafkajs lands exactly, and the dead-letter producer
 * writes to a topic the broker recompresses with lz4, readable back by kafkajs.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigResourceTypes } from 'kafkajs';
import { describeBroker } from '../../src/consumer/brokerVersions';
import { DLQ_HEADERS } from '../../src/deadletter/producer';
import { KAFKA_BROKERS } from '../support/env';
import {
  diffTables,
  expectedTable,
  Harness,
  httpGet,
  makeBars,
  metricValue,
  REPO,
  waitFor,
  type TestBar,
} from '../support/harness';

const run = promisify(execFile);

const KAFKA_VERSION = process.env.TEST_KAFKA_VERSION ?? '4.4.0';
const LIBS = path.join(REPO, '.kafka', KAFKA_VERSION, 'libs');
const JAVA_SOURCE = path.join(REPO, 'test', 'support', 'java', 'BarProducer.java');
// Quick JVM start-up: the helper runs a few seconds at most.
const JVM_FLAGS = ['-XX:TieredStopAtLevel=1', '-XX:+UseSerialGC', '-Xmx256m'];

interface JavaRecord {
  key: string | null;
  value: string | null;
  headers?: Record<string, string>;
  partition?: number;
}

interface JavaSummary {
  sent: number;
  failed: number;
  compressionRateAvg: number;
  batchSizeAvg: number;
  recordsPerRequestAvg: number;
  error?: string;
}

interface DeadLetter {
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/** javac into a temporary directory (removed at cleanup); returns the class path to run BarProducer. */
async function compileBarProducer(h: Harness): Promise<string> {
  if (!fs.existsSync(path.join(LIBS, `kafka-clients-${KAFKA_VERSION}.jar`)))
    throw new Error(
      `${LIBS} has no kafka-clients jar: run \`KAFKA_VERSION=${KAFKA_VERSION} scripts/kafka.sh fetch\``,
    );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bar-producer-'));
  h.onCleanup(async () => fs.rmSync(dir, { recursive: true, force: true }));
  await run('javac', ['-nowarn', '-cp', `${LIBS}/*`, '-d', dir, JAVA_SOURCE]);
  return `${dir}${path.delimiter}${LIBS}/*`;
}

async function javaProduce(
  h: Harness,
  classPath: string,
  topic: string,
  codec: string,
  batchSize: number,
  lingerMs: number,
  records: readonly JavaRecord[],
): Promise<JavaSummary> {
  const input = path.join(classPath.split(path.delimiter)[0]!, `${topic}-${codec}.jsonl`);
  fs.writeFileSync(input, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  // execFile: no shell, so the class path's `*` reaches java unexpanded, as java wants it.
  const { stdout } = await run(
    'java',
    [
      ...JVM_FLAGS,
      '-cp',
      classPath,
      'BarProducer',
      '--bootstrap',
      h.env().KAFKA_BROKERS!,
      '--topic',
      topic,
      '--compression',
      codec,
      '--batch-size',
      String(batchSize),
      '--linger-ms',
      String(lingerMs),
      '--input',
      input,
    ],
    { maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
  ).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(
      `BarProducer (${codec}) failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`,
    );
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as JavaSummary;
}

async function readTopic(h: Harness, topic: string, count: number): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  const consumer = h.kafka.consumer({ groupId: `${h.group}-reader-${topic}` });
  h.onCleanup(async () => {
    await consumer.disconnect();
    const admin = await h.getAdmin();
    await admin.deleteGroups([`${h.group}-reader-${topic}`]).catch(() => undefined);
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      out.push({ key: message.key?.toString() ?? null, value: message.value, headers });
    },
  });
  await waitFor(`${count} message(s) on ${topic}`, async () => out.length >= count);
  await consumer.stop();
  return out;
}

/** A bar that breaks the contract (low above the open and close). */
function badBar(symbol: string): string {
  return JSON.stringify({
    symbol,
    timestamp: '2026-11-24T14:31:00Z',
    open: 1,
    high: 1.2,
    low: 1.15,
    close: 1.1,
    volume: 10,
  });
}

const CODECS = [
  // codec, batch.size, linger.ms: the default batch size and some much larger ones.
  { codec: 'gzip', batchSize: 16_384, lingerMs: 5 },
  { codec: 'snappy', batchSize: 65_536, lingerMs: 20 },
  { codec: 'lz4', batchSize: 262_144, lingerMs: 50 },
  { codec: 'zstd', batchSize: 1_048_576, lingerMs: 100 },
] as const;

describe('the broker line', () => {
  test('is named from its API versions, and kafkajs misses nothing there', async () => {
    const broker = KAFKA_BROKERS.split(',')[0]!;
    expect(await describeBroker(broker, null)).toEqual({
      broker,
      line: KAFKA_VERSION.split('.').slice(0, 2).join('.'),
      missing: [],
    });
  });
});

describe('bars produced by the Java client with every codec', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    await h.createTopics(4);
  });
  afterAll(() => h.cleanup());

  test('gzip, snappy, lz4 and zstd batches land exactly; a rejected one keeps its headers in the DLQ', async () => {
    const classPath = await compileBarProducer(h);
    const all: TestBar[] = [];
    const runs = CODECS.map(({ codec, batchSize, lingerMs }, i) => {
      // 3,000 bars per codec on a day of their own, then 100 newer versions of some (the latest wins).
      const bars = makeBars(150, 20, Date.UTC(2026, 10, 16 + i, 14, 30), 11 + i);
      const updates = bars.slice(0, 100).map((b) => ({ ...b, volume: b.volume + 1, vwap: null }));
      all.push(...bars, ...updates);
      const records: JavaRecord[] = [...bars, ...updates].map((b, seq) => ({
        key: b.symbol,
        value: JSON.stringify(b),
        headers: { producer: 'java', codec, seq: String(seq) },
      }));
      records.splice(1500, 0, {
        key: `bad-${codec}`,
        value: badBar(`BAD${i}`),
        headers: { 'trace-id': `java-${codec}-trace`, note: 'ünïcödé ✓', codec },
      });
      return { codec, records, batchSize, lingerMs };
    });
    // One JVM per codec, concurrently (each record's key keeps it, and its later version, in one partition).
    const summaries = await Promise.all(
      runs.map((r) => javaProduce(h, classPath, h.topic, r.codec, r.batchSize, r.lingerMs, r.records)),
    );
    for (const [i, s] of summaries.entries()) {
      const { codec, records } = runs[i]!;
      expect({ codec, sent: s.sent, failed: s.failed }).toEqual({ codec, sent: records.length, failed: 0 });
      // Really compressed and really batched by the Java client.
      expect([codec, s.compressionRateAvg < 0.9]).toEqual([codec, true]);
      expect([codec, s.recordsPerRequestAvg > 10]).toEqual([codec, true]);
    }

    const service = await h.startService();
    const expected = expectedTable(all);
    await waitFor(
      'every Java-produced bar and the offsets at the end',
      async () => (await h.rowCount()) === expected.size && (await h.caughtUp()),
      120_000,
      200,
    );
    expect(diffTables(expected, await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_consumed_total')).toBe(all.length + CODECS.length);
    expect(metricValue(metrics, 'bars_rejected_total', { reason: 'ohlc_inconsistent' })).toBe(CODECS.length);
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(CODECS.length);

    const dlq = await readTopic(h, h.dlqTopic, CODECS.length);
    expect(dlq.map((d) => d.key).sort()).toEqual(CODECS.map((c) => `bad-${c.codec}`).sort());
    for (const [i, { codec }] of CODECS.entries()) {
      const d = dlq.find((x) => x.key === `bad-${codec}`)!;
      expect(d.value?.toString()).toBe(badBar(`BAD${i}`));
      expect(d.headers).toMatchObject({
        'trace-id': `java-${codec}-trace`,
        note: 'ünïcödé ✓',
        codec,
        [DLQ_HEADERS.reason]: 'ohlc_inconsistent',
        [DLQ_HEADERS.stage]: 'contract',
        [DLQ_HEADERS.topic]: h.topic,
      });
    }
    expect(await service.stop()).toBe(true);
  });
});

describe('broker-side compression', () => {
  const h = new Harness();
  beforeAll(async () => {
    await h.setupSchema();
    const admin = await h.getAdmin();
    await admin.createTopics({
      topics: [
        { topic: h.topic, numPartitions: 4, configEntries: [{ name: 'compression.type', value: 'zstd' }] },
        { topic: h.dlqTopic, numPartitions: 1, configEntries: [{ name: 'compression.type', value: 'lz4' }] },
      ],
      waitForLeaders: true,
    });
    h.onCleanup(async () => {
      await admin.deleteTopics({ topics: [h.topic, h.dlqTopic] }).catch(() => undefined);
      await admin.deleteGroups([h.group]).catch(() => undefined);
    });
  });
  afterAll(() => h.cleanup());

  test('a zstd topic fed uncompressed by kafkajs lands exactly; dead letters go through an lz4 topic', async () => {
    const admin = await h.getAdmin();
    const described = await admin.describeConfigs({
      resources: [h.topic, h.dlqTopic].map((name) => ({
        type: ConfigResourceTypes.TOPIC,
        name,
        configNames: ['compression.type'],
      })),
      includeSynonyms: false,
    });
    expect(
      Object.fromEntries(described.resources.map((r) => [r.resourceName, r.configEntries[0]?.configValue])),
    ).toEqual({ [h.topic]: 'zstd', [h.dlqTopic]: 'lz4' });

    const bars = makeBars(200, 15, Date.UTC(2026, 10, 21, 14, 30), 23); // 3,000 bars
    await h.produceBars(bars, 500); // kafkajs, no compression: the broker compresses with zstd
    const bad = [0, 1, 2].map((i) => ({
      key: `bad-${i}`,
      value: badBar(`BAD${i}`),
      headers: { 'trace-id': `kafkajs-${i}` },
    }));
    await h.produceRaw(bad);

    const service = await h.startService();
    await waitFor(
      'every bar and the offsets at the end',
      async () => (await h.rowCount()) === bars.length && (await h.caughtUp()),
      120_000,
      200,
    );
    expect(diffTables(expectedTable(bars), await h.storedBars())).toEqual([]);
    const metrics = (await httpGet(service.port, '/metrics')).body;
    expect(metricValue(metrics, 'bars_dead_lettered_total')).toBe(bad.length);

    // The dead-letter producer (kafkajs, uncompressed) wrote them; the broker recompressed them with lz4.
    const dlq = await readTopic(h, h.dlqTopic, bad.length);
    expect(dlq.map((d) => d.key).sort()).toEqual(bad.map((b) => b.key));
    for (const b of bad) {
      const d = dlq.find((x) => x.key === b.key)!;
      expect(d.value?.toString()).toBe(b.value);
      expect(d.headers).toMatchObject({
        'trace-id': b.headers['trace-id'],
        [DLQ_HEADERS.reason]: 'ohlc_inconsistent',
        [DLQ_HEADERS.topic]: h.topic,
      });
    }
    expect(await service.stop()).toBe(true);
  });
});
