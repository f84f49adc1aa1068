import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget, createRamStore } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { setup, toHex } from './helpers';

const RL = (select: number, alloc: number) =>
  [0xa0, 0x00, select, 0x00, 0x00, 0x00, (alloc >>> 24) & 0xff, (alloc >>> 16) & 0xff, (alloc >>> 8) & 0xff, alloc & 0xff, 0x00, 0x00];

function ramLu(): LogicalUnit {
  return new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }));
}

t.test('LUN list: peripheral addressing below 256, flat space above (SAM-5 §4.7)', (t) => {
  const { target } = setup();
  target.addLogicalUnit(300, ramLu());
  target.addLogicalUnit(1, ramLu());
  target.addLogicalUnit(16383, ramLu());
  const r = run(target, { cdb: RL(0, 256), dataIn: 256 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data),
    '00 00 00 20 00 00 00 00 ' +
    '00 00 00 00 00 00 00 00 ' +
    '00 01 00 00 00 00 00 00 ' +
    '41 2c 00 00 00 00 00 00 ' +
    '7f ff 00 00 00 00 00 00');
  t.equal(toHex(run(target, { cdb: RL(2, 256), dataIn: 256 }).data),
    '00 00 00 28 00 00 00 00 ' +
    '00 00 00 00 00 00 00 00 ' +
    '00 01 00 00 00 00 00 00 ' +
    '41 2c 00 00 00 00 00 00 ' +
    '7f ff 00 00 00 00 00 00 ' +
    'c1 01 00 00 00 00 00 00', 'SELECT REPORT 02h: and the REPORT LUNS well known LU (W-LUN C101h)');
  t.equal(toHex(run(target, { cdb: RL(1, 256), dataIn: 256 }).data),
    '00 00 00 08 00 00 00 00 c1 01 00 00 00 00 00 00', '01h: well known only');
  t.end();
});

t.test('truncated to ALLOCATION LENGTH, LUN LIST LENGTH still complete', (t) => {
  const { target } = setup();
  target.addLogicalUnit(1, ramLu());
  const r = run(target, { cdb: RL(0, 16), dataIn: 64 });
  t.equal(toHex(r.data), '00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00');
  t.end();
});

t.test('rejections: SELECT REPORT > 2, ALLOCATION LENGTH < 16', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: RL(3, 256), dataIn: 256 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');
  r = run(target, { cdb: RL(0x10, 256), dataIn: 256 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');
  r = run(target, { cdb: RL(0, 15), dataIn: 256 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 06');
  r = run(target, { cdb: RL(0, 0), dataIn: 256 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 06');
  t.end();
});

t.test('sized from the real LUN count (CVE-2013-4344): 1000 LUNs', (t) => {
  const target = new ScsiTarget();
  for (let i = 0; i < 1000; i++) {
    target.addLogicalUnit(i, new LogicalUnit(new FakeBlockStore({ sizeBytes: 4096 })));
  }
  const alloc = 8 + 8 * 1000;
  const r = run(target, { cdb: RL(0, 65536), dataIn: 65536 });
  t.equal(r.data.length, alloc);
  t.equal(toHex(r.data.subarray(0, 4)), '00 00 1f 40');
  t.equal(toHex(r.data.subarray(8 + 8 * 999, 8 + 8 * 1000)), '43 e7 00 00 00 00 00 00', 'LUN 999 flat');
  t.end();
});

t.test('an empty target still reports LUN 0', (t) => {
  const target = new ScsiTarget();
  const r = run(target, { lun: 0, cdb: RL(0, 32), dataIn: 32 });
  t.equal(toHex(r.data), '00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00');
  t.end();
});

t.test('served by a LUN with no logical unit', (t) => {
  const { target } = setup();
  const r = run(target, { lun: 77, cdb: RL(0, 32), dataIn: 32 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00');
  t.end();
});
