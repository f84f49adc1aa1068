// A damaged or foreign TCMU ring never crashes the ring engine or makes it touch memory outside
// the map (reliability.md V11.1): the mailbox is refused up front; an entry that leaves the walk
// well defined fails just its command; one that does not stops the ring with a clear log while
// commands already taken still complete. Sense bytes: SPC-4 §4.5.3 fixed format.
import t, { type Test } from 'tap';
import { createRamStore, LogicalUnit, type ITNexus } from '../../scsi-emul';
import { FakeBlockStore, RecordingScsiTarget, run } from '../../scsi-emul/testing';
import type { BlockStore } from '../../scsi-emul';
import { Logger } from '../../backend/log';
import { CMDR_OFF, CmdReq, TcmuMailboxFlag, TcmuOpcode, TmrType } from '../../backend/tcmu/spec';
import { TcmuRing, TcmuRingError, type TcmuRingOptions } from '../../backend/tcmu/ring';
import { FakeTcmuKernel, type FakeTcmuKernelOptions } from '../../backend/tcmu/fake-kernel';

const NEXUS: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405bbbbbbbbb', targetPortId: 4 });
const TUR = [0x00, 0, 0, 0, 0, 0];
const be32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const rw10 = (op: 0x28 | 0x2a, lba: number, blocks: number): number[] => [op, 0, ...be32(lba), 0, blocks >> 8, blocks & 0xff, 0];
const toHex = (b: ArrayLike<number>): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

/** Fixed sense: HARDWARE ERROR, LOGICAL UNIT COMMUNICATION FAILURE (08/00). */
const LU_COMM_FAILURE = '70 00 04 00 00 00 00 0a 00 00 00 00 08 00 00 00 00 00';
/** Fixed sense: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (20/00). */
const INVALID_OPCODE = '70 00 05 00 00 00 00 0a 00 00 00 00 20 00 00 00 00 00';

interface Rig {
  kernel: FakeTcmuKernel;
  ring: TcmuRing;
  target: RecordingScsiTarget;
  store: BlockStore;
  lines: string[];
}

function rig(opts: { store?: BlockStore; kernel?: FakeTcmuKernelOptions; ring?: Partial<TcmuRingOptions> } = {}): Rig {
  const kernel = new FakeTcmuKernel(opts.kernel);
  const target = new RecordingScsiTarget();
  const store = opts.store ?? createRamStore({ sizeBytes: 1 << 20, name: 'lun0' });
  target.addLogicalUnit(0, new LogicalUnit(store, { name: 'lun0' }));
  run(target, { nexus: NEXUS, lun: 0, cdb: TUR }); // consume POWER ON, RESET
  target.submitted.length = 0;
  const lines: string[] = [];
  const ring = new TcmuRing(kernel.map, {
    target, nexus: NEXUS, lun: 0, log: new Logger('debug', { write: (l) => lines.push(l) }),
    notify: () => { kernel.handleCompletions(); }, initialSlots: 4, ...opts.ring,
  });
  return { kernel, ring, target, store, lines };
}

function refused(t: Test, opts: FakeTcmuKernelOptions, poke: ((k: FakeTcmuKernel) => void) | null, pattern: RegExp): void {
  const kernel = new FakeTcmuKernel(opts);
  if (poke) poke(kernel);
  const before = kernel.map.slice(0, 128);
  let caught: unknown = null;
  try {
    new TcmuRing(kernel.map, {
      target: new RecordingScsiTarget(), nexus: NEXUS, lun: 0, log: new Logger('silent'), notify: () => {},
    });
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof TcmuRingError, 'a TcmuRingError');
  t.match((caught as Error | null)?.message ?? '', pattern);
  t.same(kernel.map.slice(0, 128), before, 'the mailbox is left alone');
}

t.test('mailboxes the engine cannot serve are refused with a clear error', (t) => {
  refused(t, { version: 1 }, null, /mailbox version 1; only TCMU_MAILBOX_VERSION 2 is supported/);
  refused(t, { version: 3 }, null, /mailbox version 3/);
  refused(t, { flags: TcmuMailboxFlag.CAP_READ_LEN | TcmuMailboxFlag.CAP_TMR }, null, /lack TCMU_MAILBOX_FLAG_CAP_OOOC/);
  refused(t, { cmdrOff: 256 }, null, /cmdr_off 256/);
  refused(t, {}, (k) => k.poke32(8, k.map.length), /cmdr_size \d+ does not fit/);
  refused(t, {}, (k) => k.poke32(8, 1001), /cmdr_size 1001/);
  refused(t, {}, (k) => k.poke32(12, 12), /cmd_head 12/);
  refused(t, {}, (k) => k.poke32(64, k.cmdrSize), /cmd_tail \d+ are not 8-byte aligned offsets/);
  t.throws(() => new TcmuRing(new Uint8Array(64), {
    target: new RecordingScsiTarget(), nexus: NEXUS, lun: 0, log: new Logger('silent'), notify: () => {},
  }), /cannot hold the 128-byte mailbox/);
  t.end();
});

/** The ring stopped taking entries, said why, and takes nothing more; the kernel is not broken. */
function expectFailed(t: Test, r: Rig, pattern: RegExp): void {
  t.equal(r.ring.state, 'failed');
  t.match(r.ring.failureReason ?? '', pattern);
  t.ok(r.lines.some((l) => l.includes('error') && l.includes('stopped taking commands') && pattern.test(l)), 'logged as an error');
  const taken = r.ring.stats.entries;
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.ring.stats.entries, taken, 'no further entry taken');
  t.equal(r.kernel.broken, null, 'nothing the kernel would call a broken ring was written');
}

t.test('an entry of length 0: the ring stops, the command taken before it still completes', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  const first = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  const bad = r.kernel.queueCommand(TUR);
  r.kernel.poke32(r.kernel.entryOffset(bad), TcmuOpcode.CMD);
  r.ring.process();
  expectFailed(t, r, /entry at ring offset 128 has length 0/);
  store.pending('read')[0].complete();
  await new Promise((resolve) => setImmediate(resolve));
  const done = r.kernel.takeCompletions();
  t.same(done.map((c) => [c.cmdId, c.status]), [[first, 0]]);
  t.end();
});

t.test('an entry longer than the space up to cmd_head stops the ring', (t) => {
  const r = rig();
  const id = r.kernel.queueCommand(TUR);
  r.kernel.poke32(r.kernel.entryOffset(id), 4096 | TcmuOpcode.CMD);
  r.ring.process();
  expectFailed(t, r, /length 4096\) runs past cmd_head 120/);
  t.end();
});

t.test('an entry running past the ring end stops the ring (PAD damaged)', (t) => {
  const r = rig({ kernel: { cmdrSize: 1000 } });
  for (let i = 0; i < 8; i++) r.kernel.queueCommand(TUR); // 8 × 120 bytes
  r.ring.process();
  t.equal(r.kernel.takeCompletions().length, 8);
  r.kernel.queueCommand(TUR); // needs a 40-byte PAD at 960 first
  t.equal(r.kernel.pads, 1);
  r.kernel.poke32(CMDR_OFF + 960, 48 | TcmuOpcode.PAD);
  r.ring.process();
  expectFailed(t, r, /entry at ring offset 960 \(opcode 0, length 48\) runs past the ring end 1000/);
  t.end();
});

t.test('a cmd_head that is not 8-byte aligned or outside the ring stops the ring', (t) => {
  let r = rig();
  r.kernel.queueCommand(TUR);
  r.kernel.poke32(12, 116);
  r.ring.process();
  t.equal(r.ring.state, 'failed');
  t.match(r.ring.failureReason, /cmd_head 116 is not an 8-byte aligned offset/);
  r = rig();
  r.kernel.poke32(12, r.kernel.cmdrSize + 8);
  r.ring.process();
  t.match(r.ring.failureReason, /cmd_head \d+ is not an 8-byte aligned offset inside the 65408-byte ring/);
  t.end();
});

t.test('command slots the kernel could not be answered in stop the ring', (t) => {
  // Shorter than struct tcmu_cmd_entry: the response would not fit.
  let r = rig();
  let id = r.kernel.queueCommand(TUR);
  r.kernel.poke32(r.kernel.entryOffset(id), 104 | TcmuOpcode.CMD);
  r.ring.process();
  expectFailed(t, r, /CMD entry at ring offset 0 has length 104, less than the 112-byte struct tcmu_cmd_entry/);
  // An unknown opcode in a short entry likewise.
  r = rig();
  id = r.kernel.queueCommand(TUR);
  r.kernel.poke32(r.kernel.entryOffset(id), 16 | 6);
  r.ring.process();
  expectFailed(t, r, /opcode 6 entry at ring offset 0 has length 16/);
  // cmd_id 0: xa_alloc never hands it out.
  r = rig();
  id = r.kernel.queueCommand(TUR);
  r.kernel.poke16(r.kernel.entryOffset(id) + 4, 0);
  r.ring.process();
  expectFailed(t, r, /cmd_id 0, which the kernel never allocates/);
  t.end();
});

t.test('a cmd_id that is still in flight stops the ring; the first command completes', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  const a = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  const b = r.kernel.queueCommand(TUR);
  r.kernel.poke16(r.kernel.entryOffset(b) + 4, a);
  r.ring.process();
  expectFailed(t, r, new RegExp(`reuses cmd_id ${a}, which is still in flight`));
  store.pending('read')[0].complete();
  await new Promise((resolve) => setImmediate(resolve));
  t.same(r.kernel.takeCompletions().map((c) => c.cmdId), [a]);
  t.end();
});

/** Queues a WRITE(10) of one block, lets `damage` corrupt its entry, and checks it fails alone. */
function failsAlone(t: Test, damage: (k: FakeTcmuKernel, entry: number, id: number) => void, sense: string,
  pattern: RegExp, bidi = false): void {
  const r = rig();
  const id = r.kernel.queueCommand(rw10(0x2a, 0, 1), bidi
    ? { dataOut: new Uint8Array(512).fill(0xee), bidiIn: 512 }
    : { dataOut: new Uint8Array(512).fill(0xee) });
  damage(r.kernel, r.kernel.entryOffset(id), id);
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.status, 0x02, 'CHECK CONDITION');
  t.equal(toHex(c.sense.subarray(0, 18)), sense);
  t.ok(c.sense.subarray(18).every((x) => x === 0));
  t.equal(r.target.submitted.length, 0, 'never reached the core');
  t.ok(r.lines.some((l) => pattern.test(l)), `logged: ${pattern}`);
  const lba0 = new Uint8Array(512);
  r.store.read(0, [lba0], 512, () => {});
  t.ok(lba0.every((x) => x === 0), 'the LU was not written');
  t.equal(r.ring.state, 'running');
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.takeCompletions()[0]?.status, 0, 'the next command runs');
  t.equal(r.kernel.broken, null);
}

const IOV0 = CmdReq.iov;

t.test('iovecs outside the data area fail the command with LOGICAL UNIT COMMUNICATION FAILURE', (t) => {
  failsAlone(t, (k, e) => k.poke32(e + IOV0, 0), LU_COMM_FAILURE, /iovec 0 \{base 0, len 512\} is outside the data area \[65536, /);
  failsAlone(t, (k, e) => k.poke32(e + IOV0, 64), LU_COMM_FAILURE, /iovec 0 \{base 64, len 512\}/);
  failsAlone(t, (k, e) => k.poke32(e + IOV0, k.map.length - 100), LU_COMM_FAILURE, /len 512\} is outside the data area/);
  failsAlone(t, (k, e) => k.poke32(e + IOV0 + 4, 1), LU_COMM_FAILURE, /base above 4 GiB/);
  failsAlone(t, (k, e) => k.poke32(e + IOV0 + 12, 1), LU_COMM_FAILURE, /len above 4 GiB/);
  failsAlone(t, (k, e) => k.poke32(e + IOV0 + 8, 0xffffffff), LU_COMM_FAILURE, /len 4294967295\}/);
  t.end();
});

t.test('a cdb_off outside the entry fails the command', (t) => {
  // The entry is at map offset 128, 128 bytes long, one iovec: the CDB belongs in [192, 256).
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.cdb_off, 0), LU_COMM_FAILURE, /cdb_off 0 is outside \[192, 256\)/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.cdb_off, 176), LU_COMM_FAILURE, /cdb_off 176 is outside \[192, 256\)/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.cdb_off, 256), LU_COMM_FAILURE, /cdb_off 256 is outside/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.cdb_off + 4, 2), LU_COMM_FAILURE, /cdb_off 0x2000000f0 is outside/);
  // The CDB starts inside but a 10-byte WRITE(10) would end past the entry.
  failsAlone(t, (k, e) => {
    k.poke32(e + CmdReq.cdb_off, 248);
    k.poke8(248, 0x2a);
  }, LU_COMM_FAILURE, /10-byte CDB at 248 runs past the entry end 256/);
  t.end();
});

t.test('a variable-length CDB longer than its entry fails the command', (t) => {
  const r = rig();
  const cdb = new Array(32).fill(0);
  cdb[0] = 0x7f;
  cdb[7] = 0x18;
  const id = r.kernel.queueCommand(cdb);
  const e = r.kernel.entryOffset(id);
  r.kernel.poke8(r.kernel.peek32(e + CmdReq.cdb_off) + 7, 0xff); // 263 bytes claimed
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.status, 0x02);
  t.equal(toHex(c.sense.subarray(0, 18)), LU_COMM_FAILURE);
  t.ok(r.lines.some((l) => /263-byte CDB at \d+ runs past the entry end/.test(l)));
  t.end();
});

t.test('iovec counts that do not fit the entry fail the command', (t) => {
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.iov_cnt, 0xffffffff), LU_COMM_FAILURE, /iov_cnt 4294967295 \+ iov_bidi_cnt 0 iovecs do not fit the 128-byte entry/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.iov_cnt, 6), LU_COMM_FAILURE, /iov_cnt 6 \+ iov_bidi_cnt 0/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.iov_bidi_cnt, 0xfffffff0), LU_COMM_FAILURE, /iov_bidi_cnt 4294967280 iovecs do not fit/);
  failsAlone(t, (k, e) => k.poke32(e + CmdReq.iov_dif_cnt, 1), LU_COMM_FAILURE, /iov_dif_cnt 1: protection information/);
  t.end();
});

t.test('bidirectional commands are rejected: INVALID COMMAND OPERATION CODE', (t) => {
  failsAlone(t, () => {}, INVALID_OPCODE, /bidirectional command \(not supported\)/, true);
  t.end();
});

t.test('a TMR entry whose cmd_cnt does not fit is skipped with a warning', (t) => {
  let reported = 0;
  const r = rig({ ring: { onTmr: () => { reported++; } } });
  t.ok(r.kernel.queueTmr(TmrType.ABORT_TASK_SET, [1, 2]));
  r.kernel.poke32(CMDR_OFF + 12, 1000);
  r.ring.process();
  t.equal(reported, 0, 'not reported');
  t.ok(r.lines.some((l) => l.includes('warn') && l.includes('cmd_cnt 1000 does not fit its 40 bytes')));
  t.equal(r.ring.state, 'running');
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead, 'consumed');
  t.end();
});

t.test('cmd_tail changed under the ring (reset): abandoned, nothing written afterwards', (t) => {
  const r = rig();
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.cmdTail, 120);
  r.kernel.poke32(64, 0);
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.ring.state, 'abandoned');
  t.match(r.ring.failureReason, /cmd_tail changed from 120 to 0 behind our back/);
  t.equal(r.kernel.peek32(64), 0);
  t.end();
});

// xorshift32: a reproducible stream for the fuzzer.
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

t.test('fuzz: random damage to queued entries and the mailbox never throws', (t) => {
  const rnd = prng(0x7c3a91);
  const target = new RecordingScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20, name: 'fuzz' }), { name: 'fuzz' }));
  const log = new Logger('silent');
  const cdbs = [TUR, rw10(0x28, 1, 2), rw10(0x2a, 3, 1), [0x12, 0, 0, 0, 0x60, 0], [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]];
  let failed = 0;
  let abandoned = 0;
  for (let iter = 0; iter < 400; iter++) {
    const kernel = new FakeTcmuKernel({ cmdrSize: 512 + 8 * (rnd() % 64), dataBlocks: rnd() % 4, blockSize: 1024 });
    const ring = new TcmuRing(kernel.map, {
      target, nexus: NEXUS, lun: 0, log, notify: () => { kernel.handleCompletions(); }, initialSlots: 2,
    });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1 + (rnd() % 4); i++) {
        const cdb = cdbs[rnd() % cdbs.length];
        if (cdb[0] === 0x2a) kernel.queueCommand(cdb, { dataOut: new Uint8Array(512) });
        else if (cdb[0] === 0x28) kernel.queueCommand(cdb, { dataIn: 1024 });
        else if (cdb[0] === 0x12 || cdb[0] === 0x25) kernel.queueCommand(cdb, { dataIn: 96 });
        else kernel.queueCommand(cdb);
      }
      if (rnd() % 3 === 0) kernel.queueTmr(rnd() % 8, [1, 2, 3]);
      const damage = 1 + (rnd() % 6);
      for (let d = 0; d < damage; d++) {
        // The mailbox only in the last round: the fake kernel itself trusts its own cmd_head.
        const where = round === 2 && rnd() % 8 === 0 ? 12 + (rnd() % 56) : CMDR_OFF + (rnd() % kernel.cmdrSize);
        kernel.map[where] = rnd() & 0xff;
      }
      ring.process(); // must not throw: every read is bounds-checked first (DataView would throw)
    }
    if (ring.state === 'failed') failed++;
    if (ring.state === 'abandoned') abandoned++;
  }
  t.ok(failed > 0, `${failed} rings stopped on damage, ${abandoned} abandoned, none threw`);
  t.end();
});
