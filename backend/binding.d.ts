// The whole surface of build/Release/vhost_scsi_native.node (sources in
// backend/native/). Only what Node cannot do; all protocol validation and
// policy is TypeScript. Load it through backend/native.ts.
//
// Errors:
//  - OS failures throw (or pass to callbacks) a SystemError: message
//    "<syscall> <CODE>" (plus the path for path-based calls), code from the
//    errno name, errno = -errno as in Node.
//  - Bad arguments throw TypeError (code ERR_INVALID_ARG_TYPE /
//    ERR_INVALID_ARG_VALUE) or RangeError (ERR_OUT_OF_RANGE). Nothing is
//    coerced: fds, offsets, lengths and positions must be non-negative
//    integer Numbers (safe integers), never strings.

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  /** Set by listenUnix/connectUnix failures. */
  path?: string;
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export type IoCallback = (err: SystemError | null, bytes: number) => void;

export interface Poller {
  /**
   * events: 1 = readable, 2 = writable, 3 = both. Re-callable to change the set.
   * Callback gets (status: number (0 or -errno), events: number). After a
   * status < 0 the poller is stopped (libuv stops it before reporting).
   * Throws TypeError code ERR_INVALID_STATE once closed.
   */
  start(events: number): void;
  stop(): void;
  /** stop + release the uv handle; idempotent. Does NOT close the fd. Safe inside the callback. */
  close(): void;
}

/**
 * An io_uring owned by the addon (backend/native/uring.cc): readv/writev/fdatasync queued from JS,
 * submitted with one io_uring_enter per batch, completed on the JS thread in batches. The iovecs
 * point straight into the given views (guest memory included): no copy, no thread pool.
 * Memory safety is that of preadv(): views into mmap() regions hold their mapping (a munmap()
 * meanwhile is deferred until the CQE), any other view keeps its ArrayBuffer alive until the CQE.
 * Bad arguments throw as everywhere in the addon (TypeError/RangeError; more than 1024 iovecs is
 * a SystemError EINVAL with syscall 'readv'/'writev'); every method except close() and the
 * getters throws TypeError code ERR_INVALID_STATE once closed.
 */
export interface Uring {
  /**
   * Queue a readv at `position` (IORING_OP_READV); nothing reaches the kernel before submit().
   * Returns false, queueing nothing, when the SQ is full (submit() and retry) or `capacity`
   * requests are in flight (wait for completions, or fall back). `slot` is the caller's u32 id,
   * echoed in the completion. Empty views are skipped. The result is reported as the kernel
   * gives it: a short count (end of file, or more than 2 GiB - 4 KiB asked) is not continued here.
   */
  readv(slot: number, fd: number, iov: readonly Uint8Array[], position: number): boolean;
  /** IORING_OP_WRITEV; dsync sets RWF_DSYNC (durable before the completion, as pwritev2). */
  writev(slot: number, fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean): boolean;
  /** IORING_OP_FSYNC with IORING_FSYNC_DATASYNC. */
  fdatasync(slot: number, fd: number): boolean;
  /**
   * Hand everything queued to the kernel with one io_uring_enter (SQPOLL: publish, and wake the
   * SQ thread if it sleeps). Returns how many requests the kernel took; the rest, if the kernel
   * pushed back (EAGAIN/EBUSY), stay queued for the next submit(). Throws a SystemError
   * (syscall 'io_uring_enter') only if the ring itself is unusable.
   */
  submit(): number;
  /** Requests queued or submitted whose completion has not been delivered yet; 0 once closed. */
  readonly pending: number;
  /** Requests queued but not yet taken by the kernel (what submit() would hand over). */
  readonly queued: number;
  /** SQ size: the `entries` asked, rounded up to a power of two by the kernel. */
  readonly entries: number;
  /** Most requests in flight at once: the CQ size (2 x entries), so completions never overflow. */
  readonly capacity: number;
  /**
   * Idempotent. onComplete is never called again. Requests the kernel has not taken are dropped;
   * the rest are cancelled (IORING_OP_ASYNC_CANCEL, Linux >= 5.19; a request already running in
   * the file system finishes normally) and drained in the background: their memory (iovecs,
   * holds, ArrayBuffers) is released only at their CQE, and the ring then goes away. Env
   * teardown does the same, waiting for the CQEs.
   */
  close(): void;
}

export interface UringOptions {
  /**
   * IORING_SETUP_SQPOLL (Linux >= 5.11): a kernel thread takes SQEs without io_uring_enter and
   * sleeps after 10 ms idle. Off by default: on a 2-vCPU host that thread takes CPU from the
   * other side (performance.md §1.3).
   */
  sqpoll?: boolean;
}

/**
 * Called once per eventfd wake-up with every completion reaped: for i < count, slots[i] is the
 * slot given to readv/writev/fdatasync and results[i] the CQE's res, bytes moved or -errno.
 * -EAGAIN is passed through, never retried natively (the kernel retries requests that would
 * block itself, from io-wq or an armed poll, so it is not expected). The two arrays are the same
 * objects on every call (capacity entries, reused): read them before returning. By the time it
 * runs, the requests' memory holds are released (a deferred munmap has happened). An exception
 * goes to uncaughtException; the ring keeps working.
 */
export type UringCompletion = (slots: Uint32Array, results: Int32Array, count: number) => void;

export interface Binding {
  // --- unix sockets (SOCK_STREAM, all fds O_NONBLOCK|O_CLOEXEC) ---
  /**
   * socket+bind+listen. umask(0o177) around bind so the socket is created 0600,
   * then chmod 0600 explicitly (without following symlinks). Throws if path
   * exists (EADDRINUSE; the TS side decides about stale sockets) or path too
   * long for sun_path (ENAMETOOLONG). Empty paths and NUL bytes are rejected
   * (no abstract sockets). Returns the listening fd.
   */
  listenUnix(path: string, backlog: number): number;
  /** accept4 NONBLOCK|CLOEXEC; returns -1 on EAGAIN. */
  accept(listenFd: number): number;
  /** Blocking connect, then O_NONBLOCK (used by test fakes and the bench load generator). */
  connectUnix(path: string): number;
  socketpair(): [number, number];
  /** SO_PEERCRED of a connected unix socket. */
  peerCredentials(fd: number): PeerCredentials;
  /**
   * recvmsg(MSG_CMSG_CLOEXEC|MSG_DONTWAIT) into buf[offset, offset+length),
   * length >= 1. Received SCM_RIGHTS fds are pushed onto fdsOut. Returns bytes
   * (0 = EOF), -1 on EAGAIN. If MSG_CTRUNC is set: every fd received in that
   * call is closed and a SystemError code 'ECTRUNC' (errno -EMSGSIZE, syscall
   * 'recvmsg') is thrown. Up to 253 fds per call (SCM_MAX_FD).
   */
  recvmsg(fd: number, buf: Uint8Array, offset: number, length: number, fdsOut: number[]): number;
  /**
   * sendmsg(MSG_NOSIGNAL|MSG_DONTWAIT) of buf[offset, offset+length) with
   * optional SCM_RIGHTS fds (at most 253; length >= 1 when fds are given).
   * Returns bytes sent (may be short), -1 on EAGAIN. The fds are not closed.
   */
  sendmsg(fd: number, buf: Uint8Array, offset: number, length: number, fds?: number[]): number;
  /** close(2); EINTR is treated as closed (Linux always releases the fd). */
  close(fd: number): void;
  /** fcntl(F_DUPFD_CLOEXEC) */
  dup(fd: number): number;

  // --- memory ---
  /** memfd_create(MFD_CLOEXEC) + ftruncate(size). */
  memfdCreate(name: string, size: number): number;
  /** fstat st_size */
  fileSize(fd: number): bigint;
  /**
   * mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset).
   * offset must be page aligned (SystemError EINVAL otherwise); 1 <= length
   * <= 2^32 on Node 20 (the external ArrayBuffer limit: map bigger regions in
   * pieces). For regular files and memfds, offset+length beyond the file
   * size is refused with EINVAL (the access would SIGBUS). Returns an
   * external ArrayBuffer over the mapping whose finalizer munmaps it if still
   * mapped.
   */
  mmap(fd: number, offset: bigint, length: number): ArrayBuffer;
  /**
   * Detach the ArrayBuffer so JS can no longer touch it (byteLength becomes 0,
   * as do all views), and munmap, deferred until no asynchronous I/O
   * (preadv/pwritev) still references memory inside this mapping. Idempotent
   * on a detached buffer; TypeError for a buffer that mmap() did not return.
   */
  munmap(buffer: ArrayBuffer): void;
  /** Number of mappings still alive (mapped, incl. deferred unmaps), process-wide. For leak tests. */
  mappingCount(): number;

  // --- eventfd ---
  /** eventfd(initial, EFD_CLOEXEC [| EFD_NONBLOCK]); initial is a u32. */
  eventfd(initial: number, nonblock: boolean): number;
  /**
   * Read the 8-byte counter; returns it as a Number (clamped to 2^53-1), 0 on
   * EAGAIN. Never waits, even on a blocking eventfd (preadv2 RWF_NOWAIT).
   */
  eventfdRead(fd: number): number;
  /**
   * Add value (0..2^53-1) to the counter. EAGAIN (counter full) is ignored.
   * On a blocking eventfd a poll checks for room first: a write of 1 (a
   * notification) never waits; a larger value could if the peer refills the
   * counter concurrently.
   */
  eventfdWrite(fd: number, value: number): void;

  // --- readiness watcher on the libuv loop (uv_poll_t) ---
  /**
   * Watch fd for readiness. Sets O_NONBLOCK on fd (libuv); at most one open
   * poller per fd (EEXIST otherwise). Stop or close the poller before closing
   * the fd. Like any Node handle it lives until close() (it is not garbage
   * collected while open) and keeps the event loop alive while started.
   */
  createPoller(fd: number, callback: (status: number, events: number) => void): Poller;

  // --- vectored file I/O off the main thread, iovecs pointing straight into the given views (guest memory), no copy ---
  /**
   * preadv on an addon worker thread, looping on short reads until all bytes
   * are done, EOF (stop, report bytes so far) or an error (err with the bytes
   * done before it). Keeps the views' memory alive until completion; views
   * into mmap() regions defer their munmap. Callback on the JS thread.
   * At most 1024 iovecs (SystemError EINVAL beyond). Empty views are skipped.
   */
  preadv(fd: number, iov: readonly Uint8Array[], position: number, callback: IoCallback): void;
  /**
   * pwritev, looping until every byte is written. flags: 0, or 1 = RWF_DSYNC
   * (pwritev2; if the kernel or file system says ENOSYS/EOPNOTSUPP, pwritev +
   * fdatasync instead).
   */
  pwritev(fd: number, iov: readonly Uint8Array[], position: number, flags: number, callback: IoCallback): void;
  fdatasync(fd: number, callback: IoCallback): void;
  /** fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE), length >= 1 — synchronous; for UNMAP. */
  punchHole(fd: number, offset: number, length: number): void;
  /**
   * lseek(fd, offset, whence) with whence 3 = SEEK_DATA or 4 = SEEK_HOLE (other
   * values: RangeError) — synchronous; for GET LBA STATUS. Returns the offset
   * found, or -1 on ENXIO (no data at or after offset); other errors throw.
   */
  lseekData(fd: number, offset: number, whence: 3 | 4): number;
  /** Synchronous vectored variants for fast inline paths (tmpfs/page cache): return bytes (short only at EOF for reads). */
  preadvSync(fd: number, iov: readonly Uint8Array[], position: number): number;
  pwritevSync(fd: number, iov: readonly Uint8Array[], position: number, flags: number): number;

  // --- io_uring owned by the addon ---
  /**
   * io_uring_setup(entries) (1..32768), the rings mapped, an eventfd registered
   * (IORING_REGISTER_EVENTFD) and watched on the libuv loop. The ring keeps the process alive only
   * while requests are pending, and lives (not collected) until close(). Throws a SystemError if
   * the kernel refuses (syscall 'io_uring_setup': ENOSYS without io_uring, EPERM with
   * kernel.io_uring_disabled or a seccomp filter, ENOMEM past RLIMIT_MEMLOCK on Linux < 5.12;
   * EINVAL for sqpoll before Linux 5.11).
   */
  createUring(entries: number, onComplete: UringCompletion, options?: UringOptions): Uring;

  /** Full memory barrier (__atomic_thread_fence(__ATOMIC_SEQ_CST)) for the virtqueue protocol. */
  fence(): void;
  /** Bytes the addon ever memcpy'd between buffers: copyBytes only (file I/O adds nothing). For benchmarks. */
  copiedBytes(): number;
  /**
   * memmove(dst + dstOffset, src + srcOffset, length) between two Uint8Arrays, without JS
   * subarrays (the RAM backstore's copy). RangeError if either range leaves its view.
   */
  copyBytes(dst: Uint8Array, dstOffset: number, src: Uint8Array, srcOffset: number, length: number): void;
}
