// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 r37 §6.4, SPC-3 §6.3/§6.17), VPD 8Fh.
// Parameter lists are spelled out byte by byte in the layouts sg_xcopy and VMware VAAI send:
// a 16-byte header, 32-byte identification CSCD descriptors (E4h) carrying the NAA designator
// VPD 83h reports, 28-byte block-to-block segment descriptors (02h).
import t from 'tap';
import {
  ITNexus, LogicalUnit, ScsiTarget, ServiceResponse, TaskManagementFunction, TmfResponse,
} from '../../scsi-emul';
import { FakeBlockStore, TEST_NEXUS, run, submit } from '../../scsi-emul/testing';
import { storeError } from '../../scsi-emul/store';
import { COPY_CHUNK } from '../../scsi-emul/xcopy';
import { Sense, encodeSense } from '../../scsi-emul/sense';
import { consumeUa, hex, toHex, hx } from './helpers';

const OTHER: ITNexus = { initiatorPort: 'other-initiator', targetPortId: 1 };
const MIB4 = 4 << 20;


interface Lus {
  target: ScsiTarget;
  stores: FakeBlockStore[];
  lus: LogicalUnit[];
}

function setup(specs: { blockSize?: 512 | 4096; manual?: boolean; readOnly?: boolean; writeCache?: boolean }[]): Lus {
  const target = new ScsiTarget();
  const stores: FakeBlockStore[] = [];
  const lus: LogicalUnit[] = [];
  specs.forEach((s, i) => {
    const store = new FakeBlockStore({ sizeBytes: MIB4, name: `lun${i}`, manual: s.manual });
    const lu = new LogicalUnit(store, { blockSize: s.blockSize ?? 512, readOnly: s.readOnly, writeCache: s.writeCache });
    target.addLogicalUnit(i, lu);
    stores.push(store);
    lus.push(lu);
  });
  for (let i = 0; i < specs.length; i++) {
    consumeUa(target, i, TEST_NEXUS);
    consumeUa(target, i, OTHER);
  }
  return { target, stores, lus };
}

/** The LU's NAA designator, read from VPD 83h as sg_xcopy does (first designator, bytes 8-23). */
function naa(target: ScsiTarget, lun: number): string {
  const r = run(target, { lun, cdb: [0x12, 0x01, 0x83, 0x00, 0xff, 0x00], dataIn: 255 });
  if (r.data[4] !== 0x01 || r.data[5] !== 0x03 || r.data[7] !== 0x10) throw new Error('VPD 83h: NAA first');
  return toHex(r.data.subarray(8, 24));
}

/** Identification CSCD descriptor (E4h): binary NAA designator, block device, DISK BLOCK LENGTH. */
function e4(designator: string, blockLength = 512, pdt = 0): string {
  return `e4 ${hx(pdt, 1)} 00 00  01 03 00 10  ${designator}  00 00 00 00  00 ${hx(blockLength, 3)}`;
}

/** Block device to block device segment descriptor (02h). */
function b2b(src: number, dst: number, blocks: number, srcLba: number, dstLba: number, dc = false): string {
  return `02 ${dc ? '02' : '00'} 00 18  ${hx(src, 2)} ${hx(dst, 2)}  00 00 ${hx(blocks, 2)}  ${hx(srcLba, 8)}  ${hx(dstLba, 8)}`;
}

function header(listId: number, byte1: number, cscdLength: number, segLength: number, inline = 0): string {
  return `${hx(listId, 1)} ${hx(byte1, 1)} ${hx(cscdLength, 2)} 00 00 00 00 ${hx(segLength, 4)} ${hx(inline, 4)}`;
}

function xcopyCdb(len: number): number[] {
  return [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...hex(hx(len, 4)), 0, 0];
}

function xcopy(target: ScsiTarget, param: string, opts: { lun?: number; nexus?: ITNexus; tag?: bigint } = {}) {
  const data = hex(param);
  return submit(target, { lun: opts.lun ?? 0, nexus: opts.nexus, tag: opts.tag, cdb: xcopyCdb(data.length), dataOut: data });
}

function rcr(target: ScsiTarget, sa: number, listId: number, alloc = 1024, opts: { lun?: number; nexus?: ITNexus } = {}) {
  return run(target, {
    lun: opts.lun ?? 0, nexus: opts.nexus,
    cdb: [0x84, sa, listId, 0, 0, 0, 0, 0, 0, 0, ...hex(hx(alloc, 4)), 0, 0], dataIn: alloc,
  });
}

/** Completes every pending operation of the manual stores until none is left. */
function drive(stores: FakeBlockStore[], fail?: (op: { kind: string; offset: number }, n: number) => Error | null): void {
  let n = 0;
  for (;;) {
    const op = stores.flatMap((s) => s.pending())[0];
    if (op === undefined) return;
    op.complete(fail ? fail(op, n++) : null);
  }
}

function fill(store: FakeBlockStore, blockSize: number, lba: number, blocks: number, tag: (i: number) => number): void {
  for (let i = 0; i < blocks; i++) store.data!.fill(tag(i) & 0xff, (lba + i) * blockSize, (lba + i + 1) * blockSize);
}

/** Fixed-format ILLEGAL REQUEST sense with ASC/ASCQ and sense-key specific bytes. */
const ILLEGAL = (ascq: string, sks = '00 00 00') => `70 00 05 00 00 00 00 0a 00 00 00 00 ${ascq} 00 ${sks}`;

t.test('RECEIVE COPY OPERATING PARAMETERS: the limits we enforce', (t) => {
  const { target } = setup([{}]);
  const r = rcr(target, 0x03, 0, 255);
  t.equal(toHex(r.data), toHex(hex(
    '00 00 00 2a  01 00 00 00  00 08 00 40  00 00 08 00  0f ff f0 00  00 00 00 00  00 00 00 00  00 00 00 00' +
    '00 00 00 04  04 09 00 00  00 00 00 02  02 e4')),
  'SNLID, 8 CSCDs, 64 segments, 2048-byte lists, 65535×4096-byte segments, no inline/held data, 4 copies, 2^9 granularity, 02h + E4h');
  const r4 = rcr(target, 0x03, 0, 40);
  t.equal(r4.data.length, 40, 'truncated to the ALLOCATION LENGTH');
  const bad = rcr(target, 0x03, 1, 255);
  t.equal(toHex(bad.sense), ILLEGAL('24 00', 'c8 00 02'), 'LIST IDENTIFIER is reserved for operating parameters');
  t.end();
});

t.test('VPD 8Fh third-party copy', (t) => {
  const { target } = setup([{ blockSize: 4096 }]);
  const r = run(target, { cdb: [0x12, 0x01, 0x8f, 0x00, 0xff, 0x00], dataIn: 255 });
  t.equal(toHex(r.data), toHex(hex(
    '00 8f 00 64' +
    '00 01 00 0c  08 83 01 00  84 03 00 03  04 00 00 00' + // supported commands
    '00 04 00 1c  00 00 00 00  00 08 00 40  00 00 08 00  00 00 00 00' + // parameter data
    '00 00 00 00  00 00 00 00  00 00 00 00' +
    '00 08 00 04  02 02 e4 00' + // supported descriptors
    '00 0c 00 04  00 02 ff ff' + // supported CSCD IDs: FFFFh
    '80 01 00 20  00 00 00 04  00 00 00 04  0f ff f0 00  0c 00 00 00' + // general copy operations
    '00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00')));
  const p0 = run(target, { cdb: [0x12, 0x01, 0x00, 0x00, 0xff, 0x00], dataIn: 255 });
  t.ok(Array.from(p0.data.subarray(4)).includes(0x8f), 'listed in VPD 00h');
  t.end();
});

t.test('sg_xcopy within one LU: list id 1, LIST ID USAGE 10b, PRIORITY 1, NAA designators', (t) => {
  const { target, stores } = setup([{}]);
  const d = naa(target, 0);
  fill(stores[0], 512, 0, 16, (i) => 0x40 + i);
  const param = header(1, 0x11, 64, 28) + e4(d) + e4(d) + b2b(0, 1, 16, 0, 1000);
  const r = xcopy(target, param);
  t.equal(r.completions, 1);
  t.equal(r.status, 0, 'GOOD');
  t.equal(r.cmd.dataOutTransferred, 108, 'the whole parameter list was read');
  for (let i = 0; i < 16; i++) t.equal(stores[0].data![(1000 + i) * 512 + 511], 0x40 + i, `block ${1000 + i} copied`);
  t.equal(toHex(rcr(target, 0x00, 1).sense), ILLEGAL('24 00', 'c0 00 02'), 'LIST ID USAGE 10b: nothing held afterwards');
  t.end();
});

t.test('VAAI-style copy between two LUs, status held (LIST ID USAGE 00b)', (t) => {
  const { target, stores } = setup([{}, {}]);
  fill(stores[0], 512, 100, 3000, (i) => i * 7 + 1);
  const param = header(5, 0x00, 64, 28) + e4(naa(target, 0)) + e4(naa(target, 1)) + b2b(0, 1, 3000, 100, 4000);
  const r = xcopy(target, param, { lun: 1 }); // sent to the destination, as ESXi does
  t.equal(r.status, 0);
  let same = true;
  for (let i = 0; i < 3000; i++) if (stores[1].data![(4000 + i) * 512] !== ((i * 7 + 1) & 0xff)) same = false;
  t.ok(same, '3000 blocks copied through the chunk buffer (more than one chunk)');
  t.equal(stores[0].ops.filter((o) => o.kind === 'read').length, Math.ceil(3000 * 512 / COPY_CHUNK), 'read in 1 MiB chunks');
  t.ok(stores[1].ops.filter((o) => o.kind === 'write').every((o) => !o.fua), 'write-back destination: plain writes');
  const s = rcr(target, 0x00, 5, 1024, { lun: 1 });
  t.equal(toHex(s.data), '00 00 00 08 01 00 01 00 00 17 70 00', 'completed without errors, 1 segment, 1536000 bytes');
  t.equal(toHex(rcr(target, 0x00, 5, 1024, { lun: 1 }).sense), ILLEGAL('24 00', 'c0 00 02'), 'status discarded once delivered');
  t.equal(toHex(rcr(target, 0x00, 5, 1024, { lun: 0 }).sense), ILLEGAL('24 00', 'c0 00 02'), 'held by the LU that received the copy');
  t.end();
});

t.test('CSCD ID FFFFh names the LU that received the command; overlapping copies behave as memmove', (t) => {
  const { target, stores } = setup([{}]);
  fill(stores[0], 512, 0, 3000, (i) => i % 251);
  const up = xcopy(target, header(0, 0x18, 0, 28) + b2b(0xffff, 0xffff, 3000, 0, 100));
  t.equal(up.status, 0);
  let ok = true;
  for (let i = 0; i < 3000; i++) if (stores[0].data![(100 + i) * 512 + 3] !== i % 251) ok = false;
  t.ok(ok, 'destination above an overlapping source: copied from the end');
  fill(stores[0], 512, 0, 4000, (i) => i % 241);
  const down = xcopy(target, header(0, 0x18, 0, 28) + b2b(0xffff, 0xffff, 3000, 500, 20));
  t.equal(down.status, 0);
  ok = true;
  for (let i = 0; i < 3000; i++) if (stores[0].data![(20 + i) * 512 + 3] !== (500 + i) % 241) ok = false;
  t.ok(ok, 'destination below: copied from the start');
  t.end();
});

t.test('different block sizes: DC selects the unit, an inexact segment is COPY ABORTED 26/0A', (t) => {
  const { target, stores } = setup([{ blockSize: 512 }, { blockSize: 4096 }]);
  fill(stores[0], 512, 0, 16, (i) => i + 1);
  const d0 = naa(target, 0);
  const d1 = naa(target, 1);
  let r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0, 512) + e4(d1, 4096) + b2b(0, 1, 2, 0, 10, true));
  t.equal(r.status, 0, 'DC=1: 2 destination blocks = 16 source blocks');
  t.equal(stores[1].data![10 * 4096 + 7 * 512], 8, 'source block 7 lands in destination block 10');
  t.equal(stores[1].data![11 * 4096 + 7 * 512], 16);
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0, 512) + e4(d1, 0) + b2b(0, 1, 8, 8, 20));
  t.equal(r.status, 0, 'DC=0: 8 source blocks = 1 destination block; DISK BLOCK LENGTH 0 is "the LU\'s"');
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0, 512) + e4(d1, 4096) + b2b(0, 1, 1, 0, 30));
  t.equal(toHex(r.sense), '70 00 0a 00 00 00 00 0a 00 00 00 00 26 0a 00 a0 00 0a',
    'COPY ABORTED, UNEXPECTED INEXACT SEGMENT, segment 0, pointer: NUMBER OF BLOCKS of the segment');
  t.end();
});

t.test('parameter list errors: ILLEGAL REQUEST with a field pointer into the list', (t) => {
  const { target } = setup([{}, {}]);
  const d = naa(target, 0);
  const two = e4(d) + e4(naa(target, 1));
  const cases: [string, string, string][] = [
    ['list shorter than the header', '01 18 00 00 00 00 00 00', ILLEGAL('1a 00')],
    ['LIST ID USAGE 01b is reserved', header(1, 0x08, 64, 28) + two + b2b(0, 1, 1, 0, 1), ILLEGAL('26 00', '8c 00 01')],
    ['LIST ID USAGE 11b needs LIST IDENTIFIER 0', header(7, 0x18, 64, 28) + two + b2b(0, 1, 1, 0, 1), ILLEGAL('26 00', '80 00 00')],
    ['lists beyond MAXIMUM DESCRIPTOR LIST LENGTH', header(0, 0x18, 64, 2000) + two, ILLEGAL('1a 00')],
    ['inline data', header(0, 0x18, 64, 28, 4) + two + b2b(0, 1, 1, 0, 1) + '00 00 00 00', ILLEGAL('26 0b', '80 00 0c')],
    ['lists truncated by PARAMETER LIST LENGTH', header(0, 0x18, 64, 56) + two + b2b(0, 1, 1, 0, 1), ILLEGAL('1a 00')],
    ['9 CSCD descriptors', header(0, 0x18, 288, 28) + two.repeat(4) + e4(d) + b2b(0, 1, 1, 0, 1), ILLEGAL('26 06', '80 00 02')],
    ['CSCD type E0h (FC N_Port_Name)', header(0, 0x18, 32, 28) + 'e0' + ' 00'.repeat(31) + b2b(0, 0, 1, 0, 1), ILLEGAL('26 07', '80 00 10')],
    ['CSCD list ends inside a descriptor', header(0, 0x18, 48, 12) + e4(d) + e4(d), ILLEGAL('26 00', '80 00 02')],
    ['ASSOCIATION 01b (target port)', header(0, 0x18, 32, 28) + e4(d).replace('01 03 00 10', '01 13 00 10') + b2b(0, 0, 1, 0, 1), ILLEGAL('26 00', '8d 00 15')],
    ['DESIGNATOR LENGTH 21', header(0, 0x18, 32, 28) + e4(d).replace('01 03 00 10', '01 03 00 15') + b2b(0, 0, 1, 0, 1), ILLEGAL('26 00', '80 00 17')],
    ['65 segment descriptors', header(0, 0x18, 32, 65 * 28) + e4(d) + b2b(0, 0, 1, 0, 1).repeat(65), ILLEGAL('26 08', '80 00 08')],
    ['segment type 03h (stream to stream)', header(0, 0x18, 32, 28) + e4(d) + '03' + b2b(0, 0, 1, 0, 1).slice(2), ILLEGAL('26 09', '80 00 30')],
    ['segment DESCRIPTOR LENGTH 14h', header(0, 0x18, 32, 28) + e4(d) + b2b(0, 0, 1, 0, 1).replace('02 00 00 18', '02 00 00 14'), ILLEGAL('26 00', '80 00 32')],
    ['DISK BLOCK LENGTH 4096 for a 512-byte LU', header(0, 0x18, 32, 28) + e4(d, 4096) + b2b(0, 0, 1, 0, 1), ILLEGAL('26 00', '80 00 2d')],
  ];
  for (const [what, param, sense] of cases) {
    const r = xcopy(target, param);
    t.equal(toHex(r.sense), sense, what);
  }
  const zero = submit(target, { cdb: xcopyCdb(0) });
  t.equal(zero.status, 0, 'PARAMETER LIST LENGTH 0: nothing to do, GOOD');
  t.end();
});

t.test('naming copy sources and destinations: COPY ABORTED, segment number, segment pointer', (t) => {
  const { target } = setup([{}, { readOnly: true }]);
  const d = naa(target, 0);
  let r = xcopy(target, header(0, 0x18, 32, 28) + e4(d) + b2b(0, 1, 1, 0, 1));
  t.equal(toHex(r.sense), '70 00 0a 00 00 00 00 0a 00 00 00 00 08 04 00 a0 00 06',
    'CSCD index 1 of 1: UNREACHABLE COPY TARGET, pointer to the DESTINATION CSCD DESCRIPTOR ID');
  const unknown = 'aa bb cc dd ee ff 00 11 22 33 44 55 66 77 88 99';
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d) + e4(unknown) + b2b(0, 1, 1, 0, 1));
  t.equal(toHex(r.sense), '70 00 0a 00 00 00 00 0a 00 00 00 00 0d 02 00 80 00 30',
    'a designator no LU of this target has: COPY TARGET DEVICE NOT REACHABLE, pointer to its CSCD descriptor');
  r = xcopy(target, header(0, 0x18, 32, 28) + e4(d, 512, 0x01) + b2b(0, 0, 1, 0, 1));
  t.equal(toHex(r.sense), '70 00 0a 00 00 00 00 0a 00 00 00 00 0d 03 00 8c 00 11',
    'PERIPHERAL DEVICE TYPE 01h: INCORRECT COPY TARGET DEVICE TYPE, bit 4 of CSCD byte 1');
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d) + e4(naa(target, 1)) + b2b(0, 1, 1, 0, 1));
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00', 'destination write protected: DATA PROTECT');
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(naa(target, 1)) + e4(d) + b2b(0, 1, 1, 0, 1), { lun: 1 });
  t.equal(r.status, 0, 'a write-protected LU may receive the command and be the copy source');
  t.end();
});

t.test('LBA OUT OF RANGE on the copy source or destination: COPY ABORTED with the forwarded sense', (t) => {
  const { target, stores, lus } = setup([{}, {}]);
  const d0 = naa(target, 0);
  const d1 = naa(target, 1);
  fill(stores[0], 512, 0, 8, () => 0x5a);
  let r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0) + e4(d1) + b2b(0, 1, 8, 8190, 0));
  t.equal(toHex(r.sense),
    '70 00 0a 00 00 00 00 1d 12 00 00 00 00 00 00 a0 00 0c 02 ' +
    '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00',
    'source: CSI byte 0 = 18 (status + sense of the copy source), segment 0, pointer to SOURCE LBA');
  r = xcopy(target, header(0, 0x18, 64, 56) + e4(d0) + e4(d1) + b2b(0, 1, 8, 0, 0) + b2b(0, 1, 8, 0, 8185));
  t.equal(toHex(r.sense),
    '70 00 0a 00 00 00 00 1d 00 12 00 01 00 00 00 a0 00 14 02 ' +
    '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00',
    'destination: CSI byte 1 = 18, segment 1, pointer to DESTINATION LBA');
  t.equal(stores[1].data![7 * 512], 0x5a, 'segment 0 was copied before segment 1 failed');
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0) + e4(d1) + b2b(0, 1, 1, 0x1fffffffffffff, 0));
  t.equal(toHex(r.sense.subarray(12, 18)), '00 00 00 a0 00 0c', 'an LBA beyond 2^53 is out of range, no overflow');
  lus[0].descriptorSense = true;
  r = xcopy(target, header(0, 0x18, 64, 28) + e4(d0) + e4(d1) + b2b(0, 1, 8, 8190, 0));
  t.equal(toHex(r.sense),
    '72 0a 00 00 00 00 00 20 ' +
    '01 0a 00 00 00 00 00 00 00 00 00 00 ' + // command-specific information: segment 0
    '02 06 00 00 a0 00 0c 00 ' + // segment pointer
    '0c 0a 01 02 72 05 21 00 00 00 00 00', // forwarded from the copy source (descriptor format, D_SENSE=1)
    'D_SENSE=1: descriptor format with a forwarded sense data descriptor');
  t.end();
});

t.test('store errors: forwarded MEDIUM ERROR, residual in INFORMATION, the destination fails (fsyncgate)', (t) => {
  const { target, stores, lus } = setup([{ manual: true }, { manual: true }]);
  const param = header(3, 0x00, 64, 28) + e4(naa(target, 0)) + e4(naa(target, 1)) + b2b(0, 1, 3000, 0, 0);
  const r = xcopy(target, param);
  t.equal(r.completions, 0, 'in flight');
  const s = rcr(target, 0x00, 3);
  t.equal(toHex(s.data), '00 00 00 08 00 00 00 00 00 00 00 00', 'COPY STATUS while in progress');
  drive(stores, (op, n) => (n === 3 ? storeError('EIO', 'injected') : null)); // read, write, read, write fails
  t.equal(r.completions, 1);
  t.equal(toHex(r.sense),
    'f0 00 0a 00 00 03 b8 1d 00 12 00 00 00 00 00 80 00 30 02 ' +
    '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00',
    'VALID, INFORMATION = 952 destination blocks not written; WRITE ERROR forwarded from the destination');
  t.ok(lus[1].failed, 'the destination LU is in the failed state');
  t.equal(toHex(rcr(target, 0x00, 3).data), '00 00 00 08 02 00 00 00 00 10 00 00', 'completed with errors, 1 MiB written');
  const f = rcr(target, 0x04, 3);
  t.equal(toHex(f.data.subarray(0, 4)), '00 00 00 61', 'AVAILABLE DATA 97');
  t.equal(toHex(f.data.subarray(56, 64)), '00 00 00 00 02 00 00 25', 'COPY COMMAND STATUS CHECK CONDITION, 37 sense bytes');
  t.equal(toHex(f.data.subarray(64)), toHex(r.sense), 'the sense data the command returned');
  t.equal(toHex(rcr(target, 0x04, 3).sense), ILLEGAL('24 00', 'c0 00 02'),
    'status and failure details delivered: the list identifier is forgotten');
  const again = xcopy(target, header(0, 0x18, 64, 28) + e4(naa(target, 0)) + e4(naa(target, 1)) + b2b(0, 1, 1, 0, 0));
  drive(stores);
  t.equal(toHex(again.sense),
    '70 00 0a 00 00 00 00 1d 00 12 00 00 00 00 00 80 00 30 02 ' +
    '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00', 'a failed destination refuses further copies');
  t.equal(stores[1].pending().length, 0);
  const readErr = xcopy(target, header(0, 0x18, 64, 28) + e4(naa(target, 1)) + e4(naa(target, 0)) + b2b(0, 1, 1, 0, 0));
  drive(stores, () => storeError('EIO', 'bad sector'));
  t.equal(toHex(readErr.sense),
    '70 00 0a 00 00 00 00 1d 12 00 00 00 00 00 00 80 00 10 02 ' +
    '70 00 03 00 00 00 00 0a 00 00 00 00 11 00 00 00 00 00', 'read EIO: UNRECOVERED READ ERROR forwarded from the source');
  t.end();
});

t.test('write-through destination: every copy write is FUA', (t) => {
  const { target, stores } = setup([{}, { writeCache: false }]);
  const r = xcopy(target, header(0, 0x18, 64, 28) + e4(naa(target, 0)) + e4(naa(target, 1)) + b2b(0, 1, 8, 0, 0));
  t.equal(r.status, 0);
  const writes = stores[1].ops.filter((o) => o.kind === 'write');
  t.ok(writes.length === 1 && writes[0].fua, 'dsync write');
  t.end();
});

t.test('list identifiers per I_T nexus: OPERATION IN PROGRESS, held results, FAILED SEGMENT DETAILS', (t) => {
  const { target, stores } = setup([{ manual: true }, { manual: true }]);
  const lists = e4(naa(target, 0)) + e4(naa(target, 1));
  const a = xcopy(target, header(9, 0x00, 64, 28) + lists + b2b(0, 1, 8, 0, 0));
  const dup = xcopy(target, header(9, 0x00, 64, 28) + lists + b2b(0, 1, 8, 0, 0));
  t.equal(toHex(dup.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 00 16 00 00 00 00', 'same list id, same nexus: OPERATION IN PROGRESS');
  const b = xcopy(target, header(9, 0x00, 64, 28) + lists + b2b(0, 1, 8, 0, 100), { nexus: OTHER });
  t.equal(b.completions, 0, 'the same list id from another I_T nexus is another copy');
  drive(stores);
  t.equal(a.status, 0);
  t.equal(b.status, 0);
  t.equal(toHex(rcr(target, 0x04, 9).data), '00 00 00 00', 'no failure details for a successful copy');
  t.equal(toHex(rcr(target, 0x00, 9).data), '00 00 00 08 01 00 01 00 00 00 10 00');
  t.equal(toHex(rcr(target, 0x00, 9, 1024, { nexus: OTHER }).data), '00 00 00 08 01 00 01 00 00 00 10 00');
  t.equal(toHex(rcr(target, 0x00, 9).sense), ILLEGAL('24 00', 'c0 00 02'));
  // A held failed copy: status and details are discarded independently.
  const f = xcopy(target, header(4, 0x00, 64, 28) + lists + b2b(0, 1, 8, 9000, 0));
  t.equal(f.status, 2);
  t.equal(toHex(rcr(target, 0x00, 4).data), '00 00 00 08 02 00 00 00 00 00 00 00', 'completed with errors, nothing processed');
  const det = rcr(target, 0x04, 4, 70);
  t.equal(det.data.length, 70, 'truncated: details stay held');
  t.equal(toHex(rcr(target, 0x04, 4).data.subarray(64)), toHex(f.sense));
  t.equal(toHex(rcr(target, 0x04, 4).sense), ILLEGAL('24 00', 'c0 00 02'), 'both delivered: the list id is forgotten');
  t.end();
});

t.test('ABORT TASK stops a copy between store operations', (t) => {
  const { target, stores } = setup([{ manual: true }, { manual: true }]);
  const r = xcopy(target, header(2, 0x00, 64, 28) + e4(naa(target, 0)) + e4(naa(target, 1)) + b2b(0, 1, 3000, 0, 0), { tag: 7n });
  let tmf: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.ABORT_TASK, TEST_NEXUS, 0, 7n, (x) => { tmf = x; });
  t.equal(tmf, null, 'waits for the read in flight');
  stores[0].pending()[0].complete();
  t.equal(r.serviceResponse, ServiceResponse.ABORTED);
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  t.equal(stores[1].ops.length, 0, 'nothing written after the abort');
  t.equal(toHex(rcr(target, 0x00, 2).data), '00 00 00 08 02 00 00 00 00 00 00 00', 'held as completed with errors');
  t.end();
});

t.test('at most 4 copies at once; the next waits for a copy buffer', (t) => {
  const { target, stores } = setup([{ manual: true }, { manual: true }]);
  const lists = e4(naa(target, 0)) + e4(naa(target, 1));
  const rs = [0, 1, 2, 3, 4].map((i) => xcopy(target, header(0, 0x18, 64, 28) + lists + b2b(0, 1, 1, i, i)));
  t.equal(stores[0].pending('read').length, 4, 'four copies read');
  stores[0].pending('read')[0].complete();
  stores[1].pending('write')[0].complete();
  t.equal(rs[0].status, 0);
  t.equal(stores[0].pending('read').length, 4, 'the fifth started when the first finished');
  drive(stores);
  t.ok(rs.every((r) => r.completions === 1 && r.status === 0));
  t.end();
});

t.test('encodeSense: forwarded sense that does not fit 252 bytes is cut, FSDT=1 (descriptor) / length capped (fixed)', (t) => {
  const big = new Uint8Array(250).fill(0xab);
  const out = new Uint8Array(252);
  const extra = { commandSpecific: Uint8Array.of(0, 0, 0, 3), senseKeySpecific: null,
    forwarded: { source: 2, status: 0x02, sense: big } };
  let n = encodeSense(out, true, Sense.COPY_ABORTED, null, null, extra);
  t.equal(n, 252, 'descriptor format fills the 252-byte maximum');
  t.equal(toHex(out.subarray(0, 8)), '72 0a 00 00 00 00 00 f4', 'ADDITIONAL SENSE LENGTH 244');
  t.equal(toHex(out.subarray(8, 20)), '01 0a 00 00 00 00 00 03 00 00 00 00', 'segment 3 in the command-specific descriptor');
  t.equal(toHex(out.subarray(20, 24)), '0c e6 82 02', 'forwarded: 228 bytes kept, FSDT=1, copy destination, CHECK CONDITION');
  n = encodeSense(out, false, Sense.COPY_ABORTED, null, null, extra);
  t.equal(n, 252);
  t.equal(toHex(out.subarray(0, 19)), '70 00 0a 00 00 00 00 f4 00 12 00 03 00 00 00 00 00 00 02',
    'fixed: CSI byte 1 = 18 (destination), 233 forwarded bytes, ADDITIONAL SENSE LENGTH 244');
  t.end();
});

// SPC-4 §6.25 item c) (RECEIVE COPY STATUS(LID1)) and §6.23 item d) (RECEIVE COPY FAILURE
// DETAILS(LID1)): held data is discarded "if the copy manager detects a logical unit reset
// condition or I_T nexus loss condition". A discarded list identifier is unknown: INVALID
// FIELD IN CDB pointing at LIST IDENTIFIER, as for one never used.
const UNKNOWN_LIST = ILLEGAL('24 00', 'c0 00 02');
const DONE_8_BLOCKS = '00 00 00 08 01 00 01 00 00 00 10 00'; // completed without errors, 1 segment, 4096 bytes

function holdResults(target: ScsiTarget, lun: number, nexus: ITNexus, listId: number, srcLba = 0) {
  const lists = e4(naa(target, 0)) + e4(naa(target, 1));
  return xcopy(target, header(listId, 0x00, 64, 28) + lists + b2b(0, 1, 8, srcLba, 0), { lun, nexus });
}

function tmf(target: ScsiTarget, fn: TaskManagementFunction, lun: number, nexus: ITNexus = TEST_NEXUS) {
  const out: { response: TmfResponse | null } = { response: null };
  target.taskManagement(fn, nexus, lun, 0n, (r) => { out.response = r; });
  return out;
}

t.test('LOGICAL UNIT RESET discards the held results of every I_T nexus on that LU only', (t) => {
  const { target } = setup([{}, {}]);
  t.equal(holdResults(target, 0, TEST_NEXUS, 1).status, 0);
  t.equal(holdResults(target, 0, OTHER, 1).status, 0);
  t.equal(holdResults(target, 0, TEST_NEXUS, 3, 9000).status, 2, 'a failed copy: status and failure details held');
  t.equal(holdResults(target, 1, TEST_NEXUS, 2).status, 0);
  t.equal(tmf(target, TaskManagementFunction.LOGICAL_UNIT_RESET, 0).response, TmfResponse.FUNCTION_COMPLETE);
  consumeUa(target, 0, TEST_NEXUS); // 29/03 BUS DEVICE RESET FUNCTION OCCURRED
  consumeUa(target, 0, OTHER);
  t.equal(toHex(rcr(target, 0x00, 1).sense), UNKNOWN_LIST, 'this nexus: status discarded');
  t.equal(toHex(rcr(target, 0x00, 1, 1024, { nexus: OTHER }).sense), UNKNOWN_LIST, 'the other nexus: discarded too');
  t.equal(toHex(rcr(target, 0x04, 3).sense), UNKNOWN_LIST, 'failure details discarded');
  t.equal(toHex(rcr(target, 0x00, 3).sense), UNKNOWN_LIST);
  t.equal(toHex(rcr(target, 0x00, 2, 1024, { lun: 1 }).data), DONE_8_BLOCKS, 'the other LU keeps its results');
  t.end();
});

t.test('I_T NEXUS RESET discards that nexus\'s held results on every LU; other nexuses keep theirs', (t) => {
  const { target } = setup([{}, {}]);
  t.equal(holdResults(target, 0, TEST_NEXUS, 1).status, 0);
  t.equal(holdResults(target, 1, TEST_NEXUS, 2).status, 0);
  t.equal(holdResults(target, 0, OTHER, 1).status, 0);
  t.equal(holdResults(target, 1, OTHER, 2, 9000).status, 2);
  // SAM-5 §7.6: the LUN of an I_T NEXUS RESET is irrelevant.
  t.equal(tmf(target, TaskManagementFunction.I_T_NEXUS_RESET, 1).response, TmfResponse.FUNCTION_COMPLETE);
  consumeUa(target, 0, TEST_NEXUS); // 29/07 I_T NEXUS LOSS OCCURRED
  consumeUa(target, 1, TEST_NEXUS);
  t.equal(toHex(rcr(target, 0x00, 1).sense), UNKNOWN_LIST, 'LU 0');
  t.equal(toHex(rcr(target, 0x00, 2, 1024, { lun: 1 }).sense), UNKNOWN_LIST, 'LU 1');
  t.equal(toHex(rcr(target, 0x00, 1, 1024, { nexus: OTHER }).data), DONE_8_BLOCKS, 'the other nexus keeps its status');
  t.equal(toHex(rcr(target, 0x00, 2, 1024, { lun: 1, nexus: OTHER }).data), '00 00 00 08 02 00 00 00 00 00 00 00');
  t.equal(toHex(rcr(target, 0x04, 2, 1024, { lun: 1, nexus: OTHER }).data.subarray(0, 4)), '00 00 00 61',
    'and its failure details');
  t.end();
});

t.test('a new session of the initiator (nexusEstablished) is I_T nexus loss: its held results are discarded', (t) => {
  const { target } = setup([{}, {}]);
  t.equal(holdResults(target, 0, TEST_NEXUS, 1).status, 0);
  t.equal(holdResults(target, 1, TEST_NEXUS, 1, 9000).status, 2);
  t.equal(holdResults(target, 0, OTHER, 1).status, 0);
  target.nexusEstablished(TEST_NEXUS);
  consumeUa(target, 0, TEST_NEXUS); // 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
  consumeUa(target, 1, TEST_NEXUS);
  t.equal(toHex(rcr(target, 0x00, 1).sense), UNKNOWN_LIST);
  t.equal(toHex(rcr(target, 0x04, 1, 1024, { lun: 1 }).sense), UNKNOWN_LIST);
  t.equal(toHex(rcr(target, 0x00, 1, 1024, { nexus: OTHER }).data), DONE_8_BLOCKS);
  t.end();
});

t.test('a copy in progress at the reset does not bring its discarded record back when it settles', (t) => {
  const { target, stores } = setup([{ manual: true }, { manual: true }]);
  // LU reset: the copy is aborted (RESET) once its store operation returns.
  const a = holdResults(target, 0, TEST_NEXUS, 6);
  const reset = tmf(target, TaskManagementFunction.LOGICAL_UNIT_RESET, 0);
  t.equal(reset.response, null, 'the reset waits for the read in flight');
  drive(stores);
  t.equal(a.serviceResponse, ServiceResponse.RESET);
  t.equal(reset.response, TmfResponse.FUNCTION_COMPLETE);
  consumeUa(target, 0, TEST_NEXUS);
  t.equal(toHex(rcr(target, 0x00, 6).sense), UNKNOWN_LIST, 'no "completed with errors" record appears');
  // New session: the copy is not aborted; it completes, unrecorded.
  const b = holdResults(target, 0, TEST_NEXUS, 7);
  target.nexusEstablished(TEST_NEXUS);
  drive(stores);
  t.equal(b.status, 0, 'the copy itself completes');
  consumeUa(target, 0, TEST_NEXUS);
  t.equal(toHex(rcr(target, 0x00, 7).sense), UNKNOWN_LIST, 'its results were discarded with the old session');
  const c = holdResults(target, 0, TEST_NEXUS, 7);
  drive(stores);
  t.equal(c.status, 0, 'the list identifier is free again');
  t.equal(toHex(rcr(target, 0x00, 7).data), DONE_8_BLOCKS);
  t.end();
});
