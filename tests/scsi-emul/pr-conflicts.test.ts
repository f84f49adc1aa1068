// The reservation gate against SPC-4 r37 §5.9.1 table 45 and SBC-3 r36 §4.17 table 13 ("commands
// allowed in the presence of various reservations"): every reservation type × the holder, a
// registrant that does not hold it, and an unregistered I_T nexus × a command of each class.
// The expected matrix is written out literally from the tables, not derived from PrAccess.
import t from 'tap';
import { ITNexus, ScsiStatus } from '../../scsi-emul';
import { run } from '../../scsi-emul/testing';
import { be32, consumeUa, rw10 } from './helpers';
import { A1, A2, B1, B2, D1, TYPE, prInCdb, prSetup, register, reserve } from './pr-helpers';

interface Probe { cdb: number[]; dataIn?: number; dataOut?: number }

const PROBES: Record<string, Probe> = {
  'READ(10)': { cdb: rw10(0x28, 0, 1), dataIn: 512 },
  'WRITE(10)': { cdb: rw10(0x2a, 0, 1), dataOut: 512 },
  'VERIFY(10)': { cdb: [0x2f, 0, 0, 0, 0, 0, 0, 0, 1, 0] },
  'PRE-FETCH(10)': { cdb: [0x34, 0, 0, 0, 0, 0, 0, 0, 1, 0] },
  'GET LBA STATUS': { cdb: [0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0], dataIn: 32 },
  'MODE SENSE(6)': { cdb: [0x1a, 0, 0x3f, 0, 0xff, 0], dataIn: 255 },
  'MODE SELECT(10)': { cdb: [0x55, 0x10, 0, 0, 0, 0, 0, 0, 8, 0], dataOut: 8 },
  'REPORT SUPPORTED OPERATION CODES': { cdb: [0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], dataIn: 4096 },
  'SYNCHRONIZE CACHE(10)': { cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
  'START STOP UNIT START=1': { cdb: [0x1b, 0, 0, 0, 0x01, 0] },
  'START STOP UNIT START=0': { cdb: [0x1b, 0, 0, 0, 0x00, 0] },
  'PREVENT ALLOW PREVENT=00b': { cdb: [0x1e, 0, 0, 0, 0x00, 0] },
  'PREVENT ALLOW PREVENT=01b': { cdb: [0x1e, 0, 0, 0, 0x01, 0] },
  'TEST UNIT READY': { cdb: [0x00, 0, 0, 0, 0, 0] },
  'INQUIRY': { cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 },
  'REPORT LUNS': { cdb: [0xa0, 0, 0, 0, 0, 0, ...be32(64), 0, 0], dataIn: 64 },
  'REQUEST SENSE': { cdb: [0x03, 0, 0, 0, 18, 0], dataIn: 18 },
  'LOG SENSE': { cdb: [0x4d, 0, 0x00, 0, 0, 0, 0, 0, 0xff, 0], dataIn: 255 },
  'READ CAPACITY(10)': { cdb: [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataIn: 8 },
  'PERSISTENT RESERVE IN': { cdb: prInCdb(0x00, 64), dataIn: 64 },
};

// Columns: for each type WE, EA, WERO, EARO, WEAR, EAAR the holder (A), a registrant that does not
// hold it (B), an unregistered I_T nexus (D). A = allowed, C = RESERVATION CONFLICT.
//                    WE  EA  WERO EARO WEAR EAAR
const MATRIX: Record<string, string> = {
  'READ(10)':                          'AAA ACC AAA AAC AAA AAC',
  'WRITE(10)':                         'ACC ACC AAC AAC AAC AAC',
  'VERIFY(10)':                        'AAA ACC AAA AAC AAA AAC',
  'PRE-FETCH(10)':                     'AAA ACC AAA AAC AAA AAC',
  'GET LBA STATUS':                    'AAA ACC AAA AAC AAA AAC',
  'MODE SENSE(6)':                     'AAA ACC AAA AAC AAA AAC',
  'MODE SELECT(10)':                   'ACC ACC AAC AAC AAC AAC',
  'REPORT SUPPORTED OPERATION CODES':  'AAA ACC AAA AAC AAA AAC',
  'SYNCHRONIZE CACHE(10)':             'ACC ACC AAC AAC AAC AAC',
  'START STOP UNIT START=1':           'AAA AAA AAA AAA AAA AAA',
  'START STOP UNIT START=0':           'ACC ACC AAC AAC AAC AAC',
  'PREVENT ALLOW PREVENT=00b':         'AAA AAA AAA AAA AAA AAA',
  'PREVENT ALLOW PREVENT=01b':         'ACC ACC AAC AAC AAC AAC',
  'TEST UNIT READY':                   'AAA AAA AAA AAA AAA AAA',
  'INQUIRY':                           'AAA AAA AAA AAA AAA AAA',
  'REPORT LUNS':                       'AAA AAA AAA AAA AAA AAA',
  'REQUEST SENSE':                     'AAA AAA AAA AAA AAA AAA',
  'LOG SENSE':                         'AAA AAA AAA AAA AAA AAA',
  'READ CAPACITY(10)':                 'AAA AAA AAA AAA AAA AAA',
  'PERSISTENT RESERVE IN':             'AAA AAA AAA AAA AAA AAA',
};

const TYPES = [TYPE.WE, TYPE.EA, TYPE.WERO, TYPE.EARO, TYPE.WEAR, TYPE.EAAR];

function probe(target: Parameters<typeof run>[0], nexus: ITNexus, p: Probe): string {
  consumeUa(target, 0, nexus); // a unit attention (e.g. after MODE SELECT) must not hide a conflict
  const r = run(target, {
    nexus, cdb: p.cdb,
    dataIn: p.dataIn, dataOut: p.dataOut !== undefined ? new Uint8Array(p.dataOut) : undefined,
  });
  return r.status === ScsiStatus.RESERVATION_CONFLICT ? 'C' : 'A';
}

t.test('table 45 / table 13: each type × holder, registrant, unregistered × command', (t) => {
  const got: Record<string, string[]> = {};
  for (const type of TYPES) {
    const { target } = prSetup();
    register(target, A1, 0xaan);
    register(target, B1, 0xbbn);
    t.equal(reserve(target, A1, 0xaan, type).status, ScsiStatus.GOOD);
    for (const [name, p] of Object.entries(PROBES)) {
      (got[name] ??= []).push([A1, B1, D1].map((n) => probe(target, n, p)).join(''));
    }
  }
  for (const name of Object.keys(PROBES)) t.equal(got[name].join(' '), MATRIX[name], name);
  t.end();
});

t.test('a conflict is status 18h with no sense data and nothing executed', (t) => {
  const { target, store } = prSetup();
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.EA);
  const data = new Uint8Array(512).fill(0x5a);
  const r = run(target, { nexus: D1, cdb: rw10(0x2a, 0, 1), dataOut: data });
  t.equal(r.status, 0x18);
  t.equal(r.sense.length, 0);
  t.equal(r.cmd.dataOutTransferred, 0);
  const back = new Uint8Array(512);
  let done = false;
  store.read(0, [back], 512, () => { done = true; });
  t.ok(done);
  t.equal(back[0], 0, 'the medium is untouched');
  t.end();
});

t.test('registrations are per I_T nexus: the same initiator through the other port is not registered', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.WERO);
  t.equal(probe(target, A1, PROBES['WRITE(10)']), 'A');
  t.equal(probe(target, A2, PROBES['WRITE(10)']), 'C', 'A through port 2');
  t.equal(probe(target, A2, PROBES['READ(10)']), 'A', 'reads are shared under WERO');
  register(target, B2, 0xbbn, 0x04 /* ALL_TG_PT */);
  t.equal(probe(target, B1, PROBES['WRITE(10)']), 'A', 'B registered with ALL_TG_PT through port 2 is registered through port 1');
  t.end();
});

t.test('no reservation: registrations alone restrict nothing', (t) => {
  const { target, lu } = prSetup();
  register(target, A1, 0xaan);
  t.equal(lu.pr.gateActive, false, 'the gate\'s fast path stays off');
  for (const name of Object.keys(PROBES)) t.equal(probe(target, D1, PROBES[name]), 'A', name);
  reserve(target, A1, 0xaan, TYPE.WE);
  t.equal(lu.pr.gateActive, true);
  t.end();
});

t.test('an unknown operation code meets no conflict: its CDB error is reported', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.EA);
  const r = run(target, { nexus: D1, cdb: [0x05, 0, 0, 0, 0, 0] });
  t.equal(r.status, ScsiStatus.CHECK_CONDITION);
  t.equal(r.sense[12], 0x20, 'INVALID COMMAND OPERATION CODE');
  t.end();
});

t.test('a pending unit attention is reported before a reservation conflict (gate order)', (t) => {
  const { target } = prSetup();
  register(target, A1, 0xaan);
  reserve(target, A1, 0xaan, TYPE.EA);
  target.nexusEstablished(D1);
  const r = run(target, { nexus: D1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  t.equal(r.status, ScsiStatus.CHECK_CONDITION);
  t.equal(r.sense[12], 0x29);
  t.equal(probe(target, D1, PROBES['READ(10)']), 'C');
  t.end();
});
