// A fake vhost-user front-end (the QEMU side) for tests and benchmarks (DESIGN.md "Tests":
// fakes of the other side, shipped beside the code).
//
// - FrontendRequests: builds every request, correct by default and deliberately wrong on
//   demand (flags, header size, fd count).
// - FakeFrontend: sends requests over a FrontendTransport, waits for and checks replies the
//   way QEMU's vhost-user.c does, and replays QEMU's start/stop sequences for
//   vhost-user-scsi (vhost_user_backend_init, vhost_dev_init, vhost_dev_start/stop).
// - MemoryTransport: an in-process transport (sans-IO tests, in-process benches).
// - FakeFrontendSocket: the same over a real unix socket through the native addon.

import type { Poller } from '../native';
import { ProtocolError } from './errors';
import { MessageAssembler, NATIVE_LITTLE_ENDIAN, encodeMessage } from './framing';
import {
  encodeConfig,
  encodeInflight,
  encodeLog,
  encodeMemRegionMsg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
  type InflightDescription,
  type LogDescription,
  type MemRegion,
  type VringAddr,
} from './messages';
import {
  FrontendRequest as R,
  ProtocolFeature as PF,
  REQUESTS_WITH_REPLY,
  VHOST_USER_CONFIG_HDR_SIZE,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  protocolFeatureBit,
  requestName,
} from './protocol';

const EMPTY = new Uint8Array(0);
const PROTOCOL_FEATURES_BIT = 1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES);

// virtio 1.2 §2.1 device status bits.
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;

/** One encoded request, ready for sendmsg. */
export interface EncodedRequest {
  request: number;
  flags: number;
  bytes: Uint8Array;
  fds: number[];
  /** The back-end answers it with its own reply body (GET_* and friends). */
  replies: boolean;
}

/** Knobs for building deliberately wrong messages. */
export interface EncodeOptions {
  /** Header flags, replacing the default (version 1, plus NEED_REPLY if needReply). */
  flags?: number;
  /** Set NEED_REPLY (bit 3). */
  needReply?: boolean;
  /** The header's size field, when it should lie about the payload length. */
  headerSize?: number;
  /** Replace the payload bytes (wrong sizes). */
  payload?: Uint8Array;
  /** Replace the fds sent with the message. */
  fds?: number[];
}

/** Build any request. */
export function encodeRequest(request: number, payload: Uint8Array = EMPTY, fds: number[] = [], opts: EncodeOptions = {}): EncodedRequest {
  const body = opts.payload ?? payload;
  const flags = opts.flags ?? (VHOST_USER_VERSION | (opts.needReply ? VHOST_USER_NEED_REPLY_MASK : 0));
  return {
    request,
    flags,
    bytes: encodeMessage(request, flags, body, opts.headerSize ?? body.length),
    fds: opts.fds ?? fds,
    replies: REQUESTS_WITH_REPLY.has(request),
  };
}

/** Builders for every front-end request, named after the spec. */
export const FrontendRequests = {
  getFeatures: (o?: EncodeOptions) => encodeRequest(R.GET_FEATURES, EMPTY, [], o),
  setFeatures: (features: bigint, o?: EncodeOptions) => encodeRequest(R.SET_FEATURES, encodeU64(features), [], o),
  setOwner: (o?: EncodeOptions) => encodeRequest(R.SET_OWNER, EMPTY, [], o),
  resetOwner: (o?: EncodeOptions) => encodeRequest(R.RESET_OWNER, EMPTY, [], o),
  setMemTable: (regions: readonly MemRegion[], fds: number[], o?: EncodeOptions) =>
    encodeRequest(R.SET_MEM_TABLE, encodeMemTable(regions), fds, o),
  setLogBase: (log: LogDescription, fd: number, o?: EncodeOptions) => encodeRequest(R.SET_LOG_BASE, encodeLog(log), [fd], o),
  setLogFd: (fd: number, o?: EncodeOptions) => encodeRequest(R.SET_LOG_FD, EMPTY, [fd], o),
  setVringNum: (index: number, num: number, o?: EncodeOptions) => encodeRequest(R.SET_VRING_NUM, encodeVringState(index, num), [], o),
  setVringAddr: (addr: VringAddr, o?: EncodeOptions) => encodeRequest(R.SET_VRING_ADDR, encodeVringAddr(addr), [], o),
  setVringBase: (index: number, base: number, o?: EncodeOptions) => encodeRequest(R.SET_VRING_BASE, encodeVringState(index, base), [], o),
  getVringBase: (index: number, num = 0, o?: EncodeOptions) => encodeRequest(R.GET_VRING_BASE, encodeVringState(index, num), [], o),
  /** fd < 0 sends the NOFD flag and no fd. */
  setVringKick: (index: number, fd: number, o?: EncodeOptions) =>
    encodeRequest(R.SET_VRING_KICK, encodeVringFile(index, fd < 0), fd < 0 ? [] : [fd], o),
  setVringCall: (index: number, fd: number, o?: EncodeOptions) =>
    encodeRequest(R.SET_VRING_CALL, encodeVringFile(index, fd < 0), fd < 0 ? [] : [fd], o),
  setVringErr: (index: number, fd: number, o?: EncodeOptions) =>
    encodeRequest(R.SET_VRING_ERR, encodeVringFile(index, fd < 0), fd < 0 ? [] : [fd], o),
  getProtocolFeatures: (o?: EncodeOptions) => encodeRequest(R.GET_PROTOCOL_FEATURES, EMPTY, [], o),
  setProtocolFeatures: (features: bigint, o?: EncodeOptions) => encodeRequest(R.SET_PROTOCOL_FEATURES, encodeU64(features), [], o),
  getQueueNum: (o?: EncodeOptions) => encodeRequest(R.GET_QUEUE_NUM, EMPTY, [], o),
  setVringEnable: (index: number, enable: number, o?: EncodeOptions) => encodeRequest(R.SET_VRING_ENABLE, encodeVringState(index, enable), [], o),
  setBackendReqFd: (fd: number, o?: EncodeOptions) => encodeRequest(R.SET_BACKEND_REQ_FD, EMPTY, [fd], o),
  setVringEndian: (index: number, bigEndian: number, o?: EncodeOptions) => encodeRequest(R.SET_VRING_ENDIAN, encodeVringState(index, bigEndian), [], o),
  /** As QEMU sends it: the header and `size` zero bytes. */
  getConfig: (offset: number, size: number, o?: EncodeOptions) => encodeRequest(R.GET_CONFIG, encodeConfig(offset, 0, new Uint8Array(size)), [], o),
  setConfig: (offset: number, data: Uint8Array, flags = 0, o?: EncodeOptions) => encodeRequest(R.SET_CONFIG, encodeConfig(offset, flags, data), [], o),
  getInflightFd: (d: InflightDescription, o?: EncodeOptions) => encodeRequest(R.GET_INFLIGHT_FD, encodeInflight(d), [], o),
  setInflightFd: (d: InflightDescription, fd: number, o?: EncodeOptions) => encodeRequest(R.SET_INFLIGHT_FD, encodeInflight(d), [fd], o),
  resetDevice: (o?: EncodeOptions) => encodeRequest(R.RESET_DEVICE, EMPTY, [], o),
  vringKick: (index: number, o?: EncodeOptions) => encodeRequest(R.VRING_KICK, encodeVringState(index, 0), [], o),
  getMaxMemSlots: (o?: EncodeOptions) => encodeRequest(R.GET_MAX_MEM_SLOTS, EMPTY, [], o),
  addMemReg: (region: MemRegion, fd: number, o?: EncodeOptions) => encodeRequest(R.ADD_MEM_REG, encodeMemRegionMsg(region), [fd], o),
  remMemReg: (region: MemRegion, o?: EncodeOptions) => encodeRequest(R.REM_MEM_REG, encodeMemRegionMsg(region), [], o),
  setStatus: (status: number | bigint, o?: EncodeOptions) => encodeRequest(R.SET_STATUS, encodeU64(BigInt(status)), [], o),
  getStatus: (o?: EncodeOptions) => encodeRequest(R.GET_STATUS, EMPTY, [], o),
};

/** A back-end reply, as read from the wire. */
export interface Reply {
  request: number;
  flags: number;
  payload: Uint8Array;
}

/** Decode one whole reply message (header + payload) with QEMU's checks (vhost_user_read). */
export function decodeReply(bytes: Uint8Array): Reply {
  const r = new ReplyReader();
  r.push(bytes);
  const m = r.next();
  if (!m || r.pending) throw new ProtocolError(0, `not exactly one reply in ${bytes.length} bytes`);
  return m;
}

/** Reassembles replies from a byte stream. Replies carry no fds. */
export class ReplyReader {
  private readonly assembler = new MessageAssembler(() => {}, { maxFds: 0 });
  private readonly queue: Reply[] = [];

  push(bytes: Uint8Array): void {
    this.assembler.push(bytes);
    for (let m = this.assembler.next(); m; m = this.assembler.next()) {
      // vhost_user_read_header(): "Flags 0x%x instead of 0x%x".
      if (m.flags !== (VHOST_USER_REPLY_MASK | VHOST_USER_VERSION)) {
        throw new ProtocolError(m.request, `reply flags ${m.flags} instead of 5`);
      }
      this.queue.push({ request: m.request, flags: m.flags, payload: m.payload });
    }
  }

  next(): Reply | null {
    return this.queue.shift() ?? null;
  }

  /** Bytes of an incomplete reply. */
  get pending(): number {
    return this.assembler.pendingBytes;
  }
}

/** Moves encoded requests to the back-end and replies back. */
export interface FrontendTransport {
  send(bytes: Uint8Array, fds: number[]): void;
  /** The next reply; rejects if the back-end closed the connection first. */
  nextReply(): Promise<Reply>;
}

/**
 * In-process transport: `deliver` hands each request to the back-end (e.g. a
 * MessageAssembler feeding a VhostUserSession); the back-end's output goes to receive().
 */
export class MemoryTransport implements FrontendTransport {
  private readonly reader = new ReplyReader();
  private readonly backlog: Reply[] = [];
  private waiters: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private closedReason: string | null = null;
  /** Every reply received, in order (for assertions). */
  readonly received: Reply[] = [];

  constructor(private readonly deliver: (bytes: Uint8Array, fds: number[]) => void) {}

  send(bytes: Uint8Array, fds: number[]): void {
    if (this.closedReason !== null) throw new Error(`connection closed: ${this.closedReason}`);
    this.deliver(bytes, fds);
  }

  /** Bytes the back-end sent. */
  receive(bytes: Uint8Array): void {
    this.reader.push(bytes);
    for (let r = this.reader.next(); r; r = this.reader.next()) {
      this.received.push(r);
      const w = this.waiters.shift();
      if (w) w.resolve(r);
      else this.backlog.push(r);
    }
  }

  /** The back-end dropped the connection. */
  close(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed: ${reason}`));
  }

  get closed(): string | null {
    return this.closedReason;
  }

  nextReply(): Promise<Reply> {
    const r = this.backlog.shift();
    if (r) return Promise.resolve(r);
    if (this.closedReason !== null) return Promise.reject(new Error(`connection closed: ${this.closedReason}`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

export interface FakeRegion {
  guestPhysAddr: bigint;
  size: bigint;
  userAddr: bigint;
  mmapOffset: bigint;
  fd: number;
}

export interface FakeQueue {
  index: number;
  size: number;
  /** Front-end virtual addresses of the three ring areas. */
  desc: number;
  avail: number;
  used: number;
  base?: number;
  kickFd: number;
  callFd: number;
  errFd?: number;
}

/** Which QEMU to imitate where their message sequences differ. */
export type QemuFlavor = 'qemu-7.2' | 'qemu-10.0';

/**
 * QEMU's VHOST_USER_PROTOCOL_FEATURE_MASK as vhost-user-scsi uses it: everything QEMU knows,
 * minus CONFIG (vhost-user-scsi has no config support, so QEMU masks it off with a warning).
 */
export const QEMU_SCSI_PROTOCOL_FEATURES: Record<QemuFlavor, bigint> = {
  'qemu-7.2': ((1n << BigInt(PF.STATUS + 1)) - 1n) & ~protocolFeatureBit(PF.CONFIG),
  'qemu-10.0': ((1n << BigInt(PF.DEVICE_STATE + 1)) - 1n) & ~protocolFeatureBit(PF.CONFIG),
};

export interface SetupOptions {
  regions: FakeRegion[];
  queues: FakeQueue[];
  flavor?: QemuFlavor;
  /** Virtio features the driver accepts; masked by what the back-end offers. Default: all offered. */
  driverFeatures?: bigint;
  /** Protocol features the front-end supports. Default: QEMU_SCSI_PROTOCOL_FEATURES[flavor]. */
  frontendProtocolFeatures?: bigint;
}

export interface SetupResult {
  /** GET_FEATURES. */
  offeredFeatures: bigint;
  /** SET_FEATURES value sent (including bit 30 when offered). */
  ackedFeatures: bigint;
  offeredProtocolFeatures: bigint;
  protocolFeatures: bigint;
  queueNum: bigint | null;
  maxMemSlots: bigint | null;
}

function u64(request: number, r: Reply): bigint {
  if (r.payload.length !== 8) throw new ProtocolError(request, `reply size ${r.payload.length}, expected 8`);
  return new DataView(r.payload.buffer, r.payload.byteOffset, 8).getBigUint64(0, NATIVE_LITTLE_ENDIAN);
}

/** The QEMU side of a vhost-user connection. */
export class FakeFrontend {
  /** Protocol features in force (after SET_PROTOCOL_FEATURES). */
  protocolFeatures = 0n;
  offeredFeatures = 0n;
  private flavor: QemuFlavor = 'qemu-10.0';

  constructor(readonly transport: FrontendTransport) {}

  private get replyAck(): boolean {
    return (this.protocolFeatures & protocolFeatureBit(PF.REPLY_ACK)) !== 0n;
  }

  private has(f: PF): boolean {
    return (this.protocolFeatures & protocolFeatureBit(f)) !== 0n;
  }

  /** Send without waiting for anything. */
  send(req: EncodedRequest): void {
    this.transport.send(req.bytes, req.fds);
  }

  /**
   * Send and, if a reply is due (a reply body, or NEED_REPLY under REPLY_ACK), wait for it
   * and check it like QEMU (same request code; an ack must be a u64, 0 = success).
   */
  async call(req: EncodedRequest): Promise<Reply | null> {
    this.send(req);
    const ack = !req.replies && (req.flags & VHOST_USER_NEED_REPLY_MASK) !== 0 && this.replyAck;
    if (!req.replies && !ack) return null;
    const r = await this.transport.nextReply();
    if (r.request !== req.request) {
      throw new ProtocolError(req.request, `reply to ${requestName(r.request)} instead`);
    }
    if (ack && u64(req.request, r) !== 0n) throw new ProtocolError(req.request, 'back-end reported failure');
    return r;
  }

  /** A request whose reply is a u64. */
  async callU64(req: EncodedRequest): Promise<bigint> {
    const r = await this.call(req);
    if (!r) throw new ProtocolError(req.request, 'no reply');
    return u64(req.request, r);
  }

  /** QEMU's enforce_reply()/vhost_user_write_sync(): NEED_REPLY under REPLY_ACK, otherwise a GET_FEATURES barrier. */
  private async sync(build: (o: EncodeOptions) => EncodedRequest): Promise<void> {
    if (this.replyAck) {
      await this.call(build({ needReply: true }));
    } else {
      this.send(build({}));
      await this.callU64(FrontendRequests.getFeatures());
    }
  }

  private async addStatus(bits: number): Promise<void> {
    // vhost_user_add_status(): GET_STATUS, then SET_STATUS only if bits are missing.
    const s = Number(await this.callU64(FrontendRequests.getStatus()));
    if ((s & bits) === bits) return;
    this.send(FrontendRequests.setStatus(s | bits));
  }

  /**
   * What QEMU does from connect to a running device: init() then start().
   */
  async setupDevice(opts: SetupOptions): Promise<SetupResult> {
    const r = await this.init(opts);
    await this.start(opts);
    return r;
  }

  /**
   * vhost_user_backend_init (features, protocol features, queue count, memory slots), then
   * the rest of vhost_dev_init: SET_OWNER, GET_FEATURES, and per queue SET_VRING_CALL
   * (QEMU's masked notifier) and SET_VRING_ERR.
   */
  async init(opts: SetupOptions): Promise<SetupResult> {
    this.flavor = opts.flavor ?? 'qemu-10.0';
    const F = FrontendRequests;
    const offered = await this.callU64(F.getFeatures());
    this.offeredFeatures = offered;
    let offeredProtocol = 0n;
    let queueNum: bigint | null = null;
    let maxMemSlots: bigint | null = null;
    if (offered & PROTOCOL_FEATURES_BIT) {
      offeredProtocol = await this.callU64(F.getProtocolFeatures());
      const want = opts.frontendProtocolFeatures ?? QEMU_SCSI_PROTOCOL_FEATURES[this.flavor];
      this.send(F.setProtocolFeatures(offeredProtocol & want));
      this.protocolFeatures = offeredProtocol & want;
      if (this.has(PF.MQ)) queueNum = await this.callU64(F.getQueueNum());
      if (this.has(PF.CONFIGURE_MEM_SLOTS)) maxMemSlots = await this.callU64(F.getMaxMemSlots());
    }
    this.send(F.setOwner());
    await this.callU64(F.getFeatures());
    for (const q of opts.queues) {
      this.send(F.setVringCall(q.index, q.callFd));
      if (q.errFd !== undefined) this.send(F.setVringErr(q.index, q.errFd));
    }
    const acked = (opts.driverFeatures ?? offered) & offered & ~PROTOCOL_FEATURES_BIT;
    this.ackedFeatures = acked | (offered & PROTOCOL_FEATURES_BIT);
    return {
      offeredFeatures: offered,
      ackedFeatures: this.ackedFeatures,
      offeredProtocolFeatures: offeredProtocol,
      protocolFeatures: this.protocolFeatures,
      queueNum,
      maxMemSlots,
    };
  }

  /** SET_FEATURES value start() sends (bit 30 included when the back-end offered it). */
  ackedFeatures = 0n;

  /**
   * vhost_dev_start: SET_FEATURES (+ FEATURES_OK status), the memory table, per queue
   * NUM, BASE, ADDR, KICK, CALL (vhost_virtqueue_start), SET_VRING_ENABLE(1) per queue, and
   * the DRIVER_OK status (vhost_user_dev_start).
   */
  async start(opts: SetupOptions): Promise<void> {
    const F = FrontendRequests;
    this.send(F.setFeatures(this.ackedFeatures));
    if (this.has(PF.STATUS)) await this.addStatus(VIRTIO_CONFIG_S_FEATURES_OK);
    await this.setMemory(opts.regions);
    for (const q of opts.queues) {
      this.send(F.setVringNum(q.index, q.size));
      this.send(F.setVringBase(q.index, q.base ?? 0));
      this.send(F.setVringAddr({ index: q.index, flags: 0, desc: BigInt(q.desc), used: BigInt(q.used), avail: BigInt(q.avail), log: 0n }));
      this.send(F.setVringKick(q.index, q.kickFd));
      this.send(F.setVringCall(q.index, q.callFd));
    }
    if (this.offeredFeatures & PROTOCOL_FEATURES_BIT) {
      for (const q of opts.queues) {
        // QEMU 8.1+ waits for each enable ("vhost-user: call VHOST_USER_SET_VRING_ENABLE synchronously").
        if (this.flavor === 'qemu-7.2') this.send(F.setVringEnable(q.index, 1));
        else await this.sync((o) => F.setVringEnable(q.index, 1, o));
      }
    }
    if (this.has(PF.STATUS)) {
      await this.addStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    }
  }

  /** Regions the back-end has (QEMU's shadow table for CONFIGURE_MEM_SLOTS). */
  private shadow: FakeRegion[] = [];

  /**
   * vhost_user_set_mem_table(). With CONFIGURE_MEM_SLOTS, only the differences from the
   * shadow table: REM_MEM_REG for regions gone, ADD_MEM_REG for new ones (matching on gpa,
   * user address and size); otherwise one SET_MEM_TABLE. NEED_REPLY under REPLY_ACK.
   */
  async setMemory(regions: FakeRegion[]): Promise<void> {
    const needReply = this.replyAck;
    const same = (a: FakeRegion, b: FakeRegion) => a.guestPhysAddr === b.guestPhysAddr && a.userAddr === b.userAddr && a.size === b.size;
    if (this.has(PF.CONFIGURE_MEM_SLOTS)) {
      for (const old of this.shadow.filter((o) => !regions.some((r) => same(o, r))).reverse()) {
        await this.call(FrontendRequests.remMemReg({ ...old, mmapOffset: 0n }, { needReply }));
      }
      for (const r of regions.filter((n) => !this.shadow.some((o) => same(o, n)))) {
        await this.call(FrontendRequests.addMemReg(r, r.fd, { needReply }));
      }
    } else {
      await this.call(FrontendRequests.setMemTable(regions, regions.map((r) => r.fd), { needReply }));
    }
    this.shadow = regions.slice();
  }

  /**
   * vhost_dev_stop(): QEMU 7.2 sends SET_STATUS(0) first, QEMU >= 8.1 last; in between
   * SET_VRING_ENABLE(0) and GET_VRING_BASE per queue. Returns the bases, by queue order.
   */
  async stopDevice(queues: readonly number[]): Promise<number[]> {
    const F = FrontendRequests;
    if (this.has(PF.STATUS) && this.flavor === 'qemu-7.2') this.send(F.setStatus(0));
    if (this.offeredFeatures & PROTOCOL_FEATURES_BIT) {
      for (const i of queues) {
        if (this.flavor === 'qemu-7.2') this.send(F.setVringEnable(i, 0));
        else await this.sync((o) => F.setVringEnable(i, 0, o));
      }
    }
    const bases: number[] = [];
    for (const i of queues) {
      const r = await this.call(F.getVringBase(i));
      if (!r || r.payload.length !== 8) throw new ProtocolError(R.GET_VRING_BASE, 'bad reply size');
      const v = new DataView(r.payload.buffer, r.payload.byteOffset, 8);
      if (v.getUint32(0, NATIVE_LITTLE_ENDIAN) !== i) throw new ProtocolError(R.GET_VRING_BASE, 'reply for another vring');
      bases.push(v.getUint32(4, NATIVE_LITTLE_ENDIAN));
    }
    if (this.has(PF.STATUS) && this.flavor !== 'qemu-7.2') this.send(F.setStatus(0));
    return bases;
  }

  /** GET_CONFIG as vhost_user_get_config() checks it; null when the back-end signals an error (size 0). */
  async getConfig(offset: number, size: number): Promise<Uint8Array | null> {
    const r = await this.call(FrontendRequests.getConfig(offset, size));
    if (!r) return null;
    if (r.payload.length === 0) return null;
    if (r.payload.length !== VHOST_USER_CONFIG_HDR_SIZE + size) throw new ProtocolError(R.GET_CONFIG, 'bad reply size');
    return r.payload.slice(VHOST_USER_CONFIG_HDR_SIZE);
  }
}

// ---- over a real socket -------------------------------------------------------------------

/** Guest RAM for socket tests: a memfd the front-end shares, mapped here too. */
export interface FakeRam {
  fd: number;
  bytes: Uint8Array;
  size: number;
}

/**
 * The front-end end of a real unix socket, through the native addon. Requests go out with
 * sendmsg (fds as SCM_RIGHTS); replies are read by a poller on the libuv loop.
 */
export class FakeFrontendSocket implements FrontendTransport {
  private readonly reader = new ReplyReader();
  private readonly rx = new Uint8Array(4096);
  private readonly rxFds: number[] = [];
  private readonly backlog: Reply[] = [];
  private waiters: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private outbox: { bytes: Uint8Array; fds: number[] }[] = [];
  private readonly poller: Poller;
  private closedReason: string | null = null;
  private closeWaiters: ((reason: string) => void)[] = [];

  private constructor(
    private readonly native: typeof import('../native').native,
    readonly fd: number,
  ) {
    this.poller = native.createPoller(fd, (status, events) => this.onEvents(status, events));
    this.poller.start(1);
  }

  /** Connect to a back-end listening on path. */
  static connect(path: string): FakeFrontendSocket {
    // Loaded lazily: the sans-IO users of this module (unit tests) must not need the addon.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { native } = require('../native') as typeof import('../native');
    return new FakeFrontendSocket(native, native.connectUnix(path));
  }

  /** A memfd of `size` bytes mapped into this process (the "guest RAM" the front-end shares). */
  static createRam(size: number, name = 'fake-guest-ram'): FakeRam {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { native } = require('../native') as typeof import('../native');
    const fd = native.memfdCreate(name, size);
    return { fd, size, bytes: new Uint8Array(native.mmap(fd, 0n, size)) };
  }

  /** A non-blocking eventfd (kick, call, err). */
  static eventfd(): number {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { native } = require('../native') as typeof import('../native');
    return native.eventfd(0, true);
  }

  send(bytes: Uint8Array, fds: number[]): void {
    if (this.closedReason !== null) throw new Error(`connection closed: ${this.closedReason}`);
    this.outbox.push({ bytes, fds });
    this.flush();
  }

  private flush(): void {
    while (this.outbox.length > 0) {
      const m = this.outbox[0];
      const n = this.native.sendmsg(this.fd, m.bytes, 0, m.bytes.length, m.fds.length > 0 ? m.fds : undefined);
      if (n < 0) {
        this.poller.start(3);
        return;
      }
      if (n < m.bytes.length) {
        this.outbox[0] = { bytes: m.bytes.subarray(n), fds: [] }; // fds went with the first byte
        continue;
      }
      this.outbox.shift();
    }
    this.poller.start(1);
  }

  private onEvents(status: number, events: number): void {
    if (status < 0) {
      this.shutdown(`poll error ${status}`);
      return;
    }
    if (events & 2) this.flush();
    if (!(events & 1)) return;
    try {
      for (;;) {
        const n = this.native.recvmsg(this.fd, this.rx, 0, this.rx.length, this.rxFds);
        for (const fd of this.rxFds.splice(0)) this.native.close(fd); // replies carry no fds here
        if (n < 0) return;
        if (n === 0) {
          this.shutdown('back-end closed the connection');
          return;
        }
        this.reader.push(this.rx.subarray(0, n));
        for (let r = this.reader.next(); r; r = this.reader.next()) {
          const w = this.waiters.shift();
          if (w) w.resolve(r);
          else this.backlog.push(r);
        }
      }
    } catch (e) {
      this.shutdown((e as Error).message);
    }
  }

  nextReply(): Promise<Reply> {
    const r = this.backlog.shift();
    if (r) return Promise.resolve(r);
    if (this.closedReason !== null) return Promise.reject(new Error(`connection closed: ${this.closedReason}`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Why the connection ended, or null while it is up. */
  get closed(): string | null {
    return this.closedReason;
  }

  /** Resolves once the back-end has closed the connection (EOF). */
  whenClosed(): Promise<string> {
    if (this.closedReason !== null) return Promise.resolve(this.closedReason);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  private shutdown(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.poller.close();
    for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed: ${reason}`));
    for (const w of this.closeWaiters.splice(0)) w(reason);
  }

  /** Close our end. */
  close(): void {
    this.shutdown('front-end closed');
    try {
      this.native.close(this.fd);
    } catch {
      // already closed
    }
  }
}
