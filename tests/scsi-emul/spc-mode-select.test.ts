// MODE SELECT(6/10) (SPC-4 r37 §6.9, §6.10, §7.5): two-pass validation with field pointers,
// changeable masks, saved values, the WCE and SWP side effects, MODE PARAMETERS CHANGED.
import t from 'tap';
import { ScsiStatus, TaskManagementFunction, TmfResponse } from '../../scsi-emul';
import { FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { consumeUa, hex, rw10, setup, toHex } from './helpers';

const ZEROS = (n: number) => Array(n).fill('00').join(' ');
const SEL6 = (len: number, byte1 = 0x10) => [0x15, byte1, 0, 0, len, 0];
const SEL10 = (len: number, byte1 = 0x10) => [0x55, byte1, 0, 0, 0, 0, 0, (len >>> 8) & 0xff, len & 0xff, 0];
const MS6 = (byte2: number, subpage = 0) => [0x1a, 0x08, byte2, subpage, 255, 0];
const HDR6 = '00 00 00 00 ';
const CACHING = (byte2: number) => `08 12 ${byte2.toString(16).padStart(2, '0')} ` + ZEROS(17);
const CONTROL = (byte2: number, byte4: number) =>
  `0a 0a ${byte2.toString(16).padStart(2, '0')} 10 ${byte4.toString(16).padStart(2, '0')} ` + ZEROS(7);

/** Fixed-format INVALID FIELD IN PARAMETER LIST: SKSV=1, C/D=0, BPV and bit when given. */
function ipl(byte: number, bit?: number): string {
  const sks = 0x80 | (bit !== undefined ? 0x08 | bit : 0);
  return `70 00 05 00 00 00 00 0a 00 00 00 00 26 00 00 ${sks.toString(16)} ${(byte >>> 8).toString(16).padStart(2, '0')} ${(byte & 0xff).toString(16).padStart(2, '0')}`;
}
const PLLE = '70 00 05 00 00 00 00 0a 00 00 00 00 1a 00 00 00 00 00';

function select6(target: Parameters<typeof run>[0], list: string, byte1 = 0x10, nexus?: { initiatorPort: string; targetPortId: number }) {
  const data = hex(list);
  return run(target, { nexus, cdb: SEL6(data.length, byte1), dataOut: data });
}

const OTHER = { initiatorPort: 'other-initiator', targetPortId: 1 };

t.test('WCE 1→0: the policy switches, the cache is flushed before GOOD, later writes are dsync', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const { target, lu } = setup({ store });
  consumeUa(target, 0, OTHER);
  const data = hex(HDR6 + CACHING(0x00));
  const sel = submit(target, { cdb: SEL6(data.length), dataOut: data });
  t.equal(lu.writeCache, false, 'applied at once: no write acknowledged from now on relies on the cache');
  t.equal(sel.completions, 0, 'waits for the flush');
  t.equal(store.pending('flush').length, 1);
  const w = submit(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(store.pending('write')[0].fua, true, 'a write after the switch is written through');
  store.pending('flush')[0].complete();
  t.equal(sel.completions, 1);
  t.equal(sel.status, ScsiStatus.GOOD);
  store.pending('write')[0].complete();
  t.equal(w.status, ScsiStatus.GOOD);
  store.manual = false;
  t.equal(toHex(run(target, { cdb: MS6(0x08), dataIn: 255 }).data.subarray(4, 7)), '88 12 00', 'MODE SENSE: WCE=0');
  // WCE 0→1: nothing to flush.
  const before = store.ops.length;
  t.equal(select6(target, HDR6 + CACHING(0x04)).status, ScsiStatus.GOOD);
  t.equal(store.ops.length, before, 'no flush when caching is turned on');
  t.equal(lu.writeCache, true);
  t.end();
});

t.test('MODE PARAMETERS CHANGED goes to the other I_T nexuses only, and only on a change', (t) => {
  const { target } = setup();
  consumeUa(target, 0, OTHER);
  t.equal(select6(target, HDR6 + CACHING(0x04)).status, ScsiStatus.GOOD, 'same values: no change');
  t.equal(run(target, { nexus: OTHER, cdb: [0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD, 'no UA for an unchanged page');
  t.equal(select6(target, HDR6 + CONTROL(0x06, 0x00)).status, ScsiStatus.GOOD, 'D_SENSE=1');
  t.equal(run(target, { cdb: [0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD, 'not for the nexus that changed it');
  const r = run(target, { nexus: OTHER, cdb: [0, 0, 0, 0, 0, 0] });
  t.equal(toHex(r.sense), '72 06 2a 01 00 00 00 00', 'UNIT ATTENTION 2A/01, descriptor format since D_SENSE=1');
  t.end();
});

t.test('D_SENSE via MODE SELECT(10): errors switch to descriptor format, field pointers included', (t) => {
  const { target, lu } = setup();
  const list = hex('00 00 00 00 00 00 00 00 ' + CONTROL(0x06, 0x00));
  t.equal(run(target, { cdb: SEL10(list.length), dataOut: list }).status, ScsiStatus.GOOD);
  t.equal(lu.descriptorSense, true);
  const bad = hex(HDR6 + CACHING(0x05)); // RCD is not changeable
  const r = run(target, { cdb: SEL6(bad.length), dataOut: bad });
  t.equal(toHex(r.sense), '72 05 26 00 00 00 00 08 02 06 00 00 88 00 06 00', 'sense key specific descriptor: byte 6 bit 0');
  t.end();
});

t.test('SWP=1: writes get DATA PROTECT / WRITE PROTECTED, WP is reported, the cache is flushed first', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const { target, lu } = setup({ store });
  const data = hex(HDR6 + CONTROL(0x02, 0x08));
  const sel = submit(target, { cdb: SEL6(data.length), dataOut: data });
  t.equal(lu.softwareWriteProtect, true);
  t.equal(store.pending('flush').length, 1, 'buffered write data is written first (SPC-4 §7.5.8)');
  store.pending('flush')[0].complete();
  t.equal(sel.status, ScsiStatus.GOOD);
  store.manual = false;
  let r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(toHex(r.sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00', 'DATA PROTECT 27/00');
  t.equal(run(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 }).status, ScsiStatus.GOOD, 'reads still work');
  t.equal(run(target, { cdb: [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD, 'SYNCHRONIZE CACHE still succeeds');
  t.equal(toHex(run(target, { cdb: MS6(0x0a), dataIn: 255 }).data.subarray(0, 12)), '0f 00 90 00 8a 0a 02 10 08 00 00 00', 'WP and SWP');
  t.equal(select6(target, HDR6 + CONTROL(0x02, 0x00)).status, ScsiStatus.GOOD, 'SWP=0');
  r = run(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512) });
  t.equal(r.status, ScsiStatus.GOOD, 'writable again');
  t.end();
});

t.test('header, block descriptor and page structure rejections (nothing changes)', (t) => {
  const { target, lu } = setup();
  let r = run(target, { cdb: SEL6(0, 0x00) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cc 00 01', 'PF=0: CDB byte 1 bit 4');
  r = run(target, { cdb: SEL6(0, 0x12) });
  t.equal(toHex(r.sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c9 00 01', 'reserved CDB bit 1');
  t.equal(run(target, { cdb: SEL6(0) }).status, ScsiStatus.GOOD, 'PARAMETER LIST LENGTH 0 is not an error');
  t.equal(toHex(select6(target, '00 00 00').sense), PLLE, 'truncated header');
  t.equal(toHex(select6(target, '00 05 00 00').sense), ipl(1), 'MEDIUM TYPE must be 00h');
  t.equal(toHex(select6(target, '00 00 00 04 00 00 00 00').sense), ipl(3), 'BLOCK DESCRIPTOR LENGTH 4');
  t.equal(toHex(select6(target, '00 00 00 08 00 00 08 00').sense), PLLE, 'truncated block descriptor');
  t.equal(toHex(select6(target, '00 00 00 08 00 00 00 00 00 00 04 00').sense), ipl(9), 'block size change refused (CVE-2023-42467)');
  t.equal(toHex(select6(target, '00 00 00 08 00 00 00 10 00 00 02 00').sense), ipl(4), 'capacity change refused');
  t.equal(select6(target, '00 00 00 08 00 00 08 00 00 00 02 00').status, ScsiStatus.GOOD, 'the current values are a no-op');
  t.equal(select6(target, '00 00 00 08 00 00 00 00 00 00 02 00').status, ScsiStatus.GOOD, '0 blocks: keep the capacity');
  t.equal(toHex(select6(target, HDR6 + '3f 12 ' + ZEROS(18)).sense), ipl(4, 5), 'page 3Fh (CVE-2021-3930)');
  t.equal(toHex(select6(target, HDR6 + '19 06 ' + ZEROS(6)).sense), ipl(4, 5), 'unsupported page');
  t.equal(toHex(select6(target, HDR6 + '48 01 00 10 ' + ZEROS(16)).sense), ipl(5), 'unsupported subpage of a known page');
  t.equal(toHex(select6(target, HDR6 + '08 10 ' + ZEROS(16)).sense), ipl(5), 'PAGE LENGTH differs from MODE SENSE');
  t.equal(toHex(select6(target, HDR6 + '4a 01 00 10 ' + ZEROS(16)).sense), ipl(6), 'subpage PAGE LENGTH (bytes 2-3)');
  t.equal(toHex(select6(target, HDR6 + '08 12 00 00').sense), PLLE, 'truncated page');
  t.equal(toHex(select6(target, HDR6 + '08').sense), PLLE, 'truncated page header');
  t.equal(toHex(select6(target, HDR6 + '4a 01 00').sense), PLLE, 'truncated subpage header');
  // Two passes: a valid caching page followed by an invalid control page changes nothing.
  t.equal(toHex(select6(target, HDR6 + CACHING(0x00) + ' ' + CONTROL(0x22, 0x00)).sense), ipl(26, 7), 'TST at page byte 2');
  t.equal(lu.writeCache, true, 'the valid page before it was not applied');
  t.end();
});

t.test('changeable masks are enforced, pointing at the field (SKSV, C/D=0, BPV)', (t) => {
  const { target } = setup();
  t.equal(toHex(select6(target, HDR6 + CACHING(0x01)).sense), ipl(6, 0), 'caching RCD');
  t.equal(toHex(select6(target, HDR6 + CACHING(0x84)).sense), ipl(6, 7), 'caching IC');
  t.equal(toHex(select6(target, HDR6 + '08 12 04 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00').sense),
    ipl(18), 'CACHE SEGMENT SIZE (bytes 14-15): pointer at the field start, no BPV');
  t.equal(toHex(select6(target, HDR6 + '08 12 04 40 ' + ZEROS(16)).sense), ipl(7, 7), 'DEMAND READ RETENTION PRIORITY');
  t.equal(toHex(select6(target, HDR6 + CONTROL(0x42, 0x00)).sense), ipl(6, 7), 'TST (bits 7-5): its MSB');
  t.equal(toHex(select6(target, HDR6 + '0a 0a 02 12 ' + ZEROS(8)).sense), ipl(7, 2), 'QERR (bits 2-1)');
  t.equal(toHex(select6(target, HDR6 + '0a 0a 02 10 00 40 ' + ZEROS(6)).sense), ipl(9, 6), 'TAS');
  t.equal(toHex(select6(target, HDR6 + '0a 0a 02 00 ' + ZEROS(8)).sense), ipl(7, 7), 'QUEUE ALGORITHM MODIFIER');
  t.equal(toHex(select6(target, HDR6 + '01 0a 00 05 ' + ZEROS(8)).sense), ipl(7), 'READ RETRY COUNT: whole byte');
  t.equal(toHex(select6(target, HDR6 + '1c 0a 0c 00 ' + ZEROS(8)).sense), ipl(6, 2), 'IE TEST is not changeable');
  t.equal(toHex(select6(target, HDR6 + '1c 0a 08 07 ' + ZEROS(8)).sense), ipl(7, 3), 'MRIE 7h is reserved');
  t.equal(select6(target, HDR6 + '1c 0a 10 06 00 00 00 3c 00 00 00 01').status, ScsiStatus.GOOD, 'DEXCPT=0 EWASC=1 MRIE 6');
  t.equal(toHex(run(target, { cdb: MS6(0x1c), dataIn: 255 }).data.subarray(4)), '9c 0a 10 06 00 00 00 3c 00 00 00 01');
  t.equal(select6(target, HDR6 + '88 12 04 00 ' + ZEROS(16)).status, ScsiStatus.GOOD, 'PS is reserved in MODE SELECT: ignored');
  t.end();
});

t.test('MODE SELECT(10) with a long LBA block descriptor', (t) => {
  const { target } = setup();
  let list = hex('00 00 00 00 01 00 00 10 ' + '00 00 00 00 00 00 08 00 00 00 00 00 00 00 02 00 ' + CACHING(0x04));
  t.equal(run(target, { cdb: SEL10(list.length), dataOut: list }).status, ScsiStatus.GOOD);
  list = hex('00 00 00 00 01 00 00 08 ' + ZEROS(8));
  t.equal(toHex(run(target, { cdb: SEL10(list.length), dataOut: list }).sense), ipl(6), 'LONGLBA=1 needs 16-byte descriptors');
  list = hex('00 00 00 00 00 00 00 08 00 00 08 00 00 00 02 00 ' + CACHING(0x04));
  t.equal(run(target, { cdb: SEL10(list.length), dataOut: list }).status, ScsiStatus.GOOD, 'short descriptor');
  list = hex('00 00 00 00 00 00');
  t.equal(toHex(run(target, { cdb: SEL10(list.length), dataOut: list }).sense), PLLE, 'an 8-byte header is needed');
  t.end();
});

t.test('saved values: SP=1 saves every page; a LU reset restores them, SP=0 changes are lost', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: false });
  const { target, lu } = setup({ store });
  t.equal(select6(target, HDR6 + CONTROL(0x06, 0x00), 0x11).status, ScsiStatus.GOOD, 'SP=1: D_SENSE=1 saved');
  t.equal(toHex(run(target, { cdb: MS6(0xca), dataIn: 255 }).data.subarray(4, 8)), '8a 0a 06 10', 'PC=11b reports the saved page');
  t.equal(toHex(run(target, { cdb: MS6(0xc8), dataIn: 255 }).data.subarray(4, 7)), '88 12 04', 'the pages not sent were saved too');
  t.equal(select6(target, HDR6 + CACHING(0x00)).status, ScsiStatus.GOOD, 'SP=0: WCE=0, not saved');
  t.equal(toHex(run(target, { cdb: MS6(0xc8), dataIn: 255 }).data.subarray(4, 7)), '88 12 04', 'saved WCE still 1');
  const flushesBefore = store.ops.filter((o) => o.kind === 'flush').length;
  const resp = await new Promise<TmfResponse>((resolve) =>
    target.taskManagement(TaskManagementFunction.LOGICAL_UNIT_RESET, { initiatorPort: 'test-initiator', targetPortId: 1 }, 0, 0n, resolve));
  t.equal(resp, TmfResponse.FUNCTION_COMPLETE);
  t.equal(lu.writeCache, true, 'WCE back to the saved 1');
  t.equal(lu.descriptorSense, true, 'D_SENSE from the saved values');
  t.equal(store.ops.filter((o) => o.kind === 'flush').length, flushesBefore, 'caching turned on: nothing to flush');
  consumeUa(target, 0);
  // Saved WCE=0, current WCE=1: a reset turns caching off and must flush first.
  t.equal(select6(target, HDR6 + CACHING(0x00), 0x11).status, ScsiStatus.GOOD);
  t.equal(select6(target, HDR6 + CACHING(0x04)).status, ScsiStatus.GOOD);
  store.manual = true;
  let done: TmfResponse | null = null;
  target.taskManagement(TaskManagementFunction.LOGICAL_UNIT_RESET, { initiatorPort: 'test-initiator', targetPortId: 1 }, 0, 0n, (r) => { done = r; });
  t.equal(lu.writeCache, false);
  t.equal(done, null, 'the reset completes after the flush');
  store.pending('flush')[0].complete();
  t.equal(done, TmfResponse.FUNCTION_COMPLETE);
  t.end();
});

t.test('a failed LU refuses to turn caching off (the cached data may be lost)', (t) => {
  const { target, lu } = setup();
  lu.failed = new Error('EIO');
  t.equal(toHex(select6(target, HDR6 + CACHING(0x00)).sense), '70 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00');
  t.equal(lu.writeCache, true);
  t.end();
});

t.test('the parameter list is read from segmented data-out', (t) => {
  const { target, lu } = setup();
  const data = hex(HDR6 + CONTROL(0x06, 0x00));
  const r = run(target, { cdb: SEL6(data.length), dataOut: [data.subarray(0, 3), data.subarray(3, 9), data.subarray(9)] });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(lu.descriptorSense, true);
  t.end();
});
