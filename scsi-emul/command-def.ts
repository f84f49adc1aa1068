// The shape of an opcode table row and the services a row's handlers get from the core.
import type { DataDirection } from './constants';
import type { Task } from './command';
import type { LogicalUnit, ResolvedIdentity } from './logical-unit';
import type { NexusRecord } from './nexus';
import type { TargetPortGroups } from './alua';

/** How the core treats a command before its handler runs (bit flags). */
export const enum CmdFlag {
  NONE = 0,
  /** INQUIRY, REPORT LUNS, REQUEST SENSE: a pending unit attention is neither reported nor cleared (SAM-5 §5.14) */
  UA_EXEMPT = 1 << 0,
  /** served for a LUN with no logical unit (null LU; SPC-4 §6.6.2 peripheral qualifier 011b) */
  NULL_LU_OK = 1 << 1,
  /** modifies the medium: DATA PROTECT / WRITE PROTECTED on a write-protected LU (reliability.md V7.12) */
  WRITES_MEDIUM = 1 << 2,
  /** data-in limited by an ALLOCATION LENGTH: truncated to the buffer, never OVERRUN (SPC-4 §4.3.5.6) */
  ALLOCATION_LENGTH = 1 << 3,
  /** makes cached data durable: refused while the LU is in the failed (write-back error) state */
  FLUSHES = 1 << 4,
  /**
   * served by the REPORT LUNS well known logical unit (SPC-4 §8.2: INQUIRY, REQUEST SENSE,
   * REPORT LUNS, TEST UNIT READY); anything else sent to it is INVALID COMMAND OPERATION CODE
   */
  WELL_KNOWN_LU_OK = 1 << 5,
}

/**
 * Row type in SPC-4 r37 §5.9.1 table 45 / SBC-3 r36 §4.17 table 13 ("commands allowed in the
 * presence of various reservations"), and in SPC-2 r20 §5.5.1 table 10 for an SPC-2 RESERVE,
 * for the reservation gate (persistent-reservations.ts). Describes the access of an I_T nexus
 * that does not hold the reservation; a registered I_T nexus under a registrants only or all
 * registrants type is allowed everything.
 */
export const enum PrAccess {
  /**
   * allowed under every reservation, an SPC-2 one included (INQUIRY, REQUEST SENSE, REPORT LUNS,
   * LOG SENSE, READ CAPACITY)
   */
  ALLOWED,
  /**
   * allowed under Write Exclusive types, conflict under Exclusive Access types (READ, VERIFY,
   * MODE SENSE, REPORT SUPPORTED OPERATION CODES) and under an SPC-2 reservation
   */
  ALLOWED_WRITE_EXCLUSIVE,
  /** conflict under every type (WRITE, SYNCHRONIZE CACHE, MODE SELECT) */
  CONFLICT,
  /** START STOP UNIT: START=1 with POWER CONDITION 0h allowed, anything else conflicts (SBC-3 table 13) */
  START_STOP,
  /** PREVENT ALLOW MEDIUM REMOVAL: PREVENT=00b allowed, any other value conflicts (SPC-4 table 45) */
  PREVENT_ALLOW,
  /**
   * TEST UNIT READY: allowed under every persistent reservation type (table 45 note a, REPORT
   * CAPABILITIES ALLOW COMMANDS), conflicts with another I_T nexus's SPC-2 reservation
   */
  TEST_UNIT_READY,
  /**
   * PERSISTENT RESERVE IN: allowed under every persistent reservation; conflicts with any SPC-2
   * reservation, the holder's own included (SPC-2 r20 §5.5.1)
   */
  PERSISTENT_RESERVE_IN,
  /**
   * PERSISTENT RESERVE OUT: under a persistent reservation the service action decides (table 46,
   * by its reservation key checks); conflicts with any SPC-2 reservation (SPC-2 r20 §5.5.1)
   */
  PERSISTENT_RESERVE_OUT,
  /** RESERVE(6/10), RELEASE(6/10): the handler decides (SPC-2, and SPC-4 §5.9.3 when registrations exist) */
  RESERVE_RELEASE,
}

/**
 * Access needed from the target port's asymmetric access state (SPC-4 §5.15.2.4), for the
 * ALUA gate (alua.ts). The classes nest: each state allows every class up to a ceiling, so the
 * order of the values matters.
 */
export const enum AluaAccess {
  /**
   * allowed in every state but offline, transitioning included (INQUIRY, REPORT LUNS, REQUEST
   * SENSE, REPORT TARGET PORT GROUPS)
   */
  ALWAYS = 0,
  /**
   * allowed in the unavailable state too (§5.15.2.4.5: SET TARGET PORT GROUPS; REPORT SUPPORTED
   * OPERATION CODES and TASK MANAGEMENT FUNCTIONS describe the device server, not the medium)
   */
  UNAVAILABLE = 1,
  /**
   * allowed in the standby state too (§5.15.2.4.4: MODE SENSE/SELECT, LOG SENSE/SELECT,
   * PERSISTENT RESERVE IN/OUT, RECEIVE DIAGNOSTIC RESULTS, SEND DIAGNOSTIC)
   */
  STANDBY = 2,
  /** needs an active state (everything touching the medium, TEST UNIT READY, READ CAPACITY) */
  ACTIVE = 3,
}

/** What a store operation started by a handler was, so its completion can be accounted. */
export const enum IoKind {
  NONE = 0,
  READ = 1,
  WRITE = 2,
  FLUSH = 3,
  /** several store calls the handler drives itself (Core.startOwnIo), e.g. EXTENDED COPY */
  OWN = 4,
}

/** Returned by execute() when store I/O is in flight; the core completes the command later. */
export const EXECUTE_ASYNC = -1;

/** Services the core gives to handlers. */
export interface Core {
  /** A zeroed buffer of at least n bytes to build data-in in; read by the core right after execute returns. */
  response(n: number): Uint8Array;
  /** Largest data transfer of one command (VPD B0 MAXIMUM TRANSFER LENGTH × block size). */
  readonly maxTransferBytes: number;
  /** Configured LUNs, ascending. */
  lunList(): readonly number[];
  /** Identity for INQUIRY to a LUN with no logical unit. */
  readonly defaultIdentity: ResolvedIdentity;
  /** REPORT LUNS was processed for this nexus: clear REPORTED LUNS DATA HAS CHANGED on every LU. */
  reportedLunsSeen(nexus: NexusRecord): void;
  /** Every I_T nexus the target has seen, in first-contact order (unit attentions to others, VPD 88h). */
  knownNexuses(): readonly NexusRecord[];
  /** Starts store I/O for the task; completion goes through task.ioDone. Returns EXECUTE_ASYNC. */
  startRead(task: Task, offset: number, len: number): number;
  startWrite(task: Task, offset: number, len: number, fua: boolean): number;
  startFlush(task: Task): number;
  /**
   * Starts an operation the handler drives itself with its own store calls (EXTENDED COPY):
   * until it ends, TMFs wait for it as for store I/O (it may poll task.abortResponse to stop
   * early). The handler ends it exactly once: task.ioDone(null) for GOOD, task.ioDone(senseError)
   * for CHECK CONDITION with that sense. Returns EXECUTE_ASYNC.
   */
  startOwnIo(task: Task): number;
  /** The logical unit at a LUN of this target (EXTENDED COPY finds its copy sources and destinations). */
  getLogicalUnit(lun: number): LogicalUnit | undefined;
  /**
   * Aborts commands of a task set on behalf of another command (PERSISTENT RESERVE OUT with
   * PREEMPT AND ABORT, SPC-4 §5.9.11.5), as ABORT TASK SET does: waiting ones complete ABORTED at
   * once, running ones when their store I/O returns. `done` runs after every victim's onComplete.
   */
  abortTasks(victims: readonly Task[], done: () => void): void;
  /** The target's ALUA target port groups: REPORT / SET TARGET PORT GROUPS read and change them. */
  readonly portGroups: TargetPortGroups;
}

/**
 * One row of the opcode table. parse() validates the CDB fields and fixes the command's
 * geometry; execute() does the work and returns the number of data-in bytes it built in
 * core.response() (0 for none) or EXECUTE_ASYNC. Both throw SenseError for CHECK CONDITION.
 */
export interface CommandDef {
  readonly name: string;
  readonly opcode: number;
  /** service action, or -1 when the operation code has none */
  readonly serviceAction: number;
  /** byte and mask of the service action field (SPC-4 §4.3.4), when serviceAction >= 0 */
  readonly saByte: number;
  readonly saMask: number;
  readonly cdbLength: number;
  /**
   * CDB USAGE DATA (SPC-4 §6.35.3, REPORT SUPPORTED OPERATION CODES): byte 0 is the opcode, a
   * service action byte holds the service action, every other bit is 1 if the device server
   * evaluates that CDB bit. A bit that is 0 here must be 0 in a CDB (reserved, or a field we do
   * not support): the core rejects it with INVALID FIELD IN CDB pointing at it (V7.2).
   */
  readonly usage: Uint8Array;
  readonly direction: DataDirection;
  readonly flags: number;
  readonly pr: PrAccess;
  readonly alua: AluaAccess;
  parse(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, core: Core): void;
  execute(core: Core, task: Task): number;
}
