// `npm run bench`: the load-generator matrix (issue 6, "Performance").
//
// One run drives the native load generator (bench/loadgen/ → build/Release/vhost_loadgen) against
// vhost-scsi-ts and qemu-storage-daemon side by side:
//   file  ours-file vs qsd vhost-user-blk on the same 1 GiB tmpfs image, best tuned
//         (aio=native,cache.direct=on) and default (aio=threads);
//   ram   ours-ram vs qsd null-co.
// Placement is pinned and reported (split: backend vCPU 0, generator vCPU 1; same: both on
// vCPU 0); every point runs N interleaved times per backend (the order rotates each run); the
// report gives medians with min/max, ours/peer ratios, backend CPU µs per I/O from /proc, V8 GC
// counts from --trace-gc, and the issue's targets, met or not. Output: a printed table and
// <out>/<label>.json (raw samples, machine facts, command lines), .md and .svg.
// bench/README.md ("npm run bench") describes the method; bench/matrix/ holds the pieces.

import { accessSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, statfsSync, writeFileSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BackendProcess } from './matrix/backend-process';
import { parseGenOutput, runGenerator, type GenResult } from './matrix/loadgen';
import { machineFacts, sha256, which, type MachineFacts } from './matrix/machine';
import { parseOptions, USAGE, UsageError, type Options } from './matrix/options';
import {
  BACKEND_IDS, BACKENDS, PLACEMENT_CPUS, PLACEMENT_LEGEND, QSD_BACKENDS, buildPlan, bsArg, pointById, vqSizeFor,
  type BackendId, type Case, type Mode, type PointDef,
} from './matrix/plan';
import { clkTck, DISTURBED_OTHER_PCT, DISTURBED_STEAL_PCT, processCpuTicks, systemCpu, threadCount, type SystemCpu } from './procfs';
import { markdownReport, printedReport, fmtCount, fmtRatio, type ReportContext } from './matrix/report';
import {
  evaluateTargets, queueScaling, summarizeCase,
  type CaseResult, type Sample,
} from './matrix/results';
import { rotate } from './stats';
import { renderSvg } from './matrix/svg';

const REPO = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO, 'dist', 'backend', 'cli.js');
/** The image, the RAM store and null-co all have this capacity. */
const CAPACITY = 1024 * 1024 * 1024;
const SOCKET_TIMEOUT_MS = 20_000;
/** Generator runs that overrun ramp + runtime by this much are killed and marked failed. */
const GENERATOR_GRACE_S = 30;
const MAX_CONSECUTIVE_FAILURES = 3;

// ---------------------------------------------------------------------------------------------
// Lifetime: everything started is stopped on every way out.

const live = new Set<BackendProcess>();
const abortCtl = new AbortController();
let abortReason: string | null = null;
let signalCount = 0;

function requestAbort(reason: string): void {
  if (abortReason !== null) return;
  abortReason = reason;
  abortCtl.abort();
}

/** The tmpfs scratch directory (1 GiB image), removed on every way out. */
let scratch: string | null = null;

function killAllNow(): void {
  for (const b of live) b.killNow();
  if (scratch !== null) rmSync(scratch, { recursive: true, force: true });
  scratch = null;
}

function onSignal(sig: NodeJS.Signals): void {
  signalCount++;
  if (signalCount > 1) {
    killAllNow();
    process.exit(130);
  }
  process.stderr.write(`\nbench: ${sig}: stopping after cleanup (send it again to kill everything at once)\n`);
  requestAbort(`interrupted (${sig})`);
}

process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);
process.on('exit', killAllNow);

// ---------------------------------------------------------------------------------------------

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

function warn(s: string): void {
  process.stderr.write(`bench: ${s}\n`);
}

function shellQuote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function commandLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/** The command as the user typed it (npm run bench -- … or node dist/bench/run.js …). */
function invocation(): string {
  const args = process.argv.slice(2);
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${args.length > 0 ? ` -- ${commandLine(args)}` : ''}`;
  return `node dist/bench/run.js${args.length > 0 ? ` ${commandLine(args)}` : ''}`;
}

/** A fully written (not sparse) image: 1 MiB of random bytes, each copy stamped with its offset. */
function writeImage(file: string, size: number): void {
  const buf = Buffer.alloc(1024 * 1024);
  randomFillSync(buf);
  const fd = openSync(file, 'w', 0o600);
  try {
    for (let off = 0; off < size; off += buf.length) {
      buf.writeBigUInt64LE(BigInt(off), 0);
      writeSync(fd, buf, 0, Math.min(buf.length, size - off), off);
    }
  } finally {
    closeSync(fd);
  }
}

interface Env {
  opts: Options;
  loadgen: string;
  qsd: string | null;
  work: string;
  rawDir: string;
  image: string | null;
  sockets: Partial<Record<BackendId, string>>;
  commands: Partial<Record<BackendId, string[]>>;
}

function backendArgv(id: BackendId, env: Env): string[] {
  const sock = env.sockets[id]!;
  switch (id) {
    case 'ours-file':
    case 'ours-ram': {
      const node = [process.execPath, '--trace-gc'];
      if (env.opts.cpuProf) node.push('--cpu-prof', `--cpu-prof-dir=${path.join(env.rawDir, `cpuprof-${id}`)}`);
      const lun = id === 'ours-file' ? `0:file:path=${env.image}` : `0:ram:size=${CAPACITY}`;
      const state = path.join(env.work, `state-${id}`);
      const run = path.join(env.work, `run-${id}`);
      mkdirSync(state, { mode: 0o700 });
      mkdirSync(run, { mode: 0o700 });
      // Reservation state stays in the scratch directory, never in /var/lib or /run.
      return [...node, CLI, 'serve', '--socket', sock, '--lun', lun, '--queues', '2', '--log-level', 'warn',
        '--state-dir', state, '--run-dir', run, ...env.opts.backendArgs];
    }
    case 'qsd-native':
    case 'qsd-threads': {
      // locking=off: the file backends share one image and run at the same time (only one is driven at a time).
      const file = id === 'qsd-native'
        ? `driver=file,node-name=f,filename=${env.image},aio=native,cache.direct=on,locking=off`
        : `driver=file,node-name=f,filename=${env.image},locking=off`;
      return [env.qsd!, '--blockdev', file,
        '--export', `type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=${sock},writable=on,num-queues=2`];
    }
    case 'qsd-null':
      // read-zeroes=on: a read fills the guest buffer (a memset), as ours-ram's read copies into it.
      return [env.qsd!, '--blockdev', `driver=null-co,node-name=n,size=${CAPACITY},read-zeroes=on`,
        '--export', `type=vhost-user-blk,id=e,node-name=n,addr.type=unix,addr.path=${sock},writable=on,num-queues=2`];
  }
}

interface GenSpec {
  point: PointDef;
  mode: Mode;
  runtimeS: number;
  rampS: number;
  seed: number;
}

function generatorArgs(b: BackendId, socket: string, g: GenSpec): string[] {
  const p = g.point;
  const a = ['--socket', socket, '--proto', BACKENDS[b].proto];
  if (BACKENDS[b].proto === 'scsi') a.push('--lun', '0');
  a.push('--rw', p.rw, '--bs', bsArg(p.bs), '--iodepth', String(p.iodepth), '--queues', String(p.queues),
    '--runtime', String(g.runtimeS), '--ramp', String(g.rampS), '--mode', g.mode, '--event-idx', 'on',
    '--vq-size', String(vqSizeFor(p)), '--seed', String(g.seed), '--json', '--quiet');
  return a;
}

interface Snap {
  t: number;
  sys: SystemCpu;
  backend: number | null;
  gen: number | null;
}

function tail(s: string, lines: number): string {
  return s.trim().split('\n').slice(-lines).join(' | ');
}

/**
 * One generator run against one backend. CPU is sampled at two instants strictly inside the
 * generator's measured window: ramp + margin after the spawn (the margin covers the connection
 * set-up, a few ms) and ramp + runtime after it.
 */
async function measure(env: Env, bp: BackendProcess, g: GenSpec, placement: 'split' | 'same', run: number, slot: number): Promise<Sample> {
  const cpus = PLACEMENT_CPUS[placement];
  const base = {
    run, slot, backend: bp.id, command: [] as string[], exitCode: null as number | null, exitSignal: null as string | null,
    timedOut: false, wallS: 0, cpuUsPerIo: null as number | null, generatorCpuUsPerIo: null as number | null, disturbed: false,
    backendAffinity: [] as string[],
  };
  try {
    base.backendAffinity = bp.pin(cpus.backend);
  } catch (e) {
    return { ...base, ok: false, failure: `pinning: ${(e as Error).message}` };
  }
  const args = generatorArgs(bp.id, env.sockets[bp.id]!, g);
  const margin = Math.min(0.25, g.runtimeS * 0.2);
  let genPid = -1;
  const take = (): Snap => {
    bp.collect(); // GC lines printed up to now belong before this instant
    return { t: performance.now(), sys: systemCpu(), backend: bp.cpuTicks(), gen: genPid > 0 ? processCpuTicks(genPid) : null };
  };
  bp.collect();
  const tPre = performance.now();
  const r = await runGenerator(env.loadgen, args, cpus.generator, {
    timeoutMs: (g.rampS + g.runtimeS + GENERATOR_GRACE_S) * 1000,
    marks: [{ atMs: (g.rampS + margin) * 1000, take }, { atMs: (g.rampS + g.runtimeS) * 1000, take }],
    abort: abortCtl.signal,
    onSpawn: (pid) => { genPid = pid; },
  });
  bp.collect();
  const tPost = performance.now();
  const s: Sample = {
    ...base, ok: false, command: r.argv, exitCode: r.code, exitSignal: r.signal, timedOut: r.timedOut, wallS: r.wallMs / 1000,
  };
  const parsed = parseGenOutput(r.stdout);
  let result: GenResult | undefined;
  if ('result' in parsed) {
    result = parsed.result;
    s.result = result;
  }
  const why: string[] = [];
  if (r.timedOut) why.push(`no exit after ${g.rampS + g.runtimeS + GENERATOR_GRACE_S} s (killed)`);
  else if (r.signal !== null) why.push(`generator killed by ${r.signal}`);
  else if (r.code !== 0) why.push(`generator exit status ${r.code}`);
  if ('error' in parsed) why.push(parsed.error);
  if (result !== undefined) {
    if (result.errors !== 0) why.push(`errors=${result.errors}`);
    if (typeof result.verify_errors === 'number' && result.verify_errors !== 0) why.push(`verify_errors=${result.verify_errors}`);
    if (!(result.ios > 0)) why.push('no I/O completed');
  }
  if (!bp.alive) why.push(`${bp.id} ${bp.describeExit()}`);
  // The window is recorded for failed runs too: a starved backend shows up in otherPct.
  const [a, b] = r.marks;
  const hz = clkTck();
  if (a !== undefined && b !== undefined && a.backend !== null && b.backend !== null) {
    const seconds = (b.t - a.t) / 1000;
    const backendCpuUs = ((b.backend - a.backend) / hz) * 1e6;
    const generatorCpuUs = a.gen !== null && b.gen !== null ? ((b.gen - a.gen) / hz) * 1e6 : null;
    const busyUs = ((b.sys.busy - a.sys.busy) / hz) * 1e6;
    const otherPct = generatorCpuUs === null ? null : Math.max(0, ((busyUs - backendCpuUs - generatorCpuUs) / (seconds * 1e6)) * 100);
    const stealPct = (((b.sys.steal - a.sys.steal) / hz) / seconds) * 100;
    const ios = (result?.iops ?? 0) * seconds;
    s.window = {
      seconds: Math.round(seconds * 1e4) / 1e4,
      backendCpuUs: Math.round(backendCpuUs), generatorCpuUs: generatorCpuUs === null ? null : Math.round(generatorCpuUs),
      otherPct: otherPct === null ? null : Math.round(otherPct * 10) / 10, stealPct: Math.round(stealPct * 10) / 10, ios: Math.round(ios),
    };
    if (ios > 0 && why.length === 0) {
      s.cpuUsPerIo = backendCpuUs / ios;
      if (generatorCpuUs !== null) s.generatorCpuUsPerIo = generatorCpuUs / ios;
    }
    s.disturbed = (otherPct ?? 0) > DISTURBED_OTHER_PCT || stealPct > DISTURBED_STEAL_PCT;
    if (BACKENDS[bp.id].ours) {
      const gc = bp.gcBetween(a.t, b.t);
      s.gc = { ...gc, per100kScavenges: ios > 0 ? (gc.scavenge / ios) * 1e5 : null };
    }
  }
  if (why.length > 0) {
    s.failure = why.join('; ') + (s.disturbed ? ` (disturbed: other ${s.window?.otherPct} %, steal ${s.window?.stealPct} % of a vCPU)` : '');
    if (r.stderr.trim() !== '') s.generatorStderr = tail(r.stderr, 8);
  } else {
    s.ok = true;
  }
  if (BACKENDS[bp.id].ours) s.gcLifetime = bp.gcBetween(tPre, tPost);
  return s;
}

/**
 * Writes the whole RAM store once (1 MiB sequential writes), so its reads copy real data rather
 * than take the path for never-written chunks. Repeats with a longer runtime if one pass fell short.
 */
async function prefillRam(env: Env, bp: BackendProcess, genCpu: number): Promise<{ runtimeS: number; bytes: number; ok: boolean; note?: string }> {
  const point: PointDef = { id: 'prefill', title: 'prefill', rw: 'write', bs: 1024 * 1024, iodepth: 8, queues: 1 };
  let runtimeS = 3;
  for (let attempt = 0; attempt < 3 && abortReason === null; attempt++) {
    const args = generatorArgs(bp.id, env.sockets[bp.id]!, { point, mode: 'irq', runtimeS, rampS: 0, seed: 1000 });
    const r = await runGenerator(env.loadgen, args, genCpu, { timeoutMs: (runtimeS + GENERATOR_GRACE_S) * 1000, marks: [], abort: abortCtl.signal });
    const p = parseGenOutput(r.stdout);
    if (r.code !== 0 || !('result' in p) || p.result.errors !== 0) {
      return { runtimeS, bytes: 0, ok: false, note: `prefill failed: exit ${r.code ?? r.signal}; ${'error' in p ? p.error : `errors=${p.result.errors}`}; ${tail(r.stderr, 4)}` };
    }
    if (p.result.bytes >= CAPACITY) return { runtimeS, bytes: p.result.bytes, ok: true };
    runtimeS = Math.min(60, Math.ceil(runtimeS * (CAPACITY / Math.max(p.result.bytes, 1)) * 1.3));
  }
  return { runtimeS, bytes: 0, ok: false, note: 'prefill did not cover the whole store' };
}

async function warmup(env: Env, bp: BackendProcess, genCpu: number): Promise<string | null> {
  const point = pointById('rr4k-qd32')!;
  const args = generatorArgs(bp.id, env.sockets[bp.id]!, { point, mode: 'irq', runtimeS: env.opts.warmupS, rampS: 0, seed: 1001 });
  const r = await runGenerator(env.loadgen, args, genCpu, { timeoutMs: (env.opts.warmupS + GENERATOR_GRACE_S) * 1000, marks: [], abort: abortCtl.signal });
  const p = parseGenOutput(r.stdout);
  if (r.code === 0 && 'result' in p && p.result.errors === 0 && p.result.ios > 0) return null;
  return `exit ${r.code ?? r.signal}; ${'error' in p ? p.error : `errors=${p.result.errors}, ios=${p.result.ios}`}; ${tail(r.stderr, 4)}`;
}

/** Busy and steal time of the whole machine over `ms`, in % of one vCPU. */
async function idleCheck(ms: number): Promise<{ busyPct: number; stealPct: number }> {
  const a = systemCpu();
  const t = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const b = systemCpu();
  const s = (performance.now() - t) / 1000;
  const pct = (ticks: number): number => Math.round(((ticks / clkTck()) / s) * 1000) / 10;
  return { busyPct: pct(b.busy - a.busy), stealPct: pct(b.steal - a.steal) };
}

function caseLine(c: CaseResult): string {
  const parts: string[] = [];
  const s = summarizeCase(c);
  for (const b of s.backends) {
    const r = s.ratios.find((x) => x.peer === b.backend);
    const iops = b.iops === null ? 'failed' : `${fmtCount(b.iops.median)} [${fmtCount(b.iops.min)}–${fmtCount(b.iops.max)}]`;
    const lat = c.point.iodepth === 1 && b.p50 !== null ? ` p50 ${b.p50.median.toFixed(1)} µs` : '';
    parts.push(`${b.backend} ${iops}${lat}${r !== undefined && r.iops !== null ? ` (ours ${fmtRatio(r.iops)})` : ''}`);
  }
  return `${c.point.id} ${c.placement} ${c.mode}${c.group === 'ram' ? ' ram' : ''}: ${parts.join(', ')}`;
}

async function main(): Promise<number> {
  const startedAt = new Date().toISOString();
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2), {
      outDir: path.join(REPO, 'bench', 'results'),
      loadgen: path.join(REPO, 'build', 'Release', 'vhost_loadgen'),
    });
  } catch (e) {
    if (e instanceof UsageError) {
      warn(e.message);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const notes: string[] = [];

  // Prerequisites, each with the one thing to do about it.
  const loadgen = path.resolve(opts.loadgen);
  if (!existsSync(loadgen)) {
    warn(`the load generator ${loadgen} does not exist: run \`npm install\` (node-gyp builds build/Release/vhost_loadgen from bench/loadgen/)`);
    return 1;
  }
  try {
    accessSync(loadgen, loadgen.endsWith('.js') ? constants.R_OK : constants.X_OK);
  } catch {
    warn(`the load generator ${loadgen} is not executable`);
    return 1;
  }
  if (!existsSync(CLI)) {
    warn(`${CLI} does not exist: compile first (npx tsc -p . ; npm run bench does it)`);
    return 1;
  }
  if (opts.backends.some((b) => BACKENDS[b].ours) && !existsSync(path.join(REPO, 'build', 'Release', 'vhost_scsi_native.node'))) {
    warn('the native addon build/Release/vhost_scsi_native.node does not exist: run `npm install` (or npx node-gyp rebuild)');
    return 1;
  }
  if (which('taskset') === null) {
    warn('taskset (util-linux) is not installed; placement cannot be pinned');
    return 1;
  }
  const qsd = which('qemu-storage-daemon');
  if (qsd === null && opts.backends.some((b) => QSD_BACKENDS.includes(b))) {
    const n = 'qemu-storage-daemon is not installed: the qsd columns are skipped (apt-get install qemu-system-x86 or qemu-utils from bookworm-backports provides it)';
    warn(n);
    notes.push(n);
    opts.backends = opts.backends.filter((b) => !QSD_BACKENDS.includes(b));
  }
  const machine: MachineFacts = machineFacts(REPO, loadgen, qsd);
  if (machine.nproc < 2 && opts.placements.includes('split')) {
    const n = `only ${machine.nproc} CPU: the split placement is skipped`;
    warn(n);
    notes.push(n);
    opts.placements = opts.placements.filter((p) => p !== 'split');
  }
  if (opts.runs < 5) notes.push(`${opts.runs} run(s) per point: fewer than the 5 the method asks for; read the medians as indicative`);
  if (opts.backendArgs.length > 0) notes.push(`our backends ran with extra arguments: ${commandLine(opts.backendArgs)}`);
  if (loadgen.endsWith('.js')) notes.push(`the load generator was ${loadgen} (a test fake): the numbers are not measurements`);

  const plan: Case[] = buildPlan(opts);
  if (plan.length === 0) {
    warn('nothing to run with these --points/--backends/--placements/--modes');
    return 2;
  }
  const needed = BACKEND_IDS.filter((b) => plan.some((c) => c.backends.includes(b)));
  const genRuns = plan.reduce((s, c) => s + c.backends.length * opts.runs, 0);
  const perRun = opts.rampS + opts.runtimeS + 0.2;
  const estimateS = genRuns * perRun + needed.length * (2 + opts.warmupS) + (needed.includes('ours-ram') ? 4 : 0);
  say(`bench: ${plan.length} cases, ${genRuns} generator runs of ${opts.rampS}+${opts.runtimeS} s on ${needed.join(', ')}; about ${Math.ceil(estimateS / 60)} min`);

  // Others share this box: say so up front if it is already busy (runs are also judged one by one).
  const loadBefore = await idleCheck(1000);
  if (loadBefore.busyPct > DISTURBED_OTHER_PCT) {
    const n = `the machine was busy before the run: ${loadBefore.busyPct.toFixed(0)} % of a vCPU in use, steal ${loadBefore.stealPct.toFixed(0)} %`;
    warn(n);
    notes.push(n);
  }

  // Scratch space: sockets in a private directory, the image on tmpfs.
  const outDir = path.resolve(opts.outDir);
  const rawDir = path.join(outDir, 'raw', `matrix-${opts.label}`);
  // Scratch on tmpfs: sockets, the image, the backends' live logs (no disk writeback during runs).
  const work = mkdtempSync('/dev/shm/vst-bench-');
  scratch = work;
  const env: Env = { opts, loadgen, qsd, work, rawDir, image: null, sockets: {}, commands: {} };
  const procs = new Map<BackendId, BackendProcess>();
  const results: CaseResult[] = [];
  const failures: string[] = [];
  const setup: Record<string, unknown> = { loadBefore };
  let exitCode = 0;
  try {
    rmSync(rawDir, { recursive: true, force: true });
    mkdirSync(rawDir, { recursive: true });
    if (needed.some((b) => BACKENDS[b].group === 'file')) {
      const st = statfsSync('/dev/shm');
      const free = st.bavail * st.bsize;
      if (free < CAPACITY * 1.25) throw new Error(`/dev/shm has ${Math.floor(free / 2 ** 20)} MiB free; the image needs ${CAPACITY / 2 ** 20} MiB`);
      env.image = path.join(work, 'disk.img');
      const t = performance.now();
      writeImage(env.image, CAPACITY);
      setup.image = { path: env.image, size: CAPACITY, content: 'random, fully written', writeMs: Math.round(performance.now() - t), sharedBy: needed.filter((b) => BACKENDS[b].group === 'file') };
    }
    for (const b of needed) env.sockets[b] = path.join(work, `${b}.sock`);

    // Start every backend once, pinned to the backend vCPU from its first instruction.
    for (const b of needed) {
      if (abortReason !== null) break;
      const argv = backendArgv(b, env);
      env.commands[b] = argv;
      const bp = BackendProcess.start({ id: b, argv, socket: env.sockets[b]!, gcTrace: BACKENDS[b].ours, logPath: path.join(work, `${b}.log`) }, 0);
      live.add(bp);
      procs.set(b, bp);
      await bp.waitReady(SOCKET_TIMEOUT_MS);
      bp.pin(0);
      say(`bench: ${b} ready (pid ${bp.pid}, ${threadCount(bp.pid)} threads): ${commandLine(argv)}`);
    }

    // Prefill and warm up, unrecorded, generator on the split vCPU (or 0 on a 1-CPU machine).
    const genCpu = machine.nproc >= 2 ? 1 : 0;
    const warm: Record<string, unknown> = {};
    for (const b of needed) {
      if (abortReason !== null) break;
      const bp = procs.get(b)!;
      if (b === 'ours-ram') {
        const p = await prefillRam(env, bp, genCpu);
        setup.ramPrefill = p;
        if (!p.ok) throw new Error(`ours-ram: ${p.note}`);
      }
      if (opts.warmupS > 0) {
        const err = await warmup(env, bp, genCpu);
        warm[b] = err ?? 'ok';
        if (err !== null && abortReason === null) {
          if (!bp.alive) throw new Error(`${b} ${bp.describeExit()} during its warm-up:\n${bp.outputTail()}`);
          const n = `${b}: the warm-up failed (${err}); its runs are skipped`;
          warn(n);
          notes.push(n);
          failures.push(n);
          for (let i = 0; i < plan.length; i++) plan[i] = { ...plan[i], backends: plan[i].backends.filter((x) => x !== b) };
        }
      }
    }
    setup.warmup = { seconds: opts.warmupS, point: 'rr4k-qd32 irq, generator on the split vCPU', result: warm };

    // The matrix: per case, N runs; per run, every backend once, in an order rotated per run.
    // A backend whose runs fail MAX_CONSECUTIVE_FAILURES times in a row (alive but not answering,
    // each failure costing up to the generator's 10 s timeout) is dropped from the rest of the run.
    const consecutive = new Map<BackendId, number>();
    const dropped = new Set<BackendId>();
    let done = 0;
    const total = plan.filter((c) => c.backends.length > 0).length;
    for (const planned of plan) {
      if (abortReason !== null) break;
      const c = { ...planned, backends: planned.backends.filter((b) => !dropped.has(b)) };
      if (c.backends.length === 0) continue;
      const cr: CaseResult = {
        key: c.key, group: c.group, point: c.point, placement: c.placement, mode: c.mode, vqSize: vqSizeFor(c.point),
        backendCpu: PLACEMENT_CPUS[c.placement].backend, generatorCpu: PLACEMENT_CPUS[c.placement].generator,
        backends: [...c.backends], samples: [],
      };
      results.push(cr);
      for (let run = 1; run <= opts.runs && abortReason === null; run++) {
        const order = rotate(c.backends, run - 1);
        for (let slot = 0; slot < order.length && abortReason === null; slot++) {
          if (dropped.has(order[slot])) continue;
          if (!existsSync(loadgen)) {
            // Not the backend's fault; nothing can run. (npm install / node-gyp rebuild recreates build/Release.)
            requestAbort(`the load generator ${loadgen} disappeared during the run (being rebuilt?)`);
            break;
          }
          const bp = procs.get(order[slot])!;
          const s = await measure(env, bp, { point: c.point, mode: c.mode, runtimeS: opts.runtimeS, rampS: opts.rampS, seed: run }, c.placement, run, slot);
          if (abortReason !== null && !s.ok) break; // killed by the abort, not a result
          cr.samples.push(s);
          if (!s.ok) {
            const f = `${c.key} run ${run} ${bp.id}: ${s.failure}${s.generatorStderr !== undefined ? ` (generator: ${s.generatorStderr})` : ''}`;
            failures.push(f);
            warn(f);
            const n = (consecutive.get(bp.id) ?? 0) + 1;
            consecutive.set(bp.id, n);
            if (n >= MAX_CONSECUTIVE_FAILURES && bp.alive) {
              const d = `${bp.id}: ${n} failed runs in a row; its remaining runs are skipped`;
              warn(d);
              notes.push(d);
              dropped.add(bp.id);
            }
          } else {
            consecutive.set(bp.id, 0);
          }
          if (!bp.alive && !bp.stopping) {
            requestAbort(`${bp.id} ${bp.describeExit()} during ${c.key} run ${run}; last output: ${tail(bp.outputTail(), 10)}`);
          }
        }
      }
      done++;
      say(`[${done}/${total}] ${caseLine(cr)}`);
    }
  } catch (e) {
    const msg = (e as Error).message;
    warn(msg);
    if (abortReason === null) requestAbort(msg);
    exitCode = 1;
  } finally {
    const stops = [...procs.values()].map(async (bp) => {
      const wasAlive = bp.alive;
      const ex = await bp.stop();
      live.delete(bp);
      return { id: bp.id, pid: bp.pid, diedBeforeStop: !wasAlive, exit: ex };
    });
    setup.backendExits = await Promise.all(stops);
    for (const b of procs.keys()) {
      try {
        copyFileSync(path.join(work, `${b}.log`), path.join(rawDir, `${b}.log`));
      } catch {
        // no log: it never started
      }
    }
    rmSync(work, { recursive: true, force: true });
    scratch = null;
  }

  if (results.length === 0) {
    warn(abortReason !== null ? `stopped before any result: ${abortReason}` : 'no results');
    return exitCode !== 0 ? exitCode : 1;
  }

  // Every sample must come from one generator binary.
  const shaAfter = sha256(loadgen);
  if (shaAfter !== machine.loadgenSha256) {
    const n = `the load generator changed during the run (SHA-256 ${machine.loadgenSha256 ?? 'none'} at the start, ${shaAfter ?? 'none'} at the end): runs may not be comparable`;
    warn(n);
    notes.push(n);
  }

  // Conclusions and files.
  const summary = results.map(summarizeCase);
  const targets = evaluateTargets(summary);
  const ctx: ReportContext = {
    label: opts.label, command: invocation(), startedAt, runs: opts.runs, runtimeS: opts.runtimeS, rampS: opts.rampS,
    cpuProf: opts.cpuProf, aborted: abortReason, machine: machine as unknown as Record<string, unknown>,
    backendCommands: Object.fromEntries(Object.entries(env.commands).map(([k, v]) => [k, commandLine(v)])),
    notes, failures,
  };
  say('');
  say(printedReport(summary, targets, ctx));
  mkdirSync(outDir, { recursive: true });
  const files = { json: path.join(outDir, `${opts.label}.json`), md: path.join(outDir, `${opts.label}.md`), svg: path.join(outDir, `${opts.label}.svg`) };
  const json = {
    schema: 'vhost-scsi-ts/bench-matrix/1',
    label: opts.label,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: ctx.command,
    argv: process.argv,
    options: { ...opts, outDir, loadgen },
    diagnostic: opts.cpuProf,
    aborted: abortReason,
    machine,
    placements: Object.fromEntries((['split', 'same'] as const).map((p) => [p, { ...PLACEMENT_CPUS[p], legend: PLACEMENT_LEGEND[p] }])),
    backends: Object.fromEntries(needed.map((b) => [b, { ...BACKENDS[b], command: env.commands[b] ?? null, socket: env.sockets[b] }])),
    setup,
    targets,
    summary,
    queueScaling: queueScaling(summary),
    cases: results,
    notes,
    failures,
    disturbedThresholds: { otherPct: DISTURBED_OTHER_PCT, stealPct: DISTURBED_STEAL_PCT },
    // So a reader of the JSON can recompute every median.
    medianOf: 'ok samples only; even counts take the mean of the middle two',
  };
  writeFileSync(files.json, `${JSON.stringify(json, null, 1)}\n`);
  writeFileSync(files.md, markdownReport(summary, targets, ctx));
  const allSamples = results.flatMap((c) => c.samples);
  const disturbedN = allSamples.filter((x) => x.disturbed).length;
  const sub = `${machine.cpuModel}, ${machine.nproc} vCPUs; ${opts.runs} runs × ${opts.runtimeS} s; ${startedAt}`
    + `${disturbedN > 0 ? `; ${disturbedN} of ${allSamples.length} runs disturbed` : ''}${opts.cpuProf ? '; DIAGNOSTIC (--cpu-prof)' : ''}`;
  writeFileSync(files.svg, renderSvg(summary, `vhost-scsi-ts vs qemu-storage-daemon: median IOPS (${opts.label})`, sub));
  say('');
  say(`bench: wrote ${files.json}, ${files.md}, ${files.svg}${opts.cpuProf ? `; profiles under ${rawDir}` : ''} (backend logs: ${rawDir})`);
  const okSamples = results.reduce((s, c) => s + c.samples.filter((x) => x.ok).length, 0);
  say(`bench: ${okSamples} ok runs, ${failures.length} failed${abortReason !== null ? `; aborted: ${abortReason}` : ''}`);
  if (abortReason !== null) return signalCount > 0 ? 130 : 1;
  return failures.length > 0 || exitCode !== 0 ? 1 : 0;
}

main().then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  warn(`internal error: ${(e as Error).stack ?? String(e)}`);
  killAllNow();
  process.exitCode = 1;
});
