// Host exposure of our LUNs through the kernel's LIO target: a TCMU user backstore
// (target_core_user, served by our core through /dev/uioN) behind a tcm_loop target port, which
// gives the host a /dev/sdX. Everything here is configfs/sysfs plumbing; the ring is tcmu/device.ts.
//
// Kernel facts this file relies on (Linux drivers/target, checked against the sources; see also
// ../shared/notes/tcmu.md §3.6 and "Checked on the test guest's kernel"):
//  - core/user_<N>/<name>: mkdir makes an unconfigured TCMU device; `control` takes comma or newline
//    separated tokens (target_core_user.c tcmu_set_configfs_dev_params: dev_config=, dev_size=,
//    hw_block_size=, hw_max_sectors=, nl_reply_supported=, ...; unknown tokens are ignored, so we
//    write one token per write() to learn which one the kernel refused). `enable` = 1 runs
//    tcmu_configure_device: the UIO device "tcm-user/<N>/<name>/<dev_config>" appears.
//  - attrib/pgr_support=0 and attrib/alua_support=0 set TRANSPORT_FLAG_PASSTHROUGH_PGR/_ALUA, so
//    PR and ALUA commands reach our core (the one authority, reliability.md §4.7); tmr_notification=1
//    puts TMR entries on the ring. attrib/cmd_time_out refuses changes while the device is exported
//    (tcmu_cmd_time_out_store: "Unable to set tcmu cmd_time_out while exports exist"), so every
//    attribute is written before the LUN link.
//  - action/block_dev and action/reset_ring exist since 4.x (tcmu_action_attrs; 6.1 has them, with
//    free_kept_buf). block_dev=1 reaps completions the ring already holds and fails commands waiting
//    for ring space with BUSY; while blocked, new commands get BUSY (queue_cmd_ring: TCM_LUN_BUSY).
//    reset_ring=1 completes every command still on the ring with BUSY (2 would be CHECK CONDITION),
//    frees the data area and zeroes cmd_head/cmd_tail (tcmu_reset_ring).
//  - loopback/<wwn>: tcm_loop_make_scsi_hba picks the protocol by strstr(): "naa." SAS, else "fc."
//    FCP, else "iqn." iSCSI; anything else (eui. included) is EINVAL. tpgt_<T> with T < 32
//    (TL_TPGS_PER_HBA) is the SCSI target id; `address` reads "<host_no>:0:<T>". Writing the
//    initiator to `nexus` is refused unless its prefix names the WWN's protocol (same strstr order);
//    "NULL" drops it, refused (EPERM) while a LUN is linked. The nexus must exist before the link,
//    or tcm_loop fails every CDB.
//  - Linking lun_<L>/<x> → the backstore calls tcm_loop_port_link → scsi_add_device(): the kernel
//    scans the LUN *inside the symlink() system call*, sending INQUIRY (and VPD, and scsi_dh_alua's
//    REPORT TARGET PORT GROUPS) through our ring. A synchronous symlink from the thread that serves
//    the ring would deadlock until cmd_time_out, so the link is made on the libuv thread pool while
//    the caller's TcmuDevice serves the ring. sd then binds asynchronously (READ CAPACITY ...).
//  - Unlinking calls scsi_remove_device(): sd flushes (del_gendisk writes dirty pages back, then
//    SYNCHRONIZE CACHE when WCE) through the ring, inside unlink(). detach() does that on the thread
//    pool while we still serve. Removing an entry nobody serves (a crashed run's) first sets the
//    SCSI device offline (new I/O fails at once), tells sd "temporary write through" (sd_shutdown
//    then sends no SYNCHRONIZE CACHE; the "temporary " prefix changes only the kernel's view, no
//    MODE SELECT), and block_dev=1 + reset_ring=1 (what sat in the dead ring completes with BUSY and
//    the requeue meets the offline device), so unlink() returns without waiting on the ring.
//
// Crash recovery. A killed process leaves its configfs entries; the kernel does not notice (the
// UIO release only clears the "open" bit), keeps queueing commands into the ring, and times out
// commands that sit there longer than attrib/cmd_time_out with CHECK CONDITION. The host meanwhile
// sees its I/O to /dev/sdX stall. On restart expose() finds the complete entry of the same name and
// re-attaches it: probe that no live process holds /dev/uioN (EBUSY: another instance serves it,
// refuse), block_dev=1 (completions the dead process had already written are honoured),
// reset_ring=1 (commands it never completed go back to the host as BUSY, which the SCSI midlayer
// retries), block_dev=0. The ring restarts at cmd_tail 0 for the new process; retried commands
// wait in it until the TcmuDevice maps it. Nothing acknowledged is lost: an acknowledged command
// was completed by the dead process (durable per our write-cache rules) and reaped by block_dev;
// anything else is retried. A command that is not idempotent (COMPARE AND WRITE, PR OUT) and that
// the dead process executed but never completed runs twice, as after any target reset.
// cmd_time_out (DEFAULT_CMD_TIME_OUT_S): far above a supervised restart, so the commands of a
// crashed process wait for the restart instead of failing; below the 30 s default of the host's
// sd command timer (drivers/scsi/sd.h SD_TIMEOUT), so when we never come back TCMU answers with
// CHECK CONDITION before the SCSI error handler starts aborting and resetting (an abort of a
// command held in the ring waits for it anyway, and the escalation ends with the disk offline).
// An entry that is incomplete, or whose block size no longer matches, is removed and rebuilt.

import { closeSync, constants, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, lstatSync, rmdirSync,
  symlink, unlink, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { portNameError } from '../../scsi-emul';
import type { Logger } from '../log';

/** dev_config of every backstore we create: "<subtype>/<cfg>" (tcmu-design.rst), our subtype. */
export const DEV_CONFIG_PREFIX = 'vhost-scsi-ts/';
/** Our mark in the backstore's `alias`: the LUN it serves and its tcm_loop WWN, for list() after a crash. */
const ALIAS_PREFIX = 'vhost-scsi-ts ';
/** See the header: above a supervised restart, below sd's 30 s command timer. */
export const DEFAULT_CMD_TIME_OUT_S = 20;
/** core/user_<N> we create backstores in (any N works; the notes checked 0 on Debian 6.1). */
export const DEFAULT_HBA = 0;
/** tcm_loop TPG tag, i.e. the SCSI target id of the host's H:C:T:L ("tpgt_1", as targetcli uses). */
export const TPG_TAG = 1;
/** The host-side LUN under the TPG (one exposure per tcm_loop WWN). */
export const HOST_LUN = 0;
/** How long expose()'s callback waits for sd to bind the scanned LUN (/dev/sdX). */
export const DEFAULT_BIND_TIMEOUT_MS = 10_000;
const BIND_POLL_MS = 50;
/** match_int() of "hw_max_sectors=%d": a positive int. */
const MAX_HW_MAX_SECTORS = 0x7fffffff;
/** tcmu_cmd_time_out_store keeps val * MSEC_PER_SEC in 32 bits. */
const MAX_CMD_TIME_OUT_S = Math.floor(0xffffffff / 1000);
/** TCMU_CONFIG_LEN 256 holds dev_config with its NUL; NAME_MAX bounds the directory. */
const MAX_NAME_LENGTH = 128;
/** tcm_loop TL_WWN_ADDR_LEN: WWN and nexus names are shorter than 256 bytes. */
const TL_WWN_ADDR_LEN = 256;
/** The core's LUN range (virtio-scsi's flat space, backend/virtio-scsi/lun-address.ts). */
const MAX_LUN = 16383;
const NAME_RE = /^[A-Za-z0-9_-]+$/;

export class HostExposureError extends Error {
  /** the configfs/sysfs path the failing step touched, if any */
  readonly path: string | null;
  /** the errno code (EINVAL, EBUSY, ...) of the failing step, if any */
  readonly code: string | null;
  constructor(message: string, path: string | null = null, code: string | null = null) {
    super(message);
    this.name = 'HostExposureError';
    this.path = path;
    this.code = code;
  }
}

export interface HostExposureSpec {
  /** our target's LUN */
  lun: number;
  /** backstore directory name, unique per backend + LUN, [A-Za-z0-9_-] */
  name: string;
  /** tcm_loop WWN: naa.<16 hex> (SAS), fc.<16 hex> (FC) or iqn.… (iSCSI) */
  wwn: string;
  /** tcm_loop nexus (initiator port) name, same protocol as wwn */
  initiator: string;
  sizeBytes: number;
  blockSize: number;
  hwMaxSectors?: number;
  /** attrib/cmd_time_out in seconds (default DEFAULT_CMD_TIME_OUT_S; 0 = never) */
  cmdTimeOutSeconds?: number;
}

/**
 * online:   linked (the host has the SCSI device) and not blocked
 * blocked:  linked, TCMU blocked (a re-attach interrupted between block_dev=1 and 0)
 * unlinked: everything but the LUN link (expose() before its link finished, or after detach())
 * partial:  anything less (a crashed run's leftover, or a foreign change)
 */
export type ExposureState = 'online' | 'blocked' | 'unlinked' | 'partial';

export interface ExposedDevice {
  /** for list(): what configfs says (lun -1, wwn/initiator '' when unknown) */
  spec: HostExposureSpec;
  /** /dev/uioN ('' when the backstore has no UIO device: not enabled) */
  uioPath: string;
  backstoreDir: string;
  /** the tcm_loop TPG directory ('' when there is none) */
  tpgDir: string;
  /** "H:0:T:L" of the host's SCSI device once linked */
  scsiAddress: string | null;
  /** "sdX" once the kernel has bound sd */
  blockDevice: string | null;
  /** N of core/user_N */
  hba: number;
  /** the LUN symlink in configfs, once linked */
  linkPath: string | null;
  /** expose() found this entry from an earlier run and re-attached it (ring reset) */
  reattached: boolean;
  state: ExposureState;
}

export type AttachedCallback = (err: HostExposureError | null, d: ExposedDevice) => void;

/**
 * The few file-system operations configfs/sysfs need, so tests can put the kernel's behaviour
 * behind them (fake-configfs.ts). Errors are Node system errors (code, errno, syscall, path).
 */
export interface KernelFs {
  mkdir(path: string): void;
  rmdir(path: string): void;
  /** One write() of the whole value, like `echo -n value > path`; never creates the file. */
  write(path: string, value: string): void;
  read(path: string): string;
  readdir(path: string): string[];
  /** lstat: what is at path, without following a symlink */
  kind(path: string): 'dir' | 'file' | 'link' | null;
  readlink(path: string): string;
  /** symlink(2) off the event loop: the kernel may send SCSI commands through our ring inside it. */
  symlink(target: string, path: string, done: (err: NodeJS.ErrnoException | null) => void): void;
  /** unlink(2) off the event loop, for the same reason. */
  unlink(path: string, done: (err: NodeJS.ErrnoException | null) => void): void;
  /** unlink(2) on this thread: only when the kernel will send nothing through a ring (see unexpose). */
  unlinkSync(path: string): void;
  /** open(O_RDWR) and close: EBUSY when another process holds a UIO device (tcmu_open admits one). */
  probeOpen(path: string): void;
}

/** The real configfs/sysfs. */
export const nodeKernelFs: KernelFs = {
  mkdir: (p) => mkdirSync(p),
  rmdir: (p) => rmdirSync(p),
  write(p, value) {
    // O_WRONLY without O_CREAT: a missing attribute is ENOENT, not a new regular file.
    const fd = openSync(p, constants.O_WRONLY);
    try {
      const buf = Buffer.from(value, 'utf8');
      // configfs and sysfs take one write() as the whole value; a short write is a refusal.
      const n = writeSync(fd, buf, 0, buf.length);
      if (n !== buf.length) throw Object.assign(new Error(`EIO: short write (${n} of ${buf.length} bytes), write '${p}'`), { code: 'EIO', syscall: 'write', path: p });
    } finally {
      closeSync(fd);
    }
  },
  read: (p) => readFileSync(p, 'utf8'),
  readdir: (p) => readdirSync(p),
  kind(p) {
    try {
      const st = lstatSync(p);
      return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
    } catch {
      return null;
    }
  },
  readlink: (p) => readlinkSync(p),
  symlink: (target, p, done) => symlink(target, p, (err) => done(err)),
  unlink: (p, done) => unlink(p, (err) => done(err)),
  unlinkSync: (p) => unlinkSync(p),
  probeOpen(p) {
    // libuv opens with O_CLOEXEC already.
    closeSync(openSync(p, constants.O_RDWR | constants.O_NONBLOCK));
  },
};

export interface ConfigfsHostOptions {
  /** configfs mount point (default /sys/kernel/config) */
  configfs?: string;
  /** sysfs mount point (default /sys) */
  sysfs?: string;
  /** devtmpfs (default /dev) */
  dev?: string;
  /** N of the core/user_N directory new backstores go to (default DEFAULT_HBA) */
  hba?: number;
  /** how long expose()'s callback waits for /dev/sdX (default DEFAULT_BIND_TIMEOUT_MS; 0: not at all) */
  bindTimeoutMs?: number;
  /** file-system access (default the real one; tests pass FakeConfigfs) */
  fs?: KernelFs;
  log?: Logger;
}

type Protocol = 'SAS' | 'FCP' | 'iSCSI';

/** The protocol tcm_loop gives a WWN or nexus name: the first of its strstr() tests that matches. */
function tcmLoopProtocol(name: string): Protocol | null {
  if (name.includes('naa.')) return 'SAS';
  if (name.includes('fc.')) return 'FCP';
  if (name.includes('iqn.')) return 'iSCSI';
  return null;
}

function prefixProtocol(name: string): Protocol | null {
  const l = name.toLowerCase();
  return l.startsWith('naa.') ? 'SAS' : l.startsWith('fc.') ? 'FCP' : l.startsWith('iqn.') ? 'iSCSI' : l.startsWith('eui.') ? 'iSCSI' : null;
}

/** Null when tcm_loop takes `name` as a WWN or nexus; else why not. */
export function tcmLoopNameError(name: string, role: 'wwn' | 'initiator'): string | null {
  if (typeof name !== 'string' || name.length === 0) return `${role}: a name is required (naa.<16 hex>, fc.<16 hex> or iqn.…)`;
  const shown = JSON.stringify(name);
  const general = portNameError(name);
  if (general !== null) return `${role}: ${general}`;
  if (name.includes(',')) return `${role} ${shown}: tcm_loop names carry no ISID or other ",…" suffix`;
  if (name.toLowerCase().startsWith('eui.')) {
    return `${role} ${shown}: tcm_loop has no eui. names (it knows naa. for SAS, fc. for FC and iqn. for iSCSI)`;
  }
  // tcm_loop compares the prefixes case-sensitively (strstr).
  const dot = name.indexOf('.');
  if (name.slice(0, dot) !== name.slice(0, dot).toLowerCase()) return `${role} ${shown}: tcm_loop needs the prefix in lower case (${name.slice(0, dot).toLowerCase()}.)`;
  if (Buffer.byteLength(name) >= TL_WWN_ADDR_LEN) return `${role} ${shown}: tcm_loop takes names shorter than ${TL_WWN_ADDR_LEN} bytes`;
  // tcm_loop looks for the prefixes anywhere in the name, naa. first: an iqn.… name containing
  // "naa." or "fc." would become a SAS or FC port in the kernel.
  const k = tcmLoopProtocol(name);
  if (k !== prefixProtocol(name)) {
    return `${role} ${shown}: tcm_loop would take it for a ${k} name (it searches for "naa.", then "fc.", then "iqn." anywhere in the name)`;
  }
  return null;
}

/** Null when the spec is acceptable; else a sentence naming the field. */
export function hostExposureSpecError(s: HostExposureSpec): string | null {
  if (!Number.isInteger(s.lun) || s.lun < 0 || s.lun > MAX_LUN) return `lun must be an integer 0..${MAX_LUN}`;
  if (typeof s.name !== 'string' || !NAME_RE.test(s.name) || s.name.length > MAX_NAME_LENGTH) {
    return `backstore name ${JSON.stringify(s.name)}: use 1..${MAX_NAME_LENGTH} of A-Z a-z 0-9 _ -`;
  }
  const we = tcmLoopNameError(s.wwn, 'wwn');
  if (we !== null) return we;
  const ie = tcmLoopNameError(s.initiator, 'initiator');
  if (ie !== null) return ie;
  // tcm_loop_tpg_nexus_store: "Passed SAS Initiator Port … does not match target port protoid".
  if (tcmLoopProtocol(s.initiator) !== tcmLoopProtocol(s.wwn)) {
    return `initiator ${s.initiator} and wwn ${s.wwn} name different protocols (naa. SAS, fc. FC, iqn. iSCSI): tcm_loop refuses such a nexus; use the same prefix`;
  }
  if (s.blockSize !== 512 && s.blockSize !== 1024 && s.blockSize !== 2048 && s.blockSize !== 4096) {
    return `block size ${s.blockSize}: use 512, 1024, 2048 or 4096`;
  }
  if (!Number.isSafeInteger(s.sizeBytes) || s.sizeBytes < s.blockSize || s.sizeBytes % s.blockSize !== 0) {
    return `size ${s.sizeBytes}: must be a positive multiple of the ${s.blockSize}-byte block size`;
  }
  if (s.hwMaxSectors !== undefined && (!Number.isInteger(s.hwMaxSectors) || s.hwMaxSectors < 1 || s.hwMaxSectors > MAX_HW_MAX_SECTORS)) {
    return `hwMaxSectors ${s.hwMaxSectors}: must be an integer 1..${MAX_HW_MAX_SECTORS}`;
  }
  if (s.cmdTimeOutSeconds !== undefined && (!Number.isInteger(s.cmdTimeOutSeconds) || s.cmdTimeOutSeconds < 0 || s.cmdTimeOutSeconds > MAX_CMD_TIME_OUT_S)) {
    return `cmdTimeOutSeconds ${s.cmdTimeOutSeconds}: must be an integer 0..${MAX_CMD_TIME_OUT_S}`;
  }
  return null;
}

function errCode(e: unknown): string | null {
  const c = (e as NodeJS.ErrnoException | null)?.code;
  return typeof c === 'string' ? c : null;
}

const HINTS: Record<string, string> = {
  EINVAL: 'the kernel refused the value (dmesg says why)',
  EACCES: 'permission denied: configfs needs root',
  EPERM: 'operation not permitted (root? the right directory?)',
  ENOENT: 'no such file or directory',
  EEXIST: 'already exists',
  EBUSY: 'busy: in use',
  ENOTEMPTY: 'not empty',
  ENODEV: 'no such device',
};

function wrap(what: string, path: string, e: unknown): HostExposureError {
  if (e instanceof HostExposureError) return e;
  const code = errCode(e);
  const hint = code !== null ? `${code} (${HINTS[code] ?? (e as Error).message})` : (e as Error).message;
  return new HostExposureError(`${what} ${path}: ${hint}`, path, code);
}

interface RawDevice {
  hba: number;
  name: string;
  dir: string;
  ours: boolean;
  /** mkdir'ed with our name and never configured: a crash before the first write */
  unclaimed: boolean;
  devConfig: string;
  aliasLun: number;
  aliasWwn: string;
  enabled: boolean;
  sizeBytes: number;
  blockSize: number;
  hwMaxSectors: number;
  pgrSupport: string;
  aluaSupport: string;
  blocked: boolean;
  uio: number | null;
}

interface RawLink {
  wwn: string;
  wwnDir: string;
  tpgDir: string;
  lunDir: string;
  hostLun: number;
  linkPath: string;
  target: string;
}

interface RawTpg {
  dir: string;
  nexus: string | null;
  lunDirs: string[];
}

interface RawWwn {
  name: string;
  dir: string;
  tpgs: RawTpg[];
}

interface Snapshot {
  devices: RawDevice[];
  /** by backstore directory */
  links: Map<string, RawLink[]>;
  wwns: Map<string, RawWwn>;
  /** every LUN link, by backstore directory it points to (also to directories that are not ours) */
  allLinks: RawLink[];
}

interface LiveEntry {
  d: ExposedDevice;
  /** undo steps of expose(), kept until the link is made */
  undo: Undo[] | null;
  /** the LUN link (expose) or unlink (detach) is in flight on the thread pool */
  linking: boolean;
  unlinking: boolean;
  /** unexpose() came while one was: remove once it is done */
  removeWhenDone: boolean;
}

interface Undo {
  what: string;
  path: string;
  run(): void;
}

/**
 * configfs and sysfs for TCMU + tcm_loop. Synchronous, except the LUN link and unlink, which the
 * kernel serves by sending SCSI commands through the ring this process serves (see the header).
 *
 * Life cycle of one exposure:
 *   host.checkAvailable();  host.cleanStale(wantedNames);
 *   const d = host.expose(spec, attached);     // configfs entries; the LUN link goes off-thread
 *   const dev = new TcmuDevice({ uioPath: d.uioPath, ... }); dev.start();   // now serve the ring
 *   // attached(null, d) once the host has the SCSI device (d.scsiAddress, d.blockDevice)
 *   ...
 *   host.detach(d, () => dev.stop(() => host.unexpose(d)));   // unlink while still serving
 */
export class ConfigfsHost {
  readonly configfs: string;
  readonly sysfs: string;
  readonly dev: string;
  readonly hba: number;
  private readonly fs: KernelFs;
  private readonly log: Logger | null;
  private readonly bindTimeoutMs: number;
  private readonly live = new Map<string, LiveEntry>();
  /** user_N directories this process may remove when they become empty: it made them, or found only ours in them */
  private readonly ownedHbas = new Set<number>();

  constructor(opts: ConfigfsHostOptions = {}) {
    this.configfs = opts.configfs ?? '/sys/kernel/config';
    this.sysfs = opts.sysfs ?? '/sys';
    this.dev = opts.dev ?? '/dev';
    this.hba = opts.hba ?? DEFAULT_HBA;
    if (!Number.isInteger(this.hba) || this.hba < 0 || this.hba > 0xffffffff) throw new HostExposureError(`hba ${this.hba}: must be an integer 0..4294967295`);
    this.fs = opts.fs ?? nodeKernelFs;
    this.log = opts.log ?? null;
    this.bindTimeoutMs = opts.bindTimeoutMs ?? DEFAULT_BIND_TIMEOUT_MS;
  }

  private get coreDir(): string { return join(this.configfs, 'target', 'core'); }
  private get loopbackDir(): string { return join(this.configfs, 'target', 'loopback'); }
  private module(name: string): boolean { return this.fs.kind(join(this.sysfs, 'module', name)) === 'dir'; }

  /**
   * Throws HostExposureError naming every missing piece: configfs (module, mount), the LIO core
   * (target_core_mod), target_core_user, tcm_loop; each with the command that fixes it.
   */
  checkAvailable(): void {
    const cfg = this.configfs;
    if (this.fs.kind(cfg) !== 'dir') {
      throw new HostExposureError(`exposing LUNs on this host needs configfs, and ${cfg} does not exist: modprobe configfs; mount -t configfs none ${cfg}`, cfg, 'ENOENT');
    }
    const missing: string[] = [];
    if (this.fs.kind(join(cfg, 'target')) !== 'dir') {
      if (this.module('target_core_mod')) {
        throw new HostExposureError(`configfs is not mounted at ${cfg} (the LIO target core is loaded, but ${join(cfg, 'target')} is missing): mount -t configfs none ${cfg}`, cfg, 'ENOENT');
      }
      const empty = (() => { try { return this.fs.readdir(cfg).length === 0; } catch { return true; } })();
      missing.push(`the LIO target core (kernel module target_core_mod) is not loaded: modprobe target_core_mod` +
        (empty ? `, and mount configfs if it is not: mount -t configfs none ${cfg}` : ''));
    }
    const userHbas = (() => { try { return this.fs.readdir(this.coreDir).some((n) => /^user_\d+$/.test(n)); } catch { return false; } })();
    if (!this.module('target_core_user') && !userHbas) {
      missing.push('kernel module target_core_user (TCMU, the user-space backstore) is not loaded: modprobe target_core_user');
    }
    if (!this.module('tcm_loop') && this.fs.kind(this.loopbackDir) !== 'dir') {
      missing.push('kernel module tcm_loop (the loopback fabric that gives the host its /dev/sdX) is not loaded: modprobe tcm_loop');
    }
    if (missing.length > 0) throw new HostExposureError(`exposing LUNs on this host needs the kernel's LIO target: ${missing.join('; ')}`);
  }

  /**
   * Creates (or re-attaches) the exposure of spec.lun, synchronously up to the LUN link, which
   * then runs off the event loop: the kernel scans the new SCSI device by sending INQUIRY through
   * the ring, so start the TcmuDevice on d.uioPath right after this returns. `attached` is called
   * once the host has the device (d.scsiAddress set, d.blockDevice when sd bound in time) or with
   * the error that made the link fail (everything expose() created is then removed again).
   *
   * Creation: core/user_<hba>/<name> (alias, control: dev_config, dev_size, hw_block_size,
   * [hw_max_sectors], nl_reply_supported=-1; enable=1; attrib pgr_support=0, alua_support=0,
   * tmr_notification=1, cmd_time_out), loopback/<wwn>/tpgt_1, its nexus, lun/lun_0, then the link.
   * An existing complete entry of the same name is re-attached (probe, block_dev=1, reset_ring=1,
   * block_dev=0); an incomplete one is removed and rebuilt. A failing step undoes the earlier ones
   * in reverse and throws HostExposureError with the path and errno.
   */
  expose(spec: HostExposureSpec, attached?: AttachedCallback): ExposedDevice {
    const bad = hostExposureSpecError(spec);
    if (bad !== null) throw new HostExposureError(`host exposure of LUN ${spec.lun}: ${bad}`);
    if (this.live.has(spec.name)) throw new HostExposureError(`host exposure ${spec.name} is already exposed by this process`);
    this.checkAvailable();
    const snap = this.scan();
    const same = snap.devices.filter((d) => d.name === spec.name);
    for (const d of same) {
      if (!d.ours && !d.unclaimed) {
        throw new HostExposureError(`${d.dir} exists and is not ours (dev_config "${d.devConfig}"): choose another name or remove it`, d.dir, 'EEXIST');
      }
    }
    const wwn = snap.wwns.get(spec.wwn);
    const ourDirs = new Set(same.map((d) => d.dir));
    for (const l of snap.allLinks) {
      if (l.wwn === spec.wwn && !ourDirs.has(l.target)) {
        throw new HostExposureError(`tcm_loop WWN ${spec.wwn} already exposes ${l.target}: choose another wwn`, l.linkPath, 'EEXIST');
      }
    }
    if (same.length === 1 && this.isComplete(same[0], spec, snap)) return this.reattach(same[0], spec, snap, attached);
    // Leftovers of this name (or of this WWN) from an earlier run: remove, then build afresh; but
    // never under a process that still serves one.
    for (const d of same) {
      const uio = d.uio !== null ? join(this.dev, `uio${d.uio}`) : '';
      if (uio !== '' && this.uioBusy(uio)) {
        throw new HostExposureError(`${uio} (${d.dir}) is held by another process: another backend still serves ${spec.name}`, uio, 'EBUSY');
      }
    }
    for (const d of same) {
      this.log?.info(`${d.dir}: incomplete or changed exposure of an earlier run; removing it to rebuild`);
      this.removeRaw(d, snap);
    }
    if (wwn !== undefined && this.fs.kind(wwn.dir) === 'dir') this.removeWwn(wwn, null);
    return this.create(spec, attached);
  }

  /**
   * Removes the LUN link while this process still serves the ring, off the event loop: sd writes
   * the host's dirty pages back and flushes (SYNCHRONIZE CACHE) through us. Call before stopping
   * the TcmuDevice; unexpose() then removes the rest. No link: done(null) at once.
   */
  detach(d: ExposedDevice, done: (err: HostExposureError | null) => void): void {
    const entry = this.live.get(d.spec.name);
    if (entry?.linking || entry?.unlinking) {
      setImmediate(done, new HostExposureError(`${d.spec.name}: the LUN link is still being ${entry.linking ? 'made' : 'removed'}; wait for it`));
      return;
    }
    const links = this.linksOf(d);
    if (links.length === 0) {
      setImmediate(done, null);
      return;
    }
    if (entry) entry.unlinking = true;
    let left = links.length;
    let first: HostExposureError | null = null;
    for (const link of links) {
      this.fs.unlink(link, (err) => {
        if (err && errCode(err) !== 'ENOENT' && first === null) first = wrap('removing the LUN link', link, err);
        if (--left > 0) return;
        if (first === null) {
          d.linkPath = null;
          d.scsiAddress = null;
          d.blockDevice = null;
          d.state = 'unlinked';
        }
        if (entry) {
          entry.unlinking = false;
          if (entry.removeWhenDone) {
            try {
              this.unexpose(d);
            } catch (e) {
              this.report(undefined, e as HostExposureError, d);
            }
          }
        }
        done(first);
      });
    }
  }

  /**
   * Removes an exposure in reverse order: the LUN link (when detach() did not; then with the
   * SCSI device set offline and the ring reset first, so the kernel waits on nothing: stop the
   * TcmuDevice before), the nexus ("NULL"), lun_0, tpgt_1, the WWN, the backstore, and
   * core/user_<N> when empty and ours. Pieces already gone are skipped. An entry this process did
   * not expose is probed first: if another process holds its UIO device it is live, and this
   * throws. While expose()'s link is still being made, the removal happens once it is done.
   */
  unexpose(d: ExposedDevice): void {
    const entry = this.live.get(d.spec.name);
    if (entry?.linking || entry?.unlinking) {
      entry.removeWhenDone = true;
      this.log?.warn(`${d.spec.name}: removal deferred until the LUN ${entry.linking ? 'link' : 'unlink'} in flight is done`);
      if (entry.linking) {
        // The kernel's scan waits in the ring for INQUIRY; whoever was to answer is going away.
        // reset_ring=2 completes it with CHECK CONDITION now (not after cmd_time_out): the scan
        // fails, symlink() returns, and the removal runs.
        try { this.fs.write(join(d.backstoreDir, 'action', 'reset_ring'), '2'); } catch { /* the removal reports */ }
      }
      return;
    }
    this.remove(d, entry === undefined);
  }

  private remove(d: ExposedDevice, probe: boolean): void {
    if (probe && d.uioPath !== '' && this.uioBusy(d.uioPath)) {
      throw new HostExposureError(`${d.uioPath} (${d.backstoreDir}) is held by another process: that exposure is live; stop its backend first`, d.uioPath, 'EBUSY');
    }
    const snap = this.scan();
    const raw = snap.devices.find((x) => x.dir === d.backstoreDir);
    const errors: HostExposureError[] = [];
    if (raw !== undefined) {
      this.removeRaw(raw, snap, errors);
    } else {
      // The backstore is gone; the loopback side may remain (a crash during removal).
      const wwn = d.spec.wwn !== '' ? snap.wwns.get(d.spec.wwn) : undefined;
      if (wwn !== undefined && !snap.allLinks.some((l) => l.wwn === wwn.name)) this.removeWwn(wwn, errors);
    }
    this.live.delete(d.spec.name);
    if (errors.length > 0) {
      const e = errors[0];
      throw new HostExposureError(errors.length > 1 ? `${e.message} (and ${errors.length - 1} more)` : e.message, e.path, e.code);
    }
  }

  /** Every backstore whose dev_config starts with "vhost-scsi-ts/" (or carries our alias), with its links, UIO device and /dev/sdX. */
  list(): ExposedDevice[] {
    const snap = this.scan();
    return snap.devices.filter((d) => d.ours).map((d) => this.describe(d, snap)).sort((a, b) => a.spec.lun - b.spec.lun || a.spec.name.localeCompare(b.spec.name));
  }

  /**
   * Removes the entries of ours that `keep` does not name and no process serves (their UIO device
   * is free): a crashed run's leftovers. Entries this process exposed, and entries another live
   * process holds, stay. Returns what was removed.
   */
  cleanStale(keep: readonly string[]): ExposedDevice[] {
    const removed: ExposedDevice[] = [];
    const errors: string[] = [];
    for (const d of this.list()) {
      if (keep.includes(d.spec.name) || this.live.has(d.spec.name)) continue;
      if (d.uioPath !== '' && this.uioBusy(d.uioPath)) {
        this.log?.warn(`${d.backstoreDir}: not ours to remove: another process serves ${d.uioPath}`);
        continue;
      }
      try {
        this.remove(d, false);
        removed.push(d);
        this.log?.info(`removed stale host exposure ${d.spec.name} (LUN ${d.spec.lun}, ${d.spec.wwn || 'no WWN'})`);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length > 0) throw new HostExposureError(`removing stale host exposures: ${errors.join('; ')}`);
    return removed;
  }

  // ---- creation -----------------------------------------------------------------------------

  private create(spec: HostExposureSpec, attached: AttachedCallback | undefined): ExposedDevice {
    const fs = this.fs;
    const hbaDir = join(this.coreDir, `user_${this.hba}`);
    const dir = join(hbaDir, spec.name);
    const devConfig = DEV_CONFIG_PREFIX + spec.name;
    const wwnDir = join(this.loopbackDir, spec.wwn);
    const tpgDir = join(wwnDir, `tpgt_${TPG_TAG}`);
    const lunDir = join(tpgDir, 'lun', `lun_${HOST_LUN}`);
    const undo: Undo[] = [];
    const step = (what: string, path: string, fn: () => void): void => {
      try {
        fn();
      } catch (e) {
        throw wrap(what, path, e);
      }
    };
    const mkdir = (path: string): void => {
      step('creating', path, () => fs.mkdir(path));
      undo.push({ what: 'removing', path, run: () => fs.rmdir(path) });
    };
    const write = (path: string, value: string): void => step(`writing "${value}" to`, path, () => fs.write(path, value));
    let uioPath = '';
    try {
      if (fs.kind(hbaDir) !== 'dir') {
        mkdir(hbaDir);
        this.ownedHbas.add(this.hba);
      } else if (this.onlyOursIn(hbaDir)) {
        this.ownedHbas.add(this.hba);
      }
      mkdir(dir);
      // Our mark first: a crash after this point leaves an entry list()/cleanStale() recognise.
      write(join(dir, 'alias'), `${ALIAS_PREFIX}lun=${spec.lun} wwn=${spec.wwn}`);
      write(join(dir, 'control'), `dev_config=${devConfig}`);
      write(join(dir, 'control'), `dev_size=${spec.sizeBytes}`);
      write(join(dir, 'control'), `hw_block_size=${spec.blockSize}`);
      if (spec.hwMaxSectors !== undefined) write(join(dir, 'control'), `hw_max_sectors=${spec.hwMaxSectors}`);
      // We answer no netlink: never let the kernel wait for a reply (tcmu_init_genl_cmd_reply).
      write(join(dir, 'control'), 'nl_reply_supported=-1');
      write(join(dir, 'enable'), '1');
      write(join(dir, 'attrib', 'pgr_support'), '0');
      write(join(dir, 'attrib', 'alua_support'), '0');
      write(join(dir, 'attrib', 'tmr_notification'), '1');
      write(join(dir, 'attrib', 'cmd_time_out'), String(spec.cmdTimeOutSeconds ?? DEFAULT_CMD_TIME_OUT_S));
      const uio = this.findUio(`tcm-user/${this.hba}/${spec.name}/${devConfig}`);
      if (uio === null) throw new HostExposureError(`${dir} is enabled but no /sys/class/uio device is named tcm-user/${this.hba}/${spec.name}/${devConfig}`, dir, 'ENODEV');
      uioPath = join(this.dev, `uio${uio}`);
      if (fs.kind(uioPath) === null) throw new HostExposureError(`${uioPath} does not exist (is devtmpfs mounted on ${this.dev}?)`, uioPath, 'ENOENT');
      if (fs.kind(this.loopbackDir) !== 'dir') step('creating', this.loopbackDir, () => fs.mkdir(this.loopbackDir));
      mkdir(wwnDir);
      mkdir(tpgDir);
      write(join(tpgDir, 'nexus'), spec.initiator);
      undo.push({ what: 'dropping the nexus of', path: tpgDir, run: () => fs.write(join(tpgDir, 'nexus'), 'NULL') });
      mkdir(lunDir);
    } catch (e) {
      const err = e instanceof HostExposureError ? e : wrap('exposing', dir, e);
      throw this.rollback(undo, err, spec.name);
    }
    const d: ExposedDevice = {
      spec: { ...spec }, uioPath, backstoreDir: dir, tpgDir, scsiAddress: null, blockDevice: null,
      hba: this.hba, linkPath: null, reattached: false, state: 'unlinked',
    };
    const entry: LiveEntry = { d, undo, linking: true, unlinking: false, removeWhenDone: false };
    this.live.set(spec.name, entry);
    const linkPath = join(lunDir, spec.name);
    // Off the event loop: tcm_loop scans the LUN inside symlink(), through the ring we serve.
    fs.symlink(dir, linkPath, (err) => {
      entry.linking = false;
      if (err) {
        const e = this.rollback(undo, wrap('linking the LUN', linkPath, err), spec.name);
        this.live.delete(spec.name);
        this.report(attached, e, d);
        return;
      }
      entry.undo = null;
      d.linkPath = linkPath;
      d.state = 'online';
      d.scsiAddress = this.scsiAddress(tpgDir, HOST_LUN);
      if (entry.removeWhenDone) {
        try {
          this.unexpose(d);
          this.report(attached, new HostExposureError(`${spec.name}: removed while its LUN link was being made`), d);
        } catch (ue) {
          this.report(attached, ue as HostExposureError, d);
        }
        return;
      }
      this.waitForDisk(d, entry, () => attached?.(null, d));
    });
    return d;
  }

  private reattach(raw: RawDevice, spec: HostExposureSpec, snap: Snapshot, attached: AttachedCallback | undefined): ExposedDevice {
    const d = this.describe(raw, snap);
    if (this.fs.kind(d.uioPath) === null) throw new HostExposureError(`${d.uioPath} does not exist (is devtmpfs mounted on ${this.dev}?)`, d.uioPath, 'ENOENT');
    const busy = this.uioBusy(d.uioPath);
    if (busy) throw new HostExposureError(`${d.uioPath} (${raw.dir}) is held by another process: another backend still serves ${spec.name}`, d.uioPath, 'EBUSY');
    if (this.onlyOursIn(dirname(raw.dir))) this.ownedHbas.add(raw.hba);
    const action = (a: string): string => join(raw.dir, 'action', a);
    const write = (path: string, value: string): void => {
      try {
        this.fs.write(path, value);
      } catch (e) {
        throw wrap(`writing "${value}" to`, path, e);
      }
    };
    let blocked = false;
    try {
      try {
        write(action('block_dev'), '1');
        blocked = true;
      } catch (e) {
        if ((e as HostExposureError).code !== 'ENOENT') throw e;
        this.log?.warn(`${raw.dir}: this kernel has no action/block_dev; the ring of the earlier run is not reset`);
      }
      if (blocked) {
        write(action('reset_ring'), '1');
        write(action('block_dev'), '0');
        blocked = false;
      }
      if (this.readAttr(join(raw.dir, 'attrib', 'tmr_notification')) !== '1') write(join(raw.dir, 'attrib', 'tmr_notification'), '1');
    } catch (e) {
      if (blocked) {
        try { this.fs.write(action('block_dev'), '0'); } catch { /* reported below */ }
      }
      throw e;
    }
    const want = String(spec.cmdTimeOutSeconds ?? DEFAULT_CMD_TIME_OUT_S);
    const have = this.readAttr(join(raw.dir, 'attrib', 'cmd_time_out'));
    if (have !== want) this.log?.warn(`${raw.dir}: cmd_time_out is ${have} s, not ${want} s; the kernel refuses a change while the LUN is linked`);
    d.spec = { ...spec };
    d.reattached = true;
    d.state = 'online';
    const entry: LiveEntry = { d, undo: null, linking: false, unlinking: false, removeWhenDone: false };
    this.live.set(spec.name, entry);
    this.log?.info(`${raw.dir}: re-attached the exposure of an earlier run (${d.uioPath}, ring reset)`);
    setImmediate(() => this.waitForDisk(d, entry, () => attached?.(null, d)));
    return d;
  }

  private report(cb: AttachedCallback | undefined, e: HostExposureError, d: ExposedDevice): void {
    if (cb) cb(e, d);
    else if (this.log) this.log.error(e.message);
    else process.emitWarning(e.message, 'HostExposureWarning');
  }

  /** Undo in reverse; the result carries what could not be undone. */
  private rollback(undo: Undo[], err: HostExposureError, name: string): HostExposureError {
    const left: string[] = [];
    for (let i = undo.length - 1; i >= 0; i--) {
      const u = undo[i];
      try {
        u.run();
      } catch (e) {
        const c = errCode(e);
        if (c !== 'ENOENT' && !(c === 'ENODEV' && u.what.startsWith('dropping'))) left.push(`${u.what} ${u.path}: ${c ?? (e as Error).message}`);
      }
    }
    undo.length = 0;
    if (this.ownedHbas.has(this.hba) && this.fs.kind(join(this.coreDir, `user_${this.hba}`)) === null) this.ownedHbas.delete(this.hba);
    if (left.length === 0) return err;
    return new HostExposureError(`${err.message}; undoing ${name} left: ${left.join('; ')}`, err.path, err.code);
  }

  private waitForDisk(d: ExposedDevice, entry: LiveEntry, done: () => void): void {
    const deadline = Date.now() + this.bindTimeoutMs;
    const poll = (): void => {
      if (this.live.get(d.spec.name) !== entry) return done();
      if (d.scsiAddress !== null) d.blockDevice = this.blockDevice(d.scsiAddress);
      if (d.blockDevice !== null || Date.now() >= deadline || d.scsiAddress === null) {
        if (d.blockDevice === null && d.scsiAddress !== null && this.bindTimeoutMs > 0) {
          this.log?.warn(`${d.spec.name}: SCSI device ${d.scsiAddress} has no block device after ${this.bindTimeoutMs} ms (is sd_mod loaded?)`);
        }
        return done();
      }
      setTimeout(poll, BIND_POLL_MS);
    };
    poll();
  }

  // ---- removal ------------------------------------------------------------------------------

  /**
   * Removes one backstore and its loopback side. A LUN link still there is removed on this thread,
   * so the kernel must send nothing through the ring while unlink() runs: the SCSI device goes
   * offline, sd forgets its write cache, and the ring is reset first (see the header). Errors go
   * to `errors` (every step is tried), or are thrown at the first one.
   */
  private removeRaw(raw: RawDevice, snap: Snapshot, errors?: HostExposureError[]): void {
    const fs = this.fs;
    const fail = (what: string, path: string, e: unknown): void => collectOrThrow(what, path, e, errors);
    const hbaDir = dirname(raw.dir);
    // An HBA that held nothing but ours is ours to remove once empty.
    const hbaOurs = this.ownedHbas.has(raw.hba) || this.onlyOursIn(hbaDir);
    const links = snap.links.get(raw.dir) ?? [];
    if (links.length > 0) {
      for (const l of links) {
        const addr = this.scsiAddress(l.tpgDir, l.hostLun);
        if (addr === null) continue;
        // Best effort: no SCSI device (the scan failed) or no sd bound is fine.
        const state = join(this.sysfs, 'class', 'scsi_device', addr, 'device', 'state');
        try { fs.write(state, 'offline\n'); } catch (e) { if (errCode(e) !== 'ENOENT') this.log?.warn(`${state}: ${errCode(e) ?? (e as Error).message}`); }
        const cache = join(this.sysfs, 'class', 'scsi_disk', addr, 'cache_type');
        try { fs.write(cache, 'temporary write through\n'); } catch (e) { if (errCode(e) !== 'ENOENT') this.log?.warn(`${cache}: ${errCode(e) ?? (e as Error).message}`); }
      }
      if (raw.enabled) {
        for (const [a, v] of [['block_dev', '1'], ['reset_ring', '1']]) {
          const p = join(raw.dir, 'action', a);
          // EINVAL: not configured, no ring to reset.
          try { fs.write(p, v); } catch (e) { const c = errCode(e); if (c !== 'ENOENT' && c !== 'EINVAL') fail(`writing "${v}" to`, p, e); }
        }
      }
      for (const l of links) {
        try { fs.unlinkSync(l.linkPath); } catch (e) { fail('removing the LUN link', l.linkPath, e); }
      }
    }
    // The loopback side: the WWNs our links were in, and the one our alias names.
    const wwnNames = new Set(links.map((l) => l.wwn));
    if (raw.aliasWwn !== '') wwnNames.add(raw.aliasWwn);
    for (const name of wwnNames) {
      const w = snap.wwns.get(name);
      if (w === undefined) continue;
      // Only a WWN that links to nothing but this backstore is ours to remove.
      if (snap.allLinks.some((l) => l.wwn === name && l.target !== raw.dir)) {
        this.log?.warn(`${w.dir} also exposes other backstores; left in place`);
        continue;
      }
      this.removeWwn(w, errors ?? null);
    }
    try {
      fs.rmdir(raw.dir);
    } catch (e) {
      fail('removing', raw.dir, e);
      return;
    }
    if (hbaOurs && this.subdirs(hbaDir).length === 0) {
      try {
        fs.rmdir(hbaDir);
      } catch (e) {
        if (errCode(e) !== 'ENOTEMPTY') fail('removing', hbaDir, e);
      }
      this.ownedHbas.delete(raw.hba);
    }
  }

  /** nexus NULL, lun dirs, TPGs, the WWN; links must be gone already. */
  private removeWwn(w: RawWwn, errors: HostExposureError[] | null): void {
    const fs = this.fs;
    const fail = (what: string, path: string, e: unknown): void => collectOrThrow(what, path, e, errors);
    for (const t of w.tpgs) {
      if (t.nexus !== null) {
        const p = join(t.dir, 'nexus');
        // ENODEV: tcm_loop_drop_nexus found no nexus.
        try { fs.write(p, 'NULL'); } catch (e) { if (errCode(e) !== 'ENODEV') fail('writing "NULL" to', p, e); }
      }
      for (const l of t.lunDirs) {
        try { fs.rmdir(l); } catch (e) { fail('removing', l, e); }
      }
      try { fs.rmdir(t.dir); } catch (e) { fail('removing', t.dir, e); }
    }
    try { fs.rmdir(w.dir); } catch (e) { fail('removing', w.dir, e); }
  }

  // ---- reading configfs and sysfs -----------------------------------------------------------

  private readAttr(path: string): string | null {
    try {
      const s = this.fs.read(path);
      return s.endsWith('\n') ? s.slice(0, -1) : s;
    } catch {
      return null;
    }
  }

  private subdirs(path: string): string[] {
    let names: string[];
    try {
      names = this.fs.readdir(path);
    } catch {
      return [];
    }
    return names.filter((n) => this.fs.kind(join(path, n)) === 'dir');
  }

  private onlyOursIn(hbaDir: string): boolean {
    return this.subdirs(hbaDir).every((n) => {
      const dir = join(hbaDir, n);
      return (this.readAttr(join(dir, 'attrib', 'dev_config')) ?? '').startsWith(DEV_CONFIG_PREFIX) ||
        (this.readAttr(join(dir, 'alias')) ?? '').startsWith(ALIAS_PREFIX);
    });
  }

  private uioNames(): Map<string, number> {
    const out = new Map<string, number>();
    const cls = join(this.sysfs, 'class', 'uio');
    let names: string[];
    try {
      names = this.fs.readdir(cls);
    } catch {
      return out;
    }
    for (const n of names) {
      const m = /^uio(\d+)$/.exec(n);
      if (m === null) continue;
      const name = this.readAttr(join(cls, n, 'name'));
      if (name !== null) out.set(name, Number(m[1]));
    }
    return out;
  }

  private findUio(name: string): number | null {
    return this.uioNames().get(name) ?? null;
  }

  private uioBusy(uioPath: string): boolean {
    try {
      this.fs.probeOpen(uioPath);
      return false;
    } catch (e) {
      return errCode(e) === 'EBUSY';
    }
  }

  /** "H:0:T:L" from the TPG's address ("H:0:T", tcm_loop_tpg_address_show) and the LUN. */
  private scsiAddress(tpgDir: string, lun: number): string | null {
    const a = this.readAttr(join(tpgDir, 'address'));
    return a !== null && /^\d+:0:\d+$/.test(a) ? `${a}:${lun}` : null;
  }

  private blockDevice(addr: string): string | null {
    const names = (() => { try { return this.fs.readdir(join(this.sysfs, 'class', 'scsi_device', addr, 'device', 'block')); } catch { return []; } })();
    return names.find((n) => /^sd[a-z]+$/.test(n)) ?? names[0] ?? null;
  }

  private linksOf(d: ExposedDevice): string[] {
    const snap = this.scan();
    return (snap.links.get(d.backstoreDir) ?? []).map((l) => l.linkPath);
  }

  private scan(): Snapshot {
    const devices: RawDevice[] = [];
    const uios = this.uioNames();
    for (const hbaName of this.subdirs(this.coreDir)) {
      const m = /^user_(\d+)$/.exec(hbaName);
      if (m === null) continue;
      const hba = Number(m[1]);
      const hbaDir = join(this.coreDir, hbaName);
      for (const name of this.subdirs(hbaDir)) {
        const dir = join(hbaDir, name);
        const devConfig = this.readAttr(join(dir, 'attrib', 'dev_config')) ?? '';
        const alias = this.readAttr(join(dir, 'alias')) ?? '';
        const am = /^vhost-scsi-ts lun=(\d+) wwn=(\S+)$/.exec(alias);
        const enabled = this.readAttr(join(dir, 'enable')) === '1';
        const num = (a: string): number => {
          const v = this.readAttr(join(dir, 'attrib', a));
          return v !== null && /^\d+$/.test(v) ? Number(v) : 0;
        };
        devices.push({
          hba, name, dir,
          ours: devConfig.startsWith(DEV_CONFIG_PREFIX) || alias.startsWith(ALIAS_PREFIX),
          unclaimed: devConfig === '' && alias === '' && !enabled,
          devConfig,
          aliasLun: am !== null ? Number(am[1]) : -1,
          aliasWwn: am !== null ? am[2] : '',
          enabled,
          sizeBytes: num('dev_size'),
          blockSize: num('hw_block_size'),
          hwMaxSectors: num('hw_max_sectors'),
          pgrSupport: this.readAttr(join(dir, 'attrib', 'pgr_support')) ?? '',
          aluaSupport: this.readAttr(join(dir, 'attrib', 'alua_support')) ?? '',
          blocked: this.readAttr(join(dir, 'action', 'block_dev')) === 'blocked',
          uio: devConfig !== '' ? uios.get(`tcm-user/${hba}/${name}/${devConfig}`) ?? null : uios.get(`tcm-user/${hba}/${name}`) ?? null,
        });
      }
    }
    const wwns = new Map<string, RawWwn>();
    const allLinks: RawLink[] = [];
    for (const wwn of this.subdirs(this.loopbackDir)) {
      const wwnDir = join(this.loopbackDir, wwn);
      const tpgs: RawTpg[] = [];
      for (const tpg of this.subdirs(wwnDir)) {
        if (!/^tpgt_\d+$/.test(tpg)) continue;
        const tpgDir = join(wwnDir, tpg);
        const lunDirs: string[] = [];
        for (const lun of this.subdirs(join(tpgDir, 'lun'))) {
          const lm = /^lun_(\d+)$/.exec(lun);
          if (lm === null) continue;
          const lunDir = join(tpgDir, 'lun', lun);
          lunDirs.push(lunDir);
          let entries: string[] = [];
          try { entries = this.fs.readdir(lunDir); } catch { /* gone meanwhile */ }
          for (const e of entries) {
            const linkPath = join(lunDir, e);
            if (this.fs.kind(linkPath) !== 'link') continue;
            let target: string;
            try {
              // configfs answers readlink with a path relative to the link's directory.
              target = resolve(lunDir, this.fs.readlink(linkPath));
            } catch {
              continue;
            }
            allLinks.push({ wwn, wwnDir, tpgDir, lunDir, hostLun: Number(lm[1]), linkPath, target });
          }
        }
        const nexus = this.readAttr(join(tpgDir, 'nexus'));
        tpgs.push({ dir: tpgDir, nexus: nexus !== null && nexus !== '' ? nexus : null, lunDirs });
      }
      wwns.set(wwn, { name: wwn, dir: wwnDir, tpgs });
    }
    const links = new Map<string, RawLink[]>();
    for (const l of allLinks) {
      const list = links.get(l.target);
      if (list) list.push(l);
      else links.set(l.target, [l]);
    }
    return { devices, links, wwns, allLinks };
  }

  private nexusOf(tpgDir: string, wwn: string): string {
    const n = this.readAttr(join(tpgDir, 'nexus'));
    if (n === null || n === '') return '';
    // tcm_loop keeps an FC initiator without its "fc." (tcm_loop_tpg_nexus_store: port_ptr = &i_port[3]).
    return prefixProtocol(wwn) === 'FCP' && !n.toLowerCase().startsWith('fc.') ? `fc.${n}` : n;
  }

  private isComplete(raw: RawDevice, spec: HostExposureSpec, snap: Snapshot): boolean {
    if (raw.devConfig !== DEV_CONFIG_PREFIX + spec.name || !raw.enabled || raw.uio === null) return false;
    if (raw.blockSize !== spec.blockSize || raw.pgrSupport !== '0' || raw.aluaSupport !== '0') return false;
    const links = snap.links.get(raw.dir) ?? [];
    if (links.length !== 1) return false;
    const l = links[0];
    if (l.wwn !== spec.wwn || l.tpgDir !== join(this.loopbackDir, spec.wwn, `tpgt_${TPG_TAG}`) || l.hostLun !== HOST_LUN) return false;
    return this.nexusOf(l.tpgDir, l.wwn).toLowerCase() === spec.initiator.toLowerCase();
  }

  private describe(raw: RawDevice, snap: Snapshot): ExposedDevice {
    const links = snap.links.get(raw.dir) ?? [];
    const link = links[0];
    let tpgDir = '';
    let wwn = raw.aliasWwn;
    if (link !== undefined) {
      tpgDir = link.tpgDir;
      wwn = link.wwn;
    } else if (wwn !== '') {
      const t = join(this.loopbackDir, wwn, `tpgt_${TPG_TAG}`);
      if (this.fs.kind(t) === 'dir') tpgDir = t;
    }
    const scsiAddress = link !== undefined ? this.scsiAddress(link.tpgDir, link.hostLun) : null;
    const initiator = tpgDir !== '' ? this.nexusOf(tpgDir, wwn) : '';
    const complete = raw.enabled && raw.uio !== null && link !== undefined && initiator !== '';
    const state: ExposureState = !complete
      ? (raw.enabled && raw.uio !== null && tpgDir !== '' && initiator !== '' ? 'unlinked' : 'partial')
      : raw.blocked ? 'blocked' : 'online';
    const spec: HostExposureSpec = {
      lun: raw.aliasLun, name: raw.name, wwn, initiator, sizeBytes: raw.sizeBytes, blockSize: raw.blockSize,
    };
    if (raw.hwMaxSectors > 0) spec.hwMaxSectors = raw.hwMaxSectors;
    const cto = this.readAttr(join(raw.dir, 'attrib', 'cmd_time_out'));
    if (cto !== null && /^\d+$/.test(cto)) spec.cmdTimeOutSeconds = Number(cto);
    return {
      spec,
      uioPath: raw.uio !== null ? join(this.dev, `uio${raw.uio}`) : '',
      backstoreDir: raw.dir,
      tpgDir,
      scsiAddress,
      blockDevice: scsiAddress !== null ? this.blockDevice(scsiAddress) : null,
      hba: raw.hba,
      linkPath: link?.linkPath ?? null,
      reattached: false,
      state,
    };
  }
}

/** A teardown step failed: an already-missing piece is fine; else collect the error or throw it. */
function collectOrThrow(what: string, path: string, e: unknown, errors: HostExposureError[] | null | undefined): void {
  if (errCode(e) === 'ENOENT') return;
  const err = wrap(what, path, e);
  if (errors) errors.push(err);
  else throw err;
}
