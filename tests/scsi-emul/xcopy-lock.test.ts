// EXTENDED COPY under the per-LU range lock (range-lock.ts): every store operation of a copy
// holds a shared range on the blocks of its chunk, so COMPARE AND WRITE (SBC-3 r36 §5.2), WRITE
// ATOMIC and FORMAT UNIT — exclusive holders — are atomic against copies, and copies wait for
// them. Manual FakeBlockStores let each test stop the world between store operations.
import t from 'tap';
import {
  LogicalUnit, ScsiStatus, ScsiTarget, ServiceResponse, TaskManagementFunction, TmfResponse,
} from '../../scsi-emul';
import { CommandResult, FakeBlockStore, TEST_NEXUS, run, submit } from '../../scsi-emul/testing';
import { storeError } from '../../scsi-emul/store';
import { be64, consumeUa, hex, toHex, hx } from './helpers';

const MIB4 = 4 << 20;
const B = 512;


interface Lus {
  target: ScsiTarget;
  stores: FakeBlockStore[];
  lus: LogicalUnit[];
}

function setup(n: number, StoreClass: typeof FakeBlockStore = FakeBlockStore): Lus {
  const target = new ScsiTarget();
  const stores: FakeBlockStore[] = [];
  const lus: LogicalUnit[] = [];
  for (let i = 0; i < n; i++) {
    const store = new StoreClass({ sizeBytes: MIB4, name: `lun${i}` });
    const lu = new LogicalUnit(store, { blockSize: B });
    target.addLogicalUnit(i, lu);
    stores.push(store);
    lus.push(lu);
  }
  // After every LU is added: adding one raises REPORTED LUNS DATA HAS CHANGED on the others.
  for (let i = 0; i < n; i++) consumeUa(target, i, TEST_NEXUS);
  for (const s of stores) s.manual = true;
  return { target, stores, lus };
}

/** The LU's NAA designator from VPD 83h (first designator, bytes 8-23), as sg_xcopy reads it. */
function naa(target: ScsiTarget, lun: number): string {
  const r = run(target, { lun, cdb: [0x12, 0x01, 0x83, 0x00, 0xff, 0x00], dataIn: 255 });
  return toHex(r.data.subarray(8, 24));
}

/** SPC-4 §6.4.5 identification CSCD descriptor (E4h): LU association, binary NAA, block device. */
function e4(designator: string): string {
  return `e4 00 00 00  01 03 00 10  ${designator}  00 00 00 00  00 00 02 00`;
}

/** SPC-4 §6.4.6.3 block device to block device segment descriptor (02h). */
function b2b(src: number, dst: number, blocks: number, srcLba: number, dstLba: number): string {
  return `02 00 00 18  ${hx(src, 2)} ${hx(dst, 2)}  00 00 ${hx(blocks, 2)}  ${hx(srcLba, 8)}  ${hx(dstLba, 8)}`;
}

/** SPC-4 §6.4.3 parameter list header: LIST IDENTIFIER, byte 1 (LIST ID USAGE in bits 4-3), lengths. */
function header(listId: number, byte1: number, cscdLength: number, segLength: number): string {
  return `${hx(listId, 1)} ${hx(byte1, 1)} ${hx(cscdLength, 2)} 00 00 00 00 ${hx(segLength, 4)} 00 00 00 00`;
}

/** EXTENDED COPY(LID1) from LUN `from` to LUN `to` (LIST ID USAGE 11b unless a list id is given). */
function xcopy(target: ScsiTarget, from: number, to: number, blocks: number, srcLba: number, dstLba: number,
  opts: { tag?: bigint; listId?: number } = {}): CommandResult {
  const usage = opts.listId === undefined ? 0x18 : 0x00;
  const param = hex(header(opts.listId ?? 0, usage, 64, 28) + e4(naa(target, from)) + e4(naa(target, to)) +
    b2b(0, 1, blocks, srcLba, dstLba));
  return submit(target, {
    lun: to, tag: opts.tag, cdb: [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(param.length), 0, 0], dataOut: param,
  });
}

/** Same LU, CSCD ID FFFFh for both sides. */
function xcopySelf(target: ScsiTarget, blocks: number, srcLba: number, dstLba: number): CommandResult {
  const param = hex(header(0, 0x18, 0, 28) + b2b(0xffff, 0xffff, blocks, srcLba, dstLba));
  return submit(target, { cdb: [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...be32(param.length), 0, 0], dataOut: param });
}

function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** SBC-3 r36 §5.2 COMPARE AND WRITE: n blocks at lba, verify data then write data. */
function caw(target: ScsiTarget, lun: number, lba: number, verify: Uint8Array, write: Uint8Array): CommandResult {
  const n = verify.length / B;
  const data = new Uint8Array(2 * n * B);
  data.set(verify, 0);
  data.set(write, n * B);
  return submit(target, { lun, cdb: [0x89, 0, ...be64(BigInt(lba)), 0, 0, 0, n, 0, 0], dataOut: data });
}

function fill(store: FakeBlockStore, lba: number, blocks: number, tag: (i: number) => number): void {
  for (let i = 0; i < blocks; i++) store.data!.fill(tag(i) & 0xff, (lba + i) * B, (lba + i + 1) * B);
}

function block(store: FakeBlockStore, lba: number): Uint8Array {
  return store.data!.slice(lba * B, (lba + 1) * B);
}

function ops(store: FakeBlockStore): string[] {
  return store.pending().map((o) => `${o.kind}@${o.offset / B}+${o.len / B}`);
}

/** Lets queued microtasks run (a granted copy continues from one). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Completes store operations in order, letting microtasks run, until `r` completes. */
async function drive(stores: FakeBlockStore[], r: CommandResult): Promise<void> {
  for (let i = 0; i < 10000 && r.completions === 0; i++) {
    const op = stores.flatMap((s) => s.pending())[0];
    if (op !== undefined) op.complete();
    else await settle();
  }
  if (r.completions === 0) throw new Error('command did not complete');
}

const FREE = { fast: 0, held: 0, waiting: 0 };

t.test('a COMPARE AND WRITE holding blocks of the destination: the copy writes after it', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  const c = caw(target, 1, 2, new Uint8Array(B), new Uint8Array(B).fill(0xcc));
  t.same(ops(stores[1]), ['read@2+1'], 'COMPARE AND WRITE holds block 2 and reads it');
  const x = xcopy(target, 0, 1, 8, 0, 0);
  t.same(ops(stores[0]), ['read@0+8'], 'the copy reads its source: no conflict there');
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['read@2+1'], 'the destination write waits');
  t.same(lus[1].rangeLock.size, { fast: 0, held: 1, waiting: 1 });
  stores[1].pending()[0].complete(); // compare: equal
  t.same(ops(stores[1]), ['write@2+1'], 'COMPARE AND WRITE writes; the copy still waits');
  stores[1].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  t.same(block(stores[1], 2), new Uint8Array(B).fill(0xcc), "COMPARE AND WRITE's result is on the medium");
  t.same(ops(stores[1]), [], 'the grant continues the copy from a microtask, not inside the lock');
  await settle();
  t.same(ops(stores[1]), ['write@0+8'], 'then the copy writes');
  stores[1].pending()[0].complete();
  t.equal(x.status, ScsiStatus.GOOD);
  t.same(block(stores[1], 2), new Uint8Array(B).fill(0x11), "then the copy's");
  t.same(lus[0].rangeLock.size, FREE);
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('a COMPARE AND WRITE holding blocks of the source: the copy reads after it', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, (i) => 0x20 + i);
  const c = caw(target, 0, 3, new Uint8Array(B).fill(0x23), new Uint8Array(B).fill(0xcc));
  const x = xcopy(target, 0, 1, 8, 0, 100);
  t.same(ops(stores[0]), ['read@3+1'], 'only the compare read: the copy waits for its source range');
  t.same(lus[0].rangeLock.size, { fast: 0, held: 1, waiting: 1 });
  stores[0].pending()[0].complete();
  stores[0].pending()[0].complete(); // the write half
  t.equal(c.status, ScsiStatus.GOOD);
  await drive(stores, x);
  t.equal(x.status, ScsiStatus.GOOD);
  t.same(block(stores[1], 103), new Uint8Array(B).fill(0xcc), "the copy carried COMPARE AND WRITE's result");
  t.same(block(stores[1], 104), new Uint8Array(B).fill(0x24));
  t.same(lus[0].rangeLock.size, FREE);
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('a copy write in flight makes an overlapping COMPARE AND WRITE wait, not a disjoint one', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  const x = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['write@0+8'], 'the copy writes blocks 0-7');
  const over = caw(target, 1, 4, new Uint8Array(B).fill(0x11), new Uint8Array(B).fill(0xdd));
  t.same(ops(stores[1]), ['write@0+8'], 'COMPARE AND WRITE of block 4 waits: no read yet');
  const apart = caw(target, 1, 100, new Uint8Array(B), new Uint8Array(B).fill(0xee));
  t.same(ops(stores[1]), ['write@0+8', 'read@100+1'],
    'COMPARE AND WRITE of block 100 runs at once: the copy chunk is tracked with its range');
  t.same(lus[1].rangeLock.size, { fast: 0, held: 2, waiting: 1 });
  stores[1].pending()[0].complete();
  t.equal(x.status, ScsiStatus.GOOD);
  t.same(ops(stores[1]), ['read@100+1', 'read@4+1'], 'the copy is done: block 4 is compared');
  stores[1].pending()[1].complete();
  stores[1].pending()[1].complete();
  t.equal(over.status, ScsiStatus.GOOD, "it compared equal with the copy's data");
  t.same(block(stores[1], 4), new Uint8Array(B).fill(0xdd));
  stores[1].pending()[0].complete();
  stores[1].pending()[0].complete();
  t.equal(apart.status, ScsiStatus.GOOD);
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('a copy disjoint from a held COMPARE AND WRITE range does not wait', (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  const c = caw(target, 1, 100, new Uint8Array(B), new Uint8Array(B).fill(0xcc));
  const x = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['read@100+1', 'write@0+8'], 'read and write issued with the exclusive range held');
  t.same(lus[1].rangeLock.size, { fast: 0, held: 2, waiting: 0 });
  stores[1].pending()[1].complete();
  t.equal(x.status, ScsiStatus.GOOD);
  stores[1].pending()[0].complete();
  stores[1].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('overlapping copy within one LU (memmove backward) that waits midway is still exact', async (t) => {
  const { target, stores, lus } = setup(1);
  fill(stores[0], 0, 3100, (i) => i % 251);
  // Going backward, the first chunk reads source blocks 952-2999 and writes destination blocks
  // 1052-3099, which include block 3050.
  const c = caw(target, 0, 3050, new Uint8Array(B).fill(3050 % 251), new Uint8Array(B).fill(0xcc));
  const x = xcopySelf(target, 3000, 0, 100);
  t.same(ops(stores[0]), ['read@3050+1', 'read@952+2048'], 'backward: the last source chunk first');
  stores[0].pending()[1].complete();
  t.same(ops(stores[0]), ['read@3050+1'], 'its destination write overlaps block 3050: it waits');
  stores[0].pending()[0].complete();
  stores[0].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  await drive(stores, x);
  t.equal(x.status, ScsiStatus.GOOD);
  let ok = true;
  for (let i = 0; i < 3000; i++) if (stores[0].data![(100 + i) * B + 7] !== i % 251) ok = false;
  t.ok(ok, 'destination = the original source, block for block');
  t.same(lus[0].rangeLock.size, FREE);
  t.end();
});

t.test('FORMAT UNIT and EXTENDED COPY exclude each other', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  // FORMAT UNIT without FMTDATA: exclusive over the whole LU; this store cannot deallocate, so
  // it is a flush.
  const f = submit(target, { lun: 1, cdb: [0x04, 0, 0, 0, 0, 0] });
  t.same(ops(stores[1]), ['flush@0+0']);
  const x = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['flush@0+0'], 'the copy waits for the format');
  stores[1].pending()[0].complete();
  t.equal(f.status, ScsiStatus.GOOD);
  await drive(stores, x);
  t.equal(x.status, ScsiStatus.GOOD);

  const x2 = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['write@0+8']);
  const f2 = submit(target, { lun: 1, cdb: [0x04, 0, 0, 0, 0, 0] });
  t.same(ops(stores[1]), ['write@0+8'], 'the format waits for the copy write');
  stores[1].pending()[0].complete();
  t.equal(x2.status, ScsiStatus.GOOD);
  t.same(ops(stores[1]), ['flush@0+0']);
  stores[1].pending()[0].complete();
  t.equal(f2.status, ScsiStatus.GOOD);
  t.same(lus[0].rangeLock.size, FREE);
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('WRITE ATOMIC holding the destination: the copy waits', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  // SBC-4 WRITE ATOMIC(16) 9Ch: LBA 6, ATOMIC BOUNDARY 0, TRANSFER LENGTH 1.
  const w = submit(target, {
    lun: 1, cdb: [0x9c, 0, ...be64(6n), 0, 0, 0, 1, 0, 0], dataOut: new Uint8Array(B).fill(0xaa),
  });
  const x = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete();
  t.same(ops(stores[1]), ['write@6+1'], 'only the atomic write');
  stores[1].pending()[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  await drive(stores, x);
  t.equal(x.status, ScsiStatus.GOOD);
  t.same(block(stores[1], 6), new Uint8Array(B).fill(0x11), 'the copy wrote after the atomic write');
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('ABORT TASK of a copy waiting for a range: TASK ABORTED once granted, every range released', async (t) => {
  const { target, stores, lus } = setup(2);
  const c = caw(target, 1, 2, new Uint8Array(B), new Uint8Array(B).fill(0xcc));
  const x = xcopy(target, 0, 1, 8, 0, 0, { tag: 7n, listId: 4 });
  stores[0].pending()[0].complete();
  t.same(lus[1].rangeLock.size, { fast: 0, held: 1, waiting: 1 }, 'the copy waits for block 2');
  let tmf: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.ABORT_TASK, TEST_NEXUS, 1, 7n, (r) => { tmf = r; });
  t.equal(tmf, null, 'the TMF waits for the copy to stop');
  t.equal(x.completions, 0);
  stores[1].pending()[0].complete();
  stores[1].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  await settle();
  t.equal(x.completions, 1);
  t.equal(x.serviceResponse, ServiceResponse.ABORTED, 'TASK ABORTED');
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  t.same(stores[1].ops.filter((o) => o.kind === 'write').map((o) => o.offset / B), [2], 'the copy wrote nothing');
  t.same(lus[0].rangeLock.size, FREE);
  t.same(lus[1].rangeLock.size, FREE);
  const s = run(target, { lun: 1, cdb: [0x84, 0x00, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0], dataIn: 12 });
  t.equal(toHex(s.data), '00 00 00 08 02 00 00 00 00 00 00 00', 'held as completed with errors, nothing written');
  t.end();
});

t.test('ABORT TASK of a copy waiting for its source range', async (t) => {
  const { target, stores, lus } = setup(2);
  const c = caw(target, 0, 0, new Uint8Array(B), new Uint8Array(B));
  const x = xcopy(target, 0, 1, 8, 0, 0, { tag: 9n });
  let tmf: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.ABORT_TASK, TEST_NEXUS, 1, 9n, (r) => { tmf = r; });
  stores[0].pending()[0].complete();
  stores[0].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  await settle();
  t.equal(x.serviceResponse, ServiceResponse.ABORTED);
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  t.equal(stores[0].ops.filter((o) => o.kind === 'read').length, 1, 'the copy read nothing');
  t.same(lus[0].rangeLock.size, FREE);
  t.end();
});

t.test('store errors and a throwing store release the chunk range', async (t) => {
  const { target, stores, lus } = setup(2);
  const x = xcopy(target, 0, 1, 8, 0, 0);
  stores[0].pending()[0].complete(storeError('EIO', 'injected'));
  t.equal(x.status, ScsiStatus.CHECK_CONDITION);
  t.equal(toHex(x.sense.subarray(0, 3)), '70 00 0a', 'COPY ABORTED');
  t.same(lus[0].rangeLock.size, FREE, 'released after the failed read');

  class ThrowingStore extends FakeBlockStore {
    override write(): void {
      throw new Error('store bug');
    }
  }
  const s = setup(2, ThrowingStore);
  const y = xcopy(s.target, 0, 1, 8, 0, 0);
  s.stores[0].pending()[0].complete();
  t.equal(y.status, ScsiStatus.CHECK_CONDITION);
  // COPY ABORTED; forwarded from the destination (CSI byte 1 = 18): HARDWARE ERROR, INTERNAL TARGET FAILURE.
  t.equal(toHex(y.sense.subarray(0, 3)), '70 00 0a');
  t.equal(toHex(y.sense.subarray(9, 10)), '12');
  t.equal(toHex(y.sense.subarray(18, 34)), '02 70 00 04 00 00 00 00 0a 00 00 00 00 44 00 00');
  t.same(s.lus[1].rangeLock.size, FREE, 'released after the store threw');
  caw(s.target, 1, 0, new Uint8Array(B), new Uint8Array(B));
  t.same(ops(s.stores[1]), ['read@0+1'], 'a COMPARE AND WRITE of those blocks is not held up by a leaked range');
  t.end();
});

t.test('four copies waiting on one exclusive range are all granted together (shared)', async (t) => {
  const { target, stores, lus } = setup(2);
  fill(stores[0], 0, 8, () => 0x11);
  const c = caw(target, 1, 0, new Uint8Array(B), new Uint8Array(B).fill(0xcc));
  const xs = [0, 1, 2, 3].map(() => xcopy(target, 0, 1, 8, 0, 0));
  for (const op of stores[0].pending()) op.complete();
  t.same(lus[1].rangeLock.size, { fast: 0, held: 1, waiting: 4 });
  stores[1].pending()[0].complete();
  stores[1].pending()[0].complete();
  t.equal(c.status, ScsiStatus.GOOD);
  await settle();
  t.same(ops(stores[1]), ['write@0+8', 'write@0+8', 'write@0+8', 'write@0+8'], 'shared: all four granted');
  for (const op of stores[1].pending()) op.complete();
  t.ok(xs.every((x) => x.status === ScsiStatus.GOOD));
  t.same(lus[1].rangeLock.size, FREE);
  t.end();
});

t.test('a LU removed while a copy of another LU reads it stays open until the copy is over', async (t) => {
  const { target, stores } = setup(2);
  // 3 MiB from LUN 0 to LUN 1, received by LUN 1: three 1 MiB chunks, LUN 0 only as copy source.
  const copy = xcopy(target, 0, 1, 6144, 0, 0);
  t.equal(stores[0].pending('read').length, 1, 'first source chunk in flight');
  let removed: Error | null | undefined;
  target.removeLogicalUnit(0, (err) => { removed = err; });
  stores[0].pending()[0].complete();
  stores[1].pending()[0].complete(); // first destination chunk
  t.equal(removed, undefined, 'removal waits for the copy');
  t.notOk(stores[0].closed, 'the source store is not closed under the copy');
  for (let i = 0; i < 2; i++) {
    stores[0].pending()[0].complete();
    stores[1].pending()[0].complete();
  }
  t.equal(copy.completions, 1, 'the copy completes');
  t.equal(copy.status, ScsiStatus.GOOD);
  // Then the removal flushes and closes LUN 0.
  t.same(stores[0].pending().map((op) => op.kind), ['flush'], 'removal flushes LUN 0 once the copy is over');
  stores[0].pending()[0].complete();
  t.ok(stores[0].closed, 'then closes it');
  for (const op of stores[0].pending()) op.complete(); // the close
  t.equal(removed, null, 'removal done after the copy');
  t.equal(stores[0].pending().length, 0);
});
