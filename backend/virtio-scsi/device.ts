// The virtio-scsi device behind a vhost-user socket: one controller, one SCSI target port. Queue 0
// is the control queue, 1 the event queue, 2.. the request queues (virtio 1.2 §5.6.2). The
// frontend on the socket is one initiator port, so every command of this device carries one
// I_T nexus.

import { featureBit, VirtioFeature, type GuestMemory } from '../../virtqueue';
import type { ITNexus, ScsiTarget } from '../../scsi-emul';
import type { VhostUserDevice, VringSetup } from '../vhost-user/device';
import { Vring, DEFAULT_STOP_DEADLINE_MS, type ChainHandler } from '../vring';
import type { Logger } from '../log';
import { ControlQueue } from './control-queue';
import { EventQueue } from './event-queue';
import { RequestQueue } from './request-queue';
import {
  CONFIG_SIZE, ConfigOffset, CONTROL_QUEUE, DEFAULT_CDB_SIZE, DEFAULT_SENSE_SIZE, EVENT_QUEUE, EVENT_SIZE, FIRST_REQUEST_QUEUE,
  VirtioScsiFeature, EventType, TransportResetReason,
} from './spec';

export const DEFAULT_MAX_QUEUE_SIZE = 1024; // QEMU's VIRTQUEUE_MAX_SIZE
export const MAX_REQUEST_QUEUES = 64;

/** What became of a LUN event: delivered, no event buffer (EVENTS_MISSED follows), or feature off. */
export type LunEventResult = 'sent' | 'missed' | 'not-negotiated';

export interface VirtioScsiDeviceOptions {
  target: ScsiTarget;
  nexus: ITNexus;
  numRequestQueues: number;
  maxQueueSize?: number;
  log: Logger;
  stopDeadlineMs?: number;
  /** Request queues spin this long for new buffers before sleeping (Vring pollUs). */
  pollUs?: number;
  /** After each drain of any queue (Vring afterDrain): submit the I/O the drain queued. */
  afterDrain?: () => void;
}

interface RunningQueue {
  vring: Vring;
  handler: ChainHandler & { attach(v: Vring): void };
}

export class VirtioScsiDevice implements VhostUserDevice {
  readonly features: bigint;
  readonly queueCount: number;
  readonly maxQueueSize: number;
  readonly configSize = CONFIG_SIZE;
  private readonly queues: (RunningQueue | null)[];
  private readonly eventState = { missed: false };
  private status = 0;
  /** the features the driver accepted (from the started rings); 0 until one is started */
  private negotiated = 0n;
  private readonly log: Logger;

  constructor(private readonly opts: VirtioScsiDeviceOptions) {
    if (!Number.isInteger(opts.numRequestQueues) || opts.numRequestQueues < 1 || opts.numRequestQueues > MAX_REQUEST_QUEUES) {
      throw new RangeError(`numRequestQueues must be 1..${MAX_REQUEST_QUEUES}`);
    }
    this.queueCount = opts.numRequestQueues + 2;
    this.maxQueueSize = opts.maxQueueSize ?? DEFAULT_MAX_QUEUE_SIZE;
    this.log = opts.log;
    this.features =
      featureBit(VirtioFeature.VERSION_1) |
      featureBit(VirtioFeature.RING_INDIRECT_DESC) |
      featureBit(VirtioFeature.RING_EVENT_IDX) |
      featureBit(VirtioScsiFeature.HOTPLUG) |
      featureBit(VirtioScsiFeature.CHANGE);
    this.queues = new Array(this.queueCount).fill(null);
  }

  get nexus(): ITNexus { return this.opts.nexus; }

  /** A new frontend attached: for the SCSI core this is a new I_T nexus session (POWER ON/RESET UA). */
  connected(): void {
    this.opts.target.nexusEstablished(this.opts.nexus);
  }

  getConfig(offset: number, size: number): Uint8Array | null {
    if (offset < 0 || size <= 0 || offset + size > CONFIG_SIZE) return null;
    const c = new Uint8Array(CONFIG_SIZE);
    const dv = new DataView(c.buffer);
    dv.setUint32(ConfigOffset.num_queues, this.queueCount - 2, true);
    dv.setUint32(ConfigOffset.seg_max, this.maxQueueSize - 2, true);
    dv.setUint32(ConfigOffset.max_sectors, 0xffff, true);
    dv.setUint32(ConfigOffset.cmd_per_lun, 128, true);
    dv.setUint32(ConfigOffset.event_info_size, EVENT_SIZE, true);
    dv.setUint32(ConfigOffset.sense_size, DEFAULT_SENSE_SIZE, true);
    dv.setUint32(ConfigOffset.cdb_size, DEFAULT_CDB_SIZE, true);
    dv.setUint16(ConfigOffset.max_channel, 0, true);
    dv.setUint16(ConfigOffset.max_target, 0, true);
    dv.setUint32(ConfigOffset.max_lun, 16383, true);
    return c.slice(offset, offset + size);
  }

  /**
   * Only sense_size and cdb_size are driver-writable (§5.6.4), and only to the values this device
   * supports: the request layout is fixed at 32-byte CDBs and 96-byte sense.
   */
  setConfig(offset: number, data: Uint8Array, _flags: number): boolean {
    const current = this.getConfig(0, CONFIG_SIZE)!;
    if (offset < 0 || offset + data.length > CONFIG_SIZE) return false;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      const writable = (at >= ConfigOffset.sense_size && at < ConfigOffset.sense_size + 4) || (at >= ConfigOffset.cdb_size && at < ConfigOffset.cdb_size + 4);
      if (!writable || data[i] !== current[at]) return false;
    }
    return true;
  }

  startQueue(setup: VringSetup): void {
    this.stopNow(setup.index);
    this.negotiated = setup.features;
    const handler = this.makeHandler(setup);
    const pollUs = setup.index >= FIRST_REQUEST_QUEUE ? this.opts.pollUs ?? 0 : 0;
    const vring = new Vring(setup, handler, this.log, {
      stopDeadlineMs: this.opts.stopDeadlineMs ?? DEFAULT_STOP_DEADLINE_MS, pollUs, afterDrain: this.opts.afterDrain,
    });
    handler.attach(vring);
    this.queues[setup.index] = { vring, handler };
    this.log.debug(`queue ${setup.index} started: size ${setup.size}, last avail ${setup.lastAvailIdx}, ${setup.enabled ? 'enabled' : 'disabled'}`);
  }

  private makeHandler(setup: VringSetup): ChainHandler & { attach(v: Vring): void } {
    const { target, nexus } = this.opts;
    if (setup.index === CONTROL_QUEUE) return new ControlQueue({ target, nexus, log: this.log });
    if (setup.index === EVENT_QUEUE) return new EventQueue(this.eventState, this.log);
    return new RequestQueue(setup.size, setup.features, {
      target, nexus, cdbSize: DEFAULT_CDB_SIZE, senseSize: DEFAULT_SENSE_SIZE, log: this.log,
    });
  }

  stopQueue(index: number, done: (lastAvailIdx: number) => void): void {
    const q = this.queues[index];
    if (!q) {
      done(-1);
      return;
    }
    q.vring.stop((idx) => {
      if (this.queues[index] === q) this.queues[index] = null;
      q.vring.destroy();
      done(idx);
    });
  }

  private stopNow(index: number): void {
    const q = this.queues[index];
    if (q) {
      q.vring.destroy();
      this.queues[index] = null;
    }
  }

  setQueueEnabled(index: number, enabled: boolean): void {
    this.queues[index]?.vring.setEnabled(enabled);
  }

  setCallFd(index: number, fd: number): void {
    this.queues[index]?.vring.setCallFd(fd);
  }

  quiesce(done: () => void): void {
    const running = this.queues.filter((q): q is RunningQueue => q !== null);
    let left = running.length;
    if (left === 0) {
      done();
      return;
    }
    for (const q of running) q.vring.pause(() => { if (--left === 0) done(); });
  }

  memoryChanged(memory: GuestMemory | null): void {
    for (const q of this.queues) q?.vring.resume(memory);
  }

  setStatus(status: number): void {
    this.status = status;
  }

  getStatus(): number {
    return this.status;
  }

  reset(): void {
    for (let i = 0; i < this.queues.length; i++) this.stopNow(i);
    this.eventState.missed = false;
    this.status = 0;
    this.negotiated = 0n;
    // virtio reset = SCSI hard reset for this initiator (reliability.md §4.3): POWER ON/RESET UA.
    this.opts.target.nexusEstablished(this.opts.nexus);
  }

  /** Post a virtio-scsi event (hotplug, parameter change); false if it was recorded as missed. */
  postEvent(event: EventType, lun: number, reason: number): boolean {
    const q = this.queues[EVENT_QUEUE];
    if (!q) {
      this.eventState.missed = true;
      return false;
    }
    return (q.handler as EventQueue).post(event, lun, reason);
  }

  /**
   * The LUN inventory changed: TRANSPORT_RESET with reason RESCAN (LUN added) or REMOVED
   * (virtio 1.2 §5.6.6.3.1), sent only when the driver accepted VIRTIO_SCSI_F_HOTPLUG (Linux
   * posts event buffers only then; without it the unit attention is all the guest gets).
   */
  notifyLunInventory(lun: number, added: boolean): LunEventResult {
    if ((this.negotiated & featureBit(VirtioScsiFeature.HOTPLUG)) === 0n) return 'not-negotiated';
    const reason = added ? TransportResetReason.RESCAN : TransportResetReason.REMOVED;
    return this.postEvent(EventType.TRANSPORT_RESET, lun, reason) ? 'sent' : 'missed';
  }

  /**
   * A parameter of `lun` changed: PARAM_CHANGE with reason = ASC | ASCQ << 8 of the unit
   * attention the LU also raised (virtio 1.2 §5.6.6.3.2; e.g. 2A/09 → 0x092a, on which Linux
   * rescans the capacity). Sent only when the driver accepted VIRTIO_SCSI_F_CHANGE.
   */
  notifyParameterChange(lun: number, asc: number, ascq: number): LunEventResult {
    if ((this.negotiated & featureBit(VirtioScsiFeature.CHANGE)) === 0n) return 'not-negotiated';
    return this.postEvent(EventType.PARAM_CHANGE, lun, (asc & 0xff) | ((ascq & 0xff) << 8)) ? 'sent' : 'missed';
  }

  /** Counters per started queue, for logs and benchmarks. */
  queueStats(): { index: number; kicks: number; calls: number; chains: number }[] {
    const out = [];
    for (const q of this.queues) if (q) out.push({ index: q.vring.index, ...q.vring.stats });
    return out;
  }

  /** Session gone: drop every queue without touching guest memory again. */
  disconnect(): void {
    for (let i = 0; i < this.queues.length; i++) this.stopNow(i);
    this.negotiated = 0n;
  }
}
