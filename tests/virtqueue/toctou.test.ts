// Double fetch / TOCTOU (reliability.md V4.3, V9.1, D7, D8): the guest rewrites the
// descriptor table and the indirect table while we walk them. Simulated with a
// GuestMemory whose translation calls back into "the guest" between our reads.
import t from 'tap';
import { GuestMemory, SplitQueue, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, sgLength } from '../../virtqueue';
import { rig } from './util';

class RacingMemory extends GuestMemory {
  hook: ((gpa: number, len: number) => void) | null = null;
  override gpaSegments(gpa: number, len: number, out: Uint8Array[]): void {
    super.gpaSegments(gpa, len, out);
    const h = this.hook;
    if (h !== null) h(gpa, len);
  }
}

t.test('a descriptor rewritten after it was read changes nothing already decided (D7)', (t) => {
  const { mem, drv } = rig(8);
  const a = drv.allocDesc();
  const b = drv.allocDesc();
  const bufA = mem.alloc(16);
  const bufB = mem.alloc(32);
  drv.setDesc(a, { addr: bufA, len: 16, flags: VIRTQ_DESC_F_NEXT, next: b });
  drv.setDesc(b, { addr: bufB, len: 32, flags: VIRTQ_DESC_F_WRITE });
  drv.offer(a);
  const memory = new RacingMemory(mem.regions);
  memory.hook = (gpa) => {
    if (gpa === bufA) {
      // Right after A was translated: grow A's len past the region and redirect next.
      drv.setDesc(a, { len: 0xffff_fff0, next: 7 });
    }
  };
  const q = new SplitQueue(memory, drv.config(), 0);
  const c = q.pop()!;
  t.equal(c.readableLength, 16, 'the length that was validated is the one used');
  t.equal(sgLength(c.readable), 16, 'and the segments agree with it');
  t.equal(c.writableLength, 32, 'the original next was followed');
  t.end();
});

t.test('an indirect table rewritten during the walk: only the private copy is used (D8)', (t) => {
  const { mem, drv } = rig(8, { indirect: true });
  const buf0 = mem.alloc(8);
  const buf1 = mem.alloc(24);
  const table = drv.writeIndirectTable([
    { addr: buf0, len: 8, flags: VIRTQ_DESC_F_NEXT, next: 1 },
    { addr: buf1, len: 24, flags: VIRTQ_DESC_F_WRITE },
  ]);
  const head = drv.allocDesc();
  drv.setDesc(head, { addr: table.gpa, len: table.len, flags: VIRTQ_DESC_F_INDIRECT });
  drv.offer(head);
  const memory = new RacingMemory(mem.regions);
  memory.hook = (gpa) => {
    if (gpa === buf0) {
      // After entry 0 was used: point its next out of range, make entry 1 zero-length
      // and nested-indirect. None of this may be seen.
      mem.writeU16(table.gpa + 14, 0xffff);
      mem.writeU32(table.gpa + 16 + 8, 0);
      mem.writeU16(table.gpa + 16 + 12, VIRTQ_DESC_F_INDIRECT);
    }
  };
  const q = new SplitQueue(memory, drv.config(), 0);
  const c = q.pop()!;
  t.equal(c.readableLength, 8);
  t.equal(c.writableLength, 24);
  t.end();
});

t.test('avail->idx is read once per pop (V4.1)', (t) => {
  const { mem, drv } = rig(8);
  const a = drv.addChain([4], [], { kick: false });
  drv.kick();
  const memory = new RacingMemory(mem.regions);
  memory.hook = () => {
    // While the first chain is being walked, the guest moves avail->idx far ahead.
    drv.setAvailIdx(200);
  };
  const q = new SplitQueue(memory, drv.config(), 0);
  const c = q.pop()!;
  t.equal(c.head, a, 'the pop that was under way completes on the value it read');
  t.equal(q.lastAvailIdx, 1);
  t.end();
});
