// The driver side of one split virtqueue (virtio 1.2 §2.7) in guest memory, plus its kick and
// call eventfds. Owned by one thread at a time (setup thread, then its queue's worker).
#pragma once

#include <cstdint>

#include "common.h"
#include "guest_memory.h"
#include "virtio.h"

namespace lg {

class DriverRing {
 public:
  // Lays the three areas out in `mem` (page-aligned, which satisfies §2.7's alignment table)
  // and creates the eventfds.
  void init(GuestMemory& mem, uint32_t index, uint32_t num, bool event_idx);
  void close_fds();

  uint32_t index() const { return index_; }
  uint32_t num() const { return num_; }
  int kick_fd() const { return kick_fd_; }
  int call_fd() const { return call_fd_; }
  uint64_t desc_uva() const { return desc_uva_; }
  uint64_t avail_uva() const { return avail_uva_; }
  uint64_t used_uva() const { return used_uva_; }

  // §2.7.5: one descriptor of the table (or of an indirect table).
  static void write_desc(uint8_t* table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    uint8_t* d = table + uint64_t{i} * virtio::kDescSize;
    put_le64(d, addr);
    put_le32(d + 8, len);
    put_le16(d + 12, flags);
    put_le16(d + 14, next);
  }
  uint8_t* desc_table() const { return desc_; }

  // §2.7.13.2: place a chain head in the next avail slot; not visible before publish().
  void add(uint16_t head) {
    put_le16(avail_ + 4 + 2 * (next_avail_ & (num_ - 1)), head);
    ++next_avail_;
  }
  // §2.7.13.3: the avail ring entries (and the descriptors) before idx: a release store.
  void publish() {
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail_ + 2), htole16(next_avail_), __ATOMIC_RELEASE);
  }
  // §2.7.13.4 / §2.7.10: whether the device wants a notification for what was published since
  // the previous decision. The full fence orders our idx store before reading its suppression
  // state (the store-load case a release store does not cover).
  bool need_kick() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old_idx = kicked_avail_;
    kicked_avail_ = next_avail_;
    if (event_idx_) {
      uint16_t avail_event = le16toh(__atomic_load_n(avail_event_, __ATOMIC_RELAXED));
      return virtio::vring_need_event(avail_event, next_avail_, old_idx);
    }
    return !(le16toh(__atomic_load_n(reinterpret_cast<uint16_t*>(used_), __ATOMIC_RELAXED)) &
             virtio::VIRTQ_USED_F_NO_NOTIFY);
  }
  // Signals the kick eventfd; returns false only if the write failed (reported by the caller).
  bool kick();

  // §2.7.14: used->idx with acquire, so the elements below it are read after it.
  uint16_t used_idx() const {
    return le16toh(__atomic_load_n(reinterpret_cast<uint16_t*>(used_ + 2), __ATOMIC_ACQUIRE));
  }
  // The used element at free-running index i.
  void used_elem(uint16_t i, uint32_t* id, uint32_t* len) const {
    const uint8_t* e = used_ + 4 + uint64_t{virtio::kUsedElemSize} * (i & (num_ - 1));
    *id = get_le32(e);
    *len = get_le32(e + 4);
  }
  uint16_t last_used() const { return last_used_; }
  void set_last_used(uint16_t v) { last_used_ = v; }
  uint16_t next_avail() const { return next_avail_; }

  // §2.7.7: avail->flags (VIRTQ_AVAIL_F_NO_INTERRUPT), used without EVENT_IDX.
  void set_avail_flags(uint16_t flags) {
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail_), htole16(flags), __ATOMIC_RELAXED);
  }
  // §2.7.7: used_event, used with EVENT_IDX.
  void set_used_event(uint16_t v) { __atomic_store_n(used_event_, htole16(v), __ATOMIC_RELAXED); }
  bool event_idx() const { return event_idx_; }

 private:
  uint32_t index_ = 0;
  uint32_t num_ = 0;
  bool event_idx_ = false;
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;
  uint16_t* used_event_ = nullptr;   // avail->ring[num]
  uint16_t* avail_event_ = nullptr;  // used->ring[num]
  uint64_t desc_uva_ = 0, avail_uva_ = 0, used_uva_ = 0;
  uint16_t next_avail_ = 0;    // our shadow of avail->idx
  uint16_t kicked_avail_ = 0;  // avail->idx at the previous notification decision
  uint16_t last_used_ = 0;     // next used element to consume
  int kick_fd_ = -1;
  int call_fd_ = -1;
};

}  // namespace lg
