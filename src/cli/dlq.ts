/**
 * `bar-writer dlq replay`: sends dead letters back to the input topic once their cause is fixed (a
 * producer bug corrected, the contract widened, a database constraint dropped), so the bars they
 * carried land after all.
 *
 * - Reads the dead-letter topic from its start to its end as of the start of the run, with a consumer
 *   group of its own that is deleted afterwards.
 * - Replays each letter matching the filters (--reason, --since/--until on the original record time):
 *   the original key, value and headers (bar-writer.* headers left out, bar-writer.replayed-from added)
 *   with the original record timestamp, so a replayed bar is no newer than it was: it never replaces a
 *   correction that landed since (see docs/contract.md "Which version wins").
 * - Records every replayed letter in bar_writer_dlq_replayed (migration 009), after the broker
 *   acknowledged it: a second run skips them. A run stopped between the two may replay a few letters
 *   again (at least once; the writer's version rule makes that harmless).
 * - --dry-run counts what would be replayed, by reason, and changes nothing.
 */
import type { IHeaders, KafkaMessage } from 'kafkajs';
import { createKafka } from '../consumer/kafkajs';
import { headerVersionTime, VERSION_TIME_HEADER } from '../contract/version';
import { DLQ_HEADERS } from '../deadletter/records';
import { createLogger } from '../observe/logger';
import { recordReplayed, replayedOffsets } from '../store/dlqReplayed';
import { createPool } from '../store/pool';
import { config, EXIT, guarded, instant, parse, UsageError, type Command, type Io } from './command';

/** Marks a probe record of `bar-writer doctor` (never replayed). */
export const PROBE_HEADER = 'bar-writer.probe';
export const REPLAYED_FROM = 'bar-writer.replayed-from';

const text = (v: IHeaders[string]): string | null =>
  v === undefined ? null : Array.isArray(v) ? String(v[0]) : String(v);

async function replay(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    reason: { type: 'string', multiple: true },
    since: { type: 'string' },
    until: { type: 'string' },
    'dry-run': { type: 'boolean' },
  });
  const reasons = values.reason ? new Set(values.reason) : null;
  const since = instant('since', values.since);
  const until = instant('until', values.until);
  const dry = values['dry-run'] === true;
  const cfg = config();
  const dlq = cfg.kafka.dlqTopic;
  if (!dlq) throw new UsageError('KAFKA_DLQ_TOPIC is empty: there is no dead-letter topic to replay');
  const logger = createLogger('silent');
  const kafka = createKafka(cfg.kafka, logger);
  const admin = kafka.admin();
  const pool = createPool({ ...cfg.db, maxConnections: 1, maxIdleConnections: 1 }, 'bar-writer-dlq');
  const groupId = `${cfg.kafka.groupId}.dlq-replay.${process.pid}.${Date.now().toString(36)}`;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer({ groupId, maxBytes: 8 * 1024 * 1024 });
  const counts = { scanned: 0, replayedBefore: 0, filtered: 0, replayed: new Map<string, number>() };
  try {
    await admin.connect();
    if (!(await admin.listTopics()).includes(dlq))
      throw new UsageError(`the dead-letter topic ${dlq} does not exist`);
    const offsets = await admin.fetchTopicOffsets(dlq);
    const ends = new Map(offsets.map((o) => [o.partition, BigInt(o.high)]));
    // Partitions holding letters now (retention may have emptied some): read each up to its end.
    const pending = new Set(offsets.filter((o) => BigInt(o.high) > BigInt(o.low)).map((o) => o.partition));
    if (pending.size > 0) {
      if (!dry) await producer.connect();
      await consumer.connect();
      await consumer.subscribe({ topic: dlq, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error));
        // Nothing read for a minute while letters are still due: fail rather than wait forever.
        let lastBatch = Date.now();
        const watchdog = setInterval(() => {
          if (Date.now() - lastBatch > 60_000) {
            clearInterval(watchdog);
            reject(
              new Error(
                `no dead letters read for 60 s with partitions ${[...pending].join(', ')} unfinished`,
              ),
            );
          }
        }, 1000);
        const finish = () => {
          clearInterval(watchdog);
          resolve();
        };
        void consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            lastBatch = Date.now();
            const end = ends.get(batch.partition) ?? 0n;
            const messages = batch.messages.filter((m) => BigInt(m.offset) < end);
            if (messages.length > 0) {
              await handle(batch.partition, messages);
            }
            const last = batch.messages.at(-1);
            if (last && BigInt(last.offset) + 1n >= end) {
              pending.delete(batch.partition);
              if (pending.size === 0) finish();
            }
          },
        });
      });
    }
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }

  async function handle(partition: number, messages: KafkaMessage[]): Promise<void> {
    counts.scanned += messages.length;
    const done = await replayedOffsets(
      pool,
      cfg.db.schema,
      dlq,
      partition,
      messages.map((m) => m.offset),
    );
    const chosen: { m: KafkaMessage; reason: string; sourceTime: string | null }[] = [];
    for (const m of messages) {
      const h = m.headers ?? {};
      if (h[PROBE_HEADER] !== undefined) continue;
      if (done.has(m.offset)) {
        counts.replayedBefore++;
        continue;
      }
      const reason = text(h[DLQ_HEADERS.reason]) ?? 'unknown';
      const sourceTime = text(h[DLQ_HEADERS.timestamp]);
      const at = sourceTime === null ? NaN : Number(sourceTime);
      if (
        (reasons && !reasons.has(reason)) ||
        (since !== null && !(at >= since)) ||
        (until !== null && !(at < until))
      ) {
        counts.filtered++;
        continue;
      }
      chosen.push({ m, reason, sourceTime });
    }
    if (chosen.length === 0) return;
    if (!dry) {
      await producer.send({
        topic: cfg.kafka.topic,
        acks: -1,
        messages: chosen.map(({ m, sourceTime }) => {
          const headers: IHeaders = {};
          for (const [k, v] of Object.entries(m.headers ?? {}))
            if (!k.startsWith('bar-writer.')) headers[k] = v;
          headers[REPLAYED_FROM] = `${dlq}/${partition}/${m.offset}`;
          // The original's version time travels with it (its own header if it had one, else its record
          // time): on a LogAppendTime topic the broker would stamp the replay with "now".
          const version =
            headerVersionTime(m.headers) ??
            (sourceTime && /^\d+$/.test(sourceTime) ? Number(sourceTime) : null);
          if (version !== null) headers[VERSION_TIME_HEADER] = String(version);
          return {
            key: m.key,
            value: m.value,
            headers,
            ...(sourceTime && Number(sourceTime) > 0 ? { timestamp: sourceTime } : {}),
          };
        }),
      });
      await recordReplayed(
        pool,
        cfg.db.schema,
        dlq,
        partition,
        chosen.map(({ m }) => m.offset),
      );
    }
    for (const { reason } of chosen) counts.replayed.set(reason, (counts.replayed.get(reason) ?? 0) + 1);
  }

  const total = [...counts.replayed.values()].reduce((a, b) => a + b, 0);
  const byReason = [...counts.replayed].map(([r, n]) => `${r} ${n}`).join(', ') || 'none';
  io.out(
    `dlq replay: ${dry ? 'would replay' : 'replayed'} ${total} to ${cfg.kafka.topic} (${byReason}); ` +
      `${counts.scanned} scanned, ${counts.replayedBefore} replayed before, ${counts.filtered} left out by the filters`,
  );
  return EXIT.ok;
}

export const dlqCommand: Command = {
  summary: 'replay dead letters to the input topic once their cause is fixed',
  help: `Usage: bar-writer dlq replay [--reason R]… [--since T] [--until T] [--dry-run]

Reads KAFKA_DLQ_TOPIC from its start to its current end and sends each dead letter back to KAFKA_TOPIC:
its original key, value and headers (bar-writer.* headers left out, bar-writer.replayed-from added),
with its original record timestamp and its original version time in bar-writer.version-time (a
replayed bar is no newer than it was, even on a LogAppendTime topic: it never replaces a correction
that landed since).

  --reason R        only letters of this reason (bar-writer.reason); repeat for several
  --since/--until   only letters whose original message was produced in [since, until) (ISO-8601
                    with a zone, or epoch milliseconds)
  --dry-run         count what would be replayed, by reason; change nothing

Every replayed letter is recorded (bar_writer_dlq_replayed, in DB_SCHEMA) once the broker acknowledged
it, so a second run does not replay it again; a letter the service refuses again comes back as a new
letter. Run it as a user that may write that table (the migration owner).

Exit: 0 done; 1 failed; 2 invalid usage or configuration.`,
  run: (args, io) =>
    guarded('dlq', io, async () => {
      const [sub, ...rest] = args;
      if (sub === 'replay') return replay(rest, io);
      throw new UsageError(sub ? `unknown subcommand "${sub}": replay` : 'a subcommand is required: replay');
    }),
};
