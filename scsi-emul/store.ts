// The backstore contract and the default I/O engine.
import * as fs from 'node:fs';

/**
 * A logical unit's medium. Offsets and lengths are bytes; the core only issues requests that
 * lie inside [0, sizeBytes) and are multiples of the LU block size, but every store checks
 * the range again so an off-by-one elsewhere can never reach another tenant's bytes.
 * Callbacks may run synchronously (the RAM store does); callers must allow that.
 */
export interface BlockStore {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly name: string;
  /** Bypasses the host page cache (O_DIRECT): PRE-FETCH has no cache to fill. */
  readonly direct?: boolean;
  /** Read [offset, offset+len) into the segment list (total segment bytes >= len). cb(err). */
  read(offset: number, segments: readonly Uint8Array[], len: number, cb: (err: Error | null) => void): void;
  /** fua=true: stable before cb (RWF_DSYNC or write+fdatasync). */
  write(offset: number, segments: readonly Uint8Array[], len: number, fua: boolean, cb: (err: Error | null) => void): void;
  flush(cb: (err: Error | null) => void): void;
  close(cb: (err: Error | null) => void): void;
  /**
   * Grow the medium to `sizeBytes` (a live capacity change; `sizeBytes` is the new value once
   * cb(null) runs). Never shrinks: a smaller size is EINVAL. Optional: a store without it
   * cannot be resized.
   */
  resize?(sizeBytes: number, cb: (err: Error | null) => void): void;
  /**
   * Deallocates [offset, offset+len) (SBC-3 §4.7.3.4 thin provisioning: UNMAP, WRITE SAME with
   * UNMAP, FORMAT UNIT). Afterwards the range reads as zeros (the LU reports LBPRZ=1), whether
   * the store really released the space or, lacking a way to, wrote zeros. Absent: the store
   * cannot deallocate and the LU is fully provisioned (LBPME=0).
   */
  deallocate?(offset: number, len: number, cb: (err: Error | null) => void): void;
  /**
   * Provisioning status of the run starting at `offset` (GET LBA STATUS, SBC-3 §5.7): whether
   * it is deallocated and how many bytes (1..maxLen) share that status. Synchronous (a
   * SEEK_DATA/SEEK_HOLE pair or a map lookup); throws on an I/O error. Absent: all mapped.
   */
  extentAt?(offset: number, maxLen: number): StoreExtent;
  /**
   * Bytes of the medium backed by allocated storage (a sparse file's allocated blocks, a RAM
   * store's populated chunks), for the Logical Block Provisioning log page: a getter, cheap and
   * synchronous (an fstat st_blocks for a file); may throw on an I/O error. Absent: the page is
   * not offered.
   */
  readonly allocatedBytes?: number;
}

/** One run of a store with a single provisioning status (BlockStore.extentAt). */
export interface StoreExtent {
  readonly deallocated: boolean;
  /** bytes, ≥ 1 */
  readonly length: number;
}

/**
 * Vectored file I/O, injected by the backend (its native addon moves bytes between the file
 * and guest pages off the main thread). `bytes` may be short; the store continues.
 */
export interface IoEngine {
  preadv(fd: number, iov: readonly Uint8Array[], position: number,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void;
  pwritev(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void;
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void;
  /**
   * Synchronous variants, for files whose I/O is a memory copy in the kernel (tmpfs, ramfs):
   * there a hand-off to another thread and back costs more than the I/O itself (20-60 µs of
   * wakeups against 1-2 µs, performance.md §1.3), so the store runs them inline. They return
   * the bytes moved (short only at end of file for reads) and throw an ErrnoException.
   */
  preadvSync?(fd: number, iov: readonly Uint8Array[], position: number): number;
  pwritevSync?(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean): number;
  /**
   * Deallocates [offset, offset+len) keeping the file size (fallocate PUNCH_HOLE|KEEP_SIZE);
   * the range then reads as zeros. Absent: the file store writes zeros instead.
   */
  punchHole?(fd: number, offset: number, len: number, cb: (err: NodeJS.ErrnoException | null) => void): void;
  /**
   * lseek(fd, offset, whence) with whence 3 (SEEK_DATA) or 4 (SEEK_HOLE); -1 for ENXIO (no
   * data at or after offset). Throws other errors. Absent: the whole file counts as data.
   */
  seekData?(fd: number, offset: number, whence: 3 | 4): number;
}

/** lseek(2) whence values for IoEngine.seekData (Linux ≥ 3.1). */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
/** Largest zero-filled write of the zero-writing deallocation fallback. */
export const ZERO_FILL_CHUNK = 1 << 20;

/**
 * node:fs on the libuv thread pool. Operations finish in any order (reliability.md V10.5);
 * dsync is a write followed by fdatasync because fs has no RWF_DSYNC.
 */
export const nodeFsIoEngine: IoEngine = Object.freeze({
  preadv(fd: number, iov: readonly Uint8Array[], position: number,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void {
    fs.readv(fd, iov as Uint8Array[], position, cb);
  },
  pwritev(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void {
    if (!dsync) {
      fs.writev(fd, iov as Uint8Array[], position, cb);
      return;
    }
    fs.writev(fd, iov as Uint8Array[], position, (err, bytes) => {
      if (err) {
        cb(err, bytes);
        return;
      }
      fs.fdatasync(fd, (syncErr) => cb(syncErr, bytes));
    });
  },
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
    fs.fdatasync(fd, cb);
  },
  /**
   * Node has no fallocate: write zeros instead. Honest for LBPRZ=1 (the range reads zeros),
   * though the space stays allocated. Not a hot path (UNMAP), so a closure per call is fine.
   */
  punchHole(fd: number, offset: number, len: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
    const zeros = new Uint8Array(Math.min(len, ZERO_FILL_CHUNK));
    let done = 0;
    const step = (err: NodeJS.ErrnoException | null, bytes: number): void => {
      if (err || !(bytes > 0)) {
        cb(err ?? storeError('EIO', `zero fill at ${offset + done} wrote nothing`));
        return;
      }
      done += bytes;
      if (done >= len) {
        cb(null);
        return;
      }
      fs.write(fd, zeros, 0, Math.min(zeros.byteLength, len - done), offset + done, step);
    };
    if (len <= 0) cb(null);
    else fs.write(fd, zeros, 0, Math.min(zeros.byteLength, len), offset, step);
  },
  // No seekData: Node has no SEEK_DATA, so the file store reports every block mapped.
});

/** An Error carrying an errno-style code, the form store errors take (mapped to sense by the core). */
export function storeError(code: string, message: string): NodeJS.ErrnoException {
  const err = new Error(message) as NodeJS.ErrnoException;
  err.code = code;
  return err;
}

/** Size rule shared by every store: a whole number of 512-byte sectors, at least one. */
export function checkStoreSize(sizeBytes: number, what: string): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 512 || sizeBytes % 512 !== 0) {
    throw new RangeError(`${what}: size ${sizeBytes} must be a positive multiple of 512 bytes`);
  }
}

/** The range check every store runs before touching its medium. */
export function rangeError(store: BlockStore, offset: number, len: number): NodeJS.ErrnoException | null {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(len) || offset < 0 || len < 0 ||
      offset > store.sizeBytes || len > store.sizeBytes - offset) {
    return storeError('ERANGE', `${store.name}: I/O [${offset}, +${len}) outside the store (${store.sizeBytes} bytes)`);
  }
  return null;
}

/** The checks every store's resize() runs: open, a valid size, never smaller than now. */
export function growError(name: string, closed: boolean, current: number, sizeBytes: number): NodeJS.ErrnoException | null {
  if (closed) return storeError('EBADF', `${name}: store is closed`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 512 || sizeBytes % 512 !== 0) {
    return storeError('EINVAL', `${name}: size ${sizeBytes} must be a positive multiple of 512 bytes`);
  }
  if (sizeBytes < current) {
    return storeError('EINVAL', `${name}: cannot shrink from ${current} to ${sizeBytes} bytes (shrinking a live LUN would cut off data the guest may still use)`);
  }
  return null;
}
