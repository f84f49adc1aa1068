// The copy manager: EXTENDED COPY (LID1) with block-to-block segment descriptors (02h) between
// logical units of this target named by identification CSCD descriptors (E4h), the RECEIVE
// COPY RESULTS (LID1) service actions, and the Third-party Copy VPD page (8Fh).
//
// Sources: SPC-4 r37 §6.4 (EXTENDED COPY parameter list, §6.4.3.4 CSCD DESCRIPTOR LIST LENGTH,
// §6.4.3.5 SEGMENT DESCRIPTOR LIST LENGTH, §6.4.6.1 table 150 CSCD descriptor IDs), SPC-4 r31
// §6.18 (RECEIVE COPY RESULTS service actions, renamed RECEIVE COPY STATUS(LID1) / RECEIVE COPY
// OPERATING PARAMETERS / RECEIVE COPY FAILURE DETAILS(LID1) in r37), SPC-3 r23 §6.3 and §6.17
// (the same commands under their SPC-3 names: NRCR is LIST ID USAGE bit 1), SPC-4 §7.8.17 (VPD
// 8Fh). What initiators send: sg3_utils sg_xcopy (list id 1, LIST ID USAGE 10b, NAA designators)
// and VMware VAAI (two E4h descriptors, one 02h segment per command).
//
// Error model (SPC-4 §6.4 "errors detected before / during processing of segment descriptors"):
//  - the parameter list itself (lengths, descriptor types, counts, fields) is checked before
//    anything moves: ILLEGAL REQUEST with a field pointer into the parameter list, VALID=0;
//  - a destination on a write-protected LU: DATA PROTECT / WRITE PROTECTED (reliability.md V7.12),
//    also before anything moves;
//  - naming a copy source or destination (CSCD index, designator, device type) and everything
//    met while a segment is processed: COPY ABORTED, the segment number in COMMAND-SPECIFIC
//    INFORMATION bytes 2-3, a segment pointer where a field is at fault, the residual in
//    INFORMATION once destination data was written, and what the copy source or destination
//    device server reported (LBA OUT OF RANGE, MEDIUM ERROR, ...) forwarded unchanged: fixed
//    format in the additional sense bytes at the offset CSI byte 0 (source) / 1 (destination)
//    gives, descriptor format in a forwarded sense data descriptor. SPC-4 leaves the copy
//    manager's own ASC open for forwarded errors; we report 00/00 and let the forwarded sense
//    carry the cause (as SCST does; libiscsi's conformance test accepts 00/00, 08/04, 0D/02).
//
// Data moves store to store through one 1 MiB buffer per concurrent copy (pooled, allocated
// once, never per chunk). Destination writes follow the destination LU's write cache: write-back
// writes are made durable by a later SYNCHRONIZE CACHE like any WRITE, write-through writes are
// dsync. An overlapping copy within one LU runs backwards when the destination lies above the
// source, so it behaves as memmove.
//
// Every store operation of a copy holds a shared range lock (range-lock.ts) on the LU it touches,
// for exactly the blocks of that chunk, from before it is issued until it completes: COMPARE AND
// WRITE, WRITE ATOMIC and FORMAT UNIT (exclusive holders) are thereby atomic against copies as
// they are against READ and WRITE. A copy is not atomic as a whole (SPC-4 asks no such thing).
//
// Held results (RECEIVE COPY STATUS / FAILURE DETAILS data) are discarded on LOGICAL UNIT RESET
// and I_T nexus loss: SPC-4 §6.25 item c) and §6.23 item d) ("if the copy manager detects a
// logical unit reset condition or I_T nexus loss condition"); `discardCopyResults`.
import type { Task } from './command';
import type { Core } from './command-def';
import { EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import type { NexusRecord } from './nexus';
import { LockState, RangeLockHolder } from './range-lock';
import { MAX_SENSE_LENGTH, ScsiStatus, ServiceResponse } from './constants';
import {
  ForwardedSense, Sense, SenseCondition, SenseDataSource, SenseError, SenseExtra, encodeSense,
} from './sense';
import { be16, be24, be32, be64Safe, copyFromSegments, putBe16, putBe32 } from './bytes';

/** SPC-4 THIRD-PARTY COPY OUT (83h) service actions (byte 1 bits 4-0). */
export const enum ThirdPartyCopyOut {
  EXTENDED_COPY_LID1 = 0x00,
}

/** SPC-4 THIRD-PARTY COPY IN (84h) service actions we implement (SPC-3 RECEIVE COPY RESULTS). */
export const enum ThirdPartyCopyIn {
  /** SPC-3 COPY STATUS, SPC-4 RECEIVE COPY STATUS(LID1) */
  COPY_STATUS = 0x00,
  /** RECEIVE COPY OPERATING PARAMETERS */
  OPERATING_PARAMETERS = 0x03,
  /** SPC-3 FAILED SEGMENT DETAILS, SPC-4 RECEIVE COPY FAILURE DETAILS(LID1) */
  FAILED_SEGMENT_DETAILS = 0x04,
}

// ---- limits (reported identically by RECEIVE COPY OPERATING PARAMETERS and VPD 8Fh) ----

const HEADER_LENGTH = 16;
const CSCD_LENGTH = 32;
const SEGMENT_B2B_LENGTH = 28;
const CSCD_IDENTIFICATION = 0xe4;
const SEGMENT_BLOCK_TO_BLOCK = 0x02;
/** SPC-4 §6.4.6.1 table 150: FFFFh names the logical unit that received the command. */
const CSCD_ID_COPY_MANAGER_LU = 0xffff;
/** Largest designator an identification CSCD descriptor holds (bytes 8-27). */
const MAX_CSCD_DESIGNATOR = 20;

export const MAX_CSCD_DESCRIPTORS = 8;
export const MAX_SEGMENT_DESCRIPTORS = 64;
/** Every CSCD and segment descriptor we accept, at their largest. */
export const MAX_DESCRIPTOR_LIST_LENGTH = MAX_CSCD_DESCRIPTORS * CSCD_LENGTH + MAX_SEGMENT_DESCRIPTORS * SEGMENT_B2B_LENGTH;
/** A 02h segment moves at most 65535 blocks (16-bit field) of at most 4096 bytes. */
export const MAX_SEGMENT_LENGTH = 0xffff * 4096;
/** Copies processed at once, target-wide (each owns a COPY_CHUNK buffer); more wait their turn. */
export const MAX_CONCURRENT_COPIES = 4;
/** Bytes moved per store read/write. A multiple of 512 and 4096. */
export const COPY_CHUNK = 1 << 20;
/** Held RECEIVE COPY RESULTS records per logical unit; the oldest completed one makes room. */
const MAX_HELD_RECORDS = 16;
const MAX_PARAMETER_COPY = HEADER_LENGTH + MAX_DESCRIPTOR_LIST_LENGTH;

/** Descriptor type codes we implement, ascending (operating parameters, VPD 8Fh). */
const IMPLEMENTED_DESCRIPTORS = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];

// ---- held results (per logical unit, per I_T nexus and list identifier) ----

interface CopyRecord {
  readonly nexus: NexusRecord;
  readonly listId: number;
  /** LIST ID USAGE 00b: results are kept after completion for RECEIVE COPY RESULTS */
  readonly hold: boolean;
  inProgress: boolean;
  failed: boolean;
  /** COPY STATUS data not yet delivered (completed copies with hold only) */
  statusHeld: boolean;
  segmentsProcessed: number;
  /** bytes written to copy destinations */
  bytesWritten: number;
  /** the sense data the command ended with, while FAILED SEGMENT DETAILS are held */
  sense: Uint8Array | null;
  /** dropped from the LU's list by a reset (discardCopyResults): settle() leaves it alone */
  discarded: boolean;
}

const records = new WeakMap<LogicalUnit, CopyRecord[]>();

function recordsOf(lu: LogicalUnit): CopyRecord[] {
  let list = records.get(lu);
  if (list === undefined) {
    list = [];
    records.set(lu, list);
  }
  return list;
}

function findRecord(lu: LogicalUnit, nexus: NexusRecord, listId: number): CopyRecord | null {
  const list = records.get(lu);
  if (list === undefined) return null;
  for (const r of list) if (r.nexus === nexus && r.listId === listId) return r;
  return null;
}

function dropRecord(lu: LogicalUnit, r: CopyRecord): void {
  const list = records.get(lu);
  if (list === undefined) return;
  const i = list.indexOf(r);
  if (i >= 0) list.splice(i, 1);
}

/**
 * Discards the RECEIVE COPY RESULTS records `lu` holds for I_T nexus `nexus` (I_T nexus loss),
 * or for every nexus (null: LOGICAL UNIT RESET). SPC-4 §6.25 item c) (RECEIVE COPY
 * STATUS(LID1) data) and §6.23 item d) (failed segment details): discarded "if the copy manager
 * detects a logical unit reset condition or I_T nexus loss condition (see SAM-5)". The list
 * identifier is then unknown, as after delivery (INVALID FIELD IN CDB). Records of copies still
 * running go too, and their settle() leaves them gone: a LU reset aborts such a copy (SPC-4
 * §5.17.5 table 109), as does I_T NEXUS RESET (it aborts the nexus's tasks); plain I_T nexus
 * loss (nexusEstablished: a new session) has no effect on the copy itself (table 109), which
 * then finishes unrecorded.
 */
export function discardCopyResults(lu: LogicalUnit, nexus: NexusRecord | null): void {
  const list = records.get(lu);
  if (list === undefined) return;
  let kept = 0;
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    if (nexus === null || r.nexus === nexus) {
      r.discarded = true;
      continue;
    }
    list[kept++] = r;
  }
  list.length = kept;
}

// ---- sense helpers ----

function commandSpecific(segment: number): Uint8Array {
  // SPC-4 §6.4: the segment being processed, in the third and fourth bytes of COMMAND-SPECIFIC
  // INFORMATION (bytes 0 and 1 are the forwarded-sense offsets the encoder fills in).
  return Uint8Array.of(0, 0, (segment >>> 8) & 0xff, segment & 0xff);
}

/**
 * SPC-4 §4.5.2.4.6 segment pointer: SKSV=1, SD (1: relative to the segment descriptor CSI bytes
 * 2-3 name; 0: relative to the parameter list), BPV and BIT POINTER, FIELD POINTER.
 */
function segmentPointer(inSegment: boolean, byte: number, bit?: number): Uint8Array {
  return Uint8Array.of(
    0x80 | (inSegment ? 0x20 : 0) | (bit !== undefined ? 0x08 | (bit & 7) : 0),
    (byte >>> 8) & 0xff, byte & 0xff);
}

function copyAborted(c: SenseCondition, segment: number, sks: Uint8Array | null,
  forwarded: ForwardedSense | null = null, residual: bigint | null = null): SenseError {
  const extra: SenseExtra = { commandSpecific: commandSpecific(segment), senseKeySpecific: sks, forwarded };
  return new SenseError(c, null, residual, extra);
}

/** What the copy source's or destination's device server reported, in its own sense format. */
function forward(lu: LogicalUnit, source: SenseDataSource, c: SenseCondition): ForwardedSense {
  const b = new Uint8Array(MAX_SENSE_LENGTH);
  const n = encodeSense(b, lu.descriptorSense, c);
  return { source, status: ScsiStatus.CHECK_CONDITION, sense: b.slice(0, n) };
}

function parameterField(byte: number, bit?: number): SenseError {
  return SenseError.invalidParameterField(byte, bit);
}

function atParameter(c: SenseCondition, byte: number): SenseError {
  return new SenseError(c, { inCdb: false, byte });
}

/** SBC-3 LBA range check in exact integers (be64Safe gives -1 for values no LU reaches). */
function inRange(lba: number, blocks: number, capacity: number): boolean {
  return lba >= 0 && lba <= capacity && blocks <= capacity - lba;
}

/**
 * The logical unit of this target that VPD 83h reports `designator` for with association 00b.
 * Our LU designators (vpd.ts): NAA 6h, binary, 16 bytes. The T10 vendor id designator is 25 or
 * more bytes, more than the 20 an identification CSCD descriptor holds, so it can never match.
 */
function findLogicalUnit(core: Core, codeSet: number, type: number, p: Uint8Array, off: number,
  len: number): LogicalUnit | null {
  if (codeSet !== 0x1 || type !== 0x3 || len !== 16) return null;
  const luns = core.lunList();
  for (let i = 0; i < luns.length; i++) {
    const lu = core.getLogicalUnit(luns[i]);
    if (lu === undefined) continue;
    const naa = lu.identity.naa;
    let k = 0;
    while (k < 16 && naa[k] === p[off + k]) k++;
    if (k === 16) return lu;
  }
  return null;
}

// ---- the copy job ----

const enum Phase {
  SEGMENT = 0,
  READ = 1,
  WRITE = 2,
  DONE = 3,
}

interface Waiting {
  readonly core: Core;
  readonly task: Task;
}

/**
 * The range-lock holder a copy job owns (one per job, for its whole life). A job holds at most
 * one range at a time, so one holder suffices.
 */
class CopyLockHolder implements RangeLockHolder {
  lockState = 0;
  lockExclusive = false;
  lockLba = 0;
  lockEnd = 0;
  lockNext: RangeLockHolder | null = null;
  private readonly job: CopyJob;

  constructor(job: CopyJob) {
    this.job = job;
  }

  lockGranted(): void {
    this.job.lockGranted();
  }
}

/**
 * One EXTENDED COPY in progress. MAX_CONCURRENT_COPIES of these exist at most, each with its
 * private parameter-list copy (reliability.md V9.2), its data buffer and pre-bound callbacks,
 * so a copy allocates nothing per chunk.
 */
class CopyJob {
  /** private copy of the parameter list: validated and used only here (V9.1) */
  private readonly param = new Uint8Array(MAX_PARAMETER_COPY);
  private data: Uint8Array | null = null;
  private readonly dataList: Uint8Array[] = [];
  private cscdCount = 0;
  private readonly cscdOffset = new Int32Array(MAX_CSCD_DESCRIPTORS);
  private readonly cscdLu: (LogicalUnit | null)[] = new Array<LogicalUnit | null>(MAX_CSCD_DESCRIPTORS).fill(null);
  private segCount = 0;
  private readonly segOffset = new Int32Array(MAX_SEGMENT_DESCRIPTORS);
  private readonly srcLu: (LogicalUnit | null)[] = new Array<LogicalUnit | null>(MAX_SEGMENT_DESCRIPTORS).fill(null);
  private readonly dstLu: (LogicalUnit | null)[] = new Array<LogicalUnit | null>(MAX_SEGMENT_DESCRIPTORS).fill(null);

  private core: Core | null = null;
  private task: Task | null = null;
  private lu: LogicalUnit | null = null;
  private record: CopyRecord | null = null;

  private phase = Phase.DONE;
  private seg = 0;
  private src: LogicalUnit | null = null;
  private dst: LogicalUnit | null = null;
  private srcStart = 0;
  private dstStart = 0;
  private segBytes = 0;
  private remaining = 0;
  private chunk = 0;
  private backward = false;
  private pending = false;
  private issuing = false;
  private error: SenseError | null = null;
  private readonly onRead = (err: Error | null): void => this.ioDone(err, true);
  private readonly onWrite = (err: Error | null): void => this.ioDone(err, false);
  private readonly holder = new CopyLockHolder(this);
  /** the LU whose range lock `holder` is in (held or waiting), else null */
  private lockLu: LogicalUnit | null = null;
  /** waiting for a range: the grant, not a store callback, continues the step machine */
  private lockWait = false;
  private readonly afterGrant = (): void => {
    this.lockWait = false;
    this.step();
  };

  /**
   * Copies and checks the parameter list and names every copy source and destination, for
   * `task` received by `lu`. Throws SenseError; moves no data.
   */
  prepare(core: Core, task: Task): void {
    const lu = task.lu!;
    this.core = core;
    this.task = task;
    this.lu = lu;
    const len = Math.min(task.dataLength, MAX_PARAMETER_COPY);
    // guest-controlled: the parameter list is copied once and only the copy is read (V9.2).
    copyFromSegments(task.cmd.dataOut, 0, this.param, 0, len);
    this.param.fill(0, len);
    const p = this.param;
    // SPC-4 §6.4.3: LIST IDENTIFIER, byte 1 STR (5) | LIST ID USAGE (4-3) | PRIORITY (2-0).
    // STR and PRIORITY are hints we may ignore.
    const listId = p[0];
    const usage = (p[1] >>> 3) & 0x3;
    if (usage === 0x1) throw parameterField(1, 4); // 01b is reserved
    if (usage === 0x3 && listId !== 0) throw parameterField(0); // no list identifier: must be 0
    const cscdListLength = be16(p, 2);
    const segListLength = be32(p, 8);
    const inlineLength = be32(p, 12);
    // guest-controlled lengths: validated here before any descriptor is read.
    if (cscdListLength + segListLength > MAX_DESCRIPTOR_LIST_LENGTH) {
      throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR); // over MAXIMUM DESCRIPTOR LIST LENGTH
    }
    if (inlineLength !== 0) throw atParameter(Sense.INLINE_DATA_LENGTH_EXCEEDED, 12); // MAXIMUM INLINE DATA LENGTH 0
    if (HEADER_LENGTH + cscdListLength + segListLength > task.dataLength) {
      throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR); // lists truncated by PARAMETER LIST LENGTH
    }
    // Trailing bytes after the lists are ignored, as other copy managers do.

    // CSCD descriptors (SPC-4 §6.4.5): we implement the 32-byte identification descriptor.
    const cscdEnd = HEADER_LENGTH + cscdListLength;
    let off = HEADER_LENGTH;
    let n = 0;
    while (off < cscdEnd) {
      if (n === MAX_CSCD_DESCRIPTORS) throw atParameter(Sense.TOO_MANY_TARGET_DESCRIPTORS, 2);
      if (p[off] !== CSCD_IDENTIFICATION) throw atParameter(Sense.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off);
      if (off + CSCD_LENGTH > cscdEnd) throw parameterField(2); // list ends inside a descriptor
      // Byte 1: LU ID TYPE and NUL are obsolete in SPC-4 (ignored); PERIPHERAL DEVICE TYPE is
      // checked when a segment uses the descriptor. Bytes 2-3 RELATIVE INITIATOR PORT IDENTIFIER:
      // the copy manager reaches our LUs without a port, so any value is accepted.
      if (((p[off + 5] >>> 4) & 0x3) !== 0) throw parameterField(off + 5, 5); // ASSOCIATION: a LU
      if (p[off + 7] > MAX_CSCD_DESIGNATOR) throw parameterField(off + 7); // DESIGNATOR LENGTH
      this.cscdOffset[n] = off;
      this.cscdLu[n] = null;
      n++;
      off += CSCD_LENGTH;
    }
    this.cscdCount = n;

    // Segment descriptors (SPC-4 §6.4.6): we implement block device to block device (02h).
    const segEnd = cscdEnd + segListLength;
    n = 0;
    while (off < segEnd) {
      if (n === MAX_SEGMENT_DESCRIPTORS) throw atParameter(Sense.TOO_MANY_SEGMENT_DESCRIPTORS, 8);
      if (p[off] !== SEGMENT_BLOCK_TO_BLOCK) throw atParameter(Sense.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, off);
      if (off + 4 > segEnd) throw parameterField(8);
      if (be16(p, off + 2) !== SEGMENT_B2B_LENGTH - 4) throw parameterField(off + 2); // DESCRIPTOR LENGTH 0018h
      if (off + SEGMENT_B2B_LENGTH > segEnd) throw parameterField(8);
      this.segOffset[n] = off;
      n++;
      off += SEGMENT_B2B_LENGTH;
    }
    this.segCount = n;

    // A list identifier in use by a copy in progress from the same I_T nexus (SPC-4 §6.4.3).
    if (usage !== 0x3) {
      const old = findRecord(lu, task.nexus!, listId);
      if (old !== null && old.inProgress) throw new SenseError(Sense.OPERATION_IN_PROGRESS);
      if (old !== null) dropRecord(lu, old); // a new copy with the same list id discards held data
      const list = recordsOf(lu);
      if (list.length >= MAX_HELD_RECORDS) {
        const i = list.findIndex((r) => !r.inProgress);
        if (i >= 0) list.splice(i, 1);
      }
      this.record = {
        nexus: task.nexus!, listId, hold: usage === 0x0, inProgress: true, failed: false,
        statusHeld: false, segmentsProcessed: 0, bytesWritten: 0, sense: null, discarded: false,
      };
      list.push(this.record);
    }
    try {
      for (let i = 0; i < this.segCount; i++) this.resolveSegment(i);
    } catch (e) {
      if (e instanceof SenseError) this.settle(e);
      throw e;
    }
  }

  /** Names the copy source and destination of segment i (no data moves yet). */
  private resolveSegment(i: number): void {
    const p = this.param;
    const off = this.segOffset[i];
    const src = this.resolveCscd(be16(p, off + 4), i, 4);
    const dst = this.resolveCscd(be16(p, off + 6), i, 6);
    // reliability.md V7.12: EXTENDED COPY writing a write-protected LU.
    if (dst.readOnly) throw new SenseError(Sense.WRITE_PROTECTED);
    this.srcLu[i] = src;
    this.dstLu[i] = dst;
  }

  private resolveCscd(id: number, segment: number, field: number): LogicalUnit {
    if (id === CSCD_ID_COPY_MANAGER_LU) return this.lu!;
    // Table 150: 0000h-07FFh index the CSCD descriptor list; other values name nothing we have.
    if (id >= this.cscdCount) {
      throw copyAborted(Sense.UNREACHABLE_COPY_TARGET, segment, segmentPointer(true, field));
    }
    const cached = this.cscdLu[id];
    if (cached !== null) return cached;
    const p = this.param;
    const off = this.cscdOffset[id];
    // A 02h segment moves blocks: its CSCDs must be direct-access block devices (PDT 00h).
    if ((p[off + 1] & 0x1f) !== 0x00) {
      throw copyAborted(Sense.INCORRECT_COPY_TARGET_DEVICE_TYPE, segment, segmentPointer(false, off + 1, 4));
    }
    const lu = findLogicalUnit(this.core!, p[off + 4] & 0x0f, p[off + 5] & 0x0f, p, off + 8, p[off + 7]);
    if (lu === null) {
      // No LU of this target reports that designator: the initiator falls back to READ/WRITE.
      throw copyAborted(Sense.COPY_TARGET_DEVICE_NOT_REACHABLE, segment, segmentPointer(false, off));
    }
    // Block device type specific parameters: byte 28 PAD (meaningless between block devices),
    // bytes 29-31 DISK BLOCK LENGTH. 0 is taken as "the LU's", as FreeBSD CTL does.
    const blockLength = be24(p, off + 29);
    if (blockLength !== 0 && blockLength !== lu.blockSize) throw parameterField(off + 29);
    this.cscdLu[id] = lu;
    // A LU removed while this copy uses it stays open until the copy is over (release()).
    if (lu !== this.lu) lu.copyUsers++;
    return lu;
  }

  /** Starts moving data; completes the task through task.ioDone. */
  run(): void {
    if (this.data === null) {
      this.data = new Uint8Array(COPY_CHUNK);
      this.dataList.push(this.data);
    }
    this.seg = 0;
    this.error = null;
    this.phase = Phase.SEGMENT;
    this.step();
  }

  /**
   * Runs phases until an operation is in flight, the job waits for a range, or the copy is over.
   * Store callbacks that arrive synchronously (RAM store) only set state, so a long copy never
   * deepens the stack.
   */
  private step(): void {
    const task = this.task!;
    for (;;) {
      if (this.pending || this.lockWait) return;
      if (this.error === null && task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) {
        // Aborted: stop between operations (a range granted after a wait is given back by
        // finish()); the core reports the abort.
        this.phase = Phase.DONE;
      }
      switch (this.phase) {
        case Phase.SEGMENT:
          if (this.seg === this.segCount) {
            this.phase = Phase.DONE;
            break;
          }
          try {
            this.startSegment();
          } catch (e) {
            if (!(e instanceof SenseError)) throw e;
            this.error = e;
            this.phase = Phase.DONE;
          }
          break;
        case Phase.READ: {
          const done = this.segBytes - this.remaining;
          this.chunk = Math.min(this.remaining, COPY_CHUNK);
          const at = this.backward ? this.remaining - this.chunk : done;
          if (!this.lockChunk(this.src!, this.srcStart + at)) return;
          this.issue(this.src!, this.srcStart + at, true);
          break;
        }
        case Phase.WRITE: {
          const at = this.backward ? this.remaining - this.chunk : this.segBytes - this.remaining;
          if (!this.lockChunk(this.dst!, this.dstStart + at)) return;
          this.issue(this.dst!, this.dstStart + at, false);
          break;
        }
        default:
          this.finish();
          return;
      }
    }
  }

  /**
   * Holds the blocks of the next chunk of `lu` (bytes [offset, offset + chunk)) in its range
   * lock, shared and tracked, so an exclusive request waits for this chunk only if it overlaps
   * it. Returns false while the job waits; the grant continues step() (lockGranted). Called
   * again for the same chunk after the grant, it finds the range held.
   *
   * No deadlock: a job holds at most one range, only while that chunk's store operation is in
   * flight (which needs no lock to complete), and releases it before asking for the next. So a
   * job never waits while holding a range; the other holders (commands) never wait while
   * holding one either; a wait-for cycle would need a waiting holder, so none can form.
   */
  private lockChunk(lu: LogicalUnit, offset: number): boolean {
    const h = this.holder;
    if (h.lockState !== LockState.NONE) return h.lockState === LockState.HELD;
    const lba = offset / lu.blockSize; // chunk offsets and lengths are whole blocks of both LUs
    this.lockLu = lu;
    if (lu.rangeLock.acquireTracked(h, lba, lba + this.chunk / lu.blockSize)) return true;
    this.lockWait = true;
    return false;
  }

  /** Gives the chunk's range back (a no-op when none is held or awaited). */
  private unlockChunk(): void {
    const lu = this.lockLu;
    if (lu === null) return;
    this.lockLu = null;
    lu.rangeLock.release(this.holder); // may grant waiters, synchronously
  }

  /**
   * The range the job waited for is held now. This runs inside RangeLock.pump(), and with a
   * synchronous store the rest of the copy would run there too, holding up the other waiters
   * the pump has yet to grant: continue from a microtask instead (one per contended chunk).
   */
  lockGranted(): void {
    queueMicrotask(this.afterGrant);
  }

  private issue(lu: LogicalUnit, offset: number, read: boolean): void {
    this.pending = true;
    this.issuing = true;
    try {
      if (read) lu.store.read(offset, this.dataList, this.chunk, this.onRead);
      // Write-through (WCE=0) makes every write durable, exactly as for WRITE (reliability.md §4.6).
      else lu.store.write(offset, this.dataList, this.chunk, !lu.writeCache, this.onWrite);
    } catch (e) {
      if (this.pending) this.ioDone(e instanceof Error ? e : new Error(String(e)), read);
    }
    this.issuing = false;
  }

  private ioDone(err: Error | null, read: boolean): void {
    if (!this.pending) return; // a store completing twice: ignore the second
    this.pending = false;
    // The operation is over, successful or not: its range goes before anything else happens.
    this.unlockChunk();
    if (err !== null) {
      this.error = this.storeFailure(err, read);
      this.phase = Phase.DONE;
    } else if (read) {
      this.phase = Phase.WRITE;
    } else {
      this.remaining -= this.chunk;
      if (this.record !== null) this.record.bytesWritten += this.chunk;
      if (this.remaining === 0) {
        this.seg++;
        if (this.record !== null) this.record.segmentsProcessed = this.seg;
        this.phase = Phase.SEGMENT;
      } else {
        this.phase = Phase.READ;
      }
    }
    if (!this.issuing) this.step();
  }

  /** Sets up segment `seg`: the checks its copy source and destination would make. */
  private startSegment(): void {
    const p = this.param;
    const i = this.seg;
    const off = this.segOffset[i];
    const src = this.srcLu[i]!;
    const dst = this.dstLu[i]!;
    const blocks = be16(p, off + 10);
    // DC=1: BLOCK DEVICE NUMBER OF BLOCKS counts destination blocks, else source blocks.
    const dc = (p[off + 1] & 0x02) !== 0;
    const bytes = blocks * (dc ? dst.blockSize : src.blockSize);
    if (bytes % src.blockSize !== 0 || bytes % dst.blockSize !== 0) {
      // e.g. 1 block of 512 bytes into 4096-byte blocks: a partial block cannot be written.
      throw copyAborted(Sense.UNEXPECTED_INEXACT_SEGMENT, i, segmentPointer(true, 10));
    }
    const srcLba = be64Safe(p, off + 12);
    const dstLba = be64Safe(p, off + 20);
    if (!inRange(srcLba, bytes / src.blockSize, src.blocks)) {
      throw copyAborted(Sense.COPY_ABORTED, i, segmentPointer(true, 12),
        forward(src, SenseDataSource.COPY_SOURCE, Sense.LBA_OUT_OF_RANGE));
    }
    if (!inRange(dstLba, bytes / dst.blockSize, dst.blocks)) {
      throw copyAborted(Sense.COPY_ABORTED, i, segmentPointer(true, 20),
        forward(dst, SenseDataSource.COPY_DESTINATION, Sense.LBA_OUT_OF_RANGE));
    }
    if (bytes > 0 && dst.failed !== null) {
      // fsyncgate: the destination refuses writes after a write-back error (reliability.md §4.6).
      throw copyAborted(Sense.COPY_ABORTED, i, this.cscdPointer(be16(p, off + 6)),
        forward(dst, SenseDataSource.COPY_DESTINATION, Sense.WRITE_ERROR));
    }
    this.src = src;
    this.dst = dst;
    this.srcStart = srcLba * src.blockSize;
    this.dstStart = dstLba * dst.blockSize;
    this.segBytes = bytes;
    this.remaining = bytes;
    // Overlap within one LU with the destination above the source: copy from the end (memmove).
    this.backward = src === dst && this.dstStart > this.srcStart && this.dstStart < this.srcStart + bytes;
    if (bytes === 0) {
      this.seg++;
      if (this.record !== null) this.record.segmentsProcessed = this.seg;
      return; // phase stays SEGMENT
    }
    this.phase = Phase.READ;
  }

  /** Segment pointer to the CSCD descriptor a CSCD ID names (none for FFFFh). */
  private cscdPointer(id: number): Uint8Array | null {
    return id < this.cscdCount ? segmentPointer(false, this.cscdOffset[id]) : null;
  }

  /** A store error of the copy source or destination, as its device server would report it. */
  private storeFailure(err: Error, read: boolean): SenseError {
    const code = (err as NodeJS.ErrnoException).code;
    const off = this.segOffset[this.seg];
    const p = this.param;
    let c: SenseCondition;
    if (read) {
      c = code === 'EIO' ? Sense.UNRECOVERED_READ_ERROR : Sense.INTERNAL_TARGET_FAILURE;
    } else if (code === 'EIO') {
      this.dst!.failed = err; // the same fsyncgate rule as WRITE (target.ts storeErrorCondition)
      c = Sense.WRITE_ERROR;
    } else if (code === 'ENOSPC' || code === 'EDQUOT') {
      c = Sense.SPACE_ALLOCATION_FAILED_WRITE_PROTECT;
    } else if (code === 'EROFS') {
      c = Sense.WRITE_PROTECTED;
    } else {
      c = Sense.INTERNAL_TARGET_FAILURE;
    }
    const lu = read ? this.src! : this.dst!;
    const fwd = forward(lu, read ? SenseDataSource.COPY_SOURCE : SenseDataSource.COPY_DESTINATION, c);
    // SPC-4 §6.4: once destination data of this segment was written, INFORMATION holds the
    // residual in destination blocks.
    const written = this.segBytes - this.remaining;
    const residual = written > 0 ? BigInt((this.segBytes - written) / this.dst!.blockSize) : null;
    return copyAborted(Sense.COPY_ABORTED, this.seg, this.cscdPointer(be16(p, off + (read ? 4 : 6))), fwd, residual);
  }

  /** Records the outcome for RECEIVE COPY RESULTS. */
  private settle(error: SenseError | null): void {
    const r = this.record;
    if (r === null) return;
    this.record = null;
    r.inProgress = false;
    if (r.discarded) return; // a reset discarded it while the copy ran: it stays discarded
    const lu = this.lu!;
    if (!r.hold) {
      dropRecord(lu, r);
      return;
    }
    r.statusHeld = true;
    const aborted = this.task!.abortResponse !== ServiceResponse.COMMAND_COMPLETE;
    r.failed = error !== null || aborted;
    if (error !== null && !aborted) {
      // FAILED SEGMENT DETAILS return the sense data the command ended with, byte for byte.
      const b = new Uint8Array(MAX_SENSE_LENGTH);
      const n = encodeSense(b, lu.descriptorSense, error.condition, error.field, error.information, error.extra);
      r.sense = b.slice(0, n);
    }
  }

  private finish(): void {
    const task = this.task!;
    const error = this.error;
    this.unlockChunk(); // an abort noticed right after a grant leaves that range held
    this.settle(error);
    if (error === null) task.cmd.dataOutTransferred = task.dataLength;
    this.release();
    task.ioDone(error);
    pumpWaiting();
  }

  release(): void {
    this.unlockChunk();
    for (let i = 0; i < MAX_CSCD_DESCRIPTORS; i++) {
      const used = this.cscdLu[i];
      if (used === null || used === this.lu) continue;
      used.copyUsers--;
      used.checkIdle(); // a removal waiting for this copy may now close it
    }
    this.lockWait = false;
    this.core = null;
    this.task = null;
    this.lu = null;
    this.src = null;
    this.dst = null;
    this.error = null;
    this.record = null;
    this.phase = Phase.DONE;
    this.cscdLu.fill(null);
    this.srcLu.fill(null);
    this.dstLu.fill(null);
    freeJobs.push(this);
  }
}

// Process-wide pool: MAX_CONCURRENT_COPIES jobs, created on first use; FIFO of waiting copies.
const freeJobs: CopyJob[] = [];
let jobsCreated = 0;
const waiting: Waiting[] = [];
let pumping = false;

function acquireJob(): CopyJob | null {
  const job = freeJobs.pop();
  if (job !== undefined) return job;
  if (jobsCreated < MAX_CONCURRENT_COPIES) {
    jobsCreated++;
    return new CopyJob();
  }
  return null;
}

/** Starts waiting copies while jobs are free. */
function pumpWaiting(): void {
  if (pumping) return;
  pumping = true;
  try {
    while (waiting.length > 0 && (freeJobs.length > 0 || jobsCreated < MAX_CONCURRENT_COPIES)) {
      const w = waiting.shift()!;
      if (w.task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) {
        w.task.ioDone(null); // aborted while waiting: the core reports the abort
        continue;
      }
      const job = acquireJob()!;
      try {
        job.prepare(w.core, w.task);
      } catch (e) {
        job.release();
        w.task.ioDone(e instanceof Error ? e : new Error(String(e)));
        continue;
      }
      job.run();
    }
  } finally {
    pumping = false;
  }
}

// ---- EXTENDED COPY (LID1) ----

export function parseExtendedCopy(task: Task, cdb: Uint8Array): void {
  // SPC-4 EXTENDED COPY(LID1) CDB: bytes 10-13 PARAMETER LIST LENGTH. Any value is accepted here:
  // only the first 16 + MAXIMUM DESCRIPTOR LIST LENGTH bytes are ever read, and longer lists fail
  // with PARAMETER LIST LENGTH ERROR once their header is seen.
  task.dataLength = be32(cdb, 10);
}

export function executeExtendedCopy(core: Core, task: Task): number {
  // SPC-4 §6.4.1: a PARAMETER LIST LENGTH of zero copies nothing and is not an error.
  if (task.dataLength === 0) return 0;
  if (task.dataLength < HEADER_LENGTH) throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);
  const job = waiting.length === 0 ? acquireJob() : null;
  if (job === null) {
    // Every copy buffer is busy: wait (in order) rather than fail; TMFs see the task as running.
    waiting.push({ core, task });
    return core.startOwnIo(task);
  }
  try {
    job.prepare(core, task);
  } catch (e) {
    job.release();
    throw e;
  }
  core.startOwnIo(task);
  job.run();
  return EXECUTE_ASYNC;
}

// ---- RECEIVE COPY RESULTS (LID1) ----

export function parseReceiveCopyResults(task: Task, cdb: Uint8Array): void {
  // Bytes 10-13 ALLOCATION LENGTH; byte 2 LIST IDENTIFIER (reserved for OPERATING PARAMETERS,
  // which the usage data enforces).
  task.dataLength = be32(cdb, 10);
  task.aux = cdb[2];
}

/** RECEIVE COPY OPERATING PARAMETERS (SPC-4 r31 §6.18.4): 44 bytes + implemented type codes. */
export function executeCopyOperatingParameters(core: Core, task: Task): number {
  const lu = task.lu!;
  const total = 44 + IMPLEMENTED_DESCRIPTORS.length;
  const b = core.response(total);
  putBe32(b, 0, total - 4); // AVAILABLE DATA (n-3)
  b[4] = 0x01; // SNLID: LIST ID USAGE 11b with LIST IDENTIFIER 0 is supported
  putBe16(b, 8, MAX_CSCD_DESCRIPTORS);
  putBe16(b, 10, MAX_SEGMENT_DESCRIPTORS);
  putBe32(b, 12, MAX_DESCRIPTOR_LIST_LENGTH);
  putBe32(b, 16, MAX_SEGMENT_LENGTH);
  putBe32(b, 20, 0); // MAXIMUM INLINE DATA LENGTH: no inline data
  putBe32(b, 24, 0); // HELD DATA LIMIT: no held data (no 0Bh-0Fh segments)
  putBe32(b, 28, 0); // MAXIMUM STREAM DEVICE TRANSFER SIZE: no stream devices
  putBe16(b, 34, MAX_CONCURRENT_COPIES); // TOTAL CONCURRENT COPIES
  b[36] = MAX_CONCURRENT_COPIES; // MAXIMUM CONCURRENT COPIES
  b[37] = Math.log2(lu.blockSize); // DATA SEGMENT GRANULARITY (log2 bytes): one block
  b[38] = 0; // INLINE DATA GRANULARITY
  b[39] = 0; // HELD DATA GRANULARITY
  b[43] = IMPLEMENTED_DESCRIPTORS.length; // IMPLEMENTED DESCRIPTOR LIST LENGTH
  for (let i = 0; i < IMPLEMENTED_DESCRIPTORS.length; i++) b[44 + i] = IMPLEMENTED_DESCRIPTORS[i];
  return total;
}

/** Bytes the initiator receives of an n-byte response (ALLOCATION LENGTH and buffer). */
function delivered(task: Task, n: number): number {
  return Math.min(n, task.dataLength, task.cmd.dataInLength);
}

/** COPY STATUS / RECEIVE COPY STATUS(LID1) (SPC-4 r31 §6.18.2): 12 bytes. */
export function executeCopyStatus(core: Core, task: Task): number {
  const lu = task.lu!;
  const r = findRecord(lu, task.nexus!, task.aux);
  if (r === null) throw SenseError.invalidCdbField(2); // no copy known by that LIST IDENTIFIER
  const b = core.response(12);
  putBe32(b, 0, 8); // AVAILABLE DATA
  // HDD=0 (no held data). COPY MANAGER STATUS: 00h in progress, 01h completed without errors,
  // 02h completed with errors (an aborted copy included).
  b[4] = r.inProgress ? 0x00 : r.failed ? 0x02 : 0x01;
  putBe16(b, 5, Math.min(r.segmentsProcessed, 0xffff)); // SEGMENTS PROCESSED
  // TRANSFER COUNT in the smallest unit it fits: 00h bytes, 01h KiB, 02h MiB, ... (2^(10·units)).
  let units = 0;
  let count = r.bytesWritten;
  while (count > 0xffffffff) {
    count = Math.floor(count / 1024);
    units++;
  }
  b[7] = units;
  putBe32(b, 8, count);
  if (!r.inProgress && (task.dataLength === 0 || delivered(task, 12) === 12)) {
    // Delivered (or ALLOCATION LENGTH 0): the copy manager discards the status (SPC-3 §6.17.2).
    r.statusHeld = false;
    if (r.sense === null) dropRecord(lu, r);
  }
  return 12;
}

/** FAILED SEGMENT DETAILS / RECEIVE COPY FAILURE DETAILS(LID1) (SPC-4 r31 §6.18.5). */
export function executeFailedSegmentDetails(core: Core, task: Task): number {
  const lu = task.lu!;
  const r = findRecord(lu, task.nexus!, task.aux);
  if (r === null) throw SenseError.invalidCdbField(2);
  if (r.inProgress || r.sense === null) {
    // No failed segment details for that list: AVAILABLE DATA 0 and nothing more.
    core.response(4);
    return 4;
  }
  const sense = r.sense;
  const total = 64 + sense.length;
  const b = core.response(total);
  putBe32(b, 0, total - 4); // AVAILABLE DATA (n-3); bytes 4-59 reserved
  b[60] = ScsiStatus.CHECK_CONDITION; // COPY COMMAND STATUS
  putBe16(b, 62, sense.length); // SENSE DATA LENGTH
  b.set(sense, 64);
  if (task.dataLength === 0 || delivered(task, total) === total) {
    r.sense = null;
    if (!r.statusHeld) dropRecord(lu, r);
  }
  return total;
}

// ---- VPD 8Fh Third-party Copy (SPC-4 §7.8.17) ----

/** Largest Third-party Copy VPD page this module builds, header included. */
export const THIRD_PARTY_COPY_VPD_LENGTH = 4 + 16 + 32 + 8 + 8 + 36;

/**
 * Builds the Third-party Copy VPD page descriptors for `lu` into `b` (zeroed, at least
 * THIRD_PARTY_COPY_VPD_LENGTH bytes) after the 4-byte page header; returns the PAGE LENGTH.
 * Each descriptor: TYPE (2 bytes), LENGTH (2 bytes, n-3), padded to a multiple of 4 bytes.
 */
export function thirdPartyCopyVpdPage(lu: LogicalUnit, b: Uint8Array): number {
  let off = 4;
  // 0001h Supported Commands: 83h {00h}, 84h {00h, 03h, 04h}.
  const cmds = [0x83, 1, ThirdPartyCopyOut.EXTENDED_COPY_LID1,
    0x84, 3, ThirdPartyCopyIn.COPY_STATUS, ThirdPartyCopyIn.OPERATING_PARAMETERS, ThirdPartyCopyIn.FAILED_SEGMENT_DETAILS];
  putBe16(b, off, 0x0001);
  putBe16(b, off + 2, roundUp4(1 + cmds.length));
  b[off + 4] = cmds.length; // COMMANDS SUPPORTED LIST LENGTH
  for (let i = 0; i < cmds.length; i++) b[off + 5 + i] = cmds[i];
  off += 4 + roundUp4(1 + cmds.length);
  // 0004h Parameter Data (length 1Ch).
  putBe16(b, off, 0x0004);
  putBe16(b, off + 2, 0x001c);
  putBe16(b, off + 8, MAX_CSCD_DESCRIPTORS);
  putBe16(b, off + 10, MAX_SEGMENT_DESCRIPTORS);
  putBe32(b, off + 12, MAX_DESCRIPTOR_LIST_LENGTH);
  putBe32(b, off + 16, 0); // MAXIMUM INLINE DATA LENGTH
  off += 32;
  // 0008h Supported Descriptors: segment and CSCD descriptor type codes.
  putBe16(b, off, 0x0008);
  putBe16(b, off + 2, roundUp4(1 + IMPLEMENTED_DESCRIPTORS.length));
  b[off + 4] = IMPLEMENTED_DESCRIPTORS.length;
  for (let i = 0; i < IMPLEMENTED_DESCRIPTORS.length; i++) b[off + 5 + i] = IMPLEMENTED_DESCRIPTORS[i];
  off += 4 + roundUp4(1 + IMPLEMENTED_DESCRIPTORS.length);
  // 000Ch Supported CSCD Descriptor IDs (above 07FFh): FFFFh, the LU processing the command.
  putBe16(b, off, 0x000c);
  putBe16(b, off + 2, roundUp4(2 + 2));
  putBe16(b, off + 4, 2);
  putBe16(b, off + 6, CSCD_ID_COPY_MANAGER_LU);
  off += 8;
  // 8001h General Copy Operations (length 20h).
  putBe16(b, off, 0x8001);
  putBe16(b, off + 2, 0x0020);
  putBe32(b, off + 4, MAX_CONCURRENT_COPIES); // TOTAL CONCURRENT COPIES
  putBe32(b, off + 8, MAX_CONCURRENT_COPIES); // MAXIMUM IDENTIFIED CONCURRENT COPIES
  putBe32(b, off + 12, MAX_SEGMENT_LENGTH);
  b[off + 16] = Math.log2(lu.blockSize); // DATA SEGMENT GRANULARITY (log2)
  b[off + 17] = 0; // INLINE DATA GRANULARITY
  off += 36;
  return off - 4;
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}
