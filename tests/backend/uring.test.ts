// The addon's io_uring (createUring) and the UringIoEngine on it: data through the ring between
// files on tmpfs and on the disk file system (also O_DIRECT) and guest-memory mappings or plain
// views; results as the kernel gives them; more requests than the ring holds; munmap and close
// with requests in the kernel (FIFO reads stay in flight until the test writes to the FIFO);
// env teardown; argument checks; and the engine under a FileStore, with a fake ring for the paths
// a real kernel does not take on demand. Literal errno values are Linux x86-64/arm64 ones
// (EBADF 9, EINVAL 22, ECANCELED 125, EIO 5, EAGAIN 11, EOPNOTSUPP 95).
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../../backend/native';
import { throwsLike } from './throws-like';
import type { SystemError } from '../../backend/native';
import type { Uring, UringCompletion, UringOptions } from '../../backend/binding';
import { UringIoEngine } from '../../backend/uring-engine';
import { openFileStore } from '../../scsi-emul';
import type { FileStore, FileStoreOptions } from '../../scsi-emul';

const PAGE = 4096;
const EBADF = 9;
const EIO = 5;
const EAGAIN = 11;
const ECANCELED = 125;
const EOPNOTSUPP = 95;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhs-uring-'));
const shm = fs.mkdtempSync(path.join('/dev/shm', 'vhs-uring-'));
t.teardown(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(shm, { recursive: true, force: true });
});
/** tmpfs (page cache only) and the disk file system under os.tmpdir() (ext4 or overlay). */
const DIRS: Array<[string, string]> = [['tmpfs', shm], ['tmpdir', tmp]];
const addonPath = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'vhost_scsi_native.node');

// ---- helpers ---------------------------------------------------------------------

/** A ring whose completions resolve per-slot promises; records the batch sizes. */
class Harness {
  readonly ring: Uring;
  readonly batches: number[] = [];
  private readonly waiters = new Map<number, (res: number) => void>();
  private readonly early = new Map<number, number>();
  private batchWaiter: (() => void) | null = null;

  constructor(entries: number, options?: UringOptions, extra?: UringCompletion) {
    this.ring = native.createUring(entries, (slots, results, count) => {
      this.batches.push(count);
      for (let i = 0; i < count; i++) {
        const w = this.waiters.get(slots[i]);
        if (w !== undefined) {
          this.waiters.delete(slots[i]);
          w(results[i]);
        } else {
          this.early.set(slots[i], results[i]);
        }
      }
      extra?.(slots, results, count);
      const b = this.batchWaiter;
      this.batchWaiter = null;
      b?.();
    }, options);
  }

  result(slot: number): Promise<number> {
    if (this.early.has(slot)) {
      const r = this.early.get(slot)!;
      this.early.delete(slot);
      return Promise.resolve(r);
    }
    return new Promise((resolve) => this.waiters.set(slot, resolve));
  }

  nextBatch(): Promise<void> {
    return new Promise((resolve) => {
      this.batchWaiter = resolve;
    });
  }
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

function fifo(name: string): string {
  const p = path.join(tmp, name);
  execFileSync('mkfifo', [p]);
  return p;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  // Bounded, not timed: the loop turns until the condition holds or gives up.
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`gave up waiting: ${what}`);
}

function runChild(code: string): ReturnType<typeof spawnSync> {
  // Plain node: the test runner's NODE_OPTIONS hooks are not wanted in the child.
  return spawnSync('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', process.execPath, '-e', code], {
    encoding: 'utf8',
    timeout: 30000,
  });
}

// ---- the ring ------------------------------------------------------------------------

for (const [fsName, dir] of DIRS) {
  t.test(`ring round trip on ${fsName}: guest memory and plain views, vectored, EOF`, async (t) => {
    const file = path.join(dir, 'rt.img');
    const fd = fs.openSync(file, 'w+');
    t.teardown(() => fs.closeSync(fd));
    const base = native.mappingCount();
    const mfd = native.memfdCreate('guest', 4 * PAGE);
    const ram = native.mmap(mfd, 0n, 4 * PAGE);
    const g = new Uint8Array(ram);
    g.set(pattern(4 * PAGE, 1));
    const copied = native.copiedBytes();
    const h = new Harness(8);
    t.equal(h.ring.entries, 8, 'SQ entries');
    t.equal(h.ring.capacity, 16, 'two CQEs per SQE');

    const src = [
      new Uint8Array(ram, 100, 300),
      new Uint8Array(ram, PAGE - 50, 200), // crosses a page
      Buffer.alloc(5, 0xee),
      new Uint8Array([1, 2, 3]),
      new Uint8Array(0), // skipped
    ];
    const total = 300 + 200 + 5 + 3;
    t.equal(h.ring.writev(1, fd, src, 1000, false), true);
    t.equal(h.ring.writev(2, fd, [new Uint8Array([9, 9])], 1000 + total, true), true, 'RWF_DSYNC write');
    t.equal(h.ring.pending, 2);
    t.equal(h.ring.queued, 2, 'nothing reaches the kernel before submit()');
    t.equal(h.ring.submit(), 2, 'one submit for both');
    t.equal(h.ring.queued, 0);
    t.same(await Promise.all([h.result(1), h.result(2)]), [total, 2], 'bytes written');
    t.equal(h.ring.pending, 0);
    t.ok(h.ring.fdatasync(3, fd));
    h.ring.submit();
    t.equal(await h.result(3), 0, 'fdatasync');

    const onDisk = fs.readFileSync(file);
    t.equal(onDisk.length, 1000 + total + 2);
    t.ok(onDisk.subarray(1000, 1300).equals(Buffer.from(g.subarray(100, 400))), 'iovec 0');
    t.ok(onDisk.subarray(1300, 1500).equals(Buffer.from(g.subarray(PAGE - 50, PAGE + 150))), 'iovec 1');
    t.same([...onDisk.subarray(1500, 1510)], [0xee, 0xee, 0xee, 0xee, 0xee, 1, 2, 3, 9, 9], 'iovecs 2, 3 and the dsync write');

    // Back into guest memory elsewhere, split differently, plus a plain buffer.
    const plain = new Uint8Array(100);
    const dst = [new Uint8Array(ram, 2 * PAGE, 10), new Uint8Array(ram, 3 * PAGE + 7, total - 10 - 100), plain];
    t.ok(h.ring.readv(4, fd, dst, 1000));
    // EOF: 10 bytes left; and a read entirely past the end.
    const tail = new Uint8Array(100);
    t.ok(h.ring.readv(5, fd, [tail], 1000 + total - 8));
    t.ok(h.ring.readv(6, fd, [new Uint8Array(16)], 1 << 20));
    t.equal(h.ring.submit(), 3);
    t.same(await Promise.all([h.result(4), h.result(5), h.result(6)]), [total, 10, 0], 'full, short at EOF, past EOF');
    const back = Buffer.concat(dst.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
    t.ok(back.equals(onDisk.subarray(1000, 1000 + total)), 'round trip');
    t.same([...tail.subarray(0, 10)], [...onDisk.subarray(1000 + total - 8)], 'the bytes before EOF');
    t.equal(native.copiedBytes(), copied, 'the addon copied nothing');

    h.ring.close();
    native.munmap(ram);
    native.close(mfd);
    t.equal(native.mappingCount(), base, 'no mapping left behind');
  });

  t.test(`ring with O_DIRECT on ${fsName}`, async (t) => {
    const file = path.join(dir, 'direct.img');
    fs.writeFileSync(file, Buffer.alloc(16 * PAGE));
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
    } catch (e) {
      t.equal((e as NodeJS.ErrnoException).code, 'EINVAL', 'only "not supported" is acceptable');
      t.comment(`${fsName} does not support O_DIRECT here`);
      return;
    }
    t.teardown(() => fs.closeSync(fd));
    const mfd = native.memfdCreate('direct', 4 * PAGE);
    const ram = native.mmap(mfd, 0n, 4 * PAGE);
    t.teardown(() => {
      native.munmap(ram);
      native.close(mfd);
    });
    const g = new Uint8Array(ram);
    g.set(pattern(2 * PAGE, 3));
    const h = new Harness(4);
    t.teardown(() => h.ring.close());
    // Page-aligned guest memory, two iovecs, sector-aligned offset.
    t.ok(h.ring.writev(1, fd, [new Uint8Array(ram, 0, PAGE), new Uint8Array(ram, PAGE, PAGE)], 3 * PAGE, false));
    h.ring.submit();
    t.equal(await h.result(1), 2 * PAGE, 'direct write');
    t.ok(h.ring.readv(2, fd, [new Uint8Array(ram, 2 * PAGE, 2 * PAGE)], 3 * PAGE));
    h.ring.submit();
    t.equal(await h.result(2), 2 * PAGE, 'direct read');
    t.ok(Buffer.from(ram, 2 * PAGE, 2 * PAGE).equals(Buffer.from(ram, 0, 2 * PAGE)), 'round trip');
    t.ok(fs.readFileSync(file).subarray(3 * PAGE, 5 * PAGE).equals(Buffer.from(ram, 0, 2 * PAGE)), 'on the medium');
  });
}

t.test('errors come back as -errno; one bad request does not stop its batch', async (t) => {
  const file = path.join(shm, 'err.img');
  fs.writeFileSync(file, pattern(PAGE, 5));
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const closed = 1_000_000; // above RLIMIT_NOFILE: never an open descriptor (a freed number would be reused)
  const h = new Harness(8);
  t.teardown(() => h.ring.close());
  const a = new Uint8Array(64);
  const c = new Uint8Array(64);
  t.ok(h.ring.readv(1, fd, [a], 0));
  t.ok(h.ring.readv(2, closed, [new Uint8Array(8)], 0));
  t.ok(h.ring.readv(3, fd, [c], 64));
  t.ok(h.ring.writev(4, fd, [new Uint8Array(8)], 0, false), 'a write on an O_RDONLY fd');
  t.ok(h.ring.fdatasync(5, closed));
  t.equal(h.ring.submit(), 5, 'all five taken');
  t.same(await Promise.all([1, 2, 3, 4, 5].map((s) => h.result(s))), [64, -EBADF, 64, -EBADF, -EBADF]);
  t.ok(Buffer.from(a).equals(pattern(PAGE, 5).subarray(0, 64)) && Buffer.from(c).equals(pattern(PAGE, 5).subarray(64, 128)),
    'the good reads landed');
});

t.test('more requests than the ring holds: refused, the caller submits or waits and retries', async (t) => {
  const N = 100;
  const file = path.join(shm, 'many.img');
  const data = pattern(N * 512, 9);
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const mfd = native.memfdCreate('many', N * 512);
  const ram = native.mmap(mfd, 0n, N * 512);
  t.teardown(() => {
    native.munmap(ram);
    native.close(mfd);
  });
  const h = new Harness(4);
  t.teardown(() => h.ring.close());
  t.equal(h.ring.capacity, 8);
  let sqFull = 0;
  let atCapacity = 0;
  let maxPending = 0;
  const results: Promise<number>[] = [];
  for (let i = 0; i < N; i++) {
    const view = new Uint8Array(ram, i * 512, 512);
    while (!h.ring.readv(i, fd, [view], i * 512)) {
      if (h.ring.queued > 0) {
        sqFull++;
        h.ring.submit();
      } else {
        atCapacity++;
        t.equal(h.ring.pending, h.ring.capacity, 'refused at capacity only when that many are in flight');
        await h.nextBatch();
      }
    }
    maxPending = Math.max(maxPending, h.ring.pending);
    results.push(h.result(i));
  }
  h.ring.submit();
  const all = await Promise.all(results);
  t.ok(all.every((n) => n === 512), 'every read complete');
  t.ok(Buffer.from(ram).equals(data), 'every byte where it belongs');
  t.ok(sqFull > 0, `the SQ filled up (${sqFull} times)`);
  t.ok(atCapacity > 0, `the ring reached capacity (${atCapacity} times)`);
  t.equal(maxPending, 8, 'never more than capacity in flight');
  t.ok(h.batches.some((n) => n > 1), `completions arrive in batches (${h.batches.join(',')})`);
  t.equal(h.ring.pending, 0);
});

t.test('munmap while a readv into the mapping is in the kernel defers the unmap', async (t) => {
  const p = fifo('defer.fifo');
  const fd = fs.openSync(p, fs.constants.O_RDWR); // blocking, empty: the read waits in the kernel
  t.teardown(() => fs.closeSync(fd));
  const base = native.mappingCount();
  const mfd = native.memfdCreate('defer', 2 * PAGE);
  const ram = native.mmap(mfd, 0n, 2 * PAGE);
  const view = new Uint8Array(ram, PAGE + 10, 100);
  let countInCallback = -1;
  const h = new Harness(4, undefined, () => {
    countInCallback = native.mappingCount();
  });
  t.teardown(() => h.ring.close());
  t.ok(h.ring.readv(1, fd, [view], 0));
  t.equal(h.ring.submit(), 1);
  native.munmap(ram);
  t.equal(ram.byteLength, 0, 'detached at once');
  t.equal(view.byteLength, 0, 'JS can no longer reach the pages');
  t.equal(native.mappingCount(), base + 1, 'unmap deferred while the read is in the kernel');
  fs.writeSync(fd, Buffer.from('hello, ring'));
  t.equal(await h.result(1), 11, 'the read completed into still-mapped memory');
  t.equal(countInCallback, base, 'unmapped before onComplete ran');
  const again = native.mmap(mfd, 0n, 2 * PAGE);
  t.equal(Buffer.from(again, PAGE + 10, 11).toString(), 'hello, ring', 'the bytes reached the shared pages');
  t.equal(new Uint8Array(again)[PAGE + 9], 0, 'and only where asked');
  native.munmap(again);
  native.close(mfd);
});

t.test('close() with requests in the kernel: cancelled, drained, memory released only after', async (t) => {
  const p = fifo('close.fifo');
  const fd = fs.openSync(p, fs.constants.O_RDWR);
  t.teardown(() => fs.closeSync(fd));
  const file = path.join(shm, 'close.img');
  fs.writeFileSync(file, pattern(64 * PAGE, 2));
  const ffd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(ffd));
  const base = native.mappingCount();
  const mfd = native.memfdCreate('close', 64 * PAGE);
  const ram = native.mmap(mfd, 0n, 64 * PAGE);
  const h = new Harness(64);
  // Two FIFO reads that cannot finish, 32 file reads that finish at any moment, and two that
  // are queued but never submitted.
  t.ok(h.ring.readv(1, fd, [new Uint8Array(ram, 0, 16)], 0));
  t.ok(h.ring.readv(2, fd, [new Uint8Array(16)], 0));
  for (let i = 0; i < 32; i++) t.ok(h.ring.readv(10 + i, ffd, [new Uint8Array(ram, (i + 1) * PAGE, PAGE)], i * PAGE));
  h.ring.submit();
  t.ok(h.ring.readv(100, ffd, [new Uint8Array(ram, 40 * PAGE, PAGE)], 0));
  t.ok(h.ring.fdatasync(101, ffd));
  native.munmap(ram);
  const batchesBefore = h.batches.length;
  h.ring.close();
  t.equal(h.ring.pending, 0, 'nothing pending for JS');
  t.equal(h.ring.entries, 64, 'sizes still readable');
  h.ring.close();
  t.pass('close is idempotent');
  throwsLike(t, () => h.ring.readv(3, fd, [new Uint8Array(1)], 0), TypeError, { code: 'ERR_INVALID_STATE' }, 'readv after close');
  throwsLike(t, () => h.ring.submit(), TypeError, { code: 'ERR_INVALID_STATE' }, 'submit after close');
  throwsLike(t, () => h.ring.fdatasync(3, fd), TypeError, { code: 'ERR_INVALID_STATE' }, 'fdatasync after close');
  await until(() => native.mappingCount() === base, 'the drain releasing the mapping');
  t.pass('the mapping went once the kernel gave every request back');
  t.equal(h.batches.length, batchesBefore, 'onComplete never ran after close');
  // The cancelled FIFO reads consumed nothing.
  fs.writeSync(fd, Buffer.from('still here'));
  const got = Buffer.alloc(32);
  t.equal(fs.readSync(fd, got, 0, 32, null), 10);
  t.equal(got.subarray(0, 10).toString(), 'still here', 'the FIFO data is intact');
  native.close(mfd);
});

t.test('an exception thrown by onComplete reaches uncaughtException; the ring keeps working', async (t) => {
  const file = path.join(shm, 'throw.img');
  fs.writeFileSync(file, pattern(PAGE, 4));
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  let first = true;
  const h = new Harness(4, undefined, () => {
    if (first) {
      first = false;
      throw new Error('boom from the ring');
    }
  });
  t.teardown(() => h.ring.close());
  const caught = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
  h.ring.readv(1, fd, [new Uint8Array(8)], 0);
  h.ring.submit();
  t.equal(await h.result(1), 8);
  t.match(await caught, { message: 'boom from the ring' });
  h.ring.readv(2, fd, [new Uint8Array(8)], 8);
  h.ring.submit();
  t.equal(await h.result(2), 8, 'later completions still delivered');
  for (const l of listeners) process.on('uncaughtException', l);
});

t.test('SQPOLL: a kernel thread takes the SQEs', async (t) => {
  const file = path.join(shm, 'sqpoll.img');
  fs.writeFileSync(file, pattern(2 * PAGE, 6));
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  let h: Harness;
  try {
    h = new Harness(8, { sqpoll: true });
  } catch (e) {
    t.comment(`SQPOLL refused here: ${(e as Error).message}`);
    return;
  }
  t.teardown(() => h.ring.close());
  const buf = new Uint8Array(2 * PAGE);
  t.ok(h.ring.readv(1, fd, [buf], 0));
  t.equal(h.ring.queued, 1);
  t.equal(h.ring.submit(), 1, 'published');
  t.equal(await h.result(1), 2 * PAGE);
  t.ok(Buffer.from(buf).equals(pattern(2 * PAGE, 6)));
  t.ok(h.ring.writev(2, fd, [Buffer.from('sq')], 0, true));
  h.ring.submit();
  t.equal(await h.result(2), 2);
});

t.test('argument validation never crashes', (t) => {
  const noop = (): void => undefined;
  const buf = new Uint8Array(16);
  const h = new Harness(2);
  const r = h.ring;
  const cases: Array<[string, () => unknown, ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, Record<string, unknown>]> = [
    ['entries 0', () => native.createUring(0, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['entries above 32768', () => native.createUring(32769, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['entries fractional', () => native.createUring(1.5, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['entries string', () => native.createUring('8' as unknown as number, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['onComplete missing', () => native.createUring(8, undefined as unknown as UringCompletion), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['options not an object', () => native.createUring(8, noop, 1 as unknown as UringOptions), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['options.sqpoll not a boolean', () => native.createUring(8, noop, { sqpoll: 1 as unknown as boolean }), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['slot negative', () => r.readv(-1, 0, [buf], 0), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['slot above u32', () => r.readv(2 ** 32, 0, [buf], 0), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['slot bigint', () => r.fdatasync(1n as unknown as number, 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['fd negative', () => r.readv(0, -1, [buf], 0), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['fd string', () => r.fdatasync(0, '3' as unknown as number), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['iov not an array', () => r.readv(0, 0, buf as unknown as Uint8Array[], 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['iov element not a Uint8Array', () => r.readv(0, 0, [buf, [1] as unknown as Uint8Array], 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['iov Int8Array element', () => r.writev(0, 0, [new Int8Array(4) as unknown as Uint8Array], 0, false), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['iov DataView element', () => r.readv(0, 0, [new DataView(new ArrayBuffer(4)) as unknown as Uint8Array], 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['1025 iovecs', () => r.readv(0, 0, new Array(1025).fill(buf), 0), Error, { code: 'EINVAL', errno: -22, syscall: 'readv' }],
    ['1025 iovecs, write', () => r.writev(0, 0, new Array(1025).fill(buf), 0, false), Error, { code: 'EINVAL', errno: -22, syscall: 'writev' }],
    ['position negative', () => r.readv(0, 0, [buf], -1), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['position unsafe', () => r.readv(0, 0, [buf], 2 ** 53), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['position NaN', () => r.readv(0, 0, [buf], NaN), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['dsync missing', () => (r.writev as unknown as (...a: unknown[]) => boolean)(0, 0, [buf], 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['dsync number', () => r.writev(0, 0, [buf], 0, 1 as unknown as boolean), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
  ];
  for (const [name, fn, ctor, props] of cases) throwsLike(t, fn, ctor, props, name);
  t.equal(r.pending, 0, 'no failed call queued anything');
  t.equal(r.readv(0, 0, new Array(1024).fill(new Uint8Array(0)), 0), true, '1024 iovecs are fine (empty ones are skipped)');
  t.equal(r.queued, 1);
  r.close();
  t.equal(r.pending, 0, 'a queued, never submitted request is dropped by close');

  // A getter on the iovec array closes the ring while the call decodes it.
  const h2 = new Harness(2);
  const iov: Uint8Array[] = [];
  Object.defineProperty(iov, 0, { get: () => (h2.ring.close(), buf), enumerable: true });
  throwsLike(t, () => h2.ring.readv(0, 0, iov, 0), TypeError, { code: 'ERR_INVALID_STATE' }, 'closed by a getter mid-call');
  t.equal(h2.ring.pending, 0);
  t.end();
});

t.test('an idle ring does not keep the process alive; exit and worker teardown wait for the kernel', (t) => {
  const idle = runChild(`
    const n = require(${JSON.stringify(addonPath)});
    n.createUring(8, () => {});
    setTimeout(() => console.log('alive'), 10);
  `);
  t.equal(idle.status, 0, `exits by itself (${idle.stderr})`);
  t.equal(idle.stdout, 'alive\n');

  // A FIFO read into a mapping is in the kernel when the process exits: teardown cancels it and
  // waits for its CQE before anything is freed.
  const p = fifo('exit.fifo');
  const exiting = runChild(`
    const n = require(${JSON.stringify(addonPath)});
    const fs = require('fs');
    const fd = fs.openSync(${JSON.stringify(p)}, fs.constants.O_RDWR);
    const ram = n.mmap(n.memfdCreate('g', 4096), 0n, 4096);
    const r = n.createUring(8, () => { console.log('unexpected completion'); });
    r.readv(1, fd, [new Uint8Array(ram, 0, 64)], 0);
    r.submit();
    n.munmap(ram);
    setTimeout(() => { console.log('pending', r.pending, 'mappings', n.mappingCount()); process.exit(0); }, 20);
  `);
  t.equal(exiting.status, 0, `exit with a request in the kernel (${exiting.stderr})`);
  t.equal(exiting.stdout, 'pending 1 mappings 1\n');

  const worker = runChild(`
    const { Worker } = require('worker_threads');
    const n = require(${JSON.stringify(addonPath)});
    const w = new Worker(\`
      const n = require(${JSON.stringify(addonPath)});
      const fs = require('fs');
      const { parentPort } = require('worker_threads');
      const fd = fs.openSync(${JSON.stringify(p)}, fs.constants.O_RDWR);
      const ram = n.mmap(n.memfdCreate('w', 4096), 0n, 4096);
      const r = n.createUring(8, () => {});
      r.readv(1, fd, [new Uint8Array(ram, 0, 64)], 0);
      r.submit();
      n.munmap(ram);
      parentPort.postMessage(n.mappingCount());
    \`, { eval: true });
    w.once('message', (count) => {
      w.terminate().then(() => {
        // The worker's env is gone: its ring was cancelled and drained, the mapping released.
        console.log('in worker', count, 'after', n.mappingCount());
      });
    });
  `);
  t.equal(worker.status, 0, `worker terminated with a request in the kernel (${worker.stderr})`);
  t.equal(worker.stdout, 'in worker 1 after 0\n');
  t.end();
});

// ---- UringIoEngine ---------------------------------------------------------------------

function engine(t: tap.Test, entries = 16): UringIoEngine {
  const r = UringIoEngine.create({ entries });
  if (r.engine === null) throw new Error(r.reason);
  const e = r.engine;
  t.teardown(() => e.close());
  return e;
}

function readP(e: UringIoEngine, fd: number, iov: Uint8Array[], pos: number): Promise<{ err: NodeJS.ErrnoException | null; n: number }> {
  return new Promise((resolve) => e.preadv(fd, iov, pos, (err, n) => resolve({ err, n })));
}

function storeOp(store: FileStore, kind: 'read' | 'write' | 'flush', offset = 0, segs: Uint8Array[] = [], len = 0, fua = false): Promise<Error | null> {
  return new Promise((resolve) => {
    if (kind === 'read') store.read(offset, segs, len, resolve);
    else if (kind === 'write') store.write(offset, segs, len, fua, resolve);
    else store.flush(resolve);
  });
}

for (const [fsName, dir] of DIRS) {
  for (const direct of [false, true]) {
    t.test(`UringIoEngine under a FileStore on ${fsName}${direct ? ', O_DIRECT' : ''}`, async (t) => {
      const e = engine(t);
      const file = path.join(dir, `store${direct ? '-direct' : ''}.img`);
      // io: 'async' keeps a tmpfs store on the ring rather than running it inline.
      const opts: FileStoreOptions & { io?: string } = { path: file, sizeBytes: 1 << 20, engine: e, direct, io: 'async' };
      let store: FileStore;
      try {
        store = openFileStore(opts);
      } catch (err) {
        t.ok(direct, `only O_DIRECT may be refused (${(err as Error).message})`);
        t.comment(`${fsName}: no O_DIRECT here`);
        return;
      }
      const mfd = native.memfdCreate('guest', 8 * PAGE);
      const ram = native.mmap(mfd, 0n, 8 * PAGE);
      t.teardown(() => {
        native.munmap(ram);
        native.close(mfd);
      });
      new Uint8Array(ram).set(pattern(4 * PAGE, 8));
      const segs = [new Uint8Array(ram, 0, PAGE), new Uint8Array(ram, PAGE, 3 * PAGE)];
      t.equal(await storeOp(store, 'write', 8 * PAGE, segs, 4 * PAGE, true), null, 'FUA write');
      const into = [new Uint8Array(ram, 4 * PAGE, 2 * PAGE), new Uint8Array(ram, 6 * PAGE, 2 * PAGE)];
      t.equal(await storeOp(store, 'read', 8 * PAGE, into, 4 * PAGE), null, 'read');
      t.ok(Buffer.from(ram, 4 * PAGE, 4 * PAGE).equals(Buffer.from(ram, 0, 4 * PAGE)), 'round trip through guest memory');
      // Plain, unaligned views (O_DIRECT: the store's bounce path, still through the ring).
      const odd = new Uint8Array(1000).fill(0x3c);
      t.equal(await storeOp(store, 'write', 512, [odd.subarray(1, 513)], 512), null, 'write from a plain view');
      const check = new Uint8Array(600);
      t.equal(await storeOp(store, 'read', 512, [check.subarray(3, 515)], 512), null, 'read into a plain view');
      t.ok(check.subarray(3, 515).every((b) => b === 0x3c), 'bytes arrived');
      t.equal(await storeOp(store, 'flush'), null, 'SYNCHRONIZE CACHE');
      t.ok(e.stats.requests >= 4, `the I/O went through the ring (${JSON.stringify(e.stats)})`);
      t.equal(e.stats.fallbacks, 0);
      await new Promise<void>((resolve, reject) => store.close((err) => (err ? reject(err) : resolve())));
      const onDisk = fs.readFileSync(file);
      t.ok(onDisk.subarray(8 * PAGE, 12 * PAGE).equals(Buffer.from(ram, 0, 4 * PAGE)), 'on the medium');
      t.equal(e.pending, 0);
    });
  }
}

t.test('UringIoEngine: one submission per flushed batch; the setImmediate safety net', async (t) => {
  const e = engine(t, 16);
  const file = path.join(shm, 'batch.img');
  const data = pattern(64 * 512, 11);
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const bufs = Array.from({ length: 8 }, () => new Uint8Array(512));
  const first = bufs.map((b, i) => readP(e, fd, [b], i * 512));
  t.equal(e.pending, 8);
  e.flush();
  t.equal(e.stats.submits, 1, 'flush: one io_uring_enter for the batch');
  e.flush();
  t.equal(e.stats.submits, 1, 'a flush with nothing queued does not enter the kernel');
  t.same((await Promise.all(first)).map((r) => r.n), new Array(8).fill(512));
  t.ok(bufs.every((b, i) => Buffer.from(b).equals(data.subarray(i * 512, (i + 1) * 512))), 'data');
  // Never flushed: the immediate armed by the first request submits them, once.
  const before = e.stats.submits;
  const second = bufs.map((b, i) => readP(e, fd, [b], (i + 8) * 512));
  t.same((await Promise.all(second)).map((r) => r.n), new Array(8).fill(512), 'completed without flush()');
  t.equal(e.stats.submits - before, 1, 'in one submission');
  t.equal(e.pending, 0);
});

t.test('UringIoEngine: far more requests than the ring holds wait in the engine', async (t) => {
  const e = engine(t, 2);
  t.equal(e.capacity, 4);
  const N = 200;
  const file = path.join(shm, 'backlog.img');
  const data = pattern(N * 512, 12);
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const mfd = native.memfdCreate('backlog', N * 512);
  const ram = native.mmap(mfd, 0n, N * 512);
  t.teardown(() => {
    native.munmap(ram);
    native.close(mfd);
  });
  const done: Promise<{ err: NodeJS.ErrnoException | null; n: number }>[] = [];
  for (let i = 0; i < N; i++) done.push(readP(e, fd, [new Uint8Array(ram, i * 512, 512)], i * 512));
  t.equal(e.pending, N, 'all accepted');
  e.flush();
  const res = await Promise.all(done);
  t.ok(res.every((r) => r.err === null && r.n === 512), 'all completed');
  t.ok(Buffer.from(ram).equals(data), 'data');
  t.ok(e.stats.backlogged > 0, `${e.stats.backlogged} waited for room`);
  t.equal(e.pending, 0);
  // The slot table grew past its first size and keeps working.
  const w = await new Promise<number>((resolve, reject) =>
    e.pwritev(fd, [Buffer.from('x')], 0, false, (err, n) => (err ? reject(err) : resolve(n))));
  t.equal(w, 1);
  const sync = await new Promise<Error | null>((resolve) => e.fdatasync(fd, resolve));
  t.equal(sync, null);
});

t.test('UringIoEngine: errors are ErrnoExceptions; close() cancels what is in flight', async (t) => {
  const e = engine(t, 4);
  const file = path.join(shm, 'eng-err.img');
  fs.writeFileSync(file, Buffer.alloc(PAGE));
  const ro = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(ro));
  const w = await new Promise<{ err: NodeJS.ErrnoException | null; n: number }>((resolve) =>
    e.pwritev(ro, [new Uint8Array(4)], 0, true, (err, n) => resolve({ err, n })));
  t.match(w, { err: { code: 'EBADF', errno: -EBADF, syscall: 'pwritev2', message: 'pwritev2 EBADF' }, n: 0 });
  throwsLike(t, () => e.preadv(ro, [42 as unknown as Uint8Array], 0, () => undefined), TypeError,
    { code: 'ERR_INVALID_ARG_TYPE' }, 'a bad view throws synchronously');
  t.equal(e.pending, 0, 'and leaves nothing behind');
  t.equal(e.seekData(ro, 0, 3), 0, 'seekData is the thread-pool engine\'s');

  const p = fifo('engine.fifo');
  const ffd = fs.openSync(p, fs.constants.O_RDWR);
  t.teardown(() => fs.closeSync(ffd));
  const stuck = readP(e, ffd, [new Uint8Array(8)], 0);
  const stuckSync = new Promise<Error | null>((resolve) => e.fdatasync(ffd, resolve));
  e.flush();
  e.close();
  t.match(await stuck, { err: { code: 'ECANCELED', errno: -ECANCELED, syscall: 'preadv' }, n: 0 }, 'in-flight read cancelled');
  t.match(await stuckSync, { code: 'ECANCELED', syscall: 'fdatasync' });
  t.match(await readP(e, ro, [new Uint8Array(8)], 0), { err: { code: 'ECANCELED' } }, 'requests after close fail');
  t.equal(e.pending, 0);
});

/** A ring the test completes by hand, for the paths a real kernel takes only on its own terms. */
class FakeRing implements Uring {
  readonly entries: number;
  readonly capacity: number;
  queuedReqs: Array<{ slot: number; op: string; fd: number }> = [];
  inKernel: Array<{ slot: number; op: string; fd: number }> = [];
  submits = 0;
  closed = false;
  onComplete: UringCompletion = () => undefined;
  constructor(entries: number) {
    this.entries = entries;
    this.capacity = 2 * entries;
  }
  get pending(): number {
    return this.queuedReqs.length + this.inKernel.length;
  }
  get queued(): number {
    return this.queuedReqs.length;
  }
  private add(slot: number, op: string, fd: number): boolean {
    if (this.queuedReqs.length === this.entries || this.pending === this.capacity) return false;
    this.queuedReqs.push({ slot, op, fd });
    return true;
  }
  readv(slot: number, fd: number): boolean {
    return this.add(slot, 'readv', fd);
  }
  writev(slot: number, fd: number, _iov: readonly Uint8Array[], _pos: number, dsync: boolean): boolean {
    return this.add(slot, dsync ? 'writev-dsync' : 'writev', fd);
  }
  fdatasync(slot: number, fd: number): boolean {
    return this.add(slot, 'fdatasync', fd);
  }
  submit(): number {
    this.submits++;
    const n = this.queuedReqs.length;
    this.inKernel.push(...this.queuedReqs);
    this.queuedReqs = [];
    return n;
  }
  close(): void {
    this.closed = true;
  }
  /** Complete the in-kernel requests with these results, in order; one onComplete call. */
  complete(results: number[]): void {
    const done = this.inKernel.splice(0, results.length);
    const slots = new Uint32Array(this.capacity);
    const res = new Int32Array(this.capacity);
    done.forEach((r, i) => {
      slots[i] = r.slot;
      res[i] = results[i];
    });
    this.onComplete(slots, res, done.length);
  }
}

function fakeEngine(entries: number): { e: UringIoEngine; ring: FakeRing } {
  const ring = new FakeRing(entries);
  const r = UringIoEngine.createWith((_entries, onComplete) => {
    ring.onComplete = onComplete;
    return ring;
  });
  if (r.engine === null) throw new Error(r.reason);
  return { e: r.engine, ring };
}

t.test('UringIoEngine on a fake ring: SQ full, -EAGAIN and -EOPNOTSUPP fallbacks, throwing callbacks', async (t) => {
  const { e, ring } = fakeEngine(2);
  const file = path.join(shm, 'fake.img');
  fs.writeFileSync(file, pattern(PAGE, 13));
  const fd = fs.openSync(file, 'r+');
  t.teardown(() => fs.closeSync(fd));

  // SQ full: the engine submits and retries by itself.
  const got: Array<[number, NodeJS.ErrnoException | null, number]> = [];
  for (let i = 0; i < 3; i++) e.preadv(fd, [new Uint8Array(16)], i * 16, (err, n) => got.push([i, err, n]));
  t.equal(ring.submits, 1, 'the third request made room by submitting the first two');
  t.equal(ring.queued, 1);
  e.flush();
  t.equal(ring.inKernel.length, 3);
  // -EIO for one, bytes for the others; one batch.
  ring.complete([16, -EIO, 7]);
  t.match(got, [[0, null, 16], [1, { code: 'EIO', errno: -EIO, syscall: 'preadv' }, 0], [2, null, 7]], 'results as given, short count included');

  // -EAGAIN: re-run on the thread pool, which reads the real file.
  const buf = new Uint8Array(32);
  const again = new Promise<{ err: NodeJS.ErrnoException | null; n: number }>((resolve) => e.preadv(fd, [buf], 100, (err, n) => resolve({ err, n })));
  e.flush();
  ring.complete([-EAGAIN]);
  t.same(await again, { err: null, n: 32 }, 'completed by the fallback');
  t.ok(Buffer.from(buf).equals(pattern(PAGE, 13).subarray(100, 132)), 'with the file\'s bytes');
  // -EOPNOTSUPP on a dsync write: RWF_DSYNC unsupported; the thread pool writes and syncs.
  const wrote = new Promise<{ err: NodeJS.ErrnoException | null; n: number }>((resolve) =>
    e.pwritev(fd, [Buffer.from('dsync')], 200, true, (err, n) => resolve({ err, n })));
  e.flush();
  ring.complete([-EOPNOTSUPP]);
  t.same(await wrote, { err: null, n: 5 });
  t.equal(fs.readFileSync(file).subarray(200, 205).toString(), 'dsync');
  // -EOPNOTSUPP elsewhere is an error like any other.
  const plain = new Promise<Error | null>((resolve) => e.fdatasync(fd, resolve));
  e.flush();
  ring.complete([-EOPNOTSUPP]);
  t.match(await plain, { code: /^(EOPNOTSUPP|ENOTSUP)$/, errno: -EOPNOTSUPP, syscall: 'fdatasync' });
  t.equal(e.stats.fallbacks, 2);

  // A throwing callback: the rest of the batch is still delivered, then the error surfaces.
  const order: number[] = [];
  e.preadv(fd, [new Uint8Array(1)], 0, () => {
    order.push(0);
    throw new Error('first');
  });
  e.preadv(fd, [new Uint8Array(1)], 0, () => {
    order.push(1);
    throw new Error('second');
  });
  e.preadv(fd, [new Uint8Array(1)], 0, () => order.push(2));
  e.flush();
  t.throws(() => ring.complete([1, 1, 1]), /first/, 'the first exception is rethrown');
  t.same(order, [0, 1, 2], 'after every completion ran');
  t.equal(e.pending, 0);

  // Capacity reached with nothing queued: requests wait and are pumped on completion.
  const late: number[] = [];
  for (let i = 0; i < 6; i++) e.preadv(fd, [new Uint8Array(1)], 0, () => late.push(i));
  e.flush();
  t.equal(ring.inKernel.length, 4, 'capacity');
  t.equal(e.pending, 6);
  ring.complete([1, 1]);
  t.equal(ring.inKernel.length, 4, 'two more went in at the end of that batch');
  ring.complete([1, 1, 1, 1]);
  t.same(late, [0, 1, 2, 3, 4, 5]);
  t.equal(e.pending, 0);
  e.close();
  t.ok(ring.closed);
});

t.test('UringIoEngine.create reports why the kernel refused', (t) => {
  const refuse = (code: string, errno: number) => () => {
    const err = new Error(`io_uring_setup ${code}`) as SystemError;
    err.code = code;
    err.errno = -errno;
    err.syscall = 'io_uring_setup';
    throw err;
  };
  const eperm = UringIoEngine.createWith(refuse('EPERM', 1));
  t.equal(eperm.engine, null);
  t.match(eperm.reason, /io_uring_setup EPERM.*io_uring_disabled/);
  t.match(UringIoEngine.createWith(refuse('ENOSYS', 38)).reason, /no io_uring/);
  t.throws(() => UringIoEngine.create({ entries: 0 }), RangeError, 'a bad option is not a fallback');
  const real = UringIoEngine.create();
  t.ok(real.engine !== null, `this machine has io_uring (${real.reason})`);
  real.engine?.close();
  t.end();
});
