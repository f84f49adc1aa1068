// The TCMU command ring engine against FakeTcmuKernel (the kernel's side of
// drivers/target/target_core_user.c) and the real target core on a ram backstore. Offsets and
// values are the ones of include/uapi/linux/target_core_user.h; sense bytes are SPC-4 fixed
// format (§4.5.3) with the ASC/ASCQ of annex D.
import t from 'tap';
import {
  createRamStore, LogicalUnit, TaskManagementFunction, TmfResponse, type BlockStore, type ITNexus, type ScsiCommand,
} from '../../scsi-emul';
import { FakeBlockStore, RecordingScsiTarget, run } from '../../scsi-emul/testing';
import { Logger } from '../../backend/log';
import {
  CMDR_OFF, CmdReq, CmdRsp, EntryHdr, Iovec, Mailbox, TCMU_CMD_ENTRY_SIZE, TCMU_IOVEC_SIZE, TCMU_MAILBOX_SIZE,
  TCMU_MAILBOX_VERSION, TCMU_OP_ALIGN_SIZE, TCMU_OP_MASK, TCMU_SENSE_BUFFERSIZE, TCMU_TMR_ENTRY_SIZE, TcmuMailboxFlag,
  TcmuOpcode, TcmuUflag, TmrEntry, TmrType, cmdEntryLength, kernelCdbLength, tmrTypeName,
} from '../../backend/tcmu/spec';
import { TcmuRing, type TcmuRingOptions, type TcmuTmrNotification } from '../../backend/tcmu/ring';
import { FAKE_STALE_BYTE, FakeTcmuKernel, type FakeTcmuKernelOptions } from '../../backend/tcmu/fake-kernel';

const NEXUS: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405aaaaaaaaa', targetPortId: 3 });

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
function toHex(b: ArrayLike<number>): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}
const be32 = (v: number): number[] => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
/** READ(10) / WRITE(10) (SBC-3 r36 §5.12 / §5.30). */
const rw10 = (op: 0x28 | 0x2a, lba: number, blocks: number): number[] => [op, 0, ...be32(lba), 0, blocks >> 8, blocks & 0xff, 0];
const TUR = [0x00, 0, 0, 0, 0, 0];
/** 96 bytes: the given fixed-format sense, then zeros (TCMU_SENSE_BUFFERSIZE). */
const sense96 = (s: string): string => toHex([...hex(s), ...new Uint8Array(TCMU_SENSE_BUFFERSIZE - hex(s).length)]);

interface Rig {
  kernel: FakeTcmuKernel;
  ring: TcmuRing;
  target: RecordingScsiTarget;
  lines: string[];
  notifications: () => number;
}

function rig(opts: { store?: BlockStore; kernel?: FakeTcmuKernelOptions; ring?: Partial<TcmuRingOptions>; ua?: boolean } = {}): Rig {
  const kernel = new FakeTcmuKernel(opts.kernel);
  const target = new RecordingScsiTarget();
  target.addLogicalUnit(0, new LogicalUnit(opts.store ?? createRamStore({ sizeBytes: 1 << 20, name: 'lun0' }), { name: 'lun0' }));
  const lines: string[] = [];
  const log = new Logger('debug', { write: (l) => lines.push(l) });
  let notifications = 0;
  const ring = new TcmuRing(kernel.map, {
    target, nexus: NEXUS, lun: 0, log,
    notify: () => {
      notifications++;
      kernel.handleCompletions();
    },
    ...opts.ring,
  });
  if (opts.ua !== true) {
    // The first command of a new I_T nexus meets POWER ON, RESET (SAM-5 §5.14): consume it
    // through the core directly, so the ring starts clean.
    run(target, { nexus: NEXUS, lun: 0, cdb: TUR });
    target.submitted.length = 0;
  }
  return { kernel, ring, target, lines, notifications: () => notifications };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('uapi constants and offsets (target_core_user.h, checked against gcc on x86-64)', (t) => {
  t.equal(TCMU_MAILBOX_VERSION, 2);
  t.equal(TCMU_MAILBOX_SIZE, 128);
  t.equal(CMDR_OFF, 128);
  t.same(Mailbox, { version: 0, flags: 2, cmdr_off: 4, cmdr_size: 8, cmd_head: 12, cmd_tail: 64 });
  t.same(TcmuMailboxFlag, { CAP_OOOC: 1, CAP_READ_LEN: 2, CAP_TMR: 4, CAP_KEEP_BUF: 8 });
  t.same(TcmuOpcode, { PAD: 0, CMD: 1, TMR: 2 });
  t.equal(TCMU_OP_MASK, 7);
  t.equal(TCMU_OP_ALIGN_SIZE, 8);
  t.same(EntryHdr, { len_op: 0, cmd_id: 4, kflags: 6, uflags: 7 });
  t.same(TcmuUflag, { UNKNOWN_OP: 1, READ_LEN: 2, KEEP_BUF: 4 });
  t.same(CmdReq, { iov_cnt: 8, iov_bidi_cnt: 12, iov_dif_cnt: 16, cdb_off: 24, iov: 48 });
  t.same(Iovec, { iov_base: 0, iov_len: 8 });
  t.equal(TCMU_IOVEC_SIZE, 16);
  t.same(CmdRsp, { scsi_status: 8, read_len: 12, sense_buffer: 16 });
  t.equal(TCMU_CMD_ENTRY_SIZE, 112);
  t.equal(TCMU_SENSE_BUFFERSIZE, 96);
  t.same(TmrEntry, { tmr_type: 8, cmd_cnt: 12, cmd_ids: 32 });
  t.equal(TCMU_TMR_ENTRY_SIZE, 32);
  t.same(TmrType, {
    UNKNOWN: 0, ABORT_TASK: 1, ABORT_TASK_SET: 2, CLEAR_ACA: 3, CLEAR_TASK_SET: 4, LUN_RESET: 5,
    TARGET_WARM_RESET: 6, TARGET_COLD_RESET: 7, LUN_RESET_PRO: 128,
  });
  t.equal(tmrTypeName(5), 'LUN_RESET');
  t.equal(tmrTypeName(9), 'TMR 0x09');
  // scsi_command_size(): groups {6, 10, 10, 12, 16, 12, 10, 10}; 7Fh is 8 + ADDITIONAL CDB LENGTH.
  t.same([0x00, 0x28, 0x5a, 0x60, 0x88, 0xa0, 0xc0, 0xe0].map((op) => kernelCdbLength(op, 0)), [6, 10, 10, 12, 16, 12, 10, 10]);
  t.equal(kernelCdbLength(0x7f, 0x18), 32);
  // max(48 + 16 × iovecs, 112) + CDB rounded up to 8.
  t.equal(cmdEntryLength(1, 10), 128);
  t.equal(cmdEntryLength(5, 16), 144);
  t.equal(cmdEntryLength(0, 6), 120);
  t.end();
});

t.test('the fake kernel lays out a WRITE(10) entry the way queue_cmd_ring does', (t) => {
  const k = new FakeTcmuKernel();
  const id = k.queueCommand(rw10(0x2a, 2, 16), { dataOut: new Uint8Array(8192).fill(0x5c) });
  t.equal(id, 1, 'cmd_ids start at 1');
  const m = k.map;
  t.equal(toHex(m.subarray(0, 16)), '02 00 0f 00 80 00 00 00 80 ff 00 00 80 00 00 00', 'version 2, all caps, cmdr_off 128, cmdr_size 65408, cmd_head 128');
  t.equal(toHex(m.subarray(128, 136)), '81 00 00 00 01 00 00 00', 'len_op = 128 | TCMU_OP_CMD, cmd_id 1');
  t.equal(toHex(m.subarray(136, 148)), '01 00 00 00 00 00 00 00 00 00 00 00', 'one data iovec, no bidi, no dif');
  t.equal(toHex(m.subarray(152, 160)), 'f0 00 00 00 00 00 00 00', 'cdb_off = 128 + 0 + 112');
  t.equal(toHex(m.subarray(176, 192)), '00 00 01 00 00 00 00 00 00 20 00 00 00 00 00 00', 'iov[0] = {data_off 65536, 8192}: two adjacent blocks in one iovec');
  t.equal(toHex(m.subarray(240, 250)), '2a 00 00 00 00 02 00 00 10 00', 'the CDB at cdb_off');
  t.equal(m[65536], 0x5c, 'data-out in the data area');
  t.end();
});

t.test('a new nexus: TEST UNIT READY → CHECK CONDITION, POWER ON RESET sense in the slot (96 bytes, zero padded)', (t) => {
  const r = rig({ ua: true });
  const id = r.kernel.queueCommand(TUR);
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.status, 0x02, 'SAM CHECK CONDITION (not the shifted Linux value)');
  t.equal(toHex(c.sense), sense96('70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00'), 'UNIT ATTENTION 29/00');
  t.equal(r.kernel.map[CMDR_OFF + c.slot + 8], 0x02, 'rsp.scsi_status at entry offset 8');
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead, 'cmd_tail advanced past the entry');
  t.equal(r.kernel.broken, null);
  t.equal(r.notifications(), 1);
  t.end();
});

t.test('INQUIRY: data-in straight into the data area; the short transfer is reported with READ_LEN', (t) => {
  const r = rig();
  const id = r.kernel.queueCommand([0x12, 0, 0, 0, 0xff, 0], { dataIn: 255 });
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.status, 0x00);
  t.equal(c.uflags, 0x02, 'TCMU_UFLAG_READ_LEN');
  t.equal(c.readLen, 96);
  t.equal(toHex(r.kernel.map.subarray(CMDR_OFF + c.slot + 12, CMDR_OFF + c.slot + 16)), '60 00 00 00', 'rsp.read_len = 96');
  // SPC-4 §6.6.2 standard INQUIRY data: direct access, VERSION 06h, HISUP|RDF 2, ADDITIONAL LENGTH 5Bh.
  t.equal(toHex(c.data.subarray(0, 8)), '00 00 06 12 5b 30 00 02');
  t.equal(Buffer.from(c.data.subarray(8, 16)).toString('latin1'), 'VHOST-TS');
  t.end();
});

t.test('WRITE then READ: the store moves bytes straight between the data area and the LU (zero copy)', (t) => {
  const r = rig();
  const pattern = new Uint8Array(8192);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
  const seen: boolean[] = [];
  const submit = r.target.submit.bind(r.target);
  r.target.submit = (cmd: ScsiCommand): void => {
    for (const v of [...cmd.dataOut, ...cmd.dataIn]) seen.push(v.buffer === r.kernel.buffer && v.byteOffset >= r.kernel.dataOff);
    submit(cmd);
  };
  r.kernel.queueCommand(rw10(0x2a, 4, 16), { dataOut: pattern });
  r.kernel.queueCommand(rw10(0x28, 4, 16), { dataIn: 8192 });
  r.ring.process();
  const [w, rd] = r.kernel.takeCompletions();
  t.equal(w.status, 0x00);
  t.equal(w.readLen, null);
  t.equal(rd.status, 0x00);
  t.equal(rd.readLen, null, 'a full transfer needs no READ_LEN');
  t.same(rd.data, pattern);
  t.ok(seen.length === 2 && seen.every(Boolean), 'every segment the core saw is a view of the data area');
  t.equal(r.notifications(), 1, 'one doorbell for both completions');
  t.end();
});

t.test('out-of-order completion: the later command completes first, in the older slot', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  store.ops.splice(0);
  store.data!.fill(0x11, 0, 4096);
  store.data!.fill(0x22, 4096, 8192);
  const a = r.kernel.queueCommand(rw10(0x28, 0, 8), { dataIn: 4096 });
  const b = r.kernel.queueCommand(rw10(0x28, 8, 8), { dataIn: 4096 });
  const slotA = r.kernel.entryOffset(a) - CMDR_OFF;
  const slotB = r.kernel.entryOffset(b) - CMDR_OFF;
  r.ring.process();
  t.equal(r.ring.inFlight, 2);
  const [opA, opB] = store.pending('read');
  opB.complete();
  await turn();
  let done = r.kernel.takeCompletions();
  t.equal(done.length, 1);
  t.equal(done[0].cmdId, b);
  t.equal(done[0].slot, slotA, 'completion for B written into A\'s slot (cmd_id rewritten)');
  t.ok(done[0].data.every((x) => x === 0x22));
  t.equal(r.kernel.pending, 1, 'A still pending in the kernel');
  t.equal(r.kernel.cmdTail, slotB, 'cmd_tail stops at the next unconsumed command slot');
  opA.complete();
  await turn();
  done = r.kernel.takeCompletions();
  t.equal(done[0].cmdId, a);
  t.equal(done[0].slot, slotB);
  t.ok(done[0].data.every((x) => x === 0x11));
  t.equal(r.kernel.broken, null);
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead);
  t.end();
});

t.test('PAD entries: commands never wrap; the ring walks across the end many times', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store, kernel: { cmdrSize: 1000, dataBlocks: 16 } });
  store.manual = false;
  for (let i = 0; i < 40; i++) {
    const data = new Uint8Array(512).fill(i);
    t.ok(r.kernel.queueCommand(rw10(0x2a, i, 1), { dataOut: data }) > 0);
    r.ring.process();
    t.ok(r.kernel.queueCommand(rw10(0x28, i, 1), { dataIn: 512 }) > 0);
    r.ring.process();
  }
  // Several in flight across the wrap point too.
  store.manual = true;
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) {
    ids.push(r.kernel.queueCommand(rw10(0x28, i, 1), { dataIn: 512 }));
    r.ring.process();
  }
  t.ok(ids.every((id) => id > 0));
  for (const op of store.pending('read').reverse()) op.complete();
  await turn();
  const all = r.kernel.takeCompletions();
  t.equal(all.length, 86);
  t.ok(all.every((c) => c.status === 0), 'every command GOOD');
  const reads = all.filter((c) => c.data.length === 512);
  t.ok(reads.slice(0, 40).every((c, i) => c.data.every((x) => x === i)), 'each read returns what its write stored');
  t.ok(r.kernel.pads >= 5, `${r.kernel.pads} PAD entries inserted`);
  t.equal(r.ring.stats.pads, r.kernel.pads, 'every PAD skipped');
  t.equal(r.kernel.broken, null);
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead);
  t.end();
});

t.test('TMR entries are decoded, reported and consumed; the aborted command still completes', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const tmrs: TcmuTmrNotification[] = [];
  const r = rig({ store, ring: { onTmr: (x) => tmrs.push(x) } });
  const id = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  r.ring.process();
  t.ok(r.kernel.queueTmr(TmrType.ABORT_TASK, [id]));
  r.ring.process();
  t.same(tmrs, [{ type: 1, typeName: 'ABORT_TASK', cmdIds: [id] }]);
  t.ok(r.lines.some((l) => l.includes('debug') && l.includes('TMR ABORT_TASK') && l.includes(`[${id}]`)), 'logged at debug');
  store.pending('read')[0].complete();
  await turn();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id, 'LIO waits for the completion of a command it aborts');
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead, 'the TMR entry behind it consumed with it');
  // A TMR with nothing in flight is consumed at once.
  const before = r.notifications();
  t.ok(r.kernel.queueTmr(TmrType.LUN_RESET, []));
  r.ring.process();
  t.equal(tmrs[1].typeName, 'LUN_RESET');
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead);
  t.equal(r.notifications(), before + 1, 'the space is handed back with a doorbell');
  t.equal(r.kernel.broken, null);
  t.end();
});

t.test('an entry with an unknown opcode is answered with TCMU_UFLAG_UNKNOWN_OP', (t) => {
  const r = rig();
  const id = r.kernel.queueCommand(TUR);
  const e = r.kernel.entryOffset(id);
  r.kernel.poke32(e, (r.kernel.peek32(e) & ~TCMU_OP_MASK) | 5);
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.unknownOp, true);
  t.equal(c.uflags & 0x01, 0x01);
  t.equal(c.status, 0x02, 'the kernel fails it with CHECK CONDITION');
  t.equal(r.ring.stats.rejected, 1);
  t.equal(r.target.submitted.length, 0, 'never reached the core');
  t.ok(r.lines.some((l) => l.includes('unknown entry opcode 5')));
  t.equal(r.ring.state, 'running', 'the ring goes on');
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.takeCompletions()[0].status, 0x00);
  t.end();
});

t.test('CHECK CONDITION: LBA out of range sense bytes reach the kernel', (t) => {
  const r = rig();
  r.kernel.queueCommand(rw10(0x28, 4096, 1), { dataIn: 512 }); // 1 MiB = 2048 blocks
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.status, 0x02);
  t.equal(toHex(c.sense), sense96('70 00 05 00 00 00 00 0a 00 00 00 00 21 00 00 00 00 00'), 'ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE');
  t.equal(c.data.length, 0, 'no data copied for CHECK CONDITION without READ_LEN');
  t.end();
});

t.test('a data-in buffer smaller than the READ transfer: CHECK CONDITION INVALID FIELD IN CDB', (t) => {
  const r = rig();
  r.kernel.queueCommand(rw10(0x28, 0, 8), { dataIn: 512 });
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.status, 0x02);
  t.equal(toHex(c.sense), sense96('70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00'));
  t.end();
});

t.test('GOOD with no data-in bytes: the buffer LIO copies anyway is zeroed, never stale', (t) => {
  const r = rig();
  // INQUIRY with ALLOCATION LENGTH 0 (SPC-4 §4.3.5.6: not an error), initiator buffer 64 bytes.
  r.kernel.queueCommand([0x12, 0, 0, 0, 0, 0], { dataIn: 64 });
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.status, 0x00);
  t.equal(c.readLen, null, 'read_len 0 cannot be reported (the kernel ignores it)');
  t.equal(c.data.length, 64);
  t.ok(c.data.every((x) => x === 0), `no ${FAKE_STALE_BYTE.toString(16)}h poison from an old data page`);
  t.end();
});

t.test('a kernel without CAP_READ_LEN gets the residual zeroed instead', (t) => {
  const r = rig({ kernel: { flags: TcmuMailboxFlag.CAP_OOOC } });
  r.kernel.queueCommand([0x12, 0, 0, 0, 0xff, 0], { dataIn: 255 });
  r.ring.process();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.uflags, 0);
  t.equal(c.data.length, 255);
  t.equal(c.data[3], 0x12);
  t.ok(c.data.subarray(96).every((x) => x === 0));
  t.end();
});

t.test('completions of one loop turn share one doorbell', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  store.manual = false;
  const before = r.notifications();
  for (let i = 0; i < 10; i++) r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.takeCompletions().length, 10);
  t.equal(r.notifications(), before + 1, 'ten synchronous completions, one write');
  store.manual = true;
  for (let i = 0; i < 5; i++) r.kernel.queueCommand(rw10(0x28, i, 1), { dataIn: 512 });
  r.ring.process();
  t.equal(r.notifications(), before + 1, 'nothing completed yet, no doorbell');
  for (const op of store.pending('read')) op.complete();
  await turn();
  t.equal(r.kernel.takeCompletions().length, 5);
  t.equal(r.notifications(), before + 2, 'five completions in one turn, one write');
  t.end();
});

t.test('no allocation per command: ScsiCommand slots are reused, the pool grows only with concurrency', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: false });
  const r = rig({ store, ring: { initialSlots: 4 } });
  for (let i = 0; i < 300; i++) {
    r.kernel.queueCommand(i % 2 === 0 ? rw10(0x28, i, 1) : TUR, i % 2 === 0 ? { dataIn: 512 } : {});
    r.ring.process();
  }
  t.equal(r.kernel.takeCompletions().length, 300);
  t.equal(r.ring.poolSize, 4, 'sequential commands: the initial pool');
  t.ok(new Set(r.target.submitted).size <= 4, 'the core saw at most 4 distinct command objects');
  store.manual = true;
  for (let i = 0; i < 6; i++) r.kernel.queueCommand(rw10(0x28, i, 1), { dataIn: 512 });
  r.ring.process();
  t.equal(r.ring.poolSize, 6, 'six in flight: grown to six');
  for (const op of store.pending()) op.complete();
  await turn();
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 6; i++) r.kernel.queueCommand(rw10(0x28, i, 1), { dataIn: 512 });
    r.ring.process();
    for (const op of store.pending()) op.complete();
    await turn();
  }
  t.equal(r.kernel.takeCompletions().length, 126);
  t.equal(r.ring.poolSize, 6, 'no further growth');
  t.equal(new Set(r.target.submitted).size, 6);
  t.equal(r.ring.inFlight, 0);
  t.end();
});

t.test('a command the kernel timed out (cmd_time_out) is completed without breaking the ring', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  const id = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  r.ring.process();
  r.kernel.expire(id);
  store.pending('read')[0].complete();
  await turn();
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.expired, true);
  t.equal(r.kernel.broken, null);
  store.manual = false;
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.takeCompletions()[0].status, 0);
  t.end();
});

t.test('the ABORTED service response becomes TASK ABORTED', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  const id = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  r.ring.process();
  // ABORT TASK SET from this nexus (SAM-5 §7.2) while the read is with the store.
  let tmf: TmfResponse | null = null;
  r.target.taskManagement(TaskManagementFunction.ABORT_TASK_SET, NEXUS, 0, 0n, (resp) => { tmf = resp; });
  store.pending('read')[0].complete();
  await turn();
  t.equal(tmf, TmfResponse.FUNCTION_COMPLETE);
  const [c] = r.kernel.takeCompletions();
  t.equal(c.cmdId, id);
  t.equal(c.status, 0x40, 'SAM TASK ABORTED');
  t.ok(c.data.every((x) => x === 0), 'no stale data-in');
  t.end();
});

t.test('reset_ring under a running ring: the ring is abandoned, nothing more is written', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const failures: string[] = [];
  const r = rig({ store, ring: { onFailed: (x) => failures.push(x) } });
  r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  r.ring.process();
  r.kernel.resetRing();
  store.pending('read')[0].complete();
  await turn();
  t.equal(r.ring.state, 'abandoned');
  // Our cmd_tail was 0 (the read sat in slot 0), so the reset shows as cmd_head behind the cursor.
  t.match(failures[0], /cmd_head 0 moved back behind our cursor 128 \(reset_ring/);
  t.equal(r.kernel.takeCompletions().length, 0);
  t.equal(r.kernel.cmdTail, 0, 'cmd_tail left alone');
  t.equal(r.kernel.cmdHead, 0);
  t.equal(r.kernel.broken, null, 'the kernel never saw a stale cmd_id');
  t.equal(r.ring.inFlight, 0);
  t.end();
});

t.test('stop(): no new entries are taken; commands in flight still complete', async (t) => {
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  const r = rig({ store });
  const id = r.kernel.queueCommand(rw10(0x28, 0, 1), { dataIn: 512 });
  r.ring.process();
  r.ring.stop();
  r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.ring.stats.entries, 1, 'the TUR after stop() was not taken');
  let idle = false;
  r.ring.whenIdle(() => { idle = true; });
  t.equal(idle, false);
  store.pending('read')[0].complete();
  t.equal(idle, true);
  await turn();
  const c = r.kernel.takeCompletions();
  t.same(c.map((x) => x.cmdId), [id]);
  t.equal(r.ring.state, 'stopped');
  t.end();
});

t.test('entries beyond entriesPerTurn are taken on a later loop turn', async (t) => {
  const r = rig({ ring: { entriesPerTurn: 4 } });
  for (let i = 0; i < 10; i++) r.kernel.queueCommand(TUR);
  r.ring.process();
  t.equal(r.kernel.takeCompletions().length, 4);
  await turn();
  await turn();
  await turn();
  t.equal(r.kernel.takeCompletions().length, 6);
  t.equal(r.kernel.cmdTail, r.kernel.cmdHead);
  t.end();
});
