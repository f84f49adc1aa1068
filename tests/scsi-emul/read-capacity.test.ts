import t from 'tap';
import { LogicalUnit, ScsiStatus, ServiceResponse, ScsiTarget } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { consumeUa, setup, toHex } from './helpers';

const RC10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RC16 = (alloc: number, byte1 = 0x10) => [0x9e, byte1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, alloc, 0, 0];

function targetWithBlocks(blocks: number, blockSize: 512 | 4096 = 512): ScsiTarget {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(new FakeBlockStore({ sizeBytes: blocks * blockSize, backing: false }), { blockSize }));
  consumeUa(target, 0);
  return target;
}

t.test('READ CAPACITY(10): last LBA and block length', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: RC10, dataIn: 8 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '00 00 07 ff 00 00 02 00', '1 MiB of 512-byte blocks');
  const b4k = setup({ sizeBytes: 1 << 30, lu: { blockSize: 4096 } });
  t.equal(toHex(run(b4k.target, { cdb: RC10, dataIn: 8 }).data), '00 03 ff ff 00 00 10 00');
  t.end();
});

t.test('READ CAPACITY(10) saturates at FFFFFFFFh beyond 32 bits (SBC-3 §5.15.2)', (t) => {
  t.equal(toHex(run(targetWithBlocks(0xffffffff), { cdb: RC10, dataIn: 8 }).data), 'ff ff ff fe 00 00 02 00');
  t.equal(toHex(run(targetWithBlocks(2 ** 32), { cdb: RC10, dataIn: 8 }).data), 'ff ff ff ff 00 00 02 00');
  const big = targetWithBlocks(2 ** 32 + 1);
  t.equal(toHex(run(big, { cdb: RC10, dataIn: 8 }).data), 'ff ff ff ff 00 00 02 00');
  const r16 = run(big, { cdb: RC16(32), dataIn: 32 });
  t.equal(toHex(r16.data), '00 00 00 01 00 00 00 00 00 00 02 00 00 00 00 00 ' + '00 '.repeat(15) + '00');
  t.end();
});

t.test('READ CAPACITY(10) field checks and fixed transfer', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], dataIn: 8 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02', 'LBA without PMI');
  r = run(target, { cdb: [0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], dataIn: 8 });
  t.equal(r.status, ScsiStatus.GOOD, 'PMI=1 accepted');
  r = run(target, { cdb: [0x25, 0x01, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 01', 'obsolete RELADR bit');
  r = run(target, { cdb: RC10, dataIn: 4 });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'no allocation length: a short buffer is an OVERRUN');
  r = run(target, { cdb: RC10, dataIn: 512 });
  t.equal(r.cmd.dataInTransferred, 8, 'residual 504');
  t.end();
});

t.test('READ CAPACITY(16) (SERVICE ACTION IN(16) / 10h)', (t) => {
  const { target } = setup({ sizeBytes: 1 << 30, lu: { blockSize: 4096 } });
  let r = run(target, { cdb: RC16(32), dataIn: 32 });
  // The RAM store deallocates (thin): byte 14 LBPME=1, LBPRZ=1 (sbc-provisioning.test.ts has the rest).
  t.equal(toHex(r.data), '00 00 00 00 00 03 ff ff 00 00 10 00 00 00 c0 00 ' + '00 '.repeat(15) + '00');
  r = run(target, { cdb: RC16(12), dataIn: 32 });
  t.equal(toHex(r.data), '00 00 00 00 00 03 ff ff 00 00 10 00', 'ALLOCATION LENGTH 12');
  r = run(target, { cdb: RC16(0), dataIn: 32 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.data.length, 0);
  r = run(target, { cdb: RC16(32, 0x11), dataIn: 32 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cc 00 01', 'unknown service action: byte 1 bit 4');
  r = run(target, { cdb: RC16(32, 0x30), dataIn: 32 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 01', 'reserved bits next to the service action');
  r = run(target, { cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 32, 0, 0], dataIn: 32 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02', 'LBA without PMI');
  t.end();
});
