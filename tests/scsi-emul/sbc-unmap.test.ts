// UNMAP (SBC-3 r36 §5.28; reliability.md V7.6, V7.12).
import t from 'tap';
import { LogicalUnit, RamStore, ScsiStatus, ScsiTarget, ServiceResponse } from '../../scsi-emul';
import { FakeBlockStore, run } from '../../scsi-emul/testing';
import { be32, be64, consumeUa, rw10, setup, toHex } from './helpers';

const UNMAP = (len: number, byte1 = 0) => [0x42, byte1, 0, 0, 0, 0, 0, (len >>> 8) & 0xff, len & 0xff, 0];

/** Parameter list: header with consistent lengths, then the descriptors. */
function list(descs: [bigint, number][], opts: { dataLength?: number; bdLength?: number } = {}): Uint8Array {
  const bd = descs.length * 16;
  const dl = opts.dataLength ?? bd + 6;
  const bdl = opts.bdLength ?? bd;
  const out = [(dl >>> 8) & 0xff, dl & 0xff, (bdl >>> 8) & 0xff, bdl & 0xff, 0, 0, 0, 0];
  for (const [lba, n] of descs) out.push(...be64(lba), ...be32(n), 0, 0, 0, 0);
  return Uint8Array.from(out);
}

const invalidParam = (sks: string) => `70 00 05 00 00 00 00 0a 00 00 00 00 26 00 00 ${sks}`;
const LBA_OUT_OF_RANGE = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';
const PARAM_LIST_LENGTH = '70 00 05 00 00 00 00 0a 00 00 00 00 1a 00 00 00 00 00';

function filled(sizeBytes = 8 << 20) {
  const s = setup({ sizeBytes });
  const ones = new Uint8Array(1 << 20).fill(1);
  for (let lba = 0; lba < sizeBytes / 512; lba += 2048) run(s.target, { cdb: rw10(0x2a, lba, 2048), dataOut: ones });
  return { ...s, ram: s.store as RamStore };
}

t.test('UNMAP deallocates every range: whole RAM chunks are freed, partial ones zeroed', (t) => {
  const { target, ram } = filled();
  t.equal(ram.allocatedBytes, 8 << 20);
  const p = list([[2048n, 4096], [1n, 2], [12000n, 0]]);
  const r = run(target, { cdb: UNMAP(p.length), dataOut: p });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.cmd.dataOutTransferred, 56);
  t.equal(ram.allocatedBytes, 6 << 20, 'chunks 1 and 2 freed');
  const d = run(target, { cdb: rw10(0x28, 0, 4), dataIn: 2048 }).data;
  t.same(d.subarray(0, 512), new Uint8Array(512).fill(1), 'LBA 0 kept');
  t.same(d.subarray(512, 1536), new Uint8Array(1024), 'LBAs 1-2 read zeros (LBPRZ=1)');
  t.same(d.subarray(1536), new Uint8Array(512).fill(1), 'LBA 3 kept');
  t.end();
});

t.test('PARAMETER LIST LENGTH 0 is a no-op; a list without descriptors too', (t) => {
  const { target, ram } = filled(2 << 20);
  t.equal(run(target, { cdb: UNMAP(0) }).status, ScsiStatus.GOOD);
  const p = list([]);
  t.equal(run(target, { cdb: UNMAP(8), dataOut: p }).status, ScsiStatus.GOOD);
  t.equal(ram.allocatedBytes, 2 << 20);
  t.end();
});

t.test('parameter list checks (all before anything is deallocated)', (t) => {
  const { target, ram } = filled(2 << 20);
  // 1..7 bytes cannot hold the header: PARAMETER LIST LENGTH ERROR.
  t.equal(toHex(run(target, { cdb: UNMAP(7), dataOut: new Uint8Array(7) }).sense), PARAM_LIST_LENGTH);
  // UNMAP DATA LENGTH or BLOCK DESCRIPTOR DATA LENGTH claiming more than was sent.
  let p = list([[0n, 1]], { dataLength: 40 });
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), PARAM_LIST_LENGTH);
  p = list([[0n, 1]], { bdLength: 32, dataLength: 22 });
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), PARAM_LIST_LENGTH);
  // Inconsistent: UNMAP DATA LENGTH smaller than the descriptors it should cover (byte 0).
  p = list([[0n, 1]], { dataLength: 6 });
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), invalidParam('80 00 00'));
  // Reserved header bytes 4-7 and descriptor bytes 12-15.
  p = list([[0n, 1]]);
  p[5] = 0x10;
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), invalidParam('8c 00 05'));
  p = list([[0n, 1]]);
  p[23] = 1;
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), invalidParam('88 00 17'));
  // LBA OUT OF RANGE in any descriptor (4096 blocks), including a huge LBA (QEMU issue #345).
  p = list([[0n, 1], [4095n, 2]]);
  t.equal(toHex(run(target, { cdb: UNMAP(p.length), dataOut: p }).sense), LBA_OUT_OF_RANGE);
  p = list([[0xffffffffffffff00n, 0x100]]);
  t.equal(toHex(run(target, { cdb: UNMAP(p.length), dataOut: p }).sense), LBA_OUT_OF_RANGE);
  p = list([[4097n, 0]]);
  t.equal(toHex(run(target, { cdb: UNMAP(p.length), dataOut: p }).sense), LBA_OUT_OF_RANGE, 'even with 0 blocks');
  // More than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (256): BLOCK DESCRIPTOR DATA LENGTH, byte 2.
  p = list(Array.from({ length: 257 }, (): [bigint, number] => [0n, 1]));
  t.equal(toHex(run(target, { cdb: UNMAP(p.length), dataOut: p }).sense), invalidParam('80 00 02'));
  t.equal(ram.allocatedBytes, 2 << 20, 'nothing was deallocated');
  // Data-out shorter than PARAMETER LIST LENGTH: OVERRUN, not delivered.
  t.equal(run(target, { cdb: UNMAP(40), dataOut: list([[0n, 1]]) }).serviceResponse, ServiceResponse.OVERRUN);
  // ANCHOR (ANC_SUP=0): byte 1 bit 0; reserved CDB bytes 2-5 (usage data).
  t.equal(toHex(run(target, { cdb: UNMAP(24, 0x01), dataOut: list([[0n, 1]]) }).sense),
    '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 01');
  t.equal(toHex(run(target, { cdb: [0x42, 0, 0, 0, 1, 0, 0, 0, 24, 0], dataOut: list([[0n, 1]]) }).sense),
    '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 04');
  t.end();
});

t.test('a partial trailing descriptor is ignored (SBC-3 r36 §5.28.2)', (t) => {
  const { target, ram } = filled(2 << 20);
  const p = list([[0n, 2048]], { bdLength: 20, dataLength: 26 });
  const full = new Uint8Array(28);
  full.set(p);
  t.equal(run(target, { cdb: UNMAP(28), dataOut: full }).status, ScsiStatus.GOOD);
  t.equal(ram.allocatedBytes, 1 << 20);
  t.end();
});

t.test('MAXIMUM UNMAP LBA COUNT applies to the total; pointer at the descriptor that crosses it', (t) => {
  const { target } = setup({ sizeBytes: 4 * 2 ** 30 }); // 4 GiB RAM store: chunks are lazy
  let p = list([[0n, 1 << 21]]);
  t.equal(run(target, { cdb: UNMAP(p.length), dataOut: p }).status, ScsiStatus.GOOD, '2097152 blocks = 1 GiB');
  p = list([[0n, 1 << 20], [1n << 22n, (1 << 20) + 1]]);
  t.equal(toHex(run(target, { cdb: UNMAP(p.length), dataOut: p }).sense), invalidParam('80 00 20'));
  t.end();
});

t.test('UNMAP on a LU that cannot deallocate: INVALID COMMAND OPERATION CODE; read-only: DATA PROTECT', (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const p = list([[0n, 1]]);
  t.equal(toHex(run(target, { cdb: UNMAP(24), dataOut: p }).sense), '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00');
  const ro = setup({ lu: { readOnly: true } });
  t.equal(toHex(run(ro.target, { cdb: UNMAP(24), dataOut: p }).sense), '70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00');
  t.end();
});
