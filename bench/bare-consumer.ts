/**
 * The bare client, for bench:e2e's CPU reference: a kafkajs consumer (default settings, a fresh group,
 * from the beginning, no commits) whose eachBatch only `JSON.parse`s each message value, until every
 * partition reaches the end offset it is given. Prints one JSON line: messages, and the CPU seconds
 * (user + system) spent after start-up (modules loaded) until the last message was parsed.
 *
 *   BARE_BROKERS=h:p BARE_TOPIC=t BARE_GROUP=g BARE_ENDS='{"0":"166667",…}' node --import tsx bench/bare-consumer.ts
 */
import { Kafka, logLevel } from 'kafkajs';

const loaded = process.cpuUsage();

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
}

async function main(): Promise<void> {
  const ends = new Map(
    Object.entries(JSON.parse(need('BARE_ENDS')) as Record<string, string>).map(([p, e]) => [
      Number(p),
      BigInt(e),
    ]),
  );
  const kafka = new Kafka({
    clientId: 'bench-bare',
    brokers: need('BARE_BROKERS').split(','),
    logLevel: logLevel.NOTHING,
  });
  const consumer = kafka.consumer({ groupId: need('BARE_GROUP') });
  await consumer.connect();
  await consumer.subscribe({ topic: need('BARE_TOPIC'), fromBeginning: true });
  const remaining = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  let messages = 0;
  let objects = 0; // uses each parse result, so it cannot be optimised away
  let finish: (cpu: NodeJS.CpuUsage) => void = () => undefined;
  const done = new Promise<NodeJS.CpuUsage>((resolve) => (finish = resolve));
  if (remaining.size === 0) finish(process.cpuUsage(loaded));
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat }) => {
      for (const m of batch.messages) {
        const v: unknown = JSON.parse(m.value!.toString());
        if (typeof v === 'object' && v !== null) objects++;
        messages++;
      }
      await heartbeat();
      if (BigInt(batch.lastOffset()) + 1n >= (ends.get(batch.partition) ?? 0n)) {
        remaining.delete(batch.partition);
        if (remaining.size === 0) finish(process.cpuUsage(loaded));
      }
    },
  });
  const cpu = await done;
  console.log(JSON.stringify({ messages, objects, cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
  await consumer.disconnect();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
