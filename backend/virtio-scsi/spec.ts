// virtio-scsi wire format: OASIS VIRTIO 1.2 §5.6 (SCSI Host Device). All fields little-endian.

/** §5.6.3 feature bits. */
export const VirtioScsiFeature = {
  INOUT: 0,
  HOTPLUG: 1,
  CHANGE: 2,
  T10_PI: 3,
} as const;

/** §5.6.2 virtqueues: 0 controlq, 1 eventq, 2.. requestq. */
export const CONTROL_QUEUE = 0;
export const EVENT_QUEUE = 1;
export const FIRST_REQUEST_QUEUE = 2;

/** §5.6.4 virtio_scsi_config: 36 bytes. */
export const ConfigOffset = {
  num_queues: 0,
  seg_max: 4,
  max_sectors: 8,
  cmd_per_lun: 12,
  event_info_size: 16,
  sense_size: 20,
  cdb_size: 24,
  max_channel: 28,
  max_target: 30,
  max_lun: 32,
} as const;
export const CONFIG_SIZE = 36;

/** §5.6.4 device requirement: these are the values after reset. QEMU does not let the guest change them for vhost-user-scsi. */
export const DEFAULT_CDB_SIZE = 32;
export const DEFAULT_SENSE_SIZE = 96;

/** §5.6.6.1 virtio_scsi_req_cmd: lun[8], id le64, task_attr, prio, crn, cdb[cdb_size]. */
export const CmdReq = {
  lun: 0,
  id: 8,
  task_attr: 16,
  prio: 17,
  crn: 18,
  /** with VIRTIO_SCSI_F_T10_PI: pi_bytesout le32 at 19, pi_bytesin le32 at 23, then cdb. */
  cdb: 19,
  cdbWithPi: 27,
} as const;

/** §5.6.6.1 virtio_scsi_resp_cmd: sense_len le32, residual le32, status_qualifier le16, status u8, response u8, sense[sense_size]. */
export const CmdResp = {
  sense_len: 0,
  residual: 4,
  status_qualifier: 8,
  status: 10,
  response: 11,
  sense: 12,
} as const;

/** §5.6.6.1 response codes. */
export enum VirtioScsiResponse {
  OK = 0,
  OVERRUN = 1,
  ABORTED = 2,
  BAD_TARGET = 3,
  RESET = 4,
  BUSY = 5,
  TRANSPORT_FAILURE = 6,
  TARGET_FAILURE = 7,
  NEXUS_FAILURE = 8,
  FAILURE = 9,
  FUNCTION_SUCCEEDED = 10,
  FUNCTION_REJECTED = 11,
  INCORRECT_LUN = 12,
}
/** §5.6.6.2: a TMF that completed is answered with FUNCTION_COMPLETE, numerically S_OK. */
export const VIRTIO_SCSI_S_FUNCTION_COMPLETE = 0;

/** §5.6.6.1 task attributes. */
export enum VirtioScsiTaskAttr {
  SIMPLE = 0,
  ORDERED = 1,
  HEAD = 2,
  ACA = 3,
}

/** §5.6.6.2 control queue request types. */
export enum ControlType {
  TMF = 0,
  AN_QUERY = 1,
  AN_SUBSCRIBE = 2,
}

/** §5.6.6.2 TMF subtypes. */
export enum TmfSubtype {
  ABORT_TASK = 0,
  ABORT_TASK_SET = 1,
  CLEAR_ACA = 2,
  CLEAR_TASK_SET = 3,
  I_T_NEXUS_RESET = 4,
  LOGICAL_UNIT_RESET = 5,
  QUERY_TASK = 6,
  QUERY_TASK_SET = 7,
}

/** virtio_scsi_ctrl_tmf: type le32, subtype le32, lun[8], id le64 → response u8. */
export const TMF_REQ_SIZE = 24;
export const TMF_RESP_SIZE = 1;
/** virtio_scsi_ctrl_an: type le32, lun[8], event_requested le32 → event_actual le32, response u8. */
export const AN_REQ_SIZE = 16;
export const AN_RESP_SIZE = 5;

/** §5.6.6.3 events. */
export enum EventType {
  NO_EVENT = 0,
  TRANSPORT_RESET = 1,
  ASYNC_NOTIFY = 2,
  PARAM_CHANGE = 3,
}
export const VIRTIO_SCSI_T_EVENTS_MISSED = 0x80000000;
/** §5.6.6.3.1 TRANSPORT_RESET reasons. */
export enum TransportResetReason {
  RESET = 0,
  RESCAN = 1,
  REMOVED = 2,
}
/** virtio_scsi_event: event le32, lun[8], reason le32. */
export const EVENT_SIZE = 16;
