// LOG SENSE (SPC-4 r37 §6.8) and the log pages we can report truthfully:
//   00h/00h Supported Log Pages, 00h/FFh Supported Log Pages and Subpages (SPC-4 §7.3.18-19);
//   0Ch Logical Block Provisioning (SBC-3 r36 §6.3.5): the store's allocated bytes, when the
//       store can tell (BlockStore.allocatedBytes);
//   2Fh Informational Exceptions (SPC-4 §7.3.8): no failure prediction exists, so no
//       informational exception condition ever occurs (ASC 00h) — what smartctl -H reads.
// There are no counters to reset or thresholds to set, so LOG SELECT is not implemented (it is
// optional, SPC-4 §6.7) and answers INVALID COMMAND OPERATION CODE like any other opcode not
// in the table. Pages are never saved: SP=1 is rejected, DS=1 and TSD=1 are reported.
import type { Task } from './command';
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { SenseError } from './sense';
import { be16, putBe16, putBe32 } from './bytes';

/** Log parameter control byte: TSD=1 (not saved), FORMAT AND LINKING 11b (binary list). SPC-4 §7.3.2.2.2. */
const PARAM_CONTROL_BINARY_LIST = 0x23;
/** Page header byte 0 flags: DS (saving disabled), SPF (subpage format). */
const DS = 0x80;
const SPF = 0x40;

interface LogPageDef {
  readonly page: number;
  readonly subpage: number;
  /** highest parameter code (for the PARAMETER POINTER check); -1 when the page has none */
  readonly lastParameter: number;
  available(lu: LogicalUnit): boolean;
  /** Writes the parameters (from `pointer` on) at b[off..]; returns the offset after them. */
  build(lu: LogicalUnit, b: Uint8Array, off: number, pointer: number): number;
  /** upper bound of the whole page, header included */
  readonly maxLength: number;
}

const SUPPORTED_PAGES: LogPageDef = {
  page: 0x00, subpage: 0x00, lastParameter: -1, maxLength: 4 + 16,
  available: () => true,
  build(lu, b, off) {
    // Each page code once, ascending (SPC-4 §7.3.18): subpage 00h pages only.
    for (const p of LOG_PAGES) if (p.subpage === 0x00 && p.available(lu)) b[off++] = p.page;
    return off;
  },
};

const SUPPORTED_PAGES_AND_SUBPAGES: LogPageDef = {
  page: 0x00, subpage: 0xff, lastParameter: -1, maxLength: 4 + 32,
  available: () => true,
  build(lu, b, off) {
    for (const p of LOG_PAGES) {
      if (!p.available(lu)) continue;
      b[off] = p.page;
      b[off + 1] = p.subpage;
      off += 2;
    }
    return off;
  },
};

/**
 * 0Ch Logical Block Provisioning (SBC-3 r36 §6.3.5): parameter 0002h USED LBA MAPPING RESOURCE
 * COUNT — the threshold sets (2^THRESHOLD EXPONENT blocks, VPD B2h) holding allocated storage,
 * rounded up, saturated at FFFFFFFFh — with SCOPE 01b (dedicated to this LU). The AVAILABLE
 * count (0001h) is not reported: the space left depends on the host filesystem, which others
 * share, and a guess would be worse than nothing.
 */
const LOGICAL_BLOCK_PROVISIONING: LogPageDef = {
  page: 0x0c, subpage: 0x00, lastParameter: 0x0002, maxLength: 4 + 12,
  available: (lu) => lu.store.allocatedBytes !== undefined,
  build(lu, b, off, pointer) {
    if (pointer > 0x0002) return off;
    const setBytes = lu.blockSize * 2 ** lu.provisioning.thresholdExponent;
    const allocated = lu.store.allocatedBytes ?? 0;
    const sets = Math.ceil(allocated / setBytes);
    putBe16(b, off, 0x0002);
    b[off + 2] = PARAM_CONTROL_BINARY_LIST;
    b[off + 3] = 0x08;
    putBe32(b, off + 4, sets > 0xffffffff ? 0xffffffff : sets);
    b[off + 8] = 0x01; // SCOPE 01b
    return off + 12;
  },
};

/**
 * 2Fh Informational Exceptions (SPC-4 §7.3.8): parameter 0000h with INFORMATIONAL EXCEPTION
 * ADDITIONAL SENSE CODE and QUALIFIER 00h (no condition) and MOST RECENT TEMPERATURE READING
 * FFh (no temperature sensor: no valid reading).
 */
const INFORMATIONAL_EXCEPTIONS: LogPageDef = {
  page: 0x2f, subpage: 0x00, lastParameter: 0x0000, maxLength: 4 + 7,
  available: () => true,
  build(_lu, b, off) {
    putBe16(b, off, 0x0000);
    b[off + 2] = PARAM_CONTROL_BINARY_LIST;
    b[off + 3] = 0x03;
    b[off + 6] = 0xff;
    return off + 7;
  },
};

/** Ascending (page, subpage) order, as the supported pages pages list them. */
const LOG_PAGES: readonly LogPageDef[] = Object.freeze([
  SUPPORTED_PAGES,
  SUPPORTED_PAGES_AND_SUBPAGES,
  LOGICAL_BLOCK_PROVISIONING,
  INFORMATIONAL_EXCEPTIONS,
]);

function findLogPage(lu: LogicalUnit, page: number, subpage: number): LogPageDef | null {
  for (const p of LOG_PAGES) if (p.page === page && p.subpage === subpage && p.available(lu)) return p;
  return null;
}

// task.aux: index of the page in LOG_PAGES (bits 7-0), PARAMETER POINTER (bits 23-8).
export function parseLogSense(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  // SP=1 asks to save the parameters; no log page is saveable (SPC-4 §6.8).
  if ((cdb[1] & 0x01) !== 0) throw SenseError.invalidCdbField(1, 0);
  const page = cdb[2] & 0x3f;
  const subpage = cdb[3];
  // PC (bits 7-6): every parameter here is a list of present state (TMC=00b, ETC=0), with no
  // thresholds or accumulation, so each page control value returns that same list.
  const def = findLogPage(lu!, page, subpage);
  if (def === null) {
    let pageKnown = false;
    for (const p of LOG_PAGES) if (p.page === page && p.available(lu!)) pageKnown = true;
    throw pageKnown ? SenseError.invalidCdbField(3) : SenseError.invalidCdbField(2, 5);
  }
  const pointer = be16(cdb, 5);
  // SPC-4 §6.8: a PARAMETER POINTER beyond the page's last parameter code is invalid.
  if (pointer > Math.max(0, def.lastParameter)) throw SenseError.invalidCdbField(5);
  task.aux = LOG_PAGES.indexOf(def) | (pointer << 8);
  task.dataLength = be16(cdb, 7);
}

export function executeLogSense(core: Core, task: Task): number {
  const lu = task.lu!;
  const def = LOG_PAGES[task.aux & 0xff];
  const b = core.response(def.maxLength);
  const sub = def.subpage !== 0x00;
  b[0] = (def.lastParameter >= 0 ? DS : 0) | (sub ? SPF : 0) | def.page;
  b[1] = def.subpage;
  const end = def.build(lu, b, 4, task.aux >>> 8);
  putBe16(b, 2, end - 4);
  return end;
}
