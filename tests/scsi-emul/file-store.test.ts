import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { FileStore, nodeFsIoEngine, openFileStore, createFileStore } from '../../scsi-emul';
import { RecordingIoEngine } from '../../scsi-emul/testing';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scsi-emul-file-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(dir, `img${n++}`);

/** Large buffers: tap's deep equality is far too slow for megabytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /flags:\s+([0-7]+)/.exec(info);
  if (!m) throw new Error('no flags in fdinfo');
  return parseInt(m[1], 8);
}

function op(store: FileStore, kind: 'read' | 'write' | 'flush', offset = 0, segs: Uint8Array[] = [], len = 0,
  fua = false): Promise<Error | null> {
  return new Promise((resolve) => {
    if (kind === 'read') store.read(offset, segs, len, resolve);
    else if (kind === 'write') store.write(offset, segs, len, fua, resolve);
    else store.flush(resolve);
  });
}

function close(store: FileStore): Promise<Error | null> {
  return new Promise((resolve) => store.close(resolve));
}

t.test('creates a sparse file of the given size, mode 0600', async (t) => {
  const p = fresh();
  const store = openFileStore({ path: p, sizeBytes: 64 << 20 });
  const st = fs.statSync(p);
  t.equal(st.size, 64 << 20);
  t.ok(st.blocks * 512 < 1 << 20, `sparse: ${st.blocks} blocks allocated`);
  t.equal(st.mode & 0o777, 0o600);
  t.equal(store.sizeBytes, 64 << 20);
  t.equal(store.name, p);
  t.equal(store.readOnly, false);
  t.equal(fdFlags(store.fd) & 3, 2, 'O_RDWR');
  t.equal(await close(store), null);
  t.equal(store.fd, -1);
  const again = openFileStore({ path: p });
  t.equal(again.sizeBytes, 64 << 20, 'an existing file is opened at its size');
  await close(again);
  t.equal(openFileStore({ path: p, sizeBytes: 64 << 20 }).sizeBytes, 64 << 20, 'a matching size is fine');
});

t.test('clear errors', (t) => {
  const p = fresh();
  t.throws(() => createFileStore({ path: p }), /does not exist \(give a size to create it\)/);
  t.throws(() => createFileStore({ path: p, sizeBytes: 1 << 20, readOnly: true }), /read-only store cannot create it/);
  t.throws(() => createFileStore({ path: p, sizeBytes: 1000 }), /multiple of 512/);
  t.notOk(fs.existsSync(p), 'nothing was created');
  fs.writeFileSync(p, Buffer.alloc(1000));
  t.throws(() => createFileStore({ path: p }), /multiple of 512/);
  fs.writeFileSync(p, Buffer.alloc(4096));
  t.throws(() => createFileStore({ path: p, sizeBytes: 8192 }), /size is 4096 bytes, not the 8192 configured/);
  fs.writeFileSync(p, Buffer.alloc(0));
  t.throws(() => createFileStore({ path: p }), /multiple of 512/, 'an empty file');
  t.throws(() => createFileStore({ path: dir }), /not a regular file or block device/);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  t.throws(() => createFileStore({ path: fifo }), /not a regular file or block device/, 'a FIFO is refused without blocking');
  t.throws(() => createFileStore({ path: '' }), /non-empty string/);
  t.end();
});

t.test('read-only: opened O_RDONLY, writes refused, reads and flush fine', async (t) => {
  const p = fresh();
  fs.writeFileSync(p, Buffer.alloc(8192, 0x33));
  const store = openFileStore({ path: p, readOnly: true });
  t.equal(store.readOnly, true);
  t.equal(fdFlags(store.fd) & 3, 0, 'O_RDONLY: not even a bug can write');
  t.match(await op(store, 'write', 0, [new Uint8Array(512)], 512), { code: 'EROFS' });
  const buf = new Uint8Array(512);
  t.equal(await op(store, 'read', 512, [buf], 512), null);
  t.same(buf, new Uint8Array(512).fill(0x33));
  t.equal(await op(store, 'flush'), null);
  await close(store);
});

t.test('round trip through node:fs with segments; data lands at the right offset', async (t) => {
  const p = fresh();
  const store = openFileStore({ path: p, sizeBytes: 1 << 20, engine: nodeFsIoEngine });
  const a = new Uint8Array(1000).fill(1);
  const b = new Uint8Array(24).fill(2);
  const c = new Uint8Array(2048).fill(3); // only its first 1024 bytes are within len
  t.equal(await op(store, 'write', 4096, [a, b, c], 2048, true), null);
  const disk = fs.readFileSync(p);
  t.same(disk.subarray(4096, 5096), Buffer.alloc(1000, 1));
  t.same(disk.subarray(5096, 5120), Buffer.alloc(24, 2));
  t.same(disk.subarray(5120, 6144), Buffer.alloc(1024, 3));
  t.same(disk.subarray(6144, 6200), Buffer.alloc(56), 'only len bytes were written');
  const r1 = new Uint8Array(3);
  const r2 = new Uint8Array(2045);
  t.equal(await op(store, 'read', 4096, [r1, r2], 2048), null);
  t.same([...r1], [1, 1, 1]);
  t.equal(r2[996], 1);
  t.equal(r2[997], 2);
  t.equal(r2[2044], 3);
  t.match(await op(store, 'read', (1 << 20) - 512, [new Uint8Array(1024)], 1024), { code: 'ERANGE' });
  t.match(await op(store, 'read', 0, [new Uint8Array(100)], 512), { code: 'EINVAL' });
  t.equal(await op(store, 'read', 0, [], 0), null, 'zero length');
  t.equal(await op(store, 'flush'), null);
  await close(store);
  t.match(await op(store, 'read', 0, [new Uint8Array(512)], 512), { code: 'EBADF' });
  t.match(await op(store, 'flush'), { code: 'EBADF' });
});

t.test('engine contract: dsync for FUA, short transfers continue, EOF is EIO', async (t) => {
  const engine = new RecordingIoEngine({ manual: true });
  const store = openFileStore({ path: fresh(), sizeBytes: 1 << 20, engine });
  const results: (Error | null)[] = [];
  store.write(0, [new Uint8Array(1024)], 1024, true, (e) => results.push(e));
  t.same(engine.events, ['pwritev@0+dsync']);
  engine.calls[0].complete(null, 512);
  t.same(engine.events.slice(-1), ['pwritev@512+dsync'], 'a short write continues where it stopped');
  t.equal(engine.calls[1].len, 512);
  engine.calls[1].complete();
  t.same(results, [null]);

  store.read(0, [new Uint8Array(512), new Uint8Array(512)], 1024, (e) => results.push(e));
  engine.pending()[0].complete(null, 700);
  const cont = engine.pending()[0];
  t.equal(cont.position, 700);
  t.equal(cont.len, 324);
  t.equal(cont.iov.length, 1, 'the remaining iovec starts inside the second segment');
  cont.complete(null, 0);
  t.match(results[1], { code: 'EIO' }, 'end of file (the file shrank): EIO, never a spin');

  store.write(0, [new Uint8Array(512)], 512, false, (e) => results.push(e));
  const err = Object.assign(new Error('disk gone'), { code: 'EIO' });
  engine.pending()[0].complete(err);
  t.equal(results[2], err, 'engine errors are passed through');

  let closed = false;
  store.read(0, [new Uint8Array(512)], 512, (e) => results.push(e));
  const closing = new Promise<Error | null>((resolve) => store.close((e) => {
    closed = true;
    resolve(e);
  }));
  await new Promise((r) => setImmediate(r));
  t.notOk(closed, 'close waits for in-flight I/O');
  t.equal(store.fd >= 0, true, 'the descriptor stays open under the read');
  t.match(await op(store, 'read', 0, [new Uint8Array(512)], 512), { code: 'EBADF' }, 'new I/O is refused');
  engine.pending()[0].complete();
  t.equal(await closing, null);
  t.ok(closed);
  t.equal(store.fd, -1);
});

/** tmpfs (and some other file systems) refuse O_DIRECT at open time with EINVAL. */
function directUnsupported(): string | false {
  const probe = path.join(dir, 'direct-probe');
  fs.writeFileSync(probe, Buffer.alloc(4096));
  try {
    fs.closeSync(fs.openSync(probe, fs.constants.O_RDWR | fs.constants.O_DIRECT));
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') return `the file system under ${dir} does not support O_DIRECT`;
    throw e;
  } finally {
    fs.rmSync(probe);
  }
}

t.test('O_DIRECT with an aligned bounce buffer for unaligned memory', { skip: directUnsupported() }, async (t) => {
  const p = fresh();
  const store = openFileStore({ path: p, sizeBytes: 4 << 20, direct: true });
  t.equal(fdFlags(store.fd) & 0o40000, 0o40000, 'opened with O_DIRECT');
  const backing = new Uint8Array(3 * (1 << 20) + 1);
  const unaligned = backing.subarray(1); // byteOffset 1: never DMA-able
  for (let i = 0; i < unaligned.length; i++) unaligned[i] = (i * 31 + 7) & 0xff;
  const len = 2 * (1 << 20) + 4096; // more than one bounce chunk
  t.equal(await op(store, 'write', 8192, [unaligned], len, true), null);
  t.ok(store.bounceCount >= 1, 'went through the bounce buffer');
  const disk = fs.readFileSync(p);
  t.ok(sameBytes(disk.subarray(8192, 8192 + len), unaligned.subarray(0, len)), 'the file holds the data');
  const back = new Uint8Array(len + 1).subarray(1);
  const before = store.bounceCount;
  t.equal(await op(store, 'read', 8192, [back], len), null);
  t.equal(store.bounceCount, before + 1);
  t.ok(sameBytes(back, unaligned.subarray(0, len)), 'read back through the bounce buffer');
  const odd = [new Uint8Array(100), new Uint8Array(412)];
  t.equal(await op(store, 'read', 8192, odd, 512), null, 'segment lengths not sector multiples');
  t.same(odd[0], unaligned.subarray(0, 100));
  t.same(odd[1], unaligned.subarray(100, 512));
  t.equal(await op(store, 'flush'), null);
  await close(store);
});

/** A readable block device with a nonzero size, if this machine has one we may open read-only. */
function someBlockDevice(): { dev: string; bytes: number } | null {
  let names: string[];
  try {
    names = fs.readdirSync('/sys/block');
  } catch {
    return null;
  }
  for (const name of names) {
    const dev = `/dev/${name}`;
    try {
      const sectors = Number(fs.readFileSync(`/sys/block/${name}/size`, 'utf8').trim());
      if (!(sectors > 0) || !fs.statSync(dev).isBlockDevice()) continue;
      fs.closeSync(fs.openSync(dev, 'r'));
      return { dev, bytes: sectors * 512 };
    } catch {
      continue;
    }
  }
  return null;
}

const bdev = someBlockDevice();
t.test('a block device: size from sysfs, opened O_RDONLY', { skip: bdev === null ? 'no readable block device' : false }, async (t) => {
  const store = openFileStore({ path: bdev!.dev, readOnly: true });
  t.equal(store.sizeBytes, bdev!.bytes);
  t.equal(fdFlags(store.fd) & 3, 0);
  t.throws(() => openFileStore({ path: bdev!.dev, readOnly: true, sizeBytes: bdev!.bytes + 512 }), /configured/);
  t.equal(await close(store), null);
});

/** An engine with synchronous variants over node:fs, counting which path each I/O took. */
class SyncCountingEngine extends RecordingIoEngine {
  syncCalls: string[] = [];
  failNext: NodeJS.ErrnoException | null = null;
  shortNext = 0;
  constructor() { super({ manual: false, delegate: nodeFsIoEngine }); }
  preadvSync(fd: number, iov: readonly Uint8Array[], position: number): number {
    this.syncCalls.push(`preadv@${position}`);
    return this.run(() => fs.readvSync(fd, iov as Uint8Array[], position), iov);
  }
  pwritevSync(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean): number {
    this.syncCalls.push(`pwritev@${position}${dsync ? '+dsync' : ''}`);
    return this.run(() => fs.writevSync(fd, iov as Uint8Array[], position), iov);
  }
  private run(io: () => number, iov: readonly Uint8Array[]): number {
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    if (this.shortNext > 0) {
      // Move only the first shortNext bytes (the store must continue from there).
      const n = this.shortNext;
      this.shortNext = 0;
      return this.partialIo!(iov[0].subarray(0, n));
    }
    return io();
  }
  partialIo: ((v: Uint8Array) => number) | null = null;
}

const shmDir = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/scsi-emul-file-') : null;
if (shmDir !== null) t.teardown(() => fs.rmSync(shmDir, { recursive: true, force: true }));
const onTmpfs = shmDir !== null && fs.statfsSync(shmDir).type === 0x01021994;

t.test('io=auto runs a tmpfs file inline: completion before read() returns, no thread hand-off', { skip: onTmpfs ? false : 'no tmpfs at /dev/shm' }, async (t) => {
  const engine = new SyncCountingEngine();
  const store = openFileStore({ path: path.join(shmDir!, 'inline.img'), sizeBytes: 1 << 20, engine });
  t.equal(store.inline, true);
  const data = new Uint8Array(4096).fill(0x5a);
  let done: Error | null | undefined;
  store.write(8192, [data], 4096, true, (err) => { done = err; });
  t.equal(done, null, 'the write completed synchronously');
  const back = new Uint8Array(4096);
  done = undefined;
  store.read(8192, [back], 4096, (err) => { done = err; });
  t.equal(done, null, 'the read completed synchronously');
  t.equal(back[0], 0x5a);
  t.equal(back[4095], 0x5a);
  t.same(engine.syncCalls, ['pwritev@8192+dsync', 'preadv@8192'], 'FUA reaches the engine as dsync');
  t.same(engine.events, [], 'the asynchronous path was never used');
  // Errors thrown by the synchronous call reach the callback, and the store stays usable.
  const eio = Object.assign(new Error('preadv EIO'), { code: 'EIO', errno: -5, syscall: 'preadv' });
  engine.failNext = eio;
  done = undefined;
  store.read(0, [back], 4096, (err) => { done = err; });
  t.equal(done, eio);
  // A short transfer continues from where it stopped.
  const fd = store.fd;
  engine.shortNext = 1000;
  engine.partialIo = (v) => fs.readvSync(fd, [v], 8192);
  done = undefined;
  const again = new Uint8Array(4096);
  store.read(8192, [again], 4096, (err) => { done = err; });
  t.equal(done, null);
  t.same(engine.syncCalls.slice(-2), ['preadv@8192', 'preadv@9192'], 'continued at +1000');
  t.equal(again[999], 0x5a);
  t.equal(again[1000], 0x5a);
  t.equal(again[4095], 0x5a);
  await close(store);
});

t.test('io=auto keeps a disk-backed file asynchronous; io=async and io=inline force the choice', async (t) => {
  const engine = new SyncCountingEngine();
  const diskBacked = fs.statfsSync(dir).type !== 0x01021994 && fs.statfsSync(dir).type !== 0x858458f6;
  const auto = openFileStore({ path: fresh(), sizeBytes: 1 << 20, engine });
  t.equal(auto.inline, !diskBacked, `auto on ${dir}`);
  await close(auto);
  if (onTmpfs) {
    const forcedAsync = openFileStore({ path: path.join(shmDir!, 'async.img'), sizeBytes: 1 << 20, engine, io: 'async' });
    t.equal(forcedAsync.inline, false);
    t.equal(await op(forcedAsync, 'write', 0, [new Uint8Array(512).fill(7)], 512), null);
    t.same(engine.syncCalls, [], 'io=async: never the synchronous variants');
    t.same(engine.events, ['pwritev@0', 'done pwritev@0']);
    await close(forcedAsync);
  }
  const forcedInline = openFileStore({ path: fresh(), sizeBytes: 1 << 20, engine, io: 'inline' });
  t.equal(forcedInline.inline, true);
  await close(forcedInline);
  t.throws(() => openFileStore({ path: fresh(), sizeBytes: 1 << 20, engine: nodeFsIoEngine, io: 'inline' }),
    /io=inline needs an engine with synchronous I\/O/);
  const noSync = openFileStore({ path: fresh(), sizeBytes: 1 << 20, engine: nodeFsIoEngine });
  t.equal(noSync.inline, false, 'auto without synchronous variants: asynchronous');
  await close(noSync);
});
