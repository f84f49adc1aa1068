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
  /** Read [offset, offset+len) into the segment list (total segment bytes >= len). cb(err). */
  read(offset: number, segments: readonly Uint8Array[], len: number, cb: (err: Error | null) => void): void;
  /** fua=true: stable before cb (RWF_DSYNC or write+fdatasync). */
  write(offset: number, segments: readonly Uint8Array[], len: number, fua: boolean, cb: (err: Error | null) => void): void;
  flush(cb: (err: Error | null) => void): void;
  close(cb: (err: Error | null) => void): void;
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
}

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
