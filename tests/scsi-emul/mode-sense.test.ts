import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget, createRamStore } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { consumeUa, setup, toHex } from './helpers';

const MS6 = (byte1: number, byte2: number, subpage = 0, alloc = 255) => [0x1a, byte1, byte2, subpage, alloc, 0];
const MS10 = (byte1: number, byte2: number, subpage = 0, alloc = 255) => [0x5a, byte1, byte2, subpage, 0, 0, 0, 0, alloc, 0];
const ZEROS = (n: number) => Array(n).fill('00').join(' ');
// Every page has PS=1: saving is supported (SPC-4 §7.5.7).
const RW_RECOVERY = '81 0a ' + ZEROS(10);
const CACHING_WCE = '88 12 04 00 ' + ZEROS(16);
const CONTROL = '8a 0a 02 10 ' + ZEROS(8);
const CONTROL_EXT = 'ca 01 00 1c ' + ZEROS(28);
const IEC = '9c 0a 08 00 ' + ZEROS(8);

t.test('MODE SENSE(6) caching page with block descriptor', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: MS6(0x00, 0x08), dataIn: 255 });
  t.equal(r.status, ScsiStatus.GOOD);
  // Header: MODE DATA LENGTH 31, MEDIUM TYPE 0, DPOFUA, BLOCK DESCRIPTOR LENGTH 8.
  t.equal(toHex(r.data.subarray(0, 4)), '1f 00 10 08');
  t.equal(toHex(r.data.subarray(4, 12)), '00 00 08 00 00 00 02 00', '2048 blocks of 512 bytes');
  t.equal(toHex(r.data.subarray(12)), CACHING_WCE, 'WCE=1 (write-back default)');
  t.end();
});

t.test('DBD, all pages (3Fh), subpage FFh', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: MS6(0x08, 0x08), dataIn: 255 });
  t.equal(toHex(r.data), '17 00 10 00 ' + CACHING_WCE);
  r = run(target, { cdb: MS6(0x08, 0x3f), dataIn: 255 });
  t.equal(toHex(r.data), '3b 00 10 00 ' + [RW_RECOVERY, CACHING_WCE, CONTROL, IEC].join(' '), 'ascending page order, page_0 pages only');
  r = run(target, { cdb: MS6(0x08, 0x3f, 0xff), dataIn: 255 });
  t.equal(toHex(r.data), '5b 00 10 00 ' + [RW_RECOVERY, CACHING_WCE, CONTROL, CONTROL_EXT, IEC].join(' '), 'and the subpages');
  r = run(target, { cdb: MS6(0x08, 0x0a), dataIn: 255 });
  t.equal(toHex(r.data), '0f 00 10 00 ' + CONTROL, 'control page: GLTSD, QAM=1, D_SENSE=0');
  r = run(target, { cdb: MS6(0x08, 0x0a, 0x01), dataIn: 255 });
  t.equal(toHex(r.data), '23 00 10 00 ' + CONTROL_EXT, 'control extension subpage');
  r = run(target, { cdb: MS6(0x08, 0x0a, 0xff), dataIn: 255 });
  t.equal(toHex(r.data), '2f 00 10 00 ' + CONTROL + ' ' + CONTROL_EXT, 'page 0Ah with all its subpages');
  r = run(target, { cdb: MS6(0x08, 0x01), dataIn: 255 });
  t.equal(toHex(r.data), '0f 00 10 00 ' + RW_RECOVERY);
  r = run(target, { cdb: MS6(0x08, 0x1c), dataIn: 255 });
  t.equal(toHex(r.data), '0f 00 10 00 ' + IEC, 'informational exceptions: DEXCPT=1');
  t.end();
});

t.test('WCE follows the write cache setting; WP follows read-only and SWP', (t) => {
  const wt = setup({ lu: { writeCache: false } });
  t.equal(toHex(run(wt.target, { cdb: MS6(0x08, 0x08), dataIn: 255 }).data.subarray(0, 8)), '17 00 10 00 88 12 00 00');
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: MS6(0x08, 0x08), dataIn: 255 }).data.subarray(0, 4)), '17 00 90 00', 'WP | DPOFUA');
  const roStore = setup({ store: new FakeBlockStore({ sizeBytes: 1 << 20, readOnly: true }) });
  t.equal(run(roStore.target, { cdb: MS6(0x08, 0x08), dataIn: 255 }).data[2], 0x90, 'a read-only store makes the LU write protected');
  wt.lu.softwareWriteProtect = true;
  t.equal(toHex(run(wt.target, { cdb: MS6(0x08, 0x0a), dataIn: 255 }).data.subarray(0, 12)),
    '0f 00 90 00 8a 0a 02 10 08 00 00 00', 'SWP=1: WP set in the header (SPC-4 §7.5.8)');
  t.end();
});

t.test('page control: changeable masks, default, saved (= default until saved)', (t) => {
  const { target, lu } = setup();
  let r = run(target, { cdb: MS6(0x08, 0x48), dataIn: 255 });
  t.equal(toHex(r.data), '17 00 10 00 88 12 04 ' + ZEROS(17), 'caching: only WCE is changeable');
  r = run(target, { cdb: MS6(0x00, 0x4a), dataIn: 255 });
  t.equal(toHex(r.data), '17 00 10 08 ' + ZEROS(8) + ' 8a 0a 04 00 08 ' + ZEROS(7),
    'control: D_SENSE and SWP; the block descriptor mask is zero');
  r = run(target, { cdb: MS6(0x08, 0x5c), dataIn: 255 });
  t.equal(toHex(r.data), '0f 00 10 00 9c 0a 18 0f ff ff ff ff ff ff ff ff', 'IE: EWASC, DEXCPT, MRIE, INTERVAL TIMER, REPORT COUNT');
  r = run(target, { cdb: MS6(0x08, 0x41), dataIn: 255 });
  t.equal(toHex(r.data), '0f 00 10 00 81 0a ' + ZEROS(10), 'read-write error recovery: nothing');
  lu.writeCache = false;
  lu.descriptorSense = true;
  r = run(target, { cdb: MS6(0x08, 0xbf), dataIn: 255 });
  t.equal(toHex(r.data), '3b 00 10 00 ' + [RW_RECOVERY, CACHING_WCE, CONTROL, IEC].join(' '), 'default values: WCE=1, D_SENSE=0');
  r = run(target, { cdb: MS6(0x08, 0x3f), dataIn: 255 });
  t.equal(toHex(r.data.subarray(16, 19)), '88 12 00', 'current WCE=0');
  t.equal(toHex(r.data.subarray(36, 40)), '8a 0a 06 10', 'current D_SENSE=1');
  lu.descriptorSense = false;
  r = run(target, { cdb: MS6(0x08, 0xc8), dataIn: 255 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '17 00 10 00 ' + CACHING_WCE, 'saved values: nothing saved yet, so the defaults');
  t.end();
});

t.test('unsupported page and subpage', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: MS6(0x08, 0x19), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 02', 'page 19h: byte 2 bit 5');
  r = run(target, { cdb: MS6(0x08, 0x08, 0x01), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 03', 'subpage 01h of page 08h');
  r = run(target, { cdb: MS6(0x08, 0x3f, 0x05), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 03');
  r = run(target, { cdb: MS6(0x18, 0x08), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cc 00 01', 'LLBAA does not exist in MODE SENSE(6)');
  t.end();
});

t.test('MODE SENSE(10), short and long LBA block descriptors', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: MS10(0x00, 0x08), dataIn: 255 });
  t.equal(toHex(r.data.subarray(0, 16)), '00 22 00 10 00 00 00 08 00 00 08 00 00 00 02 00');
  t.equal(toHex(r.data.subarray(16)), CACHING_WCE);
  r = run(target, { cdb: MS10(0x10, 0x08), dataIn: 255 });
  t.equal(toHex(r.data.subarray(0, 24)),
    '00 2a 00 10 01 00 00 10 00 00 00 00 00 00 08 00 00 00 00 00 00 00 02 00', 'LONGLBA=1, 16-byte descriptor');
  r = run(target, { cdb: MS10(0x18, 0x3f), dataIn: 255 });
  t.equal(toHex(r.data), '00 3e 00 10 00 00 00 00 ' + [RW_RECOVERY, CACHING_WCE, CONTROL, IEC].join(' '));
  r = run(target, { cdb: MS10(0x00, 0x08, 0, 4), dataIn: 255 });
  t.equal(toHex(r.data), '00 22 00 10', 'ALLOCATION LENGTH 4: header only');
  t.end();
});

t.test('block descriptor saturates beyond 32 bits', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(new FakeBlockStore({ sizeBytes: (2 ** 32 + 5) * 512, backing: false })));
  consumeUa(target, 0);
  let r = run(target, { cdb: MS6(0x00, 0x08), dataIn: 255 });
  t.equal(toHex(r.data.subarray(4, 12)), 'ff ff ff ff 00 00 02 00');
  r = run(target, { cdb: MS10(0x10, 0x08), dataIn: 255 });
  t.equal(toHex(r.data.subarray(8, 24)), '00 00 00 01 00 00 00 05 00 00 00 00 00 00 02 00');
  t.end();
});

t.test('4096-byte blocks in the descriptor', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { blockSize: 4096 }));
  consumeUa(target, 0);
  const r = run(target, { cdb: MS6(0x00, 0x08), dataIn: 255 });
  t.equal(toHex(r.data.subarray(4, 12)), '00 00 01 00 00 00 10 00');
  t.end();
});
