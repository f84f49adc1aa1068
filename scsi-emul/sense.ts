// The one table of named sense conditions, the typed error handlers throw, and the one
// function that turns a condition into sense bytes.
import { SenseKey } from './constants';

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
});

export type SenseName = keyof typeof Sense;

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

  constructor(condition: SenseCondition, field?: FieldPointer | null, information?: bigint | null) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(condition.name);
    Error.stackTraceLimit = limit;
    this.name = 'SenseError';
    this.condition = condition;
    this.field = field ?? null;
    this.information = information ?? null;
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
): number {
  let sks0 = 0;
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
    if (field !== null) {
      out[15] = sks0;
      out[16] = (field.byte >>> 8) & 0xff;
      out[17] = field.byte & 0xff;
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
  if (field !== null) {
    // SPC-4 §4.5.2.4 sense key specific sense data descriptor: type 02h, length 06h.
    out.fill(0, len, len + 8);
    out[len] = 0x02;
    out[len + 1] = 0x06;
    out[len + 4] = sks0;
    out[len + 5] = (field.byte >>> 8) & 0xff;
    out[len + 6] = field.byte & 0xff;
    len += 8;
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
