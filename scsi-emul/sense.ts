// The one table of named sense conditions, the typed error handlers throw, and the one
// function that turns a condition into sense bytes.
import { MAX_SENSE_LENGTH, SenseKey } from './constants';

export interface SenseCondition {
  readonly name: string;
  readonly key: SenseKey;
  readonly asc: number;
  readonly ascq: number;
}

function cond(name: string, key: SenseKey, asc: number, ascq: number): SenseCondition {
  return Object.freeze({ name, key, asc, ascq });
}

/**
 * Named sense conditions (SPC-4 annex D.2, "ASC and ASCQ assignments"). Every CHECK CONDITION
 * the core reports comes from this table; nothing else spells out ASC/ASCQ numbers.
 */
export const Sense = Object.freeze({
  NO_ADDITIONAL_SENSE: cond('NO_ADDITIONAL_SENSE', SenseKey.NO_SENSE, 0x00, 0x00),

  LOGICAL_UNIT_NOT_READY: cond('LOGICAL_UNIT_NOT_READY', SenseKey.NOT_READY, 0x04, 0x00),
  LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED: cond(
    'LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED', SenseKey.NOT_READY, 0x04, 0x02),
  LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION: cond(
    'LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION', SenseKey.NOT_READY, 0x04, 0x0a),
  LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE: cond(
    'LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE', SenseKey.NOT_READY, 0x04, 0x0b),
  LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE: cond(
    'LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE', SenseKey.NOT_READY, 0x04, 0x0c),
  /** the ALUA offline state (alua.ts) */
  LOGICAL_UNIT_NOT_READY_OFFLINE: cond('LOGICAL_UNIT_NOT_READY_OFFLINE', SenseKey.NOT_READY, 0x04, 0x12),

  WRITE_ERROR: cond('WRITE_ERROR', SenseKey.MEDIUM_ERROR, 0x0c, 0x00),
  UNRECOVERED_READ_ERROR: cond('UNRECOVERED_READ_ERROR', SenseKey.MEDIUM_ERROR, 0x11, 0x00),

  LOGICAL_UNIT_COMMUNICATION_FAILURE: cond('LOGICAL_UNIT_COMMUNICATION_FAILURE', SenseKey.HARDWARE_ERROR, 0x08, 0x00),
  INTERNAL_TARGET_FAILURE: cond('INTERNAL_TARGET_FAILURE', SenseKey.HARDWARE_ERROR, 0x44, 0x00),

  PARAMETER_LIST_LENGTH_ERROR: cond('PARAMETER_LIST_LENGTH_ERROR', SenseKey.ILLEGAL_REQUEST, 0x1a, 0x00),
  INVALID_COMMAND_OPERATION_CODE: cond('INVALID_COMMAND_OPERATION_CODE', SenseKey.ILLEGAL_REQUEST, 0x20, 0x00),
  LBA_OUT_OF_RANGE: cond('LBA_OUT_OF_RANGE', SenseKey.ILLEGAL_REQUEST, 0x21, 0x00),
  INVALID_FIELD_IN_CDB: cond('INVALID_FIELD_IN_CDB', SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
  LOGICAL_UNIT_NOT_SUPPORTED: cond('LOGICAL_UNIT_NOT_SUPPORTED', SenseKey.ILLEGAL_REQUEST, 0x25, 0x00),
  INVALID_FIELD_IN_PARAMETER_LIST: cond('INVALID_FIELD_IN_PARAMETER_LIST', SenseKey.ILLEGAL_REQUEST, 0x26, 0x00),
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: cond(
    'INVALID_RELEASE_OF_PERSISTENT_RESERVATION', SenseKey.ILLEGAL_REQUEST, 0x26, 0x04),
  INSUFFICIENT_REGISTRATION_RESOURCES: cond('INSUFFICIENT_REGISTRATION_RESOURCES', SenseKey.ILLEGAL_REQUEST, 0x55, 0x04),
  SAVING_PARAMETERS_NOT_SUPPORTED: cond('SAVING_PARAMETERS_NOT_SUPPORTED', SenseKey.ILLEGAL_REQUEST, 0x39, 0x00),

  POWER_ON_RESET: cond('POWER_ON_RESET', SenseKey.UNIT_ATTENTION, 0x29, 0x00),
  POWER_ON_OCCURRED: cond('POWER_ON_OCCURRED', SenseKey.UNIT_ATTENTION, 0x29, 0x01),
  SCSI_BUS_RESET_OCCURRED: cond('SCSI_BUS_RESET_OCCURRED', SenseKey.UNIT_ATTENTION, 0x29, 0x02),
  BUS_DEVICE_RESET_FUNCTION_OCCURRED: cond('BUS_DEVICE_RESET_FUNCTION_OCCURRED', SenseKey.UNIT_ATTENTION, 0x29, 0x03),
  DEVICE_INTERNAL_RESET: cond('DEVICE_INTERNAL_RESET', SenseKey.UNIT_ATTENTION, 0x29, 0x04),
  I_T_NEXUS_LOSS_OCCURRED: cond('I_T_NEXUS_LOSS_OCCURRED', SenseKey.UNIT_ATTENTION, 0x29, 0x07),
  MODE_PARAMETERS_CHANGED: cond('MODE_PARAMETERS_CHANGED', SenseKey.UNIT_ATTENTION, 0x2a, 0x01),
  RESERVATIONS_PREEMPTED: cond('RESERVATIONS_PREEMPTED', SenseKey.UNIT_ATTENTION, 0x2a, 0x03),
  RESERVATIONS_RELEASED: cond('RESERVATIONS_RELEASED', SenseKey.UNIT_ATTENTION, 0x2a, 0x04),
  REGISTRATIONS_PREEMPTED: cond('REGISTRATIONS_PREEMPTED', SenseKey.UNIT_ATTENTION, 0x2a, 0x05),
  ASYMMETRIC_ACCESS_STATE_CHANGED: cond('ASYMMETRIC_ACCESS_STATE_CHANGED', SenseKey.UNIT_ATTENTION, 0x2a, 0x06),
  CAPACITY_DATA_HAS_CHANGED: cond('CAPACITY_DATA_HAS_CHANGED', SenseKey.UNIT_ATTENTION, 0x2a, 0x09),
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: cond('COMMANDS_CLEARED_BY_ANOTHER_INITIATOR', SenseKey.UNIT_ATTENTION, 0x2f, 0x00),
  MICROCODE_HAS_BEEN_CHANGED: cond('MICROCODE_HAS_BEEN_CHANGED', SenseKey.UNIT_ATTENTION, 0x3f, 0x01),
  INQUIRY_DATA_HAS_CHANGED: cond('INQUIRY_DATA_HAS_CHANGED', SenseKey.UNIT_ATTENTION, 0x3f, 0x03),
  REPORTED_LUNS_DATA_HAS_CHANGED: cond('REPORTED_LUNS_DATA_HAS_CHANGED', SenseKey.UNIT_ATTENTION, 0x3f, 0x0e),

  WRITE_PROTECTED: cond('WRITE_PROTECTED', SenseKey.DATA_PROTECT, 0x27, 0x00),
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: cond('SPACE_ALLOCATION_FAILED_WRITE_PROTECT', SenseKey.DATA_PROTECT, 0x27, 0x07),

  MISCOMPARE_DURING_VERIFY_OPERATION: cond('MISCOMPARE_DURING_VERIFY_OPERATION', SenseKey.MISCOMPARE, 0x1d, 0x00),

  // EXTENDED COPY (SPC-4 r37 §6.4, annex D.2): parameter-list conditions are ILLEGAL REQUEST,
  // conditions met while segment descriptors are processed are COPY ABORTED.
  OPERATION_IN_PROGRESS: cond('OPERATION_IN_PROGRESS', SenseKey.ILLEGAL_REQUEST, 0x00, 0x16),
  TOO_MANY_TARGET_DESCRIPTORS: cond('TOO_MANY_TARGET_DESCRIPTORS', SenseKey.ILLEGAL_REQUEST, 0x26, 0x06),
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: cond(
    'UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE', SenseKey.ILLEGAL_REQUEST, 0x26, 0x07),
  TOO_MANY_SEGMENT_DESCRIPTORS: cond('TOO_MANY_SEGMENT_DESCRIPTORS', SenseKey.ILLEGAL_REQUEST, 0x26, 0x08),
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: cond(
    'UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE', SenseKey.ILLEGAL_REQUEST, 0x26, 0x09),
  INLINE_DATA_LENGTH_EXCEEDED: cond('INLINE_DATA_LENGTH_EXCEEDED', SenseKey.ILLEGAL_REQUEST, 0x26, 0x0b),
  COPY_ABORTED: cond('COPY_ABORTED', SenseKey.COPY_ABORTED, 0x00, 0x00),
  UNREACHABLE_COPY_TARGET: cond('UNREACHABLE_COPY_TARGET', SenseKey.COPY_ABORTED, 0x08, 0x04),
  COPY_TARGET_DEVICE_NOT_REACHABLE: cond('COPY_TARGET_DEVICE_NOT_REACHABLE', SenseKey.COPY_ABORTED, 0x0d, 0x02),
  INCORRECT_COPY_TARGET_DEVICE_TYPE: cond('INCORRECT_COPY_TARGET_DEVICE_TYPE', SenseKey.COPY_ABORTED, 0x0d, 0x03),
  UNEXPECTED_INEXACT_SEGMENT: cond('UNEXPECTED_INEXACT_SEGMENT', SenseKey.COPY_ABORTED, 0x26, 0x0a),
});

export type SenseName = keyof typeof Sense;

/**
 * Sense content some commands define beyond key, ASC/ASCQ, INFORMATION and a field pointer
 * (EXTENDED COPY: SPC-4 r37 §6.4 "errors detected during processing of segment descriptors").
 */
export interface SenseExtra {
  /**
   * COMMAND-SPECIFIC INFORMATION, 4 bytes: fixed format bytes 8-11 (SPC-4 §4.5.3); descriptor
   * format the first 4 bytes of the type 01h descriptor's 8-byte field (§4.5.2.3), the rest zero.
   */
  readonly commandSpecific: Uint8Array | null;
  /**
   * The 3 sense-key specific bytes exactly as sent, SKSV included (e.g. the COPY ABORTED segment
   * pointer, §4.5.2.4.6); used instead of a field pointer.
   */
  readonly senseKeySpecific: Uint8Array | null;
  /** Status and sense data a copy source or copy destination returned, forwarded to the initiator. */
  readonly forwarded: ForwardedSense | null;
}

/** SPC-4 §4.5.2.x forwarded sense data descriptor, SENSE DATA SOURCE field values. */
export const enum SenseDataSource {
  COPY_SOURCE = 0x1,
  COPY_DESTINATION = 0x2,
}

export interface ForwardedSense {
  readonly source: SenseDataSource;
  /** the SCSI status the copy source/destination returned (02h CHECK CONDITION) */
  readonly status: number;
  /** its sense data, already encoded */
  readonly sense: Uint8Array;
}

/**
 * Where an ILLEGAL REQUEST points (SPC-4 §4.5.2.4.2, field pointer sense-key specific data):
 * the byte of the CDB (inCdb) or parameter list, and optionally the bit (most significant bit
 * of the field, so BPV=1).
 */
export interface FieldPointer {
  readonly inCdb: boolean;
  readonly byte: number;
  readonly bit?: number;
}

/**
 * Thrown by parse()/execute() to end a command with CHECK CONDITION. Guest input errors are
 * values, not bugs, so the stack trace is not captured (a guest can trigger millions).
 */
export class SenseError extends Error {
  readonly condition: SenseCondition;
  readonly field: FieldPointer | null;
  readonly information: bigint | null;
  readonly extra: SenseExtra | null;

  constructor(condition: SenseCondition, field?: FieldPointer | null, information?: bigint | null,
    extra?: SenseExtra | null) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(condition.name);
    Error.stackTraceLimit = limit;
    this.name = 'SenseError';
    this.condition = condition;
    this.field = field ?? null;
    this.information = information ?? null;
    this.extra = extra ?? null;
  }

  /**
   * INVALID FIELD IN CDB pointing at `byte`; `bit` (the field's most significant bit, BPV=1)
   * only for fields narrower than a byte, as a whole-byte field needs no bit pointer.
   */
  static invalidCdbField(byte: number, bit?: number): SenseError {
    return new SenseError(Sense.INVALID_FIELD_IN_CDB, { inCdb: true, byte, bit });
  }

  /** INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`) of the parameter data. */
  static invalidParameterField(byte: number, bit?: number): SenseError {
    return new SenseError(Sense.INVALID_FIELD_IN_PARAMETER_LIST, { inCdb: false, byte, bit });
  }
}

/** SPC-4 §4.5.3: fixed format sense data is 18 bytes with ADDITIONAL SENSE LENGTH 0Ah. */
export const FIXED_SENSE_LENGTH = 18;

/**
 * The only sense encoder. Writes the condition into `out` in descriptor format (response
 * code 72h, SPC-4 §4.5.2) when `descriptor` is true (Control mode page D_SENSE=1 or REQUEST
 * SENSE DESC=1), else in fixed format (70h, SPC-4 §4.5.3). Returns the number of bytes
 * written; every byte up to that length is written (stale bytes never leak).
 */
export function encodeSense(
  out: Uint8Array,
  descriptor: boolean,
  condition: SenseCondition,
  field: FieldPointer | null = null,
  information: bigint | null = null,
  extra: SenseExtra | null = null,
): number {
  let sks0 = 0;
  const sks = extra !== null ? extra.senseKeySpecific : null;
  const csi = extra !== null ? extra.commandSpecific : null;
  const fwd = extra !== null ? extra.forwarded : null;
  if (field !== null) {
    // SPC-4 §4.5.2.4.2 table 30: SKSV | C/D | BPV | BIT POINTER, then FIELD POINTER (BE16).
    sks0 = 0x80 | (field.inCdb ? 0x40 : 0) | (field.bit !== undefined ? 0x08 | (field.bit & 7) : 0);
  }
  if (!descriptor) {
    out.fill(0, 0, FIXED_SENSE_LENGTH);
    out[0] = 0x70;
    out[2] = condition.key & 0x0f;
    // INFORMATION is 4 bytes here; a larger value can only go in descriptor format, so the
    // VALID bit stays clear rather than report a truncated value (SPC-4 §4.5.3).
    if (information !== null && information >= 0n && information <= 0xffffffffn) {
      out[0] |= 0x80;
      writeBe32(out, 3, Number(information));
    }
    out[7] = FIXED_SENSE_LENGTH - 8;
    out[12] = condition.asc;
    out[13] = condition.ascq;
    if (sks !== null) {
      out[15] = sks[0];
      out[16] = sks[1];
      out[17] = sks[2];
    } else if (field !== null) {
      out[15] = sks0;
      out[16] = (field.byte >>> 8) & 0xff;
      out[17] = field.byte & 0xff;
    }
    if (csi !== null) for (let i = 0; i < 4; i++) out[8 + i] = csi[i];
    if (fwd !== null) {
      // EXTENDED COPY (SPC-4 r37 §6.4): the copy source's (CSI byte 0) or copy destination's (CSI
      // byte 1) status byte and sense data, unchanged, at that offset in the additional sense bytes.
      const n = Math.min(fwd.sense.length, Math.min(out.length, MAX_SENSE_LENGTH) - FIXED_SENSE_LENGTH - 1);
      out[fwd.source === SenseDataSource.COPY_SOURCE ? 8 : 9] = FIXED_SENSE_LENGTH;
      out[FIXED_SENSE_LENGTH] = fwd.status;
      out.set(fwd.sense.subarray(0, n), FIXED_SENSE_LENGTH + 1);
      out[7] = FIXED_SENSE_LENGTH - 8 + 1 + n;
      return FIXED_SENSE_LENGTH + 1 + n;
    }
    return FIXED_SENSE_LENGTH;
  }
  let len = 8;
  out.fill(0, 0, 8);
  out[0] = 0x72;
  out[1] = condition.key & 0x0f;
  out[2] = condition.asc;
  out[3] = condition.ascq;
  if (information !== null && information >= 0n && information <= 0xffffffffffffffffn) {
    // SPC-4 §4.5.2.2 information sense data descriptor: type 00h, length 0Ah, VALID=1.
    out.fill(0, len, len + 12);
    out[len] = 0x00;
    out[len + 1] = 0x0a;
    out[len + 2] = 0x80;
    writeBe32(out, len + 4, Number(information >> 32n));
    writeBe32(out, len + 8, Number(information & 0xffffffffn));
    len += 12;
  }
  if (csi !== null) {
    // SPC-4 §4.5.2.3 command-specific information sense data descriptor: type 01h, length 0Ah.
    out.fill(0, len, len + 12);
    out[len] = 0x01;
    out[len + 1] = 0x0a;
    for (let i = 0; i < 4; i++) out[len + 4 + i] = csi[i];
    len += 12;
  }
  if (sks !== null || field !== null) {
    // SPC-4 §4.5.2.4 sense key specific sense data descriptor: type 02h, length 06h.
    out.fill(0, len, len + 8);
    out[len] = 0x02;
    out[len + 1] = 0x06;
    if (sks !== null) {
      out[len + 4] = sks[0];
      out[len + 5] = sks[1];
      out[len + 6] = sks[2];
    } else {
      out[len + 4] = sks0;
      out[len + 5] = (field!.byte >>> 8) & 0xff;
      out[len + 6] = field!.byte & 0xff;
    }
    len += 8;
  }
  if (fwd !== null) {
    // SPC-4 §4.5.2.x forwarded sense data descriptor: type 0Ch, FSDT (truncated) | SENSE DATA
    // SOURCE, FORWARDED STATUS, then the sense data.
    let n = fwd.sense.length;
    let fsdt = 0;
    const limit = Math.min(out.length, MAX_SENSE_LENGTH);
    if (len + 4 + n > limit) {
      n = Math.max(0, limit - len - 4);
      fsdt = 0x80;
    }
    out[len] = 0x0c;
    out[len + 1] = 2 + n;
    out[len + 2] = fsdt | (fwd.source & 0x0f);
    out[len + 3] = fwd.status;
    out.set(fwd.sense.subarray(0, n), len + 4);
    len += 4 + n;
  }
  out[7] = len - 8;
  return len;
}

/**
 * Unit attention priority, lower is reported first (SAM-5 §5.14 list, same order as SAM-4
 * §5.14): 29/00, then 29/01 or 29/04, then 29/02 / 3F/01 / protocol specific 29/05-06, then
 * 29/03, then 29/07, then 2F/01; everything else last, oldest first.
 */
export function unitAttentionRank(c: SenseCondition): number {
  if (c.asc === 0x29) {
    switch (c.ascq) {
      case 0x00: return 0;
      case 0x01: case 0x04: return 1;
      case 0x02: case 0x05: case 0x06: return 2;
      case 0x03: return 3;
      case 0x07: return 4;
      default: return 5;
    }
  }
  if (c.asc === 0x3f && c.ascq === 0x01) return 2;
  if (c.asc === 0x2f && c.ascq === 0x01) return 5;
  return 6;
}

function writeBe32(out: Uint8Array, off: number, v: number): void {
  out[off] = (v >>> 24) & 0xff;
  out[off + 1] = (v >>> 16) & 0xff;
  out[off + 2] = (v >>> 8) & 0xff;
  out[off + 3] = v & 0xff;
}
