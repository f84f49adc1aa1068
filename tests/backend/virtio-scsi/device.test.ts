// The virtio-scsi device end to end through its queues, with a fake guest driver on fake guest
// memory and the real target core on a ram backstore. Bytes are the ones of virtio 1.2 §5.6 and
// SPC-4 / SAM-5.
import t, { type Test } from 'tap';
import { FakeGuestMemory, FakeSplitDriver, featureBit, VirtioFeature } from '../../../virtqueue';
import { createRamStore, LogicalUnit, ScsiTarget, type BlockStore } from '../../../scsi-emul';
import { FakeBlockStore } from '../../../scsi-emul/testing';
import { VirtioScsiDevice } from '../../../backend/virtio-scsi/device';
import type { VringSetup } from '../../../backend/vhost-user/device';
import { Logger } from '../../../backend/log';
import { native } from '../../../backend/native';

const silent = new Logger('silent');
const QSIZE = 16;
const REQ_HDR = 51; // 19 + 32-byte CDB
const RESP_HDR = 108; // 12 + 96-byte sense

interface Rig {
  mem: FakeGuestMemory;
  device: VirtioScsiDevice;
  target: ScsiTarget;
  drivers: FakeSplitDriver[];
  kickFds: number[];
}

// Every fd made by a rig is closed when its test ends.
// Pollers go before their fds: libuv keeps a closed fd's watcher otherwise (EEXIST on reuse).
const openFds: number[] = [];
const devices: VirtioScsiDevice[] = [];
t.afterEach(() => {
  for (const d of devices.splice(0)) d.disconnect();
  for (const fd of openFds.splice(0)) native.close(fd);
});

function rig(opts: { luns?: number[]; queues?: number; store?: BlockStore; stopDeadlineMs?: number } = {}): Rig {
  const mem = new FakeGuestMemory([{ gpa: 0x10_0000, size: 4 << 20 }]);
  const target = new ScsiTarget();
  for (const lun of opts.luns ?? [0]) {
    target.addLogicalUnit(lun, new LogicalUnit(opts.store ?? createRamStore({ sizeBytes: 8 << 20 }), { name: `lun${lun}` }));
  }
  const device = new VirtioScsiDevice({
    target, nexus: { initiatorPort: 'test-initiator', targetPortId: 1 }, numRequestQueues: opts.queues ?? 1, log: silent, stopDeadlineMs: opts.stopDeadlineMs,
  });
  device.connected();
  const features = featureBit(VirtioFeature.VERSION_1) | featureBit(VirtioFeature.RING_INDIRECT_DESC) | featureBit(VirtioFeature.RING_EVENT_IDX);
  const drivers: FakeSplitDriver[] = [];
  const kickFds: number[] = [];
  const memory = mem.toGuestMemory();
  for (let index = 0; index < device.queueCount; index++) {
    const d = new FakeSplitDriver(mem, QSIZE, { eventIdx: true, indirect: true });
    drivers.push(d);
    const kickFd = native.eventfd(0, true);
    kickFds.push(kickFd);
    openFds.push(kickFd);
    const c = d.config();
    const setup: VringSetup = {
      index, size: QSIZE, memory, descTable: c.descTable, availRing: c.availRing, usedRing: c.usedRing,
      lastAvailIdx: 0, kickFd, callFd: -1, errFd: -1, enabled: true, features,
    };
    device.startQueue(setup);
  }
  devices.push(device);
  return { mem, device, target, drivers, kickFds };
}

/** Let the device drain (it drains on setImmediate) and the completions publish. */
function settle(): Promise<void> {
  return new Promise((r) => setImmediate(() => setImmediate(() => setTimeout(r, 5))));
}

function lunField(lun: number): number[] {
  return [1, 0, 0x40 | (lun >> 8), lun & 0xff, 0, 0, 0, 0];
}

function cmdReq(cdb: number[], lun: number[] = lunField(0), tag = 1n, attr = 0): Uint8Array {
  const b = new Uint8Array(REQ_HDR);
  b.set(lun, 0);
  new DataView(b.buffer).setBigUint64(8, tag, true);
  b[16] = attr;
  b.set(cdb, 19);
  return b;
}

interface Resp { senseLen: number; residual: number; status: number; response: number; sense: Uint8Array; dataIn: Uint8Array; usedLen: number }

async function submit(r: Rig, req: Uint8Array, dataInLen: number, dataOut?: Uint8Array, queue = 2): Promise<Resp> {
  const d = r.drivers[queue];
  const readable = dataOut ? [req, dataOut] : [req];
  const writable = dataInLen > 0 ? [RESP_HDR, dataInLen] : [RESP_HDR];
  const head = d.addChain(readable, writable, { kick: false });
  if (d.kick()) native.eventfdWrite(r.kickFds[queue], 1);
  await settle();
  const used = d.readUsed();
  const mine = used.find((u) => u.id === head);
  if (!mine) throw new Error(`no completion for head ${head}`);
  const w = d.readWritable(head);
  const dv = new DataView(w.buffer, w.byteOffset);
  return {
    senseLen: dv.getUint32(0, true), residual: dv.getUint32(4, true), status: w[10], response: w[11],
    sense: w.slice(12, 12 + dv.getUint32(0, true)), dataIn: w.slice(RESP_HDR), usedLen: mine.len,
  };
}

t.test('config space: virtio_scsi_config bytes (§5.6.4)', async (t) => {
  const { device } = rig({ queues: 2 });
  t.same([...device.getConfig(0, 36)!], [
    2, 0, 0, 0, // num_queues
    0xfe, 3, 0, 0, // seg_max = 1022
    0xff, 0xff, 0, 0, // max_sectors
    128, 0, 0, 0, // cmd_per_lun
    16, 0, 0, 0, // event_info_size
    96, 0, 0, 0, // sense_size
    32, 0, 0, 0, // cdb_size
    0, 0, 0, 0, // max_channel, max_target
    0xff, 0x3f, 0, 0, // max_lun 16383
  ]);
  t.equal(device.getConfig(30, 8), null, 'past the end');
  t.ok(device.setConfig(20, new Uint8Array([96, 0, 0, 0]), 0), 'same sense_size accepted');
  t.notOk(device.setConfig(20, new Uint8Array([200, 0, 0, 0]), 0), 'other sense_size refused');
  t.notOk(device.setConfig(0, new Uint8Array([1, 0, 0, 0]), 0), 'num_queues is read-only');
});

t.test('first command gets POWER ON/RESET, then GOOD; INQUIRY is exempt (SAM-5 §5.14, SPC-4)', async (t) => {
  const r = rig();
  const inq = await submit(r, cmdReq([0x12, 0, 0, 0, 96, 0]), 96);
  t.equal(inq.response, 0, 'S_OK');
  t.equal(inq.status, 0x00, 'GOOD');
  t.same([...inq.dataIn.subarray(0, 3)], [0x00, 0x00, 0x06], 'direct-access device, SPC-4');
  t.equal(inq.usedLen, RESP_HDR + inq.dataIn.length - inq.residual, 'used len = response + data written');
  const tur = await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  t.equal(tur.response, 0, 'a CHECK CONDITION travels as S_OK (§5.6.6.1)');
  t.equal(tur.status, 0x02, 'CHECK CONDITION');
  t.equal(tur.sense[0] & 0x7f, 0x70, 'fixed format');
  t.equal(tur.sense[2] & 0x0f, 0x06, 'UNIT ATTENTION');
  t.same([tur.sense[12], tur.sense[13]], [0x29, 0x00], 'POWER ON, RESET, OR BUS DEVICE RESET OCCURRED');
  const tur2 = await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  t.equal(tur2.status, 0x00, 'then GOOD');
  t.equal(tur2.senseLen, 0);
});

t.test('WRITE(10) then READ(10) moves data; residuals are reported', async (t) => {
  const r = rig();
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0); // consume the UA
  const data = new Uint8Array(1024).map((_, i) => (i * 7 + 3) & 0xff);
  const w = await submit(r, cmdReq([0x2a, 0, 0, 0, 0, 5, 0, 0, 2, 0]), 0, data);
  t.equal(w.status, 0);
  t.equal(w.response, 0);
  t.equal(w.residual, 0);
  const rd = await submit(r, cmdReq([0x28, 0, 0, 0, 0, 5, 0, 0, 2, 0]), 1024 + 512);
  t.equal(rd.status, 0);
  t.same(rd.dataIn.subarray(0, 1024), data);
  t.equal(rd.residual, 512, 'buffer larger than the transfer: residual = the rest');
  t.equal(rd.usedLen, RESP_HDR + 1024);
});

t.test('transport-level answers: BAD_TARGET, OVERRUN, FAILURE', async (t) => {
  const r = rig();
  const badTarget = await submit(r, cmdReq([0x12, 0, 0, 0, 96, 0], [1, 1, 0x40, 0, 0, 0, 0, 0]), 96);
  t.equal(badTarget.response, 3, 'target 1 → VIRTIO_SCSI_S_BAD_TARGET');
  const badLun = await submit(r, cmdReq([0x12, 0, 0, 0, 96, 0], [1, 0, 0x40, 0, 0, 0, 0, 1]), 96);
  t.equal(badLun.response, 3, 'non-zero bytes 4..7 are never rounded to a LUN');
  const badFirst = await submit(r, cmdReq([0x12, 0, 0, 0, 96, 0], [2, 0, 0x40, 0, 0, 0, 0, 0]), 96);
  t.equal(badFirst.response, 3, 'byte 0 must be 1');
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  const overrun = await submit(r, cmdReq([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 512);
  t.equal(overrun.response, 1, 'READ of 8 blocks into 512 bytes → VIRTIO_SCSI_S_OVERRUN');
  const short = await submit(r, new Uint8Array(20), 0);
  t.equal(short.response, 9, 'header shorter than 51 bytes → VIRTIO_SCSI_S_FAILURE');
  const both = await submit(r, cmdReq([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 512, new Uint8Array(512));
  t.equal(both.response, 9, 'data-out and data-in without INOUT → FAILURE');
  const attr = await submit(r, cmdReq([0, 0, 0, 0, 0, 0], lunField(0), 9n, 7), 0);
  t.equal(attr.response, 9, 'task attribute 7 is not a virtio value');
});

t.test('an unknown LUN is a null logical unit (SPC-4: peripheral qualifier 011b)', async (t) => {
  const r = rig();
  const inq = await submit(r, cmdReq([0x12, 0, 0, 0, 36, 0], lunField(7)), 36);
  t.equal(inq.response, 0);
  t.equal(inq.status, 0);
  t.equal(inq.dataIn[0], 0x7f, 'PQ 011b, type 1Fh');
  const tur = await submit(r, cmdReq([0, 0, 0, 0, 0, 0], lunField(7)), 0);
  t.equal(tur.status, 2);
  t.same([tur.sense[2] & 0x0f, tur.sense[12], tur.sense[13]], [0x05, 0x25, 0x00], 'LOGICAL UNIT NOT SUPPORTED');
});

t.test('a response buffer too small to report anything breaks only that queue', async (t) => {
  const r = rig({ queues: 2 });
  const d = r.drivers[2];
  d.addChain([cmdReq([0, 0, 0, 0, 0, 0])], [16], { kick: false });
  if (d.kick()) native.eventfdWrite(r.kickFds[2], 1);
  await settle();
  t.same(d.readUsed(), [], 'nothing completed');
  d.addChain([cmdReq([0, 0, 0, 0, 0, 0])], [RESP_HDR], { kick: false });
  native.eventfdWrite(r.kickFds[2], 1);
  await settle();
  t.same(d.readUsed(), [], 'the broken queue stays stopped');
  const other = await submit(r, cmdReq([0x12, 0, 0, 0, 36, 0]), 36, undefined, 3);
  t.equal(other.status, 0, 'the other request queue still works');
});

function tmf(subtype: number, lun: number[], tag = 0n): Uint8Array {
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0, true);
  dv.setUint32(4, subtype, true);
  b.set(lun, 8);
  dv.setBigUint64(16, tag, true);
  return b;
}

async function control(t: Test, r: Rig, req: Uint8Array, respLen: number): Promise<Uint8Array> {
  const d = r.drivers[0];
  const head = d.addChain([req], [respLen], { kick: false });
  if (d.kick()) native.eventfdWrite(r.kickFds[0], 1);
  await settle();
  t.ok(d.readUsed().some((u) => u.id === head), 'control buffer returned');
  return d.readWritable(head);
}

t.test('control queue: TMFs and AN (§5.6.6.2)', async (t) => {
  const r = rig();
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  t.same([...await control(t, r, tmf(0, lunField(0), 77n), 1)], [0], 'ABORT TASK of an unknown tag → FUNCTION COMPLETE');
  t.same([...await control(t, r, tmf(6, lunField(0), 77n), 1)], [0], 'QUERY TASK of an unknown tag → FUNCTION COMPLETE');
  t.same([...await control(t, r, tmf(99, lunField(0)), 1)], [11], 'unknown subtype → FUNCTION REJECTED');
  t.same([...await control(t, r, tmf(5, [1, 1, 0x40, 0, 0, 0, 0, 0]), 1)], [3], 'wrong target → BAD_TARGET');
  t.same([...await control(t, r, tmf(5, lunField(0)), 1)], [0], 'LOGICAL UNIT RESET → FUNCTION COMPLETE');
  const tur = await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  t.same([tur.status, tur.sense[12], tur.sense[13]], [2, 0x29, 0x03], 'then BUS DEVICE RESET FUNCTION OCCURRED');
  const an = new Uint8Array(16);
  new DataView(an.buffer).setUint32(0, 1, true);
  an.set(lunField(0), 4);
  t.same([...await control(t, r, an, 5)], [0, 0, 0, 0, 0], 'AN QUERY: event_actual 0, S_OK');
  const unknown = new Uint8Array(24);
  new DataView(unknown.buffer).setUint32(0, 9, true);
  t.same([...await control(t, r, unknown, 1)], [9], 'unknown control type → FAILURE');
  t.same([...await control(t, r, new Uint8Array([0, 0, 0, 0, 5]), 1)], [9], 'truncated TMF → FAILURE');
});

t.test('event queue: held buffers, EVENTS_MISSED, rewind on stop (§5.6.6.3)', async (t) => {
  const r = rig();
  t.notOk(r.device.postEvent(1, 0, 1), 'no buffer yet: missed');
  const d = r.drivers[1];
  const h1 = d.addChain([], [16]);
  const h2 = d.addChain([], [16]);
  await settle();
  t.same(d.readUsed(), [], 'buffers are held, not returned');
  t.ok(r.device.postEvent(1, 3, 1));
  await settle();
  t.same(d.readUsed().map((u) => u.id), [h1]);
  t.same([...d.readWritable(h1)], [1, 0, 0, 0x80, 1, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 0], 'TRANSPORT_RESET|EVENTS_MISSED, LUN 3 (peripheral, as REPORT LUNS), RESCAN');
  const idx = await new Promise<number>((res) => r.device.stopQueue(1, res));
  t.equal(idx, 1, 'the held buffer is given back: next avail index rewound to 1');
  void h2;
});

t.test('GET_VRING_BASE on a request queue reports the next avail index', async (t) => {
  const r = rig();
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0);
  const idx = await new Promise<number>((res) => r.device.stopQueue(2, res));
  t.equal(idx, 2);
});

function offer(r: Rig, queue: number, req: Uint8Array, writable: number[]): number {
  const d = r.drivers[queue];
  const head = d.addChain([req], writable, { kick: false });
  if (d.kick()) native.eventfdWrite(r.kickFds[queue], 1);
  return head;
}

t.test('GET_VRING_BASE waits for in-flight I/O before answering (reliability.md §4.2)', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0); // UA
  const head = offer(r, 2, cmdReq([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), [RESP_HDR, 512]);
  await settle();
  t.equal(store.pending('read').length, 1, 'the read is in flight');
  let stoppedAt = -1;
  r.device.stopQueue(2, (idx) => { stoppedAt = idx; });
  await settle();
  t.equal(stoppedAt, -1, 'no reply while the read is outstanding');
  store.pending('read')[0].complete();
  await settle();
  t.equal(stoppedAt, 2, 'answered once it completed');
  t.same(r.drivers[2].readUsed().map((u) => u.id), [head], 'and its completion was published before the reply');
});

t.test('past the stop deadline, late completions never touch guest memory (V8.3)', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store, stopDeadlineMs: 50 });
  await submit(r, cmdReq([0, 0, 0, 0, 0, 0]), 0); // UA
  const head = offer(r, 2, cmdReq([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), [RESP_HDR, 512]);
  await settle();
  const started = Date.now();
  const idx = await new Promise<number>((res) => r.device.stopQueue(2, res));
  t.ok(Date.now() - started >= 45, 'waited for the deadline');
  t.equal(idx, 2, 'the abandoned request counts as consumed');
  const before = r.drivers[2].readWritable(head).slice(0, RESP_HDR);
  const usedBefore = r.drivers[2].usedIdx;
  store.pending('read')[0].complete();
  await settle();
  t.same(r.drivers[2].readWritable(head).slice(0, RESP_HDR), before, 'response header untouched');
  t.equal(r.drivers[2].usedIdx, usedBefore, 'used ring untouched');
});
