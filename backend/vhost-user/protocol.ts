// Numbers of the vhost-user protocol, named as in QEMU docs/interop/vhost-user.rst
// ("Message Specification", "Protocol features", "Front-end message types"). Only numbers
// live here; what each message means is in messages.ts (syntax) and dispatcher.ts (semantics).

/** "Front-end message types": the request code of every message the front-end may send. */
export enum FrontendRequest {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  /** Previous name SET_SLAVE_REQ_FD. */
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
  GET_SHARED_OBJECT = 41,
  SET_DEVICE_STATE_FD = 42,
  CHECK_DEVICE_STATE = 43,
}

/**
 * Requests whose reply has a body of its own ("reply payload" in vhost-user.rst), so that
 * NEED_REPLY brings no extra ack ("REPLY_ACK": "For the message types that already solicit
 * a reply ... no behavioural change"). SET_LOG_BASE replies under LOG_SHMFD; SET_MEM_TABLE,
 * ADD_MEM_REG and REM_MEM_REG reply with regions only in postcopy mode, never entered here.
 */
export const REQUESTS_WITH_REPLY: ReadonlySet<number> = new Set([
  FrontendRequest.GET_FEATURES,
  FrontendRequest.SET_LOG_BASE,
  FrontendRequest.GET_VRING_BASE,
  FrontendRequest.GET_PROTOCOL_FEATURES,
  FrontendRequest.GET_QUEUE_NUM,
  FrontendRequest.IOTLB_MSG,
  FrontendRequest.GET_CONFIG,
  FrontendRequest.CREATE_CRYPTO_SESSION,
  FrontendRequest.POSTCOPY_ADVISE,
  FrontendRequest.POSTCOPY_END,
  FrontendRequest.GET_INFLIGHT_FD,
  FrontendRequest.GET_MAX_MEM_SLOTS,
  FrontendRequest.GET_STATUS,
  FrontendRequest.GET_SHARED_OBJECT,
  FrontendRequest.SET_DEVICE_STATE_FD,
  FrontendRequest.CHECK_DEVICE_STATE,
]);

/** The highest request code the spec defines; anything above is unknown (C11). */
export const MAX_FRONTEND_REQUEST = FrontendRequest.CHECK_DEVICE_STATE;

/**
 * The spec name of a request code, or a neutral label for an unknown one. The code is
 * range-checked before the enum is consulted (C11: never trust a wire value as an enum).
 */
export function requestName(code: number): string {
  if (Number.isInteger(code) && code >= 1 && code <= MAX_FRONTEND_REQUEST) {
    return FrontendRequest[code];
  }
  return `request ${code >>> 0}`;
}

/** "Protocol features": bit numbers in the GET/SET_PROTOCOL_FEATURES u64. */
export enum ProtocolFeature {
  MQ = 0,
  LOG_SHMFD = 1,
  RARP = 2,
  REPLY_ACK = 3,
  MTU = 4,
  /** Previous name SLAVE_REQ. */
  BACKEND_REQ = 5,
  CROSS_ENDIAN = 6,
  CRYPTO_SESSION = 7,
  PAGEFAULT = 8,
  CONFIG = 9,
  /** Previous name SLAVE_SEND_FD. */
  BACKEND_SEND_FD = 10,
  HOST_NOTIFIER = 11,
  INFLIGHT_SHMFD = 12,
  RESET_DEVICE = 13,
  INBAND_NOTIFICATIONS = 14,
  CONFIGURE_MEM_SLOTS = 15,
  STATUS = 16,
  XEN_MMAP = 17,
  SHARED_OBJECT = 18,
  DEVICE_STATE = 19,
}

/** The mask of one protocol feature bit. */
export function protocolFeatureBit(f: ProtocolFeature): bigint {
  return 1n << BigInt(f);
}

/**
 * "Communication": the reserved virtio bit 30 (virtio 1.1 §6.3 UNUSED) that signals
 * GET/SET_PROTOCOL_FEATURES support in GET_FEATURES.
 */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;

/** Vhost (not virtio) feature bit: dirty logging for live migration ("Migration"). */
export const VHOST_F_LOG_ALL = 26;

// "Header": flags is a 32-bit field.
/** Lower 2 bits: the protocol version, currently 0x1. */
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_VERSION = 0x1;
/** Bit 2: set on every reply from the back-end. */
export const VHOST_USER_REPLY_MASK = 0x4;
/** Bit 3: need_reply, meaningful under REPLY_ACK. */
export const VHOST_USER_NEED_REPLY_MASK = 0x8;

/** The header is {u32 request, u32 flags, u32 size}. */
export const VHOST_USER_HDR_SIZE = 12;

// SET_VRING_KICK/CALL/ERR u64: bits 0-7 are the vring index, bit 8 the invalid-FD flag.
export const VRING_IDX_MASK = 0xff;
export const VRING_NOFD_MASK = 0x100;

/** SET_VRING_ADDR flags bit 0 (VHOST_VRING_F_LOG): log used-ring writes. */
export const VHOST_VRING_F_LOG = 0;

/** "Multiple Memory regions description": SET_MEM_TABLE carries at most 8 regions. */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;
/** One "Memory region description": gpa, size, user address, mmap offset (4 x u64). */
export const MEMORY_REGION_SIZE = 32;

/** "Virtio device config space": offset, size, flags (3 x u32) before the bytes. */
export const VHOST_USER_CONFIG_HDR_SIZE = 12;
/** QEMU VHOST_USER_MAX_CONFIG_SIZE: the largest config access the front-end sends. */
export const VHOST_USER_MAX_CONFIG_SIZE = 256;
/** SET_CONFIG flags: 0 for writable fields, 1 for live migration. */
export const VHOST_SET_CONFIG_TYPE_FRONTEND = 0;
export const VHOST_SET_CONFIG_TYPE_MIGRATION = 1;

/**
 * The largest payload this back-end accepts: VhostUserConfig (12 + 256 = 268) beats
 * SET_MEM_TABLE (8 + 8 x 32 = 264). A larger size is never valid for a message we
 * implement, so the endpoint refuses it before buffering it (V1.4).
 */
export const MAX_PAYLOAD = VHOST_USER_CONFIG_HDR_SIZE + VHOST_USER_MAX_CONFIG_SIZE;

/** The most fds one message carries (SET_MEM_TABLE, one per region). */
export const MAX_FDS_PER_MESSAGE = VHOST_MEMORY_BASELINE_NREGIONS;
