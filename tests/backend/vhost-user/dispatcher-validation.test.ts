// Every validation of the request dispatcher fed its bad input (reliability.md C1-C11, V1-V3).
// Each case: the connection is dropped with a reason, the fds that came with the bad
// message are already closed at that moment (C1, C6, V1.5), and after the teardown nothing
// is left open or mapped and nothing was closed twice (V1.6).
import t from 'tap';
import { makeHarness, assertClean, MiB, UADDR, type Harness } from './harness';
import { FrontendRequests as F, encodeRequest, type EncodedRequest } from '../../../backend/vhost-user/fake-frontend';
import { OFFERED_PROTOCOL_FEATURES } from '../../../backend/vhost-user/dispatcher';
import { encodeMemTable, encodeU64, encodeVringState, type MemRegion } from '../../../backend/vhost-user/messages';
import { FrontendRequest as R } from '../../../backend/vhost-user/protocol';
import { VirtqueueError } from '../../../virtqueue';

type State = 'fresh' | 'init' | 'init+config' | 'running';

interface Case {
  name: string;
  state: State;
  msg: (h: Harness) => EncodedRequest;
  reason: RegExp;
  before?: (h: Harness) => void | Promise<void>;
}

async function prepare(h: Harness, state: State): Promise<void> {
  const opts = { regions: h.regions, queues: h.queues };
  if (state === 'init') await h.fe.init(opts);
  if (state === 'init+config') await h.fe.init({ ...opts, frontendProtocolFeatures: OFFERED_PROTOCOL_FEATURES });
  if (state === 'running') await h.fe.setupDevice(opts);
}

const big = (n: bigint) => n;
const reg = (gpa: bigint, size: bigint, uaddr: bigint, off = 0n): MemRegion => ({ guestPhysAddr: gpa, size, userAddr: uaddr, mmapOffset: off });
const ram = (h: Harness) => h.host.file(4n * MiB);
const ev = (h: Harness) => h.host.file();
const addr = (index: number, desc: bigint, avail: bigint, used: bigint, flags = 0) => F.setVringAddr({ index, flags, desc, avail, used, log: 0n });

const cases: Case[] = [
  // V1.2: header flags.
  { name: 'version 0', state: 'fresh', msg: () => F.getFeatures({ flags: 0 }), reason: /unsupported protocol version 0/ },
  { name: 'version 2', state: 'fresh', msg: () => F.getFeatures({ flags: 2 }), reason: /unsupported protocol version 2/ },
  { name: 'version 3 with an fd', state: 'init', msg: (h) => F.setVringCall(0, ev(h), { flags: 3 }), reason: /unsupported protocol version 3/ },
  { name: 'REPLY flag on a request', state: 'fresh', msg: () => F.getFeatures({ flags: 5 }), reason: /the REPLY flag is set on a request/ },
  { name: 'undefined flag bits', state: 'fresh', msg: () => F.getFeatures({ flags: 0x11 }), reason: /undefined header flag bits 0x11/ },
  // V1.3, C11: request codes.
  { name: 'request code 0', state: 'fresh', msg: () => encodeRequest(0), reason: /unknown request code 0$/ },
  { name: 'request code 44', state: 'init', msg: (h) => encodeRequest(44, encodeU64(0n), [ev(h)]), reason: /unknown request code 44$/ },
  { name: 'request code 0xffffffff', state: 'fresh', msg: () => encodeRequest(0xffffffff), reason: /unknown request code 4294967295/ },
  // V2.16: messages of features not offered, their fds closed (C6).
  { name: 'SET_LOG_BASE', state: 'init', msg: (h) => F.setLogBase({ mmapSize: 4096n, mmapOffset: 0n }, ram(h)), reason: /SET_LOG_BASE: needs protocol feature LOG_SHMFD, which this back-end does not offer/ },
  { name: 'SET_LOG_FD', state: 'init', msg: (h) => F.setLogFd(ev(h)), reason: /SET_LOG_FD: needs protocol feature LOG_SHMFD/ },
  { name: 'SET_BACKEND_REQ_FD', state: 'init', msg: (h) => F.setBackendReqFd(ev(h)), reason: /SET_BACKEND_REQ_FD: needs protocol feature BACKEND_REQ/ },
  { name: 'GET_INFLIGHT_FD', state: 'init', msg: () => F.getInflightFd({ mmapSize: 0n, mmapOffset: 0n, numQueues: 4, queueSize: 128 }), reason: /GET_INFLIGHT_FD: needs protocol feature INFLIGHT_SHMFD/ },
  { name: 'SET_INFLIGHT_FD', state: 'init', msg: (h) => F.setInflightFd({ mmapSize: 8192n, mmapOffset: 0n, numQueues: 4, queueSize: 128 }, ram(h)), reason: /SET_INFLIGHT_FD: needs protocol feature INFLIGHT_SHMFD/ },
  { name: 'SET_VRING_ENDIAN', state: 'init', msg: () => F.setVringEndian(0, 1), reason: /SET_VRING_ENDIAN: needs protocol feature CROSS_ENDIAN/ },
  { name: 'VRING_KICK (in-band)', state: 'running', msg: () => F.vringKick(2), reason: /VRING_KICK: needs protocol feature INBAND_NOTIFICATIONS/ },
  { name: 'IOTLB_MSG', state: 'init', msg: () => encodeRequest(R.IOTLB_MSG, new Uint8Array(32)), reason: /IOTLB_MSG: not supported/ },
  { name: 'GPU_SET_SOCKET', state: 'init', msg: (h) => encodeRequest(R.GPU_SET_SOCKET, undefined, [ev(h)]), reason: /GPU_SET_SOCKET: not supported/ },
  { name: 'SET_DEVICE_STATE_FD', state: 'init', msg: (h) => encodeRequest(R.SET_DEVICE_STATE_FD, encodeVringState(0, 0), [ev(h)]), reason: /needs protocol feature DEVICE_STATE/ },
  { name: 'GET_CONFIG when CONFIG was not negotiated', state: 'init', msg: () => F.getConfig(0, 36), reason: /GET_CONFIG: needs protocol feature CONFIG, which was not negotiated/ },
  { name: 'GET_QUEUE_NUM before SET_PROTOCOL_FEATURES', state: 'fresh', msg: () => F.getQueueNum(), reason: /GET_QUEUE_NUM: needs protocol feature MQ, which was not negotiated/ },
  // Ownership.
  { name: 'SET_MEM_TABLE before SET_OWNER', state: 'fresh', msg: (h) => { const f = ram(h); return F.setMemTable([reg(0n, MiB, UADDR), reg(MiB, MiB, UADDR + MiB, MiB)], [f, f]); }, reason: /SET_MEM_TABLE: sent before SET_OWNER/ },
  { name: 'SET_VRING_CALL before SET_OWNER', state: 'fresh', msg: (h) => F.setVringCall(0, ev(h)), reason: /sent before SET_OWNER/ },
  // V1.4: exact sizes.
  { name: 'SET_FEATURES with 7 bytes', state: 'init', msg: () => F.setFeatures(0n, { payload: new Uint8Array(7) }), reason: /SET_FEATURES: u64 payload is 7 bytes, expected 8/ },
  { name: 'SET_VRING_NUM with 12 bytes', state: 'init', msg: () => F.setVringNum(0, 128, { payload: new Uint8Array(12) }), reason: /vring state payload is 12 bytes, expected 8/ },
  { name: 'SET_VRING_ADDR with 32 bytes', state: 'init', msg: () => encodeRequest(R.SET_VRING_ADDR, new Uint8Array(32)), reason: /vring address payload is 32 bytes, expected 40/ },
  { name: 'GET_FEATURES with a payload', state: 'fresh', msg: () => F.getFeatures({ payload: new Uint8Array(8) }), reason: /GET_FEATURES: empty payload is 8 bytes, expected 0/ },
  { name: 'SET_MEM_TABLE with 0 regions', state: 'init', msg: () => encodeRequest(R.SET_MEM_TABLE, new Uint8Array(8)), reason: /nregions 0 is outside 1\.\.8/ },
  {
    // A whole 9-region table (296 bytes) never gets past the framing (see below); a table
    // that claims 9 regions in a 1-region payload must be caught by the codec.
    name: 'SET_MEM_TABLE claiming 9 regions',
    state: 'init',
    msg: (h) => {
      const p = encodeMemTable([reg(0n, MiB, UADDR)]);
      p[0] = 9;
      const f = ram(h);
      return encodeRequest(R.SET_MEM_TABLE, p, Array(8).fill(f));
    },
    reason: /nregions 9 is outside 1\.\.8/,
  },
  { name: 'ADD_MEM_REG with 32 bytes', state: 'init', msg: (h) => F.addMemReg(reg(0n, MiB, UADDR), ram(h), { payload: new Uint8Array(32) }), reason: /single memory region payload is 32 bytes, expected 40/ },
  // V1.5: fd counts (C1).
  { name: 'SET_VRING_NUM with an fd', state: 'init', msg: (h) => F.setVringNum(0, 128, { fds: [ev(h)] }), reason: /SET_VRING_NUM: carries 1 fd\(s\), expected 0/ },
  { name: 'GET_FEATURES with two fds', state: 'fresh', msg: (h) => F.getFeatures({ fds: [ev(h), ev(h)] }), reason: /GET_FEATURES: carries 2 fd\(s\), expected 0/ },
  { name: 'SET_VRING_KICK without fd and without NOFD', state: 'init', msg: () => F.setVringKick(0, 5, { fds: [] }), reason: /SET_VRING_KICK: carries 0 fd\(s\), expected 1/ },
  { name: 'SET_VRING_CALL with two fds', state: 'init', msg: (h) => F.setVringCall(0, ev(h), { fds: [ev(h), ev(h)] }), reason: /SET_VRING_CALL: carries 2 fd\(s\), expected 1/ },
  { name: 'SET_VRING_ERR with NOFD and an fd', state: 'init', msg: (h) => F.setVringErr(0, -1, { fds: [ev(h)] }), reason: /SET_VRING_ERR: carries 1 fd\(s\), expected 0/ },
  { name: 'SET_MEM_TABLE: 2 regions, 1 fd', state: 'init', msg: (h) => F.setMemTable([reg(0n, MiB, UADDR), reg(MiB, MiB, UADDR + MiB, MiB)], [ram(h)]), reason: /SET_MEM_TABLE: carries 1 fd\(s\), expected 2/ },
  { name: 'ADD_MEM_REG without fd', state: 'init', msg: () => F.addMemReg(reg(0n, MiB, UADDR), 0, { fds: [] }), reason: /ADD_MEM_REG: carries 0 fd\(s\), expected 1/ },
  { name: 'ADD_MEM_REG with two fds', state: 'init', msg: (h) => F.addMemReg(reg(0n, MiB, UADDR), 0, { fds: [ram(h), ram(h)] }), reason: /ADD_MEM_REG: carries 2 fd\(s\), expected 1/ },
  { name: 'REM_MEM_REG with two fds', state: 'running', msg: (h) => F.remMemReg(reg(0n, 2n * MiB, UADDR), { fds: [ram(h), ram(h)] }), reason: /REM_MEM_REG: carries 2 fd\(s\), expected 1/ },
  // V2.3, C4, C10: vring indices as unsigned 32-bit values.
  { name: 'SET_VRING_NUM index = queue count', state: 'init', msg: () => F.setVringNum(4, 128), reason: /vring index 4 out of range \(4 queues\)/ },
  { name: 'SET_VRING_NUM index 0xffffffff', state: 'init', msg: () => F.setVringNum(0xffffffff, 128), reason: /vring index 4294967295 out of range/ },
  { name: 'SET_VRING_ADDR index 0xffffffff', state: 'init', msg: () => addr(0xffffffff, 0n, 0n, 0n), reason: /vring index 4294967295 out of range/ },
  { name: 'SET_VRING_BASE index 0x80000000', state: 'init', msg: () => F.setVringBase(0x80000000, 0), reason: /vring index 2147483648 out of range/ },
  { name: 'GET_VRING_BASE index 4', state: 'running', msg: () => F.getVringBase(4), reason: /vring index 4 out of range/ },
  { name: 'SET_VRING_ENABLE index 4', state: 'running', msg: () => F.setVringEnable(4, 1), reason: /vring index 4 out of range/ },
  { name: 'SET_VRING_KICK index 255', state: 'init', msg: (h) => F.setVringKick(255, ev(h)), reason: /vring index 255 out of range/ },
  { name: 'SET_VRING_CALL with bit 9 set', state: 'init', msg: (h) => encodeRequest(R.SET_VRING_CALL, encodeU64(0x200n), [ev(h)]), reason: /reserved bits set in 0x200/ },
  // V2.4: SET_VRING_NUM.
  { name: 'SET_VRING_NUM 0', state: 'init', msg: () => F.setVringNum(1, 0), reason: /size 0 is not a power of 2 in 1\.\.1024/ },
  { name: 'SET_VRING_NUM 3', state: 'init', msg: () => F.setVringNum(1, 3), reason: /size 3 is not a power of 2/ },
  { name: 'SET_VRING_NUM 2048 (device max 1024)', state: 'init', msg: () => F.setVringNum(1, 2048), reason: /size 2048 is not a power of 2 in 1\.\.1024/ },
  { name: 'SET_VRING_NUM 65536', state: 'init', msg: () => F.setVringNum(1, 65536), reason: /size 65536/ },
  { name: 'SET_VRING_NUM while started', state: 'running', msg: () => F.setVringNum(2, 64), reason: /vring 2 is started/ },
  // V2.5: SET_VRING_ADDR.
  { name: 'descriptor table 8-aligned', state: 'init', msg: () => addr(0, UADDR + 8n, UADDR + 0x1000n, UADDR + 0x2000n), reason: /descriptor table 0x7f1234000008 is not 16-byte aligned/ },
  { name: 'available ring odd', state: 'init', msg: () => addr(0, UADDR, UADDR + 0x1001n, UADDR + 0x2000n), reason: /available ring 0x7f1234001001 is not 2-byte aligned/ },
  { name: 'used ring 2-aligned', state: 'init', msg: () => addr(0, UADDR, UADDR + 0x1000n, UADDR + 0x2002n), reason: /used ring 0x7f1234002002 is not 4-byte aligned/ },
  { name: 'VHOST_VRING_F_LOG', state: 'init', msg: () => addr(0, UADDR, UADDR + 0x1000n, UADDR + 0x2000n, 1), reason: /logging requested, but VHOST_F_LOG_ALL is not offered/ },
  { name: 'undefined vring flags', state: 'init', msg: () => addr(0, UADDR, UADDR + 0x1000n, UADDR + 0x2000n, 2), reason: /undefined flags 0x2/ },
  { name: 'ring address at 2^53', state: 'init', msg: () => addr(0, 1n << 53n, UADDR + 0x1000n, UADDR + 0x2000n), reason: /descriptor table address 0x20000000000000 is above 2\^53/ },
  { name: 'ring address 2^64 - 16', state: 'init', msg: () => addr(0, UADDR, UADDR + 0x1000n, (1n << 64n) - 16n), reason: /used ring address 0xfffffffffffffff0 is above 2\^53/ },
  { name: 'SET_VRING_ADDR while started', state: 'running', msg: () => addr(1, UADDR, UADDR + 0x1000n, UADDR + 0x2000n), reason: /vring 1 is started/ },
  // V2.6, V2.7: bases.
  { name: 'SET_VRING_BASE with bits 16-31', state: 'init', msg: () => F.setVringBase(0, 0x10000), reason: /base 0x10000 has reserved bits 16-31 set/ },
  { name: 'SET_VRING_BASE while started', state: 'running', msg: () => F.setVringBase(3, 5), reason: /vring 3 is started/ },
  { name: 'GET_VRING_BASE num 1', state: 'running', msg: () => F.getVringBase(2, 1), reason: /reserved num field is 1, must be 0/ },
  // V2.8: kicks.
  { name: 'SET_VRING_KICK with NOFD (polling)', state: 'init', msg: () => F.setVringKick(0, -1), reason: /polling mode \(no kick fd\) is not supported/ },
  { name: 'SET_VRING_KICK on a started ring', state: 'running', msg: (h) => F.setVringKick(1, ev(h)), reason: /vring 1 is started/ },
  // V2.9, V2.11.
  { name: 'SET_VRING_ENABLE 2', state: 'running', msg: () => F.setVringEnable(1, 2), reason: /enable value 2 is not 0 or 1/ },
  { name: 'SET_STATUS 0x100', state: 'running', msg: () => F.setStatus(0x100), reason: /status 0x100 does not fit the 8-bit device status/ },
  // V2.2: features.
  { name: 'SET_FEATURES with VHOST_F_LOG_ALL', state: 'init', msg: (h) => F.setFeatures(h.device.features | (1n << 26n)), reason: /feature bits 0x4000000 were not offered/ },
  { name: 'SET_FEATURES with ACCESS_PLATFORM', state: 'init', msg: () => F.setFeatures(1n << 33n), reason: /feature bits 0x200000000 were not offered/ },
  { name: 'SET_FEATURES change while started', state: 'running', msg: (h) => F.setFeatures(h.fe.ackedFeatures & ~1n), reason: /features changed while a vring is started/ },
  { name: 'SET_PROTOCOL_FEATURES with LOG_SHMFD', state: 'fresh', msg: () => F.setProtocolFeatures(0x3n), reason: /protocol feature bits 0x2 were not offered/ },
  { name: 'SET_PROTOCOL_FEATURES change while started', state: 'running', msg: () => F.setProtocolFeatures(0x9n), reason: /protocol features changed while a vring is started/ },
  { name: 'SET_CONFIG with flags 2', state: 'init+config', msg: () => F.setConfig(20, new Uint8Array(4), 2), reason: /SET_CONFIG: undefined flags 2/ },
  // V3.1-V3.3: memory regions, C3-style arithmetic.
  { name: 'regions overlapping in guest physical space', state: 'init', msg: (h) => { const f = ram(h); return F.setMemTable([reg(0n, 2n * MiB, UADDR), reg(MiB, MiB, UADDR + 4n * MiB, 2n * MiB)], [f, f]); }, reason: /overlap in guest physical space/ },
  { name: 'regions overlapping in user address space', state: 'init', msg: (h) => { const f = ram(h); return F.setMemTable([reg(0n, MiB, UADDR), reg(8n * MiB, MiB, UADDR + MiB / 2n, MiB)], [f, f]); }, reason: /overlap in user address space/ },
  { name: 'region of size 0', state: 'init', msg: (h) => F.setMemTable([reg(0n, 0n, UADDR)], [ram(h)]), reason: /region 0: size 0/ },
  { name: 'guest address + size wraps 2^64', state: 'init', msg: (h) => F.setMemTable([reg(big((1n << 64n) - 4096n), 8192n, UADDR)], [ram(h)]), reason: /guest address 0xfffffffffffff000 \+ size 0x2000 overflows 64 bits/ },
  { name: 'user address + size wraps 2^64', state: 'init', msg: (h) => F.addMemReg(reg(0n, 8192n, (1n << 64n) - 4096n), ram(h)), reason: /user address 0xfffffffffffff000 \+ size 0x2000 overflows 64 bits/ },
  { name: 'mmap offset + size wraps 2^64', state: 'init', msg: (h) => F.setMemTable([reg(0n, 8192n, UADDR, (1n << 64n) - 4096n)], [ram(h)]), reason: /mmap offset 0xfffffffffffff000 \+ size 0x2000 overflows 64 bits/ },
  { name: 'region past the end of its file', state: 'init', msg: (h) => F.setMemTable([reg(0n, 2n * MiB, UADDR, 3n * MiB)], [ram(h)]), reason: /mmap offset 0x300000 \+ size 0x200000 is past the end of the file \(0x400000\)/ },
  { name: 'guest range above 2^53', state: 'init', msg: (h) => F.addMemReg(reg((1n << 53n) - 4096n, 8192n, UADDR), ram(h)), reason: /guest range ends above 2\^53/ },
  { name: 'mmap fails', state: 'init', before: (h) => { h.host.mmapError = new Error('ENOMEM'); }, msg: (h) => F.addMemReg(reg(0n, MiB, UADDR), ram(h)), reason: /mmap of 0x100000 bytes at offset 0x0 failed: ENOMEM/ },
  { name: 'second region of SET_MEM_TABLE invalid: the first is unmapped again', state: 'init', msg: (h) => { const f = ram(h); return F.setMemTable([reg(0n, MiB, UADDR), reg(MiB, 0n, UADDR + MiB)], [f, f]); }, reason: /region 1: size 0/ },
  { name: 'ADD_MEM_REG overlapping a region', state: 'running', msg: (h) => F.addMemReg(reg(MiB, MiB, UADDR + 0x100_0000n), ram(h)), reason: /overlap in guest physical space/ },
  { name: 'REM_MEM_REG of an unknown region', state: 'running', msg: () => F.remMemReg(reg(0n, MiB, UADDR)), reason: /REM_MEM_REG: no region at guest address 0x0, user address 0x7f1234000000, size 0x100000/ },
  { name: 'the device refuses to start a ring', state: 'init', before: (h) => { h.device.startError = new VirtqueueError('BAD_QUEUE_SIZE', 'no'); }, msg: (h) => F.setMemTable(h.regions, h.regions.map((r) => r.fd)), reason: /the device refused to start it: no/ },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const h = makeHarness({ session: c.name.includes('slots') ? { maxMemSlots: 2 } : undefined });
    await prepare(h, c.state);
    if (c.name === 'the device refuses to start a ring') {
      // Rings wait for memory: NUM, ADDR, KICK first.
      const q = h.queues[1];
      h.fe.send(F.setVringNum(1, 128));
      h.fe.send(addr(1, BigInt(q.desc), BigInt(q.avail), BigInt(q.used)));
      h.fe.send(F.setVringKick(1, q.kickFd));
    }
    await c.before?.(h);
    t.same(h.closeReasons, [], 'healthy before the bad message');
    h.host.lastReceived.length = 0;
    const m = c.msg(h);
    h.raw(m.bytes, m.fds);
    t.equal(h.closeReasons.length, 1, 'the connection is dropped');
    t.match(h.closeReasons[0], c.reason);
    for (const fd of h.host.lastReceived) t.notOk(h.openAtClose?.has(fd), `fd ${fd} of the bad message is closed`);
    t.ok(h.session.closed);
    // Later messages are discarded, their fds closed.
    h.host.lastReceived.length = 0;
    const late = F.setVringCall(0, h.host.file());
    h.raw(late.bytes, late.fds);
    t.notOk(h.host.open.has(h.host.lastReceived[0]), 'an fd arriving after the close is closed');
    await assertClean(t, h);
  });
}

t.test('ADD_MEM_REG beyond the memory slots', async (t) => {
  const h = makeHarness({ session: { maxMemSlots: 2 } });
  const r = await h.fe.init({ regions: h.regions, queues: h.queues });
  t.equal(r.maxMemSlots, 2n);
  await h.fe.setMemory(h.regions);
  t.same(h.closeReasons, []);
  const third = F.addMemReg(reg(0x2_0000_0000n, MiB, UADDR + 0x100_0000n), h.host.file(MiB));
  h.raw(third.bytes, third.fds);
  t.match(h.closeReasons[0], /ADD_MEM_REG: all 2 memory slots are in use/);
  await assertClean(t, h);
});

t.test('under REPLY_ACK a rejected request gets a non-zero ack before the close', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const before = h.transport.received.length;
  h.fe.send(F.setVringNum(9, 128, { needReply: true }));
  const acks = h.transport.received.slice(before);
  t.equal(acks.length, 1);
  t.equal(acks[0].request, R.SET_VRING_NUM);
  t.same([...acks[0].payload], [1, 0, 0, 0, 0, 0, 0, 0]);
  t.match(h.closeReasons[0], /vring index 9 out of range/);
  await assertClean(t, h);
});

t.test('without REPLY_ACK negotiated, NEED_REPLY gets no ack', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues, frontendProtocolFeatures: 1n });
  const before = h.transport.received.length;
  h.fe.send(F.setVringNum(0, 128, { needReply: true }));
  t.equal(h.transport.received.length, before);
  t.same(h.closeReasons, []);
  await assertClean(t, h);
});

t.test('GET_CONFIG and SET_CONFIG when CONFIG is negotiated', async (t) => {
  const h = makeHarness();
  await prepare(h, 'init+config');
  // Request: offset 4, size 8, flags 0, 8 zero bytes; reply echoes the header with the data.
  const before = h.transport.received.length;
  await h.fe.call(F.getConfig(4, 8));
  const reply = h.transport.received[before];
  t.same([...reply.payload], [4, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8, 9, 10, 11, 12]);
  t.same(await h.fe.getConfig(0, 36), h.device.config);
  // "zero length of payload to indicate an error": past the 36-byte config space.
  t.equal(await h.fe.getConfig(30, 8), null);
  t.equal(h.transport.received[h.transport.received.length - 1].payload.length, 0);
  t.equal(await h.fe.getConfig(0, 0), null, 'an empty access is refused too');
  // SET_CONFIG: the device accepts bytes 20..27 only; a refusal is a failure ack, not a close.
  await h.fe.call(F.setConfig(20, Uint8Array.from([0x60, 0, 0, 0]), 0, { needReply: true }));
  t.equal(h.device.config[20], 0x60);
  const n = h.transport.received.length;
  h.fe.send(F.setConfig(0, Uint8Array.from([1, 0, 0, 0]), 0, { needReply: true }));
  t.same([...h.transport.received[n].payload], [1, 0, 0, 0, 0, 0, 0, 0], 'read-only field: non-zero ack');
  h.fe.send(F.setConfig(34, Uint8Array.from([1, 0, 0, 0]), 1, { needReply: true }));
  t.same([...h.transport.received[n + 1].payload], [1, 0, 0, 0, 0, 0, 0, 0], 'past the end: non-zero ack');
  t.same(h.closeReasons, [], 'the session stays up');
  await assertClean(t, h);
});

t.test('a bad header does not produce an ack even with NEED_REPLY', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const before = h.transport.received.length;
  h.fe.send(F.setVringNum(0, 128, { flags: 0x9 | 0x4 }));
  t.equal(h.transport.received.length, before);
  t.match(h.closeReasons[0], /REPLY flag/);
  await assertClean(t, h);
});

t.test('unknown request with NEED_REPLY: closed without a reply body of unknown shape', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const before = h.transport.received.length;
  h.fe.send(encodeRequest(99, undefined, [], { needReply: true }));
  t.equal(h.transport.received.length, before);
  t.match(h.closeReasons[0], /unknown request code 99/);
  await assertClean(t, h);
});

t.test('a memory table whose mapping comes back short is rejected', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const orig = h.host.mmap.bind(h.host);
  h.host.mmap = (fd, off, len) => orig(fd, off, len).subarray(0, len - 1);
  const m = F.addMemReg(reg(0n, MiB, UADDR), h.host.file(4n * MiB));
  h.raw(m.bytes, m.fds);
  t.match(h.closeReasons[0], /mmap returned 1048575 bytes, expected 1048576/);
  h.host.mmap = orig;
  // The short view is not the original mapping object, so the harness reports the munmap of
  // "something never mapped": accept exactly that one complaint.
  t.same(h.host.errors, ['munmap of something never mapped']);
  h.host.errors.length = 0;
  h.host.maps.forEach((x) => (x.unmapped = true));
  await assertClean(t, h);
});

t.test('a real 9-region SET_MEM_TABLE is refused by the framing, its fds closed', async (t) => {
  const h = makeHarness();
  await h.fe.init({ regions: h.regions, queues: h.queues });
  const f = h.host.file(16n * MiB);
  const regions = Array.from({ length: 9 }, (_, i) => reg(BigInt(i) * MiB, MiB, UADDR + BigInt(i) * MiB, BigInt(i) * MiB));
  const m = F.setMemTable(regions, Array(8).fill(f));
  h.host.lastReceived.length = 0;
  t.throws(() => h.raw(m.bytes, m.fds), { message: /SET_MEM_TABLE: payload size 296 exceeds the largest accepted \(268\)/ });
  t.equal(h.host.lastReceived.length, 8);
  for (const fd of h.host.lastReceived) t.notOk(h.host.open.has(fd), `fd ${fd} closed by the assembler`);
  await assertClean(t, h);
});

t.test('REPLY_ACK for requests of features not offered: an ack only where no reply body is defined', async (t) => {
  for (const [req, acked] of [[F.setVringEndian(0, 0, { needReply: true }), true], [F.getInflightFd({ mmapSize: 0n, mmapOffset: 0n, numQueues: 1, queueSize: 128 }, { needReply: true }), false]] as const) {
    const h = makeHarness();
    await h.fe.init({ regions: h.regions, queues: h.queues });
    const before = h.transport.received.length;
    h.raw(req.bytes, req.fds);
    const got = h.transport.received.slice(before);
    if (acked) {
      t.same(got.map((r) => [r.request, [...r.payload]]), [[R.SET_VRING_ENDIAN, [1, 0, 0, 0, 0, 0, 0, 0]]], 'SET_VRING_ENDIAN: failure ack');
    } else {
      t.same(got, [], 'GET_INFLIGHT_FD: its reply would be an inflight description, so no u64');
    }
    t.equal(h.closeReasons.length, 1);
    await assertClean(t, h);
  }
});
