// The command object a fabric fills in and submits, and the core's private per-command state.
import { MAX_CDB_LENGTH, MAX_SENSE_LENGTH, ScsiStatus, ServiceResponse, TaskAttribute } from './constants';
import type { CommandDef } from './opcodes';
import type { LogicalUnit } from './logical-unit';
import type { NexusRecord } from './nexus';
import type { TmfWait } from './target';
import type { RangeLockHolder } from './range-lock';

/**
 * SAM-5 §4.4: an I_T nexus names the initiator port and the target port a command came
 * through. Reservations, unit attentions and task management are all scoped by it.
 */
export interface ITNexus {
  /** Initiator port transport id, stable across reconnects of the same initiator (reliability.md §4.7). */
  readonly initiatorPort: string;
  /** Relative target port identifier, 1..65535 (SPC-4 §7.8.6.5). */
  readonly targetPortId: number;
  /**
   * SPC-4 §7.6.1 table 362 PROTOCOL IDENTIFIER of the target port's transport (0 FC, 5 iSCSI,
   * 6 SAS, ...). Undefined when the transport has none (virtio-scsi): the VPD 83h/88h port
   * designators then carry PIV=0.
   */
  readonly protocolId?: number;
  /** SCSI name string of the target port (SPC-4 §7.8.6.11, e.g. "iqn....,t,0x1"), if the fabric has one. */
  readonly targetPortName?: string;
  /** Target port group of the port (VPD 83h designator type 5h); default 1. Set by the ALUA configuration. */
  readonly targetPortGroup?: number;
}

export const enum TaskState {
  IDLE = 0,
  /** accepted into the task set, waiting for older ORDERED / HEAD OF QUEUE tasks (SAM-5 §8.6) */
  WAITING = 1,
  /** enabled; may have store I/O in flight */
  RUNNING = 2,
}

/** @internal The core's state for one command slot; allocated once with the ScsiCommand. */
export interface TaskCore {
  ioComplete(task: Task, err: Error | null): void;
  /** Runs the task's execute() again: its range lock was granted (range-lock.ts). */
  resume(task: Task): void;
}

/** @internal */
export class Task implements RangeLockHolder {
  readonly cmd: ScsiCommand;
  state: TaskState = TaskState.IDLE;
  /** bumped on every submit, so a TMF can tell a reused slot from the command it meant */
  seq = 0;
  /** in its logical unit's task set (commands to a LUN with no LU never are) */
  inTaskSet = false;
  core: TaskCore | null = null;
  lu: LogicalUnit | null = null;
  def: CommandDef | null = null;
  nexus: NexusRecord | null = null;
  /** links in the logical unit's task set, in arrival order */
  prev: Task | null = null;
  next: Task | null = null;
  /** set by a TMF: complete with this response once in-flight I/O returns (0 = not aborted) */
  abortResponse: ServiceResponse = ServiceResponse.COMMAND_COMPLETE;
  tmfWaiters: TmfWait[] | null = null;
  /** task attribute captured at submission (the fabric's field may change while we hold it) */
  attr: TaskAttribute = TaskAttribute.SIMPLE;
  ioActive = false;
  /** IoKind of the store operation in flight */
  ioKind = 0;
  // Fields parse() fills in (geometry is fixed here, at prepare time: reliability.md S6).
  lba = 0;
  blocks = 0;
  /** bytes the CDB asks to move: allocation length, or blocks × block size */
  dataLength = 0;
  fua = false;
  /** command-specific parsed bits (e.g. START STOP UNIT START/NO_FLUSH) */
  aux = 0;
  /** status of a successful completion: GOOD, or CONDITION MET (PRE-FETCH, SBC-3 §5.11) */
  goodStatus: ScsiStatus = ScsiStatus.GOOD;
  // RangeLockHolder (range-lock.ts): owned by the LU's RangeLock while lockState ≠ 0.
  /** @internal LockState: none, fast (untracked shared), held, waiting */
  lockState = 0;
  /** @internal */ lockExclusive = false;
  /** @internal locked blocks [lockLba, lockEnd) */
  lockLba = 0;
  /** @internal */ lockEnd = 0;
  /** @internal next in the lock's held or waiting list */
  lockNext: RangeLockHolder | null = null;
  readonly ioDone: (err: Error | null) => void;

  constructor(cmd: ScsiCommand) {
    this.cmd = cmd;
    // One closure per command slot, not per request.
    this.ioDone = (err) => this.core!.ioComplete(this, err);
  }

  /** @internal The range lock was granted after a wait: run execute() again (it skips the acquire). */
  lockGranted(): void {
    this.core!.resume(this);
  }
}

const NO_NEXUS: ITNexus = Object.freeze({ initiatorPort: '', targetPortId: 0 });

/**
 * One SCSI command. Allocated once per fabric slot and reused; the core never allocates
 * one. The fabric fills the inputs, calls ScsiTarget.submit(), and reads the results in
 * onComplete.
 */
export class ScsiCommand {
  nexus: ITNexus;
  lun = 0;
  /** guest-controlled: copied here by the fabric (private memory), validated by the core */
  readonly cdb: Uint8Array = new Uint8Array(MAX_CDB_LENGTH);
  cdbLength = 0;
  /**
   * The task tag (SAM-5 §4.5.3, 64 bits here) as two u32 halves, so a fabric can set it per
   * command without creating a BigInt (setTag); `tag` converts for the rare readers (TMFs, logs).
   */
  tagLo = 0;
  tagHi = 0;
  get tag(): bigint {
    return (BigInt(this.tagHi) << 32n) | BigInt(this.tagLo);
  }
  set tag(v: bigint) {
    this.tagLo = Number(BigInt.asUintN(32, v));
    this.tagHi = Number(BigInt.asUintN(32, v >> 32n));
  }
  /** Set the tag from its little halves (each a u32). */
  setTag(lo: number, hi: number): void {
    this.tagLo = lo >>> 0;
    this.tagHi = hi >>> 0;
  }
  taskAttribute: TaskAttribute = TaskAttribute.SIMPLE;
  /** device-reads-from (guest write data / parameter lists); NEVER written by the core */
  dataOut: Uint8Array[] = [];
  dataOutLength = 0;
  /** device-writes-to */
  dataIn: Uint8Array[] = [];
  dataInLength = 0;
  // Results, set by the core before onComplete.
  serviceResponse: ServiceResponse = ServiceResponse.COMMAND_COMPLETE;
  status: ScsiStatus = ScsiStatus.GOOD;
  readonly sense: Uint8Array = new Uint8Array(MAX_SENSE_LENGTH);
  senseLength = 0;
  /** bytes actually written into dataIn (residual = dataInLength - dataInTransferred) */
  dataInTransferred = 0;
  dataOutTransferred = 0;
  onComplete: ((cmd: ScsiCommand) => void) | null = null;
  /** @internal */
  readonly _task: Task;

  constructor(nexus: ITNexus = NO_NEXUS) {
    this.nexus = nexus;
    this._task = new Task(this);
  }

  /** Copies `bytes` into cdb and sets cdbLength (at most 260 bytes). */
  setCdb(bytes: ArrayLike<number>): this {
    const n = Math.min(bytes.length, MAX_CDB_LENGTH);
    this.cdb.fill(0);
    for (let i = 0; i < n; i++) this.cdb[i] = bytes[i];
    this.cdbLength = n;
    return this;
  }

  /** Clear results for reuse. */
  reset(): void {
    this.serviceResponse = ServiceResponse.COMMAND_COMPLETE;
    this.status = ScsiStatus.GOOD;
    if (this.senseLength > 0) this.sense.fill(0, 0, this.senseLength);
    this.senseLength = 0;
    this.dataInTransferred = 0;
    this.dataOutTransferred = 0;
  }
}
