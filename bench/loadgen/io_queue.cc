#include "io_queue.h"

#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common.h"
#include "pattern.h"
#include "virtio.h"

namespace lg {

namespace {

constexpr uint64_t kWatchdogNs = 10'000'000'000ull;  // no completion for this long: exit 3
constexpr uint32_t kMaxReports = 5;                  // error lines printed per kind
constexpr unsigned kLockAttempts = 8;                // positions tried before leaving a slot idle
// Suppression by EVENT_IDX: a used_event half the index space away from anything the device
// can publish before we move it again (at most the ring size, <= 32768, ahead of last_used).
constexpr uint16_t kFarAway = 0x8000;
// The byte a read buffer is filled with before a --verify read: no pattern word is all 0xa5.
constexpr uint8_t kReadPoison = 0xa5;
constexpr uint64_t kTickNs = 1'000'000'000ull;  // watchdog check interval while blocked
// epoll_event.data tags.
constexpr uint32_t kEvCall = 1, kEvStop = 2, kEvTimer = 3;

}  // namespace

IoQueue::IoQueue(Workload& w, uint32_t qid) : w_(w), opt_(*w.opt), proto_(*w.proto), qid_(qid) {
  // Each queue draws its own offset stream from --seed.
  rng_ = mix64(opt_.seed ^ (0xd1b54a32d192ed03ull * (uint64_t{qid} + 1)));
}

IoQueue::~IoQueue() {
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (timer_fd_ >= 0) close(timer_fd_);
}

void IoQueue::init(GuestMemory& mem, uint32_t slots) {
  uint32_t vq_index = opt_.proto == Proto::kScsi ? virtio::scsi::kFirstRequestQueue + qid_ : qid_;
  ring_.init(mem, vq_index, opt_.vq_size, opt_.event_idx);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (epoll_fd_ < 0 || timer_fd_ < 0) fatal(kExitFailure, "epoll_create1/timerfd_create: %s", strerror(errno));
  // Edge-triggered: every eventfd_write by the back-end is one new event, whatever the counter
  // holds, so a wakeup costs one epoll_wait and no read (the counter is read per window).
  epoll_event call{};
  call.events = EPOLLIN | EPOLLET;
  call.data.u32 = kEvCall;
  epoll_event timer{};
  timer.events = EPOLLIN;
  timer.data.u32 = kEvTimer;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ring_.call_fd(), &call) != 0 ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &timer) != 0) {
    fatal(kExitFailure, "epoll_ctl: %s", strerror(errno));
  }
  // Descriptors of one request: header, data segments, response (§2.7.4 / §2.7.5.3).
  uint32_t chain = 2 + w_.segs;
  descs_per_slot_ = opt_.indirect ? 1 : chain;
  slots_.resize(slots);
  head_to_slot_.assign(opt_.vq_size, -1);
  for (uint32_t i = 0; i < slots; i++) {
    Slot& s = slots_[i];
    s.index = static_cast<uint16_t>(i);
    // Each slot owns a fixed run of ring descriptors: the head never changes.
    s.head = static_cast<uint16_t>(i * descs_per_slot_);
    head_to_slot_[s.head] = static_cast<int32_t>(i);
    s.hdr = mem.alloc(proto_.header_size(), 64);
    s.resp = mem.alloc(proto_.response_size(), 64);
    // Data buffers 4 KiB-aligned like a guest's page-cache or O_DIRECT buffers.
    s.data = mem.alloc(round_up(w_.bs, 4096), 4096);
    if (opt_.indirect) s.table = mem.alloc(uint64_t{chain} * virtio::kDescSize, virtio::kDescAlign);
  }
  free_.clear();
  for (uint32_t i = slots; i-- > 0;) free_.push_back(static_cast<uint16_t>(i));
  batch_.assign(slots, 0);
}

// ---- chains --------------------------------------------------------------------------------

void IoQueue::build_chain(Slot& s, bool write, uint32_t data_len) {
  using namespace virtio;
  uint8_t* table = opt_.indirect ? s.table.va : ring_.desc_table();
  // Within an indirect table the chain starts at 0 (§2.7.5.3.1); in the ring at the head.
  uint32_t base = opt_.indirect ? 0 : s.head;
  uint32_t n = 0;
  auto put = [&](uint64_t addr, uint32_t len, uint16_t flags) {
    DriverRing::write_desc(table, base + n, addr, len, flags | VIRTQ_DESC_F_NEXT, static_cast<uint16_t>(base + n + 1));
    ++n;
  };
  auto put_data = [&](uint16_t flags) {
    for (uint32_t off = 0; off < data_len; off += w_.seg_size) {
      put(s.data.gpa + off, std::min(w_.seg_size, data_len - off), flags);
    }
  };
  put(s.hdr.gpa, proto_.header_size(), 0);
  // §2.7.4.2: every device-readable descriptor precedes every device-writable one.
  if (write) {
    put_data(0);
    put(s.resp.gpa, proto_.response_size(), VIRTQ_DESC_F_WRITE);
  } else if (proto_.response_before_data_in()) {
    put(s.resp.gpa, proto_.response_size(), VIRTQ_DESC_F_WRITE);
    put_data(VIRTQ_DESC_F_WRITE);
  } else {
    put_data(VIRTQ_DESC_F_WRITE);
    put(s.resp.gpa, proto_.response_size(), VIRTQ_DESC_F_WRITE);
  }
  // The last descriptor ends the chain: clear NEXT (and next, for tidiness).
  uint8_t* last = table + uint64_t{base + n - 1} * kDescSize;
  put_le16(last + 12, static_cast<uint16_t>(get_le16(last + 12) & ~VIRTQ_DESC_F_NEXT));
  put_le16(last + 14, 0);
  if (opt_.indirect) {
    // §2.7.5.3.1: the ring descriptor points at the table; INDIRECT alone, no NEXT or WRITE.
    DriverRing::write_desc(ring_.desc_table(), s.head, s.table.gpa, n * kDescSize, VIRTQ_DESC_F_INDIRECT, 0);
  }
  s.expected_used = proto_.response_size() + (write ? 0 : data_len);
}

uint32_t IoQueue::exec_sync(bool write, uint32_t data_len) {
  Slot& s = slots_[0];
  proto_.poison_response(s.resp.va);
  build_chain(s, write, data_len);
  ring_.add(s.head);
  ring_.publish();
  if (ring_.need_kick() && !ring_.kick()) fatal(kExitFailure, "write to the kick eventfd: %s", strerror(errno));
  uint64_t start = now_ns();
  while (ring_.used_idx() == ring_.last_used()) {
    if (now_ns() - start >= kWatchdogNs) {
      fatal(kExitTimeout, "virtqueue %u: a start-up command got no completion within %llu s", ring_.index(),
            static_cast<unsigned long long>(kWatchdogNs / 1000000000ull));
    }
    // The call eventfd may be non-blocking (the back-end shares it): poll, then read.
    pollfd p{ring_.call_fd(), POLLIN, 0};
    if (poll(&p, 1, 100) > 0) drain_call_fd();
  }
  uint32_t id, len;
  ring_.used_elem(ring_.last_used(), &id, &len);
  if (id != s.head) fatal(kExitFailure, "virtqueue %u: used id %u, but only head %u was posted", ring_.index(), id, s.head);
  ring_.set_last_used(static_cast<uint16_t>(ring_.last_used() + 1));
  if (ring_.event_idx()) ring_.set_used_event(ring_.last_used());
  return len;
}

// ---- the workload ---------------------------------------------------------------------------

IoQueue::Pick IoQueue::pick(Slot& s) {
  if (phase_ != Phase::kMeasure) {
    // Fill and read-back: this queue's share of the region, once, in order.
    if (cursor_ >= hi_) return Pick::kDone;
    s.pos = cursor_++;
    s.write = phase_ == Phase::kFill;
    return Pick::kIo;
  }
  bool write;
  switch (opt_.rw) {
    case Rw::kRandRead: case Rw::kRead: write = false; break;
    case Rw::kRandWrite: case Rw::kWrite: write = true; break;
    default: write = random_below(100) >= opt_.rwmix_read; break;
  }
  bool random = rw_random(opt_.rw);
  for (unsigned attempt = 0; attempt < kLockAttempts; attempt++) {
    uint64_t pos;
    if (random) {
      pos = random_below(w_.positions);
    } else {
      // Sequential: each queue streams from the start of its share and wraps at the region end.
      pos = cursor_;
      if (++cursor_ == w_.positions) cursor_ = 0;
    }
    if (w_.lock_positions) {
      uint8_t expected = 0;
      if (!w_.busy[pos].compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
      s.locked = true;
    }
    s.pos = pos;
    s.write = write;
    return Pick::kIo;
  }
  return Pick::kLater;
}

void IoQueue::prepare(Slot& s) {
  s.offset = w_.region_start + s.pos * w_.bs;
  s.len = w_.bs;
  if (opt_.verify) {
    if (s.write) {
      uint32_t g = 0;
      if (phase_ == Phase::kMeasure) {
        g = w_.generation[s.pos] + 1;
        if (g == kUnknownGeneration) g = 0;
      }
      s.gen = g;
      pattern_fill(s.data.va, s.len, pattern_key(opt_.seed, g), s.offset);
    } else {
      s.gen = w_.generation[s.pos];
      // A device that returns without writing the buffer must not pass on stale data.
      std::memset(s.data.va, kReadPoison, s.len);
    }
  }
  proto_.encode_io(s.hdr.va, s.write, s.offset, s.len, (uint64_t{qid_} << 48) | (tag_++ & 0xffffffffffffull));
  proto_.poison_response(s.resp.va);
  build_chain(s, s.write, s.len);
}

void IoQueue::fill(bool* more) {
  uint32_t added = 0;
  while (!free_.empty()) {
    Slot& s = slots_[free_.back()];
    Pick p = pick(s);
    if (p == Pick::kLater) break;
    if (p == Pick::kDone) {
      *more = false;
      break;
    }
    free_.pop_back();
    prepare(s);
    s.in_flight = true;
    ring_.add(s.head);
    batch_[added++] = s.index;
  }
  if (added == 0) return;
  // One timestamp per batch, taken just before the avail idx store that hands it over.
  uint64_t t = now_ns();
  for (uint32_t i = 0; i < added; i++) slots_[batch_[i]].submit_ns = t;
  ring_.publish();
  inflight_ += added;
  if (ring_.need_kick()) {
    if (!ring_.kick()) fatal(kExitFailure, "queue %u: write to the kick eventfd: %s", qid_, strerror(errno));
    if (in_window(t)) ++stats_.kicks;
  }
}

unsigned IoQueue::harvest(uint64_t* t) {
  uint16_t used = ring_.used_idx();
  uint16_t last = ring_.last_used();
  if (used == last) return 0;
  uint16_t count = static_cast<uint16_t>(used - last);
  if (count > inflight_) {
    fatal(kExitFailure, "queue %u: used->idx advanced by %u with only %u requests outstanding (used->idx %u)", qid_,
          count, inflight_, used);
  }
  *t = now_ns();
  bool win = in_window(*t);
  for (uint16_t i = last; i != used; ++i) {
    uint32_t id, len;
    ring_.used_elem(i, &id, &len);
    int32_t si = id < head_to_slot_.size() ? head_to_slot_[id] : -1;
    if (si < 0 || !slots_[si].in_flight) {
      fatal(kExitFailure, "queue %u: used element %u has id %u, which is not an outstanding request's head", qid_, i, id);
    }
    complete(slots_[si], len, *t, win);
  }
  ring_.set_last_used(used);
  inflight_ -= count;
  last_progress_ = *t;
  if (!calls_enabled_ && ring_.event_idx()) ring_.set_used_event(static_cast<uint16_t>(used + kFarAway));
  return count;
}

void IoQueue::complete(Slot& s, uint32_t used_len, uint64_t t, bool win) {
  s.in_flight = false;
  if (phase_ == Phase::kMeasure) ++stats_.phase_completions;
  free_.push_back(s.index);
  bool ok = proto_.response_ok(s.resp.va) && used_len == s.expected_used;
  if (!ok) {
    ++stats_.errors;
    report_error(s, used_len);
    // A failed write leaves the block in an unknown state.
    if (opt_.verify && s.write) w_.generation[s.pos] = kUnknownGeneration;
  } else if (opt_.verify) {
    if (s.write) {
      w_.generation[s.pos] = s.gen;
    } else if (s.gen != kUnknownGeneration) {
      PatternMismatch m;
      uint32_t bad = pattern_check(s.data.va, s.len, pattern_key(opt_.seed, s.gen), s.offset, &m);
      if (bad > 0) {
        ++stats_.verify_errors;
        uint32_t k = w_.verify_reports.fetch_add(1, std::memory_order_relaxed);
        if (k < kMaxReports) {
          std::fprintf(stderr,
                       "vhost_loadgen: verify error: queue %u: read of %u bytes at device offset %llu: byte %llu "
                       "expected %016llx, got %016llx (%u of %u words differ, generation %u)\n",
                       qid_, s.len, static_cast<unsigned long long>(s.offset),
                       static_cast<unsigned long long>(m.offset), static_cast<unsigned long long>(m.expected),
                       static_cast<unsigned long long>(m.got), bad, s.len / 8, s.gen);
        } else if (k == kMaxReports) {
          std::fprintf(stderr, "vhost_loadgen: further verify errors are counted, not printed\n");
        }
      }
    }
  }
  if (s.locked) {
    w_.busy[s.pos].store(0, std::memory_order_release);
    s.locked = false;
  }
  if (ok && win) {
    ++stats_.ios;
    stats_.bytes += s.len;
    hist_.add(t - s.submit_ns);
  }
}

void IoQueue::report_error(const Slot& s, uint32_t used_len) {
  uint32_t k = w_.error_reports.fetch_add(1, std::memory_order_relaxed);
  if (k < kMaxReports) {
    char what[320];
    proto_.describe(what, sizeof what, s.resp.va, s.write, s.offset, s.len);
    std::fprintf(stderr, "vhost_loadgen: I/O error: queue %u: %s; used.len %u (expected %u)\n", qid_, what, used_len,
                 s.expected_used);
  } else if (k == kMaxReports) {
    std::fprintf(stderr, "vhost_loadgen: further I/O errors are counted, not printed\n");
  }
}

void IoQueue::report_timeout(uint64_t now) {
  if (w_.timeout_reported.exchange(true)) {
    // Another queue is reporting and will end the process.
    for (;;) pause();
  }
  std::fprintf(stderr, "vhost_loadgen: error: queue %u (virtqueue %u): no completion for %.1f s, %u requests outstanding:\n",
               qid_, ring_.index(), static_cast<double>(now - last_progress_) / 1e9, inflight_);
  unsigned shown = 0;
  for (const Slot& s : slots_) {
    if (!s.in_flight) continue;
    if (++shown > 16) {
      std::fprintf(stderr, "  ...\n");
      break;
    }
    std::fprintf(stderr, "  head %u: %s of %u bytes at device offset %llu, submitted %.1f s ago\n", s.head,
                 s.write ? "write" : "read", s.len, static_cast<unsigned long long>(s.offset),
                 static_cast<double>(now - s.submit_ns) / 1e9);
  }
  std::fprintf(stderr, "  avail->idx %u, used->idx %u, last used seen %u\n", ring_.next_avail(), ring_.used_idx(),
               ring_.last_used());
  fatal(kExitTimeout, "the backend stopped completing requests");
}

// ---- notifications ---------------------------------------------------------------------------

// §2.7.10: suppress used-buffer notifications. With EVENT_IDX, used_event is moved away from
// every index the device can reach; without it, VIRTQ_AVAIL_F_NO_INTERRUPT is a hint.
void IoQueue::disable_calls() {
  if (!calls_enabled_) return;
  calls_enabled_ = false;
  if (ring_.event_idx()) ring_.set_used_event(static_cast<uint16_t>(ring_.last_used() + kFarAway));
  else ring_.set_avail_flags(virtio::VIRTQ_AVAIL_F_NO_INTERRUPT);
}

// Ask for a notification at the next used entry. The caller re-checks used->idx afterwards:
// the device may have published in between and decided against notifying.
void IoQueue::enable_calls() {
  calls_enabled_ = true;
  if (ring_.event_idx()) ring_.set_used_event(ring_.last_used());
  else ring_.set_avail_flags(0);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);  // our store before the device's used->idx, re-read next
}

uint64_t IoQueue::drain_call_fd() {
  uint64_t v = 0;
  for (;;) {
    ssize_t n = read(ring_.call_fd(), &v, sizeof v);
    if (n == sizeof v) return v;
    if (n < 0 && errno == EINTR) continue;
    return 0;  // EAGAIN: nothing pending (the fd is non-blocking)
  }
}

void IoQueue::wait(bool more) {
  uint64_t now = now_ns();
  if (inflight_ > 0 && now - last_progress_ >= kWatchdogNs) report_timeout(now);
  if (opt_.mode == Mode::kPoll) {
    cpu_relax();
    return;
  }
  if (inflight_ == 0) {
    // Nothing of ours in flight, yet nothing could be submitted: the positions we drew are
    // locked by other queues' requests. Let them complete.
    usleep(20);
    return;
  }
  // Like a Linux driver's interrupt handler: notifications are off while we work, back on
  // (and re-checked) only before sleeping.
  enable_calls();
  if (ring_.used_idx() != ring_.last_used()) return;
  epoll_event ev[3];
  int n = epoll_wait(epoll_fd_, ev, 3, -1);
  if (n < 0 && errno != EINTR) fatal(kExitFailure, "queue %u: epoll_wait: %s", qid_, strerror(errno));
  for (int i = 0; i < n; i++) {
    if (ev[i].data.u32 == kEvCall) {
      disable_calls();
    } else if (ev[i].data.u32 == kEvTimer) {
      uint64_t expirations;
      if (read(timer_fd_, &expirations, sizeof expirations) < 0 && errno != EAGAIN) {
        fatal(kExitFailure, "queue %u: read(timerfd): %s", qid_, strerror(errno));
      }
      arm_timer(now_ns(), more);
    }
    // kEvStop: the caller's loop sees the stop request (window_end moved, or w_.stop).
  }
}

// The next wakeup without a completion: the window end while it is ahead and we still submit,
// else the next watchdog check.
void IoQueue::arm_timer(uint64_t now, bool more) {
  uint64_t next = now + kTickNs;
  if (more && phase_ == Phase::kMeasure) {
    uint64_t end = w_.window_end.load(std::memory_order_relaxed);
    if (end > now && end < next) next = end;
  }
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(next / 1000000000ull);
  its.it_value.tv_nsec = static_cast<long>(next % 1000000000ull);
  if (timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr) != 0) {
    fatal(kExitFailure, "queue %u: timerfd_settime: %s", qid_, strerror(errno));
  }
}

// The stop eventfd stays readable once written (it is never read): it is watched only while
// we still submit, so a draining queue does not spin on it.
void IoQueue::watch_stop(bool on) {
  if (on == stop_watched_) return;
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.u32 = kEvStop;
  if (epoll_ctl(epoll_fd_, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w_.stop_fd, &e) != 0) {
    fatal(kExitFailure, "queue %u: epoll_ctl(stop fd): %s", qid_, strerror(errno));
  }
  stop_watched_ = on;
}

void IoQueue::run(Phase phase) {
  phase_ = phase;
  {
    std::unique_lock<std::mutex> lk(w_.gate_mu);
    ++w_.gate_ready;
    w_.gate_cv.notify_all();
    w_.gate_cv.wait(lk, [this] { return w_.gate_open; });
  }
  // This queue's share of the region: what it fills and reads back, and where its
  // sequential stream starts.
  lo_ = w_.positions * qid_ / opt_.queues;
  hi_ = w_.positions * (qid_ + 1) / opt_.queues;
  cursor_ = lo_ < w_.positions ? lo_ : 0;
  if (opt_.mode == Mode::kPoll) {
    calls_enabled_ = true;  // so that disable_calls() writes the suppression state
    disable_calls();
    drain_call_fd();  // e.g. the signal libvhost-user sends when it gets the call fd
  } else {
    enable_calls();
    watch_stop(true);
  }
  last_progress_ = now_ns();
  if (opt_.mode == Mode::kIrq) arm_timer(last_progress_, true);
  call_count_ = CallCount::kBefore;
  bool more = true;
  fill(&more);
  for (;;) {
    uint64_t t = 0;
    unsigned n = harvest(&t);
    if (more) {
      if (phase_ == Phase::kMeasure) {
        if (n == 0) t = now_ns();
        if (call_count_ == CallCount::kBefore && t >= w_.window_start.load(std::memory_order_relaxed)) {
          // Calls: the counter's value over the window, read at both ends (irq mode). What
          // accumulated before the window is discarded here.
          if (opt_.mode == Mode::kIrq) drain_call_fd();
          call_count_ = CallCount::kCounting;
        }
        if (t >= w_.window_end.load(std::memory_order_relaxed)) {
          more = false;
          if (call_count_ == CallCount::kCounting && opt_.mode == Mode::kIrq) stats_.calls += drain_call_fd();
          call_count_ = CallCount::kDone;
        }
      } else if (w_.stop.load(std::memory_order_relaxed)) {
        more = false;
      }
      if (more) fill(&more);
    }
    if (!more && opt_.mode == Mode::kIrq) watch_stop(false);
    if (!more && inflight_ == 0) break;
    if (n == 0) wait(more);
  }
  if (opt_.mode == Mode::kIrq) watch_stop(false);
  if (opt_.mode == Mode::kPoll && phase_ == Phase::kMeasure) stats_.stray_calls += drain_call_fd();
  uint64_t one = 1;
  if (write(w_.done_fd, &one, sizeof one) != sizeof one) fatal(kExitFailure, "write to done eventfd: %s", strerror(errno));
}

}  // namespace lg
