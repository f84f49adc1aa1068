// Host-exposure benchmark (issue 5, "Performance"): fio on a host disk served three ways, in
// one guest and one run, reported as ratios:
//   ours          vhost-scsi-ts serve --host-lun: TCMU user backstore behind tcm_loop, served
//                 by our process (backend/tcmu/*);
//   kernel-fileio LIO's in-kernel fileio backstore behind tcm_loop;
//   tcmu-runner   tcmu-runner's "file" handler (Debian's tcmu-runner package; the handler is
//                 built from the same Debian source, see bench/tcmu-runner-file-handler.sh).
//
// This machine's kernel has no configfs/LIO, so "the host" is a TCG guest whose root is this
// machine's root shared read-only over 9p (as tests/e2e/host-exposure.test.ts does): node and
// tcmu-runner run in chroots, the guest's own fio outside them. The three image files have the
// same size and are zero-filled the same way on the same tmpfs, each disk has its own tcm_loop
// SAS port, the backends run one after another (never concurrently), and every backend gets the
// same fio jobs. fio's JSON is written to a 9p share and parsed here. Speed targets live here,
// never in tests. bench/README.md explains the setup and what is kept equal.
//
// Usage: node dist/bench/host-exposure.js [--runtime S] [--ramp S] [--warmup S] [--rounds N]
//          [--size 256M] [--jobs rr4k,rw4k,sr1m,sw1m] [--backends ours,kernel-fileio,tcmu-runner]
//          [--smp N] [--mem MiB] [--out DIR]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { e2eAvailable, ensureGuest, GuestRun, repoRoot, startGuest } from '../tests/e2e/harness';
import { parseSize } from '../scsi-emul/size';
import { clkTck, DISTURBED_OTHER_PCT, DISTURBED_STEAL_PCT, isDisturbed, processCpuTimes, systemCpu } from './procfs';
import { median, medianOrNull } from './stats';

// ---------------------------------------------------------------------------------------------
// The fio jobs. libaio + direct=1 on the whole disk; time-based after a ramp whose numbers fio
// discards. Each backend also gets an unrecorded warm-up when it starts (--warmup).

interface JobDef { readonly rw: 'randread' | 'randwrite' | 'read' | 'write'; readonly bs: string; readonly iodepth: number; readonly title: string }

const JOBS: Readonly<Record<string, JobDef>> = {
  rr4k: { rw: 'randread', bs: '4k', iodepth: 32, title: '4 KiB random read, iodepth 32' },
  rw4k: { rw: 'randwrite', bs: '4k', iodepth: 32, title: '4 KiB random write, iodepth 32' },
  sr1m: { rw: 'read', bs: '1M', iodepth: 8, title: '1 MiB sequential read, iodepth 8' },
  sw1m: { rw: 'write', bs: '1M', iodepth: 8, title: '1 MiB sequential write, iodepth 8' },
};

function fioArgs(j: JobDef): string {
  return `--rw=${j.rw} --bs=${j.bs} --iodepth=${j.iodepth}`;
}

const BACKENDS = ['ours', 'kernel-fileio', 'tcmu-runner'] as const;
type Backend = typeof BACKENDS[number];

// tcm_loop WWNs and the nexus initiator of each: "naa." + an 8-byte NAA IEEE Registered
// designator (NAA 5h, SPC-4 §7.8.6.6) makes tcm_loop a SAS port; 001405h is the OUI LIO itself
// uses. Distinct per backend, so a leftover of one phase never shadows the next.
const PORTS: Readonly<Record<Backend, { wwn: string; initiator: string }>> = {
  ours: { wwn: 'naa.5001405bbe0c0001', initiator: 'naa.5001405bbe0c0101' },
  'kernel-fileio': { wwn: 'naa.5001405bbe0c0002', initiator: 'naa.5001405bbe0c0102' },
  'tcmu-runner': { wwn: 'naa.5001405bbe0c0003', initiator: 'naa.5001405bbe0c0103' },
};

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  runtimeS: number;
  rampS: number;
  warmupS: number;
  rounds: number;
  sizeBytes: number;
  sizeText: string;
  jobs: string[];
  backends: Backend[];
  smp: number;
  memoryMiB: number | null;
  outDir: string | null;
  cpuProf: boolean;
}

const USAGE = `usage: node dist/bench/host-exposure.js [options]

fio on a host disk (tcm_loop) backed by an image file on tmpfs, served by vhost-scsi-ts
(--host-lun), by the kernel's fileio backstore and by tcmu-runner's file handler, one after
another in one TCG guest. Prints a table and the ratios ours/kernel-fileio, ours/tcmu-runner.

  --runtime S        measured seconds per job (default 10)
  --ramp S           ramp seconds per job, discarded by fio (default 2)
  --warmup S         unrecorded 4 KiB random read/write after each backend starts (default 5)
  --rounds N         repeat the backends in turn N times; medians reported (default 1)
  --size SIZE        image size, a multiple of 1M (default 256M)
  --jobs LIST        of ${Object.keys(JOBS).join(',')} (default all)
  --backends LIST    of ${BACKENDS.join(',')} (default all)
  --smp N            guest vCPUs (default 2)
  --mem MIB          guest RAM in MiB (default max(2048, 1536 + size))
  --out DIR          results directory (default .cache/bench/host-exposure/<time>)
  --cpu-prof         run our backend under node --cpu-prof and save ours.<round>.cpuprofile
                     (diagnosis only: profiling slows it down)
`;

function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    runtimeS: 10, rampS: 2, warmupS: 5, rounds: 1, sizeBytes: 256 << 20, sizeText: '256M',
    jobs: Object.keys(JOBS), backends: [...BACKENDS], smp: 2, memoryMiB: null, outDir: null, cpuProf: false,
  };
  const list = <T extends string>(what: string, v: string, allowed: readonly T[]): T[] => {
    const items = v.split(',').filter((s) => s !== '');
    for (const s of items) if (!allowed.includes(s as T)) throw new Error(`${what}: unknown '${s}' (one of ${allowed.join(', ')})`);
    if (items.length === 0) throw new Error(`${what}: empty list`);
    return [...new Set(items)] as T[];
  };
  const int = (what: string, v: string, min: number, max: number): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`${what}: an integer ${min}..${max}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { process.stdout.write(USAGE); process.exit(0); }
    if (a === '--cpu-prof') { o.cpuProf = true; continue; }
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${a} needs a value (try --help)`);
    i++;
    switch (a) {
      case '--runtime': o.runtimeS = int(a, v, 1, 600); break;
      case '--ramp': o.rampS = int(a, v, 0, 60); break;
      case '--warmup': o.warmupS = int(a, v, 0, 120); break;
      case '--rounds': o.rounds = int(a, v, 1, 20); break;
      case '--size': {
        const n = parseSize(v);
        if (n < (16 << 20) || n % (1 << 20) !== 0) throw new Error('--size: a multiple of 1M, at least 16M');
        o.sizeBytes = n; o.sizeText = v;
        break;
      }
      case '--jobs': o.jobs = list(a, v, Object.keys(JOBS)); break;
      case '--backends': o.backends = list(a, v, BACKENDS); break;
      case '--smp': o.smp = int(a, v, 1, 8); break;
      case '--mem': o.memoryMiB = int(a, v, 512, 65536); break;
      case '--out': o.outDir = path.resolve(v); break;
      default: throw new Error(`unknown option ${a} (try --help)`);
    }
  }
  // Keep the phases in the documented order whatever order the list came in.
  o.backends = BACKENDS.filter((b) => o.backends.includes(b));
  o.jobs = Object.keys(JOBS).filter((j) => o.jobs.includes(j));
  return o;
}

// ---------------------------------------------------------------------------------------------
// The guest script: bench/host-exposure.guest.sh with its placeholders filled in.

const GUEST_SCRIPT_FILE = 'host-exposure.guest.sh';

function guestScript(o: Options, handlers: string | null, tcmurWhy: string): string {
  const sub: Record<string, string> = {
    __REPO__: repoRoot(),
    __SIZE__: String(o.sizeBytes),
    __SIZE_MIB__: String(o.sizeBytes / (1 << 20)),
    __TMPFS_MIB__: String(o.sizeBytes / (1 << 20) + 64),
    __RUNTIME__: String(o.runtimeS),
    __RAMP__: String(o.rampS),
    __WARMUP__: String(o.warmupS),
    __ROUNDS__: String(o.rounds),
    __JOBS__: o.jobs.join(' '),
    __BACKENDS__: o.backends.join(' '),
    __HANDLERS__: handlers ?? '',
    __CPU_PROF__: o.cpuProf ? '1' : '0',
    __TCMUR_WHY__: tcmurWhy.replace(/[^\w .,:;/()=+'-]/g, ' '),
    __JOB_VARS__: o.jobs.map((j) => `JOB_${j}="${fioArgs(JOBS[j]!)}"`).join('\n'),
    __OURS_WWN__: PORTS.ours.wwn, __OURS_INI__: PORTS.ours.initiator,
    __FILEIO_WWN__: PORTS['kernel-fileio'].wwn, __FILEIO_INI__: PORTS['kernel-fileio'].initiator,
    __TCMUR_WWN__: PORTS['tcmu-runner'].wwn, __TCMUR_INI__: PORTS['tcmu-runner'].initiator,
  };
  const template = fs.readFileSync(path.join(repoRoot(), 'bench', GUEST_SCRIPT_FILE), 'utf8');
  return template.replace(/__[A-Z_]+__/g, (k) => {
    const v = sub[k];
    if (v === undefined) throw new Error(`guest script: no value for ${k}`);
    return v;
  });
}

// ---------------------------------------------------------------------------------------------
// tcmu-runner's file handler

function prepareTcmuRunner(outDir: string): { handlers: string | null; why: string; version: string } {
  const script = path.join(repoRoot(), 'bench', 'tcmu-runner-file-handler.sh');
  const r = spawnSync('bash', [script, path.join(repoRoot(), '.cache', 'bench', 'tcmu-runner')], { encoding: 'utf8' });
  fs.writeFileSync(path.join(outDir, 'tcmu-runner-file-handler.log'), `${r.stdout ?? ''}${r.stderr ?? ''}`);
  const dir = /^HANDLER_DIR=(.+)$/m.exec(r.stdout ?? '')?.[1];
  const version = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'tcmu-runner'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  if (r.status !== 0 || dir === undefined) {
    const why = (r.stderr ?? '').trim().split('\n').filter((l) => l.startsWith('tcmu-runner-file-handler:')).pop()
      ?? `bench/tcmu-runner-file-handler.sh failed (status ${r.status})`;
    return { handlers: null, why, version };
  }
  return { handlers: dir, why: '', version };
}

// ---------------------------------------------------------------------------------------------
// Results

interface Sample {
  round: number;
  ok: boolean;
  iops: number;
  mibps: number;
  clatP50us: number;
  clatP99us: number;
  /** backend process CPU (all threads), % of one guest vCPU over the job including its
   * ramp, split into user and system time; null: the backend runs in the kernel */
  cpuUsrPct: number | null;
  cpuSysPct: number | null;
  /** host CPU used by other processes (not this QEMU, not this script) during the job, and
   * taken by the hypervisor (steal), each in % of one host CPU */
  hostOtherPct: number | null;
  hostStealPct: number | null;
  error?: string;
}

/** One backend and job: medians over the rounds that succeeded. */
interface Cell {
  backend: Backend;
  job: string;
  ok: boolean;
  iops: number;
  iopsMin: number;
  iopsMax: number;
  mibps: number;
  clatP50us: number;
  clatP99us: number;
  cpuUsrPct: number | null;
  cpuSysPct: number | null;
  hostOtherPct: number | null;
  hostStealPct: number | null;
  error?: string;
  samples: Sample[];
}

interface FioSide { iops: number; bw_bytes: number; clat_ns?: { percentile?: Record<string, number> } }

function parseFio(file: string, job: JobDef): { iops: number; mibps: number; p50: number; p99: number } {
  const text = fs.readFileSync(file, 'utf8');
  // fio may print notes ahead of the JSON object.
  const start = text.indexOf('{');
  if (start < 0) throw new Error(`${path.basename(file)}: no JSON`);
  const doc = JSON.parse(text.slice(start)) as { jobs?: { error?: number; read?: FioSide; write?: FioSide }[] };
  const j = doc.jobs?.[0];
  if (!j) throw new Error(`${path.basename(file)}: no jobs[0]`);
  if (j.error) throw new Error(`${path.basename(file)}: fio job error ${j.error}`);
  const side = job.rw === 'read' || job.rw === 'randread' ? j.read : j.write;
  if (!side) throw new Error(`${path.basename(file)}: no ${job.rw} section`);
  // fio's default percentile list includes 50 and 99 (keys printed with six decimals).
  const pct = side.clat_ns?.percentile ?? {};
  const p50 = pct['50.000000'];
  const p99 = pct['99.000000'];
  if (p50 === undefined || p99 === undefined) throw new Error(`${path.basename(file)}: no clat percentiles`);
  return { iops: side.iops, mibps: side.bw_bytes / 1048576, p50: p50 / 1000, p99: p99 / 1000 };
}

function collect(o: Options, outDir: string, script: string, host: ReadonlyMap<string, HostShare>): Cell[] {
  const cells: Cell[] = [];
  for (const b of o.backends) {
    for (const job of o.jobs) {
      const samples: Sample[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        const m = new RegExp(`^BENCH-JOB ${b} ${job} round=${round} status=(\\d+) usr_ticks=(-?\\d+) sys_ticks=(-?\\d+) wall_cs=(\\d+)$`, 'm').exec(script);
        const r: Sample = {
          round, ok: false, iops: 0, mibps: 0, clatP50us: 0, clatP99us: 0, cpuUsrPct: null, cpuSysPct: null,
          hostOtherPct: host.get(`${b} ${job} ${round}`)?.otherPct ?? null,
          hostStealPct: host.get(`${b} ${job} ${round}`)?.stealPct ?? null,
        };
        samples.push(r);
        if (!m) { r.error = 'not run'; continue; }
        try {
          if (m[1] !== '0') throw new Error(`fio exit status ${m[1]}`);
          const f = parseFio(path.join(outDir, `${b}.${job}.${round}.json`), JOBS[job]!);
          Object.assign(r, { ok: true, iops: f.iops, mibps: f.mibps, clatP50us: f.p50, clatP99us: f.p99 });
          // /proc/PID/stat counts USER_HZ ticks (100 per second on x86); the wall time is in
          // centiseconds, so their ratio is the share of one vCPU.
          const wall = Number(m[4]);
          if (b !== 'kernel-fileio' && wall > 0) {
            r.cpuUsrPct = (Number(m[2]) / wall) * 100;
            r.cpuSysPct = (Number(m[3]) / wall) * 100;
          }
        } catch (e) {
          r.error = (e as Error).message;
        }
      }
      const good = samples.filter((x) => x.ok);
      cells.push(good.length === 0
        ? {
          backend: b, job, ok: false, iops: 0, iopsMin: 0, iopsMax: 0, mibps: 0, clatP50us: 0, clatP99us: 0,
          cpuUsrPct: null, cpuSysPct: null, hostOtherPct: null, hostStealPct: null, error: samples[0]!.error, samples,
        }
        : {
          backend: b, job, ok: true,
          iops: median(good.map((x) => x.iops)),
          iopsMin: Math.min(...good.map((x) => x.iops)),
          iopsMax: Math.max(...good.map((x) => x.iops)),
          mibps: median(good.map((x) => x.mibps)),
          clatP50us: median(good.map((x) => x.clatP50us)),
          clatP99us: median(good.map((x) => x.clatP99us)),
          cpuUsrPct: medianOrNull(good.map((x) => x.cpuUsrPct)),
          cpuSysPct: medianOrNull(good.map((x) => x.cpuSysPct)),
          hostOtherPct: medianOrNull(good.map((x) => x.hostOtherPct)),
          hostStealPct: medianOrNull(good.map((x) => x.hostStealPct)),
          ...(good.length < samples.length ? { error: `${samples.length - good.length} of ${samples.length} rounds failed` } : {}),
          samples,
        });
    }
  }
  return cells;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtLat = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(us >= 100_000 ? 0 : 1)} ms` : `${us.toFixed(0)} µs`);
const fmtRatio = (a: number, b: number): string => (a > 0 && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  return rows.map((r) => r.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ').trimEnd()).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Disturbance: CPU time the host spends on anything but this QEMU and this script, and time the
// hypervisor takes from this (virtual) machine. The lead's test suite may run QEMU guests on the
// same two cores; this makes that visible per job.

/** USER_HZ: the unit of /proc/stat and /proc/PID/stat times. */
const USER_HZ = clkTck();

interface HostSample {
  at: number;
  /** ticks of busy host CPU not charged to QEMU or this process */
  otherTicks: number;
  stealTicks: number;
  /** false once QEMU is gone: its ticks can no longer be subtracted, so such a sample must not close an interval */
  alive: boolean;
}

interface HostShare { otherPct: number; stealPct: number }

class HostCpu {
  constructor(private readonly qemuPid: number) {}

  sample(): HostSample {
    const host = systemCpu();
    const qemu = processCpuTimes(`/proc/${this.qemuPid}/stat`);
    const self = process.cpuUsage();
    const selfTicks = ((self.user + self.system) / 1e6) * USER_HZ;
    return {
      at: Date.now(),
      otherTicks: host.busy - (qemu === null ? 0 : qemu.usr + qemu.sys) - selfTicks,
      stealTicks: host.steal,
      alive: qemu !== null,
    };
  }
}

/** Shares of one host CPU between two samples, in %. Per-process times and /proc/stat ticks are
 * sampled differently, so a small negative "other" is noise and reads as 0. */
function hostShare(a: HostSample, b: HostSample): HostShare {
  const s = (b.at - a.at) / 1000;
  if (s <= 0) return { otherPct: 0, stealPct: 0 };
  return {
    otherPct: Math.max(0, ((b.otherTicks - a.otherTicks) / USER_HZ / s) * 100),
    stealPct: Math.max(0, ((b.stealTicks - a.stealTicks) / USER_HZ / s) * 100),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`host-exposure: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const avail = e2eAvailable();
  if (!avail.ok) throw new Error(`cannot boot guests here: ${avail.reason}`);
  const root = repoRoot();
  if (!fs.existsSync(path.join(root, 'dist', 'backend', 'cli.js'))) throw new Error('dist/backend/cli.js missing: run npx tsc -p . first');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = o.outDir ?? path.join(root, '.cache', 'bench', 'host-exposure', stamp);
  // QEMU's -fsdev path= is comma-separated option syntax.
  if (outDir.includes(',')) throw new Error(`--out ${outDir}: no commas (QEMU option syntax)`);
  fs.mkdirSync(outDir, { recursive: true });
  const command = `node ${path.relative(root, process.argv[1]!) || process.argv[1]} ${process.argv.slice(2).join(' ')}`.trim();

  let tcmur = { handlers: null as string | null, why: 'not requested (--backends)', version: '' };
  if (o.backends.includes('tcmu-runner')) {
    process.stderr.write('host-exposure: preparing tcmu-runner and its file handler (bench/tcmu-runner-file-handler.sh)\n');
    tcmur = prepareTcmuRunner(outDir);
    if (tcmur.handlers === null) process.stderr.write(`host-exposure: tcmu-runner column skipped: ${tcmur.why}\n`);
  }

  const qemuBin = process.env.QEMU ?? 'qemu-system-x86_64';
  const qemuVersion = /version (\S+)/.exec(spawnSync(qemuBin, ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown';
  const sizeMiB = o.sizeBytes / (1 << 20);
  const memoryMiB = o.memoryMiB ?? Math.max(2048, 1536 + sizeMiB);
  // Generous: TCG boots in ~20 s, node starts in the guest in ~10 s, zero-filling runs at
  // ~50 MiB/s; a job takes its ramp + runtime plus fio's own start-up.
  const perJobS = o.runtimeS + o.rampS + 15;
  const perPhaseS = 90 + sizeMiB / 16 + o.warmupS + o.jobs.length * perJobS;
  const timeoutMs = (240 + o.rounds * o.backends.length * perPhaseS) * 1000;
  const load0 = os.loadavg();
  let loadMax = load0[0]!;

  await ensureGuest();
  process.stderr.write(`host-exposure: booting the guest (${o.smp} vCPUs, ${memoryMiB} MiB), results in ${outDir}\n`);
  const g = startGuest({
    lio: true,
    shares: [{ dir: '/', tag: 'hostroot', readonly: true }, { dir: outDir, tag: 'out' }],
    memoryMiB,
    smp: o.smp,
    timeoutMs,
    script: guestScript(o, tcmur.handlers, tcmur.why),
  });
  // Progress: echo the guest's marker lines as they arrive, and charge the host CPU that other
  // work used since the previous marker to the job a BENCH-JOB line closes.
  const hostCpu = new HostCpu(g.process.pid ?? -1);
  const runStart = hostCpu.sample();
  let mark = runStart;
  let lastAlive = runStart;
  const hostShares = new Map<string, HostShare>();
  let shown = 0;
  const progress = setInterval(() => {
    loadMax = Math.max(loadMax, os.loadavg()[0]!);
    const tick = hostCpu.sample();
    if (tick.alive) lastAlive = tick;
    const out = g.output();
    const nl = out.lastIndexOf('\n');
    if (nl < shown) return;
    for (const line of out.slice(shown, nl).split('\n')) {
      if (!line.startsWith('BENCH-')) continue;
      const job = /^BENCH-JOB (\S+) (\S+) round=(\d+) /.exec(line);
      if (tick.alive) {
        if (job) hostShares.set(`${job[1]} ${job[2]} ${job[3]}`, hostShare(mark, tick));
        mark = tick;
      }
      if (/^BENCH-(PHASE|JOB|SKIP|STOP|WARN)/.test(line)) process.stderr.write(`  ${line}\n`);
    }
    shown = nl + 1;
  }, 500);
  let run: GuestRun;
  try {
    run = await g.wait(timeoutMs);
  } finally {
    clearInterval(progress);
    fs.writeFileSync(path.join(outDir, 'console.log'), g.output());
  }
  const load1 = os.loadavg();
  const runShare = hostShare(runStart, lastAlive);
  const script = run.scriptOutput;
  if (run.scriptStatus === null || !script.includes('BENCH-END')) {
    throw new Error(`the guest did not finish the benchmark (QEMU exit ${run.exitCode}); console in ${path.join(outDir, 'console.log')}\n${script.slice(-3000)}`);
  }

  const info = Object.fromEntries([...(/^BENCH-INFO (.*)$/m.exec(script)?.[1] ?? '').matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  const devs = new Map<string, string>();
  for (const m of script.matchAll(/^BENCH-DEV (\S+) (.*)$/gm)) devs.set(m[1]!, m[2]!);
  const confs = new Map<string, string>();
  for (const m of script.matchAll(/^BENCH-CONF (\S+) (.*)$/gm)) confs.set(m[1]!, m[2]!.replace(/\s+/g, ' ').trim());
  const skips = new Map<string, string>();
  for (const m of script.matchAll(/^BENCH-SKIP (\S+) (.*)$/gm)) skips.set(m[1]!, m[2]!);
  const warnings = [...script.matchAll(/^BENCH-WARN (.*)$/gm)].map((m) => m[1]!);
  const results = collect(o, outDir, script, hostShares);
  const accel = /-accel (\S+)/.exec(run.commandLine)?.[1] ?? 'unknown';

  const lines: string[] = [];
  const p = (s = ''): void => { lines.push(s); };
  p(`vhost-scsi-ts host exposure: fio on a tcm_loop disk, ${o.backends.length} backends in turn, one guest, one run` +
    (o.rounds > 1 ? ` of ${o.rounds} rounds (medians; IOPS range over the rounds)` : ''));
  p(`QEMU ${qemuVersion}, accel ${accel}, ${o.smp} vCPUs, ${memoryMiB} MiB; guest kernel ${info.kernel ?? '?'}; ${info.fio ?? 'fio ?'}; node ${info.node ?? '?'}` +
    `${o.backends.includes('tcmu-runner') ? `; tcmu-runner ${tcmur.version || '?'} (Debian) + its file handler built from the same source` : ''}`);
  const allSamples = results.flatMap((r) => r.samples.filter((x) => x.ok));
  const nDisturbed = allSamples.filter(isDisturbed).length;
  p(`host: ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}; during the run other processes used ${runShare.otherPct.toFixed(0)} % ` +
    `of one host CPU, the hypervisor took ${runShare.stealPct.toFixed(0)} % (steal); 1-min load average ${load0[0]!.toFixed(2)} at start, ` +
    `${loadMax.toFixed(2)} at most`);
  p(nDisturbed === 0 ? 'disturbance: none (no job lost more than the thresholds below)'
    : `disturbance: ${nDisturbed} of ${allSamples.length} job runs lost CPU (other > ${DISTURBED_OTHER_PCT} % or steal > ${DISTURBED_STEAL_PCT} %): ` +
      'their numbers are low by an unknown amount; re-run when the machine (and the one hosting it) is quiet');
  if (o.cpuProf) p('ours ran under node --cpu-prof (ours.<round>.cpuprofile in the results): its numbers are NOT comparable');
  p(`images: ${sizeMiB} MiB each, zero-filled, on one tmpfs in the guest, one backend at a time, each disk behind its own tcm_loop SAS port`);
  p(`jobs: fio libaio direct=1 on the whole disk, ${o.runtimeS} s measured after a ${o.rampS} s ramp, ` +
    `after ${o.warmupS} s of unrecorded 4 KiB random read/write per backend start;`);
  p(`  ${o.jobs.map((j) => `${j} = ${JOBS[j]!.title}`).join('; ')}`);
  p('caching: all three are buffered (page cache of the tmpfs file; tmpfs on this 6.1 guest has no O_DIRECT) with the write cache');
  p('  enabled (WCE=1): ours write-cache=on (default), kernel-fileio fd_buffered_io=1 (no O_DSYNC), tcmu-runner file handler (WCE=1).');
  p('  TCMU attributes are the kernel\'s defaults for both TCMU backends. max_sectors_kb below is what the host derived from');
  p('  each backend\'s Block Limits VPD page: larger I/Os are split by the host before they reach the backend.');
  p('  backend CPU = the backend process\'s utime+stime (user+sys) in the guest over the job, ramp included, in % of one');
  p('  vCPU. other/steal = host CPU used by other processes than this QEMU / taken by the hypervisor during the job,');
  p(`  in % of one host CPU; a job run with other > ${DISTURBED_OTHER_PCT} % or steal > ${DISTURBED_STEAL_PCT} % is marked disturbed.`);
  p();
  for (const b of o.backends) {
    const d = devs.get(b);
    p(`${b.padEnd(13)} ${d ?? `not measured: ${skips.get(b) ?? 'see console.log'}`}`);
    const c = confs.get(b);
    if (c) p(`${''.padEnd(13)} ${c}`);
  }
  p();
  const multi = o.rounds > 1;
  const rows: string[][] = [['job', 'backend', 'IOPS', ...(multi ? ['IOPS range'] : []), 'MiB/s', 'clat p50', 'clat p99', 'backend CPU (user+sys)', 'other/steal', 'note']];
  const note = (r: Cell): string => {
    const good = r.samples.filter((x) => x.ok);
    const d = good.filter(isDisturbed).length;
    const parts = [d === 0 ? '' : good.length === 1 ? 'disturbed' : `${d} of ${good.length} rounds disturbed`, r.error ?? ''];
    return parts.filter((x) => x !== '').join('; ');
  };
  const cpuText = (r: Cell): string => (r.cpuUsrPct === null || r.cpuSysPct === null ? 'in kernel'
    : `${(r.cpuUsrPct + r.cpuSysPct).toFixed(0)} % (${r.cpuUsrPct.toFixed(0)}+${r.cpuSysPct.toFixed(0)})`);
  const otherText = (r: Cell): string => (r.hostOtherPct === null || r.hostStealPct === null ? '?'
    : `${r.hostOtherPct.toFixed(0)}/${r.hostStealPct.toFixed(0)} %`);
  for (const job of o.jobs) {
    for (const b of o.backends) {
      const r = results.find((x) => x.backend === b && x.job === job)!;
      const range = multi ? [r.ok ? `${fmtInt(r.iopsMin)}–${fmtInt(r.iopsMax)}` : '-'] : [];
      rows.push(r.ok
        ? [job, b, fmtInt(r.iops), ...range, r.mibps.toFixed(1), fmtLat(r.clatP50us), fmtLat(r.clatP99us),
          cpuText(r), otherText(r), note(r)]
        : [job, b, '-', ...range, '-', '-', '-', '', '', r.error ?? '']);
    }
  }
  p(table(rows));
  p();
  for (const w of warnings) p(`warning: ${w}`);
  if (warnings.length > 0) p();
  const others = o.backends.filter((b) => b !== 'ours');
  if (o.backends.includes('ours') && others.length > 0) {
    p('ratios, ours / other: throughput above 1 = ours faster; latency below 1 = ours lower');
    const rr: string[][] = [['job', '', ...others.flatMap((b) => [`IOPS vs ${b}`, `p50 vs ${b}`, `p99 vs ${b}`])]];
    for (const job of o.jobs) {
      const ours = results.find((x) => x.backend === 'ours' && x.job === job)!;
      const cells = others.flatMap((b) => {
        const x = results.find((y) => y.backend === b && y.job === job)!;
        if (!ours.ok || !x.ok) return ['n/a', 'n/a', 'n/a'];
        return [fmtRatio(ours.iops, x.iops), fmtRatio(ours.clatP50us, x.clatP50us), fmtRatio(ours.clatP99us, x.clatP99us)];
      });
      rr.push([job, '', ...cells]);
    }
    p(table(rr));
    p();
  }
  p(`command: ${command}`);
  p(`QEMU: ${run.commandLine}`);
  p(`results: ${outDir} (fio JSON per backend and job, summary.json, console.log)`);
  const report = lines.join('\n');
  process.stdout.write(`${report}\n`);

  fs.writeFileSync(path.join(outDir, 'summary.json'), `${JSON.stringify({
    command, qemuVersion, accel, smp: o.smp, memoryMiB, guest: info, tcmuRunner: tcmur.version || null,
    hostCpu: os.cpus()[0]?.model ?? null, loadAverage: { start: load0, max1min: loadMax, end: load1 }, hostCpuShares: runShare, disturbedJobRuns: nDisturbed,
    thresholds: { otherPct: DISTURBED_OTHER_PCT, stealPct: DISTURBED_STEAL_PCT },
    options: { runtimeS: o.runtimeS, rampS: o.rampS, warmupS: o.warmupS, rounds: o.rounds, cpuProf: o.cpuProf, sizeBytes: o.sizeBytes, jobs: o.jobs.map((j) => ({ name: j, ...JOBS[j]! })), backends: o.backends },
    devices: Object.fromEntries(devs), configuration: Object.fromEntries(confs), skipped: Object.fromEntries(skips), warnings,
    results, qemuCommandLine: run.commandLine, bootSeconds: run.bootSeconds, durationMs: run.durationMs,
  }, null, 2)}\n`);
  fs.writeFileSync(path.join(outDir, 'report.txt'), `${report}\n`);
  if (results.some((r) => r.backend === 'ours' && !r.ok)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`host-exposure: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
