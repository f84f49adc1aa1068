// PERSISTENT RESERVE OUT REGISTER / REGISTER AND IGNORE EXISTING KEY (SPC-4 r37 §5.9.7, §6.16)
// and PERSISTENT RESERVE IN (§6.15): success and failure paths, PRGENERATION, APTPL, ALL_TG_PT,
// SPEC_I_PT, parameter list checks, with literal CDB, parameter and response bytes.
import t from 'tap';
import { MAX_REGISTRATIONS, ScsiStatus } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { ascii, toHex } from './helpers';
import {
  A1, A2, ALL_TG_PT, APTPL, B1, B2, C1, CHECK, CONFLICT, D1, GOOD, SA, SPEC_I_PT, TYPE, basicList, illegal, prIn,
  prInCdb, prOut, prOutCdb, prSetup, readKeys, register, reserve, sasTransportId,
} from './pr-helpers';

const PLLE = illegal(0x1a, 0x00, null);

t.test('a fresh LU: no keys, no reservation, the capabilities', (t) => {
  const { target } = prSetup();
  t.equal(toHex(prIn(target, D1, 0x00).data), '00 00 00 00 00 00 00 00', 'READ KEYS: PRGENERATION 0, ADDITIONAL LENGTH 0');
  t.equal(toHex(prIn(target, D1, 0x01).data), '00 00 00 00 00 00 00 00', 'READ RESERVATION: no reservation');
  // LENGTH 8; CRH SIP_C ATP_C PTPL_C; TMV, ALLOW COMMANDS 011b, PTPL_A=0; all six types.
  t.equal(toHex(prIn(target, D1, 0x02).data), '00 08 1d b0 ea 01 00 00', 'REPORT CAPABILITIES');
  t.equal(toHex(prIn(target, D1, 0x03).data), '00 00 00 00 00 00 00 00', 'READ FULL STATUS: nothing');
  t.end();
});

t.test('PERSISTENT RESERVE IN: reserved CDB bytes and unknown service actions', (t) => {
  const { target } = prSetup();
  const r = run(target, { nexus: D1, cdb: [0x5e, 0x00, 0x01, 0, 0, 0, 0, 0, 0x20, 0], dataIn: 32 });
  t.equal(toHex(r.sense), illegal(0x24, 0x00, true, 2, 0), 'byte 2 is reserved');
  const u = run(target, { nexus: D1, cdb: prInCdb(0x04), dataIn: 0x2000 });
  t.equal(toHex(u.sense), illegal(0x24, 0x00, true, 1, 4), 'service action 04h is not one');
  t.end();
});

t.test('REGISTER from an unregistered I_T nexus (table 47)', (t) => {
  const { target, persistence } = prSetup();
  // PERSISTENT RESERVE OUT, REGISTER, PARAMETER LIST LENGTH 24.
  const r = run(target, {
    nexus: A1, cdb: [0x5f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00],
    dataOut: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 0, 0, 0, 0]),
  });
  t.equal(r.status, GOOD);
  t.equal(r.cmd.dataOutTransferred, 24);
  t.equal(toHex(prIn(target, D1, 0x00).data), '00 00 00 01 00 00 00 08 11 22 33 44 55 66 77 88', 'one key, PRGENERATION 1');
  t.equal(persistence.saves.length, 1, 'saved');
  t.same(persistence.saves[0].state, {
    version: 1, seq: 1, generation: 1, aptpl: false, reservation: null,
    registrations: [{ initiatorPort: 'naa.5001405000000a01', targetPortId: 1, allTargetPorts: false, key: '1122334455667788' }],
  });
  t.equal(register(target, B1, 0x99n).status, GOOD);
  t.same(readKeys(target).keys, [0x1122334455667788n, 0x99n], 'registration order');
  t.equal(readKeys(target).generation, 2);
  t.end();
});

t.test('REGISTER: a non-zero RESERVATION KEY from an unregistered nexus conflicts; SARK 0 registers nothing', (t) => {
  const { target, persistence } = prSetup();
  const r = prOut(target, A1, SA.REGISTER, 0, basicList(0x1n, 0xaan));
  t.equal(r.status, CONFLICT);
  t.equal(r.sense.length, 0, 'RESERVATION CONFLICT carries no sense');
  t.same(readKeys(target), { generation: 0, keys: [] }, 'nothing registered, PRGENERATION unchanged');
  t.equal(persistence.saves.length, 0);
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0n)).status, GOOD, 'SARK 0: GOOD, nothing to register');
  t.same(readKeys(target), { generation: 1, keys: [] }, 'the request still counts in PRGENERATION (§6.15.2)');
  t.end();
});

t.test('REGISTER from a registered nexus: key check, new key, unregister', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0xabn, 0xccn)).status, CONFLICT, 'wrong RESERVATION KEY');
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xccn)).status, CONFLICT, 'zero RESERVATION KEY');
  t.same(readKeys(target), { generation: 1, keys: [0xaan] });
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0xccn)).status, GOOD, 'new key');
  t.same(readKeys(target), { generation: 2, keys: [0xccn] });
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0xccn, 0n)).status, GOOD, 'SARK 0 unregisters');
  t.same(readKeys(target), { generation: 3, keys: [] });
  t.equal(reserve(target, A1, 0xccn, TYPE.WE).status, CONFLICT, 'no longer registered');
  t.end();
});

t.test('REGISTER AND IGNORE EXISTING KEY (§5.9.7)', (t) => {
  const { target } = prSetup();
  t.equal(prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0x1234n, 0xaan)).status, GOOD,
    'unregistered: RESERVATION KEY ignored');
  t.equal(prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0x9999n, 0xbbn)).status, GOOD,
    'registered: any RESERVATION KEY, new key');
  t.same(readKeys(target), { generation: 2, keys: [0xbbn] });
  t.equal(prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0n, 0n)).status, GOOD, 'SARK 0 unregisters');
  t.same(readKeys(target), { generation: 3, keys: [] });
  t.equal(prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0n, 0n)).status, GOOD, 'unregistered and SARK 0: nothing');
  t.same(readKeys(target), { generation: 4, keys: [] });
  t.end();
});

t.test('PRGENERATION wraps at 2^32', (t) => {
  const { target } = prSetup({
    restored: { version: 1, seq: 7, generation: 0xffffffff, aptpl: false, registrations: [], reservation: null },
  });
  t.equal(toHex(prIn(target, D1, 0x00).data), 'ff ff ff ff 00 00 00 00');
  register(target, A1, 1n);
  t.equal(toHex(prIn(target, D1, 0x00).data.subarray(0, 4)), '00 00 00 00');
  t.end();
});

t.test('APTPL: the last valid value received, PTPL_A, and in the saved state', (t) => {
  const { target, persistence } = prSetup();
  register(target, A1, 0xaan, APTPL);
  t.equal(toHex(prIn(target, D1, 0x02).data), '00 08 1d b1 ea 01 00 00', 'PTPL_A=1');
  t.equal(persistence.saves.at(-1)!.state.aptpl, true);
  t.equal(reserve(target, A1, 0xaan, TYPE.WE).status, GOOD);
  t.equal(persistence.saves.at(-1)!.state.aptpl, true, 'RESERVE keeps it (its APTPL bit is ignored)');
  t.equal(prOut(target, B1, SA.REGISTER, 0, basicList(0n, 0xbbn, 0)).status, GOOD);
  t.equal(toHex(prIn(target, D1, 0x02).data), '00 08 1d b0 ea 01 00 00', 'a REGISTER with APTPL=0 clears it');
  t.equal(persistence.saves.at(-1)!.state.aptpl, false);
  t.end();
});

t.test('ALL_TG_PT: one registration for every target port of the initiator port', (t) => {
  const { target } = prSetup();
  t.equal(register(target, A1, 0xaan, ALL_TG_PT).status, GOOD);
  t.equal(reserve(target, A2, 0xaan, TYPE.EA).status, GOOD, 'registered through port 2 as well: it may reserve there');
  // READ FULL STATUS: key, ALL_TG_PT=1 R_HOLDER=1, scope/type 03h, RELATIVE TARGET PORT IDENTIFIER
  // not defined (0), ADDITIONAL DESCRIPTOR LENGTH 24, SAS TransportID.
  t.equal(toHex(prIn(target, D1, 0x03).data),
    '00 00 00 01 00 00 00 30 ' +
    '00 00 00 00 00 00 00 aa 00 00 00 00 03 03 00 00 00 00 00 00 00 00 00 18 ' +
    '06 00 00 00 50 01 40 50 00 00 0a 01 00 00 00 00 00 00 00 00 00 00 00 00');
  const w = (n: typeof A1): number => run(target, { nexus: n, cdb: [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], dataOut: new Uint8Array(512) }).status;
  t.equal(w(A1), GOOD, 'every I_T nexus of a holding ALL_TG_PT registration holds the reservation');
  t.equal(w(A2), GOOD);
  t.equal(w(B1), CONFLICT);
  t.equal(prOut(target, A2, SA.REGISTER, 0, basicList(0xaan, 0xa2n)).status, GOOD, 'a new key through port 2');
  t.same(readKeys(target).keys, [0xa2n], 'applies to the one registration');
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0xa2n, 0n)).status, GOOD, 'unregister through port 1');
  t.same(readKeys(target).keys, [], 'removes it for both ports');
  t.equal(readReservationType(target), 0, 'and releases the reservation it held');
  t.end();
});

function readReservationType(target: Parameters<typeof prIn>[0]): number {
  const d = prIn(target, D1, 0x01).data;
  return d.length >= 22 ? d[21] & 0x0f : 0;
}

t.test('ALL_TG_PT while the initiator port is registered through another port', (t) => {
  const { target } = prSetup();
  register(target, A2, 0xa2n);
  t.equal(reserve(target, A2, 0xa2n, TYPE.WE).status, GOOD);
  t.equal(register(target, A1, 0xaan, ALL_TG_PT).status, CONFLICT,
    'REGISTER: as if sent through port 2 too, where the key differs');
  t.equal(prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0n, 0xaan, ALL_TG_PT)).status, GOOD,
    'REGISTER AND IGNORE EXISTING KEY replaces the port 2 registration');
  t.same(readKeys(target).keys, [0xaan]);
  const fs = prIn(target, D1, 0x03).data;
  t.equal(toHex(fs.subarray(8, 28)), '00 00 00 00 00 00 00 aa 00 00 00 00 03 01 00 00 00 00 00 00',
    'ALL_TG_PT=1, and the reservation moved with the initiator port');
  t.end();
});

t.test('SPEC_I_PT: the TransportIDs are registered through the receiving port, all or nothing', (t) => {
  const { target, persistence } = prSetup();
  const ids = [...sasTransportId('5001405000000b01'), ...sasTransportId('5001405000000c01')];
  const list = basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 48, ...ids]);
  const r = prOut(target, A1, SA.REGISTER, 0, list);
  t.equal(r.status, GOOD);
  t.equal(persistence.saves.length, 1, 'one save for all three');
  const fs = prIn(target, D1, 0x03).data;
  t.equal(toHex(fs.subarray(0, 8)), '00 00 00 01 00 00 00 90', 'three descriptors of 48 bytes');
  for (let i = 0; i < 3; i++) {
    const d = fs.subarray(8 + 48 * i, 8 + 48 * (i + 1));
    t.equal(toHex(d.subarray(0, 24)), '00 00 00 00 00 00 00 77 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 18',
      `descriptor ${i}: key 77h, port 1`);
    t.equal(toHex(d.subarray(24, 36)), ['06 00 00 00 50 01 40 50 00 00 0a 01', '06 00 00 00 50 01 40 50 00 00 0b 01',
      '06 00 00 00 50 01 40 50 00 00 0c 01'][i]);
  }
  t.equal(reserve(target, B1, 0x77n, TYPE.WE).status, GOOD, 'B is registered through port 1');
  t.equal(reserve(target, B2, 0x77n, TYPE.WE).status, CONFLICT, 'not through port 2');
  t.end();
});

t.test('SPEC_I_PT with ALL_TG_PT registers the specified ports on every target port', (t) => {
  const { target } = prSetup();
  const list = basicList(0n, 0x77n, SPEC_I_PT | ALL_TG_PT, [0, 0, 0, 24, ...sasTransportId('5001405000000b01')]);
  t.equal(prOut(target, A1, SA.REGISTER, 0, list).status, GOOD);
  t.equal(reserve(target, B2, 0x77n, TYPE.WE).status, GOOD, 'B registered through port 2 too');
  t.end();
});

t.test('SPEC_I_PT failures: nothing is registered', (t) => {
  const { target, persistence } = prSetup();
  const b = sasTransportId('5001405000000b01');
  const cases: [string, Uint8Array, string][] = [
    ['malformed TransportID (SAS reserved byte)', basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 24, ...b.slice(0, 23), 1]),
      illegal(0x26, 0x00, false, 51)],
    ['unsupported protocol', basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 24, 0x01, ...b.slice(1)]), illegal(0x26, 0x00, false, 28, 3)],
    ['an iSCSI TransportID on a SAS target port', basicList(0n, 0x77n, SPEC_I_PT,
      [0, 0, 0, 24, 0x05, 0, 0, 0x14, ...ascii('iqn.2001-04.a.b'), 0, 0, 0, 0, 0]), illegal(0x26, 0x00, false, 28, 3)],
    ['the sender itself', basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 24, ...sasTransportId('5001405000000a01')]),
      illegal(0x26, 0x00, false, 28)],
    ['the same port twice', basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 48, ...b, ...b]), illegal(0x26, 0x00, false, 52)],
    ['a truncated last TransportID', basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 40, ...b, ...b.slice(0, 16)]),
      illegal(0x26, 0x00, false, 52)],
  ];
  for (const [what, list, sense] of cases) {
    const r = prOut(target, A1, SA.REGISTER, 0, list);
    t.equal(r.status, CHECK, what);
    t.equal(toHex(r.sense), sense, what);
  }
  register(target, C1, 0xccn);
  const r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 48, ...b, ...sasTransportId('5001405000000c01')]));
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 52), 'an I_T nexus that is already registered');
  t.same(readKeys(target).keys, [0xccn], 'only C, registered on its own');
  t.equal(persistence.saves.length, 1);
  t.end();
});

t.test('SPEC_I_PT: only REGISTER from an unregistered nexus takes it', (t) => {
  const { target } = prSetup();
  const b = sasTransportId('5001405000000b01');
  let r = prOut(target, A1, SA.REGISTER_AND_IGNORE, 0, basicList(0n, 0x77n, SPEC_I_PT, [0, 0, 0, 24, ...b]));
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 20, 3), 'REGISTER AND IGNORE EXISTING KEY: INVALID FIELD IN PARAMETER LIST');
  register(target, A1, 0xaan);
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0xaan, 0x77n, SPEC_I_PT, [0, 0, 0, 24, ...b]));
  t.equal(toHex(r.sense), illegal(0x24, 0x00, null), 'from a registered nexus: INVALID FIELD IN CDB (table 47)');
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0xabn, 0x77n, SPEC_I_PT, [0, 0, 0, 24, ...b]));
  t.equal(r.status, CONFLICT, 'the key check comes first');
  t.end();
});

t.test('parameter list length and reserved fields (§6.16.3)', (t) => {
  const { target } = prSetup();
  const cdb = (len: number): number[] => prOutCdb(SA.REGISTER, 0, len);
  for (const len of [0, 8, 23, 25, 32]) {
    const r = run(target, { nexus: A1, cdb: cdb(len), dataOut: new Uint8Array(len) });
    t.equal(toHex(r.sense), PLLE, `PARAMETER LIST LENGTH ${len}: PARAMETER LIST LENGTH ERROR`);
  }
  let r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan, SPEC_I_PT, [0, 0, 0, 30, ...sasTransportId('5001405000000b01')]));
  t.equal(toHex(r.sense), PLLE, 'TRANSPORTID PARAMETER DATA LENGTH beyond the list');
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan, SPEC_I_PT, [0, 0, 0]));
  t.equal(toHex(r.sense), PLLE, 'SPEC_I_PT=1 with a 27-byte list');
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan, 0x02));
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 20, 1), 'reserved bit 1 of byte 20');
  r = prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan, 0x80));
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 20, 7), 'reserved bit 7 of byte 20');
  const list = basicList(0n, 0xaan);
  list[21] = 1;
  r = prOut(target, A1, SA.REGISTER, 0, list);
  t.equal(toHex(r.sense), illegal(0x26, 0x00, false, 21), 'reserved byte 21');
  const obsolete = basicList(0n, 0xaan);
  obsolete.fill(0xff, 16, 20);
  obsolete.fill(0xff, 22, 24);
  t.equal(prOut(target, A1, SA.REGISTER, 0, obsolete).status, GOOD, 'obsolete bytes 16-19 and 22-23 are ignored');
  r = run(target, { nexus: A1, cdb: [0x5f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00], dataOut: new Uint8Array(65537) });
  t.equal(toHex(r.sense), illegal(0x24, 0x00, true, 5), 'a parameter list above 64 KiB: INVALID FIELD IN CDB at PARAMETER LIST LENGTH');
  r = run(target, { nexus: A1, cdb: [0x5f, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00], dataOut: new Uint8Array(24) });
  t.equal(toHex(r.sense), illegal(0x24, 0x00, true, 3, 0), 'reserved CDB byte 3');
  t.equal(prOut(target, B1, SA.REGISTER, 0xff, basicList(0n, 0xbbn)).status, GOOD, 'SCOPE and TYPE are ignored by REGISTER');
  t.end();
});

t.test('a parameter list shorter than the CDB says is an OVERRUN, not delivered', (t) => {
  const { target } = prSetup();
  const r = run(target, { nexus: A1, cdb: prOutCdb(SA.REGISTER, 0, 24), dataOut: new Uint8Array(16) });
  t.equal(r.serviceResponse, 1 /* ServiceResponse.OVERRUN */);
  t.same(readKeys(target).keys, []);
  t.end();
});

t.test(`registrations are bounded: past ${MAX_REGISTRATIONS}, INSUFFICIENT REGISTRATION RESOURCES`, (t) => {
  const { target, persistence } = prSetup();
  const ids: number[] = [];
  for (let i = 0; i < MAX_REGISTRATIONS; i++) ids.push(...sasTransportId(`5001405${(0x100000 + i).toString(16).padStart(9, '0')}`));
  const list = basicList(0n, 0x77n, SPEC_I_PT, [(ids.length >>> 24) & 0xff, (ids.length >>> 16) & 0xff, (ids.length >>> 8) & 0xff, ids.length & 0xff, ...ids]);
  const r = prOut(target, A1, SA.REGISTER, 0, list);
  t.equal(toHex(r.sense), illegal(0x55, 0x04, null), '05/55/04');
  t.same(readKeys(target).keys, [], 'none made');
  t.equal(persistence.saves.length, 0);
  t.end();
});

t.test('allocation length truncates PERSISTENT RESERVE IN data; the lengths describe all of it', (t) => {
  const { target } = prSetup();
  register(target, A1, 0x1111n);
  register(target, B1, 0x2222n);
  const r = prIn(target, D1, 0x00, 12);
  t.equal(toHex(r.data), '00 00 00 02 00 00 00 10 00 00 00 00', 'ADDITIONAL LENGTH 16 though 12 bytes were sent');
  t.equal(r.status, ScsiStatus.GOOD);
  t.end();
});

t.test('REPORT SUPPORTED OPERATION CODES reports the new rows with their usage data', (t) => {
  const { target } = prSetup();
  const one = (options: number, op: number, sa: number): string =>
    toHex(run(target, { nexus: D1, cdb: [0xa3, 0x0c, options, op, 0, sa, 0, 0, 0, 64, 0, 0], dataIn: 64 }).data);
  // SUPPORT 011b, CDB SIZE, then the CDB usage data (SPC-4 §6.35.3).
  t.equal(one(0x02, 0x5f, 0x00), '00 03 00 0a 5f 00 ff 00 00 ff ff ff ff 00', 'PERSISTENT RESERVE OUT / REGISTER');
  t.equal(one(0x02, 0x5f, 0x07), '00 03 00 0a 5f 07 ff 00 00 ff ff ff ff 00', 'PERSISTENT RESERVE OUT / REGISTER AND MOVE');
  t.equal(one(0x02, 0x5f, 0x08), '00 01 00 00', 'service action 08h (SPC-5 REPLACE LOST RESERVATION): not supported');
  t.equal(one(0x02, 0x5e, 0x03), '00 03 00 0a 5e 03 00 00 00 00 00 ff ff 00', 'PERSISTENT RESERVE IN / READ FULL STATUS');
  t.equal(one(0x01, 0x16, 0), '00 03 00 06 16 00 00 00 00 00', 'RESERVE(6)');
  t.equal(one(0x01, 0x57, 0), '00 03 00 0a 57 00 00 00 00 00 00 00 00 00', 'RELEASE(10)');
  t.end();
});
