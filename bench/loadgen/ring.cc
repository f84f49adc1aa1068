#include "ring.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

namespace lg {

void DriverRing::init(GuestMemory& mem, uint32_t index, uint32_t num, bool event_idx) {
  index_ = index;
  num_ = num;
  event_idx_ = event_idx;
  constexpr uint64_t kPage = 4096;
  GuestBuffer d = mem.alloc(uint64_t{virtio::kDescSize} * num, kPage);
  GuestBuffer a = mem.alloc(virtio::avail_ring_bytes(num), kPage);
  GuestBuffer u = mem.alloc(virtio::used_ring_bytes(num), kPage);
  desc_ = d.va;
  avail_ = a.va;
  used_ = u.va;
  if (desc_ != nullptr && avail_ != nullptr && used_ != nullptr) {
    // The memfd starts zeroed: flags, indexes and events are 0 without writing them.
    desc_uva_ = mem.uva(desc_);
    avail_uva_ = mem.uva(avail_);
    used_uva_ = mem.uva(used_);
    used_event_ = reinterpret_cast<uint16_t*>(avail_ + 4 + 2 * uint64_t{num});
    avail_event_ = reinterpret_cast<uint16_t*>(used_ + 4 + uint64_t{virtio::kUsedElemSize} * num);
  }
  // Non-blocking, as QEMU's event notifiers: the back-end shares the open file descriptions.
  kick_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  call_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (kick_fd_ < 0 || call_fd_ < 0) fatal(kExitFailure, "eventfd: %s", strerror(errno));
}

void DriverRing::close_fds() {
  if (kick_fd_ >= 0) close(kick_fd_);
  if (call_fd_ >= 0) close(call_fd_);
  kick_fd_ = call_fd_ = -1;
}

bool DriverRing::kick() {
  uint64_t one = 1;
  for (;;) {
    ssize_t n = write(kick_fd_, &one, sizeof one);
    if (n == sizeof one) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

}  // namespace lg
