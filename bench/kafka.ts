/** Kafka clients of the benchmarks: admin, producer, topics and groups (removed at cleanup), offsets. */
import { Kafka, logLevel, Partitioners, type Admin, type Producer } from 'kafkajs';
import { sleep, uniqueName } from '../test/support/common';
import type { Cleanup } from './cleanup';
import { KAFKA_BROKERS } from './env';
import { log } from './report';

export function newKafka(clientPrefix = 'bench'): Kafka {
  return new Kafka({
    clientId: uniqueName(clientPrefix),
    brokers: KAFKA_BROKERS.split(','),
    logLevel: logLevel.ERROR,
  });
}

export async function connectAdmin(kafka: Kafka, cleanup: Cleanup): Promise<Admin> {
  const admin = kafka.admin();
  await admin.connect();
  cleanup.add('admin disconnect', () => admin.disconnect());
  return admin;
}

/** Creates `topic` (and its DLQ topic, 1 partition); deletes both, and `groups()`, at cleanup. */
export async function createTopics(
  admin: Admin,
  cleanup: Cleanup,
  topic: string,
  partitions: number,
  groups: () => string[],
): Promise<string> {
  const dlq = `${topic}.dlq`;
  cleanup.add(`delete topics ${topic}, groups`, async () => {
    await deleteGroups(admin, groups());
    await admin.deleteTopics({ topics: [topic, dlq] });
  });
  await admin.createTopics({
    topics: [
      { topic, numPartitions: partitions },
      { topic: dlq, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });
  return dlq;
}

/**
 * Deletes consumer groups; one whose member was killed stays "not empty" until its session times out
 * (KAFKA_SESSION_TIMEOUT, 30 s by default), so that is retried for up to 45 s.
 */
async function deleteGroups(admin: Admin, groups: string[]): Promise<void> {
  let left = [...groups];
  const deadline = Date.now() + 45_000;
  let told = false;
  while (left.length > 0) {
    const failed: string[] = [];
    for (const g of left) {
      try {
        await admin.deleteGroups([g]);
      } catch (err) {
        const notEmpty = /NON_EMPTY_GROUP|not empty/i.test(
          JSON.stringify((err as { groups?: unknown }).groups ?? ''),
        );
        const missing = /GROUP_ID_NOT_FOUND|does not exist/i.test(
          JSON.stringify((err as { groups?: unknown }).groups ?? '') + String(err),
        );
        if (notEmpty) failed.push(g);
        else if (!missing) log(`could not delete group ${g}: ${(err as Error).message}`);
      }
    }
    left = failed;
    if (left.length === 0 || Date.now() > deadline) break;
    if (!told) log(`waiting for the session of group(s) ${left.join(', ')} to expire before deleting them`);
    told = true;
    await sleep(2000);
  }
  if (left.length > 0) log(`group(s) left behind (not empty): ${left.join(', ')}`);
}

export async function connectProducer(kafka: Kafka, cleanup: Cleanup): Promise<Producer> {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner, // murmur2, as the Java client (and no warning)
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  cleanup.add('producer disconnect', () => producer.disconnect());
  return producer;
}

export async function endOffsets(admin: Admin, topic: string): Promise<Map<number, bigint>> {
  const res = await admin.fetchTopicOffsets(topic);
  return new Map(res.map((p) => [p.partition, BigInt(p.high)]));
}

/** True when `group` has committed the log end of every partition in `ends`. */
export async function groupCaughtUp(
  admin: Admin,
  group: string,
  topic: string,
  ends: Map<number, bigint>,
): Promise<boolean> {
  const res = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const committed = new Map(res[0]!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
  for (const [p, end] of ends) if (end > 0n && committed.get(p) !== end) return false;
  return true;
}
