// One TCMU device: the /dev/uioN of a target_core_user backstore, mapped and served by a
// TcmuRing. The LU behind it is one of the target core's logical units, reached from the host
// through tcm_loop as one more I_T nexus (tcmu.md §3.4: the ring carries no initiator identity).
//
// start(): map size from /sys/class/uio/uioN/maps/map0/size, open O_RDWR|O_NONBLOCK (the kernel
// allows one opener), mmap the whole map (tcmu_mmap refuses any other length), validate the
// mailbox, watch the fd. A wakeup reads the 4-byte event count first (uio_read), then drains
// the ring: an entry queued after the read raises a new event, so none is missed.
// stop(): close the poller (before its fd), take no more entries, wait for the commands in
// flight (bounded, V8.3), ring the doorbell for their completions, munmap, close.
//
// The kernel side must be fresh when a device starts: after a daemon restart, write
// action/block_dev=1, action/reset_ring=1, then block_dev=0 (V11.2, tcmu-runner's reopen) so
// no command slot of the previous process lingers; configfs.ts does that. reset_ring while a
// TcmuDevice runs abandons its ring (cmd_tail changes under it).

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ITNexus, ScsiTarget } from '../../scsi-emul';
import type { Logger } from '../log';
import type { Poller } from '../binding';
import { native } from '../native';
import { TcmuRing, type TcmuRingStats, type TcmuTmrNotification } from './ring';

/** The system calls a device makes; tests replace them to run against FakeTcmuKernel. */
export interface UioIo {
  /** open(2) O_RDWR|O_NONBLOCK; returns the fd */
  open(uioPath: string): number;
  /** mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0): map0 is at offset 0 */
  mmap(fd: number, length: number): ArrayBuffer;
  munmap(buffer: ArrayBuffer): void;
  createPoller(fd: number, callback: (status: number, events: number) => void): Poller;
  /** read(2) of the 4-byte event count into buf; false when none is pending (EAGAIN) */
  readEvent(fd: number, buf: Uint8Array): boolean;
  /** write(2) of 4 bytes: tcmu_irqcontrol → tcmu_handle_completions */
  notify(fd: number, buf: Uint8Array): void;
  close(fd: number): void;
}

export const nodeUioIo: UioIo = {
  open: (p) => fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK),
  mmap: (fd, length) => native.mmap(fd, 0n, length),
  munmap: (buffer) => native.munmap(buffer),
  createPoller: (fd, cb) => native.createPoller(fd, cb),
  readEvent: (fd, buf) => {
    try {
      return fs.readSync(fd, buf, 0, 4, null) === 4;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return false;
      throw err;
    }
  },
  notify: (fd, buf) => {
    fs.writeSync(fd, buf, 0, 4, null);
  },
  close: (fd) => fs.closeSync(fd),
};

export const DEFAULT_UIO_SYSFS_ROOT = '/sys/class/uio';
/** V8.3: like the virtqueues' stop deadline (SPDK's 3 s session stop timeout). */
export const TCMU_STOP_DEADLINE_MS = 3000;
/** Node 20 external ArrayBuffers end at 4 GiB, and the map can only be mapped whole. */
const MAX_MAP_SIZE = 2 ** 32;

export interface TcmuDeviceOptions {
  /** /dev/uioN of the user backstore */
  uioPath: string;
  target: ScsiTarget;
  /** the I_T nexus commands from this device carry (the tcm_loop nexus) */
  nexus: ITNexus;
  /** LUN of the logical unit in `target` */
  lun: number;
  log: Logger;
  /** directory of the uio class in sysfs; default /sys/class/uio */
  sysfsRoot?: string;
  /** bound on stop()'s wait for commands in flight; default 3000 ms */
  stopDeadlineMs?: number;
  /** TMR notifications (attrib/tmr_notification=1); they are logged at debug level anyway */
  onTmr?: (tmr: TcmuTmrNotification) => void;
  /** command slots allocated up front (TcmuRingOptions.initialSlots) */
  initialSlots?: number;
  /** system calls; tests replace some */
  io?: Partial<UioIo>;
}

/**
 * Reads uioN's map0 size from sysfs, checking the device is a TCMU one (its name starts with
 * "tcm-user/", tcmu_update_uio_info) and that map0 starts at the page offset 0.
 */
export function readUioMapSize(sysfsRoot: string, uioName: string): number {
  const dir = path.join(sysfsRoot, uioName);
  const read = (file: string): string => {
    try {
      return fs.readFileSync(path.join(dir, file), 'latin1').trim();
    } catch (err) {
      throw new Error(`tcmu: cannot read ${path.join(dir, file)}: ${(err as Error).message}`);
    }
  };
  const name = read('name');
  if (!name.startsWith('tcm-user/')) {
    throw new Error(`tcmu: ${uioName} is not a target_core_user device (its name is ${JSON.stringify(name)})`);
  }
  const sizeText = read('maps/map0/size');
  if (!/^0x[0-9a-fA-F]{1,16}$/.test(sizeText)) {
    throw new Error(`tcmu: ${uioName} maps/map0/size ${JSON.stringify(sizeText)} is not a hexadecimal size`);
  }
  const size = Number(BigInt(sizeText));
  if (size < 4096 || size > MAX_MAP_SIZE) {
    throw new Error(`tcmu: ${uioName} map0 is ${sizeText} bytes; between one page and 4 GiB can be mapped`);
  }
  const offsetFile = path.join(dir, 'maps/map0/offset');
  if (fs.existsSync(offsetFile)) {
    const offset = read('maps/map0/offset');
    if (!/^0x0+$/.test(offset)) throw new Error(`tcmu: ${uioName} map0 starts at page offset ${offset}, expected 0x0`);
  }
  return size;
}

export class TcmuDevice {
  private readonly opts: TcmuDeviceOptions;
  private readonly io: UioIo;
  private readonly log: Logger;
  private readonly uioName: string;
  private fd = -1;
  private mapping: ArrayBuffer | null = null;
  private ringObj: TcmuRing | null = null;
  private poller: Poller | null = null;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private stopWaiters: ((err: Error | null) => void)[] = [];
  /** preallocated 4-byte buffers for the event count and the doorbell (u32 0, as libtcmu writes) */
  private readonly eventBuf = new Uint8Array(4);
  private readonly doorbell = new Uint8Array(4);

  constructor(opts: TcmuDeviceOptions) {
    const name = path.basename(opts.uioPath);
    if (!/^uio\d+$/.test(name)) throw new RangeError(`tcmu: ${opts.uioPath} is not a /dev/uioN path`);
    const deadline = opts.stopDeadlineMs ?? TCMU_STOP_DEADLINE_MS;
    if (!Number.isInteger(deadline) || deadline < 0) throw new RangeError(`tcmu: stopDeadlineMs must be a non-negative integer, got ${deadline}`);
    this.opts = opts;
    this.uioName = name;
    this.io = { ...nodeUioIo, ...opts.io };
    this.log = opts.log.child(name); // the ring's own messages start with "tcmu"
  }

  /** Commands handed to the target core and not completed yet. */
  get inFlight(): number {
    return this.ringObj?.inFlight ?? 0;
  }

  /** Counters of the ring (null before start()). */
  get stats(): Readonly<TcmuRingStats> | null {
    return this.ringObj?.stats ?? null;
  }

  /** The ring (null before start()); for its state and counters. */
  get ring(): TcmuRing | null {
    return this.ringObj;
  }

  /** Maps the device and starts serving it. Throws (and releases what it took) if it cannot. */
  start(): void {
    if (this.state !== 'new') throw new Error(`tcmu ${this.uioName}: start() on a device that is ${this.state}`);
    const size = readUioMapSize(this.opts.sysfsRoot ?? DEFAULT_UIO_SYSFS_ROOT, this.uioName);
    let fd: number;
    try {
      fd = this.io.open(this.opts.uioPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`tcmu: cannot open ${this.opts.uioPath}: ${(err as Error).message}${code === 'EBUSY' ? ' (the kernel allows one opener: is another daemon serving it?)' : ''}`);
    }
    try {
      this.mapping = this.io.mmap(fd, size);
      const ring = new TcmuRing(new Uint8Array(this.mapping), {
        target: this.opts.target,
        nexus: this.opts.nexus,
        lun: this.opts.lun,
        log: this.log,
        notify: () => this.io.notify(fd, this.doorbell),
        onTmr: this.opts.onTmr,
        initialSlots: this.opts.initialSlots,
      });
      this.poller = this.io.createPoller(fd, this.onPoll);
      this.poller.start(1);
      this.ringObj = ring;
    } catch (err) {
      if (this.poller !== null) this.poller.close();
      this.poller = null;
      if (this.mapping !== null) this.io.munmap(this.mapping);
      this.mapping = null;
      this.io.close(fd);
      throw err;
    }
    this.fd = fd;
    this.state = 'running';
    this.log.info(`serving LUN ${this.opts.lun} (map ${size} bytes, ring ${this.ringObj.cmdrSize} bytes, capabilities 0x${this.ringObj.capabilities.toString(16)})`);
    // uio_open() starts the event count at the current value: entries queued before we opened
    // raise no event, so look once.
    setImmediate(() => this.ringObj?.process());
  }

  private readonly onPoll = (status: number): void => {
    const ring = this.ringObj;
    if (ring === null || this.state !== 'running') return;
    if (status < 0) {
      this.closePoller();
      ring.abandon(`polling ${this.opts.uioPath} failed (status ${status})`);
      return;
    }
    try {
      // The count first, then the ring (see the file comment).
      this.io.readEvent(this.fd, this.eventBuf);
    } catch (err) {
      this.closePoller();
      ring.abandon(`reading ${this.opts.uioPath} failed: ${(err as Error).message}`);
      return;
    }
    ring.process();
  };

  private closePoller(): void {
    if (this.poller !== null) {
      this.poller.close();
      this.poller = null;
    }
  }

  /**
   * Stops serving: no more entries are taken; commands in flight complete into the ring, which
   * is then unmapped and the fd closed. Past the deadline the remaining commands are abandoned:
   * `done` gets an Error, the fd is closed at once (a new daemon can open the device), and the
   * mapping is kept until those commands come back from the store (their data points into it).
   */
  stop(done: (err: Error | null) => void): void {
    if (this.state === 'new' || this.state === 'stopped') {
      this.state = 'stopped';
      done(null);
      return;
    }
    this.stopWaiters.push(done);
    if (this.state === 'stopping') return;
    this.state = 'stopping';
    this.closePoller(); // before its fd
    const ring = this.ringObj!;
    ring.stop();
    ring.flush();
    const deadlineMs = this.opts.stopDeadlineMs ?? TCMU_STOP_DEADLINE_MS;
    let timer: NodeJS.Timeout | null = null;
    let abandoned = false;
    ring.whenIdle(() => {
      if (abandoned) {
        this.unmap(); // the abandoned commands are back: their views are gone
        return;
      }
      if (timer !== null) clearTimeout(timer);
      ring.flush();
      this.unmap();
      this.closeFd();
      this.finishStop(null);
    });
    if (this.state !== 'stopping') return; // nothing was in flight
    timer = setTimeout(() => {
      timer = null;
      abandoned = true;
      const n = ring.inFlight;
      ring.flush();
      ring.abandon(`stop: ${n} command(s) still in flight after ${deadlineMs} ms; abandoned (the kernel times them out)`);
      this.closeFd();
      this.finishStop(new Error(`tcmu ${this.uioName}: ${n} command(s) abandoned at stop after ${deadlineMs} ms`));
    }, deadlineMs);
  }

  private unmap(): void {
    if (this.mapping !== null) {
      this.io.munmap(this.mapping);
      this.mapping = null;
    }
  }

  private closeFd(): void {
    if (this.fd >= 0) {
      this.io.close(this.fd);
      this.fd = -1;
    }
  }

  private finishStop(err: Error | null): void {
    this.state = 'stopped';
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) w(err);
  }
}
