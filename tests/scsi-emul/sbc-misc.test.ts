// PRE-FETCH, START STOP UNIT power conditions, WRITE ATOMIC(16), FORMAT UNIT, READ/WRITE
// protection fields, and the provisioning and limits values of VPD B0h/B2h and READ CAPACITY(16).
import t from 'tap';
import { LogicalUnit, RamStore, ScsiStatus, ScsiTarget, ServiceResponse } from '../../scsi-emul';
import { FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { be32, be64, consumeUa, rw10, rw16, setup, toHex } from './helpers';

const invalidCdb = (sks: string) => `70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ${sks}`;
const invalidParam = (sks: string) => `70 00 05 00 00 00 00 0a 00 00 00 00 26 00 00 ${sks}`;
const LBA_OUT_OF_RANGE = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';
const WRITE_PROTECTED = '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00';

function fake(opts: { bytes?: number; blockSize?: 512 | 4096; maxTransferBytes?: number; readOnly?: boolean } = {}) {
  const store = new FakeBlockStore({ sizeBytes: opts.bytes ?? 1 << 20 });
  const target = new ScsiTarget({ maxTransferBytes: opts.maxTransferBytes });
  const lu = new LogicalUnit(store, { blockSize: opts.blockSize, readOnly: opts.readOnly });
  target.addLogicalUnit(0, lu);
  consumeUa(target, 0);
  return { store, target, lu };
}

// ---- provisioning and limits ----

t.test('thin RAM LU: VPD B0h limits, B2h provisioning, READ CAPACITY(16) LBPME/LBPRZ', (t) => {
  const { target } = setup({ sizeBytes: 1 << 20 });
  const b0 = run(target, { cdb: [0x12, 1, 0xb0, 0, 64, 0], dataIn: 64 }).data;
  // SBC-3 r36 §6.5.3: WSNZ=1; MAXIMUM COMPARE AND WRITE LENGTH FFh; granularity 8; MAXIMUM
  // TRANSFER LENGTH 2000h; MAXIMUM PREFETCH LENGTH 10000h (32 MiB); MAXIMUM UNMAP LBA COUNT
  // 200000h (1 GiB); 256 descriptors; OPTIMAL UNMAP GRANULARITY 8, UGAVALID=1 alignment 0;
  // MAXIMUM WRITE SAME LENGTH 200000h; MAXIMUM ATOMIC TRANSFER LENGTH 800h (1 MiB); no boundaries.
  t.equal(toHex(b0), '00 b0 00 3c 01 ff 00 08 00 00 20 00 00 00 00 00 00 01 00 00 00 20 00 00 ' +
    '00 00 01 00 00 00 00 08 80 00 00 00 00 00 00 00 00 20 00 00 00 00 08 00 ' + '00 '.repeat(15) + '00');
  // SBC-3 r36 §6.5.4: LBPU, LBPWS, LBPWS10, LBPRZ; PROVISIONING TYPE 010b (thin).
  t.equal(toHex(run(target, { cdb: [0x12, 1, 0xb2, 0, 8, 0], dataIn: 8 }).data), '00 b2 00 04 00 e4 02 00');
  const rc = run(target, { cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 }).data;
  t.equal(toHex(rc.subarray(8, 16)), '00 00 02 00 00 00 c0 00', 'LBPME=1 LBPRZ=1');
  t.end();
});

t.test('fully provisioned (store cannot deallocate) and read-only LUs advertise no unmapping', (t) => {
  const { target } = fake({ blockSize: 4096, bytes: 4 << 20 });
  const b0 = run(target, { cdb: [0x12, 1, 0xb0, 0, 64, 0], dataIn: 64 }).data;
  // 4096-byte blocks: CAW 40h (256 KiB), transfer 400h, prefetch 2000h, no UNMAP fields,
  // UGAVALID=0, WRITE SAME 40000h, atomic 100h.
  t.equal(toHex(b0), '00 b0 00 3c 01 40 00 01 00 00 04 00 00 00 00 00 00 00 20 00 00 00 00 00 ' +
    '00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 04 00 00 00 00 01 00 ' + '00 '.repeat(15) + '00');
  t.equal(toHex(run(target, { cdb: [0x12, 1, 0xb2, 0, 8, 0], dataIn: 8 }).data), '00 b2 00 04 00 00 00 00');
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: [0x12, 1, 0xb2, 0, 8, 0], dataIn: 8 }).data), '00 b2 00 04 00 00 00 00');
  const rc = run(ro.target, { cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 }).data;
  t.equal(toHex(rc.subarray(12, 16)), '00 00 00 00', 'LBPME=0 LBPRZ=0');
  t.end();
});

t.test('512e: READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 3', (t) => {
  const { target } = setup({ sizeBytes: 1 << 20, lu: { blockSize: 512, physicalBlockSize: 4096 } });
  const rc = run(target, { cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 }).data;
  t.equal(toHex(rc.subarray(0, 16)), '00 00 00 00 00 00 07 ff 00 00 02 00 00 03 c0 00');
  const native4k = setup({ sizeBytes: 1 << 20, lu: { blockSize: 4096, physicalBlockSize: 4096 } });
  const rc4 = run(native4k.target, { cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 }).data;
  t.equal(toHex(rc4.subarray(8, 16)), '00 00 10 00 00 00 c0 00', '4Kn: exponent 0');
  t.throws(() => new LogicalUnit(new RamStore(1 << 20, 'x'), { blockSize: 4096, physicalBlockSize: 512 }), RangeError);
  t.throws(() => new LogicalUnit(new RamStore(1 << 20, 'x'), { physicalBlockSize: 1024 as 512 }), RangeError);
  t.end();
});

// ---- READ / WRITE protection fields ----

t.test('READ/WRITE(10/12/16): RDPROTECT/WRPROTECT ≠ 0 → byte 1 bit 7; DPO and FUA accepted', (t) => {
  const { target, store } = fake();
  const one = new Uint8Array(512);
  const cases: [number[], Uint8Array | undefined][] = [
    [rw10(0x28, 0, 1, 0x20), undefined], [[0xa8, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], undefined],
    [rw16(0x88, 0n, 1, 0x80), undefined], [rw10(0x2a, 0, 1, 0x20), one],
    [[0xaa, 0x60, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], one], [rw16(0x8a, 0n, 1, 0xe0), one],
  ];
  for (const [cdb, dataOut] of cases) {
    const r = run(target, { cdb, dataOut, dataIn: dataOut ? undefined : 512 });
    t.equal(toHex(r.sense), invalidCdb('cf 00 01'), toHex(cdb.slice(0, 2)));
  }
  t.equal(store.ops.length, 0);
  t.equal(run(target, { cdb: rw16(0x8a, 0n, 1, 0x18), dataOut: one }).status, ScsiStatus.GOOD, 'DPO+FUA');
  t.equal(store.ops[0].fua, true);
  t.equal(run(target, { cdb: rw16(0x88, 0n, 1, 0x18), dataIn: 512 }).status, ScsiStatus.GOOD);
  t.end();
});

// ---- PRE-FETCH ----

const PF10 = (lba: number, n: number, byte1 = 0) => [0x34, byte1, ...be32(lba), 0, (n >>> 8) & 0xff, n & 0xff, 0];
const PF16 = (lba: bigint, n: number, byte1 = 0) => [0x90, byte1, ...be64(lba), ...be32(n), 0, 0];

t.test('PRE-FETCH: the blocks are read into the cache, then CONDITION MET', (t) => {
  const { target, store } = fake({ bytes: 64 << 20 });
  store.manual = true;
  const r = submit(target, { cdb: PF16(2048n, 4096) });
  t.same(store.pending().map((o) => `${o.kind}@${o.offset}+${o.len}`), ['read@1048576+1048576']);
  store.pending()[0].complete();
  t.equal(r.completions, 0);
  store.pending()[0].complete();
  t.equal(r.status, ScsiStatus.CONDITION_MET);
  store.manual = false;
  t.equal(run(target, { cdb: PF10(0, 1) }).status, ScsiStatus.CONDITION_MET, 'PRE-FETCH(10)');
  t.equal(run(target, { cdb: PF10(0, 0) }).status, ScsiStatus.GOOD,
    'length 0 (to the end, 131072 blocks) is more than the cache takes: the first part, GOOD');
  t.equal(run(target, { cdb: PF16(131000n, 0) }).status, ScsiStatus.CONDITION_MET, 'the last 72 blocks fit');
  t.end();
});

t.test('PRE-FETCH IMMED=1: status at once, the reads go on', (t) => {
  const { target, store } = fake({ bytes: 4 << 20 });
  store.manual = true;
  const r = submit(target, { cdb: PF10(0, 4096, 0x02) });
  t.equal(r.status, ScsiStatus.CONDITION_MET);
  t.equal(store.pending().length, 1, 'a read is still in flight');
  store.pending()[0].complete();
  store.pending()[0].complete();
  t.equal(store.pending().length, 0);
  t.end();
});

t.test('PRE-FETCH: no cache to fill on an O_DIRECT store; rejections', (t) => {
  const { target, store } = fake({ bytes: 64 << 20 });
  Object.assign(store, { direct: true });
  t.equal(run(target, { cdb: PF10(0, 8) }).status, ScsiStatus.GOOD);
  t.equal(store.ops.length, 0);
  // Above MAXIMUM PREFETCH LENGTH (65536): the length field (byte 7 / 10).
  t.equal(toHex(run(target, { cdb: PF16(0n, 65537) }).sense), invalidCdb('c0 00 0a'));
  t.equal(run(target, { cdb: [0x34, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0] }).status, ScsiStatus.GOOD,
    'PRE-FETCH(10) length FFFFh is below the limit (GOOD: O_DIRECT has no cache)');
  t.equal(toHex(run(target, { cdb: PF10(131072, 1) }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: PF16(131072n, 0) }).sense), LBA_OUT_OF_RANGE, 'length 0 at the capacity');
  t.equal(toHex(run(target, { cdb: PF16(0xffffffffffffffffn, 1) }).sense), LBA_OUT_OF_RANGE);
  t.equal(toHex(run(target, { cdb: PF10(0, 1, 0x01) }).sense), invalidCdb('c8 00 01'), 'reserved byte 1 bit 0');
  t.end();
});

// ---- START STOP UNIT power conditions ----

t.test('START STOP UNIT: POWER CONDITION ACTIVE and LU_CONTROL are no-ops; the others are refused', (t) => {
  const { target, store } = fake();
  t.equal(run(target, { cdb: [0x1b, 0, 0, 0, 0x10, 0] }).status, ScsiStatus.GOOD, 'ACTIVE');
  t.equal(run(target, { cdb: [0x1b, 0, 0, 0, 0x70, 0] }).status, ScsiStatus.GOOD, 'LU_CONTROL');
  t.equal(run(target, { cdb: [0x1b, 0, 0, 0, 0x12, 0] }).status, ScsiStatus.GOOD, 'LOEJ is ignored with a power condition');
  t.equal(run(target, { cdb: [0x1b, 0, 0, 0, 0x10, 0] }).status, ScsiStatus.GOOD, 'START=0 ignored: no flush');
  t.equal(store.ops.length, 0);
  for (const pc of [0x2, 0x3, 0x5, 0xa, 0xb, 0xf]) {
    t.equal(toHex(run(target, { cdb: [0x1b, 0, 0, 0, pc << 4, 0] }).sense), invalidCdb('cf 00 04'), `POWER CONDITION ${pc}h`);
  }
  t.equal(toHex(run(target, { cdb: [0x1b, 0, 0, 0x02, 0x10, 0] }).sense), invalidCdb('cb 00 03'), 'modifier with ACTIVE');
  t.equal(toHex(run(target, { cdb: [0x1b, 0, 0, 0x01, 0x70, 0] }).sense), invalidCdb('cb 00 03'), 'modifier with LU_CONTROL');
  t.end();
});

// ---- WRITE ATOMIC(16) ----

const WA16 = (lba: bigint, n: number, byte1 = 0, boundary = 0) =>
  [0x9c, byte1, ...be64(lba), (boundary >>> 8) & 0xff, boundary & 0xff, (n >>> 8) & 0xff, n & 0xff, 0, 0];

t.test('WRITE ATOMIC(16): one store write; limits from VPD B0h', (t) => {
  const { target, store } = fake({ bytes: 4 << 20 });
  const data = new Uint8Array(4 * 512).fill(0x3c);
  let r = run(target, { cdb: WA16(16n, 4, 0x08), dataOut: data });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(store.ops.map((o) => `${o.kind}@${o.offset}+${o.len}${o.fua ? ' fua' : ''}`), ['write@8192+2048 fua']);
  t.same(store.data!.subarray(8192, 10240), data);
  t.equal(run(target, { cdb: WA16(0n, 0) }).status, ScsiStatus.GOOD, 'TRANSFER LENGTH 0');
  // ATOMIC BOUNDARY ≠ 0 with MAXIMUM ATOMIC BOUNDARY SIZE 0: bytes 10-11.
  t.equal(toHex(run(target, { cdb: WA16(0n, 1, 0, 1), dataOut: data }).sense), invalidCdb('c0 00 0a'));
  // Above MAXIMUM ATOMIC TRANSFER LENGTH (2048 blocks): bytes 12-13.
  r = run(target, { cdb: WA16(0n, 2049), dataOut: new Uint8Array(2049 * 512) });
  t.equal(toHex(r.sense), invalidCdb('c0 00 0c'));
  t.equal(toHex(run(target, { cdb: WA16(0n, 1, 0x20), dataOut: data }).sense), invalidCdb('cf 00 01'), 'WRPROTECT');
  t.equal(toHex(run(target, { cdb: WA16(8192n, 1), dataOut: data }).sense), LBA_OUT_OF_RANGE);
  const small = fake({ maxTransferBytes: 64 << 10 });
  r = run(small.target, { cdb: WA16(0n, 129), dataOut: new Uint8Array(129 * 512) });
  t.equal(toHex(r.sense), invalidCdb('c0 00 0c'), 'also bounded by MAXIMUM TRANSFER LENGTH');
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: WA16(0n, 1), dataOut: data }).sense), WRITE_PROTECTED);
  t.end();
});

t.test('WRITE ATOMIC(16): overlapping reads see all old or all new data', (t) => {
  const { target, store } = fake();
  store.manual = true;
  const w = submit(target, { cdb: WA16(0n, 2), dataOut: new Uint8Array(1024).fill(1), tag: 1n });
  const r = submit(target, { cdb: rw10(0x28, 1, 1), dataIn: 512, tag: 2n });
  t.same(store.pending().map((o) => o.kind), ['write'], 'the READ waits for the atomic write');
  store.pending()[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  store.pending()[0].complete();
  t.same(r.data, new Uint8Array(512).fill(1));
  t.end();
});

// ---- FORMAT UNIT ----

t.test('FORMAT UNIT without a parameter list: a thin LU is deallocated, then flushed', (t) => {
  const { target, store } = setup({ sizeBytes: 4 << 20 });
  const ram = store as RamStore;
  run(target, { cdb: rw10(0x2a, 0, 2048), dataOut: new Uint8Array(1 << 20).fill(1) });
  let flushes = 0;
  const flush = ram.flush.bind(ram);
  ram.flush = (cb) => {
    flushes++;
    flush(cb);
  };
  const r = run(target, { cdb: [0x04, 0, 0, 0, 0, 0] });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(ram.allocatedBytes, 0);
  t.equal(flushes, 1);
  t.same(run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 }).data, new Uint8Array(512));
  t.end();
});

t.test('FORMAT UNIT on a fully provisioned LU keeps the data and flushes', (t) => {
  const { target, store } = fake();
  run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512).fill(5) });
  // CMPLST and DEFECT LIST FORMAT describe a parameter list; without FMTDATA they are ignored.
  const r = run(target, { cdb: [0x04, 0x0d, 0, 0, 0, 0] });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(store.ops.map((o) => o.kind), ['write', 'flush']);
  t.same(store.data!.subarray(0, 512), new Uint8Array(512).fill(5));
  t.end();
});

t.test('FORMAT UNIT parameter list header checks (SBC-3 r36 §5.3.2)', (t) => {
  const { target } = fake();
  const fmt = (byte1: number, header: number[]) => run(target, { cdb: [0x04, byte1, 0, 0, 0, 0], dataOut: Uint8Array.from(header) });
  let r = fmt(0x10, [0, 0, 0, 0]);
  t.equal(r.status, ScsiStatus.GOOD, 'short header, all zero');
  t.equal(r.cmd.dataOutTransferred, 4);
  t.equal(fmt(0x30, [0, 0, 0, 0, 0, 0, 0, 0]).status, ScsiStatus.GOOD, 'long header');
  t.equal(fmt(0x10, [0, 0xe2, 0, 0]).status, ScsiStatus.GOOD, 'FOV with DPRY, DCRT, IMMED');
  t.equal(toHex(fmt(0x10, [0x01, 0, 0, 0]).sense), invalidParam('88 00 00'), 'PROTECTION FIELD USAGE');
  t.equal(toHex(fmt(0x10, [0x40, 0, 0, 0]).sense), invalidParam('8e 00 00'), 'reserved byte 0');
  t.equal(toHex(fmt(0x10, [0, 0x20, 0, 0]).sense), invalidParam('8d 00 01'), 'DCRT without FOV');
  t.equal(toHex(fmt(0x10, [0, 0x88, 0, 0]).sense), invalidParam('8b 00 01'), 'IP: no initialization patterns');
  t.equal(toHex(fmt(0x10, [0, 0x84, 0, 0]).sense), invalidParam('8a 00 01'), 'obsolete bit 2');
  t.equal(toHex(fmt(0x10, [0, 0, 0, 8]).sense), invalidParam('80 00 02'), 'a defect list (short)');
  t.equal(toHex(fmt(0x30, [0, 0, 0, 0, 0, 0, 0, 8]).sense), invalidParam('80 00 04'), 'a defect list (long)');
  t.equal(toHex(fmt(0x30, [0, 0, 0, 0x10, 0, 0, 0, 0]).sense), invalidParam('8c 00 03'), 'P_I_INFORMATION');
  t.equal(toHex(fmt(0x30, [0, 0, 1, 0, 0, 0, 0, 0]).sense), invalidParam('88 00 02'), 'reserved long byte 2');
  // CDB: FMTPINFO (protection) byte 1 bit 7; vendor specific byte 2 and obsolete bytes 3-4.
  t.equal(toHex(run(target, { cdb: [0x04, 0x80, 0, 0, 0, 0] }).sense), invalidCdb('cf 00 01'));
  t.equal(toHex(run(target, { cdb: [0x04, 0x40, 0, 0, 0, 0] }).sense), invalidCdb('cf 00 01'));
  t.equal(toHex(run(target, { cdb: [0x04, 0, 1, 0, 0, 0] }).sense), invalidCdb('c8 00 02'));
  t.equal(toHex(run(target, { cdb: [0x04, 0, 0, 0, 1, 0] }).sense), invalidCdb('c8 00 04'));
  // A header shorter than announced by LONGLIST: OVERRUN.
  t.equal(fmt(0x30, [0, 0, 0, 0]).serviceResponse, ServiceResponse.OVERRUN);
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: [0x04, 0, 0, 0, 0, 0] }).sense), WRITE_PROTECTED);
  t.end();
});
