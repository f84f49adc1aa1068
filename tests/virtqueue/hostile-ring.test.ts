// Every malformed-ring condition of reliability.md V4 and the D-table, built on purpose:
// each must end in its specific VirtqueueError, never a RangeError/TypeError, a hang, or
// an access outside the regions.
import t from 'tap';
import {
  FakeGuestMemory,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqueueError,
} from '../../virtqueue';
import { errorCode, rig } from './util';

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;

t.test('errors are VirtqueueErrors with a code', (t) => {
  const { drv, queue } = rig(8);
  drv.setAvailIdx(9);
  try {
    queue().pop();
    t.fail('expected a throw');
  } catch (e) {
    t.ok(e instanceof VirtqueueError);
    t.ok(e instanceof Error);
    t.equal((e as VirtqueueError).name, 'VirtqueueError');
    t.equal((e as VirtqueueError).code, 'AVAIL_IDX_JUMP');
    t.match((e as Error).message, /from 0 to 9/);
  }
  t.end();
});

t.test('AVAIL_IDX_JUMP: more new entries than the queue holds (D14, D19)', (t) => {
  {
    const { drv, queue } = rig(8);
    drv.setAvailIdx(9);
    t.equal(errorCode(() => queue().pop()), 'AVAIL_IDX_JUMP', '0 -> 9 on a queue of 8');
  }
  {
    const { drv, queue } = rig(8);
    drv.setAvailIdx(0xffff);
    t.equal(errorCode(() => queue().pop()), 'AVAIL_IDX_JUMP', 'idx moved backwards (0 -> 65535)');
  }
  {
    const { drv, queue } = rig(8, { startIdx: 65530 });
    drv.setAvailIdx(65530 + 9 - 65536);
    t.equal(errorCode(() => queue().pop()), 'AVAIL_IDX_JUMP', 'jump across the wrap');
  }
  {
    const { drv, queue } = rig(8);
    for (let i = 0; i < 8; i++) drv.addChain([1], []);
    const q = queue();
    for (let i = 0; i < 8; i++) t.not(q.pop(), null);
    t.pass('exactly size new entries are fine');
  }
  t.end();
});

t.test('HEAD_OUT_OF_RANGE: avail ring entry >= size (D13)', (t) => {
  for (const head of [8, 9, 0x8000, 0xffff]) {
    const { drv, queue } = rig(8);
    drv.setAvailRing(0, head);
    drv.setAvailIdx(1);
    t.equal(errorCode(() => queue().pop()), 'HEAD_OUT_OF_RANGE', `head ${head}`);
  }
  t.end();
});

t.test('NEXT_OUT_OF_RANGE (D13)', (t) => {
  for (const next of [8, 0xffff]) {
    const { drv, queue } = rig(8);
    const head = drv.addChain([1, 1], []);
    drv.setDesc(head, { next });
    t.equal(errorCode(() => queue().pop()), 'NEXT_OUT_OF_RANGE', `direct next ${next}`);
  }
  {
    // Inside an indirect table, next is checked against the table's own size.
    const { drv, mem, queue } = rig(8, { indirect: true });
    const table = drv.writeIndirectTable([
      { addr: mem.alloc(4), len: 4, flags: NEXT, next: 2 },
      { addr: mem.alloc(4), len: 4, flags: 0 },
    ]);
    const head = drv.allocDesc();
    drv.setDesc(head, { addr: table.gpa, len: table.len, flags: INDIRECT, next: 0 });
    drv.offer(head);
    t.equal(errorCode(() => queue().pop()), 'NEXT_OUT_OF_RANGE', 'indirect next 2 in a table of 2 (though < queue size)');
  }
  t.end();
});

t.test('DESC_LOOP: looped chains end in an error, never a hang (D12, V4.4)', (t) => {
  for (const n of [1, 2, 5, 8]) {
    const { drv, queue } = rig(8);
    drv.makeLoop(n);
    t.equal(errorCode(() => queue({ maxChainLength: 65536 }).pop()), 'DESC_LOOP', `loop of ${n} in a table of 8`);
  }
  {
    // A tail that runs into a loop: 0 -> 1 -> 2 -> 1.
    const { drv, mem, queue } = rig(8);
    const d = [drv.allocDesc(), drv.allocDesc(), drv.allocDesc()];
    drv.setDesc(d[0], { addr: mem.alloc(4), len: 4, flags: NEXT, next: d[1] });
    drv.setDesc(d[1], { addr: mem.alloc(4), len: 4, flags: NEXT, next: d[2] });
    drv.setDesc(d[2], { addr: mem.alloc(4), len: 4, flags: NEXT, next: d[1] });
    drv.offer(d[0]);
    t.equal(errorCode(() => queue().pop()), 'DESC_LOOP', 'rho-shaped chain');
  }
  {
    const { drv, mem, queue } = rig(8, { indirect: true });
    const table = drv.writeIndirectTable([
      { addr: mem.alloc(4), len: 4, flags: NEXT, next: 1 },
      { addr: mem.alloc(4), len: 4, flags: NEXT, next: 0 },
    ]);
    const head = drv.allocDesc();
    drv.setDesc(head, { addr: table.gpa, len: table.len, flags: INDIRECT });
    drv.offer(head);
    t.equal(errorCode(() => queue().pop()), 'DESC_LOOP', 'loop inside an indirect table');
  }
  t.end();
});

t.test('ZERO_LENGTH descriptors are rejected (D2, V4.6)', (t) => {
  {
    const { drv, queue } = rig(8);
    drv.addChain([0], [4]);
    t.equal(errorCode(() => queue().pop()), 'ZERO_LENGTH', 'readable of length 0');
  }
  {
    const { drv, queue } = rig(8);
    drv.addChain([4], [4, 0]);
    t.equal(errorCode(() => queue().pop()), 'ZERO_LENGTH', 'last writable of length 0');
  }
  {
    const { drv, queue } = rig(8, { indirect: true });
    drv.addChain([4, 0], [4], { indirect: true });
    t.equal(errorCode(() => queue().pop()), 'ZERO_LENGTH', 'inside an indirect table');
  }
  t.end();
});

t.test('INDIRECT_NOT_NEGOTIATED', (t) => {
  const { drv, queue } = rig(8, { indirect: true });
  drv.addChain([4], [4], { indirect: true });
  t.equal(errorCode(() => queue({ indirect: false }).pop()), 'INDIRECT_NOT_NEGOTIATED');
  t.end();
});

t.test('INDIRECT_BAD_LENGTH: 0, not a multiple of 16, more than 32768 entries (D4, V4.5)', (t) => {
  for (const len of [0, 8, 15, 17, 33, 32768 * 16 + 16, 0xfffffff0, 0xffffffff]) {
    const { drv, mem, queue } = rig(8, { indirect: true });
    const table = drv.writeIndirectTable([{ addr: mem.alloc(4), len: 4, flags: 0 }]);
    const head = drv.allocDesc();
    drv.setDesc(head, { addr: table.gpa, len, flags: INDIRECT });
    drv.offer(head);
    t.equal(errorCode(() => queue().pop()), 'INDIRECT_BAD_LENGTH', `len ${len}`);
  }
  t.end();
});

t.test('INDIRECT_NESTED: an INDIRECT descriptor inside an indirect table (§2.7.5.3.1)', (t) => {
  const { drv, queue } = rig(8, { indirect: true });
  drv.makeNestedIndirect();
  t.equal(errorCode(() => queue().pop()), 'INDIRECT_NESTED');
  t.end();
});

t.test('INDIRECT_WITH_NEXT: INDIRECT and NEXT together (§2.7.5.3.1)', (t) => {
  const { drv, mem, queue } = rig(8, { indirect: true });
  const table = drv.writeIndirectTable([{ addr: mem.alloc(4), len: 4, flags: 0 }]);
  const head = drv.allocDesc();
  const tail = drv.allocDesc();
  drv.setDesc(head, { addr: table.gpa, len: table.len, flags: INDIRECT | NEXT, next: tail });
  drv.setDesc(tail, { addr: mem.alloc(4), len: 4, flags: WRITE });
  drv.offer(head);
  t.equal(errorCode(() => queue().pop()), 'INDIRECT_WITH_NEXT');
  t.end();
});

t.test('CHAIN_TOO_LARGE: bytes over 2^32-1, descriptors over the limit (V4.6, V4.7)', (t) => {
  {
    const { drv, mem, queue } = rig(8);
    const a = drv.allocDesc();
    const b = drv.allocDesc();
    drv.setDesc(a, { addr: mem.alloc(0x1000), len: 0x1000, flags: NEXT, next: b });
    drv.setDesc(b, { addr: 0x10_0000, len: 0xffffffff - 0x1000 + 1, flags: WRITE });
    drv.offer(a);
    t.equal(errorCode(() => queue().pop()), 'CHAIN_TOO_LARGE', '0x1000 + 0xfffff001 = 2^32 bytes');
  }
  {
    const { drv, mem, queue } = rig(8);
    const a = drv.allocDesc();
    const b = drv.allocDesc();
    drv.setDesc(a, { addr: mem.alloc(0x1000), len: 0x1000, flags: NEXT, next: b });
    drv.setDesc(b, { addr: 0x10_0000, len: 0xffffffff - 0x1000, flags: WRITE });
    drv.offer(a);
    t.equal(errorCode(() => queue().pop()), 'GPA_UNMAPPED', '2^32-1 bytes pass the size rule (then fail translation)');
  }
  {
    // An indirect table may hold more entries than the queue size, but the chain is
    // still bounded by maxChainLength (default: the queue size).
    const { drv, queue } = rig(8, { indirect: true });
    drv.addChain([1, 1, 1, 1, 1], [1, 1, 1, 1], { indirect: true });
    t.equal(errorCode(() => queue().pop()), 'CHAIN_TOO_LARGE', '9 buffers via an indirect table on a queue of 8');
  }
  t.end();
});

t.test('WRITABLE_BEFORE_READABLE (§2.7.4.2, V4.7)', (t) => {
  {
    const { drv, mem, queue } = rig(8);
    const a = drv.allocDesc();
    const b = drv.allocDesc();
    drv.setDesc(a, { addr: mem.alloc(4), len: 4, flags: WRITE | NEXT, next: b });
    drv.setDesc(b, { addr: mem.alloc(4), len: 4, flags: 0 });
    drv.offer(a);
    t.equal(errorCode(() => queue().pop()), 'WRITABLE_BEFORE_READABLE', 'direct');
  }
  {
    const { drv, mem, queue } = rig(8, { indirect: true });
    const table = drv.writeIndirectTable([{ addr: mem.alloc(4), len: 4, flags: 0 }]);
    const a = drv.allocDesc();
    const b = drv.allocDesc();
    drv.setDesc(a, { addr: mem.alloc(4), len: 4, flags: WRITE | NEXT, next: b });
    drv.setDesc(b, { addr: table.gpa, len: table.len, flags: INDIRECT });
    drv.offer(a);
    t.equal(errorCode(() => queue().pop()), 'WRITABLE_BEFORE_READABLE', 'writable direct part, readable indirect part');
  }
  t.end();
});

t.test('HEAD_IN_FLIGHT: a head offered again before completion (V4.9)', (t) => {
  const { drv, queue } = rig(8);
  const head = drv.addChain([1], [1]);
  const q = queue();
  t.not(q.pop(), null);
  drv.offer(head);
  t.equal(errorCode(() => q.pop()), 'HEAD_IN_FLIGHT');
  t.end();
});

t.test('TOO_MANY_IN_FLIGHT: more than size requests outstanding (D1)', (t) => {
  const { drv, queue } = rig(4);
  for (let i = 0; i < 4; i++) drv.addChain([1], []);
  const q = queue();
  for (let i = 0; i < 4; i++) q.pop();
  drv.offer(0);
  t.equal(errorCode(() => q.pop()), 'TOO_MANY_IN_FLIGHT');
  t.end();
});

t.test('GPA_UNMAPPED: buffers and tables outside guest memory (D3, D5, D6, C14)', (t) => {
  const mk = () => rig(8, { indirect: true }, new FakeGuestMemory([{ gpa: 0x10_0000, size: 0x10_0000 }]));
  const cases: [string, bigint | number, number][] = [
    ['below every region', 0x1000, 16],
    ['2^53', 2n ** 53n, 16],
    ['2^63', 2n ** 63n, 16],
    ['2^64 - 16', 2n ** 64n - 16n, 16],
    ['running past the region end', 0x1f_fff0, 32],
    ['one byte past the end', 0x20_0000, 1],
    ['huge length', 0x10_0000, 0xffff_fff0],
  ];
  for (const [name, addr, len] of cases) {
    const { drv, queue } = mk();
    const head = drv.allocDesc();
    drv.setDesc(head, { addr, len, flags: 0 });
    drv.offer(head);
    t.equal(errorCode(() => queue().pop()), 'GPA_UNMAPPED', `buffer ${name}`);
  }
  for (const [name, addr] of [
    ['below every region', 0x1000],
    ['2^63', 2n ** 63n],
    ['straddling the end', 0x1f_fff0],
  ] as const) {
    const { drv, queue } = mk();
    const head = drv.allocDesc();
    drv.setDesc(head, { addr, len: 32, flags: INDIRECT });
    drv.offer(head);
    t.equal(errorCode(() => queue().pop()), 'GPA_UNMAPPED', `indirect table ${name} (translated with its full length)`);
  }
  t.end();
});

t.test('a buffer that ends exactly at the region end is fine', (t) => {
  const { drv, queue } = rig(8, {}, new FakeGuestMemory([{ gpa: 0x10_0000, size: 0x10_0000 }]));
  const head = drv.allocDesc();
  drv.setDesc(head, { addr: 0x1f_fff0, len: 16, flags: 0 });
  drv.offer(head);
  const c = queue().pop()!;
  t.equal(c.readableLength, 16);
  t.equal(c.readable[0].length, 16);
  t.end();
});
