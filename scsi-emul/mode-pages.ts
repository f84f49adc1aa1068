// The mode page table (SPC-4 r37 §7.5, SBC-3 r36 §6.4). Each row describes a page as byte
// images: its default values, its changeable mask and its field layout (for field pointers).
// MODE SENSE builds from these rows and MODE SELECT validates against the same rows
// (spc-mode.ts), so what a page says is changeable is exactly what MODE SELECT accepts.
import type { LogicalUnit } from './logical-unit';

/** SPC-4 §6.11 PAGE CONTROL field. */
export const enum PageControl {
  CURRENT = 0,
  CHANGEABLE = 1,
  DEFAULT = 2,
  SAVED = 3,
}

export interface ModePageDef {
  readonly name: string;
  readonly page: number;
  readonly subpage: number;
  /** whole page length in bytes, header included */
  readonly length: number;
  /** page_0 header is 2 bytes, sub_page header 4 (SPC-4 §7.5.7) */
  readonly headerLength: number;
  /**
   * Changeable mask over the whole page (PC=01b data minus the header): a 1 bit may be set
   * to any value by MODE SELECT, a 0 bit must equal the current value.
   */
  readonly changeable: Uint8Array;
  /**
   * Field layout for field pointers: per byte, the bits that are the most significant bit of a
   * field. 80h alone = the byte is one field or starts a multi-byte field; 00h = the byte
   * continues the multi-byte field started by the nearest earlier non-zero entry.
   */
  readonly fields: Uint8Array;
  /** Writes the default values (header included, PS=1) at b[off..off+length). */
  defaults(lu: LogicalUnit, b: Uint8Array, off: number): void;
  /** Overlays the LU's live state (WCE, D_SENSE, SWP) on a current-values image. */
  live?(lu: LogicalUnit, b: Uint8Array, off: number): void;
  /** Checks values the mask allows but the page does not (reserved codes); returns the page byte and bit at fault, or null. */
  check?(b: Uint8Array, off: number): { byte: number; bit?: number } | null;
  /** Makes a validated current-values image the LU's state. */
  apply?(lu: LogicalUnit, b: Uint8Array, off: number): void;
}

/** Parameters saveable: every page here can be saved (MODE SELECT SP=1), so PS=1 (SPC-4 §7.5.7). */
const PS = 0x80;
const SPF = 0x40;

function header(b: Uint8Array, off: number, def: ModePageDef): void {
  if (def.headerLength === 2) {
    b[off] = PS | def.page;
    b[off + 1] = def.length - 2;
  } else {
    b[off] = PS | SPF | def.page;
    b[off + 1] = def.subpage;
    b[off + 2] = ((def.length - 4) >>> 8) & 0xff;
    b[off + 3] = (def.length - 4) & 0xff;
  }
}

/** A byte array of `len` with the given bytes at the given offsets. */
function bytes(len: number, set: Record<number, number>): Uint8Array {
  const b = new Uint8Array(len);
  for (const k of Object.keys(set)) b[Number(k)] = set[Number(k)];
  return b;
}

/**
 * 01h Read-Write Error Recovery (SBC-3 r36 §6.4.9, page length 0Ah). The medium is a file or
 * memory: no retries, no reallocation, no error correction to tune, so every field is 0 and
 * nothing is changeable (AWRE=ARRE=0: nothing is reallocated; RECOVERY TIME LIMIT 0 = default).
 */
const READ_WRITE_ERROR_RECOVERY: ModePageDef = {
  name: 'read-write error recovery',
  page: 0x01,
  subpage: 0x00,
  length: 12,
  headerLength: 2,
  changeable: new Uint8Array(12),
  // byte 2 eight 1-bit fields; 3 READ RETRY COUNT; 4-6 obsolete; 7 reserved; 8 WRITE RETRY
  // COUNT; 9 reserved; 10-11 RECOVERY TIME LIMIT.
  fields: bytes(12, { 2: 0xff, 3: 0x80, 4: 0x80, 5: 0x80, 6: 0x80, 7: 0x80, 8: 0x80, 9: 0x80, 10: 0x80 }),
  defaults(_lu, b, off) {
    header(b, off, this);
  },
};

/**
 * 08h Caching (SBC-3 r36 §6.4.5, page length 12h). WCE (byte 2 bit 2) is the LU's write
 * policy and is changeable: write-back acknowledges a write once the host has it, write-through
 * only once it is durable (reliability.md §4.6). RCD=0 (reads may come from the host page
 * cache) and the prefetch fields (the host kernel's readahead, not ours to set) are fixed.
 */
const CACHING: ModePageDef = {
  name: 'caching',
  page: 0x08,
  subpage: 0x00,
  length: 20,
  headerLength: 2,
  changeable: bytes(20, { 2: 0x04 }),
  // byte 2: IC ABPF CAP DISC SIZE WCE MF RCD; 3: DEMAND READ / WRITE RETENTION PRIORITY;
  // 4-5, 6-7, 8-9, 10-11: prefetch lengths; 12: FSW LBCSS DRA VS VS reserved NV_DIS;
  // 13 NUMBER OF CACHE SEGMENTS; 14-15 CACHE SEGMENT SIZE; 16 reserved; 17-19 obsolete.
  fields: bytes(20, { 2: 0xff, 3: 0x88, 4: 0x80, 6: 0x80, 8: 0x80, 10: 0x80, 12: 0xff, 13: 0x80, 14: 0x80, 16: 0x80, 17: 0x80 }),
  defaults(lu, b, off) {
    header(b, off, this);
    b[off + 2] = lu.writeCacheDefault ? 0x04 : 0x00;
  },
  live(lu, b, off) {
    b[off + 2] = (b[off + 2] & ~0x04) | (lu.writeCache ? 0x04 : 0x00);
  },
  apply(lu, b, off) {
    lu.writeCache = (b[off + 2] & 0x04) !== 0;
  },
};

/**
 * 0Ah Control (SPC-4 r37 §7.5.8, page length 0Ah). byte 2: TST=000b (one task set shared by
 * all I_T nexuses), TMF_ONLY=0, DPICZ=0, D_SENSE (changeable: descriptor-format sense),
 * GLTSD=1 (no log parameters are saved implicitly), RLEC=0. byte 3: QUEUE ALGORITHM MODIFIER=1
 * (SIMPLE commands complete in any order), NUAR=0, QERR=00b (commands continue after a CHECK
 * CONDITION). byte 4: UA_INTLCK_CTRL=00b (SAM-5 §5.14), SWP (changeable: software write
 * protect). byte 5: TAS=0 (commands aborted for another nexus are reported by unit attention),
 * ATO=0, ATMPE=0, RWWP=0, AUTOLOAD MODE 000b. BUSY TIMEOUT PERIOD 0 (undefined), EXTENDED
 * SELF-TEST COMPLETION TIME 0 (no self-test). TST, QERR and TAS change the task set's rules,
 * which are fixed here, so they are reported and not changeable.
 */
const CONTROL: ModePageDef = {
  name: 'control',
  page: 0x0a,
  subpage: 0x00,
  length: 12,
  headerLength: 2,
  changeable: bytes(12, { 2: 0x04, 4: 0x08 }),
  fields: bytes(12, { 2: 0x9f, 3: 0x8d, 4: 0xef, 5: 0xfc, 6: 0x80, 8: 0x80, 10: 0x80 }),
  defaults(_lu, b, off) {
    header(b, off, this);
    b[off + 2] = 0x02;
    b[off + 3] = 0x10;
  },
  live(lu, b, off) {
    b[off + 2] = (b[off + 2] & ~0x04) | (lu.descriptorSense ? 0x04 : 0x00);
    b[off + 4] = (b[off + 4] & ~0x08) | (lu.softwareWriteProtect ? 0x08 : 0x00);
  },
  apply(lu, b, off) {
    lu.descriptorSense = (b[off + 2] & 0x04) !== 0;
    lu.softwareWriteProtect = (b[off + 4] & 0x08) !== 0;
  },
};

/**
 * 0Ah/01h Control Extension (SPC-4 r37 §7.5.9, page length 001Ch): TCMOS=0 (no timestamp),
 * SCSIP=0, IALUAE=0 (no implicit ALUA), INITIAL COMMAND PRIORITY 0 (no priorities),
 * MAXIMUM SENSE DATA LENGTH 0 (no limit). Nothing is changeable.
 */
const CONTROL_EXTENSION: ModePageDef = {
  name: 'control extension',
  page: 0x0a,
  subpage: 0x01,
  length: 32,
  headerLength: 4,
  changeable: new Uint8Array(32),
  fields: (() => {
    const f = bytes(32, { 4: 0xff, 5: 0x88, 6: 0x80 });
    for (let i = 7; i < 32; i++) f[i] = 0x80;
    return f;
  })(),
  defaults(_lu, b, off) {
    header(b, off, this);
  },
};

/**
 * 1Ch Informational Exceptions Control (SPC-4 r37 §7.5.14, page length 0Ah). This LU has no
 * failure prediction, so no informational exception condition ever occurs: DEXCPT=1 by
 * default. DEXCPT, EWASC, MRIE, INTERVAL TIMER and REPORT COUNT are changeable (enabling the
 * reporting of conditions that never occur is harmless, and smartctl toggles DEXCPT); TEST
 * (a simulated failure), PERF, EBF, EBACKERR and LOGERR are not. MRIE must be a defined
 * method, 0h-6h (7h-Bh reserved; Ch-Fh vendor specific, none defined here).
 */
const INFORMATIONAL_EXCEPTIONS: ModePageDef = {
  name: 'informational exceptions control',
  page: 0x1c,
  subpage: 0x00,
  length: 12,
  headerLength: 2,
  changeable: bytes(12, { 2: 0x18, 3: 0x0f, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff, 8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff }),
  fields: bytes(12, { 2: 0xff, 3: 0x88, 4: 0x80, 8: 0x80 }),
  defaults(_lu, b, off) {
    header(b, off, this);
    b[off + 2] = 0x08;
  },
  check(b, off) {
    return (b[off + 3] & 0x0f) > 6 ? { byte: 3, bit: 3 } : null;
  },
};

/** Ascending page, then subpage, order: MODE SENSE with page 3Fh returns them so (SPC-4 §6.11). */
export const MODE_PAGES: readonly ModePageDef[] = Object.freeze([
  READ_WRITE_ERROR_RECOVERY,
  CACHING,
  CONTROL,
  CONTROL_EXTENSION,
  INFORMATIONAL_EXCEPTIONS,
]);

export function findModePage(page: number, subpage: number): ModePageDef | null {
  for (const p of MODE_PAGES) if (p.page === page && p.subpage === subpage) return p;
  return null;
}

export function hasModePage(page: number): boolean {
  for (const p of MODE_PAGES) if (p.page === page) return true;
  return false;
}

/** Index of a row in MODE_PAGES (per-LU state is kept in arrays parallel to it). */
export function modePageIndex(def: ModePageDef): number {
  return MODE_PAGES.indexOf(def);
}

/**
 * Field pointer for bad bits `bad` in page byte `byte`: the byte and most significant bit of
 * the field they belong to (no bit for whole-byte and multi-byte fields), per def.fields.
 */
export function fieldPointer(def: ModePageDef, byte: number, bad: number): { byte: number; bit?: number } {
  let i = byte;
  while (i > 0 && def.fields[i] === 0) i--;
  const f = def.fields[i];
  if (i !== byte || f === 0x80) return { byte: i };
  const msb = 31 - Math.clz32(bad);
  for (let bit = msb; bit < 8; bit++) if ((f & (1 << bit)) !== 0) return { byte, bit };
  return { byte };
}
