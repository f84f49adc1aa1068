// Unit attention life cycle (SAM-5 §5.14, reliability.md §4.8 and V7.13).
import t from 'tap';
import {
  LogicalUnit, ScsiStatus, ScsiTarget, TaskManagementFunction, TmfResponse, createRamStore,
} from '../../scsi-emul';
import { TEST_NEXUS, run } from '../../scsi-emul/testing';
import { consumeUa, setup, toHex } from './helpers';

const TUR = [0x00, 0, 0, 0, 0, 0];
const RS = (desc = 0) => [0x03, desc, 0, 0, 252, 0];
const INQ = [0x12, 0, 0, 0, 36, 0];
const RL = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const UA = (asc: number, ascq: number) =>
  `70 00 06 00 00 00 00 0a 00 00 00 00 ${asc.toString(16).padStart(2, '0')} ${ascq.toString(16).padStart(2, '0')} 00 00 00 00`;
const NO_SENSE = '70 00 00 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 00';

function fresh(): { target: ScsiTarget; lu: LogicalUnit } {
  const target = new ScsiTarget();
  const lu = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }));
  target.addLogicalUnit(0, lu);
  return { target, lu };
}

function tmf(target: ScsiTarget, fn: TaskManagementFunction, lun = 0, nexus = TEST_NEXUS): TmfResponse {
  let resp: TmfResponse | undefined;
  target.taskManagement(fn, nexus, lun, 0n, (r) => (resp = r));
  if (resp === undefined) throw new Error('TMF did not complete');
  return resp;
}

t.test('first command after nexusEstablished gets 29/00, once', (t) => {
  const { target } = fresh();
  target.nexusEstablished(TEST_NEXUS);
  let r = run(target, { cdb: TUR });
  t.equal(r.status, ScsiStatus.CHECK_CONDITION);
  t.equal(toHex(r.sense), UA(0x29, 0x00));
  r = run(target, { cdb: TUR });
  t.equal(r.status, ScsiStatus.GOOD, 'reported once, then cleared (UA_INTLCK_CTRL=00b)');
  t.end();
});

t.test('first contact without nexusEstablished also reports 29/00', (t) => {
  const { target } = fresh();
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00));
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD);
  t.end();
});

t.test('INQUIRY and REPORT LUNS neither report nor clear a UA', (t) => {
  const { target } = fresh();
  target.nexusEstablished(TEST_NEXUS);
  t.equal(run(target, { cdb: INQ, dataIn: 36 }).status, ScsiStatus.GOOD);
  t.equal(run(target, { cdb: RL, dataIn: 256 }).status, ScsiStatus.GOOD);
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00), 'still pending');
  t.end();
});

t.test('REQUEST SENSE returns the UA as data and clears it', (t) => {
  const { target } = fresh();
  target.nexusEstablished(TEST_NEXUS);
  let r = run(target, { cdb: RS(), dataIn: 252 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), UA(0x29, 0x00));
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD);
  r = run(target, { cdb: RS(), dataIn: 252 });
  t.equal(toHex(r.data), NO_SENSE, 'then NO SENSE');
  target.nexusEstablished(TEST_NEXUS);
  r = run(target, { cdb: RS(1), dataIn: 252 });
  t.equal(toHex(r.data), '72 06 29 00 00 00 00 00', 'DESC=1: descriptor format');
  r = run(target, { cdb: RS(1), dataIn: 252 });
  t.equal(toHex(r.data), '72 00 00 00 00 00 00 00');
  target.nexusEstablished(TEST_NEXUS);
  r = run(target, { cdb: [0x03, 0, 0, 0, 0, 0], dataIn: 252 });
  t.equal(r.data.length, 0, 'ALLOCATION LENGTH 0 transfers nothing...');
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD, '...but the UA is cleared all the same');
  r = run(target, { cdb: [0x03, 0x02, 0, 0, 252, 0], dataIn: 252 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 01', 'reserved bit in REQUEST SENSE');
  t.end();
});

t.test('UAs are kept per I_T nexus and per LU', (t) => {
  const { target } = fresh();
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  const other = { initiatorPort: TEST_NEXUS.initiatorPort, targetPortId: 2 };
  target.nexusEstablished(TEST_NEXUS);
  target.nexusEstablished(other);
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00));
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD);
  t.equal(toHex(run(target, { lun: 1, cdb: TUR }).sense), UA(0x29, 0x00), 'LU 1 keeps its own');
  t.equal(toHex(run(target, { nexus: other, cdb: TUR }).sense), UA(0x29, 0x00), 'another target port is another nexus');
  const sameIdentity = { initiatorPort: TEST_NEXUS.initiatorPort, targetPortId: 1 };
  t.equal(run(target, { nexus: sameIdentity, cdb: TUR }).status, ScsiStatus.GOOD, 'nexus identity is by value');
  t.end();
});

t.test('a repeated establishment is not queued twice', (t) => {
  const { target } = fresh();
  target.nexusEstablished(TEST_NEXUS);
  target.nexusEstablished(TEST_NEXUS);
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00));
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD);
  t.end();
});

t.test('priority: 29/00 before 29/03 before 29/07 before the rest, oldest first among those', (t) => {
  const { target } = setup();
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }))); // 3F/0E on LU 0
  t.equal(tmf(target, TaskManagementFunction.I_T_NEXUS_RESET), TmfResponse.FUNCTION_COMPLETE); // 29/07
  t.equal(tmf(target, TaskManagementFunction.LOGICAL_UNIT_RESET), TmfResponse.FUNCTION_COMPLETE); // 29/03
  target.nexusEstablished(TEST_NEXUS); // 29/00
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = run(target, { cdb: TUR });
    seen.push(r.status === ScsiStatus.GOOD ? 'GOOD' : toHex(r.sense.subarray(12, 14)));
  }
  t.same(seen, ['29 00', '29 03', '29 07', '3f 0e', 'GOOD']);
  t.end();
});

t.test('hot-added LU: 29/01 on it, 3F/0E on the others, cleared by REPORT LUNS', (t) => {
  const { target } = setup();
  target.addLogicalUnit(1, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  t.equal(toHex(run(target, { lun: 1, cdb: TUR }).sense), UA(0x29, 0x01), 'POWER ON OCCURRED on the new LU');
  t.equal(run(target, { cdb: RL, dataIn: 256 }).status, ScsiStatus.GOOD);
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD, 'REPORT LUNS cleared REPORTED LUNS DATA HAS CHANGED');
  target.addLogicalUnit(2, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  target.nexusEstablished(TEST_NEXUS);
  run(target, { cdb: RL, dataIn: 256 });
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00), 'other UAs are not cleared by REPORT LUNS');
  t.equal(run(target, { cdb: TUR }).status, ScsiStatus.GOOD);
  t.end();
});

t.test('UA sense format follows D_SENSE of the control mode page', (t) => {
  const { target, lu } = fresh();
  lu.descriptorSense = true;
  t.equal(toHex(run(target, { cdb: TUR }).sense), '72 06 29 00 00 00 00 00');
  t.end();
});

t.test('a pending UA is reported before an invalid CDB (SAM-5 §5.14)', (t) => {
  const { target } = fresh();
  t.equal(toHex(run(target, { cdb: [0x02, 0, 0, 0, 0, 0] }).sense), UA(0x29, 0x00), 'unknown opcode 02h');
  t.equal(toHex(run(target, { cdb: [0x02, 0, 0, 0, 0, 0] }).sense),
    '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00', 'then INVALID COMMAND OPERATION CODE');
  t.end();
});

t.test('the null LU has no UAs; REQUEST SENSE there reports LOGICAL UNIT NOT SUPPORTED', (t) => {
  const { target } = fresh();
  target.nexusEstablished(TEST_NEXUS);
  const r = run(target, { lun: 3, cdb: RS(), dataIn: 252 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(toHex(r.data), '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00');
  const d = run(target, { lun: 3, cdb: RS(1), dataIn: 252 });
  t.equal(toHex(d.data), '72 05 25 00 00 00 00 00');
  const tur = run(target, { lun: 3, cdb: TUR });
  t.equal(toHex(tur.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00');
  t.equal(toHex(run(target, { cdb: TUR }).sense), UA(0x29, 0x00), 'LU 0 still has its UA');
  consumeUa(target, 0);
  t.end();
});
