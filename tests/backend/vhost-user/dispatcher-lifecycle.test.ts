// Ring and session lifecycle of the dispatcher: asynchronous GET_VRING_BASE (§4.2), memory
// table changes on a running device (C13, V3.6), any message order (V2.1), fd replacement
// (V1.6), resets (§4.3) and the session teardown (V1.7).
import t from 'tap';
import { makeHarness, assertClean, tick, MiB, UADDR, type Harness } from './harness';
import { FrontendRequests as F } from '../../../backend/vhost-user/fake-frontend';
import { FrontendRequest as R } from '../../../backend/vhost-user/protocol';

const ringAddr = (h: Harness, i: number) => {
  const q = h.queues[i];
  return F.setVringAddr({ index: i, flags: 0, desc: BigInt(q.desc), avail: BigInt(q.avail), used: BigInt(q.used), log: 0n });
};

function replyState(p: Uint8Array): [number, number] {
  const v = new DataView(p.buffer, p.byteOffset, 8);
  return [v.getUint32(0, true), v.getUint32(4, true)];
}

t.test('GET_VRING_BASE waits for the device; later messages wait for the reply', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.holdStops = true;
  const kick2 = h.device.started.get(2)!.kickFd;
  const replies = h.transport.received.length;
  const mark = h.events.length;
  const base = h.fe.call(F.getVringBase(2));
  const newCall = h.host.file();
  h.fe.send(F.setVringCall(2, newCall));
  const features = h.fe.callU64(F.getFeatures());
  await tick();
  t.same(h.events.slice(-1), ['stop 2'], 'the device was asked to stop');
  t.equal(h.transport.received.length, replies, 'no reply before the device has stopped');
  t.notOk(h.events.slice(mark).some((e) => e.startsWith('close')), 'SET_VRING_CALL not processed yet');
  t.ok(h.host.open.has(kick2), 'kick fd kept while the ring drains');

  h.device.completeStop(2, 77);
  const r = await base;
  t.same(replyState(r!.payload), [2, 77], 'reply: vring 2, next avail index 77');
  t.equal(await features, h.fe.offeredFeatures);
  t.same(h.transport.received.slice(replies).map((x) => x.request), [R.GET_VRING_BASE, R.GET_FEATURES], 'replies in request order');
  t.notOk(h.host.open.has(kick2), 'C15: the kick fd is closed after the stop');
  t.notOk(h.events.slice(mark).some((e) => e.startsWith('call 2')), 'the stopped ring gets no setCallFd');
  h.device.holdStops = false;
  await assertClean(t, h);
});

t.test('GET_VRING_BASE of a ring that never started answers the stored base', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  h.fe.send(F.setVringBase(1, 0x1234));
  h.fe.send(F.setVringKick(1, h.host.file())); // waits for NUM/ADDR/memory
  const kick = h.host.lastReceived.at(-1)!;
  const r = await h.fe.call(F.getVringBase(1));
  t.same(replyState(r!.payload), [1, 0x1234]);
  t.notOk(h.events.some((e) => e.startsWith('stop')), 'no device call');
  t.notOk(h.host.open.has(kick), 'the waiting kick fd is dropped: the ring is stopped');
  // Without a new kick the ring does not start when the other pieces arrive.
  await h.fe.setMemory(h.regions);
  h.fe.send(F.setVringNum(1, 128));
  h.fe.send(ringAddr(h, 1));
  t.equal(h.device.started.size, 0);
  await assertClean(t, h);
});

t.test('C12: GET_VRING_BASE keeps the ring state; a new kick restarts it where it stopped', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.stopIdx.set(3, 500);
  await h.fe.call(F.getVringBase(3));
  t.notOk(h.device.started.has(3));
  h.fe.send(F.setVringKick(3, h.host.file()));
  const s = h.device.started.get(3)!;
  t.equal(s.lastAvailIdx, 500);
  t.equal(s.size, 128);
  t.equal(s.descTable, h.queues[3].desc);
  t.equal(s.enabled, true, 'the enabled state survives the stop');
  await assertClean(t, h);
});

t.test('V2.1: a ring starts when its last piece arrives, in any order', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  h.fe.send(F.setFeatures(h.fe.ackedFeatures));
  const orders: [string, () => void][] = [
    ['kick', () => h.fe.send(F.setVringKick(0, h.queues[0].kickFd))],
    ['addr', () => h.fe.send(ringAddr(h, 0))],
    ['num', () => h.fe.send(F.setVringNum(0, 64))],
  ];
  for (const [name, send] of orders) {
    send();
    t.equal(h.device.started.size, 0, `not started after ${name}`);
  }
  await h.fe.setMemory(h.regions.slice(1)); // region 1 only: the ring lives in region 0
  t.equal(h.device.started.size, 0, 'not started while its memory is missing');
  t.match(h.logs.join('\n'), /vring 0: not started, front-end address range/);
  await h.fe.setMemory(h.regions);
  t.equal(h.device.started.get(0)?.size, 64, 'started when region 0 arrived');
  t.equal(h.device.started.get(0)?.enabled, false, 'disabled until SET_VRING_ENABLE (bit 30 negotiated)');
  t.same(h.events.filter((e) => e.startsWith('start')), ['start 0']);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('V2.5: a ring whose used ring crosses the end of its region does not start', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  await h.fe.setMemory(h.regions);
  // Region 0 ends at UADDR + 2 MiB; a 128-entry used ring needs 4 + 8 * 128 (+2 with EVENT_IDX).
  h.fe.send(F.setVringNum(0, 128));
  h.fe.send(F.setVringAddr({ index: 0, flags: 0, desc: UADDR, avail: UADDR + 0x1000n, used: UADDR + 2n * MiB - 0x200n, log: 0n }));
  h.fe.send(F.setVringKick(0, h.host.file()));
  t.equal(h.device.started.size, 0);
  await assertClean(t, h);
});

t.test('C13/V3.6: SET_MEM_TABLE on a running device: quiesce, unmap, memoryChanged, then the ack', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues, frontendProtocolFeatures: 0x9n /* MQ | REPLY_ACK */ });
  await h.fe.start({ regions: h.regions, queues: h.queues });
  t.equal(h.device.started.size, 4);
  h.device.holdQuiesce = true;
  const mark = h.events.length;
  const replies = h.transport.received.length;
  const ram2 = h.host.file(8n * MiB);
  h.host.lastReceived.length = 0;
  const table = [
    { guestPhysAddr: 0n, size: 2n * MiB, userAddr: UADDR, mmapOffset: 0n, fd: ram2 },
    { guestPhysAddr: 0x1_0000_0000n, size: 4n * MiB, userAddr: UADDR + 2n * MiB, mmapOffset: 2n * MiB, fd: ram2 },
  ];
  const ack = h.fe.setMemory(table);
  const status = h.fe.callU64(F.getFeatures());
  await tick();
  t.same(h.events.slice(mark).filter((e) => !e.startsWith('close')), [`mmap ${h.host.lastReceived[0]} 0 2097152`, `mmap ${h.host.lastReceived[1]} 2097152 4194304`, 'quiesce'], 'new table mapped, then quiesce; nothing unmapped yet');
  t.equal(h.transport.received.length, replies, 'no ack while quiescing');
  t.equal(h.host.liveMappings(), 4);

  h.device.pendingQuiesce!();
  await ack;
  await status;
  const after = h.events.slice(mark).filter((e) => !e.startsWith('close') && !e.startsWith('mmap'));
  t.same(after, ['quiesce', 'munmap', 'munmap', 'memoryChanged 2'], 'old mappings unmapped only after the quiesce, before the resume');
  t.equal(h.device.memory?.regions[1].size, 4 * 1048576);
  t.same(h.transport.received.slice(replies).map((x) => x.request), [R.SET_MEM_TABLE, R.GET_FEATURES]);
  t.same([...h.transport.received[replies].payload], [0, 0, 0, 0, 0, 0, 0, 0], 'ack 0');
  t.equal(h.host.liveMappings(), 2);
  await assertClean(t, h);
});

t.test('ADD_MEM_REG and REM_MEM_REG on a running device quiesce too; REM closes a stray fd', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  const dimm = { guestPhysAddr: 0x2_0000_0000n, size: MiB, userAddr: UADDR + 0x100_0000n, mmapOffset: 0n, fd: h.host.file(MiB) };
  await h.fe.call(F.addMemReg(dimm, dimm.fd, { needReply: true }));
  t.equal(h.device.memory?.regions.length, 3);
  const stray = h.host.file();
  h.host.lastReceived.length = 0;
  // "If a file descriptor is passed, the back-end MUST close it without using it otherwise."
  await h.fe.call(F.remMemReg({ ...dimm, mmapOffset: 0x999000n }, { needReply: true, fds: [stray] }));
  t.notOk(h.host.open.has(h.host.lastReceived[0]));
  t.equal(h.device.memory?.regions.length, 2, 'removed by gpa, user address and size; mmap offset ignored');
  t.same(h.events.filter((e) => e === 'quiesce').length, 2);
  // Removing every region leaves no memory.
  await h.fe.call(F.remMemReg(h.regions[0], { needReply: true }));
  await h.fe.call(F.remMemReg(h.regions[1], { needReply: true }));
  t.equal(h.device.memory, null);
  t.equal(h.host.liveMappings(), 0);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('memory changes while no ring runs need no quiesce', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  await h.fe.setMemory(h.regions);
  await h.fe.setMemory(h.regions.slice(0, 1));
  t.notOk(h.events.includes('quiesce'));
  t.notOk(h.events.some((e) => e.startsWith('memoryChanged')));
  await assertClean(t, h);
});

t.test('an unaligned mmap offset is mapped from the page below', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const f = h.host.file(4n * MiB);
  await h.fe.call(F.addMemReg({ guestPhysAddr: 0n, size: 0x10000n, userAddr: UADDR, mmapOffset: 0x1800n }, f, { needReply: true }));
  const m = h.host.maps[0];
  t.equal(m.offset, 0x1000n);
  t.equal(m.length, 0x10800);
  m.bytes[0x800] = 0x5a; // file offset 0x1800 = GPA 0
  h.fe.send(F.setVringNum(0, 16));
  h.fe.send(F.setVringAddr({ index: 0, flags: 0, desc: UADDR, avail: UADDR + 0x100n, used: UADDR + 0x200n, log: 0n }));
  h.fe.send(F.setVringKick(0, h.host.file()));
  const mem = h.device.started.get(0)!.memory;
  t.equal(mem.gpaView(0, 1)[0], 0x5a);
  t.equal(mem.qvaView(Number(UADDR), 1)[0], 0x5a);
  await assertClean(t, h);
});

t.test('a region larger than one mapping is mapped in pieces', async (t) => {
  const h = makeHarness({ session: { maxMappingSize: 1048576 } });
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const f = h.host.file(8n * MiB);
  const region = { guestPhysAddr: 0x10_0000n, size: 3n * MiB - 0x1000n, userAddr: UADDR, mmapOffset: 0x1800n, fd: f };
  await h.fe.call(F.addMemReg(region, f, { needReply: true }));
  // File range [0x1000, 0x300800): two 1 MiB pieces and the 0xff800-byte rest.
  t.same(h.host.maps.map((m) => [m.offset, m.length]), [[0x1000n, 0x100000], [0x101000n, 0x100000], [0x201000n, 0xff800]]);
  t.equal(h.host.maps.reduce((n, m) => n + m.length, 0), 0x800 + Number(region.size));
  h.fe.send(F.setVringNum(0, 16));
  h.fe.send(F.setVringAddr({ index: 0, flags: 0, desc: UADDR, avail: UADDR + 0x100n, used: UADDR + 0x200n, log: 0n }));
  h.fe.send(F.setVringKick(0, h.host.file()));
  const mem = h.device.started.get(0)!.memory;
  t.equal(mem.regions.length, 3);
  // The last byte of the region is reachable, one past it is not.
  h.host.maps[2].bytes[h.host.maps[2].length - 1] = 0x77;
  t.equal(mem.gpaView(0x10_0000 + Number(region.size) - 1, 1)[0], 0x77);
  t.throws(() => mem.gpaView(0x10_0000 + Number(region.size), 1));
  await h.fe.call(F.remMemReg(region, { needReply: true }));
  t.equal(h.host.liveMappings(), 0, 'REM_MEM_REG unmaps every piece');
  await assertClean(t, h);
});

t.test('V1.6: replacing fds closes the old ones at the right moment', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  const oldCall = h.device.callFds.get(1)!;
  h.fe.send(F.setVringCall(1, h.host.file()));
  const newCall = h.host.lastReceived.at(-1)!;
  const iSwitch = h.events.indexOf(`call 1 ${newCall}`);
  const iClose = h.events.indexOf(`close ${oldCall}`);
  t.ok(iSwitch >= 0 && iClose > iSwitch, 'the device switches to the new call fd before the old one is closed');
  h.fe.send(F.setVringCall(1, -1));
  t.ok(h.events.includes('call 1 -1'), 'NOFD call: no notifications');
  t.notOk(h.host.open.has(newCall));

  // err fd of a running ring: the device keeps using the old one until the ring stops.
  const oldErr = h.device.started.get(2)!.errFd;
  h.fe.send(F.setVringErr(2, h.host.file()));
  t.ok(h.host.open.has(oldErr), 'old err fd still open while ring 2 runs');
  await h.fe.call(F.getVringBase(2));
  t.notOk(h.host.open.has(oldErr), 'closed once ring 2 stopped');

  // A kick fd waiting for the other pieces, replaced: the first one is closed.
  h.fe.send(F.setVringKick(2, h.host.file()));
  t.ok(h.device.started.has(2), 'ring 2 restarted with the new kick');
  await h.fe.call(F.getVringBase(2));
  h.fe.send(F.setVringNum(2, 64));
  await h.fe.call(F.remMemReg(h.regions[0], { needReply: true }));
  h.fe.send(F.setVringKick(2, h.host.file()));
  const waiting = h.host.lastReceived.at(-1)!;
  h.fe.send(F.setVringKick(2, h.host.file()));
  t.notOk(h.host.open.has(waiting), 'the replaced waiting kick fd is closed');
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('SET_VRING_ENABLE: stored while stopped, applied while started', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  h.fe.send(F.setFeatures(h.fe.ackedFeatures));
  h.fe.send(F.setVringEnable(0, 1));
  await h.fe.setMemory(h.regions);
  h.fe.send(F.setVringNum(0, 128));
  h.fe.send(ringAddr(h, 0));
  h.fe.send(F.setVringKick(0, h.queues[0].kickFd));
  t.equal(h.device.started.get(0)?.enabled, true, 'started enabled');
  h.fe.send(F.setVringEnable(0, 0));
  t.equal(h.device.enabled.get(0), false);
  // RESET_OWNER (deprecated): disables every ring, keeps everything else.
  h.fe.send(F.setVringEnable(0, 1));
  h.fe.send(F.resetOwner());
  t.equal(h.device.enabled.get(0), false);
  t.ok(h.device.started.has(0));
  t.equal(h.device.resets, 0);
  await assertClean(t, h);
});

t.test('SET_FEATURES without bit 30 enables every ring', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  h.fe.send(F.setFeatures(h.fe.ackedFeatures));
  h.fe.send(F.setFeatures(h.fe.ackedFeatures & ~(1n << 30n)));
  await h.fe.setMemory(h.regions);
  h.fe.send(F.setVringNum(1, 128));
  h.fe.send(ringAddr(h, 1));
  h.fe.send(F.setVringKick(1, h.queues[1].kickFd));
  t.equal(h.device.started.get(1)?.enabled, true);
  t.equal(h.device.started.get(1)?.features, h.device.features);
  await assertClean(t, h);
});

t.test('RESET_DEVICE on running rings: each drains first, then the device resets', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.holdStops = true;
  const replies = h.transport.received.length;
  const reset = h.fe.call(F.resetDevice({ needReply: true }));
  const after = h.fe.callU64(F.getStatus());
  await tick();
  t.same(h.events.slice(-1), ['stop 0']);
  for (let i = 0; i < 4; i++) {
    t.equal(h.device.resets, 0, `no reset while ring ${i} drains`);
    h.device.completeStop(i, i);
    await tick();
  }
  t.equal(h.device.resets, 1);
  t.same([...(await reset)!.payload], [0, 0, 0, 0, 0, 0, 0, 0], 'ack 0 after the reset');
  t.equal(await after, 0n, 'status back to 0');
  t.same(h.transport.received.slice(replies).map((x) => x.request), [R.RESET_DEVICE, R.GET_STATUS]);
  h.device.holdStops = false;
  // Ownership, protocol features and memory survive: a new start works without them.
  const r = await h.fe.call(F.getVringBase(1));
  t.same(replyState(r!.payload), [1, 0], 'ring state is back to its initial values');
  h.device.holdStops = false;
  await h.fe.start({ regions: h.regions, queues: h.queues.map((q) => ({ ...q, kickFd: h.host.file() })) });
  t.equal(h.device.started.size, 4);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('session close: stops the rings through the device, then releases everything', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.holdStops = true;
  let done1 = false;
  let done2 = false;
  h.session.close(() => (done1 = true));
  h.session.close(() => (done2 = true));
  t.ok(h.session.closed);
  t.notOk(done1, 'not done while ring 0 drains');
  t.equal(h.host.liveMappings(), 2, 'memory stays mapped while rings may still touch it');
  for (let i = 0; i < 4; i++) h.device.completeStop(i, 0);
  t.ok(done1 && done2, 'every close() caller is told');
  t.same([...h.host.open], []);
  t.equal(h.host.liveMappings(), 0);
  let done3 = false;
  h.session.close(() => (done3 = true));
  t.ok(done3, 'close() after the teardown completes at once');
  t.same(h.transport.received.filter((x) => x.request === R.GET_VRING_BASE), [], 'no replies from the teardown');
  await assertClean(t, h);
});

t.test('close while GET_VRING_BASE is pending: no reply, queued messages dropped with their fds', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.holdStops = true;
  const replies = h.transport.received.length;
  h.fe.send(F.getVringBase(1));
  h.host.lastReceived.length = 0;
  h.fe.send(F.setVringCall(1, h.host.file())); // queued behind the stop
  const queuedFd = h.host.lastReceived[0];
  t.ok(h.host.open.has(queuedFd));
  let done = false;
  h.session.close(() => (done = true));
  t.notOk(h.host.open.has(queuedFd), 'the queued message fd is closed');
  h.device.completeStop(1, 9);
  t.equal(h.transport.received.length, replies, 'no reply after close');
  t.notOk(done);
  for (const i of [0, 2, 3]) h.device.completeStop(i, 0);
  t.ok(done);
  await assertClean(t, h);
});

t.test('a device that reports a stop twice or a bad index', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.fe.send(F.setVringBase(0, 0)); // rejected: started
  t.match(h.closeReasons[0], /vring 0 is started/);
  await h.closeSession();

  const h2 = makeHarness();
  await h2.fe.init({ regions: h2.regions, queues: h2.queues });
  h2.fe.send(F.setVringBase(1, 40));
  await h2.fe.start({ regions: h2.regions, queues: h2.queues.map((q) => ({ ...q, base: q.index === 1 ? 40 : 0 })) });
  let stopDone: ((idx: number) => void) | null = null;
  h2.device.stopQueue = (index, done) => {
    h2.device.started.delete(index);
    stopDone = done;
  };
  const r = h2.fe.call(F.getVringBase(1));
  await tick();
  stopDone!(-1);
  stopDone!(5);
  t.same(replyState((await r)!.payload), [1, 40], 'an invalid index from the device keeps the known base');
  t.match(h2.logs.join('\n'), /device returned last avail index -1; keeping 40/);
  t.match(h2.logs.join('\n'), /device reported vring 1 stopped twice/);
  t.same(h2.closeReasons, []);
  h2.device.stopQueue = (index, done) => {
    h2.device.started.delete(index);
    done(0);
  };
  await assertClean(t, h2);
});

t.test('a device callback that throws closes the session instead of escaping', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.memoryChanged = () => {
    throw new Error('boom');
  };
  h.fe.send(F.addMemReg({ guestPhysAddr: 0x2_0000_0000n, size: MiB, userAddr: UADDR + 0x100_0000n, mmapOffset: 0n }, h.host.file(MiB)));
  t.match(h.closeReasons[0], /internal error handling ADD_MEM_REG: boom/);
  await assertClean(t, h);
});

t.test('a device whose stopQueue throws: the session closes, the other rings still drain', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  const stop = h.device.stopQueue.bind(h.device);
  h.device.stopQueue = (index, done) => {
    if (index !== 1) return stop(index, done);
    h.device.started.delete(1);
    throw new Error('device wedged');
  };
  t.doesNotThrow(() => h.fe.send(F.getVringBase(1)));
  t.match(h.closeReasons[0], /internal error handling GET_VRING_BASE: device wedged/);
  t.same(h.events.filter((e) => e.startsWith('stopped')), ['stopped 0', 'stopped 2', 'stopped 3']);
  await assertClean(t, h);
});

t.test('RESET_DEVICE with a stopQueue that throws mid-way closes the session', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  const stop = h.device.stopQueue.bind(h.device);
  h.device.stopQueue = (index, done) => {
    if (index !== 2) return stop(index, done);
    h.device.started.delete(2);
    throw new Error('no');
  };
  h.fe.send(F.resetDevice());
  t.match(h.closeReasons[0], /internal error handling RESET_DEVICE: no/);
  t.equal(h.device.resets, 0);
  await assertClean(t, h);
});

t.test('a failing send (EPIPE) closes the session; handle() does not throw', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  h.transport.receive = () => {
    throw new Error('EPIPE');
  };
  t.doesNotThrow(() => h.fe.send(F.getFeatures()));
  t.match(h.closeReasons[0], /internal error handling GET_FEATURES: EPIPE/);
  await assertClean(t, h);
});

t.test('a quiesce that throws closes the session, and the teardown still runs', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.quiesce = () => {
    throw new Error('cannot pause');
  };
  h.fe.send(F.remMemReg(h.regions[1]));
  t.match(h.closeReasons[0], /internal error handling REM_MEM_REG: cannot pause/);
  await assertClean(t, h);
});

t.test('V8.1: a front-end that floods messages during a pending stop is dropped, fds closed', async (t) => {
  const h = makeHarness();
  await h.fe.setupDevice({ regions: h.regions, queues: h.queues });
  h.device.holdStops = true;
  h.fe.send(F.getVringBase(0));
  h.host.lastReceived.length = 0;
  for (let i = 0; i < 65; i++) h.fe.send(F.setVringCall(1, h.host.file()));
  t.equal(h.closeReasons.length, 1);
  t.match(h.closeReasons[0], /more than 64 messages sent while waiting/);
  t.equal(h.host.lastReceived.length, 65);
  t.same(h.host.lastReceived.filter((fd) => h.host.open.has(fd)), [], 'the fds of every queued message are closed at once');
  h.device.holdStops = false;
  h.device.completeStop(0, 0);
  await assertClean(t, h);
});
