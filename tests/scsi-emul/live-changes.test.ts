// Live changes at the target: growing a LU (CAPACITY DATA HAS CHANGED 2A/09) and removing one
// while commands are in flight (REPORTED LUNS DATA HAS CHANGED 3F/0E, SPC-4 r37 §6.33), and the
// stores' resize() (RAM: bookkeeping; file: a sparse ftruncate, never a shrink).
import t from 'tap';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LogicalUnit, ScsiStatus, ScsiTarget, createRamStore, openFileStore } from '../../scsi-emul';
import { FakeBlockStore, TEST_NEXUS, run, submit } from '../../scsi-emul/testing';
import { consumeUa, rw10, toHex } from './helpers';

const TUR = [0x00, 0, 0, 0, 0, 0];
const READ_CAPACITY_10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const UA = (asc: string, ascq: string): string => `70 00 06 00 00 00 00 0a 00 00 00 00 ${asc} ${ascq} 00 00 00 00`;
const OTHER = Object.freeze({ initiatorPort: 'other-initiator', targetPortId: 1 });

const dir = mkdtempSync(join(tmpdir(), 'vst-live-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function resize(target: ScsiTarget, lun: number, size: number): { err: Error | null; changed: boolean } {
  let out: { err: Error | null; changed: boolean } | undefined;
  target.resizeLogicalUnit(lun, size, (err, changed) => (out = { err, changed }));
  if (out === undefined) throw new Error('resize did not complete synchronously');
  return out;
}

t.test('growing a RAM LU: new capacity, 2A/09 for every known nexus, LBAs beyond the old end usable', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  consumeUa(target, 0);
  consumeUa(target, 0, OTHER);
  // READ CAPACITY(10) (SBC-3 r36 §5.16): RETURNED LOGICAL BLOCK ADDRESS 2047, BLOCK LENGTH 512.
  t.equal(toHex(run(target, { cdb: READ_CAPACITY_10, dataIn: 8 }).data), '00 00 07 ff 00 00 02 00');
  t.equal(run(target, { cdb: rw10(0x28, 2048, 1), dataIn: 512 }).status, ScsiStatus.CHECK_CONDITION, 'LBA 2048 out of range before');

  const r = resize(target, 0, 2 << 20);
  t.same(r, { err: null, changed: true });
  for (const nexus of [TEST_NEXUS, OTHER]) {
    const tur = run(target, { cdb: TUR, nexus });
    t.equal(tur.status, ScsiStatus.CHECK_CONDITION);
    t.equal(toHex(tur.sense), UA('2a', '09'), `${nexus.initiatorPort}: CAPACITY DATA HAS CHANGED`);
    t.equal(run(target, { cdb: TUR, nexus }).status, ScsiStatus.GOOD, 'reported once');
  }
  t.equal(toHex(run(target, { cdb: READ_CAPACITY_10, dataIn: 8 }).data), '00 00 0f ff 00 00 02 00', 'last LBA 4095');
  t.equal(run(target, { cdb: rw10(0x2a, 4095, 1), dataOut: new Uint8Array(512).fill(7) }).status, ScsiStatus.GOOD);
  t.equal(run(target, { cdb: rw10(0x28, 4095, 1), dataIn: 512 }).data[511], 7, 'the new last block holds data');
  t.end();
});

t.test('resize refusals raise no unit attention', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { blockSize: 4096 }));
  target.addLogicalUnit(1, new LogicalUnit(new FakeBlockStore({ sizeBytes: 1 << 20 })));
  consumeUa(target, 0);
  consumeUa(target, 1);
  t.same(resize(target, 0, 1 << 20), { err: null, changed: false }, 'same size: nothing to do');
  const shrink = resize(target, 0, 512 << 10);
  t.equal((shrink.err as NodeJS.ErrnoException).code, 'EINVAL');
  t.match(shrink.err!.message, /cannot shrink/);
  t.match(resize(target, 0, (1 << 20) + 512).err!.message, /not a positive multiple of the 4096-byte block size/);
  t.match(resize(target, 1, 2 << 20).err!.message, /cannot be resized/, 'a store without resize()');
  t.match(resize(target, 7, 2 << 20).err!.message, /no LUN 7/);
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD, 'no UA on LUN 0');
  t.equal(toHex(run(target, { cdb: READ_CAPACITY_10, dataIn: 8 }).data), '00 00 00 ff 00 00 10 00', 'capacity unchanged');
  t.end();
});

t.test('removing a LU: gone at once, 3F/0E on the others, in-flight commands drain, then flush and close', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true, name: 'lun1' });
  target.addLogicalUnit(1, new LogicalUnit(store));
  consumeUa(target, 0);
  consumeUa(target, 1);
  const inflight = submit(target, { lun: 1, cdb: rw10(0x28, 0, 8), dataIn: 4096 });
  t.equal(store.pending('read').length, 1, 'a READ is in the store');

  let doneErr: Error | null | undefined;
  target.removeLogicalUnit(1, (err) => (doneErr = err));
  t.equal(doneErr, undefined, 'waits for the in-flight READ');
  t.equal(target.getLogicalUnit(1), undefined);

  // New commands to LUN 1 meet the null LU: LOGICAL UNIT NOT SUPPORTED 05/25/00 (SPC-4 §6.6.2 note).
  const gone = run(target, { lun: 1, cdb: TUR });
  t.equal(gone.status, ScsiStatus.CHECK_CONDITION);
  t.equal(toHex(gone.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00');
  // LUN 0 reports the inventory change, and REPORT LUNS lists LUN 0 only (16 bytes).
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA('3f', '0e'));
  t.equal(toHex(run(target, { cdb: REPORT_LUNS, dataIn: 256 }).data), '00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00');

  store.pending('read')[0].complete();
  t.equal(inflight.completions, 1);
  t.equal(inflight.status, ScsiStatus.GOOD, 'the in-flight READ completes normally');
  t.equal(doneErr, undefined, 'now flushing');
  t.equal(store.pending('flush').length, 1, 'the cache is flushed before close');
  store.pending('flush')[0].complete();
  t.equal(store.pending('close').length, 1);
  t.notOk(doneErr !== undefined);
  store.pending('close')[0].complete();
  t.equal(doneErr, null, 'done after close');
  t.throws(() => target.removeLogicalUnit(1, () => {}), /no LUN 1/);
  t.end();
});

t.test('removing an idle LU reports the flush error; a new LU may reuse the number', (t) => {
  const target = new ScsiTarget();
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  target.addLogicalUnit(3, new LogicalUnit(store));
  consumeUa(target, 3);
  const eio = Object.assign(new Error('EIO'), { code: 'EIO' });
  store.failNext.flush = eio;
  let doneErr: Error | null | undefined;
  target.removeLogicalUnit(3, (err) => (doneErr = err));
  t.equal(doneErr, eio, 'flush error passed on');
  t.ok(store.closed, 'closed anyway');
  target.addLogicalUnit(3, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  t.equal(toHex(run(target, { lun: 3, cdb: TUR }).sense), UA('29', '01'), 'a new LU: POWER ON OCCURRED for the known nexus');
  t.end();
});

t.test('file store resize: sparse ftruncate growth, exact external growth accepted, no shrink', async (t) => {
  const path = join(dir, 'grow.img');
  const store = openFileStore({ path, sizeBytes: 1 << 20 });
  t.teardown(() => new Promise<void>((r) => store.close(() => r())));
  const grow = (n: number): Promise<Error | null> => new Promise((r) => store.resize(n, r));
  const before = statSync(path).blocks;
  t.equal(await grow(4 << 20), null);
  t.equal(store.sizeBytes, 4 << 20);
  t.equal(statSync(path).size, 4 << 20, 'the image is 4 MiB');
  t.equal(statSync(path).blocks, before, 'no space allocated: the extension is a hole');
  // The last block is readable (zeros).
  const buf = new Uint8Array(512).fill(1);
  t.equal(await new Promise((r) => store.read((4 << 20) - 512, [buf], 512, r)), null);
  t.same(buf, new Uint8Array(512));

  truncateSync(path, 6 << 20); // an operator grew the image
  t.equal(await grow(6 << 20), null, 'exact external growth is taken as it is');
  t.equal(store.sizeBytes, 6 << 20);
  truncateSync(path, 9 << 20);
  const bigger = await grow(8 << 20);
  t.match(bigger!.message, /holds 9437184 bytes, cannot become 8388608 \(the configured size must equal the image size\)/);
  t.equal(store.sizeBytes, 6 << 20, 'unchanged after a refusal');
  const shrink = await grow(2 << 20);
  t.match(shrink!.message, /cannot shrink/);
  t.match((await grow(1000))!.message, /multiple of 512/);
});

t.test('read-only file store cannot be extended', async (t) => {
  const path = join(dir, 'ro.img');
  const fd = openSync(path, 'w');
  writeSync(fd, new Uint8Array(1 << 20));
  closeSync(fd);
  const store = openFileStore({ path, readOnly: true });
  t.teardown(() => new Promise<void>((r) => store.close(() => r())));
  const err = await new Promise<Error | null>((r) => store.resize(2 << 20, r));
  t.match(err!.message, /the store is read-only/);
  t.equal(statSync(path).size, 1 << 20);
});

t.test('RAM store resize: grows, never shrinks, not after close', (t) => {
  const store = createRamStore({ sizeBytes: 1 << 20 });
  const out: (Error | null)[] = [];
  store.resize!(3 << 20, (e) => out.push(e));
  t.equal(out[0], null);
  t.equal(store.sizeBytes, 3 << 20);
  store.resize!(1 << 20, (e) => out.push(e));
  t.match(out[1]!.message, /cannot shrink/);
  store.close(() => {});
  store.resize!(4 << 20, (e) => out.push(e));
  t.equal((out[2] as NodeJS.ErrnoException).code, 'EBADF');
  t.end();
});
