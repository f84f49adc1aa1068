// GuestMemory: region validation (V3.2, V3.3) and checked translation (V3.4, V3.5,
// D5, D6, D20, D21).
import t from 'tap';
import { GuestMemory, GuestRegion, VirtqueueError } from '../../virtqueue';

function region(gpa: number, size: number, userAddr = gpa + 0x7000_0000_0000): GuestRegion {
  return { guestPhysAddr: gpa, userAddr, size, bytes: new Uint8Array(size) };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof VirtqueueError) return e.code;
    return `not a VirtqueueError: ${String(e)}`;
  }
  return 'no error';
}

t.test('region validation', (t) => {
  t.equal(code(() => new GuestMemory([region(0x1000, 0)])), 'BAD_REGION', 'size 0');
  t.equal(
    code(() => new GuestMemory([{ guestPhysAddr: 0, userAddr: 0x1000, size: 4096, bytes: new Uint8Array(4095) }])),
    'BAD_REGION',
    'mapping shorter than size',
  );
  t.equal(
    code(() => new GuestMemory([{ guestPhysAddr: 0, userAddr: 0x1000, size: 16, bytes: new Uint8Array(32) }])),
    'BAD_REGION',
    'mapping longer than size',
  );
  // gpa + size > 2^53: cannot be represented exactly, so it is refused.
  t.equal(code(() => new GuestMemory([{ ...region(0, 16), guestPhysAddr: 2 ** 53 - 8 }])), 'BAD_REGION', 'gpa end past 2^53');
  t.equal(code(() => new GuestMemory([{ ...region(0, 16), userAddr: 2 ** 53 - 8 }])), 'BAD_REGION', 'user end past 2^53');
  t.equal(code(() => new GuestMemory([{ ...region(0, 16), guestPhysAddr: -16 }])), 'BAD_REGION', 'negative gpa');
  t.equal(code(() => new GuestMemory([{ ...region(0, 16), guestPhysAddr: 1.5 }])), 'BAD_REGION', 'fractional gpa');
  t.equal(code(() => new GuestMemory([{ ...region(0, 16), size: NaN }])), 'BAD_REGION', 'NaN size');
  // Ending exactly at 2^53 is fine.
  const top = new GuestMemory([{ ...region(0, 16), guestPhysAddr: 2 ** 53 - 16, userAddr: 2 ** 53 - 16 }]);
  t.equal(top.gpaView(2 ** 53 - 16, 16).length, 16, 'region ending at 2^53 maps');
  t.equal(code(() => top.gpaView(2 ** 53 - 1, 2)), 'GPA_UNMAPPED', 'range crossing 2^53');
  t.doesNotThrow(() => new GuestMemory([]), 'no regions is a valid (empty) table');
  t.end();
});

t.test('overlapping regions are rejected in either address space (V3.3)', (t) => {
  t.equal(
    code(() => new GuestMemory([region(0x0, 0x2000, 0x10_0000), region(0x1000, 0x1000, 0x20_0000)])),
    'OVERLAPPING_REGIONS',
    'GPA overlap',
  );
  t.equal(
    code(() => new GuestMemory([region(0x10_0000, 0x1000, 0x5000), region(0x0, 0x1000, 0x4800)])),
    'OVERLAPPING_REGIONS',
    'user-address overlap, given out of order',
  );
  t.equal(
    code(() => new GuestMemory([region(0x1000, 0x1000, 0x9000), region(0x1000, 0x1000, 0xa000)])),
    'OVERLAPPING_REGIONS',
    'same GPA twice',
  );
  t.doesNotThrow(
    () => new GuestMemory([region(0x0, 0x1000, 0x1000), region(0x1000, 0x1000, 0x0)]),
    'adjacent (touching) regions are fine in both spaces',
  );
  t.end();
});

t.test('gpa translation', (t) => {
  // Two adjacent regions [0x1000,0x2000) + [0x2000,0x3000), a gap, then [0x5000,0x6000).
  const a = region(0x1000, 0x1000, 0x7f00_0000_0000);
  const b = region(0x2000, 0x1000, 0x7f00_1000_0000); // adjacent in GPA, not in user space
  const c = region(0x5000, 0x1000, 0x7f00_2000_0000);
  a.bytes[0xfff] = 0xaa;
  b.bytes[0] = 0xbb;
  const mem = new GuestMemory([c, b, a]); // order does not matter

  const v = mem.gpaView(0x1800, 0x10);
  t.equal(v.length, 0x10, 'the view has exactly the requested length (D20)');
  t.equal(v.buffer, a.bytes.buffer, 'view into region a');
  t.equal(v.byteOffset, 0x800, 'at the right offset');

  const segs: Uint8Array[] = [];
  mem.gpaSegments(0x1ffe, 4, segs);
  t.equal(segs.length, 2, 'range crossing adjacent regions is split');
  t.same(
    segs.map((s) => s.length),
    [2, 2],
  );
  t.equal(segs[0][1], 0xaa, 'last byte of a');
  t.equal(segs[1][0], 0xbb, 'first byte of b');

  t.equal(code(() => mem.gpaView(0x1ffe, 4)), 'GPA_UNMAPPED', 'gpaView never spans regions');
  t.equal(code(() => mem.gpaSegments(0x2ffe, 4, [])), 'GPA_UNMAPPED', 'range running into the gap');
  t.equal(code(() => mem.gpaSegments(0x3000, 1, [])), 'GPA_UNMAPPED', 'start in the gap');
  t.equal(code(() => mem.gpaSegments(0x4fff, 2, [])), 'GPA_UNMAPPED', 'start in the gap, end mapped');
  t.equal(code(() => mem.gpaSegments(0x0, 1, [])), 'GPA_UNMAPPED', 'below every region');
  t.equal(code(() => mem.gpaSegments(0x5fff, 2, [])), 'GPA_UNMAPPED', 'one byte past the last region');
  t.equal(code(() => mem.gpaView(0x1000, 0x1001)), 'GPA_UNMAPPED', 'one byte too long (D21: never past the region end)');
  const whole: Uint8Array[] = [];
  mem.gpaSegments(0x1000, 0x2000, whole);
  t.same(
    whole.map((s) => s.length),
    [0x1000, 0x1000],
    'both whole regions',
  );

  const keep: Uint8Array[] = [new Uint8Array(1)];
  t.equal(code(() => mem.gpaSegments(0x1f00, 0x2000, keep)), 'GPA_UNMAPPED', 'partly mapped');
  t.equal(keep.length, 1, 'out is left as it was after a failure');

  // Overflow-ish addresses: past 2^53, 2^64-1, negative, NaN, fractional.
  t.equal(code(() => mem.gpaSegments(2 ** 53, 1, [])), 'GPA_UNMAPPED', '2^53');
  t.equal(code(() => mem.gpaSegments(2 ** 64 - 1, 1, [])), 'GPA_UNMAPPED', '2^64-1 as a Number');
  t.equal(code(() => mem.gpaSegments(-1, 1, [])), 'GPA_UNMAPPED', 'negative');
  t.equal(code(() => mem.gpaSegments(NaN, 1, [])), 'GPA_UNMAPPED', 'NaN');
  t.equal(code(() => mem.gpaSegments(4096.5, 1, [])), 'GPA_UNMAPPED', 'fractional');
  t.equal(code(() => mem.gpaSegments(0x1000, -1, [])), 'GPA_UNMAPPED', 'negative length');
  t.equal(code(() => mem.gpaSegments(0x1000, 2 ** 60, [])), 'GPA_UNMAPPED', 'huge length (D3)');
  t.equal(code(() => mem.gpaSegments(0x5000, 2 ** 53 - 0x5000 + 1, [])), 'GPA_UNMAPPED', 'end beyond 2^53');
  t.end();
});

t.test('len 0 pushes nothing and touches nothing (D6)', (t) => {
  const mem = new GuestMemory([region(0x1000, 0x1000)]);
  const out: Uint8Array[] = [];
  mem.gpaSegments(0xdead_0000, 0, out);
  mem.gpaSegments(2 ** 64, 0, out);
  t.equal(out.length, 0, 'nothing pushed, even for an unmapped address');
  t.equal(mem.gpaView(0x1000, 0).length, 0, 'empty view');
  t.equal(mem.qvaView(0x1, 0).length, 0, 'empty qva view');
  t.end();
});

t.test('qva translation is a separate address space (V3.5)', (t) => {
  const a = region(0x0, 0x1000, 0x7f00_0000_0000);
  const b = region(0x1000, 0x1000, 0x7f00_0000_1000); // adjacent in both spaces
  const mem = new GuestMemory([a, b]);
  const v = mem.qvaView(0x7f00_0000_0010, 8);
  t.equal(v.buffer, a.bytes.buffer);
  t.equal(v.byteOffset, 0x10);
  t.equal(code(() => mem.qvaView(0x10, 8)), 'QVA_UNMAPPED', 'a GPA is not a QVA');
  t.equal(code(() => mem.gpaView(0x7f00_0000_0010, 8)), 'GPA_UNMAPPED', 'a QVA is not a GPA');
  t.equal(code(() => mem.qvaView(0x7f00_0000_0ff8, 16)), 'QVA_UNMAPPED', 'ring areas must lie in one region');
  t.equal(code(() => mem.qvaView(0x7f00_0000_2000, 1)), 'QVA_UNMAPPED', 'past the end');
  t.equal(code(() => mem.qvaView(-8, 8)), 'QVA_UNMAPPED', 'negative');
  t.equal(code(() => mem.qvaView(2 ** 64, 8)), 'QVA_UNMAPPED', '2^64');
  t.end();
});

t.test('regions are exposed read-only and copied', (t) => {
  const a = region(0x1000, 0x1000);
  const mem = new GuestMemory([a]);
  t.equal(mem.regions.length, 1);
  t.equal(mem.regions[0].guestPhysAddr, 0x1000);
  t.ok(Object.isFrozen(mem.regions), 'frozen list');
  a.guestPhysAddr = 0x9000; // mutating the caller's object changes nothing
  t.equal(mem.gpaView(0x1000, 1).length, 1);
  t.end();
});

t.test('many regions: lookups find the right one', (t) => {
  const regions: GuestRegion[] = [];
  for (let i = 0; i < 32; i++) {
    const r = region(0x10_0000 * i, 0x1000, 0x7f00_0000_0000 + 0x10_0000 * (31 - i));
    r.bytes[0] = i;
    regions.push(r);
  }
  const mem = new GuestMemory(regions);
  for (let i = 0; i < 32; i++) {
    t.equal(mem.gpaView(0x10_0000 * i, 1)[0], i, `gpa region ${i}`);
    t.equal(mem.qvaView(0x7f00_0000_0000 + 0x10_0000 * (31 - i), 1)[0], i, `qva region ${i}`);
    t.equal(code(() => mem.gpaView(0x10_0000 * i + 0x1000, 1)), 'GPA_UNMAPPED', `gap after region ${i}`);
  }
  t.end();
});

t.test('repeated translations reuse one view; the cache never changes an answer', (t) => {
  const a = region(0x1000, 0x4000);
  const b = region(0x5000, 0x1000); // adjacent: a range may span both
  const mem = new GuestMemory([a, b]);
  const out: Uint8Array[] = [];
  mem.gpaSegments(0x2000, 512, out);
  mem.gpaSegments(0x2000, 512, out);
  t.equal(out.length, 2);
  t.equal(out[0], out[1], 'the same view object');
  t.equal(out[1].byteOffset - a.bytes.byteOffset, 0x1000);
  t.equal(out[1].length, 512);
  t.same(mem.viewStats, { hits: 1, misses: 1 });
  out.length = 0;
  mem.gpaSegments(0x2000, 1024, out);
  t.equal(out[0].length, 1024, 'another length at the same address is another view');
  out.length = 0;
  // A range spanning two regions is split every time, never served as one cached view.
  for (let i = 0; i < 2; i++) mem.gpaSegments(0x4f00, 0x200, out);
  t.same(out.map((v) => v.length), [0x100, 0x100, 0x100, 0x100]);
  t.equal(out[0].buffer, a.bytes.buffer);
  t.equal(out[1].buffer, b.bytes.buffer);
  // An unmapped range still throws after a cached neighbour.
  t.equal(code(() => mem.gpaSegments(0x5f00, 0x200, [])), 'GPA_UNMAPPED');
  // Colliding slots (same hash, other address) hand out the right bytes.
  const big = region(0, 1 << 20);
  const mem2 = new GuestMemory([big]);
  out.length = 0;
  mem2.gpaSegments(0, 16, out);
  mem2.gpaSegments(0x1fd60, 16, out); // hashes to the same slot as 0
  mem2.gpaSegments(0, 16, out);
  t.same(out.map((v) => v.byteOffset - big.bytes.byteOffset), [0, 0x1fd60, 0]);
  t.same(mem2.viewStats, { hits: 0, misses: 3 }, 'each collision rebuilt its view');
  t.end();
});
