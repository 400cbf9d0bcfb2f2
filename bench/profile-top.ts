/**
 * bench:profile — the top self-time functions of a V8 .cpuprofile (from `node --cpu-prof`), and the
 * same time grouped by where the code lives (kafkajs, pg, our src/, Node internals, GC, idle).
 *
 *   npm run bench:profile [-- path/to/file.cpuprofile] [-- --top 30]
 *
 * Without a path, the newest .cpuprofile in bench/results/ is read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './env';
import { printTable, round } from './report';
import { RESULTS_DIR } from './results';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  busyMs: number;
  top: { fn: string; where: string; selfMs: number; pctOfBusy: number }[];
  byArea: { area: string; selfMs: number; pctOfBusy: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  if (u.startsWith(REPO)) return path.relative(REPO, u);
  return u;
}

function area(frame: CallFrame): string {
  const { functionName: fn, url } = frame;
  if (fn === '(idle)') return '(idle)';
  if (fn === '(garbage collector)') return '(garbage collector)';
  if (fn === '(program)') return '(program: native, outside JS)';
  if (!url) return '(native / builtins)';
  const u = shortUrl(url);
  if (url.includes('node_modules/'))
    return u.split('/')[0]!.startsWith('@') ? u.split('/').slice(0, 2).join('/') : u.split('/')[0]!;
  if (u.startsWith('dist/')) return `ours: ${u.split('/').slice(1, 2).join('/').replace(/\.js$/, '')}`;
  if (url.startsWith('node:')) return 'node: ' + url.slice(5).split('/')[0];
  return u;
}

export function summarizeProfile(file: string, topN = 25): ProfileSummary {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const fnTotals = new Map<string, { fn: string; where: string; us: number }>();
  const areaTotals = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    totalUs += us;
    if (frame.functionName === '(idle)') idleUs += us;
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '';
    const fn = frame.functionName || '(anonymous)';
    const key = `${fn}@${where}`;
    const t = fnTotals.get(key) ?? { fn, where, us: 0 };
    t.us += us;
    fnTotals.set(key, t);
    const a = area(frame);
    areaTotals.set(a, (areaTotals.get(a) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const pct = (us: number) => round((100 * us) / Math.max(1, busyUs), 1);
  return {
    file: path.relative(REPO, file),
    totalMs: round(totalUs / 1000),
    idleMs: round(idleUs / 1000),
    busyMs: round(busyUs / 1000),
    top: [...fnTotals.values()]
      .filter((t) => t.fn !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((t) => ({ fn: t.fn, where: t.where, selfMs: round(t.us / 1000), pctOfBusy: pct(t.us) })),
    byArea: [...areaTotals.entries()]
      .filter(([a]) => a !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .map(([a, us]) => ({ area: a, selfMs: round(us / 1000), pctOfBusy: pct(us) })),
  };
}

export function printProfile(s: ProfileSummary, areas = 12): void {
  console.log(
    `CPU profile ${s.file}: ${s.totalMs} ms recorded, main thread busy ${s.busyMs} ms ` +
      `(${round((100 * s.busyMs) / Math.max(1, s.totalMs), 1)}%), idle ${s.idleMs} ms`,
  );
  console.log('self time by area (% of busy):');
  printTable(
    [['area', 'self ms', '%'], ...s.byArea.slice(0, areas).map((a) => [a.area, a.selfMs, a.pctOfBusy])],
    [0],
  );
  console.log('top self-time functions (% of busy):');
  printTable(
    [['function', 'self ms', '%', 'where'], ...s.top.map((t) => [t.fn, t.selfMs, t.pctOfBusy, t.where])],
    [0, 3],
  );
}

export function newestProfile(dir = RESULTS_DIR): string | null {
  if (!fs.existsSync(dir)) return null;
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => path.join(dir, f))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  return files[0] ?? null;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const topIdx = args.indexOf('--top');
  const topN = topIdx >= 0 ? Number(args[topIdx + 1]) : 25;
  const file =
    args.find((a, i) => !a.startsWith('--') && (topIdx < 0 || i !== topIdx + 1)) ?? newestProfile();
  if (!file) {
    console.error('no .cpuprofile given and none in bench/results/');
    process.exit(2);
  }
  printProfile(summarizeProfile(path.resolve(file), topN));
}
