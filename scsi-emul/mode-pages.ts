// Mode page table (SPC-4 §7.5, SBC-3 §6.4). MODE SENSE builds from these rows; MODE SELECT
// will validate against the same rows' changeable masks.
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
  /** Writes the page at b[off..off+length) (already zeroed) for the page control value. */
  build(lu: LogicalUnit, pc: PageControl, b: Uint8Array, off: number): void;
}

/**
 * Caching mode page (SBC-3 §6.4.5, page 08h, page length 12h). WCE (byte 2 bit 2) says
 * whether the LU acknowledges writes before they are durable; it must match what the store
 * does (reliability.md §4.6). RCD=0: reads may come from the host page cache.
 * Nothing is changeable until MODE SELECT exists, so the changeable mask is all zero.
 */
const CACHING: ModePageDef = {
  name: 'caching',
  page: 0x08,
  subpage: 0x00,
  length: 20,
  build(lu, pc, b, off) {
    b[off] = 0x08; // PS=0: saving pages is not supported
    b[off + 1] = 0x12;
    if (pc === PageControl.CHANGEABLE) return;
    const wce = pc === PageControl.DEFAULT ? lu.writeCacheDefault : lu.writeCache;
    b[off + 2] = wce ? 0x04 : 0x00;
  },
};

/**
 * Control mode page (SPC-4 §7.5.8, page 0Ah, page length 0Ah).
 * byte 2: TST=000b (one task set for all nexuses), D_SENSE, GLTSD=1 (we keep no log
 * parameters to save). byte 3: QUEUE ALGORITHM MODIFIER=1 (SIMPLE commands complete in any
 * order), QERR=00b. byte 4: UA_INTLCK_CTRL=00b (SAM-5 §5.14). byte 5: TAS=0.
 */
const CONTROL: ModePageDef = {
  name: 'control',
  page: 0x0a,
  subpage: 0x00,
  length: 12,
  build(lu, pc, b, off) {
    b[off] = 0x0a;
    b[off + 1] = 0x0a;
    if (pc === PageControl.CHANGEABLE) return;
    const dSense = pc === PageControl.DEFAULT ? false : lu.descriptorSense;
    b[off + 2] = 0x02 | (dSense ? 0x04 : 0x00);
    b[off + 3] = 0x10;
  },
};

/** Ascending page code order, as MODE SENSE with page 3Fh returns them (SPC-4 §6.11). */
export const MODE_PAGES: readonly ModePageDef[] = Object.freeze([CACHING, CONTROL]);

export function findModePage(page: number, subpage: number): ModePageDef | null {
  for (const p of MODE_PAGES) if (p.page === page && p.subpage === subpage) return p;
  return null;
}

export function hasModePage(page: number): boolean {
  for (const p of MODE_PAGES) if (p.page === page) return true;
  return false;
}
