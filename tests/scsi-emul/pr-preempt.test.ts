// PERSISTENT RESERVE OUT PREEMPT and PREEMPT AND ABORT (SPC-4 r37 §5.9.11.4, §5.9.11.5): removing
// registrations, preempting the reservation (and one's own), all registrants, the unit attentions,
// and PREEMPT AND ABORT really aborting the preempted nexus's commands (a WRITE stuck in the store,
// a waiting one, a queued PERSISTENT RESERVE OUT) before it completes. Also the fence_scsi flow.
import t from 'tap';
import { ScsiStatus, ServiceResponse, TaskAttribute } from '../../scsi-emul';
import { FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { rw10, toHex } from './helpers';
import {
  A1, A2, B1, C1, CONFLICT, D1, FakePrPersistence, GOOD, SA, TYPE, basicList, illegal, pendingUa, prOut, prOutCdb,
  prSetup, readKeys, readReservation, register, reserve, submitPrOut, uaSense,
} from './pr-helpers';

const RES = (gen: number, key: string, type: number): string =>
  `00 00 00 0${gen.toString(16)} 00 00 00 10 00 00 00 00 00 00 00 ${key} 00 00 00 00 00 0${type} 00 00`;

const write = (target: Parameters<typeof run>[0], nexus: typeof A1) =>
  run(target, { nexus, cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) }).status;

/** A holds a reservation of `type` with key AAh; B (BBh) and C (CCh) are registered. Generation 3. */
function holderSetup(type: number) {
  const s = prSetup();
  register(s.target, A1, 0xaan);
  register(s.target, B1, 0xbbn);
  register(s.target, C1, 0xccn);
  reserve(s.target, A1, 0xaan, type);
  return s;
}

t.test('PREEMPT key checks and a zero SERVICE ACTION RESERVATION KEY', (t) => {
  const { target, persistence } = holderSetup(TYPE.WE);
  const saves = persistence.saves.length;
  t.equal(prOut(target, D1, SA.PREEMPT, TYPE.WE, basicList(0n, 0xaan)).status, CONFLICT, 'unregistered sender');
  t.equal(prOut(target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbcn, 0xaan)).status, CONFLICT, 'wrong RESERVATION KEY');
  t.equal(prOut(target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbbn, 0x1234n)).status, CONFLICT, 'a key nobody has');
  const r = prOut(target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbbn, 0n));
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 8), 'SARK 0 without an all registrants reservation');
  t.equal(persistence.saves.length, saves, 'nothing saved');
  t.equal(readReservation(target), RES(3, 'aa', TYPE.WE));
  t.end();
});

t.test('PREEMPT of a registrant that does not hold the reservation: its registration goes (§5.9.11.4.4)', (t) => {
  const { target } = holderSetup(TYPE.WERO);
  t.equal(prOut(target, B1, SA.PREEMPT, TYPE.EA, basicList(0xbbn, 0xccn)).status, GOOD);
  t.same(readKeys(target), { generation: 4, keys: [0xaan, 0xbbn] }, 'C removed, PRGENERATION 4');
  t.equal(readReservation(target), RES(4, 'aa', TYPE.WERO), 'the reservation is untouched (TYPE ignored)');
  t.equal(pendingUa(target, C1), uaSense(0x2a, 0x05), 'C: REGISTRATIONS PREEMPTED');
  t.equal(pendingUa(target, A1), '', 'A: nothing');
  t.equal(pendingUa(target, B1), '', 'B: nothing');
  t.equal(write(target, C1), CONFLICT, 'C is no longer a registrant');
  t.end();
});

t.test('PREEMPT without a reservation removes the registrations with that key', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  register(target, B1, 0x55n);
  register(target, C1, 0x55n);
  t.equal(prOut(target, A1, SA.PREEMPT, TYPE.WE, basicList(0xaan, 0x55n)).status, GOOD);
  t.same(readKeys(target).keys, [0xaan], 'both registrations with key 55h');
  t.equal(readReservation(target), '00 00 00 04 00 00 00 00', 'and no reservation is created');
  t.equal(pendingUa(target, B1), uaSense(0x2a, 0x05));
  t.equal(pendingUa(target, C1), uaSense(0x2a, 0x05));
  t.end();
});

t.test('PREEMPT a sender sharing the preempted key removes its own registration too', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.WE);
  register(target, B1, 0x55n);
  register(target, C1, 0x55n);
  t.equal(prOut(target, B1, SA.PREEMPT, TYPE.WE, basicList(0x55n, 0x55n)).status, GOOD);
  t.same(readKeys(target).keys, [0xaan]);
  t.equal(pendingUa(target, C1), uaSense(0x2a, 0x05), 'C is told');
  t.equal(pendingUa(target, B1), '', 'not the sender');
  t.end();
});

t.test('PREEMPT the holder (§5.9.11.4.3): new reservation for the sender, UAs by type change', (t) => {
  for (const [newType, changed] of [[TYPE.EA, true], [TYPE.WE, false]] as const) {
    const { target } = holderSetup(TYPE.WE);
    t.equal(prOut(target, B1, SA.PREEMPT, newType, basicList(0xbbn, 0xaan)).status, GOOD);
    t.equal(readReservation(target), RES(4, 'bb', newType), `B holds type ${newType}`);
    t.same(readKeys(target).keys, [0xbbn, 0xccn], 'A removed');
    t.equal(pendingUa(target, A1), uaSense(0x2a, 0x05), 'A: REGISTRATIONS PREEMPTED');
    t.equal(pendingUa(target, C1), changed ? uaSense(0x2a, 0x04) : '', changed
      ? 'C: RESERVATIONS RELEASED (the type changed)' : 'C: nothing (same type and scope)');
    t.equal(pendingUa(target, B1), '');
    t.equal(write(target, B1), GOOD);
    t.equal(write(target, A1), CONFLICT);
  }
  t.end();
});

t.test('the holder preempting itself changes the type and keeps its registration', (t) => {
  const { target } = holderSetup(TYPE.WE);
  t.equal(prOut(target, A1, SA.PREEMPT, TYPE.EARO, basicList(0xaan, 0xaan)).status, GOOD);
  t.equal(readReservation(target), RES(4, 'aa', TYPE.EARO));
  t.same(readKeys(target).keys, [0xaan, 0xbbn, 0xccn]);
  t.equal(pendingUa(target, A1), '');
  t.equal(pendingUa(target, B1), uaSense(0x2a, 0x04));
  t.end();
});

t.test('all registrants: SARK 0 preempts everyone else; a key only removes registrations', (t) => {
  let s = holderSetup(TYPE.EAAR);
  t.equal(prOut(s.target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbbn, 0n)).status, GOOD, 'SARK 0');
  t.same(readKeys(s.target).keys, [0xbbn]);
  t.equal(readReservation(s.target), RES(4, 'bb', TYPE.WE));
  t.equal(pendingUa(s.target, A1), uaSense(0x2a, 0x05));
  t.equal(pendingUa(s.target, C1), uaSense(0x2a, 0x05));
  s = holderSetup(TYPE.EAAR);
  t.equal(prOut(s.target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbbn, 0xccn)).status, GOOD, 'SARK CCh');
  t.same(readKeys(s.target).keys, [0xaan, 0xbbn]);
  t.equal(readReservation(s.target), RES(4, '00', TYPE.EAAR), 'still all registrants (TYPE ignored)');
  t.equal(pendingUa(s.target, C1), uaSense(0x2a, 0x05));
  t.equal(pendingUa(s.target, A1), '');
  t.end();
});

t.test('PREEMPT AND ABORT aborts the preempted nexus\'s commands and completes after them', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const { target } = prSetup({ store });
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.WERO);
  register(target, B1, 0xbbn);
  register(target, C1, 0xccn);
  const log: string[] = [];
  const track = (name: string, r: ReturnType<typeof submit>) => {
    const cb = r.cmd.onComplete!;
    r.cmd.onComplete = (c) => {
      log.push(name);
      cb(c);
    };
    return r;
  };
  const stuck = track('A write (in the store)', submit(target, { nexus: A1, cdb: rw10(0x2a, 8, 1), dataOut: new Uint8Array(512).fill(0xa1), tag: 1n }));
  const waiting = track('A ordered write (waiting)', submit(target, {
    nexus: A1, cdb: rw10(0x2a, 16, 1), dataOut: new Uint8Array(512), tag: 2n, taskAttribute: TaskAttribute.ORDERED,
  }));
  const other = track('C read', submit(target, { nexus: C1, cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 3n, taskAttribute: TaskAttribute.HEAD_OF_QUEUE }));
  t.equal(store.pending().length, 2, 'A\'s first write and C\'s read are in the store');
  // B: PREEMPT AND ABORT, Write Exclusive - Registrants Only, SARK = A's key (fence_scsi). HEAD OF
  // QUEUE so A's waiting ORDERED command does not hold it back.
  const pa = track('B PREEMPT AND ABORT', submit(target, {
    nexus: B1, cdb: prOutCdb(0x05, 0x05, 24), dataOut: basicList(0xbbn, 0xaan), taskAttribute: TaskAttribute.HEAD_OF_QUEUE,
  }));
  t.equal(waiting.completions, 1, 'the waiting command is aborted at once');
  t.equal(waiting.serviceResponse, ServiceResponse.ABORTED);
  t.equal(pa.completions, 0, 'PREEMPT AND ABORT waits for the write the store still has');
  t.equal(stuck.completions, 0);
  // (HEAD OF QUEUE: the PREEMPT AND ABORT, itself HEAD OF QUEUE, holds SIMPLE commands back.)
  const rr = run(target, { nexus: D1, cdb: [0x5e, 0x01, 0, 0, 0, 0, 0, 0, 24, 0], dataIn: 24, taskAttribute: TaskAttribute.HEAD_OF_QUEUE });
  t.equal(toHex(rr.data), RES(4, 'bb', TYPE.WERO), 'the new state is in effect meanwhile');
  store.pending('write')[0].complete();
  t.equal(stuck.serviceResponse, ServiceResponse.ABORTED, 'the stuck write completes ABORTED');
  t.equal(stuck.cmd.dataOutTransferred, 0);
  t.equal(pa.completions, 1);
  t.equal(pa.status, ScsiStatus.GOOD);
  t.same(log, ['A ordered write (waiting)', 'A write (in the store)', 'B PREEMPT AND ABORT'], 'completes after the aborted commands');
  t.equal(other.completions, 0, 'C\'s read is not A\'s: untouched');
  store.pending('read')[0].complete();
  t.equal(other.status, ScsiStatus.GOOD);
  t.equal(other.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  // A learns it was preempted, then that its commands were cleared (SAM-5 §5.6, TAS=0).
  t.equal(pendingUa(target, A1), uaSense(0x2a, 0x05));
  t.equal(pendingUa(target, A1), uaSense(0x2f, 0x00));
  t.equal(pendingUa(target, A1), '');
  t.equal(pendingUa(target, C1), '', 'C: nothing');
  t.equal(pendingUa(target, A2), '', 'A was registered through port 1 only');
  const w = submit(target, { nexus: A1, cdb: rw10(0x2a, 8, 1), dataOut: new Uint8Array(512) });
  t.equal(w.status, CONFLICT, 'A is fenced');
  t.end();
});

t.test('PREEMPT AND ABORT with nothing in flight completes at once; PREEMPT aborts nothing', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const { target } = prSetup({ store });
  register(target, A1, 0xaan);
  register(target, B1, 0xbbn);
  reserve(target, A1, 0xaan, TYPE.WE);
  const r = submit(target, { nexus: A1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const p = submitPrOut(target, B1, SA.PREEMPT, TYPE.WE, basicList(0xbbn, 0xaan));
  t.equal(p.status, GOOD, 'PREEMPT completes while A\'s read is in flight');
  store.pending('read')[0].complete();
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE, 'and does not abort it');
  t.equal(r.status, GOOD);
  t.equal(pendingUa(target, A1), uaSense(0x2a, 0x05), 'A was preempted');
  const q = submitPrOut(target, A1, SA.PREEMPT_AND_ABORT, TYPE.WE, basicList(0xaan, 0xbbn));
  t.equal(q.status, CONFLICT, 'A is no longer registered');
  t.end();
});

t.test('PREEMPT AND ABORT completes a PERSISTENT RESERVE OUT of the preempted nexus that waited for a save', (t) => {
  const persistence = new FakePrPersistence();
  const { target } = prSetup({ persistence });
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.WE);
  register(target, B1, 0xbbn);
  persistence.manual = true;
  const pa = submit(target, {
    nexus: B1, cdb: prOutCdb(0x05, 0x01, 24), dataOut: basicList(0xbbn, 0xaan), taskAttribute: TaskAttribute.HEAD_OF_QUEUE,
  });
  const queued = submitPrOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0xabn));
  t.equal(persistence.pending(), 1, 'A\'s REGISTER waits behind the save of the PREEMPT AND ABORT');
  persistence.complete();
  t.equal(queued.serviceResponse, ServiceResponse.ABORTED, 'A\'s queued command is aborted, not run');
  t.equal(pa.status, GOOD, 'and the PREEMPT AND ABORT completes: no deadlock');
  t.equal(persistence.saves.length, 4, 'A\'s REGISTER was never saved');
  t.same(readKeys(target).keys, [0xbbn]);
  t.end();
});

t.test('all registrants SARK 0 PREEMPT AND ABORT aborts every registrant\'s commands, the sender\'s other ones too', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const { target } = prSetup({ store });
  register(target, A1, 0xaan);
  register(target, B1, 0xbbn);
  reserve(target, A1, 0xaan, TYPE.WEAR);
  const a = submit(target, { nexus: A1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const b = submit(target, { nexus: B1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const d = submit(target, { nexus: D1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const pa = submitPrOut(target, B1, SA.PREEMPT_AND_ABORT, TYPE.WE, basicList(0xbbn, 0n));
  t.equal(pa.completions, 0);
  for (const op of store.pending()) op.complete();
  t.equal(a.serviceResponse, ServiceResponse.ABORTED);
  t.equal(b.serviceResponse, ServiceResponse.ABORTED, 'the sender held the preempted reservation too');
  t.equal(d.serviceResponse, ServiceResponse.COMMAND_COMPLETE, 'an unregistered nexus is not preempted');
  t.equal(pa.status, GOOD);
  t.equal(pendingUa(target, B1), '', 'no UA to the sender');
  t.end();
});

t.test('the fence_scsi flow (sg_persist): register, reserve WERO, preempt-and-abort, survivor writes', (t) => {
  const { target } = prSetup();
  // node 1 (A) and node 2 (B) register their keys (sg_persist --register --param-sark)
  t.equal(prOut(target, A1, 0x00, 0x00, basicList(0n, 0x1n)).status, GOOD);
  t.equal(prOut(target, B1, 0x00, 0x00, basicList(0n, 0x2n)).status, GOOD);
  // node 1 reserves Write Exclusive - Registrants Only (--reserve --prout-type=5)
  t.equal(prOut(target, A1, 0x01, 0x05, basicList(0x1n, 0n)).status, GOOD);
  t.equal(write(target, A1), GOOD);
  t.equal(write(target, B1), GOOD, 'registrants write under WERO');
  t.equal(write(target, D1), CONFLICT, 'others do not');
  // node 2 fences node 1 (--preempt-abort --param-rk=2 --param-sark=1 --prout-type=5)
  t.equal(prOut(target, B1, 0x05, 0x05, basicList(0x2n, 0x1n)).status, GOOD);
  t.same(readKeys(target).keys, [0x2n]);
  t.equal(readReservation(target), RES(3, '02', TYPE.WERO), 'PRGENERATION 3: two REGISTERs and the PREEMPT AND ABORT');
  t.equal(pendingUa(target, A1), uaSense(0x2a, 0x05));
  t.equal(write(target, A1), CONFLICT, 'node 1 is fenced');
  t.equal(write(target, B1), GOOD, 'node 2 writes');
  t.end();
});
