// LOG SENSE (SPC-4 r37 §6.8) and its pages; LOG SELECT is not implemented.
import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { consumeUa, rw10, setup, toHex } from './helpers';

const LS = (byte2: number, subpage = 0, pointer = 0, alloc = 255, byte1 = 0) =>
  [0x4d, byte1, byte2, subpage, 0, (pointer >>> 8) & 0xff, pointer & 0xff, (alloc >>> 8) & 0xff, alloc & 0xff, 0];

t.test('supported pages, and pages and subpages', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: LS(0x40), dataIn: 255 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '00 00 00 03 00 0c 2f');
  r = run(target, { cdb: LS(0x40, 0xff), dataIn: 255 });
  t.equal(toHex(r.data), '40 ff 00 08 00 00 00 ff 0c 00 2f 00', 'SPF=1, subpage FFh');
  t.end();
});

t.test('0Ch logical block provisioning: used resources from the store', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: LS(0x4c), dataIn: 255 });
  t.equal(toHex(r.data), '8c 00 00 0c 00 02 23 08 00 00 00 00 01 00 00 00', 'nothing allocated yet; SCOPE 01b');
  t.equal(run(target, { cdb: rw10(0x2a, 5, 1), dataOut: new Uint8Array(512) }).status, ScsiStatus.GOOD);
  r = run(target, { cdb: LS(0x4c), dataIn: 255 });
  t.equal(toHex(r.data), '8c 00 00 0c 00 02 23 08 00 00 08 00 01 00 00 00', 'one 1 MiB RAM chunk = 2048 blocks');
  r = run(target, { cdb: LS(0x4c, 0, 2), dataIn: 255 });
  t.equal(toHex(r.data.subarray(0, 6)), '8c 00 00 0c 00 02', 'PARAMETER POINTER 0002h includes it');
  r = run(target, { cdb: LS(0x4c, 0, 3), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 05', 'beyond the last parameter');
  t.end();
});

t.test('a store that cannot tell its allocation offers no 0Ch page', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(new FakeBlockStore({ sizeBytes: 1 << 20 })));
  consumeUa(target, 0);
  t.equal(toHex(run(target, { cdb: LS(0x40), dataIn: 255 }).data), '00 00 00 02 00 2f');
  const r = run(target, { cdb: LS(0x4c), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 02');
  t.end();
});

t.test('2Fh informational exceptions: no condition, no temperature', (t) => {
  const { target } = setup();
  for (const pc of [0x00, 0x40, 0x80, 0xc0]) {
    const r = run(target, { cdb: LS(pc | 0x2f), dataIn: 255 });
    t.equal(toHex(r.data), 'af 00 00 07 00 00 23 03 00 00 ff', `PC ${pc >>> 6}`);
  }
  const r = run(target, { cdb: LS(0x6f, 0, 0, 6), dataIn: 255 });
  t.equal(toHex(r.data), 'af 00 00 07 00 00', 'ALLOCATION LENGTH truncates');
  t.end();
});

t.test('rejections', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: LS(0x40, 0, 0, 255, 0x01), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 01', 'SP=1: nothing is saveable');
  r = run(target, { cdb: LS(0x40, 0, 0, 255, 0x02), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 01', 'obsolete PPC');
  r = run(target, { cdb: LS(0x4d), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 02', 'temperature page: no sensor, not offered');
  r = run(target, { cdb: LS(0x6f, 0x01), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 03', 'unsupported subpage of a supported page');
  r = run(target, { cdb: LS(0x40, 0, 1), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 05', 'PARAMETER POINTER on a page without parameters');
  r = run(target, { cdb: [0x4c, 0x02, 0x40, 0, 0, 0, 0, 0, 0, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00', 'LOG SELECT: INVALID COMMAND OPERATION CODE');
  t.end();
});
