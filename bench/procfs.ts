/** What /proc says about a process (RSS, CPU seconds, bytes read) and about the machine (CPU seconds). */
import fs from 'node:fs';
import { nowMs } from './report';

/** Samples VmRSS of `pid` from /proc every `intervalMs`; VmHWM (the kernel's peak) on demand. */
export class RssSampler {
  private timer: NodeJS.Timeout;
  peakRssKb = 0;
  samples = 0;
  private series: { t: number; rssKb: number }[] = [];

  constructor(
    private readonly pid: number,
    intervalMs = 100,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.sample();
  }

  private read(): Record<string, number> {
    const out: Record<string, number> = {};
    try {
      const text = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
      for (const line of text.split('\n')) {
        const m = /^(Vm\w+):\s+(\d+) kB/.exec(line);
        if (m) out[m[1]!] = Number(m[2]);
      }
    } catch {
      // exited
    }
    return out;
  }

  private sample(): void {
    const rss = this.read().VmRSS;
    if (rss === undefined) return;
    this.samples++;
    if (rss > this.peakRssKb) this.peakRssKb = rss;
    if (this.samples % 10 === 1) this.series.push({ t: Math.round(nowMs()), rssKb: rss });
  }

  /** VmHWM: the process's peak resident set size, as the kernel counted it (read before it exits). */
  hwmKb(): number | null {
    return this.read().VmHWM ?? null;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** user+system CPU seconds of `pid` so far (/proc/<pid>/stat utime + stime), null once it is gone. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = 100; // getconf CLK_TCK on Linux x86_64

/** Bytes `pid` has read through read()-like calls, sockets included (/proc/<pid>/io rchar). */
export function processReadBytes(pid: number): number | null {
  try {
    const m = /^rchar:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Machine-wide CPU seconds (busy, total) from /proc/stat, summed over all cores. */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is already in user)
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
}
