/**
 * The operations of the schedule, each a small function of the run (./runner.ts) that does it as an
 * operator or an outage would and records what the checker must know: windows in which partitions are
 * not expected to progress, forward skips of a reset, deleted incarnations with their fences, backfills,
 * replay measurements. Each returns a one-line detail (a `Noop` when it found nothing to act on: counted
 * apart in the report); a thrown error is recorded as the operation's failure.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sleep } from '../support/common';
import { readLog } from './kafka';
import type { BackfillRow, FenceRow, Op, ReplayMeasure, ResetTarget } from './model';
import type { Run } from './runner';

type OpOf<K extends Op['kind']> = Extract<Op, { kind: K }>;

/** What an operation that found nothing to act on returns (no instance running, no such partitions). */
export class Noop {
  constructor(readonly detail: string) {}
}

export const operations: { [K in Op['kind']]: (run: Run, op: OpOf<K>) => Promise<string | Noop> } = {
  async sigkill(run, op) {
    const id = run.pickInstance(op.instance);
    if (id === null) return new Noop('no instance running');
    await run.instances.kill(id);
    await sleep(op.downMs);
    run.instances.start(id);
    return `killed instance ${id}`;
  },

  async restart(run, op) {
    const id = run.pickInstance(op.instance);
    if (id === null) return new Noop('no instance running');
    const stop = stopMark(run, id);
    const code = await run.instances.terminate(id);
    run.instances.start(id);
    return `instance ${id} stopped (${exitSaid(run, id, code, stop)}) and started`;
  },

  async 'add-instance'(run, op) {
    run.instances.start(op.instance);
    return `started instance ${op.instance}`;
  },

  async 'remove-instance'(run, op) {
    const id = run.pickInstance(op.instance);
    if (id === null || run.instances.running.size <= 1) return new Noop('kept the last instance');
    const stop = stopMark(run, id);
    const code = await run.instances.terminate(id);
    return `stopped instance ${id} (${exitSaid(run, id, code, stop)})`;
  },

  async 'add-partitions'(run, op) {
    if (op.to <= run.partitions) return new Noop(`already ${run.partitions} partitions`);
    await run.admin.createPartitions({ topicPartitions: [{ topic: run.topic, count: op.to }] });
    const from = run.partitions;
    run.partitions = op.to;
    run.incarnations.at(-1)!.partitions = op.to;
    await run.producer.renew();
    return `${from} → ${op.to} partitions`;
  },

  async 'recreate-topic'(run, op) {
    await run.producer.pause();
    try {
      const inc = run.incarnations.at(-1)!;
      Object.assign(inc, await readLog(run.kafka, run.admin, run.topic, inc.index, { bulk: run.bulkKey }));
      inc.fencesAtDeletion = await run.fences();
      const from = run.now();
      run.topicMissing = true;
      await run.admin.deleteTopics({ topics: [run.topic], timeout: 30_000 });
      await run.waitFor(
        'the topic to be gone',
        async () => !(await run.admin.listTopics()).includes(run.topic),
        60_000,
      );
      await run.createTopic(op.partitions).catch(async (err: unknown) => {
        // Seen once (Kafka 4.4.0, 16 partitions of 2.8M messages deleted under running consumers): the
        // broker logged "Deleting 16 partition(s)" and then nothing for 3.5 minutes, and never created the
        // topic again. That is the broker's fault, not the service's: keep its threads for the record,
        // restart it (an outage like any other) and create the topic once more.
        const dump = path.join(run.workDir, `broker-threads-${Math.round(run.now() / 1000)}s.txt`);
        const pid = fs.readFileSync(path.join(run.broker.runDir, 'kafka.pid'), 'utf8').trim();
        const jcmd = spawnSync('jcmd', [pid, 'Thread.print'], { encoding: 'utf8', timeout: 30_000 });
        fs.writeFileSync(dump, `${jcmd.stdout ?? ''}${jcmd.stderr ?? ''}`);
        run.log(
          `   the broker did not create the topic (${(err as Error).message}); its threads: ${dump}; restarting it`,
        );
        await run.outage('broker restart (the topic was not created)', async () => {
          run.broker.stop();
          run.broker.restart();
        });
        await run.createTopic(op.partitions);
      });
      await run.newIncarnation(op.partitions);
      run.topicMissing = false;
      run.windows.push({ from, to: run.now(), partitions: null, why: 'topic deleted' });
      await run.producer.renew();
      const n = inc.records.length + (inc.bulk?.index.length ?? 0);
      return `incarnation ${inc.index} (${n} records) deleted; incarnation ${inc.index + 1} with ${op.partitions} partitions`;
    } finally {
      run.topicMissing = false;
      run.producer.resume();
    }
  },

  async 'lock-fences'(run, op) {
    const partitions = op.partitions.filter((p) => p < run.partitions);
    if (partitions.length === 0) return new Noop('no such partitions');
    const client = await run.directClient();
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO "${run.schema}".bar_writer_offsets (consumer_group, topic, partition, next_offset)
       SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p ON CONFLICT DO NOTHING`,
      [run.group, run.topic, partitions],
    );
    await client.query(
      `SELECT partition FROM "${run.schema}".bar_writer_offsets WHERE consumer_group = $1 AND topic = $2
       AND partition = ANY($3::int[]) FOR UPDATE`,
      [run.group, run.topic, partitions],
    );
    const from = run.now();
    run.locked = true;
    run.lockDone = (async () => {
      await sleep(op.holdMs);
      run.locked = false;
      await client.query('COMMIT').catch(() => undefined);
      await client.end().catch(() => undefined);
      run.windows.push({ from, to: run.now(), partitions, why: 'fence rows locked' });
      run.log(
        `fence rows of partitions ${partitions.join(',')} released after ${((run.now() - from) / 1000).toFixed(1)} s`,
      );
    })();
    return `locked partitions ${partitions.join(',')} for ${op.holdMs} ms (in the background)`;
  },

  async 'pg-restart'(run, op) {
    return run.outage('PostgreSQL restart', async () => {
      run.pg.stop(op.mode);
      await sleep(op.downMs);
      run.pg.start();
    });
  },

  async 'pgbouncer-restart'(run, op) {
    return run.outage('PgBouncer restart', async () => {
      run.bouncer.stop();
      await sleep(op.downMs);
      run.bouncer.start();
    });
  },

  async 'broker-restart'(run, op) {
    await run.producer.pause();
    try {
      return await run.outage('broker restart', async () => {
        run.broker.stop();
        await sleep(op.downMs);
        run.broker.restart();
      });
    } finally {
      run.producer.resume();
    }
  },

  async 'offsets-reset'(run, op) {
    const stopped = op.force ? [] : await run.stopAllInstances();
    try {
      const to = await resetTarget(run, op.to);
      const args = ['offsets', 'reset', '--topic', run.topic, ...to, ...(op.force ? ['--force'] : [])];
      const before = await run.fences();
      const outputs: string[] = [];
      const res = await run.cli(args, outputs);
      // Every attempt's lines: a failed one may have moved some fences before it failed.
      for (const out of outputs) recordSkips(run, out, before);
      const ok = res.code === 0 || (op.force && res.code === 3);
      if (!ok)
        throw new Error(
          `${args.join(' ')} exited ${res.code}: ${res.output.trim().split('\n').slice(-3).join(' | ')}`,
        );
      return `${args.slice(2).join(' ')}: exit ${res.code}; ${res.stdout.trim().split('\n').length - 1} partition line(s)`;
    } finally {
      run.instances.resumeAll(stopped);
    }
  },

  async replay(run) {
    await run.producer.pause();
    let stopped: number[] = [];
    try {
      await run.waitCaughtUp(90_000);
      stopped = await run.stopAllInstances();
      // Every row's version before the replay, to show what a replay that writes did (kept with --keep).
      const snapshot = `"${run.schema}".nemesis_before_replay`;
      await run.pool.query(`DROP TABLE IF EXISTS ${snapshot}`);
      await run.pool.query(
        `CREATE UNLOGGED TABLE ${snapshot} AS SELECT symbol, "timestamp", revision, source_time, source_origin
         FROM "${run.schema}".bars_1m`,
      );
      const before = await run.writeCounters();
      const compressionBefore = await run.compression();
      const ends = await run.logEnds();
      const res = await run.cli(['offsets', 'reset', '--topic', run.topic, '--to', 'earliest']);
      if (res.code !== 0)
        throw new Error(`offsets reset --to earliest exited ${res.code}: ${res.output.trim()}`);
      run.instances.resumeAll(stopped);
      stopped = [];
      await run.waitCaughtUp(120_000);
      const after = await run.writeCounters(before.xid);
      const messages = Number([...ends.values()].reduce((a, b) => a + b, 0n));
      // The rows the replay wrote, each with its version before (null: the row was absent) and after.
      const rows =
        after.rowsSince > 0
          ? (
              await run.pool.query<{ source_origin: string | null }>(
                `SELECT b.symbol, b."timestamp", b.revision, b.source_time, b.source_origin,
                        p.revision AS before_revision, p.source_time AS before_source_time,
                        p.source_origin AS before_source_origin, p.symbol IS NOT NULL AS existed
                 FROM "${run.schema}".bars_1m b
                 LEFT JOIN ${snapshot} p ON p.symbol = b.symbol AND p."timestamp" = b."timestamp"
                 WHERE b.xmin::text::bigint >= $1::bigint ORDER BY b.symbol, b."timestamp"`,
                [before.xid],
              )
            ).rows
          : [];
      const m: ReplayMeasure = {
        rowsWritten: after.rowsSince,
        tupleWrites: after.tuples - before.tuples,
        messagesReplayed: messages,
        incarnation: run.incarnations.length - 1,
        written: rows.map((r) => originOf(r.source_origin)),
      };
      run.replays.push(m);
      let written = '';
      if (m.rowsWritten > 0 || m.tupleWrites > 0) {
        written += `; the messages they hold, by partition: ${originRanges(m.written)}`;
        written += `; before: ${compressionBefore}, after: ${await run.compression()}`;
        const file = path.join(run.workDir, `replay-${run.replays.length}-written.jsonl`);
        fs.writeFileSync(
          file,
          rows
            .slice(0, 1000)
            .map((row) => JSON.stringify(row))
            .join('\n') + '\n',
        );
        written += ` (the rows: ${file})`;
      }
      await run.pool.query(`DROP TABLE IF EXISTS ${snapshot}`);
      return `replayed ${messages} messages: ${m.rowsWritten} rows written (xmin), ${m.tupleWrites} tuple writes (n_tup_ins + n_tup_upd)${written}`;
    } finally {
      run.instances.resumeAll(stopped);
      run.producer.resume();
    }
  },

  async 'commit-ahead'(run, op) {
    const stopped = await run.stopAllInstances();
    try {
      // The logs grow past the fences (the producer goes on too, unless its track has ended).
      await run.producer.send({ at: run.now(), kind: 'bars', messages: op.messages });
      const [fences, ends] = [await run.fences(), await run.logEnds()];
      const moved: { partition: number; offset: string }[] = [];
      const said: string[] = [];
      for (const p of op.partitions) {
        const f = fences.get(p);
        const end = ends.get(p);
        if (!f || end === undefined || end <= f.next) continue;
        const to = f.next + BigInt(Math.max(1, Math.floor(Number(end - f.next) * op.fraction)));
        moved.push({ partition: p, offset: to.toString() });
        said.push(`${p}: fence ${f.next}, committed → ${to} (log end ${end})`);
      }
      if (moved.length === 0) return new Noop('no partition with a fence behind its log end');
      await run.admin.setOffsets({ groupId: run.group, topic: run.topic, partitions: moved });
      return said.join('; ');
    } finally {
      run.instances.resumeAll(stopped);
    }
  },

  async 'dlq-replay'(run) {
    const res = await run.cli(['dlq', 'replay']);
    if (res.code !== 0) throw new Error(`dlq replay exited ${res.code}: ${res.output.trim()}`);
    return res.stdout.trim();
  },

  async backfill(run, op) {
    const file = path.join(run.workDir, `backfill-${run.backfills.length}.csv`);
    fs.writeFileSync(file, csv(op.rows));
    const withTime = op.versionTime !== null && (await run.backfillHasVersionTime());
    const args = [
      'backfill',
      '--no-refresh',
      '--rejects',
      `${file}.rejects.jsonl`,
      ...(withTime ? ['--version-time', String(op.versionTime)] : []),
      file,
    ];
    const res = await run.cli(args);
    run.backfills.push({ rows: op.rows, versionTime: withTime ? op.versionTime! : 0, ok: res.code === 0 });
    if (res.code !== 0)
      throw new Error(`backfill exited ${res.code}: ${res.output.trim().split('\n').slice(-2).join(' | ')}`);
    return `${res.stdout.trim().split('\n')[0]}${withTime ? ` (--version-time ${op.versionTime})` : ''}`;
  },
};

/** How long after an outage a partition may still be retrying the write the outage failed. */
const OUTAGE_AFTERMATH_MS = 30_000;

/**
 * A graceful stop exits 0 once every buffer is durable. While fence rows are locked (at any moment between
 * the SIGTERM and the exit) some buffers cannot be: the service then exits 1 at its deadline (docs/runbook.md "BarWriterDown (critical)"), and the next owner replays them.
 * So it does, with "writes failing", when the partitions it names as stuck at its stop all failed with a
 * transient error and an outage (fence rows locked, PostgreSQL, PgBouncer or the broker restarting, the
 * topic deleted) ended less than OUTAGE_AFTERMATH_MS before the SIGTERM (`at`): a partition whose write
 * the lock timed out retries at the cap, its messages fetched again, which a consumer rejoining after a
 * broker restart does not do at once.
 */
function exitSaid(run: Run, id: number, code: number | null, { at, logSize, logStart }: StopMark): string {
  if (code === 0) return 'exit 0';
  // Killed by the signal itself: the SIGTERM came while node was still loading modules, before main()
  // installed its handler (so before the process connected to anything or took a message).
  if (code === null && !logSlice(run, id, logStart, logSize).includes('"msg":"starting bar-writer"'))
    return 'ended by SIGTERM while loading its modules, before it took anything';
  // Locked at any moment of the stop (not only at its end: a lock released while the instance waited
  // for its deadline still held its writes).
  const lockedDuring = run.windows.some((w) => w.why === 'fence rows locked' && w.to >= at);
  if (run.locked || lockedDuring) return `exit ${code}: not drained, fence rows locked during the stop`;
  const stuck = code === 1 ? stuckAtStop(run, id, logSize) : null;
  // The outages that ended less than OUTAGE_AFTERMATH_MS before the stop, the latest first.
  const recent = run.windows
    .filter((w) => w.why !== 'no instance' && w.from <= at && w.to > at - OUTAGE_AFTERMATH_MS)
    .sort((a, b) => b.to - a.to);
  const outage = recent[0];
  // The broker away or the topic deleted: offset commits fail (kafkajs retries them past the deadline)
  // although every row taken is durable; the fence holds the position, the next owner replays nothing
  // the database lacks. The checker's exact comparison is what shows no bar was lost.
  const kafkaOutage = recent.find((w) => w.why === 'broker restart' || w.why === 'topic deleted');
  if (code === 1 && kafkaOutage)
    return `exit 1: offsets not committed by the deadline, ${((at - kafkaOutage.to) / 1000).toFixed(1)} s after the end of "${kafkaOutage.why}"`;
  if (stuck && stuck.length > 0 && stuck.every((p) => p.class === 'transient') && outage)
    return `exit 1: not drained, partition(s) ${stuck.map((p) => `${p.partition} (${p.code})`).join(', ')} still retrying ${((at - outage.to) / 1000).toFixed(1)} s after the end of "${outage.why}"`;
  throw new Error(
    `instance ${id} exited ${code} on SIGTERM${stuck ? ` (stuck: ${stuck.map((p) => `${p.partition} ${p.class} ${p.code}`).join(', ') || 'none'})` : ''}`,
  );
}

/** When a stop began: the run's clock, and the size of the instance's log then. */
interface StopMark {
  at: number;
  logSize: number;
  /** Where the stopped process's own lines start in the instance's log. */
  logStart: number;
}

const instanceLog = (run: Run, id: number) => path.join(run.workDir, `instance-${id}.log`);

function stopMark(run: Run, id: number): StopMark {
  let logSize = 0;
  try {
    logSize = fs.statSync(instanceLog(run, id)).size;
  } catch {
    // no log yet
  }
  return { at: run.now(), logSize, logStart: run.instances.running.get(id)?.logStart ?? 0 };
}

/** The instance's log from byte `from` to byte `to` (to the end when null); '' when it cannot be read. */
function logSlice(run: Run, id: number, from: number, to: number | null): string {
  try {
    const fd = fs.openSync(instanceLog(run, id), 'r');
    try {
      const end = to ?? fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, end - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

/**
 * The partitions the "not drained" line the instance logged during this stop (after `from` bytes of
 * its log) names as stuck, with their last error (null: no such line).
 */
function stuckAtStop(
  run: Run,
  id: number,
  from: number,
): { partition: number; class: string; code: string }[] | null {
  const tail = logSlice(run, id, from, null);
  if (tail === '') return null;
  const line = tail
    .split('\n')
    .reverse()
    .find((l) => l.includes('before every buffer was durable'));
  if (!line) return null;
  try {
    const o = JSON.parse(line) as {
      stuck?: { partition: number; error?: { class?: string; code?: string } }[];
    };
    return (o.stuck ?? []).map((p) => ({
      partition: p.partition,
      class: p.error?.class ?? '?',
      code: p.error?.code ?? '?',
    }));
  } catch {
    return null;
  }
}

/**
 * The CSV of a backfill (revision 0 written as an empty field half of the time: null is 0); with a
 * `deleted` column (true for a delete, whose prices are left empty) when some row is a delete.
 */
function csv(rows: BackfillRow[]): string {
  const deletes = rows.some((r) => r.deleted);
  const lines = [`symbol,timestamp,open,high,low,close,volume,vwap,revision${deletes ? ',deleted' : ''}`];
  rows.forEach((r, i) => {
    const prices = r.deleted
      ? ['', '', '', '', '', '']
      : [r.open, r.high, r.low, r.close, r.volume, r.vwap ?? ''];
    lines.push(
      [
        r.symbol,
        new Date(r.timestampMs).toISOString(),
        ...prices,
        r.revision === 0 && i % 2 === 0 ? '' : r.revision,
        ...(deletes ? [r.deleted ? 'true' : i % 3 === 0 ? 'false' : ''] : []),
      ].join(','),
    );
  });
  return lines.join('\n') + '\n';
}

async function resetTarget(run: Run, to: ResetTarget): Promise<string[]> {
  if (typeof to === 'string') return ['--to', to];
  const p = to.partition % run.partitions;
  const end = (await run.logEnds()).get(p) ?? 0n;
  return ['--partition', String(p), '--to', String(BigInt(Math.floor(Number(end) * to.fraction)))];
}

/** The partition and offset of a source_origin (partition × 2^48 + offset); -1, -1 without one. */
function originOf(origin: string | null): { partition: number; offset: number } {
  if (origin === null) return { partition: -1, offset: -1 };
  const o = BigInt(origin);
  return { partition: Number(o >> 48n), offset: Number(o & 0xffffffffffffn) };
}

/** "12: 67 rows, offsets 2990-3060; …" of the messages rows hold (partition -1: no origin). */
function originRanges(written: readonly { partition: number; offset: number }[]): string {
  const by = new Map<number, { n: number; min: number; max: number }>();
  for (const w of written) {
    const r = by.get(w.partition) ?? { n: 0, min: w.offset, max: w.offset };
    r.n++;
    r.min = Math.min(r.min, w.offset);
    r.max = Math.max(r.max, w.offset);
    by.set(w.partition, r);
  }
  return [...by]
    .sort((a, b) => a[0] - b[0])
    .map(([p, r]) => (p < 0 ? `no origin: ${r.n} rows` : `${p}: ${r.n} rows, offsets ${r.min}-${r.max}`))
    .join('; ');
}

/**
 * The partitions a reset moved forward: "partition P: fence F → T, committed C → T" lines. The fence
 * the checker starts the skip from is the one read just before (a lower bound of what the CLI saw).
 */
function recordSkips(run: Run, stdout: string, before: Map<number, FenceRow>): void {
  for (const line of stdout.split('\n')) {
    const m = /^partition (\d+): fence (\S+) → (\d+),/.exec(line);
    if (!m) continue;
    const partition = Number(m[1]);
    run.skips.push({
      incarnation: run.incarnations.length - 1,
      partition,
      fenceBefore: before.get(partition) ?? null,
      to: BigInt(m[3]!),
    });
  }
}
