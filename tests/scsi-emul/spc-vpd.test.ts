// VPD 83h port designators with protocol identifiers, 86h, 87h, 88h, B0h from lu.blockLimits,
// the REPORT LUNS well known logical unit, REQUEST SENSE DESC, PREVENT ALLOW MEDIUM REMOVAL.
import t from 'tap';
import { REPORT_LUNS_WLUN, ScsiStatus } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { ascii, consumeUa, setup, toHex } from './helpers';

const INQ = (alloc: number, evpd = 0, page = 0) => [0x12, evpd, page, (alloc >>> 8) & 0xff, alloc & 0xff, 0x00];
const TUR = [0, 0, 0, 0, 0, 0];

t.test('VPD 86h extended INQUIRY data', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: INQ(255, 1, 0x86), dataIn: 255 });
  t.equal(r.data.length, 64);
  // HEADSUP ORDSUP SIMPSUP; V_SUP (volatile cache); everything else 0.
  t.equal(toHex(r.data.subarray(0, 8)), '00 86 00 3c 00 07 01 00');
  t.same(r.data.subarray(8), new Uint8Array(56));
  t.end();
});

t.test('VPD 87h mode page policy: every page shared by all I_T nexuses', (t) => {
  const { target } = setup();
  t.equal(toHex(run(target, { cdb: INQ(255, 1, 0x87), dataIn: 255 }).data), '00 87 00 04 3f ff 00 00');
  t.end();
});

t.test('VPD 83h: PIV and PROTOCOL IDENTIFIER follow the fabric; the port name is a SCSI name string', (t) => {
  const { target } = setup();
  const sas = { initiatorPort: 'sas-i', targetPortId: 1, protocolId: 6 };
  consumeUa(target, 0, sas);
  let d = run(target, { nexus: sas, cdb: INQ(255, 1, 0x83), dataIn: 255 }).data;
  const end = d.length;
  t.equal(toHex(d.subarray(end - 16)), '61 94 00 04 00 00 00 01 61 95 00 04 00 00 00 01',
    'SAS (6h): PIV=1 on the relative target port and target port group designators');
  const iscsi = { initiatorPort: 'iqn.i', targetPortId: 3, protocolId: 5, targetPortName: 'iqn.t,t,0x3', targetPortGroup: 7 };
  consumeUa(target, 0, iscsi);
  d = run(target, { nexus: iscsi, cdb: INQ(255, 1, 0x83), dataIn: 255 }).data;
  // Default 16-character serial: NAA 20, T10 4+40, LU SCSI name 44, LU group 8, then the port.
  t.equal(toHex(d.subarray(120, 136)), '51 94 00 04 00 00 00 03 51 95 00 04 00 00 00 07', 'iSCSI (5h), port 3, group 7');
  t.equal(toHex(d.subarray(136, 140)), '53 98 00 0c', 'SCSI name string: UTF-8, PIV, target port, length 12');
  t.same(d.subarray(140, 152), ascii('iqn.t,t,0x3\0'));
  t.equal(toHex(d.subarray(2, 4)), '00 94', 'page length 148');
  t.equal(d.length, 152);
  t.end();
});

t.test('invalid port attributes make the nexus invalid (service delivery failure, not a crash)', (t) => {
  const { target } = setup();
  for (const nexus of [
    { initiatorPort: 'x', targetPortId: 1, protocolId: 16 },
    { initiatorPort: 'x', targetPortId: 1, targetPortName: 'has space' },
    { initiatorPort: 'x', targetPortId: 1, targetPortGroup: 65536 },
  ]) {
    const r = run(target, { nexus, cdb: TUR });
    t.equal(r.serviceResponse, 4 /* FAILURE */);
  }
  t.end();
});

t.test('VPD 88h SCSI ports: one descriptor per target port seen', (t) => {
  const { target } = setup();
  const b = { initiatorPort: 'iqn.i', targetPortId: 2, protocolId: 5, targetPortName: 'iqn.x,t,0x2' };
  consumeUa(target, 0, b);
  const r = run(target, { cdb: INQ(255, 1, 0x88), dataIn: 255 });
  t.equal(toHex(r.data),
    '00 88 00 28 ' +
    '00 00 00 01 00 00 00 00 00 00 00 00 ' + // port 1: no TransportID, no target port descriptor
    '00 00 00 02 00 00 00 00 00 00 00 10 ' + // port 2: one 16-byte target port descriptor
    '53 98 00 0c ' + toHex(ascii('iqn.x,t,0x2')) + ' 00');
  t.end();
});

t.test('VPD B0h reports lu.blockLimits field by field', (t) => {
  const { target, lu } = setup();
  Object.assign(lu.blockLimits, {
    wsnz: true, maxCompareAndWriteLength: 0x11, optimalTransferLength: 0x22, maxPrefetchLength: 0x33,
    maxUnmapLbaCount: 0x44, maxUnmapBlockDescriptorCount: 0x55, optimalUnmapGranularity: 0x66,
    unmapGranularityAlignment: 0x77, maxWriteSameLength: 2 ** 40, maxAtomicTransferLength: 0x88, atomicAlignment: 0x99,
    atomicTransferLengthGranularity: 0xaa, maxAtomicTransferLengthWithAtomicBoundary: 0xbb, maxAtomicBoundarySize: 0xcc,
  });
  const r = run(target, { cdb: INQ(255, 1, 0xb0), dataIn: 255 });
  t.equal(toHex(r.data),
    '00 b0 00 3c 01 11 00 08 00 00 20 00 00 00 00 22 00 00 00 33 00 00 00 44 00 00 00 55 00 00 00 66 ' +
    '80 00 00 77 00 00 01 00 00 00 00 00 00 00 00 88 00 00 00 99 00 00 00 aa 00 00 00 bb 00 00 00 cc');
  t.end();
});

t.test('the REPORT LUNS well known LU (W-LUN C101h, SPC-4 §8.2)', (t) => {
  const { target } = setup();
  const lun = REPORT_LUNS_WLUN;
  let r = run(target, { lun, cdb: INQ(96), dataIn: 96 });
  t.equal(toHex(r.data.subarray(0, 8)), '1e 00 06 12 5b 00 00 02', 'PQ 000b, device type 1Eh');
  t.equal(toHex(r.data.subarray(58, 64)), '00 a0 04 60 00 00', 'no SBC-3 claim');
  r = run(target, { lun, cdb: INQ(255, 1, 0x00), dataIn: 255 });
  t.equal(toHex(r.data), '1e 00 00 02 00 83');
  r = run(target, { lun, cdb: INQ(255, 1, 0x83), dataIn: 255 });
  t.equal(toHex(r.data), '1e 83 00 10 01 14 00 04 00 00 00 01 01 15 00 04 00 00 00 01', 'port designators only');
  r = run(target, { lun, cdb: INQ(255, 1, 0x80), dataIn: 255 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');
  r = run(target, { lun, cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.data), '70 00 00 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 00', 'REQUEST SENSE: NO SENSE');
  t.equal(run(target, { lun, cdb: TUR }).status, ScsiStatus.GOOD, 'TEST UNIT READY');
  r = run(target, { lun, cdb: [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 });
  t.equal(toHex(r.data), '00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00', 'REPORT LUNS');
  for (const cdb of [[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], [0x1a, 0, 0x3f, 0, 255, 0], [0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]) {
    r = run(target, { lun, cdb, dataIn: 512 });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00', `opcode ${cdb[0].toString(16)}: INVALID COMMAND OPERATION CODE`);
  }
  r = run(target, { lun: 5000, cdb: TUR });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00', 'any other missing LUN is still not supported');
  t.end();
});

t.test('REQUEST SENSE fixed and descriptor format (DESC)', (t) => {
  const { target } = setup({ keepUa: true });
  let r = run(target, { cdb: [0x03, 0x01, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.data), '72 06 29 00 00 00 00 00', 'DESC=1: the pending POWER ON/RESET in descriptor format, and cleared');
  r = run(target, { cdb: [0x03, 0x01, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.data), '72 00 00 00 00 00 00 00', 'then NO SENSE');
  r = run(target, { cdb: [0x03, 0x00, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.data), '70 00 00 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 00', 'DESC=0: fixed');
  r = run(target, { cdb: [0x03, 0x01, 0, 0, 4, 0], dataIn: 252 });
  t.equal(toHex(r.data), '72 00 00 00', 'ALLOCATION LENGTH truncates');
  r = run(target, { cdb: [0x03, 0x02, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 01', 'reserved bit');
  t.end();
});

t.test('PREVENT ALLOW MEDIUM REMOVAL on a non-removable medium', (t) => {
  const { target } = setup();
  t.equal(run(target, { cdb: [0x1e, 0, 0, 0, 0x00, 0] }).status, ScsiStatus.GOOD, 'PREVENT 00b: allowed');
  t.equal(run(target, { cdb: [0x1e, 0, 0, 0, 0x01, 0] }).status, ScsiStatus.GOOD, 'PREVENT 01b: trivially holds');
  for (const p of [0x02, 0x03]) {
    const r = run(target, { cdb: [0x1e, 0, 0, 0, p, 0] });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 04', `PREVENT ${p.toString(2)}b is obsolete`);
  }
  const r = run(target, { cdb: [0x1e, 0, 0, 0, 0x04, 0] });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 04', 'reserved bit 2 of byte 4');
  t.end();
});
