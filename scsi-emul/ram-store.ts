// A memory-backed store: 1 MiB chunks allocated on first write, so a large LUN costs nothing
// until used; reads of never-written chunks return zeros. One copy per I/O.
import { BlockStore, StoreExtent, checkStoreSize, growError, rangeError, storeError } from './store';
import { segmentsLength } from './bytes';

export const RAM_CHUNK_SIZE = 1 << 20;

/**
 * Copies `length` bytes from src[srcOffset..] to dst[dstOffset..]; the ranges are inside the
 * views. The backend injects the addon's memcpy, which needs no subarray per copy (no JS
 * allocation per I/O) and counts the bytes.
 */
export type ByteCopier = (dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number) => void;

/** Plain JS: a subarray view unless the whole source is copied. */
export const jsByteCopier: ByteCopier = (dst, dstOffset, src, srcOffset, length) => {
  if (srcOffset === 0 && length === src.length) dst.set(src, dstOffset);
  else dst.set(src.subarray(srcOffset, srcOffset + length), dstOffset);
};

export class RamStore implements BlockStore {
  readonly readOnly = false;
  readonly name: string;
  private readonly chunks = new Map<number, Uint8Array>();
  private closed = false;
  private size: number;
  private readonly copy: ByteCopier;

  constructor(sizeBytes: number, name: string, copy: ByteCopier = jsByteCopier) {
    checkStoreSize(sizeBytes, `ram store ${name}`);
    this.size = sizeBytes;
    this.name = name;
    this.copy = copy;
  }

  get sizeBytes(): number {
    return this.size;
  }

  /** Grows the store; costs nothing until the new range is written (chunks are lazy). */
  resize(sizeBytes: number, cb: (err: Error | null) => void): void {
    const err = growError(this.name, this.closed, this.size, sizeBytes);
    if (err === null) this.size = sizeBytes;
    cb(err);
  }

  /** Bytes of chunk memory allocated so far (tests and metrics). */
  get allocatedBytes(): number {
    return this.chunks.size * RAM_CHUNK_SIZE;
  }

  read(offset: number, segments: readonly Uint8Array[], len: number, cb: (err: Error | null) => void): void {
    const err = this.check(offset, segments, len);
    if (err) {
      cb(err);
      return;
    }
    this.transfer(offset, segments, len, false);
    cb(null);
  }

  write(offset: number, segments: readonly Uint8Array[], len: number, _fua: boolean,
    cb: (err: Error | null) => void): void {
    const err = this.check(offset, segments, len);
    if (err) {
      cb(err);
      return;
    }
    // Memory has no volatile cache separate from the medium, so FUA needs nothing extra.
    this.transfer(offset, segments, len, true);
    cb(null);
  }

  /**
   * Whole chunks in the range are dropped (their memory is released); the ends of the range
   * inside a chunk are zeroed, so the range reads as zeros either way (LBPRZ=1).
   */
  deallocate(offset: number, len: number, cb: (err: Error | null) => void): void {
    const err = this.closed ? storeError('EBADF', `${this.name}: store is closed`) : rangeError(this, offset, len);
    if (err) {
      cb(err);
      return;
    }
    let pos = offset;
    const end = offset + len;
    while (pos < end) {
      const chunkIdx = Math.floor(pos / RAM_CHUNK_SIZE);
      const chunkStart = chunkIdx * RAM_CHUNK_SIZE;
      const n = Math.min(end, chunkStart + RAM_CHUNK_SIZE) - pos;
      const chunk = this.chunks.get(chunkIdx);
      if (chunk !== undefined) {
        if (n === RAM_CHUNK_SIZE) this.chunks.delete(chunkIdx);
        else chunk.fill(0, pos - chunkStart, pos - chunkStart + n);
      }
      pos += n;
    }
    cb(null);
  }

  /** Runs of allocated (mapped) and absent (deallocated) chunks, clipped to maxLen. */
  extentAt(offset: number, maxLen: number): StoreExtent {
    const end = Math.min(this.size, offset + maxLen);
    let idx = Math.floor(offset / RAM_CHUNK_SIZE);
    const deallocated = !this.chunks.has(idx);
    let pos = (idx + 1) * RAM_CHUNK_SIZE;
    while (pos < end && this.chunks.has(++idx) !== deallocated) pos += RAM_CHUNK_SIZE;
    return { deallocated, length: Math.max(1, Math.min(pos, end) - offset) };
  }

  flush(cb: (err: Error | null) => void): void {
    cb(this.closed ? storeError('EBADF', `${this.name}: store is closed`) : null);
  }

  close(cb: (err: Error | null) => void): void {
    this.closed = true;
    this.chunks.clear();
    cb(null);
  }

  private check(offset: number, segments: readonly Uint8Array[], len: number): Error | null {
    if (this.closed) return storeError('EBADF', `${this.name}: store is closed`);
    const r = rangeError(this, offset, len);
    if (r) return r;
    if (segmentsLength(segments) < len) {
      return storeError('EINVAL', `${this.name}: segment list shorter than ${len} bytes`);
    }
    return null;
  }

  /** Walks the chunk and segment cursors together; each byte is copied exactly once. */
  private transfer(offset: number, segments: readonly Uint8Array[], len: number, toStore: boolean): void {
    let pos = offset;
    let remaining = len;
    let segIdx = 0;
    let segOff = 0;
    while (remaining > 0) {
      const seg = segments[segIdx];
      const segAvail = seg.byteLength - segOff;
      if (segAvail === 0) {
        segIdx++;
        segOff = 0;
        continue;
      }
      const chunkIdx = Math.floor(pos / RAM_CHUNK_SIZE);
      const chunkOff = pos - chunkIdx * RAM_CHUNK_SIZE;
      const n = Math.min(remaining, segAvail, RAM_CHUNK_SIZE - chunkOff);
      let chunk = this.chunks.get(chunkIdx);
      if (toStore) {
        if (chunk === undefined) {
          chunk = new Uint8Array(RAM_CHUNK_SIZE); // zero-filled
          this.chunks.set(chunkIdx, chunk);
        }
        this.copy(chunk, chunkOff, seg, segOff, n);
      } else if (chunk === undefined) {
        seg.fill(0, segOff, segOff + n);
      } else {
        this.copy(seg, segOff, chunk, chunkOff, n);
      }
      pos += n;
      segOff += n;
      remaining -= n;
    }
  }
}

export function createRamStore(opts: { sizeBytes: number; name?: string; copy?: ByteCopier }): BlockStore {
  return new RamStore(opts.sizeBytes, opts.name ?? 'ram', opts.copy);
}
