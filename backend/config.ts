// The serve configuration: one model reached from the command line (--lun specs) and from a JSON
// file (--config). Every error is a ConfigError with a message a person can act on.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AluaState, parseAluaState, parseSize, portNameError, protocolOfPortName } from '../scsi-emul';
import { isLogLevel, type LogLevel } from './log';
import { tcmLoopNameError } from './tcmu/configfs';
import { MAX_REQUEST_QUEUES } from './virtio-scsi/device';
import { MAX_LUN } from './virtio-scsi/lun-address';
import { MAX_POLL_US } from './vring';

export class ConfigError extends Error {}

export type BackstoreKind = 'ram' | 'file';

export type LunIo = 'auto' | 'inline' | 'threads' | 'uring';
const LUN_IO: readonly LunIo[] = ['auto', 'inline', 'threads', 'uring'];

export interface LunConfig {
  lun: number;
  backstore: BackstoreKind;
  /** bytes; required for ram, for file only when the image is created */
  size?: number;
  path?: string;
  readOnly: boolean;
  direct: boolean;
  /**
   * How a file backstore's reads and writes run: `inline` on the event loop (tmpfs/ramfs: a memcpy
   * in the kernel), `threads` on the addon's I/O threads, `uring` through the addon's io_uring,
   * `auto` inline for memory-backed files and otherwise uring where the kernel allows it, else threads.
   */
  io: LunIo;
  blockSize: 512 | 4096;
  /** 4096 with block-size 512 is 512e (READ CAPACITY(16) exponent 3); absent: the block size */
  physicalBlockSize?: 512 | 4096;
  writeCache: boolean;
  vendor?: string;
  product?: string;
  revision?: string;
  serial?: string;
}

/**
 * One vhost-user socket: a virtio-scsi controller, i.e. one SCSI target port of the shared target,
 * and the one initiator port (the frontend's) that comes through it.
 */
export interface PortConfig {
  socket: string;
  /** relative target port identifier, 1..65535 (SPC-4 §7.8.6.5); unique per backend */
  targetPortId: number;
  /**
   * target port name, tcm_loop style: naa.<16 hex> (SAS), fc.<16 hex> (FC) or iqn./eui. (iSCSI);
   * the prefix picks the PROTOCOL IDENTIFIER of VPD 83h and of PR TransportIDs
   */
  wwn: string;
  /** initiator port name of the frontend: same protocol as wwn; stable across reconnects (PR and UA state key on it) */
  initiator: string;
  /** target port group (ALUA) */
  group: number;
  /** request queues; pass the same num_queues to QEMU */
  queues: number;
}

/**
 * A LUN exposed on this host as well: a TCMU user backstore served by our core, behind a tcm_loop
 * target port (backend/tcmu). The path is one more I_T nexus of the shared LU.
 */
export interface HostLunConfig {
  lun: number;
  /** tcm_loop WWN (target port name); its prefix picks SAS, FC or iSCSI emulation */
  wwn: string;
  /** the tcm_loop nexus (initiator port name), same prefix */
  initiator: string;
  /** relative target port id of the tcm_loop port (unique among all ports) */
  targetPortId: number;
  /** ALUA target port group */
  group: number;
}

/** An ALUA target port group and its configured access state. */
export interface TargetPortGroupEntry {
  id: number;
  state: AluaState;
  preferred: boolean;
}

export interface ServeConfig {
  /** the first port's socket (what a single-socket user named with --socket) */
  socket: string;
  /** the first port's request queues */
  queues: number;
  /** request queues spin this many µs for new buffers before sleeping (0: never spin) */
  pollUs: number;
  logLevel: LogLevel;
  /** the first port's initiator port name */
  initiatorId: string;
  /** every socket served; at least one */
  ports: PortConfig[];
  /** ALUA groups; absent: one group 1, active/optimized, holding every port (the core's default) */
  targetPortGroups?: TargetPortGroupEntry[];
  /** LUNs also exposed on this host through tcm_loop + TCMU */
  hostLuns: HostLunConfig[];
  /** persistent reservations with APTPL=1 (survive a host reboot) */
  stateDir: string;
  /** persistent reservations with APTPL=0 (survive a backend restart, not a reboot: reliability.md §4.7) */
  runDir: string;
  luns: LunConfig[];
  /** The --config file; SIGHUP re-reads it and applies its LUN changes (backend/reload.ts). */
  configFile?: string;
  /** LUNs given with --lun: a reload leaves them as they are (only the file's LUNs are managed). */
  commandLineLuns?: number[];
}

/** Port fields as given (CLI --port, the file's "ports"), before defaults. */
export interface PortSpec {
  socket: string;
  targetPortId?: number;
  wwn?: string;
  initiator?: string;
  group?: number;
  queues?: number;
}

/** Host exposure fields as given (CLI --host-lun, the file's "hostLuns"), before defaults. */
export interface HostLunSpec {
  lun: number;
  wwn?: string;
  initiator?: string;
  targetPortId?: number;
  group?: number;
}

/** The loose model both the command line and the file produce; finishConfig checks and completes it. */
export interface PartialConfig extends Partial<Omit<ServeConfig, 'ports' | 'hostLuns'>> {
  ports?: PortSpec[];
  hostLuns?: HostLunSpec[];
}

const LUN_KEYS = ['path', 'size', 'readonly', 'direct', 'io', 'block-size', 'physical-block-size', 'write-cache', 'vendor', 'product', 'revision', 'serial'] as const;

function parseBool(key: string, v: string | boolean | undefined): boolean {
  if (v === undefined || v === true || v === 'on' || v === 'true' || v === 'yes' || v === '1') return true;
  if (v === false || v === 'off' || v === 'false' || v === 'no' || v === '0') return false;
  throw new ConfigError(`${key}: expected on/off, got "${v}"`);
}

function parseSizeValue(what: string, v: unknown): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v <= 0) throw new ConfigError(`${what}: size must be a positive integer number of bytes`);
    return v;
  }
  if (typeof v !== 'string') throw new ConfigError(`${what}: size must be a number or a string like 4G`);
  try {
    return parseSize(v);
  } catch (e) {
    throw new ConfigError(`${what}: ${(e as Error).message}`);
  }
}

function parseLunNumber(what: string, v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_LUN) throw new ConfigError(`${what}: LUN must be an integer 0..${MAX_LUN}`);
  return n;
}

function parseIdentity(what: string, key: 'vendor' | 'product' | 'revision' | 'serial', v: unknown): string {
  const max = { vendor: 8, product: 16, revision: 4, serial: 64 }[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > max || !/^[\x20-\x7e]+$/.test(v)) {
    throw new ConfigError(`${what}: ${key} must be 1..${max} printable ASCII characters`);
  }
  return v;
}

/** Normalise one LUN from loose key/value input (CLI or JSON). */
function buildLun(what: string, lun: number, backstore: string, kv: Record<string, unknown>): LunConfig {
  if (backstore !== 'ram' && backstore !== 'file') throw new ConfigError(`${what}: unknown backstore "${backstore}" (ram or file)`);
  const out: LunConfig = { lun, backstore, readOnly: false, direct: false, io: 'auto', blockSize: 512, writeCache: true };
  for (const [key, value] of Object.entries(kv)) {
    switch (key) {
      case 'path':
        if (typeof value !== 'string' || value === '') throw new ConfigError(`${what}: path must be a non-empty string`);
        out.path = value;
        break;
      case 'size': out.size = parseSizeValue(what, value); break;
      case 'readonly': case 'readOnly': out.readOnly = parseBool(`${what}: readonly`, value as string | boolean); break;
      case 'direct': out.direct = parseBool(`${what}: direct`, value as string | boolean); break;
      case 'io':
        if (!LUN_IO.includes(value as LunIo)) throw new ConfigError(`${what}: io must be one of ${LUN_IO.join(', ')}`);
        out.io = value as LunIo;
        break;
      case 'write-cache': case 'writeCache': out.writeCache = parseBool(`${what}: write-cache`, value as string | boolean); break;
      case 'block-size': case 'blockSize': {
        const bs = Number(value);
        if (bs !== 512 && bs !== 4096) throw new ConfigError(`${what}: block-size must be 512 or 4096`);
        out.blockSize = bs;
        break;
      }
      case 'physical-block-size': case 'physicalBlockSize': {
        const pbs = Number(value);
        if (pbs !== 512 && pbs !== 4096) throw new ConfigError(`${what}: physical-block-size must be 512 or 4096`);
        out.physicalBlockSize = pbs;
        break;
      }
      case 'vendor': case 'product': case 'revision': case 'serial':
        out[key] = parseIdentity(what, key, value);
        break;
      case 'lun': case 'backstore': break;
      default:
        throw new ConfigError(`${what}: unknown option "${key}" (known: ${LUN_KEYS.join(', ')})`);
    }
  }
  if (backstore === 'ram') {
    if (out.size === undefined) throw new ConfigError(`${what}: a ram backstore needs size=`);
    if (out.path !== undefined) throw new ConfigError(`${what}: a ram backstore takes no path`);
    if (out.direct) throw new ConfigError(`${what}: direct applies to file backstores only`);
    if (out.io !== 'auto') throw new ConfigError(`${what}: io applies to file backstores only`);
  } else if (out.path === undefined) {
    throw new ConfigError(`${what}: a file backstore needs path=`);
  } else if (out.io === 'inline' && out.direct) {
    throw new ConfigError(`${what}: io=inline cannot be combined with direct (O_DIRECT I/O waits for the device)`);
  }
  if (out.physicalBlockSize !== undefined && out.physicalBlockSize < out.blockSize) {
    throw new ConfigError(`${what}: physical-block-size ${out.physicalBlockSize} is smaller than the ${out.blockSize}-byte block size`);
  }
  if (out.size !== undefined && out.size % out.blockSize !== 0) {
    throw new ConfigError(`${what}: size ${out.size} is not a multiple of the ${out.blockSize}-byte block size`);
  }
  return out;
}

/** `0:file:path=IMG,size=4G,readonly` or `1:ram:size=1G`. */
export function parseLunSpec(spec: string): LunConfig {
  const what = `--lun ${spec}`;
  const m = /^([^:]+):([^:]+)(?::(.*))?$/.exec(spec);
  if (!m) throw new ConfigError(`${what}: expected LUN:BACKSTORE[:key=value,...]`);
  const kv: Record<string, string | boolean> = {};
  if (m[3]) {
    for (const part of m[3].split(',')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const key = eq < 0 ? part : part.slice(0, eq);
      if (key in kv) throw new ConfigError(`${what}: "${key}" given twice`);
      kv[key] = eq < 0 ? true : part.slice(eq + 1);
    }
  }
  return buildLun(what, parseLunNumber(what, m[1]), m[2], kv);
}

export function parseQueues(what: string, v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_REQUEST_QUEUES) {
    throw new ConfigError(`${what}: queues must be an integer 1..${MAX_REQUEST_QUEUES}`);
  }
  return n;
}

function parseIdNumber(what: string, key: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${what}: ${key} must be an integer ${min}..${max}`);
  return n;
}

function parsePortName(what: string, key: string, v: unknown): string {
  if (typeof v !== 'string') throw new ConfigError(`${what}: ${key} must be a string`);
  const err = portNameError(v);
  if (err !== null) throw new ConfigError(`${what}: ${key}: ${err}`);
  return v;
}

const PORT_KEYS = ['socket', 'id', 'wwn', 'initiator', 'group', 'queues'] as const;

/** One port from loose key/value input (CLI --port or the file's "ports" entries). */
function buildPort(what: string, kv: Record<string, unknown>): PortSpec {
  if (typeof kv.socket !== 'string' || kv.socket === '') throw new ConfigError(`${what}: socket=PATH is required`);
  const out: PortSpec = { socket: kv.socket };
  for (const [key, value] of Object.entries(kv)) {
    switch (key) {
      case 'socket': break;
      case 'id': case 'targetPortId': out.targetPortId = parseIdNumber(what, 'id', value, 1, 0xffff); break;
      case 'wwn': out.wwn = parsePortName(what, 'wwn', value); break;
      case 'initiator': out.initiator = parsePortName(what, 'initiator', value); break;
      case 'group': out.group = parseIdNumber(what, 'group', value, 1, 0xffff); break;
      case 'queues': out.queues = parseQueues(what, value); break;
      default: throw new ConfigError(`${what}: unknown option "${key}" (known: ${PORT_KEYS.join(', ')})`);
    }
  }
  return out;
}

function splitKeyValues(what: string, text: string): Record<string, string | boolean> {
  const kv: Record<string, string | boolean> = {};
  for (const part of text.split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key in kv) throw new ConfigError(`${what}: "${key}" given twice`);
    kv[key] = eq < 0 ? true : part.slice(eq + 1);
  }
  return kv;
}

/** Spin-before-sleep budget of the request queues, in µs (backend/vring.ts MAX_POLL_US). */
export function parsePollUs(what: string, v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_POLL_US) throw new ConfigError(`${what} must be an integer 0..${MAX_POLL_US} (µs)`);
  return n;
}

/** `socket=PATH[,id=N][,wwn=naa.…][,initiator=naa.…][,group=N][,queues=N]` */
export function parsePortSpec(spec: string): PortSpec {
  return buildPort(`--port ${spec}`, splitKeyValues(`--port ${spec}`, spec));
}

const HOST_KEYS = ['lun', 'wwn', 'initiator', 'id', 'group'] as const;

function buildHostLun(what: string, kv: Record<string, unknown>): HostLunSpec {
  const out: HostLunSpec = { lun: parseLunNumber(what, kv.lun) };
  for (const [key, value] of Object.entries(kv)) {
    switch (key) {
      case 'lun': break;
      case 'wwn': out.wwn = parsePortName(what, 'wwn', value); break;
      case 'initiator': out.initiator = parsePortName(what, 'initiator', value); break;
      case 'id': case 'targetPortId': out.targetPortId = parseIdNumber(what, 'id', value, 1, 0xffff); break;
      case 'group': out.group = parseIdNumber(what, 'group', value, 1, 0xffff); break;
      default: throw new ConfigError(`${what}: unknown option "${key}" (known: ${HOST_KEYS.join(', ')})`);
    }
  }
  return out;
}

/** `LUN[,wwn=naa.…][,initiator=naa.…][,id=N][,group=N]` */
export function parseHostLunSpec(spec: string): HostLunSpec {
  const what = `--host-lun ${spec}`;
  const [lun, ...rest] = spec.split(',');
  return buildHostLun(what, { ...splitKeyValues(what, rest.join(',')), lun });
}

const STATE_WORDS = 'active-optimized, active-non-optimized, standby, unavailable';

function parseGroupState(what: string, v: unknown): AluaState {
  const s = typeof v === 'string' ? parseAluaState(v) : null;
  // Transitioning and offline are states the target passes through, not ones an operator sets.
  if (s === null || s === AluaState.TRANSITIONING || s === AluaState.OFFLINE) {
    throw new ConfigError(`${what}: state must be one of ${STATE_WORDS}, got ${JSON.stringify(v)}`);
  }
  return s;
}

/** `ID:STATE[:preferred]`, e.g. `1:active-optimized:preferred` or `2:standby`. */
export function parseTpgSpec(spec: string): TargetPortGroupEntry {
  const what = `--tpg ${spec}`;
  const m = /^([^:]+):([^:]+)(?::(preferred))?$/.exec(spec);
  if (!m) throw new ConfigError(`${what}: expected ID:STATE[:preferred] (STATE: ${STATE_WORDS})`);
  return { id: parseIdNumber(what, 'ID', m[1], 1, 0xffff), state: parseGroupState(what, m[2]), preferred: m[3] !== undefined };
}

function buildGroup(what: string, e: unknown): TargetPortGroupEntry {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new ConfigError(`${what}: must be an object like {"id": 1, "state": "active-optimized"}`);
  const o = e as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!['id', 'state', 'preferred'].includes(key)) throw new ConfigError(`${what}: unknown key "${key}" (known: id, state, preferred)`);
  }
  return {
    id: parseIdNumber(what, 'id', o.id, 1, 0xffff),
    state: parseGroupState(what, o.state),
    preferred: o.preferred === undefined ? false : parseBool(`${what}: preferred`, o.preferred as string | boolean),
  };
}

function parseDir(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${what} must be a directory path`);
  return v;
}

const FILE_KEYS = ['socket', 'queues', 'pollUs', 'logLevel', 'initiatorId', 'ports', 'hostLuns', 'targetPortGroups', 'stateDir', 'runDir', 'luns'];

/** A JSON config file (same model as the command line). */
export function loadConfigFile(path: string): PartialConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`--config ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`--config ${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`--config ${path}: the top level must be an object`);
  const o = raw as Record<string, unknown>;
  const out: PartialConfig = {};
  for (const key of Object.keys(o)) {
    if (!FILE_KEYS.includes(key)) throw new ConfigError(`--config ${path}: unknown key "${key}" (known: ${FILE_KEYS.join(', ')})`);
  }
  if (o.socket !== undefined) {
    if (typeof o.socket !== 'string' || o.socket === '') throw new ConfigError(`--config ${path}: socket must be a path`);
    out.socket = o.socket;
  }
  if (o.queues !== undefined) out.queues = parseQueues(`--config ${path}`, o.queues);
  if (o.pollUs !== undefined) out.pollUs = parsePollUs(`--config ${path}: pollUs`, o.pollUs);
  if (o.logLevel !== undefined) {
    if (typeof o.logLevel !== 'string' || !isLogLevel(o.logLevel)) throw new ConfigError(`--config ${path}: logLevel must be debug, info, warn, error or silent`);
    out.logLevel = o.logLevel;
  }
  if (o.initiatorId !== undefined) out.initiatorId = parsePortName(`--config ${path}`, 'initiatorId', o.initiatorId);
  if (o.ports !== undefined) {
    if (!Array.isArray(o.ports)) throw new ConfigError(`--config ${path}: ports must be an array`);
    out.ports = o.ports.map((entry, i) => {
      const what = `--config ${path}: ports[${i}]`;
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${what}: must be an object with "socket"`);
      return buildPort(what, entry as Record<string, unknown>);
    });
  }
  if (o.hostLuns !== undefined) {
    if (!Array.isArray(o.hostLuns)) throw new ConfigError(`--config ${path}: hostLuns must be an array`);
    out.hostLuns = o.hostLuns.map((entry, i) => {
      const what = `--config ${path}: hostLuns[${i}]`;
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(`${what}: must be an object with "lun"`);
      return buildHostLun(what, entry as Record<string, unknown>);
    });
  }
  if (o.targetPortGroups !== undefined) {
    if (!Array.isArray(o.targetPortGroups)) throw new ConfigError(`--config ${path}: targetPortGroups must be an array`);
    out.targetPortGroups = o.targetPortGroups.map((e, i) => buildGroup(`--config ${path}: targetPortGroups[${i}]`, e));
  }
  if (o.stateDir !== undefined) out.stateDir = parseDir(`--config ${path}: stateDir`, o.stateDir);
  if (o.runDir !== undefined) out.runDir = parseDir(`--config ${path}: runDir`, o.runDir);
  if (o.luns !== undefined) {
    if (!Array.isArray(o.luns)) throw new ConfigError(`--config ${path}: luns must be an array`);
    out.luns = o.luns.map((entry, i) => {
      const what = `--config ${path}: luns[${i}]`;
      if (typeof entry !== 'object' || entry === null) throw new ConfigError(`${what}: must be an object`);
      const e = entry as Record<string, unknown>;
      if (typeof e.backstore !== 'string') throw new ConfigError(`${what}: backstore must be "ram" or "file"`);
      return buildLun(what, parseLunNumber(what, e.lun), e.backstore, e);
    });
  }
  return out;
}

/**
 * A stable port name derived from the socket path: NAA 5h IEEE Registered (company id 025654h,
 * the project's locally administered one, as the LU designators) with 36 bits of SHA-256. The
 * same socket path gives the same names at every start, so reservations and unit attentions keyed
 * on them survive restarts.
 */
export function derivedPortName(socket: string, role: 'target' | 'initiator' | `host-target:${number}` | `host-initiator:${number}`): string {
  const h = createHash('sha256').update(`${role}:${resolve(socket)}`).digest('hex');
  return `naa.5025654${h.slice(0, 9)}`;
}

/** Where PR state goes by default: a system service's dirs as root, per-user dirs otherwise. */
function defaultDirs(): { stateDir: string; runDir: string } {
  const root = process.getuid?.() === 0;
  const home = process.env.HOME ?? '.';
  const stateDir = root ? '/var/lib/vhost-scsi-ts' : resolve(process.env.XDG_STATE_HOME ?? `${home}/.local/state`, 'vhost-scsi-ts');
  const runtime = process.env.XDG_RUNTIME_DIR;
  const runDir = root ? '/run/vhost-scsi-ts' : runtime ? resolve(runtime, 'vhost-scsi-ts') : resolve(stateDir, 'volatile');
  return { stateDir, runDir };
}

export function finishConfig(partial: PartialConfig): ServeConfig {
  const specs: PortSpec[] = [...(partial.ports ?? [])];
  if (partial.socket !== undefined && !specs.some((p) => resolve(p.socket) === resolve(partial.socket!))) {
    specs.unshift({ socket: partial.socket, initiator: partial.initiatorId, queues: partial.queues });
  }
  if (specs.length === 0) throw new ConfigError('no socket: give --socket PATH or --port socket=PATH (or "socket"/"ports" in the config file)');
  const luns = partial.luns ?? [];
  if (luns.length === 0) throw new ConfigError('no LUNs: give at least one --lun (e.g. --lun 0:ram:size=1G)');
  const seen = new Set<number>();
  for (const l of luns) {
    if (seen.has(l.lun)) throw new ConfigError(`LUN ${l.lun} is configured twice`);
    seen.add(l.lun);
  }
  const paths = new Set<string>();
  for (const l of luns) {
    if (l.path === undefined) continue;
    // reliability.md §5.2: each LUN is its own file, never two LUNs on one image.
    if (paths.has(l.path)) throw new ConfigError(`image ${l.path} is used by two LUNs`);
    paths.add(l.path);
  }
  const ports = finishPorts(specs, partial);
  const hostLuns = finishHostLuns(partial.hostLuns ?? [], ports, luns);
  const groups = partial.targetPortGroups;
  if (groups !== undefined) {
    const ids = new Set<number>();
    for (const g of groups) {
      if (ids.has(g.id)) throw new ConfigError(`target port group ${g.id} is configured twice`);
      ids.add(g.id);
    }
    for (const p of [...ports.map((x) => ({ what: `port ${x.socket}`, group: x.group })), ...hostLuns.map((h) => ({ what: `host LUN ${h.lun}`, group: h.group }))]) {
      if (!ids.has(p.group)) throw new ConfigError(`${p.what} is in target port group ${p.group}, which targetPortGroups does not define`);
    }
  } else {
    for (const p of [...ports.map((x) => ({ what: `port ${x.socket}`, group: x.group })), ...hostLuns.map((h) => ({ what: `host LUN ${h.lun}`, group: h.group }))]) {
      if (p.group !== 1) throw new ConfigError(`${p.what} is in target port group ${p.group}: define the groups (--tpg or "targetPortGroups")`);
    }
  }
  const dirs = defaultDirs();
  const out: ServeConfig = {
    socket: ports[0].socket,
    queues: ports[0].queues,
    pollUs: partial.pollUs ?? 0,
    logLevel: partial.logLevel ?? 'info',
    initiatorId: ports[0].initiator,
    ports,
    hostLuns,
    stateDir: partial.stateDir ?? dirs.stateDir,
    runDir: partial.runDir ?? dirs.runDir,
    luns: [...luns].sort((a, b) => a.lun - b.lun),
  };
  if (groups !== undefined) out.targetPortGroups = groups.map((g) => ({ ...g }));
  if (partial.configFile !== undefined) out.configFile = partial.configFile;
  if (partial.commandLineLuns !== undefined) out.commandLineLuns = [...partial.commandLineLuns];
  return out;
}

function finishPorts(specs: PortSpec[], partial: PartialConfig): PortConfig[] {
  const sockets = new Set<string>();
  const ids = new Set<number>();
  const wwns = new Set<string>();
  for (const s of specs) if (s.targetPortId !== undefined) ids.add(s.targetPortId);
  let nextId = 1;
  const out: PortConfig[] = [];
  for (const s of specs) {
    const abs = resolve(s.socket);
    if (sockets.has(abs)) throw new ConfigError(`socket ${s.socket} is configured twice`);
    sockets.add(abs);
    let id = s.targetPortId;
    if (id === undefined) {
      while (ids.has(nextId)) nextId++;
      id = nextId;
      ids.add(id);
    } else if (out.some((p) => p.targetPortId === id)) {
      throw new ConfigError(`relative target port id ${id} is used by two ports`);
    }
    const wwn = s.wwn ?? derivedPortName(s.socket, 'target');
    if (wwns.has(wwn)) throw new ConfigError(`target port name ${wwn} is used by two ports`);
    wwns.add(wwn);
    const initiator = s.initiator ?? derivedPortName(s.socket, 'initiator');
    // As tcm_loop's nexus: the initiator port speaks the target port's protocol.
    if (protocolOfPortName(initiator) !== protocolOfPortName(wwn)) {
      throw new ConfigError(`port ${s.socket}: initiator ${initiator} and wwn ${wwn} name different protocols (naa. SAS, fc. FC, iqn./eui. iSCSI); use the same prefix`);
    }
    out.push({ socket: s.socket, targetPortId: id, wwn, initiator, group: s.group ?? 1, queues: s.queues ?? partial.queues ?? 1 });
  }
  return out;
}

function finishHostLuns(specs: HostLunSpec[], ports: PortConfig[], luns: LunConfig[]): HostLunConfig[] {
  const used = new Set(ports.map((p) => p.targetPortId));
  const names = new Set(ports.map((p) => p.wwn));
  for (const h of specs) if (h.targetPortId !== undefined) used.add(h.targetPortId);
  const seen = new Set<number>();
  let nextId = 1;
  const out: HostLunConfig[] = [];
  for (const h of specs) {
    if (!luns.some((l) => l.lun === h.lun)) throw new ConfigError(`host LUN ${h.lun}: no such LUN is configured`);
    if (seen.has(h.lun)) throw new ConfigError(`host LUN ${h.lun} is exposed twice`);
    seen.add(h.lun);
    let id = h.targetPortId;
    if (id === undefined) {
      while (used.has(nextId)) nextId++;
      id = nextId;
      used.add(id);
    } else if (ports.some((p) => p.targetPortId === id) || out.some((o) => o.targetPortId === id)) {
      throw new ConfigError(`host LUN ${h.lun}: relative target port id ${id} is already used`);
    }
    // Derived from the first socket: the same names at every start of this backend.
    const wwn = h.wwn ?? derivedPortName(ports[0].socket, `host-target:${h.lun}`);
    if (names.has(wwn)) throw new ConfigError(`host LUN ${h.lun}: target port name ${wwn} is used by another port`);
    names.add(wwn);
    const initiator = h.initiator ?? derivedPortName(ports[0].socket, `host-initiator:${h.lun}`);
    for (const [role, name] of [['wwn', wwn], ['initiator', initiator]] as const) {
      const err = tcmLoopNameError(name, role);
      if (err !== null) throw new ConfigError(`host LUN ${h.lun}: ${err}`);
    }
    // tcm_loop refuses a nexus whose prefix differs from the WWN's.
    if (protocolOfPortName(initiator) !== protocolOfPortName(wwn)) {
      throw new ConfigError(`host LUN ${h.lun}: initiator ${initiator} and wwn ${wwn} name different protocols (naa. SAS, fc. FC, iqn./eui. iSCSI); use the same prefix`);
    }
    out.push({ lun: h.lun, wwn, initiator, targetPortId: id, group: h.group ?? 1 });
  }
  return out;
}
