// ALUA as the initiator reads it: standard INQUIRY TPGS, REPORT TARGET PORT GROUPS in both
// parameter data formats (SPC-4 r37 §6.37) and the VPD 83h target port group designator.
import t from 'tap';
import { AluaState, ITNexus, LogicalUnit, ScsiStatus, ScsiTarget, createRamStore } from '../../scsi-emul';
import { TEST_NEXUS, run } from '../../scsi-emul/testing';
import { consumeUa, setup, toHex } from './helpers';

const INQ = (alloc: number, evpd = 0, page = 0) => [0x12, evpd, page, (alloc >>> 8) & 0xff, alloc & 0xff, 0x00];
/** REPORT TARGET PORT GROUPS: MAINTENANCE IN A3h, byte 1 = PARAMETER DATA FORMAT << 5 | 0Ah. */
const RTPG = (format: number, alloc = 1024) =>
  [0xa3, (format << 5) | 0x0a, 0, 0, 0, 0, (alloc >>> 24) & 0xff, (alloc >>> 16) & 0xff, (alloc >>> 8) & 0xff, alloc & 0xff, 0, 0];

const PORT2: ITNexus = { initiatorPort: TEST_NEXUS.initiatorPort, targetPortId: 2 };

/** Two ports in two groups: 1 (port 1, preferred, active/optimized), 2 (port 2, active/non-optimized). */
function twoGroups(): ScsiTarget {
  const { target } = setup();
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
  ]);
  consumeUa(target, 0);
  consumeUa(target, 0, PORT2);
  return target;
}

t.test('standard INQUIRY byte 5: TPGS=11b (implicit and explicit) for a logical unit, 00b for the null LU', (t) => {
  const { target } = setup();
  let r = run(target, { cdb: INQ(96), dataIn: 96 });
  t.equal(toHex(r.data.subarray(0, 8)), '00 00 06 12 5b 30 00 02');
  r = run(target, { lun: 9, cdb: INQ(96), dataIn: 96 });
  t.equal(toHex(r.data.subarray(0, 8)), '7f 00 06 12 5b 00 00 02', 'no logical unit, no target port groups');
  t.end();
});

t.test('REPORT TARGET PORT GROUPS, length-only format (000b)', (t) => {
  const target = twoGroups();
  const r = run(target, { cdb: RTPG(0), dataIn: 1024 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data),
    '00 00 00 18 ' + // RETURN DATA LENGTH 24
    // PREF | AO; T_SUP O_SUP U_SUP S_SUP AN_SUP AO_SUP; group 1; status 00h; 1 port: port 1
    '80 cf 00 01 00 00 00 01 00 00 00 01 ' +
    // AN; group 2; port 2
    '01 cf 00 02 00 00 00 01 00 00 00 02');
  t.end();
});

t.test('REPORT TARGET PORT GROUPS, extended header (001b): FORMAT TYPE and IMPLICIT TRANSITION TIME', (t) => {
  const target = twoGroups();
  let r = run(target, { cdb: RTPG(1), dataIn: 1024 });
  t.equal(toHex(r.data),
    '00 00 00 1c 10 0a 00 00 ' + // RETURN DATA LENGTH 28 (includes bytes 4-7); format 001b; 10 s
    '80 cf 00 01 00 00 00 01 00 00 00 01 ' +
    '01 cf 00 02 00 00 00 01 00 00 00 02');
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: true, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
  ], { implicitTransitionSeconds: 60 });
  r = run(target, { cdb: RTPG(1), dataIn: 1024 });
  t.equal(toHex(r.data.subarray(0, 8)), '00 00 00 1c 10 3c 00 00', 'configured 60 s');
  t.end();
});

t.test('RTPG: ALLOCATION LENGTH truncates like every command; RETURN DATA LENGTH stays the full length', (t) => {
  const target = twoGroups();
  let r = run(target, { cdb: RTPG(0, 10), dataIn: 1024 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '00 00 00 18 80 cf 00 01 00 00');
  r = run(target, { cdb: RTPG(1, 2), dataIn: 1024 });
  t.equal(toHex(r.data), '00 00');
  r = run(target, { cdb: RTPG(0, 0), dataIn: 1024 });
  t.equal(r.status, ScsiStatus.GOOD, 'allocation length 0 is not an error');
  t.equal(r.data.length, 0);
  r = run(target, { cdb: RTPG(0, 1024), dataIn: 6 });
  t.equal(r.status, ScsiStatus.GOOD, 'a smaller buffer truncates, never OVERRUN');
  t.equal(toHex(r.data), '00 00 00 18 80 cf');
  t.equal(r.cmd.dataInTransferred, 6);
  t.end();
});

t.test('RTPG: a reserved PARAMETER DATA FORMAT is INVALID FIELD IN CDB (byte 1 bit 7)', (t) => {
  const { target } = setup();
  for (const format of [2, 3, 7]) {
    const r = run(target, { cdb: RTPG(format), dataIn: 1024 });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01', `format ${format}`);
  }
  const r = run(target, { cdb: [0xa3, 0x0a, 0x01, 0, 0, 0, 0, 0, 4, 0, 0, 0], dataIn: 1024 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 02', 'reserved byte 2');
  t.end();
});

t.test('never configured: one group 1, active/optimized, not preferred, of the ports initiators came through', (t) => {
  const { target } = setup();
  consumeUa(target, 0, { initiatorPort: 'other', targetPortId: 3 });
  const r = run(target, { cdb: RTPG(0), dataIn: 1024 });
  t.equal(toHex(r.data), '00 00 00 10 00 cf 00 01 00 00 00 02 00 00 00 01 00 00 00 03');
  t.same(target.targetPortGroups(), [{ id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: false, ports: [1, 3] }]);
  t.end();
});

t.test('never configured: a fabric\'s ITNexus.targetPortGroup places its port (VPD 83h and RTPG agree)', (t) => {
  const { target } = setup();
  const iscsi = { initiatorPort: 'iqn.i', targetPortId: 3, protocolId: 5, targetPortGroup: 7 };
  consumeUa(target, 0, iscsi);
  const r = run(target, { nexus: iscsi, cdb: RTPG(0), dataIn: 1024 });
  t.equal(toHex(r.data), '00 00 00 18 ' +
    '00 cf 00 01 00 00 00 01 00 00 00 01 ' +
    '00 cf 00 07 00 00 00 01 00 00 00 03');
  const d = run(target, { nexus: iscsi, cdb: INQ(255, 1, 0x83), dataIn: 255 }).data;
  t.equal(toHex(d.subarray(120, 136)), '51 94 00 04 00 00 00 03 51 95 00 04 00 00 00 07', 'VPD 83h: port 3, group 7');
  t.end();
});

/** The relative target port and target port group designators closing VPD 83h (virtio: PIV=0). */
function portDesignators(target: ScsiTarget, nexus: ITNexus): string {
  const d = run(target, { nexus, cdb: INQ(255, 1, 0x83), dataIn: 255 }).data;
  return toHex(d.subarray(d.length - 16));
}

t.test('configured: VPD 83h reports the configured group of the asking port, not the fabric\'s hint', (t) => {
  const { target } = setup();
  const hinted = { initiatorPort: 'h', targetPortId: 2, targetPortGroup: 7 };
  consumeUa(target, 0, hinted);
  t.equal(portDesignators(target, hinted), '01 14 00 04 00 00 00 02 01 15 00 04 00 00 00 07', 'before: the hint');
  target.setTargetPortGroups([
    { id: 10, state: AluaState.ACTIVE_OPTIMIZED, ports: [1] },
    { id: 20, state: AluaState.STANDBY, ports: [2] },
  ]);
  consumeUa(target, 0);
  consumeUa(target, 0, hinted);
  t.equal(portDesignators(target, TEST_NEXUS), '01 14 00 04 00 00 00 01 01 15 00 04 00 00 00 0a', 'port 1: group 10');
  t.equal(portDesignators(target, hinted), '01 14 00 04 00 00 00 02 01 15 00 04 00 00 00 14', 'port 2: group 20');
  // A nexus arriving later through a configured port takes the configured group too.
  const late = { initiatorPort: 'late', targetPortId: 2, targetPortGroup: 99 };
  consumeUa(target, 0, late);
  t.equal(portDesignators(target, late), '01 14 00 04 00 00 00 02 01 15 00 04 00 00 00 14');
  // The REPORT LUNS well known LU reports the same port designators.
  const w = run(target, { nexus: hinted, lun: 0xc101, cdb: INQ(255, 1, 0x83), dataIn: 255 });
  t.equal(toHex(w.data), '1e 83 00 10 01 14 00 04 00 00 00 02 01 15 00 04 00 00 00 14');
  t.end();
});

t.test('configured: a port the configuration does not list is UNAVAILABLE in group 0', (t) => {
  const { target } = setup();
  target.setTargetPortGroups([{ id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1, 4] }]);
  consumeUa(target, 0);
  const stray = { initiatorPort: 'stray', targetPortId: 9 };
  // INQUIRY and REQUEST SENSE are allowed in the unavailable state.
  consumeUa(target, 0, stray);
  t.equal(portDesignators(target, stray), '01 14 00 04 00 00 00 09 01 15 00 04 00 00 00 00', 'VPD 83h: group 0');
  const r = run(target, { nexus: stray, cdb: RTPG(0), dataIn: 1024 });
  t.equal(toHex(r.data), '00 00 00 1c ' +
    '03 cf 00 00 00 00 00 01 00 00 00 09 ' + // group 0: unavailable, port 9
    '00 cf 00 01 00 00 00 02 00 00 00 01 00 00 00 04', // group 1: ports 1 and 4 (4 configured, not seen yet)
  );
  t.equal(toHex(run(target, { nexus: stray, cdb: [0, 0, 0, 0, 0, 0] }).sense),
    '70 00 02 00 00 00 00 0a 00 00 00 00 04 0c 00 00 00 00', 'TEST UNIT READY: NOT READY, unavailable');
  t.same(target.targetPortGroups(), [
    { id: 0, state: AluaState.UNAVAILABLE, preferred: false, ports: [9] },
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, preferred: false, ports: [1, 4] },
  ]);
  t.end();
});

t.test('status codes: 00h as configured, 02h after an operator change, 01h after SET TARGET PORT GROUPS', (t) => {
  const target = twoGroups();
  const status = (): string => {
    const d = run(target, { cdb: RTPG(0), dataIn: 1024 }).data;
    return `${toHex(d.subarray(4, 10))} | ${toHex(d.subarray(16, 22))}`;
  };
  t.equal(status(), '80 cf 00 01 00 00 | 01 cf 00 02 00 00');
  target.setTargetPortGroupState(2, AluaState.STANDBY);
  consumeUa(target, 0);
  t.equal(status(), '80 cf 00 01 00 00 | 02 cf 00 02 00 02', 'group 2 standby, altered by implicit behaviour');
  const stpg = run(target, {
    cdb: [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], dataOut: Uint8Array.from([0, 0, 0, 0, 0x01, 0, 0x00, 0x02]),
  });
  t.equal(stpg.status, ScsiStatus.GOOD);
  t.equal(status(), '80 cf 00 01 00 00 | 01 cf 00 02 00 01', 'group 2 active/non-optimized, altered by SET TARGET PORT GROUPS');
  // A reconfiguration keeps the status of a group whose state it does not change.
  target.setTargetPortGroups([
    { id: 1, state: AluaState.ACTIVE_OPTIMIZED, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_NON_OPTIMIZED, ports: [2] },
  ]);
  consumeUa(target, 0);
  t.equal(status(), '00 cf 00 01 00 00 | 01 cf 00 02 00 01', 'PREF cleared; statuses kept');
  target.setTargetPortGroups([
    { id: 1, state: AluaState.STANDBY, ports: [1] },
    { id: 2, state: AluaState.ACTIVE_OPTIMIZED, ports: [2] },
  ]);
  consumeUa(target, 0);
  t.equal(status(), '02 cf 00 01 00 02 | 00 cf 00 02 00 02', 'both changed by the configuration: implicit');
  t.end();
});

t.test('two logical units share the target\'s groups', (t) => {
  const target = twoGroups();
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  consumeUa(target, 1);
  consumeUa(target, 0); // REPORTED LUNS DATA HAS CHANGED
  const a = run(target, { lun: 0, cdb: RTPG(1), dataIn: 1024 });
  const b = run(target, { lun: 1, cdb: RTPG(1), dataIn: 1024 });
  t.equal(a.status, ScsiStatus.GOOD);
  t.equal(a.data.length, 32);
  t.same(a.data, b.data);
  t.end();
});
