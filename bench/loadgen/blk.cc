// virtio-blk requests (virtio 1.2 §5.2.6): virtio_blk_outhdr, data, one status byte.
#include <cstdio>
#include <cstring>

#include "common.h"
#include "proto.h"
#include "virtio.h"

namespace lg {

namespace {
// Not a §5.2.6 status value.
constexpr uint8_t kPoison = 0xff;
}  // namespace

uint32_t BlkProtocol::header_size() const { return virtio::blk::kOutHdrSize; }
uint32_t BlkProtocol::response_size() const { return virtio::blk::kStatusSize; }

void BlkProtocol::encode_io(uint8_t* hdr, bool write, uint64_t offset, uint32_t /*len*/, uint64_t /*tag*/) const {
  using namespace virtio::blk;
  put_le32(hdr, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
  put_le32(hdr + 4, 0);                   // reserved (ioprio)
  put_le64(hdr + 8, offset / kSectorSize);  // §5.2.6: always 512-byte sectors
}

void BlkProtocol::poison_response(uint8_t* resp) const { resp[0] = kPoison; }

bool BlkProtocol::response_ok(const uint8_t* resp) const { return resp[0] == virtio::blk::VIRTIO_BLK_S_OK; }

void BlkProtocol::describe(char* out, size_t n, const uint8_t* resp, bool write, uint64_t offset, uint32_t len) const {
  using namespace virtio::blk;
  const char* status;
  switch (resp[0]) {
    case VIRTIO_BLK_S_OK: status = "VIRTIO_BLK_S_OK"; break;
    case VIRTIO_BLK_S_IOERR: status = "VIRTIO_BLK_S_IOERR"; break;
    case VIRTIO_BLK_S_UNSUPP: status = "VIRTIO_BLK_S_UNSUPP"; break;
    case kPoison: status = "none written"; break;
    default: status = "unknown"; break;
  }
  std::snprintf(out, n, "%s sector %llu, %u bytes: status %u (%s)", write ? "VIRTIO_BLK_T_OUT" : "VIRTIO_BLK_T_IN",
                static_cast<unsigned long long>(offset / kSectorSize), len, resp[0], status);
}

}  // namespace lg
