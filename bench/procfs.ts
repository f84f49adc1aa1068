// CPU accounting from /proc (proc(5)) for every bench. Times are in clock ticks (USER_HZ,
// `getconf CLK_TCK`).

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clkTckCache = 0;

/** USER_HZ, the unit of /proc/PID/stat utime/stime and of /proc/stat. */
export function clkTck(): number {
  if (clkTckCache === 0) {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(v) || v <= 0) throw new Error(`getconf CLK_TCK gave ${JSON.stringify(v)}`);
    clkTckCache = v;
  }
  return clkTckCache;
}

/**
 * utime + stime of a whole process (all its threads, live and exited: the leader's
 * /proc/PID/stat sums the thread group), in ticks; null if the process is gone.
 */
export function processCpuTicks(pid: number): number | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  return parseStatCpuTicks(s);
}

/** proc(5): fields 14 utime and 15 stime; the comm field (2) may hold blanks and parentheses, so count from the last ')'. */
export function parseStatTimes(stat: string): { usr: number; sys: number } {
  const close = stat.lastIndexOf(')');
  if (close < 0) throw new Error('malformed /proc/PID/stat');
  const rest = stat.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14 → rest[11], stime field 15 → rest[12].
  const usr = Number(rest[11]);
  const sys = Number(rest[12]);
  if (!Number.isFinite(usr) || !Number.isFinite(sys)) throw new Error('malformed /proc/PID/stat');
  return { usr, sys };
}

export function parseStatCpuTicks(stat: string): number {
  const t = parseStatTimes(stat);
  return t.usr + t.sys;
}

/** utime and stime of a process or thread (/proc/PID/stat or /proc/PID/task/TID/stat); null once it is gone. */
export function processCpuTimes(statPath: string): { usr: number; sys: number } | null {
  let s: string;
  try {
    s = readFileSync(statPath, 'latin1');
  } catch {
    return null;
  }
  return parseStatTimes(s);
}

/**
 * A run that lost more than this (in % of one host CPU) to other processes, or to the hypervisor
 * (steal: this box is itself a VM), is marked disturbed: on a quiet box both stay within a few %.
 */
export const DISTURBED_OTHER_PCT = 10;
export const DISTURBED_STEAL_PCT = 15;

export function isDisturbed(x: { hostOtherPct: number | null; hostStealPct: number | null }): boolean {
  return (x.hostOtherPct ?? 0) > DISTURBED_OTHER_PCT || (x.hostStealPct ?? 0) > DISTURBED_STEAL_PCT;
}

export interface SystemCpu {
  /** user + nice + system + irq + softirq (guest time is already inside user), all CPUs */
  busy: number;
  idle: number;
  /** time the hypervisor ran something else on our vCPUs: this box is itself a VM */
  steal: number;
}

/** The aggregate "cpu" line of /proc/stat. */
export function systemCpu(): SystemCpu {
  return parseProcStat(readFileSync('/proc/stat', 'latin1'));
}

export function parseProcStat(text: string): SystemCpu {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) throw new Error('/proc/stat has no aggregate cpu line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => f[i] ?? 0);
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

/** Cpus_allowed_list of every thread of a process, deduplicated (e.g. ["0"]); [] if it is gone. */
export function threadAffinities(pid: number): string[] {
  const seen = new Set<string>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  for (const tid of tids) {
    try {
      const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'latin1'));
      if (m !== null) seen.add(m[1]);
    } catch {
      // the thread exited between readdir and read
    }
  }
  return [...seen].sort();
}

export function threadCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}
