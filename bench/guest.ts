// fio in a TCG guest against three backends (issue 6, "Performance"), interleaved in one run
// and reported as ratios:
//   ours       vhost-scsi-ts (dist/backend/cli.js serve) on a vhost-user-scsi-pci device;
//   qemu-scsi  QEMU's built-in virtio-scsi-pci with a scsi-hd (-blockdev driver=file, QEMU's
//              defaults: aio=threads, page cache);
//   qsd-blk    qemu-storage-daemon's vhost-user-blk export on a vhost-user-blk-pci device
//              (aio=native,cache.direct=on, its best-tuned file configuration on tmpfs per
//              /work/shared/notes/performance.md; --qsd-aio threads for its defaults).
//
// One guest boot carries all three disks, so every backend sees the same guest kernel, fio and
// vCPUs, and the runs interleave without reboots: per point, each round runs fio once on each
// disk, the order rotating by one per round. Under TCG the guest itself is the bottleneck
// (≈200 µs per I/O at QD1), so this shows "no regression against QEMU's own device"; the
// direct load generator (npm run bench) is what ranks backends. The backends run on this
// machine, next to QEMU; their CPU time is read from /proc/PID/stat when the guest's console
// says a run begins and ends. bench/README.md explains the setup and what is kept equal.
//
// Usage: node dist/bench/guest.js [--rounds N] [--runtime S] [--ramp S] [--warmup S]
//          [--points rr4k1,...] [--size 1G] [--smp N] [--mem MiB] [--queues N]
//          [--qsd-aio native|threads] [--qemu-iothread] [--backend-args '...']
//          [--label NAME] [--out DIR]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { e2eAvailable, ensureGuest, GuestRun, repoRoot, RunningGuest, startGuest } from '../tests/e2e/harness';
import { parseSize } from '../scsi-emul/size';
import { clkTck, DISTURBED_OTHER_PCT, DISTURBED_STEAL_PCT, isDisturbed, parseStatTimes, processCpuTimes, systemCpu } from './procfs';
import { median, medianOrNull } from './stats';

/** /proc/stat and /proc/PID/stat count USER_HZ ticks. */
const USER_HZ = clkTck();

// ---------------------------------------------------------------------------------------------
// Points: fio libaio, direct=1, on the whole disk, time-based after a ramp fio discards.

interface PointDef { readonly rw: 'randread' | 'randwrite' | 'read'; readonly bs: string; readonly iodepth: number; readonly title: string }

const POINTS: Readonly<Record<string, PointDef>> = {
  rr4k1: { rw: 'randread', bs: '4k', iodepth: 1, title: '4 KiB random read, QD1' },
  rw4k1: { rw: 'randwrite', bs: '4k', iodepth: 1, title: '4 KiB random write, QD1' },
  rr4k32: { rw: 'randread', bs: '4k', iodepth: 32, title: '4 KiB random read, QD32' },
  rw4k32: { rw: 'randwrite', bs: '4k', iodepth: 32, title: '4 KiB random write, QD32' },
  sr128k16: { rw: 'read', bs: '128k', iodepth: 16, title: '128 KiB sequential read, QD16' },
};

const BACKENDS = ['ours', 'qemu-scsi', 'qsd-blk'] as const;
type Backend = typeof BACKENDS[number];

// INQUIRY product identification of the two SCSI disks (SPC-4 §6.6.1: 16 ASCII bytes), which
// is how the guest script tells them apart. No blanks: sysfs pads the field with them.
const OURS_PRODUCT = 'BENCH-OURS';
const QEMU_PRODUCT = 'BENCH-QEMU';

// Every virtqueue gets the same size. QEMU's defaults differ per device (virtio-scsi-pci 256,
// vhost-user-scsi-pci and vhost-user-blk-pci 128); 256 is what performance.md's harness rules use.
const VQ_SIZE = 256;

// ---------------------------------------------------------------------------------------------
// Options

type QsdAio = 'native' | 'threads';

interface Options {
  rounds: number;
  runtimeS: number;
  rampS: number;
  warmupS: number;
  points: string[];
  sizeBytes: number;
  smp: number;
  memoryMiB: number;
  queues: number;
  qsdAio: QsdAio;
  qemuIothread: boolean;
  backendArgs: string[];
  label: string;
  outDir: string;
}

const USAGE = `usage: node dist/bench/guest.js [options]     (npm run bench:guest -- [options])

fio inside one TCG guest against three disks, one per backend: vhost-scsi-ts (vhost-user-scsi),
QEMU's built-in virtio-scsi (scsi-hd) and qemu-storage-daemon (vhost-user-blk), each on its own
raw image on /dev/shm. Runs are interleaved (each round runs a point once on every disk, the
order rotating per round); medians are reported with ratios ours/qemu-scsi and ours/qsd-blk.

  --rounds N           interleaved rounds per point (default 3)
  --runtime S          measured seconds per fio run (default 8)
  --ramp S             ramp seconds per fio run, discarded by fio (default 2)
  --warmup S           unrecorded 4 KiB random read/write on each disk before the first point
                       (default 3; 0 = none)
  --points LIST        of ${Object.keys(POINTS).join(',')} (default all)
  --size SIZE          image size, a multiple of 1M (default 1G)
  --smp N              guest vCPUs (default 2)
  --mem MIB            guest RAM in MiB (default 1024)
  --queues N           request queues of every device and backend (default 1)
  --qsd-aio MODE       native: aio=native,cache.direct=on (default, qsd's best on tmpfs);
                       threads: qsd's defaults (aio=threads, page cache)
  --qemu-iothread      give QEMU's virtio-scsi an IOThread (default: its main loop)
  --backend-args ARGS  extra arguments for our backend (split on blanks), to A/B its options
  --label NAME         result file stem: <out>/guest-NAME.{json,md} (default latest)
  --out DIR            results directory (default bench/results); fio's JSON and the console
                       go to DIR/raw/guest-NAME/
`;

function parseArgs(argv: readonly string[]): Options {
  const root = repoRoot();
  const o: Options = {
    rounds: 3, runtimeS: 8, rampS: 2, warmupS: 3, points: Object.keys(POINTS), sizeBytes: 1 << 30,
    smp: 2, memoryMiB: 1024, queues: 1, qsdAio: 'native', qemuIothread: false, backendArgs: [],
    label: 'latest', outDir: path.join(root, 'bench', 'results'),
  };
  const int = (what: string, v: string, min: number, max: number): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new Error(`${what} '${v}': an integer ${min}..${max}`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') { process.stdout.write(USAGE); process.exit(0); }
    if (a === '--qemu-iothread') { o.qemuIothread = true; continue; }
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${a} needs a value (try --help)`);
    i++;
    switch (a) {
      case '--rounds': o.rounds = int(a, v, 1, 20); break;
      case '--runtime': o.runtimeS = int(a, v, 1, 600); break;
      case '--ramp': o.rampS = int(a, v, 0, 60); break;
      case '--warmup': o.warmupS = int(a, v, 0, 120); break;
      case '--points': {
        const items = v.split(',').filter((s) => s !== '');
        for (const s of items) if (!(s in POINTS)) throw new Error(`--points: unknown '${s}' (one of ${Object.keys(POINTS).join(', ')})`);
        if (items.length === 0) throw new Error('--points: empty list');
        // Documented order, whatever order the list came in.
        o.points = Object.keys(POINTS).filter((p) => items.includes(p));
        break;
      }
      case '--size': {
        const n = parseSize(v);
        if (n < (16 << 20) || n % (1 << 20) !== 0) throw new Error(`--size '${v}': a multiple of 1M, at least 16M`);
        o.sizeBytes = n;
        break;
      }
      case '--smp': o.smp = int(a, v, 1, 8); break;
      case '--mem': o.memoryMiB = int(a, v, 512, 16384); break;
      case '--queues': o.queues = int(a, v, 1, 8); break;
      case '--qsd-aio':
        if (v !== 'native' && v !== 'threads') throw new Error(`--qsd-aio '${v}': native or threads`);
        o.qsdAio = v;
        break;
      case '--backend-args': o.backendArgs = v.split(/\s+/).filter((s) => s !== ''); break;
      case '--label':
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v)) throw new Error(`--label '${v}': letters, digits, '.', '_', '-' (at most 64)`);
        o.label = v;
        break;
      case '--out': o.outDir = path.resolve(v); break;
      default: throw new Error(`unknown option ${a} (try --help)`);
    }
  }
  // QEMU's -fsdev path= (the raw results share) is comma-separated option syntax.
  if (o.outDir.includes(',')) throw new Error(`--out ${o.outDir}: no commas (QEMU option syntax)`);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Time estimate. Measured on the 2-vCPU box: the guest boots in ≈10 s under TCG (20 s allowed),
// writing an image takes ≈2 s per GiB, and fio's start-up plus the copy of its JSON over 9p add
// ≈1 s per run (1.5 s allowed).

const BOOT_S = 20;
const IMAGE_S_PER_GIB = 2;
const PER_RUN_OVERHEAD_S = 1.5;

function estimateS(o: Options): number {
  const runs = o.points.length * o.rounds * BACKENDS.length;
  const warm = o.warmupS > 0 ? BACKENDS.length * (o.warmupS + PER_RUN_OVERHEAD_S) : 0;
  return BOOT_S + (IMAGE_S_PER_GIB * 3 * o.sizeBytes) / (1 << 30) + warm + runs * (o.rampS + o.runtimeS + PER_RUN_OVERHEAD_S);
}

const fmtDuration = (s: number): string => (s >= 90 ? `${Math.floor(s / 60)} min ${String(Math.round(s % 60)).padStart(2, '0')} s` : `${Math.round(s)} s`);

// ---------------------------------------------------------------------------------------------
// Host-side CPU accounting. /proc/stat and /proc/PID/stat count USER_HZ ticks.

/** Ticks of QEMU's TCG vCPU threads ("CPU n/TCG" with -name debug-threads=on). */
function vcpuTicks(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let sum = 0;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        if (!/^CPU \d+\/TCG$/.test(fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim())) continue;
        const t = parseStatTimes(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
        sum += t.usr + t.sys;
      } catch { /* a thread that just exited */ }
    }
  } catch {
    return null;
  }
  return sum;
}

interface HostSample {
  atMs: number;
  /** busy ticks of the whole machine (user nice system irq softirq; guest time is inside user) */
  busy: number;
  steal: number;
  qemu: { usr: number; sys: number } | null;
  qemuVcpu: number | null;
  ours: { usr: number; sys: number } | null;
  qsd: { usr: number; sys: number } | null;
  /** this script's own CPU, in ticks */
  self: number;
}

function hostSample(pids: { qemu?: number; ours?: number; qsd?: number }): HostSample {
  const host = systemCpu();
  const self = process.cpuUsage();
  return {
    atMs: performance.now(),
    busy: host.busy,
    steal: host.steal,
    qemu: pids.qemu === undefined ? null : processCpuTimes(`/proc/${pids.qemu}/stat`),
    qemuVcpu: vcpuTicks(pids.qemu),
    ours: pids.ours === undefined ? null : processCpuTimes(`/proc/${pids.ours}/stat`),
    qsd: pids.qsd === undefined ? null : processCpuTimes(`/proc/${pids.qsd}/stat`),
    self: ((self.user + self.system) / 1e6) * USER_HZ,
  };
}

interface HostDelta {
  wallS: number;
  /** % of one host CPU */
  oursUsrPct: number | null;
  oursSysPct: number | null;
  qsdUsrPct: number | null;
  qsdSysPct: number | null;
  /** QEMU's threads other than the vCPUs (main loop, IOThread, thread-pool workers), and the vCPUs */
  qemuNonVcpuPct: number | null;
  qemuVcpuPct: number | null;
  /** ticks of the backend under test (for CPU per I/O) */
  oursTicks: number | null;
  qsdTicks: number | null;
  /** host CPU used by anything but QEMU, the two backends and this script; and steal */
  otherPct: number | null;
  stealPct: number;
}

function hostDelta(a: HostSample, b: HostSample): HostDelta {
  const s = (b.atMs - a.atMs) / 1000;
  const pct = (ticks: number): number => (s > 0 ? (ticks / USER_HZ / s) * 100 : 0);
  const d = (x: { usr: number; sys: number } | null, y: { usr: number; sys: number } | null): { usr: number; sys: number } | null =>
    (x && y ? { usr: y.usr - x.usr, sys: y.sys - x.sys } : null);
  const ours = d(a.ours, b.ours);
  const qsd = d(a.qsd, b.qsd);
  const qemu = d(a.qemu, b.qemu);
  const vcpu = a.qemuVcpu !== null && b.qemuVcpu !== null ? b.qemuVcpu - a.qemuVcpu : null;
  // Per-process times and /proc/stat are sampled differently, so a small negative "other" is
  // noise and reads as 0. Without QEMU's or a backend's times it cannot be computed at all.
  const other = qemu && ours && qsd
    ? Math.max(0, pct((b.busy - a.busy) - (qemu.usr + qemu.sys) - (ours.usr + ours.sys) - (qsd.usr + qsd.sys) - (b.self - a.self)))
    : null;
  return {
    wallS: s,
    oursUsrPct: ours ? pct(ours.usr) : null,
    oursSysPct: ours ? pct(ours.sys) : null,
    qsdUsrPct: qsd ? pct(qsd.usr) : null,
    qsdSysPct: qsd ? pct(qsd.sys) : null,
    qemuNonVcpuPct: qemu && vcpu !== null ? Math.max(0, pct(qemu.usr + qemu.sys - vcpu)) : null,
    qemuVcpuPct: vcpu !== null ? pct(vcpu) : null,
    oursTicks: ours ? ours.usr + ours.sys : null,
    qsdTicks: qsd ? qsd.usr + qsd.sys : null,
    otherPct: other,
    stealPct: Math.max(0, pct(b.steal - a.steal)),
  };
}

// ---------------------------------------------------------------------------------------------
// Backend processes on this machine

interface Proc {
  name: string;
  child: ChildProcess;
  commandLine: string;
  log: string;
  /** resolves with the exit code (or the signal name) */
  exited: Promise<number | string>;
  done: boolean;
}

const procs: Proc[] = [];

function startProc(name: string, cmd: string, args: string[], logFile: string): Proc {
  const fd = fs.openSync(logFile, 'w');
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const p: Proc = {
    name, child, log: logFile, done: false,
    commandLine: [cmd, ...args].map((w) => (/^[\w./,:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' '),
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => { p.done = true; resolve(code ?? signal ?? 'unknown'); });
      child.once('error', (e) => { p.done = true; fs.appendFileSync(logFile, `spawn failed: ${e.message}\n`); resolve('spawn-error'); });
    }),
  };
  procs.push(p);
  return p;
}

/** Waits until `socket` exists; rejects when the process exits first or after timeoutMs. */
async function waitSocket(p: Proc, socket: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(socket)) {
    if (p.done) throw new Error(`${p.name} exited before listening on ${socket}:\n${tailFile(p.log, 2000)}`);
    if (Date.now() > deadline) throw new Error(`${p.name} did not create ${socket} within ${timeoutMs / 1000} s:\n${tailFile(p.log, 2000)}`);
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves with the exit code or signal. */
async function stopProc(p: Proc, graceMs: number): Promise<number | string> {
  if (!p.done) p.child.kill('SIGTERM');
  const killer = setTimeout(() => { if (!p.done) p.child.kill('SIGKILL'); }, graceMs);
  const r = await p.exited;
  clearTimeout(killer);
  return r;
}

function tailFile(file: string, n: number): string {
  try {
    const s = fs.readFileSync(file, 'utf8');
    return s.length <= n ? s : `[...]${s.slice(-n)}`;
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Images: three identical raw files on the host's tmpfs, every byte written (no holes), so no
// backend gets the shortcut of reading an unallocated page.

function makeImages(dir: string, size: number): string[] {
  const free = fs.statfsSync(dir);
  const need = 3 * size + (64 << 20);
  if (free.bavail * free.bsize < need) {
    throw new Error(`${dir}: ${Math.floor((free.bavail * free.bsize) / (1 << 20))} MiB free, the three images need ${Math.ceil(need / (1 << 20))} MiB`);
  }
  const chunk = Buffer.alloc(1 << 20);
  return BACKENDS.map((b) => {
    const file = path.join(dir, `${b}.img`);
    const fd = fs.openSync(file, 'wx', 0o600);
    try {
      for (let off = 0; off < size; off += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, off);
    } finally {
      fs.closeSync(fd);
    }
    return file;
  });
}

// ---------------------------------------------------------------------------------------------
// The guest script: bench/guest.guest.sh with its placeholders filled in.

function fioArgs(p: PointDef): string {
  return `--rw=${p.rw} --bs=${p.bs} --iodepth=${p.iodepth}`;
}

function guestScript(o: Options): string {
  const sub: Record<string, string> = {
    __SIZE__: String(o.sizeBytes),
    __RUNTIME__: String(o.runtimeS),
    __RAMP__: String(o.rampS),
    __WARMUP__: String(o.warmupS),
    __ROUNDS__: String(o.rounds),
    __POINTS__: o.points.join(' '),
    __BACKENDS__: BACKENDS.join(' '),
    __POINT_VARS__: o.points.map((p) => `POINT_${p}="${fioArgs(POINTS[p]!)}"`).join('\n'),
    __OURS_PRODUCT__: OURS_PRODUCT,
    __QEMU_PRODUCT__: QEMU_PRODUCT,
  };
  const template = fs.readFileSync(path.join(repoRoot(), 'bench', 'guest.guest.sh'), 'utf8');
  return template.replace(/__[A-Z_]+__/g, (k) => {
    const v = sub[k];
    if (v === undefined) throw new Error(`guest script: no value for ${k}`);
    return v;
  });
}

// ---------------------------------------------------------------------------------------------
// Results

interface FioResult { iops: number; mbps: number; p50us: number; p99us: number; deviceIos: number | null; fioUsrPct: number; fioSysPct: number }

interface FioSide { iops: number; bw_bytes: number; clat_ns?: { percentile?: Record<string, number> } }

function parseFio(file: string, p: PointDef): FioResult {
  const text = fs.readFileSync(file, 'utf8');
  // fio may print notes ahead of the JSON object.
  const start = text.indexOf('{');
  if (start < 0) throw new Error(`${path.basename(file)}: no JSON`);
  const doc = JSON.parse(text.slice(start)) as {
    jobs?: { error?: number; read?: FioSide; write?: FioSide; usr_cpu?: number; sys_cpu?: number }[];
    disk_util?: { read_ios?: number; write_ios?: number }[];
  };
  const j = doc.jobs?.[0];
  if (!j) throw new Error(`${path.basename(file)}: no jobs[0]`);
  if (j.error) throw new Error(`${path.basename(file)}: fio job error ${j.error}`);
  const side = p.rw === 'randwrite' ? j.write : j.read;
  if (!side) throw new Error(`${path.basename(file)}: no ${p.rw} section`);
  if (!(side.iops > 0)) throw new Error(`${path.basename(file)}: no I/O completed`);
  // fio's default percentile list includes 50 and 99 (keys printed with six decimals).
  const pct = side.clat_ns?.percentile ?? {};
  const p50 = pct['50.000000'];
  const p99 = pct['99.000000'];
  if (p50 === undefined || p99 === undefined) throw new Error(`${path.basename(file)}: no clat percentiles`);
  // disk_util: the device's own request counts (/sys/block/X/stat) over the whole job, ramp
  // included, i.e. over the same span as the host-side CPU sample.
  const du = doc.disk_util?.[0];
  const deviceIos = du && du.read_ios !== undefined && du.write_ios !== undefined ? du.read_ios + du.write_ios : null;
  return {
    iops: side.iops, mbps: side.bw_bytes / 1e6, p50us: p50 / 1000, p99us: p99 / 1000, deviceIos,
    fioUsrPct: j.usr_cpu ?? 0, fioSysPct: j.sys_cpu ?? 0,
  };
}

interface Sample {
  round: number;
  /** place in the round's order, 1-based */
  order: number;
  ok: boolean;
  status: number | null;
  iops: number;
  mbps: number;
  clatP50us: number;
  clatP99us: number;
  /** guest fio's own CPU (its JSON usr_cpu/sys_cpu), % of one guest vCPU */
  fioUsrPct: number | null;
  fioSysPct: number | null;
  deviceIos: number | null;
  wallS: number | null;
  /** the backend process, % of one host CPU over the run (ramp and fio start-up included);
   * null for qemu-scsi, which runs inside QEMU */
  backendUsrPct: number | null;
  backendSysPct: number | null;
  /** backend CPU time per request the guest's block layer sent (fio's disk_util) */
  backendUsPerIo: number | null;
  qemuNonVcpuPct: number | null;
  qemuVcpuPct: number | null;
  hostOtherPct: number | null;
  hostStealPct: number | null;
  error?: string;
}

interface Cell {
  point: string;
  backend: Backend;
  ok: boolean;
  iops: number;
  iopsMin: number;
  iopsMax: number;
  mbps: number;
  clatP50us: number;
  clatP99us: number;
  backendUsrPct: number | null;
  backendSysPct: number | null;
  backendUsPerIo: number | null;
  qemuNonVcpuPct: number | null;
  disturbedRuns: number;
  error?: string;
  samples: Sample[];
}

function makeSample(point: string, b: Backend, round: number, order: number, status: number | null, host: HostDelta | null, rawDir: string): Sample {
  const s: Sample = {
    round, order, ok: false, status, iops: 0, mbps: 0, clatP50us: 0, clatP99us: 0, fioUsrPct: null, fioSysPct: null,
    deviceIos: null, wallS: host?.wallS ?? null,
    backendUsrPct: b === 'ours' ? host?.oursUsrPct ?? null : b === 'qsd-blk' ? host?.qsdUsrPct ?? null : null,
    backendSysPct: b === 'ours' ? host?.oursSysPct ?? null : b === 'qsd-blk' ? host?.qsdSysPct ?? null : null,
    backendUsPerIo: null,
    qemuNonVcpuPct: host?.qemuNonVcpuPct ?? null, qemuVcpuPct: host?.qemuVcpuPct ?? null,
    hostOtherPct: host?.otherPct ?? null, hostStealPct: host?.stealPct ?? null,
  };
  try {
    if (status === null) throw new Error('not run');
    // The guest's timeout kills a stuck fio with SIGKILL, which bash reports as 128 + 9.
    if (status !== 0) throw new Error(status === 137 ? 'fio timed out' : `fio exit status ${status}`);
    const f = parseFio(path.join(rawDir, `${point}.${b}.${round}.json`), POINTS[point]!);
    Object.assign(s, { ok: true, iops: f.iops, mbps: f.mbps, clatP50us: f.p50us, clatP99us: f.p99us, deviceIos: f.deviceIos, fioUsrPct: f.fioUsrPct, fioSysPct: f.fioSysPct });
    const ticks = b === 'ours' ? host?.oursTicks : b === 'qsd-blk' ? host?.qsdTicks : null;
    if (ticks !== null && ticks !== undefined && f.deviceIos) s.backendUsPerIo = ((ticks / USER_HZ) * 1e6) / f.deviceIos;
  } catch (e) {
    s.error = (e as Error).message;
  }
  return s;
}

function makeCell(point: string, backend: Backend, samples: Sample[]): Cell {
  const good = samples.filter((x) => x.ok);
  const failed = samples.length - good.length;
  const base = { point, backend, samples, disturbedRuns: good.filter(isDisturbed).length };
  if (good.length === 0) {
    return {
      ...base, ok: false, iops: 0, iopsMin: 0, iopsMax: 0, mbps: 0, clatP50us: 0, clatP99us: 0,
      backendUsrPct: null, backendSysPct: null, backendUsPerIo: null, qemuNonVcpuPct: null,
      error: samples.find((x) => x.error)?.error ?? 'not run',
    };
  }
  return {
    ...base, ok: true,
    iops: median(good.map((x) => x.iops)),
    iopsMin: Math.min(...good.map((x) => x.iops)),
    iopsMax: Math.max(...good.map((x) => x.iops)),
    mbps: median(good.map((x) => x.mbps)),
    clatP50us: median(good.map((x) => x.clatP50us)),
    clatP99us: median(good.map((x) => x.clatP99us)),
    backendUsrPct: medianOrNull(good.map((x) => x.backendUsrPct)),
    backendSysPct: medianOrNull(good.map((x) => x.backendSysPct)),
    backendUsPerIo: medianOrNull(good.map((x) => x.backendUsPerIo)),
    qemuNonVcpuPct: medianOrNull(good.map((x) => x.qemuNonVcpuPct)),
    ...(failed > 0 ? { error: `${failed} of ${samples.length} runs failed (${samples.find((x) => x.error)?.error})` } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Report (markdown: printed as is, and written to guest-<label>.md)

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtLat = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(us >= 100_000 ? 0 : 1)} ms` : `${us.toFixed(0)} µs`);
const ratio = (a: number, b: number): number | null => (a > 0 && b > 0 ? a / b : null);
const fmtRatio = (r: number | null): string => (r === null ? 'n/a' : `${r.toFixed(2)}×`);

function mdTable(head: string[], rows: string[][], leftCols: number): string {
  const w = head.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...(r[i] ?? '')].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i < leftCols ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  const sep = `|${w.map((n, i) => (i < leftCols ? `${'-'.repeat(n + 2)}` : `${'-'.repeat(n + 1)}:`)).join('|')}|`;
  return [line(head), sep, ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Following the guest's console: a host CPU sample at each run's begin and end marker.

type Log = (s: string) => void;

class RunTracker {
  readonly first: HostSample;
  lastAlive: HostSample;
  readonly hostRuns = new Map<string, HostDelta>();
  readonly statuses = new Map<string, number>();
  /** each run's place in its round */
  readonly orders = new Map<string, number>();
  private readonly begins = new Map<string, HostSample>();
  private buf = '';
  private done = 0;
  private firstBeginMs = 0;
  private roundPlace = 0;
  private pending: { key: string; point: string; b: Backend; round: number } | null = null;

  constructor(
    private readonly pids: { qemu?: number; ours?: number; qsd?: number },
    private readonly nRuns: number,
    private readonly rawDir: string,
    private readonly log: Log,
  ) {
    this.first = hostSample(pids);
    this.lastAlive = this.first;
  }

  /** Console output as it arrives (\r\n line ends, as the serial console sends them). */
  feed(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (line.startsWith('BENCH-')) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let m: RegExpExecArray | null;
    if ((m = /^BENCH-RUN-BEGIN (\S+) (\S+) round=(\d+)$/.exec(line))) {
      // Sampled first: fio starts right after the guest printed the line.
      const s = hostSample(this.pids);
      if (this.firstBeginMs === 0) this.firstBeginMs = s.atMs;
      this.progress();
      const key = `${m[1]} ${m[2]} ${m[3]}`;
      this.begins.set(key, s);
      this.roundPlace = (this.roundPlace % BACKENDS.length) + 1;
      this.orders.set(key, this.roundPlace);
    } else if ((m = /^BENCH-RUN-END (\S+) (\S+) round=(\d+) status=(\d+)$/.exec(line))) {
      const s = hostSample(this.pids);
      if (s.qemu !== null) this.lastAlive = s;
      const key = `${m[1]} ${m[2]} ${m[3]}`;
      const b0 = this.begins.get(key);
      if (b0) this.hostRuns.set(key, hostDelta(b0, s));
      this.statuses.set(key, Number(m[4]));
      this.done++;
      // fio's JSON reaches the share after this line: the run is shown at the next marker.
      this.pending = { key, point: m[1]!, b: m[2] as Backend, round: Number(m[3]) };
    } else if (line === 'BENCH-END') {
      this.progress();
    } else if (/^BENCH-(FAIL|WARM|DEV|INFO)/.test(line)) {
      this.log(`  ${line}`);
    }
  }

  sample(point: string, b: Backend, round: number): Sample {
    const key = `${point} ${b} ${round}`;
    return makeSample(point, b, round, this.orders.get(key) ?? 0, this.statuses.get(key) ?? null, this.hostRuns.get(key) ?? null, this.rawDir);
  }

  /** Prints the last finished run with the time left. */
  progress(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    const s = this.sample(p.point, p.b, p.round);
    const left = ((performance.now() - this.firstBeginMs) / 1000 / this.done) * (this.nRuns - this.done);
    this.log(`[${this.done}/${this.nRuns}] ${p.point} round ${p.round} ${p.b.padEnd(9)} ` +
      `${s.ok ? `${fmtInt(s.iops).padStart(7)} IOPS  p50 ${fmtLat(s.clatP50us)}` : `failed: ${s.error}`}` +
      `${isDisturbed(s) ? '  (disturbed)' : ''}  ~${fmtDuration(left)} left`);
  }
}

// ---------------------------------------------------------------------------------------------
// Facts about this machine and run

interface Facts {
  command: string;
  started: string;
  gitCommit: string;
  qemuVersion: string;
  qsdVersion: string;
  nodeVersion: string;
  hostKernel: string;
  hostCpu: string;
  nproc: number;
}

function facts(root: string): Facts {
  const out = (cmd: string, args: string[]): string => spawnSync(cmd, args, { encoding: 'utf8', cwd: root }).stdout?.trim() ?? '';
  const head = out('git', ['rev-parse', '--short=12', 'HEAD']);
  const dirty = out('git', ['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    command: `node ${path.relative(root, process.argv[1]!) || process.argv[1]} ${process.argv.slice(2).join(' ')}`.trim(),
    started: new Date().toISOString(),
    gitCommit: head === '' ? 'unknown' : `${head}${dirty ? ' (with uncommitted changes)' : ''}`,
    qemuVersion: /version (\S+)/.exec(out(process.env.QEMU ?? 'qemu-system-x86_64', ['--version']))?.[1] ?? 'unknown',
    qsdVersion: /version (\S+)/.exec(out('qemu-storage-daemon', ['--version']))?.[1] ?? 'unknown',
    nodeVersion: process.version,
    hostKernel: os.release(),
    hostCpu: os.cpus()[0]?.model ?? 'unknown',
    nproc: os.cpus().length,
  };
}

// ---------------------------------------------------------------------------------------------
// Medians, ratios and the report

interface Ratios {
  point: string;
  iopsVsQemuScsi: number | null;
  p50VsQemuScsi: number | null;
  p99VsQemuScsi: number | null;
  iopsVsQsdBlk: number | null;
  p50VsQsdBlk: number | null;
  p99VsQsdBlk: number | null;
  /** issue 6: fio in a TCG guest ≥ 1.0× QEMU's built-in virtio-scsi on every point (medians) */
  targetMet: boolean | null;
}

function pointRatios(point: string, cell: (p: string, b: Backend) => Cell): Ratios {
  const a = cell(point, 'ours');
  const q = cell(point, 'qemu-scsi');
  const k = cell(point, 'qsd-blk');
  const vs = (x: Cell, f: (c: Cell) => number): number | null => (a.ok && x.ok ? ratio(f(a), f(x)) : null);
  const iopsVsQemuScsi = vs(q, (c) => c.iops);
  return {
    point,
    iopsVsQemuScsi,
    p50VsQemuScsi: vs(q, (c) => c.clatP50us),
    p99VsQemuScsi: vs(q, (c) => c.clatP99us),
    iopsVsQsdBlk: vs(k, (c) => c.iops),
    p50VsQsdBlk: vs(k, (c) => c.clatP50us),
    p99VsQsdBlk: vs(k, (c) => c.clatP99us),
    targetMet: iopsVsQemuScsi === null ? null : iopsVsQemuScsi >= 1.0,
  };
}

interface ReportInput {
  o: Options;
  f: Facts;
  accel: string;
  info: Record<string, string>;
  devs: Map<string, string>;
  cells: Cell[];
  ratios: Ratios[];
  runShare: HostDelta;
  commandLines: { ours: string; qsd: string; qemuBlockdev: string; qemu: string };
  warmFailed: string[];
  exits: { ours: number | string; qsd: number | string };
  rawDir: string;
}

function renderReport(r: ReportInput): string {
  const { o, f, info } = r;
  const cell = (p: string, b: Backend): Cell => r.cells.find((c) => c.point === p && c.backend === b)!;
  const allRuns = r.cells.flatMap((c) => c.samples.filter((s) => s.ok));
  const nDisturbed = allRuns.filter(isDisturbed).length;
  const nMet = r.ratios.filter((x) => x.targetMet === true).length;
  const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`;
  const L: string[] = [];
  const p = (s = ''): void => { L.push(s); };

  p(`# fio in a TCG guest: vhost-scsi-ts vs QEMU virtio-scsi vs qemu-storage-daemon vhost-user-blk (${o.label})`);
  p();
  p(`${f.started}, commit ${f.gitCommit}. QEMU ${f.qemuVersion} (accel ${r.accel}), guest: ${o.smp} vCPUs, ${o.memoryMiB} MiB, ` +
    `kernel ${info.kernel ?? '?'}, ${info.fio ?? 'fio ?'}; host: ${f.hostCpu} × ${f.nproc}, Linux ${f.hostKernel}, node ${f.nodeVersion}, ` +
    `qemu-storage-daemon ${f.qsdVersion}.`);
  p();
  p(`**Target (issue 6): ours ≥ 1.0× qemu-scsi IOPS on every point: ${nMet === r.ratios.length ? 'met' : 'not met'}** ` +
    `(${nMet} of ${r.ratios.length} points). Under TCG the guest is the bottleneck and single runs vary by ±10–30 %: this shows ` +
    '"no regression against QEMU\'s own device", not a ranking (the direct load generator, `npm run bench`, ranks backends).');
  p();
  const whole = `Whole run: other ${r.runShare.otherPct?.toFixed(0) ?? '?'} %, steal ${r.runShare.stealPct.toFixed(0)} % of a host CPU.`;
  p(nDisturbed === 0
    ? `Disturbance: none (no run lost more than ${DISTURBED_OTHER_PCT} % of a host CPU to other processes or ${DISTURBED_STEAL_PCT} % to steal). ${whole}`
    : `Disturbance: **${nDisturbed} of ${allRuns.length} runs disturbed** (other > ${DISTURBED_OTHER_PCT} % or steal > ${DISTURBED_STEAL_PCT} % of a host CPU): ` +
      `their numbers are low by an unknown amount; re-run when the machine is quiet. ${whole}`);
  p();

  p(`## Results: medians of ${plural(o.rounds, 'interleaved round')}`);
  p();
  const multi = o.rounds > 1;
  const head = ['point', 'backend', 'IOPS', ...(multi ? ['IOPS min–max'] : []), 'MB/s', 'clat p50', 'clat p99',
    'backend CPU % (usr+sys)', 'CPU µs/IO', 'QEMU non-vCPU %', 'note'];
  const rows: string[][] = [];
  for (const pt of o.points) {
    for (const b of BACKENDS) {
      const c = cell(pt, b);
      if (!c.ok) {
        rows.push([pt, b, '-', ...(multi ? ['-'] : []), '-', '-', '-', '-', '-', '-', c.error ?? 'failed']);
        continue;
      }
      const note = [c.disturbedRuns > 0 ? `${c.disturbedRuns} of ${c.samples.filter((s) => s.ok).length} runs disturbed` : '', c.error ?? '']
        .filter((x) => x !== '').join('; ');
      const cpu = b === 'qemu-scsi' ? 'in QEMU'
        : c.backendUsrPct === null || c.backendSysPct === null ? '?'
          : `${(c.backendUsrPct + c.backendSysPct).toFixed(0)} (${c.backendUsrPct.toFixed(0)}+${c.backendSysPct.toFixed(0)})`;
      rows.push([pt, b, fmtInt(c.iops), ...(multi ? [`${fmtInt(c.iopsMin)}–${fmtInt(c.iopsMax)}`] : []), c.mbps.toFixed(1),
        fmtLat(c.clatP50us), fmtLat(c.clatP99us), cpu, b === 'qemu-scsi' ? '-' : c.backendUsPerIo?.toFixed(1) ?? '?',
        c.qemuNonVcpuPct?.toFixed(0) ?? '?', note]);
    }
  }
  p(mdTable(head, rows, 2));
  p();

  p('## Ratios, ours / peer (medians)');
  p();
  p('IOPS above 1 = ours faster; latency below 1 = ours lower.');
  p();
  p(mdTable(['point', 'IOPS vs qemu-scsi', 'p50', 'p99', 'IOPS vs qsd-blk', 'p50', 'p99', 'target ≥ 1.0× qemu-scsi'],
    r.ratios.map((x) => [x.point, fmtRatio(x.iopsVsQemuScsi), fmtRatio(x.p50VsQemuScsi), fmtRatio(x.p99VsQemuScsi),
      fmtRatio(x.iopsVsQsdBlk), fmtRatio(x.p50VsQsdBlk), fmtRatio(x.p99VsQsdBlk),
      x.targetMet === null ? 'n/a' : x.targetMet ? 'met' : 'not met']), 1));
  p();

  p('## Setup');
  p();
  p(`- Points: fio in the guest, \`--ioengine=libaio --direct=1 --time_based --norandommap --randrepeat=0\` on the whole disk, ` +
    `${o.runtimeS} s measured after a ${o.rampS} s ramp: ${o.points.map((x) => `${x} = ${POINTS[x]!.title}`).join('; ')}.`);
  p(`- One guest boot, three disks. Per point, ${plural(o.rounds, 'round')}, each running the point once on every disk, ` +
    'the order rotating by one per round (round 1: ours, qemu-scsi, qsd-blk; round 2: qemu-scsi, qsd-blk, ours; ...). ' +
    (o.warmupS > 0 ? `Before the first point every disk got ${o.warmupS} s of unrecorded 4 KiB random read/write at QD32.` : 'No warm-up.'));
  p(`- Images: three raw files of ${o.sizeBytes / (1 << 20)} MiB on the host's /dev/shm (tmpfs), every byte written before the boot.`);
  p(`- Devices: ${plural(o.queues, 'request queue')} of ${VQ_SIZE} entries on each. In the guest every disk gets scheduler \`none\` and add_random 0.`);
  p(`  - ours: \`${r.commandLines.ours}\`; QEMU vhost-user-scsi-pci num_queues=${o.queues}, virtqueue_size=${VQ_SIZE}.`);
  p(`  - qemu-scsi: \`-blockdev ${r.commandLines.qemuBlockdev}\` (aio=threads, page cache, write-back: QEMU's defaults) under ` +
    `virtio-scsi-pci num_queues=${o.queues}, virtqueue_size=${VQ_SIZE}, ${o.qemuIothread ? 'in an IOThread' : 'in QEMU\'s main loop (no IOThread)'}, + scsi-hd.`);
  p(`  - qsd-blk: \`${r.commandLines.qsd}\` (${o.qsdAio === 'native' ? 'aio=native,cache.direct=on: its best on tmpfs' : 'its defaults: aio=threads, page cache'}); ` +
    `QEMU vhost-user-blk-pci num-queues=${o.queues}, queue-size=${VQ_SIZE}.`);
  p('- Disks as the guest sees them:');
  for (const b of BACKENDS) p(`  - ${b}: ${r.devs.get(b) ?? '?'}`);
  p('- CPU: `backend CPU %` is the backend process\'s utime+stime (all threads, /proc/PID/stat on this host) between the guest\'s ' +
    'run-begin and run-end console markers (fio start-up and ramp included), in % of one host CPU; `CPU µs/IO` divides that time by ' +
    'the requests the guest\'s block layer sent the disk over the same span (fio\'s disk_util). QEMU\'s built-in virtio-scsi runs inside ' +
    'the QEMU process and cannot be separated from it. `QEMU non-vCPU %` is what QEMU used outside its TCG vCPU threads (main loop, ' +
    'IOThread, thread-pool workers), for context: for qemu-scsi that includes the device emulation and its file I/O; for the two ' +
    'vhost-user devices it is mostly QEMU relaying the backend\'s completion interrupts (TCG has no irqfd).');
  p(`- Disturbance: \`other\` = host CPU used by anything but QEMU, the two backends and this script; \`steal\` = CPU the hypervisor took ` +
    `from this VM; a run with other > ${DISTURBED_OTHER_PCT} % or steal > ${DISTURBED_STEAL_PCT} % of a host CPU counts as disturbed.`);
  if (r.warmFailed.length > 0) p(`- Warning: the warm-up failed on ${r.warmFailed.join(', ')} (see console.log).`);
  p(`- On SIGTERM after the run our backend exited with ${r.exits.ours}, qemu-storage-daemon with ${r.exits.qsd}.`);
  p();
  p(`Command: \`${f.command}\``);
  p();
  p(`QEMU: \`${r.commandLines.qemu}\``);
  p();
  p(`Raw results: ${r.rawDir} (fio JSON per point, backend and round; console.log; the backends' logs).`);
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench:guest: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const root = repoRoot();
  const log: Log = (s) => { process.stderr.write(`bench:guest: ${s}\n`); };
  // Paths inside the checkout are shown relative to it, others as they are.
  const show = (file: string): string => {
    const rel = path.relative(root, file);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
  };

  // --- prerequisites, each with what to do about it ---
  const avail = e2eAvailable();
  if (!avail.ok) throw new Error(`cannot boot the test guest here: ${avail.reason}`);
  if (spawnSync('qemu-storage-daemon', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('qemu-storage-daemon not found (apt-get install -t bookworm-backports qemu-system-x86 qemu-utils)');
  }
  const cli = path.join(root, 'dist', 'backend', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${cli} missing: build first (npx tsc -p .)`);
  const f = facts(root);

  const rawDir = path.join(o.outDir, 'raw', `guest-${o.label}`);
  fs.rmSync(rawDir, { recursive: true, force: true });
  fs.mkdirSync(rawDir, { recursive: true });
  const nRuns = o.points.length * o.rounds * BACKENDS.length;
  const est = estimateS(o);
  log(`${o.points.length} points × ${o.rounds} rounds × ${BACKENDS.length} backends = ${nRuns} fio runs of ${o.rampS}+${o.runtimeS} s; ` +
    `estimated time ${fmtDuration(est)}`);

  // Building the guest image may take minutes the first time (it downloads Debian's kernel); it
  // is not part of the estimate.
  let buildTimer: NodeJS.Timeout | undefined;
  await Promise.race([
    ensureGuest(),
    new Promise<never>((_, reject) => {
      buildTimer = setTimeout(() => reject(new Error('qemu-scripts/build-guest.sh did not finish within 20 minutes')), 20 * 60_000);
    }),
  ]).catch((e: Error) => { throw new Error(`the guest image could not be built: ${e.message}`); })
    .finally(() => clearTimeout(buildTimer));

  // Everything started from here on is stopped on every way out: normal end, error, signal.
  const work = fs.mkdtempSync('/dev/shm/vst-guestbench-');
  let guest: RunningGuest | undefined;
  let cleaned = false;
  const cleanupSync = (): void => {
    if (cleaned) return;
    cleaned = true;
    guest?.kill('SIGKILL');
    for (const p of procs) if (!p.done) p.child.kill('SIGKILL');
    fs.rmSync(work, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping QEMU and the backends`);
    cleanupSync();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cleanupSync);

  try {
    // --- images and backends ---
    const t0 = performance.now();
    const [imgOurs, imgQemu, imgQsd] = makeImages(work, o.sizeBytes) as [string, string, string];
    log(`three ${o.sizeBytes / (1 << 20)} MiB images written in ${work} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    const oursSock = path.join(work, 'ours.sock');
    const qsdSock = path.join(work, 'qsd.sock');
    for (const a of [imgQemu, qsdSock]) if (a.includes(',')) throw new Error(`${a}: no commas (QEMU option syntax)`);
    const ours = startProc('ours', process.execPath, [
      cli, 'serve', '--socket', oursSock,
      '--lun', `0:file:path=${imgOurs},product=${OURS_PRODUCT}`,
      '--queues', String(o.queues), '--log-level', 'warn',
      // Reservation state stays in the scratch directory, not in /var/lib or /run.
      '--state-dir', path.join(work, 'state'), '--run-dir', path.join(work, 'run'),
      ...o.backendArgs,
    ], path.join(rawDir, 'ours.log'));
    const qsd = startProc('qsd-blk', 'qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=vstb-qsd,filename=${imgQsd}${o.qsdAio === 'native' ? ',aio=native,cache.direct=on' : ''}`,
      '--export', `type=vhost-user-blk,id=vstb-qsd-exp,node-name=vstb-qsd,addr.type=unix,addr.path=${qsdSock},writable=on,num-queues=${o.queues}`,
    ], path.join(rawDir, 'qsd.log'));
    await Promise.all([waitSocket(ours, oursSock, 30_000), waitSocket(qsd, qsdSock, 30_000)]);

    // --- the guest: our device through the harness; QEMU's own disk and the vhost-user-blk
    // device as raw arguments ---
    const qemuBlockdev = `driver=file,node-name=vstb-qemu,filename=${imgQemu},cache.direct=off`;
    const extraArgs = [
      // Names the threads ("CPU 0/TCG", "worker", "IO ..."), so the vCPUs' CPU time can be told apart.
      '-name', 'vst-guest,debug-threads=on',
      ...(o.qemuIothread ? ['-object', 'iothread,id=vstb-iot'] : []),
      '-device', `virtio-scsi-pci,id=vstb-scsi,num_queues=${o.queues},virtqueue_size=${VQ_SIZE}${o.qemuIothread ? ',iothread=vstb-iot' : ''}`,
      '-blockdev', qemuBlockdev,
      '-device', `scsi-hd,bus=vstb-scsi.0,channel=0,scsi-id=0,lun=0,drive=vstb-qemu,product=${QEMU_PRODUCT},serial=vstb-qemu`,
      '-chardev', `socket,id=vstb-qsd-chr,path=${qsdSock}`,
      '-device', `vhost-user-blk-pci,chardev=vstb-qsd-chr,num-queues=${o.queues},queue-size=${VQ_SIZE}`,
    ];
    const timeoutMs = Math.round((2 * est + 300) * 1000);
    log(`booting the guest (${o.smp} vCPUs, ${o.memoryMiB} MiB); raw results in ${show(rawDir)}`);
    const runStart = performance.now();
    const g = startGuest({
      vhostUserScsi: [{ socket: oursSock, numQueues: o.queues, virtqueueSize: VQ_SIZE }],
      shares: [{ dir: rawDir, tag: 'out' }],
      memoryMiB: o.memoryMiB,
      smp: o.smp,
      accel: 'tcg',
      timeoutMs,
      script: guestScript(o),
      extraArgs,
    });
    guest = g;
    const tracker = new RunTracker({ qemu: g.process.pid, ours: ours.child.pid, qsd: qsd.child.pid }, nRuns, rawDir, log);
    g.process.stdout!.on('data', (chunk: string | Buffer) => tracker.feed(chunk.toString()));

    // A backend that dies leaves the guest waiting for completions that never come: stop at once.
    const died: string[] = [];
    for (const p of [ours, qsd]) {
      void p.exited.then((code) => {
        if (cleaned || g.process.exitCode !== null || g.process.signalCode !== null) return;
        died.push(`${p.name} exited (${code}) during the run:\n${tailFile(p.log, 2000)}`);
        log(died[died.length - 1]!);
        g.kill('SIGKILL');
      });
    }

    let run: GuestRun;
    try {
      await g.waitForOutput(/<<<VST-BOOTED/, 300_000);
      log(`guest booted after ${((performance.now() - runStart) / 1000).toFixed(0)} s`);
      run = await g.wait(timeoutMs);
    } finally {
      fs.writeFileSync(path.join(rawDir, 'console.log'), g.output());
    }
    tracker.progress();
    if (died.length > 0) throw new Error(died.join('\n'));
    const script = run.scriptOutput;
    const fail = /^BENCH-FAIL (.*)$/m.exec(script);
    if (fail) throw new Error(`the guest could not set up the disks: ${fail[1]}\n${script.slice(-3000)}`);
    if (run.scriptStatus === null || !script.includes('BENCH-END')) {
      throw new Error(`the guest did not finish the benchmark (QEMU exit ${run.exitCode}); console in ${path.join(rawDir, 'console.log')}\n${script.slice(-3000)}`);
    }
    const runShare = hostDelta(tracker.first, tracker.lastAlive);

    // QEMU is gone; our backend is expected to exit 0 on SIGTERM.
    const exits = { ours: await stopProc(ours, 15_000), qsd: await stopProc(qsd, 15_000) };

    // --- results ---
    const info = Object.fromEntries([...(/^BENCH-INFO (.*)$/m.exec(script)?.[1] ?? '').matchAll(/(\w+)=(\S+)/g)].map((x) => [x[1]!, x[2]!]));
    const devs = new Map<string, string>();
    for (const x of script.matchAll(/^BENCH-DEV (\S+) (.*)$/gm)) devs.set(x[1]!, x[2]!);
    const warmFailed = [...script.matchAll(/^BENCH-WARM (\S+) status=(\d+)$/gm)].filter((x) => x[2] !== '0').map((x) => x[1]!);
    const cells: Cell[] = [];
    for (const p of o.points) {
      for (const b of BACKENDS) {
        const samples: Sample[] = [];
        for (let r = 1; r <= o.rounds; r++) samples.push(tracker.sample(p, b, r));
        cells.push(makeCell(p, b, samples));
      }
    }
    const cell = (p: string, b: Backend): Cell => cells.find((c) => c.point === p && c.backend === b)!;
    const ratios = o.points.map((p) => pointRatios(p, cell));
    const accel = /-accel (\S+)/.exec(run.commandLine)?.[1] ?? 'unknown';
    const commandLines = { ours: ours.commandLine, qsd: qsd.commandLine, qemuBlockdev, qemu: run.commandLine };

    const report = renderReport({ o, f, accel, info, devs, cells, ratios, runShare, commandLines, warmFailed, exits, rawDir: show(rawDir) });
    process.stdout.write(`\n${report}\n`);
    const stem = path.join(o.outDir, `guest-${o.label}`);
    fs.writeFileSync(`${stem}.md`, `${report}\n`);
    const allRuns = cells.flatMap((c) => c.samples.filter((s) => s.ok));
    fs.writeFileSync(`${stem}.json`, `${JSON.stringify({
      label: o.label, ...f, accel, guest: { smp: o.smp, memoryMiB: o.memoryMiB, ...info },
      options: {
        rounds: o.rounds, runtimeS: o.runtimeS, rampS: o.rampS, warmupS: o.warmupS, sizeBytes: o.sizeBytes, queues: o.queues,
        virtqueueSize: VQ_SIZE, qsdAio: o.qsdAio, qemuIothread: o.qemuIothread, backendArgs: o.backendArgs,
        points: o.points.map((x) => ({ name: x, ...POINTS[x]! })),
      },
      thresholds: { otherPct: DISTURBED_OTHER_PCT, stealPct: DISTURBED_STEAL_PCT }, userHz: USER_HZ, commandLines,
      devices: Object.fromEntries(devs), hostCpuShares: runShare,
      disturbedRuns: allRuns.filter(isDisturbed).length, runs: allRuns.length,
      target: {
        description: 'ours >= 1.0x qemu-scsi IOPS (medians) on every point',
        met: ratios.every((x) => x.targetMet === true), pointsMet: ratios.filter((x) => x.targetMet === true).length,
      },
      ratios, results: cells, backendExit: exits, warmupFailed: warmFailed,
      bootSeconds: run.bootSeconds, durationMs: run.durationMs,
    }, null, 2)}\n`);
    log(`wrote ${show(stem)}.md and .json (took ${fmtDuration((performance.now() - runStart) / 1000)}, estimated ${fmtDuration(est)})`);
    if (cells.some((c) => c.backend === 'ours' && !c.ok) || exits.ours !== 0) process.exitCode = 1;
  } finally {
    cleanupSync();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:guest: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
