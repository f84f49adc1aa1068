import t from 'tap';
import { LogicalUnit, ScsiStatus, ServiceResponse, createRamStore } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { ascii, hex, setup, toHex } from './helpers';

const INQ = (alloc: number, evpd = 0, page = 0) => [0x12, evpd, page, (alloc >>> 8) & 0xff, alloc & 0xff, 0x00];

t.test('standard INQUIRY data (SPC-4 §6.6.2)', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: INQ(96), dataIn: 96 });
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.data.length, 96);
  // PDT 00h disk, RMB 0, VERSION 06h (SPC-4), HISUP|RDF 2, ADDITIONAL LENGTH 91, TPGS 11b (SPC-4 §6.6.2: implicit and explicit ALUA), CmdQue.
  t.equal(toHex(r.data.subarray(0, 8)), '00 00 06 12 5b 30 00 02');
  t.same(r.data.subarray(8, 16), ascii('VHOST-TS'), 'T10 vendor id');
  t.same(r.data.subarray(16, 32), ascii('vhost-scsi-ts   '), 'product id, space padded');
  t.same(r.data.subarray(32, 36), ascii('0.1 '), 'revision, space padded');
  t.same(r.data.subarray(36, 58), new Uint8Array(22), 'vendor specific / reserved bytes are zero');
  // Version descriptors: SAM-5 00A0h, SPC-4 0460h, SBC-3 04C0h.
  t.equal(toHex(r.data.subarray(58, 66)), '00 a0 04 60 04 c0 00 00');
  t.same(r.data.subarray(66, 96), new Uint8Array(30));
  t.end();
});

t.test('configured identity is reported space padded', (t) => {
  const target = setup().target;
  const lu = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), {
    identity: { vendor: 'ACME', product: 'Disk', revision: '7', serial: 'SER123' },
  });
  target.addLogicalUnit(5, lu);
  const r = run(target, { lun: 5, cdb: INQ(36), dataIn: 36 });
  t.same(r.data.subarray(8, 36), ascii('ACME    Disk            7   '));
  t.end();
});

t.test('ALLOCATION LENGTH clamps, a small buffer truncates (never OVERRUN)', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: INQ(36), dataIn: 96 });
  t.equal(r.data.length, 36);
  t.equal(r.cmd.dataInTransferred, 36, 'residual = 96 - 36');
  t.equal(r.data[4], 0x5b, 'ADDITIONAL LENGTH still describes the full data');
  r = run(target, { cdb: INQ(5), dataIn: 96 });
  t.equal(toHex(r.data), '00 00 06 12 5b');
  r = run(target, { cdb: INQ(0), dataIn: 96 });
  t.equal(r.status, ScsiStatus.GOOD, 'allocation length 0 is not an error');
  t.equal(r.data.length, 0);
  r = run(target, { cdb: INQ(96), dataIn: 20 });
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(r.data.length, 20);
  r = run(target, { cdb: INQ(96), dataIn: [new Uint8Array(3), new Uint8Array(5), new Uint8Array(100)] });
  t.equal(toHex(r.data.subarray(0, 8)), '00 00 06 12 5b 30 00 02', 'segmented data-in');
  t.end();
});

t.test('EVPD=0 with a page code is INVALID FIELD IN CDB (byte 2)', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: INQ(96, 0, 0x80), dataIn: 96 });
  t.equal(r.status, ScsiStatus.CHECK_CONDITION);
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');
  t.equal(r.data.length, 0);
  t.end();
});

t.test('reserved and unsupported CDB bits are INVALID FIELD with a bit pointer', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: [0x12, 0x02, 0x00, 0x00, 0x60, 0x00], dataIn: 96 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 01', 'CMDDT (obsolete): byte 1 bit 1');
  r = run(target, { cdb: [0x12, 0x00, 0x00, 0x00, 0x60, 0x04], dataIn: 96 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 05', 'NACA=1: byte 5 bit 2');
  r = run(target, { cdb: [0x12, 0x00, 0x00, 0x00, 0x60, 0x01], dataIn: 96 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 05', 'LINK=1: byte 5 bit 0');
  t.end();
});

t.test('VPD 00h supported pages', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: INQ(255, 1, 0x00), dataIn: 255 });
  t.equal(toHex(r.data), '00 00 00 0a 00 80 83 86 87 88 8f b0 b1 b2', 'generated from the VPD table, ascending');
  t.end();
});

t.test('VPD 80h unit serial number', (t) => {
  const target = setup().target;
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { identity: { serial: 'SER123' } }));
  const r = run(target, { lun: 1, cdb: INQ(255, 1, 0x80), dataIn: 255 });
  t.equal(toHex(r.data), '00 80 00 06 53 45 52 31 32 33');
  const { target: t2, lu } = setup({ lu: { name: 'disk-a' } });
  const r2 = run(t2, { cdb: INQ(255, 1, 0x80), dataIn: 255 });
  t.equal(r2.data[3], 16, 'default serial: 16 characters');
  t.match(String.fromCharCode(...r2.data.subarray(4)), /^[0-9A-F]{16}$/);
  t.equal(lu.identity.serial, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { name: 'disk-a' }).identity.serial,
    'derived stably from the LU name');
  t.not(lu.identity.serial, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { name: 'disk-b' }).identity.serial);
  t.end();
});

t.test('VPD 83h device identification', (t) => {
  const target = setup().target;
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }),
    { identity: { serial: 'SER123', naaOui: 0xabcdef } }));
  const nexus = { initiatorPort: 'vm', targetPortId: 2 };
  run(target, { lun: 1, nexus, cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 }); // consume 29/00
  const r = run(target, { lun: 1, nexus, cdb: INQ(255, 1, 0x83), dataIn: 255 });
  const d = r.data;
  t.equal(toHex(d.subarray(0, 4)), '00 83 00 7a', 'page length 122 = 20 + (4 + 30) + 44 + 8 + 8 + 8');
  // NAA: binary, LU association, type 3, length 16; NAA 6h + company id ABCDEFh.
  t.equal(toHex(d.subarray(4, 8)), '01 03 00 10');
  t.equal(d[8], 0x6a);
  t.equal(d[9], 0xbc);
  t.equal(d[10], 0xde);
  t.equal(d[11] >>> 4, 0xf);
  // T10 vendor id: ASCII, type 1, vendor + product + serial.
  t.equal(toHex(d.subarray(24, 28)), '02 01 00 1e');
  t.same(d.subarray(28, 58), ascii('VHOST-TSvhost-scsi-ts   SER123'));
  // SCSI name string "naa." + the NAA in upper-case hex: UTF-8, LU association, type 8,
  // 36 characters + terminator padded to 40 (SPC-4 §7.8.6.11).
  t.equal(toHex(d.subarray(58, 62)), '03 08 00 28');
  const naaHex = Array.from(d.subarray(8, 24), (x) => x.toString(16).padStart(2, '0').toUpperCase()).join('');
  t.same(d.subarray(62, 98), ascii('naa.' + naaHex));
  t.same(d.subarray(98, 102), new Uint8Array(4), 'null terminated and padded');
  // Logical unit group 0: binary, LU association, type 6 (SPC-4 §7.8.6.8).
  t.equal(toHex(d.subarray(102, 110)), '01 06 00 04 00 00 00 00');
  // Relative target port 2: binary, PIV=0 (virtio has no protocol id), target port association, type 4.
  t.equal(toHex(d.subarray(110, 118)), '01 14 00 04 00 00 00 02');
  // Target port group 1: type 5 (SPC-4 §7.8.6.7).
  t.equal(toHex(d.subarray(118, 126)), '01 15 00 04 00 00 00 01');
  t.equal(d.length, 126);

  const again = run(target, { lun: 1, nexus, cdb: INQ(255, 1, 0x83), dataIn: 255 });
  t.same(again.data.subarray(8, 24), d.subarray(8, 24), 'NAA designator is stable');
  const other = setup({ lu: { identity: { serial: 'SER124', naaOui: 0xabcdef } } });
  const o = run(other.target, { cdb: INQ(255, 1, 0x83), dataIn: 255 });
  t.notSame(o.data.subarray(8, 24), d.subarray(8, 24), 'a different serial gives a different NAA');
  t.end();
});

t.test('VPD B0h block limits, B1h characteristics, B2h provisioning', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: INQ(255, 1, 0xb0), dataIn: 255 });
  t.equal(r.data.length, 64);
  // OPTIMAL TRANSFER LENGTH GRANULARITY 8 (4 KiB), MAXIMUM TRANSFER LENGTH 8192 (4 MiB / 512);
  // the other fields come from lu.blockLimits (tests/scsi-emul/spc-vpd.test.ts checks the mapping).
  t.equal(toHex(r.data.subarray(0, 4)), '00 b0 00 3c');
  t.equal(toHex(r.data.subarray(6, 12)), '00 08 00 00 20 00');
  r = run(target, { cdb: INQ(255, 1, 0xb1), dataIn: 255 });
  t.equal(toHex(r.data.subarray(0, 8)), '00 b1 00 3c 00 01 00 00', 'MEDIUM ROTATION RATE 1: non-rotating');
  t.equal(r.data.length, 64);
  r = run(target, { cdb: INQ(255, 1, 0xb2), dataIn: 255 });
  t.equal(toHex(r.data.subarray(0, 4)), '00 b2 00 04', 'DP=0: page length 4');

  const big = setup({ lu: { blockSize: 4096 }, target: { maxTransferBytes: 1 << 20 } });
  r = run(big.target, { cdb: INQ(255, 1, 0xb0), dataIn: 255 });
  t.equal(toHex(r.data.subarray(6, 12)), '00 01 00 00 01 00', '4096-byte blocks: granularity 1, 256 blocks');
  t.end();
});

t.test('unsupported VPD page is INVALID FIELD IN CDB', (t) => {
  const { target } = setup();
  for (const page of [0x01, 0x89, 0xb3, 0xff]) {
    const r = run(target, { cdb: INQ(255, 1, page), dataIn: 255 });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02', `page ${page.toString(16)}`);
  }
  t.end();
});

t.test('INQUIRY with a data-out buffer is an OVERRUN (wrong direction)', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: INQ(96), dataOut: new Uint8Array(96) });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN);
  t.end();
});

t.test('LUN with no logical unit: PQ 011b, type 1Fh', (t) => {
  const { target } = setup();
  const r = run(target, { lun: 9, cdb: INQ(96), dataIn: 96 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data.subarray(0, 8)), '7f 00 06 12 5b 00 00 02');
  t.equal(toHex(r.data.subarray(58, 64)), '00 a0 04 60 00 00', 'no SBC-3 claim without a block device');
  const v = run(target, { lun: 9, cdb: INQ(255, 1, 0x00), dataIn: 255 });
  t.equal(toHex(v.data), '7f 00 00 01 00');
  const bad = run(target, { lun: 9, cdb: INQ(255, 1, 0x83), dataIn: 255 });
  t.equal(toHex(bad.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');
  t.same(hex('7f'), r.data.subarray(0, 1));
  t.end();
});
