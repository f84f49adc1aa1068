// Persistence of persistent reservations (reliability.md §4.7): every PERSISTENT RESERVE OUT that
// changes state is saved before it completes, a failed save leaves the state as it was (CHECK
// CONDITION, never GOOD), commands arriving during a save wait and decide on the saved state,
// and state is restored at start (and a damaged one refused).
import t from 'tap';
import {
  LogicalUnit, PrSnapshot, ScsiStatus, ScsiTarget, ServiceResponse, TaskAttribute, TaskManagementFunction,
  TmfResponse, createRamStore, validatePrSnapshot,
} from '../../scsi-emul';
import { run, submit } from '../../scsi-emul/testing';
import { rw10, toHex } from './helpers';
import {
  A1, A2, B1, C1, CHECK, CONFLICT, D1, FakePrPersistence, GOOD, SA, TYPE, basicList, prOut, prOutCdb, prSetup,
  readKeys, readReservation, register, reserve, submitPrOut,
} from './pr-helpers';

const HARDWARE_ERROR = '70 00 04 00 00 00 00 0a 00 00 00 00 44 00 00 00 00 00';

t.test('a change is saved before the command completes', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  const r = submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan, 0x01));
  t.equal(r.completions, 0, 'not complete while the save is pending');
  t.equal(persistence.pending(), 1);
  t.same(persistence.saves[0].state, {
    version: 1, seq: 1, generation: 1, aptpl: true, reservation: null,
    registrations: [{ initiatorPort: 'naa.5001405000000a01', targetPortId: 1, allTargetPorts: false, key: '00000000000000aa' }],
  }, 'the snapshot saved');
  t.equal(persistence.saves[0].key, 'lu0');
  t.same(readKeys(target), { generation: 0, keys: [] }, 'PERSISTENT RESERVE IN reports only saved state');
  persistence.complete();
  t.equal(r.completions, 1);
  t.equal(r.status, GOOD);
  t.same(readKeys(target), { generation: 1, keys: [0xaan] });
  t.end();
});

t.test('the reservation gate sees a reservation only once it is saved', (t) => {
  const persistence = new FakePrPersistence();
  const { target } = prSetup({ persistence });
  register(target, A1, 0xaan);
  persistence.manual = true;
  const r = submitPrOut(target, A1, SA.RESERVE, TYPE.EA, basicList(0xaan, 0n));
  t.equal(run(target, { nexus: D1, cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, GOOD, 'not yet in effect');
  persistence.complete();
  t.equal(r.status, GOOD);
  t.equal(run(target, { nexus: D1, cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, CONFLICT, 'in effect');
  t.end();
});

t.test('a failed save: CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE, state unchanged', (t) => {
  const persistence = new FakePrPersistence();
  const { target } = prSetup({ persistence });
  register(target, A1, 0xaan);
  persistence.failNext = Object.assign(new Error('EIO'), { code: 'EIO' });
  let r = reserve(target, A1, 0xaan, TYPE.WE);
  t.equal(r.status, CHECK);
  t.equal(toHex(r.sense), HARDWARE_ERROR);
  t.equal(readReservation(target), '00 00 00 01 00 00 00 00', 'no reservation');
  t.equal(run(target, { nexus: D1, cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) }).status, GOOD, 'and no conflict');
  persistence.failNext = new Error('ENOSPC');
  r = prOut(target, B1, SA.REGISTER, 0, basicList(0n, 0xbbn));
  t.equal(toHex(r.sense), HARDWARE_ERROR);
  t.same(readKeys(target), { generation: 1, keys: [0xaan] }, 'no registration, PRGENERATION unchanged');
  t.equal(register(target, B1, 0xbbn).status, GOOD, 'a retry succeeds');
  t.same(persistence.saves.map((s) => s.state.seq), [1, 2, 3, 4], 'every save has a new save number, failed ones included');
  t.end();
});

t.test('a persistence that throws, or calls back twice, cannot complete a command wrongly', (t) => {
  const target = new ScsiTarget();
  let calls = 0;
  const lu = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), {
    persistentReservations: {
      key: 'k',
      persistence: {
        save(_key, _state, done) {
          calls++;
          if (calls === 1) throw new Error('bug');
          done(null);
          done(new Error('late'));
        },
      },
    },
  });
  target.addLogicalUnit(0, lu);
  run(target, { nexus: A1, cdb: [0x00, 0, 0, 0, 0, 0] }); // consume POWER ON
  let r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  t.equal(toHex(r.sense), HARDWARE_ERROR, 'a throwing save is a failed save');
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  t.equal(r.status, GOOD);
  t.equal(r.completions, 1, 'completed once');
  t.end();
});

t.test('commands arriving during a save wait, and decide on the state it leaves', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  const order: string[] = [];
  const track = (name: string, r: ReturnType<typeof submit>) => {
    const cb = r.cmd.onComplete!;
    r.cmd.onComplete = (c) => {
      order.push(name);
      cb(c);
    };
    return r;
  };
  const reg = track('A register', submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan)));
  const res = track('A reserve', submitPrOut(target, A1, SA.RESERVE, TYPE.WE, basicList(0xaan, 0n)));
  const bad = track('B wrong key', submitPrOut(target, B1, SA.REGISTER, 0, basicList(0x1n, 0xbbn)));
  const short = track('C short list', submit(target, { nexus: C1, cdb: prOutCdb(SA.REGISTER, 0, 16), dataOut: new Uint8Array(16) }));
  const reg2 = track('C register', submitPrOut(target, C1, SA.REGISTER, 0, basicList(0n, 0xccn)));
  t.equal(persistence.saves.length, 1, 'one save at a time');
  t.equal(res.completions + bad.completions + short.completions, 0, 'the others wait');
  persistence.complete();
  t.equal(reg.status, GOOD);
  t.equal(persistence.saves.length, 2, 'then the RESERVE, which found A registered');
  persistence.complete();
  t.equal(res.status, GOOD);
  t.equal(bad.status, CONFLICT, 'the waiting conflict completes without a save');
  t.equal(short.status, CHECK);
  t.equal(toHex(short.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 1a 00 00 00 00 00', 'and the waiting error');
  t.equal(persistence.saves.length, 3);
  persistence.complete();
  t.equal(reg2.status, GOOD);
  t.same(order, ['A register', 'A reserve', 'B wrong key', 'C short list', 'C register']);
  t.equal(readReservation(target), '00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 aa 00 00 00 00 00 01 00 00');
  t.end();
});

t.test('a command sent from the completion of a waiting one queues behind the others', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  const b = submitPrOut(target, B1, SA.REGISTER, 0, basicList(0x1n, 0xbbn)); // conflicts when it runs
  let d: ReturnType<typeof submit> | null = null;
  const cb = b.cmd.onComplete!;
  b.cmd.onComplete = (c) => {
    cb(c);
    d = submitPrOut(target, D1, SA.REGISTER, 0, basicList(0n, 0xddn));
  };
  submitPrOut(target, C1, SA.REGISTER, 0, basicList(0n, 0xccn));
  persistence.complete(); // A's save
  t.equal(b.status, CONFLICT);
  t.not(d, null);
  t.same(persistence.saves.map((s) => s.state.registrations.at(-1)!.key), ['00000000000000aa', '00000000000000cc'],
    'C, which waited, is saved before D, which came later');
  persistence.complete();
  persistence.complete();
  t.same(readKeys(target).keys, [0xaan, 0xccn, 0xddn]);
  t.end();
});

t.test('a command waiting behind a failed save runs on the unchanged state', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  const first = submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  const second = submitPrOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0xabn));
  persistence.complete(0, new Error('EIO'));
  t.equal(first.status, CHECK);
  t.equal(second.status, CONFLICT, 'A is not registered: the first change never happened');
  t.end();
});

t.test('ABORT TASK of a waiting PERSISTENT RESERVE OUT: it is never run', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  const waiting = submit(target, { nexus: B1, cdb: prOutCdb(SA.REGISTER, 0, 24), dataOut: basicList(0n, 0xbbn), tag: 7n });
  let tmf: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.ABORT_TASK, B1, 0, 7n, (r) => { tmf = r; });
  t.equal(tmf, null, 'the TMF waits for the command');
  persistence.complete();
  t.equal(waiting.serviceResponse, ServiceResponse.ABORTED);
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  t.equal(persistence.saves.length, 1, 'B\'s REGISTER was not saved');
  t.same(readKeys(target).keys, [0xaan]);
  t.end();
});

t.test('LOGICAL UNIT RESET during a save: the command completes RESET, the saved state stands', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  const r = submitPrOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan));
  let tmf: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.LOGICAL_UNIT_RESET, C1, 0, 0n, (x) => { tmf = x; });
  t.equal(tmf, null);
  persistence.complete();
  t.equal(r.serviceResponse, ServiceResponse.RESET);
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  run(target, { nexus: D1, cdb: [0x03, 0, 0, 0, 18, 0], dataIn: 18 }); // 29/03
  t.same(readKeys(target).keys, [0xaan], 'memory agrees with what was saved');
  t.end();
});

t.test('RESERVE and RELEASE (SPC-2) and no-op service actions save nothing', (t) => {
  const { target, persistence } = prSetup();
  run(target, { nexus: A1, cdb: [0x16, 0, 0, 0, 0, 0] });
  run(target, { nexus: A1, cdb: [0x17, 0, 0, 0, 0, 0] });
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.WE);
  const n = persistence.saves.length;
  reserve(target, A1, 0xaan, TYPE.WE); // the holder again
  prOut(target, B1, SA.RELEASE, TYPE.WE, basicList(0xbbn, 0n)); // conflict
  t.equal(persistence.saves.length, n);
  t.equal(n, 2);
  t.end();
});

const SNAPSHOT: PrSnapshot = {
  version: 1, seq: 41, generation: 9, aptpl: true,
  registrations: [
    { initiatorPort: 'naa.5001405000000a01', targetPortId: 0, allTargetPorts: true, key: '00000000000000aa' },
    { initiatorPort: 'naa.5001405000000b01', targetPortId: 1, allTargetPorts: false, key: '00000000000000bb' },
  ],
  reservation: { type: 0x6, scope: 0, holder: 0 },
};

t.test('restored state: keys, reservation, the gate, and the next save number', (t) => {
  const { target, persistence } = prSetup({ restored: SNAPSHOT });
  t.same(readKeys(target), { generation: 9, keys: [0xaan, 0xbbn] });
  t.equal(readReservation(target), '00 00 00 09 00 00 00 10 00 00 00 00 00 00 00 aa 00 00 00 00 00 06 00 00');
  t.equal(run(target, { nexus: D1, cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, CONFLICT, 'EARO enforced at once');
  t.equal(run(target, { nexus: A2, cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, GOOD,
    'A holds it through both ports (ALL_TG_PT)');
  register(target, C1, 0xccn);
  t.equal(persistence.saves[0].state.seq, 42);
  t.same(target.getLogicalUnit(0)!.pr.snapshot().registrations.length, 3);
  t.end();
});

t.test('a damaged restored state is refused, with what is wrong', (t) => {
  const bad: [string, unknown, RegExp][] = [
    ['null', null, /not an object/],
    ['version 2', { ...SNAPSHOT, version: 2 }, /version 2 is not 1/],
    ['seq', { ...SNAPSHOT, seq: -1 }, /seq/],
    ['generation', { ...SNAPSHOT, generation: 2 ** 32 }, /generation/],
    ['aptpl', { ...SNAPSHOT, aptpl: 1 }, /aptpl/],
    ['key zero', { ...SNAPSHOT, registrations: [{ ...SNAPSHOT.registrations[0], key: '0000000000000000' }], reservation: null }, /key/],
    ['key upper case', { ...SNAPSHOT, registrations: [{ ...SNAPSHOT.registrations[0], key: '00000000000000AA' }], reservation: null }, /key/],
    ['name not canonical', { ...SNAPSHOT, registrations: [{ ...SNAPSHOT.registrations[1], initiatorPort: 'NAA.5001405000000B01' }], reservation: null }, /canonical/],
    ['port 0 without allTargetPorts', { ...SNAPSHOT, registrations: [{ ...SNAPSHOT.registrations[1], targetPortId: 0 }], reservation: null }, /targetPortId/],
    ['two registrations for one nexus', { ...SNAPSHOT, registrations: [SNAPSHOT.registrations[0], { ...SNAPSHOT.registrations[1], initiatorPort: 'naa.5001405000000a01' }] }, /covers an I_T nexus/],
    ['holder out of range', { ...SNAPSHOT, reservation: { type: 6, scope: 0, holder: 2 } }, /holder/],
    ['all registrants with a holder', { ...SNAPSHOT, reservation: { type: 7, scope: 0, holder: 0 } }, /-1/],
    ['type 2', { ...SNAPSHOT, reservation: { type: 2, scope: 0, holder: 0 } }, /type 2/],
    ['scope 1', { ...SNAPSHOT, reservation: { type: 6, scope: 1, holder: 0 } }, /scope/],
    ['reservation without registrations', { ...SNAPSHOT, registrations: [], reservation: { type: 7, scope: 0, holder: -1 } }, /without registrations/],
  ];
  for (const [what, s, re] of bad) {
    t.match(validatePrSnapshot(s), re, what);
    if (s === null) continue; // restored: null means nothing was saved
    t.throws(() => new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), {
      name: 'lu-x', persistentReservations: { persistence: new FakePrPersistence(), key: 'k', restored: s as PrSnapshot },
    }), /LogicalUnit lu-x: restored persistent reservation state is invalid/, what);
  }
  t.equal(validatePrSnapshot(SNAPSHOT), null);
  t.end();
});

t.test('without a persistence, reservations work in memory and complete at once', (t) => {
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  run(target, { nexus: A1, cdb: [0x00, 0, 0, 0, 0, 0] });
  t.equal(register(target, A1, 0xaan).status, ScsiStatus.GOOD);
  t.equal(reserve(target, A1, 0xaan, TYPE.WE).status, ScsiStatus.GOOD);
  t.throws(() => new LogicalUnit(createRamStore({ sizeBytes: 4096 }), {
    persistentReservations: { persistence: {} as never, key: 'k' },
  }), /needs a persistence with a save\(\) method/);
  t.throws(() => new LogicalUnit(createRamStore({ sizeBytes: 4096 }), {
    persistentReservations: { persistence: new FakePrPersistence(), key: '' },
  }), /key must be a string/);
  t.end();
});

t.test('a HEAD OF QUEUE PERSISTENT RESERVE OUT runs at once, but its change waits for the save in flight', (t) => {
  const persistence = new FakePrPersistence(true);
  const { target } = prSetup({ persistence });
  const a = submit(target, { nexus: A1, cdb: prOutCdb(0, 0, 24), dataOut: basicList(0n, 0xaan), taskAttribute: TaskAttribute.ORDERED });
  const b = submit(target, { nexus: B1, cdb: prOutCdb(0, 0, 24), dataOut: basicList(0n, 0xbbn), taskAttribute: TaskAttribute.HEAD_OF_QUEUE });
  t.equal(persistence.saves.length, 1, 'the HEAD OF QUEUE command runs but its change waits for the save in flight');
  persistence.complete();
  persistence.complete();
  t.equal(a.status, GOOD);
  t.equal(b.status, GOOD);
  t.same(readKeys(target).keys, [0xaan, 0xbbn]);
  t.end();
});
