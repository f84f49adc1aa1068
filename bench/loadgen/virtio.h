// The parts of OASIS VIRTIO 1.2 the generator speaks as a driver: feature bits (§6), the split
// virtqueue (§2.7), virtio-blk (§5.2) and virtio-scsi (§5.6). All fields are little-endian.
#pragma once

#include <cstdint>

namespace lg::virtio {

// §6 reserved feature bits.
constexpr unsigned kF_RING_INDIRECT_DESC = 28;
constexpr unsigned kF_RING_EVENT_IDX = 29;
constexpr unsigned kF_VERSION_1 = 32;

constexpr uint64_t bit(unsigned b) { return uint64_t{1} << b; }

// §2.7.5 descriptor flags.
constexpr uint16_t VIRTQ_DESC_F_NEXT = 1;
constexpr uint16_t VIRTQ_DESC_F_WRITE = 2;
constexpr uint16_t VIRTQ_DESC_F_INDIRECT = 4;
// §2.7.6 / §2.7.8 suppression flags.
constexpr uint16_t VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
constexpr uint16_t VIRTQ_USED_F_NO_NOTIFY = 1;

// §2.7 "Queue Size ... maximum queue size is 32768".
constexpr uint32_t kMaxQueueSize = 32768;

// §2.7.5 struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next.
constexpr uint32_t kDescSize = 16;
// §2.7.8 struct virtq_used_elem: le32 id, le32 len.
constexpr uint32_t kUsedElemSize = 8;

// §2.7 alignment table: descriptor table 16, available ring 2, used ring 4.
constexpr uint64_t kDescAlign = 16;
constexpr uint64_t kAvailAlign = 2;
constexpr uint64_t kUsedAlign = 4;
// §2.7.6 flags, idx, ring[size], used_event; §2.7.8 flags, idx, ring[size], avail_event.
constexpr uint64_t avail_ring_bytes(uint32_t num) { return 6 + 2 * uint64_t{num}; }
constexpr uint64_t used_ring_bytes(uint32_t num) { return 6 + kUsedElemSize * uint64_t{num}; }

// §2.7.10 "vring_need_event": true iff event_idx lies in [old, new) (mod 2^16).
inline bool vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// ---- virtio-blk (§5.2) ------------------------------------------------------------------
namespace blk {
// §5.2.3 feature bits.
constexpr unsigned F_SIZE_MAX = 1;
constexpr unsigned F_SEG_MAX = 2;
constexpr unsigned F_RO = 5;
constexpr unsigned F_BLK_SIZE = 6;
constexpr unsigned F_FLUSH = 9;
constexpr unsigned F_MQ = 12;
// §5.2.4 struct virtio_blk_config, the fields up to num_queues.
constexpr uint32_t CFG_capacity = 0;   // le64, 512-byte sectors
constexpr uint32_t CFG_size_max = 8;   // le32
constexpr uint32_t CFG_seg_max = 12;   // le32
constexpr uint32_t CFG_blk_size = 20;  // le32
constexpr uint32_t CFG_num_queues = 34;  // le16
constexpr uint32_t kConfigReadSize = 36;
// §5.2.6 request types and status.
constexpr uint32_t VIRTIO_BLK_T_IN = 0;
constexpr uint32_t VIRTIO_BLK_T_OUT = 1;
constexpr uint8_t VIRTIO_BLK_S_OK = 0;
constexpr uint8_t VIRTIO_BLK_S_IOERR = 1;
constexpr uint8_t VIRTIO_BLK_S_UNSUPP = 2;
// §5.2.6 struct virtio_blk_req: le32 type, le32 reserved, le64 sector, data, u8 status.
constexpr uint32_t kOutHdrSize = 16;
constexpr uint32_t kStatusSize = 1;
// "sector" is always in 512-byte units, whatever blk_size says.
constexpr uint32_t kSectorSize = 512;
}  // namespace blk

// ---- virtio-scsi (§5.6) -----------------------------------------------------------------
namespace scsi {
// §5.6.2 virtqueues.
constexpr uint32_t kControlQueue = 0;
constexpr uint32_t kEventQueue = 1;
constexpr uint32_t kFirstRequestQueue = 2;
// §5.6.4 struct virtio_scsi_config.
constexpr uint32_t CFG_num_queues = 0;
constexpr uint32_t CFG_seg_max = 4;
constexpr uint32_t CFG_max_sectors = 8;
constexpr uint32_t CFG_sense_size = 20;
constexpr uint32_t CFG_cdb_size = 24;
constexpr uint32_t CFG_max_lun = 32;
constexpr uint32_t kConfigSize = 36;
// §5.6.4 "the device MUST ... reset sense_size to 96 and cdb_size to 32".
constexpr uint32_t kDefaultSenseSize = 96;
constexpr uint32_t kDefaultCdbSize = 32;
// §5.6.6.1 struct virtio_scsi_req_cmd: u8 lun[8], le64 id, u8 task_attr, u8 prio, u8 crn, cdb.
constexpr uint32_t REQ_lun = 0;
constexpr uint32_t REQ_id = 8;
constexpr uint32_t REQ_task_attr = 16;
constexpr uint32_t REQ_prio = 17;
constexpr uint32_t REQ_crn = 18;
constexpr uint32_t REQ_cdb = 19;
// struct virtio_scsi_resp_cmd: le32 sense_len, le32 residual, le16 status_qualifier, u8 status,
// u8 response, sense[sense_size].
constexpr uint32_t RESP_sense_len = 0;
constexpr uint32_t RESP_residual = 4;
constexpr uint32_t RESP_status = 10;
constexpr uint32_t RESP_response = 11;
constexpr uint32_t RESP_sense = 12;
constexpr uint8_t VIRTIO_SCSI_S_OK = 0;
constexpr uint8_t VIRTIO_SCSI_S_SIMPLE = 0;
}  // namespace scsi

}  // namespace lg::virtio
