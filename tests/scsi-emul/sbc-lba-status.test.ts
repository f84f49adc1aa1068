// GET LBA STATUS (SBC-3 r36 §5.7) and thin provisioning in the file store: holes punched by
// UNMAP / WRITE SAME, found again with SEEK_DATA/SEEK_HOLE.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LogicalUnit, ScsiStatus, ScsiTarget, nodeFsIoEngine, openFileStore } from '../../scsi-emul';
import type { IoEngine } from '../../scsi-emul';
import { CommandResult, CommandSpec, FakeBlockStore, run, submit } from '../../scsi-emul/testing';
import { nativeIoEngine } from '../../backend/io-engine';
import { be32, be64, consumeUa, rw10, setup, toHex } from './helpers';

const GLS = (lba: bigint, alloc: number) => [0x9e, 0x12, ...be64(lba), ...be32(alloc), 0, 0];
const WS16 = (lba: bigint, n: number, byte1 = 0) => [0x93, byte1, ...be64(lba), ...be32(n), 0, 0];
const UNMAP1 = (lba: bigint, n: number) => {
  const p = Uint8Array.from([0, 22, 0, 16, 0, 0, 0, 0, ...be64(lba), ...be32(n), 0, 0, 0, 0]);
  return { cdb: [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], dataOut: p };
};

function tmpdir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbc-thin-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Submits and waits for completion (file store I/O completes asynchronously). */
function exec(target: ScsiTarget, spec: CommandSpec): Promise<CommandResult> {
  const r = submit(target, spec);
  return new Promise((resolve) => {
    const poll = (): void => {
      if (r.completions > 0) resolve(r);
      else setImmediate(poll);
    };
    poll();
  });
}

t.test('RAM store: mapped and deallocated extents from the chunk map', (t) => {
  const { target } = setup({ sizeBytes: 8 << 20 });
  run(target, { cdb: rw10(0x2a, 4096, 1), dataOut: new Uint8Array(512).fill(1) }); // chunk 2
  let r = run(target, { cdb: GLS(0n, 64), dataIn: 64 });
  t.equal(r.status, ScsiStatus.GOOD);
  // PARAMETER DATA LENGTH 52 (n - 3 for 56 bytes: 3 descriptors); [0, 4096) deallocated, [4096, 6144) mapped,
  // [6144, 16384) deallocated.
  t.equal(toHex(r.data), '00 00 00 34 00 00 00 00 ' +
    '00 00 00 00 00 00 00 00 00 00 10 00 01 00 00 00 ' +
    '00 00 00 00 00 00 10 00 00 00 08 00 00 00 00 00 ' +
    '00 00 00 00 00 00 18 00 00 00 28 00 01 00 00 00');
  // From inside a run: the first descriptor starts at the STARTING LBA.
  r = run(target, { cdb: GLS(5000n, 24), dataIn: 24 });
  t.equal(toHex(r.data), '00 00 00 14 00 00 00 00 00 00 00 00 00 00 13 88 00 00 04 78 00 00 00 00');
  // ALLOCATION LENGTH 16: truncated, PARAMETER DATA LENGTH still describes one descriptor.
  r = run(target, { cdb: GLS(0n, 16), dataIn: 64 });
  t.equal(toHex(r.data), '00 00 00 14 00 00 00 00 00 00 00 00 00 00 00 00');
  // ALLOCATION LENGTH 0: nothing transferred, not an error.
  r = run(target, { cdb: GLS(0n, 0), dataIn: 64 });
  t.equal(r.status, ScsiStatus.GOOD);
  t.equal(r.data.length, 0);
  t.end();
});

t.test('GET LBA STATUS: LBA OUT OF RANGE, reserved bytes, fully provisioned stores', (t) => {
  const { target } = setup({ sizeBytes: 1 << 20 });
  const oor = '70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00';
  t.equal(toHex(run(target, { cdb: GLS(2048n, 24), dataIn: 24 }).sense), oor, 'STARTING LBA = capacity');
  t.equal(toHex(run(target, { cdb: GLS(0xffffffffffffffffn, 24), dataIn: 24 }).sense), oor);
  t.equal(run(target, { cdb: GLS(2047n, 24), dataIn: 24 }).status, ScsiStatus.GOOD, 'last LBA');
  const cdb = GLS(0n, 24);
  cdb[14] = 1;
  t.equal(toHex(run(target, { cdb, dataIn: 24 }).sense), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c8 00 0e');
  // A store without extentAt reports everything mapped.
  const store = new FakeBlockStore({ sizeBytes: 1 << 20 });
  const ft = new ScsiTarget();
  ft.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(ft, 0);
  t.equal(toHex(run(ft, { cdb: GLS(10n, 24), dataIn: 24 }).data),
    '00 00 00 14 00 00 00 00 00 00 00 00 00 00 00 0a 00 00 07 f6 00 00 00 00');
  t.end();
});

t.test('file store with the native engine: UNMAP punches holes, GET LBA STATUS sees them', async (t) => {
  const file = path.join(tmpdir(), 'thin.img');
  const store = openFileStore({ path: file, sizeBytes: 4 << 20, engine: nativeIoEngine });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const ones = new Uint8Array(1 << 20).fill(1);
  t.equal((await exec(target, { cdb: rw10(0x2a, 0, 2048), dataOut: ones })).status, ScsiStatus.GOOD);
  const blocksBefore = fs.statSync(file).blocks;
  t.ok(blocksBefore >= 2048, 'the written MiB is allocated');
  t.equal((await exec(target, UNMAP1(256n, 1024))).status, ScsiStatus.GOOD); // bytes [128 KiB, 640 KiB)
  t.ok(fs.statSync(file).blocks <= blocksBefore - 1024, 'half a MiB of the file was freed');
  const r = await exec(target, { cdb: GLS(0n, 72), dataIn: 72 });
  t.equal(toHex(r.data), '00 00 00 44 00 00 00 00 ' +
    '00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 ' +
    '00 00 00 00 00 00 01 00 00 00 04 00 01 00 00 00 ' +
    '00 00 00 00 00 00 05 00 00 00 03 00 00 00 00 00 ' +
    '00 00 00 00 00 00 08 00 00 00 18 00 01 00 00 00');
  const d = (await exec(target, { cdb: rw10(0x28, 255, 2), dataIn: 1024 })).data;
  t.same(d.subarray(0, 512), new Uint8Array(512).fill(1));
  t.same(d.subarray(512), new Uint8Array(512), 'the hole reads zeros');
  // WRITE SAME with UNMAP of a zero block punches too.
  t.equal((await exec(target, { cdb: WS16(0n, 256, 0x08), dataOut: new Uint8Array(512) })).status, ScsiStatus.GOOD);
  const all = await exec(target, { cdb: GLS(0n, 24), dataIn: 24 });
  t.equal(toHex(all.data.subarray(8, 24)), '00 00 00 00 00 00 00 00 00 00 05 00 01 00 00 00');
  await new Promise<void>((resolve) => store.close(() => resolve()));
});

t.test('file store without a punching engine writes zeros; without seekData all is mapped', async (t) => {
  const file = path.join(tmpdir(), 'fallback.img');
  const punches: string[] = [];
  const recording: IoEngine = {
    ...nodeFsIoEngine,
    punchHole(fd, off, len, cb) {
      punches.push(`${off}+${len}`);
      nodeFsIoEngine.punchHole!(fd, off, len, cb);
    },
  };
  const store = openFileStore({ path: file, sizeBytes: 1 << 20, engine: recording });
  const target = new ScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  await exec(target, { cdb: rw10(0x2a, 0, 4), dataOut: new Uint8Array(2048).fill(7) });
  t.equal((await exec(target, UNMAP1(1n, 2))).status, ScsiStatus.GOOD);
  t.same(punches, ['512+1024'], 'the engine was asked to punch');
  const bytes = new Uint8Array(fs.readFileSync(file).subarray(0, 2048));
  t.same(bytes.subarray(0, 512), new Uint8Array(512).fill(7));
  t.same(bytes.subarray(512, 1536), new Uint8Array(1024), 'nodeFsIoEngine wrote zeros instead');
  t.same(bytes.subarray(1536, 2048), new Uint8Array(512).fill(7));
  const g = await exec(target, { cdb: GLS(0n, 24), dataIn: 24 });
  t.equal(toHex(g.data), '00 00 00 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 08 00 00 00 00 00',
    'no SEEK_DATA: one mapped extent');
  await new Promise<void>((resolve) => store.close(() => resolve()));
});
