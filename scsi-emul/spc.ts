// Handlers for the SPC-4 commands: INQUIRY, REQUEST SENSE, REPORT LUNS, TEST UNIT READY,
// PREVENT ALLOW MEDIUM REMOVAL. (MODE SENSE/SELECT: spc-mode.ts; LOG SENSE: log-pages.ts;
// REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS: spc-report.ts.) Every one
// builds its data in core.response() (zeroed) and returns the full length; the core clamps to
// ALLOCATION LENGTH and the buffer.
import type { Task } from './command';
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { REPORT_LUNS_WLUN } from './constants';
import { Sense, SenseError, encodeSense } from './sense';
import { be16, be32, putBe16, putBe32 } from './bytes';
import { TPGS_IMPLICIT_AND_EXPLICIT } from './alua';
import {
  PDT_DISK, PDT_NO_LUN, PDT_WELL_KNOWN_LU, findVpdPage, targetPortDesignators, targetPortDesignatorsLength,
} from './vpd';

// ---- INQUIRY (SPC-4 §6.6) ----

const STD_INQUIRY_LENGTH = 96;
const EVPD = 0x100;

/** VPD pages of the REPORT LUNS well known LU: Supported VPD Pages and Device Identification. */
const WLUN_VPD_PAGES = [0x00, 0x83];

/** A command to a LUN with no logical unit: the REPORT LUNS well known LU, or the null LU. */
function isWellKnownLu(task: Task): boolean {
  return task.lu === null && task.cmd.lun === REPORT_LUNS_WLUN;
}

export function parseInquiry(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const evpd = (cdb[1] & 0x01) !== 0;
  const page = cdb[2];
  if (!evpd) {
    // SPC-4 §6.6.1: PAGE CODE must be zero when EVPD is zero.
    if (page !== 0) throw SenseError.invalidCdbField(2);
  } else if (lu !== null) {
    if (findVpdPage(page) === null) throw SenseError.invalidCdbField(2);
  } else if (isWellKnownLu(task) ? !WLUN_VPD_PAGES.includes(page) : page !== 0x00) {
    throw SenseError.invalidCdbField(2);
  }
  task.aux = evpd ? EVPD | page : 0;
  task.dataLength = be16(cdb, 3);
}

function writeAscii(b: Uint8Array, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[off + i] = s.charCodeAt(i);
}

export function executeInquiry(core: Core, task: Task): number {
  const lu = task.lu;
  const wlun = isWellKnownLu(task);
  const pdt = lu !== null ? PDT_DISK : wlun ? PDT_WELL_KNOWN_LU : PDT_NO_LUN;
  if ((task.aux & EVPD) === 0) {
    // Standard INQUIRY data (SPC-4 §6.6.2, table 139).
    const b = core.response(STD_INQUIRY_LENGTH);
    const id = lu === null ? core.defaultIdentity : lu.identity;
    b[0] = pdt;
    b[1] = 0x00; // RMB=0: the medium is not removable
    b[2] = 0x06; // VERSION: SPC-4
    b[3] = 0x12; // HISUP=1 (hierarchical LUNs; single level is one), RESPONSE DATA FORMAT=2
    b[4] = STD_INQUIRY_LENGTH - 5; // ADDITIONAL LENGTH
    // TPGS=11b, implicit and explicit ALUA (alua.ts), for a logical unit; the null LU and the
    // REPORT LUNS well known LU have no target port groups. SCCS, ACC, 3PC, PROTECT 0.
    b[5] = lu !== null ? TPGS_IMPLICIT_AND_EXPLICIT : 0x00;
    b[6] = 0x00;
    b[7] = 0x02; // CMDQUE=1: tagged command queuing
    writeAscii(b, 8, id.vendor);
    writeAscii(b, 16, id.product);
    writeAscii(b, 32, id.revision);
    // VERSION DESCRIPTORs (SPC-4 table 140): SAM-5, SPC-4, SBC-3 (no version claimed).
    putBe16(b, 58, 0x00a0);
    putBe16(b, 60, 0x0460);
    if (lu !== null) putBe16(b, 62, 0x04c0);
    return STD_INQUIRY_LENGTH;
  }
  const page = task.aux & 0xff;
  if (lu === null) {
    if (wlun && page === 0x83) {
      // A well known LU has no logical unit name (SPC-4 §8.1): only the target port designators.
      const nexus = task.nexus!;
      const b = core.response(4 + targetPortDesignatorsLength(nexus));
      b[0] = pdt;
      b[1] = 0x83;
      const end = targetPortDesignators(b, 4, nexus);
      putBe16(b, 2, end - 4);
      return end;
    }
    // Supported VPD Pages (SPC-4 §7.8.14): the null LU lists only itself.
    const pages = wlun ? WLUN_VPD_PAGES : [0x00];
    const b = core.response(4 + pages.length);
    b[0] = pdt;
    putBe16(b, 2, pages.length);
    for (let i = 0; i < pages.length; i++) b[4 + i] = pages[i];
    return 4 + pages.length;
  }
  const def = findVpdPage(page)!;
  const nexus = task.nexus!;
  const b = core.response(def.maxLength(lu, nexus, core));
  b[0] = pdt;
  b[1] = page;
  const pageLength = def.build(lu, nexus, core, b);
  putBe16(b, 2, pageLength);
  return 4 + pageLength;
}

// ---- REQUEST SENSE (SPC-4 §6.29) ----

const DESC = 1;

export function parseRequestSense(task: Task, cdb: Uint8Array): void {
  task.aux = cdb[1] & DESC;
  task.dataLength = cdb[4];
}

/**
 * Returns, as parameter data with GOOD status, the highest-priority pending unit attention of
 * the nexus and clears it (SAM-5 §5.14, UA_INTLCK_CTRL=00b); else NO SENSE. The format follows
 * the DESC bit (descriptor format is supported, so DESC=1 is never an error). For a LUN with no
 * logical unit: ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (SPC-4 §6.29.2); the REPORT LUNS
 * well known LU keeps no unit attentions, so it answers NO SENSE.
 */
export function executeRequestSense(core: Core, task: Task): number {
  const b = core.response(252);
  const descriptor = (task.aux & DESC) !== 0;
  const lu = task.lu;
  if (lu === null) {
    return encodeSense(b, descriptor, isWellKnownLu(task) ? Sense.NO_ADDITIONAL_SENSE : Sense.LOGICAL_UNIT_NOT_SUPPORTED);
  }
  const ua = lu.takeUnitAttention(task.nexus!);
  return encodeSense(b, descriptor, ua ?? Sense.NO_ADDITIONAL_SENSE);
}

// ---- REPORT LUNS (SPC-4 §6.33) ----

/** SPC-4 table 284 SELECT REPORT values. */
const SELECT_ALL_BUT_WELL_KNOWN = 0x00;
const SELECT_WELL_KNOWN = 0x01;
const SELECT_ALL = 0x02;

export function parseReportLuns(task: Task, cdb: Uint8Array): void {
  const select = cdb[2];
  if (select !== SELECT_ALL_BUT_WELL_KNOWN && select !== SELECT_WELL_KNOWN && select !== SELECT_ALL) {
    throw SenseError.invalidCdbField(2);
  }
  const alloc = be32(cdb, 6);
  // SPC-4 §6.33: allocation length < 16 may be rejected; QEMU does, and so do we (V7.15).
  if (alloc < 16) throw SenseError.invalidCdbField(6);
  task.aux = select;
  task.dataLength = alloc;
}

/** SAM-5 §4.7: LUN < 256 peripheral device addressing (00b), else flat space (01b). */
export function encodeLun(b: Uint8Array, off: number, lun: number): void {
  if (lun === REPORT_LUNS_WLUN) {
    // SAM-5 §4.7.8.5 extended addressing, well known logical unit 01h: C1 01 00 00 00 00 00 00.
    b[off] = 0xc1;
    b[off + 1] = 0x01;
  } else if (lun < 256) {
    b[off] = 0x00;
    b[off + 1] = lun;
  } else {
    b[off] = 0x40 | ((lun >>> 8) & 0x3f);
    b[off + 1] = lun & 0xff;
  }
}

/**
 * SELECT REPORT 00h: the logical units (a target with none still answers at LUN 0, its null
 * LU, so that is listed); 01h: the well known logical units, here only REPORT LUNS (C101h);
 * 02h: both. The list is sized from the real LUN count (QEMU CVE-2013-4344).
 */
export function executeReportLuns(core: Core, task: Task): number {
  const select = task.aux;
  let luns: readonly number[] = [];
  if (select !== SELECT_WELL_KNOWN) {
    luns = core.lunList();
    if (luns.length === 0) luns = [0];
  }
  const wellKnown = select !== SELECT_ALL_BUT_WELL_KNOWN ? 1 : 0;
  const count = luns.length + wellKnown;
  const n = 8 + 8 * count;
  const b = core.response(n);
  putBe32(b, 0, 8 * count);
  for (let i = 0; i < luns.length; i++) encodeLun(b, 8 + 8 * i, luns[i]);
  if (wellKnown !== 0) encodeLun(b, 8 + 8 * luns.length, REPORT_LUNS_WLUN);
  core.reportedLunsSeen(task.nexus!);
  return n;
}

// ---- TEST UNIT READY (SPC-4 §6.47) ----

export function parseNothing(): void {
  // no CDB fields beyond the usage-data check
}

export function executeNothing(): number {
  return 0;
}

// ---- PREVENT ALLOW MEDIUM REMOVAL (SBC-3 r36 §5.11 / SPC-4 §6.13 as referenced) ----

/**
 * The medium is not removable (RMB=0), so there is nothing to lock: PREVENT 00b (allow) and
 * 01b (prevent) succeed, a prevention trivially holding. 10b and 11b are obsolete (medium
 * changer codes) → INVALID FIELD IN CDB at byte 4 bit 1. QEMU's scsi-disk likewise answers
 * GOOD for a fixed disk; Linux only sends the command to removable devices.
 */
export function parsePreventAllowMediumRemoval(_task: Task, cdb: Uint8Array): void {
  if ((cdb[4] & 0x02) !== 0) throw SenseError.invalidCdbField(4, 1);
}
