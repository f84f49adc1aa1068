// The SCSI target: command dispatch through the fixed gate order, task sets, task management,
// drain and close. Fabric independent: it sees ScsiCommand objects and I_T nexuses only.
import {
  DataDirection, MAX_CDB_LENGTH, MAX_LUN, REPORT_LUNS_WLUN, ScsiStatus, ServiceResponse, TaskAttribute,
  TaskManagementFunction, TmfResponse,
} from './constants';
import { ITNexus, ScsiCommand, Task, TaskCore, TaskState } from './command';
import { CmdFlag, CommandDef, Core, EXECUTE_ASYNC, IoKind } from './command-def';
import { LogicalUnit, ResolvedIdentity, resolveIdentity } from './logical-unit';
import { NexusRecord, NexusRegistry, validNexus } from './nexus';
import {
  UNKNOWN_OPCODE, findReservedBit, groupCdbLength, lookupCommand, serviceActionField,
} from './opcodes';
import { FieldPointer, Sense, SenseCondition, SenseError, SenseExtra, encodeSense } from './sense';
import { copyToSegments } from './bytes';
import { resetModeParameters } from './spc-mode';
import { AluaOptions, AluaState, TargetPortGroupConfig, TargetPortGroupInfo, TargetPortGroups, aluaDenial } from './alua';
import { discardCopyResults } from './xcopy';
import { reservationConflict } from './persistent-reservations';

export interface ScsiTargetOptions {
  /** Largest transfer of one command in bytes (VPD B0h MAXIMUM TRANSFER LENGTH). Default 4 MiB. */
  maxTransferBytes?: number;
  /**
   * Called when a handler or store misbehaves (a bug, not guest input). The command is
   * completed with HARDWARE ERROR / INTERNAL TARGET FAILURE either way.
   */
  onInternalError?: (err: unknown) => void;
}

/** @internal A task management function waiting for the commands it aborted. */
export interface TmfWait {
  remaining: number;
  readonly response: TmfResponse;
  readonly done: (response: TmfResponse) => void;
}

export const DEFAULT_MAX_TRANSFER_BYTES = 4 << 20;
const SCRATCH_SIZE = 4096;

/** SAM-5 §8.6 task attributes we accept; ACA is rejected (NORMACA=0), garbage likewise. */
function validTaskAttribute(a: unknown): boolean {
  return a === TaskAttribute.SIMPLE || a === TaskAttribute.ORDERED || a === TaskAttribute.HEAD_OF_QUEUE;
}

function validLun(lun: number): boolean {
  return Number.isInteger(lun) && lun >= 0 && lun <= MAX_LUN;
}

export class ScsiTarget implements Core, TaskCore {
  readonly maxTransferBytes: number;
  readonly defaultIdentity: ResolvedIdentity;
  private readonly onInternalError: ((err: unknown) => void) | null;
  private readonly luns: (LogicalUnit | undefined)[] = new Array(MAX_LUN + 1);
  private lunNumbers: number[] = [];
  private readonly nexuses = new NexusRegistry();
  /** @internal ALUA target port groups (alua.ts); target-wide, shared by every LU */
  readonly portGroups = new TargetPortGroups(() => this.nexuses.records(), (rec, c) => this.raiseForNexus(rec, c));
  private readonly scratch = new Uint8Array(SCRATCH_SIZE);
  private responseBuf: Uint8Array = this.scratch;
  /** commands in some LU task set (waiting or running) */
  private activeTasks = 0;
  private drainWaiters: ((err: Error | null) => void)[] = [];
  private closed = false;
  private closeWaiters: ((err: Error | null) => void)[] | null = null;
  private closeDone = false;
  /** LUs whose waiting tasks are being dispatched (re-entrancy guard) */
  private readonly dispatching = new Set<LogicalUnit>();
  private readonly redispatch = new Set<LogicalUnit>();

  constructor(options: ScsiTargetOptions = {}) {
    const max = options.maxTransferBytes ?? DEFAULT_MAX_TRANSFER_BYTES;
    if (!Number.isSafeInteger(max) || max < 4096 || max > 1 << 30) {
      throw new RangeError(`ScsiTarget: maxTransferBytes must be an integer in [4096, 1 GiB], got ${max}`);
    }
    this.maxTransferBytes = max;
    this.onInternalError = options.onInternalError ?? null;
    this.defaultIdentity = resolveIdentity(undefined, 'no logical unit');
  }

  // ---------------------------------------------------------------- configuration

  addLogicalUnit(lun: number, lu: LogicalUnit): void {
    if (!validLun(lun)) throw new RangeError(`addLogicalUnit: LUN must be an integer 0..${MAX_LUN}, got ${lun}`);
    if (!(lu instanceof LogicalUnit)) throw new TypeError('addLogicalUnit: not a LogicalUnit');
    if (this.closed) throw new Error('addLogicalUnit: target is closed');
    if (this.luns[lun] !== undefined) throw new Error(`addLogicalUnit: LUN ${lun} is in use`);
    if (lu.attached) throw new Error(`addLogicalUnit: logical unit ${lu.name} already belongs to a target`);
    // A LU added while initiators are connected is new to them: POWER ON OCCURRED on it, and
    // REPORTED LUNS DATA HAS CHANGED on the others (reliability.md §4.8).
    for (const rec of this.nexuses.records()) {
      lu.establishUnitAttention(rec, Sense.POWER_ON_OCCURRED);
      for (const n of this.lunNumbers) this.luns[n]!.establishUnitAttention(rec, Sense.REPORTED_LUNS_DATA_HAS_CHANGED);
    }
    this.luns[lun] = lu;
    lu.attached = true;
    this.lunNumbers = [...this.lunNumbers, lun].sort((a, b) => a - b);
  }

  getLogicalUnit(lun: number): LogicalUnit | undefined {
    return validLun(lun) ? this.luns[lun] : undefined;
  }

  /**
   * ALUA (alua.ts): replaces the target port groups. Validated whole (RangeError: duplicate ids,
   * a port in two groups, bad ids, states or options); nothing changes on error. The
   * configuration is authoritative: a port it does not list is UNAVAILABLE in group 0. If any
   * group's state, preference or ports changed, every known I_T nexus gets ASYMMETRIC ACCESS
   * STATE CHANGED (2A/06) on every LU, preceded by INQUIRY DATA HAS CHANGED (3F/03) where the
   * nexus's port changed group (VPD 83h).
   */
  setTargetPortGroups(groups: TargetPortGroupConfig[], options?: AluaOptions): void {
    this.portGroups.configure(groups, options);
  }

  /**
   * ALUA: an operator changes one group's state (immediate; status code 02h, implicit). Raises
   * ASYMMETRIC ACCESS STATE CHANGED for every known I_T nexus on every LU. RangeError if the
   * group does not exist.
   */
  setTargetPortGroupState(id: number, state: AluaState): void {
    this.portGroups.setState(id, state);
  }

  /** ALUA: the target port groups that have ports, ascending by id. */
  targetPortGroups(): readonly TargetPortGroupInfo[] {
    return this.portGroups.list();
  }

  /**
   * Removes LUN `lun` while initiators may be using it. It leaves the LUN inventory at once: new
   * commands to it meet the null LU (LOGICAL UNIT NOT SUPPORTED), REPORT LUNS stops listing it,
   * and every known I_T nexus gets REPORTED LUNS DATA HAS CHANGED on the remaining LUs (SPC-4 r37
   * §6.33: the inventory changed). Commands already in its task set complete normally; then its
   * cache is flushed (skipped when read-only or failed), its store closed, and `done` runs with
   * the first flush or close error.
   */
  removeLogicalUnit(lun: number, done: (err: Error | null) => void): void {
    if (!validLun(lun)) throw new RangeError(`removeLogicalUnit: LUN must be an integer 0..${MAX_LUN}, got ${lun}`);
    if (this.closed) throw new Error('removeLogicalUnit: target is closed');
    const lu = this.luns[lun];
    if (lu === undefined) throw new Error(`removeLogicalUnit: no LUN ${lun}`);
    this.luns[lun] = undefined;
    this.lunNumbers = this.lunNumbers.filter((n) => n !== lun);
    for (const rec of this.nexuses.records()) {
      for (const n of this.lunNumbers) this.luns[n]!.establishUnitAttention(rec, Sense.REPORTED_LUNS_DATA_HAS_CHANGED);
    }
    const retire = (): void => {
      lu.idleWaiter = null;
      const close = (flushErr: Error | null): void => lu.store.close((closeErr) => done(flushErr ?? closeErr));
      if (lu.readOnly || lu.failed !== null) close(null);
      else lu.store.flush(close);
    };
    // finish() (last task) or a copy of another LU using this one (xcopy.ts) runs it when idle.
    lu.idleWaiter = retire;
    lu.checkIdle();
  }

  /**
   * Grows LUN `lun` to `sizeBytes` bytes (a multiple of its block size). The store grows first
   * (BlockStore.resize; stores never shrink), then READ CAPACITY reports the new value and every
   * known I_T nexus gets CAPACITY DATA HAS CHANGED 2A/09 on the LU (SAM-5 §5.14 unit attention).
   * Commands in flight were range-checked against the old capacity, which stays inside the
   * grown store. `done(err, changed)`: changed is false when the size was already `sizeBytes`.
   */
  resizeLogicalUnit(lun: number, sizeBytes: number, done: (err: Error | null, changed: boolean) => void): void {
    const lu = validLun(lun) ? this.luns[lun] : undefined;
    if (lu === undefined) {
      done(new Error(`resizeLogicalUnit: no LUN ${lun}`), false);
      return;
    }
    if (this.closed) {
      done(new Error('resizeLogicalUnit: target is closed'), false);
      return;
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < lu.blockSize || sizeBytes % lu.blockSize !== 0) {
      done(new RangeError(`resizeLogicalUnit: ${sizeBytes} is not a positive multiple of the ${lu.blockSize}-byte block size`), false);
      return;
    }
    const store = lu.store;
    if (sizeBytes === store.sizeBytes) {
      done(null, false);
      return;
    }
    if (typeof store.resize !== 'function') {
      done(new Error(`resizeLogicalUnit: the store of ${lu.name} cannot be resized`), false);
      return;
    }
    store.resize(sizeBytes, (err) => {
      if (err !== null) {
        done(err, false);
        return;
      }
      lu.storeResized();
      for (const rec of this.nexuses.records()) lu.establishUnitAttention(rec, Sense.CAPACITY_DATA_HAS_CHANGED);
      done(null, true);
    });
  }

  /** First contact / new session of an initiator: raises POWER ON/RESET 29/00 for it on every LU (virtio reset, new VM session). */
  nexusEstablished(nexus: ITNexus): void {
    if (!validNexus(nexus)) throw new TypeError('nexusEstablished: invalid I_T nexus (targetPortId must be 1..65535)');
    const rec = this.nexuses.find(nexus) ?? this.addNexus(nexus);
    this.raiseForNexus(rec, Sense.POWER_ON_RESET);
    this.nexusLost(rec);
  }

  /**
   * State scoped to an I_T nexus that does not survive its loss (a new session of the initiator,
   * I_T NEXUS RESET): SAM-5 §6.3.4 I_T nexus loss. Persistent reservations are kept (SPC-4
   * §5.9.6); the unit attention is raised by the caller.
   */
  private nexusLost(rec: NexusRecord): void {
    for (const n of this.lunNumbers) {
      const lu = this.luns[n]!;
      discardCopyResults(lu, rec); // held RECEIVE COPY RESULTS data of this nexus (SPC-4 §6.25 c))
      lu.pr.nexusLost(rec); // its SPC-2 reservation ends (SPC-2 r20 §5.5.1); persistent ones stay
    }
  }

  /**
   * State a LOGICAL UNIT RESET clears besides the task set and the mode parameters (SAM-5
   * §6.3.3); persistent reservations are kept (SPC-4 §5.9.6).
   */
  private logicalUnitReset(lu: LogicalUnit): void {
    discardCopyResults(lu, null); // held RECEIVE COPY RESULTS data of every nexus (SPC-4 §6.25 c))
    lu.pr.logicalUnitReset(); // the SPC-2 reservation ends (SPC-2 r20 §5.5.1); persistent ones stay
  }

  private raiseForNexus(rec: NexusRecord, c: SenseCondition): void {
    for (const n of this.lunNumbers) this.luns[n]!.establishUnitAttention(rec, c);
  }

  /** Registers a nexus not seen before; its target port takes its place in the ALUA groups. */
  private addNexus(nexus: ITNexus): NexusRecord {
    const rec = this.nexuses.add(nexus);
    this.portGroups.portSeen(rec);
    return rec;
  }

  /** The record of a nexus, creating it (first contact: POWER ON/RESET on every LU) if new. */
  private nexusRecord(nexus: ITNexus): NexusRecord {
    let rec = this.nexuses.find(nexus);
    if (rec === null) {
      rec = this.addNexus(nexus);
      this.raiseForNexus(rec, Sense.POWER_ON_RESET);
    }
    return rec;
  }

  // ---------------------------------------------------------------- command path

  /** Run a command. Calls cmd.onComplete exactly once, synchronously or later. Never throws for bad CDBs (they become CHECK CONDITION). */
  submit(cmd: ScsiCommand): void {
    const task = cmd._task;
    if (task.state !== TaskState.IDLE) {
      // A fabric bug (the slot is still ours): fail-stop rather than complete it twice.
      throw new Error('ScsiTarget.submit: command is already in flight');
    }
    cmd.reset();
    task.seq++;
    task.core = this;
    task.lu = null;
    task.def = null;
    task.nexus = null;
    task.abortResponse = ServiceResponse.COMMAND_COMPLETE;
    task.tmfWaiters = null;
    task.ioActive = false;
    task.ioKind = IoKind.NONE;
    task.lba = 0;
    task.blocks = 0;
    task.dataLength = 0;
    task.fua = false;
    task.aux = 0;
    task.goodStatus = ScsiStatus.GOOD;
    task.state = TaskState.RUNNING; // owned by the core until finish()
    if (this.closed) {
      this.finishResponse(task, ServiceResponse.FAILURE);
      return;
    }
    // Fabrics reuse one ITNexus object per session: a known object was validated when first seen.
    const nexus = cmd.nexus;
    let rec = typeof nexus === 'object' && nexus !== null ? this.nexuses.known(nexus) : null;
    if (rec === null) {
      if (!validNexus(nexus)) {
        this.finishResponse(task, ServiceResponse.FAILURE);
        return;
      }
      rec = this.nexusRecord(nexus);
    }
    task.nexus = rec;
    this.dispatch(task);
  }

  /**
   * The fixed order (DESIGN.md "scsi-emul"; pinned by tests/scsi-emul/gates.test.ts):
   *  1. CDB length from the opcode group (S1) — before anything reads the CDB;
   *  2. LUN → logical unit, or the null LU;
   *  3. task attribute;
   *  4. CDB syntax (opcode, service action, reserved bits, fields) — errors held back;
   *  5. transport check: OVERRUN is a service response, the command is not delivered, so it
   *     consumes no unit attention (QEMU virtio_scsi_handle_cmd_req_prepare does the same);
   *  6. gates: unit attention → ALUA → reservation;
   *  7. the held-back CDB error (SAM-5 §5.14: a pending UA is reported before it);
   *  8. write protection, failed-LU state;
   *  9. task set (SAM-5 §8.6), execute, clamp data-in to the ALLOCATION LENGTH and buffer.
   */
  private dispatch(task: Task): void {
    const cmd = task.cmd;
    const cdb = cmd.cdb;
    const cdbLength = cmd.cdbLength;
    // 1. guest-controlled opcode: validated here (V6.4, QEMU CVE-2015-5158).
    const groupLength = groupCdbLength(cdb[0]);
    if (!Number.isInteger(cdbLength) || cdbLength < 1 || cdbLength > MAX_CDB_LENGTH ||
        groupLength < 0 || groupLength > cdbLength) {
      this.checkCondition(task, Sense.INVALID_COMMAND_OPERATION_CODE);
      return;
    }
    // 2. V6.3: any LUN without a logical unit is the null LU.
    const lu = validLun(cmd.lun) ? this.luns[cmd.lun] ?? null : null;
    task.lu = lu;
    const found = lookupCommand(cdb);
    const def = typeof found === 'number' ? null : found;
    task.def = def;
    if (lu === null && cmd.lun === REPORT_LUNS_WLUN) {
      // SPC-4 §8.2: the REPORT LUNS well known LU serves INQUIRY, REQUEST SENSE, REPORT LUNS and
      // TEST UNIT READY; any other command is an invalid operation code for it.
      if (def === null || (def.flags & CmdFlag.WELL_KNOWN_LU_OK) === 0) {
        this.checkCondition(task, Sense.INVALID_COMMAND_OPERATION_CODE);
        return;
      }
    } else if (lu === null && (def === null || (def.flags & CmdFlag.NULL_LU_OK) === 0)) {
      this.checkCondition(task, Sense.LOGICAL_UNIT_NOT_SUPPORTED);
      return;
    }
    // 3. ACA needs NACA support (NORMACA=0 in standard INQUIRY); LIO answers INVALID FIELD IN
    //    CDB too. The attribute is not a CDB field, so there is no field pointer.
    if (!validTaskAttribute(cmd.taskAttribute)) {
      this.checkCondition(task, Sense.INVALID_FIELD_IN_CDB);
      return;
    }
    task.attr = cmd.taskAttribute;
    // 4. CDB syntax.
    let cdbError: SenseError | null = null;
    if (def === null) {
      if (found === UNKNOWN_OPCODE) {
        cdbError = new SenseError(Sense.INVALID_COMMAND_OPERATION_CODE);
      } else {
        const f = serviceActionField(cdb[0]);
        cdbError = SenseError.invalidCdbField(f.byte, f.bit);
      }
    } else if (def.cdbLength > cdbLength) {
      this.checkCondition(task, Sense.INVALID_COMMAND_OPERATION_CODE);
      return;
    } else {
      const reserved = findReservedBit(def, cdb);
      if (reserved !== null) {
        cdbError = SenseError.invalidCdbField(reserved.byte, reserved.bit);
      } else {
        try {
          def.parse(task, cdb, lu, this);
        } catch (e) {
          if (!(e instanceof SenseError)) {
            this.internalError(task, e);
            return;
          }
          cdbError = e;
        }
      }
    }
    // 5. transport check.
    if (cdbError === null && this.overrun(task, def!)) {
      this.finishResponse(task, ServiceResponse.OVERRUN);
      return;
    }
    // 6. gates.
    if (lu !== null) {
      if (def === null || (def.flags & CmdFlag.UA_EXEMPT) === 0) {
        const ua = this.unitAttentionGate(lu, task.nexus!);
        if (ua !== null) {
          this.checkCondition(task, ua);
          return;
        }
      }
      const alua = this.aluaGate(lu, def, task);
      if (alua !== null) {
        this.checkCondition(task, alua);
        return;
      }
      if (this.reservationGate(lu, def, task)) {
        this.finishStatus(task, ScsiStatus.RESERVATION_CONFLICT);
        return;
      }
    }
    // 7. held-back CDB error.
    if (cdbError !== null) {
      this.checkCondition(task, cdbError.condition, cdbError.field, cdbError.information);
      return;
    }
    const d = def!;
    // 8. write protection (V7.12) and the failed state after a write-back error (§4.6).
    if (lu !== null) {
      if ((d.flags & CmdFlag.WRITES_MEDIUM) !== 0 && (lu.readOnly || lu.softwareWriteProtect)) {
        // SWP=1 in the Control mode page: the same DATA PROTECT / WRITE PROTECTED (SPC-4 §7.5.8).
        this.checkCondition(task, Sense.WRITE_PROTECTED);
        return;
      }
      if ((d.flags & (CmdFlag.WRITES_MEDIUM | CmdFlag.FLUSHES)) !== 0 && lu.failed !== null) {
        this.checkCondition(task, Sense.WRITE_ERROR);
        return;
      }
    }
    // 9. task set.
    if (lu === null) {
      this.run(task); // the null LU has no task set: its three commands complete at once
      return;
    }
    let enabled: boolean;
    switch (task.attr) {
      case TaskAttribute.HEAD_OF_QUEUE: enabled = true; break;
      case TaskAttribute.ORDERED: enabled = lu.taskCount === 0; break;
      default: enabled = lu.blockingCount === 0; break;
    }
    task.state = enabled ? TaskState.RUNNING : TaskState.WAITING;
    task.inTaskSet = true;
    lu.appendTask(task);
    this.activeTasks++;
    if (enabled) this.run(task);
  }

  /** Unit attention gate (SAM-5 §5.14): reports and clears the highest-priority pending UA. */
  protected unitAttentionGate(lu: LogicalUnit, nexus: NexusRecord): SenseCondition | null {
    return lu.takeUnitAttention(nexus);
  }

  /**
   * ALUA gate (SPC-4 §5.15.2.4): a condition (NOT READY, asymmetric access state) when the
   * state of the command's target port forbids `def.alua` (alua.ts aluaDenial).
   */
  protected aluaGate(_lu: LogicalUnit, def: CommandDef | null, task: Task): SenseCondition | null {
    const state = this.portGroups.stateByPort[task.nexus!.targetPortId];
    if (state === AluaState.ACTIVE_OPTIMIZED) return null; // the common case: one load, one comparison
    return aluaDenial(state, def);
  }

  /**
   * Reservation gate (SPC-4 r37 §5.9.1 table 45, SBC-3 r36 table 13, SPC-2 r20 §5.5.1 table 10;
   * persistent-reservations.ts): true when `def.pr` conflicts with the LU's persistent or SPC-2
   * reservation for this nexus. One field test while the LU has no reservation. A command we do
   * not know meets no conflict: its CDB error is reported.
   */
  protected reservationGate(lu: LogicalUnit, def: CommandDef | null, task: Task): boolean {
    return lu.pr.gateActive && def !== null && reservationConflict(lu.pr, def, task);
  }

  /**
   * reliability.md V6.5 / QEMU: the CDB's transfer must fit the buffer in its direction, else
   * OVERRUN; commands with an ALLOCATION LENGTH are truncated to the buffer instead.
   */
  private overrun(task: Task, def: CommandDef): boolean {
    const cmd = task.cmd;
    if (task.dataLength === 0) return false;
    if (def.direction === DataDirection.IN) {
      if (cmd.dataOutLength > 0) return true;
      if ((def.flags & CmdFlag.ALLOCATION_LENGTH) !== 0) return false;
      return task.dataLength > cmd.dataInLength;
    }
    if (def.direction === DataDirection.OUT) {
      return cmd.dataInLength > 0 || task.dataLength > cmd.dataOutLength;
    }
    return false;
  }

  private run(task: Task): void {
    if (task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) {
      this.finishStatus(task, ScsiStatus.GOOD); // aborted while waiting
      return;
    }
    const cmd = task.cmd;
    let n: number;
    try {
      n = task.def!.execute(this, task);
    } catch (e) {
      if (e instanceof SenseError) this.checkCondition(task, e.condition, e.field, e.information, e.extra);
      else this.internalError(task, e);
      return;
    }
    if (n === EXECUTE_ASYNC) return; // the store completes it (possibly already has)
    if (n > 0) {
      // Clamp to ALLOCATION LENGTH (or the fixed transfer) and to the buffer (V7.5).
      const len = Math.min(n, task.dataLength, cmd.dataInLength);
      cmd.dataInTransferred = copyToSegments(this.responseBuf, 0, len, cmd.dataIn, cmd.dataInLength);
    }
    this.finishStatus(task, task.goodStatus);
  }

  /** @internal the task's range lock was granted (range-lock.ts): execute it (again). */
  resume(task: Task): void {
    this.run(task);
  }

  // ---------------------------------------------------------------- Core services
  // (@internal: for the opcode table's handlers, not for fabrics)

  /** @internal */
  response(n: number): Uint8Array {
    if (n <= SCRATCH_SIZE) {
      this.scratch.fill(0, 0, n);
      this.responseBuf = this.scratch;
    } else {
      this.responseBuf = new Uint8Array(n); // zeroed; only REPORT LUNS with many LUNs
    }
    return this.responseBuf;
  }

  /** @internal */
  lunList(): readonly number[] {
    return this.lunNumbers;
  }

  /** @internal */
  knownNexuses(): readonly NexusRecord[] {
    return this.nexuses.records();
  }

  /** @internal */
  reportedLunsSeen(nexus: NexusRecord): void {
    // SPC-4 §6.33 / QEMU scsi_clear_reported_luns_changed: REPORT LUNS clears 3F/0E.
    for (const n of this.lunNumbers) this.luns[n]!.clearUnitAttention(nexus, Sense.REPORTED_LUNS_DATA_HAS_CHANGED);
  }

  /** @internal */
  startRead(task: Task, offset: number, len: number): number {
    task.ioKind = IoKind.READ;
    task.ioActive = true;
    try {
      task.lu!.store.read(offset, task.cmd.dataIn, len, task.ioDone);
    } catch (e) {
      this.storeThrew(task, e);
    }
    return EXECUTE_ASYNC;
  }

  /** @internal */
  startWrite(task: Task, offset: number, len: number, fua: boolean): number {
    task.ioKind = IoKind.WRITE;
    task.ioActive = true;
    try {
      task.lu!.store.write(offset, task.cmd.dataOut, len, fua, task.ioDone);
    } catch (e) {
      this.storeThrew(task, e);
    }
    return EXECUTE_ASYNC;
  }

  /** @internal */
  startFlush(task: Task): number {
    task.ioKind = IoKind.FLUSH;
    task.ioActive = true;
    try {
      task.lu!.store.flush(task.ioDone);
    } catch (e) {
      this.storeThrew(task, e);
    }
    return EXECUTE_ASYNC;
  }

  /** @internal PREEMPT AND ABORT (pr-out.ts): aborts commands as ABORT TASK SET does. */
  abortTasks(victims: readonly Task[], done: () => void): void {
    this.abort(victims.slice(), ServiceResponse.ABORTED, () => done());
  }

  /** @internal */
  startOwnIo(task: Task): number {
    task.ioKind = IoKind.OWN;
    task.ioActive = true;
    return EXECUTE_ASYNC;
  }

  private storeThrew(task: Task, e: unknown): void {
    this.reportInternal(e);
    if (task.ioActive) this.ioComplete(task, e instanceof Error ? e : new Error(String(e)));
  }

  /** @internal store completion (through task.ioDone) */
  ioComplete(task: Task, err: Error | null): void {
    if (!task.ioActive) {
      this.reportInternal(new Error('store completed an I/O twice'));
      return;
    }
    task.ioActive = false;
    const kind = task.ioKind;
    task.ioKind = IoKind.NONE;
    if (task.abortResponse !== ServiceResponse.COMMAND_COMPLETE || err === null) {
      const cmd = task.cmd;
      if (kind === IoKind.READ) cmd.dataInTransferred = task.dataLength;
      else if (kind === IoKind.WRITE) cmd.dataOutTransferred = task.dataLength;
      this.finishStatus(task, task.goodStatus); // finish applies a pending abort
      return;
    }
    if (err instanceof SenseError) {
      // A multi-step handler's verdict (e.g. MISCOMPARE after a read), not a store error.
      this.checkCondition(task, err.condition, err.field, err.information, err.extra);
      return;
    }
    this.checkCondition(task, this.storeErrorCondition(task.lu!, kind, err));
  }

  /**
   * Store errors map explicitly (DESIGN.md error table): EIO on read → MEDIUM ERROR 11/00, on
   * write or flush → MEDIUM ERROR 0C/00 and the LU enters the failed state (fsyncgate);
   * ENOSPC/EDQUOT → DATA PROTECT 27/07 (thin provisioning); anything else → HARDWARE ERROR 44/00.
   */
  private storeErrorCondition(lu: LogicalUnit, kind: number, err: Error): SenseCondition {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EIO') {
      if (kind === IoKind.READ) return Sense.UNRECOVERED_READ_ERROR;
      lu.failed = err;
      return Sense.WRITE_ERROR;
    }
    if (code === 'ENOSPC' || code === 'EDQUOT') return Sense.SPACE_ALLOCATION_FAILED_WRITE_PROTECT;
    return Sense.INTERNAL_TARGET_FAILURE;
  }

  // ---------------------------------------------------------------- completion

  private checkCondition(task: Task, c: SenseCondition, field: FieldPointer | null = null,
    information: bigint | null = null, extra: SenseExtra | null = null): void {
    const cmd = task.cmd;
    cmd.status = ScsiStatus.CHECK_CONDITION;
    // Control mode page D_SENSE picks the format (SPC-4 §7.5.8); the null LU uses fixed.
    cmd.senseLength = encodeSense(cmd.sense, task.lu?.descriptorSense ?? false, c, field, information, extra);
    this.finish(task);
  }

  private finishStatus(task: Task, status: ScsiStatus): void {
    task.cmd.status = status;
    this.finish(task);
  }

  private finishResponse(task: Task, response: ServiceResponse): void {
    task.cmd.serviceResponse = response;
    this.finish(task);
  }

  private internalError(task: Task, e: unknown): void {
    this.reportInternal(e);
    this.checkCondition(task, Sense.INTERNAL_TARGET_FAILURE);
  }

  private reportInternal(e: unknown): void {
    if (this.onInternalError !== null) {
      try {
        this.onInternalError(e);
      } catch {
        // a logging hook must not break the command path
      }
    }
  }

  private finish(task: Task): void {
    const cmd = task.cmd;
    if (task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) {
      // Aborted or reset: status and data are not meaningful (SAM-5 §5.1).
      cmd.serviceResponse = task.abortResponse;
      cmd.status = ScsiStatus.GOOD;
      if (cmd.senseLength > 0) cmd.sense.fill(0, 0, cmd.senseLength);
      cmd.senseLength = 0;
      cmd.dataInTransferred = 0;
      cmd.dataOutTransferred = 0;
    }
    const lu = task.lu;
    if (task.inTaskSet) {
      lu!.removeTask(task);
      task.inTaskSet = false;
      this.activeTasks--;
    }
    // Range lock (range-lock.ts): released before the slot can be reused; may resume waiters.
    if (task.lockState !== 0) lu!.rangeLock.release(task);
    const waiters = task.tmfWaiters;
    task.tmfWaiters = null;
    task.state = TaskState.IDLE;
    // Bookkeeping is complete: the fabric may reuse the slot from inside onComplete.
    const cb = cmd.onComplete;
    if (cb !== null) cb(cmd);
    if (waiters !== null) {
      for (const w of waiters) if (--w.remaining === 0) w.done(w.response);
    }
    if (lu !== null && lu.waitingCount > 0) this.dispatchWaiting(lu);
    if (lu !== null && lu.idleWaiter !== null) lu.checkIdle(); // removed LU drained
    if (this.activeTasks === 0 && this.drainWaiters.length > 0) this.runDrain();
  }

  /**
   * Enables waiting tasks whose turn has come (SAM-5 §8.6): SIMPLE once no older ORDERED or
   * HEAD OF QUEUE task is incomplete, ORDERED once no older task is. Rescans after each
   * enable because a task can complete (and the fabric submit more) synchronously.
   */
  private dispatchWaiting(lu: LogicalUnit): void {
    if (this.dispatching.has(lu)) {
      this.redispatch.add(lu);
      return;
    }
    this.dispatching.add(lu);
    try {
      let again = true;
      while (again) {
        again = false;
        this.redispatch.delete(lu);
        let olderAny = 0;
        let olderBlocking = 0;
        for (let t = lu.head; t !== null; t = t.next) {
          if (t.state === TaskState.WAITING &&
              (t.attr === TaskAttribute.ORDERED ? olderAny === 0 : olderBlocking === 0)) {
            lu.waitingCount--;
            t.state = TaskState.RUNNING;
            this.run(t);
            again = true;
            break;
          }
          olderAny++;
          if (t.attr !== TaskAttribute.SIMPLE) olderBlocking++;
        }
        if (this.redispatch.has(lu)) again = true;
      }
    } finally {
      this.dispatching.delete(lu);
      this.redispatch.delete(lu);
    }
  }

  // ---------------------------------------------------------------- task management

  /** SAM-5 task management; see the interface documentation in index.ts. */
  taskManagement(fn: TaskManagementFunction, nexus: ITNexus, lun: number, tag: bigint,
    done: (response: TmfResponse) => void): void {
    if (this.closed || !validNexus(nexus)) {
      done(TmfResponse.SERVICE_DELIVERY_OR_TARGET_FAILURE);
      return;
    }
    const rec = this.nexusRecord(nexus);
    if (fn === TaskManagementFunction.I_T_NEXUS_RESET) {
      // SAM-5 §7.6: target-wide for this nexus; the LUN the request was addressed to is irrelevant.
      this.raiseForNexus(rec, Sense.I_T_NEXUS_LOSS_OCCURRED);
      this.nexusLost(rec);
      const victims: Task[] = [];
      for (const n of this.lunNumbers) this.collect(this.luns[n]!, rec, null, victims);
      this.abort(victims, ServiceResponse.RESET, done);
      return;
    }
    const lu = validLun(lun) ? this.luns[lun] ?? null : null;
    if (lu === null) {
      done(TmfResponse.INCORRECT_LOGICAL_UNIT_NUMBER);
      return;
    }
    switch (fn) {
      case TaskManagementFunction.ABORT_TASK: {
        const victims: Task[] = [];
        this.collect(lu, rec, tag, victims);
        this.abort(victims, ServiceResponse.ABORTED, done); // none found: FUNCTION COMPLETE too
        return;
      }
      case TaskManagementFunction.ABORT_TASK_SET: {
        const victims: Task[] = [];
        this.collect(lu, rec, null, victims);
        this.abort(victims, ServiceResponse.ABORTED, done);
        return;
      }
      case TaskManagementFunction.CLEAR_TASK_SET: {
        const victims: Task[] = [];
        this.collect(lu, null, null, victims);
        // TAS=0 (Control mode page): other nexuses whose commands were cleared get
        // COMMANDS CLEARED BY ANOTHER INITIATOR (SAM-5 §7.4, SPC-4 §7.5.8 TAS).
        for (const t of victims) {
          if (t.nexus !== rec) lu.establishUnitAttention(t.nexus!, Sense.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
        this.abort(victims, ServiceResponse.ABORTED, done);
        return;
      }
      case TaskManagementFunction.LOGICAL_UNIT_RESET: {
        // SAM-5 §7.7 / reliability.md §4.4: every nexus gets 29/03; the task set is cleared.
        for (const r of this.nexuses.records()) lu.establishUnitAttention(r, Sense.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        this.logicalUnitReset(lu);
        const victims: Task[] = [];
        this.collect(lu, null, null, victims);
        // SAM-5 §6.3.3 / SPC-4 §6.11: the mode parameters return to their saved (or default)
        // values. If that turns write caching off or write protection on, the cache is flushed
        // before the reset is reported complete (spc-mode.ts executeModeSelect explains why).
        if (resetModeParameters(lu)) {
          this.abort(victims, ServiceResponse.RESET, (r) => {
            lu.store.flush((err) => {
              if (err !== null && (err as NodeJS.ErrnoException).code === 'EIO') lu.failed = err;
              done(r);
            });
          });
          return;
        }
        this.abort(victims, ServiceResponse.RESET, done);
        return;
      }
      case TaskManagementFunction.QUERY_TASK: {
        const found: Task[] = [];
        this.collect(lu, rec, tag, found);
        done(found.length > 0 ? TmfResponse.FUNCTION_SUCCEEDED : TmfResponse.FUNCTION_COMPLETE);
        return;
      }
      case TaskManagementFunction.QUERY_TASK_SET: {
        const found: Task[] = [];
        this.collect(lu, rec, null, found);
        done(found.length > 0 ? TmfResponse.FUNCTION_SUCCEEDED : TmfResponse.FUNCTION_COMPLETE);
        return;
      }
      case TaskManagementFunction.QUERY_ASYNCHRONOUS_EVENT:
        // SAM-5 §7.10: succeeded when a unit attention is pending for the nexus.
        done(lu.hasUnitAttention(rec) ? TmfResponse.FUNCTION_SUCCEEDED : TmfResponse.FUNCTION_COMPLETE);
        return;
      case TaskManagementFunction.CLEAR_ACA:
      default:
        // No ACA support (NORMACA=0); unknown functions are rejected likewise.
        done(TmfResponse.FUNCTION_REJECTED);
        return;
    }
  }

  /** Tasks of `lu` in the task set, of nexus `rec` (null = any) with tag `tag` (null = any). */
  private collect(lu: LogicalUnit, rec: NexusRecord | null, tag: bigint | null, out: Task[]): void {
    const lo = tag === null ? 0 : Number(BigInt.asUintN(32, tag));
    const hi = tag === null ? 0 : Number(BigInt.asUintN(32, tag >> 32n));
    for (let t = lu.head; t !== null; t = t.next) {
      if ((rec === null || t.nexus === rec) && (tag === null || (t.cmd.tagLo === lo && t.cmd.tagHi === hi))) out.push(t);
    }
  }

  /**
   * Completes `victims` with `response`: waiting ones now, running ones when their store I/O
   * returns (it cannot be recalled). `done` runs after every victim's onComplete (virtio 1.2
   * §5.6.6.2: effects before the TMF completes).
   */
  private abort(victims: Task[], response: ServiceResponse, done: (r: TmfResponse) => void): void {
    const seqs = victims.map((t) => t.seq);
    for (const t of victims) t.abortResponse = response;
    const wait: TmfWait = { remaining: 1, response: TmfResponse.FUNCTION_COMPLETE, done };
    for (let i = 0; i < victims.length; i++) {
      const t = victims[i];
      if (t.seq !== seqs[i]) continue; // completed and the slot reused meanwhile
      if (t.state === TaskState.WAITING) {
        this.finishStatus(t, ScsiStatus.GOOD);
      } else if (t.state === TaskState.RUNNING) {
        (t.tmfWaiters ??= []).push(wait);
        wait.remaining++;
      }
    }
    if (--wait.remaining === 0) done(wait.response);
  }

  // ---------------------------------------------------------------- shutdown

  /** Flush every LU and wait for in-flight commands (shutdown). */
  drain(done: (err: Error | null) => void): void {
    this.drainWaiters.push(done);
    if (this.activeTasks === 0) this.runDrain();
  }

  private runDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    this.flushAll((err) => {
      for (const w of waiters) w(err);
    });
  }

  private flushAll(cb: (err: Error | null) => void): void {
    const lus = this.lunNumbers.map((n) => this.luns[n]!);
    let firstErr: Error | null = null;
    let i = 0;
    const next = (): void => {
      if (i >= lus.length) {
        cb(firstErr);
        return;
      }
      const lu = lus[i++];
      if (lu.readOnly) {
        next();
        return;
      }
      lu.store.flush((err) => {
        if (err !== null) {
          if (firstErr === null) firstErr = err;
          if ((err as NodeJS.ErrnoException).code === 'EIO') lu.failed = err;
        }
        next();
      });
    };
    next();
  }

  /** Refuses new commands, drains, flushes and closes every store. */
  close(done: (err: Error | null) => void): void {
    if (this.closeDone) {
      done(null);
      return;
    }
    if (this.closeWaiters !== null) {
      this.closeWaiters.push(done);
      return;
    }
    this.closeWaiters = [done];
    this.closed = true;
    this.drain((drainErr) => {
      const lus = this.lunNumbers.map((n) => this.luns[n]!);
      let firstErr: Error | null = drainErr;
      let i = 0;
      const next = (): void => {
        if (i >= lus.length) {
          this.closeDone = true;
          const waiters = this.closeWaiters!;
          this.closeWaiters = null;
          for (const w of waiters) w(firstErr);
          return;
        }
        lus[i++].store.close((err) => {
          if (err !== null && firstErr === null) firstErr = err;
          next();
        });
      };
      next();
    });
  }
}
