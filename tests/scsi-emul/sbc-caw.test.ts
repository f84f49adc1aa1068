// COMPARE AND WRITE (SBC-3 r36 §5.2; reliability.md V7.9) and the range lock that makes it
// atomic against every other command touching its blocks (range-lock.ts).
import t from 'tap';
import { LogicalUnit, ScsiCommand, ScsiStatus, ScsiTarget, ServiceResponse, TaskManagementFunction } from '../../scsi-emul';
import { FakeBlockStore, TEST_NEXUS, run, submit } from '../../scsi-emul/testing';
import { RangeLock } from '../../scsi-emul/range-lock';
import { be64, consumeUa, rw10, rw16, setup, toHex } from './helpers';

const CAW = (lba: bigint, n: number, byte1 = 0) => [0x89, byte1, ...be64(lba), 0, 0, 0, n, 0, 0];
const invalidCdb = (sks: string) => `70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ${sks}`;

function blocks(n: number, fill: number): Uint8Array {
  return new Uint8Array(n * 512).fill(fill);
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

t.test('compare equal → the write half is written; data-out is 2 × n blocks', (t) => {
  const { target } = setup();
  run(target, { cdb: rw10(0x2a, 10, 2), dataOut: blocks(2, 0x11) });
  const r = run(target, { cdb: CAW(10n, 2), dataOut: cat(blocks(2, 0x11), blocks(2, 0x22)) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 2048);
  t.same(run(target, { cdb: rw10(0x28, 10, 2), dataIn: 1024 }).data, blocks(2, 0x22));
  t.end();
});

t.test('miscompare → MISCOMPARE with the offset of the first differing byte; nothing written', (t) => {
  const { target, lu } = setup();
  run(target, { cdb: rw10(0x2a, 10, 2), dataOut: blocks(2, 0x11) });
  const verify = blocks(2, 0x11);
  verify[512 + 300] = 0; // offset 812 = 32Ch of the data-out buffer
  let r = run(target, { cdb: CAW(10n, 2), dataOut: cat(verify, blocks(2, 0x33)) });
  t.equal(toHex(r.sense), 'f0 00 0e 00 00 03 2c 0a 00 00 00 00 1d 00 00 00 00 00');
  t.same(run(target, { cdb: rw10(0x28, 10, 2), dataIn: 1024 }).data, blocks(2, 0x11), 'medium unchanged');
  lu.descriptorSense = true;
  r = run(target, { cdb: CAW(10n, 1), dataOut: cat(blocks(1, 0x10), blocks(1, 0)) });
  t.equal(toHex(r.sense), '72 0e 1d 00 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 00 00');
  t.end();
});

t.test('FUA / write-through: the write half is written with FUA', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  run(target, { cdb: CAW(0n, 1, 0x08), dataOut: blocks(2, 0) });
  t.same(store.ops.map((o) => `${o.kind}@${o.offset}+${o.len}${o.fua ? ' fua' : ''}`), ['read@0+512', 'write@0+512 fua']);
  t.end();
});

t.test('COMPARE AND WRITE rejections', (t) => {
  const { target } = setup();
  // NUMBER OF LOGICAL BLOCKS above MAXIMUM COMPARE AND WRITE LENGTH (255 for 512-byte blocks).
  t.equal(run(target, { cdb: CAW(0n, 255), dataOut: blocks(510, 0) }).status, ScsiStatus.GOOD, '255 blocks');
  t.equal(toHex(run(setup({ sizeBytes: 4 << 20 }).target, { cdb: CAW(0n, 255), dataOut: blocks(510, 0) }).sense), '', 'the maximum');
  const four = setup({ lu: { blockSize: 4096 } });
  t.equal(toHex(run(four.target, { cdb: CAW(0n, 65), dataOut: new Uint8Array(130 * 4096) }).sense), invalidCdb('c0 00 0d'),
    '4096-byte blocks: at most 64');
  // WRPROTECT ≠ 0: byte 1 bit 7; reserved byte 1 bit 2 and bytes 10-12 (usage data).
  t.equal(toHex(run(target, { cdb: CAW(0n, 1, 0x80), dataOut: blocks(2, 0) }).sense), invalidCdb('cf 00 01'));
  t.equal(toHex(run(target, { cdb: CAW(0n, 1, 0x04), dataOut: blocks(2, 0) }).sense), invalidCdb('ca 00 01'));
  const cdb = CAW(0n, 1);
  cdb[11] = 1;
  t.equal(toHex(run(target, { cdb, dataOut: blocks(2, 0) }).sense), invalidCdb('c8 00 0b'));
  // LBA OUT OF RANGE (2048 blocks).
  t.equal(toHex(run(target, { cdb: CAW(2047n, 2), dataOut: blocks(4, 0) }).sense),
    '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00');
  // Data-out shorter than 2 × n blocks: OVERRUN.
  t.equal(run(target, { cdb: CAW(0n, 2), dataOut: blocks(3, 0) }).serviceResponse, ServiceResponse.OVERRUN);
  // n = 0: nothing compared or written.
  t.equal(run(target, { cdb: CAW(0n, 0) }).status, ScsiStatus.GOOD);
  // Read-only LU: DATA PROTECT.
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: CAW(0n, 1), dataOut: blocks(2, 0) }).sense),
    '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00');
  t.end();
});

t.test('atomic: waits for writes in flight, holds off overlapping commands, not the others', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const target = new ScsiTarget();
  const lu = new LogicalUnit(store);
  target.addLogicalUnit(0, lu);
  store.manual = false;
  consumeUa(target, 0);
  store.manual = true;
  const ops = () => store.ops.filter((o) => o.kind !== 'flush').map((o) => `${o.kind}@${o.offset / 512}`);
  const w1 = submit(target, { cdb: rw10(0x2a, 0, 8), dataOut: blocks(8, 0x11), tag: 1n });
  const caw = submit(target, { cdb: CAW(4n, 1), dataOut: cat(blocks(1, 0x11), blocks(1, 0x44)), tag: 2n });
  t.same(ops(), ['write@0'], 'the compare waits for the write in flight (it might overlap)');
  const rd = submit(target, { cdb: rw10(0x28, 4, 1), dataIn: 512, tag: 3n });
  const far = submit(target, { cdb: rw10(0x2a, 100, 1), dataOut: blocks(1, 0x55), tag: 4n });
  t.same(ops(), ['write@0', 'write@100'], 'an overlapping READ waits; a disjoint WRITE goes ahead');
  t.same(lu.rangeLock.size, { fast: 1, held: 1, waiting: 2 });
  store.pending('write')[0].complete();
  t.equal(w1.status, ScsiStatus.GOOD);
  t.same(ops(), ['write@0', 'write@100', 'read@4'], 'the compare starts once the first write is done');
  store.pending('read')[0].complete();
  t.same(ops(), ['write@0', 'write@100', 'read@4', 'write@4'], 'equal: the write half goes out');
  store.pending('write')[1].complete();
  t.equal(caw.status, ScsiStatus.GOOD);
  t.equal(caw.completions, 1);
  t.same(ops(), ['write@0', 'write@100', 'read@4', 'write@4', 'read@4'], 'now the READ runs');
  store.pending('read')[0].complete();
  t.same(rd.data, blocks(1, 0x44), 'and sees all of the new data');
  store.pending('write')[0].complete();
  t.equal(far.status, ScsiStatus.GOOD);
  t.same(lu.rangeLock.size, { fast: 0, held: 0, waiting: 0 });
  // With no exclusive holder left, READ/WRITE are untracked again (the fast path).
  const again = submit(target, { cdb: rw10(0x28, 4, 1), dataIn: 512 });
  t.same(lu.rangeLock.size, { fast: 1, held: 0, waiting: 0 });
  store.pending('read')[0].complete();
  t.equal(again.status, ScsiStatus.GOOD);
  t.end();
});

t.test('two COMPARE AND WRITEs on the same block run one after the other', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  store.manual = true;
  // Both expect zeros; the first swaps in 0x01, so the second must miscompare.
  const a = submit(target, { cdb: CAW(7n, 1), dataOut: cat(blocks(1, 0), blocks(1, 1)), tag: 1n });
  const b = submit(target, { cdb: CAW(7n, 1), dataOut: cat(blocks(1, 0), blocks(1, 2)), tag: 2n });
  t.equal(store.pending().length, 1, 'only the first has I/O');
  store.pending()[0].complete();
  store.pending()[0].complete();
  t.equal(a.status, ScsiStatus.GOOD);
  t.equal(store.pending().length, 1, 'the second reads after the first wrote');
  store.pending()[0].complete();
  t.equal(toHex(b.sense), 'f0 00 0e 00 00 00 00 0a 00 00 00 00 1d 00 00 00 00 00');
  t.same(store.data!.subarray(7 * 512, 8 * 512), blocks(1, 1));
  t.end();
});

t.test('a command aborted while waiting for the lock completes without I/O', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  store.manual = true;
  const w = submit(target, { cdb: rw16(0x8a, 0n, 1), dataOut: blocks(1, 9), tag: 1n });
  const c = submit(target, { cdb: CAW(0n, 1), dataOut: blocks(2, 0), tag: 2n });
  let tmf = -1;
  target.taskManagement(TaskManagementFunction.ABORT_TASK, TEST_NEXUS, 0, 2n, (r) => { tmf = r; });
  t.equal(tmf, -1, 'the TMF waits for the aborted command');
  store.pending()[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  t.equal(c.serviceResponse, ServiceResponse.ABORTED);
  t.equal(tmf, 0);
  t.equal(store.ops.length, 1, 'the aborted COMPARE AND WRITE never touched the store');
  t.end();
});

t.test('RangeLock: FIFO among overlapping requests, shared holders never block each other', (t) => {
  const granted: number[] = [];
  const lock = new RangeLock((task) => granted.push(Number(task.cmd.tag)));
  const task = (tag: number) => {
    const c = new ScsiCommand();
    c.tag = BigInt(tag);
    return c._task;
  };
  const s1 = task(1);
  const s2 = task(2);
  t.equal(lock.acquire(s1, 0, 10, false), true, 'fast path');
  t.equal(lock.acquire(s2, 5, 15, false), true, 'shared with shared');
  const x3 = task(3);
  t.equal(lock.acquire(x3, 20, 30, true), false, 'exclusive waits for untracked holders, wherever they are');
  const s4 = task(4);
  t.equal(lock.acquire(s4, 25, 26, false), false, 'overlaps a waiting exclusive: queued behind it');
  const s5 = task(5);
  t.equal(lock.acquire(s5, 0, 1, false), true, 'disjoint: tracked, granted');
  const x6 = task(6);
  t.equal(lock.acquire(x6, 0, 1, true), false);
  lock.release(s1);
  t.same(granted, []);
  lock.release(s2);
  t.same(granted, [3], 'untracked holders gone: the first exclusive runs');
  lock.release(s5);
  t.same(granted, [3, 6]);
  lock.release(x3);
  t.same(granted, [3, 6, 4]);
  lock.release(x6);
  lock.release(s4);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});
