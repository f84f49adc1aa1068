// Payload codecs (vhost-user.rst "Payload"): exact sizes, reserved bits, literal layouts.
import t from 'tap';
import * as M from '../../../backend/vhost-user/messages';
import { ProtocolError } from '../../../backend/vhost-user/errors';
import { FrontendRequest as R, ProtocolFeature, requestName, VHOST_USER_F_PROTOCOL_FEATURES } from '../../../backend/vhost-user/protocol';

const u8 = (...b: number[]) => Uint8Array.from(b);
const zeros = (n: number) => new Uint8Array(n);

t.test('spec numbers', (t) => {
  // vhost-user.rst "Front-end message types" and "Protocol features".
  t.equal(R.SET_MEM_TABLE, 5);
  t.equal(R.GET_VRING_BASE, 11);
  t.equal(R.SET_BACKEND_REQ_FD, 21);
  t.equal(R.RESET_DEVICE, 34);
  t.equal(R.VRING_KICK, 35);
  t.equal(R.ADD_MEM_REG, 37);
  t.equal(R.GET_STATUS, 40);
  t.equal(R.CHECK_DEVICE_STATE, 43);
  t.equal(ProtocolFeature.REPLY_ACK, 3);
  t.equal(ProtocolFeature.CONFIGURE_MEM_SLOTS, 15);
  t.equal(ProtocolFeature.DEVICE_STATE, 19);
  t.equal(VHOST_USER_F_PROTOCOL_FEATURES, 30);
  t.equal(requestName(5), 'SET_MEM_TABLE');
  t.equal(requestName(0), 'request 0');
  t.equal(requestName(-1), 'request 4294967295');
  t.equal(requestName(44), 'request 44');
  t.end();
});

t.test('u64: exactly 8 bytes, native order', (t) => {
  t.equal(M.decodeU64(2, u8(1, 2, 3, 4, 5, 6, 7, 8)), 0x0807060504030201n);
  t.throws(() => M.decodeU64(2, zeros(7)), { name: 'ProtocolError', message: /SET_FEATURES: u64 payload is 7 bytes, expected 8/ });
  t.throws(() => M.decodeU64(2, zeros(9)), ProtocolError);
  t.same([...M.encodeU64(0x1_0000_0001n)], [1, 0, 0, 0, 1, 0, 0, 0]);
  t.end();
});

t.test('empty payloads', (t) => {
  t.doesNotThrow(() => M.decodeEmpty(3, zeros(0)));
  t.throws(() => M.decodeEmpty(3, zeros(8)), /SET_OWNER: empty payload is 8 bytes, expected 0/);
  t.end();
});

t.test('vring state {u32 index, u32 num}', (t) => {
  t.same(M.decodeVringState(8, u8(3, 0, 0, 0, 0, 1, 0, 0)), { index: 3, num: 256 });
  t.same(M.decodeVringState(8, u8(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x80)), { index: 0xffffffff, num: 0x80000000 }, 'unsigned');
  t.throws(() => M.decodeVringState(8, zeros(12)), ProtocolError);
  t.same([...M.encodeVringState(2, 77)], [2, 0, 0, 0, 77, 0, 0, 0]);
  t.end();
});

t.test('vring file u64: index bits 0-7, NOFD bit 8, nothing else', (t) => {
  t.same(M.decodeVringFile(12, u8(3, 0, 0, 0, 0, 0, 0, 0)), { index: 3, noFd: false });
  t.same(M.decodeVringFile(13, u8(0xff, 1, 0, 0, 0, 0, 0, 0)), { index: 255, noFd: true });
  t.throws(() => M.decodeVringFile(12, u8(0, 2, 0, 0, 0, 0, 0, 0)), /reserved bits set in 0x200/);
  t.throws(() => M.decodeVringFile(12, u8(0, 0, 0, 0, 0, 0, 0, 0x80)), /reserved bits/);
  t.same([...M.encodeVringFile(2, true)], [2, 1, 0, 0, 0, 0, 0, 0]);
  t.end();
});

t.test('vring address: 40 bytes, used before avail', (t) => {
  const p = u8(
    1, 0, 0, 0, /* index */ 0, 0, 0, 0, /* flags */
    0x00, 0x10, 0, 0, 0, 0, 0, 0, /* desc 0x1000 */
    0x00, 0x30, 0, 0, 0, 0, 0, 0, /* used 0x3000 */
    0x00, 0x20, 0, 0, 0, 0, 0, 0, /* avail 0x2000 */
    0, 0, 0, 0, 0, 0, 0, 0, /* log */
  );
  t.same(M.decodeVringAddr(9, p), { index: 1, flags: 0, desc: 0x1000n, used: 0x3000n, avail: 0x2000n, log: 0n });
  t.same([...M.encodeVringAddr({ index: 1, flags: 0, desc: 0x1000n, used: 0x3000n, avail: 0x2000n, log: 0n })], [...p]);
  t.throws(() => M.decodeVringAddr(9, zeros(32)), /vring address payload is 32 bytes, expected 40/);
  t.end();
});

t.test('memory table: 8 + 32 * n bytes, 1 <= n <= 8', (t) => {
  const one = u8(
    1, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, // nregions 1, padding (ignored)
    0, 0, 0, 0, 1, 0, 0, 0, // gpa 0x1_0000_0000
    0, 0, 0x20, 0, 0, 0, 0, 0, // size 2 MiB
    0, 0, 0, 0x34, 0x12, 0x7f, 0, 0, // user 0x7f12_3400_0000
    0, 0x10, 0, 0, 0, 0, 0, 0, // mmap offset 0x1000
  );
  t.same(M.decodeMemTable(5, one), [{ guestPhysAddr: 0x1_0000_0000n, size: 0x200000n, userAddr: 0x7f12_3400_0000n, mmapOffset: 0x1000n }]);
  const hdr = (n: number) => u8(n, 0, 0, 0, 0, 0, 0, 0);
  t.throws(() => M.decodeMemTable(5, hdr(0)), /nregions 0 is outside 1\.\.8/);
  const nine = new Uint8Array(8 + 9 * 32);
  nine[0] = 9;
  t.throws(() => M.decodeMemTable(5, nine), /nregions 9 is outside 1\.\.8/);
  const short = new Uint8Array(8 + 32);
  short[0] = 2;
  t.throws(() => M.decodeMemTable(5, short), /memory table of 2 region\(s\) payload is 40 bytes, expected 72/);
  t.throws(() => M.decodeMemTable(5, zeros(4)), /shorter than its 8-byte header/);
  const full = new Uint8Array(8 + 8 * 32);
  full[0] = 2;
  t.throws(() => M.decodeMemTable(5, full), ProtocolError, 'QEMU sends 8 + 32n, not the whole union');
  const regions = M.decodeMemTable(5, one);
  t.same([...M.encodeMemTable(regions)], [...one.slice(0, 4), 0, 0, 0, 0, ...one.slice(8)]);
  t.end();
});

t.test('single memory region: u64 padding + region = 40 bytes', (t) => {
  const p = new Uint8Array(40);
  p.fill(0xee, 0, 8); // padding, ignored
  p[8 + 8 + 2] = 0x10; // size 0x100000
  t.same(M.decodeMemRegionMsg(37, p), { guestPhysAddr: 0n, size: 0x100000n, userAddr: 0n, mmapOffset: 0n });
  t.throws(() => M.decodeMemRegionMsg(37, zeros(32)), /single memory region payload is 32 bytes, expected 40/);
  t.throws(() => M.decodeMemRegionMsg(38, zeros(48)), ProtocolError, 'XEN_MMAP layout not negotiated');
  t.end();
});

t.test('config space: 12 + size bytes, size <= 256', (t) => {
  const p = u8(4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0xab, 0xcd);
  const c = M.decodeConfig(25, p);
  t.equal(c.offset, 4);
  t.equal(c.flags, 1);
  t.same([...c.data], [0xab, 0xcd]);
  t.throws(() => M.decodeConfig(24, u8(0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, ...zeros(257))), /config size 257 exceeds 256/);
  t.throws(() => M.decodeConfig(24, u8(0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 2)), /config access of 4 byte\(s\) payload is 14 bytes, expected 16/);
  t.throws(() => M.decodeConfig(24, zeros(8)), /shorter than its 12-byte header/);
  t.same([...M.encodeConfig(4, 1, u8(0xab, 0xcd))], [...p]);
  t.end();
});

t.test('log description (16) and inflight description (24)', (t) => {
  t.same(M.decodeLog(6, u8(0, 0x10, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0)), { mmapSize: 0x1000n, mmapOffset: 8n });
  t.throws(() => M.decodeLog(6, zeros(8)), /log description payload is 8 bytes, expected 16/);
  const inflight = u8(0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x80, 0, 0, 0, 0, 0);
  t.same(M.decodeInflight(31, inflight), { mmapSize: 0x2000n, mmapOffset: 0n, numQueues: 3, queueSize: 128 });
  t.same([...M.encodeInflight({ mmapSize: 0x2000n, mmapOffset: 0n, numQueues: 3, queueSize: 128 })], [...inflight]);
  t.throws(() => M.decodeInflight(31, zeros(20)), ProtocolError);
  t.same([...M.encodeLog({ mmapSize: 0x1000n, mmapOffset: 8n })], [0, 0x10, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
  t.end();
});

t.test('status: the 8-bit device status in a u64', (t) => {
  t.equal(M.decodeStatus(39, u8(0x0f, 0, 0, 0, 0, 0, 0, 0)), 15);
  t.equal(M.decodeStatus(39, u8(0xff, 0, 0, 0, 0, 0, 0, 0)), 255);
  t.throws(() => M.decodeStatus(39, u8(0, 1, 0, 0, 0, 0, 0, 0)), /SET_STATUS: status 0x100 does not fit/);
  t.end();
});
