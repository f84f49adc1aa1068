// SplitQueue behaviour with a well-behaved driver: layouts, index wrap, used-ring
// publication, notification decisions (virtio 1.2 §2.7).
import t, { Test } from 'tap';
import {
  AddChainOptions,
  FakeGuestMemory,
  GuestMemory,
  SplitQueue,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  sgWrite,
  vringNeedEvent,
} from '../../virtqueue';
import { concat, errorCode, rig } from './util';

const text = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

t.test('literal ring bytes: descriptors, avail ring and used ring (§2.7.5, §2.7.6, §2.7.8)', (t) => {
  const mem = new FakeGuestMemory([{ gpa: 0x10000, size: 0x10000, userAddr: 0x7f00_0001_0000 }]);
  // struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; } at 0x10000, n = 4.
  mem.write(0x10000 + 16 * 2, Uint8Array.from([0x00, 0x10, 0x01, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0x01, 0x00, 0x03, 0x00]));
  mem.write(0x10000 + 16 * 3, Uint8Array.from([0x00, 0x20, 0x01, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0x02, 0x00, 0x00, 0x00]));
  // struct virtq_avail { le16 flags; le16 idx; le16 ring[4]; le16 used_event; } at 0x10100.
  mem.write(0x10100, Uint8Array.from([0x00, 0x00, 0x01, 0x00, 0x02, 0x00]));
  mem.write(0x11000, text('ABCD'));
  const q = new SplitQueue(
    mem.toGuestMemory(),
    { size: 4, descTable: 0x7f00_0001_0000, availRing: 0x7f00_0001_0100, usedRing: 0x7f00_0001_0200, eventIdx: false, indirect: false },
    0,
  );
  t.equal(q.size, 4);
  const c = q.pop();
  if (c === null) throw new Error('expected a chain');
  t.equal(c.head, 2);
  t.equal(new TextDecoder().decode(concat(c.readable)), 'ABCD');
  t.equal(c.readableLength, 4);
  t.equal(c.writableLength, 8);
  t.equal(c.writable[0].length, 8);
  sgWrite(c.writable, 0, Uint8Array.from([1, 2, 3, 4, 5]));
  q.pushUsed(c, 5);
  // Not visible before publish: used->idx still 0.
  t.equal(hex(mem.read(0x10200, 4)), '00000000', 'used idx not touched by pushUsed');
  t.equal(hex(mem.read(0x10204, 8)), '0200000005000000', 'element written: id 2, len 5');
  t.equal(q.publishUsed(), true, 'flags 0: notify');
  // struct virtq_used { le16 flags; le16 idx; { le32 id; le32 len; } ring[4]; le16 avail_event; }
  t.equal(hex(mem.read(0x10200, 12)), '000001000200000005000000');
  t.equal(hex(mem.read(0x12000, 8)), '0102030405000000', 'response bytes landed in the writable buffer');
  t.equal(q.publishUsed(), false, 'nothing pushed since: no notification');
  t.equal(q.pop(), null);
  t.equal(q.lastAvailIdx, 1);
  t.equal(q.usedIdx, 1);
  t.end();
});

t.test('layouts', (t) => {
  const hello = text('hello, virtio');
  const check = (t: Test, name: string, opts: AddChainOptions, size = 32) => {
    const { drv, queue } = rig(size, { indirect: true });
    const head = drv.addChain([hello.subarray(0, 5), hello.subarray(5)], [3, 4], opts);
    const q = queue();
    const c = q.pop();
    if (c === null) throw new Error('expected a chain');
    t.equal(c.head, head, `${name}: head`);
    t.equal(new TextDecoder().decode(concat(c.readable)), 'hello, virtio', `${name}: readable bytes`);
    t.equal(c.readableLength, hello.length, `${name}: readable length`);
    t.equal(c.writableLength, 7, `${name}: writable length`);
    sgWrite(c.writable, 0, Uint8Array.from([1, 2, 3, 4, 5, 6, 7]));
    q.pushUsed(c, 7);
    t.ok(q.publishUsed(), `${name}: notify`);
    const used = drv.readUsed();
    t.same(used, [{ id: head, len: 7 }], `${name}: used element`);
    t.equal(hex(drv.readWritable(head)), '01020304050607', `${name}: written bytes`);
    return c;
  };
  t.test('one descriptor per buffer', (t) => {
    const c = check(t, 'plain', {});
    t.equal(c.readable.length, 0, 'chain released after pushUsed (no view outlives it, V9.4)');
    t.end();
  });
  t.test('per-byte descriptors', (t) => {
    const { drv, queue } = rig(32);
    drv.addChain([text('hello')], [3], { split: 'per-byte' });
    const c = queue().pop()!;
    t.equal(c.readable.length, 5, 'five 1-byte readable segments');
    t.equal(c.writable.length, 3, 'three 1-byte writable segments');
    t.equal(new TextDecoder().decode(concat(c.readable)), 'hello');
    check(t, 'per-byte', { split: 'per-byte' });
    t.end();
  });
  t.test('indirect table', (t) => {
    const { drv } = rig(4, { indirect: true });
    const before = drv.freeDescriptors;
    drv.addChain([text('hello')], [3], { indirect: true, split: 'per-byte' });
    t.equal(before - drv.freeDescriptors, 1, '8 buffers use one main-table descriptor');
    check(t, 'indirect', { indirect: true, split: 'per-byte' });
    t.end();
  });
  t.test('chained descriptors followed by one INDIRECT (§2.7.5.3.2)', (t) => {
    check(t, 'mixed', { indirect: true, directPrefix: 1 });
    check(t, 'mixed per-byte', { indirect: true, directPrefix: 4, split: 'per-byte' });
    t.end();
  });
  t.test('WRITE on the descriptor pointing to the table is ignored (§2.7.5.3.2)', (t) => {
    check(t, 'indirect+WRITE', { indirect: true, indirectWriteFlag: true });
    check(t, 'mixed+WRITE', { indirect: true, directPrefix: 1, indirectWriteFlag: true });
    t.end();
  });
  t.test('chain as long as the queue', (t) => {
    const { drv, queue } = rig(8);
    drv.addChain([1, 1, 1, 1], [1, 1, 1, 1]);
    const c = queue().pop()!;
    t.equal(c.readable.length + c.writable.length, 8);
    t.end();
  });
  t.end();
});

t.test('buffers and indirect tables crossing adjacent regions', (t) => {
  const mem = new FakeGuestMemory([
    { gpa: 0x100000, size: 0x10000 },
    { gpa: 0x110000, size: 0x10000, userAddr: 0x5555_0000_0000 }, // adjacent in GPA only
  ]);
  const { drv, queue } = rig(8, { indirect: true, region: 0 }, mem);
  mem.write(0x10fff0, text('0123456789abcdefGHIJKLMNOPQRSTUV'));
  drv.addChain([{ gpa: 0x10fff0, len: 32 }], [{ gpa: 0x10fffc, len: 8 }]);
  const q = queue();
  const c = q.pop()!;
  t.same(
    c.readable.map((s) => s.length),
    [16, 16],
    'readable buffer split at the region boundary',
  );
  t.equal(new TextDecoder().decode(concat(c.readable)), '0123456789abcdefGHIJKLMNOPQRSTUV');
  t.same(
    c.writable.map((s) => s.length),
    [4, 4],
  );
  q.pushUsed(c, 8);

  // An indirect table of two entries straddling the boundary, at a GPA that is not even
  // 16-aligned: it is translated whole and copied privately before use.
  const tableGpa = 0x10fff3;
  const entry = (addr: number, len: number, flags: number, next: number) => {
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, BigInt(addr), true);
    dv.setUint32(8, len, true);
    dv.setUint16(12, flags, true);
    dv.setUint16(14, next, true);
    return b;
  };
  mem.write(0x108000, text('WXYZ'));
  mem.write(tableGpa, concat([entry(0x108000, 4, VIRTQ_DESC_F_NEXT, 1), entry(0x118000, 2, VIRTQ_DESC_F_WRITE, 0)]));
  const head = drv.allocDesc();
  drv.setDesc(head, { addr: tableGpa, len: 32, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
  drv.offer(head);
  const d = q.pop()!;
  t.equal(d.head, head);
  t.equal(new TextDecoder().decode(concat(d.readable)), 'WXYZ');
  t.equal(d.writableLength, 2);
  t.end();
});

t.test('avail and used index wrap-around 65535 -> 0', (t) => {
  const { drv, queue } = rig(8, { startIdx: 65534 });
  const q = queue();
  t.equal(q.lastAvailIdx, 65534);
  t.equal(q.usedIdx, 65534, 'used idx read from guest memory');
  const heads = [drv.addChain([1], [1]), drv.addChain([2], [2]), drv.addChain([3], [3])];
  t.equal(drv.availIdx, 1, 'avail idx wrapped');
  const got = [q.pop()!, q.pop()!, q.pop()!];
  t.equal(q.pop(), null);
  t.same(
    got.map((c) => c.head),
    heads,
  );
  t.same(
    got.map((c) => c.readableLength),
    [1, 2, 3],
  );
  t.equal(q.lastAvailIdx, 1);
  for (const c of got) q.pushUsed(c, c.writableLength);
  q.publishUsed();
  t.equal(drv.usedIdx, 1, 'used idx wrapped');
  t.same(drv.readUsed(), [
    { id: heads[0], len: 1 },
    { id: heads[1], len: 2 },
    { id: heads[2], len: 3 },
  ]);
  t.end();
});

t.test('the used index is re-read from guest memory, not assumed 0 (C12)', (t) => {
  const { mem, drv, queue } = rig(4);
  mem.writeU16(drv.usedRing + 2, 502); // a previous back-end completed 502 buffers
  const head = drv.addChain([1], [4]);
  const q = queue();
  t.equal(q.usedIdx, 502);
  q.pushUsed(q.pop()!, 4);
  q.publishUsed();
  t.equal(mem.readU16(drv.usedRing + 2), 503);
  // 502 % 4 = 2: the element lands in slot 2.
  t.equal(mem.readU32(drv.usedRing + 4 + 8 * 2), head);
  t.equal(mem.readU32(drv.usedRing + 4 + 8 * 2 + 4), 4);
  t.end();
});

t.test('vring_need_event with literal indices', (t) => {
  t.equal(vringNeedEvent(0, 1, 0), true, 'used_event 0: notify after the first buffer (§2.7.7.2 note)');
  t.equal(vringNeedEvent(0, 2, 1), false, '...and not after the second');
  t.equal(vringNeedEvent(5, 5, 0), false, 'event 5 not yet reached by 0..4');
  t.equal(vringNeedEvent(5, 6, 0), true, 'event 5 crossed');
  t.equal(vringNeedEvent(5, 6, 5), true, 'exactly the entry at 5');
  t.equal(vringNeedEvent(5, 7, 6), false, 'already past');
  t.equal(vringNeedEvent(65535, 1, 65534), true, 'across the wrap');
  t.equal(vringNeedEvent(2, 1, 65534), false, 'event ahead, across the wrap');
  t.equal(vringNeedEvent(65534, 1, 65534), true, 'event = old, across the wrap');
  t.equal(vringNeedEvent(3, 3, 3), false, 'no movement never notifies');
  t.end();
});

t.test('EVENT_IDX used buffer notifications (§2.7.7.2)', (t) => {
  const { drv, queue } = rig(8, { eventIdx: true });
  const q = queue();
  const complete = (n: number) => {
    for (let i = 0; i < n; i++) drv.addChain([1], [1]);
    for (let i = 0; i < n; i++) q.pushUsed(q.pop()!, 1);
    const r = q.publishUsed();
    drv.readUsed();
    return r;
  };
  drv.setAvailFlags(1); // lower bit of flags MUST be ignored with EVENT_IDX
  drv.setUsedEvent(0);
  t.equal(complete(1), true, 'used idx 0 -> 1 with used_event 0');
  t.equal(complete(1), false, '1 -> 2 with used_event 0');
  drv.setUsedEvent(3);
  t.equal(complete(2), true, '2 -> 4 crosses used_event 3');
  t.equal(complete(1), false, '4 -> 5 with used_event 3');
  drv.setUsedEvent(5);
  t.equal(complete(1), true, '5 -> 6 with used_event 5');
  t.equal(drv.usedIdx, 6);
  t.end();
});

t.test('EVENT_IDX across the used index wrap', (t) => {
  const { drv, queue } = rig(8, { eventIdx: true, startIdx: 65534 });
  const q = queue();
  drv.setUsedEvent(65535);
  for (let i = 0; i < 3; i++) drv.addChain([1], [1]);
  for (let i = 0; i < 3; i++) q.pushUsed(q.pop()!, 0);
  t.equal(q.publishUsed(), true, '65534 -> 1 crosses used_event 65535');
  drv.readUsed();
  drv.setUsedEvent(2);
  drv.addChain([1], [1]);
  q.pushUsed(q.pop()!, 0);
  t.equal(q.publishUsed(), false, '1 -> 2 does not reach used_event 2');
  drv.addChain([1], [1]);
  q.pushUsed(q.pop()!, 0);
  t.equal(q.publishUsed(), true, '2 -> 3 does');
  t.end();
});

t.test('VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX', (t) => {
  const { drv, queue } = rig(4);
  const q = queue();
  drv.setAvailFlags(1);
  drv.setUsedEvent(0); // MUST be ignored without EVENT_IDX
  drv.addChain([1], [1]);
  q.pushUsed(q.pop()!, 1);
  t.equal(q.publishUsed(), false, 'flags 1: no notification');
  t.equal(drv.usedIdx, 1, 'but the element is published');
  drv.setAvailFlags(0);
  drv.addChain([1], [1]);
  q.pushUsed(q.pop()!, 1);
  t.equal(q.publishUsed(), true, 'flags 0: notification');
  t.end();
});

t.test('notification suppression and the re-check race, without EVENT_IDX (§2.7.10)', (t) => {
  const { mem, drv, queue } = rig(8);
  const q = queue();
  t.equal(drv.addChain([1], [1], { kick: false }), 0);
  t.equal(drv.kick(), true, 'used flags 0: driver notifies');
  q.disableNotification();
  t.equal(hex(mem.read(drv.usedRing, 2)), '0100', 'used->flags = VIRTQ_USED_F_NO_NOTIFY');
  t.not(q.pop(), null);
  t.equal(q.pop(), null, 'drained');
  // The driver adds a buffer after our last look, while notifications are off: no kick.
  drv.addChain([1], [1], { kick: false });
  t.equal(drv.kick(), false, 'suppressed');
  t.equal(q.enableNotification(), true, 're-check sees the new buffer: drain again');
  t.equal(hex(mem.read(drv.usedRing, 2)), '0000', 'used->flags = 0');
  t.not(q.pop(), null);
  t.equal(q.enableNotification(), false, 'nothing new');
  drv.addChain([1], [1], { kick: false });
  t.equal(drv.kick(), true, 'enabled again: driver notifies');
  t.ok(q.hasAvailable());
  t.end();
});

t.test('notification suppression and the re-check race, with EVENT_IDX (§2.7.10)', (t) => {
  const { mem, drv, queue } = rig(8, { eventIdx: true });
  const q = queue();
  const availEvent = () => mem.readU16(drv.usedRing + 4 + 8 * 8);
  drv.addChain([1], [1], { kick: false });
  t.equal(drv.kick(), true, 'avail_event 0: 0 -> 1 notifies');
  q.disableNotification();
  t.equal(availEvent(), 0, 'avail_event = lastAvailIdx 0');
  t.equal(mem.readU16(drv.usedRing), 0, 'flags stay 0 with EVENT_IDX');
  t.not(q.pop(), null);
  t.equal(availEvent(), 0, 'not advanced while disabled');
  t.equal(q.pop(), null);
  drv.addChain([1], [1], { kick: false });
  t.equal(drv.kick(), false, '1 -> 2 does not reach avail_event 0: no kick');
  t.equal(q.enableNotification(), true, 're-check finds it');
  t.equal(availEvent(), 1, 'avail_event = 1');
  t.not(q.pop(), null);
  t.equal(availEvent(), 2, 'pop advances avail_event while enabled');
  drv.addChain([1], [1], { kick: false });
  t.equal(drv.kick(), true, '2 -> 3 reaches avail_event 2: kick');
  t.end();
});

t.test('enableNotification clears a stale NO_NOTIFY left by a previous back-end', (t) => {
  const { mem, drv, queue } = rig(4);
  mem.writeU16(drv.usedRing, 1);
  const q = queue();
  t.equal(mem.readU16(drv.usedRing), 1, 'the constructor does not write guest memory');
  t.equal(q.enableNotification(), false);
  t.equal(mem.readU16(drv.usedRing), 0);
  t.end();
});

t.test('pushUsed clamps len to the writable length (§2.7.8.2: never an overestimate)', (t) => {
  const { drv, queue } = rig(32);
  const q = queue();
  const cases: [number, number][] = [
    [100, 8],
    [8, 8],
    [3.7, 3],
    [-5, 0],
    [NaN, 0],
    [Infinity, 8],
  ];
  for (let i = 0; i < cases.length; i++) drv.addChain([4], [2, 6]);
  for (const [given] of cases) {
    const c = q.pop()!;
    t.equal(c.writableLength, 8);
    q.pushUsed(c, given);
  }
  q.publishUsed();
  t.same(
    drv.readUsed().map((u) => u.len),
    cases.map(([, want]) => want),
  );
  // A chain with no writable part completes with len 0 whatever is claimed.
  drv.addChain([4], []);
  q.pushUsed(q.pop()!, 4096);
  q.publishUsed();
  t.same(drv.readUsed()[0].len, 0);
  t.end();
});

t.test('pushUsed refuses a chain that is not in flight (caller bug, not guest input)', (t) => {
  const { drv, queue } = rig(4);
  const q = queue();
  drv.addChain([1], [1]);
  const c = q.pop()!;
  q.pushUsed(c, 1);
  t.throws(() => q.pushUsed(c, 1), /not in flight/, 'double completion');
  const other = rig(4);
  other.drv.addChain([1], [1]);
  const foreign = other.queue().pop()!;
  t.throws(() => q.pushUsed(foreign, 1), /not in flight/, 'chain of another queue');
  t.end();
});

t.test('in-flight accounting', (t) => {
  const { drv, queue } = rig(4);
  const q = queue();
  t.equal(q.hasAvailable(), false);
  for (let i = 0; i < 4; i++) drv.addChain([1], []);
  t.equal(q.hasAvailable(), true);
  const cs = [q.pop()!, q.pop()!, q.pop()!, q.pop()!];
  t.equal(q.inFlight, 4);
  t.equal(q.hasAvailable(), false);
  q.pushUsed(cs[2], 0);
  t.equal(q.inFlight, 3);
  q.publishUsed();
  drv.readUsed();
  drv.addChain([1], []);
  const again = q.pop()!;
  t.equal(again.head, cs[2].head, 'the freed head comes back and is accepted');
  t.equal(q.inFlight, 4);
  t.end();
});

t.test('more than size pushes without publishing: the ring is published, not overwritten', (t) => {
  // Only a driver that re-offers heads it has not seen completed can cause this.
  const { drv, queue } = rig(2);
  const q = queue();
  const a = drv.addChain([1], []);
  const b = drv.addChain([1], []);
  q.pushUsed(q.pop()!, 0);
  q.pushUsed(q.pop()!, 0);
  t.equal(drv.usedIdx, 0, 'nothing published yet');
  drv.offer(a); // re-offered without reading the used ring
  q.pushUsed(q.pop()!, 0);
  t.equal(drv.usedIdx, 2, 'the first two were published to make room');
  t.equal(q.publishUsed(), true, 'the owed notification is reported');
  t.equal(drv.usedIdx, 3);
  t.same(drv.readUsed(), [
    { id: a, len: 0 },
    { id: b, len: 0 },
    { id: a, len: 0 },
  ]);
  t.end();
});

t.test('maxChainLength bounds chains (§2.7.4.1 "reasonable limit")', (t) => {
  {
    const { drv, queue } = rig(16);
    drv.addChain([1, 1], [1]);
    drv.addChain([1, 1], [1, 1]);
    const q = queue({ maxChainLength: 3 });
    t.not(q.pop(), null, '3 descriptors: accepted');
    t.equal(errorCode(() => q.pop()), 'CHAIN_TOO_LARGE', '4 descriptors: refused');
  }
  {
    const { drv, queue } = rig(16, { indirect: true });
    drv.addChain([1, 1, 1], [1, 1], { indirect: true, directPrefix: 1 });
    t.equal(errorCode(() => queue({ maxChainLength: 4 }).pop()), 'CHAIN_TOO_LARGE', 'direct + indirect counted together');
  }
  {
    const { drv, queue } = rig(16, { indirect: true });
    drv.addChain([1, 1, 1], [1], { indirect: true });
    t.not(queue({ maxChainLength: 4 }).pop(), null, 'the pointer to the table is not a buffer');
  }
  t.throws(() => rig(4).queue({ maxChainLength: 0 }), RangeError);
  t.end();
});

t.test('adoptInflight: resubmitting heads after a reconnect (§4.5)', (t) => {
  const { drv, mem } = rig(4);
  const a = drv.addChain([text('req')], [2]);
  drv.addChain([1], [1]);
  // The previous back-end popped both (last_avail = 2) and completed neither.
  const q = new SplitQueue(mem.toGuestMemory(), drv.config(), 2);
  const c = q.adoptInflight(a);
  t.equal(new TextDecoder().decode(concat(c.readable)), 'req');
  t.equal(q.inFlight, 1);
  t.equal(q.lastAvailIdx, 2, 'avail position unchanged');
  t.equal(q.pop(), null);
  t.equal(errorCode(() => q.adoptInflight(a)), 'HEAD_IN_FLIGHT');
  t.equal(errorCode(() => q.adoptInflight(4)), 'HEAD_OUT_OF_RANGE');
  t.equal(errorCode(() => q.adoptInflight(-1)), 'HEAD_OUT_OF_RANGE');
  q.pushUsed(c, 2);
  q.publishUsed();
  t.same(drv.readUsed(), [{ id: a, len: 2 }]);
  t.end();
});

t.test('construction checks (D18)', (t) => {
  const { drv, mem } = rig(8);
  const gm = mem.toGuestMemory();
  const make = (o: object, last = 0) => errorCode(() => new SplitQueue(gm, { ...drv.config(), ...o }, last));
  for (const size of [0, 3, 6, 32769, 65536, -8, 1.5, NaN]) t.equal(make({ size }), 'BAD_QUEUE_SIZE', `size ${size}`);
  t.equal(make({ size: 1 }), 'no error', 'size 1 is a power of 2');
  t.equal(make({ descTable: drv.config().descTable + 8 }), 'RING_UNALIGNED', 'descriptor table 8-aligned');
  t.equal(make({ availRing: drv.config().availRing + 1 }), 'RING_UNALIGNED', 'avail ring odd');
  t.equal(make({ usedRing: drv.config().usedRing + 2 }), 'RING_UNALIGNED', 'used ring 2-aligned');
  t.equal(make({ descTable: drv.descTable }), 'QVA_UNMAPPED', 'a GPA passed where a QVA belongs');
  const end = mem.qvaOf(0x10_0000) + (1 << 20);
  t.equal(make({ usedRing: end - 64 }), 'QVA_UNMAPPED', 'used ring running past the region end (6 + 8n bytes)');
  t.equal(make({ availRing: end - 20 }), 'QVA_UNMAPPED', 'avail ring incl. used_event past the end (6 + 2n = 22)');
  t.equal(make({ availRing: end - 22 }), 'no error', 'avail ring ending exactly at the region end');
  t.equal(make({ availRing: 2 ** 64 }), 'QVA_UNMAPPED', 'address not representable');
  t.equal(make({ availRing: -2 }), 'QVA_UNMAPPED', 'negative address');
  t.match(make({}, 65536), /RangeError/, 'lastAvailIdx must be a u16 (the caller validates SET_VRING_BASE)');

  // The host mapping itself misaligned (a region view at an odd byte offset).
  const raw = new Uint8Array(new ArrayBuffer(0x2001), 1, 0x2000);
  const odd = new GuestMemory([{ guestPhysAddr: 0, userAddr: 0x10000, size: 0x2000, bytes: raw }]);
  t.equal(
    errorCode(() => new SplitQueue(odd, { size: 8, descTable: 0x10000, availRing: 0x10800, usedRing: 0x11000, eventIdx: false, indirect: false }, 0)),
    'RING_UNALIGNED',
    'typed-array views need host alignment too',
  );
  t.end();
});
