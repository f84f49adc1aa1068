// Handlers for the SPC-4 commands: INQUIRY, REQUEST SENSE, REPORT LUNS, TEST UNIT READY,
// MODE SENSE(6/10). Every one builds its data in core.response() (zeroed) and returns the
// full length; the core clamps to ALLOCATION LENGTH and the buffer.
import type { Task } from './command';
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode } from './constants';
import { Sense, SenseError, encodeSense } from './sense';
import { be16, be32, putBe16, putBe32, putBe64 } from './bytes';
import { PDT_DISK, PDT_NO_LUN, findVpdPage } from './vpd';
import { MODE_PAGES, PageControl, findModePage, hasModePage } from './mode-pages';

// ---- INQUIRY (SPC-4 §6.6) ----

const STD_INQUIRY_LENGTH = 96;
const EVPD = 0x100;

export function parseInquiry(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const evpd = (cdb[1] & 0x01) !== 0;
  const page = cdb[2];
  if (!evpd) {
    // SPC-4 §6.6.1: PAGE CODE must be zero when EVPD is zero.
    if (page !== 0) throw SenseError.invalidCdbField(2);
  } else if (lu === null ? page !== 0x00 : findVpdPage(page) === null) {
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
  const pdt = lu === null ? PDT_NO_LUN : PDT_DISK;
  if ((task.aux & EVPD) === 0) {
    // Standard INQUIRY data (SPC-4 §6.6.2, table 139).
    const b = core.response(STD_INQUIRY_LENGTH);
    const id = lu === null ? core.defaultIdentity : lu.identity;
    b[0] = pdt;
    b[1] = 0x00; // RMB=0: the medium is not removable
    b[2] = 0x06; // VERSION: SPC-4
    b[3] = 0x12; // HISUP=1 (hierarchical LUNs; single level is one), RESPONSE DATA FORMAT=2
    b[4] = STD_INQUIRY_LENGTH - 5; // ADDITIONAL LENGTH
    b[5] = 0x00; // SCCS, ACC, TPGS=00b (ALUA not offered yet), 3PC, PROTECT all 0
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
    // Only the Supported VPD Pages page, listing itself (SPC-4 §7.8.14).
    const b = core.response(5);
    b[0] = pdt;
    b[1] = 0x00;
    putBe16(b, 2, 1);
    b[4] = 0x00;
    return 5;
  }
  const def = findVpdPage(page)!;
  const b = core.response(def.maxLength);
  b[0] = pdt;
  b[1] = page;
  const pageLength = def.build(lu, task.nexus!, core, b);
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
 * the nexus and clears it (SAM-5 §5.14, UA_INTLCK_CTRL=00b); else NO SENSE. For a LUN with no
 * logical unit: ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (SPC-4 §6.29.2). The format
 * follows the DESC bit.
 */
export function executeRequestSense(core: Core, task: Task): number {
  const b = core.response(252);
  const descriptor = (task.aux & DESC) !== 0;
  const lu = task.lu;
  if (lu === null) return encodeSense(b, descriptor, Sense.LOGICAL_UNIT_NOT_SUPPORTED);
  const ua = lu.takeUnitAttention(task.nexus!);
  return encodeSense(b, descriptor, ua ?? Sense.NO_ADDITIONAL_SENSE);
}

// ---- REPORT LUNS (SPC-4 §6.33) ----

export function parseReportLuns(task: Task, cdb: Uint8Array): void {
  const select = cdb[2];
  // 00h all LUs except well known, 01h well known only, 02h all (SPC-4 table 284).
  if (select > 0x02) throw SenseError.invalidCdbField(2);
  const alloc = be32(cdb, 6);
  // SPC-4 §6.33: allocation length < 16 may be rejected; QEMU does, and so do we (V7.15).
  if (alloc < 16) throw SenseError.invalidCdbField(6);
  task.aux = select;
  task.dataLength = alloc;
}

/** SAM-5 §4.7: LUN < 256 peripheral device addressing (00b), else flat space (01b). */
export function encodeLun(b: Uint8Array, off: number, lun: number): void {
  if (lun < 256) {
    b[off] = 0x00;
    b[off + 1] = lun;
  } else {
    b[off] = 0x40 | ((lun >>> 8) & 0x3f);
    b[off + 1] = lun & 0xff;
  }
}

export function executeReportLuns(core: Core, task: Task): number {
  let luns: readonly number[];
  if (task.aux === 0x01) {
    luns = []; // no well known logical units are exposed
  } else {
    luns = core.lunList();
    // A target with no logical units still answers at LUN 0 (the null LU), so list it.
    if (luns.length === 0) luns = [0];
  }
  // Sized from the real LUN count (QEMU CVE-2013-4344); the core truncates to ALLOCATION LENGTH.
  const n = 8 + 8 * luns.length;
  const b = core.response(n);
  putBe32(b, 0, 8 * luns.length);
  for (let i = 0; i < luns.length; i++) encodeLun(b, 8 + 8 * i, luns[i]);
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

// ---- MODE SENSE(6) / MODE SENSE(10) (SPC-4 §6.11, §6.12) ----

const MS_DBD = 1 << 16;
const MS_LLBAA = 1 << 17;
const MS_TEN = 1 << 18;

export function parseModeSense(task: Task, cdb: Uint8Array): void {
  const ten = cdb[0] === Opcode.MODE_SENSE_10;
  const pc = cdb[2] >>> 6;
  const page = cdb[2] & 0x3f;
  const subpage = cdb[3];
  if (pc === PageControl.SAVED) {
    throw new SenseError(Sense.SAVING_PARAMETERS_NOT_SUPPORTED, { inCdb: true, byte: 2, bit: 7 });
  }
  if (page === 0x3f) {
    // 3Fh with subpage 00h: every page without subpages; FFh: every page and subpage.
    if (subpage !== 0x00 && subpage !== 0xff) throw SenseError.invalidCdbField(3);
  } else if (findModePage(page, subpage) === null) {
    throw hasModePage(page) ? SenseError.invalidCdbField(3) : SenseError.invalidCdbField(2, 5);
  }
  task.aux = pc | (page << 2) | (subpage << 8) |
    ((cdb[1] & 0x08) !== 0 ? MS_DBD : 0) |
    (ten && (cdb[1] & 0x10) !== 0 ? MS_LLBAA : 0) |
    (ten ? MS_TEN : 0);
  task.dataLength = ten ? be16(cdb, 7) : cdb[4];
}

export function executeModeSense(core: Core, task: Task): number {
  const lu = task.lu!;
  const aux = task.aux;
  const pc = (aux & 3) as PageControl;
  const page = (aux >>> 2) & 0x3f;
  const subpage = (aux >>> 8) & 0xff;
  const ten = (aux & MS_TEN) !== 0;
  const longLba = (aux & MS_LLBAA) !== 0;
  const bdLength = (aux & MS_DBD) !== 0 ? 0 : longLba ? 16 : 8;
  const headerLength = ten ? 8 : 4;
  let pagesLength = 0;
  for (const p of MODE_PAGES) if (selected(p.page, p.subpage, page, subpage)) pagesLength += p.length;
  const total = headerLength + bdLength + pagesLength;
  const b = core.response(total);

  // Mode parameter header (SPC-4 §7.5.5); device-specific parameter per SBC-3 §6.4.1:
  // WP (bit 7) for a write-protected LU, DPOFUA (bit 4) because DPO and FUA are honoured.
  const dsp = (lu.readOnly ? 0x80 : 0x00) | 0x10;
  if (ten) {
    putBe16(b, 0, total - 2);
    b[2] = 0x00; // MEDIUM TYPE
    b[3] = dsp;
    b[4] = bdLength === 16 ? 0x01 : 0x00; // LONGLBA: the descriptors present are 16 bytes
    putBe16(b, 6, bdLength);
  } else {
    b[0] = total - 1;
    b[1] = 0x00;
    b[2] = dsp;
    b[3] = bdLength;
  }
  let off = headerLength;
  if (bdLength !== 0 && pc !== PageControl.CHANGEABLE) {
    // Block descriptor (SBC-3 §6.4.2); with PC=01b it is a mask of changeable fields: none.
    const blocks = lu.blocks;
    if (longLba) {
      putBe64(b, off, blocks);
      putBe32(b, off + 12, lu.blockSize);
    } else {
      putBe32(b, off, blocks > 0xffffffff ? 0xffffffff : blocks);
      b[off + 5] = (lu.blockSize >>> 16) & 0xff;
      b[off + 6] = (lu.blockSize >>> 8) & 0xff;
      b[off + 7] = lu.blockSize & 0xff;
    }
  }
  off += bdLength;
  for (const p of MODE_PAGES) {
    if (!selected(p.page, p.subpage, page, subpage)) continue;
    p.build(lu, pc, b, off);
    off += p.length;
  }
  return total;
}

function selected(pPage: number, pSub: number, page: number, subpage: number): boolean {
  if (page === 0x3f) return subpage === 0xff || pSub === 0x00;
  return pPage === page && pSub === subpage;
}
