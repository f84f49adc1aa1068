// Write scope (reliability.md V4.11, §5.5): processing requests never writes a
// device-readable buffer or the descriptor table (virtio 1.2 §2.7.5.1), nor anything
// outside the regions. The device's only writes are the used ring and the writable
// buffers.
import t from 'tap';
import { createHash } from 'node:crypto';
import { FakeGuestMemory, FakeSplitDriver, SplitQueue, sgWrite } from '../../virtqueue';

function sha256(parts: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

for (const eventIdx of [false, true]) {
  t.test(`only the used ring and writable buffers change (eventIdx ${eventIdx})`, (t) => {
    const mem = new FakeGuestMemory([
      { gpa: 0x10_0000, size: 0x10000 },
      { gpa: 0x11_0000, size: 0x10000 }, // adjacent
      { gpa: 0x40_0000, size: 0x10000 },
    ]);
    const drv = new FakeSplitDriver(mem, 64, { indirect: true, eventIdx, region: 2 });
    const payload = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
    const heads = [
      drv.addChain([payload(51, 1), payload(512, 2)], [108, 4096]),
      drv.addChain([payload(19, 3)], [3, 5], { split: 'per-byte' }),
      drv.addChain([payload(64, 4), payload(100, 5)], [200, 60], { indirect: true }),
      drv.addChain([payload(8, 6), payload(8, 7), payload(8, 8)], [16, 16], { indirect: true, directPrefix: 2, indirectWriteFlag: true }),
    ];
    // And one that straddles the boundary between the adjacent regions.
    mem.write(0x10_fff0, payload(32, 9));
    heads.push(drv.addChain([{ gpa: 0x10_fff0, len: 32 }], [{ gpa: 0x10_ffe0, len: 8 }]));

    const readableBuffers = heads.flatMap((h) => drv.buffersOf(h).readable.map((b) => mem.read(b.gpa, b.len)));
    const descTable = () => mem.read(drv.descTable, 16 * drv.size);
    const before = { readable: sha256(readableBuffers), desc: sha256([descTable()]), avail: sha256([mem.read(drv.availRing, 6 + 2 * drv.size)]) };
    const snapshot = mem.regions.map((r) => Uint8Array.from(r.bytes));

    const q = new SplitQueue(mem.toGuestMemory(), drv.config(), drv.startIdx);
    q.disableNotification();
    let n = 0;
    for (let c = q.pop(); c !== null; c = q.pop()) {
      sgWrite(c.writable, 0, new Uint8Array(c.writableLength).fill(0xee));
      q.pushUsed(c, c.writableLength);
      n++;
    }
    t.equal(n, heads.length, 'every chain processed');
    q.publishUsed();
    q.enableNotification();
    t.same(
      drv.readUsed().map((u) => u.id),
      heads,
    );

    const after = {
      readable: sha256(heads.flatMap((h) => drv.buffersOf(h).readable.map((b) => mem.read(b.gpa, b.len)))),
      desc: sha256([descTable()]),
      avail: sha256([mem.read(drv.availRing, 6 + 2 * drv.size)]),
    };
    t.same(after, before, 'readable buffers, descriptor table and avail ring hash the same');

    // Byte-exact: every changed byte is in the used ring or a writable buffer.
    const allowed: [number, number][] = [[drv.usedRing, drv.usedRing + 6 + 8 * drv.size]];
    for (const h of heads) for (const b of drv.buffersOf(h).writable) allowed.push([b.gpa, b.gpa + b.len]);
    const stray: string[] = [];
    mem.regions.forEach((r, i) => {
      for (let off = 0; off < r.size; off++) {
        if (r.bytes[off] === snapshot[i][off]) continue;
        const gpa = r.guestPhysAddr + off;
        if (!allowed.some(([s, e]) => gpa >= s && gpa < e)) stray.push(gpa.toString(16));
      }
    });
    t.same(stray, [], 'no write outside the used ring and the writable buffers');
    t.ok(mem.guardsIntact(), 'guard zones around the regions untouched');
    t.end();
  });
}
