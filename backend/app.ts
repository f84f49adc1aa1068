// Builds a running backend from a ServeConfig: backstores → logical units → target core →
// virtio-scsi device → vhost-user server. The CLI and the end-to-end tests both start here.

import { resolve } from 'node:path';
import { createFileStore, createRamStore, LogicalUnit, ScsiTarget, type BlockStore } from '../scsi-emul';
import { nativeIoEngine } from './io-engine';
import { Logger } from './log';
import { VhostUserServer } from './server';
import { VirtioScsiDevice } from './virtio-scsi/device';
import { ConfigError, type LunConfig, type ServeConfig } from './config';
import { LunReloader, type ReloadResult } from './reload';

export interface Backend {
  readonly server: VhostUserServer;
  readonly device: VirtioScsiDevice;
  readonly target: ScsiTarget;
  /** SIGHUP: re-read the --config file and apply its LUN changes live (backend/reload.ts). */
  reload(done?: (r: ReloadResult) => void): void;
  /** Stop accepting, end the session (in-flight I/O drained), flush every LU, close the stores, remove the socket. */
  shutdown(done: (err: Error | null) => void): void;
}

function openStore(l: LunConfig): BlockStore {
  if (l.backstore === 'ram') return createRamStore({ sizeBytes: l.size!, name: `ram${l.lun}` });
  try {
    return createFileStore({ path: l.path!, sizeBytes: l.size, readOnly: l.readOnly, direct: l.direct, engine: nativeIoEngine });
  } catch (e) {
    throw new ConfigError(`LUN ${l.lun}: ${(e as Error).message}`);
  }
}

/** The store and logical unit of one configured LUN (at start and when a reload adds it). */
export function openLogicalUnit(l: LunConfig): LogicalUnit {
  const store = openStore(l);
  try {
    return new LogicalUnit(store, {
      name: l.path ? `${resolve(l.path)}` : `ram-lun${l.lun}`,
      blockSize: l.blockSize,
      physicalBlockSize: l.physicalBlockSize,
      writeCache: l.writeCache,
      readOnly: l.readOnly || store.readOnly,
      identity: { vendor: l.vendor, product: l.product, revision: l.revision, serial: l.serial },
    });
  } catch (e) {
    store.close(() => {});
    throw new ConfigError(`LUN ${l.lun}: ${(e as Error).message}`);
  }
}

export function startBackend(config: ServeConfig, log = new Logger(config.logLevel), listenFd = -1): Backend {
  const target = new ScsiTarget();
  const stores: BlockStore[] = [];
  try {
    for (const l of config.luns) {
      const lu = openLogicalUnit(l);
      stores.push(lu.store);
      target.addLogicalUnit(l.lun, lu);
    }
  } catch (e) {
    for (const s of stores) s.close(() => {});
    throw e;
  }
  const device = new VirtioScsiDevice({
    target,
    nexus: { initiatorPort: config.initiatorId, targetPortId: 1 },
    numRequestQueues: config.queues,
    log: log.child('virtio-scsi'),
  });
  const reloader = new LunReloader({ target, events: device, log: log.child('config'), open: openLogicalUnit, config });
  const server = new VhostUserServer({ socketPath: config.socket, listenFd, device, log });
  server.listen();
  let shuttingDown = false;
  return {
    server,
    device,
    target,
    reload(done) {
      reloader.reload(done);
    },
    shutdown(done) {
      if (shuttingDown) return;
      shuttingDown = true;
      // A reload in progress finishes first (a removed LU's store is closed by it).
      reloader.close(() => {
        server.close(() => {
          target.close((err) => done(err));
        });
      });
    },
  };
}
