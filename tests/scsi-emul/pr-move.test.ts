// PERSISTENT RESERVE OUT REGISTER AND MOVE (SPC-4 r37 §5.9.8, §6.16.4): moving the reservation to
// another I_T nexus (registered or not, connected or not yet), UNREG, APTPL, and every failure.
import t from 'tap';
import { ITNexus } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { ascii, consumeUa, rw10, toHex } from './helpers';
import {
  A1, A2, B1, B2, CONFLICT, D1, GOOD, SA, TYPE, illegal, moveList, pendingUa, prIn, prOut, prSetup,
  readKeys, readReservation, register, reserve, sasTransportId,
} from './pr-helpers';

const B_TID = sasTransportId('5001405000000b01');
const PLLE = illegal(0x1a, 0x00, null);

const write = (target: Parameters<typeof run>[0], nexus: ITNexus) =>
  run(target, { nexus, cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) }).status;

function held(type: number = TYPE.WE) {
  const s = prSetup();
  register(s.target, A1, 0xaan);
  reserve(s.target, A1, 0xaan, type);
  return s;
}

t.test('REGISTER AND MOVE to an unregistered I_T nexus through the other target port', (t) => {
  const { target, persistence } = held();
  // PERSISTENT RESERVE OUT, REGISTER AND MOVE; RELATIVE TARGET PORT IDENTIFIER 2, SAS TransportID.
  const list = moveList(0xaan, 0xb2n, 2, B_TID);
  t.equal(toHex(list.subarray(16, 24)), '00 00 00 02 00 00 00 18', '§6.16.4: UNREG/APTPL, port 2, TRANSPORTID PARAMETER DATA LENGTH 24');
  const r = prOut(target, A1, SA.REGISTER_AND_MOVE, 0x0f /* SCOPE and TYPE are ignored */, list);
  t.equal(r.status, GOOD);
  t.same(readKeys(target), { generation: 2, keys: [0xaan, 0xb2n] }, 'B registered through port 2 with the new key; PRGENERATION counts it');
  t.equal(readReservation(target), '00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 b2 00 00 00 00 00 01 00 00',
    'B holds the same type (WE) now');
  const fs = prIn(target, D1, 0x03).data;
  t.equal(toHex(fs.subarray(8 + 48, 8 + 48 + 24)), '00 00 00 00 00 00 00 b2 00 00 00 00 01 01 00 00 00 00 00 02 00 00 00 18',
    'READ FULL STATUS: B, R_HOLDER, type 1, port 2');
  t.equal(fs[8 + 12], 0x00, 'A is a registrant, not the holder');
  t.equal(write(target, B2), GOOD);
  t.equal(write(target, B1), CONFLICT, 'B through port 1 is another I_T nexus');
  t.equal(write(target, A1), CONFLICT, 'A no longer holds Write Exclusive');
  t.equal(pendingUa(target, A1), '', 'no unit attention for the move');
  t.equal(persistence.saves.at(-1)!.state.reservation?.holder, 1);
  t.end();
});

t.test('UNREG unregisters the sender; APTPL is taken from byte 17', (t) => {
  const { target, persistence } = held(TYPE.EARO);
  const r = prOut(target, A1, SA.REGISTER_AND_MOVE, 0, moveList(0xaan, 0xb2n, 2, B_TID, 0x03));
  t.equal(r.status, GOOD);
  t.same(readKeys(target).keys, [0xb2n]);
  t.equal(readReservation(target).slice(-11), '00 06 00 00', 'EARO kept');
  t.equal(persistence.saves.at(-1)!.state.aptpl, true);
  t.equal(toHex(prIn(target, D1, 0x02).data.subarray(3, 4)), 'b1', 'PTPL_A');
  t.end();
});

t.test('REGISTER AND MOVE to an I_T nexus that is registered already: it takes the new key', (t) => {
  const { target } = held();
  register(target, B2, 0xbbn);
  t.equal(prOut(target, A1, SA.REGISTER_AND_MOVE, 0, moveList(0xaan, 0xb3n, 2, B_TID)).status, GOOD);
  t.same(readKeys(target).keys, [0xaan, 0xb3n]);
  t.equal(readReservation(target).slice(24, 47), '00 00 00 00 00 00 00 b3');
  t.end();
});

t.test('REGISTER AND MOVE to an initiator that has not connected yet: matched when it appears', (t) => {
  const { target } = held();
  const E1: ITNexus = { initiatorPort: 'naa.5001405000000e01', targetPortId: 1, protocolId: 6 };
  t.equal(prOut(target, A1, SA.REGISTER_AND_MOVE, 0, moveList(0xaan, 0xeen, 1, sasTransportId('5001405000000E01'))).status, GOOD);
  consumeUa(target, 0, E1);
  t.equal(write(target, E1), GOOD, 'E holds the reservation on first contact');
  const E2: ITNexus = { ...E1, targetPortId: 2 };
  consumeUa(target, 0, E2);
  t.equal(write(target, E2), CONFLICT, 'through port 1 only');
  t.end();
});

t.test('REGISTER AND MOVE failures', (t) => {
  const { target, persistence } = held();
  register(target, B1, 0xbbn);
  const saves = persistence.saves.length;
  const cases: [string, typeof A1, Uint8Array, string | number][] = [
    ['an unregistered sender', D1, moveList(0xddn, 0xb2n, 2, B_TID), CONFLICT],
    ['a wrong RESERVATION KEY', A1, moveList(0xabn, 0xb2n, 2, B_TID), CONFLICT],
    ['a registrant that does not hold the reservation', B1, moveList(0xbbn, 0xb2n, 2, B_TID), CONFLICT],
    ['SERVICE ACTION RESERVATION KEY 0', A1, moveList(0xaan, 0n, 2, B_TID), illegal(0x26, 0x00, false, 8)],
    ['the sender\'s own initiator port', A1, moveList(0xaan, 0xa2n, 2, sasTransportId('5001405000000a01')), illegal(0x26, 0x00, false, 24)],
    ['an unknown RELATIVE TARGET PORT IDENTIFIER', A1, moveList(0xaan, 0xb2n, 3, B_TID), illegal(0x26, 0x00, false, 18)],
    ['RELATIVE TARGET PORT IDENTIFIER 0', A1, moveList(0xaan, 0xb2n, 0, B_TID), illegal(0x26, 0x00, false, 18)],
    ['no TransportID', A1, moveList(0xaan, 0xb2n, 2, []), illegal(0x26, 0x00, false, 20)],
    ['a TransportID shorter than its length field', A1, moveList(0xaan, 0xb2n, 2, [...B_TID, 0, 0, 0, 0]), illegal(0x26, 0x00, false, 20)],
    ['a malformed TransportID', A1, moveList(0xaan, 0xb2n, 2, [...B_TID.slice(0, 2), 7, ...B_TID.slice(3)]), illegal(0x26, 0x00, false, 26)],
    ['an iSCSI TransportID for a SAS port', A1, moveList(0xaan, 0xb2n, 2, [0x05, 0, 0, 0x14, ...ascii('iqn.2001-04.a.b'), 0, 0, 0, 0, 0]),
      illegal(0x26, 0x00, false, 24, 3)],
    ['reserved byte 16', A1, (() => { const l = moveList(0xaan, 0xb2n, 2, B_TID); l[16] = 1; return l; })(), illegal(0x26, 0x00, false, 16)],
    ['reserved bits of byte 17', A1, moveList(0xaan, 0xb2n, 2, B_TID, 0x80), illegal(0x26, 0x00, false, 17, 7)],
  ];
  for (const [what, nexus, list, expect] of cases) {
    const r = prOut(target, nexus, SA.REGISTER_AND_MOVE, 0, list);
    if (typeof expect === 'number') t.equal(r.status, expect, what);
    else t.equal(toHex(r.sense), expect, what);
  }
  // TRANSPORTID PARAMETER DATA LENGTH beyond the list, and a list shorter than 24 bytes.
  const long = moveList(0xaan, 0xb2n, 2, B_TID);
  long[23] = 40;
  t.equal(toHex(prOut(target, A1, SA.REGISTER_AND_MOVE, 0, long).sense), PLLE, 'TRANSPORTID PARAMETER DATA LENGTH too large');
  t.equal(toHex(prOut(target, A1, SA.REGISTER_AND_MOVE, 0, long.subarray(0, 20)).sense), PLLE, 'a 20-byte list');
  t.equal(persistence.saves.length, saves, 'nothing saved');
  t.equal(readReservation(target).slice(24, 47), '00 00 00 00 00 00 00 aa', 'A still holds it');
  t.end();
});

t.test('REGISTER AND MOVE without a reservation, and of an all registrants one', (t) => {
  const s = prSetup();
  register(s.target, A1, 0xaan);
  let r = prOut(s.target, A1, SA.REGISTER_AND_MOVE, 0, moveList(0xaan, 0xb2n, 2, B_TID));
  t.equal(toHex(r.sense), illegal(0x24, 0x00, null), 'no reservation to move: INVALID FIELD IN CDB');
  r = prOut(s.target, D1, SA.REGISTER_AND_MOVE, 0, moveList(0n, 0xb2n, 2, B_TID));
  t.equal(toHex(r.sense), illegal(0x24, 0x00, null), 'from an unregistered nexus likewise');
  const { target } = held(TYPE.WEAR);
  t.equal(prOut(target, A1, SA.REGISTER_AND_MOVE, 0, moveList(0xaan, 0xb2n, 2, B_TID)).status, CONFLICT,
    'an all registrants reservation cannot be moved');
  t.equal(write(target, A2), CONFLICT, 'A2 is not registered');
  t.end();
});
