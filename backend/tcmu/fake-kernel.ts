// The kernel side of a TCMU device, for tests and benches: a mailbox, command ring and data area
// in a plain ArrayBuffer, filled and consumed the way drivers/target/target_core_user.c does it,
// so TcmuRing can run without /dev/uio.
//
// Queuing follows queue_cmd_ring(): data blocks from the lowest free one, adjacent blocks
// coalesced into one iovec, the entry sized max(48 + 16 × iovecs, 112) + the CDB rounded up to
// 8, the CDB right after the base size, a PAD entry first when the entry would not fit before
// the ring end, one byte of the ring always kept free, cmd_ids the lowest free in 1..0xffff.
// Completion follows tcmu_handle_completions(): walk from cmdr_last_cleaned to cmd_tail, skip
// PAD and TMR, look up each cmd_id (unknown → "ring is broken", as the kernel marks it), apply
// TCMU_UFLAG_UNKNOWN_OP and TCMU_UFLAG_READ_LEN, copy the sense and the data-in bytes out.

import { endianness } from 'node:os';
import { ScsiStatus } from '../../scsi-emul';
import {
  CMDR_OFF, CmdReq, CmdRsp, EntryHdr, Iovec, Mailbox, TCMU_IOVEC_SIZE, TCMU_MAILBOX_VERSION, TCMU_OP_MASK,
  TCMU_SENSE_BUFFERSIZE, TCMU_TMR_ENTRY_SIZE, TcmuMailboxFlag, TcmuOpcode, TcmuUflag, TmrEntry, cmdEntryBaseLength,
  kernelCdbLength, roundUp8,
} from './spec';

export interface FakeTcmuKernelOptions {
  /** mailbox cmdr_size; default 64 KiB − 128, so the data area starts on a page (data_off) */
  cmdrSize?: number;
  /** data block size (data_pages_per_blk × PAGE_SIZE); default 4096 */
  blockSize?: number;
  /** data blocks in the data area; default 256 */
  dataBlocks?: number;
  /** mailbox version; default TCMU_MAILBOX_VERSION (change it to test the refusal) */
  version?: number;
  /** mailbox flags; default every capability of a current kernel */
  flags?: number;
  /** mailbox cmdr_off; default 128 */
  cmdrOff?: number;
  /** called after each entry is queued (uio_event_notify) */
  onEvent?: () => void;
}

export interface FakeCommandOptions {
  /** data-out (DMA_TO_DEVICE): copied into the data area like scatter_data_area() */
  dataOut?: Uint8Array;
  /** data-in (DMA_FROM_DEVICE) buffer length */
  dataIn?: number;
  /** extra bidirectional data-in length (SCF_BIDI): iovecs counted in iov_bidi_cnt */
  bidiIn?: number;
}

/** What LIO did with one completion it found in the ring. */
export interface FakeTcmuCompletion {
  readonly cmdId: number;
  /** SAM status the command completes with (CHECK CONDITION for TCMU_UFLAG_UNKNOWN_OP) */
  readonly status: number;
  readonly uflags: number;
  /** the 96 sense bytes LIO copied (transport_copy_sense_to_cmd) for CHECK CONDITION, else empty */
  readonly sense: Uint8Array;
  /** data-in bytes copied to the initiator (gather_data_area) */
  readonly data: Uint8Array;
  /** with TCMU_UFLAG_READ_LEN and a non-zero read_len: the length completed with, else null */
  readonly readLen: number | null;
  /** ring offset of the slot the completion was read from */
  readonly slot: number;
  readonly unknownOp: boolean;
  /** the kernel's cmd_time_out had already completed it: only the ring space is reclaimed */
  readonly expired: boolean;
}

type Direction = 'none' | 'in' | 'out';

interface PendingCommand {
  readonly id: number;
  readonly direction: Direction;
  readonly dataLength: number;
  readonly blocks: number[];
  /** absolute map offsets / lengths of the data iovecs, in order */
  readonly iovs: { base: number; len: number }[];
  /** map offset of the entry */
  readonly entry: number;
  expired: boolean;
}

/** Poison the fake leaves in data-in blocks: the stale contents of a reused kernel page. */
export const FAKE_STALE_BYTE = 0xa5;

export class FakeTcmuKernel {
  readonly buffer: ArrayBuffer;
  readonly map: Uint8Array;
  readonly cmdrSize: number;
  readonly blockSize: number;
  readonly dataOff: number;
  readonly dataBlocks: number;
  /** completions in the order LIO processed them */
  readonly completions: FakeTcmuCompletion[] = [];
  /** "ring is broken" reason, as the kernel logs it; null while healthy */
  broken: string | null = null;
  /** uio events raised (entries queued) */
  events = 0;
  /** PAD entries inserted */
  pads = 0;
  onEvent: (() => void) | null;
  private readonly dv: DataView;
  private readonly mb32: Uint32Array;
  private readonly le = endianness() === 'LE';
  private readonly blockUsed: Uint8Array;
  private readonly commands = new Map<number, PendingCommand>();
  private lastCleaned = 0;

  constructor(opts: FakeTcmuKernelOptions = {}) {
    this.cmdrSize = opts.cmdrSize ?? (64 << 10) - CMDR_OFF;
    this.blockSize = opts.blockSize ?? 4096;
    this.dataBlocks = opts.dataBlocks ?? 256;
    if (this.cmdrSize % 8 !== 0 || this.cmdrSize < 256) throw new RangeError('FakeTcmuKernel: cmdrSize must be a multiple of 8, ≥ 256');
    this.dataOff = CMDR_OFF + this.cmdrSize;
    this.buffer = new ArrayBuffer(this.dataOff + this.blockSize * this.dataBlocks);
    this.map = new Uint8Array(this.buffer);
    this.dv = new DataView(this.buffer);
    this.mb32 = new Uint32Array(this.buffer, 0, 32);
    this.blockUsed = new Uint8Array(this.dataBlocks);
    this.onEvent = opts.onEvent ?? null;
    // tcmu_configure_device()
    this.dv.setUint16(Mailbox.version, opts.version ?? TCMU_MAILBOX_VERSION, this.le);
    this.dv.setUint16(Mailbox.flags, opts.flags ??
      (TcmuMailboxFlag.CAP_OOOC | TcmuMailboxFlag.CAP_READ_LEN | TcmuMailboxFlag.CAP_TMR | TcmuMailboxFlag.CAP_KEEP_BUF), this.le);
    this.dv.setUint32(Mailbox.cmdr_off, opts.cmdrOff ?? CMDR_OFF, this.le);
    this.dv.setUint32(Mailbox.cmdr_size, this.cmdrSize, this.le);
  }

  get cmdHead(): number {
    return Atomics.load(this.mb32, Mailbox.cmd_head / 4);
  }

  get cmdTail(): number {
    return Atomics.load(this.mb32, Mailbox.cmd_tail / 4);
  }

  get cmdrLastCleaned(): number {
    return this.lastCleaned;
  }

  /** Commands queued to the ring and not completed (the xarray's size). */
  get pending(): number {
    return this.commands.size;
  }

  /** Map offset of the entry of a pending command (for tests that damage it). */
  entryOffset(cmdId: number): number {
    const c = this.commands.get(cmdId);
    if (c === undefined) throw new Error(`FakeTcmuKernel: no pending cmd_id ${cmdId}`);
    return c.entry;
  }

  /** Map offsets and lengths of a pending command's data iovecs. */
  iovecs(cmdId: number): readonly { base: number; len: number }[] {
    const c = this.commands.get(cmdId);
    if (c === undefined) throw new Error(`FakeTcmuKernel: no pending cmd_id ${cmdId}`);
    return c.iovs;
  }

  poke8(offset: number, v: number): void { this.map[offset] = v; }
  poke16(offset: number, v: number): void { this.dv.setUint16(offset, v, this.le); }
  poke32(offset: number, v: number): void { this.dv.setUint32(offset, v, this.le); }
  peek16(offset: number): number { return this.dv.getUint16(offset, this.le); }
  peek32(offset: number): number { return this.dv.getUint32(offset, this.le); }

  /**
   * queue_cmd_ring(): queues a SCSI command. Returns its cmd_id; 0 when the ring, the data area
   * or the ids are exhausted (LIO would hold it on the qfull queue); -1 when the ring is broken
   * (LIO fails it with LOGICAL UNIT COMMUNICATION FAILURE).
   */
  queueCommand(cdb: ArrayLike<number>, opts: FakeCommandOptions = {}): number {
    if (this.broken !== null) return -1;
    const direction: Direction = opts.dataOut !== undefined ? 'out' : (opts.dataIn ?? 0) > 0 ? 'in' : 'none';
    const dataLength = opts.dataOut !== undefined ? opts.dataOut.length : opts.dataIn ?? 0;
    const bidiLength = opts.bidiIn ?? 0;
    const cdbLength = kernelCdbLength(cdb[0], cdb.length > 7 ? cdb[7] : 0);
    const blocks: number[] = [];
    const need = Math.ceil(dataLength / this.blockSize) + Math.ceil(bidiLength / this.blockSize);
    for (let b = 0; b < this.dataBlocks && blocks.length < need; b++) if (this.blockUsed[b] === 0) blocks.push(b);
    if (blocks.length < need) return 0;
    const dataBlocks = blocks.slice(0, Math.ceil(dataLength / this.blockSize));
    const bidiBlocks = blocks.slice(dataBlocks.length);
    const iovs = this.blocksToIovecs(dataBlocks, dataLength);
    const bidiIovs = this.blocksToIovecs(bidiBlocks, bidiLength);
    const base = cmdEntryBaseLength(iovs.length + bidiIovs.length);
    const size = base + roundUp8(cdbLength);
    if (size > this.cmdrSize / 2) throw new RangeError(`FakeTcmuKernel: a ${size}-byte entry exceeds half the ring`);
    if (!this.roomFor(size)) return 0;
    let id = 1;
    while (id <= 0xffff && this.commands.has(id)) id++;
    if (id > 0xffff) return 0;
    for (const b of blocks) this.blockUsed[b] = 1;
    const head = this.insertPadding(size);
    const e = CMDR_OFF + head;
    this.map.fill(0, e, e + size);
    this.dv.setUint32(e + EntryHdr.len_op, size | TcmuOpcode.CMD, this.le);
    this.dv.setUint16(e + EntryHdr.cmd_id, id, this.le);
    this.dv.setUint32(e + CmdReq.iov_cnt, iovs.length, this.le);
    this.dv.setUint32(e + CmdReq.iov_bidi_cnt, bidiIovs.length, this.le);
    const cdbOff = e + base; // CMDR_OFF + cmd_head + base_command_size
    this.dv.setBigUint64(e + CmdReq.cdb_off, BigInt(cdbOff), this.le);
    [...iovs, ...bidiIovs].forEach((iov, i) => {
      const v = e + CmdReq.iov + TCMU_IOVEC_SIZE * i;
      this.dv.setBigUint64(v + Iovec.iov_base, BigInt(iov.base), this.le);
      this.dv.setBigUint64(v + Iovec.iov_len, BigInt(iov.len), this.le);
    });
    for (let i = 0; i < cdbLength; i++) this.map[cdbOff + i] = i < cdb.length ? cdb[i] : 0;
    if (direction === 'out') {
      let off = 0;
      for (const iov of iovs) {
        this.map.set(opts.dataOut!.subarray(off, off + iov.len), iov.base);
        off += iov.len;
      }
    } else {
      // Data-in (and bidi) pages hold whatever they held before: poison, to catch leaks.
      for (const iov of [...iovs, ...bidiIovs]) this.map.fill(FAKE_STALE_BYTE, iov.base, iov.base + iov.len);
    }
    this.commands.set(id, { id, direction, dataLength, blocks, iovs, entry: e, expired: false });
    this.publishHead(head + size);
    return id;
  }

  /**
   * queue_tmr_ring(): a TMR notification naming ring commands LIO aborts. Returns false when the
   * ring has no room (LIO would hold it on the TMR queue).
   */
  queueTmr(tmrType: number, cmdIds: readonly number[]): boolean {
    if (this.broken !== null) return false;
    const size = roundUp8(TCMU_TMR_ENTRY_SIZE + 2 * cmdIds.length);
    if (!this.roomFor(size)) return false;
    const head = this.insertPadding(size);
    const e = CMDR_OFF + head;
    this.map.fill(0, e, e + size);
    this.dv.setUint32(e + EntryHdr.len_op, size | TcmuOpcode.TMR, this.le);
    this.map[e + TmrEntry.tmr_type] = tmrType;
    this.dv.setUint32(e + TmrEntry.cmd_cnt, cmdIds.length, this.le);
    cmdIds.forEach((id, i) => this.dv.setUint16(e + TmrEntry.cmd_ids + 2 * i, id, this.le));
    this.publishHead(head + size);
    return true;
  }

  /**
   * tcmu_check_expired_ring_cmd(): cmd_time_out ran out. LIO completes the command itself; its
   * ring slot and data blocks stay until user space completes it, which is then no error.
   */
  expire(cmdId: number): void {
    const c = this.commands.get(cmdId);
    if (c === undefined) throw new Error(`FakeTcmuKernel: no pending cmd_id ${cmdId}`);
    c.expired = true;
  }

  /**
   * tcmu_reset_ring() (action/reset_ring): every pending command is dropped (LIO fails it with
   * BUSY), cmd_head = cmd_tail = cmdr_last_cleaned = 0, and a broken ring works again.
   */
  resetRing(): void {
    for (const c of this.commands.values()) this.freeBlocks(c);
    this.commands.clear();
    this.lastCleaned = 0;
    Atomics.store(this.mb32, Mailbox.cmd_tail / 4, 0);
    Atomics.store(this.mb32, Mailbox.cmd_head / 4, 0);
    this.broken = null;
  }

  /**
   * tcmu_irqcontrol() → tcmu_handle_completions(): what a write(2) on the uio fd does. Returns
   * false when the ring is (or becomes) broken.
   */
  handleCompletions(): boolean {
    if (this.broken !== null) return false;
    const tail = Atomics.load(this.mb32, Mailbox.cmd_tail / 4);
    if (tail >= this.cmdrSize || tail % 8 !== 0) {
      this.broken = `cmd_tail ${tail} outside the ring`; // the kernel does not check; it would misbehave
      return false;
    }
    let guard = this.cmdrSize / 8;
    while (this.lastCleaned !== tail) {
      if (guard-- === 0) {
        this.broken = 'completion walk does not reach cmd_tail';
        return false;
      }
      const e = CMDR_OFF + this.lastCleaned;
      const lenOp = this.dv.getUint32(e + EntryHdr.len_op, this.le);
      const len = (lenOp & ~TCMU_OP_MASK) >>> 0;
      const op = lenOp & TCMU_OP_MASK;
      if (len === 0 || this.lastCleaned + len > this.cmdrSize) {
        this.broken = `entry at ${this.lastCleaned} has length ${len}`;
        return false;
      }
      if (op !== TcmuOpcode.PAD && op !== TcmuOpcode.TMR) {
        const id = this.dv.getUint16(e + EntryHdr.cmd_id, this.le);
        const cmd = this.commands.get(id);
        if (cmd === undefined) {
          this.broken = `cmd_id ${id} not found, ring is broken`;
          return false;
        }
        this.commands.delete(id);
        this.completeOne(cmd, e);
      }
      this.lastCleaned = (this.lastCleaned + len) % this.cmdrSize;
    }
    return true;
  }

  /** Completions recorded so far, then forgotten. */
  takeCompletions(): FakeTcmuCompletion[] {
    return this.completions.splice(0, this.completions.length);
  }

  private completeOne(cmd: PendingCommand, e: number): void {
    const uflags = this.map[e + EntryHdr.uflags];
    let status = this.map[e + CmdRsp.scsi_status];
    const slot = e - CMDR_OFF;
    const empty = new Uint8Array(0);
    if (cmd.expired) {
      this.freeBlocks(cmd);
      this.completions.push({ cmdId: cmd.id, status, uflags, sense: empty, data: empty, readLen: null, slot, unknownOp: false, expired: true });
      return;
    }
    if ((uflags & TcmuUflag.UNKNOWN_OP) !== 0) {
      this.freeBlocks(cmd);
      this.completions.push({
        cmdId: cmd.id, status: ScsiStatus.CHECK_CONDITION, uflags, sense: empty, data: empty, readLen: null, slot,
        unknownOp: true, expired: false,
      });
      return;
    }
    let readLen = cmd.dataLength;
    let readLenValid = false;
    const rspReadLen = this.dv.getUint32(e + CmdRsp.read_len, this.le);
    if (cmd.direction === 'in' && (uflags & TcmuUflag.READ_LEN) !== 0 && rspReadLen !== 0) {
      readLenValid = true;
      if (rspReadLen < readLen) readLen = rspReadLen;
    }
    let sense: Uint8Array = empty;
    let data: Uint8Array = empty;
    let copyData = true;
    if (status === ScsiStatus.CHECK_CONDITION) {
      sense = this.map.slice(e + CmdRsp.sense_buffer, e + CmdRsp.sense_buffer + TCMU_SENSE_BUFFERSIZE);
      if (!readLenValid) copyData = false;
    }
    if (copyData && cmd.direction === 'in') data = this.gather(cmd, readLen);
    this.freeBlocks(cmd);
    status &= 0xff;
    this.completions.push({
      cmdId: cmd.id, status, uflags, sense, data, readLen: readLenValid ? readLen : null, slot, unknownOp: false,
      expired: false,
    });
  }

  private gather(cmd: PendingCommand, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let off = 0;
    for (const iov of cmd.iovs) {
      if (off >= len) break;
      const n = Math.min(iov.len, len - off);
      out.set(this.map.subarray(iov.base, iov.base + n), off);
      off += n;
    }
    return out;
  }

  private freeBlocks(cmd: PendingCommand): void {
    for (const b of cmd.blocks) this.blockUsed[b] = 0;
  }

  /** new_block_to_iov(): one iovec per run of adjacent blocks, the last one short. */
  private blocksToIovecs(blocks: readonly number[], length: number): { base: number; len: number }[] {
    const iovs: { base: number; len: number }[] = [];
    let left = length;
    let prev = -2;
    for (const b of blocks) {
      const n = Math.min(this.blockSize, left);
      left -= n;
      if (b === prev + 1) iovs[iovs.length - 1].len += n;
      else iovs.push({ base: this.dataOff + b * this.blockSize, len: n });
      prev = b;
    }
    return iovs;
  }

  /** is_ring_space_avail(): the entry, plus the PAD before it if it does not fit before the end. */
  private roomFor(size: number): boolean {
    const head = this.cmdHead;
    const toEnd = this.cmdrSize - head;
    const needed = toEnd >= size ? size : size + toEnd;
    const used = head >= this.lastCleaned ? head - this.lastCleaned : this.cmdrSize + head - this.lastCleaned;
    return this.cmdrSize - used - 1 >= needed; // one byte kept free: full and empty differ
  }

  /** ring_insert_padding(): returns the head at which the entry goes. */
  private insertPadding(size: number): number {
    const head = this.cmdHead;
    const toEnd = this.cmdrSize - head;
    if (toEnd >= size) return head;
    const e = CMDR_OFF + head;
    this.dv.setUint32(e + EntryHdr.len_op, toEnd | TcmuOpcode.PAD, this.le);
    this.dv.setUint16(e + EntryHdr.cmd_id, 0, this.le);
    this.map[e + EntryHdr.kflags] = 0;
    this.map[e + EntryHdr.uflags] = 0;
    this.pads++;
    this.publishHead(0, false);
    return 0;
  }

  /** UPDATE_HEAD (a release store) and uio_event_notify(). */
  private publishHead(head: number, notify = true): void {
    Atomics.store(this.mb32, Mailbox.cmd_head / 4, head % this.cmdrSize);
    if (!notify) return;
    this.events++;
    if (this.onEvent !== null) this.onEvent();
  }
}
