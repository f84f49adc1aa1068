// The vhost-user request dispatcher (DESIGN.md "Layers inside backend/" 3): a sans-IO state
// machine for one front-end connection. Message in, replies and device calls out; fds and
// mappings go through the injected HostOps, so unit tests need no socket and no addon.
//
// One table keyed by request code says, per message: which protocol feature it needs, how
// many fds it carries, whether it needs SET_OWNER first, and whether it has its own reply.
// Everything is enforced before a handler runs; a violation is a ProtocolError, which closes
// this connection (DESIGN.md "Errors, one family per layer"). Every fd received is either
// stored in exactly one slot or closed, on every path (V1.5, V1.6, C1, C6).
//
// Spec: QEMU docs/interop/vhost-user.rst; reliability.md V1-V3, §4.1-4.3.

import { GuestMemory, VirtqueueError, VirtioFeature, featureBit, hasFeature, VIRTQ_MAX_SIZE, type GuestRegion } from '../../virtqueue';
import type { VhostUserDevice, VringSetup } from './device';
import { ProtocolError } from './errors';
import { encodeReply, type VhostUserMessage } from './framing';
import {
  decodeConfig,
  decodeEmpty,
  decodeMemRegionMsg,
  decodeMemTable,
  decodeStatus,
  decodeU64,
  decodeVringAddr,
  decodeVringFile,
  decodeVringState,
  encodeConfig,
  encodeU64,
  encodeVringState,
  type MemRegion,
} from './messages';
import {
  FrontendRequest as R,
  MAX_FRONTEND_REQUEST,
  ProtocolFeature as PF,
  REQUESTS_WITH_REPLY,
  VHOST_F_LOG_ALL,
  VHOST_SET_CONFIG_TYPE_MIGRATION,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  VHOST_VRING_F_LOG,
  protocolFeatureBit,
  requestName,
} from './protocol';

/** Host services the dispatcher needs; the real ones wrap the native addon. */
export interface HostOps {
  /** MAP_SHARED, PROT_READ|PROT_WRITE; offset page-aligned. */
  mmap(fd: number, offset: bigint, length: number): Uint8Array;
  munmap(bytes: Uint8Array): void;
  /** fstat(fd).st_size. */
  fileSize(fd: number): bigint;
  closeFd(fd: number): void;
}

export interface SessionOutput {
  send(reply: Uint8Array, fds?: number[]): void;
  /** The session found the front-end at fault: drop the connection (the session tears itself down). */
  close(reason: string): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string): void;
}

export interface SessionOptions {
  /** GET_MAX_MEM_SLOTS answer and the ADD_MEM_REG region limit (V3.7). Default 32. */
  maxMemSlots?: number;
  /** Alignment of mmap offsets. Default 4096. */
  pageSize?: number;
  /**
   * Largest single mmap; bigger regions are mapped in pieces of this size (the addon's
   * ArrayBuffers are limited to 2^32 bytes on Node 20). A multiple of pageSize. Default 2^31,
   * which keeps pieces aligned to 1 GiB huge pages.
   */
  maxMappingSize?: number;
}

/** Protocol features this back-end offers (GET_PROTOCOL_FEATURES). */
export const OFFERED_PROTOCOL_FEATURES =
  protocolFeatureBit(PF.MQ) |
  protocolFeatureBit(PF.REPLY_ACK) |
  protocolFeatureBit(PF.CONFIG) |
  protocolFeatureBit(PF.RESET_DEVICE) |
  protocolFeatureBit(PF.CONFIGURE_MEM_SLOTS) |
  protocolFeatureBit(PF.STATUS);

export const DEFAULT_MAX_MEM_SLOTS = 32;
/** QEMU VHOST_USER_MAX_RAM_SLOTS: the front-end never uses more. */
const MAX_MEM_SLOTS_LIMIT = 512;
const DEFAULT_PAGE_SIZE = 4096;
const DEFAULT_MAX_MAPPING = 2 ** 31;
/** Messages buffered while an asynchronous step (ring stop, quiesce) is in progress. */
const MAX_QUEUED_MESSAGES = 64;

/**
 * Virtio feature bits the dispatcher cannot honour whatever the device says: dirty logging
 * (no SET_LOG_BASE), an IOMMU (no IOTLB_MSG), packed rings (GET/SET_VRING_BASE and
 * VringSetup are split-ring only).
 */
const UNSUPPORTED_VIRTIO_FEATURES =
  featureBit(VHOST_F_LOG_ALL) | featureBit(VirtioFeature.ACCESS_PLATFORM) | featureBit(VirtioFeature.RING_PACKED);

const PROTOCOL_FEATURES_BIT = featureBit(VHOST_USER_F_PROTOCOL_FEATURES);
const U64_END = 1n << 64n;
/** Addresses are Numbers once accepted: every region must end at or below 2^53. */
const SAFE_END = 1n << 53n;

/** A handler's outcome: undefined = success, ASYNC = it replies later, a number = a refused (non-fatal) request. */
const ASYNC = Symbol('async');
type Outcome = undefined | typeof ASYNC | number;

interface RequestDef {
  /** Must be negotiated by SET_PROTOCOL_FEATURES first. */
  protocolFeature?: PF;
  /** Exact fd count, checked before the handler; undefined = the handler checks (count depends on the payload). */
  fds?: number;
  /** Only after SET_OWNER. */
  owner?: boolean;
  handle: (session: VhostUserSession, msg: VhostUserMessage) => Outcome;
}

/** One memory region of the table, mapped in one or more pieces. */
interface Mapping {
  /** As the front-end described it (REM_MEM_REG matches on these). */
  guestPhysAddr: bigint;
  userAddr: bigint;
  size: bigint;
  pieces: {
    /** What GuestMemory translates into. */
    region: GuestRegion;
    /** The whole mmap, from a page-aligned offset: what munmap releases. */
    mapping: Uint8Array;
  }[];
}

interface Ring {
  /** SET_VRING_NUM; 0 = not set. */
  num: number;
  addrSet: boolean;
  desc: number;
  avail: number;
  used: number;
  /** Next avail index to process (SET_VRING_BASE / the last GET_VRING_BASE). */
  base: number;
  kickFd: number;
  callFd: number;
  errFd: number;
  /** err fds replaced while the ring ran: the device may still signal them, so they close at stop. */
  retiredErrFds: number[];
  enabled: boolean;
  started: boolean;
}

function newRing(): Ring {
  return {
    num: 0, addrSet: false, desc: 0, avail: 0, used: 0, base: 0,
    kickFd: -1, callFd: -1, errFd: -1, retiredErrFds: [], enabled: false, started: false,
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

export class VhostUserSession {
  private readonly offeredFeatures: bigint;
  private readonly maxMemSlots: number;
  private readonly pageSize: bigint;
  private readonly maxMapping: bigint;
  private readonly rings: Ring[];

  private owner = false;
  /** SET_FEATURES value (with bit 30 if the front-end acked it). */
  private ackedFeatures = 0n;
  private protocolFeatures = 0n;
  private status = 0;
  private mappings: Mapping[] = [];
  private memory: GuestMemory | null = null;

  /** Messages waiting while an asynchronous step (ring stop, quiesce) runs: processed in order. */
  private readonly inbox: VhostUserMessage[] = [];
  private draining = false;
  private busy = false;
  /** fds of the message being processed that no slot owns yet. */
  private unclaimed: number[] = [];
  private closing = false;
  private tornDown = false;
  private closeWaiters: (() => void)[] = [];

  constructor(
    private readonly device: VhostUserDevice,
    private readonly host: HostOps,
    private readonly out: SessionOutput,
    options: SessionOptions = {},
  ) {
    const slots = options.maxMemSlots ?? DEFAULT_MAX_MEM_SLOTS;
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_MEM_SLOTS_LIMIT) {
      throw new RangeError(`maxMemSlots must be 1..${MAX_MEM_SLOTS_LIMIT}`);
    }
    const page = options.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(page) || page < 1 || (page & (page - 1)) !== 0) {
      throw new RangeError('pageSize must be a power of 2');
    }
    if (!Number.isInteger(device.queueCount) || device.queueCount < 1 || device.queueCount > 256) {
      // SET_VRING_KICK/CALL/ERR carry the index in 8 bits.
      throw new RangeError('device.queueCount must be 1..256');
    }
    const piece = options.maxMappingSize ?? DEFAULT_MAX_MAPPING;
    if (!Number.isSafeInteger(piece) || piece < page || piece % page !== 0) {
      throw new RangeError('maxMappingSize must be a positive multiple of pageSize');
    }
    this.maxMemSlots = slots;
    this.pageSize = BigInt(page);
    this.maxMapping = BigInt(piece);
    if ((device.features & UNSUPPORTED_VIRTIO_FEATURES) !== 0n) {
      out.log('warn', `not offering feature bits ${hex(device.features & UNSUPPORTED_VIRTIO_FEATURES)}: the vhost-user layer does not implement them`);
    }
    this.offeredFeatures = (device.features & ~UNSUPPORTED_VIRTIO_FEATURES) | PROTOCOL_FEATURES_BIT;
    this.rings = Array.from({ length: device.queueCount }, newRing);
  }

  /** True once the session is closing or closed: further messages are discarded (their fds closed). */
  get closed(): boolean {
    return this.closing;
  }

  /** Feed one complete message (from MessageAssembler). Never throws: protocol errors become out.close(reason). */
  handle(msg: VhostUserMessage): void {
    if (this.closing) {
      this.closeFds(msg.fds);
      return;
    }
    if (this.inbox.length >= MAX_QUEUED_MESSAGES) {
      // A front-end waits for the reply that holds the queue up; one that keeps sending
      // (each message may pin fds) is refused rather than buffered without bound (V8.1).
      this.closeFds(msg.fds);
      const reason = `more than ${MAX_QUEUED_MESSAGES} messages sent while waiting for ${requestName(this.inbox[0].request)}'s turn`;
      this.out.log('warn', reason);
      this.out.close(reason);
      this.close();
      return;
    }
    this.inbox.push(msg);
    this.drain();
  }

  /**
   * Connection ended: stop the rings (waiting for the device), unmap guest memory, close every
   * fd. done() runs when all of that is finished. Idempotent; every caller's done() runs.
   */
  close(done?: () => void): void {
    if (done) this.closeWaiters.push(done);
    if (this.tornDown) {
      this.flushCloseWaiters();
      return;
    }
    if (this.closing) return;
    this.closing = true;
    for (const m of this.inbox.splice(0)) this.closeFds(m.fds);
    if (!this.busy) this.teardown();
    // else: the running asynchronous step calls resume(), which continues the teardown.
  }

  // ---- message pump ---------------------------------------------------------------------

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.busy && !this.closing && this.inbox.length > 0) {
        this.process(this.inbox.shift()!);
      }
    } finally {
      this.draining = false;
    }
  }

  /** An asynchronous step finished: go on with the next message, or with the teardown. */
  private resume(): void {
    this.busy = false;
    if (this.closing) this.teardown();
    else this.drain();
  }

  private process(msg: VhostUserMessage): void {
    this.unclaimed = msg.fds.slice();
    try {
      const def = this.admit(msg);
      this.out.log('debug', `${requestName(msg.request)} flags=${hex(msg.flags)} size=${msg.payload.length} fds=${msg.fds.length}`);
      const outcome = def.handle(this, msg);
      this.releaseUnclaimed();
      if (outcome !== ASYNC) this.finish(msg, outcome);
    } catch (err) {
      this.fail(msg, err);
    }
  }

  /** Header, request table, negotiated feature, ownership and fixed fd count (V1.2-V1.5). */
  private admit(msg: VhostUserMessage): RequestDef {
    const { request, flags } = msg;
    // front-end-controlled header: validated here.
    if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
      throw new ProtocolError(request, `unsupported protocol version ${flags & VHOST_USER_VERSION_MASK} (flags ${hex(flags)})`);
    }
    if (flags & VHOST_USER_REPLY_MASK) {
      throw new ProtocolError(request, 'the REPLY flag is set on a request');
    }
    if ((flags & ~(VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_MASK | VHOST_USER_NEED_REPLY_MASK)) !== 0) {
      throw new ProtocolError(request, `undefined header flag bits ${hex(flags >>> 0)}`);
    }
    // C11: range-check the code before looking anything up by it.
    if (!Number.isInteger(request) || request < 1 || request > MAX_FRONTEND_REQUEST) {
      throw new ProtocolError(0, `unknown request code ${request >>> 0}`);
    }
    const def = VhostUserSession.requests[request];
    if (!def) {
      const needs = UNIMPLEMENTED_NEEDS[request];
      throw new ProtocolError(
        request,
        needs === undefined ? 'not supported by this back-end' : `needs protocol feature ${PF[needs]}, which this back-end does not offer`,
      );
    }
    if (def.protocolFeature !== undefined && !this.hasProtocolFeature(def.protocolFeature)) {
      const offered = (OFFERED_PROTOCOL_FEATURES & protocolFeatureBit(def.protocolFeature)) !== 0n;
      throw new ProtocolError(
        request,
        `needs protocol feature ${PF[def.protocolFeature]}, which ${offered ? 'was not negotiated' : 'this back-end does not offer'}`,
      );
    }
    if (def.owner && !this.owner) {
      throw new ProtocolError(request, 'sent before SET_OWNER');
    }
    if (def.fds !== undefined) this.expectFds(msg, def.fds);
    return def;
  }

  private expectFds(msg: VhostUserMessage, n: number): void {
    // C1/C6: every request has an exact fd count; a mismatch closes them all (fail()).
    if (msg.fds.length !== n) {
      throw new ProtocolError(msg.request, `carries ${msg.fds.length} fd(s), expected ${n}`);
    }
  }

  /**
   * REPLY_ACK: a request with NEED_REPLY gets a u64 answer unless it has a reply body of
   * its own. Only for a well-formed header of a request the spec defines: for anything
   * else the shape of the expected answer is unknown.
   */
  private needsAck(msg: VhostUserMessage): boolean {
    const { request, flags } = msg;
    return (
      (flags & VHOST_USER_NEED_REPLY_MASK) !== 0 &&
      (flags & ~(VHOST_USER_VERSION_MASK | VHOST_USER_NEED_REPLY_MASK)) === 0 &&
      (flags & VHOST_USER_VERSION_MASK) === VHOST_USER_VERSION &&
      request >= 1 &&
      request <= MAX_FRONTEND_REQUEST &&
      !REQUESTS_WITH_REPLY.has(request) &&
      this.hasProtocolFeature(PF.REPLY_ACK)
    );
  }

  /** Success or a refused request: the REPLY_ACK answer, if one was asked for. */
  private finish(msg: VhostUserMessage, outcome: undefined | number): void {
    if (typeof outcome === 'number') {
      this.out.log('warn', `${requestName(msg.request)} refused`);
    }
    if (this.needsAck(msg)) {
      // vhost-user.rst "REPLY_ACK": zero on success, non-zero on failure.
      this.send(msg.request, encodeU64(BigInt(outcome ?? 0)));
    }
  }

  private fail(msg: VhostUserMessage, err: unknown): void {
    this.releaseUnclaimed(true);
    const reason = err instanceof ProtocolError ? err.message : `internal error handling ${requestName(msg.request)}: ${errorText(err)}`;
    if (this.closing) {
      this.out.log('debug', `after close: ${reason}`);
      return;
    }
    this.out.log(err instanceof ProtocolError ? 'warn' : 'error', reason);
    try {
      // Under REPLY_ACK the front-end gets a definite failure before the connection drops (V1.3).
      if (this.needsAck(msg)) this.send(msg.request, encodeU64(1n));
      this.out.close(reason);
    } catch (e) {
      this.out.log('error', `while dropping the connection: ${errorText(e)}`);
    }
    this.close();
  }

  private send(request: number, payload: Uint8Array): void {
    if (this.closing) return;
    this.out.send(encodeReply(request, payload));
  }

  // ---- fd ownership ------------------------------------------------------------------------

  /** Take ownership of fd (it came with the current message). */
  private claim(fd: number): number {
    const i = this.unclaimed.indexOf(fd);
    if (i >= 0) this.unclaimed.splice(i, 1);
    return fd;
  }

  /** After a handler: fds nobody claimed are closed (on success there are none left). */
  private releaseUnclaimed(onError = false): void {
    if (this.unclaimed.length > 0 && !onError) {
      this.out.log('error', `closing ${this.unclaimed.length} fd(s) no handler claimed`);
    }
    this.closeFds(this.unclaimed);
    this.unclaimed = [];
  }

  private closeFd(fd: number): void {
    if (fd < 0) return;
    try {
      this.host.closeFd(fd);
    } catch (e) {
      this.out.log('warn', `close(${fd}): ${errorText(e)}`);
    }
  }

  private closeFds(fds: readonly number[]): void {
    for (const fd of fds) this.closeFd(fd);
  }

  // ---- shared state helpers -----------------------------------------------------------------

  private hasProtocolFeature(f: PF): boolean {
    return (this.protocolFeatures & protocolFeatureBit(f)) !== 0n;
  }

  private get protocolFeaturesAcked(): boolean {
    return (this.ackedFeatures & PROTOCOL_FEATURES_BIT) !== 0n;
  }

  private anyStarted(): boolean {
    return this.rings.some((r) => r.started);
  }

  private ring(request: number, index: number): Ring {
    // front-end-controlled: validated here as an unsigned 32-bit value (C4, C10, V2.3).
    if (index >= this.rings.length) {
      throw new ProtocolError(request, `vring index ${index >>> 0} out of range (${this.rings.length} queues)`);
    }
    return this.rings[index];
  }

  private stoppedRing(request: number, index: number): Ring {
    const r = this.ring(request, index);
    if (r.started) throw new ProtocolError(request, `vring ${index} is started (stop it with GET_VRING_BASE first)`);
    return r;
  }

  // ---- ring lifecycle (vhost-user.rst "Ring states") ------------------------------------------

  /**
   * Start a ring once it has everything: size, addresses, a kick fd and a memory table, in
   * whatever order they came (V2.1; the spec starts a ring on its first kick, and like
   * libvhost-user we hand the kick fd to the device, which starts processing on it).
   */
  private tryStart(request: number, index: number): void {
    const r = this.rings[index];
    if (r.started || r.kickFd < 0 || r.num === 0 || !r.addrSet || this.memory === null) return;
    const memory = this.memory;
    // V2.5: each ring area must lie inside one region. With a partial table (ADD_MEM_REG
    // sequences) it may not yet: wait for more memory rather than fail.
    const eventIdx = hasFeature(this.ackedFeatures, VirtioFeature.RING_EVENT_IDX) ? 2 : 0;
    try {
      memory.qvaView(r.desc, 16 * r.num); // virtio 1.2 §2.7.5: 16-byte descriptors
      memory.qvaView(r.avail, 4 + 2 * r.num + eventIdx); // §2.7.6: flags, idx, ring[], used_event
      memory.qvaView(r.used, 4 + 8 * r.num + eventIdx); // §2.7.8: flags, idx, ring[] of 8, avail_event
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.out.log('warn', `vring ${index}: not started, ${e.message}`);
      return;
    }
    // "If VHOST_USER_F_PROTOCOL_FEATURES has not been negotiated, the ring starts directly in
    // the enabled state."
    if (!this.protocolFeaturesAcked) r.enabled = true;
    const setup: VringSetup = {
      index,
      size: r.num,
      memory,
      descTable: r.desc,
      availRing: r.avail,
      usedRing: r.used,
      lastAvailIdx: r.base,
      kickFd: r.kickFd,
      callFd: r.callFd,
      errFd: r.errFd,
      enabled: r.enabled,
      features: this.ackedFeatures & ~PROTOCOL_FEATURES_BIT,
    };
    try {
      this.device.startQueue(setup);
    } catch (e) {
      throw new ProtocolError(request, `vring ${index}: the device refused to start it: ${errorText(e)}`);
    }
    r.started = true;
  }

  private tryStartAll(request: number): void {
    for (let i = 0; i < this.rings.length; i++) this.tryStart(request, i);
  }

  /**
   * Stop a started ring through the device (asynchronous: it drains in-flight requests).
   * Afterwards the kick fd is forgotten (C15) and nothing else of the ring is reset (C12).
   * If the device throws instead, the ring counts as stopped and the error propagates.
   */
  private stopRing(index: number, then: (lastAvailIdx: number) => void): void {
    const r = this.rings[index];
    let fired = false;
    const stopped = (idx: number): void => {
      r.started = false;
      if (Number.isInteger(idx) && idx >= 0 && idx <= 0xffff) {
        r.base = idx;
      } else {
        this.out.log('warn', `vring ${index}: device returned last avail index ${idx}; keeping ${r.base}`);
      }
      this.closeFd(r.kickFd);
      r.kickFd = -1;
      this.closeFds(r.retiredErrFds);
      r.retiredErrFds = [];
    };
    try {
      this.device.stopQueue(index, (idx) => {
        if (fired) {
          this.out.log('error', `device reported vring ${index} stopped twice`);
          return;
        }
        fired = true;
        stopped(idx);
        then(r.base);
      });
    } catch (e) {
      if (!fired) {
        fired = true;
        stopped(r.base);
      }
      throw e;
    }
  }

  /**
   * Run an asynchronous step of the current message. The step calls complete(body) once:
   * body finishes the work (its exceptions close the session like any handler's), then the
   * REPLY_ACK answer goes out and the pump resumes with the next message.
   */
  private async_(
    msg: VhostUserMessage,
    start: (complete: (body: () => number | void) => void) => void,
  ): typeof ASYNC {
    this.busy = true;
    let completed = false;
    const complete = (body: () => number | void): void => {
      if (completed) {
        this.out.log('error', `${requestName(msg.request)}: completion reported twice`);
        return;
      }
      completed = true;
      try {
        const outcome = body();
        this.finish(msg, typeof outcome === 'number' ? outcome : undefined);
      } catch (err) {
        this.fail(msg, err);
      }
      this.resume();
    };
    try {
      start(complete);
    } catch (err) {
      if (completed) {
        this.out.log('error', `${requestName(msg.request)}: ${errorText(err)} after completion`);
      } else {
        completed = true;
        this.busy = false;
        throw err;
      }
    }
    return ASYNC;
  }

  private teardown(): void {
    if (this.tornDown) return;
    for (let i = this.rings.findIndex((r) => r.started); i >= 0; i = this.rings.findIndex((r) => r.started)) {
      this.busy = true;
      try {
        this.stopRing(i, () => this.resume());
        return; // resume() continues the teardown
      } catch (e) {
        this.busy = false;
        this.out.log('error', `vring ${i}: the device failed to stop it: ${errorText(e)}`);
      }
    }
    for (const r of this.rings) {
      this.closeFd(r.kickFd);
      this.closeFd(r.callFd);
      this.closeFd(r.errFd);
      this.closeFds(r.retiredErrFds);
      r.kickFd = r.callFd = r.errFd = -1;
      r.retiredErrFds = [];
    }
    this.unmapAll(this.mappings);
    this.mappings = [];
    this.memory = null;
    this.tornDown = true;
    this.flushCloseWaiters();
  }

  private flushCloseWaiters(): void {
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const w of waiters) w();
  }

  // ---- memory table (V3) ------------------------------------------------------------------

  /** Validate and map one region (V3.2). The fd stays with the caller. */
  private mapRegion(request: number, r: MemRegion, fd: number, what: string): Mapping {
    // front-end-controlled: validated here, in BigInt so nothing can wrap (C3, V10.2).
    if (r.size === 0n) throw new ProtocolError(request, `${what}: size 0`);
    if (r.guestPhysAddr + r.size > U64_END) throw new ProtocolError(request, `${what}: guest address ${hex(r.guestPhysAddr)} + size ${hex(r.size)} overflows 64 bits`);
    if (r.userAddr + r.size > U64_END) throw new ProtocolError(request, `${what}: user address ${hex(r.userAddr)} + size ${hex(r.size)} overflows 64 bits`);
    if (r.mmapOffset + r.size > U64_END) throw new ProtocolError(request, `${what}: mmap offset ${hex(r.mmapOffset)} + size ${hex(r.size)} overflows 64 bits`);
    if (r.guestPhysAddr + r.size > SAFE_END) throw new ProtocolError(request, `${what}: guest range ends above 2^53`);
    if (r.userAddr + r.size > SAFE_END) throw new ProtocolError(request, `${what}: user address range ends above 2^53`);
    let fileSize: bigint;
    try {
      fileSize = this.host.fileSize(fd);
    } catch (e) {
      throw new ProtocolError(request, `${what}: cannot stat the region fd: ${errorText(e)}`);
    }
    // A mapping past EOF raises SIGBUS on access, which no JS handler can catch (V3.2).
    if (r.mmapOffset + r.size > fileSize) {
      throw new ProtocolError(request, `${what}: mmap offset ${hex(r.mmapOffset)} + size ${hex(r.size)} is past the end of the file (${hex(fileSize)})`);
    }
    const m: Mapping = { guestPhysAddr: r.guestPhysAddr, userAddr: r.userAddr, size: r.size, pieces: [] };
    try {
      // Map [aligned start, mmapOffset + size) in pieces of at most maxMapping bytes, each
      // starting page-aligned; every piece contributes the part of the region it covers.
      const end = r.mmapOffset + r.size;
      for (let at = r.mmapOffset & ~(this.pageSize - 1n); at < end; at += this.maxMapping) {
        const pieceEnd = at + this.maxMapping < end ? at + this.maxMapping : end;
        const length = Number(pieceEnd - at);
        let bytes: Uint8Array;
        try {
          bytes = this.host.mmap(fd, at, length);
        } catch (e) {
          throw new ProtocolError(request, `${what}: mmap of ${hex(length)} bytes at offset ${hex(at)} failed: ${errorText(e)}`);
        }
        if (bytes.length !== length) {
          this.unmap(bytes);
          throw new ProtocolError(request, `${what}: mmap returned ${bytes.length} bytes, expected ${length}`);
        }
        const from = at < r.mmapOffset ? r.mmapOffset : at; // file offset of the first region byte here
        const skip = Number(from - at);
        const regionOffset = from - r.mmapOffset;
        m.pieces.push({
          mapping: bytes,
          region: {
            guestPhysAddr: Number(r.guestPhysAddr + regionOffset),
            userAddr: Number(r.userAddr + regionOffset),
            size: length - skip,
            bytes: bytes.subarray(skip),
          },
        });
      }
    } catch (e) {
      this.unmapAll([m]);
      throw e;
    }
    return m;
  }

  private unmap(bytes: Uint8Array): void {
    try {
      this.host.munmap(bytes);
    } catch (e) {
      this.out.log('error', `munmap: ${errorText(e)}`);
    }
  }

  private unmapAll(ms: readonly Mapping[]): void {
    for (const m of ms) for (const p of m.pieces) this.unmap(p.mapping);
  }

  /**
   * Switch to the table keep + added, releasing `removed`. On a running device the order is
   * quiesce, unmap, memoryChanged (C13, V3.6): no request may touch an old mapping after it
   * is gone. The new mappings already exist, so nothing can fail after the quiesce.
   */
  private replaceMemory(msg: VhostUserMessage, keep: Mapping[], added: Mapping[], removed: Mapping[]): Outcome {
    const next = keep.concat(added);
    let memory: GuestMemory | null = null;
    try {
      if (next.length > 0) memory = new GuestMemory(next.flatMap((m) => m.pieces.map((p) => p.region)));
    } catch (e) {
      this.unmapAll(added);
      // V3.3: overlapping or malformed regions.
      throw new ProtocolError(msg.request, errorText(e));
    }
    const commit = (): void => {
      this.mappings = next;
      this.memory = memory;
      this.unmapAll(removed);
    };
    if (!this.anyStarted()) {
      commit();
      this.tryStartAll(msg.request);
      return undefined;
    }
    return this.async_(msg, (complete) => {
      this.device.quiesce(() =>
        complete(() => {
          commit();
          this.device.memoryChanged(memory);
          this.tryStartAll(msg.request);
        }),
      );
    });
  }

  // ---- handlers -----------------------------------------------------------------------------

  private getFeatures(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.send(msg.request, encodeU64(this.offeredFeatures));
    return undefined;
  }

  private setFeatures(msg: VhostUserMessage): Outcome {
    const v = decodeU64(msg.request, msg.payload);
    // V2.2: only what we offered.
    const unoffered = v & ~this.offeredFeatures;
    if (unoffered !== 0n) throw new ProtocolError(msg.request, `feature bits ${hex(unoffered)} were not offered`);
    if (this.anyStarted() && v !== this.ackedFeatures) {
      throw new ProtocolError(msg.request, 'features changed while a vring is started');
    }
    this.ackedFeatures = v;
    // "Ring states": SET_FEATURES without bit 30 enables all rings immediately.
    if ((v & PROTOCOL_FEATURES_BIT) === 0n) for (const r of this.rings) r.enabled = true;
    return undefined;
  }

  private getProtocolFeatures(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.send(msg.request, encodeU64(OFFERED_PROTOCOL_FEATURES));
    return undefined;
  }

  private setProtocolFeatures(msg: VhostUserMessage): Outcome {
    const v = decodeU64(msg.request, msg.payload);
    const unoffered = v & ~OFFERED_PROTOCOL_FEATURES;
    if (unoffered !== 0n) throw new ProtocolError(msg.request, `protocol feature bits ${hex(unoffered)} were not offered`);
    if (this.anyStarted() && v !== this.protocolFeatures) {
      throw new ProtocolError(msg.request, 'protocol features changed while a vring is started');
    }
    this.protocolFeatures = v;
    return undefined;
  }

  private setOwner(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    if (this.owner) this.out.log('debug', 'SET_OWNER again on an owned session');
    this.owner = true;
    return undefined;
  }

  /**
   * Deprecated: "back-ends either ignore this message, or use it to disable all rings". We
   * disable them; discarding connection state here is what the spec warns leads to bugs.
   */
  private resetOwner(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.rings.forEach((r, i) => {
      r.enabled = false;
      if (r.started) this.device.setQueueEnabled(i, false);
    });
    return undefined;
  }

  private setMemTable(msg: VhostUserMessage): Outcome {
    const regions = decodeMemTable(msg.request, msg.payload);
    // "The size and ordering of the fds matches the number and ordering of memory regions."
    this.expectFds(msg, regions.length);
    const added: Mapping[] = [];
    try {
      regions.forEach((r, i) => added.push(this.mapRegion(msg.request, r, msg.fds[i], `region ${i}`)));
    } catch (e) {
      this.unmapAll(added);
      throw e;
    }
    // The mappings keep the memory; the fds are no longer needed.
    for (const fd of msg.fds) this.closeFd(this.claim(fd));
    return this.replaceMemory(msg, [], added, this.mappings);
  }

  private getMaxMemSlots(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.send(msg.request, encodeU64(BigInt(this.maxMemSlots)));
    return undefined;
  }

  private addMemReg(msg: VhostUserMessage): Outcome {
    const r = decodeMemRegionMsg(msg.request, msg.payload);
    if (this.mappings.length >= this.maxMemSlots) {
      throw new ProtocolError(msg.request, `all ${this.maxMemSlots} memory slots are in use`);
    }
    const fd = msg.fds[0];
    const m = this.mapRegion(msg.request, r, fd, 'region');
    this.closeFd(this.claim(fd));
    return this.replaceMemory(msg, this.mappings, [m], []);
  }

  private remMemReg(msg: VhostUserMessage): Outcome {
    const r = decodeMemRegionMsg(msg.request, msg.payload);
    // "No file descriptors SHOULD be passed ... If a file descriptor is passed, the back-end
    // MUST close it without using it otherwise."
    if (msg.fds.length > 1) this.expectFds(msg, 1);
    for (const fd of msg.fds) this.closeFd(this.claim(fd));
    // "identified by its guest address, user address and size. The mmap offset is ignored."
    const i = this.mappings.findIndex(
      (m) => m.guestPhysAddr === r.guestPhysAddr && m.userAddr === r.userAddr && m.size === r.size,
    );
    if (i < 0) {
      throw new ProtocolError(msg.request, `no region at guest address ${hex(r.guestPhysAddr)}, user address ${hex(r.userAddr)}, size ${hex(r.size)}`);
    }
    const keep = this.mappings.filter((_, j) => j !== i);
    return this.replaceMemory(msg, keep, [], [this.mappings[i]]);
  }

  private setVringNum(msg: VhostUserMessage): Outcome {
    const s = decodeVringState(msg.request, msg.payload);
    const r = this.stoppedRing(msg.request, s.index);
    // guest-controlled (through the front-end): validated here (V2.4; virtio 1.2 §2.7: a
    // split queue size is a power of 2, at most 32768).
    if (s.num < 1 || s.num > this.device.maxQueueSize || s.num > VIRTQ_MAX_SIZE || (s.num & (s.num - 1)) !== 0) {
      throw new ProtocolError(msg.request, `vring ${s.index}: size ${s.num} is not a power of 2 in 1..${Math.min(this.device.maxQueueSize, VIRTQ_MAX_SIZE)}`);
    }
    r.num = s.num;
    this.tryStart(msg.request, s.index);
    return undefined;
  }

  private setVringAddr(msg: VhostUserMessage): Outcome {
    const a = decodeVringAddr(msg.request, msg.payload);
    const r = this.stoppedRing(msg.request, a.index);
    // front-end-controlled: validated here (V2.5).
    if ((a.flags & ~(1 << VHOST_VRING_F_LOG)) !== 0) {
      throw new ProtocolError(msg.request, `vring ${a.index}: undefined flags ${hex(a.flags >>> 0)}`);
    }
    if (a.flags & (1 << VHOST_VRING_F_LOG)) {
      throw new ProtocolError(msg.request, `vring ${a.index}: used-ring logging requested, but VHOST_F_LOG_ALL is not offered`);
    }
    // virtio 1.2 §2.7 alignment table: descriptor table 16, available ring 2, used ring 4.
    if (a.desc % 16n !== 0n) throw new ProtocolError(msg.request, `vring ${a.index}: descriptor table ${hex(a.desc)} is not 16-byte aligned`);
    if (a.avail % 2n !== 0n) throw new ProtocolError(msg.request, `vring ${a.index}: available ring ${hex(a.avail)} is not 2-byte aligned`);
    if (a.used % 4n !== 0n) throw new ProtocolError(msg.request, `vring ${a.index}: used ring ${hex(a.used)} is not 4-byte aligned`);
    for (const [name, v] of [['descriptor table', a.desc], ['available ring', a.avail], ['used ring', a.used]] as const) {
      if (v >= SAFE_END) throw new ProtocolError(msg.request, `vring ${a.index}: ${name} address ${hex(v)} is above 2^53`);
    }
    r.desc = Number(a.desc);
    r.avail = Number(a.avail);
    r.used = Number(a.used);
    r.addrSet = true;
    this.tryStart(msg.request, a.index);
    return undefined;
  }

  private setVringBase(msg: VhostUserMessage): Outcome {
    const s = decodeVringState(msg.request, msg.payload);
    const r = this.stoppedRing(msg.request, s.index);
    // "A vring descriptor index for split virtqueues": bits 16-31 reserved, set to zero (V2.6).
    if (s.num > 0xffff) throw new ProtocolError(msg.request, `vring ${s.index}: base ${hex(s.num)} has reserved bits 16-31 set`);
    r.base = s.num;
    return undefined;
  }

  private getVringBase(msg: VhostUserMessage): Outcome {
    const s = decodeVringState(msg.request, msg.payload);
    const r = this.ring(msg.request, s.index);
    // "The request payload's num field is currently reserved and must be set to 0."
    if (s.num !== 0) throw new ProtocolError(msg.request, `vring ${s.index}: reserved num field is ${s.num}, must be 0`);
    const reply = (base: number): void => this.send(msg.request, encodeVringState(s.index, base));
    if (!r.started) {
      // Never started (or stopped already): nothing to drain; a waiting kick fd is dropped too.
      this.closeFd(r.kickFd);
      r.kickFd = -1;
      reply(r.base);
      return undefined;
    }
    // §4.2: stop, let the device drain in-flight requests, and only then reply. Messages that
    // arrive meanwhile wait in the inbox, in order.
    return this.async_(msg, (complete) => {
      this.stopRing(s.index, (base) => complete(() => reply(base)));
    });
  }

  /** The SET_VRING_KICK/CALL/ERR payload and its fd (V1.5, V2.8). Returns -1 for NOFD. */
  private vringFile(msg: VhostUserMessage): { index: number; ring: Ring; fd: number } {
    const f = decodeVringFile(msg.request, msg.payload);
    // A NOFD flag that disagrees with the fd count is rejected (rvmm check_attached_files).
    this.expectFds(msg, f.noFd ? 0 : 1);
    const ring = this.ring(msg.request, f.index);
    return { index: f.index, ring, fd: f.noFd ? -1 : msg.fds[0] };
  }

  private setVringKick(msg: VhostUserMessage): Outcome {
    const { index, ring, fd } = this.vringFile(msg);
    if (fd < 0) {
      // NOFD asks the back-end to poll the ring; this back-end only runs on kick eventfds.
      throw new ProtocolError(msg.request, `vring ${index}: polling mode (no kick fd) is not supported`);
    }
    if (ring.started) throw new ProtocolError(msg.request, `vring ${index} is started (stop it with GET_VRING_BASE first)`);
    this.closeFd(ring.kickFd); // a kick fd still waiting for the other pieces (V1.6)
    ring.kickFd = this.claim(fd);
    this.tryStart(msg.request, index);
    return undefined;
  }

  private setVringCall(msg: VhostUserMessage): Outcome {
    const { index, ring, fd } = this.vringFile(msg);
    const old = ring.callFd;
    ring.callFd = fd < 0 ? -1 : this.claim(fd);
    // The device switches first, so it never signals an fd we closed (or its reused number).
    if (ring.started) this.device.setCallFd(index, ring.callFd);
    this.closeFd(old);
    return undefined;
  }

  private setVringErr(msg: VhostUserMessage): Outcome {
    const { ring, fd } = this.vringFile(msg);
    const old = ring.errFd;
    ring.errFd = fd < 0 ? -1 : this.claim(fd);
    if (old >= 0) {
      // A running ring keeps the fd it was started with until it stops.
      if (ring.started) ring.retiredErrFds.push(old);
      else this.closeFd(old);
    }
    return undefined;
  }

  private setVringEnable(msg: VhostUserMessage): Outcome {
    const s = decodeVringState(msg.request, msg.payload);
    // "This request should be sent only when VHOST_USER_F_PROTOCOL_FEATURES has been negotiated." (V2.9)
    if (!this.protocolFeaturesAcked) throw new ProtocolError(msg.request, 'VHOST_USER_F_PROTOCOL_FEATURES was not negotiated');
    const r = this.ring(msg.request, s.index);
    if (s.num > 1) throw new ProtocolError(msg.request, `vring ${s.index}: enable value ${s.num} is not 0 or 1`);
    r.enabled = s.num === 1;
    if (r.started) this.device.setQueueEnabled(s.index, r.enabled);
    return undefined;
  }

  private getQueueNum(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.send(msg.request, encodeU64(BigInt(this.device.queueCount)));
    return undefined;
  }

  private getConfig(msg: VhostUserMessage): Outcome {
    const c = decodeConfig(msg.request, msg.payload);
    const size = c.data.length;
    let data: Uint8Array | null = null;
    // V2.10: offset + size within the device's config space.
    if (size > 0 && c.offset <= this.device.configSize && size <= this.device.configSize - c.offset) {
      data = this.device.getConfig(c.offset, size);
    }
    if (data === null || data.length !== size) {
      // "vhost-user back-end uses zero length of payload to indicate an error".
      this.out.log('warn', `GET_CONFIG offset ${c.offset} size ${size}: refused`);
      this.send(msg.request, new Uint8Array(0));
      return undefined;
    }
    // "payload size MUST match the front-end's request".
    this.send(msg.request, encodeConfig(c.offset, c.flags, data));
    return undefined;
  }

  private setConfig(msg: VhostUserMessage): Outcome {
    const c = decodeConfig(msg.request, msg.payload);
    if (c.flags > VHOST_SET_CONFIG_TYPE_MIGRATION) {
      throw new ProtocolError(msg.request, `undefined flags ${c.flags}`);
    }
    const size = c.data.length;
    if (size === 0 || c.offset > this.device.configSize || size > this.device.configSize - c.offset) {
      return 1;
    }
    // The device enforces "MUST NOT accept SET_CONFIG for read-only configuration space
    // fields unless the live migration bit is set".
    return this.device.setConfig(c.offset, c.data.slice(), c.flags) ? undefined : 1;
  }

  /**
   * SET_STATUS mirrors the virtio status byte to the device, nothing more. QEMU sends
   * SET_STATUS(0) on every vhost stop (VM pause and migration included), and before 8.1 it
   * did so before GET_VRING_BASE, so status 0 must not drop ring state here; a real device
   * reset arrives as RESET_DEVICE (offered, and sent by vhost-user-scsi on virtio reset).
   */
  private setStatus(msg: VhostUserMessage): Outcome {
    this.status = decodeStatus(msg.request, msg.payload);
    this.device.setStatus(this.status);
    return undefined;
  }

  private getStatus(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    this.send(msg.request, encodeU64(BigInt(this.status)));
    return undefined;
  }

  /**
   * "disable all rings and reset all internal device state to the initial state ... The
   * back-end retains ownership". Connection-level state survives: protocol features (QEMU
   * negotiates them once per connection), the memory table (with CONFIGURE_MEM_SLOTS QEMU
   * only sends differences from its shadow table), and the call/err fds set at init.
   */
  private resetDevice(msg: VhostUserMessage): Outcome {
    decodeEmpty(msg.request, msg.payload);
    return this.async_(msg, (complete) => {
      // Stop every started ring, one after the other (each drains), then reset.
      const next = (): void => {
        const i = this.rings.findIndex((r) => r.started);
        if (i >= 0) {
          try {
            this.stopRing(i, next);
          } catch (e) {
            complete(() => {
              throw e;
            });
          }
          return;
        }
        complete(() => {
          for (const r of this.rings) {
            this.closeFd(r.kickFd);
            r.kickFd = -1;
            r.num = 0;
            r.addrSet = false;
            r.desc = r.avail = r.used = 0;
            r.base = 0;
            r.enabled = false;
          }
          this.status = 0;
          this.device.reset();
        });
      };
      next();
    });
  }

  /**
   * The request table (vhost-user.rst "Front-end message types"). A code without an entry is
   * defined by the spec but belongs to a feature this back-end does not offer (V2.16).
   */
  private static readonly requests: readonly (RequestDef | undefined)[] = (() => {
    const t: (RequestDef | undefined)[] = new Array(MAX_FRONTEND_REQUEST + 1).fill(undefined);
    const add = (code: R, handle: RequestDef['handle'], opts: Omit<RequestDef, 'handle'>): void => {
      t[code] = { ...opts, handle };
    };
    add(R.GET_FEATURES, (s, m) => s.getFeatures(m), { fds: 0 });
    add(R.SET_FEATURES, (s, m) => s.setFeatures(m), { fds: 0, owner: true });
    add(R.SET_OWNER, (s, m) => s.setOwner(m), { fds: 0 });
    add(R.RESET_OWNER, (s, m) => s.resetOwner(m), { fds: 0, owner: true });
    add(R.SET_MEM_TABLE, (s, m) => s.setMemTable(m), { owner: true });
    add(R.SET_VRING_NUM, (s, m) => s.setVringNum(m), { fds: 0, owner: true });
    add(R.SET_VRING_ADDR, (s, m) => s.setVringAddr(m), { fds: 0, owner: true });
    add(R.SET_VRING_BASE, (s, m) => s.setVringBase(m), { fds: 0, owner: true });
    add(R.GET_VRING_BASE, (s, m) => s.getVringBase(m), { fds: 0, owner: true });
    add(R.SET_VRING_KICK, (s, m) => s.setVringKick(m), { owner: true });
    add(R.SET_VRING_CALL, (s, m) => s.setVringCall(m), { owner: true });
    add(R.SET_VRING_ERR, (s, m) => s.setVringErr(m), { owner: true });
    // "Back-ends that report VHOST_USER_F_PROTOCOL_FEATURES must support this message even
    // before VHOST_USER_SET_FEATURES was called"; QEMU sends both before SET_OWNER.
    add(R.GET_PROTOCOL_FEATURES, (s, m) => s.getProtocolFeatures(m), { fds: 0 });
    add(R.SET_PROTOCOL_FEATURES, (s, m) => s.setProtocolFeatures(m), { fds: 0 });
    add(R.GET_QUEUE_NUM, (s, m) => s.getQueueNum(m), { protocolFeature: PF.MQ, fds: 0 });
    add(R.SET_VRING_ENABLE, (s, m) => s.setVringEnable(m), { fds: 0, owner: true });
    add(R.GET_CONFIG, (s, m) => s.getConfig(m), { protocolFeature: PF.CONFIG, fds: 0 });
    add(R.SET_CONFIG, (s, m) => s.setConfig(m), { protocolFeature: PF.CONFIG, fds: 0, owner: true });
    add(R.RESET_DEVICE, (s, m) => s.resetDevice(m), { protocolFeature: PF.RESET_DEVICE, fds: 0, owner: true });
    add(R.GET_MAX_MEM_SLOTS, (s, m) => s.getMaxMemSlots(m), { protocolFeature: PF.CONFIGURE_MEM_SLOTS, fds: 0 });
    add(R.ADD_MEM_REG, (s, m) => s.addMemReg(m), { protocolFeature: PF.CONFIGURE_MEM_SLOTS, fds: 1, owner: true });
    add(R.REM_MEM_REG, (s, m) => s.remMemReg(m), { protocolFeature: PF.CONFIGURE_MEM_SLOTS, owner: true });
    add(R.SET_STATUS, (s, m) => s.setStatus(m), { protocolFeature: PF.STATUS, fds: 0, owner: true });
    add(R.GET_STATUS, (s, m) => s.getStatus(m), { protocolFeature: PF.STATUS, fds: 0 });
    return t;
  })();

  /** Request codes this back-end implements. */
  static implementedRequests(): R[] {
    const out: R[] = [];
    VhostUserSession.requests.forEach((d, code) => {
      if (d) out.push(code as R);
    });
    return out;
  }
}

/**
 * Requests the spec defines for features this back-end does not offer, with the protocol
 * feature each needs (for the close reason). SET_LOG_BASE/SET_LOG_FD belong to dirty
 * logging (VHOST_F_LOG_ALL, LOG_SHMFD), which is not offered either.
 */
const UNIMPLEMENTED_NEEDS: Partial<Record<number, PF>> = {
  [R.SET_LOG_BASE]: PF.LOG_SHMFD,
  [R.SET_LOG_FD]: PF.LOG_SHMFD,
  [R.SEND_RARP]: PF.RARP,
  [R.NET_SET_MTU]: PF.MTU,
  [R.SET_BACKEND_REQ_FD]: PF.BACKEND_REQ,
  [R.SET_VRING_ENDIAN]: PF.CROSS_ENDIAN,
  [R.CREATE_CRYPTO_SESSION]: PF.CRYPTO_SESSION,
  [R.CLOSE_CRYPTO_SESSION]: PF.CRYPTO_SESSION,
  [R.POSTCOPY_ADVISE]: PF.PAGEFAULT,
  [R.POSTCOPY_LISTEN]: PF.PAGEFAULT,
  [R.POSTCOPY_END]: PF.PAGEFAULT,
  [R.GET_INFLIGHT_FD]: PF.INFLIGHT_SHMFD,
  [R.SET_INFLIGHT_FD]: PF.INFLIGHT_SHMFD,
  [R.VRING_KICK]: PF.INBAND_NOTIFICATIONS,
  [R.GET_SHARED_OBJECT]: PF.SHARED_OBJECT,
  [R.SET_DEVICE_STATE_FD]: PF.DEVICE_STATE,
  [R.CHECK_DEVICE_STATE]: PF.DEVICE_STATE,
};
