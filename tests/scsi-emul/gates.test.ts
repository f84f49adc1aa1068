// Pins the fixed dispatch order: CDB length → LUN → task attribute → (CDB syntax held back)
// → OVERRUN → unit attention → ALUA → reservation → CDB error → write protect → execute →
// clamp to ALLOCATION LENGTH. Also: submit() never throws for guest input.
import t from 'tap';
import {
  LogicalUnit, ScsiCommand, ScsiStatus, ScsiTarget, ServiceResponse, Sense, SenseCondition, TaskAttribute,
} from '../../scsi-emul';
import type { CommandDef } from '../../scsi-emul';
import type { Task } from '../../scsi-emul/command';
import type { NexusRecord } from '../../scsi-emul/nexus';
import { FakeBlockStore, TEST_NEXUS, makeCommand, run } from '../../scsi-emul/testing';
import { rw10, toHex } from './helpers';

class ProbeTarget extends ScsiTarget {
  readonly trace: string[] = [];
  alua: SenseCondition | null = null;
  conflict = false;

  protected override unitAttentionGate(lu: LogicalUnit, nexus: NexusRecord): SenseCondition | null {
    this.trace.push('ua');
    return super.unitAttentionGate(lu, nexus);
  }

  protected override aluaGate(_lu: LogicalUnit, def: CommandDef | null, _task: Task): SenseCondition | null {
    this.trace.push(`alua:${def?.name ?? '?'}`);
    return this.alua;
  }

  protected override reservationGate(_lu: LogicalUnit, def: CommandDef | null, _task: Task): boolean {
    this.trace.push(`pr:${def?.name ?? '?'}`);
    return this.conflict;
  }
}

function probe(opts: { readOnly?: boolean } = {}) {
  const target = new ProbeTarget();
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const lu = new LogicalUnit(store, { readOnly: opts.readOnly });
  target.addLogicalUnit(0, lu);
  const origRead = store.read.bind(store);
  store.read = (o, s, l, cb) => {
    target.trace.push('execute');
    origRead(o, s, l, cb);
  };
  return { target, store, lu };
}

const UA_29_00 = '70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00';
const INVALID_OPCODE = '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00';

t.test('order: unit attention → ALUA → reservation → execute', (t) => {
  const { target } = probe();
  target.nexusEstablished(TEST_NEXUS);
  let r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), UA_29_00);
  t.same(target.trace, ['ua'], 'a pending UA stops the command before the ALUA and reservation gates');
  target.trace.length = 0;
  r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(target.trace, ['ua', 'alua:READ(10)', 'pr:READ(10)', 'execute']);
  t.end();
});

t.test('ALUA gate stops the command before the reservation gate', (t) => {
  const { target } = probe();
  run(target, { cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  target.trace.length = 0;
  target.alua = Sense.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE;
  const r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(toHex(r.sense), '70 00 02 00 00 00 00 0a 00 00 00 00 04 0b 00 00 00 00');
  t.same(target.trace, ['ua', 'alua:READ(10)']);
  t.end();
});

t.test('reservation conflict: status 18h, no sense, nothing executed', (t) => {
  const { target } = probe();
  run(target, { cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  target.trace.length = 0;
  target.conflict = true;
  const r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(r.status, ScsiStatus.RESERVATION_CONFLICT);
  t.equal(r.sense.length, 0);
  t.same(target.trace, ['ua', 'alua:READ(10)', 'pr:READ(10)']);
  target.trace.length = 0;
  const bad = run(target, { cdb: rw10(0x28, 0, 1, 0x20), dataIn: 512 });
  t.equal(bad.status, ScsiStatus.RESERVATION_CONFLICT, 'the gates come before a CDB field error');
  t.end();
});

t.test('UA-exempt commands skip only the UA gate', (t) => {
  const { target } = probe();
  target.nexusEstablished(TEST_NEXUS);
  const r = run(target, { cdb: [0x12, 0, 0, 0, 96, 0], dataIn: 96 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.same(target.trace, ['alua:INQUIRY', 'pr:INQUIRY']);
  t.end();
});

t.test('execute → clamp to ALLOCATION LENGTH', (t) => {
  const { target } = probe();
  const r = run(target, { cdb: [0x12, 0, 0, 0, 7, 0], dataIn: 96 });
  t.equal(toHex(r.data), '00 00 06 12 5b 30 00');
  t.end();
});

t.test('OVERRUN is decided before the gates and consumes no UA', (t) => {
  const { target } = probe();
  target.nexusEstablished(TEST_NEXUS);
  const r = run(target, { cdb: rw10(0x28, 0, 2), dataIn: 512 });
  t.equal(r.serviceResponse, ServiceResponse.OVERRUN);
  t.same(target.trace, []);
  t.equal(toHex(run(target, { cdb: [0, 0, 0, 0, 0, 0] }).sense), UA_29_00, 'the UA is still pending');
  t.end();
});

t.test('CDB length and opcode group errors come first (QEMU CVE-2015-5158)', (t) => {
  const { target } = probe();
  target.nexusEstablished(TEST_NEXUS);
  for (const op of [0x60, 0x7f, 0xc0, 0xff]) {
    const r = run(target, { cdb: [op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
    t.equal(toHex(r.sense), INVALID_OPCODE, `group of ${op.toString(16)}`);
  }
  const short = makeCommand({ cdb: [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dataIn: 512 });
  short.cdbLength = 10;
  t.equal(toHex(run(target, short).sense), INVALID_OPCODE, 'READ(16) in a 10-byte CDB');
  const empty = makeCommand({ cdb: [] });
  t.equal(toHex(run(target, empty).sense), INVALID_OPCODE, 'zero-length CDB');
  t.same(target.trace, [], 'no gate ran');
  t.equal(toHex(run(target, { cdb: [0, 0, 0, 0, 0, 0] }).sense), UA_29_00);
  t.end();
});

t.test('unknown opcode and service action', (t) => {
  const { target } = probe();
  run(target, { cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  let r = run(target, { cdb: [0x07, 0, 0, 0, 0, 0] });
  t.equal(toHex(r.sense), INVALID_OPCODE, 'REASSIGN BLOCKS is not implemented');
  r = run(target, { cdb: [0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataIn: 32 });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cc 00 01');
  t.end();
});

t.test('task attribute ACA (and garbage) is INVALID FIELD IN CDB without a field pointer', (t) => {
  const { target, store } = probe();
  run(target, { cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  for (const attr of [TaskAttribute.ACA, 7 as TaskAttribute]) {
    const r = run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512, taskAttribute: attr });
    t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00');
  }
  t.equal(store.ops.length, 0);
  t.end();
});

t.test('unknown LUN: only INQUIRY, REPORT LUNS, REQUEST SENSE are served', (t) => {
  const { target } = probe();
  const NOT_SUPPORTED = '70 00 05 00 00 00 00 0a 00 00 00 00 25 00 00 00 00 00';
  for (const lun of [1, 255, 256, 16383, 16384, -1, 1.5, NaN]) {
    const r = run(target, { lun, cdb: [0, 0, 0, 0, 0, 0] });
    t.equal(toHex(r.sense), NOT_SUPPORTED, `TUR to LUN ${lun}`);
  }
  t.equal(toHex(run(target, { lun: 2, cdb: rw10(0x28, 0, 1), dataIn: 512 }).sense), NOT_SUPPORTED);
  t.equal(toHex(run(target, { lun: 2, cdb: [0x02, 0, 0, 0, 0, 0] }).sense), NOT_SUPPORTED, 'even for an unknown opcode');
  t.equal(run(target, { lun: 2, cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 }).data[0], 0x7f);
  t.same(target.trace, []);
  t.end();
});

t.test('write protection after the gates and the CDB check', (t) => {
  const { target } = probe({ readOnly: true });
  run(target, { cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
  target.trace.length = 0;
  let r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00');
  t.same(target.trace, ['ua', 'alua:WRITE(10)', 'pr:WRITE(10)']);
  r = run(target, { cdb: rw10(0x2a, 0xffffff, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00', 'CDB errors first');
  t.end();
});

t.test('submit() never throws for guest or fabric input', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(new FakeBlockStore({ sizeBytes: 1 << 20 })));
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 16;
  };
  const cmd = new ScsiCommand(TEST_NEXUS);
  let completions = 0;
  cmd.onComplete = () => completions++;
  for (let i = 0; i < 3000; i++) {
    for (let j = 0; j < 32; j++) cmd.cdb[j] = rnd() & 0xff;
    if (i % 3 === 0) cmd.cdb[0] = [0x08, 0x28, 0x88, 0x2a, 0x12, 0x1a, 0x5a, 0x9e, 0xa0, 0x35, 0x1b, 0x03][i % 12];
    cmd.cdbLength = [0, 1, 6, 10, 16, 32, 300][rnd() % 7];
    cmd.lun = [0, 0, 0, 1, -5, 2 ** 40][rnd() % 6];
    cmd.taskAttribute = (rnd() % 5) as TaskAttribute;
    const size = [0, 16, 512, 4096][rnd() % 4];
    cmd.dataIn = rnd() % 2 ? [new Uint8Array(size)] : [];
    cmd.dataInLength = cmd.dataIn.length ? size : 0;
    cmd.dataOut = !cmd.dataIn.length && rnd() % 2 ? [new Uint8Array(size)] : [];
    cmd.dataOutLength = cmd.dataOut.length ? size : 0;
    target.submit(cmd);
  }
  t.equal(completions, 3000, 'every command completed exactly once');
  t.end();
});

t.test('fabric misuse: invalid nexus is FAILURE; resubmitting an in-flight command throws', (t) => {
  const target = new ScsiTarget();
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  target.addLogicalUnit(0, new LogicalUnit(store));
  for (const nexus of [{ initiatorPort: 'x', targetPortId: 0 }, { initiatorPort: 'x', targetPortId: 65536 },
    { initiatorPort: 7 as unknown as string, targetPortId: 1 }]) {
    const r = run(target, { nexus, cdb: [0, 0, 0, 0, 0, 0] });
    t.equal(r.serviceResponse, ServiceResponse.FAILURE);
  }
  const cmd = makeCommand({ cdb: rw10(0x28, 0, 1), dataIn: 512 });
  target.submit(cmd); // UA first
  target.submit(cmd);
  t.equal(store.pending().length, 1);
  t.throws(() => target.submit(cmd), /already in flight/);
  store.pending()[0].complete();
  t.end();
});
