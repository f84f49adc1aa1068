// Write caching, FUA and SYNCHRONIZE CACHE durability semantics (reliability.md §4.6),
// observed at the I/O engine with a recording fake.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LogicalUnit, ScsiStatus, ScsiTarget, openFileStore } from '../../scsi-emul';
import { storeError } from '../../scsi-emul/store';
import { FakeBlockStore, RecordingIoEngine, run, submit } from '../../scsi-emul/testing';
import { consumeUa, rw10, rw16, toHex } from './helpers';

const SYNC10 = [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scsi-emul-sync-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

function fileSetup(writeCache = true) {
  const engine = new RecordingIoEngine({ manual: true });
  const store = openFileStore({ path: path.join(dir, `img${n++}`), sizeBytes: 1 << 20, engine });
  const target = new ScsiTarget();
  const lu = new LogicalUnit(store, { writeCache });
  target.addLogicalUnit(0, lu);
  consumeUa(target, 0);
  return { engine, store, target, lu };
}

t.test('write-back: plain writes, FUA writes with dsync, SYNCHRONIZE CACHE = fdatasync', (t) => {
  const { engine, target } = fileSetup();
  const a = submit(target, { cdb: rw10(0x2a, 0, 8), dataOut: new Uint8Array(4096) });
  const b = submit(target, { cdb: rw10(0x2a, 8, 8, 0x08), dataOut: new Uint8Array(4096) });
  t.same(engine.events, ['pwritev@0', 'pwritev@4096+dsync'], 'plain write, then FUA write with dsync');
  t.equal(a.completions + b.completions, 0, 'no completion before the engine returns');
  engine.calls[0].complete();
  t.equal(a.completions, 1);
  t.equal(a.status, ScsiStatus.GOOD, 'GOOD once pwritev returned all bytes');

  // SYNCHRONIZE CACHE after A completed (B still in flight): the flush is issued after A's
  // completion, so it covers A; it completes only when fdatasync returns.
  const s = submit(target, { cdb: SYNC10 });
  t.same(engine.events, ['pwritev@0', 'pwritev@4096+dsync', 'done pwritev@0', 'fdatasync']);
  t.equal(s.completions, 0, 'SYNCHRONIZE CACHE waits for fdatasync');
  engine.calls[2].complete();
  t.equal(s.completions, 1);
  t.equal(s.status, ScsiStatus.GOOD);
  engine.calls[1].complete();
  t.equal(b.status, ScsiStatus.GOOD);
  t.end();
});

t.test('SYNCHRONIZE CACHE(16), range checks, IMMED ignored', (t) => {
  const { engine, target } = fileSetup();
  const s = submit(target, { cdb: [0x91, 0x02, ...Array(8).fill(0), 0, 0, 0, 0, 0, 0] });
  t.same(engine.pending().map((c) => c.kind), ['fdatasync'], 'IMMED=1 still flushes before status');
  t.equal(s.completions, 0);
  engine.pending()[0].complete();
  t.equal(s.status, ScsiStatus.GOOD);
  // 1 MiB = 2048 blocks. NUMBER OF LOGICAL BLOCKS 0 = "to the end of the medium".
  let r = run(target, { cdb: [0x35, 0, 0, 0, 0x08, 0x01, 0, 0, 0, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00', 'LBA 2049, 0 blocks');
  r = run(target, { cdb: [0x35, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00', 'LBA 2047, 2 blocks');
  r = run(target, { cdb: [0x91, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00', 'LBA 2^64-1');
  const full = submit(target, { cdb: [0x35, 0, 0, 0, 0x07, 0xff, 0, 0, 1, 0] });
  t.same(engine.pending().map((c) => c.kind), ['fdatasync'], 'last block, 1 block: valid');
  engine.pending()[0].complete();
  t.equal(full.status, ScsiStatus.GOOD);
  t.end();
});

t.test('write-through (WCE=0): every write carries dsync; SYNCHRONIZE CACHE has nothing to do', (t) => {
  const { engine, target } = fileSetup(false);
  const w = submit(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.same(engine.events, ['pwritev@0+dsync']);
  engine.calls[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  const s = run(target, { cdb: SYNC10 });
  t.equal(s.status, ScsiStatus.GOOD);
  t.equal(engine.calls.length, 1, 'no fdatasync: acknowledged writes are already durable');
  t.end();
});

t.test('fdatasync EIO: WRITE ERROR, then the LU refuses writes and flushes (fsyncgate)', (t) => {
  const { engine, target, lu } = fileSetup();
  const s = submit(target, { cdb: SYNC10 });
  const eio = storeError('EIO', 'writeback error');
  engine.calls[0].complete(eio);
  t.equal(toHex(s.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00');
  t.equal(lu.failed, eio);
  const calls = engine.calls.length;
  const s2 = run(target, { cdb: SYNC10 });
  t.equal(toHex(s2.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00', 'never GOOD for a later flush');
  const w = run(target, { cdb: rw16(0x8a, 0n, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(w.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00');
  t.equal(engine.calls.length, calls, 'nothing reaches the file');
  const r = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(engine.pending()[0].kind, 'preadv', 'reads are still served');
  engine.pending()[0].complete();
  t.equal(r.status, ScsiStatus.GOOD);
  t.end();
});

t.test('START STOP UNIT (SBC-3 §5.25)', (t) => {
  const { engine, target } = fileSetup();
  let r = run(target, { cdb: [0x1b, 0, 0, 0, 0x01, 0] });
  t.equal(r.status, ScsiStatus.GOOD, 'START=1');
  t.equal(engine.calls.length, 0);
  const stop = submit(target, { cdb: [0x1b, 0x01, 0, 0, 0x00, 0] });
  t.same(engine.events, ['fdatasync'], 'START=0, NO_FLUSH=0: cached data is flushed before stopping');
  t.equal(stop.completions, 0);
  engine.calls[0].complete();
  t.equal(stop.status, ScsiStatus.GOOD);
  r = run(target, { cdb: [0x1b, 0, 0, 0, 0x04, 0] });
  t.equal(r.status, ScsiStatus.GOOD, 'NO_FLUSH=1');
  t.equal(engine.calls.length, 1);
  r = run(target, { cdb: [0x1b, 0, 0, 0, 0x02, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 04', 'LOEJ: byte 4 bit 1 (not removable)');
  r = run(target, { cdb: [0x1b, 0, 0, 0, 0x03, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 04', 'LOEJ with START');
  r = run(target, { cdb: [0x1b, 0, 0, 0, 0x21, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 04', 'POWER CONDITION 2h (IDLE): byte 4 bit 7');
  r = run(target, { cdb: [0x1b, 0, 0, 0x01, 0x01, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cb 00 03', 'POWER CONDITION MODIFIER: byte 3 bit 3');
  r = run(target, { cdb: [0x1b, 0, 0, 0, 0x09, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cb 00 04', 'reserved byte 4 bit 3');
  t.end();
});

t.test('drain waits for in-flight commands, then flushes every LU', (t) => {
  const target = new ScsiTarget();
  const s0 = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const s1 = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const ro = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true, readOnly: true });
  target.addLogicalUnit(0, new LogicalUnit(s0));
  target.addLogicalUnit(1, new LogicalUnit(s1));
  target.addLogicalUnit(2, new LogicalUnit(ro));
  consumeUa(target, 0);
  const w = submit(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  const results: (Error | null)[] = [];
  target.drain((err) => results.push(err));
  t.same(s0.pending().map((o) => o.kind), ['write'], 'no flush while a write is in flight');
  s0.pending()[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  t.same(s0.pending().map((o) => o.kind), ['flush']);
  s0.pending()[0].complete();
  t.same(s1.pending().map((o) => o.kind), ['flush'], 'LUs are flushed in turn');
  s1.pending()[0].complete();
  t.same(ro.pending(), [], 'a read-only LU needs no flush');
  t.same(results, [null]);
  t.end();
});

t.test('close: refuses new commands, drains, closes every store', (t) => {
  const target = new ScsiTarget();
  const s0 = new FakeBlockStore({ sizeBytes: 1 << 20 });
  target.addLogicalUnit(0, new LogicalUnit(s0));
  let closed: Error | null | undefined;
  target.close((err) => (closed = err));
  t.equal(closed, null);
  t.ok(s0.closed);
  const r = run(target, { cdb: [0, 0, 0, 0, 0, 0] });
  t.equal(r.serviceResponse, 4 /* FAILURE */);
  let again: Error | null | undefined;
  target.close((err) => (again = err));
  t.equal(again, null, 'closing twice is harmless');
  t.end();
});
