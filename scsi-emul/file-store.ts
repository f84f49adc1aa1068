// A store backed by a regular file or a block device, through an IoEngine.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BlockStore, IoEngine, SEEK_DATA, SEEK_HOLE, StoreExtent, ZERO_FILL_CHUNK, checkStoreSize, growError, nodeFsIoEngine,
  rangeError, storeError,
} from './store';
import { copyFromSegments, copyIntoSegmentsAt, segmentsLength, sliceSegments } from './bytes';

export interface FileStoreOptions {
  path: string;
  /** Create a sparse file of this size if the path does not exist; if it exists, must equal its size. */
  sizeBytes?: number;
  /** Open O_RDONLY (so not even a bug can write) and report the LU write protected. */
  readOnly?: boolean;
  /** O_DIRECT: bypass the host page cache. Unaligned I/Os go through an aligned bounce buffer. */
  direct?: boolean;
  engine?: IoEngine;
  name?: string;
  /**
   * Where reads and writes run. `inline`: synchronously on the calling thread through the
   * engine's preadvSync/pwritevSync; `async`: through the engine's callbacks; `auto` (the
   * default): inline for a regular file on tmpfs or ramfs opened without O_DIRECT (its I/O is a
   * memcpy that never sleeps on a device), async otherwise.
   */
  io?: FileStoreIo;
}

export type FileStoreIo = 'auto' | 'inline' | 'async';

/** statfs f_type of the file systems whose page cache is the medium (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** O_DIRECT wants sector-aligned offsets, lengths and memory. */
const DIRECT_ALIGN = 512;
/** Bounce I/Os are split into chunks of this size and run one at a time (a rare path). */
const BOUNCE_SIZE = 1 << 20;
/**
 * JS cannot see a buffer's address, so the aligned spot inside the bounce arena is learnt:
 * an EINVAL moves the arena offset by 16 bytes (V8 backing stores are at least 16-byte
 * aligned) and retries, within one page (device DMA alignment never exceeds it). A probe at
 * open time would not work: O_DIRECT reads of a hole succeed at any alignment.
 */
const ALIGN_SPAN = 4096;
const ALIGN_STEP = 16;

const EMPTY: readonly Uint8Array[] = [];
/** Source of the zero-writing deallocation fallback; only ever read. */
const ZERO_SEGMENTS: readonly Uint8Array[] = [new Uint8Array(ZERO_FILL_CHUNK)];

/** One outstanding store operation; pooled so the I/O path allocates no closures. */
class IoOp {
  write = false;
  segments: readonly Uint8Array[] = EMPTY;
  iov: readonly Uint8Array[] = EMPTY;
  position = 0;
  len = 0;
  done = 0;
  fua = false;
  cb: ((err: Error | null) => void) | null = null;
  readonly onIo: (err: NodeJS.ErrnoException | null, bytes: number) => void;

  constructor(store: FileStore) {
    this.onIo = (err, bytes) => store.ioDone(this, err, bytes);
  }
}

export class FileStore implements BlockStore {
  readonly readOnly: boolean;
  readonly name: string;
  readonly path: string;
  readonly direct: boolean;
  /** Number of I/Os that went through the O_DIRECT bounce buffer (tests, metrics). */
  bounceCount = 0;
  /** Reads and writes run synchronously on the caller's thread (FileStoreOptions.io). */
  readonly inline: boolean;
  private _fd: number;
  private readonly engine: IoEngine;
  private readonly pool: IoOp[] = [];
  private inFlight = 0;
  private closed = false;
  /** cleared when the file system says it cannot punch holes (deallocate writes zeros then) */
  private canPunch = true;
  private closeWaiters: ((err: Error | null) => void)[] = [];
  // O_DIRECT bounce state.
  private readonly arena: Uint8Array | null = null;
  private arenaOff = 0;
  /** a bounce write succeeded at arenaOff, so an EINVAL now is not about memory alignment */
  private alignKnown = false;
  private alignTries = 0;
  private readonly bounceQueue: IoOp[] = [];
  private bounceOp: IoOp | null = null;
  private bounceChunk = 0;
  private readonly onBounceIo: (err: NodeJS.ErrnoException | null, bytes: number) => void;

  private size: number;

  constructor(fd: number, sizeBytes: number, opts: FileStoreOptions, memoryBacked = false) {
    this._fd = fd;
    this.size = sizeBytes;
    this.readOnly = opts.readOnly === true;
    this.direct = opts.direct === true;
    this.path = opts.path;
    this.name = opts.name ?? opts.path;
    this.engine = opts.engine ?? nodeFsIoEngine;
    const io = opts.io ?? 'auto';
    const canInline = this.engine.preadvSync !== undefined && this.engine.pwritevSync !== undefined;
    if (io === 'inline' && !canInline) throw new TypeError(`file store ${this.name}: io=inline needs an engine with synchronous I/O`);
    this.inline = io === 'inline' || (io === 'auto' && canInline && memoryBacked && !this.direct);
    this.onBounceIo = (err, bytes) => this.bounceDone(err, bytes);
    if (this.direct) this.arena = new Uint8Array(BOUNCE_SIZE + ALIGN_SPAN);
  }

  /** The open descriptor (-1 once closed); for diagnostics and tests. */
  get fd(): number {
    return this._fd;
  }

  get sizeBytes(): number {
    return this.size;
  }

  /**
   * Grows the store. A regular file shorter than `sizeBytes` is extended with ftruncate (the new
   * range is a hole: reads return zeros, no space is used) and the new length made durable; a
   * file or block device the operator already grew to exactly `sizeBytes` is taken as it is.
   * Anything else is refused, as at open time: the configured size must equal the medium's.
   */
  resize(sizeBytes: number, cb: (err: Error | null) => void): void {
    const err = growError(this.name, this.closed, this.size, sizeBytes);
    if (err !== null || sizeBytes === this.size) {
      cb(err);
      return;
    }
    this.inFlight++;
    const finish = (e: Error | null): void => {
      if (e === null) this.size = sizeBytes;
      this.inFlight--;
      cb(e);
      this.maybeClose();
    };
    fs.fstat(this._fd, { bigint: true }, (statErr, st) => {
      if (statErr) {
        finish(statErr);
        return;
      }
      let have: number;
      try {
        have = st.isFile() ? Number(st.size) : blockDeviceSize(st.rdev, `file store ${this.path}`);
      } catch (e) {
        finish(e as Error);
        return;
      }
      if (have === sizeBytes) {
        finish(null);
        return;
      }
      const refusal = !st.isFile() ? 'grow the block device first'
        : have > sizeBytes ? 'the configured size must equal the image size'
          : this.readOnly ? 'the store is read-only' : null;
      if (refusal !== null) {
        finish(storeError('EINVAL', `${this.name}: holds ${have} bytes, cannot become ${sizeBytes} (${refusal})`));
        return;
      }
      fs.ftruncate(this._fd, sizeBytes, (truncErr) => {
        if (truncErr) {
          finish(truncErr);
          return;
        }
        // fdatasync(2) writes the metadata needed to read the data back, the new length included.
        this.engine.fdatasync(this._fd, (syncErr) => finish(syncErr));
      });
    });
  }

  read(offset: number, segments: readonly Uint8Array[], len: number, cb: (err: Error | null) => void): void {
    this.start(false, offset, segments, len, false, cb);
  }

  write(offset: number, segments: readonly Uint8Array[], len: number, fua: boolean, cb: (err: Error | null) => void): void {
    if (this.readOnly && !this.closed) {
      cb(storeError('EROFS', `${this.name}: store is read-only`));
      return;
    }
    this.start(true, offset, segments, len, fua, cb);
  }

  /**
   * fallocate(PUNCH_HOLE|KEEP_SIZE) through the engine: the range becomes a hole that reads
   * as zeros and costs no space. A file system (or engine) that cannot punch gets zeros
   * written instead, from then on, so the LBPRZ=1 promise holds either way.
   */
  deallocate(offset: number, len: number, cb: (err: Error | null) => void): void {
    const err = this.closed ? storeError('EBADF', `${this.name}: store is closed`)
      : this.readOnly ? storeError('EROFS', `${this.name}: store is read-only`)
        : rangeError(this, offset, len);
    if (err !== null || len === 0) {
      cb(err);
      return;
    }
    const engine = this.engine;
    if (engine.punchHole === undefined || !this.canPunch) {
      this.zeroFill(offset, len, cb);
      return;
    }
    this.inFlight++;
    engine.punchHole(this._fd, offset, len, (punchErr) => {
      this.inFlight--;
      const code = punchErr?.code;
      // EINVAL: an O_DIRECT descriptor given to an engine whose "punch" writes unaligned zeros.
      if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOSYS' || (code === 'EINVAL' && this.direct)) {
        this.canPunch = false;
        this.zeroFill(offset, len, cb);
      } else {
        cb(punchErr);
      }
      this.maybeClose();
    });
  }

  /** Writes zeros over the range in ZERO_FILL_CHUNK pieces through the normal write path. */
  private zeroFill(offset: number, len: number, cb: (err: Error | null) => void): void {
    let done = 0;
    const next = (err: Error | null): void => {
      if (err !== null || done >= len) {
        cb(err);
        return;
      }
      const n = Math.min(ZERO_FILL_CHUNK, len - done);
      const pos = offset + done;
      done += n;
      this.start(true, pos, ZERO_SEGMENTS, n, false, next);
    };
    next(null);
  }

  /**
   * SEEK_DATA / SEEK_HOLE through the engine (sizes of runs are whatever the file system
   * reports, usually its block size). Without seekData, or where lseek cannot tell (block
   * devices answer EINVAL on some kernels), everything counts as mapped.
   */
  extentAt(offset: number, maxLen: number): StoreExtent {
    const end = Math.min(this.size, offset + maxLen);
    const seek = this.engine.seekData;
    if (seek === undefined || this._fd < 0 || offset >= end) return { deallocated: false, length: Math.max(1, end - offset) };
    let data: number;
    try {
      data = seek.call(this.engine, this._fd, offset, SEEK_DATA);
      if (data === offset) {
        const hole = seek.call(this.engine, this._fd, offset, SEEK_HOLE);
        return { deallocated: false, length: (hole < 0 || hole > end ? end : hole) - offset };
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EINVAL') return { deallocated: false, length: end - offset };
      throw e;
    }
    // No data before `end` (ENXIO = none up to EOF): a hole.
    return { deallocated: true, length: (data < 0 || data > end ? end : data) - offset };
  }

  flush(cb: (err: Error | null) => void): void {
    if (this.closed) {
      cb(storeError('EBADF', `${this.name}: store is closed`));
      return;
    }
    if (this.readOnly) {
      cb(null); // nothing can be dirty on an O_RDONLY descriptor
      return;
    }
    this.inFlight++;
    this.engine.fdatasync(this._fd, (err) => {
      this.inFlight--;
      cb(err);
      this.maybeClose();
    });
  }

  close(cb: (err: Error | null) => void): void {
    if (this._fd < 0) {
      cb(null);
      return;
    }
    this.closed = true;
    this.closeWaiters.push(cb);
    this.maybeClose();
  }

  private start(write: boolean, offset: number, segments: readonly Uint8Array[], len: number, fua: boolean,
    cb: (err: Error | null) => void): void {
    if (this.closed) {
      cb(storeError('EBADF', `${this.name}: store is closed`));
      return;
    }
    const r = rangeError(this, offset, len);
    if (r) {
      cb(r);
      return;
    }
    if (segmentsLength(segments) < len) {
      cb(storeError('EINVAL', `${this.name}: segment list shorter than ${len} bytes`));
      return;
    }
    if (len === 0) {
      cb(null);
      return;
    }
    const op = this.pool.pop() ?? new IoOp(this);
    op.write = write;
    op.segments = segments;
    op.position = offset;
    op.len = len;
    op.done = 0;
    op.fua = fua;
    op.cb = cb;
    this.inFlight++;
    if (this.direct && !directAligned(segments, offset, len)) {
      this.startBounce(op);
      return;
    }
    this.submit(op);
  }

  private submit(op: IoOp): void {
    op.iov = sliceSegments(op.segments, op.done, op.len - op.done);
    const pos = op.position + op.done;
    if (this.inline) {
      let bytes = 0;
      let err: NodeJS.ErrnoException | null = null;
      try {
        bytes = op.write ? this.engine.pwritevSync!(this._fd, op.iov, pos, op.fua) : this.engine.preadvSync!(this._fd, op.iov, pos);
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      }
      this.ioDone(op, err, bytes);
      return;
    }
    if (op.write) this.engine.pwritev(this._fd, op.iov, pos, op.fua, op.onIo);
    else this.engine.preadv(this._fd, op.iov, pos, op.onIo);
  }

  /** @internal engine completion for the direct (non-bounce) path */
  ioDone(op: IoOp, err: NodeJS.ErrnoException | null, bytes: number): void {
    if (err) {
      // O_DIRECT rejects memory it cannot DMA into before doing any I/O; we cannot see a JS
      // buffer's address, so misaligned memory shows up here and takes the bounce path.
      if (err.code === 'EINVAL' && this.direct && op.done === 0) {
        this.startBounce(op);
        return;
      }
      this.finish(op, err);
      return;
    }
    if (!(bytes > 0)) {
      // The file shrank under us (or a zero-length write): never spin, report an I/O error.
      this.finish(op, storeError('EIO', `${this.name}: ${op.write ? 'write' : 'read'} at ${op.position + op.done} returned 0 bytes`));
      return;
    }
    op.done += bytes;
    if (op.done < op.len) {
      this.submit(op); // short transfer (e.g. more than IOV_MAX segments): continue
      return;
    }
    this.finish(op, null);
  }

  private finish(op: IoOp, err: Error | null): void {
    const cb = op.cb!;
    op.cb = null;
    op.segments = EMPTY;
    op.iov = EMPTY;
    this.pool.push(op);
    this.inFlight--;
    cb(err);
    this.maybeClose();
  }

  private startBounce(op: IoOp): void {
    this.bounceCount++;
    op.done = 0;
    this.bounceQueue.push(op);
    if (this.bounceOp === null) this.pumpBounce();
  }

  private pumpBounce(): void {
    const op = this.bounceQueue.shift();
    if (op === undefined) {
      this.bounceOp = null;
      return;
    }
    this.bounceOp = op;
    this.bounceStep(op);
  }

  private bounceStep(op: IoOp): void {
    const arena = this.arena!;
    const chunk = Math.min(BOUNCE_SIZE, op.len - op.done);
    this.bounceChunk = chunk;
    const view = arena.subarray(this.arenaOff, this.arenaOff + chunk);
    if (op.write) {
      copyFromSegments(op.segments, op.done, view, 0, chunk);
      this.engine.pwritev(this._fd, [view], op.position + op.done, op.fua, this.onBounceIo);
    } else {
      this.engine.preadv(this._fd, [view], op.position + op.done, this.onBounceIo);
    }
  }

  private bounceDone(err: NodeJS.ErrnoException | null, bytes: number): void {
    const op = this.bounceOp!;
    if (err && err.code === 'EINVAL' && !this.alignKnown && this.alignTries < ALIGN_SPAN / ALIGN_STEP) {
      this.alignTries++;
      this.arenaOff = (this.arenaOff + ALIGN_STEP) % ALIGN_SPAN;
      this.bounceStep(op); // same chunk, next candidate alignment
      return;
    }
    if (!err && op.write) this.alignKnown = true;
    if (!err && (!(bytes > 0) || bytes % DIRECT_ALIGN !== 0)) {
      err = storeError('EIO', `${this.name}: direct ${op.write ? 'write' : 'read'} at ${op.position + op.done} transferred ${bytes} bytes`);
    }
    if (!err) {
      if (!op.write) copyIntoSegmentsAt(this.arena!, this.arenaOff, bytes, op.segments, op.done);
      op.done += Math.min(bytes, this.bounceChunk);
      if (op.done < op.len) {
        this.bounceStep(op);
        return;
      }
    }
    this.finish(op, err);
    this.pumpBounce();
  }

  private maybeClose(): void {
    if (!this.closed || this.inFlight > 0 || this._fd < 0 || this.closeWaiters.length === 0) return;
    const fd = this._fd;
    this._fd = -1;
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    fs.close(fd, (err) => {
      for (const w of waiters) w(err);
    });
  }
}

function directAligned(segments: readonly Uint8Array[], offset: number, len: number): boolean {
  if (offset % DIRECT_ALIGN !== 0 || len % DIRECT_ALIGN !== 0) return false;
  let remaining = len;
  for (let i = 0; i < segments.length && remaining > 0; i++) {
    const s = segments[i];
    const n = Math.min(s.byteLength, remaining);
    if (s.byteOffset % DIRECT_ALIGN !== 0 || n % DIRECT_ALIGN !== 0) return false;
    remaining -= n;
  }
  return true;
}

/** Size of a block device from sysfs (Node has no BLKGETSIZE64). */
function blockDeviceSize(rdev: bigint, where: string): number {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  let text: string;
  try {
    text = fs.readFileSync(sysfs, 'utf8');
  } catch (e) {
    throw new Error(`${where}: cannot read the block device size from ${sysfs}: ${(e as Error).message}`);
  }
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors <= 0) {
    throw new Error(`${where}: ${sysfs} holds no usable size (${JSON.stringify(text.trim())})`);
  }
  return sectors * 512;
}

function createSparse(file: string, sizeBytes: number): void {
  const c = fs.constants;
  const fd = fs.openSync(file, c.O_RDWR | c.O_CREAT | c.O_EXCL, 0o600);
  try {
    fs.ftruncateSync(fd, sizeBytes);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  // A new file's directory entry is durable only after the directory is synced (fsync(2)).
  const dirFd = fs.openSync(path.dirname(file), c.O_RDONLY | c.O_DIRECTORY);
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

export function createFileStore(opts: FileStoreOptions): BlockStore {
  return openFileStore(opts);
}

/** Same as createFileStore, typed as the concrete class (tests, metrics). */
export function openFileStore(opts: FileStoreOptions): FileStore {
  const file = opts.path;
  if (typeof file !== 'string' || file.length === 0) throw new TypeError('file store: path must be a non-empty string');
  const where = `file store ${file}`;
  if (opts.sizeBytes !== undefined) checkStoreSize(opts.sizeBytes, where);
  const c = fs.constants;

  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st === undefined) {
    if (opts.sizeBytes === undefined) throw new Error(`${where}: does not exist (give a size to create it)`);
    if (opts.readOnly) throw new Error(`${where}: does not exist, and a read-only store cannot create it`);
    createSparse(file, opts.sizeBytes);
  } else if (!st.isFile() && !st.isBlockDevice()) {
    // Checked before open: opening a FIFO would block the event loop.
    throw new Error(`${where}: not a regular file or block device`);
  }

  const flags = (opts.readOnly ? c.O_RDONLY : c.O_RDWR) | (opts.direct ? c.O_DIRECT : 0);
  let fd: number;
  try {
    fd = fs.openSync(file, flags);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EINVAL' && opts.direct) {
      throw storeError('EINVAL', `${where}: the file system does not support O_DIRECT`);
    }
    throw err;
  }
  try {
    const fst = fs.fstatSync(fd, { bigint: true });
    let size: number;
    if (fst.isFile()) size = Number(fst.size);
    else if (fst.isBlockDevice()) size = blockDeviceSize(fst.rdev, where);
    else throw new Error(`${where}: not a regular file or block device`);
    if (opts.sizeBytes !== undefined && opts.sizeBytes !== size) {
      throw new Error(`${where}: size is ${size} bytes, not the ${opts.sizeBytes} configured`);
    }
    checkStoreSize(size, where);
    let memoryBacked = false;
    if (fst.isFile()) {
      // devtmpfs shares tmpfs's magic, hence the regular-file check.
      const type = fs.statfsSync(file).type;
      memoryBacked = type === TMPFS_MAGIC || type === RAMFS_MAGIC;
    }
    return new FileStore(fd, size, opts, memoryBacked);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}
