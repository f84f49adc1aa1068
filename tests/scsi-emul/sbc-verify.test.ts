// VERIFY(10/12/16) and WRITE AND VERIFY(10/12/16): SBC-3 r36 §5.41-5.43, §5.36-5.38.
import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget, ServiceResponse } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { storeError } from '../../scsi-emul/store';
import { be32, be64, consumeUa, rw10, setup, toHex } from './helpers';

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed + (i >> 9) * 7) & 0xff; // differs per block
  return b;
}

const V10 = (lba: number, n: number, byte1 = 0) => [0x2f, byte1, ...be32(lba), 0, (n >>> 8) & 0xff, n & 0xff, 0];
const V12 = (lba: number, n: number, byte1 = 0) => [0xaf, byte1, ...be32(lba), ...be32(n), 0, 0];
const V16 = (lba: bigint, n: number, byte1 = 0) => [0x8f, byte1, ...be64(lba), ...be32(n), 0, 0];
const WV10 = (lba: number, n: number, byte1 = 0) => [0x2e, byte1, ...be32(lba), 0, (n >>> 8) & 0xff, n & 0xff, 0];
const WV16 = (lba: bigint, n: number, byte1 = 0) => [0x8e, byte1, ...be64(lba), ...be32(n), 0, 0];

const LBA_OUT_OF_RANGE = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';

function written() {
  const s = setup({ sizeBytes: 4 << 20 });
  const data = pattern(8 * 512, 5);
  t.equal(run(s.target, { cdb: rw10(0x2a, 100, 8), dataOut: data }).status, ScsiStatus.GOOD);
  return { ...s, data };
}

t.test('VERIFY BYTCHK=00b: medium verification, no data-out', (t) => {
  const { target } = written();
  for (const cdb of [V10(100, 8), V12(100, 8), V16(100n, 8)]) {
    const r = run(target, { cdb });
    t.equal(r.status, ScsiStatus.GOOD, toHex(cdb.slice(0, 1)));
    t.equal(r.cmd.dataOutTransferred, 0);
  }
  t.equal(run(target, { cdb: V10(0, 0) }).status, ScsiStatus.GOOD, 'VERIFICATION LENGTH 0');
  t.end();
});

t.test('VERIFY BYTCHK=01b: compare with the data-out; MISCOMPARE 0E/1D/00 with INFORMATION', (t) => {
  const { target, data } = written();
  let r = run(target, { cdb: V10(100, 8, 0x02), dataOut: data });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 4096);
  const bad = data.slice();
  bad[3 * 512 + 17] ^= 0xff; // byte 1553 of the data-out
  r = run(target, { cdb: V16(100n, 8, 0x02), dataOut: bad });
  t.equal(r.status, ScsiStatus.CHECK_CONDITION);
  // SPC-4 §4.5.3: VALID=1, sense key MISCOMPARE, INFORMATION 00000611h (1553).
  t.equal(toHex(r.sense), 'f0 00 0e 00 00 06 11 0a 00 00 00 00 1d 00 00 00 00 00');
  r = run(target, { cdb: V12(101, 1, 0x02), dataOut: data.subarray(512, 1024) });
  t.equal(r.status, ScsiStatus.GOOD, 'VERIFY(12) of one block');
  r = run(target, { cdb: V10(101, 2, 0x02), dataOut: data.subarray(0, 1024) });
  t.equal(toHex(r.sense), 'f0 00 0e 00 00 00 00 0a 00 00 00 00 1d 00 00 00 00 00', 'offset 0');
  t.end();
});

t.test('MISCOMPARE in descriptor format: information descriptor (SPC-4 §4.5.2.2)', (t) => {
  const { target, lu, data } = written();
  lu.descriptorSense = true;
  const bad = data.slice();
  bad[4095] = 0;
  const r = run(target, { cdb: V10(100, 8, 0x02), dataOut: bad });
  t.equal(toHex(r.sense), '72 0e 1d 00 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 0f ff');
  t.end();
});

t.test('VERIFY BYTCHK=11b: one block compared with every block of the range', (t) => {
  const { target } = setup({ sizeBytes: 4 << 20 });
  const blk = pattern(512, 9);
  const all = new Uint8Array(5 * 512);
  for (let i = 0; i < 5; i++) all.set(blk, i * 512);
  run(target, { cdb: rw10(0x2a, 10, 5), dataOut: all });
  let r = run(target, { cdb: V10(10, 5, 0x06), dataOut: blk });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 512, 'data-out is one block');
  r = run(target, { cdb: V10(10, 6, 0x06), dataOut: blk });
  // Block 15 is zeros: the first differing byte is at range offset 5 × 512 + 0 (blk[0] = 9).
  t.equal(toHex(r.sense), 'f0 00 0e 00 00 0a 00 0a 00 00 00 00 1d 00 00 00 00 00');
  r = run(target, { cdb: V10(10, 5, 0x06), dataOut: all });
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE, 'a longer data-out is fine (one block used)');
  t.equal(r.cmd.dataOutTransferred, 512);
  t.end();
});

t.test('VERIFY rejections', (t) => {
  const { target } = setup({ sizeBytes: 4 << 20, target: { maxTransferBytes: 64 << 10 } });
  // BYTCHK 10b is reserved: byte 1 bit 2.
  let r = run(target, { cdb: V10(0, 1, 0x04), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 01');
  // VRPROTECT ≠ 0 with PROTECT=0: byte 1 bit 7.
  r = run(target, { cdb: V16(0n, 1, 0x20) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01');
  // Reserved byte 1 bit 3 and bit 0 (usage data).
  r = run(target, { cdb: V10(0, 1, 0x08) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cb 00 01');
  r = run(target, { cdb: V10(0, 1, 0x01) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 01');
  // BYTCHK=01b beyond MAXIMUM TRANSFER LENGTH (128 blocks): the length field, bytes 7 / 10.
  r = run(target, { cdb: V10(0, 129, 0x02), dataOut: new Uint8Array(129 * 512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 07');
  r = run(target, { cdb: V16(0n, 129, 0x02), dataOut: new Uint8Array(129 * 512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 0a');
  t.equal(run(target, { cdb: V16(0n, 129) }).status, ScsiStatus.GOOD, 'BYTCHK=00b has no transfer to limit');
  // LBA OUT OF RANGE on every variant (8192 blocks).
  t.equal(toHex(run(target, { cdb: V10(8192, 1) }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: V12(8191, 2) }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: V16(0xffffffffffffffffn, 1) }).sense), LBA_OUT_OF_RANGE);
  // Data-out shorter than the compare data: OVERRUN, not delivered.
  r = run(target, { cdb: V10(0, 2, 0x02), dataOut: new Uint8Array(512) });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN);
  t.end();
});

t.test('VERIFY: a read error is MEDIUM ERROR 03/11/00; large ranges are read in pieces', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 16 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const r = run(target, { cdb: V16(0n, 8192) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(store.ops.map((o) => `${o.kind}@${o.offset}+${o.len}`), ['read@0+1048576', 'read@1048576+1048576',
    'read@2097152+1048576', 'read@3145728+1048576']);
  store.failNext.read = storeError('EIO', 'bad sector');
  const e = run(target, { cdb: V10(0, 1) });
  t.equal(toHex(e.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 11 00 00 00 00 00');
  t.end();
});

t.test('WRITE AND VERIFY: writes with FUA, reads back, BYTCHK=01b compares', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 4 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const data = pattern(4 * 512, 1);
  let r = run(target, { cdb: WV10(8, 4, 0x02), dataOut: data });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 2048);
  t.same(store.ops.map((o) => `${o.kind}@${o.offset}+${o.len}${o.fua ? ' fua' : ''}`), ['write@4096+2048 fua', 'read@4096+2048']);
  t.same(store.data!.subarray(4096, 6144), data);
  r = run(target, { cdb: [0xae, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0], dataOut: data.subarray(0, 512) });
  t.equal(r.status, ScsiStatus.GOOD, 'WRITE AND VERIFY(12), BYTCHK=00b');
  r = run(target, { cdb: WV16(30n, 1), dataOut: data.subarray(0, 512) });
  t.equal(r.status, ScsiStatus.GOOD, 'WRITE AND VERIFY(16)');
  // BYTCHK 1xb is reserved for WRITE AND VERIFY; WRPROTECT must be 0.
  r = run(target, { cdb: WV10(8, 1, 0x06), dataOut: data.subarray(0, 512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 01');
  r = run(target, { cdb: WV16(8n, 1, 0x40), dataOut: data.subarray(0, 512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01');
  r = run(target, { cdb: WV16(8192n, 1), dataOut: data.subarray(0, 512) });
  t.equal(toHex(r.sense), LBA_OUT_OF_RANGE);
  t.end();
});

t.test('WRITE AND VERIFY: a medium that returns other data is a MISCOMPARE', (t) => {
  // A store whose reads return zeros (no backing) stands in for a medium that lost the write.
  const store = new FakeBlockStore({ sizeBytes: 4 << 20, backing: false });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const data = new Uint8Array(1024);
  data[700] = 1;
  const r = run(target, { cdb: WV10(0, 2, 0x02), dataOut: data });
  t.equal(toHex(r.sense), 'f0 00 0e 00 00 02 bc 0a 00 00 00 00 1d 00 00 00 00 00', 'INFORMATION 700');
  t.equal(run(target, { cdb: WV10(0, 2), dataOut: data }).status, ScsiStatus.GOOD, 'BYTCHK=00b does not compare');
  t.end();
});

t.test('WRITE AND VERIFY on a read-only LU is DATA PROTECT; VERIFY is allowed', (t) => {
  const { target } = setup({ lu: { readOnly: true } });
  let r = run(target, { cdb: WV10(0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00');
  r = run(target, { cdb: V10(0, 1, 0x02), dataOut: new Uint8Array(512) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.end();
});
