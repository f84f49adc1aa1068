// The device behind a vhost-user session (DESIGN.md "Layers inside backend/" 4). The
// dispatcher owns the protocol state and every fd; the device owns what the rings mean.
// The fds handed over here (kick, call, err) stay owned by the dispatcher: the device uses
// them and never closes them; the dispatcher closes a kick fd only after stopQueue() has
// completed, and a replaced call fd only after setCallFd() has switched to the new one.

import type { GuestMemory } from '../../virtqueue';

/** Everything a started split ring needs. Ring addresses are front-end virtual addresses (QVAs). */
export interface VringSetup {
  index: number;
  /** SET_VRING_NUM: a power of 2, 1..maxQueueSize. */
  size: number;
  memory: GuestMemory;
  descTable: number;
  availRing: number;
  usedRing: number;
  /** SET_VRING_BASE (or the value GET_VRING_BASE returned): next avail index to process. */
  lastAvailIdx: number;
  kickFd: number;
  /** -1: none. */
  callFd: number;
  /** -1: none. */
  errFd: number;
  enabled: boolean;
  /** The negotiated virtio features (without the vhost-user bit 30). */
  features: bigint;
}

export interface VhostUserDevice {
  /** Virtio feature bits the device offers; the dispatcher ORs in bit 30 (PROTOCOL_FEATURES) itself. */
  readonly features: bigint;
  /** GET_QUEUE_NUM and the vring index bound. */
  readonly queueCount: number;
  /** e.g. 1024. */
  readonly maxQueueSize: number;
  /** virtio_scsi_config = 36. */
  readonly configSize: number;
  /** Bytes [offset, offset+size) of the config space, or null if the device refuses. */
  getConfig(offset: number, size: number): Uint8Array | null;
  /** Write config bytes; flags 1 = live migration (vhost-user.rst SET_CONFIG). False: refused. */
  setConfig(offset: number, data: Uint8Array, flags: number): boolean;
  /**
   * Start processing a ring. Throwing (e.g. a VirtqueueError for rings the device cannot
   * use) is a front-end error: the dispatcher leaves the ring stopped and closes the session.
   */
  startQueue(setup: VringSetup): void;
  /**
   * Stop a started ring: no new chains, wait (with a deadline) for in-flight ones, then
   * call done exactly once with the next avail index to process (a u16).
   */
  stopQueue(index: number, done: (lastAvailIdx: number) => void): void;
  setQueueEnabled(index: number, enabled: boolean): void;
  /** Call fd replaced while running (-1 = none). */
  setCallFd(index: number, fd: number): void;
  /**
   * Before a memory-table change on a running device: stop touching guest memory, wait
   * for in-flight I/O into it, then call done. memoryChanged() follows.
   */
  quiesce(done: () => void): void;
  /**
   * After a remap: re-translate the rings and resume (null = no memory). A ring whose
   * addresses no longer translate stays paused until it is stopped.
   */
  memoryChanged(memory: GuestMemory | null): void;
  /** SET_STATUS: the virtio device status byte as the front-end sees it. */
  setStatus(status: number): void;
  /** RESET_DEVICE: return to the initial state. All rings are already stopped when called. */
  reset(): void;
}
