// MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 r37 §6.11-§6.14, §7.5; SBC-3 r36 §6.4) over
// the mode page table. Per logical unit it keeps the current values (the live bits WCE,
// D_SENSE and SWP stay on the LogicalUnit, where the I/O path reads them) and the saved values
// (MODE SELECT SP=1; kept for the LU's life, not on disk). A logical unit reset makes the
// saved values current (SPC-4 §6.11 "initial responses"; SAM-5 §6.3.3).
import type { Task } from './command';
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode } from './constants';
import { Sense, SenseError } from './sense';
import { be16, be32, be64Safe, copyFromSegments, putBe16, putBe32, putBe64 } from './bytes';
import {
  MODE_PAGES, ModePageDef, PageControl, fieldPointer, findModePage, hasModePage, modePageIndex,
} from './mode-pages';

interface ModeState {
  /** current values per MODE_PAGES row (live bits are overlaid when read) */
  readonly current: Uint8Array[];
  /** saved values per row, null until a MODE SELECT with SP=1 */
  saved: Uint8Array[] | null;
}

const STATES = new WeakMap<LogicalUnit, ModeState>();

function defaultImage(lu: LogicalUnit, def: ModePageDef): Uint8Array {
  const img = new Uint8Array(def.length);
  def.defaults(lu, img, 0);
  return img;
}

function stateOf(lu: LogicalUnit): ModeState {
  let s = STATES.get(lu);
  if (s === undefined) {
    s = { current: MODE_PAGES.map((d) => defaultImage(lu, d)), saved: null };
    STATES.set(lu, s);
  }
  return s;
}

/** Writes page `def` for page control `pc` at b[off..off+def.length) (zeroed). */
function buildPage(lu: LogicalUnit, def: ModePageDef, pc: PageControl, b: Uint8Array, off: number): void {
  const i = modePageIndex(def);
  switch (pc) {
    case PageControl.CURRENT: {
      b.set(stateOf(lu).current[i], off);
      def.live?.(lu, b, off);
      return;
    }
    case PageControl.CHANGEABLE:
      def.defaults(lu, b, off); // for the header
      b.fill(0, off + def.headerLength, off + def.length);
      for (let k = def.headerLength; k < def.length; k++) b[off + k] = def.changeable[k];
      return;
    case PageControl.DEFAULT:
      def.defaults(lu, b, off);
      return;
    default: {
      // SPC-4 §6.11 PC=11b saved values; nothing saved yet → the default values.
      const saved = stateOf(lu).saved;
      if (saved === null) def.defaults(lu, b, off);
      else b.set(saved[i], off);
    }
  }
}

/** The LU's write protection as MODE SENSE reports it (SBC-3 §6.4.1 WP; SPC-4 §7.5.8 SWP). */
function writeProtected(lu: LogicalUnit): boolean {
  return lu.readOnly || lu.softwareWriteProtect;
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
  if (page === 0x3f) {
    // 3Fh with subpage 00h: every page_0 page; FFh: every page and subpage (SPC-4 table 245).
    if (subpage !== 0x00 && subpage !== 0xff) throw SenseError.invalidCdbField(3);
  } else if (!hasModePage(page)) {
    throw SenseError.invalidCdbField(2, 5);
  } else if (subpage !== 0xff && findModePage(page, subpage) === null) {
    throw SenseError.invalidCdbField(3);
  }
  task.aux = pc | (page << 2) | (subpage << 8) |
    ((cdb[1] & 0x08) !== 0 ? MS_DBD : 0) |
    (ten && (cdb[1] & 0x10) !== 0 ? MS_LLBAA : 0) |
    (ten ? MS_TEN : 0);
  task.dataLength = ten ? be16(cdb, 7) : cdb[4];
}

function selected(def: ModePageDef, page: number, subpage: number): boolean {
  if (page === 0x3f) return subpage === 0xff || def.subpage === 0x00;
  return def.page === page && (subpage === 0xff || def.subpage === subpage);
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
  for (const p of MODE_PAGES) if (selected(p, page, subpage)) pagesLength += p.length;
  const total = headerLength + bdLength + pagesLength;
  const b = core.response(total);

  // Mode parameter header (SPC-4 §7.5.5); device-specific parameter per SBC-3 §6.4.1: WP
  // (bit 7) for a write-protected LU, DPOFUA (bit 4) because DPO and FUA are honoured.
  const dsp = (writeProtected(lu) ? 0x80 : 0x00) | 0x10;
  if (ten) {
    putBe16(b, 0, total - 2);
    b[3] = dsp;
    b[4] = bdLength === 16 ? 0x01 : 0x00; // LONGLBA: the descriptors present are 16 bytes
    putBe16(b, 6, bdLength);
  } else {
    b[0] = total - 1;
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
    if (!selected(p, page, subpage)) continue;
    buildPage(lu, p, pc, b, off);
    off += p.length;
  }
  return total;
}

// ---- MODE SELECT(6) / MODE SELECT(10) (SPC-4 §6.9, §6.10) ----

const SEL_SP = 1;
const SEL_TEN = 2;

export function parseModeSelect(task: Task, cdb: Uint8Array): void {
  // PF=0 would make the page data vendor specific; we only speak the page format (SPC-4 §6.9).
  if ((cdb[1] & 0x10) === 0) throw SenseError.invalidCdbField(1, 4);
  const ten = cdb[0] === Opcode.MODE_SELECT_10;
  task.aux = (cdb[1] & 0x01) | (ten ? SEL_TEN : 0);
  task.dataLength = ten ? be16(cdb, 7) : cdb[4];
}

function lengthError(): SenseError {
  return new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);
}

/**
 * Two passes (reliability.md V7.7): every header field, block descriptor and page is checked
 * before anything changes, so a rejected list changes nothing. Then the pages become current
 * (and saved with SP=1), other I_T nexuses get MODE PARAMETERS CHANGED, and when the change
 * turns write caching off (WCE 1→0) or writing off (SWP 0→1) the cache is flushed before the
 * command completes: the new policy is applied first, so no write acknowledged from then on
 * depends on the cache, and the flush makes every write acknowledged before it durable
 * (SPC-4 §7.5.8 SWP: "after writing all cached or buffered write data").
 */
export function executeModeSelect(core: Core, task: Task): number {
  const lu = task.lu!;
  const len = task.dataLength;
  if (len === 0) return 0; // SPC-4 §6.9: no data is not an error
  const ten = (task.aux & SEL_TEN) !== 0;
  // guest-controlled: copied privately, then every length is checked before the field it covers (V7.6).
  const b = new Uint8Array(len);
  copyFromSegments(task.cmd.dataOut, 0, b, 0, len);

  // Mode parameter header (SPC-4 §7.5.5). MODE DATA LENGTH is reserved for MODE SELECT, and
  // the device-specific parameter (WP, DPOFUA) is not settable (SBC-3 §6.4.1): both ignored.
  const headerLength = ten ? 8 : 4;
  if (len < headerLength) throw lengthError();
  const mediumTypeByte = ten ? 2 : 1;
  // SBC-3 §6.4.1: MEDIUM TYPE 00h for direct access block devices.
  if (b[mediumTypeByte] !== 0) throw SenseError.invalidParameterField(mediumTypeByte);
  const longLba = ten && (b[4] & 0x01) !== 0;
  const bdLength = ten ? be16(b, 6) : b[3];
  if (bdLength !== 0 && bdLength !== (longLba ? 16 : 8)) {
    // One descriptor at most: a block device has one block size and one capacity.
    throw SenseError.invalidParameterField(ten ? 6 : 3);
  }
  if (headerLength + bdLength > len) throw lengthError();
  if (bdLength !== 0) checkBlockDescriptor(lu, b, headerLength, longLba);

  // Pass 1: pages.
  const st = stateOf(lu);
  const pending: { def: ModePageDef; off: number }[] = [];
  let off = headerLength + bdLength;
  while (off < len) {
    if (off + 2 > len) throw lengthError();
    const spf = (b[off] & 0x40) !== 0;
    const page = b[off] & 0x3f;
    if (spf && off + 4 > len) throw lengthError();
    const subpage = spf ? b[off + 1] : 0;
    const pageLength = spf ? be16(b, off + 2) + 4 : b[off + 1] + 2;
    // PS (bit 7) is reserved in MODE SELECT (SPC-4 §7.5.7) and ignored: Linux writes back
    // what MODE SENSE returned. Page 3Fh is no page (QEMU CVE-2021-3930).
    if (page === 0x3f) throw SenseError.invalidParameterField(off, 5);
    const def = findModePage(page, subpage);
    if (def === null) {
      throw hasModePage(page) && spf ? SenseError.invalidParameterField(off + 1) : SenseError.invalidParameterField(off, 5);
    }
    // The PAGE LENGTH must be the one MODE SENSE reports (SPC-4 §7.5.7).
    if (pageLength !== def.length) throw SenseError.invalidParameterField(spf ? off + 2 : off + 1);
    if (off + pageLength > len) throw lengthError();
    const cur = currentImage(lu, st, def);
    for (let k = def.headerLength; k < def.length; k++) {
      const bad = (b[off + k] ^ cur[k]) & ~def.changeable[k] & 0xff;
      if (bad !== 0) {
        const p = fieldPointer(def, k, bad);
        throw SenseError.invalidParameterField(off + p.byte, p.bit);
      }
    }
    const c = def.check?.(b, off) ?? null;
    if (c !== null) throw SenseError.invalidParameterField(off + c.byte, c.bit);
    pending.push({ def, off });
    off += pageLength;
  }

  // What the change does to the write path, known before anything is applied.
  let wceOff = false;
  let swpOn = false;
  for (const { def, off: o } of pending) {
    if (def.page === 0x08 && def.subpage === 0 && lu.writeCache && (b[o + 2] & 0x04) === 0) wceOff = true;
    if (def.page === 0x0a && def.subpage === 0 && !lu.softwareWriteProtect && (b[o + 4] & 0x08) !== 0) swpOn = true;
  }
  const flush = (wceOff || swpOn) && !lu.readOnly;
  // After a write-back error the cached data may be gone (fsyncgate): switching to
  // write-through cannot make it durable, so refuse as a flush would (reliability.md §4.6).
  if (flush && lu.failed !== null) throw new SenseError(Sense.WRITE_ERROR);

  // Pass 2: apply.
  let changed = false;
  for (const { def, off: o } of pending) {
    const i = modePageIndex(def);
    const img = b.slice(o, o + def.length);
    def.defaults(lu, img, 0); // header bytes as MODE SENSE reports them (PS, length)
    for (let k = def.headerLength; k < def.length; k++) img[k] = b[o + k];
    const cur = currentImage(lu, st, def);
    for (let k = 0; k < def.length; k++) if (img[k] !== cur[k]) changed = true;
    st.current[i] = img;
    def.apply?.(lu, img, 0);
  }
  if ((task.aux & SEL_SP) !== 0) {
    // SP=1 saves every saveable page, not only those sent (SPC-4 §6.9).
    st.saved = MODE_PAGES.map((d) => currentImage(lu, st, d).slice());
  }
  if (changed) {
    // SPC-4 §6.9 / SAM-5 §5.14: parameters shared by every I_T nexus changed; the others are told.
    for (const r of core.knownNexuses()) {
      if (r !== task.nexus) lu.establishUnitAttention(r, Sense.MODE_PARAMETERS_CHANGED);
    }
  }
  return flush ? core.startFlush(task) : 0;
}

/** Current values of a page with the live bits overlaid (a fresh copy). */
function currentImage(lu: LogicalUnit, st: ModeState, def: ModePageDef): Uint8Array {
  const img = st.current[modePageIndex(def)].slice();
  def.live?.(lu, img, 0);
  return img;
}

/**
 * Block descriptor (SBC-3 r36 §6.4.2): its changeable mask is zero, so the capacity and block
 * size cannot change here (block size changes: QEMU CVE-2023-42467). NUMBER OF LOGICAL BLOCKS
 * 0 means "keep the capacity"; the current value (FFFFFFFFh in the short form when the
 * capacity does not fit) is accepted as a no-op, since MODE SENSE returned it.
 */
function checkBlockDescriptor(lu: LogicalUnit, b: Uint8Array, off: number, longLba: boolean): void {
  const blocks = lu.blocks;
  if (longLba) {
    const n = be64Safe(b, off);
    if (n !== 0 && n !== blocks) throw SenseError.invalidParameterField(off);
    if (be32(b, off + 12) !== lu.blockSize) throw SenseError.invalidParameterField(off + 12);
  } else {
    const n = be32(b, off);
    if (n !== 0 && n !== (blocks > 0xffffffff ? 0xffffffff : blocks)) throw SenseError.invalidParameterField(off);
    const size = (b[off + 5] << 16) | (b[off + 6] << 8) | b[off + 7];
    if (size !== lu.blockSize) throw SenseError.invalidParameterField(off + 5);
  }
}

/**
 * Logical unit reset (SAM-5 §6.3.3; SPC-4 §6.11 initial responses): the saved values, or the
 * defaults when none were saved, become current. Returns true when that turned write caching
 * off or software write protection on while the LU is writable: the caller must flush the
 * cache before reporting the reset complete.
 */
export function resetModeParameters(lu: LogicalUnit): boolean {
  const st = STATES.get(lu);
  const wasCaching = lu.writeCache;
  const wasProtected = lu.softwareWriteProtect;
  for (let i = 0; i < MODE_PAGES.length; i++) {
    const def = MODE_PAGES[i];
    const img = st?.saved?.[i].slice() ?? defaultImage(lu, def);
    if (st !== undefined) st.current[i] = img;
    def.apply?.(lu, img, 0);
  }
  return !lu.readOnly && ((wasCaching && !lu.writeCache) || (!wasProtected && lu.softwareWriteProtect));
}
