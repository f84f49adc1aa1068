// SPC-2 RESERVE / RELEASE (6) and (10) (SPC-2 r20 §5.5.1 table 10, §7.16, §7.17, §7.21, §7.22),
// their interplay with persistent reservations (SPC-4 r37 §5.9.3, CRH=1), and what resets keep:
// LOGICAL UNIT RESET and I_T nexus loss end SPC-2 reservations and keep persistent ones.
import t from 'tap';
import { ITNexus, ScsiStatus, TaskManagementFunction, TmfResponse } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { be32, consumeUa, rw10, toHex } from './helpers';
import {
  A1, B1, C1, CONFLICT, D1, GOOD, SA, TYPE, basicList, illegal, prIn, prInCdb, prOut, prSetup, readKeys,
  readReservation, register, reserve,
} from './pr-helpers';

const RESERVE6 = [0x16, 0, 0, 0, 0, 0];
const RELEASE6 = [0x17, 0, 0, 0, 0, 0];
const RESERVE10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const RELEASE10 = [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];

function cmd(target: Parameters<typeof run>[0], nexus: ITNexus, cdb: number[], dataIn?: number, dataOut?: Uint8Array): number {
  consumeUa(target, 0, nexus);
  return run(target, { nexus, cdb, dataIn, dataOut }).status;
}

const PROBES: [string, number[], number?, Uint8Array?][] = [
  ['INQUIRY', [0x12, 0, 0, 0, 36, 0], 36],
  ['REQUEST SENSE', [0x03, 0, 0, 0, 18, 0], 18],
  ['REPORT LUNS', [0xa0, 0, 0, 0, 0, 0, ...be32(64), 0, 0], 64],
  ['LOG SENSE', [0x4d, 0, 0, 0, 0, 0, 0, 0, 0xff, 0], 255],
  ['READ CAPACITY(10)', [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8],
  ['START STOP UNIT START=1', [0x1b, 0, 0, 0, 1, 0]],
  ['PREVENT ALLOW PREVENT=00b', [0x1e, 0, 0, 0, 0, 0]],
  ['TEST UNIT READY', [0x00, 0, 0, 0, 0, 0]],
  ['READ(10)', rw10(0x28, 0, 1), 512],
  ['WRITE(10)', rw10(0x2a, 0, 1), undefined, new Uint8Array(512)],
  ['MODE SENSE(6)', [0x1a, 0, 0x3f, 0, 0xff, 0], 255],
  ['SYNCHRONIZE CACHE(10)', [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
  ['START STOP UNIT START=0', [0x1b, 0, 0, 0, 0, 0]],
  ['PREVENT ALLOW PREVENT=01b', [0x1e, 0, 0, 0, 1, 0]],
  ['REPORT SUPPORTED OPERATION CODES', [0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], 4096],
  ['PERSISTENT RESERVE IN', prInCdb(0x00, 64), 64],
  ['PERSISTENT RESERVE OUT', [0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], undefined, basicList(0n, 0x99n)],
];
// SPC-2 table 10 column "logical unit reserved by another initiator", and SPC-2 §5.5.1: every
// PERSISTENT RESERVE IN / OUT conflicts while an SPC-2 reservation exists, the holder's own too.
const OTHER = 'AAAAAAA' + 'CCCCCCCCCC';
const HOLDER = 'AAAAAAA' + 'AAAAAAAA' + 'CC';

t.test('RESERVE(6): the holder and another I_T nexus against SPC-2 table 10', (t) => {
  const { target, persistence } = prSetup();
  t.equal(cmd(target, A1, RESERVE6), GOOD);
  t.equal(persistence.saves.length, 0, 'an SPC-2 reservation is not saved');
  const other = PROBES.map(([, c, i, o]) => (cmd(target, B1, c, i, o) === CONFLICT ? 'C' : 'A')).join('');
  t.equal(other, OTHER, 'another nexus');
  const holder = PROBES.map(([, c, i, o]) => (cmd(target, A1, c, i, o) === CONFLICT ? 'C' : 'A')).join('');
  t.equal(holder, HOLDER, 'the holder');
  t.equal(cmd(target, A1, RELEASE6), GOOD);
  t.equal(prIn(target, B1, 0x00).status, GOOD, 'after RELEASE, PERSISTENT RESERVE IN works again');
  t.end();
});

t.test('RESERVE / RELEASE (6) and (10): holder, others, releasing', (t) => {
  for (const [res, rel] of [[RESERVE6, RELEASE6], [RESERVE10, RELEASE10]]) {
    const { target } = prSetup();
    t.equal(cmd(target, A1, res), GOOD, `${res.length}-byte RESERVE`);
    t.equal(cmd(target, A1, res), GOOD, 'the holder again: GOOD');
    t.equal(cmd(target, B1, res), CONFLICT, 'another nexus: conflict');
    t.equal(cmd(target, B1, rel), GOOD, 'RELEASE from another nexus: GOOD...');
    t.equal(cmd(target, B1, rw10(0x28, 0, 1), 512), CONFLICT, '...without releasing');
    t.equal(cmd(target, A1, rel), GOOD);
    t.equal(cmd(target, B1, rw10(0x28, 0, 1), 512), GOOD, 'released');
    t.equal(cmd(target, B1, res), GOOD, 'B may reserve now');
  }
  t.end();
});

t.test('RESERVE / RELEASE CDBs: third-party and extent fields are not supported', (t) => {
  const { target } = prSetup();
  const sense = (cdb: number[]) => {
    consumeUa(target, 0, A1);
    return toHex(run(target, { nexus: A1, cdb }).sense);
  };
  t.equal(sense([0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]), illegal(0x24, 0x00, true, 1, 4), 'RESERVE(10) 3RDPTY');
  t.equal(sense([0x56, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), illegal(0x24, 0x00, true, 1, 1), 'RESERVE(10) LONGID');
  t.equal(sense([0x56, 0, 0, 0, 0, 0, 0, 0, 0x18, 0]), illegal(0x24, 0x00, true, 8, 4), 'RESERVE(10) PARAMETER LIST LENGTH');
  t.equal(sense([0x57, 0, 0, 0x07, 0, 0, 0, 0, 0, 0]), illegal(0x24, 0x00, true, 3, 2), 'RELEASE(10) THIRD-PARTY DEVICE ID');
  t.equal(sense([0x16, 0x01, 0, 0, 0, 0]), illegal(0x24, 0x00, true, 1, 0), 'RESERVE(6) obsolete EXTENT');
  t.equal(sense([0x17, 0, 0x05, 0, 0, 0]), illegal(0x24, 0x00, true, 2, 2), 'RELEASE(6) obsolete reservation id');
  t.equal(cmd(target, B1, RESERVE6), GOOD, 'nothing was reserved');
  t.end();
});

t.test('SPC-2 reservations end with LOGICAL UNIT RESET and the holder\'s I_T nexus loss; PRs stay', (t) => {
  const tmf = (target: Parameters<typeof run>[0], fn: TaskManagementFunction, nexus: ITNexus): TmfResponse => {
    let resp: TmfResponse | null = null;
    target.taskManagement(fn, nexus, 0, 0n, (r) => { resp = r; });
    return resp!;
  };
  let s = prSetup();
  cmd(s.target, A1, RESERVE6);
  t.equal(tmf(s.target, TaskManagementFunction.LOGICAL_UNIT_RESET, B1), TmfResponse.FUNCTION_COMPLETE);
  t.equal(cmd(s.target, B1, rw10(0x28, 0, 1), 512), GOOD, 'LOGICAL UNIT RESET released it');
  s = prSetup();
  cmd(s.target, A1, RESERVE6);
  tmf(s.target, TaskManagementFunction.I_T_NEXUS_RESET, B1);
  t.equal(cmd(s.target, B1, rw10(0x28, 0, 1), 512), CONFLICT, 'another nexus\'s I_T NEXUS RESET does not');
  tmf(s.target, TaskManagementFunction.I_T_NEXUS_RESET, A1);
  t.equal(cmd(s.target, B1, rw10(0x28, 0, 1), 512), GOOD, 'the holder\'s I_T NEXUS RESET does');
  s = prSetup();
  cmd(s.target, A1, RESERVE6);
  s.target.nexusEstablished(A1);
  t.equal(cmd(s.target, B1, rw10(0x28, 0, 1), 512), GOOD, 'a new session of the holder (I_T nexus loss) does');

  // Persistent reservations survive all three.
  s = prSetup();
  register(s.target, A1, 0xaan);
  register(s.target, B1, 0xbbn);
  reserve(s.target, A1, 0xaan, TYPE.EARO);
  const before = readReservation(s.target);
  tmf(s.target, TaskManagementFunction.LOGICAL_UNIT_RESET, C1);
  tmf(s.target, TaskManagementFunction.I_T_NEXUS_RESET, A1);
  s.target.nexusEstablished(A1);
  s.target.nexusEstablished(B1);
  consumeUa(s.target, 0, D1);
  t.equal(readReservation(s.target), before, 'the reservation stays');
  t.same(readKeys(s.target).keys, [0xaan, 0xbbn], 'the registrations stay');
  t.equal(cmd(s.target, A1, rw10(0x2a, 0, 1), undefined, new Uint8Array(512)), GOOD, 'the holder writes');
  t.equal(cmd(s.target, D1, rw10(0x28, 0, 1), 512), CONFLICT, 'others still conflict');
  t.end();
});

t.test('interplay (SPC-4 §5.9.3, CRH=1): RESERVE / RELEASE while registrations exist', (t) => {
  // Registrations, no reservation: every RESERVE and RELEASE conflicts.
  let s = prSetup();
  register(s.target, A1, 0xaan);
  t.equal(cmd(s.target, A1, RESERVE6), CONFLICT, 'registered, no persistent reservation');
  t.equal(cmd(s.target, D1, RESERVE10), CONFLICT, 'unregistered');
  t.equal(cmd(s.target, D1, RELEASE6), CONFLICT);
  // Write Exclusive held by A: the holder gets GOOD and nothing changes; a registrant conflicts.
  reserve(s.target, A1, 0xaan, TYPE.WE);
  register(s.target, B1, 0xbbn);
  t.equal(cmd(s.target, A1, RESERVE6), GOOD, 'the holder: GOOD, no reservation made');
  t.equal(cmd(s.target, B1, rw10(0x28, 0, 1), 512), GOOD, 'B still reads (no SPC-2 reservation exists)');
  t.equal(cmd(s.target, B1, RESERVE6), CONFLICT, 'a registrant under Write Exclusive');
  t.equal(cmd(s.target, A1, RELEASE6), GOOD, 'the holder\'s RELEASE: GOOD...');
  t.equal(readReservation(s.target).slice(-11), '00 01 00 00', '...and the persistent reservation is not released');
  // Registrants only: a registrant is exempt too; unregistered ones conflict.
  s = prSetup();
  register(s.target, A1, 0xaan);
  register(s.target, B1, 0xbbn);
  reserve(s.target, A1, 0xaan, TYPE.WERO);
  t.equal(cmd(s.target, B1, RESERVE10), GOOD, 'a registrant under a registrants only type');
  t.equal(cmd(s.target, B1, RELEASE10), GOOD);
  t.equal(cmd(s.target, D1, RESERVE10), CONFLICT, 'unregistered');
  t.equal(cmd(s.target, D1, RELEASE10), CONFLICT);
  t.equal(readReservation(s.target).slice(-11), '00 05 00 00');
  t.end();
});

t.test('interplay: persistent reservation commands conflict while an SPC-2 reservation exists', (t) => {
  const { target } = prSetup();
  cmd(target, A1, RESERVE6);
  t.equal(prOut(target, A1, SA.REGISTER, 0, basicList(0n, 0xaan)).status, CONFLICT, 'PR OUT from the holder');
  t.equal(prOut(target, B1, SA.REGISTER, 0, basicList(0n, 0xbbn)).status, CONFLICT, 'PR OUT from another nexus');
  t.equal(prIn(target, A1, 0x02).status, CONFLICT, 'PR IN from the holder');
  cmd(target, A1, RELEASE6);
  t.equal(prOut(target, B1, SA.REGISTER, 0, basicList(0n, 0xbbn)).status, GOOD, 'after RELEASE');
  t.equal(prIn(target, A1, 0x00).status, ScsiStatus.GOOD);
  t.end();
});
