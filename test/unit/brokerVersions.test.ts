import {
  decodeApiVersionsResponse,
  encodeApiVersionsRequest,
  incompatibilityMessage,
  KAFKAJS_SPEAKS,
  kafkaLineOf,
  missingForKafkajs,
  type ApiRange,
} from '../../src/consumer/brokerVersions';

/** ApiVersions v0 answers of real brokers (scripts/kafka.sh), as [key, min, max]. */
const KAFKA_4_4_0: [number, number, number][] = [
  [0, 0, 13],
  [1, 4, 18],
  [2, 1, 11],
  [3, 0, 13],
  [8, 2, 10],
  [9, 1, 10],
  [10, 0, 6],
  [11, 0, 9],
  [12, 0, 4],
  [13, 0, 5],
  [14, 0, 5],
  [15, 0, 6],
  [16, 0, 5],
  [17, 0, 1],
  [18, 0, 5],
  [19, 2, 7],
  [20, 1, 6],
  [21, 0, 2],
  [22, 0, 5],
  [23, 2, 4],
  [24, 0, 5],
  [25, 0, 4],
  [26, 0, 5],
  [27, 1, 2],
  [28, 0, 6],
  [29, 1, 3],
  [30, 1, 3],
  [31, 1, 3],
  [32, 1, 4],
  [33, 0, 2],
  [34, 1, 2],
  [35, 1, 5],
  [36, 0, 2],
  [37, 0, 3],
  [38, 1, 3],
  [39, 1, 2],
  [40, 1, 2],
  [41, 1, 3],
  [42, 0, 3],
  [43, 0, 2],
  [44, 0, 1],
  [45, 0, 1],
  [46, 0, 0],
  [47, 0, 0],
  [48, 0, 1],
  [49, 0, 1],
  [50, 0, 0],
  [51, 0, 0],
  [55, 0, 2],
  [57, 0, 2],
  [60, 0, 2],
  [61, 0, 0],
  [64, 0, 0],
  [65, 0, 0],
  [66, 0, 2],
  [68, 0, 1],
  [69, 0, 1],
  [74, 0, 1],
  [75, 0, 0],
  [76, 1, 1],
  [77, 1, 1],
  [78, 1, 2],
  [79, 1, 2],
  [80, 0, 1],
  [81, 0, 0],
  [83, 0, 0],
  [84, 0, 0],
  [85, 0, 1],
  [86, 0, 0],
  [87, 0, 1],
  [88, 0, 1],
  [89, 0, 1],
  [90, 0, 1],
  [91, 0, 0],
  [92, 0, 0],
  [93, 0, 0],
  [94, 0, 0],
];

const KAFKA_4_1_1: [number, number, number][] = [
  [0, 0, 13],
  [1, 4, 18],
  [2, 1, 10],
  [3, 0, 13],
  [8, 2, 9],
  [9, 1, 9],
  [10, 0, 6],
  [11, 0, 9],
  [12, 0, 4],
  [13, 0, 5],
  [14, 0, 5],
  [15, 0, 6],
  [16, 0, 5],
  [17, 0, 1],
  [18, 0, 4],
  [19, 2, 7],
  [20, 1, 6],
  [21, 0, 2],
  [22, 0, 5],
  [23, 2, 4],
  [24, 0, 5],
  [25, 0, 4],
  [26, 0, 5],
  [27, 1, 1],
  [28, 0, 5],
  [29, 1, 3],
  [30, 1, 3],
  [31, 1, 3],
  [32, 1, 4],
  [33, 0, 2],
  [34, 1, 2],
  [35, 1, 4],
  [36, 0, 2],
  [37, 0, 3],
  [38, 1, 3],
  [39, 1, 2],
  [40, 1, 2],
  [41, 1, 3],
  [42, 0, 2],
  [43, 0, 2],
  [44, 0, 1],
  [45, 0, 1],
  [46, 0, 0],
  [47, 0, 0],
  [48, 0, 1],
  [49, 0, 1],
  [50, 0, 0],
  [51, 0, 0],
  [55, 0, 2],
  [57, 0, 2],
  [60, 0, 2],
  [61, 0, 0],
  [64, 0, 0],
  [65, 0, 0],
  [66, 0, 2],
  [68, 0, 1],
  [69, 0, 1],
  [74, 0, 1],
  [75, 0, 0],
  [76, 1, 1],
  [77, 1, 1],
  [78, 1, 1],
  [79, 1, 1],
  [80, 0, 0],
  [81, 0, 0],
  [83, 0, 0],
  [84, 0, 0],
  [85, 0, 0],
  [86, 0, 0],
  [87, 0, 0],
  [90, 0, 0],
  [91, 0, 0],
  [92, 0, 0],
];
const KAFKA_3_9_1: [number, number, number][] = [
  [0, 0, 11],
  [1, 0, 17],
  [2, 0, 9],
  [3, 0, 12],
  [8, 0, 9],
  [9, 0, 9],
  [10, 0, 6],
  [11, 0, 9],
  [12, 0, 4],
  [13, 0, 5],
  [14, 0, 5],
  [15, 0, 5],
  [16, 0, 5],
  [17, 0, 1],
  [18, 0, 4],
  [19, 0, 7],
  [20, 0, 6],
  [21, 0, 2],
  [22, 0, 5],
  [23, 0, 4],
  [24, 0, 5],
  [25, 0, 4],
  [26, 0, 4],
  [27, 0, 1],
  [28, 0, 4],
  [29, 0, 3],
  [30, 0, 3],
  [31, 0, 3],
  [32, 0, 4],
  [33, 0, 2],
  [34, 0, 2],
  [35, 0, 4],
  [36, 0, 2],
  [37, 0, 3],
  [38, 0, 3],
  [39, 0, 2],
  [40, 0, 2],
  [41, 0, 3],
  [42, 0, 2],
  [43, 0, 2],
  [44, 0, 1],
  [45, 0, 0],
  [46, 0, 0],
  [47, 0, 0],
  [48, 0, 1],
  [49, 0, 1],
  [50, 0, 0],
  [51, 0, 0],
  [55, 0, 2],
  [57, 0, 1],
  [60, 0, 1],
  [61, 0, 0],
  [64, 0, 0],
  [65, 0, 0],
  [66, 0, 1],
  [68, 0, 0],
  [69, 0, 0],
  [74, 0, 0],
  [75, 0, 0],
  [80, 0, 0],
  [81, 0, 0],
];

const versions = (list: [number, number, number][]) =>
  new Map<number, ApiRange>(list.map(([k, min, max]) => [k, { min, max }]));

/** A response frame as a broker sends it (size prefix, correlation id, error, array). */
function frame(list: [number, number, number][], error = 0): Buffer {
  const body = Buffer.alloc(4 + 2 + 4 + list.length * 6);
  body.writeInt32BE(1, 0);
  body.writeInt16BE(error, 4);
  body.writeInt32BE(list.length, 6);
  list.forEach(([k, min, max], i) => {
    body.writeInt16BE(k, 10 + i * 6);
    body.writeInt16BE(min, 12 + i * 6);
    body.writeInt16BE(max, 14 + i * 6);
  });
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  return Buffer.concat([size, body]);
}

describe('broker versions', () => {
  test('KAFKAJS_SPEAKS is what the installed kafkajs implements (key and versions of each API)', () => {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { requests } = require('kafkajs/src/protocol/requests') as {
      requests: Record<string, { versions: string[] }>;
    };
    const apiKeys = require('kafkajs/src/protocol/requests/apiKeys') as Record<string, number>;
    /* eslint-enable @typescript-eslint/no-require-imports */
    const kafkajsName: Record<string, string> = { FindCoordinator: 'GroupCoordinator' };
    for (const [name, speaks] of Object.entries(KAFKAJS_SPEAKS)) {
      const theirs = kafkajsName[name] ?? name;
      const v = requests[theirs]!.versions.map(Number);
      expect({ name, key: apiKeys[theirs], min: Math.min(...v), max: Math.max(...v) }).toEqual({
        name,
        key: speaks.key,
        min: speaks.min,
        max: speaks.max,
      });
    }
  });

  test('the request is ApiVersions v0; the answer decodes; an error code throws', () => {
    const req = encodeApiVersionsRequest(7, 'abc');
    expect(req.readInt32BE(0)).toBe(req.length - 4);
    expect([req.readInt16BE(4), req.readInt16BE(6), req.readInt32BE(8), req.readInt16BE(12)]).toEqual([
      18, 0, 7, 3,
    ]);
    expect(req.subarray(14).toString()).toBe('abc');
    expect(decodeApiVersionsResponse(frame(KAFKA_4_4_0))).toEqual(versions(KAFKA_4_4_0));
    expect(() => decodeApiVersionsResponse(frame([], 35))).toThrow('ApiVersions answered error code 35');
  });

  test('a broker is named by its line; newer, in-between and older ones as such', () => {
    expect(kafkaLineOf(versions(KAFKA_4_4_0))).toBe('4.4');
    expect(kafkaLineOf(versions(KAFKA_4_1_1))).toBe('4.1');
    expect(kafkaLineOf(versions(KAFKA_3_9_1))).toBe('3.9');
    expect(kafkaLineOf(versions([...KAFKA_4_1_1, [93, 0, 0]]))).toBe('between 4.1 and 4.4');
    expect(kafkaLineOf(versions([...KAFKA_4_4_0, [95, 0, 0]]))).toBe('newer than 4.4');
    const fetchUp = KAFKA_4_4_0.map(
      ([k, min, max]) => [k, min, k === 1 ? 19 : max] as [number, number, number],
    );
    expect(kafkaLineOf(versions(fetchUp))).toBe('newer than 4.4');
    const without94 = KAFKA_4_4_0.filter(([k]) => k !== 94);
    expect(kafkaLineOf(versions(without94))).toBe('between 4.1 and 4.4');
    expect(
      kafkaLineOf(
        versions([
          [0, 0, 9],
          [1, 0, 12],
          [3, 0, 9],
        ]),
      ),
    ).toBe('older than 3.9');
  });

  test('kafkajs misses nothing on 4.4; a dropped version range or API is named', () => {
    for (const line of [KAFKA_4_4_0, KAFKA_4_1_1, KAFKA_3_9_1])
      expect(missingForKafkajs(versions(line))).toEqual([]);
    // A line that dropped the JoinGroup versions kafkajs speaks, and the classic SyncGroup altogether.
    const future = KAFKA_4_4_0.filter(([k]) => k !== 14).map(
      ([k, min, max]) => (k === 11 ? [k, 6, max] : [k, min, max]) as [number, number, number],
    );
    const missing = missingForKafkajs(versions(future));
    expect(missing).toEqual(['JoinGroup (broker v6-v9, kafkajs v0-v5)', 'SyncGroup (not served)']);
    expect(incompatibilityMessage({ broker: 'k1:9092', line: 'newer than 4.4', missing })).toBe(
      'Kafka broker k1:9092 runs Kafka newer than 4.4 (by its API versions) and does not serve what kafkajs ' +
        '2.2.4 needs: JoinGroup (broker v6-v9, kafkajs v0-v5); SyncGroup (not served). bar-writer is tested ' +
        'on Kafka 3.9, 4.1 and 4.4 with the classic consumer group protocol',
    );
  });
});
