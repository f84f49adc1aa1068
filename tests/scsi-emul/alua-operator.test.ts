// The operator's side of ALUA: ScsiTarget.setTargetPortGroups (validation, replacement),
// setTargetPortGroupState (runtime change, ASYMMETRIC ACCESS STATE CHANGED), targetPortGroups,
// and the state names shared with the configuration and Linux's sysfs.
import t from 'tap';
import {
  AluaState, ITNexus, LogicalUnit, ScsiStatus, ScsiTarget, TargetPortGroupConfig, aluaStateName, createRamStore,
  parseAluaState,
} from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { consumeUa, toHex } from './helpers';

const TUR = [0x00, 0, 0, 0, 0, 0];
const UA = (asc: number, ascq: number) =>
  `70 00 06 00 00 00 00 0a 00 00 00 00 ${asc.toString(16).padStart(2, '0')} ${ascq.toString(16).padStart(2, '0')} 00 00 00 00`;
const STANDBY_SENSE = '70 00 02 00 00 00 00 0a 00 00 00 00 04 0b 00 00 00 00';

const H1: ITNexus = { initiatorPort: 'host', targetPortId: 1 };
const H2: ITNexus = { initiatorPort: 'host', targetPortId: 2 };
const G1H1: ITNexus = { initiatorPort: 'guest-1', targetPortId: 1 };

function twoPorts(): ScsiTarget {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.addLogicalUnit(3, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
  ]);
  for (const n of [H1, H2, G1H1]) for (const lun of [0, 3]) consumeUa(target, lun, n);
  return target;
}

function tur(target: ScsiTarget, nexus: ITNexus, lun = 0): string {
  const r = run(target, { nexus, lun, cdb: TUR });
  return r.status === ScsiStatus.GOOD ? 'good' : toHex(r.sense);
}

t.test('state names: Linux sysfs access_state spellings; the parser takes those and the hyphenated ones', (t) => {
  t.equal(aluaStateName(AluaState.ACTIVE_OPTIMIZED), 'active/optimized');
  t.equal(aluaStateName(AluaState.ACTIVE_NON_OPTIMIZED), 'active/non-optimized');
  t.equal(aluaStateName(AluaState.STANDBY), 'standby');
  t.equal(aluaStateName(AluaState.UNAVAILABLE), 'unavailable');
  t.equal(aluaStateName(AluaState.OFFLINE), 'offline');
  t.equal(aluaStateName(AluaState.TRANSITIONING), 'transitioning');
  t.equal(aluaStateName(4 as AluaState), 'reserved (4h)');
  const pairs: [string, number | null][] = [
    ['active/optimized', 0x0], ['active-optimized', 0x0], ['active/non-optimized', 0x1], ['active-non-optimized', 0x1],
    ['standby', 0x2], ['unavailable', 0x3], ['offline', 0xe], ['transitioning', 0xf], ['Standby', 0x2],
    ['active', null], ['lba-dependent', null], ['', null], ['optimized', null],
  ];
  for (const [text, state] of pairs) t.equal(parseAluaState(text), state, JSON.stringify(text));
  t.equal(parseAluaState(3 as unknown as string), null, 'not a string');
  t.end();
});

t.test('targetPortGroups() reports the configuration', (t) => {
  const target = twoPorts();
  t.same(target.targetPortGroups(), [
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, preferred: false, ports: [2] },
  ]);
  t.ok(Object.isFrozen(target.targetPortGroups()[0]), 'a snapshot the caller cannot change');
  t.end();
});

t.test('operator change: 2A/06 for every known I_T nexus on every LU, the changed port\'s own included', (t) => {
  const target = twoPorts();
  target.setTargetPortGroupState(2, AluaState.STANDBY);
  for (const lun of [0, 3]) {
    for (const n of [H1, H2, G1H1]) t.equal(tur(target, n, lun), UA(0x2a, 0x06), `${n.initiatorPort}/${n.targetPortId} LU ${lun}`);
    t.equal(tur(target, H2, lun), STANDBY_SENSE, `LU ${lun}: port 2 is standby now`);
    t.equal(tur(target, H1, lun), 'good');
  }
  t.equal(target.targetPortGroups()[1].state, AluaState.STANDBY);
  // The same state again: nothing happens.
  target.setTargetPortGroupState(2, AluaState.STANDBY);
  t.equal(tur(target, H1), 'good', 'no unit attention for a no-op');
  // Back to active.
  target.setTargetPortGroupState(2, AluaState.ACTIVE_OPTIMIZED);
  t.equal(tur(target, H2), UA(0x2a, 0x06));
  t.equal(tur(target, H2), 'good');
  t.end();
});

t.test('operator change: bad group or state is a RangeError and changes nothing', (t) => {
  const target = twoPorts();
  t.throws(() => target.setTargetPortGroupState(5, AluaState.STANDBY), { name: 'RangeError', message: /no target port group 5/ });
  t.throws(() => target.setTargetPortGroupState(1, 4 as AluaState), { name: 'RangeError', message: /not an asymmetric access state/ });
  t.throws(() => target.setTargetPortGroupState(1.5, AluaState.STANDBY), RangeError);
  t.throws(() => target.setTargetPortGroupState(0, AluaState.STANDBY), RangeError, 'no group 0 while every port is listed');
  t.equal(tur(target, H1), 'good');
  t.equal(target.targetPortGroups()[0].state, AluaState.ACTIVE_OPTIMIZED);
  t.end();
});

t.test('the group of unconfigured ports is not the operator\'s to set', (t) => {
  const target = twoPorts();
  consumeUa(target, 0, { initiatorPort: 'x', targetPortId: 5 });
  t.equal(target.targetPortGroups()[0].id, 0);
  t.throws(() => target.setTargetPortGroupState(0, AluaState.ACTIVE_OPTIMIZED), { name: 'RangeError', message: /group 0 holds the ports/ });
  t.end();
});

t.test('setTargetPortGroups validation: RangeError naming the fault; the previous configuration stays', (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['not an array', { id: 1 }, /groups must be an array/],
    ['not an object', [7], /groups\[0\] must be an object/],
    ['id 0', [{ id: 0, state: 0, ports: [1] }], /groups\[0\]\.id must be an integer 1\.\.65535, got 0/],
    ['id 65536', [{ id: 65536, state: 0, ports: [1] }], /got 65536/],
    ['id not an integer', [{ id: '1', state: 0, ports: [1] }], /got "1"/],
    ['duplicate id', [{ id: 1, state: 0, ports: [1] }, { id: 1, state: 2, ports: [2] }], /group 1 is configured twice/],
    ['LBA dependent', [{ id: 1, state: 4, ports: [1] }], /group 1: 4 is not an asymmetric access state/],
    ['state as text', [{ id: 1, state: 'standby', ports: [1] }], /"standby" is not an asymmetric access state/],
    ['preferred not boolean', [{ id: 1, state: 0, preferred: 1, ports: [1] }], /preferred must be a boolean/],
    ['no ports', [{ id: 1, state: 0, ports: [] }], /ports must be a non-empty array/],
    ['ports missing', [{ id: 1, state: 0 }], /ports must be a non-empty array/],
    ['port 0', [{ id: 1, state: 0, ports: [0] }], /relative target port ids are integers 1\.\.65535, got 0/],
    ['port 65536', [{ id: 1, state: 0, ports: [65536] }], /got 65536/],
    ['port twice in a group', [{ id: 1, state: 0, ports: [1, 1] }], /group 1 lists relative target port 1 twice/],
    ['port in two groups', [{ id: 1, state: 0, ports: [1] }, { id: 2, state: 2, ports: [3, 1] }],
      /relative target port 1 is in target port groups 1 and 2/],
    ['256 ports', [{ id: 1, state: 0, ports: Array.from({ length: 256 }, (_, i) => i + 1) }], /at most 255/],
  ];
  const target = twoPorts();
  const before = target.targetPortGroups();
  for (const [what, groups, message] of cases) {
    t.throws(() => target.setTargetPortGroups(groups as TargetPortGroupConfig[]), { name: 'RangeError', message }, what);
  }
  for (const seconds of [-1, 256, 1.5, '10']) {
    t.throws(() => target.setTargetPortGroups([{ id: 1, state: 0, ports: [1] }], { implicitTransitionSeconds: seconds as number }),
      { name: 'RangeError', message: /implicitTransitionSeconds must be an integer 0\.\.255/ });
  }
  t.same(target.targetPortGroups(), before, 'nothing changed');
  t.equal(tur(target, H1), 'good', 'no unit attention');
  t.end();
});

t.test('setTargetPortGroups accepts every state this target implements, 255 ports, and ids up to 65535', (t) => {
  const target = new ScsiTarget();
  target.setTargetPortGroups([
    { id: 65535, state: AluaState.TRANSITIONING, ports: Array.from({ length: 255 }, (_, i) => i + 1) },
    { id: 2, state: AluaState.OFFLINE, ports: [300] },
  ], { implicitTransitionSeconds: 0 });
  t.same(target.targetPortGroups().map((g) => [g.id, g.state, g.ports.length]), [[2, 0xe, 1], [65535, 0xf, 255]]);
  t.end();
});

t.test('reconfiguration: only a real change raises 2A/06; a port moved to another group also gets 3F/03', (t) => {
  const target = twoPorts();
  target.setTargetPortGroups([
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
  ]);
  t.equal(tur(target, H1), 'good', 'the same configuration in another order: no unit attention');
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
  ]);
  t.equal(tur(target, H1), UA(0x2a, 0x06), 'PREF changed: initiators re-read the groups');
  t.equal(tur(target, H2), UA(0x2a, 0x06));
  for (const n of [H1, H2, G1H1]) t.equal(tur(target, n, 3), UA(0x2a, 0x06), 'on every LU');
  target.setTargetPortGroups([{ id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1, 2] }]);
  t.equal(tur(target, H2, 3), UA(0x3f, 0x03), 'port 2 moved to group 1: INQUIRY DATA HAS CHANGED (VPD 83h) first');
  t.equal(tur(target, H2, 3), UA(0x2a, 0x06), 'then ASYMMETRIC ACCESS STATE CHANGED');
  t.equal(tur(target, H2, 3), 'good', 'and port 2 is active/optimized in group 1');
  t.equal(tur(target, H1, 3), UA(0x2a, 0x06), 'port 1 stayed in its group: only 2A/06');
  t.equal(tur(target, H1, 3), 'good');
  // Dropping port 2 from the configuration: UNAVAILABLE in group 0.
  target.setTargetPortGroups([{ id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1] }]);
  t.equal(tur(target, H2), UA(0x3f, 0x03));
  t.equal(tur(target, H2), UA(0x2a, 0x06));
  t.equal(tur(target, H2), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0c 00 00 00 00');
  t.same(target.targetPortGroups().map((g) => [g.id, g.state, [...g.ports]]), [[0, 3, [2]], [1, 0, [1]]]);
  t.end();
});

t.test('configured before any initiator (at start-up): no unit attention beyond POWER ON', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1] },
    { id: 2, state: AluaState.STANDBY, ports: [2] },
  ]);
  t.equal(tur(target, H2), UA(0x29, 0x00));
  t.equal(tur(target, H2), STANDBY_SENSE);
  t.end();
});

t.test('a port first seen after the configuration takes its configured group and state', (t) => {
  const target = twoPorts();
  target.setTargetPortGroupState(2, AluaState.UNAVAILABLE);
  const late: ITNexus = { initiatorPort: 'late', targetPortId: 2 };
  t.equal(tur(target, late), UA(0x29, 0x00), 'first contact');
  t.equal(tur(target, late), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0c 00 00 00 00');
  t.end();
});
