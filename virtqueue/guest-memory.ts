// Guest memory: the regions the front-end shared (vhost-user SET_MEM_TABLE), and the
// only translator from guest addresses to views (reliability.md V3, §5.5).
//
// Two address spaces, two functions (V3.5):
//   - GPA (guest-physical): what descriptors and indirect tables contain.
//   - QVA (front-end user address): what SET_VRING_ADDR carries for the three ring
//     areas (vhost-user spec "A vring address description": "a ring address is an
//     IOVA if VIRTIO_F_IOMMU_PLATFORM has been negotiated. Otherwise it is a user
//     address"). We do not offer ACCESS_PLATFORM, so it is always a user address.
// Every translation checks the whole range [addr, addr+len), never only its start
// (DPDK CVE-2018-1059, D5), and every view it returns lies inside one region and has
// exactly the requested length (vm-memory CVE-2023-41051, D20; QEMU fuzz D21).

import { VirtqueueError } from './errors';

export interface GuestRegion {
  guestPhysAddr: number;
  userAddr: number;
  size: number;
  /** The mapping; bytes.length === size. */
  bytes: Uint8Array;
}

/** 2^53: addresses are Numbers, exact below this. Regions must end at or below it. */
const ADDR_LIMIT = 2 ** 53;

const EMPTY = new Uint8Array(0);

/**
 * Views of recently translated descriptors, reused while the memory table stands. Guests
 * keep their request headers, responses and (with O_DIRECT) data buffers at fixed places
 * (Linux's virtio_scsi_cmd lives in the blk-mq request, preallocated per tag), so a small
 * direct-mapped cache removes the per-descriptor view allocation of the data path and
 * with it most young-generation GCs. A view is an immutable window, so sharing one between
 * requests is safe; a miss only costs the allocation it replaces.
 */
const VIEW_CACHE_BITS = 12;
const VIEW_CACHE_SIZE = 1 << VIEW_CACHE_BITS;

function isAddr(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** One sorted index over one address space (GPA or QVA). */
class RegionIndex {
  readonly starts: number[] = [];
  readonly ends: number[] = [];
  // Views are built with new Uint8Array(buffer, offset, len): about twice as fast as
  // subarray(), which goes through the species constructor (measured on Node 20).
  readonly buffers: ArrayBufferLike[] = [];
  readonly offsets: number[] = [];

  constructor(regions: readonly GuestRegion[], key: 'guestPhysAddr' | 'userAddr', space: string) {
    const sorted = regions.slice().sort((a, b) => a[key] - b[key]);
    for (const r of sorted) {
      const start = r[key];
      const end = start + r.size; // exact: both validated, sum <= 2^53
      const n = this.starts.length;
      if (n > 0 && start < this.ends[n - 1]) {
        throw new VirtqueueError(
          'OVERLAPPING_REGIONS',
          `regions [0x${this.starts[n - 1].toString(16)}, 0x${this.ends[n - 1].toString(16)}) and ` +
            `[0x${start.toString(16)}, 0x${end.toString(16)}) overlap in ${space} space`,
        );
      }
      this.starts.push(start);
      this.ends.push(end);
      this.buffers.push(r.bytes.buffer);
      this.offsets.push(r.bytes.byteOffset);
    }
  }

  /** Index of the region containing addr, or -1. addr is a safe non-negative integer. */
  find(addr: number): number {
    const starts = this.starts;
    let lo = 0;
    let hi = starts.length - 1;
    // Last region with start <= addr.
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid] <= addr) lo = mid + 1;
      else hi = mid - 1;
    }
    if (hi < 0 || addr >= this.ends[hi]) return -1;
    return hi;
  }

  /** A view of [addr, addr+len) inside one region, or null. len > 0. */
  view(addr: number, len: number): Uint8Array | null {
    const i = this.find(addr);
    if (i < 0) return null;
    // Compare lengths, not end addresses: addr+len may exceed 2^53 and round.
    if (len > this.ends[i] - addr) return null;
    return new Uint8Array(this.buffers[i], this.offsets[i] + (addr - this.starts[i]), len);
  }
}

export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  private readonly gpa: RegionIndex;
  private readonly qva: RegionIndex;
  private readonly cacheAddr = new Float64Array(VIEW_CACHE_SIZE).fill(-1);
  private readonly cacheLen = new Float64Array(VIEW_CACHE_SIZE);
  private readonly cacheView: Uint8Array[] = new Array<Uint8Array>(VIEW_CACHE_SIZE).fill(EMPTY);
  /** Translations answered from the view cache, and those that built a view (benchmarks). */
  readonly viewStats = { hits: 0, misses: 0 };

  /**
   * Validates every region (V3.2: size != 0, addr + size within the Number-exact range,
   * the mapping as long as the region) and rejects overlaps in either address space
   * (V3.3) so that every lookup has exactly one answer.
   */
  constructor(regions: readonly GuestRegion[]) {
    regions.forEach((r, i) => {
      // guest-controlled (via the front-end): validated here.
      if (!isAddr(r.size) || r.size === 0) {
        throw new VirtqueueError('BAD_REGION', `region ${i}: size ${r.size} is not a positive integer`);
      }
      if (!isAddr(r.guestPhysAddr) || r.size > ADDR_LIMIT - r.guestPhysAddr) {
        throw new VirtqueueError('BAD_REGION', `region ${i}: guest physical range does not fit below 2^53`);
      }
      if (!isAddr(r.userAddr) || r.size > ADDR_LIMIT - r.userAddr) {
        throw new VirtqueueError('BAD_REGION', `region ${i}: user address range does not fit below 2^53`);
      }
      if (!(r.bytes instanceof Uint8Array) || r.bytes.length !== r.size) {
        throw new VirtqueueError('BAD_REGION', `region ${i}: mapping length ${r.bytes?.length} != size ${r.size}`);
      }
    });
    this.regions = Object.freeze(regions.map((r) => Object.freeze({ ...r })));
    this.gpa = new RegionIndex(this.regions, 'guestPhysAddr', 'guest physical');
    this.qva = new RegionIndex(this.regions, 'userAddr', 'user address');
  }

  /**
   * Push views covering [gpa, gpa+len) onto out, split at region boundaries (a range may
   * span adjacent regions; libvhost-user 293084a719). len 0 pushes nothing and touches
   * nothing (D6). Throws GPA_UNMAPPED if any byte is outside every region; out is then
   * left as it was.
   */
  gpaSegments(gpa: number, len: number, out: Uint8Array[]): void {
    if (len === 0) return;
    if (!isAddr(gpa) || !isAddr(len)) throw unmappedGpa(gpa, len);
    // Fibonacci hashing of the address's low 32 bits (ToUint32) and the length: buffers are often
    // page aligned, so the low bits alone would crowd a few slots. The full compare decides.
    const slot = Math.imul((gpa >>> 0) ^ Math.imul(len, 0x85ebca6b), 0x9e3779b1) >>> (32 - VIEW_CACHE_BITS);
    if (this.cacheAddr[slot] === gpa && this.cacheLen[slot] === len) {
      this.viewStats.hits++;
      out.push(this.cacheView[slot]);
      return;
    }
    this.viewStats.misses++;
    const index = this.gpa;
    const mark = out.length;
    let cur = gpa;
    let left = len;
    while (left > 0) {
      const i = index.find(cur);
      if (i < 0) {
        out.length = mark;
        throw unmappedGpa(gpa, len);
      }
      const avail = index.ends[i] - cur;
      const n = left < avail ? left : avail;
      const view = new Uint8Array(index.buffers[i], index.offsets[i] + (cur - index.starts[i]), n);
      out.push(view);
      if (n === len) {
        // Only whole, single-region translations are cached: a hit then pushes exactly one view.
        this.cacheAddr[slot] = gpa;
        this.cacheLen[slot] = len;
        this.cacheView[slot] = view;
      }
      cur += n; // <= region end <= 2^53: exact
      left -= n;
    }
  }

  /** One contiguous view of [gpa, gpa+len) inside one region, or throws GPA_UNMAPPED. */
  gpaView(gpa: number, len: number): Uint8Array {
    if (!isAddr(gpa) || !isAddr(len)) throw unmappedGpa(gpa, len);
    if (len === 0) return EMPTY;
    const v = this.gpa.view(gpa, len);
    if (v === null) throw unmappedGpa(gpa, len);
    return v;
  }

  /**
   * One contiguous view of [qva, qva+len) in the front-end's user address space (ring
   * addresses from SET_VRING_ADDR), or throws QVA_UNMAPPED.
   */
  qvaView(qva: number, len: number): Uint8Array {
    const bad = () =>
      new VirtqueueError('QVA_UNMAPPED', `front-end address range 0x${qva.toString(16)}+${len} is not inside one region`);
    if (!isAddr(qva) || !isAddr(len)) throw bad();
    if (len === 0) return EMPTY;
    const v = this.qva.view(qva, len);
    if (v === null) throw bad();
    return v;
  }
}

function unmappedGpa(gpa: number, len: number): VirtqueueError {
  return new VirtqueueError(
    'GPA_UNMAPPED',
    `guest physical range 0x${typeof gpa === 'number' ? gpa.toString(16) : String(gpa)}+${len} is not mapped`,
  );
}
