// The native addon through its typed facade: sockets with SCM_RIGHTS, memfd
// and mmap with deferred unmaps, eventfd, the libuv poller, and the vectored
// I/O engine. Literal errno values are Linux x86-64/arm64 asm-generic ones
// (EBADF 9, EINVAL 22, EEXIST 17, EPERM 1, EMSGSIZE 90, ENAMETOOLONG 36,
// EADDRINUSE 98).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { isSystemError, native } from '../../backend/native';
import { throwsLike } from './throws-like';
import type { SystemError } from '../../backend/native';

const PAGE = 4096;
const addonPath = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'vhost_scsi_native.node');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhs-native-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Children run plain node: the test runner injects its --import hooks into
// spawned node processes (NODE_OPTIONS), and those would also count against
// a child's fd limit; the shell drops them.
function spawnPlainNode(prefix: string[], args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$@"', 'sh', ...prefix, process.execPath, ...args], {
    encoding: 'utf8',
    timeout: 30000,
  });
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function sysErr(code: string, errno: number, syscall: string): Record<string, unknown> {
  return { code, errno, syscall, message: new RegExp(`^${syscall} ${code}`) };
}

function preadvP(fd: number, iov: Uint8Array[], pos: number): Promise<number> {
  return new Promise((resolve, reject) =>
    native.preadv(fd, iov, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}
function pwritevP(fd: number, iov: Uint8Array[], pos: number, flags: number): Promise<number> {
  return new Promise((resolve, reject) =>
    native.pwritev(fd, iov, pos, flags, (err, n) => (err ? reject(err) : resolve(n))),
  );
}
function ioResult(
  start: (cb: (err: SystemError | null, n: number) => void) => void,
): Promise<{ err: SystemError | null; n: number }> {
  return new Promise((resolve) => start((err, n) => resolve({ err, n })));
}

t.test('socketpair: send/recv with 0, 1 and 3 fds, EAGAIN, EOF', async (t) => {
  const [a, b] = native.socketpair();
  t.teardown(() => {
    native.close(a);
  });
  const buf = new Uint8Array(64);
  const fds: number[] = [];

  t.equal(native.recvmsg(b, buf, 0, buf.length, fds), -1, 'nothing queued: EAGAIN is -1');

  // 0 fds
  const hello = Buffer.from('hello');
  t.equal(native.sendmsg(a, hello, 0, hello.length), 5, 'sent 5 bytes');
  t.equal(native.recvmsg(b, buf, 10, 20, fds), 5, 'received 5 bytes');
  t.same(Buffer.from(buf.subarray(10, 15)), hello, 'bytes land at the offset');
  t.same(fds, [], 'no fds');

  // 1 fd: an eventfd usable through the received descriptor
  const efd = native.eventfd(0, true);
  t.equal(native.sendmsg(a, Buffer.from([0xaa]), 0, 1, [efd]), 1);
  t.equal(native.recvmsg(b, buf, 0, buf.length, fds), 1);
  t.equal(buf[0], 0xaa);
  t.equal(fds.length, 1, 'one fd received');
  const efd2 = fds[0];
  t.not(efd2, efd, 'a new descriptor number');
  native.eventfdWrite(efd2, 5);
  t.equal(native.eventfdRead(efd), 5, 'received eventfd is the same counter');

  // 3 fds: eventfd, memfd, and the eventfd again, pushed after existing entries
  const mfd = native.memfdCreate('vhs-test', PAGE);
  const map = native.mmap(mfd, 0n, PAGE);
  new Uint8Array(map).set([1, 2, 3, 4], 100);
  const payload = Buffer.from('three');
  t.equal(native.sendmsg(a, payload, 0, payload.length, [efd, mfd, efd]), 5);
  t.equal(native.recvmsg(b, buf, 0, buf.length, fds), 5);
  t.equal(fds.length, 4, 'three more fds appended to fdsOut');
  const [, rEfd, rMfd, rEfd2] = fds;
  t.equal(native.fileSize(rMfd), BigInt(PAGE), 'received memfd has its size');
  const map2 = native.mmap(rMfd, 0n, PAGE);
  t.same([...new Uint8Array(map2, 100, 4)], [1, 2, 3, 4], 'received memfd maps the same pages');
  native.eventfdWrite(rEfd, 2);
  native.eventfdWrite(rEfd2, 3);
  t.equal(native.eventfdRead(efd), 5, 'both received eventfd copies work');
  native.munmap(map);
  native.munmap(map2);

  // Received fds are close-on-exec (MSG_CMSG_CLOEXEC).
  const fdinfo = fs.readFileSync(`/proc/self/fdinfo/${rMfd}`, 'utf8');
  const flags = parseInt(/flags:\s+([0-7]+)/.exec(fdinfo)![1], 8);
  t.ok(flags & 0o2000000, 'O_CLOEXEC set on received fd');

  for (const fd of [...fds, efd, mfd]) native.close(fd);

  // EAGAIN on a full socket buffer is -1, not an exception.
  const big = new Uint8Array(1 << 16);
  let sent = 0;
  let r = 0;
  for (let i = 0; i < 10000 && (r = native.sendmsg(a, big, 0, big.length)) > 0; i++) sent += r;
  t.equal(r, -1, 'sendmsg on a full socket returns -1');
  t.ok(sent > 0, 'some bytes were queued first');

  // EOF: drain, then the peer closes.
  native.close(b);
  // (b is closed; a sees EPIPE on send, and a fresh pair shows EOF as 0)
  throwsLike(t, () => native.sendmsg(a, big, 0, 1), Error, sysErr('EPIPE', -32, 'sendmsg'), 'send to a closed peer');
  const [c, d] = native.socketpair();
  native.close(d);
  t.equal(native.recvmsg(c, buf, 0, buf.length, fds), 0, 'EOF is 0');
  native.close(c);
});

t.test('sendmsg/recvmsg: SCM_MAX_FD (253) fds in one message', (t) => {
  const [a, b] = native.socketpair();
  const e = native.eventfd(0, true);
  const before = openFds();
  t.equal(native.sendmsg(a, Buffer.from('m'), 0, 1, new Array(253).fill(e)), 1);
  const fds: number[] = [];
  t.equal(native.recvmsg(b, new Uint8Array(4), 0, 4, fds), 1);
  t.equal(fds.length, 253, 'all 253 received, none truncated');
  t.equal(new Set(fds).size, 253, 'each a distinct descriptor');
  t.equal(openFds(), before + 253);
  for (const fd of fds) native.close(fd);
  for (const fd of [a, b, e]) native.close(fd);
  t.end();
});

t.test('recvmsg: MSG_CTRUNC closes every received fd and throws ECTRUNC', (t) => {
  // Lower RLIMIT_NOFILE in a child so the kernel can install only some of
  // the passed fds and reports MSG_CTRUNC (net/core/scm.c scm_detach_fds).
  const script = `
    const fs = require('fs');
    const n = require(${JSON.stringify(addonPath)});
    const [a, b] = n.socketpair();
    const e = n.eventfd(0, true);
    const open = () => fs.readdirSync('/proc/self/fd').length;
    // readdirSync itself briefly holds one fd; the limit leaves 3 free slots.
    const before = open();
    n.sendmsg(a, Buffer.from('x'), 0, 1, new Array(20).fill(e));
    const fds = [];
    let err = null;
    try { n.recvmsg(b, new Uint8Array(8), 0, 8, fds); } catch (x) { err = x; }
    console.log(JSON.stringify({ code: err && err.code, errno: err && err.errno, syscall: err && err.syscall,
      message: err && err.message, fds, leaked: open() - before }));
  `;
  const file = path.join(tmp, 'ctrunc.js');
  fs.writeFileSync(file, script);
  // Count the fds a bare node process uses to choose a limit just above it.
  const probe = spawnPlainNode([], ['-e', "console.log(require('fs').readdirSync('/proc/self/fd').length)"]);
  const baseline = parseInt(String(probe.stdout), 10);
  t.ok(baseline > 0, `a bare node uses ${baseline} fds`);
  // Headroom for the socketpair, the eventfd, the addon's file and libuv.
  const limit = baseline + 8;
  const res = spawnPlainNode(['prlimit', `--nofile=${limit}`], [file]);
  t.equal(res.status, 0, `child ran: ${String(res.stderr)}`);
  const out = JSON.parse(String(res.stdout)) as Record<string, unknown>;
  t.match(out, { code: 'ECTRUNC', errno: -90, syscall: 'recvmsg', message: 'recvmsg ECTRUNC' }, 'ECTRUNC error');
  t.same(out.fds, [], 'no fd handed out');
  t.equal(out.leaked, 0, 'every fd received in that call was closed');
  t.end();
});

t.test('recvmsg: fdsOut that refuses elements gets none and leaks none', (t) => {
  const [a, b] = native.socketpair();
  const e = native.eventfd(0, true);
  const before = openFds();
  native.sendmsg(a, Buffer.from('x'), 0, 1, [e, e]);
  const frozen: number[] = Object.freeze([]) as unknown as number[];
  throwsLike(
    t,
    () => native.recvmsg(b, new Uint8Array(4), 0, 4, frozen),
    TypeError,
    { code: 'ERR_INVALID_ARG_VALUE' },
    'frozen fdsOut',
  );
  t.equal(openFds(), before, 'both received fds were closed');
  for (const fd of [a, b, e]) native.close(fd);
  t.end();
});

t.test('listenUnix: 0600 socket, accept/connect, peer credentials', (t) => {
  const sock = path.join(tmp, 'vhost.sock');
  const umaskBefore = process.umask();
  const lfd = native.listenUnix(sock, 4);
  t.equal(process.umask(), umaskBefore, 'umask restored');
  const st = fs.statSync(sock);
  t.ok(st.isSocket(), 'a socket exists at the path');
  t.equal(st.mode & 0o777, 0o600, 'mode 0600');

  t.equal(native.accept(lfd), -1, 'no pending connection: -1');
  const cfd = native.connectUnix(sock);
  const sfd = native.accept(lfd);
  t.ok(sfd >= 0, 'accepted');
  const flags = parseInt(/flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${sfd}`, 'utf8'))![1], 8);
  t.ok(flags & 0o4000, 'accepted fd is O_NONBLOCK');
  t.ok(flags & 0o2000000, 'accepted fd is O_CLOEXEC');
  const cflags = parseInt(/flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${cfd}`, 'utf8'))![1], 8);
  t.ok(cflags & 0o4000, 'connected fd is O_NONBLOCK');

  t.same(native.peerCredentials(sfd), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  t.same(native.peerCredentials(cfd), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });

  t.equal(native.sendmsg(cfd, Buffer.from('ping'), 0, 4), 4);
  const buf = new Uint8Array(4);
  t.equal(native.recvmsg(sfd, buf, 0, 4, []), 4);
  t.equal(Buffer.from(buf).toString(), 'ping');

  throwsLike(t, () => native.listenUnix(sock, 4), Error, { ...sysErr('EADDRINUSE', -98, 'bind'), path: sock }, 'path exists');
  const long = path.join(tmp, 'x'.repeat(120));
  throwsLike(t, () => native.listenUnix(long, 4), Error, sysErr('ENAMETOOLONG', -36, 'bind'), 'path too long for sun_path');
  throwsLike(t, () => native.listenUnix('', 4), TypeError, { code: 'ERR_INVALID_ARG_VALUE' }, 'empty path (abstract namespace)');
  throwsLike(t, () => native.listenUnix('\0abstract', 4), TypeError, { code: 'ERR_INVALID_ARG_VALUE' }, 'NUL in path');
  throwsLike(t, () => native.listenUnix(sock + '2', -1), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'negative backlog');
  t.notOk(fs.existsSync(sock + '2'), 'nothing created on a rejected call');
  throwsLike(t, () => native.connectUnix(path.join(tmp, 'nobody.sock')), Error, sysErr('ENOENT', -2, 'connect'), 'connect to nothing');
  throwsLike(t, () => native.peerCredentials(native.memfdCreate('x', 0)), Error, sysErr('ENOTSOCK', -88, 'getsockopt'), 'peer credentials of a non-socket');

  for (const fd of [cfd, sfd, lfd]) native.close(fd);
  t.end();
});

t.test('close and dup', (t) => {
  const e = native.eventfd(0, true);
  const d = native.dup(e);
  t.not(d, e);
  native.eventfdWrite(d, 7);
  t.equal(native.eventfdRead(e), 7, 'dup shares the counter');
  native.close(d);
  native.close(e);
  throwsLike(t, () => native.close(e), Error, sysErr('EBADF', -9, 'close'), 'double close');
  throwsLike(t, () => native.dup(e), Error, sysErr('EBADF', -9, 'fcntl'), 'dup of a closed fd');
  t.end();
});

t.test('memfd + mmap: two mappings share pages; munmap detaches; errors', (t) => {
  const base = native.mappingCount();
  const fd = native.memfdCreate('guest-ram', 4 * PAGE);
  t.equal(native.fileSize(fd), BigInt(4 * PAGE), 'ftruncate applied');
  const m1 = native.mmap(fd, 0n, 4 * PAGE);
  const m2 = native.mmap(fd, BigInt(2 * PAGE), 2 * PAGE);
  t.equal(m1.byteLength, 4 * PAGE);
  t.equal(native.mappingCount(), base + 2, 'two live mappings');
  const v1 = new Uint8Array(m1);
  v1[2 * PAGE + 17] = 0x5a;
  t.equal(new Uint8Array(m2)[17], 0x5a, 'write via one mapping is visible in the other at offset 2 pages');

  const view = new Uint8Array(m1, PAGE, 16);
  native.munmap(m1);
  t.equal(m1.byteLength, 0, 'ArrayBuffer detached');
  t.equal(view.byteLength, 0, 'views detached too');
  t.equal(native.mappingCount(), base + 1, 'mapping count dropped');
  native.munmap(m1);
  t.equal(native.mappingCount(), base + 1, 'munmap is idempotent');
  throwsLike(t, () => native.munmap(new ArrayBuffer(8)), TypeError, { code: 'ERR_INVALID_ARG_VALUE' }, 'foreign ArrayBuffer');
  throwsLike(t, () => native.munmap(new Uint8Array(8) as unknown as ArrayBuffer), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }, 'not an ArrayBuffer');

  throwsLike(t, () => native.mmap(fd, 1n, PAGE), Error, sysErr('EINVAL', -22, 'mmap'), 'unaligned offset');
  throwsLike(t, () => native.mmap(fd, 512n, PAGE), Error, sysErr('EINVAL', -22, 'mmap'), 'offset 512');
  throwsLike(t, () => native.mmap(fd, BigInt(2 * PAGE), 2 * PAGE + 1), Error, sysErr('EINVAL', -22, 'mmap'), 'range past EOF (would SIGBUS)');
  const closed = native.dup(fd);
  native.close(closed);
  throwsLike(t, () => native.mmap(closed, 0n, PAGE), Error, sysErr('EBADF', -9, 'mmap'), 'bad fd');
  throwsLike(t, () => native.mmap(fd, 0n, 0), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'zero length');
  throwsLike(t, () => native.mmap(fd, -4096n, PAGE), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'negative offset');
  throwsLike(t, () => native.mmap(fd, 1n << 64n, PAGE), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'offset >= 2^64');
  throwsLike(t, () => native.mmap(fd, 0 as unknown as bigint, PAGE), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }, 'offset must be a bigint');
  throwsLike(t, () => native.mmap(fd, 0n, 2 ** 32 + PAGE), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'length above the external ArrayBuffer limit');
  throwsLike(t, () => native.memfdCreate('a\0b', 0), TypeError, { code: 'ERR_INVALID_ARG_VALUE' }, 'NUL in memfd name');
  throwsLike(t, () => native.memfdCreate('x', -1), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'negative memfd size');

  native.munmap(m2);
  t.equal(native.mappingCount(), base, 'all unmapped');
  native.close(fd);
  t.end();
});

t.test('an unreferenced mapping is unmapped by its finalizer', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const base = native.mappingCount();
  const fd = native.memfdCreate('gc', PAGE);
  (() => {
    native.mmap(fd, 0n, PAGE);
  })();
  t.equal(native.mappingCount(), base + 1);
  // Finalizers of external buffers run from an immediate after the GC.
  for (let i = 0; i < 100 && native.mappingCount() !== base; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  t.equal(native.mappingCount(), base, 'finalizer unmapped it');
  native.close(fd);
});

t.test('eventfd: write/read/EAGAIN, clamping, full counter', (t) => {
  const e = native.eventfd(3, true);
  t.equal(native.eventfdRead(e), 3, 'initial value');
  t.equal(native.eventfdRead(e), 0, 'EAGAIN reads as 0');
  native.eventfdWrite(e, 1);
  native.eventfdWrite(e, 2);
  t.equal(native.eventfdRead(e), 3, 'writes add up');
  native.eventfdWrite(e, Number.MAX_SAFE_INTEGER);
  native.eventfdWrite(e, Number.MAX_SAFE_INTEGER);
  t.equal(native.eventfdRead(e), Number.MAX_SAFE_INTEGER, 'counter above 2^53-1 is clamped');
  // Fill the counter to its maximum 0xfffffffffffffffe: further writes
  // would block (EAGAIN); they are ignored.
  for (let i = 0; i < 2100; i++) native.eventfdWrite(e, Number.MAX_SAFE_INTEGER);
  t.equal(native.eventfdRead(e), Number.MAX_SAFE_INTEGER, 'full counter read back (clamped)');
  t.equal(native.eventfdRead(e), 0, 'drained');
  native.close(e);

  // A blocking eventfd (as a hostile frontend might pass) never parks the
  // event loop: reading an empty counter and notifying a full one return.
  const b = native.eventfd(0, false);
  t.equal(native.eventfdRead(b), 0, 'blocking eventfd with counter 0 reads 0 without waiting');
  // 2048 * (2^53 - 1) + 2046 = 2^64 - 2, the largest counter value (eventfd(2)).
  for (let i = 0; i < 2048; i++) native.eventfdWrite(b, Number.MAX_SAFE_INTEGER);
  native.eventfdWrite(b, 2046);
  native.eventfdWrite(b, 1);
  t.pass('a notification to a full blocking eventfd returns');
  t.equal(native.eventfdRead(b), Number.MAX_SAFE_INTEGER, 'counter was full (clamped)');
  t.equal(native.eventfdRead(b), 0, 'and is drained by the read');
  native.close(b);

  throwsLike(t, () => native.eventfd(2 ** 32, true), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'initial above u32');
  throwsLike(t, () => native.eventfd(0, 1 as unknown as boolean), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }, 'nonblock must be boolean');
  throwsLike(t, () => native.eventfdWrite(0x7fffffff, 1), Error, sysErr('EBADF', -9, 'write'), 'write to a bad fd');
  throwsLike(t, () => native.eventfdWrite(e, -1), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'negative value');
  const mfd = native.memfdCreate('not-eventfd', 4);
  throwsLike(t, () => native.eventfdRead(mfd), Error, sysErr('EINVAL', -22, 'read'), 'short read of a non-eventfd');
  native.close(mfd);
  t.end();
});

t.test('Poller: readability, stop, close inside the callback, errors', async (t) => {
  const e = native.eventfd(0, true);
  const seen: Array<[number, number]> = [];
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => (resolveFirst = r));
  const p = native.createPoller(e, (status, events) => {
    seen.push([status, events]);
    native.eventfdRead(e);
    resolveFirst();
  });
  p.start(1);
  native.eventfdWrite(e, 1);
  await first;
  t.same(seen, [[0, 1]], 'callback(0, READABLE)');

  // Stopped: a readable fd does not fire. A sentinel poller on another
  // readable fd shows a loop iteration passed.
  p.stop();
  p.stop();
  native.eventfdWrite(e, 1);
  const s = native.eventfd(1, true);
  await new Promise<void>((resolve) => {
    const sentinel = native.createPoller(s, () => {
      sentinel.close();
      resolve();
    });
    sentinel.start(1);
  });
  t.equal(seen.length, 1, 'stopped poller did not fire');
  native.close(s);

  // Restart: the pending readability is reported; close() inside the
  // callback, twice, and the handle is released without a crash.
  let calls = 0;
  const closedInside = new Promise<void>((resolve) => {
    const q = native.createPoller(native.dup(e), () => {
      calls++;
      q.close();
      q.close();
      resolve();
    });
    q.start(1);
  });
  await closedInside;
  t.equal(calls, 1, 'closed from inside its own callback');

  p.start(3);
  p.start(1); // re-callable
  p.close();
  p.close();
  throwsLike(t, () => p.start(1), TypeError, { code: 'ERR_INVALID_STATE' }, 'start after close');
  throwsLike(t, () => native.createPoller(e, 'x' as unknown as () => void), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }, 'callback type');

  // After close the fd can be polled again, by a new poller.
  const again = native.createPoller(e, () => undefined);
  throwsLike(t, () => native.createPoller(e, () => undefined), Error, sysErr('EEXIST', -17, 'uv_poll_init'), 'second poller on one fd');
  throwsLike(t, () => again.start(0), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'events 0');
  throwsLike(t, () => again.start(4), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'events 4');
  again.close();

  // Writability on a socket.
  const [a, b] = native.socketpair();
  const w = await new Promise<[number, number]>((resolve) => {
    const pw = native.createPoller(a, (status, events) => {
      pw.close();
      resolve([status, events]);
    });
    pw.start(2);
  });
  t.same(w, [0, 2], 'callback(0, WRITABLE)');
  native.close(a);
  native.close(b);

  const file = path.join(tmp, 'regular');
  fs.writeFileSync(file, 'x');
  const rfd = fs.openSync(file, 'r');
  throwsLike(t, () => native.createPoller(rfd, () => undefined), Error, sysErr('EPERM', -1, 'uv_poll_init'), 'regular files cannot be polled');
  fs.closeSync(rfd);
  throwsLike(t, () => native.createPoller(-1, () => undefined), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'negative fd');
  native.close(e);
});

t.test('an exception thrown by a poller callback reaches uncaughtException', async (t) => {
  const e = native.eventfd(1, true);
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const caught = await new Promise<unknown>((resolve) => {
    process.once('uncaughtException', resolve);
    const p = native.createPoller(e, () => {
      p.close();
      throw new Error('boom from poller');
    });
    p.start(1);
  });
  for (const l of listeners) process.on('uncaughtException', l);
  t.match(caught, { message: 'boom from poller' });
  native.close(e);
});

t.test('an open poller is not garbage collected behind its owner', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const e = native.eventfd(0, true);
  const fired = new Promise<number>((resolve) => {
    // No reference to the poller survives this function.
    const p = native.createPoller(e, (status) => {
      p.close();
      resolve(status);
    });
    p.start(1);
  });
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  throwsLike(t, () => native.createPoller(e, () => undefined), Error, sysErr('EEXIST', -17, 'uv_poll_init'), 'still open after GC');
  native.eventfdWrite(e, 1);
  t.equal(await fired, 0, 'and its callback still fires');
  const again = native.createPoller(e, () => undefined);
  t.pass('closed: the fd can be polled again');
  again.close();
  native.close(e);
});

t.test('an exception thrown by an I/O callback reaches uncaughtException', async (t) => {
  const fd = native.memfdCreate('throw', 0);
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const caught = await new Promise<unknown>((resolve) => {
    process.once('uncaughtException', resolve);
    native.fdatasync(fd, () => {
      throw new Error('boom from io');
    });
  });
  // The engine keeps delivering completions after a throwing callback.
  const second = await new Promise<number>((resolve) => native.preadv(fd, [new Uint8Array(4)], 0, (_e, n) => resolve(n)));
  for (const l of listeners) process.on('uncaughtException', l);
  t.match(caught, { message: 'boom from io' });
  t.equal(second, 0, 'later completions still delivered');
  native.close(fd);
});

t.test('preadv/pwritev/fdatasync round trip, guest-memory views, zero copy', async (t) => {
  const file = path.join(tmp, 'disk.img');
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => fs.closeSync(fd));
  const base = native.mappingCount();
  const mfd = native.memfdCreate('guest', 4 * PAGE);
  const ram = native.mmap(mfd, 0n, 4 * PAGE);
  const copiedBefore = native.copiedBytes();

  // Four iovecs: two into guest memory (one page-crossing), a Buffer, a plain Uint8Array.
  const g = new Uint8Array(ram);
  for (let i = 0; i < g.length; i++) g[i] = (i * 7) & 0xff;
  const src = [
    new Uint8Array(ram, 100, 300),
    new Uint8Array(ram, PAGE - 50, 200),
    Buffer.alloc(5, 0xee),
    new Uint8Array([1, 2, 3]),
    new Uint8Array(0), // skipped
  ];
  const total = 300 + 200 + 5 + 3;
  t.equal(await pwritevP(fd, src, 1000, 0), total, 'pwritev wrote every byte');
  t.equal(await pwritevP(fd, [new Uint8Array([9, 9])], 1000 + total, 1), 2, 'RWF_DSYNC write');
  t.same(await ioResult((cb) => native.fdatasync(fd, cb)), { err: null, n: 0 }, 'fdatasync');

  const onDisk = fs.readFileSync(file);
  t.equal(onDisk.length, 1000 + total + 2);
  t.same(onDisk.subarray(1000, 1300), Buffer.from(g.subarray(100, 400)), 'iovec 0 on disk');
  t.same(onDisk.subarray(1300, 1500), Buffer.from(g.subarray(PAGE - 50, PAGE + 150)), 'iovec 1 on disk');
  t.same([...onDisk.subarray(1500, 1510)], [0xee, 0xee, 0xee, 0xee, 0xee, 1, 2, 3, 9, 9], 'iovecs 2, 3 and the DSYNC write');

  // Read back into guest memory at other places, split differently.
  const dst = [new Uint8Array(ram, 2 * PAGE, 10), new Uint8Array(ram, 3 * PAGE + 7, total - 10)];
  t.equal(await preadvP(fd, dst, 1000), total, 'preadv filled every byte');
  t.same(Buffer.concat([Buffer.from(dst[0]), Buffer.from(dst[1])]), onDisk.subarray(1000, 1000 + total), 'round trip');

  // EOF: a read past the end reports the bytes before EOF.
  const tail = new Uint8Array(100);
  t.equal(await preadvP(fd, [tail], 1000 + total - 8), 10, 'short at EOF');
  t.equal(await preadvP(fd, [tail], 1 << 20), 0, 'entirely past EOF reads 0');

  // Synchronous variants.
  const s1 = new Uint8Array(ram, 0, 16);
  s1.fill(0x42);
  t.equal(native.pwritevSync(fd, [s1, new Uint8Array([7])], 5000, 0), 17);
  t.equal(native.pwritevSync(fd, [s1], 6000, 1), 16, 'sync RWF_DSYNC');
  const r1 = new Uint8Array(ram, PAGE, 17);
  t.equal(native.preadvSync(fd, [r1], 5000), 17);
  t.same([...r1], [...new Array(16).fill(0x42), 7], 'sync round trip');
  t.equal(native.preadvSync(fd, [new Uint8Array(32)], 6000), 16, 'sync short read at EOF');

  t.equal(native.copiedBytes() - copiedBefore, 0, 'no byte was copied by the addon');
  t.equal(copiedBefore, 0, 'no byte was ever copied by the addon');

  // I/O errors arrive as system errors in the callback.
  const ro = fs.openSync(file, 'r');
  const werr = await ioResult((cb) => native.pwritev(ro, [new Uint8Array(1)], 0, 0, cb));
  t.match(werr, { err: sysErr('EBADF', -9, 'pwritev'), n: 0 }, 'pwritev on a read-only fd');
  const dserr = await ioResult((cb) => native.pwritev(ro, [new Uint8Array(1)], 0, 1, cb));
  t.match(dserr, { err: sysErr('EBADF', -9, 'pwritev2'), n: 0 }, 'RWF_DSYNC pwritev2 on a read-only fd');
  fs.closeSync(ro);
  const closed = native.dup(fd);
  native.close(closed);
  const rerr = await ioResult((cb) => native.preadv(closed, [new Uint8Array(1)], 0, cb));
  t.match(rerr, { err: sysErr('EBADF', -9, 'preadv'), n: 0 }, 'preadv on a closed fd');
  t.ok(isSystemError(rerr.err), 'isSystemError recognises it');
  const serr = await ioResult((cb) => native.fdatasync(closed, cb));
  t.match(serr, { err: sysErr('EBADF', -9, 'fdatasync') }, 'fdatasync on a closed fd');
  throwsLike(t, () => native.preadvSync(closed, [new Uint8Array(1)], 0), Error, sysErr('EBADF', -9, 'preadv'), 'preadvSync on a closed fd');

  // Many requests at once, completing in any order, all accounted for.
  const many: Promise<number>[] = [];
  for (let i = 0; i < 64; i++) {
    many.push(pwritevP(fd, [new Uint8Array(ram, i * 64, 64)], 10000 + i * 64, 0));
  }
  t.same(await Promise.all(many), new Array(64).fill(64), '64 concurrent writes');
  t.same(fs.readFileSync(file).subarray(10000, 10000 + 4096), Buffer.from(g.subarray(0, 4096)), 'all landed');

  native.munmap(ram);
  native.close(mfd);
  t.equal(native.mappingCount(), base, 'no mapping left behind');
});

t.test('munmap while a preadv into the mapping is in flight defers the unmap', async (t) => {
  const file = path.join(tmp, 'defer.img');
  fs.writeFileSync(file, Buffer.alloc(2 * PAGE, 0x77));
  const fd = fs.openSync(file, 'r');
  const base = native.mappingCount();
  const mfd = native.memfdCreate('defer', 2 * PAGE);
  const ram = native.mmap(mfd, 0n, 2 * PAGE);
  const view = new Uint8Array(ram, PAGE, PAGE);

  let countInCallback = -1;
  const done = ioResult((cb) =>
    native.preadv(fd, [view], 0, (err, n) => {
      countInCallback = native.mappingCount();
      cb(err, n);
    }),
  );
  // The completion cannot be delivered before we yield, so this munmap
  // always races an in-flight request.
  native.munmap(ram);
  t.equal(ram.byteLength, 0, 'detached immediately');
  t.equal(view.byteLength, 0, 'JS can no longer reach the pages');
  t.equal(native.mappingCount(), base + 1, 'unmap deferred while the read is in flight');
  native.munmap(ram);
  t.equal(native.mappingCount(), base + 1, 'a second munmap changes nothing');

  const r = await done;
  t.same(r, { err: null, n: PAGE }, 'the read completed into still-mapped memory');
  t.equal(countInCallback, base, 'unmapped before the callback ran');
  // The data went to the shared pages: a fresh mapping of the memfd sees it.
  const again = native.mmap(mfd, 0n, 2 * PAGE);
  t.equal(new Uint8Array(again)[PAGE], 0x77, 'bytes arrived');
  t.equal(new Uint8Array(again)[PAGE - 1], 0, 'and only where asked');
  native.munmap(again);

  // Same with a write and with several requests holding one mapping.
  const ram2 = native.mmap(mfd, 0n, 2 * PAGE);
  const wfd = fs.openSync(path.join(tmp, 'defer-w.img'), 'w+');
  const p1 = pwritevP(wfd, [new Uint8Array(ram2, 0, 100)], 0, 0);
  const p2 = preadvP(fd, [new Uint8Array(ram2, 200, 100), new Uint8Array(ram2, PAGE, 100)], 0);
  native.munmap(ram2);
  t.equal(native.mappingCount(), base + 1, 'held by two requests');
  t.same(await Promise.all([p1, p2]), [100, 200]);
  t.equal(native.mappingCount(), base, 'released after both');
  fs.closeSync(wfd);
  fs.closeSync(fd);
  native.close(mfd);
});

t.test('punchHole deallocates and keeps the size', (t) => {
  const file = path.join(tmp, 'thin.img');
  fs.writeFileSync(file, Buffer.alloc(4 * PAGE, 0xab));
  const fd = fs.openSync(file, 'r+');
  native.punchHole(fd, PAGE, 2 * PAGE);
  const data = fs.readFileSync(file);
  t.equal(data.length, 4 * PAGE, 'size kept');
  t.equal(data[PAGE - 1], 0xab);
  t.ok(data.subarray(PAGE, 3 * PAGE).every((b) => b === 0), 'hole reads as zeros');
  t.equal(data[3 * PAGE], 0xab);
  throwsLike(t, () => native.punchHole(fd, 0, 0), RangeError, { code: 'ERR_OUT_OF_RANGE' }, 'zero length');
  fs.closeSync(fd);
  const ro = fs.openSync(file, 'r');
  throwsLike(t, () => native.punchHole(ro, 0, PAGE), Error, sysErr('EBADF', -9, 'fallocate'), 'read-only fd');
  fs.closeSync(ro);
  t.end();
});

t.test('argument validation never crashes', (t) => {
  const buf = new Uint8Array(16);
  const noop = (): void => undefined;
  const cases: Array<[string, () => unknown, ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, Record<string, unknown>]> = [
    ['negative fd', () => native.close(-1), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['fractional fd', () => native.close(1.5), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['NaN fd', () => native.close(NaN), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['fd above INT_MAX', () => native.close(2 ** 31), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['string fd', () => native.close('3' as unknown as number), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['missing fd', () => (native.close as unknown as () => void)(), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['recvmsg non-Uint8Array', () => native.recvmsg(0, new Uint16Array(4) as unknown as Uint8Array, 0, 4, []), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['recvmsg range past the end', () => native.recvmsg(0, buf, 8, 9, []), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['recvmsg offset past the end', () => native.recvmsg(0, buf, 17, 0, []), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['recvmsg zero length', () => native.recvmsg(0, buf, 0, 0, []), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['recvmsg fdsOut not an array', () => native.recvmsg(0, buf, 0, 1, {} as unknown as number[]), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['sendmsg negative length', () => native.sendmsg(0, buf, 0, -1), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['sendmsg 254 fds', () => native.sendmsg(0, buf, 0, 1, new Array(254).fill(0)), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['sendmsg fds without bytes', () => native.sendmsg(0, buf, 0, 0, [0]), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['sendmsg negative fd in fds', () => native.sendmsg(0, buf, 0, 1, [-1]), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['sendmsg string fd in fds', () => native.sendmsg(0, buf, 0, 1, ['1' as unknown as number]), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv iov not an array', () => native.preadv(0, buf as unknown as Uint8Array[], 0, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv iov element not a Uint8Array', () => native.preadv(0, [buf, [1, 2] as unknown as Uint8Array], 0, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv DataView element', () => native.preadv(0, [new DataView(new ArrayBuffer(4)) as unknown as Uint8Array], 0, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv Int8Array element', () => native.preadv(0, [new Int8Array(4) as unknown as Uint8Array], 0, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv 1025 iovecs', () => native.preadv(0, new Array(1025).fill(buf), 0, noop), Error, sysErr('EINVAL', -22, 'preadv')],
    ['pwritev 1025 iovecs', () => native.pwritev(0, new Array(1025).fill(buf), 0, 0, noop), Error, sysErr('EINVAL', -22, 'pwritev')],
    ['preadvSync 1025 iovecs', () => native.preadvSync(0, new Array(1025).fill(buf), 0), Error, sysErr('EINVAL', -22, 'preadv')],
    ['preadv negative position', () => native.preadv(0, [buf], -1, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['preadv unsafe position', () => native.preadv(0, [buf], 2 ** 53, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['preadv bigint position', () => native.preadv(0, [buf], 0n as unknown as number, noop), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['preadv missing callback', () => native.preadv(0, [buf], 0, undefined as unknown as () => void), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['pwritev unknown flag', () => native.pwritev(0, [buf], 0, 2, noop), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['pwritevSync unknown flag', () => native.pwritevSync(0, [buf], 0, 4), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['fdatasync missing callback', () => (native.fdatasync as unknown as (fd: number) => void)(0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['punchHole negative offset', () => native.punchHole(0, -1, 1), RangeError, { code: 'ERR_OUT_OF_RANGE' }],
    ['memfdCreate non-string name', () => native.memfdCreate(1 as unknown as string, 0), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
    ['connectUnix NUL', () => native.connectUnix('/tmp/a\0b'), TypeError, { code: 'ERR_INVALID_ARG_VALUE' }],
    ['munmap non-buffer', () => native.munmap(42 as unknown as ArrayBuffer), TypeError, { code: 'ERR_INVALID_ARG_TYPE' }],
  ];
  for (const [name, fn, ctor, props] of cases) throwsLike(t, fn, ctor, props, name);
  t.end();
});

t.test('fuzz: random argument lists fail closed (reliability.md V10.4)', (t) => {
  // Deterministic xorshift32, so a failure reproduces.
  let seed = 0x9e3779b9;
  const rnd = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  // No value here is an open fd of this process (never 0..2 or small
  // integers), so nothing real is closed, written or polled; no string is a
  // path that could be created.
  const noop = (): void => undefined;
  const pool = (): unknown[] => [
    undefined, null, true, '/nonexistent-vhs-dir/s', '', '\0', 'x'.repeat(200), {}, [], [new Uint8Array(2)],
    new Array(1025).fill(new Uint8Array(1)), [new Uint8Array(4), 'no'], -1, -0.5, 1.5, NaN,
    Infinity, -Infinity, 2 ** 31, 2 ** 53, 2 ** 64, 99999, 4096, 0x7fffffff, -4096n, 1n, 2n ** 64n,
    new Uint8Array(8), Buffer.alloc(3), new Uint16Array(2), new DataView(new ArrayBuffer(2)),
    new ArrayBuffer(16), noop, Symbol('s'),
  ];
  const targets: Array<keyof typeof native> = [
    'accept', 'peerCredentials', 'recvmsg', 'sendmsg', 'dup', 'fileSize', 'mmap', 'munmap',
    'eventfdRead', 'eventfdWrite', 'createPoller', 'preadv', 'pwritev', 'fdatasync', 'punchHole',
    'preadvSync', 'pwritevSync', 'listenUnix', 'connectUnix',
  ];
  let bad = 0;
  for (let i = 0; i < 3000; i++) {
    const name = targets[rnd(targets.length)];
    const values = pool();
    const args = Array.from({ length: rnd(6) }, () => values[rnd(values.length)]);
    try {
      const r = (native[name] as unknown as (...a: unknown[]) => unknown)(...args);
      if (r !== null && typeof r === 'object' && 'close' in (r as object)) (r as { close(): void }).close();
      if (r instanceof ArrayBuffer) native.munmap(r);
    } catch (e) {
      const ok = (e instanceof TypeError || e instanceof RangeError || isSystemError(e)) && typeof (e as SystemError).code === 'string';
      if (!ok) {
        bad++;
        t.fail(`${name}(${args.map(String).join(', ')}) threw ${String(e)}`);
      }
    }
  }
  t.equal(bad, 0, '3000 random calls: every failure is a typed, coded error');
  t.end();
});

t.test('iov getters that unmap a view while it is decoded cannot stale a pointer', async (t) => {
  const base = native.mappingCount();
  const mfd = native.memfdCreate('getter', PAGE);
  const ram = native.mmap(mfd, 0n, PAGE);
  const file = path.join(tmp, 'getter.img');
  fs.writeFileSync(file, Buffer.alloc(64, 0x31));
  const fd = fs.openSync(file, 'r');
  const tail = new Uint8Array(8);
  const iov: Uint8Array[] = [new Uint8Array(ram, 0, 8)];
  Object.defineProperty(iov, 1, {
    get() {
      native.munmap(ram); // detaches view 0 after it was read from the array
      return tail;
    },
    enumerable: true,
  });
  const r = await ioResult((cb) => native.preadv(fd, iov, 0, cb));
  t.same(r, { err: null, n: 8 }, 'the detached view was skipped, only the live one read');
  t.same([...tail], new Array(8).fill(0x31));
  t.equal(native.mappingCount(), base, 'mapping gone');
  fs.closeSync(fd);
  native.close(mfd);
});

t.test('fence and copiedBytes', (t) => {
  t.equal(native.fence(), undefined);
  t.equal(typeof native.copiedBytes(), 'number');
  t.end();
});

t.test('worker_threads: pollers, mappings and in-flight I/O are torn down with the worker', (t) => {
  // Each worker leaves a started poller, an unclosed stopped poller, live
  // and deferred-unmap mappings and queued writes; half are terminated
  // mid-flight. The process must neither crash (uv_close callbacks run
  // after the worker's env unloads its addons) nor leak a mapping.
  const script = `
    const { Worker, isMainThread, parentPort } = require('worker_threads');
    const addon = ${JSON.stringify(addonPath)};
    const file = ${JSON.stringify(path.join(tmp, 'worker.img'))};
    if (isMainThread) {
      let runs = 0;
      const go = () => {
        const w = new Worker(__filename);
        w.on('message', () => { if (runs % 2) w.terminate(); });
        w.on('error', (e) => { console.log('error', e); process.exitCode = 1; });
        w.on('exit', () => {
          if (++runs < 10) return go();
          console.log(JSON.stringify({ mappings: require(addon).mappingCount() }));
        });
      };
      go();
    } else {
      const n = require(addon);
      const fs = require('fs');
      const e = n.eventfd(0, true);
      const p = n.createPoller(e, () => {});
      p.start(1);
      const q = n.createPoller(n.eventfd(0, true), () => {});
      q.start(1); q.stop();
      const m = n.memfdCreate('w', 1 << 20);
      const ram = n.mmap(m, 0n, 1 << 20);
      n.mmap(m, 0n, 4096);
      const fd = fs.openSync(file, 'w+');
      for (let i = 0; i < 32; i++) n.pwritev(fd, [new Uint8Array(ram, i * 4096, 4096)], i * 4096, 0, () => {});
      n.munmap(ram);
      parentPort.postMessage('ready');
      setTimeout(() => p.close(), 5);
    }
  `;
  const file = path.join(tmp, 'workers.js');
  fs.writeFileSync(file, script);
  const res = spawnPlainNode([], [file]);
  t.equal(res.status, 0, `no crash ${String(res.stderr)}`);
  t.same(JSON.parse(String(res.stdout)), { mappings: 0 }, 'every mapping of every worker unmapped');
  t.end();
});

t.test('idle addon handles do not keep the process alive', (t) => {
  // A stopped poller and a drained I/O engine must let node exit on its own.
  const script = `
    const n = require(${JSON.stringify(addonPath)});
    const e = n.eventfd(0, true);
    const p = n.createPoller(e, () => {});
    p.start(1);
    p.stop();
    n.fdatasync(n.memfdCreate('x', 0), (err) => { console.log('synced', err === null); });
  `;
  const res = spawnPlainNode([], ['-e', script]);
  t.equal(res.status, 0, `exited by itself ${String(res.stderr)}`);
  t.equal(String(res.stdout).trim(), 'synced true', 'a pending request kept it alive until its callback');
  t.end();
});

t.test('copyBytes: memmove between views, bounds checked, counted', (t) => {
  const before = native.copiedBytes();
  const src = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const dst = new Uint8Array(8);
  native.copyBytes(dst, 2, src, 4, 3);
  t.same([...dst], [0, 0, 5, 6, 7, 0, 0, 0]);
  native.copyBytes(src, 1, src, 0, 4); // overlapping: memmove semantics
  t.same([...src], [1, 1, 2, 3, 4, 6, 7, 8]);
  native.copyBytes(dst, 8, src, 8, 0); // empty copy at the very end is fine
  t.equal(native.copiedBytes() - before, 7, 'counted');
  const view = new Uint8Array(new ArrayBuffer(16), 4, 8);
  native.copyBytes(view, 0, new Uint8Array([9, 9]), 0, 2);
  t.same([...new Uint8Array(view.buffer, 0, 8)], [0, 0, 0, 0, 9, 9, 0, 0], 'the view offset is honoured');
  t.throws(() => native.copyBytes(dst, 7, src, 0, 2), { name: 'RangeError' }, 'past the end of dst');
  t.throws(() => native.copyBytes(dst, 0, src, 7, 2), { name: 'RangeError' }, 'past the end of src');
  t.throws(() => native.copyBytes(dst, 9, src, 0, 0), { name: 'RangeError' }, 'offset past the end');
  t.throws(() => native.copyBytes(new Uint16Array(4) as unknown as Uint8Array, 0, src, 0, 1), { name: 'TypeError' });
  t.throws(() => native.copyBytes(dst, -1, src, 0, 1), { name: 'RangeError' });
  t.throws(() => native.copyBytes(dst, 0, src, 0, 1.5), { name: 'RangeError' });
  t.equal(native.copiedBytes() - before, 9, 'refused copies count nothing');
  t.end();
});
