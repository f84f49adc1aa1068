// THE opcode table: one row per (operation code, service action). Nothing else in the core
// lists opcodes; the dispatcher, the gates and (later) REPORT SUPPORTED OPERATION CODES all
// read these rows.
import { DataDirection, MaintenanceIn, Opcode, ServiceActionIn16 } from './constants';
import { AluaAccess, CmdFlag, CommandDef, PrAccess } from './command-def';
import * as spc from './spc';
import * as sbc from './sbc';
import * as sbcVerify from './sbc-verify';
import * as sbcWriteSame from './sbc-write-same';
import * as sbcUnmap from './sbc-unmap';
import * as sbcCaw from './sbc-caw';
import * as sbcLbaStatus from './sbc-lba-status';
import * as sbcMisc from './sbc-misc';
import * as spcMode from './spc-mode';
import * as spcReport from './spc-report';
import * as logPages from './log-pages';
import * as xcopy from './xcopy';
import * as prIn from './pr-in';
import * as prOut from './pr-out';
import * as prSpc2 from './pr-spc2';
import { PrInServiceAction, PrOutServiceAction } from './persistent-reservations';
import * as alua from './alua';

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
const TARGET_LEVEL = CmdFlag.UA_EXEMPT | CmdFlag.NULL_LU_OK | CmdFlag.ALLOCATION_LENGTH | CmdFlag.WELL_KNOWN_LU_OK;

// Usage masks. The CONTROL byte (last) is 00h: NACA (ACA not supported, NORMACA=0), LINK
// (linked commands are obsolete) and the vendor bits are all rejected (V7.2).
// READ(10/12/16) byte 1: RDPROTECT, DPO, FUA, RARC, FUA_NV (E0|10|08|04|02); WRITE: no RARC.
// GROUP NUMBER (bits 4-0) is accepted and ignored: there is no grouping function.
const ROWS: Row[] = [
  {
    name: 'TEST UNIT READY', opcode: Opcode.TEST_UNIT_READY,
    usage: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.WELL_KNOWN_LU_OK, pr: PrAccess.TEST_UNIT_READY, alua: AluaAccess.ACTIVE,
    parse: spc.parseNothing, execute: spc.executeNothing,
  },
  {
    name: 'REQUEST SENSE', opcode: Opcode.REQUEST_SENSE,
    usage: [0x03, 0x01, 0x00, 0x00, 0xff, 0x00],
    direction: IN, flags: TARGET_LEVEL, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: spc.parseRequestSense, execute: spc.executeRequestSense,
  },
  {
    // byte 1: FMTPINFO, LONGLIST, FMTDATA, CMPLST, DEFECT LIST FORMAT; byte 2 vendor specific and
    // bytes 3-4 obsolete are rejected (SBC-3 r36 §5.3.1 table 33).
    name: 'FORMAT UNIT', opcode: Opcode.FORMAT_UNIT,
    usage: [0x04, 0xff, 0x00, 0x00, 0x00, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcMisc.parseFormatUnit, execute: sbcMisc.executeFormatUnit,
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
    // byte 1: PF, SP (SPC-4 §6.9).
    name: 'MODE SELECT(6)', opcode: Opcode.MODE_SELECT_6,
    usage: [0x15, 0x11, 0x00, 0x00, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.CONFLICT, alua: AluaAccess.STANDBY,
    parse: spcMode.parseModeSelect, execute: spcMode.executeModeSelect,
  },
  {
    // SPC-2 r20 §7.22 / §7.17: byte 1 (3RDPTY, THIRD-PARTY DEVICE ID, obsolete EXTENT) and the
    // obsolete bytes 2-4 are 0 in the usage data: logical unit reservations only (pr-spc2.ts).
    name: 'RESERVE(6)', opcode: Opcode.RESERVE_6,
    usage: [0x16, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.RESERVE_RELEASE, alua: AluaAccess.ACTIVE,
    parse: prSpc2.parseReserveRelease, execute: prSpc2.executeReserve,
  },
  {
    name: 'RELEASE(6)', opcode: Opcode.RELEASE_6,
    usage: [0x17, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.RESERVE_RELEASE, alua: AluaAccess.ACTIVE,
    parse: prSpc2.parseReserveRelease, execute: prSpc2.executeRelease,
  },
  {
    name: 'MODE SENSE(6)', opcode: Opcode.MODE_SENSE_6,
    usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.STANDBY,
    parse: spcMode.parseModeSense, execute: spcMode.executeModeSense,
  },
  {
    name: 'START STOP UNIT', opcode: Opcode.START_STOP_UNIT,
    usage: [0x1b, 0x01, 0x00, 0x0f, 0xf7, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.START_STOP, alua: AluaAccess.ACTIVE,
    parse: sbc.parseStartStopUnit, execute: sbc.executeStartStopUnit,
  },
  {
    // byte 4: PREVENT (bits 1-0).
    name: 'PREVENT ALLOW MEDIUM REMOVAL', opcode: Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL,
    usage: [0x1e, 0x00, 0x00, 0x00, 0x03, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.PREVENT_ALLOW, alua: AluaAccess.ACTIVE,
    parse: spc.parsePreventAllowMediumRemoval, execute: spc.executeNothing,
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
    // byte 1: WRPROTECT, DPO, BYTCHK (bits 2-1) (SBC-3 r36 §5.36).
    name: 'WRITE AND VERIFY(10)', opcode: Opcode.WRITE_AND_VERIFY_10,
    usage: [0x2e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseWriteAndVerify, execute: sbcVerify.executeWriteAndVerify,
  },
  {
    // byte 1: VRPROTECT, DPO, BYTCHK (bits 2-1) (SBC-3 r36 §5.41).
    name: 'VERIFY(10)', opcode: Opcode.VERIFY_10,
    usage: [0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseVerify, execute: sbcVerify.executeVerify,
  },
  {
    // byte 1: IMMED (SBC-3 r36 §5.11).
    name: 'PRE-FETCH(10)', opcode: Opcode.PRE_FETCH_10,
    usage: [0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcMisc.parsePrefetch, execute: sbcMisc.executePrefetch,
  },
  {
    // byte 1: IMMED, and bit 2 (SYNC_NV in SBC-3 drafts, obsolete later) accepted and ignored.
    name: 'SYNCHRONIZE CACHE(10)', opcode: Opcode.SYNCHRONIZE_CACHE_10,
    usage: [0x35, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: NONE, flags: CmdFlag.FLUSHES, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseSynchronizeCache, execute: sbc.executeSynchronizeCache,
  },
  {
    // byte 1: WRPROTECT, ANCHOR, UNMAP; obsolete PBDATA/LBDATA rejected (SBC-3 r36 §5.44).
    name: 'WRITE SAME(10)', opcode: Opcode.WRITE_SAME_10,
    usage: [0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcWriteSame.parseWriteSame, execute: sbcWriteSame.executeWriteSame,
  },
  {
    // byte 1: ANCHOR; byte 6 GROUP NUMBER; 7-8 PARAMETER LIST LENGTH (SBC-3 r36 §5.28).
    name: 'UNMAP', opcode: Opcode.UNMAP,
    usage: [0x42, 0x01, 0x00, 0x00, 0x00, 0x00, 0x1f, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcUnmap.parseUnmap, execute: sbcUnmap.executeUnmap,
  },
  {
    // byte 1: SP (PPC is obsolete); byte 2: PC, PAGE CODE; 5-6 PARAMETER POINTER (SPC-4 §6.8).
    name: 'LOG SENSE', opcode: Opcode.LOG_SENSE,
    usage: [0x4d, 0x01, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED, alua: AluaAccess.STANDBY,
    parse: logPages.parseLogSense, execute: logPages.executeLogSense,
  },
  {
    name: 'MODE SELECT(10)', opcode: Opcode.MODE_SELECT_10,
    usage: [0x55, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.CONFLICT, alua: AluaAccess.STANDBY,
    parse: spcMode.parseModeSelect, execute: spcMode.executeModeSelect,
  },
  {
    // SPC-2 r20 §7.21 / §7.16: 3RDPTY, LONGID, THIRD-PARTY DEVICE ID and PARAMETER LIST LENGTH
    // (third-party reservations only) are 0 in the usage data (pr-spc2.ts).
    name: 'RESERVE(10)', opcode: Opcode.RESERVE_10,
    usage: [0x56, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.RESERVE_RELEASE, alua: AluaAccess.ACTIVE,
    parse: prSpc2.parseReserveRelease, execute: prSpc2.executeReserve,
  },
  {
    name: 'RELEASE(10)', opcode: Opcode.RELEASE_10,
    usage: [0x57, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.RESERVE_RELEASE, alua: AluaAccess.ACTIVE,
    parse: prSpc2.parseReserveRelease, execute: prSpc2.executeRelease,
  },
  {
    name: 'MODE SENSE(10)', opcode: Opcode.MODE_SENSE_10,
    usage: [0x5a, 0x18, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.STANDBY,
    parse: spcMode.parseModeSense, execute: spcMode.executeModeSense,
  },
  // PERSISTENT RESERVE IN (SPC-4 r37 §6.15, pr-in.ts): byte 1 bits 4-0 the service action, bytes
  // 7-8 ALLOCATION LENGTH. Allowed in the standby state (SPC-4 §5.15.2.4.4).
  ...([
    ['READ KEYS', PrInServiceAction.READ_KEYS, prIn.executeReadKeys],
    ['READ RESERVATION', PrInServiceAction.READ_RESERVATION, prIn.executeReadReservation],
    ['REPORT CAPABILITIES', PrInServiceAction.REPORT_CAPABILITIES, prIn.executeReportCapabilities],
    ['READ FULL STATUS', PrInServiceAction.READ_FULL_STATUS, prIn.executeReadFullStatus],
  ] as const).map(([sa, value, execute]): Row => ({
    name: `PERSISTENT RESERVE IN(${sa})`, opcode: Opcode.PERSISTENT_RESERVE_IN,
    sa: { value, byte: 1, mask: 0x1f },
    usage: [0x5e, value, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.PERSISTENT_RESERVE_IN, alua: AluaAccess.STANDBY,
    parse: prIn.parsePrIn, execute,
  })),
  // PERSISTENT RESERVE OUT (SPC-4 r37 §6.16, pr-out.ts): byte 2 SCOPE and TYPE (evaluated by the
  // service actions that use them, ignored by the others: all bits used), bytes 5-8 PARAMETER
  // LIST LENGTH. Not WRITES_MEDIUM: reservations work on write-protected LUs too.
  ...([
    ['REGISTER', PrOutServiceAction.REGISTER],
    ['RESERVE', PrOutServiceAction.RESERVE],
    ['RELEASE', PrOutServiceAction.RELEASE],
    ['CLEAR', PrOutServiceAction.CLEAR],
    ['PREEMPT', PrOutServiceAction.PREEMPT],
    ['PREEMPT AND ABORT', PrOutServiceAction.PREEMPT_AND_ABORT],
    ['REGISTER AND IGNORE EXISTING KEY', PrOutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY],
    ['REGISTER AND MOVE', PrOutServiceAction.REGISTER_AND_MOVE],
  ] as const).map(([sa, value]): Row => ({
    name: `PERSISTENT RESERVE OUT(${sa})`, opcode: Opcode.PERSISTENT_RESERVE_OUT,
    sa: { value, byte: 1, mask: 0x1f },
    usage: [0x5f, value, 0xff, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.PERSISTENT_RESERVE_OUT, alua: AluaAccess.STANDBY,
    parse: prOut.parsePrOut, execute: prOut.executePrOut,
  })),
  {
    // SPC-4 THIRD-PARTY COPY OUT / IN (SPC-3 EXTENDED COPY / RECEIVE COPY RESULTS), xcopy.ts.
    // Not WRITES_MEDIUM: the LU receiving the command may be only the copy source; the copy
    // manager checks write protection of each destination itself.
    name: 'EXTENDED COPY(LID1)', opcode: Opcode.EXTENDED_COPY,
    sa: { value: xcopy.ThirdPartyCopyOut.EXTENDED_COPY_LID1, byte: 1, mask: 0x1f },
    usage: [0x83, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: xcopy.parseExtendedCopy, execute: xcopy.executeExtendedCopy,
  },
  {
    name: 'RECEIVE COPY STATUS(LID1)', opcode: Opcode.RECEIVE_COPY_RESULTS,
    sa: { value: xcopy.ThirdPartyCopyIn.COPY_STATUS, byte: 1, mask: 0x1f },
    usage: [0x84, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: xcopy.parseReceiveCopyResults, execute: xcopy.executeCopyStatus,
  },
  {
    // byte 2 is reserved here: operating parameters belong to no list identifier
    name: 'RECEIVE COPY OPERATING PARAMETERS', opcode: Opcode.RECEIVE_COPY_RESULTS,
    sa: { value: xcopy.ThirdPartyCopyIn.OPERATING_PARAMETERS, byte: 1, mask: 0x1f },
    usage: [0x84, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: xcopy.parseReceiveCopyResults, execute: xcopy.executeCopyOperatingParameters,
  },
  {
    name: 'RECEIVE COPY FAILURE DETAILS(LID1)', opcode: Opcode.RECEIVE_COPY_RESULTS,
    sa: { value: xcopy.ThirdPartyCopyIn.FAILED_SEGMENT_DETAILS, byte: 1, mask: 0x1f },
    usage: [0x84, 0x04, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: xcopy.parseReceiveCopyResults, execute: xcopy.executeFailedSegmentDetails,
  },
  {
    name: 'READ(16)', opcode: Opcode.READ_16,
    usage: [0x88, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: IN, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeRead,
  },
  {
    // byte 1: WRPROTECT, DPO, FUA, FUA_NV; 10-12 reserved; 13 NUMBER OF LOGICAL BLOCKS (SBC-3 r36 §5.2).
    name: 'COMPARE AND WRITE', opcode: Opcode.COMPARE_AND_WRITE,
    usage: [0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcCaw.parseCompareAndWrite, execute: sbcCaw.executeCompareAndWrite,
  },
  {
    name: 'WRITE(16)', opcode: Opcode.WRITE_16,
    usage: [0x8a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseReadWrite, execute: sbc.executeWrite,
  },
  {
    name: 'WRITE AND VERIFY(16)', opcode: Opcode.WRITE_AND_VERIFY_16,
    usage: [0x8e, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseWriteAndVerify, execute: sbcVerify.executeWriteAndVerify,
  },
  {
    name: 'VERIFY(16)', opcode: Opcode.VERIFY_16,
    usage: [0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseVerify, execute: sbcVerify.executeVerify,
  },
  {
    name: 'PRE-FETCH(16)', opcode: Opcode.PRE_FETCH_16,
    usage: [0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: NONE, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcMisc.parsePrefetch, execute: sbcMisc.executePrefetch,
  },
  {
    name: 'SYNCHRONIZE CACHE(16)', opcode: Opcode.SYNCHRONIZE_CACHE_16,
    usage: [0x91, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: NONE, flags: CmdFlag.FLUSHES, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbc.parseSynchronizeCache, execute: sbc.executeSynchronizeCache,
  },
  {
    // byte 1: WRPROTECT, ANCHOR, UNMAP, NDOB; obsolete PBDATA/LBDATA rejected (SBC-3 r36 §5.45).
    name: 'WRITE SAME(16)', opcode: Opcode.WRITE_SAME_16,
    usage: [0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcWriteSame.parseWriteSame, execute: sbcWriteSame.executeWriteSame,
  },
  {
    // byte 1: WRPROTECT, DPO, FUA; 10-11 ATOMIC BOUNDARY; 12-13 TRANSFER LENGTH (SBC-4 §5.48).
    name: 'WRITE ATOMIC(16)', opcode: Opcode.WRITE_ATOMIC_16,
    usage: [0x9c, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcMisc.parseWriteAtomic, execute: sbcMisc.executeWriteAtomic,
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
    // SERVICE ACTION IN(16) / GET LBA STATUS: 2-9 STARTING LBA, 10-13 ALLOCATION LENGTH (SBC-3 r36 §5.7).
    name: 'GET LBA STATUS', opcode: Opcode.SERVICE_ACTION_IN_16,
    sa: { value: ServiceActionIn16.GET_LBA_STATUS, byte: 1, mask: 0x1f },
    usage: [0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcLbaStatus.parseGetLbaStatus, execute: sbcLbaStatus.executeGetLbaStatus,
  },
  {
    name: 'REPORT LUNS', opcode: Opcode.REPORT_LUNS,
    usage: [0xa0, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: TARGET_LEVEL, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: spc.parseReportLuns, execute: spc.executeReportLuns,
  },
  {
    // byte 1: PARAMETER DATA FORMAT (bits 7-5) with the service action; 6-9 ALLOCATION LENGTH (SPC-4 §6.37).
    name: 'REPORT TARGET PORT GROUPS', opcode: Opcode.MAINTENANCE_IN,
    sa: { value: alua.MAINTENANCE_IN_REPORT_TARGET_PORT_GROUPS, byte: 1, mask: 0x1f },
    usage: [0xa3, 0xea, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED, alua: AluaAccess.ALWAYS,
    parse: alua.parseReportTargetPortGroups, execute: alua.executeReportTargetPortGroups,
  },
  {
    // MAINTENANCE IN: byte 1 bits 4-0 are the service action; byte 2 RCTD, REPORTING OPTIONS.
    name: 'REPORT SUPPORTED OPERATION CODES', opcode: Opcode.MAINTENANCE_IN,
    sa: { value: MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES, byte: 1, mask: 0x1f },
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.UNAVAILABLE,
    parse: spcReport.parseReportSupportedOperationCodes, execute: spcReport.executeReportSupportedOperationCodes,
  },
  {
    // byte 2: REPCD.
    name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', opcode: Opcode.MAINTENANCE_IN,
    sa: { value: MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS, byte: 1, mask: 0x1f },
    usage: [0xa3, 0x0d, 0x80, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: IN, flags: ALLOC, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.UNAVAILABLE,
    parse: spcReport.parseReportSupportedTmfs, execute: spcReport.executeReportSupportedTmfs,
  },
  {
    // MAINTENANCE OUT: byte 1 bits 4-0 the service action; 6-9 PARAMETER LIST LENGTH (SPC-4 §6.45).
    // A state change: conflicts with a reservation held by another initiator (SPC-4 table 45).
    name: 'SET TARGET PORT GROUPS', opcode: alua.OPCODE_MAINTENANCE_OUT,
    sa: { value: alua.MAINTENANCE_OUT_SET_TARGET_PORT_GROUPS, byte: 1, mask: 0x1f },
    usage: [0xa4, 0x0a, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.CONFLICT, alua: AluaAccess.UNAVAILABLE,
    parse: alua.parseSetTargetPortGroups, execute: alua.executeSetTargetPortGroups,
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
  {
    name: 'WRITE AND VERIFY(12)', opcode: Opcode.WRITE_AND_VERIFY_12,
    usage: [0xae, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.WRITES_MEDIUM, pr: PrAccess.CONFLICT, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseWriteAndVerify, execute: sbcVerify.executeWriteAndVerify,
  },
  {
    name: 'VERIFY(12)', opcode: Opcode.VERIFY_12,
    usage: [0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
    direction: OUT, flags: CmdFlag.NONE, pr: PrAccess.ALLOWED_WRITE_EXCLUSIVE, alua: AluaAccess.ACTIVE,
    parse: sbcVerify.parseVerify, execute: sbcVerify.executeVerify,
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
