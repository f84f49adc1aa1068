// Builds a running backend from a ServeConfig: backstores → logical units → one target core →
// one virtio-scsi device and vhost-user server per port. The CLI and the end-to-end tests both
// start here.
//
// Topology: every socket is a virtio-scsi controller and a SCSI target port (relative target port
// id, target port group) of the one shared target; the frontend on it is one initiator port. All
// ports reach every LUN, so two VMs on two sockets share disks (reservations arbitrate), and one
// VM with two controllers sees two paths (ALUA says which to use).

import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import {
  createFileStore, createRamStore, LogicalUnit, protocolOfPortName, ScsiTarget,
  type BlockStore, type FileStoreIo, type IoEngine, type ITNexus, type PrPersistence, type TargetPortGroupConfig,
} from '../scsi-emul';
import { nativeIoEngine } from './io-engine';
import { native } from './native';
import { UringIoEngine } from './uring-engine';
import { Logger } from './log';
import { VhostUserServer } from './server';
import { VirtioScsiDevice, type LunEventResult } from './virtio-scsi/device';
import { ConfigError, type HostLunConfig, type LunConfig, type PortConfig, type ServeConfig, type TargetPortGroupEntry } from './config';
import { ConfigfsHost, HostExposureError, type ExposedDevice } from './tcmu/configfs';
import { TcmuDevice } from './tcmu/device';
import { LunReloader, type LunEvents, type ReloadResult } from './reload';
import { FilePrPersistence, loadPrState } from './pr-store';

export interface BackendPort {
  readonly config: PortConfig;
  readonly nexus: ITNexus;
  readonly server: VhostUserServer;
  readonly device: VirtioScsiDevice;
}

/** A LUN exposed on this host: its configfs entries and the TCMU device serving them. */
export interface BackendHostLun {
  readonly config: HostLunConfig;
  readonly nexus: ITNexus;
  readonly exposed: ExposedDevice;
  readonly device: TcmuDevice;
}

export interface StartOptions {
  /** configfs/sysfs access for host exposure (tests pass a fake tree) */
  configfs?: ConfigfsHost;
}

export interface Backend {
  /** the first port's server and device (single-socket users and tests) */
  readonly server: VhostUserServer;
  readonly device: VirtioScsiDevice;
  readonly ports: readonly BackendPort[];
  readonly hostLuns: readonly BackendHostLun[];
  readonly target: ScsiTarget;
  /** SIGHUP: re-read the --config file and apply its LUN and target port group changes live. */
  reload(done?: (r: ReloadResult) => void): void;
  /** Stop accepting, end the sessions (in-flight I/O drained), flush every LU, close the stores, remove the sockets. */
  shutdown(done: (err: Error | null) => void): void;
}

/**
 * The I/O engines of one backend: the addon's threads always, its io_uring (one ring shared by
 * every LUN, created when a LUN first wants it) where the kernel allows it.
 */
export class IoEngines {
  private uring: UringIoEngine | null = null;
  private uringRefusal: string | null = null;

  constructor(private readonly log: Logger) {}

  /** The engine and FileStore io mode for a file LUN (LunConfig.io). */
  forLun(l: LunConfig): { engine: IoEngine; io: FileStoreIo } {
    switch (l.io) {
      case 'inline': return { engine: nativeIoEngine, io: 'inline' };
      case 'threads': return { engine: nativeIoEngine, io: 'async' };
      case 'uring': {
        const ring = this.ring();
        if (ring === null) throw new ConfigError(`LUN ${l.lun}: io=uring: ${this.uringRefusal}`);
        return { engine: ring, io: 'async' };
      }
      default: return { engine: this.ring() ?? nativeIoEngine, io: 'auto' };
    }
  }

  /** After each virtqueue drain: one io_uring_enter for everything the drain queued. */
  readonly afterDrain = (): void => {
    if (this.uring !== null) this.uring.flush();
  };

  close(): void {
    if (this.uring !== null) this.uring.close();
    this.uring = null;
  }

  private ring(): UringIoEngine | null {
    if (this.uring === null && this.uringRefusal === null) {
      const r = UringIoEngine.create();
      if (r.engine !== null) {
        this.uring = r.engine;
      } else {
        this.uringRefusal = r.reason;
        this.log.info(`${r.reason}: file I/O that may sleep runs on the addon's I/O threads`);
      }
    }
    return this.uring;
  }
}

function openStore(l: LunConfig, engines: IoEngines): BlockStore {
  if (l.backstore === 'ram') return createRamStore({ sizeBytes: l.size!, name: `ram${l.lun}`, copy: native.copyBytes });
  const { engine, io } = engines.forLun(l);
  try {
    return createFileStore({ path: l.path!, sizeBytes: l.size, readOnly: l.readOnly, direct: l.direct, engine, io });
  } catch (e) {
    throw new ConfigError(`LUN ${l.lun}: ${(e as Error).message}`);
  }
}

function luName(l: LunConfig): string {
  return l.path ? resolve(l.path) : `ram-lun${l.lun}`;
}

/**
 * The file name persistent reservation state of a LU is kept under: from what identifies the LU
 * (its image path or ram LUN number, and a configured serial), so the same LU finds its
 * registrations after a restart.
 */
export function prStateKey(l: LunConfig): string {
  const h = createHash('sha256').update(`${luName(l)}\0${l.serial ?? ''}`).digest('hex');
  return `lu-${h.slice(0, 24)}`;
}

/** The store and logical unit of one configured LUN (at start and when a reload adds it). */
export function openLogicalUnit(l: LunConfig, engines: IoEngines,
  pr?: { persistence: PrPersistence; dirs: { persistentDir: string; volatileDir: string } }): LogicalUnit {
  let persistentReservations;
  if (pr !== undefined) {
    const key = prStateKey(l);
    let restored;
    try {
      restored = loadPrState(pr.dirs, key);
    } catch (e) {
      // A damaged state file is never silently reset: the operator decides (reliability.md §4.7).
      throw new ConfigError(`LUN ${l.lun}: persistent reservation state: ${(e as Error).message}`);
    }
    persistentReservations = { persistence: pr.persistence, key, restored };
  }
  const store = openStore(l, engines);
  try {
    return new LogicalUnit(store, {
      name: luName(l),
      blockSize: l.blockSize,
      physicalBlockSize: l.physicalBlockSize,
      writeCache: l.writeCache,
      readOnly: l.readOnly || store.readOnly,
      identity: { vendor: l.vendor, product: l.product, revision: l.revision, serial: l.serial },
      persistentReservations,
    });
  } catch (e) {
    store.close(() => {});
    throw new ConfigError(`LUN ${l.lun}: ${(e as Error).message}`);
  }
}

/** The I_T nexus of a port: its initiator, its target port and the protocol its names pick. */
export function portNexus(p: PortConfig): ITNexus {
  const protocolId = protocolOfPortName(p.wwn);
  return {
    initiatorPort: p.initiator,
    targetPortId: p.targetPortId,
    ...(protocolId !== null ? { protocolId } : {}),
    // SPC-4 §7.8.6.11: a target port's SCSI name string carries ",t,0x" and the portal group tag
    // (tcm_loop's tpgt_1), as LIO reports its ports.
    targetPortName: `${p.wwn},t,0x0001`,
    targetPortGroup: p.group,
  };
}

/** The I_T nexus of a host exposure: the tcm_loop nexus (initiator) and the tcm_loop WWN's port. */
export function hostNexus(h: HostLunConfig): ITNexus {
  const protocolId = protocolOfPortName(h.wwn);
  return {
    initiatorPort: h.initiator,
    targetPortId: h.targetPortId,
    ...(protocolId !== null ? { protocolId } : {}),
    targetPortName: `${h.wwn},t,0x0001`, // tcm_loop's tpgt_1
    targetPortGroup: h.group,
  };
}

/**
 * The configfs backstore name of a host exposure: stable for this backend (its first socket) and
 * LUN, so a restarted backend finds and re-attaches what a killed one left.
 */
export function hostBackstoreName(config: ServeConfig, lun: number): string {
  const h = createHash('sha256').update(resolve(config.ports[0].socket)).digest('hex');
  return `vst_${h.slice(0, 10)}_lun${lun}`;
}

/** The core's ALUA configuration from the file/CLI groups and the ports' membership. */
export function aluaGroups(groups: readonly TargetPortGroupEntry[], ports: readonly PortConfig[],
  hostLuns: readonly HostLunConfig[] = []): TargetPortGroupConfig[] {
  return groups.map((g) => ({
    id: g.id, state: g.state, preferred: g.preferred,
    ports: [...ports.filter((p) => p.group === g.id).map((p) => p.targetPortId),
      ...hostLuns.filter((h) => h.group === g.id).map((h) => h.targetPortId)],
  }));
}

export function startBackend(config: ServeConfig, log = new Logger(config.logLevel), listenFd = -1, options: StartOptions = {}): Backend {
  if (listenFd >= 0 && config.ports.length > 1) throw new ConfigError('--fd serves one socket; configure the other ports with socket paths only');
  const target = new ScsiTarget();
  const dirs = { persistentDir: config.stateDir, volatileDir: config.runDir };
  const pr = { persistence: new FilePrPersistence(dirs), dirs };
  const engines = new IoEngines(log.child('io'));
  const open = (l: LunConfig): LogicalUnit => openLogicalUnit(l, engines, pr);
  const stores: BlockStore[] = [];
  try {
    if (config.targetPortGroups !== undefined) target.setTargetPortGroups(aluaGroups(config.targetPortGroups, config.ports, config.hostLuns));
    for (const l of config.luns) {
      const lu = open(l);
      stores.push(lu.store);
      target.addLogicalUnit(l.lun, lu);
    }
  } catch (e) {
    for (const s of stores) s.close(() => {});
    engines.close();
    if (e instanceof RangeError) throw new ConfigError(e.message);
    throw e;
  }
  let host: ConfigfsHost | null = null;
  if (config.hostLuns.length > 0) {
    // Before any socket listens: a host without LIO is a configuration error, reported first.
    host = options.configfs ?? new ConfigfsHost({ log: log.child('configfs') });
    try {
      host.checkAvailable();
    } catch (e) {
      for (const s of stores) s.close(() => {});
      throw e instanceof HostExposureError ? new ConfigError(e.message) : e;
    }
  }
  const ports: BackendPort[] = [];
  try {
    config.ports.forEach((p, i) => {
      const nexus = portNexus(p);
      const device = new VirtioScsiDevice({
        target,
        nexus,
        numRequestQueues: p.queues,
        pollUs: config.pollUs,
        afterDrain: engines.afterDrain,
        log: log.child(config.ports.length > 1 ? `virtio-scsi:${p.targetPortId}` : 'virtio-scsi'),
      });
      const server = new VhostUserServer({ socketPath: p.socket, listenFd: i === 0 ? listenFd : -1, device, log });
      server.listen();
      ports.push({ config: p, nexus, server, device });
    });
  } catch (e) {
    for (const p of ports) p.server.close(() => {});
    target.close(() => engines.close());
    throw e;
  }
  const hostLuns: BackendHostLun[] = [];
  if (host !== null) {
    try {
      startHostLuns(config, target, host, log.child('tcmu'), hostLuns);
    } catch (e) {
      for (const h of hostLuns) h.device.stop(() => {});
      for (const p of ports) p.server.close(() => {});
      target.close(() => engines.close());
      throw e instanceof HostExposureError ? new ConfigError(e.message) : e;
    }
  }
  // LUN events go to every controller: each guest rescans on its own.
  const events: LunEvents = {
    notifyLunInventory: (lun, added) => combine(ports.map((p) => p.device.notifyLunInventory(lun, added))),
    notifyParameterChange: (lun, asc, ascq) => combine(ports.map((p) => p.device.notifyParameterChange(lun, asc, ascq))),
  };
  const configLog = log.child('config');
  const reloader = new LunReloader({
    target, events, log: configLog, open, config,
    onConfig: (next) => applyGroups(next.targetPortGroups),
    hostLuns: config.hostLuns.map((h) => h.lun),
  });
  let groups = config.targetPortGroups;
  function applyGroups(next: TargetPortGroupEntry[] | undefined): void {
    if (next === undefined) {
      if (groups !== undefined) configLog.warn('reload: "targetPortGroups" was removed from the file; the groups stay as they are until the next start');
      return;
    }
    if (groups === undefined) {
      configLog.warn('reload: "targetPortGroups" appeared in the file; ALUA groups take effect at the next start');
      return;
    }
    const ids = new Set(next.map((g) => g.id));
    const missing = [...config.ports, ...config.hostLuns].filter((p) => !ids.has(p.group));
    if (missing.length > 0 || next.length !== new Set(next.map((g) => g.id)).size) {
      configLog.error(`reload: targetPortGroups must define each group once, including ${[...new Set(config.ports.map((p) => p.group))].join(', ')}; groups unchanged`);
      return;
    }
    const before = new Map(groups.map((g) => [g.id, g]));
    const changed = next.filter((g) => before.get(g.id)?.state !== g.state || before.get(g.id)?.preferred !== g.preferred);
    if (changed.length === 0) return;
    try {
      target.setTargetPortGroups(aluaGroups(next, config.ports, config.hostLuns));
    } catch (e) {
      configLog.error(`reload: targetPortGroups: ${(e as Error).message}; groups unchanged`);
      return;
    }
    groups = next.map((g) => ({ ...g }));
    for (const g of changed) {
      configLog.info(`reload: target port group ${g.id} is now ${stateWord(g)}${g.preferred ? ' (preferred)' : ''}: ASYMMETRIC ACCESS STATE CHANGED raised`);
    }
  }
  let shuttingDown = false;
  return {
    server: ports[0].server,
    device: ports[0].device,
    ports,
    hostLuns,
    target,
    reload(done) {
      reloader.reload(done);
    },
    shutdown(done) {
      if (shuttingDown) return;
      shuttingDown = true;
      // A reload in progress finishes first (a removed LU's store is closed by it). Then the
      // host exposures in reverse order (their I/O drained, the configfs entries removed), then
      // the sockets, then the target (flush, close).
      reloader.close(() => {
        stopHostLuns(hostLuns, host, log.child('tcmu'), (hostErr) => {
          let left = ports.length;
          for (const p of ports) {
            p.server.close(() => {
              if (--left === 0) {
                target.close((err) => {
                  engines.close();
                  done(hostErr ?? err);
                });
              }
            });
          }
        });
      });
    },
  };
}

function startHostLuns(config: ServeConfig, target: ScsiTarget, host: ConfigfsHost, log: Logger, out: BackendHostLun[]): void {
  const names = config.hostLuns.map((h) => hostBackstoreName(config, h.lun));
  // Entries of this backend that the configuration no longer wants (a crashed run's leftovers).
  const prefix = hostBackstoreName(config, 0).replace(/lun0$/, '');
  for (const d of host.list()) {
    if (!d.spec.name.startsWith(prefix) || names.includes(d.spec.name)) continue;
    host.unexpose(d);
    log.info(`removed stale host exposure ${d.spec.name}`);
  }
  for (const h of config.hostLuns) {
    const lu = target.getLogicalUnit(h.lun)!;
    const nexus = hostNexus(h);
    // expose() links the LUN off the event loop: the kernel's scan sends INQUIRY through the
    // ring this process serves, so the device must be started right after it.
    const exposed = host.expose({
      lun: h.lun, name: hostBackstoreName(config, h.lun), wwn: h.wwn, initiator: h.initiator,
      sizeBytes: lu.store.sizeBytes, blockSize: lu.blockSize,
    }, (err, d) => {
      if (err !== null) log.error(`LUN ${h.lun}: the host did not attach the disk: ${err.message}`);
      else log.info(`LUN ${h.lun} exposed on this host: ${d.blockDevice !== null ? `/dev/${d.blockDevice}` : d.scsiAddress ?? '(binding)'} ` +
        `via ${h.wwn} (nexus ${h.initiator}, ${d.uioPath}${d.reattached ? ', re-attached' : ''})`);
    });
    const device = new TcmuDevice({ uioPath: exposed.uioPath, target, nexus, lun: h.lun, log });
    try {
      device.start();
    } catch (e) {
      host.unexpose(exposed);
      throw e;
    }
    target.nexusEstablished(nexus);
    out.push({ config: h, nexus, exposed, device });
  }
}

/**
 * Reverse order: the host lets go of the disk while the ring is still served (its last
 * SYNCHRONIZE CACHE goes through us), then the device drains and stops, then the configfs
 * entries go.
 */
function stopHostLuns(hostLuns: readonly BackendHostLun[], host: ConfigfsHost | null, log: Logger, done: (err: Error | null) => void): void {
  if (host === null) {
    done(null);
    return;
  }
  let firstErr: Error | null = null;
  let i = hostLuns.length;
  const next = (): void => {
    if (i === 0) {
      done(firstErr);
      return;
    }
    const h = hostLuns[--i];
    host.detach(h.exposed, (detachErr) => {
      if (detachErr !== null) {
        log.error(`LUN ${h.config.lun}: detaching the host disk: ${detachErr.message}`);
        firstErr ??= detachErr;
      }
      h.device.stop((err) => {
        if (err !== null) firstErr ??= err;
        try {
          host.unexpose(h.exposed);
          log.info(`LUN ${h.config.lun}: host exposure removed`);
        } catch (e) {
          log.error(`LUN ${h.config.lun}: removing the host exposure: ${(e as Error).message}`);
          firstErr ??= e as Error;
        }
        next();
      });
    });
  };
  next();
}

function stateWord(g: TargetPortGroupEntry): string {
  return ['active-optimized', 'active-non-optimized', 'standby', 'unavailable'][g.state] ?? `state ${g.state}`;
}

/** One result for an event sent to several controllers: sent to any, else missed by any. */
function combine(rs: LunEventResult[]): LunEventResult {
  if (rs.includes('sent')) return 'sent';
  if (rs.includes('missed')) return 'missed';
  return 'not-negotiated';
}
