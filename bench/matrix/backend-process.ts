// A backend under test as a child process: started once, pinned, watched, stopped.
//
// Children get their own process group (detached), so a Ctrl-C at the terminal reaches only the
// harness, which then stops them in order; the harness kills any left over, by pid, when it exits.
// Their output goes to a log file that the harness reads only between and at the edges of
// measurements (collect()), never during one.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { BackendId } from './plan';
import { processCpuTicks, threadAffinities } from '../procfs';

export type GcKind = 'scavenge' | 'mark-compact' | 'minor-mc' | 'other';

export interface GcEvent {
  /** performance.now() of the collect() that read the line */
  t: number;
  kind: GcKind;
  /** the pause V8 reports (the first of "X / Y ms") */
  pauseMs: number;
}

export interface GcCounts {
  scavenge: number;
  markCompact: number;
  minorMc: number;
  other: number;
  pauseMs: number;
}

// node --trace-gc (V8 11.3): "[pid:0xisolate]     1234 ms: Scavenge 4.1 (5.2) -> 3.9 (6.0) MB, 0.52 / 0.00 ms ..."
const GC_LINE = /^\[\d+:0x[0-9a-f]+\]\s+(?:\d+(?:\.\d+)? ms: )?([A-Za-z][^ ,]*(?: [A-Za-z][^ ,(]*)?)[^,]*,\s*([\d.]+)\s*\/\s*([\d.]+)\s*ms/;

/** One --trace-gc line → its kind and pause, or null if the line is something else. */
export function parseGcLine(line: string): { kind: GcKind; pauseMs: number } | null {
  const m = GC_LINE.exec(line);
  if (m === null) return null;
  const what = m[1];
  let kind: GcKind;
  if (what.startsWith('Scavenge')) kind = 'scavenge';
  else if (what.startsWith('Minor')) kind = 'minor-mc';
  else if (what.startsWith('Mark-Compact') || what.startsWith('Mark-sweep') || what.startsWith('Mark-Sweep')) kind = 'mark-compact';
  else kind = 'other';
  return { kind, pauseMs: Number(m[2]) };
}

export function countGc(events: readonly GcEvent[], t0: number, t1: number): GcCounts {
  const c: GcCounts = { scavenge: 0, markCompact: 0, minorMc: 0, other: 0, pauseMs: 0 };
  for (const e of events) {
    if (e.t <= t0 || e.t > t1) continue;
    if (e.kind === 'scavenge') c.scavenge++;
    else if (e.kind === 'mark-compact') c.markCompact++;
    else if (e.kind === 'minor-mc') c.minorMc++;
    else c.other++;
    c.pauseMs += e.pauseMs;
  }
  c.pauseMs = Math.round(c.pauseMs * 1000) / 1000;
  return c;
}

export interface BackendSpec {
  id: BackendId;
  /** the command, without the taskset prefix */
  argv: string[];
  socket: string;
  /** parse --trace-gc lines */
  gcTrace: boolean;
  /** stdout and stderr go to this file (put it on tmpfs); collect() reads what is new */
  logPath: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const TAIL_LINES = 40;

export class BackendProcess {
  readonly gc: GcEvent[] = [];
  exitInfo: ExitInfo | null = null;
  readonly exited: Promise<ExitInfo>;
  /** set when the harness itself stops it, so the exit is not reported as a death */
  stopping = false;
  private readonly child: ChildProcess;
  private readonly tail: string[] = [];
  private readonly logFd: number;
  private readOffset = 0;
  private partial = '';

  private constructor(readonly spec: BackendSpec, readonly cpu: number) {
    // Output goes to a file, not a pipe: a GC line written during a measurement then wakes
    // nobody (a pipe would wake the harness, on one of the two vCPUs under test).
    this.logFd = openSync(spec.logPath, 'w+', 0o600);
    // Pinned from the first instruction, so every thread it ever creates inherits the mask.
    this.child = spawn('taskset', ['-c', String(cpu), ...spec.argv], { stdio: ['ignore', this.logFd, this.logFd], detached: true });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      this.child.on('error', (err) => {
        this.pushLine(`spawn failed: ${err.message}`);
        this.exitInfo = { code: -1, signal: null };
        resolve(this.exitInfo);
      });
    });
  }

  static start(spec: BackendSpec, cpu: number): BackendProcess {
    return new BackendProcess(spec, cpu);
  }

  get id(): BackendId {
    return this.spec.id;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.exitInfo === null && this.child.pid !== undefined;
  }

  /**
   * Reads what the backend printed since the last call. GC lines are stamped with the time of
   * this call, so a line collected here happened at or before it and after the previous call:
   * count events in (t0, t1] between two collections.
   */
  collect(): void {
    const now = performance.now();
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (;;) {
      const n = readSync(this.logFd, buf, 0, buf.length, this.readOffset);
      if (n <= 0) break;
      this.readOffset += n;
      const lines = (this.partial + buf.toString('utf8', 0, n)).split('\n');
      this.partial = lines.pop()!;
      for (const line of lines) {
        const g = this.spec.gcTrace ? parseGcLine(line) : null;
        if (g !== null) this.gc.push({ t: now, ...g });
        else this.pushLine(line);
      }
    }
  }

  private pushLine(line: string): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  /** The last lines it printed (GC trace lines excluded). */
  outputTail(): string {
    this.collect();
    return [...this.tail, ...(this.partial !== '' ? [this.partial] : [])].join('\n');
  }

  describeExit(): string {
    const e = this.exitInfo;
    if (e === null) return 'running';
    return e.signal !== null ? `killed by ${e.signal}` : `exited with status ${e.code}`;
  }

  /** Resolves when the socket exists; rejects if the process exits first or after timeoutMs. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (!this.alive) throw new Error(`${this.id} ${this.describeExit()} before its socket appeared:\n${this.outputTail()}`);
      if (existsSync(this.spec.socket) && statSync(this.spec.socket).isSocket()) {
        this.collect();
        return;
      }
      if (performance.now() > deadline) throw new Error(`${this.id}: socket ${this.spec.socket} did not appear within ${timeoutMs} ms:\n${this.outputTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * taskset -a -p: every thread it has now (threads created later inherit the mask of their
   * creator). Returns the Cpus_allowed_list values seen afterwards; throws unless all are `cpu`.
   */
  pin(cpu: number): string[] {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(this.pid)], { stdio: 'ignore' });
    const seen = threadAffinities(this.pid);
    if (seen.length !== 1 || seen[0] !== String(cpu)) {
      throw new Error(`${this.id}: after taskset its threads allow CPUs ${JSON.stringify(seen)}, not ${cpu}`);
    }
    return seen;
  }

  cpuTicks(): number | null {
    return processCpuTicks(this.pid);
  }

  /** GC events collected in (t0, t1]. */
  gcBetween(t0: number, t1: number): GcCounts {
    return countGc(this.gc, t0, t1);
  }

  /** SIGTERM (a clean stop: ours drains and flushes, --cpu-prof writes its profile), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<ExitInfo> {
    this.stopping = true;
    if (this.alive) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => this.killNow(), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.collect();
    closeSync(this.logFd);
    return this.exitInfo ?? { code: null, signal: null };
  }

  /** Synchronous last resort (process 'exit' handler). */
  killNow(): void {
    this.stopping = true;
    if (this.alive) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
