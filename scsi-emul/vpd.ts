// Vital product data pages (SPC-4 r37 §7.8, SBC-3 r36 §6.5), one table row per page. The
// Supported VPD Pages page is generated from the table, so a row added here is listed there.
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import type { NexusRecord } from './nexus';
import { putBe16, putBe32, putBe64 } from './bytes';
import { THIRD_PARTY_COPY_VPD_LENGTH, thirdPartyCopyVpdPage } from './xcopy';

/** SPC-4 §6.6.2: PERIPHERAL QUALIFIER 000b, DEVICE TYPE 00h (direct access block device). */
export const PDT_DISK = 0x00;
/** Peripheral qualifier 011b + device type 1Fh: no logical unit at this LUN. */
export const PDT_NO_LUN = 0x7f;
/** Peripheral qualifier 000b + device type 1Eh: a well known logical unit (SPC-4 §8.1). */
export const PDT_WELL_KNOWN_LU = 0x1e;

/**
 * VPD B0h Block Limits values (SBC-3 r36 §6.5.3 table 172) that the SBC commands enforce. Every
 * count is in logical blocks; 0 means "no limit reported" (and, for the commands it governs,
 * "not supported"). MAXIMUM TRANSFER LENGTH and OPTIMAL TRANSFER LENGTH GRANULARITY are not
 * here: the target derives them (ScsiTarget maxTransferBytes, the 4 KiB host page).
 * The SBC engineers fill this object on the LogicalUnit; B0h only reads it.
 */
export interface BlockLimits {
  /** WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is rejected */
  wsnz: boolean;
  /** MAXIMUM COMPARE AND WRITE LENGTH, 0..255 */
  maxCompareAndWriteLength: number;
  /** OPTIMAL TRANSFER LENGTH (kept 0 by default: Linux turns it into io_opt) */
  optimalTransferLength: number;
  maxPrefetchLength: number;
  maxUnmapLbaCount: number;
  maxUnmapBlockDescriptorCount: number;
  optimalUnmapGranularity: number;
  /** UNMAP GRANULARITY ALIGNMENT, or -1 when not valid (UGAVALID=0) */
  unmapGranularityAlignment: number;
  /** MAXIMUM WRITE SAME LENGTH (u64 field; any safe integer) */
  maxWriteSameLength: number;
  maxAtomicTransferLength: number;
  atomicAlignment: number;
  atomicTransferLengthGranularity: number;
  maxAtomicTransferLengthWithAtomicBoundary: number;
  maxAtomicBoundarySize: number;
}

export function defaultBlockLimits(): BlockLimits {
  return {
    wsnz: false, maxCompareAndWriteLength: 0, optimalTransferLength: 0, maxPrefetchLength: 0,
    maxUnmapLbaCount: 0, maxUnmapBlockDescriptorCount: 0, optimalUnmapGranularity: 0,
    unmapGranularityAlignment: -1, maxWriteSameLength: 0, maxAtomicTransferLength: 0,
    atomicAlignment: 0, atomicTransferLengthGranularity: 0,
    maxAtomicTransferLengthWithAtomicBoundary: 0, maxAtomicBoundarySize: 0,
  };
}

/**
 * VPD B2h Logical Block Provisioning values (SBC-3 r36 §6.5.4 table 178) and LBPME, which
 * READ CAPACITY(16) reports; the SBC provisioning code fills them, both readers use them.
 */
export interface Provisioning {
  /** READ CAPACITY(16) LBPME: logical block provisioning management enabled */
  lbpme: boolean;
  /** THRESHOLD EXPONENT: a threshold set is 2^n logical blocks (0: no thresholds) */
  thresholdExponent: number;
  lbpu: boolean;
  lbpws: boolean;
  lbpws10: boolean;
  /** LBPRZ: deallocated blocks read as zeros */
  lbprz: boolean;
  /** ANC_SUP: ANCHOR supported */
  ancSup: boolean;
  /** PROVISIONING TYPE: 000b full, 001b resource provisioned, 010b thin */
  provisioningType: number;
}

export function defaultProvisioning(): Provisioning {
  return {
    lbpme: false, thresholdExponent: 0, lbpu: false, lbpws: false, lbpws10: false, lbprz: false,
    ancSup: false, provisioningType: 0,
  };
}

export interface VpdPageDef {
  readonly name: string;
  readonly page: number;
  /** Largest page this row builds for this LU and asker, header included (sizes the response buffer). */
  maxLength(lu: LogicalUnit, nexus: NexusRecord, core: Core): number;
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
  maxLength: (lu) => 4 + lu.identity.serial.length,
  build(lu, _nexus, _core, b) {
    writeAscii(b, 4, lu.identity.serial);
    return lu.identity.serial.length;
  },
};

// ---- designation descriptors (SPC-4 §7.8.6.1 table 584) ----

const CODE_SET_BINARY = 0x1;
const CODE_SET_ASCII = 0x2;
const CODE_SET_UTF8 = 0x3;
const ASSOC_LU = 0x00;
const ASSOC_TARGET_PORT = 0x10;
const TYPE_T10_VENDOR_ID = 0x1;
const TYPE_NAA = 0x3;
const TYPE_RELATIVE_TARGET_PORT = 0x4;
const TYPE_TARGET_PORT_GROUP = 0x5;
const TYPE_LOGICAL_UNIT_GROUP = 0x6;
const TYPE_SCSI_NAME_STRING = 0x8;

/**
 * Designator header. PIV=1 and the PROTOCOL IDENTIFIER only for target port designators of a
 * transport that has one (§7.8.6.1: PIV is meaningful for ASSOCIATION 01b/10b only).
 */
function designator(b: Uint8Array, off: number, codeSet: number, assoc: number, type: number, len: number,
  protocolId: number): number {
  const piv = assoc !== ASSOC_LU && protocolId >= 0;
  b[off] = (piv ? protocolId << 4 : 0) | codeSet;
  b[off + 1] = (piv ? 0x80 : 0) | assoc | type;
  b[off + 2] = 0;
  b[off + 3] = len;
  return off + 4;
}

/** SCSI NAME STRING length: UTF-8 with a null terminator, null padded to a multiple of 4 (§7.8.6.11). */
function scsiNameLength(s: string): number {
  return (s.length + 4) & ~3;
}

function scsiName(b: Uint8Array, off: number, assoc: number, name: string, protocolId: number): number {
  const len = scsiNameLength(name);
  const p = designator(b, off, CODE_SET_UTF8, assoc, TYPE_SCSI_NAME_STRING, len, protocolId);
  writeAscii(b, p, name); // the terminator and padding are the zeroed buffer
  return p + len;
}

/** "naa." and the NAA designator in upper-case hexadecimal (SPC-4 §7.8.6.11 table 597). */
function naaName(naa: Uint8Array): string {
  let s = 'naa.';
  for (const x of naa) s += x.toString(16).padStart(2, '0').toUpperCase();
  return s;
}

/** Bytes of the target port designators written by targetPortDesignators. */
export function targetPortDesignatorsLength(nexus: NexusRecord): number {
  return 8 + 8 + (nexus.targetPortName !== '' ? 4 + scsiNameLength(nexus.targetPortName) : 0);
}

/**
 * The designators of the target port a nexus came through (ASSOCIATION 01b): relative target
 * port (§7.8.6.5), target port group (§7.8.6.7), and the port's SCSI name string when the
 * fabric named it. Returns the offset after them. Shared with the REPORT LUNS well known LU.
 * The group is the target's ALUA placement of the port (alua.ts keeps the record's
 * targetPortGroup equal to it; the fabric's ITNexus.targetPortGroup is only the default), so
 * it always agrees with REPORT TARGET PORT GROUPS.
 */
export function targetPortDesignators(b: Uint8Array, off: number, nexus: NexusRecord): number {
  const proto = nexus.protocolId;
  let p = designator(b, off, CODE_SET_BINARY, ASSOC_TARGET_PORT, TYPE_RELATIVE_TARGET_PORT, 4, proto);
  putBe16(b, p + 2, nexus.targetPortId);
  p = designator(b, p + 4, CODE_SET_BINARY, ASSOC_TARGET_PORT, TYPE_TARGET_PORT_GROUP, 4, proto);
  putBe16(b, p + 2, nexus.targetPortGroup);
  p += 4;
  if (nexus.targetPortName !== '') p = scsiName(b, p, ASSOC_TARGET_PORT, nexus.targetPortName, proto);
  return p;
}

/**
 * 83h Device Identification (SPC-4 §7.8.6). Logical unit designators: NAA 6h IEEE Registered
 * Extended (§7.8.6.6.5), T10 vendor id (§7.8.6.4: vendor, product, serial), SCSI name string
 * "naa.…" of the same NAA (§7.8.6.11), logical unit group (§7.8.6.8); then the designators of
 * the target port the asking nexus came through.
 */
const DEVICE_IDENTIFICATION: VpdPageDef = {
  name: 'device identification',
  page: 0x83,
  maxLength: (lu, nexus) => 4 + 20 + (4 + 24 + lu.identity.serial.length) + (4 + 36 + 4) + 8 +
    targetPortDesignatorsLength(nexus),
  build(lu, nexus, _core, b) {
    const id = lu.identity;
    let p = designator(b, 4, CODE_SET_BINARY, ASSOC_LU, TYPE_NAA, 16, -1);
    b.set(id.naa, p);
    p += 16;
    const t10Len = 8 + 16 + id.serial.length;
    p = designator(b, p, CODE_SET_ASCII, ASSOC_LU, TYPE_T10_VENDOR_ID, t10Len, -1);
    writeAscii(b, p, id.vendor);
    writeAscii(b, p + 8, id.product);
    writeAscii(b, p + 24, id.serial);
    p += t10Len;
    p = scsiName(b, p, ASSOC_LU, naaName(id.naa), -1);
    p = designator(b, p, CODE_SET_BINARY, ASSOC_LU, TYPE_LOGICAL_UNIT_GROUP, 4, -1);
    putBe16(b, p + 2, lu.logicalUnitGroup);
    p = targetPortDesignators(b, p + 4, nexus);
    return p - 4;
  },
};

/**
 * 86h Extended INQUIRY Data (SPC-4 §7.8.7, page length 003Ch). Byte 5: HEADSUP, ORDSUP,
 * SIMPSUP (the three task attributes the task set implements; UASK_SUP=0, GROUP_SUP=0,
 * PRIOR_SUP=0). Byte 6: V_SUP=1 — the host page cache is a volatile cache that SYNCHRONIZE
 * CACHE flushes; NV_SUP=0; CRD_SUP=0; WU_SUP=0 (no WRITE LONG / WR_UNCOR). SPT=000b and the
 * protection checks 0 (PROTECT=0), ACTIVATE MICROCODE 00b (no microcode), LUICLR=0,
 * no referrals, no self-test, MAXIMUM SUPPORTED SENSE DATA LENGTH 0 (not reported).
 */
const EXTENDED_INQUIRY: VpdPageDef = {
  name: 'extended INQUIRY data',
  page: 0x86,
  maxLength: () => 64,
  build(_lu, _nexus, _core, b) {
    b[5] = 0x07;
    b[6] = 0x01;
    return 0x3c;
  },
};

/**
 * 87h Mode Page Policy (SPC-4 §7.8.9): one descriptor for page 3Fh / subpage FFh (every mode
 * page): MODE PAGE POLICY 00b (shared by all I_T nexuses), MLUS=0 (per logical unit).
 */
const MODE_PAGE_POLICY: VpdPageDef = {
  name: 'mode page policy',
  page: 0x87,
  maxLength: () => 8,
  build(_lu, _nexus, _core, b) {
    b[4] = 0x3f;
    b[5] = 0xff;
    return 4;
  },
};

/** Distinct relative target port ids the target has seen, ascending, with one nexus of each. */
function portsOf(core: Core, asker: NexusRecord): NexusRecord[] {
  const byId = new Map<number, NexusRecord>();
  byId.set(asker.targetPortId, asker);
  for (const r of core.knownNexuses()) if (!byId.has(r.targetPortId)) byId.set(r.targetPortId, r);
  return [...byId.values()].sort((a, c) => a.targetPortId - c.targetPortId);
}

/**
 * 88h SCSI Ports (SPC-4 §7.8.13): one SCSI port designation descriptor per target port the LU
 * is reachable through (every LU is reachable through every port of this target; the ports
 * are the relative target port ids initiators have come through). No initiator port
 * TransportID. The target port descriptor list holds the port's SCSI name string when the
 * fabric named it (ASSOCIATION 01b), else is empty: the relative port id says it all.
 */
const SCSI_PORTS: VpdPageDef = {
  name: 'SCSI ports',
  page: 0x88,
  maxLength(_lu, nexus, core) {
    let n = 4;
    for (const r of portsOf(core, nexus)) n += 12 + (r.targetPortName !== '' ? 4 + scsiNameLength(r.targetPortName) : 0);
    return n;
  },
  build(_lu, nexus, core, b) {
    let p = 4;
    for (const r of portsOf(core, nexus)) {
      putBe16(b, p + 2, r.targetPortId);
      // bytes 6-7 INITIATOR PORT TRANSPORTID LENGTH 0; bytes 8-9 reserved
      const descStart = p + 12;
      let q = descStart;
      if (r.targetPortName !== '') q = scsiName(b, q, ASSOC_TARGET_PORT, r.targetPortName, r.protocolId);
      putBe16(b, p + 10, q - descStart);
      p = q;
    }
    return p - 4;
  },
};

/**
 * B0h Block Limits (SBC-3 r36 §6.5.3, page length 3Ch). MAXIMUM TRANSFER LENGTH is what
 * READ/WRITE enforce (ScsiTarget maxTransferBytes); OPTIMAL TRANSFER LENGTH GRANULARITY is the
 * 4 KiB host page (smaller or unaligned writes cost a read-modify-write). Everything else comes
 * from lu.blockLimits, which the commands that enforce those limits read too.
 */
const BLOCK_LIMITS: VpdPageDef = {
  name: 'block limits',
  page: 0xb0,
  maxLength: () => 64,
  build(lu, _nexus, core, b) {
    const l = lu.blockLimits;
    b[4] = l.wsnz ? 0x01 : 0x00;
    b[5] = l.maxCompareAndWriteLength & 0xff;
    putBe16(b, 6, Math.max(1, 4096 / lu.blockSize));
    putBe32(b, 8, Math.floor(core.maxTransferBytes / lu.blockSize));
    putBe32(b, 12, l.optimalTransferLength);
    putBe32(b, 16, l.maxPrefetchLength);
    putBe32(b, 20, l.maxUnmapLbaCount);
    putBe32(b, 24, l.maxUnmapBlockDescriptorCount);
    putBe32(b, 28, l.optimalUnmapGranularity);
    if (l.unmapGranularityAlignment >= 0) putBe32(b, 32, (0x80000000 | l.unmapGranularityAlignment) >>> 0);
    putBe64(b, 36, l.maxWriteSameLength);
    putBe32(b, 44, l.maxAtomicTransferLength);
    putBe32(b, 48, l.atomicAlignment);
    putBe32(b, 52, l.atomicTransferLengthGranularity);
    putBe32(b, 56, l.maxAtomicTransferLengthWithAtomicBoundary);
    putBe32(b, 60, l.maxAtomicBoundarySize);
    return 0x3c;
  },
};

/** B1h Block Device Characteristics (SBC-3 r36 §6.5.2): MEDIUM ROTATION RATE 0001h = non-rotating. */
const BLOCK_DEVICE_CHARACTERISTICS: VpdPageDef = {
  name: 'block device characteristics',
  page: 0xb1,
  maxLength: () => 64,
  build(_lu, _nexus, _core, b) {
    putBe16(b, 4, 0x0001);
    return 0x3c;
  },
};

/**
 * B2h Logical Block Provisioning (SBC-3 r36 §6.5.4, page length 0004h with DP=0) from
 * lu.provisioning. A read-only LU never advertises unmapping (SBC-3 §4.7.3.4).
 */
const LOGICAL_BLOCK_PROVISIONING: VpdPageDef = {
  name: 'logical block provisioning',
  page: 0xb2,
  maxLength: () => 8,
  build(lu, _nexus, _core, b) {
    const p = lu.provisioning;
    const unmap = !lu.readOnly;
    b[4] = p.thresholdExponent & 0xff;
    b[5] = (unmap && p.lbpu ? 0x80 : 0) | (unmap && p.lbpws ? 0x40 : 0) | (unmap && p.lbpws10 ? 0x20 : 0) |
      (p.lbprz ? 0x04 : 0) | (p.ancSup ? 0x02 : 0);
    b[6] = p.provisioningType & 0x07;
    return 0x0004;
  },
};

/** 8Fh Third-party Copy (SPC-4 r37 §7.8.17): the copy manager's descriptors, built by xcopy.ts. */
const THIRD_PARTY_COPY: VpdPageDef = {
  name: 'third-party copy',
  page: 0x8f,
  maxLength: () => THIRD_PARTY_COPY_VPD_LENGTH,
  build(lu, _nexus, _core, b) {
    return thirdPartyCopyVpdPage(lu, b);
  },
};

/** 00h Supported VPD Pages (SPC-4 §7.8.14), listing this table in ascending order. */
const SUPPORTED_PAGES: VpdPageDef = {
  name: 'supported VPD pages',
  page: 0x00,
  maxLength: () => 4 + VPD_PAGES.length,
  build(_lu, _nexus, _core, b) {
    for (let i = 0; i < VPD_PAGES.length; i++) b[4 + i] = VPD_PAGES[i].page;
    return VPD_PAGES.length;
  },
};

/** Ascending page code order (SPC-4 §7.8.14: the list is in ascending order). */
export const VPD_PAGES: readonly VpdPageDef[] = Object.freeze([
  SUPPORTED_PAGES,
  UNIT_SERIAL,
  DEVICE_IDENTIFICATION,
  EXTENDED_INQUIRY,
  MODE_PAGE_POLICY,
  SCSI_PORTS,
  THIRD_PARTY_COPY,
  BLOCK_LIMITS,
  BLOCK_DEVICE_CHARACTERISTICS,
  LOGICAL_BLOCK_PROVISIONING,
]);

for (let i = 1; i < VPD_PAGES.length; i++) {
  if (VPD_PAGES[i].page <= VPD_PAGES[i - 1].page) throw new Error('VPD table: pages out of order');
}

export function findVpdPage(page: number): VpdPageDef | null {
  for (const p of VPD_PAGES) if (p.page === page) return p;
  return null;
}
