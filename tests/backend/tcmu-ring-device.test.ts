// TcmuDevice: sysfs map size, open/mmap/poll/doorbell life cycle and the bounded stop, run
// against FakeTcmuKernel. The uio fd is stood in for by an eventfd (the fake's uio_event_notify
// writes it, the real libuv poller watches it), the mapping by the fake's ArrayBuffer.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRamStore, LogicalUnit, ScsiTarget, type BlockStore, type ITNexus } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { Logger } from '../../backend/log';
import { native } from '../../backend/native';
import { TcmuDevice, nodeUioIo, readUioMapSize, type UioIo } from '../../backend/tcmu/device';
import { TcmuRingError } from '../../backend/tcmu/ring';
import { FakeTcmuKernel, type FakeTcmuKernelOptions } from '../../backend/tcmu/fake-kernel';

const NEXUS: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405ccccccccc', targetPortId: 5 });
const TUR = [0x00, 0, 0, 0, 0, 0];
const READ_10_LBA0 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

function sysfs(t: Test, size: number, name = 'tcm-user/0/disk0/vhost-scsi-ts/disk0', offset = '0x0'): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tcmu-ring-sysfs-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'uio7', 'maps', 'map0'), { recursive: true });
  fs.writeFileSync(path.join(root, 'uio7', 'name'), `${name}\n`);
  fs.writeFileSync(path.join(root, 'uio7', 'maps', 'map0', 'size'), `0x${size.toString(16)}\n`);
  fs.writeFileSync(path.join(root, 'uio7', 'maps', 'map0', 'offset'), `${offset}\n`);
  return root;
}

t.test('readUioMapSize: map0 size of a tcm-user uio device from sysfs', (t) => {
  t.equal(readUioMapSize(sysfs(t, 0x40800000), 'uio7'), 0x40800000, 'the Debian 6.1 default: 8 MiB ring + 1 GiB data');
  t.throws(() => readUioMapSize(sysfs(t, 0x10000, 'uio_pci_generic'), 'uio7'), /uio7 is not a target_core_user device \(its name is "uio_pci_generic"\)/);
  t.throws(() => readUioMapSize(sysfs(t, 0x10000, 'tcm-user/0/d', '0x1000'), 'uio7'), /starts at page offset 0x1000/);
  t.throws(() => readUioMapSize(sysfs(t, 2 ** 33), 'uio7'), /0x200000000 bytes; between one page and 4 GiB/);
  const root = sysfs(t, 0x10000);
  fs.writeFileSync(path.join(root, 'uio7', 'maps', 'map0', 'size'), '65536\n');
  t.throws(() => readUioMapSize(root, 'uio7'), /"65536" is not a hexadecimal size/);
  t.throws(() => readUioMapSize(root, 'uio9'), /cannot read .*uio9\/name/);
  t.end();
});

t.test('nodeUioIo: non-blocking 4-byte event read (EAGAIN → false) and the 4-byte doorbell write', (t) => {
  const [a, b] = native.socketpair();
  t.teardown(() => {
    native.close(a);
    native.close(b);
  });
  const buf = new Uint8Array(4);
  t.equal(nodeUioIo.readEvent(a, buf), false, 'nothing pending');
  nodeUioIo.notify(b, Uint8Array.of(0, 0, 0, 0));
  t.equal(nodeUioIo.readEvent(a, buf), true);
  t.same([...buf], [0, 0, 0, 0], 'a u32 0, as libtcmu writes');
  t.end();
});

interface DeviceRig {
  kernel: FakeTcmuKernel;
  device: TcmuDevice;
  calls: string[];
  doorbells: () => number;
  lines: string[];
}

function deviceRig(t: Test, opts: { store?: BlockStore; kernel?: FakeTcmuKernelOptions; stopDeadlineMs?: number;
  io?: Partial<UioIo> } = {}): DeviceRig {
  const kernel = new FakeTcmuKernel(opts.kernel);
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(opts.store ?? createRamStore({ sizeBytes: 1 << 20, name: 'lun0' }), { name: 'lun0' }));
  run(target, { nexus: NEXUS, lun: 0, cdb: TUR }); // consume POWER ON, RESET
  const efd = native.eventfd(0, true);
  let efdOpen = true;
  kernel.onEvent = () => native.eventfdWrite(efd, 1); // uio_event_notify
  const calls: string[] = [];
  let doorbells = 0;
  const io: Partial<UioIo> = {
    open: (p) => {
      calls.push(`open ${p}`);
      return efd;
    },
    mmap: (fd, length) => {
      calls.push(`mmap ${length}`);
      return kernel.buffer;
    },
    munmap: (buffer) => {
      calls.push(buffer === kernel.buffer ? 'munmap' : 'munmap ?');
    },
    createPoller: (fd, cb) => {
      const p = native.createPoller(fd, cb);
      return {
        start: (events) => p.start(events),
        stop: () => p.stop(),
        close: () => {
          calls.push('poller.close');
          p.close();
        },
      };
    },
    readEvent: (fd) => native.eventfdRead(fd) > 0,
    notify: () => {
      doorbells++;
      kernel.handleCompletions();
    },
    close: (fd) => {
      calls.push('close');
      native.close(fd);
      efdOpen = false;
    },
    ...opts.io,
  };
  const lines: string[] = [];
  const device = new TcmuDevice({
    uioPath: '/dev/uio7', target, nexus: NEXUS, lun: 0, log: new Logger('debug', { write: (l) => lines.push(l) }),
    sysfsRoot: sysfs(t, kernel.buffer.byteLength), stopDeadlineMs: opts.stopDeadlineMs, io,
  });
  // The device (and its poller) goes before the fd, also when a test fails half way.
  t.teardown(async () => {
    await new Promise<void>((resolve) => device.stop(() => resolve()));
    if (efdOpen) native.close(efd);
  });
  return { kernel, device, calls, doorbells: () => doorbells, lines };
}

/** Lets the loop run (poll and check phases) until `pred` holds; no clock involved. */
async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 100000 && !pred(); i++) await new Promise((resolve) => setImmediate(resolve));
}

t.test('a started device serves commands on uio wakeups and rings one doorbell per batch', async (t) => {
  const r = deviceRig(t);
  const early = r.kernel.queueCommand(TUR); // queued before open: uio_open() does not report it
  r.device.start();
  t.same(r.calls, ['open /dev/uio7', `mmap ${r.kernel.buffer.byteLength}`]);
  await until(() => r.kernel.completions.length === 1);
  t.equal(r.kernel.takeCompletions()[0].cmdId, early, 'entries queued before start are taken');
  const ids = [r.kernel.queueCommand(READ_10_LBA0, { dataIn: 512 }), r.kernel.queueCommand(TUR), r.kernel.queueCommand(TUR)];
  await until(() => r.kernel.completions.length === 3);
  t.same(r.kernel.takeCompletions().map((c) => [c.cmdId, c.status]), ids.map((id) => [id, 0]));
  t.ok(r.doorbells() <= 4, `${r.doorbells()} doorbells for 4 commands`);
  t.equal(r.device.inFlight, 0);
  t.equal(r.device.stats?.commands, 4);
  t.ok(r.lines.some((l) => l.includes('uio7: serving LUN 0') && l.includes('capabilities 0xf')));
  let stopped: Error | null | undefined;
  r.device.stop((err) => { stopped = err; });
  t.equal(stopped, null);
  t.same(r.calls.slice(2), ['poller.close', 'munmap', 'close'], 'the poller before its fd; unmapped before close');
  t.end();
});

t.test('stop() waits for commands in flight and writes their completions first', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = deviceRig(t, { store });
  r.device.start();
  const id = r.kernel.queueCommand(READ_10_LBA0, { dataIn: 512 });
  await until(() => store.pending('read').length === 1);
  let stopped: Error | null | undefined;
  r.device.stop((err) => { stopped = err; });
  t.equal(stopped, undefined, 'still waiting');
  t.same(r.calls.slice(2), ['poller.close']);
  const late = r.kernel.queueCommand(TUR);
  store.pending('read')[0].complete();
  t.equal(stopped, null);
  t.same(r.calls.slice(2), ['poller.close', 'munmap', 'close']);
  t.same(r.kernel.takeCompletions().map((c) => c.cmdId), [id], 'the in-flight read completed before the unmap');
  t.ok(late > 0 && r.kernel.pending === 1, 'the entry queued during stop was left to the kernel');
  t.end();
});

t.test('stop() past its deadline abandons the commands; the map lives until they return', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = deviceRig(t, { store, stopDeadlineMs: 5 });
  r.device.start();
  r.kernel.queueCommand(READ_10_LBA0, { dataIn: 512 });
  await until(() => store.pending('read').length === 1);
  let stopped: Error | null | undefined;
  r.device.stop((err) => { stopped = err; });
  await until(() => stopped !== undefined);
  t.match(stopped?.message, /tcmu uio7: 1 command\(s\) abandoned at stop after 5 ms/);
  t.same(r.calls.slice(2), ['poller.close', 'close'], 'fd closed (a new daemon can open it); still mapped');
  t.equal(r.device.ring?.state, 'abandoned');
  store.pending('read')[0].complete();
  t.same(r.calls.slice(2), ['poller.close', 'close', 'munmap'], 'unmapped once the store let go of the data views');
  t.equal(r.kernel.takeCompletions().length, 0, 'nothing written into an abandoned ring');
  t.end();
});

t.test('start() failures release what they took and say why', (t) => {
  const bad = deviceRig(t, { kernel: { version: 1 } });
  t.throws(() => bad.device.start(), TcmuRingError);
  t.same(bad.calls, ['open /dev/uio7', `mmap ${bad.kernel.buffer.byteLength}`, 'munmap', 'close']);
  const busy = deviceRig(t, {
    io: {
      open: () => {
        throw Object.assign(new Error('open EBUSY'), { code: 'EBUSY' });
      },
    },
  });
  t.throws(() => busy.device.start(), /cannot open \/dev\/uio7: open EBUSY \(the kernel allows one opener/);
  t.throws(() => new TcmuDevice({
    uioPath: '/dev/sda', target: new ScsiTarget(), nexus: NEXUS, lun: 0, log: new Logger('silent'),
  }), /\/dev\/sda is not a \/dev\/uioN path/);
  t.end();
});
