// The target core's IoEngine on the addon's own io_uring (backend/native/uring.cc): vectored I/O
// straight between the backing file and guest memory, queued per virtqueue drain and submitted
// with one io_uring_enter per batch, completions in batches, never the libuv thread pool.

import * as os from 'node:os';
import * as util from 'node:util';
import type { IoEngine } from '../scsi-emul';
import type { Binding, Uring } from './binding';
import { nativeIoEngine } from './io-engine';
import { native } from './native';

type IoCallback = (err: NodeJS.ErrnoException | null, bytes: number) => void;
type SyncCallback = (err: NodeJS.ErrnoException | null) => void;

const OP_READ = 0;
const OP_WRITE = 1;
const OP_WRITE_DSYNC = 2;
const OP_SYNC = 3;
/** What the thread-pool engine names the same failures (backend/native/io.cc). */
const SYSCALL = ['preadv', 'pwritev', 'pwritev2', 'fdatasync'] as const;
const RWF_DSYNC = 1;

const { EAGAIN, ECANCELED, EOPNOTSUPP } = os.constants.errno;

const DEFAULT_ENTRIES = 256;
const INITIAL_SLOTS = 64;
const EMPTY: readonly Uint8Array[] = [];

export interface UringIoEngineOptions {
  /** SQ size (1..32768, rounded up to a power of two); up to twice as many requests run at once. Default 256. */
  entries?: number;
  /** IORING_SETUP_SQPOLL (see UringOptions in binding.d.ts). Default off. */
  sqpoll?: boolean;
}

export type UringIoEngineResult =
  | { engine: UringIoEngine; reason: null }
  | { engine: null; reason: string };

export interface UringIoEngineStats {
  /** preadv/pwritev/fdatasync calls */
  requests: number;
  /** io_uring_enter submissions (Uring.submit calls) */
  submits: number;
  /** completion batches (eventfd wake-ups that delivered something) */
  wakeups: number;
  /** requests re-run on the thread-pool engine (-EAGAIN, or RWF_DSYNC unsupported) */
  fallbacks: number;
  /** requests that waited in the engine for ring capacity */
  backlogged: number;
}

/**
 * An IoEngine on an io_uring owned by the addon, for files whose I/O may sleep (a disk, O_DIRECT,
 * a network file system): requests are queued into the ring and reach the kernel together,
 * through one io_uring_enter, when `flush()` is called (the backend calls it after each
 * virtqueue drain) or, failing that, from one setImmediate armed by the first request of a batch.
 * Completions come back in batches, one JS call per eventfd wake-up, and anything queued from
 * their callbacks is submitted at the end of the batch.
 *
 * No allocation per request: the callback and arguments go into a slot table (grown by doubling
 * when full), the slot number is the ring's `slot`. Beyond the ring's capacity requests wait in
 * a FIFO inside the engine until completions make room.
 *
 * Results: `bytes` may be short (the store continues, as with any IoEngine). Errors are
 * ErrnoExceptions shaped like the thread-pool engine's (code, errno < 0, syscall 'preadv',
 * 'pwritev', 'pwritev2' (dsync) or 'fdatasync'). A request the kernel answers with -EAGAIN
 * (not expected: the kernel retries blocking requests itself) or, for a dsync write,
 * -EOPNOTSUPP (no RWF_DSYNC in that file system) is re-run once on the thread-pool engine, which
 * blocks, or writes and then calls fdatasync; `stats.fallbacks` counts them.
 *
 * Fallback: `UringIoEngine.create()` returns `{ engine: null, reason }` when the kernel refuses
 * io_uring (ENOSYS: built without it; EPERM: kernel.io_uring_disabled=2, or =1 without the
 * io_uring_group, or a container's seccomp filter; ENOMEM: RLIMIT_MEMLOCK on Linux < 5.12); the
 * caller then keeps the thread-pool engine (`nativeIoEngine`).
 *
 * punchHole and seekData are the thread-pool engine's (metadata operations, synchronous in the
 * addon), as are the synchronous preadvSync/pwritevSync for stores that run inline.
 */
export class UringIoEngine implements IoEngine {
  readonly stats: UringIoEngineStats = { requests: 0, submits: 0, wakeups: 0, fallbacks: 0, backlogged: 0 };

  private readonly ring: Uring;
  private closed = false;
  // The slot table, indexed by slot.
  private cbs: (IoCallback | SyncCallback | null)[] = [];
  private ops = new Uint8Array(INITIAL_SLOTS);
  private fds = new Int32Array(INITIAL_SLOTS);
  private positions = new Float64Array(INITIAL_SLOTS);
  private iovs: (readonly Uint8Array[])[] = [];
  private free = new Uint32Array(INITIAL_SLOTS);
  private freeCount = 0;
  // Slots waiting for ring capacity, a FIFO in a circular buffer as large as the table.
  private backlog = new Uint32Array(INITIAL_SLOTS);
  private backlogHead = 0;
  private backlogLen = 0;
  private immediateArmed = false;
  private readonly onImmediate = (): void => {
    this.immediateArmed = false;
    this.flush();
  };

  /** The ring, or the kernel's reason for refusing one (see the class comment). */
  static create(options: UringIoEngineOptions = {}): UringIoEngineResult {
    return UringIoEngine.createWith(native.createUring, options);
  }

  /** @internal create() on another ring implementation (tests drive a fake one). */
  static createWith(createRing: Binding['createUring'], options: UringIoEngineOptions = {}): UringIoEngineResult {
    try {
      return { engine: new UringIoEngine(createRing, options), reason: null };
    } catch (e) {
      // Only the kernel's refusal is a fallback; a bad option is the caller's bug.
      if (e instanceof TypeError || e instanceof RangeError) throw e;
      return { engine: null, reason: unavailableReason(e) };
    }
  }

  private constructor(createRing: Binding['createUring'], options: UringIoEngineOptions) {
    const onComplete = (slots: Uint32Array, results: Int32Array, count: number): void =>
      this.onComplete(slots, results, count);
    this.ring = createRing(options.entries ?? DEFAULT_ENTRIES, onComplete,
      options.sqpoll === undefined ? undefined : { sqpoll: options.sqpoll });
    for (let s = 0; s < INITIAL_SLOTS; s++) {
      this.cbs.push(null);
      this.iovs.push(EMPTY);
      this.free[this.freeCount++] = INITIAL_SLOTS - 1 - s;
    }
  }

  /** Requests accepted and not yet completed (queued, in the ring, or waiting for room). */
  get pending(): number {
    return this.cbs.length - this.freeCount;
  }

  /** Most requests in the kernel at once (the ring's CQ size); more wait in the engine. */
  get capacity(): number {
    return this.ring.capacity;
  }

  preadv(fd: number, iov: readonly Uint8Array[], position: number, cb: IoCallback): void {
    this.start(OP_READ, fd, iov, position, cb);
  }

  pwritev(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean, cb: IoCallback): void {
    this.start(dsync ? OP_WRITE_DSYNC : OP_WRITE, fd, iov, position, cb);
  }

  fdatasync(fd: number, cb: SyncCallback): void {
    this.start(OP_SYNC, fd, EMPTY, 0, cb);
  }

  preadvSync(fd: number, iov: readonly Uint8Array[], position: number): number {
    return native.preadvSync(fd, iov, position);
  }

  pwritevSync(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean): number {
    return native.pwritevSync(fd, iov, position, dsync ? RWF_DSYNC : 0);
  }

  punchHole(fd: number, offset: number, len: number, cb: SyncCallback): void {
    nativeIoEngine.punchHole!(fd, offset, len, cb);
  }

  seekData(fd: number, offset: number, whence: 3 | 4): number {
    return nativeIoEngine.seekData!(fd, offset, whence);
  }

  /**
   * Submit everything queued since the last flush with one io_uring_enter, after moving waiting
   * requests into the ring if it has room. Cheap when there is nothing to do.
   */
  flush(): void {
    if (this.closed) return;
    this.pumpBacklog();
    if (this.ring.queued > 0) {
      this.submit();
      // The kernel pushed back (out of request memory): try again on the next turn.
      if (this.ring.queued > 0) this.arm();
    }
  }

  /**
   * Close the ring. Requests not completed yet get ECANCELED on the next tick (a write the kernel
   * had already started may still reach the file); the ring drains in the background and frees
   * their memory only when the kernel is done with it. Later requests fail the same way.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ring.close();
    const failed: { cb: IoCallback | SyncCallback; op: number }[] = [];
    for (let s = 0; s < this.cbs.length; s++) {
      const cb = this.cbs[s];
      if (cb === null) continue;
      failed.push({ cb, op: this.ops[s] });
      this.release(s);
    }
    this.backlogLen = 0;
    if (failed.length > 0) {
      process.nextTick(() => {
        for (const f of failed) deliver(f.cb, f.op, closedError(f.op), 0);
      });
    }
  }

  private start(op: number, fd: number, iov: readonly Uint8Array[], position: number,
    cb: IoCallback | SyncCallback): void {
    if (this.closed) {
      process.nextTick(deliver, cb, op, closedError(op), 0);
      return;
    }
    const s = this.alloc();
    this.cbs[s] = cb;
    this.ops[s] = op;
    this.fds[s] = fd;
    this.positions[s] = position;
    this.iovs[s] = iov;
    this.stats.requests++;
    if (this.backlogLen === 0) {
      let queued: boolean;
      try {
        queued = this.queue(s);
      } catch (e) {
        // A bad argument throws synchronously, as with the thread-pool engine.
        this.release(s);
        throw e;
      }
      if (queued) {
        this.arm();
        return;
      }
    }
    this.backlog[(this.backlogHead + this.backlogLen) % this.backlog.length] = s;
    this.backlogLen++;
    this.stats.backlogged++;
    this.arm();
  }

  /** Into the ring; if the SQ is full, submit what is queued and try once more. */
  private queue(s: number): boolean {
    if (this.put(s)) return true;
    if (this.ring.queued === 0) return false; // the ring is at capacity: wait for completions
    this.submit();
    return this.put(s);
  }

  private put(s: number): boolean {
    const ring = this.ring;
    switch (this.ops[s]) {
      case OP_READ: return ring.readv(s, this.fds[s], this.iovs[s], this.positions[s]);
      case OP_WRITE: return ring.writev(s, this.fds[s], this.iovs[s], this.positions[s], false);
      case OP_WRITE_DSYNC: return ring.writev(s, this.fds[s], this.iovs[s], this.positions[s], true);
      default: return ring.fdatasync(s, this.fds[s]);
    }
  }

  private submit(): void {
    this.stats.submits++;
    this.ring.submit();
  }

  private arm(): void {
    if (this.immediateArmed) return;
    this.immediateArmed = true;
    setImmediate(this.onImmediate);
  }

  private pumpBacklog(): void {
    while (this.backlogLen > 0) {
      const s = this.backlog[this.backlogHead];
      let queued: boolean;
      try {
        queued = this.queue(s);
      } catch (e) {
        // Arguments the ring refuses, found only now: that request fails, the others go on.
        this.popBacklog();
        const cb = this.cbs[s]!;
        const op = this.ops[s];
        this.release(s);
        process.nextTick(deliver, cb, op, e as NodeJS.ErrnoException, 0);
        continue;
      }
      if (!queued) return;
      this.popBacklog();
    }
  }

  private popBacklog(): void {
    this.backlogHead = (this.backlogHead + 1) % this.backlog.length;
    this.backlogLen--;
  }

  private onComplete(slots: Uint32Array, results: Int32Array, count: number): void {
    this.stats.wakeups++;
    // Every completion is delivered even if a callback throws; the first exception is rethrown
    // at the end (the addon routes it to uncaughtException).
    let threw = false;
    let error: unknown = undefined;
    for (let i = 0; i < count; i++) {
      try {
        this.complete(slots[i], results[i]);
      } catch (e) {
        if (!threw) {
          threw = true;
          error = e;
        }
      }
    }
    // Room was made, and the callbacks may have queued more: one submission for all of it.
    this.flush();
    if (threw) throw error;
  }

  private complete(s: number, res: number): void {
    const cb = this.cbs[s];
    if (cb === null) return; // closed meanwhile
    const op = this.ops[s];
    if (res === -EAGAIN || (res === -EOPNOTSUPP && op === OP_WRITE_DSYNC)) {
      const fd = this.fds[s];
      const iov = this.iovs[s];
      const position = this.positions[s];
      this.release(s);
      this.stats.fallbacks++;
      switch (op) {
        case OP_READ: nativeIoEngine.preadv(fd, iov, position, cb as IoCallback); break;
        case OP_WRITE: nativeIoEngine.pwritev(fd, iov, position, false, cb as IoCallback); break;
        case OP_WRITE_DSYNC: nativeIoEngine.pwritev(fd, iov, position, true, cb as IoCallback); break;
        default: nativeIoEngine.fdatasync(fd, cb as SyncCallback); break;
      }
      return;
    }
    this.release(s);
    if (res < 0) deliver(cb, op, uringError(res, SYSCALL[op]), 0);
    else deliver(cb, op, null, res);
  }

  private alloc(): number {
    if (this.freeCount === 0) this.grow();
    return this.free[--this.freeCount];
  }

  private release(s: number): void {
    this.cbs[s] = null;
    this.iovs[s] = EMPTY;
    this.free[this.freeCount++] = s;
  }

  /** Double the slot table (all slots are busy, so the free stack is empty). */
  private grow(): void {
    const old = this.cbs.length;
    const size = old * 2;
    const ops = new Uint8Array(size);
    ops.set(this.ops);
    this.ops = ops;
    const fds = new Int32Array(size);
    fds.set(this.fds);
    this.fds = fds;
    const positions = new Float64Array(size);
    positions.set(this.positions);
    this.positions = positions;
    const backlog = new Uint32Array(size);
    for (let i = 0; i < this.backlogLen; i++) backlog[i] = this.backlog[(this.backlogHead + i) % old];
    this.backlog = backlog;
    this.backlogHead = 0;
    this.free = new Uint32Array(size);
    this.freeCount = 0;
    for (let s = size - 1; s >= old; s--) this.free[this.freeCount++] = s;
    for (let s = old; s < size; s++) {
      this.cbs.push(null);
      this.iovs.push(EMPTY);
    }
  }
}

function deliver(cb: IoCallback | SyncCallback, op: number, err: NodeJS.ErrnoException | null, bytes: number): void {
  if (op === OP_SYNC) (cb as SyncCallback)(err);
  else (cb as IoCallback)(err, bytes);
}

/** An ErrnoException for a CQE's -errno, like the addon's SystemError. */
function uringError(res: number, syscall: string): NodeJS.ErrnoException {
  const code = util.getSystemErrorName(res);
  const err = new Error(`${syscall} ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = res;
  err.syscall = syscall;
  return err;
}

function closedError(op: number): NodeJS.ErrnoException {
  const err = uringError(-ECANCELED, SYSCALL[op]);
  err.message += ' (io_uring engine closed)';
  return err;
}

function unavailableReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const hint = err.code === 'ENOSYS' ? 'the kernel has no io_uring'
    : err.code === 'EPERM' ? 'io_uring is disabled (kernel.io_uring_disabled) or blocked by a seccomp filter'
      : err.code === 'ENOMEM' ? 'not enough locked memory for the ring (RLIMIT_MEMLOCK, Linux < 5.12)'
        : null;
  const what = err instanceof Error ? err.message : String(e);
  return `io_uring unavailable: ${what}${hint === null ? '' : ` (${hint})`}`;
}
