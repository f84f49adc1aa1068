// virtio-scsi requests (virtio 1.2 §5.6.6.1) carrying READ(16)/WRITE(16) (SBC-3 §5.16, §5.41).
#include <cstdio>
#include <cstring>

#include "common.h"
#include "proto.h"
#include "virtio.h"

namespace lg {

namespace {

constexpr uint8_t kRead16 = 0x88;
constexpr uint8_t kWrite16 = 0x8a;
// The status we poison a response with: not a SAM-5 status code, and not VIRTIO_SCSI_S_OK.
constexpr uint8_t kPoison = 0xff;

}  // namespace

SenseInfo decode_sense(const uint8_t* sense, uint32_t len) {
  SenseInfo s;
  if (len < 1) return s;
  uint8_t code = sense[0] & 0x7f;
  if ((code == 0x70 || code == 0x71) && len >= 14) {
    // SPC-4 §4.5.3 fixed format: key in byte 2, ASC/ASCQ in bytes 12/13.
    s = {true, static_cast<uint8_t>(sense[2] & 0x0f), sense[12], sense[13]};
  } else if ((code == 0x72 || code == 0x73) && len >= 4) {
    // §4.5.2 descriptor format: key, ASC, ASCQ in bytes 1..3.
    s = {true, static_cast<uint8_t>(sense[1] & 0x0f), sense[2], sense[3]};
  }
  return s;
}

const char* sense_key_name(uint8_t key) {
  static const char* const kNames[16] = {
      "NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR", "ILLEGAL REQUEST",
      "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
      "reserved (0Ch)", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED"};
  return kNames[key & 0x0f];
}

// SPC-4 Annex D: the additional sense codes a benchmark run is likely to meet.
const char* asc_name(uint8_t asc, uint8_t ascq) {
  switch ((asc << 8) | ascq) {
    case 0x0400: return "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE";
    case 0x0401: return "LOGICAL UNIT IS IN PROCESS OF BECOMING READY";
    case 0x0c00: return "WRITE ERROR";
    case 0x1100: return "UNRECOVERED READ ERROR";
    case 0x2000: return "INVALID COMMAND OPERATION CODE";
    case 0x2100: return "LOGICAL BLOCK ADDRESS OUT OF RANGE";
    case 0x2400: return "INVALID FIELD IN CDB";
    case 0x2500: return "LOGICAL UNIT NOT SUPPORTED";
    case 0x2700: return "WRITE PROTECTED";
    case 0x2900: return "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED";
    case 0x2a09: return "CAPACITY DATA HAS CHANGED";
    case 0x3f0e: return "REPORTED LUNS DATA HAS CHANGED";
    case 0x4400: return "INTERNAL TARGET FAILURE";
    default: return nullptr;
  }
}

const char* scsi_status_name(uint8_t status) {
  // SAM-5 §5.3.
  switch (status) {
    case 0x00: return "GOOD";
    case 0x02: return "CHECK CONDITION";
    case 0x04: return "CONDITION MET";
    case 0x08: return "BUSY";
    case 0x18: return "RESERVATION CONFLICT";
    case 0x28: return "TASK SET FULL";
    case 0x30: return "ACA ACTIVE";
    case 0x40: return "TASK ABORTED";
    case kPoison: return "none written";
    default: return "unknown";
  }
}

const char* virtio_scsi_response_name(uint8_t response) {
  // §5.6.6.1 response values.
  static const char* const kNames[] = {
      "VIRTIO_SCSI_S_OK", "VIRTIO_SCSI_S_OVERRUN", "VIRTIO_SCSI_S_ABORTED", "VIRTIO_SCSI_S_BAD_TARGET",
      "VIRTIO_SCSI_S_RESET", "VIRTIO_SCSI_S_BUSY", "VIRTIO_SCSI_S_TRANSPORT_FAILURE",
      "VIRTIO_SCSI_S_TARGET_FAILURE", "VIRTIO_SCSI_S_NEXUS_FAILURE", "VIRTIO_SCSI_S_FAILURE",
      "VIRTIO_SCSI_S_FUNCTION_SUCCEEDED", "VIRTIO_SCSI_S_FUNCTION_REJECTED", "VIRTIO_SCSI_S_INCORRECT_LUN"};
  if (response < sizeof kNames / sizeof kNames[0]) return kNames[response];
  return response == kPoison ? "none written" : "unknown";
}

ScsiProtocol::ScsiProtocol(uint32_t lun, uint32_t cdb_size, uint32_t sense_size)
    : cdb_size_(cdb_size), sense_size_(sense_size) {
  // §5.6.6.1: lun[0] = 1, lun[1] = target, lun[2..3] = the LUN in SAM-5 §4.7.7 flat space
  // addressing (01b in the top bits; what Linux sends), lun[4..7] = 0.
  std::memset(lun_field_, 0, sizeof lun_field_);
  lun_field_[0] = 1;
  lun_field_[1] = 0;
  lun_field_[2] = static_cast<uint8_t>(0x40 | ((lun >> 8) & 0x3f));
  lun_field_[3] = static_cast<uint8_t>(lun & 0xff);
}

void ScsiProtocol::encode_cdb(uint8_t* hdr, const uint8_t* cdb, uint32_t len, uint64_t tag) const {
  using namespace virtio::scsi;
  std::memset(hdr, 0, header_size());
  std::memcpy(hdr + REQ_lun, lun_field_, 8);
  put_le64(hdr + REQ_id, tag);
  hdr[REQ_task_attr] = VIRTIO_SCSI_S_SIMPLE;
  hdr[REQ_prio] = 0;
  hdr[REQ_crn] = 0;
  std::memcpy(hdr + REQ_cdb, cdb, len < cdb_size_ ? len : cdb_size_);
}

void ScsiProtocol::encode_io(uint8_t* hdr, bool write, uint64_t offset, uint32_t len, uint64_t tag) const {
  // SBC-3 READ(16)/WRITE(16): opcode, flags (no DPO/FUA), LBA be64, TRANSFER LENGTH be32 in
  // logical blocks, group number, control.
  uint8_t cdb[16] = {};
  cdb[0] = write ? kWrite16 : kRead16;
  put_be64(cdb + 2, offset / block_size_);
  put_be32(cdb + 10, len / block_size_);
  encode_cdb(hdr, cdb, sizeof cdb, tag);
}

void ScsiProtocol::poison_response(uint8_t* resp) const {
  resp[virtio::scsi::RESP_status] = kPoison;
  resp[virtio::scsi::RESP_response] = kPoison;
}

bool ScsiProtocol::response_ok(const uint8_t* resp) const {
  return resp[virtio::scsi::RESP_response] == virtio::scsi::VIRTIO_SCSI_S_OK && resp[virtio::scsi::RESP_status] == 0;
}

void ScsiProtocol::describe_answer(char* out, size_t n, const uint8_t* resp) const {
  using namespace virtio::scsi;
  uint8_t response = resp[RESP_response];
  uint8_t status = resp[RESP_status];
  uint32_t sense_len = get_le32(resp + RESP_sense_len);
  if (sense_len > sense_size_) sense_len = sense_size_;
  int w = std::snprintf(out, n, "response %u (%s), status 0x%02x (%s)", response, virtio_scsi_response_name(response),
                        status, scsi_status_name(status));
  SenseInfo s = decode_sense(resp + RESP_sense, sense_len);
  if (w > 0 && static_cast<size_t>(w) < n && s.valid) {
    const char* name = asc_name(s.asc, s.ascq);
    std::snprintf(out + w, n - static_cast<size_t>(w), ", sense key 0x%x (%s), ASC/ASCQ %02Xh/%02Xh%s%s%s", s.key,
                  sense_key_name(s.key), s.asc, s.ascq, name ? " (" : "", name ? name : "", name ? ")" : "");
  }
}

void ScsiProtocol::describe(char* out, size_t n, const uint8_t* resp, bool write, uint64_t offset,
                            uint32_t len) const {
  char answer[192];
  describe_answer(answer, sizeof answer, resp);
  std::snprintf(out, n, "%s LBA %llu, %u blocks: %s", write ? "WRITE(16)" : "READ(16)",
                static_cast<unsigned long long>(offset / block_size_), len / block_size_, answer);
}

}  // namespace lg
