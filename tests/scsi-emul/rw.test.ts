import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget, ServiceResponse } from '../../scsi-emul';
import { storeError } from '../../scsi-emul/store';
import { FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { be32, consumeUa, rw10, rw16, setup, toHex } from './helpers';

const LBA_OUT_OF_RANGE = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function fakeSetup(opts: { blocks?: number; blockSize?: 512 | 4096; manual?: boolean; readOnly?: boolean;
  writeCache?: boolean; maxTransferBytes?: number; backing?: boolean } = {}) {
  const bs = opts.blockSize ?? 512;
  const store = new FakeBlockStore({ sizeBytes: (opts.blocks ?? 2048) * bs, manual: opts.manual, backing: opts.backing });
  const target = new ScsiTarget({ maxTransferBytes: opts.maxTransferBytes });
  const lu = new LogicalUnit(store, { blockSize: bs, readOnly: opts.readOnly, writeCache: opts.writeCache });
  target.addLogicalUnit(0, lu);
  consumeUa(target, 0);
  return { target, store, lu };
}

t.test('WRITE(10) then READ(10) round trip through the RAM store', (t) => {
  const { target } = setup();
  const data = pattern(4096, 3);
  const w = run(target, { cdb: rw10(0x2a, 100, 8), dataOut: data });
  t.equal(w.status, ScsiStatus.GOOD);
  t.equal(w.cmd.dataOutTransferred, 4096);
  const r = run(target, { cdb: rw10(0x28, 100, 8), dataIn: 4096 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(r.data, data);
  const z = run(target, { cdb: rw10(0x28, 99, 1), dataIn: 512 });
  t.same(z.data, new Uint8Array(512), 'never written blocks read as zero');
  t.end();
});

t.test('all READ/WRITE variants address the same blocks', (t) => {
  const { target } = setup();
  const data = pattern(1024, 9);
  t.equal(run(target, { cdb: [0x0a, 0x00, 0x00, 0x20, 0x02, 0x00], dataOut: data }).status, ScsiStatus.GOOD, 'WRITE(6)');
  t.same(run(target, { cdb: [0x08, 0x00, 0x00, 0x20, 0x02, 0x00], dataIn: 1024 }).data, data, 'READ(6)');
  t.same(run(target, { cdb: rw10(0x28, 0x20, 2), dataIn: 1024 }).data, data, 'READ(10)');
  t.same(run(target, { cdb: [0xa8, 0, 0, 0, 0, 0x20, 0, 0, 0, 2, 0, 0], dataIn: 1024 }).data, data, 'READ(12)');
  t.same(run(target, { cdb: rw16(0x88, 0x20n, 2), dataIn: 1024 }).data, data, 'READ(16)');
  const d2 = pattern(512, 1);
  t.equal(run(target, { cdb: [0xaa, 0, 0, 0, 0, 0x21, 0, 0, 0, 1, 0, 0], dataOut: d2 }).status, ScsiStatus.GOOD, 'WRITE(12)');
  t.equal(run(target, { cdb: rw16(0x8a, 0x22n, 1), dataOut: d2 }).status, ScsiStatus.GOOD, 'WRITE(16)');
  t.same(run(target, { cdb: rw10(0x28, 0x21, 2), dataIn: 1024 }).data, new Uint8Array([...d2, ...d2]));
  t.end();
});

t.test('READ(6)/WRITE(6): 21-bit LBA, length 0 means 256 blocks (SBC-3 §5.9)', (t) => {
  const { target, store } = fakeSetup({ blocks: 0x200000 + 256, backing: false });
  const r = run(target, { cdb: [0x08, 0x1f, 0xff, 0xff, 0x01, 0x00], dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(store.ops.at(-1)!.offset, 0x1fffff * 512, 'LBA 1FFFFFh');
  const r256 = run(target, { cdb: [0x08, 0x00, 0x00, 0x00, 0x00, 0x00], dataIn: 256 * 512 });
  t.equal(r256.cmd.dataInTransferred, 256 * 512);
  t.equal(store.ops.at(-1)!.len, 256 * 512);
  const w = run(target, { cdb: [0x0a, 0x00, 0x00, 0x00, 0x00, 0x00], dataOut: new Uint8Array(255 * 512) });
  t.equal(w.serviceResponse, ServiceResponse.OVERRUN, 'WRITE(6) 0 wants 256 blocks of data');
  t.end();
});

t.test('TRANSFER LENGTH 0 in (10)/(12)/(16): GOOD, no transfer, no store I/O', (t) => {
  const { target, store } = fakeSetup();
  const before = store.ops.length;
  for (const cdb of [rw10(0x28, 5, 0), rw10(0x2a, 5, 0), rw16(0x88, 5n, 0), rw16(0x8a, 5n, 0),
    [0xa8, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0]]) {
    const r = run(target, { cdb });
    t.equal(r.status, ScsiStatus.GOOD, toHex(cdb.slice(0, 1)));
    t.equal(r.cmd.dataInTransferred, 0);
  }
  t.equal(store.ops.length, before);
  t.end();
});

t.test('LBA range checks cannot overflow (V7.3)', (t) => {
  const { target, store } = fakeSetup({ blocks: 2048 });
  const cases: [bigint, number, boolean, string][] = [
    [2047n, 1, true, 'last block'],
    [0n, 2048, true, 'whole medium'],
    [2047n, 2, false, 'one past the end'],
    [2048n, 1, false, 'LBA = capacity'],
    [2048n, 0, true, 'LBA = capacity, length 0 (nothing past the end)'],
    [2049n, 0, false, 'LBA past capacity, length 0'],
    [0xffffffffffffffffn, 1, false, 'LBA 2^64-1'],
    [0xffffffffffffffffn, 0, false, 'LBA 2^64-1, length 0'],
    [0xfffffffffffffffen, 2, false, 'LBA + length wraps 2^64'],
    [2n ** 53n, 1, false, 'LBA 2^53'],
    [2n ** 53n - 1n, 1, false, 'LBA 2^53-1'],
    [0x100000000n, 1, false, 'LBA 2^32'],
  ];
  for (const [lba, n, ok, what] of cases) {
    const r = run(target, { cdb: rw16(0x88, lba, n), dataIn: 2048 * 512 });
    if (ok) t.equal(r.status, ScsiStatus.GOOD, what);
    else t.equal(toHex(r.sense), LBA_OUT_OF_RANGE, what);
  }
  const w = run(target, { cdb: rw10(0x2a, 0xffffffff, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(w.sense), LBA_OUT_OF_RANGE, 'WRITE(10) LBA FFFFFFFFh');
  t.equal(store.ops.filter((o) => o.kind === 'write').length, 0, 'nothing reached the store');
  t.end();
});

t.test('64-bit LBAs on a large LU', (t) => {
  const blocks = 2 ** 41; // 1 PiB of 512-byte blocks: metadata only, the store keeps no data
  const { target, store } = fakeSetup({ blocks, backing: false });
  let r = run(target, { cdb: rw16(0x88, BigInt(blocks - 1), 1), dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(store.ops.at(-1)!.offset, (blocks - 1) * 512);
  r = run(target, { cdb: rw16(0x88, BigInt(blocks), 1), dataIn: 512 });
  t.equal(toHex(r.sense), LBA_OUT_OF_RANGE);
  t.end();
});

t.test('transfer longer than MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB', (t) => {
  const { target, store } = fakeSetup({ maxTransferBytes: 4096 });
  let r = run(target, { cdb: rw10(0x28, 0, 9), dataIn: 9 * 512 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 07', 'READ(10): TRANSFER LENGTH at byte 7');
  r = run(target, { cdb: rw10(0x28, 0, 8), dataIn: 8 * 512 });
  t.equal(r.status, ScsiStatus.GOOD, 'exactly the maximum');
  r = run(target, { cdb: [0x08, 0, 0, 0, 0, 0], dataIn: 256 * 512 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 04', 'READ(6) 256 blocks: byte 4');
  r = run(target, { cdb: rw16(0x8a, 0n, 0xffffffff), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 0a', 'WRITE(16): byte 10');
  r = run(target, { cdb: [0xa8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 06', 'READ(12): byte 6');
  t.equal(store.ops.length, 1);
  t.end();
});

t.test('RDPROTECT / WRPROTECT ≠ 0 is INVALID FIELD IN CDB (no protection information)', (t) => {
  const { target } = fakeSetup();
  for (const p of [0x20, 0x40, 0xe0]) {
    const r = run(target, { cdb: rw10(0x28, 0, 1, p), dataIn: 512 });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01', `RDPROTECT ${p >> 5}`);
    const w = run(target, { cdb: rw16(0x8a, 0n, 1, p), dataOut: new Uint8Array(512) });
    t.equal(toHex(w.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01', `WRPROTECT ${p >> 5}`);
  }
  let r = run(target, { cdb: rw10(0x2a, 0, 1, 0x04), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 01', 'WRITE(10) byte 1 bit 2 is reserved');
  r = run(target, { cdb: [0x08, 0x20, 0, 0, 1, 0], dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 01', 'READ(6) byte 1 bit 5 is reserved');
  r = run(target, { cdb: [...rw10(0x28, 0, 1)].map((b, i) => (i === 6 ? 0x20 : b)), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cd 00 06', 'byte 6 bits 7-5 are reserved');
  r = run(target, { cdb: rw10(0x28, 0, 1, 0x16), dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD, 'DPO, RARC and FUA_NV are accepted');
  r = run(target, { cdb: [...rw10(0x28, 0, 1)].map((b, i) => (i === 6 ? 0x1f : b)), dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD, 'GROUP NUMBER is accepted and ignored');
  t.end();
});

t.test('FUA and the write cache policy reach the store (reliability.md §4.6)', (t) => {
  const wb = fakeSetup();
  run(wb.target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(wb.store.ops.at(-1)!.fua, false, 'write-back: plain write');
  run(wb.target, { cdb: rw10(0x2a, 0, 1, 0x08), dataOut: new Uint8Array(512) });
  t.equal(wb.store.ops.at(-1)!.fua, true, 'FUA=1');
  run(wb.target, { cdb: rw16(0x8a, 0n, 1, 0x18), dataOut: new Uint8Array(512) });
  t.equal(wb.store.ops.at(-1)!.fua, true, 'DPO+FUA in WRITE(16)');
  run(wb.target, { cdb: [0x0a, 0, 0, 0, 1, 0], dataOut: new Uint8Array(512) });
  t.equal(wb.store.ops.at(-1)!.fua, false, 'WRITE(6) has no FUA');
  const wt = fakeSetup({ writeCache: false });
  run(wt.target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(wt.store.ops.at(-1)!.fua, true, 'write-through: every write is stable before GOOD');
  run(wt.target, { cdb: [0x0a, 0, 0, 0, 1, 0], dataOut: new Uint8Array(512) });
  t.equal(wt.store.ops.at(-1)!.fua, true);
  t.end();
});

t.test('OVERRUN: buffer too small or in the wrong direction (V6.5)', (t) => {
  const { target, store } = fakeSetup();
  const before = store.ops.length;
  let r = run(target, { cdb: rw10(0x28, 0, 8), dataIn: 1024 });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'READ larger than the data-in buffer');
  r = run(target, { cdb: rw10(0x28, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'READ with a data-out buffer');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataIn: 512 });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'WRITE with a data-in buffer');
  r = run(target, { cdb: rw10(0x2a, 0, 2), dataOut: new Uint8Array(1000) });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'WRITE with less data than the CDB says');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512), dataIn: 16 });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN, 'bidirectional buffers for a WRITE');
  t.equal(store.ops.length, before, 'no store I/O for any of them');
  r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 4096 });
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(r.cmd.dataInTransferred, 512, 'a larger buffer leaves a residual of 3584');
  r = run(target, { cdb: [0x00, 0, 0, 0, 0, 0], dataIn: 64 });
  t.equal(r.status, ScsiStatus.GOOD, 'a command without data ignores buffers');
  t.end();
});

t.test('data goes straight between the store and the segments', (t) => {
  const { target, store } = fakeSetup();
  const segs = [new Uint8Array(100), new Uint8Array(412), new Uint8Array(600)];
  const r = submit(target, { cdb: rw10(0x28, 0, 2), dataIn: segs });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(store.ops.at(-1)!.segments[0], segs[0], 'the fabric segments themselves are handed to the store');
  t.equal(r.cmd.dataInTransferred, 1024);
  const out = [pattern(300, 5), pattern(212, 6), pattern(512, 7)];
  run(target, { cdb: rw10(0x2a, 4, 2), dataOut: out });
  t.same(store.data!.subarray(4 * 512, 4 * 512 + 300), out[0]);
  t.same(store.data!.subarray(4 * 512 + 512, 6 * 512), out[2]);
  t.end();
});

t.test('read-only LU: every write-class command is DATA PROTECT / WRITE PROTECTED (V7.12)', (t) => {
  const { target, store } = fakeSetup({ readOnly: true });
  const WP = '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00';
  const writes = [
    [0x0a, 0, 0, 0, 1, 0],
    rw10(0x2a, 0, 1),
    [0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
    rw16(0x8a, 0n, 1),
  ];
  for (const cdb of writes) {
    const r = run(target, { cdb, dataOut: new Uint8Array(512) });
    t.equal(toHex(r.sense), WP, `opcode ${cdb[0].toString(16)}`);
  }
  t.equal(store.ops.length, 0);
  t.equal(run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, ScsiStatus.GOOD, 'reads work');
  t.equal(run(target, { cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD, 'SYNCHRONIZE CACHE succeeds');
  t.end();
});

t.test('store errors map to sense explicitly', (t) => {
  const { target, store, lu } = fakeSetup();
  store.failNext.read = storeError('EIO', 'bad sector');
  let r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 11 00 00 00 00 00', 'EIO on read: UNRECOVERED READ ERROR');
  t.equal(r.cmd.dataInTransferred, 0);
  t.equal(lu.failed, null, 'a read error does not fail the LU');

  store.failNext.write = storeError('ENOSPC', 'full');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 07 00 00 00 00', 'ENOSPC: SPACE ALLOCATION FAILED WRITE PROTECT');
  store.failNext.write = storeError('EDQUOT', 'quota');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 07 00 00 00 00', 'EDQUOT likewise');
  store.failNext.read = storeError('EBADF', 'closed');
  r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 04 00 00 00 00 0a 00 00 00 00 44 00 00 00 00 00', 'other errors: INTERNAL TARGET FAILURE');
  store.failNext.read = new Error('no code at all');
  r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 04 00 00 00 00 0a 00 00 00 00 44 00 00 00 00 00');

  store.failNext.write = storeError('EIO', 'lost');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00', 'EIO on write: WRITE ERROR');
  t.ok(lu.failed, 'the LU enters the failed state');
  const n = store.ops.length;
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00', 'later writes fail at once');
  r = run(target, { cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
  t.equal(toHex(r.sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00', 'and flushes');
  t.equal(store.ops.length, n, 'without touching the store');
  t.equal(run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, ScsiStatus.GOOD, 'reads still work');
  t.end();
});

t.test('a store that throws synchronously is contained', (t) => {
  const errors: unknown[] = [];
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  store.read = () => {
    throw new Error('store bug');
  };
  const target = new ScsiTarget({ onInternalError: (e) => errors.push(e) });
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 04 00 00 00 00 0a 00 00 00 00 44 00 00 00 00 00');
  t.equal(errors.length, 1);
  t.end();
});

t.test('be32 helper sanity for CDB building', (t) => {
  t.same(be32(0x01020304), [1, 2, 3, 4]);
  t.end();
});
