/**
 * The partition state machine (src/batch/partition.ts), table-driven: every mode against every event,
 * the mode it moves to (or "=" for unchanged, or the refusal), every edge of TRANSITIONS exercised, the
 * entry conditions refused, and the effects of the transitions that carry the guarantees.
 */
import {
  assigned,
  fetches,
  step,
  TRANSITIONS,
  type Context,
  type Effect,
  type Event,
  type Mode,
  type ModeName,
  type PartitionState,
} from '../../src/batch/partition';
import { fingerprint } from '../../src/offsets/fingerprint';

const err = { class: 'transient' as const, code: '55P03', message: 'lock timeout' };
const batch = { first: 10n, next: 13n, entries: 3, bars: 3 };
const base: PartitionState = {
  topic: 't',
  partition: 0,
  generation: 1,
  mode: { name: 'idle' },
  next: 10n,
  written: 10n,
  caughtUp: false,
  failing: null,
  aliveAtMs: 0,
  stalled: false,
};
const writeFailure = { failing: { stage: 'write' as const, attempts: 1, error: err } };
const resumeFailure = { failing: { stage: 'resume' as const, attempts: 1, error: err } };

/** One sample state per mode (and phase). */
const MODES: Record<string, [Mode, Partial<PartitionState>]> = {
  'loading.reading': [
    { name: 'loading', phase: 'reading' },
    { next: null, written: null },
  ],
  'loading.backoff': [
    { name: 'loading', phase: 'backoff' },
    { next: null, written: null, ...resumeFailure },
  ],
  verifying: [
    { name: 'verifying', check: 9n, fingerprint: 'fp9', fence: 10n, committed: null },
    { next: 9n },
  ],
  'replacing.moving': [{ name: 'replacing', phase: 'moving', fence: 10n, found: 'x' }, { next: null }],
  'replacing.backoff': [
    { name: 'replacing', phase: 'backoff', fence: 10n, found: 'x' },
    { next: null, ...resumeFailure },
  ],
  settling: [{ name: 'settling', batch, reason: 'x' }, {}],
  idle: [{ name: 'idle' }, {}],
  filling: [{ name: 'filling', due: null, timer: true }, {}],
  'filling.due': [{ name: 'filling', due: 'size', timer: false }, {}],
  flushing: [{ name: 'flushing', batch }, { next: 13n }],
  'retrying.backoff': [{ name: 'retrying', phase: 'backoff', from: 10n, since: 0 }, writeFailure],
  'retrying.ready': [{ name: 'retrying', phase: 'ready', from: 10n, since: 0 }, writeFailure],
  'retrying.refetching': [{ name: 'retrying', phase: 'refetching', from: 10n, since: 0 }, writeFailure],
  revoked: [{ name: 'revoked' }, {}],
};

/** One sample of every event kind (two where the payload decides). */
const EVENTS: Record<string, Event> = {
  reassigned: { kind: 'reassigned' },
  resumeRead: {
    kind: 'resumeRead',
    facts: {
      fence: { next: 10n, fingerprint: '9:1:x' },
      committed: null,
      log: { low: 0n, high: 20n },
      topicHasFences: true,
    },
    generation: 2,
  },
  'resumeRead.at': {
    kind: 'resumeRead',
    facts: {
      fence: { next: 10n, fingerprint: null },
      committed: 10n,
      log: { low: 0n, high: 20n },
      topicHasFences: true,
    },
    generation: 2,
  },
  'resumeRead.replaced': {
    kind: 'resumeRead',
    facts: {
      fence: { next: 30n, fingerprint: '29:1:x' },
      committed: null,
      log: { low: 0n, high: 20n },
      topicHasFences: true,
    },
    generation: 2,
  },
  resumeFailed: { kind: 'resumeFailed', error: err },
  fetched: { kind: 'fetched', first: 10n, firstFingerprint: 'fp9', highWatermark: 20n },
  'fetched.below': { kind: 'fetched', first: 5n, firstFingerprint: 'x', highWatermark: 20n },
  'fetched.other': { kind: 'fetched', first: 9n, firstFingerprint: 'another log', highWatermark: 20n },
  took: { kind: 'took', taken: 2, lastSeen: 11n, highWatermark: 20n },
  flushStarted: { kind: 'flushStarted', batch },
  flushed: { kind: 'flushed', batch, commitOffset: 13n, fenceBefore: 10n, rewound: false },
  /** The same, with entries buffered meanwhile (see `buffered`). */
  'flushed.more': { kind: 'flushed', batch, commitOffset: 13n, fenceBefore: 10n, rewound: false },
  'flushed.rewound': { kind: 'flushed', batch, commitOffset: 13n, fenceBefore: 2n, rewound: true },
  flushFailed: { kind: 'flushFailed', batch, error: err },
  fenceMoved: { kind: 'fenceMoved', next: 0n },
  fenceMoveFailed: { kind: 'fenceMoveFailed', error: err },
  timer: { kind: 'timer' },
  retrySlot: { kind: 'retrySlot' },
  reconsider: { kind: 'reconsider' },
  doubt: { kind: 'doubt', reason: 'offset out of range (kafkajs reset the position)' },
  observed: { kind: 'observed', highWatermark: 5n, fence: 10n, heldForRoom: false },
  revoked: { kind: 'revoked' },
};

const T = 'THROWS';
/**
 * The whole table: mode × event → the mode after ("=": unchanged, THROWS: refused). Read a row as
 * "in this mode, on this event, the partition goes to …".
 */
// prettier-ignore
const TABLE: Record<string, Record<string, string>> = {
  'loading.reading':     { reassigned: '=', resumeRead: 'verifying', 'resumeRead.at': 'idle', 'resumeRead.replaced': 'replacing.moving', resumeFailed: 'loading.backoff', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: 'revoked' },
  'loading.backoff':     { reassigned: '=', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: 'loading.reading', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: 'revoked' },
  verifying:             { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: 'idle', 'fetched.below': 'loading.reading', 'fetched.other': 'replacing.moving', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: 'loading.reading', observed: '=', revoked: 'revoked' },
  'replacing.moving':    { reassigned: '=', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: 'idle', fenceMoveFailed: 'replacing.backoff', timer: '=', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: 'revoked' },
  'replacing.backoff':   { reassigned: '=', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: 'replacing.moving', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: 'revoked' },
  settling:              { reassigned: '=', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: 'loading.reading', 'flushed.more': 'loading.reading', 'flushed.rewound': 'loading.reading', flushFailed: 'loading.reading', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: 'revoked' },
  idle:                  { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': 'loading.reading', 'fetched.other': 'loading.reading', took: 'filling.due', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: 'loading.reading', observed: 'loading.reading', revoked: 'revoked' },
  filling:               { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': 'loading.reading', 'fetched.other': 'loading.reading', took: 'filling.due', flushStarted: 'flushing', flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: 'filling.due', retrySlot: '=', reconsider: 'filling.due', doubt: 'loading.reading', observed: 'loading.reading', revoked: 'revoked' },
  'filling.due':         { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': 'loading.reading', 'fetched.other': 'loading.reading', took: '=', flushStarted: 'flushing', flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: 'loading.reading', observed: 'loading.reading', revoked: 'revoked' },
  flushing:              { reassigned: 'settling', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: 'settling', 'fetched.below': 'settling', 'fetched.other': 'settling', took: '=', flushStarted: T, flushed: 'idle', 'flushed.more': 'filling.due', 'flushed.rewound': 'loading.reading', flushFailed: 'retrying.backoff', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: 'settling', observed: '=', revoked: 'revoked' },
  'retrying.backoff':    { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: 'retrying.ready', retrySlot: '=', reconsider: '=', doubt: 'loading.reading', observed: '=', revoked: 'revoked' },
  'retrying.ready':      { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: 'retrying.refetching', reconsider: '=', doubt: 'loading.reading', observed: '=', revoked: 'revoked' },
  'retrying.refetching': { reassigned: 'loading.reading', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': 'loading.reading', 'fetched.other': 'loading.reading', took: 'filling.due', flushStarted: T, flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: 'retrying.ready', retrySlot: '=', reconsider: '=', doubt: 'loading.reading', observed: '=', revoked: 'revoked' },
  revoked:               { reassigned: '=', resumeRead: '=', 'resumeRead.at': '=', 'resumeRead.replaced': '=', resumeFailed: '=', fetched: '=', 'fetched.below': '=', 'fetched.other': '=', took: '=', flushStarted: '=', flushed: '=', 'flushed.more': '=', 'flushed.rewound': '=', flushFailed: '=', fenceMoved: '=', fenceMoveFailed: '=', timer: '=', retrySlot: '=', reconsider: '=', doubt: '=', observed: '=', revoked: '=' },
};

function ctx(size: number, over: Partial<Context> = {}): Context {
  return {
    now: 1000,
    buffered: { size, barCount: size, oldestArrivalMs: size ? 0 : null },
    pressure: false,
    stopping: false,
    settings: {
      batchSize: 3,
      intervalMs: 1000,
      flushOnCaughtUp: false,
      maxBarsPerFlush: 9,
      maxRetries: 3,
      retryDelayMs: 100,
      retryMaxDelayMs: 1000,
      fromBeginning: true,
      stallMs: 60_000,
      refetchWaitMs: 10_000,
    },
    random: () => 0.5,
    ...over,
  };
}

/** What the buffer holds in the table's cases: entries where the mode (or the event) implies some. */
function buffered(modeKey: string, eventKey: string): number {
  if (modeKey.startsWith('filling')) return 2;
  if (modeKey === 'flushing') return eventKey === 'flushed' ? 0 : 2; // 'flushed.more': 2
  if (eventKey === 'took' && (modeKey === 'idle' || modeKey === 'retrying.refetching')) return 2;
  return 0;
}

const label = (m: Mode): string =>
  m.name + ('phase' in m ? `.${m.phase}` : '') + (m.name === 'filling' && m.due ? '.due' : '');

function run(modeKey: string, eventKey: string, c?: Context) {
  const [mode, extra] = MODES[modeKey]!;
  const s = { ...base, ...extra, mode };
  return { s, r: step(s, EVENTS[eventKey]!, c ?? ctx(buffered(modeKey, eventKey))) };
}

describe('the transition table', () => {
  const cells: [string, string, string][] = Object.entries(TABLE).flatMap(([m, row]) =>
    Object.entries(row).map(([e, to]): [string, string, string] => [m, e, to]),
  );
  test('covers every mode and every event', () => {
    expect(Object.keys(TABLE).sort()).toEqual(Object.keys(MODES).sort());
    for (const row of Object.values(TABLE))
      expect(Object.keys(row).sort()).toEqual(Object.keys(EVENTS).sort());
  });

  test.each(cells)('%s on %s → %s', (m, e, to) => {
    if (to === T) {
      expect(() => run(m, e)).toThrow(/flush started in|cannot enter|illegal transition/);
      return;
    }
    const { s, r } = run(m, e);
    expect(r.state.mode === s.mode ? '=' : label(r.state.mode)).toBe(to);
  });

  test('every edge of TRANSITIONS is taken by some cell, and no cell takes another', () => {
    const taken = new Set<string>();
    for (const [m, e, to] of cells) {
      if (to === T || to === '=') continue;
      const from = MODES[m]![0].name;
      const next = to.split('.')[0] as ModeName;
      expect(TRANSITIONS[from]).toContain(next);
      taken.add(`${from}>${next}`);
      void e;
    }
    const edges = Object.entries(TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}>${to}`));
    expect(edges.filter((edge) => !taken.has(edge))).toEqual([]);
  });

  test('an entry condition is refused: flushing with an empty batch, idle with entries buffered', () => {
    const [filling, extra] = MODES.filling!;
    expect(() =>
      step(
        { ...base, ...extra, mode: filling },
        { kind: 'flushStarted', batch: { ...batch, entries: 0 } },
        ctx(2),
      ),
    ).toThrow(/cannot enter flushing.*the batch is empty/);
    const [fl] = MODES.flushing!;
    // A write done while entries are buffered goes to filling; forced to idle it would be refused.
    const r = step({ ...base, mode: fl }, EVENTS.flushed!, ctx(2));
    expect(r.state.mode.name).toBe('filling');
  });
});

/** The effects without debug log lines (the resume decision is logged at debug for operators). */
const said = (effects: Effect[]) => effects.filter((e) => !(e.kind === 'log' && e.level === 'debug'));
const kinds = (effects: Effect[]) => said(effects).map((e) => e.kind);
const of = <K extends Effect['kind']>(effects: Effect[], kind: K) =>
  effects.filter((e): e is Extract<Effect, { kind: K }> => e.kind === kind);

describe('effects that carry the guarantees', () => {
  test('a new partition is paused and reads its resume point; fetching follows the mode', () => {
    const a = assigned('t', 3, 0);
    expect(a.effects).toEqual([{ kind: 'pause' }, { kind: 'readResume' }]);
    for (const [key, [mode, extra]] of Object.entries(MODES)) {
      const expected = [
        'verifying',
        'idle',
        'filling',
        'filling.due',
        'flushing',
        'retrying.refetching',
      ].includes(key);
      expect([key, fetches({ ...base, ...extra, mode })]).toEqual([key, expected]);
    }
    // A failing partition holding its refetched batch does not fetch more.
    expect(fetches({ ...base, ...writeFailure, mode: { name: 'filling', due: 'retry', timer: false } })).toBe(
      false,
    );
  });

  test('resume point read: a fence to verify is sought to its message, under the new generation', () => {
    const { r } = run('loading.reading', 'resumeRead');
    expect(r.state).toMatchObject({ generation: 2, next: 9n, failing: null });
    expect(said(r.effects)).toEqual([{ kind: 'seek', offset: 9n }, { kind: 'resume' }]);
  });

  test('resume point read: a trusted fence ahead of the committed offset is committed, logged, counted', () => {
    const [mode, extra] = MODES['loading.reading']!;
    const r = step(
      { ...base, ...extra, mode },
      {
        kind: 'resumeRead',
        facts: {
          fence: { next: 10n, fingerprint: null },
          committed: 4n,
          log: { low: 0n, high: 20n },
          topicHasFences: true,
        },
        generation: 5,
      },
      ctx(0),
    );
    expect(r.state).toMatchObject({ mode: { name: 'idle' }, next: 10n, written: 10n, generation: 5 });
    expect(kinds(r.effects)).toEqual(['seek', 'commit', 'count', 'log', 'resume']);
    expect(of(r.effects, 'count')).toEqual([{ kind: 'count', counter: 'resumeSkippedOffsets', n: 6 }]);
  });

  test('resume point read: a committed offset ahead of the fence is overruled, the re-read logged and counted', () => {
    const [mode, extra] = MODES['loading.reading']!;
    const r = step(
      { ...base, ...extra, mode },
      {
        kind: 'resumeRead',
        facts: {
          fence: { next: 50n, fingerprint: null },
          committed: 210n,
          log: { low: 0n, high: 300n },
          topicHasFences: true,
        },
        generation: 5,
      },
      ctx(0),
    );
    expect(r.state).toMatchObject({ next: 50n, written: 50n });
    expect(of(r.effects, 'seek')).toEqual([{ kind: 'seek', offset: 50n }]);
    expect(of(r.effects, 'commit')).toEqual([]);
    expect(of(r.effects, 'count')).toEqual([{ kind: 'count', counter: 'resumeRereadOffsets', n: 160 }]);
    expect(said(of(r.effects, 'log'))[0]).toMatchObject({ msg: expect.stringMatching(/the fence wins/) });
  });

  test('resume point read: a log that ends before the fence is replaced: counted, fence moved (by the start policy)', () => {
    const facts = {
      fence: { next: 810n, fingerprint: null },
      committed: null,
      log: { low: 0n, high: 300n },
      topicHasFences: true,
    };
    for (const fromBeginning of [true, false]) {
      const c = ctx(0);
      const [mode, extra] = MODES['loading.reading']!;
      const r = step(
        { ...base, ...extra, mode },
        { kind: 'resumeRead', facts, generation: 2 },
        {
          ...c,
          settings: { ...c.settings, fromBeginning },
        },
      );
      expect(r.state.mode).toEqual({
        name: 'replacing',
        phase: 'moving',
        fence: 810n,
        found: 'a log that ends at 300',
      });
      expect(of(r.effects, 'moveFence')[0]!.to).toBe(fromBeginning ? 'start' : 'end');
      expect(of(r.effects, 'count')).toEqual([{ kind: 'count', counter: 'logReplaced', n: 1 }]);
    }
  });

  test('verifying: the same message confirms the fence; another message replaces the log', () => {
    const fp = fingerprint(9n, 1, 'v');
    const verifying: Mode = { name: 'verifying', check: 9n, fingerprint: fp, fence: 10n, committed: 10n };
    const same = step(
      { ...base, mode: verifying, next: 9n },
      { kind: 'fetched', first: 9n, firstFingerprint: fp, highWatermark: 20n },
      ctx(0),
    );
    expect(same.state).toMatchObject({ mode: { name: 'idle' }, next: 10n, written: 10n });
    expect(of(same.effects, 'take')).toEqual([{ kind: 'take', from: 10n, max: null }]);
    const other = step(
      { ...base, mode: verifying, next: 9n },
      { kind: 'fetched', first: 9n, firstFingerprint: 'other', highWatermark: 20n },
      ctx(0),
    );
    expect(other.state.mode.name).toBe('replacing');
    expect(of(other.effects, 'take')).toEqual([]);
    expect(kinds(other.effects)).toEqual(['count', 'moveFence', 'pause']);
  });

  test('a fetch below the position, a log end below it, or a doubt: buffer dropped, paused, resume read again', () => {
    for (const e of [
      EVENTS['fetched.below']!,
      { kind: 'fetched', first: 10n, firstFingerprint: 'x', highWatermark: 8n } as Event,
      EVENTS.doubt!,
    ]) {
      const [mode] = MODES.filling!;
      const r = step({ ...base, mode }, e, ctx(2));
      expect(r.state).toMatchObject({
        mode: { name: 'loading', phase: 'reading' },
        next: null,
        written: null,
      });
      expect(kinds(r.effects)).toEqual(['log', 'count', 'cancelTimer', 'dropBuffer', 'readResume', 'pause']);
    }
  });

  test('a doubt while a write is in flight waits for it (settling): its commit still goes, then the resume read', () => {
    const { r } = run('flushing', 'doubt');
    expect(r.state.mode.name).toBe('settling');
    expect(kinds(r.effects)).toEqual(['dropBuffer', 'log', 'count', 'pause']);
    const [mode] = MODES.settling!;
    const done = step({ ...base, mode }, EVENTS.flushed!, ctx(0));
    expect(kinds(done.effects)).toEqual(['commit', 'cancelTimer', 'dropBuffer', 'readResume']);
  });

  test('a failed write: the partition holds nothing, pauses, backs off, then is fetched again from the batch start', () => {
    const { r } = run('flushing', 'flushFailed');
    expect(r.state).toMatchObject({
      mode: { name: 'retrying', phase: 'backoff', from: 10n },
      failing: { attempts: 1 },
    });
    expect(kinds(r.effects)).toEqual(['dropBuffer', 'failures', 'timer', 'log', 'pause']);
    const slot = run('retrying.ready', 'retrySlot').r;
    expect(slot.effects).toEqual([
      { kind: 'seek', offset: 10n },
      { kind: 'timer', ms: 10_000 },
      { kind: 'resume' },
    ]);
    const refetched = run('retrying.refetching', 'took').r;
    expect(refetched.state.mode).toEqual({ name: 'filling', due: 'retry', timer: false });
    expect(kinds(refetched.effects)).toEqual(['cancelTimer', 'wantSlot', 'pause']);
    // The retry written: healthy again, fetching resumes.
    const [fl] = MODES.flushing!;
    const ok = step({ ...base, ...writeFailure, mode: fl }, EVENTS.flushed!, ctx(0));
    expect(ok.state).toMatchObject({ failing: null, mode: { name: 'idle' }, written: 13n });
    expect(kinds(ok.effects)).toEqual(['commit', 'failures', 'resume']);
  });

  test('a write succeeds: everything below its end is committed, and the fence is remembered', () => {
    const { r } = run('flushing', 'flushed');
    expect(r.effects).toEqual([{ kind: 'commit', offset: 13n }]);
    expect(r.state.written).toBe(13n);
  });

  test('the fence found below what the partition wrote (an operator reset): nothing committed, resume read again', () => {
    const { r } = run('flushing', 'flushed.rewound');
    expect(of(r.effects, 'commit')).toEqual([]);
    expect(of(r.effects, 'count')).toEqual([
      { kind: 'count', counter: 'positionDoubts', n: 1, reason: 'fence_moved_back' },
    ]);
    const idle = step(
      { ...base, mode: { name: 'idle' } },
      { kind: 'observed', highWatermark: 100n, fence: 4n, heldForRoom: false },
      ctx(0),
    );
    expect(idle.state.mode.name).toBe('loading');
  });

  test('stalled: behind, no progress past the bound, not held for room; said once; cleared by progress', () => {
    const c = ctx(0, { now: 70_000 });
    const watch = (heldForRoom: boolean, highWatermark = 100n): Event => ({
      kind: 'observed',
      highWatermark,
      fence: 10n,
      heldForRoom,
    });
    const r = step({ ...base, aliveAtMs: 0 }, watch(false), c);
    expect(r.state.stalled).toBe(true);
    expect(kinds(r.effects)).toEqual(['stalled', 'log']);
    expect(step(r.state, watch(false), c).effects).toEqual([]); // said once
    expect(step({ ...base, aliveAtMs: 0 }, watch(true), c).state.stalled).toBe(false); // held for room
    expect(step({ ...base, aliveAtMs: 0 }, watch(false, 10n), c).state.stalled).toBe(false); // not behind
    expect(step({ ...base, aliveAtMs: 20_000 }, watch(false), c).state.stalled).toBe(false); // within the bound
    const back = step(r.state, EVENTS.fetched!, c);
    expect(back.state.stalled).toBe(false);
    expect(of(back.effects, 'stalled')).toEqual([{ kind: 'stalled', on: false, behind: 0n }]);
  });

  test('stopping: nothing is taken, every filling partition is due (drain), no retry after a backoff', () => {
    const stopping = ctx(2, { stopping: true });
    expect(run('idle', 'fetched', ctx(0, { stopping: true })).r.effects).toEqual([]);
    expect(run('filling', 'reconsider', stopping).r.state.mode).toEqual({
      name: 'filling',
      due: 'drain',
      timer: false,
    });
    expect(run('retrying.backoff', 'timer', ctx(0, { stopping: true })).r.effects).toEqual([]);
  });

  test('the backoff of a failing write grows and is capped; reads of the fence back off the same way', () => {
    const delays: number[] = [];
    let s: PartitionState = { ...base, mode: { name: 'flushing', batch } };
    for (let i = 0; i < 6; i++) {
      const r = step(s, EVENTS.flushFailed!, ctx(0));
      delays.push(of(r.effects, 'timer')[0]!.ms);
      s = { ...r.state, mode: { name: 'flushing', batch } };
    }
    expect(delays).toEqual([75, 150, 300, 600, 750, 750]);
    const read = run('loading.reading', 'resumeFailed').r;
    expect(of(read.effects, 'timer')).toEqual([{ kind: 'timer', ms: 75 }]);
    expect(read.state.failing).toMatchObject({ stage: 'resume', attempts: 1 });
  });
});
