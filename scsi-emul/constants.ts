// Spec enumerations shared by the whole core. Values are the wire values of the standards
// cited on each enum; nothing here encodes policy.

/** SAM-5 §5.3.1 table 31 (status codes). */
export enum ScsiStatus {
  GOOD = 0x00,
  CHECK_CONDITION = 0x02,
  CONDITION_MET = 0x04,
  BUSY = 0x08,
  RESERVATION_CONFLICT = 0x18,
  TASK_SET_FULL = 0x28,
  ACA_ACTIVE = 0x30,
  TASK_ABORTED = 0x40,
}

/**
 * SAM-5 §5.1 service responses, narrowed to what a fabric needs to tell apart. Every value
 * other than COMMAND_COMPLETE means status and sense are not meaningful.
 */
export enum ServiceResponse {
  COMMAND_COMPLETE = 0,
  /** data buffer smaller than the CDB's transfer or wrong direction */
  OVERRUN = 1,
  ABORTED = 2,
  /** completed because of a LU / nexus reset */
  RESET = 3,
  FAILURE = 4,
}

/** SAM-5 §8.6 task attributes (the virtio-scsi codes are mapped by the adapter). */
export enum TaskAttribute {
  SIMPLE = 0,
  ORDERED = 1,
  HEAD_OF_QUEUE = 2,
  /** ACA is not supported (standard INQUIRY NORMACA=0): such commands are rejected. */
  ACA = 3,
}

/** SAM-5 §7 task management functions. */
export enum TaskManagementFunction {
  ABORT_TASK,
  ABORT_TASK_SET,
  CLEAR_ACA,
  CLEAR_TASK_SET,
  I_T_NEXUS_RESET,
  LOGICAL_UNIT_RESET,
  QUERY_TASK,
  QUERY_TASK_SET,
  QUERY_ASYNCHRONOUS_EVENT,
}

/** SAM-5 §7.1 task management service responses. */
export enum TmfResponse {
  FUNCTION_COMPLETE,
  FUNCTION_SUCCEEDED,
  FUNCTION_REJECTED,
  INCORRECT_LOGICAL_UNIT_NUMBER,
  SERVICE_DELIVERY_OR_TARGET_FAILURE,
}

/** SPC-4 §4.5.6 table 27 (sense keys). */
export enum SenseKey {
  NO_SENSE = 0x0,
  RECOVERED_ERROR = 0x1,
  NOT_READY = 0x2,
  MEDIUM_ERROR = 0x3,
  HARDWARE_ERROR = 0x4,
  ILLEGAL_REQUEST = 0x5,
  UNIT_ATTENTION = 0x6,
  DATA_PROTECT = 0x7,
  BLANK_CHECK = 0x8,
  VENDOR_SPECIFIC = 0x9,
  COPY_ABORTED = 0xa,
  ABORTED_COMMAND = 0xb,
  VOLUME_OVERFLOW = 0xd,
  MISCOMPARE = 0xe,
  COMPLETED = 0xf,
}

/** Operation codes (SPC-4 annex D.3.1, SBC-3 §5). Only the ones the opcode table names. */
export enum Opcode {
  TEST_UNIT_READY = 0x00,
  REQUEST_SENSE = 0x03,
  FORMAT_UNIT = 0x04,
  READ_6 = 0x08,
  WRITE_6 = 0x0a,
  INQUIRY = 0x12,
  MODE_SELECT_6 = 0x15,
  /** SPC-2 r20 §7.22 (SPC-3 and later leave RESERVE/RELEASE to SPC-2; SPC-4 §5.9.3) */
  RESERVE_6 = 0x16,
  /** SPC-2 r20 §7.17 */
  RELEASE_6 = 0x17,
  MODE_SENSE_6 = 0x1a,
  START_STOP_UNIT = 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1e,
  READ_CAPACITY_10 = 0x25,
  READ_10 = 0x28,
  WRITE_10 = 0x2a,
  WRITE_AND_VERIFY_10 = 0x2e,
  VERIFY_10 = 0x2f,
  PRE_FETCH_10 = 0x34,
  SYNCHRONIZE_CACHE_10 = 0x35,
  WRITE_SAME_10 = 0x41,
  UNMAP = 0x42,
  LOG_SELECT = 0x4c,
  LOG_SENSE = 0x4d,
  MODE_SELECT_10 = 0x55,
  /** SPC-2 r20 §7.21 */
  RESERVE_10 = 0x56,
  /** SPC-2 r20 §7.16 */
  RELEASE_10 = 0x57,
  MODE_SENSE_10 = 0x5a,
  /** SPC-4 §6.15 */
  PERSISTENT_RESERVE_IN = 0x5e,
  /** SPC-4 §6.16 */
  PERSISTENT_RESERVE_OUT = 0x5f,
  /** SPC-4 THIRD-PARTY COPY OUT: EXTENDED COPY (LID1) is service action 00h */
  EXTENDED_COPY = 0x83,
  /** SPC-4 THIRD-PARTY COPY IN (SPC-3 RECEIVE COPY RESULTS) */
  RECEIVE_COPY_RESULTS = 0x84,
  READ_16 = 0x88,
  COMPARE_AND_WRITE = 0x89,
  WRITE_16 = 0x8a,
  WRITE_AND_VERIFY_16 = 0x8e,
  VERIFY_16 = 0x8f,
  PRE_FETCH_16 = 0x90,
  SYNCHRONIZE_CACHE_16 = 0x91,
  WRITE_SAME_16 = 0x93,
  /** SBC-4 §5.48 */
  WRITE_ATOMIC_16 = 0x9c,
  SERVICE_ACTION_IN_16 = 0x9e,
  REPORT_LUNS = 0xa0,
  MAINTENANCE_IN = 0xa3,
  READ_12 = 0xa8,
  WRITE_12 = 0xaa,
  WRITE_AND_VERIFY_12 = 0xae,
  VERIFY_12 = 0xaf,
}

/** SBC-3 §5.16 / SPC-4 §6.34 SERVICE ACTION IN(16) service actions. */
export enum ServiceActionIn16 {
  READ_CAPACITY_16 = 0x10,
  GET_LBA_STATUS = 0x12,
}

/** SPC-4 §6.35 / §6.36: MAINTENANCE IN service actions (byte 1 bits 4-0). */
export enum MaintenanceIn {
  REPORT_SUPPORTED_OPERATION_CODES = 0x0c,
  REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS = 0x0d,
}

/** Direction of a command's data transfer, from the device server's point of view. */
export enum DataDirection {
  NONE = 0,
  /** device to initiator (data-in) */
  IN = 1,
  /** initiator to device (data-out) */
  OUT = 2,
}

/** SPC-4 §4.3.3: a CDB is at most 260 bytes (variable length); fixed-format sense at most 252 (§4.5.1). */
export const MAX_CDB_LENGTH = 260;
export const MAX_SENSE_LENGTH = 252;
/** SAM-5 §4.7: single-level LUNs we address are 14-bit (flat space). */
export const MAX_LUN = 16383;
/**
 * The REPORT LUNS well known logical unit (SPC-4 §8.2, W-LUN 01h). Fabrics pass it in
 * ScsiCommand.lun as the first two bytes of the 8-byte LUN read as a big-endian number:
 * extended addressing C1h (address method 11b, well known LUN) then 01h, so C101h, the value
 * Linux's scsilun_to_int() gives (SCSI_W_LUN_REPORT_LUNS). It lies above MAX_LUN, so it can
 * never collide with a configured LUN.
 */
export const REPORT_LUNS_WLUN = 0xc101;
