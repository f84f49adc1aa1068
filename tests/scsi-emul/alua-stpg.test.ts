// SET TARGET PORT GROUPS (MAINTENANCE OUT A4h / 0Ah, SPC-4 r37 §6.45): explicit transitions,
// parameter-list validation (every fault before any change), unit attentions to the other
// I_T nexuses.
import t from 'tap';
import { AluaState, ITNexus, LogicalUnit, ScsiStatus, ScsiTarget, ServiceResponse, createRamStore } from '../../scsi-emul';
import { TEST_NEXUS, run } from '../../scsi-emul/testing';
import { consumeUa, hex, toHex } from './helpers';

const STPG = (len: number) =>
  [0xa4, 0x0a, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff, 0, 0];
const TUR = [0x00, 0, 0, 0, 0, 0];
const UA_2A_06 = '70 00 06 00 00 00 00 0a 00 00 00 00 2a 06 00 00 00 00';
const LENGTH_ERROR = '70 00 05 00 00 00 00 0a 00 00 00 00 1a 00 00 00 00 00';
/** INVALID FIELD IN PARAMETER LIST, field pointer (C/D=0) at byte `b`, bit `bit` (BPV) if given. */
const FIELD = (b: number, bit?: number) => toHex(Uint8Array.from([
  0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x26, 0x00, 0,
  0x80 | (bit !== undefined ? 0x08 | bit : 0), (b >>> 8) & 0xff, b & 0xff,
]));

const A1: ITNexus = { initiatorPort: 'host-a', targetPortId: 1 };
const A2: ITNexus = { initiatorPort: 'host-a', targetPortId: 2 };
const B1: ITNexus = { initiatorPort: 'host-b', targetPortId: 1 };
const B3: ITNexus = { initiatorPort: 'host-b', targetPortId: 3 };

/**
 * Two LUs; group 1 (port 1, active/optimized), 2 (port 2, standby), 3 (port 3, unavailable).
 * Initiator A comes through ports 1 and 2, B through ports 1 and 3; every unit attention consumed.
 */
function fixture(): ScsiTarget {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
    { id: 2, state: AluaState.STANDBY, ports: [2] },
    { id: 3, state: AluaState.UNAVAILABLE, ports: [3] },
  ]);
  for (const n of [A1, A2, B1, B3]) for (const lun of [0, 1]) consumeUa(target, lun, n);
  return target;
}

function stpg(target: ScsiTarget, list: string, nexus: ITNexus = A1, len?: number) {
  const data = hex(list);
  return run(target, { nexus, cdb: STPG(len ?? data.length), dataOut: data });
}

function states(target: ScsiTarget): string {
  return target.targetPortGroups().map((g) => `${g.id}:${g.state}`).join(' ');
}

/** The sense of TEST UNIT READY on (nexus, lun), or 'good'. */
function tur(target: ScsiTarget, nexus: ITNexus, lun = 0): string {
  const r = run(target, { nexus, lun, cdb: TUR });
  return r.status === ScsiStatus.GOOD ? 'good' : toHex(r.sense);
}

t.test('sets the named groups; the sender\'s nexus gets no unit attention, every other nexus 2A/06 on every LU', (t) => {
  const target = fixture();
  // Group 2 → active/optimized, group 1 → standby.
  const r = stpg(target, '00 00 00 00  00 00 00 02  02 00 00 01');
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(r.cmd.dataOutTransferred, 12);
  t.equal(states(target), '1:2 2:0 3:3');
  for (const lun of [0, 1]) {
    t.equal(tur(target, A1, lun), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0b 00 00 00 00',
      `LU ${lun}: the sender has no UA; its port is standby now`);
    t.equal(tur(target, A2, lun), UA_2A_06, `LU ${lun}: the same initiator through another port`);
    t.equal(tur(target, A2, lun), 'good', `LU ${lun}: port 2 active/optimized`);
    t.equal(tur(target, B1, lun), UA_2A_06, `LU ${lun}: another initiator through the sender's port`);
    t.equal(tur(target, B3, lun), UA_2A_06, `LU ${lun}: another initiator through another port`);
  }
  t.end();
});

t.test('allowed through standby and unavailable ports (SPC-4 §5.15.2.4.4-5)', (t) => {
  const target = fixture();
  t.equal(stpg(target, '00 00 00 00  00 00 00 02', A2).status, ScsiStatus.GOOD, 'through standby port 2');
  t.equal(states(target), '1:0 2:0 3:3');
  t.equal(tur(target, B3), UA_2A_06, 'B learns of the change first');
  t.equal(stpg(target, '00 00 00 00  01 00 00 03', B3).status, ScsiStatus.GOOD, 'through unavailable port 3');
  t.equal(states(target), '1:0 2:0 3:1');
  t.end();
});

t.test('a group already in the requested state: GOOD, no change, no unit attention', (t) => {
  const target = fixture();
  t.equal(stpg(target, '00 00 00 00  00 00 00 01  02 00 00 02').status, ScsiStatus.GOOD);
  t.equal(states(target), '1:0 2:2 3:3');
  t.equal(tur(target, B1), 'good');
  t.end();
});

t.test('PARAMETER LIST LENGTH 0: nothing transferred, nothing changed (not an error)', (t) => {
  const target = fixture();
  const r = run(target, { nexus: A1, cdb: STPG(0) });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(states(target), '1:0 2:2 3:3');
  t.equal(stpg(target, '00 00 00 00').status, ScsiStatus.GOOD, 'a header without descriptors');
  t.equal(tur(target, B1), 'good');
  t.end();
});

t.test('a list that cuts the header or a descriptor short: PARAMETER LIST LENGTH ERROR', (t) => {
  const target = fixture();
  for (const len of [1, 2, 3, 5, 6, 7, 9, 11]) {
    const r = run(target, { nexus: A1, cdb: STPG(len), dataOut: new Uint8Array(len) });
    t.equal(toHex(r.sense), LENGTH_ERROR, `length ${len}`);
  }
  t.equal(states(target), '1:0 2:2 3:3');
  t.end();
});

t.test('PARAMETER LIST LENGTH beyond the maximum transfer: INVALID FIELD IN CDB (byte 6)', (t) => {
  const target = fixture();
  const r = run(target, { nexus: A1, cdb: STPG(0x01000004), dataOut: new Uint8Array(8) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 06');
  t.end();
});

t.test('more data-out than the buffer holds: OVERRUN, the command is not delivered', (t) => {
  const target = fixture();
  const r = run(target, { nexus: A1, cdb: STPG(8), dataOut: new Uint8Array(4) });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN);
  t.equal(states(target), '1:0 2:2 3:3');
  t.end();
});

t.test('reserved CDB bytes: INVALID FIELD IN CDB', (t) => {
  const target = fixture();
  const cdb = STPG(8);
  cdb[2] = 0x80;
  const r = run(target, { nexus: A1, cdb, dataOut: new Uint8Array(8) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 02');
  t.end();
});

t.test('parameter list faults: INVALID FIELD IN PARAMETER LIST with a field pointer; nothing changes', (t) => {
  const cases: [string, string, string][] = [
    ['reserved header byte 0', '80 00 00 00  00 00 00 02', FIELD(0, 7)],
    ['reserved header byte 3', '00 00 00 01  00 00 00 02', FIELD(3, 0)],
    ['reserved bits 7-4 of the state byte', '00 00 00 00  20 00 00 02', FIELD(4, 5)],
    ['LBA dependent (4h)', '00 00 00 00  04 00 00 02', FIELD(4, 3)],
    ['offline (Eh) is not requested through SET TARGET PORT GROUPS', '00 00 00 00  0e 00 00 02', FIELD(4, 3)],
    ['transitioning (Fh) is the target\'s own', '00 00 00 00  0f 00 00 02', FIELD(4, 3)],
    ['reserved state 5h', '00 00 00 00  05 00 00 02', FIELD(4, 3)],
    ['reserved descriptor byte 1', '00 00 00 00  00 01 00 02', FIELD(5, 0)],
    ['unknown group 9', '00 00 00 00  00 00 00 09', FIELD(6)],
    ['group 0 (ports the configuration does not list)', '00 00 00 00  00 00 00 00', FIELD(6)],
    ['group 2 named twice', '00 00 00 00  00 00 00 02  01 00 00 02', FIELD(10)],
    ['a valid descriptor, then a fault: nothing applied', '00 00 00 00  00 00 00 02  03 00 00 03  00 00 00 07', FIELD(14)],
  ];
  for (const [what, list, sense] of cases) {
    const target = fixture();
    const r = stpg(target, list);
    t.equal(r.status, ScsiStatus.CHECK_CONDITION, what);
    t.equal(toHex(r.sense), sense, what);
    t.equal(states(target), '1:0 2:2 3:3', `${what}: no group changed`);
    t.equal(tur(target, B1), 'good', `${what}: no unit attention`);
  }
  t.end();
});

t.test('a list naming more descriptors than there are groups is refused at the first repeat', (t) => {
  const target = fixture();
  let list = '00 00 00 00';
  for (let i = 0; i < 200; i++) list += ' 00 00 00 01';
  const r = stpg(target, list);
  t.equal(toHex(r.sense), FIELD(10), 'the second descriptor repeats group 1');
  t.end();
});

t.test('groups the operator holds: offline cannot be set, transitioning answers NOT READY 04/0A (retry)', (t) => {
  const target = fixture();
  target.setTargetPortGroupState(3, AluaState.OFFLINE);
  consumeUa(target, 0, A1);
  let r = stpg(target, '00 00 00 00  00 00 00 03');
  t.equal(toHex(r.sense), FIELD(6), 'offline group 3');
  target.setTargetPortGroupState(3, AluaState.TRANSITIONING);
  consumeUa(target, 0, A1);
  r = stpg(target, '00 00 00 00  00 00 00 02  00 00 00 03');
  t.equal(toHex(r.sense), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0a 00 00 00 00', 'transitioning group 3');
  t.equal(states(target), '1:0 2:2 3:15', 'group 2 not changed either');
  t.end();
});

t.test('never configured: the default groups can be set too', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  const other: ITNexus = { initiatorPort: 'h', targetPortId: 2, targetPortGroup: 2 };
  consumeUa(target, 0, TEST_NEXUS);
  consumeUa(target, 0, other);
  t.equal(stpg(target, '00 00 00 00  02 00 00 02', TEST_NEXUS).status, ScsiStatus.GOOD);
  t.equal(states(target), '1:0 2:2');
  t.equal(tur(target, other), UA_2A_06);
  t.equal(tur(target, other), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0b 00 00 00 00');
  t.end();
});

t.test('REPORT SUPPORTED OPERATION CODES describes both ALUA commands', (t) => {
  const target = fixture();
  const one = (op: number, sa: number) => run(target, {
    nexus: A1, cdb: [0xa3, 0x0c, 0x02, op, 0, sa, 0, 0, 0, 64, 0, 0], dataIn: 64,
  });
  t.equal(toHex(one(0xa3, 0x0a).data), '00 03 00 0c a3 ea 00 00 00 00 ff ff ff ff 00 00',
    'RTPG: byte 1 = PARAMETER DATA FORMAT bits and the service action');
  t.equal(toHex(one(0xa4, 0x0a).data), '00 03 00 0c a4 0a 00 00 00 00 ff ff ff ff 00 00', 'STPG');
  t.end();
});
