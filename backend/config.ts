// The serve configuration: one model reached from the command line (--lun specs) and from a JSON
// file (--config). Every error is a ConfigError with a message a person can act on.

import { readFileSync } from 'node:fs';
import { parseSize } from '../scsi-emul';
import { isLogLevel, type LogLevel } from './log';
import { MAX_REQUEST_QUEUES } from './virtio-scsi/device';
import { MAX_LUN } from './virtio-scsi/lun-address';

export class ConfigError extends Error {}

export type BackstoreKind = 'ram' | 'file';

export interface LunConfig {
  lun: number;
  backstore: BackstoreKind;
  /** bytes; required for ram, for file only when the image is created */
  size?: number;
  path?: string;
  readOnly: boolean;
  direct: boolean;
  blockSize: 512 | 4096;
  /** 4096 with block-size 512 is 512e (READ CAPACITY(16) exponent 3); absent: the block size */
  physicalBlockSize?: 512 | 4096;
  writeCache: boolean;
  vendor?: string;
  product?: string;
  revision?: string;
  serial?: string;
}

export interface ServeConfig {
  socket: string;
  queues: number;
  logLevel: LogLevel;
  /** Initiator port name of the frontend on this socket (stable across reconnects: PR and UA state key on it). */
  initiatorId: string;
  luns: LunConfig[];
  /** The --config file; SIGHUP re-reads it and applies its LUN changes (backend/reload.ts). */
  configFile?: string;
  /** LUNs given with --lun: a reload leaves them as they are (only the file's LUNs are managed). */
  commandLineLuns?: number[];
}

const LUN_KEYS = ['path', 'size', 'readonly', 'direct', 'block-size', 'physical-block-size', 'write-cache', 'vendor', 'product', 'revision', 'serial'] as const;

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
  const out: LunConfig = { lun, backstore, readOnly: false, direct: false, blockSize: 512, writeCache: true };
  for (const [key, value] of Object.entries(kv)) {
    switch (key) {
      case 'path':
        if (typeof value !== 'string' || value === '') throw new ConfigError(`${what}: path must be a non-empty string`);
        out.path = value;
        break;
      case 'size': out.size = parseSizeValue(what, value); break;
      case 'readonly': case 'readOnly': out.readOnly = parseBool(`${what}: readonly`, value as string | boolean); break;
      case 'direct': out.direct = parseBool(`${what}: direct`, value as string | boolean); break;
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
  } else if (out.path === undefined) {
    throw new ConfigError(`${what}: a file backstore needs path=`);
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

/** A JSON config file (same model as the command line). */
export function loadConfigFile(path: string): Partial<ServeConfig> {
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
  const out: Partial<ServeConfig> = {};
  for (const key of Object.keys(o)) {
    if (!['socket', 'queues', 'logLevel', 'initiatorId', 'luns'].includes(key)) throw new ConfigError(`--config ${path}: unknown key "${key}"`);
  }
  if (o.socket !== undefined) {
    if (typeof o.socket !== 'string' || o.socket === '') throw new ConfigError(`--config ${path}: socket must be a path`);
    out.socket = o.socket;
  }
  if (o.queues !== undefined) out.queues = parseQueues(`--config ${path}`, o.queues);
  if (o.logLevel !== undefined) {
    if (typeof o.logLevel !== 'string' || !isLogLevel(o.logLevel)) throw new ConfigError(`--config ${path}: logLevel must be debug, info, warn, error or silent`);
    out.logLevel = o.logLevel;
  }
  if (o.initiatorId !== undefined) {
    if (typeof o.initiatorId !== 'string' || o.initiatorId === '') throw new ConfigError(`--config ${path}: initiatorId must be a non-empty string`);
    out.initiatorId = o.initiatorId;
  }
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

export function finishConfig(partial: Partial<ServeConfig>): ServeConfig {
  if (!partial.socket) throw new ConfigError('no socket: give --socket PATH (or "socket" in the config file)');
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
  const out: ServeConfig = {
    socket: partial.socket,
    queues: partial.queues ?? 1,
    logLevel: partial.logLevel ?? 'info',
    initiatorId: partial.initiatorId ?? `vhost-user:${partial.socket}`,
    luns: [...luns].sort((a, b) => a.lun - b.lun),
  };
  if (partial.configFile !== undefined) out.configFile = partial.configFile;
  if (partial.commandLineLuns !== undefined) out.commandLineLuns = [...partial.commandLineLuns];
  return out;
}
