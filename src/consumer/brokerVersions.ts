/**
 * Which Kafka line a broker runs, and whether kafkajs can work with it, from the broker's ApiVersions
 * answer: the first request every client sends, served before authentication. Brokers do not state
 * their release, but each line serves a known set of API versions (KNOWN_LINES, read from the brokers
 * the suites run on), and kafkajs speaks a known range of each API it uses (KAFKAJS_SPEAKS).
 *
 * Start-up uses it to name the broker in one log line: the line it runs once consuming, and, when a
 * broker line drops something kafkajs needs (an API version, the classic group protocol's requests),
 * which API and which versions each side speaks, instead of an opaque protocol error.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface ApiRange {
  min: number;
  max: number;
}

/** API key → the versions the broker serves. */
export type ApiVersions = ReadonlyMap<number, ApiRange>;

const API_VERSIONS_KEY = 18;

/** The APIs kafkajs 2.2.4 uses here, with the versions it speaks (unit-tested against node_modules). */
export const KAFKAJS_SPEAKS: Readonly<Record<string, { key: number } & ApiRange>> = {
  Produce: { key: 0, min: 0, max: 7 },
  Fetch: { key: 1, min: 0, max: 11 },
  ListOffsets: { key: 2, min: 0, max: 3 },
  Metadata: { key: 3, min: 0, max: 6 },
  OffsetCommit: { key: 8, min: 0, max: 5 },
  OffsetFetch: { key: 9, min: 1, max: 4 },
  FindCoordinator: { key: 10, min: 0, max: 2 },
  JoinGroup: { key: 11, min: 0, max: 5 },
  Heartbeat: { key: 12, min: 0, max: 3 },
  LeaveGroup: { key: 13, min: 0, max: 3 },
  SyncGroup: { key: 14, min: 0, max: 3 },
  ApiVersions: { key: 18, min: 0, max: 2 },
  CreateTopics: { key: 19, min: 0, max: 3 },
};

/**
 * Per line, newest first: the highest version of the APIs that tell the lines apart, and the newest API
 * key served; read from the ApiVersions answers of Apache Kafka 4.4.0, 4.1.1 and 3.9.1 (scripts/kafka.sh;
 * test/unit/brokerVersions.test.ts holds the answers). A broker is named by the newest line it serves at
 * least as much as; equal on every key, and no newer API: that line.
 */
export const KNOWN_LINES: readonly {
  line: string;
  max: Readonly<Record<number, number>>;
  newestKey: number;
}[] = [
  {
    line: '4.4',
    max: { 0: 13, 1: 18, 2: 11, 3: 13, 8: 10, 18: 5, 28: 6, 76: 1, 88: 1, 94: 0 },
    newestKey: 94,
  },
  { line: '4.1', max: { 0: 13, 1: 18, 2: 10, 3: 13, 8: 9, 18: 4, 28: 5, 76: 1 }, newestKey: 92 },
  { line: '3.9', max: { 0: 11, 1: 17, 2: 9, 3: 12, 8: 9, 18: 4, 28: 4 }, newestKey: 81 },
];

/** "4.4", "newer than 4.4", "between 3.9 and 4.1", "older than 3.9": the broker's line, as best known. */
export function kafkaLineOf(versions: ApiVersions): string {
  const serves = (l: (typeof KNOWN_LINES)[number]) =>
    Object.entries(l.max).every(([key, max]) => (versions.get(Number(key))?.max ?? -1) >= max);
  const same = (l: (typeof KNOWN_LINES)[number]) =>
    Object.entries(l.max).every(([key, max]) => (versions.get(Number(key))?.max ?? -1) === max) &&
    Math.max(...versions.keys()) === l.newestKey;
  const i = KNOWN_LINES.findIndex(serves);
  if (i < 0) return `older than ${KNOWN_LINES[KNOWN_LINES.length - 1]!.line}`;
  const found = KNOWN_LINES[i]!;
  if (same(found)) return found.line;
  return i === 0 ? `newer than ${found.line}` : `between ${found.line} and ${KNOWN_LINES[i - 1]!.line}`;
}

/** The APIs kafkajs needs that the broker does not serve in any version kafkajs speaks. */
export function missingForKafkajs(versions: ApiVersions): string[] {
  const out: string[] = [];
  for (const [name, speaks] of Object.entries(KAFKAJS_SPEAKS)) {
    const serves = versions.get(speaks.key);
    if (!serves) out.push(`${name} (not served)`);
    else if (serves.min > speaks.max || serves.max < speaks.min)
      out.push(`${name} (broker v${serves.min}-v${serves.max}, kafkajs v${speaks.min}-v${speaks.max})`);
  }
  return out;
}

/** An ApiVersions v0 request: size, api key, version, correlation id, client id. */
export function encodeApiVersionsRequest(correlationId: number, clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.alloc(10 + id.length);
  body.writeInt16BE(API_VERSIONS_KEY, 0);
  body.writeInt16BE(0, 2);
  body.writeInt32BE(correlationId, 4);
  body.writeInt16BE(id.length, 8);
  id.copy(body, 10);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  return Buffer.concat([size, body]);
}

/** A complete ApiVersions v0 response (size prefix included); throws on a broker error code. */
export function decodeApiVersionsResponse(frame: Buffer): ApiVersions {
  let o = 8; // size, correlation id
  const error = frame.readInt16BE(o);
  o += 2;
  if (error !== 0) throw new Error(`ApiVersions answered error code ${error}`);
  const n = frame.readInt32BE(o);
  o += 4;
  const out = new Map<number, ApiRange>();
  for (let i = 0; i < n; i++, o += 6) {
    out.set(frame.readInt16BE(o), { min: frame.readInt16BE(o + 2), max: frame.readInt16BE(o + 4) });
  }
  return out;
}

/** Asks `broker` ("host:port") for its API versions, over TLS when `tlsOptions` is given. */
export function probeApiVersions(
  broker: string,
  tlsOptions: tls.ConnectionOptions | null,
  timeoutMs = 5000,
): Promise<ApiVersions> {
  const i = broker.lastIndexOf(':');
  const host = broker.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(broker.slice(i + 1));
  return new Promise((resolve, reject) => {
    const socket = tlsOptions
      ? tls.connect({ ...tlsOptions, host, port, servername: net.isIP(host) ? undefined : host })
      : net.connect(port, host);
    const done = (err: Error | null, v?: ApiVersions) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(
      () => done(new Error(`no ApiVersions answer from ${broker} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    let buf = Buffer.alloc(0);
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () =>
      socket.write(encodeApiVersionsRequest(1, 'bar-writer-probe')),
    );
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        try {
          done(null, decodeApiVersionsResponse(buf));
        } catch (err) {
          done(err as Error);
        }
      }
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error(`${broker} closed the connection before answering ApiVersions`)));
  });
}

/** What start-up says about a broker: its line, and what kafkajs would miss there (empty: nothing). */
export interface BrokerReport {
  broker: string;
  line: string;
  missing: string[];
}

export async function describeBroker(
  broker: string,
  tlsOptions: tls.ConnectionOptions | null,
): Promise<BrokerReport> {
  const versions = await probeApiVersions(broker, tlsOptions);
  return { broker, line: kafkaLineOf(versions), missing: missingForKafkajs(versions) };
}

/**
 * The report on the first reachable broker of `brokers`, over TLS like the consumer (`ssl` as
 * kafkaSecurityOptions builds it), or null when none answers (the consumer's own error says why).
 */
export async function firstBrokerReport(
  brokers: readonly string[],
  ssl: boolean | tls.ConnectionOptions | undefined,
): Promise<BrokerReport | null> {
  const tlsOptions = ssl ? (ssl === true ? {} : ssl) : null;
  for (const broker of brokers) {
    try {
      return await describeBroker(broker, tlsOptions);
    } catch {
      // the next one
    }
  }
  return null;
}

/** The one line start-up logs when kafkajs cannot work with the broker. */
export function incompatibilityMessage(r: BrokerReport): string {
  return (
    `Kafka broker ${r.broker} runs Kafka ${r.line} (by its API versions) and does not serve what kafkajs 2.2.4 ` +
    `needs: ${r.missing.join('; ')}. bar-writer is tested on Kafka 3.9, 4.1 and 4.4 with the classic consumer group protocol`
  );
}
