// The TCMU command ring engine: reads the entries the kernel's target_core_user queues into the
// shared uio map, hands each SCSI command to the target core (CDB copied out, data as views
// straight into the map's data area) and writes the completions back out of order.
//
// Sans-IO: the ring sees a Uint8Array over the whole map and a notify() callback that rings the
// kernel's doorbell (write(2) of 4 bytes on the uio fd, which runs tcmu_irqcontrol →
// tcmu_handle_completions). TcmuDevice (device.ts) adds the fd, the mapping and the poller;
// FakeTcmuKernel (fake-kernel.ts) plays the kernel in tests and benches.
//
// Protocol (target_core_user.h, target_core_user.c; see spec.ts):
//  - Entries from our private cursor up to mb->cmd_head are new. cmd_head is loaded with an
//    Atomics load, ordering the entry reads after it (the missing acquire was tcmu-runner #688).
//  - PAD entries are skipped, TMR entries decoded and reported, CMD entries executed. An entry
//    with an opcode we do not know is completed at once with TCMU_UFLAG_UNKNOWN_OP.
//  - Completions are out of order (TCMU_MAILBOX_FLAG_CAP_OOOC): the kernel walks from its
//    cmdr_last_cleaned to mb->cmd_tail and looks up each slot's cmd_id, so any command may be
//    completed in the oldest unconsumed command slot by rewriting that slot's cmd_id. The slot
//    positions live in a private FIFO (validated once, never re-read from shared memory), and
//    the tail is always advanced to the next unconsumed command slot, or to the cursor when
//    none is left, which also consumes PAD and TMR entries.
//  - Completions of one loop turn share one notification (flush()).
//
// The kernel is trusted more than a guest, but a corrupt or foreign-version ring must never
// cause an out-of-bounds access (reliability.md V11.1). Entry-level damage that leaves the walk
// well defined fails just that command (CHECK CONDITION); damage that makes the next entry's
// position unknowable (length 0, past cmd_head or the ring end, a bad cmd_head, a cmd_id that
// cannot be completed) stops taking entries ('failed') while in-flight commands still complete.
// A cmd_tail that changes behind our back (reset_ring while in use) abandons the ring: no
// further writes at all, because every cmd_id we still hold is gone in the kernel.

import { endianness } from 'node:os';
import {
  DataDirection, MAX_CDB_LENGTH, MAX_LUN, ScsiCommand, ScsiStatus, Sense, ServiceResponse, TaskAttribute,
  encodeSense, lookupCommand, type ITNexus, type ScsiTarget, type SenseCondition,
} from '../../scsi-emul';
import type { Logger } from '../log';
import {
  CMDR_OFF, CmdReq, CmdRsp, EntryHdr, Iovec, Mailbox, TCMU_CMD_ENTRY_SIZE, TCMU_IOVEC_SIZE, TCMU_MAILBOX_SIZE,
  TCMU_MAILBOX_VERSION, TCMU_OP_ALIGN_SIZE, TCMU_OP_MASK, TCMU_SENSE_BUFFERSIZE, TCMU_TMR_ENTRY_SIZE, TcmuMailboxFlag,
  TcmuOpcode, TcmuUflag, TmrEntry, kernelCdbLength, tmrTypeName,
} from './spec';

/** A mailbox or map this code cannot serve (thrown by the constructor, before anything is touched). */
export class TcmuRingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TcmuRingError';
  }
}

/** A decoded TCMU_OP_TMR entry (attrib/tmr_notification=1): what LIO aborted, for information. */
export interface TcmuTmrNotification {
  /** TmrType value (spec.ts) */
  readonly type: number;
  readonly typeName: string;
  /** cmd_ids of ring commands the function aborts; LIO still waits for their completion */
  readonly cmdIds: readonly number[];
}

export interface TcmuRingOptions {
  target: ScsiTarget;
  /** The I_T nexus of this TCMU device (the ring carries no initiator identity: tcmu.md §3.4). */
  nexus: ITNexus;
  /** LUN of the shared logical unit in `target`. */
  lun: number;
  log: Logger;
  /** Rings the kernel's doorbell (write(uio fd, 4 bytes)); called at most once per batch. May throw. */
  notify: () => void;
  onTmr?: (tmr: TcmuTmrNotification) => void;
  /** The ring stopped taking entries ('failed') or was abandoned; `reason` is also logged. */
  onFailed?: (reason: string) => void;
  /** Command slots allocated up front (default 128, LIO's hw_queue_depth for TCMU); more on demand. */
  initialSlots?: number;
  /** Entries taken per call before yielding to the event loop (reliability.md V8.2; default 64). */
  entriesPerTurn?: number;
}

/**
 * running: entries are taken. stopped: stop() was called; no new entries, completions go on.
 * failed: a corrupt entry or mailbox; no new entries, completions of commands already taken go
 * on. abandoned: the ring is not touched again (reset under us, doorbell failure, stop deadline).
 */
export type TcmuRingState = 'running' | 'stopped' | 'failed' | 'abandoned';

export interface TcmuRingStats {
  entries: number;
  commands: number;
  pads: number;
  tmrs: number;
  completions: number;
  notifications: number;
  /** entries failed without reaching the core (malformed, bidirectional, unknown opcode) */
  rejected: number;
}

export const TCMU_ENTRIES_PER_TURN = 64;
export const TCMU_DEFAULT_INITIAL_SLOTS = 128;
/**
 * Data iovecs one command may carry: IOV_MAX (UIO_MAXIOV), which the addon's preadv/pwritev also
 * take at most. The kernel coalesces adjacent data blocks, so a 4 MiB transfer needs ≤ 1024.
 */
export const TCMU_MAX_IOVECS = 1024;
/** cmd_ids are 1..0xffff (xa_alloc XA_LIMIT(1, 0xffff) in queue_cmd_ring). */
const MAX_CMD_ID = 0xffff;

const enum Dir {
  NONE = 0,
  IN = 1,
  OUT = 2,
  /** iovecs present but the core knows no direction for the CDB (it fails the command) */
  UNKNOWN = 3,
}

const enum State {
  RUNNING = 0,
  STOPPED = 1,
  FAILED = 2,
  ABANDONED = 3,
}
const STATE_NAMES: readonly TcmuRingState[] = ['running', 'stopped', 'failed', 'abandoned'];

/** One preallocated command: the ScsiCommand, its data views and the cmd_id it serves. */
class Slot {
  readonly cmd: ScsiCommand;
  cmdId = 0;
  dir: Dir = Dir.NONE;
  readonly views: Uint8Array[] = [];
  /** the empty segment list for the direction the command does not use */
  readonly none: Uint8Array[] = [];
  /** CDB bytes written last time (zeroed beyond the next CDB) */
  cdbWritten = 0;

  constructor(ring: TcmuRing, nexus: ITNexus, lun: number) {
    this.cmd = new ScsiCommand(nexus);
    this.cmd.lun = lun;
    this.cmd.onComplete = () => ring._finish(this); // one closure per slot, not per command
  }
}

export class TcmuRing {
  private readonly map: Uint8Array;
  private readonly dv: DataView;
  /** The mailbox as u32 words, for the Atomics accesses of cmd_head (word 3) and cmd_tail (word 16). */
  private readonly mb32: Uint32Array;
  private readonly le: boolean;
  readonly cmdrSize: number;
  /** Offset of the data area from the map start (CMDR_OFF + cmdr_size, data_off in the kernel). */
  readonly dataOff: number;
  readonly flags: number;
  private readonly readLenCap: boolean;
  private readonly target: ScsiTarget;
  private readonly nexus: ITNexus;
  private readonly lun: number;
  private readonly log: Logger;
  private readonly notifyKernel: () => void;
  private readonly onTmr: ((tmr: TcmuTmrNotification) => void) | null;
  private readonly onFailed: ((reason: string) => void) | null;
  private readonly entriesPerTurn: number;

  private st = State.RUNNING;
  private failure: string | null = null;
  /** Next entry to read (offset inside the ring). */
  private cursor: number;
  /** The cmd_tail we last published; the mailbox must still hold it. */
  private tail: number;
  /** Ring offsets of command slots in [tail, cursor), oldest first: where completions go. */
  private readonly fifo: Uint32Array;
  private fifoHead = 0;
  private fifoCount = 0;
  /** cmd_ids taken and not yet completed (a second entry with one of them is corruption). */
  private readonly busy = new Uint8Array(MAX_CMD_ID + 1);
  private readonly slots: Slot[] = [];
  private readonly free: Slot[] = [];
  /** Slots handed to the core and not finished: their views point into the map. */
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private inProcess = false;
  private notifyPending = false;
  private flushScheduled = false;
  private processScheduled = false;
  /** Scratch for sense bytes of completions that never reached the core. */
  private readonly senseScratch = new Uint8Array(252);
  readonly stats: TcmuRingStats = {
    entries: 0, commands: 0, pads: 0, tmrs: 0, completions: 0, notifications: 0, rejected: 0,
  };

  /** Validates the mailbox against the map; throws TcmuRingError, touching nothing, if it cannot serve it. */
  constructor(map: Uint8Array, opts: TcmuRingOptions) {
    if (!(map instanceof Uint8Array)) throw new TypeError('TcmuRing: map must be a Uint8Array over the uio map');
    if (!Number.isInteger(opts.lun) || opts.lun < 0 || opts.lun > MAX_LUN) {
      throw new RangeError(`TcmuRing: lun must be an integer 0..${MAX_LUN}, got ${opts.lun}`);
    }
    const port = opts.nexus?.targetPortId;
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) {
      throw new RangeError(`TcmuRing: nexus.targetPortId must be 1..65535, got ${port}`);
    }
    const initialSlots = opts.initialSlots ?? TCMU_DEFAULT_INITIAL_SLOTS;
    if (!Number.isInteger(initialSlots) || initialSlots < 1 || initialSlots > MAX_CMD_ID) {
      throw new RangeError(`TcmuRing: initialSlots must be 1..${MAX_CMD_ID}, got ${initialSlots}`);
    }
    const perTurn = opts.entriesPerTurn ?? TCMU_ENTRIES_PER_TURN;
    if (!Number.isInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`TcmuRing: entriesPerTurn must be a positive integer, got ${perTurn}`);
    }
    if (map.byteLength < TCMU_MAILBOX_SIZE) {
      throw new TcmuRingError(`uio map of ${map.byteLength} bytes cannot hold the ${TCMU_MAILBOX_SIZE}-byte mailbox`);
    }
    if (map.byteOffset % TCMU_OP_ALIGN_SIZE !== 0) {
      throw new TcmuRingError('uio map view must start 8-byte aligned (it is a page-aligned mapping)');
    }
    this.map = map;
    this.le = endianness() === 'LE'; // the ABI is host byte order
    this.dv = new DataView(map.buffer, map.byteOffset, map.byteLength);
    this.mb32 = new Uint32Array(map.buffer, map.byteOffset, TCMU_MAILBOX_SIZE / 4);
    const version = this.dv.getUint16(Mailbox.version, this.le);
    if (version !== TCMU_MAILBOX_VERSION) {
      throw new TcmuRingError(`mailbox version ${version}; only TCMU_MAILBOX_VERSION ${TCMU_MAILBOX_VERSION} is supported`);
    }
    this.flags = this.dv.getUint16(Mailbox.flags, this.le);
    if ((this.flags & TcmuMailboxFlag.CAP_OOOC) === 0) {
      throw new TcmuRingError(
        `mailbox flags 0x${this.flags.toString(16)} lack TCMU_MAILBOX_FLAG_CAP_OOOC: this kernel cannot take out-of-order completions, which the target core produces`);
    }
    const cmdrOff = this.dv.getUint32(Mailbox.cmdr_off, this.le);
    if (cmdrOff !== CMDR_OFF) {
      throw new TcmuRingError(`mailbox cmdr_off ${cmdrOff}; the command ring must follow the mailbox at ${CMDR_OFF}`);
    }
    const cmdrSize = this.dv.getUint32(Mailbox.cmdr_size, this.le);
    if (cmdrSize < 2 * TCMU_CMD_ENTRY_SIZE || cmdrSize % TCMU_OP_ALIGN_SIZE !== 0 ||
        cmdrSize > map.byteLength - CMDR_OFF) {
      throw new TcmuRingError(
        `mailbox cmdr_size ${cmdrSize} does not fit the ${map.byteLength}-byte map (needs a multiple of 8, at least ${2 * TCMU_CMD_ENTRY_SIZE}, ending inside the map)`);
    }
    const head = Atomics.load(this.mb32, Mailbox.cmd_head / 4);
    const tail = Atomics.load(this.mb32, Mailbox.cmd_tail / 4);
    if (head >= cmdrSize || head % TCMU_OP_ALIGN_SIZE !== 0 || tail >= cmdrSize || tail % TCMU_OP_ALIGN_SIZE !== 0) {
      throw new TcmuRingError(`mailbox cmd_head ${head} / cmd_tail ${tail} are not 8-byte aligned offsets inside the ${cmdrSize}-byte ring`);
    }
    this.cmdrSize = cmdrSize;
    this.dataOff = CMDR_OFF + cmdrSize;
    this.readLenCap = (this.flags & TcmuMailboxFlag.CAP_READ_LEN) !== 0;
    this.cursor = tail;
    this.tail = tail;
    // At most one command slot per cmd_id, and per 112 ring bytes.
    this.fifo = new Uint32Array(Math.min(MAX_CMD_ID, Math.floor(cmdrSize / TCMU_CMD_ENTRY_SIZE)) + 1);
    this.target = opts.target;
    this.nexus = opts.nexus;
    this.lun = opts.lun;
    this.log = opts.log;
    this.notifyKernel = opts.notify;
    this.onTmr = opts.onTmr ?? null;
    this.onFailed = opts.onFailed ?? null;
    this.entriesPerTurn = perTurn;
    for (let i = 0; i < initialSlots; i++) this.free.push(this.newSlot());
  }

  /** Where the ring stands (see TcmuRingState). */
  get state(): TcmuRingState {
    return STATE_NAMES[this.st];
  }

  /** Why the ring failed or was abandoned, else null. */
  get failureReason(): string | null {
    return this.failure;
  }

  /** Commands handed to the target core and not completed yet. */
  get inFlight(): number {
    return this.active;
  }

  /** Command slots allocated (grows only when more commands than ever before are in flight). */
  get poolSize(): number {
    return this.slots.length;
  }

  /** Capabilities the kernel announced (TcmuMailboxFlag bits). */
  get capabilities(): number {
    return this.flags;
  }

  // ------------------------------------------------------------------ taking entries

  /**
   * Takes the entries the kernel queued since the last call (at most entriesPerTurn; the rest on
   * a later loop turn) and submits their commands. Call on every uio wakeup, after reading the
   * event count. Completions written meanwhile share one notification at the end.
   */
  process(): void {
    if (this.st !== State.RUNNING || this.inProcess) return;
    if (!this.ringIntact()) return;
    // Acquire load of the kernel's head: the entry bytes are read after it (tcmu-runner #688).
    const head = Atomics.load(this.mb32, Mailbox.cmd_head / 4);
    if (head >= this.cmdrSize || head % TCMU_OP_ALIGN_SIZE !== 0) {
      this.fail(`mailbox cmd_head ${head} is not an 8-byte aligned offset inside the ${this.cmdrSize}-byte ring`);
      this.flush();
      return;
    }
    this.inProcess = true;
    try {
      let budget = this.entriesPerTurn;
      while (this.cursor !== head && this.st === State.RUNNING) {
        if (budget-- === 0) {
          this.scheduleProcess();
          break;
        }
        this.takeEntry(head);
      }
      // Only PAD/TMR entries left unconsumed before the cursor: hand their space back too.
      if (this.fifoCount === 0 && this.tail !== this.cursor && (this.st as State) !== State.ABANDONED) {
        this.publishTail(this.cursor);
        this.notifyPending = true;
      }
    } finally {
      this.inProcess = false;
    }
    this.flush();
  }

  private readonly processFromLoop = (): void => {
    this.processScheduled = false;
    this.process();
  };

  private scheduleProcess(): void {
    if (this.processScheduled) return;
    this.processScheduled = true;
    setImmediate(this.processFromLoop);
  }

  /** Takes the entry at the cursor; a fatal problem fails the ring and leaves the cursor on it. */
  private takeEntry(head: number): void {
    const pos = this.cursor;
    const e = CMDR_OFF + pos;
    // Entries never wrap (ring_insert_padding), so an entry ends before cmd_head or the ring end.
    const room = head > pos ? head - pos : this.cmdrSize - pos;
    const lenOp = this.dv.getUint32(e + EntryHdr.len_op, this.le); // shared memory: validated here
    const len = (lenOp & ~TCMU_OP_MASK) >>> 0;
    const op = lenOp & TCMU_OP_MASK;
    if (len === 0) {
      this.fail(`entry at ring offset ${pos} has length 0`);
      return;
    }
    if (len > room) {
      this.fail(`entry at ring offset ${pos} (opcode ${op}, length ${len}) runs past ${head > pos ? `cmd_head ${head}` : `the ring end ${this.cmdrSize}`}`);
      return;
    }
    const next = pos + len === this.cmdrSize ? 0 : pos + len;
    this.stats.entries++;
    switch (op) {
      case TcmuOpcode.PAD:
        this.stats.pads++;
        this.cursor = next;
        return;
      case TcmuOpcode.TMR:
        this.stats.tmrs++;
        this.cursor = next;
        this.reportTmr(pos, e, len);
        return;
      case TcmuOpcode.CMD:
        this.takeCommand(pos, e, len, next);
        return;
      default:
        this.takeUnknownOp(pos, e, len, op, next);
        return;
    }
  }

  /**
   * The slot checks every command-like entry needs before the kernel can be answered in it: room
   * for the response (sizeof(struct tcmu_cmd_entry)) and a cmd_id the kernel can look up.
   * Returns the cmd_id, or 0 after failing the ring.
   */
  private claimSlot(pos: number, e: number, len: number, what: string): number {
    if (len < TCMU_CMD_ENTRY_SIZE) {
      this.fail(`${what} entry at ring offset ${pos} has length ${len}, less than the ${TCMU_CMD_ENTRY_SIZE}-byte struct tcmu_cmd_entry`);
      return 0;
    }
    const id = this.dv.getUint16(e + EntryHdr.cmd_id, this.le); // shared memory: validated here
    if (id === 0) {
      this.fail(`${what} entry at ring offset ${pos} has cmd_id 0, which the kernel never allocates`);
      return 0;
    }
    if (this.busy[id] !== 0) {
      this.fail(`${what} entry at ring offset ${pos} reuses cmd_id ${id}, which is still in flight`);
      return 0;
    }
    if (this.fifoCount >= this.fifo.length) {
      this.fail(`more than ${this.fifo.length} command slots in flight in a ${this.cmdrSize}-byte ring`);
      return 0;
    }
    return id;
  }

  /** Records the slot at `pos` as consumed and owed a completion for `id`. */
  private consume(pos: number, id: number, next: number): void {
    this.cursor = next;
    let i = this.fifoHead + this.fifoCount;
    if (i >= this.fifo.length) i -= this.fifo.length;
    this.fifo[i] = pos;
    this.fifoCount++;
    this.busy[id] = 1;
  }

  private takeCommand(pos: number, e: number, len: number, next: number): void {
    const id = this.claimSlot(pos, e, len, 'CMD');
    if (id === 0) return;
    this.consume(pos, id, next);
    this.stats.commands++;
    const slot = this.free.pop() ?? this.grow();
    const problem = this.decode(slot, e, len);
    if (problem !== null) {
      slot.views.length = 0;
      this.free.push(slot);
      this.stats.rejected++;
      const bidi = problem === BIDI;
      this.log.rateLimited(bidi ? 'tcmu-bidi' : 'tcmu-malformed', bidi ? 'warn' : 'error',
        `tcmu cmd_id ${id} (ring offset ${pos}): ${bidi ? 'bidirectional command (not supported)' : problem}`);
      // A damaged entry is a failure of the path from LIO to us: LOGICAL UNIT COMMUNICATION
      // FAILURE, as the kernel reports for a broken ring. No command we implement moves data both ways.
      this.completeRejected(id, bidi ? Sense.INVALID_COMMAND_OPERATION_CODE : Sense.LOGICAL_UNIT_COMMUNICATION_FAILURE, 0);
      return;
    }
    slot.cmdId = id;
    const cmd = slot.cmd;
    cmd.nexus = this.nexus;
    cmd.lun = this.lun;
    cmd.setTag(id, 0); // the cmd_id is the task tag
    cmd.taskAttribute = TaskAttribute.SIMPLE; // LIO orders tasks itself; the ring carries no attribute
    this.active++;
    this.target.submit(cmd);
  }

  /**
   * Copies the CDB out and builds the data views. The entry is kernel-written shared memory:
   * every count, offset and length is checked before it is used. Returns null, BIDI, or the reason
   * the entry is malformed.
   */
  private decode(slot: Slot, e: number, len: number): string | null {
    const dv = this.dv;
    const le = this.le;
    const iovCnt = dv.getUint32(e + CmdReq.iov_cnt, le); // shared memory: the counts are validated here
    const bidiCnt = dv.getUint32(e + CmdReq.iov_bidi_cnt, le);
    const difCnt = dv.getUint32(e + CmdReq.iov_dif_cnt, le);
    const room = Math.floor((len - CmdReq.iov) / TCMU_IOVEC_SIZE);
    if (iovCnt > room || bidiCnt > room - iovCnt) {
      return `iov_cnt ${iovCnt} + iov_bidi_cnt ${bidiCnt} iovecs do not fit the ${len}-byte entry`;
    }
    if (difCnt !== 0) return `iov_dif_cnt ${difCnt}: protection information iovecs are not supported`;
    if (bidiCnt !== 0) return BIDI;
    if (iovCnt > TCMU_MAX_IOVECS) return `iov_cnt ${iovCnt} exceeds ${TCMU_MAX_IOVECS}`;
    // The CDB lies after the iovec array and inside the entry (queue_cmd_ring puts it at the base size).
    const cdbLo = dv.getUint32(e + CmdReq.cdb_off + (le ? 0 : 4), le); // shared memory: validated here
    const cdbHi = dv.getUint32(e + CmdReq.cdb_off + (le ? 4 : 0), le);
    const cdbFirst = e + CmdReq.iov + TCMU_IOVEC_SIZE * iovCnt;
    const end = e + len;
    if (cdbHi !== 0 || cdbLo < cdbFirst || cdbLo >= end) {
      return `cdb_off ${cdbHi !== 0 ? `0x${cdbHi.toString(16)}${cdbLo.toString(16).padStart(8, '0')}` : cdbLo} is outside [${cdbFirst}, ${end})`;
    }
    const map = this.map;
    const opcode = map[cdbLo];
    if (opcode === 0x7f && cdbLo + 8 > end) return `variable-length CDB at ${cdbLo} runs past the entry end ${end}`;
    const cdbLength = kernelCdbLength(opcode, opcode === 0x7f ? map[cdbLo + 7] : 0);
    if (cdbLo + cdbLength > end) return `${cdbLength}-byte CDB at ${cdbLo} runs past the entry end ${end}`;
    // V9.2: the CDB is copied into private memory before anything parses it.
    const cmd = slot.cmd;
    const n = Math.min(cdbLength, MAX_CDB_LENGTH);
    const cdb = cmd.cdb;
    for (let i = 0; i < n; i++) cdb[i] = map[cdbLo + i];
    if (slot.cdbWritten > n) cdb.fill(0, n, slot.cdbWritten);
    slot.cdbWritten = n;
    cmd.cdbLength = n;
    // Data iovecs: offsets from the map start, inside the data area (never the mailbox or ring).
    const views = slot.views;
    views.length = 0;
    const mapLen = map.byteLength;
    let total = 0;
    for (let i = 0, v = e + CmdReq.iov; i < iovCnt; i++, v += TCMU_IOVEC_SIZE) {
      const baseLo = dv.getUint32(v + Iovec.iov_base + (le ? 0 : 4), le); // shared memory: validated here
      const baseHi = dv.getUint32(v + Iovec.iov_base + (le ? 4 : 0), le);
      const lenLo = dv.getUint32(v + Iovec.iov_len + (le ? 0 : 4), le);
      const lenHi = dv.getUint32(v + Iovec.iov_len + (le ? 4 : 0), le);
      if (baseHi !== 0 || lenHi !== 0 || baseLo < this.dataOff || lenLo > mapLen - baseLo) {
        return `iovec ${i} {base ${baseHi !== 0 ? 'above 4 GiB' : baseLo}, len ${lenHi !== 0 ? 'above 4 GiB' : lenLo}} is outside the data area [${this.dataOff}, ${mapLen})`;
      }
      if (lenLo === 0) continue;
      views.push(new Uint8Array(map.buffer, map.byteOffset + baseLo, lenLo));
      total += lenLo;
    }
    // The entry does not say which way the data goes (LIO knows, from the fabric): the CDB does.
    // The core reads only dataOut and writes only dataIn, and checks the CDB's transfer against
    // the buffer in that direction (OVERRUN), so the views go to exactly one side.
    const def = lookupCommand(cdb);
    let dir: Dir;
    if (total === 0) dir = Dir.NONE;
    else if (typeof def === 'number') dir = Dir.UNKNOWN;
    else if (def.direction === DataDirection.IN) dir = Dir.IN;
    else if (def.direction === DataDirection.OUT) dir = Dir.OUT;
    else dir = Dir.UNKNOWN;
    slot.dir = dir;
    if (dir === Dir.IN) {
      cmd.dataIn = views;
      cmd.dataInLength = total;
      cmd.dataOut = slot.none;
      cmd.dataOutLength = 0;
    } else if (dir === Dir.OUT) {
      cmd.dataOut = views;
      cmd.dataOutLength = total;
      cmd.dataIn = slot.none;
      cmd.dataInLength = 0;
    } else {
      cmd.dataIn = slot.none;
      cmd.dataInLength = 0;
      cmd.dataOut = slot.none;
      cmd.dataOutLength = 0;
    }
    return null;
  }

  /** libtcmu's rule: an opcode we do not know is answered with TCMU_UFLAG_UNKNOWN_OP, which the kernel fails. */
  private takeUnknownOp(pos: number, e: number, len: number, op: number, next: number): void {
    const id = this.claimSlot(pos, e, len, `opcode ${op}`);
    if (id === 0) return;
    this.consume(pos, id, next);
    this.stats.rejected++;
    this.log.rateLimited('tcmu-unknown-op', 'warn', `tcmu cmd_id ${id} (ring offset ${pos}): unknown entry opcode ${op}, answered with TCMU_UFLAG_UNKNOWN_OP`);
    this.completeRejected(id, Sense.INVALID_COMMAND_OPERATION_CODE, TcmuUflag.UNKNOWN_OP);
  }

  private reportTmr(pos: number, e: number, len: number): void {
    if (len < TCMU_TMR_ENTRY_SIZE) {
      this.log.rateLimited('tcmu-tmr', 'warn', `tcmu TMR entry at ring offset ${pos}: ${len} bytes, less than struct tcmu_tmr_entry; skipped`);
      return;
    }
    const type = this.map[e + TmrEntry.tmr_type];
    const count = this.dv.getUint32(e + TmrEntry.cmd_cnt, this.le);
    if (count > (len - TmrEntry.cmd_ids) / 2) {
      this.log.rateLimited('tcmu-tmr', 'warn', `tcmu TMR entry at ring offset ${pos}: cmd_cnt ${count} does not fit its ${len} bytes; skipped`);
      return;
    }
    const cmdIds: number[] = new Array(count); // a TMR is rare: no need for a preallocated list
    for (let i = 0; i < count; i++) cmdIds[i] = this.dv.getUint16(e + TmrEntry.cmd_ids + 2 * i, this.le);
    const typeName = tmrTypeName(type);
    if (this.log.enabled('debug')) {
      this.log.debug(`tcmu TMR ${typeName}: LIO aborts cmd_ids [${cmdIds.join(', ')}]; they complete as the core finishes them`);
    }
    if (this.onTmr !== null) this.onTmr({ type, typeName, cmdIds });
  }

  private newSlot(): Slot {
    const s = new Slot(this, this.nexus, this.lun);
    this.slots.push(s);
    return s;
  }

  private grow(): Slot {
    const s = this.newSlot();
    if (this.log.enabled('debug')) this.log.debug(`tcmu: ${this.slots.length} commands in flight, command pool grown`);
    return s;
  }

  // ------------------------------------------------------------------ completion

  /** @internal The core finished a slot's command (ScsiCommand.onComplete). */
  _finish(slot: Slot): void {
    const cmd = slot.cmd;
    const id = slot.cmdId;
    slot.cmdId = 0;
    this.active--;
    if (this.st !== State.ABANDONED) this.complete(slot, cmd, id);
    slot.views.length = 0; // no reference into the map outlives the command (V9.4)
    this.free.push(slot);
    if (this.active === 0 && this.idleWaiters.length > 0) this.runIdleWaiters();
  }

  private complete(slot: Slot, cmd: ScsiCommand, id: number): void {
    let status: number;
    let sense: Uint8Array | null = null;
    let senseLength = 0;
    switch (cmd.serviceResponse) {
      case ServiceResponse.COMMAND_COMPLETE:
        status = cmd.status;
        if (status === ScsiStatus.CHECK_CONDITION) {
          sense = cmd.sense;
          senseLength = cmd.senseLength;
        }
        break;
      case ServiceResponse.ABORTED:
      case ServiceResponse.RESET:
        // Aborted by a task management function of another nexus (or LIO's own abort, which
        // then discards the status): TASK ABORTED (SAM-5 §5.3.1), which Linux initiators retry.
        status = ScsiStatus.TASK_ABORTED;
        break;
      case ServiceResponse.OVERRUN: {
        // The initiator's buffer disagrees with the CDB's transfer length in the CDB's
        // direction. TCMU has no overrun response; LIO itself rejects such commands with
        // INVALID FIELD IN CDB (target_cmd_size_check in older kernels).
        status = ScsiStatus.CHECK_CONDITION;
        const lu = this.target.getLogicalUnit(this.lun);
        senseLength = encodeSense(cmd.sense, lu?.descriptorSense ?? false, Sense.INVALID_FIELD_IN_CDB);
        sense = cmd.sense;
        break;
      }
      default:
        // The core refused the command (it is closing): retryable.
        status = ScsiStatus.BUSY;
        break;
    }
    let uflags = 0;
    let readLen = 0;
    const dir = slot.dir;
    if (dir === Dir.IN) {
      const total = cmd.dataInLength;
      const done = cmd.serviceResponse === ServiceResponse.COMMAND_COMPLETE ? Math.min(cmd.dataInTransferred, total) : 0;
      if (done < total) {
        if (done > 0 && this.readLenCap) {
          // The kernel copies only read_len bytes to the initiator and reports the residual.
          uflags = TcmuUflag.READ_LEN;
          readLen = done;
        } else if (status !== ScsiStatus.CHECK_CONDITION) {
          // Without READ_LEN (read_len 0 is ignored; old kernels lack CAP_READ_LEN) the kernel
          // copies the whole buffer unless the status is CHECK CONDITION: never stale data-area
          // bytes of another command (V7.5).
          zeroFrom(slot.views, done);
        }
      }
    } else if (dir === Dir.UNKNOWN && status !== ScsiStatus.CHECK_CONDITION) {
      zeroFrom(slot.views, 0); // LIO may treat it as data-in
    }
    this.writeCompletion(id, status, sense, senseLength, uflags, readLen);
  }

  /** Answers an entry that never reached the core: CHECK CONDITION with `condition`. */
  private completeRejected(id: number, condition: SenseCondition, uflags: number): void {
    const n = encodeSense(this.senseScratch, false, condition);
    this.writeCompletion(id, ScsiStatus.CHECK_CONDITION, this.senseScratch, n, uflags, 0);
  }

  /**
   * Writes a completion for `id` into the oldest unconsumed command slot and advances cmd_tail
   * past it (and past any PAD/TMR entries up to the next command slot or the cursor). The slot's
   * len_op stays; its cmd_id is rewritten (out-of-order completion, CAP_OOOC).
   */
  private writeCompletion(id: number, status: number, sense: Uint8Array | null, senseLength: number,
    uflags: number, readLen: number): void {
    this.busy[id] = 0;
    if (this.st === State.ABANDONED || !this.ringIntact()) return;
    const pos = this.fifo[this.fifoHead];
    this.fifoHead = this.fifoHead + 1 === this.fifo.length ? 0 : this.fifoHead + 1;
    this.fifoCount--;
    const e = CMDR_OFF + pos;
    const map = this.map;
    const dv = this.dv;
    dv.setUint16(e + EntryHdr.cmd_id, id, this.le);
    map[e + EntryHdr.uflags] = uflags;
    map[e + CmdRsp.scsi_status] = status;
    dv.setUint32(e + CmdRsp.read_len, readLen, this.le);
    if (sense !== null) {
      // LIO copies all 96 bytes (transport_copy_sense_to_cmd): the rest must be zero, not the
      // iovecs that were in the slot before.
      const n = Math.min(senseLength, TCMU_SENSE_BUFFERSIZE);
      const s = e + CmdRsp.sense_buffer;
      for (let i = 0; i < n; i++) map[s + i] = sense[i];
      map.fill(0, s + n, s + TCMU_SENSE_BUFFERSIZE);
    }
    this.publishTail(this.fifoCount === 0 ? this.cursor : this.fifo[this.fifoHead]);
    this.stats.completions++;
    this.notifyPending = true;
    if (!this.inProcess && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushFromLoop);
    }
  }

  private publishTail(t: number): void {
    this.tail = t;
    // Sequentially consistent: the slot's response bytes are visible before the new tail.
    Atomics.store(this.mb32, Mailbox.cmd_tail / 4, t);
  }

  /**
   * Detects reset_ring under us: only we write cmd_tail, and the kernel never writes into
   * [cmd_tail, cursor) (it keeps one byte free), so cmd_head cannot fall inside that span.
   * Either change means every cmd_id we hold is gone in the kernel.
   */
  private ringIntact(): boolean {
    const t = Atomics.load(this.mb32, Mailbox.cmd_tail / 4);
    if (t !== this.tail) {
      this.abandon(`mailbox cmd_tail changed from ${this.tail} to ${t} behind our back (reset_ring while the device was in use); the commands we hold are gone in the kernel`);
      return false;
    }
    const h = Atomics.load(this.mb32, Mailbox.cmd_head / 4);
    if (h < this.cmdrSize && this.distance(t, h) < this.distance(t, this.cursor)) {
      this.abandon(`mailbox cmd_head ${h} moved back behind our cursor ${this.cursor} (reset_ring while the device was in use); the commands we hold are gone in the kernel`);
      return false;
    }
    return true;
  }

  /** Bytes from ring offset a forward to ring offset b. */
  private distance(a: number, b: number): number {
    return b >= a ? b - a : this.cmdrSize - a + b;
  }

  private readonly flushFromLoop = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  /** Rings the doorbell if completions were written since the last one. */
  flush(): void {
    if (!this.notifyPending) return;
    this.notifyPending = false;
    if (this.st === State.ABANDONED) return;
    try {
      this.notifyKernel();
      this.stats.notifications++;
    } catch (err) {
      this.abandon(`notifying the kernel failed: ${(err as Error).message}`);
    }
  }

  // ------------------------------------------------------------------ life cycle

  /** Takes no more entries; completions of commands in flight are still written. */
  stop(): void {
    if (this.st === State.RUNNING) this.st = State.STOPPED;
  }

  /** Never touches the ring again (completions are dropped). Idempotent. */
  abandon(reason: string): void {
    if (this.st === State.ABANDONED) return;
    this.st = State.ABANDONED;
    this.notifyPending = false;
    this.failure = reason;
    this.log.error(`tcmu ring abandoned: ${reason}`);
    if (this.onFailed !== null) this.onFailed(reason);
  }

  private fail(reason: string): void {
    if (this.st !== State.RUNNING) return;
    this.st = State.FAILED;
    this.failure = reason;
    this.log.error(`tcmu ring stopped taking commands: ${reason}; ${this.active} in flight still complete; the device needs reset_ring`);
    if (this.onFailed !== null) this.onFailed(reason);
  }

  /** Runs `cb` once no command is with the core any more (at once if none is). */
  whenIdle(cb: () => void): void {
    if (this.active === 0) {
      cb();
      return;
    }
    this.idleWaiters.push(cb);
  }

  private runIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** decode() verdict for an entry with bidirectional iovecs. */
const BIDI = 'bidi';

/** Zeroes every byte of `views` from byte `from` of their concatenation on. */
function zeroFrom(views: readonly Uint8Array[], from: number): void {
  let skip = from;
  for (let i = 0; i < views.length; i++) {
    const v = views[i];
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    v.fill(0, skip);
    skip = 0;
  }
}
