// vhost_loadgen: a vhost-user front-end that drives a virtio-scsi or virtio-blk back-end
// directly (no QEMU, no guest) and measures it. See README.md.
//
// Flow: connect and negotiate (vhost-user.rst "Starting the device"), lay out guest memory and
// the rings, start the rings, bring the device up (SCSI: TEST UNIT READY, READ CAPACITY(16);
// blk: the config space), then run the phases with one thread per request queue, stop every
// ring with GET_VRING_BASE and print the results.
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "guest_memory.h"
#include "histogram.h"
#include "io_queue.h"
#include "options.h"
#include "proto.h"
#include "ring.h"
#include "vhost_user.h"
#include "virtio.h"

namespace lg {
namespace {

using virtio::bit;

// What negotiation and the device told us.
struct Device {
  uint64_t features = 0;        // acked (SET_FEATURES)
  uint64_t protocol_features = 0;
  bool has_protocol_features = false;
  uint32_t block_size = 512;
  uint64_t capacity = 0;  // bytes; 0 = unknown
  uint32_t seg_max = 0;   // 0 = no limit announced
  uint32_t size_max = 0;  // blk: bytes per segment; 0 = no limit
  uint32_t max_sectors = 0;  // scsi: 512-byte sectors per command; 0 = no limit
  uint32_t cdb_size = virtio::scsi::kDefaultCdbSize;
  uint32_t sense_size = virtio::scsi::kDefaultSenseSize;
  bool read_only = false;
};

void negotiate(VhostUserFrontend& vu, const Options& opt, Device& dev) {
  uint64_t offered = vu.get_features();
  if (!(offered & bit(virtio::kF_VERSION_1))) {
    fatal(kExitFailure, "the backend does not offer VIRTIO_F_VERSION_1 (features 0x%" PRIx64 "); legacy devices are not supported",
          offered);
  }
  dev.has_protocol_features = offered & bit(VHOST_USER_F_PROTOCOL_FEATURES);
  uint32_t vqs = opt.proto == Proto::kScsi ? virtio::scsi::kFirstRequestQueue + opt.queues : opt.queues;
  if (dev.has_protocol_features) {
    uint64_t pf = vu.get_protocol_features();
    // Only what we use: never INFLIGHT_SHMFD, BACKEND_REQ or the like.
    uint64_t want = bit(VHOST_USER_PROTOCOL_F_MQ) | bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) | bit(VHOST_USER_PROTOCOL_F_CONFIG);
    dev.protocol_features = pf & want;
    vu.set_protocol_features(dev.protocol_features);
    if (dev.protocol_features & bit(VHOST_USER_PROTOCOL_F_MQ)) {
      uint64_t n = vu.get_queue_num();
      if (n < vqs) {
        fatal(kExitFailure, "the backend has %" PRIu64 " virtqueues, %u needed for --queues %u%s", n, vqs, opt.queues,
              opt.proto == Proto::kScsi ? " (control, event and the request queues)" : "");
      }
    }
  }
  if (!(dev.protocol_features & bit(VHOST_USER_PROTOCOL_F_MQ)) && opt.proto == Proto::kBlk && opt.queues > 1) {
    fatal(kExitFailure, "the backend does not offer VHOST_USER_PROTOCOL_F_MQ: only --queues 1 is possible");
  }
  vu.set_owner();

  bool have_config = dev.protocol_features & bit(VHOST_USER_PROTOCOL_F_CONFIG);
  uint64_t ack = bit(virtio::kF_VERSION_1);
  if (dev.has_protocol_features) ack |= bit(VHOST_USER_F_PROTOCOL_FEATURES);
  if (opt.event_idx) {
    if (!(offered & bit(virtio::kF_RING_EVENT_IDX))) {
      fatal(kExitFailure, "the backend does not offer VIRTIO_RING_F_EVENT_IDX: run with --event-idx off");
    }
    ack |= bit(virtio::kF_RING_EVENT_IDX);
  }
  if (opt.indirect) {
    if (!(offered & bit(virtio::kF_RING_INDIRECT_DESC))) {
      fatal(kExitFailure, "the backend does not offer VIRTIO_RING_F_INDIRECT_DESC: run without --indirect");
    }
    ack |= bit(virtio::kF_RING_INDIRECT_DESC);
  }

  if (opt.proto == Proto::kScsi) {
    using namespace virtio::scsi;
    // No scsi feature bit is needed: no hotplug/change events (the event queue stays empty),
    // no T10 PI, no bidirectional commands.
    if (have_config) {
      uint8_t c[kConfigSize];
      if (vu.get_config(0, kConfigSize, c)) {
        uint32_t nq = get_le32(c + CFG_num_queues);
        if (nq < opt.queues) fatal(kExitFailure, "the device has %u request queues (config num_queues), --queues is %u", nq, opt.queues);
        dev.seg_max = get_le32(c + CFG_seg_max);
        dev.max_sectors = get_le32(c + CFG_max_sectors);
        dev.cdb_size = get_le32(c + CFG_cdb_size);
        dev.sense_size = get_le32(c + CFG_sense_size);
        if (opt.lun > get_le32(c + CFG_max_lun)) {
          fatal(kExitFailure, "--lun %u is above the device's max_lun %u", opt.lun, get_le32(c + CFG_max_lun));
        }
        // READ(16)/WRITE(16) need 16 CDB bytes; the sense buffer is what we allocate.
        if (dev.cdb_size < 16 || dev.cdb_size > 256 || dev.sense_size > 4096) {
          fatal(kExitFailure, "device config: cdb_size %u, sense_size %u are not usable", dev.cdb_size, dev.sense_size);
        }
      } else {
        warn("the backend refused VHOST_USER_GET_CONFIG; assuming cdb_size 32, sense_size 96");
      }
    }
  } else {
    using namespace virtio::blk;
    if (opt.queues > 1) {
      if (!(offered & bit(F_MQ))) fatal(kExitFailure, "the device does not offer VIRTIO_BLK_F_MQ: only --queues 1 is possible");
      ack |= bit(F_MQ);
    }
    // Features whose only effect is that config fields are valid, or that we may use a request
    // type we do not send: acking them is what a guest driver does and costs nothing.
    for (unsigned f : {F_FLUSH, F_BLK_SIZE, F_SEG_MAX, F_SIZE_MAX, F_RO}) {
      if (offered & bit(f)) ack |= bit(f);
    }
    dev.read_only = offered & bit(F_RO);
    if (have_config) {
      uint8_t c[kConfigReadSize];
      if (!vu.get_config(0, kConfigReadSize, c)) fatal(kExitFailure, "the backend refused VHOST_USER_GET_CONFIG");
      dev.capacity = get_le64(c + CFG_capacity) * kSectorSize;
      if (ack & bit(F_SIZE_MAX)) dev.size_max = get_le32(c + CFG_size_max);
      if (ack & bit(F_SEG_MAX)) dev.seg_max = get_le32(c + CFG_seg_max);
      if (ack & bit(F_BLK_SIZE)) dev.block_size = get_le32(c + CFG_blk_size);
      if ((ack & bit(F_MQ)) && get_le16(c + CFG_num_queues) < opt.queues) {
        fatal(kExitFailure, "the device has %u queues (config num_queues), --queues is %u", get_le16(c + CFG_num_queues),
              opt.queues);
      }
      if (dev.block_size < 512 || dev.block_size % 512 != 0 || (dev.block_size & (dev.block_size - 1)) != 0) {
        fatal(kExitFailure, "device config: blk_size %u is not a power of 2 >= 512", dev.block_size);
      }
    } else if (opt.size == 0) {
      fatal(kExitFailure, "the backend does not offer VHOST_USER_PROTOCOL_F_CONFIG: give the usable size with --size");
    }
  }
  vu.set_features(ack);
  dev.features = ack;
}

// Data bytes per descriptor and data descriptors per request, within the device's limits.
void plan_segments(const Options& opt, const Device& dev, Workload& w) {
  uint64_t seg = opt.seg_size;
  if (dev.size_max != 0 && seg > dev.size_max) {
    if (opt.seg_size_given) fatal(kExitUsage, "--seg-size %" PRIu64 " exceeds the device's size_max %u", seg, dev.size_max);
    seg = dev.size_max / 512 * 512;
    if (seg == 0) fatal(kExitFailure, "device config: size_max %u is below 512", dev.size_max);
  }
  if (seg > opt.bs) seg = opt.bs;
  w.seg_size = static_cast<uint32_t>(seg);
  w.segs = static_cast<uint32_t>((opt.bs + seg - 1) / seg);
  if (dev.seg_max != 0 && w.segs > dev.seg_max) {
    fatal(kExitUsage, "--bs %" PRIu64 " takes %u data descriptors of %" PRIu64 " bytes, the device's seg_max is %u: raise --seg-size",
          opt.bs, w.segs, seg, dev.seg_max);
  }
  if (dev.max_sectors != 0 && opt.bs / 512 > dev.max_sectors) {
    fatal(kExitUsage, "--bs %" PRIu64 " exceeds the device's max_sectors (%u sectors of 512 bytes)", opt.bs, dev.max_sectors);
  }
  uint32_t chain = 2 + w.segs;
  if (opt.indirect) {
    if (chain > opt.vq_size) fatal(kExitUsage, "a request needs %u descriptors, more than --vq-size %u", chain, opt.vq_size);
  } else if (uint64_t{opt.iodepth} * chain > opt.vq_size) {
    fatal(kExitUsage,
          "--iodepth %u x %u descriptors per request exceeds --vq-size %u: use --indirect, a smaller --iodepth or a larger --vq-size",
          opt.iodepth, chain, opt.vq_size);
  }
}

void setup_ring(VhostUserFrontend& vu, DriverRing& r) {
  vu.set_vring_num(r.index(), r.num());
  vu.set_vring_base(r.index(), 0);
  vu.set_vring_addr(r.index(), r.desc_uva(), r.used_uva(), r.avail_uva());
  // The call fd first: the back-end may start the ring as soon as it has the kick fd.
  vu.set_vring_call(r.index(), r.call_fd());
  vu.set_vring_kick(r.index(), r.kick_fd());
}

// SCSI start-up on the first request queue: TEST UNIT READY until GOOD (the first answer is
// the POWER ON, RESET OR BUS DEVICE RESET OCCURRED unit attention), then READ CAPACITY(16).
void scsi_start(const Options& opt, ScsiProtocol& proto, IoQueue& q, Device& dev) {
  const uint32_t resp = proto.response_size();
  uint64_t deadline = now_ns() + 10'000'000'000ull;
  uint64_t tag = 0xffff000000000000ull;
  char answer[256];
  for (unsigned attempt = 1;; attempt++) {
    const uint8_t tur[6] = {0x00, 0, 0, 0, 0, 0};  // SPC-4 §6.47 TEST UNIT READY
    proto.encode_cdb(q.sync_header(), tur, sizeof tur, tag++);
    uint32_t len = q.exec_sync(false, 0);
    const uint8_t* r = q.sync_response();
    if (r[virtio::scsi::RESP_response] != virtio::scsi::VIRTIO_SCSI_S_OK || len < resp) {
      proto.describe_answer(answer, sizeof answer, r);
      fatal(kExitFailure, "LUN %u: TEST UNIT READY: %s; used.len %u", opt.lun, answer, len);
    }
    uint8_t status = r[virtio::scsi::RESP_status];
    if (status == 0x00) break;
    uint32_t sense_len = std::min(get_le32(r + virtio::scsi::RESP_sense_len), proto.sense_size());
    SenseInfo s = decode_sense(r + virtio::scsi::RESP_sense, sense_len);
    proto.describe_answer(answer, sizeof answer, r);
    bool retry = status == 0x02 && s.valid && (s.key == 0x6 /* UNIT ATTENTION */ || s.key == 0x2 /* NOT READY */);
    if (!retry) fatal(kExitFailure, "LUN %u: TEST UNIT READY: %s", opt.lun, answer);
    if (now_ns() > deadline) fatal(kExitFailure, "LUN %u: not ready after %u TEST UNIT READY: %s", opt.lun, attempt, answer);
    if (s.key == 0x2) usleep(100000);
    else info("LUN %u: TEST UNIT READY: %s (expected once after connecting)", opt.lun, answer);
  }
  // SBC-3 §5.16 READ CAPACITY(16): SERVICE ACTION IN(16) 9Eh / 10h, allocation length 32.
  uint8_t rc[16] = {0x9e, 0x10};
  put_be32(rc + 10, 32);
  proto.encode_cdb(q.sync_header(), rc, sizeof rc, tag++);
  uint32_t len = q.exec_sync(false, 32);
  const uint8_t* r = q.sync_response();
  if (!proto.response_ok(r) || len < resp + 12) {
    proto.describe_answer(answer, sizeof answer, r);
    fatal(kExitFailure, "LUN %u: READ CAPACITY(16): %s; used.len %u", opt.lun, answer, len);
  }
  const uint8_t* d = q.sync_data();
  uint64_t last_lba = get_be64(d);
  uint32_t block = get_be32(d + 8);
  if (block < 512 || (block & (block - 1)) != 0 || block > 65536) {
    fatal(kExitFailure, "LUN %u: READ CAPACITY(16) reports a %u-byte logical block", opt.lun, block);
  }
  dev.block_size = block;
  dev.capacity = (last_lba + 1) * block;
  proto.set_block_size(block);
}

// Parks signals for the run: SIGINT/SIGTERM come through a signalfd the main thread polls,
// every worker inherits the blocked mask.
int block_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
  int fd = signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) fatal(kExitFailure, "signalfd: %s", strerror(errno));
  return fd;
}

class Runner {
 public:
  Runner(const Options& opt, VhostUserFrontend& vu, Workload& w, std::vector<std::unique_ptr<IoQueue>>& queues, int sig_fd)
      : opt_(opt), vu_(vu), w_(w), queues_(queues), sig_fd_(sig_fd) {}

  // Runs one phase on every queue's thread; returns false if a signal stopped it.
  bool run(Phase phase) {
    {
      std::lock_guard<std::mutex> lk(w_.gate_mu);
      w_.gate_ready = 0;
      w_.gate_open = false;
    }
    rusage before;
    getrusage(RUSAGE_SELF, &before);
    std::vector<std::thread> threads;
    threads.reserve(queues_.size());
    for (auto& q : queues_) threads.emplace_back(&IoQueue::run, q.get(), phase);
    {
      std::unique_lock<std::mutex> lk(w_.gate_mu);
      w_.gate_cv.wait(lk, [&] { return w_.gate_ready == queues_.size(); });
      if (phase == Phase::kMeasure) {
        uint64_t t0 = now_ns();
        uint64_t start = t0 + static_cast<uint64_t>(opt_.ramp * 1e9);
        w_.window_start.store(start);
        w_.window_end.store(start + static_cast<uint64_t>(opt_.runtime * 1e9));
      }
      w_.gate_open = true;
      w_.gate_cv.notify_all();
    }
    wait_for_workers();
    for (auto& t : threads) t.join();
    if (phase == Phase::kMeasure) {
      rusage after;
      getrusage(RUSAGE_SELF, &after);
      user_s_ = seconds(after.ru_utime) - seconds(before.ru_utime);
      sys_s_ = seconds(after.ru_stime) - seconds(before.ru_stime);
    }
    return signal_ == 0;
  }

  int signal() const { return signal_; }
  // CPU time of the whole generator over the measurement phase (ramp and drain included).
  double user_seconds() const { return user_s_; }
  double sys_seconds() const { return sys_s_; }

 private:
  static double seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; }

  void wait_for_workers() {
    uint64_t done = 0;
    pollfd fds[3] = {{w_.done_fd, POLLIN, 0}, {sig_fd_, POLLIN, 0}, {vu_.fd(), POLLIN | POLLRDHUP, 0}};
    while (done < queues_.size()) {
      int r = poll(fds, 3, -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        fatal(kExitFailure, "poll: %s", strerror(errno));
      }
      if (fds[1].revents & POLLIN) {
        signalfd_siginfo si;
        if (read(sig_fd_, &si, sizeof si) == sizeof si) {
          int sig = static_cast<int>(si.ssi_signo);
          if (signal_ != 0) fatal(128 + sig, "%s again: exiting without draining", strsignal(sig));
          signal_ = sig;
          info("%s: stopping; in-flight requests drain, then the results so far are printed", strsignal(sig));
          // window_end first: a worker woken by stop_fd must see it.
          uint64_t now = now_ns();
          if (w_.window_end.load() > now) w_.window_end.store(now);
          w_.stop.store(true);
          uint64_t one = 1;
          if (write(w_.stop_fd, &one, sizeof one) != sizeof one) fatal(kExitFailure, "write to stop eventfd: %s", strerror(errno));
        }
      }
      if (fds[2].revents) {
        // The back-end never speaks first on this channel: anything here is EOF or an error.
        char b;
        ssize_t n = recv(vu_.fd(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) fatal(kExitFailure, "unexpected message from the backend on the vhost-user socket during the run");
        if (n == 0 || (fds[2].revents & (POLLHUP | POLLRDHUP | POLLERR))) {
          fatal(kExitFailure, "the backend closed the connection during the run (see the backend's log)");
        }
      }
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        if (read(w_.done_fd, &v, sizeof v) == sizeof v) done += v;
      }
    }
  }

  const Options& opt_;
  VhostUserFrontend& vu_;
  Workload& w_;
  std::vector<std::unique_ptr<IoQueue>>& queues_;
  int sig_fd_;
  int signal_ = 0;
  double user_s_ = 0, sys_s_ = 0;
};

struct Totals {
  QueueStats sum;
  Histogram hist;
  double runtime = 0;
  double user_s = 0, sys_s = 0;  // generator CPU over the measurement phase
};

void print_json(const Options& opt, const Totals& t, const std::vector<std::unique_ptr<IoQueue>>& queues) {
  const QueueStats& s = t.sum;
  double iops = t.runtime > 0 ? static_cast<double>(s.ios) / t.runtime : 0.0;
  double mbps = t.runtime > 0 ? static_cast<double>(s.bytes) / t.runtime / 1e6 : 0.0;
  double ios = static_cast<double>(s.ios);
  std::printf(
      "{\"proto\":\"%s\",\"rw\":\"%s\",\"bs\":%" PRIu64 ",\"iodepth\":%u,\"queues\":%u,\"mode\":\"%s\",\"eventIdx\":%s,"
      "\"runtime\":%.6f,\"ios\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"iops\":%.1f,\"mbps\":%.3f,"
      "\"lat_us\":{\"mean\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
      "\"kicks\":%" PRIu64 ",\"calls\":%" PRIu64 ",\"kicks_per_io\":%.6f,\"calls_per_io\":%.6f,"
      "\"errors\":%" PRIu64 ",\"verify_errors\":%" PRIu64 ",\"per_queue\":[",
      proto_name(opt.proto), rw_name(opt.rw), opt.bs, opt.iodepth, opt.queues, mode_name(opt.mode),
      opt.event_idx ? "true" : "false", t.runtime, s.ios, s.bytes, iops, mbps, t.hist.mean() / 1e3,
      t.hist.quantile(0.50) / 1e3, t.hist.quantile(0.99) / 1e3, t.hist.quantile(0.999) / 1e3,
      static_cast<double>(t.hist.max()) / 1e3, s.kicks, s.calls, ios > 0 ? static_cast<double>(s.kicks) / ios : 0.0,
      ios > 0 ? static_cast<double>(s.calls) / ios : 0.0, s.errors, s.verify_errors);
  for (size_t i = 0; i < queues.size(); i++) {
    const QueueStats& q = queues[i]->stats();
    std::printf("%s{\"ios\":%" PRIu64 ",\"kicks\":%" PRIu64 ",\"calls\":%" PRIu64 "}", i ? "," : "", q.ios, q.kicks, q.calls);
  }
  std::printf("]}\n");
}

void print_human(const Options& opt, const Totals& t, const std::vector<std::unique_ptr<IoQueue>>& queues) {
  const QueueStats& s = t.sum;
  double ios = static_cast<double>(s.ios);
  std::printf("%s %s bs=%" PRIu64 " iodepth=%u queues=%u mode=%s event-idx=%s%s%s\n", proto_name(opt.proto),
              rw_name(opt.rw), opt.bs, opt.iodepth, opt.queues, mode_name(opt.mode), opt.event_idx ? "on" : "off",
              opt.indirect ? " indirect" : "", opt.verify ? " verify" : "");
  std::printf("  %.3f s: %" PRIu64 " I/Os, %.0f IOPS, %.1f MB/s\n", t.runtime, s.ios,
              t.runtime > 0 ? ios / t.runtime : 0.0, t.runtime > 0 ? static_cast<double>(s.bytes) / t.runtime / 1e6 : 0.0);
  std::printf("  latency (us): mean %.1f, p50 %.1f, p99 %.1f, p99.9 %.1f, max %.1f\n", t.hist.mean() / 1e3,
              t.hist.quantile(0.50) / 1e3, t.hist.quantile(0.99) / 1e3, t.hist.quantile(0.999) / 1e3,
              static_cast<double>(t.hist.max()) / 1e3);
  std::printf("  kicks %" PRIu64 " (%.3f per I/O), calls %" PRIu64 " (%.3f per I/O)\n", s.kicks,
              ios > 0 ? static_cast<double>(s.kicks) / ios : 0.0, s.calls, ios > 0 ? static_cast<double>(s.calls) / ios : 0.0);
  if (opt.mode == Mode::kPoll && s.stray_calls > 0) {
    std::printf("  (poll mode: the backend signalled the call eventfds %" PRIu64 " times although notifications were suppressed)\n",
                s.stray_calls);
  }
  if (queues.size() > 1) {
    for (const auto& q : queues) {
      const QueueStats& qs = q->stats();
      std::printf("  queue %u: %" PRIu64 " I/Os, %" PRIu64 " kicks, %" PRIu64 " calls\n", q->qid(), qs.ios, qs.kicks, qs.calls);
    }
  }
  if (s.phase_completions > 0) {
    double per = 1e6 / static_cast<double>(s.phase_completions);
    std::printf("  generator CPU: %.2f us per I/O (user %.2f, system %.2f)%s\n", (t.user_s + t.sys_s) * per, t.user_s * per,
                t.sys_s * per, opt.mode == Mode::kPoll ? "; poll mode spins, so this is all the CPU it was given" : "");
  }
  std::printf("  errors %" PRIu64 ", verify errors %" PRIu64 "\n", s.errors, s.verify_errors);
}

int run_main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  g_quiet = opt.quiet;
  signal(SIGPIPE, SIG_IGN);  // a closed socket is an EPIPE we report, not a silent death
  if (opt.cpu >= 0) {
    // Before any thread exists: the workers inherit the mask.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(opt.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) fatal(kExitFailure, "sched_setaffinity(CPU %d): %s", opt.cpu, strerror(errno));
  }

  VhostUserFrontend vu(opt.socket);
  Device dev;
  negotiate(vu, opt, dev);

  std::unique_ptr<Protocol> proto;
  ScsiProtocol* scsi = nullptr;
  if (opt.proto == Proto::kScsi) {
    auto p = std::make_unique<ScsiProtocol>(opt.lun, dev.cdb_size, dev.sense_size);
    scsi = p.get();
    proto = std::move(p);
  } else {
    proto = std::make_unique<BlkProtocol>();
  }

  Workload w;
  w.opt = &opt;
  w.proto = proto.get();
  w.bs = static_cast<uint32_t>(opt.bs);
  plan_segments(opt, dev, w);

  // Guest memory: every ring, then every request slot; checked for size before use.
  GuestMemory mem(opt.mem_mib << 20);
  std::vector<DriverRing> aux(opt.proto == Proto::kScsi ? 2 : 0);  // scsi control and event queues
  for (size_t i = 0; i < aux.size(); i++) aux[i].init(mem, static_cast<uint32_t>(i), opt.vq_size, opt.event_idx);
  std::vector<std::unique_ptr<IoQueue>> queues;
  for (uint32_t q = 0; q < opt.queues; q++) {
    queues.push_back(std::make_unique<IoQueue>(w, q));
    queues.back()->init(mem, opt.iodepth);
  }
  mem.check_fits();

  // One region: guest physical 0 = memfd offset 0, mapped at our own address (vhost-user.rst
  // "Memory region description": ring addresses are in the front-end's address space).
  vu.set_mem_table({0, mem.size(), mem.userspace_addr(), 0}, mem.fd());
  std::vector<DriverRing*> rings;
  for (auto& r : aux) rings.push_back(&r);
  for (auto& q : queues) rings.push_back(&q->ring());
  for (DriverRing* r : rings) setup_ring(vu, *r);
  // "Ring states": with VHOST_USER_F_PROTOCOL_FEATURES the rings start disabled.
  if (dev.has_protocol_features) {
    for (DriverRing* r : rings) vu.set_vring_enable(r->index(), true);
  }
  vu.sync();

  if (scsi != nullptr) {
    scsi_start(opt, *scsi, *queues[0], dev);
  } else if (dev.capacity == 0) {
    dev.capacity = opt.offset + opt.size;  // no config space: the user's word
  }

  // The region and its I/O positions.
  if (opt.bs % dev.block_size != 0) {
    fatal(kExitUsage, "--bs %" PRIu64 " is not a multiple of the device's %u-byte block", opt.bs, dev.block_size);
  }
  if (opt.offset % dev.block_size != 0) {
    fatal(kExitUsage, "--offset %" PRIu64 " is not a multiple of the device's %u-byte block", opt.offset, dev.block_size);
  }
  if (opt.offset >= dev.capacity) {
    fatal(kExitUsage, "--offset %" PRIu64 " is at or beyond the end of the device (%" PRIu64 " bytes)", opt.offset, dev.capacity);
  }
  uint64_t size = opt.size != 0 ? opt.size : dev.capacity - opt.offset;
  if (size > dev.capacity - opt.offset) {
    fatal(kExitUsage, "--offset %" PRIu64 " + --size %" PRIu64 " exceeds the device's %" PRIu64 " bytes", opt.offset, size,
          dev.capacity);
  }
  w.region_start = opt.offset;
  w.positions = size / opt.bs;
  if (w.positions == 0) fatal(kExitUsage, "the region (%" PRIu64 " bytes) is smaller than --bs", size);
  if (dev.read_only && (rw_writes(opt.rw) || opt.verify)) {
    fatal(kExitFailure, "the device is read-only (VIRTIO_BLK_F_RO): no writes, no --verify");
  }
  bool writes = rw_writes(opt.rw);
  if (opt.verify) {
    w.generation = std::make_unique<uint32_t[]>(w.positions);  // zeroed: the fill writes generation 0
    if (writes) {
      w.lock_positions = true;
      w.busy = std::make_unique<std::atomic<uint8_t>[]>(w.positions);
      for (uint64_t i = 0; i < w.positions; i++) w.busy[i].store(0, std::memory_order_relaxed);
    }
  }
  if (opt.proto == Proto::kScsi) {
    info("%s: virtio-scsi LUN %u, %" PRIu64 " blocks of %u bytes; using %" PRIu64 " bytes from offset %" PRIu64,
         opt.socket.c_str(), opt.lun, dev.capacity / dev.block_size, dev.block_size, w.positions * opt.bs, opt.offset);
  } else {
    info("%s: virtio-blk, %" PRIu64 " bytes, %u-byte blocks; using %" PRIu64 " bytes from offset %" PRIu64, opt.socket.c_str(),
         dev.capacity, dev.block_size, w.positions * opt.bs, opt.offset);
  }

  w.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  w.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w.stop_fd < 0 || w.done_fd < 0) fatal(kExitFailure, "eventfd: %s", strerror(errno));
  int sig_fd = block_signals();
  Runner runner(opt, vu, w, queues, sig_fd);

  bool go_on = true;
  if (opt.verify) {
    info("verify: writing %" PRIu64 " bytes (seed %" PRIu64 ")", w.positions * opt.bs, opt.seed);
    go_on = runner.run(Phase::kFill);
  }
  if (go_on) go_on = runner.run(Phase::kMeasure);
  if (go_on && opt.verify && writes) {
    info("verify: reading back %" PRIu64 " bytes", w.positions * opt.bs);
    runner.run(Phase::kReadBack);
  }

  // Stop every ring; the back-end drains and reports where it stopped.
  for (DriverRing* r : rings) {
    uint32_t base = vu.get_vring_base(r->index());
    if (base != r->next_avail()) {
      warn("virtqueue %u: the backend stopped at avail index %u, we published %u", r->index(), base, r->next_avail());
    }
  }
  vu.close();
  for (DriverRing* r : rings) r->close_fds();

  Totals t;
  for (auto& q : queues) {
    const QueueStats& s = q->stats();
    t.sum.ios += s.ios;
    t.sum.bytes += s.bytes;
    t.sum.kicks += s.kicks;
    t.sum.calls += s.calls;
    t.sum.errors += s.errors;
    t.sum.verify_errors += s.verify_errors;
    t.sum.stray_calls += s.stray_calls;
    t.sum.phase_completions += s.phase_completions;
    t.hist.merge(q->histogram());
  }
  uint64_t ws = w.window_start.load(), we = w.window_end.load();
  t.runtime = we > ws ? static_cast<double>(we - ws) / 1e9 : 0.0;
  t.user_s = runner.user_seconds();
  t.sys_s = runner.sys_seconds();
  if (opt.json) print_json(opt, t, queues);
  else print_human(opt, t, queues);
  std::fflush(stdout);

  if (t.sum.errors > 0 || t.sum.verify_errors > 0) {
    std::fprintf(stderr, "vhost_loadgen: %" PRIu64 " I/O errors, %" PRIu64 " verify errors\n", t.sum.errors, t.sum.verify_errors);
    return kExitFailure;
  }
  if (runner.signal() != 0) return 128 + runner.signal();
  return kExitOk;
}

}  // namespace
}  // namespace lg

int main(int argc, char** argv) { return lg::run_main(argc, argv); }
