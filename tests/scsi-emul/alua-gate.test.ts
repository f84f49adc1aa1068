// ALUA state by command (SPC-4 r37 §5.15.2.4): which commands each asymmetric access state
// lets through a target port, and the NOT READY sense of the others.
import t from 'tap';
import { AluaState, ITNexus, LogicalUnit, ScsiStatus, ServiceResponse, ScsiTarget, createRamStore } from '../../scsi-emul';
import { TEST_NEXUS, run } from '../../scsi-emul/testing';
import { rw10, toHex } from './helpers';

const STANDBY_SENSE = '70 00 02 00 00 00 00 0a 00 00 00 00 04 0b 00 00 00 00';
const UNAVAILABLE_SENSE = '70 00 02 00 00 00 00 0a 00 00 00 00 04 0c 00 00 00 00';
const TRANSITIONING_SENSE = '70 00 02 00 00 00 00 0a 00 00 00 00 04 0a 00 00 00 00';
const OFFLINE_SENSE = '70 00 02 00 00 00 00 0a 00 00 00 00 04 12 00 00 00 00';
const UA_2A_06 = '70 00 06 00 00 00 00 0a 00 00 00 00 2a 06 00 00 00 00';

const TUR = [0x00, 0, 0, 0, 0, 0];

/** A representative command of each AluaAccess class, with what it needs to complete. */
interface Probe { name: string; cdb: number[]; dataIn?: number; dataOut?: Uint8Array }
const ALWAYS: Probe[] = [
  { name: 'INQUIRY', cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 },
  { name: 'REPORT LUNS', cdb: [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], dataIn: 16 },
  { name: 'REQUEST SENSE', cdb: [0x03, 0, 0, 0, 18, 0], dataIn: 18 },
  { name: 'REPORT TARGET PORT GROUPS', cdb: [0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], dataIn: 64 },
];
const UNAVAILABLE: Probe[] = [
  { name: 'SET TARGET PORT GROUPS (empty list)', cdb: [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], dataOut: new Uint8Array(4) },
  { name: 'REPORT SUPPORTED OPERATION CODES', cdb: [0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 0, 64, 0, 0], dataIn: 64 },
  { name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', cdb: [0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], dataIn: 4 },
];
const STANDBY: Probe[] = [
  { name: 'MODE SENSE(6)', cdb: [0x1a, 0, 0x3f, 0, 255, 0], dataIn: 255 },
  { name: 'MODE SENSE(10)', cdb: [0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0], dataIn: 256 },
  { name: 'LOG SENSE', cdb: [0x4d, 0, 0x40, 0, 0, 0, 0, 0, 64, 0], dataIn: 64 },
];
const ACTIVE: Probe[] = [
  { name: 'TEST UNIT READY', cdb: TUR },
  { name: 'READ(10)', cdb: rw10(0x28, 0, 1), dataIn: 512 },
  { name: 'WRITE(10)', cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) },
  { name: 'READ CAPACITY(10)', cdb: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8 },
  { name: 'SYNCHRONIZE CACHE(10)', cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
];

/** Port 1 (TEST_NEXUS) in group 1; port 2 in group 2, which stays active/optimized. */
function target(state: AluaState): ScsiTarget {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.setTargetPortGroups([
    { id: 1, state, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_OPTIMIZED, ports: [2] },
  ]);
  drainUa(target, TEST_NEXUS);
  return target;
}

/** Reports pending unit attentions with TEST UNIT READY (the UA gate precedes ALUA's). */
function drainUa(target: ScsiTarget, nexus: ITNexus): void {
  for (let i = 0; i < 16; i++) {
    const r = run(target, { nexus, cdb: TUR });
    if (r.status !== ScsiStatus.CHECK_CONDITION || r.sense[2] !== 0x06) return;
  }
  throw new Error('unit attentions do not drain');
}

function send(target: ScsiTarget, p: Probe, nexus: ITNexus = TEST_NEXUS) {
  return run(target, { nexus, cdb: p.cdb, dataIn: p.dataIn, dataOut: p.dataOut });
}

const CASES: [AluaState, string, string | null][] = [
  // state, name, sense of a denied command (null: everything allowed)
  [AluaState.ACTIVE_OPTIMIZED, 'active/optimized', null],
  [AluaState.ACTIVE_NON_OPTIMIZED, 'active/non-optimized', null],
  [AluaState.STANDBY, 'standby', STANDBY_SENSE],
  [AluaState.UNAVAILABLE, 'unavailable', UNAVAILABLE_SENSE],
  [AluaState.TRANSITIONING, 'transitioning', TRANSITIONING_SENSE],
  [AluaState.OFFLINE, 'offline', OFFLINE_SENSE],
];

/** Which classes each state allows: ALWAYS, UNAVAILABLE, STANDBY, ACTIVE. */
const ALLOWED: Record<number, [boolean, boolean, boolean, boolean]> = {
  [AluaState.ACTIVE_OPTIMIZED]: [true, true, true, true],
  [AluaState.ACTIVE_NON_OPTIMIZED]: [true, true, true, true],
  [AluaState.STANDBY]: [true, true, true, false],
  [AluaState.UNAVAILABLE]: [true, true, false, false],
  [AluaState.TRANSITIONING]: [true, false, false, false],
  [AluaState.OFFLINE]: [false, false, false, false],
};

for (const [state, name, denied] of CASES) {
  t.test(`${name}: the commands SPC-4 §5.15.2.4 allows, NOT READY for the others`, (t) => {
    const tg = target(state);
    const classes: [string, Probe[]][] = [['ALWAYS', ALWAYS], ['UNAVAILABLE', UNAVAILABLE], ['STANDBY', STANDBY], ['ACTIVE', ACTIVE]];
    classes.forEach(([cls, probes], i) => {
      for (const p of probes) {
        const r = send(tg, p);
        t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
        if (ALLOWED[state][i]) {
          t.equal(r.status, ScsiStatus.GOOD, `${name}: ${p.name} (${cls}) allowed`);
        } else {
          t.equal(r.status, ScsiStatus.CHECK_CONDITION, `${name}: ${p.name} (${cls}) refused`);
          t.equal(toHex(r.sense), denied, `${name}: ${p.name} sense`);
          t.equal(r.cmd.dataInTransferred, 0, 'no data');
        }
      }
    });
    // Another port in another group is unaffected.
    const other = { initiatorPort: TEST_NEXUS.initiatorPort, targetPortId: 2 };
    drainUa(tg, other);
    t.equal(send(tg, ACTIVE[1], other).status, ScsiStatus.GOOD, 'READ(10) through the active/optimized port 2');
    t.end();
  });
}

t.test('a command the state does not allow never reaches the store', (t) => {
  const tg = target(AluaState.STANDBY);
  const data = new Uint8Array(512).fill(0xaa);
  t.equal(toHex(run(tg, { cdb: rw10(0x2a, 0, 1), dataOut: data }).sense), STANDBY_SENSE);
  const other = { initiatorPort: 'other-host', targetPortId: 2 };
  drainUa(tg, other);
  const r = run(tg, { nexus: other, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(r.data, new Uint8Array(512), 'read through the active port: the refused WRITE left the medium alone');
  t.end();
});

t.test('an unknown opcode, a bad service action or a CDB error through a standby port: the ALUA state first', (t) => {
  const tg = target(AluaState.STANDBY);
  t.equal(toHex(run(tg, { cdb: [0x02, 0, 0, 0, 0, 0] }).sense), STANDBY_SENSE, 'opcode 02h (not supported)');
  t.equal(toHex(run(tg, { cdb: [0xa3, 0x1f, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], dataIn: 8 }).sense), STANDBY_SENSE,
    'MAINTENANCE IN service action 1Fh');
  t.equal(toHex(run(tg, { cdb: [0x28, 0, 0, 0, 0, 0, 0x20, 0, 1, 0], dataIn: 512 }).sense), STANDBY_SENSE,
    'READ(10) with a reserved bit: the gate comes before the held-back CDB error');
  // An allowed command with a CDB error gets the CDB error.
  t.equal(toHex(run(tg, { cdb: [0x1a, 0, 0x3f, 0, 255, 0x01], dataIn: 255 }).sense),
    '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 05', 'MODE SENSE(6) with NACA: INVALID FIELD IN CDB byte 5 bit 0');
  t.end();
});

t.test('a pending unit attention is reported before the ALUA state', (t) => {
  const tg = target(AluaState.ACTIVE_OPTIMIZED);
  tg.setTargetPortGroupState(1, AluaState.STANDBY);
  let r = run(tg, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), UA_2A_06, 'ASYMMETRIC ACCESS STATE CHANGED first');
  r = run(tg, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), STANDBY_SENSE, 'then the state');
  t.end();
});

t.test('descriptor-format sense (D_SENSE=1) for a refused command', (t) => {
  const tg = target(AluaState.UNAVAILABLE);
  tg.getLogicalUnit(0)!.descriptorSense = true;
  t.equal(toHex(run(tg, { cdb: TUR }).sense), '72 02 04 0c 00 00 00 00');
  t.end();
});

t.test('commands to a LUN with no logical unit are not subject to ALUA', (t) => {
  const tg = target(AluaState.OFFLINE);
  const r = run(tg, { lun: 7, cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.data[0], 0x7f, 'peripheral qualifier 011b: the null LU answers');
  t.equal(toHex(run(tg, { lun: 7, cdb: TUR }).sense), '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00');
  t.end();
});
