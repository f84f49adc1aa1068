// A fake of the kernel side of configfs/sysfs for TCMU + tcm_loop, over a real directory tree in a
// temp dir, for tests and benches. ConfigfsHost talks to it through the KernelFs interface; it
// answers as Linux 6.1 does for the operations we use (drivers/target/target_core_configfs.c,
// target_core_user.c, loopback/tcm_loop.c, drivers/scsi/scsi_sysfs.c and sd.c), keeps the tree's
// attribute files showing what the kernel would show, and records every mutating step in order.
//
//   mkdir core/user_N           an HBA (needs target_core_user); hba_info, hba_mode
//   mkdir core/user_N/<name>    a TCMU device: info, control, alias, enable, ..., attrib/ (the
//                               passthrough + TCMU attributes with their defaults), action/
//                               (block_dev, reset_ring, free_kept_buf), pr/, wwn/, alua/, statistics/
//   write control               tokens split at ',' and '\n'; unknown or unmatched tokens ignored;
//                               hw_block_size/hw_max_sectors <= 0 EINVAL; max_data_area_mb,
//                               data_pages_per_blk, cmd_ring_size_mb after enable EINVAL
//   write enable                "1" somewhere in it, else EINVAL; twice EEXIST; creates
//                               /sys/class/uio/uioN (name, version, maps/map0/size) and /dev/uioN
//   write attrib/...            cmd_time_out EINVAL while exported; dev_size, dev_config,
//                               emulate_write_cache after enable ESRCH (the netlink RECONFIG event
//                               has no listener); read-only ones EACCES
//   write action/...            before enable EINVAL; block_dev 0|1; reset_ring 1|2
//   mkdir loopback/<wwn>        strstr naa./fc./iqn. or EINVAL; a SCSI host
//   mkdir <wwn>/tpgt_T          T < 32; nexus, transport_status, address "H:0:T", lun/
//   write nexus                 prefix must match the WWN's protocol (EINVAL); EEXIST; "NULL"
//                               ENODEV without a nexus, EPERM while a LUN is linked
//   symlink lun_L/x → device    device enabled (ENODEV); one link per LUN (EEXIST); the scan
//                               creates /sys/class/scsi_device/H:0:T:L (+ sd: block/sdX,
//                               scsi_disk/.../cache_type "write back"); without a nexus the scan
//                               fails (tcm_loop answers DID_ERROR) and no SCSI device appears.
//                               The scan sends INQUIRY through the ring: the link completes once
//                               the UIO device is served (autoServe, or serve())
//   unlink the link             scsi_remove_device; with sd bound and write cache on, sd sends
//                               SYNCHRONIZE CACHE through the ring: if nobody serves it, the real
//                               kernel would wait for cmd_time_out; the fake records a stall
//   rmdir                       user-made children: ENOTEMPTY; a linked device: EBUSY
//   scsi_device state           "running" | "offline"; scsi_disk cache_type: ["temporary "] +
//                               sd's four names (without "temporary ", MODE SELECT: a stall when
//                               nobody serves the ring)

import { constants as osConstants, tmpdir } from 'node:os';
import {
  lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { KernelFs } from './configfs';

export interface FakeModules {
  /** the configfs module: /sys/kernel/config exists */
  configfs: boolean;
  /** configfs mounted there */
  configfsMounted: boolean;
  target_core_mod: boolean;
  target_core_user: boolean;
  tcm_loop: boolean;
  /** sd_mod: linked LUNs get a /dev/sdX */
  sd: boolean;
}

export interface FakeConfigfsOptions {
  modules?: Partial<FakeModules>;
  /** links complete without anyone serving the ring (default true); false: only after serve() */
  autoServe?: boolean;
  /** host_no of the first tcm_loop SCSI host (default 2) */
  firstHostNo?: number;
}

export type FakeOpKind = 'mkdir' | 'rmdir' | 'write' | 'symlink' | 'unlink' | 'open';

/** One step as the kernel saw it; paths relative to the fake's root ("config/target/…", "sys/…"). */
export interface FakeOp {
  op: FakeOpKind;
  path: string;
  value?: string;
}

interface FDevice {
  dir: string;
  hba: number;
  name: string;
  configured: boolean;
  devConfig: string;
  exports: number;
  blocked: boolean;
  resets: number[];
  uio: number | null;
  maxDataAreaMb: number;
  cmdRingSizeMb: number;
}

interface FWwn { dir: string; name: string; proto: Proto; hostNo: number }
interface FTpg { dir: string; wwn: FWwn; tag: number; nexus: string | null; ports: number }
interface FLun { dir: string; tpg: FTpg; lun: number; link: { path: string; dev: FDevice; addr: string | null } | null }
interface FScsi { addr: string; dev: FDevice; state: string; wce: boolean; sd: string | null }

type Proto = 'SAS' | 'FCP' | 'iSCSI';

function sysErr(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const errno = (osConstants.errno as Record<string, number>)[code] ?? 0;
  return Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, errno: -errno, syscall, path });
}

/** strstr() order of tcm_loop_make_scsi_hba / tcm_loop_tpg_nexus_store. */
function loopProto(name: string): Proto | null {
  if (name.includes('naa.')) return 'SAS';
  if (name.includes('fc.')) return 'FCP';
  if (name.includes('iqn.')) return 'iSCSI';
  return null;
}

/** kstrto{u,s}{8,16,32,64}(s, 0): base prefix, one trailing newline; null = EINVAL, 'ERANGE'. */
function kstrto(v: string, signed: boolean, bits: number): bigint | null | 'ERANGE' {
  let s = v.endsWith('\n') ? v.slice(0, -1) : v;
  let neg = false;
  if (s.startsWith('+')) s = s.slice(1);
  else if (s.startsWith('-')) {
    if (!signed) return null;
    neg = true;
    s = s.slice(1);
  }
  let n: bigint;
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) n = BigInt(s);
  else if (/^0[0-7]*$/.test(s)) n = BigInt(`0o${s.slice(1) || '0'}`);
  else if (/^[1-9][0-9]*$/.test(s)) n = BigInt(s);
  else return null;
  if (neg) n = -n;
  const lo = signed ? -(1n << BigInt(bits - 1)) : 0n;
  const hi = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
  return n < lo || n > hi ? 'ERANGE' : n;
}

/** kstrtobool (6.1): y/Y/1/on true, n/N/0/off false. */
function kstrtobool(v: string): boolean | null {
  const c = v[0];
  if (c === 'y' || c === 'Y' || c === '1') return true;
  if (c === 'n' || c === 'N' || c === '0') return false;
  if (c === 'o' || c === 'O') {
    if (v[1] === 'n' || v[1] === 'N') return true;
    if (v[1] === 'f' || v[1] === 'F') return false;
  }
  return null;
}

/** The "%d" of match_token(): an integer with simple_strtol's base prefixes, else no match. */
function matchInt(arg: string): number | null {
  if (!/^[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(arg)) return null;
  const neg = arg.startsWith('-');
  const body = arg.replace(/^[+-]/, '');
  const n = /^0[xX]/.test(body) ? parseInt(body.slice(2), 16) : /^0/.test(body) ? parseInt(body || '0', 8) : parseInt(body, 10);
  return neg ? -n : n;
}

const SD_CACHE_TYPES = ['write through', 'none', 'write back', 'write back, no read (daft)'];

export class FakeConfigfs implements KernelFs {
  readonly root: string;
  readonly configfs: string;
  readonly sysfs: string;
  readonly dev: string;
  /** every mutating step (and UIO open probe), in order */
  readonly ops: FakeOp[] = [];
  /** steps the real kernel would have blocked on: a SCSI command into a ring nobody serves */
  readonly stalls: string[] = [];
  private readonly modules: FakeModules;
  private readonly autoServe: boolean;
  private readonly hbas = new Map<string, number>();
  private readonly devices = new Map<string, FDevice>();
  private readonly wwns = new Map<string, FWwn>();
  private readonly tpgs = new Map<string, FTpg>();
  private readonly luns = new Map<string, FLun>();
  private readonly scsi = new Map<string, FScsi>();
  private readonly busy = new Set<string>();
  private readonly served = new Set<string>();
  private readonly waiting: Array<{ uio: string; run: (scanFailed: boolean) => void }> = [];
  private held: Array<{ uio: string; go: () => void }> | null = null;
  /** rings reset with 2 while their scan was held: the held scan fails */
  private readonly failedScans = new Set<string>();
  private readonly failures: Array<{ op: FakeOpKind; suffix: string; code: string }> = [];
  private nextUio = 0;
  private nextHost: number;
  private nextSd = 0;

  constructor(opts: FakeConfigfsOptions = {}) {
    this.modules = {
      configfs: true, configfsMounted: true, target_core_mod: true, target_core_user: true, tcm_loop: true, sd: true,
      ...opts.modules,
    };
    this.autoServe = opts.autoServe ?? true;
    this.nextHost = opts.firstHostNo ?? 2;
    this.root = mkdtempSync(join(tmpdir(), 'vst-configfs-'));
    this.configfs = join(this.root, 'config');
    this.sysfs = join(this.root, 'sys');
    this.dev = join(this.root, 'dev');
    const m = this.modules;
    if (m.configfs) mkdirSync(this.configfs);
    if (m.configfs && m.configfsMounted && m.target_core_mod) {
      this.files(join(this.configfs, 'target'), {
        version: 'Target Engine Core ConfigFS Infrastructure v5.0 on Linux/x86_64 on 6.1.0-56-amd64\n',
        dbroot: '/var/target\n',
        'core/alua/lu_gps/default_lu_gp/lu_gp_id': '0\n',
        'core/alua/lu_gps/default_lu_gp/members': '',
      });
      mkdirSync(join(this.configfs, 'target', 'core', 'alua', 'tg_pt_gps'), { recursive: true });
    }
    for (const [mod, on] of [['configfs', m.configfs], ['target_core_mod', m.target_core_mod], ['target_core_user', m.target_core_user],
      ['uio', m.target_core_user], ['tcm_loop', m.tcm_loop], ['sd_mod', m.sd]] as const) {
      if (on) mkdirSync(join(this.sysfs, 'module', mod), { recursive: true });
    }
    for (const c of ['uio', 'scsi_device', 'scsi_disk', 'scsi_host']) mkdirSync(join(this.sysfs, 'class', c), { recursive: true });
    mkdirSync(this.dev);
  }

  /** Constructor options for a ConfigfsHost on this tree. */
  hostOptions(): { configfs: string; sysfs: string; dev: string; fs: KernelFs; bindTimeoutMs: number } {
    return { configfs: this.configfs, sysfs: this.sysfs, dev: this.dev, fs: this, bindTimeoutMs: 200 };
  }

  /** Paths relative to the root, as the op log has them. */
  rel(path: string): string {
    return relative(this.root, path).split(sep).join('/');
  }

  /** The next `op` on a path ending with `suffix` fails with `code` (once). */
  failNext(op: FakeOpKind, suffix: string, code: string): void {
    this.failures.push({ op, suffix, code });
  }

  /** Another process holds (or released) this UIO device: opening it is EBUSY. */
  setUioBusy(uioPath: string, busy: boolean): void {
    if (busy) this.busy.add(uioPath);
    else this.busy.delete(uioPath);
  }

  /** A TcmuDevice serves this ring now: pending LUN scans complete. */
  serve(uioPath: string): void {
    this.served.add(uioPath);
    for (let i = 0; i < this.waiting.length;) {
      if (this.waiting[i].uio === uioPath) setImmediate(this.waiting.splice(i, 1)[0].run, false);
      else i++;
    }
  }

  /** Nobody serves this ring any more (the TcmuDevice stopped, the process died). Needs autoServe false. */
  unserve(uioPath: string): void {
    this.served.delete(uioPath);
  }

  /** Hold every LUN link until releaseLinks() (a scan in progress). */
  holdLinks(): void {
    this.held ??= [];
  }

  releaseLinks(): void {
    const h = this.held ?? [];
    this.held = null;
    for (const { go } of h) go();
  }

  /** The kernel's view of a TCMU device (tests). */
  deviceState(dir: string): { configured: boolean; blocked: boolean; resets: number[]; exports: number; uio: number | null } | null {
    const d = this.devices.get(dir);
    return d ? { configured: d.configured, blocked: d.blocked, resets: [...d.resets], exports: d.exports, uio: d.uio } : null;
  }

  dispose(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  // ---- KernelFs ------------------------------------------------------------------------------

  mkdir(path: string): void {
    this.step('mkdir', path);
    if (this.exists(path)) throw sysErr('EEXIST', 'mkdir', path);
    if (!this.isDir(dirname(path))) throw sysErr('ENOENT', 'mkdir', path);
    const seg = this.cfg(path);
    if (seg === null) throw sysErr('EPERM', 'mkdir', path);
    const parent = dirname(path);
    const name = basename(path);
    if (seg.length === 3 && seg[0] === 'target' && seg[1] === 'core') return this.makeHba(path, name);
    if (seg.length === 4 && this.hbas.has(parent)) return this.makeDevice(path, name);
    if (seg.length === 2 && seg[0] === 'target' && seg[1] === 'loopback') {
      // target_core_register_fabric: no such fabric template → EINVAL.
      if (!this.modules.tcm_loop) throw sysErr('EINVAL', 'mkdir', path);
      this.files(path, { version: 'TCM Loopback Fabric module v2.1-rc2.0 on Linux/x86_64 on 6.1.0-56-amd64\n' });
      return;
    }
    if (seg.length === 3 && seg[0] === 'target' && seg[1] === 'loopback') return this.makeWwn(path, name);
    const wwn = this.wwns.get(parent);
    if (seg.length === 4 && wwn) return this.makeTpg(path, name, wwn);
    const tpg = this.tpgs.get(dirname(parent));
    if (seg.length === 6 && seg[4] === 'lun' && tpg) return this.makeLun(path, name, tpg);
    throw sysErr('EPERM', 'mkdir', path);
  }

  rmdir(path: string): void {
    this.step('rmdir', path);
    if (!this.exists(path)) throw sysErr('ENOENT', 'rmdir', path);
    const dev = this.devices.get(path);
    if (dev) {
      // The link pins its target (configfs_symlink: "making the target busy from rmdir POV").
      if (dev.exports > 0) throw sysErr('EBUSY', 'rmdir', path);
      if (dev.uio !== null) {
        rmSync(join(this.sysfs, 'class', 'uio', `uio${dev.uio}`), { recursive: true, force: true });
        rmSync(join(this.dev, `uio${dev.uio}`), { force: true });
      }
      this.devices.delete(path);
      return this.remove(path);
    }
    if (this.hbas.has(path)) {
      if ([...this.devices.values()].some((d) => dirname(d.dir) === path)) throw sysErr('ENOTEMPTY', 'rmdir', path);
      this.hbas.delete(path);
      return this.remove(path);
    }
    const wwn = this.wwns.get(path);
    if (wwn) {
      if ([...this.tpgs.values()].some((t) => t.wwn === wwn)) throw sysErr('ENOTEMPTY', 'rmdir', path);
      rmSync(join(this.sysfs, 'class', 'scsi_host', `host${wwn.hostNo}`), { recursive: true, force: true });
      this.wwns.delete(path);
      return this.remove(path);
    }
    const tpg = this.tpgs.get(path);
    if (tpg) {
      if ([...this.luns.values()].some((l) => l.tpg === tpg)) throw sysErr('ENOTEMPTY', 'rmdir', path);
      this.tpgs.delete(path); // tcm_loop_drop_naa_tpg drops a nexus still there
      return this.remove(path);
    }
    const lun = this.luns.get(path);
    if (lun) {
      if (lun.link !== null) throw sysErr('ENOTEMPTY', 'rmdir', path);
      this.luns.delete(path);
      return this.remove(path);
    }
    const seg = this.cfg(path);
    if (seg !== null && seg.length === 2 && seg[1] === 'loopback') {
      if (this.wwns.size > 0) throw sysErr('ENOTEMPTY', 'rmdir', path);
      return this.remove(path);
    }
    throw sysErr('EPERM', 'rmdir', path);
  }

  write(path: string, value: string): void {
    this.step('write', path, value);
    if (!this.exists(path) || this.isDir(path)) throw sysErr(this.exists(path) ? 'EISDIR' : 'ENOENT', 'open', path);
    const parent = dirname(path);
    const name = basename(path);
    const dev = this.devices.get(parent);
    if (dev) return this.writeDevice(dev, path, name, value);
    const attribDev = basename(parent) === 'attrib' ? this.devices.get(dirname(parent)) : undefined;
    if (attribDev) return this.writeAttrib(attribDev, path, name, value);
    const actionDev = basename(parent) === 'action' ? this.devices.get(dirname(parent)) : undefined;
    if (actionDev) return this.writeAction(actionDev, path, name, value);
    const tpg = this.tpgs.get(parent);
    if (tpg && name === 'nexus') return this.writeNexus(tpg, path, value);
    if (tpg && name === 'transport_status') {
      if (value.startsWith('online') || value.startsWith('offline')) return this.file(path, `${value.startsWith('online') ? 'online' : 'offline'}\n`);
      throw sysErr('EINVAL', 'write', path);
    }
    const s = this.scsiFor(path);
    if (s) return this.writeScsi(s, path, name, value);
    throw sysErr('EACCES', 'open', path);
  }

  read(path: string): string {
    const tpg = this.tpgs.get(dirname(path));
    if (tpg && basename(path) === 'nexus' && tpg.nexus === null) throw sysErr('ENODEV', 'read', path);
    const owner = this.devices.get(dirname(path)) ?? (basename(dirname(path)) === 'action' ? this.devices.get(dirname(dirname(path))) : undefined);
    if (owner && ['control', 'reset_ring', 'free_kept_buf'].includes(basename(path))) throw sysErr('EACCES', 'open', path);
    return readFileSync(path, 'utf8');
  }

  readdir(path: string): string[] {
    return readdirSync(path);
  }

  kind(path: string): 'dir' | 'file' | 'link' | null {
    try {
      const st = lstatSync(path);
      return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file';
    } catch {
      return null;
    }
  }

  readlink(path: string): string {
    return readlinkSync(path);
  }

  symlink(target: string, path: string, done: (err: NodeJS.ErrnoException | null) => void): void {
    try {
      this.step('symlink', path, this.rel(resolve(target)));
      const lun = this.luns.get(dirname(path));
      if (!lun) throw sysErr('EPERM', 'symlink', path);
      if (this.exists(path)) throw sysErr('EEXIST', 'symlink', path);
      const dev = this.devices.get(resolve(target));
      if (!dev) throw sysErr('EINVAL', 'symlink', path);
      // target_fabric_port_link: "se_device not configured yet, cannot port link" / "Port Symlink already exists".
      if (!dev.configured) throw sysErr('ENODEV', 'symlink', path);
      if (lun.link !== null) throw sysErr('EEXIST', 'symlink', path);
      const uio = join(this.dev, `uio${dev.uio}`);
      const run = (scanFailed: boolean): void => {
        this.link(lun, dev, path, scanFailed);
        done(null);
      };
      // tcm_loop_port_link → scsi_add_device: INQUIRY through the ring before symlink() returns.
      const go = (): void => {
        if (this.failedScans.delete(uio)) setImmediate(run, true);
        else if (this.autoServe || this.served.has(uio) || lun.tpg.nexus === null) setImmediate(run, false);
        else this.waiting.push({ uio, run });
      };
      if (this.held) this.held.push({ uio, go });
      else go();
    } catch (e) {
      setImmediate(done, e as NodeJS.ErrnoException);
    }
  }

  unlink(path: string, done: (err: NodeJS.ErrnoException | null) => void): void {
    try {
      this.unlinkSync(path);
    } catch (e) {
      setImmediate(done, e as NodeJS.ErrnoException);
      return;
    }
    setImmediate(done, null);
  }

  unlinkSync(path: string): void {
    this.step('unlink', path);
    if (this.kind(path) === null) throw sysErr('ENOENT', 'unlink', path);
    const lun = this.luns.get(dirname(path));
    if (!lun || lun.link === null || lun.link.path !== path) throw sysErr('EPERM', 'unlink', path);
    const { dev, addr } = lun.link;
    if (addr !== null) {
      const s = this.scsi.get(addr);
      const uio = join(this.dev, `uio${dev.uio}`);
      // tcm_loop_port_unlink → scsi_remove_device → sd_shutdown: SYNCHRONIZE CACHE when WCE.
      if (s && s.sd !== null && s.wce && !this.isServed(uio)) this.stalls.push(`SYNCHRONIZE CACHE to ${addr} while removing ${this.rel(path)}: nobody serves ${this.rel(uio)}`);
      if (s?.sd) rmSync(join(this.dev, s.sd), { force: true });
      rmSync(join(this.sysfs, 'class', 'scsi_device', addr), { recursive: true, force: true });
      rmSync(join(this.sysfs, 'class', 'scsi_disk', addr), { recursive: true, force: true });
      this.scsi.delete(addr);
    }
    dev.exports--;
    lun.tpg.ports--;
    lun.link = null;
    unlinkSync(path);
  }

  probeOpen(path: string): void {
    this.step('open', path);
    if (this.kind(path) === null) throw sysErr('ENOENT', 'open', path);
    if (this.busy.has(path)) throw sysErr('EBUSY', 'open', path);
  }

  // ---- the kernel's objects -------------------------------------------------------------------

  private makeHba(path: string, name: string): void {
    // target_core_call_addhbatotarget: "<plugin>_<id>"; the plugin must be registered.
    const m = /^([a-z]+)_(.+)$/.exec(name);
    const id = m ? kstrto(m[2], false, 64) : null;
    if (m === null || id === null || id === 'ERANGE') throw sysErr('EINVAL', 'mkdir', path);
    if (m[1] !== 'user' || !this.modules.target_core_user) throw sysErr('EINVAL', 'mkdir', path);
    this.files(path, { hba_info: `HBA Index: ${this.hbas.size + 1} plugin: user version: v5.0\n`, hba_mode: '0\n' });
    this.hbas.set(path, Number(id));
  }

  private makeDevice(path: string, name: string): void {
    this.files(path, {
      info: 'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 0  HwMaxSectors: 0\n        Config: NULL Size: 0 MaxDataAreaMB: 1024 DataPagesPerBlk: 1 CmdRingSizeMB: 8\n',
      control: '', alias: '', udev_path: '', enable: '0\n', lba_map: '',
      alua_lu_gp: 'LU Group Alias: default_lu_gp\nLU Group ID: 0\n',
      'attrib/alua_support': '1\n', 'attrib/cmd_ring_size_mb': '8\n', 'attrib/cmd_time_out': '30\n',
      'attrib/data_pages_per_blk': '1\n', 'attrib/dev_config': '\n', 'attrib/dev_size': '0\n', 'attrib/emulate_pr': '1\n',
      'attrib/emulate_write_cache': '0\n', 'attrib/enforce_pr_isids': '1\n', 'attrib/force_pr_aptpl': '0\n',
      'attrib/hw_block_size': '0\n', 'attrib/hw_max_sectors': '0\n', 'attrib/hw_pi_prot_type': '0\n', 'attrib/hw_queue_depth': '0\n',
      'attrib/max_data_area_mb': '1024\n', 'attrib/nl_reply_supported': '0\n', 'attrib/pgr_support': '1\n',
      'attrib/qfull_time_out': '-1\n', 'attrib/tmr_notification': '0\n',
      'action/block_dev': 'unblocked\n', 'action/reset_ring': '', 'action/free_kept_buf': '',
      'pr/res_holder': 'No SPC-3 Reservation holder\n', 'pr/res_type': 'SPC_PASSTHROUGH\n',
      'wwn/vpd_unit_serial': 'T10 VPD Unit Serial Number: \n', 'wwn/vendor_id': 'LIO-ORG\n',
      'alua/default_tg_pt_gp/alua_access_state': '0\n', 'statistics/scsi_dev/indx': '0\n',
    });
    this.devices.set(path, {
      dir: path, hba: this.hbas.get(dirname(path))!, name, configured: false, devConfig: '', exports: 0, blocked: false,
      resets: [], uio: null, maxDataAreaMb: 1024, cmdRingSizeMb: 8,
    });
  }

  private makeWwn(path: string, name: string): void {
    const proto = loopProto(name);
    if (proto === null || Buffer.byteLength(name) >= 256) throw sysErr('EINVAL', 'mkdir', path);
    const hostNo = this.nextHost++;
    mkdirSync(join(path, 'fabric_statistics'), { recursive: true });
    this.files(join(this.sysfs, 'class', 'scsi_host', `host${hostNo}`), { proc_name: 'tcm_loopback\n' });
    this.wwns.set(path, { dir: path, name, proto, hostNo });
  }

  private makeTpg(path: string, name: string, wwn: FWwn): void {
    // tcm_loop_make_naa_tpg: "tpgt_" then kstrtoul(…, 10), below TL_TPGS_PER_HBA (32).
    const m = /^tpgt_([0-9]+)$/.exec(name);
    if (m === null || Number(m[1]) >= 32) throw sysErr('EINVAL', 'mkdir', path);
    const tag = Number(m[1]);
    this.files(path, {
      nexus: '', transport_status: 'online\n', address: `${wwn.hostNo}:0:${tag}\n`, 'attrib/fabric_prot_type': '0\n',
    });
    for (const d of ['lun', 'acls', 'auth', 'param', 'np']) mkdirSync(join(path, d));
    this.tpgs.set(path, { dir: path, wwn, tag, nexus: null, ports: 0 });
  }

  private makeLun(path: string, name: string, tpg: FTpg): void {
    const m = /^lun_(.+)$/.exec(name);
    const n = m ? kstrto(m[1], false, 64) : null;
    if (n === null || n === 'ERANGE') throw sysErr('EINVAL', 'mkdir', path);
    this.files(path, {
      alua_tg_pt_gp: 'TG Port Alias: default_tg_pt_gp\nTG Port Group ID: 0\n', alua_tg_pt_offline: '0\n',
      alua_tg_pt_status: '0\n', alua_tg_pt_write_md: '0\n',
    });
    mkdirSync(join(path, 'statistics'));
    this.luns.set(path, { dir: path, tpg, lun: Number(n), link: null });
  }

  private link(lun: FLun, dev: FDevice, path: string, scanFailed: boolean): void {
    // configfs answers readlink with a path relative to the link's directory.
    symlinkSync(relative(dirname(path), dev.dir), path);
    dev.exports++;
    lun.tpg.ports++;
    let addr: string | null = null;
    // Without a nexus tcm_loop fails the scan's INQUIRY with DID_ERROR: no SCSI device; nor when
    // the INQUIRY was failed by reset_ring=2. tcm_loop_port_link returns 0 either way.
    if (lun.tpg.nexus !== null && !scanFailed) {
      addr = `${lun.tpg.wwn.hostNo}:0:${lun.tpg.tag}:${lun.lun}`;
      const sdev = join(this.sysfs, 'class', 'scsi_device', addr, 'device');
      this.files(sdev, { state: 'running\n', vendor: 'VHOSTSTS\n', timeout: '30\n' });
      let sd: string | null = null;
      if (this.modules.sd) {
        sd = `sd${this.sdName(this.nextSd++)}`;
        mkdirSync(join(sdev, 'block', sd), { recursive: true });
        this.files(join(this.sysfs, 'class', 'scsi_disk', addr), { cache_type: 'write back\n' });
        writeFileSync(join(this.dev, sd), '');
      }
      this.scsi.set(addr, { addr, dev, state: 'running', wce: true, sd });
    }
    lun.link = { path, dev, addr };
  }

  private sdName(i: number): string {
    let s = '';
    let n = i;
    do {
      s = String.fromCharCode(97 + (n % 26)) + s;
      n = Math.floor(n / 26) - 1;
    } while (n >= 0);
    return s;
  }

  private configure(dev: FDevice): void {
    const a = (n: string): string => readFileSync(join(dev.dir, 'attrib', n), 'utf8').trim();
    if (a('hw_block_size') === '0') this.file(join(dev.dir, 'attrib', 'hw_block_size'), '512\n');
    if (a('hw_max_sectors') === '0') this.file(join(dev.dir, 'attrib', 'hw_max_sectors'), '128\n');
    this.file(join(dev.dir, 'attrib', 'hw_queue_depth'), '128\n');
    const n = this.nextUio++;
    dev.uio = n;
    dev.configured = true;
    const name = dev.devConfig !== '' ? `tcm-user/${dev.hba}/${dev.name}/${dev.devConfig}` : `tcm-user/${dev.hba}/${dev.name}`;
    const size = (BigInt(dev.maxDataAreaMb) << 20n) + (BigInt(dev.cmdRingSizeMb) << 20n);
    this.files(join(this.sysfs, 'class', 'uio', `uio${n}`), {
      name: `${name}\n`, version: '2\n', event: '0\n',
      'maps/map0/name': 'tcm-user command & data buffer\n', 'maps/map0/addr': '0xffffb0a5c0000000\n',
      'maps/map0/size': `0x${size.toString(16).padStart(16, '0')}\n`, 'maps/map0/offset': '0x0\n',
    });
    writeFileSync(join(this.dev, `uio${n}`), '');
    this.file(join(dev.dir, 'enable'), '1\n');
  }

  // ---- attribute stores -----------------------------------------------------------------------

  private writeDevice(dev: FDevice, path: string, name: string, value: string): void {
    switch (name) {
      case 'control': return this.control(dev, path, value);
      case 'enable':
        if (!value.includes('1')) throw sysErr('EINVAL', 'write', path);
        if (dev.configured) throw sysErr('EEXIST', 'write', path);
        return this.configure(dev);
      case 'alias': case 'udev_path': {
        if (Buffer.byteLength(value) > 511 || value.length === 0) throw sysErr('EINVAL', 'write', path);
        return this.file(path, `${value.endsWith('\n') ? value.slice(0, -1) : value}\n`);
      }
      default: throw sysErr('EACCES', 'open', path);
    }
  }

  private control(dev: FDevice, path: string, value: string): void {
    const attrib = (n: string, v: string | number): void => this.file(join(dev.dir, 'attrib', n), `${v}\n`);
    for (const tok of value.split(/[,\n]/)) {
      if (tok === '') continue;
      const eq = tok.indexOf('=');
      if (eq < 0) continue;
      const key = tok.slice(0, eq);
      const arg = tok.slice(eq + 1);
      switch (key) {
        case 'dev_config':
          if (arg === '') break; // "%s" matches no empty string: ignored
          dev.devConfig = arg.slice(0, 255);
          attrib('dev_config', dev.devConfig);
          break;
        case 'dev_size': {
          if (arg === '') break;
          const v = kstrto(arg, false, 64);
          if (v === null || v === 'ERANGE') throw sysErr('EINVAL', 'write', path);
          attrib('dev_size', v.toString());
          break;
        }
        case 'hw_block_size': case 'hw_max_sectors': case 'nl_reply_supported':
        case 'max_data_area_mb': case 'data_pages_per_blk': case 'cmd_ring_size_mb': {
          const v = matchInt(arg);
          if (v === null) break; // "%d" does not match: ignored
          if (key === 'nl_reply_supported') {
            attrib(key, v);
            break;
          }
          if (key === 'hw_block_size' || key === 'hw_max_sectors') {
            if (v <= 0) throw sysErr('EINVAL', 'write', path); // tcmu_set_dev_attrib
            attrib(key, v);
            break;
          }
          // "Cannot set … after it has been enabled."
          if (dev.configured || v <= 0) throw sysErr('EINVAL', 'write', path);
          if (key === 'max_data_area_mb') dev.maxDataAreaMb = v;
          if (key === 'cmd_ring_size_mb') dev.cmdRingSizeMb = Math.min(v, 8);
          attrib(key, key === 'cmd_ring_size_mb' ? dev.cmdRingSizeMb : v);
          break;
        }
        default: break;
      }
    }
  }

  private writeAttrib(dev: FDevice, path: string, name: string, value: string): void {
    const num = (signed: boolean, bits: number): bigint => {
      const v = kstrto(value, signed, bits);
      if (v === null) throw sysErr('EINVAL', 'write', path);
      if (v === 'ERANGE') throw sysErr('ERANGE', 'write', path);
      return v;
    };
    switch (name) {
      case 'cmd_time_out': {
        if (dev.exports > 0) throw sysErr('EINVAL', 'write', path); // "while exports exist"
        return this.file(path, `${num(false, 32)}\n`);
      }
      case 'qfull_time_out': {
        const v = num(true, 32);
        if (v < -1n) throw sysErr('EINVAL', 'write', path);
        return this.file(path, `${v}\n`);
      }
      case 'tmr_notification': {
        const v = num(false, 8);
        if (v > 1n) throw sysErr('EINVAL', 'write', path);
        return this.file(path, `${v}\n`);
      }
      case 'nl_reply_supported': return this.file(path, `${num(true, 8)}\n`);
      case 'pgr_support': case 'alua_support': case 'emulate_pr': {
        const b = kstrtobool(value);
        if (b === null) throw sysErr('EINVAL', 'write', path);
        return this.file(path, b ? '1\n' : '0\n');
      }
      case 'dev_size': case 'emulate_write_cache': {
        const v = num(false, name === 'dev_size' ? 64 : 8);
        // A configured device sends TCMU_CMD_RECONFIG_DEVICE; with no netlink listener: -ESRCH.
        if (dev.configured) throw sysErr('ESRCH', 'write', path);
        return this.file(path, `${v}\n`);
      }
      case 'dev_config': {
        const s = value.endsWith('\n') ? value.slice(0, -1) : value;
        if (value.length === 0 || value.length > 255) throw sysErr('EINVAL', 'write', path);
        if (dev.configured) throw sysErr('ESRCH', 'write', path);
        dev.devConfig = s;
        return this.file(path, `${s}\n`);
      }
      default: throw sysErr('EACCES', 'open', path);
    }
  }

  private writeAction(dev: FDevice, path: string, name: string, value: string): void {
    if (!dev.configured) throw sysErr('EINVAL', 'write', path); // "Device is not configured."
    const v = kstrto(value, false, name === 'free_kept_buf' ? 16 : 8);
    if (v === null || v === 'ERANGE') throw sysErr(v === null ? 'EINVAL' : 'ERANGE', 'write', path);
    switch (name) {
      case 'block_dev':
        if (v > 1n) throw sysErr('EINVAL', 'write', path);
        dev.blocked = v === 1n;
        return this.file(path, dev.blocked ? 'blocked\n' : 'unblocked\n');
      case 'reset_ring': {
        if (v !== 1n && v !== 2n) throw sysErr('EINVAL', 'write', path);
        dev.resets.push(Number(v));
        // A scan waiting in this ring gets its INQUIRY back: BUSY (1) is retried into the ring
        // again; CHECK CONDITION (2) ends the scan, and symlink() returns.
        const uio = join(this.dev, `uio${dev.uio}`);
        if (v === 2n) {
          if (this.held?.some((x) => x.uio === uio)) this.failedScans.add(uio);
          for (let i = 0; i < this.waiting.length;) {
            if (this.waiting[i].uio === uio) setImmediate(this.waiting.splice(i, 1)[0].run, true);
            else i++;
          }
        }
        return;
      }
      case 'free_kept_buf':
        return;
      default: throw sysErr('EACCES', 'open', path);
    }
  }

  private writeNexus(tpg: FTpg, path: string, value: string): void {
    if (value.startsWith('NULL')) {
      if (tpg.nexus === null) throw sysErr('ENODEV', 'write', path);
      // "Unable to remove TCM_Loop I_T Nexus with active TPG port count"
      if (tpg.ports > 0) throw sysErr('EPERM', 'write', path);
      tpg.nexus = null;
      return this.file(path, '');
    }
    if (Buffer.byteLength(value) >= 256) throw sysErr('EINVAL', 'write', path);
    const proto = loopProto(value);
    // "Passed SAS Initiator Port … does not match target port protoid" / "Unable to locate prefix"
    if (proto === null || proto !== tpg.wwn.proto) throw sysErr('EINVAL', 'write', path);
    const name = value.endsWith('\n') ? value.slice(0, -1) : value;
    if (tpg.nexus !== null) throw sysErr('EEXIST', 'write', path);
    tpg.nexus = proto === 'FCP' ? name.slice(3) : name; // the FC nexus is kept without "fc."
    this.file(path, `${tpg.nexus}\n`);
  }

  private scsiFor(path: string): FScsi | undefined {
    const rel = relative(join(this.sysfs, 'class'), path).split(sep);
    if (rel.length === 4 && rel[0] === 'scsi_device' && rel[2] === 'device' && rel[3] === 'state') return this.scsi.get(rel[1]);
    if (rel.length === 3 && rel[0] === 'scsi_disk' && rel[2] === 'cache_type') return this.scsi.get(rel[1]);
    return undefined;
  }

  private writeScsi(s: FScsi, path: string, name: string, value: string): void {
    const v = value.endsWith('\n') ? value.slice(0, -1) : value;
    if (name === 'state') {
      if (v !== 'running' && v !== 'offline') throw sysErr('EINVAL', 'write', path);
      s.state = v;
      return this.file(path, `${v}\n`);
    }
    const temporary = v.startsWith('temporary ');
    const ct = SD_CACHE_TYPES.indexOf(temporary ? v.slice('temporary '.length) : v);
    if (ct < 0) throw sysErr('EINVAL', 'write', path);
    const uio = join(this.dev, `uio${s.dev.uio}`);
    // Without "temporary " sd sends MODE SENSE/MODE SELECT through the ring.
    if (!temporary && !this.isServed(uio)) this.stalls.push(`MODE SELECT to ${s.addr}: nobody serves ${this.rel(uio)}`);
    s.wce = (ct & 2) !== 0;
    this.file(path, `${SD_CACHE_TYPES[ct]}\n`);
  }

  // ---- helpers --------------------------------------------------------------------------------

  private step(op: FakeOpKind, path: string, value?: string): void {
    const rec: FakeOp = { op, path: this.rel(path) };
    if (value !== undefined) rec.value = value;
    this.ops.push(rec);
    const i = this.failures.findIndex((f) => f.op === op && path.endsWith(f.suffix));
    if (i >= 0) {
      const f = this.failures.splice(i, 1)[0];
      throw sysErr(f.code, op, path);
    }
  }

  private isServed(uio: string): boolean {
    return this.autoServe || this.served.has(uio);
  }

  /** Path segments below the mounted configfs, or null. */
  private cfg(path: string): string[] | null {
    if (!this.modules.configfsMounted) return null;
    const rel = relative(this.configfs, path);
    if (rel === '' || rel.startsWith('..')) return null;
    return rel.split(sep);
  }

  private exists(path: string): boolean {
    return this.kind(path) !== null;
  }

  private isDir(path: string): boolean {
    return this.kind(path) === 'dir';
  }

  private file(path: string, content: string): void {
    writeFileSync(path, content);
  }

  private files(dir: string, entries: Record<string, string>): void {
    mkdirSync(dir, { recursive: true });
    for (const [name, content] of Object.entries(entries)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), content);
    }
  }

  private remove(path: string): void {
    rmSync(path, { recursive: true, force: true });
  }
}
