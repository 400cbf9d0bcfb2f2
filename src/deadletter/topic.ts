/**
 * The dead-letter topic exists before the first dead letter: created (one partition) at start-up when
 * missing and the credentials allow it. Not fatal when it cannot be checked or created: a dead letter
 * that cannot be sent fails its flush, which is retried.
 */
import type { Kafka } from 'kafkajs';
import { errorMessage, type Logger } from '../observe/logger';

/**
 * Resolves true once the topic is known to exist (or was created), false when that could not be
 * checked; rejects when the brokers cannot be reached (a start-up attempt fails there, once).
 */
export async function ensureDeadLetterTopic(
  kafka: Kafka,
  topic: string,
  logger: Logger,
  /** Aborted: the admin client disconnects, so a connection attempt in flight ends. */
  signal?: AbortSignal,
): Promise<boolean> {
  const admin = kafka.admin();
  const giveUp = () => void admin.disconnect().catch(() => undefined);
  signal?.addEventListener('abort', giveUp, { once: true });
  try {
    if (signal?.aborted) throw new Error('aborted');
    await admin.connect();
    try {
      const existing = await admin.listTopics();
      if (!existing.includes(topic)) {
        await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
        logger.info({ topic }, 'dead-letter topic created');
      }
      return true;
    } catch (err) {
      logger.warn({ err: errorMessage(err), topic }, 'could not check or create the dead-letter topic');
      return false;
    }
  } finally {
    signal?.removeEventListener('abort', giveUp);
    await admin.disconnect().catch(() => undefined);
  }
}
