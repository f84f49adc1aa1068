// Live LUN changes: a person edits the --config file and sends SIGHUP; the backend compares the
// file's LUNs with the running ones and applies the difference without disturbing the guest.
//
//   LUN added      → store opened, LU added: POWER ON OCCURRED 29/01 on it and REPORTED LUNS DATA
//                    HAS CHANGED 3F/0E on the others for every I_T nexus; virtio TRANSPORT_RESET
//                    event, reason RESCAN, for the LUN (Linux adds the device by itself).
//   LUN removed    → the LUN leaves the inventory at once (new commands: LOGICAL UNIT NOT
//                    SUPPORTED), 3F/0E on the remaining LUs, TRANSPORT_RESET reason REMOVED; its
//                    in-flight commands complete, then it is flushed and its store closed.
//   size grown     → the store grows (a file image with ftruncate: a sparse extension), then
//                    CAPACITY DATA HAS CHANGED 2A/09 for every nexus and a PARAM_CHANGE event with
//                    reason 0x2a | 0x09 << 8 (Linux re-reads the capacity by itself).
//
// Decisions:
// - Shrinking a live LUN is refused (logged): the guest may have data, or a file system that
//   believes it owns, the blocks that would vanish, and nothing in SBC lets a target take blocks
//   back. To shrink: remove the LUN (one reload), shrink the image offline, add it back.
// - Any other change to a live LUN (backstore, path, block size, read-only, direct, write-cache
//   default, identity) is refused for that LUN with a log line naming the fields; the rest of
//   the reload still applies. Remove and re-add the LUN (two reloads) to change them.
// - A file `size` left out keeps the current size (file LUNs need it only to create the image).
// - A config that cannot be read or parsed, or is inconsistent (a LUN twice, two LUNs on one
//   image), changes nothing. Top-level keys (socket, queues, ...) apply at the next start only.
// - LUNs given with --lun on the command line belong to the command line: a reload never
//   touches them, and a file entry with the same LUN number is refused.
// - Reloads run one at a time; a SIGHUP during one runs another afterwards. Removals go first
//   (an image freed by a removed LUN may be added under another number), then growth, then
//   additions.

import { resolve } from 'node:path';
import type { LogicalUnit, ScsiTarget } from '../scsi-emul';
import { ConfigError, loadConfigFile, type LunConfig, type PartialConfig, type ServeConfig } from './config';
import type { Logger } from './log';
import type { LunEventResult } from './virtio-scsi/device';

/** CAPACITY DATA HAS CHANGED (SPC-4 r37 annex D: ASC 2Ah, ASCQ 09h), the PARAM_CHANGE reason of a resize. */
export const ASC_PARAMETERS_CHANGED = 0x2a;
export const ASCQ_CAPACITY_DATA_HAS_CHANGED = 0x09;

/** Where LUN events go (the virtio-scsi device implements it). */
export interface LunEvents {
  notifyLunInventory(lun: number, added: boolean): LunEventResult;
  notifyParameterChange(lun: number, asc: number, ascq: number): LunEventResult;
}

export interface RunningLun {
  config: LunConfig;
  /** the store's current size */
  sizeBytes: number;
  /** given with --lun: never changed by a reload */
  fromCommandLine: boolean;
}

export interface ReloadPlan {
  remove: number[];
  grow: { lun: number; from: number; to: number }[];
  add: LunConfig[];
  /** one line per refused change; the rest of the plan still applies */
  refused: string[];
}

/** What a reload did. */
export interface ReloadResult {
  /** false: the file could not be read, parsed or was inconsistent; nothing changed */
  loaded: boolean;
  added: number[];
  removed: number[];
  resized: number[];
  /** one line per refused change or failed step */
  refused: string[];
}

/** Fields a live LU was built from; a reload cannot change them. */
const FIXED_FIELDS = ['backstore', 'path', 'blockSize', 'physicalBlockSize', 'readOnly', 'direct', 'io', 'writeCache', 'vendor', 'product', 'revision', 'serial'] as const;
type FixedField = (typeof FIXED_FIELDS)[number];

const FIELD_NAMES: Record<FixedField, string> = {
  backstore: 'backstore', path: 'path', blockSize: 'block-size', physicalBlockSize: 'physical-block-size', readOnly: 'readonly', direct: 'direct', io: 'io',
  writeCache: 'write-cache', vendor: 'vendor', product: 'product', revision: 'revision', serial: 'serial',
};

function fieldValue(l: LunConfig, f: FixedField): string | number | boolean | undefined {
  return f === 'path' && l.path !== undefined ? resolve(l.path) : l[f];
}

function show(v: unknown): string {
  return v === undefined ? '(unset)' : JSON.stringify(v);
}

/**
 * The difference between the running LUNs and the file's. Throws ConfigError when the file's
 * LUN list is inconsistent (a LUN twice, an image used by two LUNs): then nothing may change.
 */
export function planReload(running: ReadonlyMap<number, RunningLun>, wanted: readonly LunConfig[]): ReloadPlan {
  const plan: ReloadPlan = { remove: [], grow: [], add: [], refused: [] };
  const seen = new Set<number>();
  for (const w of wanted) {
    if (seen.has(w.lun)) throw new ConfigError(`LUN ${w.lun} is configured twice`);
    seen.add(w.lun);
  }
  // reliability.md §5.2: never two LUNs on one image, counting the command line's.
  const paths = new Map<string, number>();
  for (const [lun, r] of running) if (r.fromCommandLine && r.config.path !== undefined) paths.set(resolve(r.config.path), lun);
  for (const w of wanted) {
    if (w.path === undefined || running.get(w.lun)?.fromCommandLine) continue;
    const p = resolve(w.path);
    const other = paths.get(p);
    if (other !== undefined) throw new ConfigError(`image ${w.path} is used by LUN ${other} and LUN ${w.lun}`);
    paths.set(p, w.lun);
  }

  for (const w of wanted) {
    const cur = running.get(w.lun);
    if (cur === undefined) {
      plan.add.push(w);
      continue;
    }
    if (cur.fromCommandLine) {
      plan.refused.push(`LUN ${w.lun}: given with --lun on the command line; the config file cannot change it (entry ignored)`);
      continue;
    }
    const diffs = FIXED_FIELDS.filter((f) => fieldValue(cur.config, f) !== fieldValue(w, f));
    if (diffs.length > 0) {
      const what = diffs.map((f) => `${FIELD_NAMES[f]} ${show(cur.config[f])} → ${show(w[f])}`).join(', ');
      plan.refused.push(`LUN ${w.lun}: ${what}: refused, a live LUN keeps these (remove it in one reload, add it back in the next); nothing changed for this LUN`);
      continue;
    }
    if (w.size === undefined || w.size === cur.sizeBytes) continue;
    if (w.size > cur.sizeBytes) {
      plan.grow.push({ lun: w.lun, from: cur.sizeBytes, to: w.size });
    } else {
      plan.refused.push(`LUN ${w.lun}: size ${w.size} is smaller than the current ${cur.sizeBytes} bytes: shrinking a live LUN is refused ` +
        '(remove the LUN, shrink the image offline, add it back)');
    }
  }
  for (const [lun, r] of running) if (!r.fromCommandLine && !seen.has(lun)) plan.remove.push(lun);
  plan.remove.sort((a, b) => a - b);
  return plan;
}

export interface LunReloaderOptions {
  target: ScsiTarget;
  events: LunEvents;
  log: Logger;
  /** Opens the store and builds the LU of an entry (throws, e.g. ConfigError, when it cannot). */
  open: (l: LunConfig) => LogicalUnit;
  /** The running configuration (its luns are on the target already). */
  config: Pick<ServeConfig, 'luns' | 'configFile' | 'commandLineLuns' | 'socket' | 'queues' | 'logLevel' | 'initiatorId'> &
    Partial<Pick<ServeConfig, 'stateDir' | 'runDir'>>;
  /** Sees every successfully read file before its LUNs are applied (the target port groups). */
  onConfig?: (next: PartialConfig) => void;
  /** LUNs exposed on the host (tcm_loop + TCMU): a reload does not remove them under the host. */
  hostLuns?: readonly number[];
}

function describeEvent(r: LunEventResult, what: string): string {
  switch (r) {
    case 'sent': return `${what} event sent`;
    case 'missed': return `no event buffer for ${what}: the next event carries EVENTS_MISSED (the guest rescans)`;
    default: return `the driver did not negotiate ${what === 'PARAM_CHANGE' ? 'VIRTIO_SCSI_F_CHANGE' : 'VIRTIO_SCSI_F_HOTPLUG'}: the guest learns from the unit attention only`;
  }
}

export class LunReloader {
  private readonly running = new Map<number, RunningLun>();
  private readonly opts: LunReloaderOptions;
  private readonly log: Logger;
  private busy = false;
  private readonly queue: (() => void)[] = [];
  private closed = false;
  private closeWaiters: (() => void)[] = [];

  constructor(opts: LunReloaderOptions) {
    this.opts = opts;
    this.log = opts.log;
    const pinned = new Set(opts.config.commandLineLuns ?? (opts.config.configFile === undefined ? opts.config.luns.map((l) => l.lun) : []));
    for (const l of opts.config.luns) {
      const lu = opts.target.getLogicalUnit(l.lun);
      if (lu === undefined) throw new Error(`LunReloader: LUN ${l.lun} is not on the target`);
      this.running.set(l.lun, { config: l, sizeBytes: lu.store.sizeBytes, fromCommandLine: pinned.has(l.lun) });
    }
  }

  /** The LUNs as the reloader sees them (tests, diagnostics). */
  runningLuns(): ReadonlyMap<number, RunningLun> {
    return this.running;
  }

  /** SIGHUP: re-read the --config file and apply its LUN changes. */
  reload(done?: (r: ReloadResult) => void): void {
    this.enqueue((finish) => {
      const file = this.opts.config.configFile;
      if (file === undefined) {
        this.log.warn('reload: started without --config, nothing to re-read');
        finish(notLoaded());
        return;
      }
      let next: PartialConfig;
      try {
        next = loadConfigFile(file);
      } catch (e) {
        this.log.error(`reload: ${(e as Error).message}; nothing changed`);
        finish(notLoaded());
        return;
      }
      for (const key of ['socket', 'queues', 'logLevel', 'initiatorId', 'stateDir', 'runDir'] as const) {
        if (next[key] !== undefined && next[key] !== this.opts.config[key]) {
          this.log.warn(`reload: "${key}" changed in ${file}; it takes effect at the next start only`);
        }
      }
      if (next.ports !== undefined) this.log.debug('reload: "ports" are read at start only');
      if (next.hostLuns !== undefined) this.log.debug('reload: "hostLuns" are read at start only');
      this.opts.onConfig?.(next);
      this.applyNow(next.luns ?? [], finish);
    }, done);
  }

  /** Applies a LUN list as if the config file held it (the file-managed LUNs become exactly these). */
  apply(wanted: readonly LunConfig[], done?: (r: ReloadResult) => void): void {
    this.enqueue((finish) => this.applyNow(wanted, finish), done);
  }

  /** Waits for a running reload; later ones are refused (shutdown). */
  close(done: () => void): void {
    this.closed = true;
    if (!this.busy) {
      done();
      return;
    }
    this.closeWaiters.push(done);
  }

  private enqueue(job: (finish: (r: ReloadResult) => void) => void, done?: (r: ReloadResult) => void): void {
    if (this.closed) {
      this.log.warn('reload: shutting down, ignored');
      done?.(notLoaded());
      return;
    }
    this.queue.push(() => job((r) => {
      this.busy = false;
      done?.(r);
      this.next();
    }));
    if (!this.busy) this.next();
  }

  private next(): void {
    if (this.busy) return;
    const job = this.queue.shift();
    if (job === undefined || this.closed) {
      this.queue.length = 0;
      if (this.closed) for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    this.busy = true;
    job();
  }

  private applyNow(wanted: readonly LunConfig[], finish: (r: ReloadResult) => void): void {
    let plan: ReloadPlan;
    try {
      plan = planReload(this.running, wanted);
    } catch (e) {
      this.log.error(`reload: ${(e as Error).message}; nothing changed`);
      finish(notLoaded());
      return;
    }
    const host = new Set(this.opts.hostLuns ?? []);
    for (const lun of plan.remove.filter((l) => host.has(l))) {
      plan.remove = plan.remove.filter((l) => l !== lun);
      plan.refused.push(`LUN ${lun}: exposed on this host (hostLuns); removing it is refused while the host uses it ` +
        '(drop it from hostLuns and restart, then remove it)');
    }
    const result: ReloadResult = { loaded: true, added: [], removed: [], resized: [], refused: [...plan.refused] };
    for (const line of plan.refused) this.log.error(`reload: ${line}`);
    const steps: ((next: () => void) => void)[] = [
      ...plan.remove.map((lun) => (next: () => void) => this.removeLun(lun, result, next)),
      ...plan.grow.map((g) => (next: () => void) => this.growLun(g.lun, g.to, result, next)),
      ...plan.add.map((l) => (next: () => void) => this.addLun(l, result, next)),
    ];
    let i = 0;
    const step = (): void => {
      if (i < steps.length) {
        steps[i++](step);
        return;
      }
      if (steps.length === 0 && plan.refused.length === 0) this.log.info('reload: no LUN changes');
      finish(result);
    };
    step();
  }

  private removeLun(lun: number, result: ReloadResult, next: () => void): void {
    const { target, events } = this.opts;
    this.running.delete(lun);
    try {
      target.removeLogicalUnit(lun, (err) => {
        if (err !== null) this.log.error(`reload: LUN ${lun}: flush or close after removal failed: ${err.message}`);
        else this.log.info(`reload: LUN ${lun} drained, flushed and closed`);
        next();
      });
    } catch (e) {
      result.refused.push(`LUN ${lun}: removal failed: ${(e as Error).message}`);
      this.log.error(`reload: LUN ${lun}: removal failed: ${(e as Error).message}`);
      next();
      return;
    }
    result.removed.push(lun);
    // virtio 1.2 §5.6.6.3.1: the LUN is gone from the inventory now; tell the driver at once.
    this.log.info(`reload: LUN ${lun} removed; ${describeEvent(events.notifyLunInventory(lun, false), 'TRANSPORT_RESET/REMOVED')}`);
  }

  private growLun(lun: number, to: number, result: ReloadResult, next: () => void): void {
    const { target, events } = this.opts;
    const r = this.running.get(lun)!;
    const from = r.sizeBytes;
    target.resizeLogicalUnit(lun, to, (err, changed) => {
      if (err !== null) {
        const line = `LUN ${lun}: growing from ${from} to ${to} bytes failed: ${err.message}`;
        result.refused.push(line);
        this.log.error(`reload: ${line}`);
      } else {
        r.sizeBytes = to;
        r.config = { ...r.config, size: to };
        if (changed) {
          result.resized.push(lun);
          const ev = events.notifyParameterChange(lun, ASC_PARAMETERS_CHANGED, ASCQ_CAPACITY_DATA_HAS_CHANGED);
          this.log.info(`reload: LUN ${lun} grown from ${from} to ${to} bytes; ${describeEvent(ev, 'PARAM_CHANGE')}`);
        }
      }
      next();
    });
  }

  private addLun(l: LunConfig, result: ReloadResult, next: () => void): void {
    const { target, events, open } = this.opts;
    let lu: LogicalUnit;
    try {
      lu = open(l);
    } catch (e) {
      const line = `LUN ${l.lun}: cannot add it: ${(e as Error).message}`;
      result.refused.push(line);
      this.log.error(`reload: ${line}`);
      next();
      return;
    }
    try {
      target.addLogicalUnit(l.lun, lu);
    } catch (e) {
      const line = `LUN ${l.lun}: cannot add it: ${(e as Error).message}`;
      result.refused.push(line);
      this.log.error(`reload: ${line}`);
      lu.store.close(() => next());
      return;
    }
    this.running.set(l.lun, { config: l, sizeBytes: lu.store.sizeBytes, fromCommandLine: false });
    result.added.push(l.lun);
    const what = l.backstore === 'ram' ? 'ram' : `file ${l.path}`;
    this.log.info(`reload: LUN ${l.lun} added (${what}, ${lu.store.sizeBytes} bytes); ${describeEvent(events.notifyLunInventory(l.lun, true), 'TRANSPORT_RESET/RESCAN')}`);
    next();
  }
}

function notLoaded(): ReloadResult {
  return { loaded: false, added: [], removed: [], resized: [], refused: [] };
}
