// Test harness for the sans-IO vhost-user session: a recording fake device, fake HostOps
// with fake fd numbers (each fd the back-end receives is a fresh number, as SCM_RIGHTS
// would make it), and a FakeFrontend wired to the session in-process.

import { featureBit, VirtioFeature, type GuestMemory } from '../../../virtqueue';
import type { VhostUserDevice, VringSetup } from '../../../backend/vhost-user/device';
import { VhostUserSession, type HostOps, type SessionOptions } from '../../../backend/vhost-user/dispatcher';
import { MessageAssembler } from '../../../backend/vhost-user/framing';
import { FakeFrontend, MemoryTransport, type FakeQueue, type FakeRegion } from '../../../backend/vhost-user/fake-frontend';

/** Fake fds: front-end files (with a size) and the back-end's received copies of them. */
export class FakeHost implements HostOps {
  private nextFrontFd = 100;
  private nextFd = 1000;
  private readonly frontSizes = new Map<number, bigint>();
  private readonly sizes = new Map<number, bigint>();
  /** Back-end fds minted by receive(), in order (tests clear it before a message). */
  readonly lastReceived: number[] = [];
  /** Back-end fds currently open. */
  readonly open = new Set<number>();
  /** Back-end fds closed, in order. */
  readonly closed: number[] = [];
  /** Anything the session did wrong with fds or mappings. */
  readonly errors: string[] = [];
  readonly maps: { fd: number; offset: bigint; length: number; bytes: Uint8Array; unmapped: boolean }[] = [];
  /** When set, mmap throws this. */
  mmapError: Error | null = null;

  constructor(private readonly events: string[]) {}

  /** A front-end file (memfd) of `size` bytes; 0n for eventfds. */
  file(size = 0n): number {
    const fd = this.nextFrontFd++;
    this.frontSizes.set(fd, size);
    return fd;
  }

  /** What SCM_RIGHTS does: a new fd in the back-end for the same file. */
  receive(frontFd: number): number {
    const fd = this.nextFd++;
    this.lastReceived.push(fd);
    this.sizes.set(fd, this.frontSizes.get(frontFd) ?? 0n);
    this.open.add(fd);
    return fd;
  }

  mmap(fd: number, offset: bigint, length: number): Uint8Array {
    if (!this.open.has(fd)) this.errors.push(`mmap of fd ${fd}, which is not open`);
    if (offset % 4096n !== 0n) this.errors.push(`mmap offset ${offset} not page aligned`);
    if (offset + BigInt(length) > (this.sizes.get(fd) ?? 0n)) this.errors.push(`mmap past EOF of fd ${fd}`);
    if (this.mmapError) throw this.mmapError;
    const bytes = new Uint8Array(length);
    this.maps.push({ fd, offset, length, bytes, unmapped: false });
    this.events.push(`mmap ${fd} ${offset} ${length}`);
    return bytes;
  }

  munmap(bytes: Uint8Array): void {
    const m = this.maps.find((x) => x.bytes === bytes);
    if (!m) this.errors.push('munmap of something never mapped');
    else if (m.unmapped) this.errors.push('double munmap');
    else m.unmapped = true;
    this.events.push('munmap');
  }

  fileSize(fd: number): bigint {
    if (!this.open.has(fd)) throw new Error(`fstat: EBADF ${fd}`);
    return this.sizes.get(fd) ?? 0n;
  }

  closeFd(fd: number): void {
    this.events.push(`close ${fd}`);
    if (!this.open.has(fd)) {
      this.errors.push(`close of fd ${fd}, which is not open`);
      throw new Error('EBADF');
    }
    this.open.delete(fd);
    this.closed.push(fd);
  }

  liveMappings(): number {
    return this.maps.filter((m) => !m.unmapped).length;
  }
}

/** A recording device. Stops and quiesces complete at once unless told to hold them. */
export class FakeDevice implements VhostUserDevice {
  features = featureBit(VirtioFeature.VERSION_1) | featureBit(VirtioFeature.RING_INDIRECT_DESC) | featureBit(VirtioFeature.RING_EVENT_IDX) | 1n;
  queueCount = 4;
  maxQueueSize = 1024;
  configSize = 36;
  readonly config = Uint8Array.from({ length: 36 }, (_, i) => i + 1);
  readonly started = new Map<number, VringSetup>();
  readonly enabled = new Map<number, boolean>();
  readonly callFds = new Map<number, number>();
  memory: GuestMemory | null = null;
  status = -1;
  resets = 0;
  /** Hold stopQueue/quiesce until the test completes them. */
  holdStops = false;
  holdQuiesce = false;
  readonly pendingStops = new Map<number, (idx: number) => void>();
  pendingQuiesce: (() => void) | null = null;
  /** What stopQueue reports as the next avail index, per queue. */
  readonly stopIdx = new Map<number, number>();
  startError: Error | null = null;

  constructor(private readonly events: string[]) {}

  getConfig(offset: number, size: number): Uint8Array | null {
    this.events.push(`getConfig ${offset} ${size}`);
    return this.config.slice(offset, offset + size);
  }

  setConfig(offset: number, data: Uint8Array, flags: number): boolean {
    this.events.push(`setConfig ${offset} ${data.length} ${flags}`);
    // Only bytes 20..27 (sense_size, cdb_size in virtio_scsi_config) are writable.
    if (offset < 20 || offset + data.length > 28) return false;
    this.config.set(data, offset);
    return true;
  }

  startQueue(setup: VringSetup): void {
    this.events.push(`start ${setup.index}`);
    if (this.startError) throw this.startError;
    this.started.set(setup.index, setup);
    this.enabled.set(setup.index, setup.enabled);
    this.callFds.set(setup.index, setup.callFd);
  }

  stopQueue(index: number, done: (lastAvailIdx: number) => void): void {
    this.events.push(`stop ${index}`);
    const finish = (idx: number) => {
      this.started.delete(index);
      this.events.push(`stopped ${index}`);
      done(idx);
    };
    if (!this.started.has(index)) this.events.push(`ERROR stop of queue ${index} not started`);
    if (this.holdStops) this.pendingStops.set(index, finish);
    else finish(this.stopIdx.get(index) ?? 0);
  }

  completeStop(index: number, idx: number): void {
    const f = this.pendingStops.get(index);
    if (!f) throw new Error(`no pending stop for ${index}`);
    this.pendingStops.delete(index);
    f(idx);
  }

  setQueueEnabled(index: number, enabled: boolean): void {
    this.events.push(`enable ${index} ${enabled}`);
    this.enabled.set(index, enabled);
  }

  setCallFd(index: number, fd: number): void {
    this.events.push(`call ${index} ${fd}`);
    this.callFds.set(index, fd);
  }

  quiesce(done: () => void): void {
    this.events.push('quiesce');
    if (this.holdQuiesce) this.pendingQuiesce = done;
    else done();
  }

  memoryChanged(memory: GuestMemory | null): void {
    this.events.push(`memoryChanged ${memory ? memory.regions.length : 'null'}`);
    this.memory = memory;
  }

  setStatus(status: number): void {
    this.events.push(`status ${status}`);
    this.status = status;
  }

  reset(): void {
    this.events.push('reset');
    this.resets++;
  }
}

export const MiB = 1n << 20n;
/** Where QEMU-like user addresses start. */
export const UADDR = 0x7f12_3400_0000n;

export interface Harness {
  events: string[];
  host: FakeHost;
  device: FakeDevice;
  session: VhostUserSession;
  transport: MemoryTransport;
  fe: FakeFrontend;
  closeReasons: string[];
  /** Back-end fds still open at the moment the session asked for the connection to be dropped. */
  openAtClose: Set<number> | null;
  logs: string[];
  /** Two regions of one 4 MiB memfd, as QEMU splits pc.ram at the 4 GiB hole. */
  regions: FakeRegion[];
  /** One FakeQueue per device queue, rings inside region 0. */
  queues: FakeQueue[];
  /** Send bytes with fds as they would arrive (new back-end fd numbers). */
  raw(bytes: Uint8Array, frontFds: number[]): void;
  /** Close the session and wait for the teardown. */
  closeSession(): Promise<void>;
}

export function makeHarness(opts: { session?: SessionOptions; device?: (d: FakeDevice) => void } = {}): Harness {
  const events: string[] = [];
  const host = new FakeHost(events);
  const device = new FakeDevice(events);
  opts.device?.(device);
  const closeReasons: string[] = [];
  const logs: string[] = [];
  // eslint-disable-next-line prefer-const
  let transport: MemoryTransport;
  const session = new VhostUserSession(
    device,
    host,
    {
      send: (b) => transport.receive(b),
      close: (r) => {
        closeReasons.push(r);
        h.openAtClose = new Set(host.open);
        transport.close(r);
      },
      log: (level, msg) => logs.push(`${level}: ${msg}`),
    },
    opts.session,
  );
  const assembler = new MessageAssembler((fd) => host.closeFd(fd));
  const raw = (bytes: Uint8Array, frontFds: number[]) => {
    assembler.push(bytes, frontFds.map((f) => host.receive(f)));
    for (let m = assembler.next(); m; m = assembler.next()) session.handle(m);
  };
  transport = new MemoryTransport(raw);
  const fe = new FakeFrontend(transport);
  const ram = host.file(4n * MiB);
  const regions: FakeRegion[] = [
    { guestPhysAddr: 0n, size: 2n * MiB, userAddr: UADDR, mmapOffset: 0n, fd: ram },
    { guestPhysAddr: 0x1_0000_0000n, size: 2n * MiB, userAddr: UADDR + 2n * MiB, mmapOffset: 2n * MiB, fd: ram },
  ];
  const queues: FakeQueue[] = [];
  for (let i = 0; i < device.queueCount; i++) {
    const desc = Number(UADDR) + 0x10000 * i;
    queues.push({ index: i, size: 128, desc, avail: desc + 16 * 128, used: desc + 0x1000, kickFd: host.file(), callFd: host.file(), errFd: host.file() });
  }
  const closeSession = () => new Promise<void>((resolve) => session.close(resolve));
  const h: Harness = { events, host, device, session, transport, fe, closeReasons, openAtClose: null, logs, regions, queues, raw, closeSession };
  return h;
}

/** After the session is closed: nothing leaked, nothing done twice. */
export async function assertClean(t: tap.Test, h: Harness): Promise<void> {
  await h.closeSession();
  t.same([...h.host.open], [], 'every fd the back-end received is closed');
  t.same(h.host.errors, [], 'no fd or mapping misuse');
  t.equal(h.host.liveMappings(), 0, 'every mapping is unmapped');
  t.equal(h.device.started.size, 0, 'no ring left started');
  t.same(h.events.filter((e) => e.startsWith('ERROR')), [], 'device saw no invalid call');
}

/** Wait for queued microtasks (FakeFrontend awaits). */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
