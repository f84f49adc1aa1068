// Big-endian field access and scatter-gather helpers. scsi-emul cannot use virtqueue's
// helpers (it imports nothing else of ours), so it has its own small set.

export function be16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

export function be24(b: Uint8Array, off: number): number {
  return (b[off] << 16) | (b[off + 1] << 8) | b[off + 2];
}

export function be32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

export function putBe16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

export function putBe32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

/** Writes a non-negative integer ≤ 2^53-1 as a big-endian u64. */
export function putBe64(b: Uint8Array, off: number, v: number): void {
  const hi = Math.floor(v / 0x1_0000_0000);
  putBe32(b, off, hi >>> 0);
  putBe32(b, off + 4, (v - hi * 0x1_0000_0000) >>> 0);
}

/**
 * Reads a big-endian u64 CDB field without BigInt. Returns the exact value when it is below
 * 2^53, otherwise -1 (a value no logical unit here can address: capacities are byte counts
 * that fit a JS number, so any LBA ≥ 2^53 is out of range). Keeps the hot path free of
 * BigInt allocations while staying exact.
 */
export function be64Safe(b: Uint8Array, off: number): number {
  const hi = be32(b, off);
  if (hi > 0x1f_ffff) return -1;
  return hi * 0x1_0000_0000 + be32(b, off + 4);
}

export function segmentsLength(segs: readonly Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < segs.length; i++) n += segs[i].byteLength;
  return n;
}

/**
 * Copies `len` bytes of `src` (from `srcOff`) into the segment list starting at its byte 0,
 * never past `limit` bytes of the list. Returns the number of bytes copied.
 */
export function copyToSegments(src: Uint8Array, srcOff: number, len: number,
  segs: readonly Uint8Array[], limit: number): number {
  let remaining = Math.min(len, limit);
  let copied = 0;
  for (let i = 0; i < segs.length && remaining > 0; i++) {
    const seg = segs[i];
    const n = Math.min(seg.byteLength, remaining);
    if (n === 0) continue;
    seg.set(src.subarray(srcOff + copied, srcOff + copied + n), 0);
    copied += n;
    remaining -= n;
  }
  return copied;
}

/**
 * Copies `len` bytes of `src` (from `srcOff`) into the segment list starting `skip` bytes into
 * the list. Returns the number of bytes copied (less than len only when the list is shorter).
 */
export function copyIntoSegmentsAt(src: Uint8Array, srcOff: number, len: number,
  segs: readonly Uint8Array[], skip: number): number {
  let copied = 0;
  for (let i = 0; i < segs.length && copied < len; i++) {
    const seg = segs[i];
    if (skip >= seg.byteLength) {
      skip -= seg.byteLength;
      continue;
    }
    const n = Math.min(seg.byteLength - skip, len - copied);
    seg.set(src.subarray(srcOff + copied, srcOff + copied + n), skip);
    copied += n;
    skip = 0;
  }
  return copied;
}

/**
 * Copies `len` bytes of the segment list, starting `skip` bytes in, to `dst` at `dstOff`.
 * Returns the number of bytes copied (less than len only when the list is shorter).
 */
export function copyFromSegments(segs: readonly Uint8Array[], skip: number,
  dst: Uint8Array, dstOff: number, len: number): number {
  let copied = 0;
  for (let i = 0; i < segs.length && copied < len; i++) {
    const seg = segs[i];
    if (skip >= seg.byteLength) {
      skip -= seg.byteLength;
      continue;
    }
    const n = Math.min(seg.byteLength - skip, len - copied);
    dst.set(seg.subarray(skip, skip + n), dstOff + copied);
    copied += n;
    skip = 0;
  }
  return copied;
}

/**
 * Views of exactly `len` bytes of the segment list starting `skip` bytes in (fewer if the list
 * is shorter). Returns `segs` itself when it already is exactly that range, so the common
 * case allocates nothing.
 */
export function sliceSegments(segs: readonly Uint8Array[], skip: number, len: number): readonly Uint8Array[] {
  if (skip === 0 && segmentsLength(segs) === len) return segs;
  const out: Uint8Array[] = [];
  let remaining = len;
  for (let i = 0; i < segs.length && remaining > 0; i++) {
    const seg = segs[i];
    if (skip >= seg.byteLength) {
      skip -= seg.byteLength;
      continue;
    }
    const n = Math.min(seg.byteLength - skip, remaining);
    out.push(seg.subarray(skip, skip + n));
    remaining -= n;
    skip = 0;
  }
  return out;
}
