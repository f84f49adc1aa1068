#include "guest_memory.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "common.h"

namespace lg {

namespace {
// Nothing is placed at guest address 0: a zero descriptor address then always means a bug.
constexpr uint64_t kFirstAllocation = 4096;
}  // namespace

GuestMemory::GuestMemory(uint64_t bytes) : size_(bytes), cursor_(kFirstAllocation) {
  // MFD_CLOEXEC: the fd reaches the back-end only through SCM_RIGHTS, never via exec.
  fd_ = memfd_create("vhost-loadgen-guest", MFD_CLOEXEC);
  if (fd_ < 0) fatal(kExitFailure, "memfd_create: %s", strerror(errno));
  if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    fatal(kExitFailure, "ftruncate(memfd, %llu): %s", static_cast<unsigned long long>(bytes), strerror(errno));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    fatal(kExitFailure, "mmap of %llu MiB of guest memory: %s", static_cast<unsigned long long>(bytes >> 20),
          strerror(errno));
  }
  base_ = static_cast<uint8_t*>(p);
}

GuestMemory::~GuestMemory() {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

GuestBuffer GuestMemory::alloc(uint64_t size, uint64_t align) {
  uint64_t at = round_up(cursor_, align);
  cursor_ = at + size;
  if (cursor_ > size_) return {};
  return {base_ + at, at};
}

void GuestMemory::check_fits() const {
  if (cursor_ > size_) {
    fatal(kExitUsage, "rings and buffers need %llu MiB of guest memory, --mem is %llu MiB: raise --mem",
          static_cast<unsigned long long>((cursor_ + (1u << 20) - 1) >> 20),
          static_cast<unsigned long long>(size_ >> 20));
  }
}

}  // namespace lg
