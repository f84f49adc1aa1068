// Running the load generator (bench/loadgen/, build/Release/vhost_loadgen) once and reading its
// --json object. The field list is the generator's documented output (bench/loadgen/README.md).

import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface GenLatency {
  mean: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export interface GenResult {
  proto: string;
  rw: string;
  bs: number;
  iodepth: number;
  queues: number;
  mode: string;
  eventIdx: boolean;
  /** measured seconds */
  runtime: number;
  ios: number;
  bytes: number;
  iops: number;
  /** 1e6 bytes per second */
  mbps: number;
  lat_us: GenLatency;
  kicks: number;
  calls: number;
  kicks_per_io: number;
  calls_per_io: number;
  errors: number;
  verify_errors: number;
  per_queue: { ios: number; kicks: number; calls: number }[];
}

const NUMERIC_FIELDS = ['runtime', 'ios', 'bytes', 'iops', 'mbps', 'kicks', 'calls', 'kicks_per_io', 'calls_per_io', 'errors'] as const;
const LATENCY_FIELDS = ['mean', 'p50', 'p99', 'p999', 'max'] as const;

/** The generator's stdout → its result, or a reason why it is not one. */
export function parseGenOutput(stdout: string): { result: GenResult } | { error: string } {
  const text = stdout.trim();
  if (text === '') return { error: 'no JSON on stdout' };
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    return { error: `stdout is not one JSON object: ${(e as Error).message}` };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { error: 'stdout JSON is not an object' };
  const r = o as Record<string, unknown>;
  for (const f of NUMERIC_FIELDS) {
    if (typeof r[f] !== 'number' || !Number.isFinite(r[f])) return { error: `JSON field ${f} missing or not a number` };
  }
  const lat = r.lat_us as Record<string, unknown> | undefined;
  if (typeof lat !== 'object' || lat === null) return { error: 'JSON field lat_us missing' };
  for (const f of LATENCY_FIELDS) {
    if (typeof lat[f] !== 'number' || !Number.isFinite(lat[f])) return { error: `JSON field lat_us.${f} missing or not a number` };
  }
  if (r.per_queue !== undefined && !Array.isArray(r.per_queue)) return { error: 'JSON field per_queue is not an array' };
  return { result: o as GenResult };
}

export interface Mark<T> {
  /** ms after the spawn */
  atMs: number;
  take: () => T;
}

export interface GenRun<T> {
  argv: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  timedOut: boolean;
  /** what each mark's take() returned, undefined for a mark the process did not live to see */
  marks: (T | undefined)[];
  /** performance.now() at the spawn */
  t0: number;
  pid: number;
}

/** The command that runs the generator: a .js file (the test fake) goes through this node. */
export function generatorCommand(loadgen: string, args: readonly string[]): string[] {
  return loadgen.endsWith('.js') ? [process.execPath, loadgen, ...args] : [loadgen, ...args];
}

/**
 * Runs `taskset -c cpu <generator> args`, calls each mark's take() at its time while the
 * process lives, and kills it (SIGKILL) after timeoutMs or when `abort` fires.
 */
export function runGenerator<T>(loadgen: string, args: readonly string[], cpu: number,
  opts: { timeoutMs: number; marks: readonly Mark<T>[]; abort?: AbortSignal; onSpawn?: (pid: number) => void }): Promise<GenRun<T>> {
  const argv = ['taskset', '-c', String(cpu), ...generatorCommand(loadgen, args)];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const pid = child.pid ?? -1;
    if (pid > 0) opts.onSpawn?.(pid);
    const marks: (T | undefined)[] = opts.marks.map(() => undefined);
    let exited = false;
    let timedOut = false;
    let stdout = '';
    let stderr = '';
    const kill = (): void => {
      if (exited || pid < 0) return;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timers = opts.marks.map((m, i) => setTimeout(() => {
      if (!exited) marks[i] = m.take();
    }, m.atMs));
    const deadline = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    const onAbort = (): void => kill();
    opts.abort?.addEventListener('abort', onAbort);
    if (opts.abort?.aborted === true) kill();
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr!.on('data', (d: Buffer) => {
      // Keep the head and the end: enough to show the first errors it printed.
      stderr += d.toString('utf8');
      if (stderr.length > 64 * 1024) stderr = `${stderr.slice(0, 32 * 1024)}\n…\n${stderr.slice(-16 * 1024)}`;
    });
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (finished) return;
      finished = true;
      exited = true;
      for (const t of timers) clearTimeout(t);
      clearTimeout(deadline);
      opts.abort?.removeEventListener('abort', onAbort);
      resolve({ argv, code, signal, stdout, stderr, wallMs: performance.now() - t0, timedOut, marks, t0, pid });
    };
    // 'close' comes after the pipes are drained, so stdout is complete.
    child.on('close', (code, signal) => finish(code, signal));
    child.on('error', (err) => {
      stderr += `spawn failed: ${err.message}\n`;
      finish(-1, null);
    });
  });
}
