// The other side, for tests and benchmarks: guest memory over plain ArrayBuffers and a
// split-ring DRIVER (what the guest's virtio driver does), plus helpers that corrupt the
// rings on purpose. It follows virtio 1.2 §2.7.13 (supplying buffers) and §2.7.14
// (receiving used buffers). Shipped beside the code (DESIGN.md "Tests").
//
// Not for production: it trusts itself, allocates freely and throws plain Errors.

import { GuestMemory, GuestRegion } from './guest-memory';
import {
  SplitQueueConfig,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from './split-queue';

export interface FakeRegionSpec {
  /** Guest-physical start. */
  gpa: number;
  size: number;
  /** Front-end virtual start; default gpa + FAKE_QVA_BIAS, so GPA/QVA mix-ups show. */
  userAddr?: number;
  /**
   * Use these bytes as the region (e.g. a shared memfd mapping a fake frontend hands to a real
   * backend). Such a region has no canary guards: they cannot be placed around foreign memory.
   */
  bytes?: Uint8Array;
}

/** Default distance between a fake region's user address and its GPA. */
export const FAKE_QVA_BIAS = 0x7f00_0000_0000;
/** Bytes of canary on both sides of every fake region (a stand-in for guard pages, §5.5). */
export const FAKE_GUARD_BYTES = 4096;
export const FAKE_GUARD_CANARY = 0xa5;

interface FakeRegion extends GuestRegion {
  backing: Uint8Array; // guard + region + guard
  cursor: number; // bump allocator offset inside the region
  guarded: boolean;
}

export class FakeGuestMemory {
  private readonly fakeRegions: FakeRegion[] = [];

  constructor(specs: readonly FakeRegionSpec[] = [{ gpa: 0x10_0000, size: 1 << 20 }]) {
    for (const s of specs) {
      if (s.bytes !== undefined) {
        if (s.bytes.length !== s.size) throw new RangeError(`region bytes: ${s.bytes.length} bytes for a ${s.size}-byte region`);
        this.fakeRegions.push({
          guestPhysAddr: s.gpa, userAddr: s.userAddr ?? s.gpa + FAKE_QVA_BIAS, size: s.size, bytes: s.bytes, backing: s.bytes, cursor: 0, guarded: false,
        });
        continue;
      }
      const backing = new Uint8Array(new ArrayBuffer(s.size + 2 * FAKE_GUARD_BYTES));
      backing.fill(FAKE_GUARD_CANARY, 0, FAKE_GUARD_BYTES);
      backing.fill(FAKE_GUARD_CANARY, FAKE_GUARD_BYTES + s.size);
      this.fakeRegions.push({
        guestPhysAddr: s.gpa,
        userAddr: s.userAddr ?? s.gpa + FAKE_QVA_BIAS,
        size: s.size,
        bytes: backing.subarray(FAKE_GUARD_BYTES, FAKE_GUARD_BYTES + s.size),
        backing,
        cursor: 0,
        guarded: true,
      });
    }
  }

  /** The regions, as SET_MEM_TABLE would describe them. */
  get regions(): GuestRegion[] {
    return this.fakeRegions.map(({ guestPhysAddr, userAddr, size, bytes }) => ({ guestPhysAddr, userAddr, size, bytes }));
  }

  toGuestMemory(): GuestMemory {
    return new GuestMemory(this.regions);
  }

  /** Bump-allocate len bytes aligned to align; in `region` if given, else the first with room. */
  alloc(len: number, align = 8, region?: number): number {
    const order = region === undefined ? this.fakeRegions.map((_, i) => i) : [region];
    for (const i of order) {
      const r = this.fakeRegions[i];
      if (r === undefined) throw new Error(`no fake region ${i}`);
      const gpa = Math.ceil((r.guestPhysAddr + r.cursor) / align) * align;
      const off = gpa - r.guestPhysAddr;
      if (off + len <= r.size) {
        r.cursor = off + len;
        return gpa;
      }
    }
    throw new Error(`fake guest memory: no room for ${len} bytes`);
  }

  /** Front-end virtual address of a GPA. */
  qvaOf(gpa: number): number {
    const r = this.regionAt(gpa);
    return r.userAddr + (gpa - r.guestPhysAddr);
  }

  /** A contiguous view (must not cross a region end). */
  view(gpa: number, len: number): Uint8Array {
    const r = this.regionAt(gpa);
    const off = gpa - r.guestPhysAddr;
    if (off + len > r.size) throw new Error(`fake view 0x${gpa.toString(16)}+${len} crosses a region end`);
    return r.bytes.subarray(off, off + len);
  }

  /** Write bytes at gpa; may continue into an adjacent region. */
  write(gpa: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const r = this.regionAt(gpa + done);
      const off = gpa + done - r.guestPhysAddr;
      const n = Math.min(r.size - off, data.length - done);
      r.bytes.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  /** Copy len bytes out from gpa; may continue into an adjacent region. */
  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const r = this.regionAt(gpa + done);
      const off = gpa + done - r.guestPhysAddr;
      const n = Math.min(r.size - off, len - done);
      out.set(r.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  fill(gpa: number, len: number, value: number): void {
    this.write(gpa, new Uint8Array(len).fill(value));
  }

  writeU16(gpa: number, v: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    this.write(gpa, b);
  }

  writeU32(gpa: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.write(gpa, b);
  }

  writeU64(gpa: number, v: number | bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.write(gpa, b);
  }

  readU16(gpa: number): number {
    return new DataView(this.read(gpa, 2).buffer).getUint16(0, true);
  }

  readU32(gpa: number): number {
    return new DataView(this.read(gpa, 4).buffer).getUint32(0, true);
  }

  readU64(gpa: number): bigint {
    return new DataView(this.read(gpa, 8).buffer).getBigUint64(0, true);
  }

  /** True if no byte of any guard zone around the regions changed. */
  guardsIntact(): boolean {
    for (const r of this.fakeRegions) {
      if (!r.guarded) continue;
      const b = r.backing;
      for (let i = 0; i < FAKE_GUARD_BYTES; i++) {
        if (b[i] !== FAKE_GUARD_CANARY || b[FAKE_GUARD_BYTES + r.size + i] !== FAKE_GUARD_CANARY) return false;
      }
    }
    return true;
  }

  /** True if `view` lies entirely inside one region's bytes (same buffer, within bounds). */
  contains(view: Uint8Array): boolean {
    for (const r of this.fakeRegions) {
      if (view.buffer !== r.bytes.buffer) continue;
      const start = view.byteOffset - r.bytes.byteOffset;
      if (start >= 0 && start + view.length <= r.size) return true;
    }
    return false;
  }

  private regionAt(gpa: number): FakeRegion {
    for (const r of this.fakeRegions) {
      if (gpa >= r.guestPhysAddr && gpa < r.guestPhysAddr + r.size) return r;
    }
    throw new Error(`fake guest memory: 0x${gpa.toString(16)} is not mapped`);
  }
}

/** A buffer to offer: bytes to copy in, a length to allocate (zeroed), or a place the caller chose. */
export type FakeBufferSpec = Uint8Array | number | { gpa: number; len: number };

export interface FakeSplitDriverOptions {
  eventIdx?: boolean;
  indirect?: boolean;
  /** Initial avail->idx and used->idx (the device's lastAvailIdx must match); default 0. */
  startIdx?: number;
  /** Place the rings in this fake region; default: the first with room. */
  region?: number;
}

export interface AddChainOptions {
  /** Put the buffers in an indirect table (§2.7.5.3). */
  indirect?: boolean;
  /**
   * With indirect: this many leading buffers stay as ordinary chained descriptors in the
   * main table, followed by one INDIRECT descriptor for the rest (§2.7.5.3.2).
   */
  directPrefix?: number;
  /** Set WRITE on the descriptor that points to the indirect table (the device must ignore it). */
  indirectWriteFlag?: boolean;
  /** Cut every buffer into descriptors of this many bytes ('per-byte' = 1). */
  split?: 'none' | 'per-byte' | number;
  /** Publish avail->idx now (default true). With false, call kick() later. */
  kick?: boolean;
}

export interface DescSpec {
  addr?: number | bigint;
  len?: number;
  flags?: number;
  next?: number;
}

export interface RawDesc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

export interface UsedElem {
  id: number;
  len: number;
}

export interface FakeBufferRef {
  gpa: number;
  len: number;
}

interface Outstanding {
  descs: number[];
  readable: FakeBufferRef[];
  writable: FakeBufferRef[];
}

/** A split-ring driver over FakeGuestMemory (virtio 1.2 §2.7.13, §2.7.14). */
export class FakeSplitDriver {
  readonly mem: FakeGuestMemory;
  readonly size: number;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  /** GPAs of the three areas. */
  readonly descTable: number;
  readonly availRing: number;
  readonly usedRing: number;
  readonly startIdx: number;

  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly free: number[] = [];
  private readonly outstanding = new Map<number, Outstanding>();
  /** The buffers last offered under each head (kept after completion, for readWritable). */
  private readonly lastBuffers = new Map<number, Outstanding>();
  private availShadow: number;
  private availPublished: number;
  private lastUsed: number;

  constructor(mem: FakeGuestMemory, size: number, opts: FakeSplitDriverOptions = {}) {
    this.mem = mem;
    this.size = size;
    this.eventIdx = opts.eventIdx ?? false;
    this.indirect = opts.indirect ?? false;
    this.startIdx = opts.startIdx ?? 0;
    // §2.7 table: desc 16-aligned 16n, avail 2-aligned 6+2n, used 4-aligned 6+8n.
    this.descTable = mem.alloc(16 * size, 16, opts.region);
    this.availRing = mem.alloc(6 + 2 * size, 2, opts.region);
    this.usedRing = mem.alloc(6 + 8 * size, 4, opts.region);
    const a = mem.view(this.availRing, 6 + 2 * size);
    const u = mem.view(this.usedRing, 6 + 8 * size);
    this.avail16 = new Uint16Array(a.buffer, a.byteOffset, 3 + size);
    this.used16 = new Uint16Array(u.buffer, u.byteOffset, 3 + 4 * size);
    this.used32 = new Uint32Array(u.buffer, u.byteOffset, 1 + 2 * size);
    for (let i = size - 1; i >= 0; i--) this.free.push(i);
    this.availShadow = this.availPublished = this.startIdx;
    this.lastUsed = this.startIdx;
    Atomics.store(this.avail16, 1, this.startIdx);
    Atomics.store(this.used16, 1, this.startIdx);
  }

  /** The SplitQueueConfig a front-end would pass on (ring addresses as QVAs). */
  config(overrides: Partial<SplitQueueConfig> = {}): SplitQueueConfig {
    return {
      size: this.size,
      descTable: this.mem.qvaOf(this.descTable),
      availRing: this.mem.qvaOf(this.availRing),
      usedRing: this.mem.qvaOf(this.usedRing),
      eventIdx: this.eventIdx,
      indirect: this.indirect,
      ...overrides,
    };
  }

  /** Free descriptors in the main table. */
  get freeDescriptors(): number {
    return this.free.length;
  }

  /**
   * Offer one request: readable buffers first, then writable ones (§2.7.4.2). Returns
   * the head. With opts.kick !== false, publishes avail->idx (and returns the head; use
   * kick() yourself to learn whether the device asked to be notified).
   */
  addChain(readable: readonly FakeBufferSpec[], writable: readonly (number | FakeBufferRef)[], opts: AddChainOptions = {}): number {
    const rd = readable.map((b) => this.placeBuffer(b));
    const wr = writable.map((b) => this.placeBuffer(b));
    const piece = opts.split === 'per-byte' ? 1 : typeof opts.split === 'number' ? opts.split : 0;
    const pieces: { gpa: number; len: number; write: boolean }[] = [];
    const cut = (b: FakeBufferRef, write: boolean) => {
      if (piece <= 0 || b.len <= piece) {
        pieces.push({ ...b, write });
        return;
      }
      for (let off = 0; off < b.len; off += piece) pieces.push({ gpa: b.gpa + off, len: Math.min(piece, b.len - off), write });
    };
    rd.forEach((b) => cut(b, false));
    wr.forEach((b) => cut(b, true));

    let direct = pieces;
    let table: typeof pieces = [];
    if (opts.indirect) {
      const prefix = opts.directPrefix ?? 0;
      direct = pieces.slice(0, prefix);
      table = pieces.slice(prefix);
    }
    const mainCount = direct.length + (table.length > 0 ? 1 : 0);
    if (mainCount === 0) throw new Error('addChain: empty chain');
    if (mainCount > this.free.length) throw new Error(`addChain: needs ${mainCount} descriptors, ${this.free.length} free`);
    const descs: number[] = [];
    for (let i = 0; i < mainCount; i++) descs.push(this.free.pop()!);

    direct.forEach((p, i) => {
      const last = i === mainCount - 1;
      this.setDesc(descs[i], {
        addr: p.gpa,
        len: p.len,
        flags: (p.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT),
        next: last ? 0 : descs[i + 1],
      });
    });
    if (table.length > 0) {
      const t = this.writeIndirectTable(
        table.map((p, i) => ({
          addr: p.gpa,
          len: p.len,
          flags: (p.write ? VIRTQ_DESC_F_WRITE : 0) | (i === table.length - 1 ? 0 : VIRTQ_DESC_F_NEXT),
          next: i === table.length - 1 ? 0 : i + 1,
        })),
      );
      this.setDesc(descs[mainCount - 1], {
        addr: t.gpa,
        len: t.len,
        flags: VIRTQ_DESC_F_INDIRECT | (opts.indirectWriteFlag ? VIRTQ_DESC_F_WRITE : 0),
        next: 0,
      });
    }
    const head = descs[0];
    const rec = { descs, readable: rd, writable: wr };
    this.outstanding.set(head, rec);
    this.lastBuffers.set(head, rec);
    this.offer(head, opts.kick ?? true);
    return head;
  }

  /** The buffers last offered under head (outstanding or completed), as the driver placed them. */
  buffersOf(head: number): { readable: FakeBufferRef[]; writable: FakeBufferRef[] } {
    const o = this.lastBuffers.get(head);
    if (o === undefined) throw new Error(`head ${head} was never offered by addChain`);
    return { readable: o.readable, writable: o.writable };
  }

  /** The writable buffers last offered under head, concatenated. */
  readWritable(head: number): Uint8Array {
    const parts = this.buffersOf(head).writable.map((b) => this.mem.read(b.gpa, b.len));
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  /** Put head into the next avail ring slot; publish avail->idx unless kick is false. */
  offer(head: number, kick = true): void {
    this.avail16[2 + (this.availShadow % this.size)] = head;
    this.availShadow = (this.availShadow + 1) & 0xffff;
    if (kick) this.kick();
  }

  /**
   * Publish avail->idx (after the ring entries, §2.7.13.3) and decide whether to notify
   * the device (§2.7.10.1): with EVENT_IDX by avail_event, else by used->flags.
   */
  kick(): boolean {
    const old = this.availPublished;
    const now = this.availShadow;
    if (old === now) return false;
    Atomics.store(this.avail16, 1, now);
    this.availPublished = now;
    if (this.eventIdx) return vringNeedEvent(Atomics.load(this.used16, 2 + 4 * this.size), now, old);
    return (Atomics.load(this.used16, 0) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Consume the used elements published since the last call; frees their descriptors. */
  readUsed(): UsedElem[] {
    const idx = Atomics.load(this.used16, 1);
    const out: UsedElem[] = [];
    while (this.lastUsed !== idx) {
      const slot = this.lastUsed % this.size;
      const id = this.used32[1 + 2 * slot];
      const len = this.used32[2 + 2 * slot];
      out.push({ id, len });
      const o = this.outstanding.get(id);
      if (o !== undefined) {
        this.outstanding.delete(id);
        for (let i = o.descs.length - 1; i >= 0; i--) this.free.push(o.descs[i]);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  // ---- raw access and corruption helpers --------------------------------------------

  /** Take a free descriptor index for hand-built chains. */
  allocDesc(): number {
    const d = this.free.pop();
    if (d === undefined) throw new Error('no free descriptor');
    return d;
  }

  /** Overwrite fields of descriptor i (omitted fields keep their value). addr may be a bigint ≥ 2^53. */
  setDesc(i: number, spec: DescSpec): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new Error(`setDesc: ${i} is outside the table`);
    const at = this.descTable + 16 * i;
    if (spec.addr !== undefined) this.mem.writeU64(at, spec.addr);
    if (spec.len !== undefined) this.mem.writeU32(at + 8, spec.len);
    if (spec.flags !== undefined) this.mem.writeU16(at + 12, spec.flags);
    if (spec.next !== undefined) this.mem.writeU16(at + 14, spec.next);
  }

  getDesc(i: number): RawDesc {
    const at = this.descTable + 16 * i;
    return {
      addr: this.mem.readU64(at),
      len: this.mem.readU32(at + 8),
      flags: this.mem.readU16(at + 12),
      next: this.mem.readU16(at + 14),
    };
  }

  /** Write an indirect table (16-byte entries) into fresh memory. */
  writeIndirectTable(entries: readonly DescSpec[], align = 16): FakeBufferRef {
    const len = 16 * entries.length;
    const gpa = this.mem.alloc(Math.max(len, 1), align);
    entries.forEach((e, i) => {
      this.mem.writeU64(gpa + 16 * i, e.addr ?? 0);
      this.mem.writeU32(gpa + 16 * i + 8, e.len ?? 0);
      this.mem.writeU16(gpa + 16 * i + 12, e.flags ?? 0);
      this.mem.writeU16(gpa + 16 * i + 14, e.next ?? 0);
    });
    return { gpa, len };
  }

  /** Set avail->idx directly (the driver's shadow follows). */
  setAvailIdx(v: number): void {
    this.availShadow = this.availPublished = v & 0xffff;
    Atomics.store(this.avail16, 1, v & 0xffff);
  }

  get availIdx(): number {
    return Atomics.load(this.avail16, 1);
  }

  setAvailRing(slot: number, head: number): void {
    if (slot < 0 || slot >= this.size) throw new Error(`setAvailRing: slot ${slot}`);
    this.avail16[2 + slot] = head;
  }

  setAvailFlags(v: number): void {
    Atomics.store(this.avail16, 0, v);
  }

  setUsedEvent(v: number): void {
    Atomics.store(this.avail16, 2 + this.size, v);
  }

  get usedIdx(): number {
    return Atomics.load(this.used16, 1);
  }

  get usedFlags(): number {
    return Atomics.load(this.used16, 0);
  }

  get availEvent(): number {
    return Atomics.load(this.used16, 2 + 4 * this.size);
  }

  /** Offer a chain of n descriptors (16-byte readable buffers) whose last links back to the first. */
  makeLoop(n: number): number {
    const descs: number[] = [];
    for (let i = 0; i < n; i++) descs.push(this.allocDesc());
    descs.forEach((d, i) => {
      this.setDesc(d, { addr: this.mem.alloc(16), len: 16, flags: VIRTQ_DESC_F_NEXT, next: descs[(i + 1) % n] });
    });
    this.offer(descs[0]);
    return descs[0];
  }

  /** Offer a head whose indirect table contains another INDIRECT descriptor. */
  makeNestedIndirect(): number {
    const inner = this.writeIndirectTable([{ addr: this.mem.alloc(16), len: 16, flags: 0 }]);
    const outer = this.writeIndirectTable([
      { addr: this.mem.alloc(16), len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 },
      { addr: inner.gpa, len: inner.len, flags: VIRTQ_DESC_F_INDIRECT },
    ]);
    const head = this.allocDesc();
    this.setDesc(head, { addr: outer.gpa, len: outer.len, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    this.offer(head);
    return head;
  }

  private placeBuffer(b: FakeBufferSpec | number): FakeBufferRef {
    if (typeof b === 'number') return { gpa: this.mem.alloc(Math.max(b, 1)), len: b };
    if (b instanceof Uint8Array) {
      const gpa = this.mem.alloc(Math.max(b.length, 1));
      this.mem.write(gpa, b);
      return { gpa, len: b.length };
    }
    return { gpa: b.gpa, len: b.len };
  }
}
