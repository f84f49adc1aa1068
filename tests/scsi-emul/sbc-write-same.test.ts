// WRITE SAME(10/16): SBC-3 r36 §5.44, §5.45; reliability.md V7.8.
import t from 'tap';
import { LogicalUnit, RamStore, ScsiStatus, ScsiTarget, ServiceResponse } from '../../scsi-emul';
import { FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { be32, be64, consumeUa, rw10, setup, toHex } from './helpers';

const WS10 = (lba: number, n: number, byte1 = 0) => [0x41, byte1, ...be32(lba), 0, (n >>> 8) & 0xff, n & 0xff, 0];
const WS16 = (lba: bigint, n: number, byte1 = 0) => [0x93, byte1, ...be64(lba), ...be32(n), 0, 0];
const invalidCdb = (sks: string) => `70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ${sks}`;
const LBA_OUT_OF_RANGE = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';

function block(fill: number): Uint8Array {
  const b = new Uint8Array(512);
  for (let i = 0; i < 512; i++) b[i] = (fill + i) & 0xff;
  return b;
}

function fake(opts: { blocks?: number; blockSize?: 512 | 4096 } = {}) {
  const bs = opts.blockSize ?? 512;
  const store = new FakeBlockStore({ sizeBytes: (opts.blocks ?? 8192) * bs });
  const target = new ScsiTarget();
  const lu = new LogicalUnit(store, { blockSize: bs });
  target.addLogicalUnit(0, lu);
  consumeUa(target, 0);
  return { store, target, lu };
}

t.test('WRITE SAME(10)/(16) write the one block to every block of the range', (t) => {
  const { target } = setup({ sizeBytes: 8 << 20 });
  const b = block(3);
  let r = run(target, { cdb: WS10(10, 3), dataOut: b });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 512);
  const got = run(target, { cdb: rw10(0x28, 9, 5), dataIn: 5 * 512 }).data;
  t.same(got.subarray(0, 512), new Uint8Array(512), 'LBA 9 untouched');
  for (let i = 1; i <= 3; i++) t.same(got.subarray(i * 512, (i + 1) * 512), b, `LBA ${9 + i}`);
  t.same(got.subarray(2048), new Uint8Array(512), 'LBA 13 untouched');
  r = run(target, { cdb: WS16(5000n, 2000), dataOut: block(7) });
  t.equal(r.status, ScsiStatus.GOOD, 'WRITE SAME(16), 2000 blocks');
  const last = run(target, { cdb: rw10(0x28, 6999, 1), dataIn: 512 }).data;
  t.same(last, block(7));
  t.end();
});

t.test('the pattern is written in batches of one block repeated, no per-block buffers', (t) => {
  const { store, target } = fake({ blocks: 1 << 16 });
  store.manual = true;
  const r = submit(target, { cdb: WS16(0n, 3000), dataOut: block(1) });
  const first = store.pending('write')[0];
  // 1024 views of the same 512-byte block per write (the native engine's IOV limit).
  t.equal(first.segments.length, 1024);
  t.equal(first.segments[0], first.segments[1023], 'one view, repeated');
  t.same(first.segments[0], block(1));
  t.equal(first.fua, false, 'write-back: no FUA');
  first.complete();
  store.pending('write')[0].complete();
  store.pending('write')[0].complete();
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(store.ops.map((o) => `${o.kind}@${o.offset}+${o.len}`),
    ['write@0+524288', 'write@524288+524288', 'write@1048576+487424']);
  t.end();
});

t.test('4096-byte blocks: 256 views per write (1 MiB)', (t) => {
  const { store, target } = fake({ blocks: 4096, blockSize: 4096 });
  const b = new Uint8Array(4096).fill(0x5a);
  t.equal(run(target, { cdb: WS10(0, 300), dataOut: b }).status, ScsiStatus.GOOD);
  t.same(store.ops.map((o) => o.len), [1 << 20, 44 * 4096]);
  t.same(store.data!.subarray(299 * 4096, 300 * 4096), b);
  t.end();
});

t.test('NDOB (WRITE SAME(16) byte 1 bit 0): no data-out, zeros', (t) => {
  const { store, target } = fake();
  run(target, { cdb: rw10(0x2a, 0, 2), dataOut: new Uint8Array(1024).fill(9) });
  const r = run(target, { cdb: WS16(0n, 2, 0x01) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 0);
  t.same(store.data!.subarray(0, 1024), new Uint8Array(1024));
  t.end();
});

t.test('UNMAP=1 with a zero block deallocates on a thin LU (LBPRZ=1)', (t) => {
  const { target, store } = setup({ sizeBytes: 8 << 20 });
  const ram = store as RamStore;
  run(target, { cdb: WS16(0n, 8192), dataOut: block(1) });
  t.equal(ram.allocatedBytes, 4 << 20);
  let r = run(target, { cdb: WS16(0n, 4096, 0x08), dataOut: new Uint8Array(512) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(ram.allocatedBytes, 2 << 20, 'two 1 MiB chunks dropped');
  r = run(target, { cdb: WS10(4096, 1, 0x08), dataOut: new Uint8Array(512) });
  t.equal(r.status, ScsiStatus.GOOD, 'WRITE SAME(10) UNMAP (LBPWS10=1)');
  t.same(run(target, { cdb: rw10(0x28, 4095, 3), dataIn: 1536 }).data,
    new Uint8Array([...new Uint8Array(1024), ...block(1)]), 'deallocated blocks read zeros');
  // UNMAP=1 with a nonzero pattern cannot deallocate: it writes.
  r = run(target, { cdb: WS16(0n, 1, 0x08), dataOut: block(2) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 }).data, block(2));
  // NDOB + UNMAP: zeros, deallocated.
  r = run(target, { cdb: WS16(4096n, 2048, 0x09) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(ram.allocatedBytes, 2 << 20, 'chunk 2 dropped; chunks 0 and 3 remain');
  t.end();
});

t.test('write-through: the deallocation is followed by a flush', (t) => {
  const { target, store } = setup({ sizeBytes: 2 << 20, lu: { writeCache: false } });
  let flushes = 0;
  const flush = store.flush.bind(store);
  store.flush = (cb) => {
    flushes++;
    flush(cb);
  };
  t.equal(run(target, { cdb: WS16(0n, 8, 0x08), dataOut: new Uint8Array(512) }).status, ScsiStatus.GOOD);
  t.equal(flushes, 1);
  t.end();
});

t.test('WRITE SAME rejections (exact sense and field pointers)', (t) => {
  const { target, store } = fake();
  const b = block(0);
  // WSNZ=1: NUMBER OF LOGICAL BLOCKS 0 → the length field (byte 7 / byte 10).
  t.equal(toHex(run(target, { cdb: WS10(0, 0), dataOut: b }).sense), invalidCdb('c0 00 07'));
  t.equal(toHex(run(target, { cdb: WS16(0n, 0), dataOut: b }).sense), invalidCdb('c0 00 0a'));
  // WRPROTECT ≠ 0: byte 1 bit 7. ANCHOR (ANC_SUP=0): byte 1 bit 4.
  t.equal(toHex(run(target, { cdb: WS16(0n, 1, 0x20), dataOut: b }).sense), invalidCdb('cf 00 01'));
  t.equal(toHex(run(target, { cdb: WS16(0n, 1, 0x10), dataOut: b }).sense), invalidCdb('cc 00 01'));
  t.equal(toHex(run(target, { cdb: WS10(0, 1, 0x10), dataOut: b }).sense), invalidCdb('cc 00 01'));
  // UNMAP=1 on a store that cannot deallocate (LBPWS=0): byte 1 bit 3.
  t.equal(toHex(run(target, { cdb: WS16(0n, 1, 0x08), dataOut: b }).sense), invalidCdb('cb 00 01'));
  t.equal(toHex(run(target, { cdb: WS10(0, 1, 0x08), dataOut: b }).sense), invalidCdb('cb 00 01'));
  // Obsolete PBDATA / LBDATA, and NDOB in WRITE SAME(10) (reserved there): usage data.
  t.equal(toHex(run(target, { cdb: WS16(0n, 1, 0x04), dataOut: b }).sense), invalidCdb('ca 00 01'));
  t.equal(toHex(run(target, { cdb: WS16(0n, 1, 0x02), dataOut: b }).sense), invalidCdb('c9 00 01'));
  t.equal(toHex(run(target, { cdb: WS10(0, 1, 0x01), dataOut: b }).sense), invalidCdb('c8 00 01'));
  // Beyond MAXIMUM WRITE SAME LENGTH (1 GiB = 2097152 blocks of 512).
  const big = fake({ blocks: 4 << 20 });
  t.equal(toHex(run(big.target, { cdb: WS16(0n, 2097153), dataOut: b }).sense), invalidCdb('c0 00 0a'));
  t.equal(run(big.target, { cdb: WS16(0n, 2097152, 0x01) }).status, ScsiStatus.GOOD, 'exactly the maximum');
  // LBA OUT OF RANGE.
  t.equal(toHex(run(target, { cdb: WS16(8191n, 2), dataOut: b }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: WS10(8192, 1), dataOut: b }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: WS16(0xfffffffffffffff0n, 0x20), dataOut: b }).sense), LBA_OUT_OF_RANGE);
  // Data-out: exactly one block is needed; a shorter buffer is an OVERRUN.
  t.equal(run(target, { cdb: WS16(0n, 1), dataOut: new Uint8Array(511) }).serviceResponse, ServiceResponse.OVERRUN);
  t.equal(store.ops.filter((o) => o.kind === 'write').length, 0, 'nothing reached the store');
  t.end();
});

t.test('WRITE SAME on a read-only LU is DATA PROTECT, with or without UNMAP', (t) => {
  const { target } = setup({ lu: { readOnly: true } });
  for (const cdb of [WS10(0, 1), WS16(0n, 1, 0x08), WS10(0, 1, 0x08)]) {
    const r = run(target, { cdb, dataOut: new Uint8Array(512) });
    t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00');
  }
  t.end();
});
