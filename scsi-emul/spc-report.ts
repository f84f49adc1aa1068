// REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 r37
// §6.35, §6.36; MAINTENANCE IN service actions 0Ch, 0Dh). The opcode list is generated from
// THE opcode table, so a row anyone adds there is reported here, with its CDB length and its
// CDB USAGE DATA (which is also the mask the core enforces: what we report is what we check).
import type { Task } from './command';
import type { CommandDef, Core } from './command-def';
import { SenseError } from './sense';
import { be16, be32, putBe16, putBe32 } from './bytes';
import * as opcodes from './opcodes';

// ---- REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) ----

const RCTD = 0x80;
/** SPC-4 table 295 REPORTING OPTIONS. */
const ALL_COMMANDS = 0b000;
const ONE_OPCODE = 0b001;
const ONE_OPCODE_SA = 0b010;
const ONE_OPCODE_MAYBE_SA = 0b011;

/** SPC-4 §6.35.3 table 300 SUPPORT values. */
const SUPPORT_NOT_SUPPORTED = 0b001;
const SUPPORT_STANDARD = 0b011;

/** Command timeouts descriptor length: DESCRIPTOR LENGTH (2) + 0Ah (SPC-4 §6.35.4). */
const TIMEOUTS_LENGTH = 12;
/**
 * RECOMMENDED COMMAND TIMEOUT, seconds: the Linux sd default. Every emulated command finishes
 * far sooner unless the host's storage stalls, which we cannot bound; NOMINAL COMMAND
 * PROCESSING TIMEOUT is 0 ("not indicated") for the same reason.
 */
const RECOMMENDED_TIMEOUT_SECONDS = 30;

// Request packed in task.aux: options (bits 2-0), RCTD (bit 3), opcode (bits 15-8),
// service action (bits 31-16).
export function parseReportSupportedOperationCodes(task: Task, cdb: Uint8Array): void {
  const options = cdb[2] & 0x07;
  if (options > ONE_OPCODE_MAYBE_SA) throw SenseError.invalidCdbField(2, 2);
  const op = cdb[3];
  const sa = be16(cdb, 4);
  if (options === ONE_OPCODE || options === ONE_OPCODE_SA) {
    // 001b on an opcode with service actions, 010b on one without: INVALID FIELD IN CDB
    // (SPC-4 table 295), pointing at REQUESTED OPERATION CODE. An opcode we do not implement
    // at all is answered with SUPPORT=001b instead.
    const hasSa = hasServiceActions(op);
    const implemented = rowsOf(op).length > 0;
    if (implemented && (options === ONE_OPCODE) === hasSa) throw SenseError.invalidCdbField(3);
  }
  task.aux = options | ((cdb[2] & RCTD) !== 0 ? 0x08 : 0) | (op << 8) | (sa << 16);
  task.dataLength = be32(cdb, 6);
}

function rowsOf(op: number): CommandDef[] {
  return opcodes.COMMANDS.filter((d) => d.opcode === op);
}

function hasServiceActions(op: number): boolean {
  return opcodes.COMMANDS.some((d) => d.opcode === op && d.serviceAction >= 0);
}

function writeTimeouts(b: Uint8Array, off: number): void {
  putBe16(b, off, TIMEOUTS_LENGTH - 2);
  // byte 2 reserved, byte 3 COMMAND SPECIFIC 0, NOMINAL 0
  putBe32(b, off + 8, RECOMMENDED_TIMEOUT_SECONDS);
}

/** The opcode table in (opcode, service action) order, as the all_commands list reports it. */
function sortedCommands(): readonly CommandDef[] {
  return [...opcodes.COMMANDS].sort((a, c) => a.opcode - c.opcode || a.serviceAction - c.serviceAction);
}

export function executeReportSupportedOperationCodes(core: Core, task: Task): number {
  const aux = task.aux;
  const options = aux & 0x07;
  const rctd = (aux & 0x08) !== 0;
  if (options === ALL_COMMANDS) {
    // all_commands parameter data (SPC-4 §6.35.2): COMMAND DATA LENGTH, then one 8-byte
    // command descriptor per (opcode, service action), each followed by its timeouts
    // descriptor when RCTD=1 (CTDP=1).
    const cmds = sortedCommands();
    const each = 8 + (rctd ? TIMEOUTS_LENGTH : 0);
    const n = 4 + each * cmds.length;
    const b = core.response(n);
    putBe32(b, 0, n - 4);
    let p = 4;
    for (const d of cmds) {
      b[p] = d.opcode;
      if (d.serviceAction >= 0) putBe16(b, p + 2, d.serviceAction);
      b[p + 5] = (rctd ? 0x02 : 0) | (d.serviceAction >= 0 ? 0x01 : 0); // CTDP, SERVACTV
      putBe16(b, p + 6, d.cdbLength);
      if (rctd) writeTimeouts(b, p + 8);
      p += each;
    }
    return n;
  }
  // one_command parameter data (SPC-4 §6.35.3).
  const op = (aux >>> 8) & 0xff;
  const sa = aux >>> 16;
  const rows = rowsOf(op);
  let def: CommandDef | undefined;
  if (rows.length > 0 && rows[0].serviceAction >= 0) {
    // 010b, or 011b on an opcode with service actions: the requested service action.
    def = rows.find((d) => d.serviceAction === sa);
  } else {
    // 001b, or 011b on an opcode without service actions: REQUESTED SERVICE ACTION ignored.
    def = rows[0];
  }
  if (def === undefined) {
    const b = core.response(4);
    b[1] = SUPPORT_NOT_SUPPORTED; // everything after byte 1 is undefined; we send none
    return 4;
  }
  const n = 4 + def.cdbLength + (rctd ? TIMEOUTS_LENGTH : 0);
  const b = core.response(n);
  b[1] = (rctd ? 0x80 : 0) | SUPPORT_STANDARD; // CTDP, SUPPORT
  putBe16(b, 2, def.cdbLength);
  b.set(def.usage, 4);
  if (rctd) writeTimeouts(b, 4 + def.cdbLength);
  return n;
}

// ---- REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.36) ----

const REPCD = 0x80;

export function parseReportSupportedTmfs(task: Task, cdb: Uint8Array): void {
  task.aux = (cdb[2] & REPCD) !== 0 ? 1 : 0;
  task.dataLength = be32(cdb, 6);
}

/**
 * The functions ScsiTarget.taskManagement implements (SAM-5 §7): byte 0 ATS (ABORT TASK),
 * ATSS (ABORT TASK SET), CTSS (CLEAR TASK SET), LURS (LOGICAL UNIT RESET), QTS (QUERY TASK);
 * CACAS=0 (CLEAR ACA is rejected: NORMACA=0), TRS=0 and WAKES=0 (obsolete functions).
 * Byte 1: QAES (QUERY ASYNCHRONOUS EVENT), QTSS (QUERY TASK SET), ITNRS (I_T NEXUS RESET).
 * REPCD=1 adds the extended data (ADDITIONAL DATA LENGTH 0Ch) with TMFTMOV=0: no timeouts.
 */
export function executeReportSupportedTmfs(core: Core, task: Task): number {
  const n = task.aux !== 0 ? 16 : 4;
  const b = core.response(n);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x04;
  b[1] = 0x04 | 0x02 | 0x01;
  if (n === 16) b[3] = 0x0c;
  return n;
}
