// The fakes themselves: a wrong fake would make every other test meaningless.
import t from 'tap';
import { FAKE_QVA_BIAS, FakeGuestMemory, FakeSplitDriver, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../virtqueue';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

t.test('FakeGuestMemory', (t) => {
  const mem = new FakeGuestMemory([
    { gpa: 0x1000, size: 0x1000 },
    { gpa: 0x2000, size: 0x1000, userAddr: 0x9000_0000 },
  ]);
  t.equal(mem.qvaOf(0x1010), 0x1010 + FAKE_QVA_BIAS, 'default user address = gpa + bias');
  t.equal(mem.qvaOf(0x2010), 0x9000_0010);
  t.equal(mem.alloc(3, 1), 0x1000);
  t.equal(mem.alloc(8, 16), 0x1010, 'aligned');
  t.equal(mem.alloc(0x1000, 8), 0x2000, 'falls through to the next region with room');
  t.throws(() => mem.alloc(0x1000, 1), /no room/, 'neither region has 4 KiB left');
  mem.write(0x1ffe, Uint8Array.of(1, 2, 3, 4));
  t.equal(hex(mem.read(0x1ffe, 4)), '01020304', 'read/write across adjacent regions');
  mem.writeU64(0x1100, 0x0102030405060708n);
  t.equal(hex(mem.read(0x1100, 8)), '0807060504030201', 'little-endian');
  t.equal(mem.readU64(0x1100), 0x0102030405060708n);
  t.ok(mem.guardsIntact());
  t.ok(mem.contains(mem.view(0x1ff0, 16)));
  t.notOk(mem.contains(new Uint8Array(4)));
  t.equal(mem.toGuestMemory().regions.length, 2);
  t.end();
});

t.test('FakeSplitDriver writes spec layouts', (t) => {
  const mem = new FakeGuestMemory([{ gpa: 0x10000, size: 0x10000 }]);
  const drv = new FakeSplitDriver(mem, 4, { indirect: true });
  t.equal(drv.descTable % 16, 0);
  t.equal(drv.availRing % 2, 0);
  t.equal(drv.usedRing % 4, 0);
  const head = drv.addChain([{ gpa: 0x18000, len: 0x10 }], [{ gpa: 0x19000, len: 0x20 }]);
  t.equal(head, 0);
  // desc 0: addr 0x18000, len 0x10, flags NEXT, next 1; desc 1: addr 0x19000, len 0x20, WRITE.
  t.equal(hex(mem.read(drv.descTable, 32)), '0080010000000000' + '10000000' + '0100' + '0100' + '0090010000000000' + '20000000' + '0200' + '0000');
  t.equal(hex(mem.read(drv.availRing, 6)), '0000' + '0100' + '0000', 'flags 0, idx 1, ring[0] = 0');
  const h2 = drv.addChain([4], [4], { indirect: true });
  const d = drv.getDesc(h2);
  t.equal(d.flags, VIRTQ_DESC_F_INDIRECT);
  t.equal(d.len, 32);
  const tbl = mem.read(Number(d.addr), 32);
  const dv = new DataView(tbl.buffer);
  t.equal(dv.getUint16(12, true), VIRTQ_DESC_F_NEXT);
  t.equal(dv.getUint16(14, true), 1);
  t.equal(dv.getUint16(16 + 12, true), VIRTQ_DESC_F_WRITE);
  t.equal(drv.freeDescriptors, 1);
  t.end();
});
