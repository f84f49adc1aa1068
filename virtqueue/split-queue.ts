// The device side of a split virtqueue (virtio 1.2 §2.7), hardened for a hostile driver.
//
// Every value read from the rings is guest-controlled. The rules of reliability.md V4,
// V9 and the D-table are applied here, each marked where it is decided. A violation
// throws VirtqueueError; the caller stops the queue (DESIGN.md: the backend, never the
// process). After a throw the queue object is not to be used again.
//
// Layout (virtio 1.2 §2.7, the alignment/size table), all little-endian (VERSION_1):
//   descriptor table  align 16  16*n  { le64 addr; le32 len; le16 flags; le16 next }
//   available ring    align 2   6+2n  { le16 flags; le16 idx; le16 ring[n]; le16 used_event }
//   used ring         align 4   6+8n  { le16 flags; le16 idx; {le32 id; le32 len} ring[n]; le16 avail_event }
//
// Hot path: no allocation per pop besides the Uint8Array views of the buffers; the
// descriptor chains are pooled (one per head), the in-flight set is a bitmap, indirect
// tables are copied into one per-queue scratch buffer.

import { VirtqueueError } from './errors';
import { GuestMemory } from './guest-memory';
import { HOST_IS_LITTLE_ENDIAN, loadIndex, storeHint, storeIndex } from './ordering';

/** virtio 1.2 §2.7.5 struct virtq_desc flags. */
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** virtio 1.2 §2.7.6 struct virtq_avail flags. */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** virtio 1.2 §2.7.8 struct virtq_used flags. */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** virtio 1.2 §2.7: "The maximum Queue Size value is 32768". */
export const VIRTQ_MAX_SIZE = 32768;
/**
 * Most descriptors in one indirect table. An indirect chain is still a chain, and
 * §2.7.5.3.1 bounds a chain by the Queue Size (≤ 32768); QEMU uses the same cap
 * (VIRTQUEUE_MAX_SIZE * 16 bytes). reliability.md V4.5.
 */
export const VIRTQ_MAX_INDIRECT_ENTRIES = 32768;
/** A chain's total length fits the u32 used->len: §2.7.5.2 "no longer than 2^32 bytes"; rust-vmm checked_add into u32. */
export const VIRTQ_MAX_CHAIN_BYTES = 0xffffffff;

/**
 * vring_need_event (virtio 1.2 §2.7.7.2 and the virtio_ring.h helper): having moved an
 * index from oldIdx to newIdx, must the other side be notified given its event index?
 * True iff eventIdx lies in [oldIdx, newIdx) modulo 2^16.
 */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

export interface SplitQueueConfig {
  /** Queue Size: a power of 2 in 1..32768 (§2.7). */
  size: number;
  /** Front-end virtual addresses (SET_VRING_ADDR), not GPAs. */
  descTable: number;
  availRing: number;
  usedRing: number;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /**
   * The device's "reasonable limit of descriptors it will allow in a chain" (§2.7.4.1,
   * reliability.md V4.7): buffer descriptors counted over the direct part and the
   * indirect table together (the descriptor that points to an indirect table is not a
   * buffer and is not counted). Default: the queue size, which is also what a driver
   * may use (§2.7.5.3.1 "MUST NOT create a descriptor chain longer than the Queue
   * Size"). Integer in 1..65536.
   */
  maxChainLength?: number;
}

/** One popped request: its device-readable and device-writable buffers. Pooled per head. */
export class DescriptorChain {
  /** The head descriptor index (the used element id). */
  head: number;
  /**
   * Device-readable segments in order: views into guest memory. The device MUST NOT
   * write them (§2.7.5.1, V4.11). Valid until pushUsed() for this chain (V9.4).
   */
  readonly readable: Uint8Array[] = [];
  readableLength = 0;
  /** Device-writable segments in order: views into guest memory. */
  readonly writable: Uint8Array[] = [];
  writableLength = 0;

  constructor(head: number) {
    this.head = head;
  }
}

const ADDR_HI_LIMIT = 0x200000; // addr >= 2^53 iff the high u32 >= 2^21

export class SplitQueue {
  readonly size: number;
  private readonly memory: GuestMemory;
  private readonly mask: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private readonly maxChainLength: number;

  /** Descriptor table as u32 words: [4i] addr lo, [4i+1] addr hi, [4i+2] len, [4i+3] flags | next << 16. */
  private readonly desc: Uint32Array;
  /** [0] flags, [1] idx, [2 + i] ring[i], [2 + n] used_event. */
  private readonly avail: Uint16Array;
  /** [0] flags, [1] idx, [2 + 4n] avail_event. */
  private readonly used16: Uint16Array;
  /** [1 + 2i] ring[i].id, [2 + 2i] ring[i].len. */
  private readonly used32: Uint32Array;
  private readonly usedEventIndex: number;
  private readonly availEventIndex: number;

  private nextAvail: number;
  /** used->idx as we will publish it (our shadow; only the device writes used->idx). */
  private nextUsed: number;
  private publishedUsed: number;
  private unpublished = 0;
  private notifyOwed = false;
  private notifyEnabled = true;

  private readonly chains: DescriptorChain[];
  private readonly inFlightBits: Uint32Array;
  private inFlightCount = 0;

  private indirectBytes: Uint8Array = new Uint8Array(0);
  private indirectWords: Uint32Array = new Uint32Array(0);
  private readonly segScratch: Uint8Array[] = [];

  /**
   * Validates the queue (rust-vmm is_valid lesson, D18) and maps the three ring areas as
   * whole contiguous ranges. Does not write guest memory: call enableNotification()
   * (or run one disable / drain / enable round) once the ring is started, so that a
   * NO_NOTIFY left behind by a previous back-end is cleared.
   *
   * lastAvailIdx is the SET_VRING_BASE value, a u16 the caller has already validated.
   */
  constructor(memory: GuestMemory, config: SplitQueueConfig, lastAvailIdx: number) {
    if (!HOST_IS_LITTLE_ENDIAN) {
      // Typed arrays and Atomics use host byte order; rings are LE (virtio 1.2 §2.7, VERSION_1).
      throw new Error('SplitQueue needs a little-endian host');
    }
    const size = config.size;
    // guest-controlled (SET_VRING_NUM): validated here. §2.7: power of 2, at most 32768.
    if (!Number.isInteger(size) || size < 1 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) !== 0) {
      throw new VirtqueueError('BAD_QUEUE_SIZE', `queue size ${size} is not a power of 2 in 1..${VIRTQ_MAX_SIZE}`);
    }
    if (!Number.isInteger(lastAvailIdx) || lastAvailIdx < 0 || lastAvailIdx > 0xffff) {
      throw new RangeError(`last avail index ${lastAvailIdx} is not a u16`);
    }
    const maxChain = config.maxChainLength ?? size;
    if (!Number.isInteger(maxChain) || maxChain < 1 || maxChain > 65536) {
      throw new RangeError(`maxChainLength ${maxChain} is not in 1..65536`);
    }
    this.memory = memory;
    this.size = size;
    this.mask = size - 1;
    this.eventIdx = config.eventIdx === true;
    this.indirect = config.indirect === true;
    this.maxChainLength = maxChain;

    // guest-controlled ring addresses: validated here (alignment per the §2.7 table,
    // then the whole area must lie in one region, D5/V2.5).
    const descView = mapRing(memory, 'descriptor table', config.descTable, 16 * size, 16);
    const availView = mapRing(memory, 'available ring', config.availRing, 6 + 2 * size, 2);
    const usedView = mapRing(memory, 'used ring', config.usedRing, 6 + 8 * size, 4);
    this.desc = new Uint32Array(descView.buffer, descView.byteOffset, 4 * size);
    this.avail = new Uint16Array(availView.buffer, availView.byteOffset, 3 + size);
    this.used16 = new Uint16Array(usedView.buffer, usedView.byteOffset, 3 + 4 * size);
    this.used32 = new Uint32Array(usedView.buffer, usedView.byteOffset, 1 + 2 * size);
    this.usedEventIndex = 2 + size;
    this.availEventIndex = 2 + 4 * size;

    this.nextAvail = lastAvailIdx;
    // Re-read used->idx from guest memory: after a reconnect or a stop/start the ring
    // carries on from where it is, not from a cached value (rust-vmm 958cdec/8a4ba9d, C12).
    this.nextUsed = loadIndex(this.used16, 1);
    this.publishedUsed = this.nextUsed;

    this.chains = new Array<DescriptorChain>(size);
    for (let i = 0; i < size; i++) this.chains[i] = new DescriptorChain(i);
    this.inFlightBits = new Uint32Array((size + 31) >>> 5);
  }

  /** Next avail index to process (what GET_VRING_BASE returns). */
  get lastAvailIdx(): number {
    return this.nextAvail;
  }

  /** Chains popped and not yet pushed. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** used->idx as last published (the inflight-tracking region records this, §4.5). */
  get usedIdx(): number {
    return this.publishedUsed;
  }

  /** True if avail->idx != lastAvailIdx (cheap check). */
  hasAvailable(): boolean {
    return loadIndex(this.avail, 1) !== this.nextAvail;
  }

  /** Pop the next available chain, or null if none. Throws VirtqueueError on a malformed ring. */
  pop(): DescriptorChain | null {
    // V4.1 / D22: one aligned atomic 16-bit load of avail->idx per call.
    const availIdx = loadIndex(this.avail, 1);
    const last = this.nextAvail;
    const pending = (availIdx - last) & 0xffff;
    if (pending === 0) return null;
    // guest-controlled: validated here. The driver can offer at most Queue Size buffers
    // (§2.7), so a larger step is corruption (D14, D19; libvhost-user "Guest moved used index").
    if (pending > this.size) {
      throw new VirtqueueError(
        'AVAIL_IDX_JUMP',
        `avail idx moved from ${last} to ${availIdx}: ${pending} buffers on a queue of ${this.size}`,
      );
    }
    // D1 (QEMU CVE-2016-5403): never more than Queue Size requests in flight.
    if (this.inFlightCount >= this.size) {
      throw new VirtqueueError('TOO_MANY_IN_FLIGHT', `${this.inFlightCount} requests in flight on a queue of ${this.size}`);
    }
    // V4.2: the ring entry is read once. size divides 2^16, so idx % size == idx & mask.
    const head = this.avail[2 + (last & this.mask)];
    // guest-controlled: validated here (D13).
    if (head >= this.size) {
      throw new VirtqueueError('HEAD_OUT_OF_RANGE', `avail ring[${last & this.mask}] = ${head}, queue size ${this.size}`);
    }
    const chain = this.walk(head);
    this.nextAvail = (last + 1) & 0xffff;
    if (this.eventIdx && this.notifyEnabled) {
      // §2.7.10: "kick me when you add the entry at lastAvailIdx", i.e. the next new one.
      storeHint(this.used16, this.availEventIndex, this.nextAvail);
    }
    return chain;
  }

  /**
   * Take over a head that a previous back-end popped but never completed (inflight I/O
   * tracking, reliability.md §4.5): walk and validate its chain and mark it in flight,
   * without touching the rings or lastAvailIdx. The head comes from the inflight
   * region, so it is range-checked like a ring entry.
   */
  adoptInflight(head: number): DescriptorChain {
    if (!Number.isInteger(head) || head < 0 || head >= this.size) {
      throw new VirtqueueError('HEAD_OUT_OF_RANGE', `inflight head ${head}, queue size ${this.size}`);
    }
    if (this.inFlightCount >= this.size) {
      throw new VirtqueueError('TOO_MANY_IN_FLIGHT', `${this.inFlightCount} requests in flight on a queue of ${this.size}`);
    }
    return this.walk(head);
  }

  /**
   * Write the used element {id: head, len} without publishing it (used->idx is not
   * touched). len is clamped to [0, chain.writableLength]: it may be an underestimate,
   * never an overestimate (§2.7.8.2). Releases the chain to the pool.
   */
  pushUsed(chain: DescriptorChain, writtenLen: number): void {
    const head = chain.head;
    if (this.chains[head] !== chain || (this.inFlightBits[head >>> 5] & (1 << (head & 31))) === 0) {
      throw new Error(`pushUsed: chain ${head} is not in flight on this queue`);
    }
    let len = writtenLen;
    if (!(len >= 0)) len = 0; // NaN and negatives: claim nothing was written
    if (len > chain.writableLength) len = chain.writableLength;
    len = Math.floor(len);
    // More than Queue Size unpublished elements would overwrite our own unpublished
    // ring slots: publish the full ring first and remember whether that owed a call.
    if (this.unpublished >= this.size && this.flushUsed()) this.notifyOwed = true;
    const slot = this.nextUsed & this.mask;
    this.used32[1 + 2 * slot] = head;
    this.used32[2 + 2 * slot] = len;
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    this.unpublished++;
    this.inFlightBits[head >>> 5] &= ~(1 << (head & 31));
    this.inFlightCount--;
    // V9.4: drop the views into guest memory with the request.
    clear(chain.readable);
    clear(chain.writable);
    chain.readableLength = 0;
    chain.writableLength = 0;
  }

  /**
   * Publish used->idx (one atomic store, after every element write) and say whether the
   * driver must be notified (§2.7.7.2): with EVENT_IDX iff used_event lies in the range
   * of indices just published (vring_need_event); without it iff avail->flags lacks
   * VIRTQ_AVAIL_F_NO_INTERRUPT. False when nothing was pushed since the last publish.
   */
  publishUsed(): boolean {
    if (this.unpublished === 0) return false;
    let notify = this.flushUsed();
    if (this.notifyOwed) {
      notify = true;
      this.notifyOwed = false;
    }
    return notify;
  }

  /**
   * Suppress available-buffer notifications while draining (§2.7.10.2): with EVENT_IDX
   * avail_event = lastAvailIdx, and pop() stops advancing it, so buffers the driver adds
   * beyond the ones already pending do not kick; without it used->flags = NO_NOTIFY.
   * Advisory only: the driver may still kick, which is harmless.
   */
  disableNotification(): void {
    this.notifyEnabled = false;
    if (this.eventIdx) storeIndex(this.used16, this.availEventIndex, this.nextAvail);
    else storeIndex(this.used16, 0, VIRTQ_USED_F_NO_NOTIFY);
  }

  /**
   * Re-enable notifications, then re-check avail->idx. Returns true if buffers arrived
   * meanwhile: the caller must drain again, because the driver may have looked at the
   * old suppression state and not kicked (the re-enable / re-check race). The store
   * and the load are sequentially consistent (ordering.ts rule 4).
   */
  enableNotification(): boolean {
    this.notifyEnabled = true;
    if (this.eventIdx) {
      // §2.7.10.2: with EVENT_IDX the device MUST set flags to 0.
      if (this.used16[0] !== 0) storeIndex(this.used16, 0, 0);
      storeIndex(this.used16, this.availEventIndex, this.nextAvail);
    } else {
      storeIndex(this.used16, 0, 0);
    }
    return loadIndex(this.avail, 1) !== this.nextAvail;
  }

  // ---------------------------------------------------------------------------------

  private flushUsed(): boolean {
    const old = this.publishedUsed;
    const now = this.nextUsed;
    // V4.10 / ordering.ts rule 2: elements were written before this store.
    storeIndex(this.used16, 1, now);
    this.publishedUsed = now;
    this.unpublished = 0;
    // ordering.ts rule 3: read the driver's wish after publishing.
    if (this.eventIdx) {
      // guest-controlled used_event: any u16 is meaningful; read once.
      return vringNeedEvent(loadIndex(this.avail, this.usedEventIndex), now, old);
    }
    return (loadIndex(this.avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** Walk and validate the chain at head; mark it in flight. */
  private walk(head: number): DescriptorChain {
    const word = head >>> 5;
    const bit = 1 << (head & 31);
    // V4.9: a head offered again while still in flight would get two completions.
    if ((this.inFlightBits[word] & bit) !== 0) {
      throw new VirtqueueError('HEAD_IN_FLIGHT', `head ${head} offered again while still in flight`);
    }
    // Invariant: a chain that is not in flight has empty segment lists (pushUsed and
    // the error path below empty them).
    const chain = this.chains[head];
    const readable = chain.readable;
    const writable = chain.writable;
    const memory = this.memory;
    const maxChain = this.maxChainLength;

    let table = this.desc;
    let tableSize = this.size;
    let idx = head;
    let visited = 0;
    let inIndirect = false;
    let buffers = 0;
    let total = 0;
    let readableLength = 0;
    let writableLength = 0;
    let seenWritable = false;
    try {
      for (;;) {
        // V4.4 / D12: a walk longer than the table it runs in must revisit an entry.
        if (++visited > tableSize) {
          throw new VirtqueueError('DESC_LOOP', `descriptor chain at head ${head} loops`);
        }
        // V4.3 / D7: read the 16-byte descriptor once into locals; decide only on them.
        const w = idx << 2;
        const addrLo = table[w];
        const addrHi = table[w + 1];
        const len = table[w + 2];
        const flagsNext = table[w + 3];
        const flags = flagsNext & 0xffff;

        if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
          // guest-controlled: validated here (V4.5, §2.7.5.3.1, D4).
          if (!this.indirect) {
            throw new VirtqueueError('INDIRECT_NOT_NEGOTIATED', `head ${head}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC`);
          }
          if (inIndirect) {
            throw new VirtqueueError('INDIRECT_NESTED', `head ${head}: INDIRECT descriptor inside an indirect table`);
          }
          if ((flags & VIRTQ_DESC_F_NEXT) !== 0) {
            throw new VirtqueueError('INDIRECT_WITH_NEXT', `head ${head}: descriptor ${idx} has both INDIRECT and NEXT`);
          }
          if (len === 0 || len % 16 !== 0 || len > VIRTQ_MAX_INDIRECT_ENTRIES * 16) {
            throw new VirtqueueError('INDIRECT_BAD_LENGTH', `head ${head}: indirect table length ${len}`);
          }
          // §2.7.5.3.2: the WRITE flag of this descriptor is ignored, and it may follow
          // zero or more chained descriptors (so it is handled wherever it appears in the
          // direct walk, and ends that walk: no NEXT).
          table = this.copyIndirect(addrLo, addrHi, len);
          tableSize = len >>> 4;
          idx = 0;
          visited = 0;
          inIndirect = true;
          continue;
        }

        // V4.6 / D2 (QEMU CVE-2016-6490): zero-sized buffers are not allowed.
        if (len === 0) {
          throw new VirtqueueError('ZERO_LENGTH', `head ${head}: descriptor ${idx} has length 0`);
        }
        const write = (flags & VIRTQ_DESC_F_WRITE) !== 0;
        if (write) {
          seenWritable = true;
        } else if (seenWritable) {
          // V4.7, §2.7.4.2: device-writable elements come after every device-readable one.
          throw new VirtqueueError('WRITABLE_BEFORE_READABLE', `head ${head}: readable descriptor after a writable one`);
        }
        // V4.7, §2.7.4.1: our "reasonable limit" of descriptors in a chain.
        if (++buffers > maxChain) {
          throw new VirtqueueError('CHAIN_TOO_LARGE', `head ${head}: more than ${maxChain} descriptors`);
        }
        // V4.6, §2.7.5.2: at most 2^32-1 bytes in total (fits the u32 used len). Exact in a Number.
        total += len;
        if (total > VIRTQ_MAX_CHAIN_BYTES) {
          throw new VirtqueueError('CHAIN_TOO_LARGE', `head ${head}: chain longer than 2^32-1 bytes`);
        }
        // guest-controlled address: a GPA >= 2^53 cannot be inside any region.
        if (addrHi >= ADDR_HI_LIMIT) {
          throw new VirtqueueError('GPA_UNMAPPED', `head ${head}: descriptor address 0x${addrHi.toString(16)}${addrLo.toString(16).padStart(8, '0')} is not mapped`);
        }
        // V3.4 / D5: the whole [addr, addr+len) must be mapped; split at region boundaries.
        if (write) {
          memory.gpaSegments(addrHi * 0x100000000 + addrLo, len, writable);
          writableLength += len;
        } else {
          memory.gpaSegments(addrHi * 0x100000000 + addrLo, len, readable);
          readableLength += len;
        }
        if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
        const next = flagsNext >>> 16;
        // V4.4 / D13: next indexes the table it is in (the indirect table's own size there).
        if (next >= tableSize) {
          throw new VirtqueueError('NEXT_OUT_OF_RANGE', `head ${head}: next ${next} outside a table of ${tableSize}`);
        }
        idx = next;
      }
    } catch (e) {
      clear(readable);
      clear(writable);
      throw e;
    }
    chain.readableLength = readableLength;
    chain.writableLength = writableLength;
    this.inFlightBits[word] |= bit;
    this.inFlightCount++;
    return chain;
  }

  /**
   * Copy an indirect table into private memory in one go (V4.5, D8): the table is
   * translated with its full length (D5; it may span adjacent regions) and the walk
   * then reads only the copy, which also makes its alignment ours.
   */
  private copyIndirect(addrLo: number, addrHi: number, len: number): Uint32Array {
    if (addrHi >= ADDR_HI_LIMIT) {
      throw new VirtqueueError('GPA_UNMAPPED', `indirect table at 0x${addrHi.toString(16)}${addrLo.toString(16).padStart(8, '0')} is not mapped`);
    }
    const segs = this.segScratch;
    this.memory.gpaSegments(addrHi * 0x100000000 + addrLo, len, segs);
    if (this.indirectBytes.length < len) {
      // Grows at most a few times per queue, to the largest table seen (≤ 512 KiB).
      let cap = 4096;
      while (cap < len) cap *= 2;
      const buf = new ArrayBuffer(cap);
      this.indirectBytes = new Uint8Array(buf);
      this.indirectWords = new Uint32Array(buf);
    }
    const dst = this.indirectBytes;
    let pos = 0;
    for (let i = 0; i < segs.length; i++) {
      dst.set(segs[i], pos);
      pos += segs[i].length;
    }
    clear(segs);
    return this.indirectWords;
  }
}

/**
 * Empty an array by popping: `a.length = 0` is a runtime call that also trims the
 * backing store (several times slower for the few elements a chain has).
 */
function clear(a: Uint8Array[]): void {
  while (a.length > 0) a.pop();
}

/** Map one ring area: alignment per virtio 1.2 §2.7, then one contiguous view. */
function mapRing(memory: GuestMemory, what: string, qva: number, len: number, align: number): Uint8Array {
  if (Number.isSafeInteger(qva) && qva >= 0 && qva % align !== 0) {
    throw new VirtqueueError('RING_UNALIGNED', `${what} at 0x${qva.toString(16)} is not ${align}-byte aligned`);
  }
  const view = memory.qvaView(qva, len);
  // Typed-array views (and Atomics on them) need the host offset aligned too; mmap'd
  // regions are page-aligned, so this only fires for an odd test or front-end mapping.
  const hostAlign = align > 4 ? 4 : align;
  if (view.byteOffset % hostAlign !== 0) {
    throw new VirtqueueError('RING_UNALIGNED', `${what} is not ${hostAlign}-byte aligned in the host mapping`);
  }
  return view;
}
