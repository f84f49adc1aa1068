// "Guest memory": one memfd, mapped here and handed to the back-end as the single region of
// VHOST_USER_SET_MEM_TABLE, guest physical address 0 = file offset 0. Everything the device
// reads or writes (rings, request headers, data buffers) is carved out of it once, at setup.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lg {

struct GuestBuffer {
  uint8_t* va = nullptr;  // where we access it
  uint64_t gpa = 0;       // what descriptors carry
};

class GuestMemory {
 public:
  // Creates and maps a memfd of `bytes` (a multiple of the page size).
  explicit GuestMemory(uint64_t bytes);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Bump allocation. Past the end it keeps counting and returns a null buffer, so the whole
  // layout can be computed first and the shortfall reported once (check_fits()).
  GuestBuffer alloc(uint64_t size, uint64_t align);
  // Exits with the size needed if the layout did not fit.
  void check_fits() const;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  uint64_t userspace_addr() const { return reinterpret_cast<uintptr_t>(base_); }
  // The frontend virtual address of a buffer: what SET_VRING_ADDR carries.
  uint64_t uva(const void* p) const { return reinterpret_cast<uintptr_t>(p); }

 private:
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t cursor_ = 0;
};

}  // namespace lg
