// REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS (SPC-4 r37 §6.35, §6.36).
import t from 'tap';
import { COMMANDS, ScsiStatus } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { setup, toHex } from './helpers';

const RSOC = (byte2: number, op = 0, sa = 0, alloc = 8192) =>
  [0xa3, 0x0c, byte2, op, (sa >>> 8) & 0xff, sa & 0xff, (alloc >>> 24) & 0xff, (alloc >>> 16) & 0xff, (alloc >>> 8) & 0xff, alloc & 0xff, 0, 0];
const RSTMF = (byte2: number, alloc = 64) => [0xa3, 0x0d, byte2, 0, 0, 0, 0, 0, 0, alloc, 0, 0];

interface Descriptor { op: number; sa: number; servactv: boolean; ctdp: boolean; cdbLength: number; timeouts?: string }

/** Parses all_commands parameter data the way sg_opcodes does. */
function parseAll(d: Uint8Array): Descriptor[] {
  const len = ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
  const out: Descriptor[] = [];
  let p = 4;
  while (p < 4 + len) {
    const ctdp = (d[p + 5] & 0x02) !== 0;
    out.push({
      op: d[p], sa: (d[p + 2] << 8) | d[p + 3], servactv: (d[p + 5] & 0x01) !== 0, ctdp,
      cdbLength: (d[p + 6] << 8) | d[p + 7], timeouts: ctdp ? toHex(d.subarray(p + 8, p + 20)) : undefined,
    });
    p += ctdp ? 20 : 8;
  }
  t.equal(p, 4 + len, 'descriptors fill COMMAND DATA LENGTH exactly');
  return out;
}

t.test('all_commands: every row of the opcode table, in (opcode, service action) order', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: RSOC(0x00), dataIn: 8192 });
  t.equal(r.status, ScsiStatus.GOOD);
  const list = parseAll(r.data);
  t.equal(list.length, COMMANDS.length);
  t.equal(toHex(r.data.subarray(4, 12)), '00 00 00 00 00 00 00 06', 'TEST UNIT READY: opcode 00h, CDB length 6');
  for (const d of COMMANDS) {
    const e = list.find((x) => x.op === d.opcode && (d.serviceAction < 0 || x.sa === d.serviceAction));
    t.ok(e, `${d.name} listed`);
    if (e === undefined) continue;
    t.equal(e.cdbLength, d.cdbLength, `${d.name}: CDB LENGTH`);
    t.equal(e.servactv, d.serviceAction >= 0, `${d.name}: SERVACTV`);
    t.equal(e.sa, d.serviceAction >= 0 ? d.serviceAction : 0);
  }
  for (let i = 1; i < list.length; i++) {
    t.ok(list[i - 1].op < list[i].op || (list[i - 1].op === list[i].op && list[i - 1].sa < list[i].sa), 'ascending');
  }
  const self = list.find((x) => x.op === 0xa3 && x.sa === 0x0c);
  t.same(self, { op: 0xa3, sa: 0x0c, servactv: true, ctdp: false, cdbLength: 12, timeouts: undefined }, 'reports itself');
  t.end();
});

t.test('RCTD=1: a command timeouts descriptor after every command descriptor (CTDP=1)', (t) => {
  const { target } = setup();
  const r = run(target, { cdb: RSOC(0x80), dataIn: 8192 });
  const list = parseAll(r.data);
  t.equal(list.length, COMMANDS.length);
  // DESCRIPTOR LENGTH 000Ah, NOMINAL 0 (not indicated), RECOMMENDED 30 s.
  for (const e of list) t.equal(e.timeouts, '00 0a 00 00 00 00 00 00 00 00 00 1e');
  t.equal(toHex(r.data.subarray(4, 24)), '00 00 00 00 00 02 00 06 00 0a 00 00 00 00 00 00 00 00 00 1e');
  t.end();
});

t.test('one_command: 001b, 010b, 011b with the CDB USAGE DATA', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: RSOC(0x01, 0x12), dataIn: 64 });
  t.equal(toHex(r.data), '00 03 00 06 12 01 ff ff ff 00', 'INQUIRY: SUPPORT 011b, CDB SIZE 6, usage');
  r = run(target, { cdb: RSOC(0x02, 0xa3, 0x0d), dataIn: 64 });
  t.equal(toHex(r.data), '00 03 00 0c a3 0d 80 00 00 00 ff ff ff ff 00 00', 'REPORT SUPPORTED TMFs: byte 1 holds the service action');
  r = run(target, { cdb: RSOC(0x03, 0x12, 0x1234), dataIn: 64 });
  t.equal(toHex(r.data), '00 03 00 06 12 01 ff ff ff 00', '011b without service actions: REQUESTED SERVICE ACTION ignored');
  r = run(target, { cdb: RSOC(0x03, 0xa3, 0x0c), dataIn: 64 });
  t.equal(toHex(r.data.subarray(0, 8)), '00 03 00 0c a3 0c 87 ff', '011b with service actions');
  r = run(target, { cdb: RSOC(0x81, 0x00), dataIn: 64 });
  t.equal(toHex(r.data), '00 83 00 06 00 00 00 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 1e', 'RCTD: CTDP=1 and the timeouts');
  r = run(target, { cdb: RSOC(0x01, 0x01), dataIn: 64 });
  t.equal(toHex(r.data), '00 01 00 00', 'an opcode we do not implement: SUPPORT 001b');
  r = run(target, { cdb: RSOC(0x02, 0xa3, 0x1f), dataIn: 64 });
  t.equal(toHex(r.data), '00 01 00 00', 'an unimplemented service action: SUPPORT 001b');
  r = run(target, { cdb: RSOC(0x03, 0x4c), dataIn: 64 });
  t.equal(toHex(r.data), '00 01 00 00', 'LOG SELECT is not implemented');
  t.end();
});

t.test('rejections', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: RSOC(0x01, 0xa3), dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 03', '001b on an opcode with service actions');
  r = run(target, { cdb: RSOC(0x02, 0x12), dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 03', '010b on an opcode without');
  r = run(target, { cdb: RSOC(0x04), dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ca 00 02', 'reserved REPORTING OPTIONS 100b');
  r = run(target, { cdb: RSOC(0x40), dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 ce 00 02', 'reserved bit 6 of byte 2');
  r = run(target, { cdb: [0xa3, 0x0e, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cc 00 01', 'unknown MAINTENANCE IN service action');
  t.end();
});

t.test('ALLOCATION LENGTH truncates, COMMAND DATA LENGTH stays complete', (t) => {
  const { target } = setup();
  const full = run(target, { cdb: RSOC(0x00), dataIn: 8192 });
  const r = run(target, { cdb: RSOC(0x00, 0, 0, 12), dataIn: 8192 });
  t.equal(toHex(r.data), toHex(full.data.subarray(0, 12)));
  t.end();
});

t.test('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', (t) => {
  const { target } = setup();
  // ATS ATSS CTSS LURS QTS (no CLEAR ACA, no obsolete TARGET RESET / WAKEUP); QAES QTSS ITNRS.
  let r = run(target, { cdb: RSTMF(0x00), dataIn: 64 });
  t.equal(toHex(r.data), 'dc 07 00 00');
  r = run(target, { cdb: RSTMF(0x80), dataIn: 64 });
  t.equal(toHex(r.data), 'dc 07 00 0c ' + Array(12).fill('00').join(' '), 'REPCD: extended data, TMFTMOV=0');
  r = run(target, { cdb: RSTMF(0x01), dataIn: 64 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 02', 'reserved bit in byte 2');
  t.end();
});
