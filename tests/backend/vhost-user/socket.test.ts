// The vhost-user layer over a real unix socket: FakeFrontendSocket (the QEMU side) talks to
// MessageAssembler + VhostUserSession with the native HostOps, so fds really travel as
// SCM_RIGHTS and guest memory is a real shared memfd mapping. Checks that nothing leaks:
// the process's fd table and the addon's mapping count return to where they were.
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../../backend/native';
import { MessageAssembler } from '../../../backend/vhost-user/framing';
import { VhostUserSession, type HostOps } from '../../../backend/vhost-user/dispatcher';
import { FakeFrontend, FakeFrontendSocket, FrontendRequests as F, type FakeQueue, type FakeRegion } from '../../../backend/vhost-user/fake-frontend';
import { FakeDevice, MiB, UADDR } from './harness';

const hostOps: HostOps = {
  mmap: (fd, offset, length) => new Uint8Array(native.mmap(fd, offset, length)),
  munmap: (bytes) => native.munmap(bytes.buffer as ArrayBuffer),
  fileSize: (fd) => native.fileSize(fd),
  closeFd: (fd) => native.close(fd),
};

const openFds = () => readdirSync('/proc/self/fd').length;

/** A minimal endpoint: one connection, whole messages into the session. */
function serve(path: string, device: FakeDevice) {
  const listenFd = native.listenUnix(path, 1);
  const reasons: string[] = [];
  let ended: Promise<void> | null = null;
  let resolveEnded: () => void = () => {};
  const endedP = new Promise<void>((r) => (resolveEnded = r));
  const listener = native.createPoller(listenFd, () => {
    const fd = native.accept(listenFd);
    if (fd < 0) return;
    listener.close();
    native.close(listenFd);
    const assembler = new MessageAssembler((x) => native.close(x));
    const rx = new Uint8Array(65536);
    const rxFds: number[] = [];
    let ending = false;
    const end = (reason: string) => {
      if (ending) return;
      ending = true;
      reasons.push(reason);
      poller.close();
      assembler.dispose();
      session.close(() => {
        native.close(fd);
        resolveEnded();
      });
    };
    const session = new VhostUserSession(device, hostOps, {
      send: (b) => {
        if (!ending && native.sendmsg(fd, b, 0, b.length) !== b.length) end('short send');
      },
      close: end,
      log: () => {},
    });
    const poller = native.createPoller(fd, (status) => {
      if (status < 0) return end(`poll ${status}`);
      try {
        for (;;) {
          const n = native.recvmsg(fd, rx, 0, rx.length, rxFds);
          if (n < 0) return;
          if (n === 0) {
            for (const x of rxFds.splice(0)) native.close(x);
            return end('EOF');
          }
          assembler.push(rx.subarray(0, n), rxFds.splice(0));
          for (let m = assembler.next(); m && !ending; m = assembler.next()) session.handle(m);
          if (ending) return;
        }
      } catch (e) {
        end((e as Error).message);
      }
    });
    poller.start(1);
  });
  listener.start(1);
  ended = endedP;
  return { reasons, ended };
}

function setup(t: tap.Test) {
  const dir = mkdtempSync(join(tmpdir(), 'vhost-user-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'vhost-user.sock');
}

t.test('QEMU 10.0 sequence over a socket, then disconnect: nothing leaks', async (t) => {
  const fdsBefore = openFds();
  const mapsBefore = native.mappingCount();
  const path = setup(t);
  const events: string[] = [];
  const device = new FakeDevice(events);
  const server = serve(path, device);
  const sock = FakeFrontendSocket.connect(path);
  const fe = new FakeFrontend(sock);
  const ram = FakeFrontendSocket.createRam(4 * 1048576);
  const regions: FakeRegion[] = [
    { guestPhysAddr: 0n, size: 2n * MiB, userAddr: UADDR, mmapOffset: 0n, fd: ram.fd },
    { guestPhysAddr: 0x1_0000_0000n, size: 2n * MiB, userAddr: UADDR + 2n * MiB, mmapOffset: 2n * MiB, fd: ram.fd },
  ];
  const queues: FakeQueue[] = [0, 1, 2, 3].map((i) => {
    const desc = Number(UADDR) + 0x10000 * i;
    return { index: i, size: 128, desc, avail: desc + 2048, used: desc + 0x1000, kickFd: FakeFrontendSocket.eventfd(), callFd: FakeFrontendSocket.eventfd(), errFd: FakeFrontendSocket.eventfd() };
  });

  const r = await fe.setupDevice({ regions, queues });
  t.equal(r.protocolFeatures, 0x1_a009n);
  t.equal(device.started.size, 4);

  // Guest memory is really shared: a byte the front-end writes is what the device reads,
  // through the user-address (ring) and guest-physical translations alike.
  const s2 = device.started.get(2)!;
  ram.bytes[0x20000] = 0xa7; // file offset of UADDR + 0x20000 (region 0)
  t.equal(s2.memory.qvaView(queues[2].desc, 1)[0], 0xa7);
  ram.bytes[2 * 1048576 + 5] = 0x3c; // region 1 starts at file offset 2 MiB
  t.equal(s2.memory.gpaView(0x1_0000_0005, 1)[0], 0x3c);

  // The kick fd the device got is the front-end's eventfd.
  native.eventfdWrite(queues[2].kickFd, 3);
  t.equal(native.eventfdRead(s2.kickFd), 3);
  // The call fd in force is the one from the SET_VRING_CALL after the kick (setCallFd).
  native.eventfdWrite(device.callFds.get(2)!, 1);
  t.equal(native.eventfdRead(queues[2].callFd), 1);

  device.stopIdx.set(2, 9);
  t.same(await fe.stopDevice([0, 1, 2, 3]), [0, 0, 9, 0]);

  // QEMU goes away.
  sock.close();
  await server.ended;
  t.same(server.reasons, ['EOF']);
  for (const q of queues) for (const fd of [q.kickFd, q.callFd, q.errFd!]) native.close(fd);
  native.munmap(ram.bytes.buffer as ArrayBuffer);
  native.close(ram.fd);
  t.equal(native.mappingCount(), mapsBefore, 'every mapping released');
  t.equal(openFds(), fdsBefore, 'every fd released, in the back-end and the fake front-end');
});

t.test('a protocol error over a socket drops the connection and closes the fds it carried', async (t) => {
  const fdsBefore = openFds();
  const path = setup(t);
  const device = new FakeDevice([]);
  const server = serve(path, device);
  const sock = FakeFrontendSocket.connect(path);
  const fe = new FakeFrontend(sock);
  await fe.callU64(F.getFeatures());
  fe.send(F.setOwner());
  const efd = FakeFrontendSocket.eventfd();
  // SET_VRING_NUM does not carry fds (C1).
  fe.send(F.setVringNum(0, 128, { fds: [efd, efd, efd] }));
  t.match(await sock.whenClosed(), /back-end closed the connection/);
  await server.ended;
  t.match(server.reasons[0], /SET_VRING_NUM: carries 3 fd\(s\), expected 0/);
  sock.close();
  native.close(efd);
  t.equal(openFds(), fdsBefore);
});
