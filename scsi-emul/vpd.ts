// Vital product data pages (SPC-4 §7.8, SBC-3 §6.5), one table row per page.
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import type { NexusRecord } from './nexus';
import { putBe16, putBe32 } from './bytes';

/** SPC-4 §6.6.2: PERIPHERAL QUALIFIER 000b, DEVICE TYPE 00h (direct access block device). */
export const PDT_DISK = 0x00;
/** Peripheral qualifier 011b + device type 1Fh: no logical unit at this LUN. */
export const PDT_NO_LUN = 0x7f;

export interface VpdPageDef {
  readonly name: string;
  readonly page: number;
  /** largest page this row builds, header included (sizes the response buffer) */
  readonly maxLength: number;
  /** Builds the page into b (zeroed, ≥ maxLength) after the 4-byte header; returns the page length field. */
  build(lu: LogicalUnit, nexus: NexusRecord, core: Core, b: Uint8Array): number;
}

function writeAscii(b: Uint8Array, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[off + i] = s.charCodeAt(i);
}

/** 80h Unit Serial Number (SPC-4 §7.8.15). */
const UNIT_SERIAL: VpdPageDef = {
  name: 'unit serial number',
  page: 0x80,
  maxLength: 4 + 200,
  build(lu, _nexus, _core, b) {
    writeAscii(b, 4, lu.identity.serial);
    return lu.identity.serial.length;
  },
};

/**
 * 83h Device Identification (SPC-4 §7.8.6): the LU's NAA 6h designator, a T10 vendor id
 * designator, and the relative target port of the nexus asking.
 */
const DEVICE_IDENTIFICATION: VpdPageDef = {
  name: 'device identification',
  page: 0x83,
  maxLength: 4 + 20 + (4 + 8 + 16 + 200) + 8,
  build(lu, nexus, _core, b) {
    let off = 4;
    // NAA: CODE SET 1h (binary), ASSOCIATION 00b (logical unit), DESIGNATOR TYPE 3h (§7.8.6.6).
    b[off] = 0x01;
    b[off + 1] = 0x03;
    b[off + 3] = 16;
    b.set(lu.identity.naa, off + 4);
    off += 20;
    // T10 vendor id based: CODE SET 2h (ASCII), ASSOCIATION 00b, TYPE 1h (§7.8.6.4). The
    // vendor specific part is PRODUCT IDENTIFICATION followed by the serial, as SPC-4 suggests.
    const id = lu.identity;
    const t10Len = 8 + 16 + id.serial.length;
    b[off] = 0x02;
    b[off + 1] = 0x01;
    b[off + 3] = t10Len;
    writeAscii(b, off + 4, id.vendor);
    writeAscii(b, off + 12, id.product);
    writeAscii(b, off + 28, id.serial);
    off += 4 + t10Len;
    // Relative target port: CODE SET 1h, PIV=0 (virtio has no SCSI transport protocol
    // identifier), ASSOCIATION 01b (target port), TYPE 4h (§7.8.6.5).
    b[off] = 0x01;
    b[off + 1] = 0x14;
    b[off + 3] = 4;
    putBe16(b, off + 6, nexus.targetPortId);
    off += 8;
    return off - 4;
  },
};

/**
 * B0h Block Limits (SBC-3 §6.5.3, page length 3Ch). Only MAXIMUM TRANSFER LENGTH and the
 * optimal granularity are reported. OPTIMAL TRANSFER LENGTH stays 0 (not reported): a value
 * there becomes Linux io_opt, which mkfs takes for a stripe width. No UNMAP, WRITE SAME or
 * COMPARE AND WRITE yet, so their limits are 0.
 */
const BLOCK_LIMITS: VpdPageDef = {
  name: 'block limits',
  page: 0xb0,
  maxLength: 64,
  build(lu, _nexus, core, b) {
    // The host page cache works in 4 KiB pages: smaller or unaligned writes cost a read-modify-write.
    putBe16(b, 6, Math.max(1, 4096 / lu.blockSize));
    putBe32(b, 8, Math.floor(core.maxTransferBytes / lu.blockSize));
    return 0x3c;
  },
};

/** B1h Block Device Characteristics (SBC-3 §6.5.2): MEDIUM ROTATION RATE 0001h = non-rotating. */
const BLOCK_DEVICE_CHARACTERISTICS: VpdPageDef = {
  name: 'block device characteristics',
  page: 0xb1,
  maxLength: 64,
  build(_lu, _nexus, _core, b) {
    putBe16(b, 4, 0x0001);
    return 0x3c;
  },
};

/**
 * B2h Logical Block Provisioning (SBC-3 §6.5.4, page length 0004h with DP=0). LBPU, LBPWS,
 * LBPWS10 and LBPRZ are 0 and PROVISIONING TYPE is 0: no UNMAP or WRITE SAME unmap yet,
 * matching LBPME=0 in READ CAPACITY(16) (and read-only LUs must never advertise it, §5.4).
 */
const LOGICAL_BLOCK_PROVISIONING: VpdPageDef = {
  name: 'logical block provisioning',
  page: 0xb2,
  maxLength: 8,
  build() {
    return 0x0004;
  },
};

/** 00h Supported VPD Pages (SPC-4 §7.8.14), listing this table in ascending order. */
const SUPPORTED_PAGES: VpdPageDef = {
  name: 'supported VPD pages',
  page: 0x00,
  maxLength: 4 + 16,
  build(_lu, _nexus, _core, b) {
    for (let i = 0; i < VPD_PAGES.length; i++) b[4 + i] = VPD_PAGES[i].page;
    return VPD_PAGES.length;
  },
};

export const VPD_PAGES: readonly VpdPageDef[] = Object.freeze([
  SUPPORTED_PAGES,
  UNIT_SERIAL,
  DEVICE_IDENTIFICATION,
  BLOCK_LIMITS,
  BLOCK_DEVICE_CHARACTERISTICS,
  LOGICAL_BLOCK_PROVISIONING,
]);

export function findVpdPage(page: number): VpdPageDef | null {
  for (const p of VPD_PAGES) if (p.page === page) return p;
  return null;
}
