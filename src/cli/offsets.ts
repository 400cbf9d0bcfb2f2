/**
 * `bar-writer offsets show|reset`: where each partition stands, and moving it. Two records say how far
 * a partition was written: the database fence (bar_writer_offsets, the truth the writer resumes from)
 * and the group's committed offset in Kafka. An operator's `kafka-consumer-groups --reset-offsets`
 * alone moves only the second, which the fence then overrides; `offsets reset` moves both together.
 */
import type { Admin, Kafka } from 'kafkajs';
import { committedOf, createKafka } from '../consumer/kafkajs';
import { messageFingerprint } from '../offsets/fingerprint';
import { createLogger } from '../observe/logger';
import { readFences, resetFence } from '../store/fences';
import { createPool } from '../store/pool';
import { config, EXIT, guarded, parse, UsageError, type Command, type Io } from './command';

interface Row {
  partition: number;
  fence: bigint | null;
  fingerprint: string | null;
  committed: bigint | null;
  logStart: bigint;
  logEnd: bigint;
}

async function withClients<T>(
  fn: (c: {
    admin: Admin;
    kafka: Kafka;
    pool: ReturnType<typeof createPool>;
    cfg: ReturnType<typeof config>;
  }) => Promise<T>,
): Promise<T> {
  const cfg = config();
  const pool = createPool({ ...cfg.db, maxConnections: 2, maxIdleConnections: 0 }, 'bar-writer-cli');
  const kafka = createKafka(cfg.kafka, createLogger('silent'));
  const admin = kafka.admin();
  try {
    await admin.connect();
    return await fn({ admin, kafka, pool, cfg });
  } finally {
    await admin.disconnect().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

async function positions(
  admin: Admin,
  pool: ReturnType<typeof createPool>,
  schema: string,
  group: string,
  topic: string,
): Promise<Row[]> {
  if (!(await admin.listTopics()).includes(topic)) throw new UsageError(`topic ${topic} does not exist`);
  const [logs, committed, fences] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId: group, topics: [topic] }),
    readFences(pool, schema, group, topic),
  ]);
  const kafka = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, committedOf(p.offset)]));
  return logs
    .map((l) => ({
      partition: l.partition,
      fence: fences.get(l.partition)?.next ?? null,
      fingerprint: fences.get(l.partition)?.fingerprint ?? null,
      committed: kafka.get(l.partition) ?? null,
      logStart: BigInt(l.low),
      logEnd: BigInt(l.high),
    }))
    .sort((a, b) => a.partition - b.partition);
}

function table(rows: (string | number)[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

const dash = (x: bigint | null) => (x === null ? '-' : x.toString());

async function show(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { topic: { type: 'string' }, json: { type: 'boolean' } });
  return withClients(async ({ admin, pool, cfg }) => {
    const topic = values.topic ?? cfg.kafka.topic;
    const rows = await positions(admin, pool, cfg.db.schema, cfg.kafka.groupId, topic);
    if (values.json) {
      io.out(
        JSON.stringify(
          rows.map((r) => ({
            partition: r.partition,
            fence: r.fence?.toString() ?? null,
            fingerprint: r.fingerprint,
            committed: r.committed?.toString() ?? null,
            logStart: r.logStart.toString(),
            logEnd: r.logEnd.toString(),
          })),
        ),
      );
      return EXIT.ok;
    }
    io.out(`topic ${topic}, group ${cfg.kafka.groupId}, schema ${cfg.db.schema}`);
    for (const line of table([
      ['partition', 'fence', 'committed', 'log start', 'log end', 'lag', 'fence covers'],
      ...rows.map((r) => {
        const at =
          r.fence !== null && (r.committed === null || r.fence > r.committed) ? r.fence : r.committed;
        return [
          r.partition,
          dash(r.fence),
          dash(r.committed),
          r.logStart.toString(),
          r.logEnd.toString(),
          (r.logEnd - (at ?? r.logStart)).toString(),
          r.fingerprint?.split(':').slice(0, 2).join(' @ ') ?? '-',
        ];
      }),
    ]))
      io.out(line);
    return EXIT.ok;
  });
}

/** The offset each partition is moved to: a keyword, a number, or the first message at/after a time. */
async function targets(admin: Admin, topic: string, to: string, rows: Row[]): Promise<Map<number, bigint>> {
  const out = new Map<number, bigint>();
  if (to === 'earliest' || to === 'latest') {
    for (const r of rows) out.set(r.partition, to === 'earliest' ? r.logStart : r.logEnd);
  } else if (/^\d+$/.test(to)) {
    const offset = BigInt(to);
    for (const r of rows) {
      if (offset < r.logStart || offset > r.logEnd) {
        throw new UsageError(
          `--to ${to} is outside partition ${r.partition}'s log (${r.logStart}..${r.logEnd}); pick --partition or earliest/latest`,
        );
      }
      out.set(r.partition, offset);
    }
  } else {
    const ms = /(Z|[+-]\d{2}:?\d{2})$/.test(to) ? Date.parse(to) : NaN;
    if (!Number.isFinite(ms)) {
      throw new UsageError(
        `--to must be earliest, latest, an offset or an ISO-8601 time with a zone, got "${to}"`,
      );
    }
    const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, ms);
    for (const r of rows) {
      const found = byTime.find((x) => x.partition === r.partition);
      // -1: no message at or after that time: the end of the log.
      out.set(r.partition, !found || found.offset === '-1' ? r.logEnd : BigInt(found.offset));
    }
  }
  return out;
}

/**
 * The fingerprints (../offsets/fingerprint.ts) of the messages just before each target offset, read
 * with a throw-away consumer group: a fence moved there keeps its log identity, so a topic re-created
 * afterwards is still recognized at the next resume. A target at the log start has none.
 */
async function fingerprintsBefore(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  targets: ReadonlyMap<number, bigint>,
  logStarts: ReadonlyMap<number, bigint>,
): Promise<Map<number, string>> {
  const wanted = new Map(
    [...targets].filter(([p, to]) => to > (logStarts.get(p) ?? 0n)).map(([p, to]) => [p, to - 1n]),
  );
  const found = new Map<number, string>();
  if (wanted.size === 0) return found;
  const groupId = `bar-writer-offsets-reset.${process.pid}.${Date.now().toString(36)}`;
  const consumer = kafka.consumer({ groupId, maxBytes: 1024 * 1024 });
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `could not read the messages before the new fences within 30 s (partitions ${[...wanted.keys()].filter((p) => !found.has(p)).join(', ')})`,
            ),
          ),
        30_000,
      );
      consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error));
      consumer.on(consumer.events.GROUP_JOIN, () => {
        for (const [partition, offset] of wanted)
          consumer.seek({ topic, partition, offset: offset.toString() });
      });
      void consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const want = wanted.get(batch.partition);
          const m = batch.messages.find((x) => BigInt(x.offset) === want);
          if (m && !found.has(batch.partition))
            found.set(
              batch.partition,
              messageFingerprint({ offset: m.offset, timestamp: m.timestamp, value: m.value }),
            );
          if ([...wanted.keys()].every((p) => found.has(p))) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return found;
}

async function reset(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    topic: { type: 'string' },
    partition: { type: 'string' },
    to: { type: 'string' },
    force: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
  });
  if (!values.topic) throw new UsageError('--topic is required (the topic whose positions move)');
  if (!values.to) throw new UsageError('--to is required: earliest, latest, an offset, or an ISO-8601 time');
  if (values.partition !== undefined && !/^\d+$/.test(values.partition)) {
    throw new UsageError(`--partition must be a partition number, got "${values.partition}"`);
  }
  const topic = values.topic;
  return withClients(async ({ admin, kafka, pool, cfg }) => {
    const group = cfg.kafka.groupId;
    let rows = await positions(admin, pool, cfg.db.schema, group, topic);
    if (values.partition !== undefined) {
      const p = Number(values.partition);
      rows = rows.filter((r) => r.partition === p);
      if (rows.length === 0) throw new UsageError(`topic ${topic} has no partition ${p}`);
    }
    const to = await targets(admin, topic, values.to!, rows);
    const described = await admin.describeGroups([group]);
    const members = described.groups[0]?.members.length ?? 0;
    for (const r of rows) {
      io.out(
        `partition ${r.partition}: fence ${dash(r.fence)} → ${to.get(r.partition)}, committed ${dash(r.committed)} → ${to.get(r.partition)}`,
      );
    }
    if (values['dry-run']) {
      io.out('dry run: nothing changed');
      return EXIT.ok;
    }
    if (members > 0 && !values.force) {
      io.err(
        `group ${group} has ${members} active member(s): stop them (scale bar-writer to 0) and run this again, ` +
          'or add --force (the fences move now, and running members resume from them within seconds)',
      );
      return EXIT.finding;
    }
    const fingerprints = await fingerprintsBefore(
      kafka,
      admin,
      topic,
      to,
      new Map(rows.map((r) => [r.partition, r.logStart])),
    );
    // The fences first: they decide where every member resumes (the fence wins over a committed offset).
    for (const r of rows) {
      const next = to.get(r.partition)!;
      await resetFence(
        pool,
        cfg.db.schema,
        group,
        topic,
        r.partition,
        next,
        fingerprints.get(r.partition) ?? null,
      );
    }
    if (members > 0) {
      // Kafka refuses to move an active group's offsets: the members do, as they write from the fences.
      io.out(
        `moved the fences of ${rows.length} partition(s) of ${topic} for group ${group}; its ${members} running member(s) ` +
          'resume from them at their next write or within 5 s (their periodic check), and commit as they go',
      );
      return EXIT.ok;
    }
    await admin.setOffsets({
      groupId: group,
      topic,
      partitions: rows.map((r) => ({ partition: r.partition, offset: to.get(r.partition)!.toString() })),
    });
    io.out(`moved ${rows.length} partition(s) of ${topic} for group ${group}`);
    return EXIT.ok;
  });
}

export const offsetsCommand: Command = {
  summary: 'show or move where each partition resumes (database fence and Kafka committed offset)',
  help: `Usage: bar-writer offsets show [--topic T] [--json]
       bar-writer offsets reset --topic T [--partition P] --to earliest|latest|<offset>|<ISO time>
                                [--force] [--dry-run]

show   per partition of the topic (default KAFKA_TOPIC) for KAFKA_GROUP_ID: the database fence (the
       first offset not yet written), the group's committed offset, the log's start and end, the lag,
       and the message the fence says it covers (offset @ record time).
reset  moves the fence and the committed offset of every partition (or --partition P) together, to
       the log's start, its end, an offset, or the first message at or after an ISO-8601 time. The
       bars from there on are written again when the service consumes them (the newest version of
       each bar is kept). Refused while members of the group are active (exit 3) unless --force:
       then the fences move and the running members resume from them at their next write, or within
       5 s. A moved fence keeps the identity of the message before it (read from the log), so a topic
       re-created later is still recognized. --dry-run prints what would move.

Exit: 0 done; 1 failed; 2 invalid usage or configuration; 3 refused (the group is active).`,
  run: (args, io) =>
    guarded('offsets', io, async () => {
      const [sub, ...rest] = args;
      if (sub === 'show') return show(rest, io);
      if (sub === 'reset') return reset(rest, io);
      throw new UsageError(
        sub ? `unknown subcommand "${sub}": show or reset` : 'a subcommand is required: show or reset',
      );
    }),
};
