// THE opcode table: one row per (operation code, service action). Nothing else in the core
// lists opcodes; the dispatcher, the gates and (later) REPORT SUPPORTED OPERATION CODES all
// read these rows.
import { DataDirection, Opcode, ServiceActionIn16 } from './constants';
import { AluaAccess, CmdFlag, CommandDef, PrAccess } from './command-def';
import * as spc from './spc';
import * as sbc from './sbc';

export type { CommandDef } from './command-def';

interface Row {
  name: string;
  opcode: number;
  sa?: { value: number; byte: number; mask: number };
  /** CDB USAGE DATA, full CDB length (see CommandDef.usage) */
  usage: number[];
  direction: DataDirection;
  flags: number;
  pr: PrAccess;
  alua: AluaAccess;
  parse: CommandDef['parse'];
  execute: CommandDef['execute'];
}

const { IN, OUT, NONE } = DataDirection;
const ALLOC = CmdFlag.ALLOCATION_LENGTH;
const TARGET_LEVEL = CmdFlag.UA_EXEMPT | CmdFlag.NULL_LU_OK | CmdFlag.ALLOCATION_LENGTH;

// Usage masks. The CONTROL byte (last) is 00h: NACA (ACA not supported, NORMACA=0), LINK
// (linked commands are obsolete) and the vendor bits are all rejected (V7.2).
// READ(10/12/16) byte 1: RDPROTECT, DPO, FUA, RARC, FUA_NV (E0|10|08|04|02); WRITE: no RARC.
// GROUP NUMBER (bits 4-0) is accepted and ignored: there is no grouping function.
const ROWS: Row[] = [
  {
    name: 'TEST UNIT READY', opcode: Opcode.TEST_UNIT_READY,
    usage: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED, alua: AluaAccess.ACTIVE,
    parse: spc.parseNothing, execute: spc.executeNothing,
  },
  {
    name: 'REQUEST SENSE', opcode: Opcode.REQUEST_SENSE,
    usage: [0x03, 0x01, 0x00, 0x00, 0xff, 0x00],
    direction: IN, flags: TARGET_LEVEL, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: spc.parseRequestSense, execute: spc.executeRequestSense,
  },
  {
    name: 'READ(6)', opcode: Opcode.READ_6,
    usage: [0x08, 0x1f, 0xff, 0xff, 0xff, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeRead,
  },
  {
    name: 'WRITE(6)', opcode: Opcode.WRITE_6,
    usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeWrite,
  },
  {
    name: 'INQUIRY', opcode: Opcode.INQUIRY,
    usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0x00],
    direction: IN, flags: TARGET_LEVEL, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: spc.parseInquiry, execute: spc.executeInquiry,
  },
  {
    name: 'MODE SENSE(6)', opcode: Opcode.MODE_SENSE_6,
    usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.STANDBY,
    parse: spc.parseModeSense, execute: spc.executeModeSense,
  },
  {
    name: 'START STOP UNIT', opcode: Opcode.START_STOP_UNIT,
    usage: [0x1b, 0x01, 0x00, 0x0f, 0xf7, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.START_STOP, alua: AluaAccess.ACTIVE,
    parse: sbc.parseStartStopUnit, execute: sbc.executeStartStopUnit,
  },
  {
    name: 'READ CAPACITY(10)', opcode: Opcode.READ_CAPACITY_10,
    usage: [0x25, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadCapacity10, execute: sbc.executeReadCapacity10,
  },
  {
    name: 'READ(10)', opcode: Opcode.READ_10,
    usage: [0x28, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeRead,
  },
  {
    name: 'WRITE(10)', opcode: Opcode.WRITE_10,
    usage: [0x2a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeWrite,
  },
  {
    // byte 1: IMMED, and bit 2 (SYNC_NV in SBC-3 drafts, obsolete later) accepted and ignored.
    name: 'SYNCHRONIZE CACHE(10)', opcode: Opcode.SYNCHRONIZE_CACHE_10,
    usage: [0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: NONE, flags: CmdFlag.FLUSHES, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseSynchronizeCache, execute: sbc.executeSynchronizeCache,
  },
  {
    name: 'MODE SENSE(10)', opcode: Opcode.MODE_SENSE_10,
    usage: [0x5a, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.STANDBY,
    parse: spc.parseModeSense, execute: spc.executeModeSense,
  },
  {
    name: 'READ(16)', opcode: Opcode.READ_16,
    usage: [0x88, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeRead,
  },
  {
    name: 'WRITE(16)', opcode: Opcode.WRITE_16,
    usage: [0x8a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeWrite,
  },
  {
    name: 'SYNCHRONIZE CACHE(16)', opcode: Opcode.SYNCHRONIZE_CACHE_16,
    usage: [0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: NONE, flags: CmdFlag.FLUSHES, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseSynchronizeCache, execute: sbc.executeSynchronizeCache,
  },
  {
    // SERVICE ACTION IN(16) / READ CAPACITY(16): byte 1 bits 4-0 are the service action.
    name: 'READ CAPACITY(16)', opcode: Opcode.SERVICE_ACTION_IN_16,
    sa: { value: ServiceActionIn16.READ_CAPACITY_16, byte: 1, mask: 0x1f },
    usage: [0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadCapacity16, execute: sbc.executeReadCapacity16,
  },
  {
    name: 'REPORT LUNS', opcode: Opcode.REPORT_LUNS,
    usage: [0xa0, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: TARGET_LEVEL, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: spc.parseReportLuns, execute: spc.executeReportLuns,
  },
  {
    name: 'READ(12)', opcode: Opcode.READ_12,
    usage: [0xa8, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeRead,
  },
  {
    name: 'WRITE(12)', opcode: Opcode.WRITE_12,
    usage: [0xaa, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeWrite,
  },
];

function freezeRow(r: Row): CommandDef {
  if (r.usage[0] !== r.opcode) throw new Error(`opcode table: ${r.name} usage byte 0 is not the opcode`);
  return Object.freeze({
    name: r.name,
    opcode: r.opcode,
    serviceAction: r.sa ? r.sa.value : -1,
    saByte: r.sa ? r.sa.byte : 0,
    saMask: r.sa ? r.sa.mask : 0,
    cdbLength: r.usage.length,
    usage: Uint8Array.from(r.usage),
    direction: r.direction,
    flags: r.flags,
    pr: r.pr,
    alua: r.alua,
    parse: r.parse,
    execute: r.execute,
  });
}

/** Every supported command, in opcode order. */
export const COMMANDS: readonly CommandDef[] = Object.freeze(ROWS.map(freezeRow));

/** Marker results of lookupCommand. */
export const UNKNOWN_OPCODE = 0;
export const UNKNOWN_SERVICE_ACTION = 1;

interface SaIndex {
  byte: number;
  mask: number;
  actions: Map<number, CommandDef>;
}

const BY_OPCODE: (CommandDef | SaIndex | undefined)[] = new Array(256);
for (const d of COMMANDS) {
  if (d.serviceAction < 0) {
    if (BY_OPCODE[d.opcode] !== undefined) throw new Error(`opcode table: duplicate ${d.name}`);
    BY_OPCODE[d.opcode] = d;
    continue;
  }
  let idx = BY_OPCODE[d.opcode] as SaIndex | undefined;
  if (idx === undefined) {
    idx = { byte: d.saByte, mask: d.saMask, actions: new Map() };
    BY_OPCODE[d.opcode] = idx;
  }
  if (idx.actions.has(d.serviceAction)) throw new Error(`opcode table: duplicate ${d.name}`);
  idx.actions.set(d.serviceAction, d);
}

/** The row for a CDB, or UNKNOWN_OPCODE / UNKNOWN_SERVICE_ACTION. */
export function lookupCommand(cdb: Uint8Array): CommandDef | typeof UNKNOWN_OPCODE | typeof UNKNOWN_SERVICE_ACTION {
  const e = BY_OPCODE[cdb[0]];
  if (e === undefined) return UNKNOWN_OPCODE;
  if ('execute' in e) return e;
  return e.actions.get(cdb[e.byte] & e.mask) ?? UNKNOWN_SERVICE_ACTION;
}

/** Byte and bit pointer of the service action field of an opcode with service actions. */
export function serviceActionField(opcode: number): { byte: number; bit: number } {
  const e = BY_OPCODE[opcode];
  if (e === undefined || 'execute' in e) return { byte: 1, bit: 4 };
  return { byte: e.byte, bit: 31 - Math.clz32(e.mask) };
}

/**
 * CDB length implied by the operation code group (SPC-4 §4.3.2 table 4): group 0 → 6,
 * groups 1 and 2 → 10, group 4 → 16, group 5 → 12. Group 3 (reserved, and 7Fh variable
 * length, which we do not support) and groups 6-7 (vendor specific) → -1 (QEMU CVE-2015-5158).
 */
export function groupCdbLength(opcode: number): number {
  switch (opcode >>> 5) {
    case 0: return 6;
    case 1: case 2: return 10;
    case 4: return 16;
    case 5: return 12;
    default: return -1;
  }
}

/**
 * Reserved-bit check against the usage data (V7.2). Returns the first offending byte and its
 * most significant offending bit, or null. The opcode byte and the service action field are
 * not checked (lookup already matched them).
 */
export function findReservedBit(def: CommandDef, cdb: Uint8Array): { byte: number; bit: number } | null {
  const usage = def.usage;
  for (let i = 1; i < usage.length; i++) {
    let allowed = usage[i];
    if (def.serviceAction >= 0 && i === def.saByte) allowed = (allowed & ~def.saMask) | def.saMask;
    const bad = cdb[i] & ~allowed & 0xff;
    if (bad !== 0) return { byte: i, bit: 31 - Math.clz32(bad) };
  }
  return null;
}
