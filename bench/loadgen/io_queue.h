// One request virtqueue and the thread that drives it: preallocated request slots, chain
// building, notification (kick) decisions, completion harvesting, latency and counters.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "guest_memory.h"
#include "histogram.h"
#include "options.h"
#include "proto.h"
#include "ring.h"

namespace lg {

// kFill writes the whole region (--verify), kMeasure is the timed --rw workload, kReadBack
// reads the whole region back (--verify after a workload with writes).
enum class Phase { kFill, kMeasure, kReadBack };

// What every queue shares. The main thread sets it up between phases; during a phase only the
// atomics (and, under the position locks, `generation`) change.
struct Workload {
  const Options* opt = nullptr;
  const Protocol* proto = nullptr;
  uint64_t region_start = 0;  // device byte offset of position 0
  uint64_t positions = 0;     // I/O positions: bs-sized, bs-aligned from region_start
  uint32_t bs = 0;
  uint32_t seg_size = 0;      // data bytes per descriptor
  uint32_t segs = 0;          // data descriptors per request (ceil(bs / seg_size))
  // --verify with writes in the workload: a position is locked while a request on it is in
  // flight, so reads always know which generation they must find.
  bool lock_positions = false;
  std::unique_ptr<std::atomic<uint8_t>[]> busy;
  std::unique_ptr<uint32_t[]> generation;  // --verify: per position

  int stop_fd = -1;  // eventfd, readable once a stop was requested (SIGINT/SIGTERM)
  int done_fd = -1;  // eventfd, each worker adds 1 when its phase ends
  std::atomic<bool> stop{false};
  // kMeasure: completions and notifications in [window_start, window_end) count.
  std::atomic<uint64_t> window_start{0};
  std::atomic<uint64_t> window_end{0};
  std::atomic<uint32_t> error_reports{0};
  std::atomic<uint32_t> verify_reports{0};
  std::atomic<bool> timeout_reported{false};

  // Start gate: every worker is ready before the window is placed and they all start.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  uint32_t gate_ready = 0;
  bool gate_open = false;
};

struct QueueStats {
  uint64_t ios = 0;  // successful completions in the window
  uint64_t bytes = 0;
  uint64_t kicks = 0;  // kick eventfd writes in the window
  uint64_t calls = 0;  // call eventfd counter values over the window (irq mode)
  uint64_t errors = 0;         // failed requests, any phase
  uint64_t verify_errors = 0;  // reads whose data differed, any phase
  uint64_t stray_calls = 0;    // poll mode: calls signalled although suppressed
  uint64_t phase_completions = 0;  // kMeasure: every completion, ramp and drain included
};

class IoQueue {
 public:
  IoQueue(Workload& w, uint32_t qid);
  ~IoQueue();
  IoQueue(const IoQueue&) = delete;
  IoQueue& operator=(const IoQueue&) = delete;

  // Lays out the ring and `slots` request slots (header, response, a 4 KiB-aligned data buffer
  // of bs, an indirect table with --indirect) in guest memory.
  void init(GuestMemory& mem, uint32_t slots);
  DriverRing& ring() { return ring_; }

  // Start-up commands, before the workers run: the caller encodes slot 0's header (and data),
  // this posts it, waits up to the watchdog time and returns used.len.
  uint8_t* sync_header() { return slots_[0].hdr.va; }
  uint8_t* sync_response() { return slots_[0].resp.va; }
  uint8_t* sync_data() { return slots_[0].data.va; }
  uint32_t exec_sync(bool write, uint32_t data_len);

  // Thread body: passes the start gate, runs `phase` to its end, drains, signals done_fd.
  void run(Phase phase);

  const QueueStats& stats() const { return stats_; }
  const Histogram& histogram() const { return hist_; }
  uint32_t qid() const { return qid_; }

 private:
  struct Slot {
    GuestBuffer hdr, resp, data, table;
    uint16_t index = 0;
    uint16_t head = 0;
    bool in_flight = false;
    bool write = false;
    bool locked = false;
    uint32_t len = 0;
    uint32_t expected_used = 0;
    uint32_t gen = 0;
    uint64_t pos = 0;
    uint64_t offset = 0;
    uint64_t submit_ns = 0;
  };
  enum class Pick { kIo, kLater, kDone };

  Pick pick(Slot& s);
  void prepare(Slot& s);
  void build_chain(Slot& s, bool write, uint32_t data_len);
  void fill(bool* more);
  unsigned harvest(uint64_t* t);
  void complete(Slot& s, uint32_t used_len, uint64_t t, bool in_window);
  void wait(bool more);
  void disable_calls();
  void enable_calls();
  uint64_t drain_call_fd();
  void arm_timer(uint64_t now, bool more);
  void watch_stop(bool on);
  bool in_window(uint64_t t) const {
    return phase_ == Phase::kMeasure && t >= w_.window_start.load(std::memory_order_relaxed) &&
           t < w_.window_end.load(std::memory_order_relaxed);
  }
  uint64_t random() {
    rng_ += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-40 for our n).
  uint64_t random_below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(random()) * n) >> 64);
  }
  void report_error(const Slot& s, uint32_t used_len);
  [[noreturn]] void report_timeout(uint64_t now);

  Workload& w_;
  const Options& opt_;
  const Protocol& proto_;
  uint32_t qid_;
  DriverRing ring_;
  std::vector<Slot> slots_;
  std::vector<int32_t> head_to_slot_;
  std::vector<uint16_t> free_;
  std::vector<uint16_t> batch_;
  uint32_t descs_per_slot_ = 0;  // ring descriptors per request: 1 with --indirect
  uint32_t inflight_ = 0;
  bool calls_enabled_ = true;
  // irq mode waits in epoll: the call eventfd edge-triggered (no read per wakeup), the stop
  // eventfd while submitting, and a timerfd for the window end and the watchdog.
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  bool stop_watched_ = false;
  enum class CallCount { kBefore, kCounting, kDone } call_count_ = CallCount::kBefore;
  Phase phase_ = Phase::kMeasure;
  uint64_t rng_ = 0;
  uint64_t cursor_ = 0, lo_ = 0, hi_ = 0;  // this queue's share of the region, for sequential I/O
  uint64_t tag_ = 0;
  uint64_t last_progress_ = 0;
  QueueStats stats_;
  Histogram hist_;
};

}  // namespace lg
