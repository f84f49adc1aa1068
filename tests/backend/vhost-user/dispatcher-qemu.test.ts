// The message sequences QEMU 7.2 and 10.0 send to a vhost-user-scsi back-end
// (hw/virtio/vhost-user.c vhost_user_backend_init, hw/virtio/vhost.c vhost_dev_init /
// vhost_dev_start / vhost_dev_stop), replayed by the fake front-end against the session.
import t from 'tap';
import { makeHarness, assertClean, MiB, UADDR } from './harness';
import { FrontendRequests as F, VIRTIO_CONFIG_S_DRIVER_OK } from '../../../backend/vhost-user/fake-frontend';
import { OFFERED_PROTOCOL_FEATURES, VhostUserSession } from '../../../backend/vhost-user/dispatcher';
import { FrontendRequest as R } from '../../../backend/vhost-user/protocol';

t.test('offered protocol features: MQ, REPLY_ACK, CONFIG, RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS', (t) => {
  // bits 0, 3, 9, 13, 15, 16
  t.equal(OFFERED_PROTOCOL_FEATURES, 0x1_a209n);
  t.same(VhostUserSession.implementedRequests(), [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 25, 34, 36, 37, 38, 39, 40]);
  t.end();
});

for (const flavor of ['qemu-7.2', 'qemu-10.0'] as const) {
  t.test(`${flavor}: init, start, stop, restart`, async (t) => {
    const h = makeHarness();
    h.device.stopIdx.set(2, 17).set(3, 0xfffe);
    const opts = { regions: h.regions, queues: h.queues, flavor };
    const r = await h.fe.setupDevice(opts);

    t.equal(r.offeredFeatures, h.device.features | (1n << 30n), 'GET_FEATURES: device features | PROTOCOL_FEATURES');
    t.equal(r.offeredProtocolFeatures, 0x1_a209n);
    // QEMU masks CONFIG for vhost-user-scsi: MQ | REPLY_ACK | RESET_DEVICE | CONFIGURE_MEM_SLOTS | STATUS.
    t.equal(r.protocolFeatures, 0x1_a009n);
    t.equal(r.queueNum, 4n, 'GET_QUEUE_NUM');
    t.equal(r.maxMemSlots, 32n, 'GET_MAX_MEM_SLOTS');
    t.same(h.closeReasons, []);

    // Memory came as two ADD_MEM_REG (CONFIGURE_MEM_SLOTS), mapped from the region fds.
    t.equal(h.host.maps.length, 2);
    t.same(h.host.maps.map((m) => [m.offset, m.length]), [[0n, 2 * 1048576], [2n * MiB, 2 * 1048576]]);
    t.equal(h.host.open.size, 4 * 3, 'the region fds are closed once mapped; kick, call, err per queue are held');

    for (const q of h.queues) {
      const s = h.device.started.get(q.index);
      t.ok(s, `queue ${q.index} started`);
      if (!s) continue;
      t.equal(s.size, 128);
      t.equal(s.descTable, q.desc);
      t.equal(s.availRing, q.avail);
      t.equal(s.usedRing, q.used);
      t.equal(s.lastAvailIdx, 0);
      t.equal(s.features, h.device.features, 'negotiated virtio features without bit 30');
      t.equal(s.memory.regions.length, 2);
      t.ok(s.kickFd >= 1000 && s.callFd >= 1000 && s.errFd >= 1000, 'fds are the back-end copies');
      t.equal(h.device.enabled.get(q.index), true, 'enabled by SET_VRING_ENABLE(1)');
    }
    // Started disabled (PROTOCOL_FEATURES negotiated), then enabled.
    t.equal(h.device.started.get(0)!.enabled, false);
    t.equal(h.device.status, 0x0f, 'ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK');
    t.same(h.events.filter((e) => e.startsWith('status')), ['status 8', `status ${8 | 7}`]);
    t.ok(h.device.status & VIRTIO_CONFIG_S_DRIVER_OK);

    const startedEvents = h.events.length;
    const bases = await h.fe.stopDevice([0, 1, 2, 3]);
    t.same(bases, [0, 0, 17, 0xfffe], 'GET_VRING_BASE returns what the device stopped at');
    const stopEvents = h.events.slice(startedEvents);
    const expected =
      flavor === 'qemu-7.2'
        ? // 7.2 sends SET_STATUS(0) before the rings are stopped: it must not lose their state.
          ['status 0', 'enable 0 false', 'enable 1 false', 'enable 2 false', 'enable 3 false', 'stop 0', 'stopped 0', 'stop 1', 'stopped 1', 'stop 2', 'stopped 2', 'stop 3', 'stopped 3']
        : ['enable 0 false', 'enable 1 false', 'enable 2 false', 'enable 3 false', 'stop 0', 'stopped 0', 'stop 1', 'stopped 1', 'stop 2', 'stopped 2', 'stop 3', 'stopped 3', 'status 0'];
    t.same(stopEvents.filter((e) => !e.startsWith('close')), expected);
    t.equal(h.device.resets, 0, 'SET_STATUS(0) is not a device reset');
    // C15: the kick fds are closed after the stop; call and err fds stay.
    t.equal(h.host.open.size, 4 * 2);

    // vhost_dev_start again (e.g. VM resumed): QEMU resends no memory (shadow table unchanged).
    const restartQueues = h.queues.map((q, i) => ({ ...q, base: bases[i], kickFd: h.host.file() }));
    await h.fe.start({ ...opts, queues: restartQueues });
    t.equal(h.host.maps.length, 2, 'no new mapping');
    t.equal(h.device.started.get(3)!.lastAvailIdx, 0xfffe);
    t.equal(h.device.started.get(2)!.lastAvailIdx, 17);
    t.same(h.closeReasons, []);
    await assertClean(t, h);
  });
}

t.test('a front-end without REPLY_ACK and CONFIGURE_MEM_SLOTS: SET_MEM_TABLE, GET_FEATURES barriers', async (t) => {
  const h = makeHarness();
  const r = await h.fe.setupDevice({ regions: h.regions, queues: h.queues, frontendProtocolFeatures: 0x1n /* MQ */ });
  t.equal(r.protocolFeatures, 1n);
  t.equal(r.maxMemSlots, null);
  t.equal(h.host.maps.length, 2, 'one SET_MEM_TABLE with two regions');
  t.equal(h.device.started.size, 4);
  t.equal(h.device.status, -1, 'no SET_STATUS without STATUS');
  // No acks were sent: every reply is GET_FEATURES, GET_PROTOCOL_FEATURES or GET_QUEUE_NUM.
  t.same(new Set(h.transport.received.map((x) => x.request)), new Set([R.GET_FEATURES, R.GET_PROTOCOL_FEATURES, R.GET_QUEUE_NUM]));
  const bases = await h.fe.stopDevice([0, 1, 2, 3]);
  t.same(bases, [0, 0, 0, 0]);
  await assertClean(t, h);
});

t.test('a legacy front-end without protocol features: rings start enabled', async (t) => {
  const h = makeHarness();
  const fe = h.fe;
  await fe.call(F.getFeatures());
  fe.send(F.setOwner());
  fe.send(F.setFeatures(h.device.features)); // bit 30 not acked
  await fe.call(F.setMemTable(h.regions, h.regions.map((r) => r.fd)));
  const q = h.queues[2];
  fe.send(F.setVringNum(2, 256));
  fe.send(F.setVringAddr({ index: 2, flags: 0, desc: BigInt(q.desc), used: BigInt(q.used), avail: BigInt(q.avail), log: 0n }));
  fe.send(F.setVringKick(2, q.kickFd));
  t.equal(h.device.started.get(2)?.enabled, true, '"the ring starts directly in the enabled state"');
  t.equal(h.device.started.get(2)?.size, 256);
  // GET_PROTOCOL_FEATURES still works (bit 30 was offered), SET_VRING_ENABLE does not.
  t.equal(await fe.callU64(F.getProtocolFeatures()), OFFERED_PROTOCOL_FEATURES);
  fe.send(F.setVringEnable(2, 0));
  t.match(h.closeReasons[0], /SET_VRING_ENABLE: VHOST_USER_F_PROTOCOL_FEATURES was not negotiated/);
  await assertClean(t, h);
});

t.test('RESET_DEVICE after a stop: device reset, rings back to the initial state, memory kept', async (t) => {
  const h = makeHarness();
  const opts = { regions: h.regions, queues: h.queues };
  await h.fe.setupDevice(opts);
  await h.fe.stopDevice([0, 1, 2, 3]);
  h.fe.send(F.resetDevice());
  t.equal(h.device.resets, 1);
  // The next start needs no memory messages (QEMU's shadow table) and starts from base 0.
  await h.fe.start({ ...opts, queues: h.queues.map((q) => ({ ...q, kickFd: h.host.file() })) });
  t.equal(h.device.started.size, 4);
  t.equal(h.host.maps.length, 2);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('memory hot-plug as QEMU does it with CONFIGURE_MEM_SLOTS: ADD_MEM_REG while running', async (t) => {
  const h = makeHarness();
  const opts = { regions: h.regions, queues: h.queues };
  await h.fe.setupDevice(opts);
  const dimm = h.host.file(MiB);
  await h.fe.setMemory([...h.regions, { guestPhysAddr: 0x2_0000_0000n, size: MiB, userAddr: UADDR + 0x1000_0000n, mmapOffset: 0n, fd: dimm }]);
  t.equal(h.device.memory?.regions.length, 3);
  await h.fe.setMemory(h.regions); // unplug
  t.equal(h.device.memory?.regions.length, 2);
  t.same(h.events.filter((e) => e === 'quiesce' || e.startsWith('memoryChanged')), ['quiesce', 'memoryChanged 3', 'quiesce', 'memoryChanged 2']);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});
