// End-to-end harness: boots the test guest (qemu-scripts/) under QEMU, runs a
// shell script in it and hands back what the serial console printed.
//
// The guest's /init (qemu-scripts/guest-init.sh) prints markers this module
// keys on:
//   <<<VST-BOOTED uptime=S kernel=R>>>   modules loaded, disks bound, shares mounted
//   <<<VST-SCRIPT-BEGIN>>>               the script starts on the next line
//   <<<VST-SCRIPT-END status=N>>>        preceded by one newline /init adds
//   <<<VST-POWEROFF>>>
// QEMU itself is always started through qemu-scripts/run-guest.sh, so a person
// reproduces a test's guest with the command line it prints (GuestRun.commandLine).

import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** Repository root: the nearest ancestor of this file holding qemu-scripts/run-guest.sh. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'qemu-scripts', 'run-guest.sh'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`harness: no qemu-scripts/run-guest.sh above ${__dirname}`);
    dir = up;
  }
}

const QEMU_BIN = process.env.QEMU ?? 'qemu-system-x86_64';

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v "$1" >/dev/null 2>&1`, 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

let availability: { ok: boolean; reason?: string } | undefined;

/**
 * Whether guests can be booted here: Linux x86-64, QEMU, bash, and either a
 * built guest in the cache or what build-guest.sh needs to build one.
 * VHOST_SCSI_E2E=0 turns the e2e tests off.
 */
export function e2eAvailable(): { ok: boolean; reason?: string } {
  if (availability) return availability;
  availability = probeAvailability();
  return availability;
}

function probeAvailability(): { ok: boolean; reason?: string } {
  if (process.env.VHOST_SCSI_E2E === '0') return { ok: false, reason: 'VHOST_SCSI_E2E=0' };
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return { ok: false, reason: `needs linux/x64 (have ${process.platform}/${process.arch})` };
  }
  if (!onPath('bash')) return { ok: false, reason: 'bash not found' };
  const v = spawnSync(QEMU_BIN, ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) {
    return { ok: false, reason: `${QEMU_BIN} not runnable (apt-get install -t bookworm-backports qemu-system-x86)` };
  }
  const cache = guestCacheDir();
  const built = (fs.existsSync(path.join(cache, 'vmlinux')) || fs.existsSync(path.join(cache, 'vmlinuz')))
    && fs.existsSync(path.join(cache, 'initrd.img'));
  if (!built) {
    const missing = ['busybox', 'fio', 'sg_inq', 'lsscsi', 'cpio', 'dpkg', 'apt-get'].filter((c) => !onPath(c));
    if (missing.length > 0) return { ok: false, reason: `cannot build the guest: ${missing.join(', ')} not found` };
  }
  return { ok: true };
}

function guestCacheDir(): string {
  return process.env.VHOST_SCSI_GUEST_CACHE ?? path.join(repoRoot(), '.cache', 'guest');
}

export interface GuestImage { kernel: string; initrd: string }

let guestImage: Promise<GuestImage> | undefined;
let guestImageResolved: GuestImage | undefined;

/** Builds the guest (qemu-scripts/build-guest.sh; cached, a no-op when current). Once per process. */
export function ensureGuest(): Promise<GuestImage> {
  if (!guestImage) {
    guestImage = new Promise<GuestImage>((resolve, reject) => {
      const script = path.join(repoRoot(), 'qemu-scripts', 'build-guest.sh');
      execFile('bash', [script], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`build-guest.sh failed (${err.message.split('\n')[0]}):\n${tail(stderr, 4000)}`));
          return;
        }
        const kernel = /^KERNEL=(.+)$/m.exec(stdout)?.[1];
        const initrd = /^INITRD=(.+)$/m.exec(stdout)?.[1];
        if (!kernel || !initrd) {
          reject(new Error(`build-guest.sh printed no KERNEL=/INITRD= lines:\n${tail(stdout + stderr, 4000)}`));
          return;
        }
        guestImageResolved = { kernel, initrd };
        resolve(guestImageResolved);
      });
    });
    // A failed build may be retried by a later call.
    guestImage.catch(() => { guestImage = undefined; });
  }
  return guestImage;
}

export interface VhostUserScsiDevice {
  /** The back-end's listening unix socket (QEMU connects as the client). */
  socket: string;
  /** Request queues (virtio-scsi num_queues); default 1. */
  numQueues?: number;
  /** virtqueue_size property (QEMU's default is 128). */
  virtqueueSize?: number;
  /** Chardev reconnect delay in ms; 0 disables reconnecting. Default 1000. */
  reconnectMs?: number;
  /** Further vhost-user-scsi-pci properties, e.g. { hotplug: 'on', param_change: 'off' }. */
  props?: Record<string, string | number | boolean>;
}

export interface GuestShare { dir: string; tag?: string; readonly?: boolean }

export interface GuestOptions {
  vhostUserScsi?: VhostUserScsiDevice[];
  vhostUserBlk?: { socket: string; numQueues?: number; reconnectMs?: number }[];
  /** Raw images served by QEMU's own virtio-scsi (LUN 0, 1, ... of target 0). */
  scsiHd?: string[];
  /** Guest RAM in MiB (default 1024), a shared memfd as vhost-user needs. */
  memoryMiB?: number;
  /** vCPUs; default: the largest numQueues, at least 1. */
  smp?: number;
  /** Script /init runs in the guest with bash (busybox applets on PATH; cwd /mnt/share when shared). */
  script: string;
  /** Kill QEMU after this long (default 120 s); runGuest then rejects. */
  timeoutMs?: number;
  /** A host directory mounted at /mnt/share (9p, read-write). */
  share?: string;
  /** More 9p shares, mounted at /mnt/<tag>. */
  shares?: GuestShare[];
  /** QMP server socket for this QEMU (see QmpClient). */
  qmp?: string;
  /** Load configfs/target_core_user/tcm_loop at boot and mount configfs. */
  lio?: boolean;
  /** SCSI target ids /init scans on each HBA (default [0]); 'all' takes ~9 s under TCG. */
  scanTargets?: number[] | 'all';
  /** tcg, kvm or auto (default: $VHOST_SCSI_ACCEL, else auto). */
  accel?: 'tcg' | 'kvm' | 'auto';
  /** Extra kernel command line. */
  append?: string;
  /** Kernel messages on the console (no 'quiet'). */
  verbose?: boolean;
  /** Raw QEMU arguments, appended last. */
  extraArgs?: string[];
}

export interface GuestRun {
  /** QEMU's exit code; null when it was killed by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Everything printed on the serial console, with \r\n turned into \n. */
  output: string;
  /** The script's output: between the BEGIN marker line and the END marker. */
  scriptOutput: string;
  /** The script's exit status as printed by /init; null if it never finished. */
  scriptStatus: number | null;
  /** Guest uptime (s) when /init was ready to run the script; null if it never got there. */
  bootSeconds: number | null;
  /** QEMU's (and run-guest.sh's) stderr. */
  stderr: string;
  /** The QEMU command line run-guest.sh printed. */
  commandLine: string;
  durationMs: number;
}

/** A failed or timed-out guest run; `run` holds what was captured. */
export class GuestError extends Error {
  constructor(message: string, readonly run: GuestRun) {
    super(message);
    this.name = 'GuestError';
  }
}

export const MARKERS = {
  booted: /<<<VST-BOOTED uptime=([0-9.]+) kernel=(\S+)>>>/,
  begin: '<<<VST-SCRIPT-BEGIN>>>\n',
  end: /<<<VST-SCRIPT-END status=(\d+)>>>/,
  poweroff: '<<<VST-POWEROFF>>>',
} as const;

/** Splits a console transcript into the script's output, status and boot time. */
export function parseConsole(output: string): { scriptOutput: string; scriptStatus: number | null; bootSeconds: number | null } {
  const booted = MARKERS.booted.exec(output);
  const bootSeconds = booted ? Number(booted[1]) : null;
  const b = output.indexOf(MARKERS.begin);
  if (b < 0) return { scriptOutput: '', scriptStatus: null, bootSeconds };
  const start = b + MARKERS.begin.length;
  const rest = output.slice(start);
  const end = MARKERS.end.exec(rest);
  if (!end) return { scriptOutput: rest, scriptStatus: null, bootSeconds };
  let scriptOutput = rest.slice(0, end.index);
  // /init prints one newline before the END marker to close an unterminated line.
  if (scriptOutput.endsWith('\n')) scriptOutput = scriptOutput.slice(0, -1);
  return { scriptOutput, scriptStatus: Number(end[1]), bootSeconds };
}

/** run-guest.sh arguments for these options (without --script, --kernel, --initrd). */
export function runGuestArgs(opts: Omit<GuestOptions, 'script'>): string[] {
  const args: string[] = [];
  const commaFree = (what: string, v: string): string => {
    // QEMU option values are comma-separated; run-guest.sh splits on commas too.
    if (v.includes(',')) throw new Error(`harness: ${what} '${v}' contains a comma`);
    return v;
  };
  for (const d of opts.vhostUserScsi ?? []) {
    let spec = commaFree('socket path', d.socket);
    spec += `,num_queues=${d.numQueues ?? 1}`;
    if (d.virtqueueSize !== undefined) spec += `,virtqueue_size=${d.virtqueueSize}`;
    if (d.reconnectMs !== undefined) spec += `,reconnect=${d.reconnectMs}`;
    for (const [k, v] of Object.entries(d.props ?? {})) {
      spec += `,${commaFree('property', k)}=${commaFree('property value', typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v))}`;
    }
    args.push('--vhost-user-scsi', spec);
  }
  for (const d of opts.vhostUserBlk ?? []) {
    let spec = commaFree('socket path', d.socket);
    if (d.numQueues !== undefined) spec += `,num-queues=${d.numQueues}`;
    if (d.reconnectMs !== undefined) spec += `,reconnect=${d.reconnectMs}`;
    args.push('--vhost-user-blk', spec);
  }
  for (const img of opts.scsiHd ?? []) args.push('--scsi-hd', commaFree('image path', img));
  if (opts.share !== undefined) args.push('--share', commaFree('share dir', opts.share));
  for (const s of opts.shares ?? []) {
    let spec = commaFree('share dir', s.dir);
    if (s.tag !== undefined) spec += `,tag=${s.tag}`;
    if (s.readonly) spec += ',ro';
    args.push('--share', spec);
  }
  if (opts.memoryMiB !== undefined) args.push('--mem', `${opts.memoryMiB}M`);
  if (opts.smp !== undefined) args.push('--smp', String(opts.smp));
  if (opts.qmp !== undefined) args.push('--qmp', commaFree('QMP socket', opts.qmp));
  if (opts.lio) args.push('--lio');
  if (opts.scanTargets !== undefined) {
    args.push('--scan', opts.scanTargets === 'all' ? 'all' : opts.scanTargets.join(','));
  }
  if (opts.accel !== undefined) args.push('--accel', opts.accel);
  if (opts.append !== undefined) args.push('--append', opts.append);
  if (opts.verbose) args.push('--verbose');
  if (opts.extraArgs && opts.extraArgs.length > 0) args.push('--', ...opts.extraArgs);
  return args;
}

export interface RunningGuest {
  process: ChildProcess;
  /**
   * Resolves with the first match of `re` in the console output from offset
   * `from` (default 0: everything so far counts); rejects when QEMU exits
   * first or after timeoutMs, with the console tail in the message.
   */
  waitForOutput(re: RegExp, timeoutMs: number, from?: number): Promise<string>;
  /** Signals QEMU (default SIGKILL). */
  kill(signal?: NodeJS.Signals): void;
  /** QEMU's exit code (null when killed by a signal). Never rejects. */
  exited: Promise<number | null>;
  /** The console output so far (\r\n normalised). */
  output(): string;
  /**
   * Waits for QEMU to exit and returns the parsed run. After timeoutMs QEMU
   * is killed and the promise rejects with a GuestError.
   */
  wait(timeoutMs?: number): Promise<GuestRun>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A test that fails or is cut short must not leave QEMU running.
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

function tail(s: string, n: number): string {
  return s.length <= n ? s : `[...]${s.slice(-n)}`;
}

/** Boots a guest and returns at once; see RunningGuest. */
export function startGuest(opts: GuestOptions): RunningGuest {
  const root = repoRoot();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vst-guest-'));
  const scriptFile = path.join(tmp, 'script.sh');
  fs.writeFileSync(scriptFile, opts.script.endsWith('\n') ? opts.script : `${opts.script}\n`);

  const args = [path.join(root, 'qemu-scripts', 'run-guest.sh'), '--script', scriptFile];
  // With the image known, skip run-guest.sh's own (cached) build check.
  if (guestImageResolved) args.push('--kernel', guestImageResolved.kernel, '--initrd', guestImageResolved.initrd);
  args.push(...runGuestArgs(opts));

  const started = Date.now();
  const child = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);

  let out = '';
  let err = '';
  let pendingCr = false;
  const waiters = new Set<() => void>();
  const notify = (): void => { for (const w of [...waiters]) w(); };

  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    // The serial console's onlcr turns \n into \r\n; a chunk may end between the two.
    if (pendingCr) { chunk = `\r${chunk}`; pendingCr = false; }
    if (chunk.endsWith('\r')) { pendingCr = true; chunk = chunk.slice(0, -1); }
    out += chunk.replace(/\r\n/g, '\n');
    notify();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => { err += chunk; });

  let exitCode: number | null = null;
  let exitSignal: NodeJS.Signals | null = null;
  let hasExited = false;
  const exited = new Promise<number | null>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (hasExited) return;
      if (pendingCr) { out += '\r'; pendingCr = false; }
      hasExited = true;
      exitCode = code;
      exitSignal = signal;
      fs.rmSync(tmp, { recursive: true, force: true });
      notify();
      resolve(code);
    };
    child.once('close', finish);
    child.once('error', (e) => {
      err += `spawn failed: ${e.message}\n`;
      // A process that never started emits no 'close'.
      if (child.pid === undefined) finish(null, null);
    });
  });

  const commandLine = (): string => /^run-guest: (.*)$/m.exec(err)?.[1] ?? '';
  const snapshot = (): GuestRun => ({
    exitCode,
    signal: exitSignal,
    output: out,
    ...parseConsole(out),
    stderr: err,
    commandLine: commandLine(),
    durationMs: Date.now() - started,
  });
  const describe = (): string =>
    `--- console (tail) ---\n${tail(out, 3000)}\n--- stderr (tail) ---\n${tail(err, 1500)}`;

  const kill = (signal: NodeJS.Signals = 'SIGKILL'): void => {
    if (!hasExited) child.kill(signal);
  };

  const waitForOutput = (re: RegExp, timeoutMs: number, from = 0): Promise<string> => {
    const rx = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
    return new Promise<string>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const m = rx.exec(out.slice(from));
        if (m) { done(); resolve(m[0]); return; }
        if (hasExited) {
          done();
          reject(new GuestError(`QEMU exited (code ${exitCode}, signal ${exitSignal}) before the console matched ${re}\n${describe()}`, snapshot()));
        }
      };
      const done = (): void => { waiters.delete(check); if (timer) clearTimeout(timer); };
      timer = setTimeout(() => {
        done();
        reject(new GuestError(`no console output matched ${re} within ${timeoutMs} ms\n${describe()}`, snapshot()));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  };

  const wait = async (timeoutMs = opts.timeoutMs ?? 120_000): Promise<GuestRun> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs); }),
    ]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      // SIGTERM lets QEMU close its sockets cleanly; SIGKILL if it does not go.
      kill('SIGTERM');
      const killer = setTimeout(() => kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
      throw new GuestError(`guest timed out after ${timeoutMs} ms and was killed\n${describe()}`, snapshot());
    }
    return snapshot();
  };

  return { process: child, waitForOutput, kill, exited, output: () => out, wait };
}

/**
 * Boots a guest, runs opts.script, and resolves once QEMU has powered off.
 * Rejects with a GuestError (console tail in the message, `run` attached)
 * when the guest times out or ends without the script's END marker (QEMU
 * failed to start, kernel panic, ...). A non-zero scriptStatus resolves.
 */
export async function runGuest(opts: GuestOptions): Promise<GuestRun> {
  await ensureGuest();
  const g = startGuest(opts);
  const run = await g.wait(opts.timeoutMs ?? 120_000);
  if (run.scriptStatus === null) {
    throw new GuestError(
      `guest ended without finishing the script (QEMU exit code ${run.exitCode}, signal ${run.signal})\n` +
        `--- console (tail) ---\n${tail(run.output, 3000)}\n--- stderr (tail) ---\n${tail(run.stderr, 1500)}`,
      run,
    );
  }
  return run;
}

/**
 * A minimal QMP client (QEMU docs/interop/qmp-spec.rst): greeting, then
 * qmp_capabilities, then one command at a time; events are queued.
 */
export class QmpClient {
  private buf = '';
  private readonly events: { event: string; data?: unknown; timestamp?: unknown }[] = [];
  private pending: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  private readonly eventWaiters = new Set<() => void>();
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('close', () => {
      this.closed = true;
      this.pending?.reject(new Error('QMP connection closed'));
      this.pending = undefined;
      for (const w of [...this.eventWaiters]) w();
    });
    sock.on('error', () => { /* 'close' follows and reports it */ });
  }

  /** Connects (retrying while QEMU creates the socket) and negotiates capabilities. */
  static async connect(socketPath: string, timeoutMs = 30_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(socketPath);
          s.once('connect', () => { s.removeListener('error', reject); resolve(s); });
          s.once('error', reject);
        });
        const c = new QmpClient(sock);
        try {
          await c.greeting(Math.max(1000, deadline - Date.now()));
          await c.execute('qmp_capabilities');
        } catch (e) {
          c.close();
          throw e;
        }
        return c;
      } catch (e) {
        if (Date.now() >= deadline) throw new Error(`QMP connect to ${socketPath} failed: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private greeted = false;
  private greetingResolve: (() => void) | undefined;
  private greeting(timeoutMs: number): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no QMP greeting')), timeoutMs);
      this.greetingResolve = () => { clearTimeout(t); resolve(); };
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('QMP' in msg) {
        this.greeted = true;
        this.greetingResolve?.();
        this.greetingResolve = undefined;
      } else if ('event' in msg) {
        this.events.push(msg as { event: string });
        for (const w of [...this.eventWaiters]) w();
      } else if ('return' in msg || 'error' in msg) {
        const p = this.pending;
        this.pending = undefined;
        if (!p) continue;
        if ('error' in msg) {
          const e = msg.error as { class?: string; desc?: string };
          p.reject(new Error(`QMP error ${e.class ?? '?'}: ${e.desc ?? JSON.stringify(e)}`));
        } else {
          p.resolve(msg.return);
        }
      }
    }
  }

  /** Runs one QMP command and resolves with its 'return' value. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('QMP connection closed'));
    if (this.pending) return Promise.reject(new Error('QMP: one command at a time'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.sock.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  /** Resolves with the first queued or future event named `name` (consuming it). */
  waitEvent(name: string, timeoutMs: number): Promise<{ event: string; data?: unknown }> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const i = this.events.findIndex((e) => e.event === name);
        if (i >= 0) {
          const [e] = this.events.splice(i, 1);
          cleanup();
          resolve(e!);
        } else if (this.closed) {
          cleanup();
          reject(new Error(`QMP closed before event ${name}`));
        }
      };
      const timer = setTimeout(() => { cleanup(); reject(new Error(`no QMP event ${name} within ${timeoutMs} ms`)); }, timeoutMs);
      const cleanup = (): void => { clearTimeout(timer); this.eventWaiters.delete(check); };
      this.eventWaiters.add(check);
      check();
    });
  }

  close(): void {
    this.sock.destroy();
  }
}
