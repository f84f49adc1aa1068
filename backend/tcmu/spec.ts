// The TCMU (target_core_user) user-space ABI: include/uapi/linux/target_core_user.h, with the
// processing rules of drivers/target/target_core_user.c. Every structure is packed and in host
// byte order; offsets were checked by compiling the uapi header with gcc on x86-64 (and are
// pinned as literals by tests/backend/tcmu-ring.test.ts).
//
// The uio map (map0) is [mailbox | command ring | data area]:
//   [0, 128)                               struct tcmu_mailbox
//   [cmdr_off = 128, 128 + cmdr_size)      command ring of variable-length entries
//   [128 + cmdr_size, map size)            data area, addressed by iovec offsets from the map start

/** TCMU_MAILBOX_VERSION: the only layout this code understands (libtcmu refuses others too). */
export const TCMU_MAILBOX_VERSION = 2;

/** sizeof(struct tcmu_mailbox): cmd_tail is __aligned__(ALIGN_SIZE = 64), which rounds the struct to 128. */
export const TCMU_MAILBOX_SIZE = 128;

/** CMDR_OFF in target_core_user.c: the command ring starts right after the mailbox. */
export const CMDR_OFF = TCMU_MAILBOX_SIZE;

/** struct tcmu_mailbox field offsets. */
export const Mailbox = {
  /** __u16, TCMU_MAILBOX_VERSION */
  version: 0,
  /** __u16, TCMU_MAILBOX_FLAG_CAP_* */
  flags: 2,
  /** __u32, offset of the command ring from the map start */
  cmdr_off: 4,
  /** __u32, bytes in the command ring */
  cmdr_size: 8,
  /** __u32, written by the kernel: where the next entry will go (offset inside the ring) */
  cmd_head: 12,
  /** __u32, written by user space, on its own cacheline: everything before it is completed */
  cmd_tail: 64,
} as const;

/** struct tcmu_mailbox flags: what this kernel's ring protocol offers. */
export const TcmuMailboxFlag = {
  /** TCMU_MAILBOX_FLAG_CAP_OOOC: completions may be written out of order (slot cmd_id rewritten) */
  CAP_OOOC: 1 << 0,
  /** TCMU_MAILBOX_FLAG_CAP_READ_LEN: TCMU_UFLAG_READ_LEN + rsp.read_len report a short data-in */
  CAP_READ_LEN: 1 << 1,
  /** TCMU_MAILBOX_FLAG_CAP_TMR: TCMU_OP_TMR entries (with attrib/tmr_notification=1) */
  CAP_TMR: 1 << 2,
  /** TCMU_MAILBOX_FLAG_CAP_KEEP_BUF: TCMU_UFLAG_KEEP_BUF + action/free_kept_buf */
  CAP_KEEP_BUF: 1 << 3,
} as const;

/** enum tcmu_opcode: the low 3 bits of hdr.len_op. */
export const TcmuOpcode = {
  /** TCMU_OP_PAD: fills the ring up to its end so no entry wraps; skip it */
  PAD: 0,
  /** TCMU_OP_CMD: a SCSI command (struct tcmu_cmd_entry) */
  CMD: 1,
  /** TCMU_OP_TMR: task management notification (struct tcmu_tmr_entry); information only */
  TMR: 2,
} as const;

/** TCMU_OP_MASK: len_op = length | opcode, lengths being multiples of TCMU_OP_ALIGN_SIZE. */
export const TCMU_OP_MASK = 0x7;
/** TCMU_OP_ALIGN_SIZE = sizeof(__u64). */
export const TCMU_OP_ALIGN_SIZE = 8;

/** struct tcmu_cmd_entry_hdr (8 bytes) field offsets. */
export const EntryHdr = {
  /** __u32: entry length (multiple of 8) | opcode */
  len_op: 0,
  /** __u16: 1..0xffff for commands (xa_alloc XA_LIMIT(1, 0xffff)); 0 for PAD */
  cmd_id: 4,
  /** __u8: kernel to user flags (none defined) */
  kflags: 6,
  /** __u8: user to kernel flags, TCMU_UFLAG_* */
  uflags: 7,
} as const;
export const TCMU_ENTRY_HDR_SIZE = 8;

/** hdr.uflags bits (user space → kernel). */
export const TcmuUflag = {
  /** TCMU_UFLAG_UNKNOWN_OP: user space did not understand the entry; the kernel fails the command */
  UNKNOWN_OP: 0x1,
  /** TCMU_UFLAG_READ_LEN: rsp.read_len holds the data-in bytes actually produced (short read) */
  READ_LEN: 0x2,
  /** TCMU_UFLAG_KEEP_BUF: keep the data area after completion (never used here) */
  KEEP_BUF: 0x4,
} as const;

/** struct tcmu_cmd_entry, request view (the union's req member; not packed inside, hence the hole at 20). */
export const CmdReq = {
  /** __u32: data iovecs (data-out for a write, data-in for a read) */
  iov_cnt: 8,
  /** __u32: bidirectional data-in iovecs, following the iov_cnt data iovecs */
  iov_bidi_cnt: 12,
  /** __u32: protection information iovecs (never set by current kernels) */
  iov_dif_cnt: 16,
  /** __u64: offset of the CDB from the map start (CMDR_OFF + entry offset + base size) */
  cdb_off: 24,
  /** struct iovec iov[]: {__u64 iov_base (offset from the map start), __u64 iov_len} */
  iov: 48,
} as const;
/** sizeof(struct iovec) on 64-bit Linux. */
export const TCMU_IOVEC_SIZE = 16;
/** Offsets inside one struct iovec. */
export const Iovec = { iov_base: 0, iov_len: 8 } as const;

/** struct tcmu_cmd_entry, response view (the union's rsp member), written by user space. */
export const CmdRsp = {
  /** __u8: SAM status (CHECK CONDITION = 02h, not the shifted Linux value; tcmu-design.rst) */
  scsi_status: 8,
  /** __u32: valid with TCMU_UFLAG_READ_LEN */
  read_len: 12,
  /** char[TCMU_SENSE_BUFFERSIZE] */
  sense_buffer: 16,
} as const;

/** sizeof(struct tcmu_cmd_entry): every command entry is at least this long, so the response fits. */
export const TCMU_CMD_ENTRY_SIZE = 112;
/** TCMU_SENSE_BUFFERSIZE (= SCSI_SENSE_BUFFERSIZE, what LIO's TRANSPORT_SENSE_BUFFER copies). */
export const TCMU_SENSE_BUFFERSIZE = 96;

/** struct tcmu_tmr_entry field offsets (sizeof 32 + 2 × cmd_cnt, rounded up to 8). */
export const TmrEntry = {
  /** __u8: TmrType */
  tmr_type: 8,
  /** __u32: number of cmd_ids */
  cmd_cnt: 12,
  /** __u16 cmd_ids[]: ring commands the task management function aborts */
  cmd_ids: 32,
} as const;
export const TCMU_TMR_ENTRY_SIZE = 32;

/** tcmu_tmr_entry.tmr_type values (TCMU_TMR_*). */
export const TmrType = {
  UNKNOWN: 0,
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LUN_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  /** pseudo reset the kernel reports after a PERSISTENT RESERVE OUT preempt-and-abort */
  LUN_RESET_PRO: 128,
} as const;

/** Name of a tmr_type value for logs ("TMR 0x09" for values no kernel defines yet). */
export function tmrTypeName(type: number): string {
  for (const [name, value] of Object.entries(TmrType)) if (value === type) return name;
  return `TMR 0x${type.toString(16).padStart(2, '0')}`;
}

/**
 * CDB length the kernel copies into the entry: scsi_command_size() (include/scsi/scsi_common.h),
 * the opcode group table {6, 10, 10, 12, 16, 12, 10, 10}, or 8 + ADDITIONAL CDB LENGTH (byte 7)
 * for VARIABLE LENGTH CDB 7Fh (SPC-4 §4.3.3). The entry reserves it rounded up to 8 bytes.
 */
export function kernelCdbLength(opcode: number, byte7: number): number {
  if (opcode === 0x7f) return 8 + byte7;
  switch (opcode >>> 5) {
    case 0: return 6;
    case 3: case 5: return 12;
    case 4: return 16;
    default: return 10;
  }
}

/** Entry length of a command with `iovs` iovecs (data + bidi) and CDB length `cdbLength` (queue_cmd_ring). */
export function cmdEntryLength(iovs: number, cdbLength: number): number {
  return cmdEntryBaseLength(iovs) + roundUp8(cdbLength);
}

/** tcmu_cmd_get_base_cmd_size(): the CDB follows the iovec array, or the response area if that is longer. */
export function cmdEntryBaseLength(iovs: number): number {
  return Math.max(CmdReq.iov + TCMU_IOVEC_SIZE * iovs, TCMU_CMD_ENTRY_SIZE);
}

export function roundUp8(n: number): number {
  return (n + TCMU_OP_ALIGN_SIZE - 1) & ~(TCMU_OP_ALIGN_SIZE - 1);
}
