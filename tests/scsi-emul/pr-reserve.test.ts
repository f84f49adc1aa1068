// PERSISTENT RESERVE OUT RESERVE, RELEASE, CLEAR and unregistering a holder (SPC-4 r37 §5.9.9,
// §5.9.10, §5.9.11.2, §5.9.11.3, §5.9.11.6): success and failure paths, READ RESERVATION bytes,
// the unit attentions each sends and to whom.
import t from 'tap';
import { toHex } from './helpers';
import {
  A1, A2, B1, B2, C1, CONFLICT, D1, GOOD, SA, TYPE, basicList, illegal, pendingUa, prIn, prOut, prSetup,
  readKeys, readReservation, register, reserve, uaSense,
} from './pr-helpers';

const NO_RESERVATION = '00 00 00 00 00 00 00 00';

t.test('RESERVE: key checks, READ RESERVATION, PRGENERATION unchanged', (t) => {
  const { target, persistence } = prSetup();
  t.equal(reserve(target, A1, 0xaan, TYPE.WE).status, CONFLICT, 'not registered');
  register(target, A1, 0xaan);
  t.equal(reserve(target, A1, 0xabn, TYPE.WE).status, CONFLICT, 'wrong RESERVATION KEY');
  t.equal(readReservation(target), '00 00 00 01 ' + NO_RESERVATION.slice(12));
  const saves = persistence.saves.length;
  // PERSISTENT RESERVE OUT, RESERVE, LU_SCOPE / Exclusive Access - Registrants Only.
  const r = prOut(target, A1, 0x01, 0x06, basicList(0xaan, 0n));
  t.equal(r.status, GOOD);
  t.equal(persistence.saves.length, saves + 1, 'the reservation is saved');
  // PRGENERATION 1, ADDITIONAL LENGTH 10h, key AAh, byte 21 scope 0 / type 6.
  t.equal(readReservation(target), '00 00 00 01 00 00 00 10 00 00 00 00 00 00 00 aa 00 00 00 00 00 06 00 00');
  t.end();
});

t.test('RESERVE: the holder repeating it is GOOD; another type or another registrant conflicts', (t) => {
  const { target, persistence } = prSetup();
  register(target, A1, 0xaan);
  register(target, B1, 0xbbn);
  reserve(target, A1, 0xaan, TYPE.WERO);
  const saves = persistence.saves.length;
  t.equal(reserve(target, A1, 0xaan, TYPE.WERO).status, GOOD, 'same type and scope: nothing changes');
  t.equal(persistence.saves.length, saves, 'and nothing is saved');
  t.equal(reserve(target, A1, 0xaan, TYPE.EA).status, CONFLICT, 'the holder changing the type');
  t.equal(reserve(target, B1, 0xbbn, TYPE.WERO).status, CONFLICT, 'another registrant');
  t.equal(readReservation(target), '00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 aa 00 00 00 00 00 05 00 00');
  t.end();
});

t.test('RESERVE / RELEASE / PREEMPT CDB: SCOPE and TYPE (§6.16.2) → INVALID FIELD IN CDB', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  for (const sa of [SA.RESERVE, SA.RELEASE, SA.PREEMPT, SA.PREEMPT_AND_ABORT]) {
    for (const type of [0x0, 0x2, 0x4, 0x9, 0xf]) {
      const r = prOut(target, A1, sa, type, basicList(0xaan, 0xaan));
      t.equal(toHex(r.sense), illegal(0x24, 0x00, true, 2, 3), `service action ${sa}, TYPE ${type}`);
    }
    const r = prOut(target, A1, sa, 0x11, basicList(0xaan, 0xaan));
    t.equal(toHex(r.sense), illegal(0x24, 0x00, true, 2, 7), `service action ${sa}, SCOPE 1h (element, obsolete)`);
  }
  t.equal(readReservation(target), '00 00 00 01 ' + NO_RESERVATION.slice(12), 'nothing changed');
  t.end();
});

t.test('all registrants types: READ RESERVATION key 0, every registrant holds it (§5.9.10)', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  register(target, B1, 0xbbn);
  t.equal(reserve(target, A1, 0xaan, TYPE.WEAR).status, GOOD);
  t.equal(readReservation(target), '00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 07 00 00');
  t.equal(reserve(target, B1, 0xbbn, TYPE.WEAR).status, GOOD, 'B holds it too: repeating is GOOD');
  const fs = prIn(target, D1, 0x03).data;
  t.equal(fs[8 + 12], 0x01, 'A: R_HOLDER');
  t.equal(fs[8 + 13], 0x07);
  t.equal(fs[8 + 48 + 12], 0x01, 'B: R_HOLDER');
  t.equal(prOut(target, B1, SA.RELEASE, TYPE.WEAR, basicList(0xbbn, 0n)).status, GOOD, 'any registrant releases it');
  t.equal(readReservation(target), '00 00 00 02 ' + NO_RESERVATION.slice(12));
  t.equal(pendingUa(target, A1), uaSense(0x2a, 0x04), 'A: RESERVATIONS RELEASED');
  t.equal(pendingUa(target, B1), '', 'not the releasing nexus');
  t.end();
});

t.test('all registrants: it ends with the last registration', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  register(target, B1, 0xbbn);
  reserve(target, A1, 0xaan, TYPE.EAAR);
  prOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0n));
  t.equal(readReservation(target).slice(12, 23), '00 00 00 10', 'B still holds it');
  t.equal(pendingUa(target, B1), '', 'no UA: the reservation was not released');
  prOut(target, B1, SA.REGISTER, 0, basicList(0xbbn, 0n));
  t.equal(readReservation(target), '00 00 00 04 ' + NO_RESERVATION.slice(12), 'gone with B');
  t.end();
});

t.test('RELEASE (§5.9.11.2): key check, non-holder, wrong type, and the UAs per type', (t) => {
  for (const [type, uaOthers] of [[TYPE.WE, false], [TYPE.EA, false], [TYPE.WERO, true], [TYPE.EARO, true]] as const) {
    const { target, persistence } = prSetup();
    register(target, A1, 0xaan);
    register(target, B1, 0xbbn);
    register(target, C1, 0xccn);
    reserve(target, A1, 0xaan, type);
    t.equal(prOut(target, D1, SA.RELEASE, type, basicList(0xddn, 0n)).status, CONFLICT, `type ${type}: unregistered → conflict`);
    t.equal(prOut(target, A1, SA.RELEASE, type, basicList(0xabn, 0n)).status, CONFLICT, 'wrong key → conflict');
    const saves = persistence.saves.length;
    t.equal(prOut(target, B1, SA.RELEASE, type, basicList(0xbbn, 0n)).status, GOOD, 'a registrant that does not hold it: GOOD');
    t.equal(persistence.saves.length, saves, 'nothing released, nothing saved');
    const wrong = type === TYPE.WE ? TYPE.EA : TYPE.WE;
    const r = prOut(target, A1, SA.RELEASE, wrong, basicList(0xaan, 0n));
    t.equal(toHex(r.sense), illegal(0x26, 0x04, null), 'another TYPE: INVALID RELEASE OF PERSISTENT RESERVATION');
    t.equal(readReservation(target).slice(24, 47), '00 00 00 00 00 00 00 aa', 'still held');
    t.equal(prOut(target, A1, SA.RELEASE, type, basicList(0xaan, 0n)).status, GOOD);
    t.equal(readReservation(target), '00 00 00 03 ' + NO_RESERVATION.slice(12), 'released, PRGENERATION unchanged');
    t.same(readKeys(target).keys, [0xaan, 0xbbn, 0xccn], 'registrations stay');
    const expect = uaOthers ? uaSense(0x2a, 0x04) : '';
    t.equal(pendingUa(target, B1), expect, `B: ${uaOthers ? 'RESERVATIONS RELEASED' : 'no UA'}`);
    t.equal(pendingUa(target, C1), expect, 'C likewise');
    t.equal(pendingUa(target, A1), '', 'never the releasing nexus');
    t.equal(pendingUa(target, D1), '', 'never an unregistered one');
  }
  t.end();
});

t.test('RELEASE without a reservation is GOOD', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  t.equal(prOut(target, A1, SA.RELEASE, TYPE.WE, basicList(0xaan, 0n)).status, GOOD);
  t.end();
});

t.test('unregistering the holder (§5.9.11.3): released; RESERVATIONS RELEASED only for registrants only types', (t) => {
  for (const [type, ua] of [[TYPE.WE, false], [TYPE.EA, false], [TYPE.WERO, true], [TYPE.EARO, true]] as const) {
    const { target } = prSetup();
    register(target, A1, 0xaan, 0x04 /* ALL_TG_PT: A2 is the same registration */);
    register(target, B1, 0xbbn);
    reserve(target, A1, 0xaan, type);
    t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0n)).status, GOOD);
    t.equal(readReservation(target), '00 00 00 03 ' + NO_RESERVATION.slice(12), `type ${type}: released`);
    t.equal(pendingUa(target, B1), ua ? uaSense(0x2a, 0x04) : '', 'B');
    t.equal(pendingUa(target, A2), '', 'A through port 2 is no longer registered');
  }
  t.end();
});

t.test('CLEAR (§5.9.11.6): everything goes; RESERVATIONS PREEMPTED for every other registered nexus', (t) => {
  const { target, persistence } = prSetup();
  register(target, A1, 0xaan, 0x04); // ALL_TG_PT: A2 is registered too
  register(target, B1, 0xbbn);
  register(target, C1, 0xccn);
  reserve(target, B1, 0xbbn, TYPE.WERO);
  t.equal(prOut(target, D1, SA.CLEAR, 0, basicList(0n, 0n)).status, CONFLICT, 'unregistered');
  t.equal(prOut(target, C1, SA.CLEAR, 0, basicList(0xcdn, 0n)).status, CONFLICT, 'wrong key');
  const saves = persistence.saves.length;
  t.equal(prOut(target, C1, SA.CLEAR, 0xff, basicList(0xccn, 0n)).status, GOOD, 'SCOPE and TYPE are ignored');
  t.equal(persistence.saves.length, saves + 1);
  t.equal(toHex(prIn(target, D1, 0x00).data), '00 00 00 04 00 00 00 00', 'no keys, PRGENERATION 4');
  t.equal(readReservation(target), '00 00 00 04 ' + NO_RESERVATION.slice(12));
  for (const n of [A1, A2, B1]) t.equal(pendingUa(target, n), uaSense(0x2a, 0x03), `${n.initiatorPort}/${n.targetPortId}`);
  t.equal(pendingUa(target, C1), '', 'not the sender');
  t.equal(pendingUa(target, B2), '', 'B was registered through port 1 only');
  t.equal(pendingUa(target, D1), '');
  t.end();
});

t.test('a registration through port 1 does not register the same initiator through port 2', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  t.equal(reserve(target, A2, 0xaan, TYPE.WE).status, CONFLICT);
  t.equal(register(target, A2, 0xa2n).status, GOOD, 'port 2 registers on its own');
  t.same(readKeys(target).keys, [0xaan, 0xa2n]);
  const r = prOut(target, A2, SA.RESERVE, TYPE.WE, basicList(0xaan, 0n));
  t.equal(r.status, CONFLICT, 'with its own key only');
  t.equal(r.sense.length, 0);
  t.equal(prOut(target, A2, SA.RESERVE, TYPE.WE, basicList(0xa2n, 0n)).status, GOOD);
  t.end();
});
