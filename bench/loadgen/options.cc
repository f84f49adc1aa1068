#include "options.h"

#include <getopt.h>
#include <sched.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "virtio.h"

namespace lg {

namespace {

constexpr uint64_t kMaxBs = 8ull << 20;
constexpr uint32_t kMaxQueues = 16;
constexpr uint64_t kMaxMemMib = 1ull << 20;  // 1 TiB: a sanity bound, the memfd is sparse
constexpr double kMaxSeconds = 1e6;

const char kUsage[] =
    "Usage: vhost_loadgen --socket PATH [options]\n"
    "Drives a vhost-user virtio-scsi or virtio-blk backend directly (no QEMU, no guest).\n"
    "\n"
    "  --socket PATH          the backend's vhost-user socket (required)\n"
    "  --proto scsi|blk       device type [scsi]\n"
    "  --lun N                scsi: LUN of target 0, 0..16383 [0]\n"
    "  --rw MODE              randread|randwrite|read|write|randrw [randread]\n"
    "  --rwmix-read PCT       randrw: percentage of reads, 0..100 [50]\n"
    "  --bs SIZE              I/O size, 512..8M, a multiple of the block size [4k]\n"
    "  --iodepth N            requests in flight per queue, 1..vq size [32]\n"
    "  --queues N             request queues, one thread each, 1..16 [1]\n"
    "  --runtime SEC          measured seconds [10]\n"
    "  --ramp SEC             discarded warm-up before the measurement [0]\n"
    "  --size SIZE            bytes of the device used, from --offset [to the end]\n"
    "  --offset SIZE          first byte used [0]\n"
    "  --event-idx on|off     negotiate VIRTIO_RING_F_EVENT_IDX [on]\n"
    "  --mode irq|poll        sleep on the call eventfds, or busy-poll the used rings [irq]\n"
    "  --vq-size N            virtqueue size, a power of 2, 2..32768 [256]\n"
    "  --mem MIB              guest memory (one memfd region) [64]\n"
    "  --indirect             indirect descriptor tables (VIRTIO_RING_F_INDIRECT_DESC)\n"
    "  --seg-size SIZE        data bytes per descriptor, a multiple of 512 [1m]\n"
    "  --seed N               seed of offsets and verify patterns [1]\n"
    "  --verify               write the region, then check every byte read (see README.md)\n"
    "  --cpu N                pin every thread of the generator to CPU N\n"
    "  --json                 print one JSON object on stdout, nothing else\n"
    "  --quiet                no informational messages on stderr\n"
    "  --help                 this text\n"
    "SIZE takes the suffixes k, m, g (powers of 1024).\n"
    "Exit status: 0 success, 1 failure (I/O or verify errors, protocol), 2 usage,\n"
    "3 the backend stopped answering, 128+N stopped by signal N (results printed).\n";

enum OptionId {
  kOptSocket = 256, kOptProto, kOptLun, kOptRw, kOptRwmix, kOptBs, kOptIodepth, kOptQueues, kOptRuntime,
  kOptRamp, kOptSize, kOptOffset, kOptEventIdx, kOptMode, kOptVqSize, kOptMem, kOptSeed, kOptVerify,
  kOptJson, kOptCpu, kOptQuiet, kOptIndirect, kOptSegSize, kOptHelp,
};

const option kLongOptions[] = {
    {"socket", required_argument, nullptr, kOptSocket},
    {"proto", required_argument, nullptr, kOptProto},
    {"lun", required_argument, nullptr, kOptLun},
    {"rw", required_argument, nullptr, kOptRw},
    {"rwmix-read", required_argument, nullptr, kOptRwmix},
    {"bs", required_argument, nullptr, kOptBs},
    {"iodepth", required_argument, nullptr, kOptIodepth},
    {"queues", required_argument, nullptr, kOptQueues},
    {"runtime", required_argument, nullptr, kOptRuntime},
    {"ramp", required_argument, nullptr, kOptRamp},
    {"size", required_argument, nullptr, kOptSize},
    {"offset", required_argument, nullptr, kOptOffset},
    {"event-idx", required_argument, nullptr, kOptEventIdx},
    {"mode", required_argument, nullptr, kOptMode},
    {"vq-size", required_argument, nullptr, kOptVqSize},
    {"mem", required_argument, nullptr, kOptMem},
    {"seed", required_argument, nullptr, kOptSeed},
    {"verify", no_argument, nullptr, kOptVerify},
    {"json", no_argument, nullptr, kOptJson},
    {"cpu", required_argument, nullptr, kOptCpu},
    {"quiet", no_argument, nullptr, kOptQuiet},
    {"indirect", no_argument, nullptr, kOptIndirect},
    {"seg-size", required_argument, nullptr, kOptSegSize},
    {"help", no_argument, nullptr, kOptHelp},
    {nullptr, 0, nullptr, 0},
};

// A decimal integer (the whole string), within [lo, hi].
uint64_t parse_uint(const char* opt, const char* s, uint64_t lo, uint64_t hi) {
  if (*s < '0' || *s > '9') usage_error("%s: '%s' is not a non-negative integer", opt, s);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno == ERANGE || *end != '\0') usage_error("%s: '%s' is not a non-negative integer", opt, s);
  if (v < lo || v > hi) {
    usage_error("%s: %s is outside %llu..%llu", opt, s, static_cast<unsigned long long>(lo),
                static_cast<unsigned long long>(hi));
  }
  return v;
}

// An integer with an optional k/m/g suffix (powers of 1024).
uint64_t parse_size(const char* opt, const char* s) {
  if (*s < '0' || *s > '9') usage_error("%s: '%s' is not a size (digits with an optional k, m or g)", opt, s);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno == ERANGE) usage_error("%s: '%s' is too large", opt, s);
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    default: end = nullptr;
  }
  if (end == nullptr || *end != '\0') usage_error("%s: '%s' is not a size (digits with an optional k, m or g)", opt, s);
  if (shift > 0 && v > (~0ull >> shift)) usage_error("%s: '%s' is too large", opt, s);
  return static_cast<uint64_t>(v) << shift;
}

double parse_seconds(const char* opt, const char* s, bool allow_zero) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
    usage_error("%s: '%s' is not a number of seconds", opt, s);
  }
  if (v < 0 || (!allow_zero && v == 0) || v > kMaxSeconds) {
    usage_error("%s: %s must be %s and at most %.0f", opt, s, allow_zero ? ">= 0" : "> 0", kMaxSeconds);
  }
  return v;
}

bool parse_on_off(const char* opt, const char* s) {
  if (std::strcmp(s, "on") == 0) return true;
  if (std::strcmp(s, "off") == 0) return false;
  usage_error("%s: expected on or off, got '%s'", opt, s);
}

}  // namespace

const char* proto_name(Proto p) { return p == Proto::kScsi ? "scsi" : "blk"; }

const char* rw_name(Rw rw) {
  switch (rw) {
    case Rw::kRandRead: return "randread";
    case Rw::kRandWrite: return "randwrite";
    case Rw::kRead: return "read";
    case Rw::kWrite: return "write";
    case Rw::kRandRw: return "randrw";
  }
  return "?";
}

const char* mode_name(Mode m) { return m == Mode::kIrq ? "irq" : "poll"; }

Options parse_options(int argc, char** argv) {
  Options o;
  bool iodepth_given = false, rwmix_given = false, size_given = false;
  opterr = 0;  // our own messages; the leading ":" of optstring reports a missing value as ':'
  for (;;) {
    int longindex = -1;
    optopt = 0;
    int c = getopt_long(argc, argv, ":", kLongOptions, &longindex);
    if (c == -1) break;
    const char* name = longindex >= 0 ? kLongOptions[longindex].name : "";
    char opt[40];
    std::snprintf(opt, sizeof opt, "--%s", name);
    switch (c) {
      case kOptSocket:
        if (*optarg == '\0') usage_error("--socket: empty path");
        o.socket = optarg;
        break;
      case kOptProto:
        if (std::strcmp(optarg, "scsi") == 0) o.proto = Proto::kScsi;
        else if (std::strcmp(optarg, "blk") == 0) o.proto = Proto::kBlk;
        else usage_error("--proto: expected scsi or blk, got '%s'", optarg);
        break;
      case kOptLun: o.lun = static_cast<uint32_t>(parse_uint(opt, optarg, 0, 16383)); o.lun_given = true; break;
      case kOptRw:
        if (std::strcmp(optarg, "randread") == 0) o.rw = Rw::kRandRead;
        else if (std::strcmp(optarg, "randwrite") == 0) o.rw = Rw::kRandWrite;
        else if (std::strcmp(optarg, "read") == 0) o.rw = Rw::kRead;
        else if (std::strcmp(optarg, "write") == 0) o.rw = Rw::kWrite;
        else if (std::strcmp(optarg, "randrw") == 0) o.rw = Rw::kRandRw;
        else usage_error("--rw: expected randread, randwrite, read, write or randrw, got '%s'", optarg);
        break;
      case kOptRwmix: o.rwmix_read = static_cast<uint32_t>(parse_uint(opt, optarg, 0, 100)); rwmix_given = true; break;
      case kOptBs:
        o.bs = parse_size(opt, optarg);
        if (o.bs < 512 || o.bs > kMaxBs || o.bs % 512 != 0) {
          usage_error("--bs: %s must be a multiple of 512 in 512..8m", optarg);
        }
        break;
      case kOptIodepth:
        o.iodepth = static_cast<uint32_t>(parse_uint(opt, optarg, 1, virtio::kMaxQueueSize));
        iodepth_given = true;
        break;
      case kOptQueues: o.queues = static_cast<uint32_t>(parse_uint(opt, optarg, 1, kMaxQueues)); break;
      case kOptRuntime: o.runtime = parse_seconds(opt, optarg, false); break;
      case kOptRamp: o.ramp = parse_seconds(opt, optarg, true); break;
      case kOptSize:
        o.size = parse_size(opt, optarg);
        if (o.size == 0) usage_error("--size: must be > 0");
        size_given = true;
        break;
      case kOptOffset: o.offset = parse_size(opt, optarg); break;
      case kOptEventIdx: o.event_idx = parse_on_off(opt, optarg); break;
      case kOptMode:
        if (std::strcmp(optarg, "irq") == 0) o.mode = Mode::kIrq;
        else if (std::strcmp(optarg, "poll") == 0) o.mode = Mode::kPoll;
        else usage_error("--mode: expected irq or poll, got '%s'", optarg);
        break;
      case kOptVqSize: {
        uint64_t v = parse_uint(opt, optarg, 2, virtio::kMaxQueueSize);
        // §2.7 "Queue Size value is always a power of 2".
        if ((v & (v - 1)) != 0) usage_error("--vq-size: %s is not a power of 2", optarg);
        o.vq_size = static_cast<uint32_t>(v);
        break;
      }
      case kOptMem: o.mem_mib = parse_uint(opt, optarg, 1, kMaxMemMib); break;
      case kOptSeed: o.seed = parse_uint(opt, optarg, 0, ~0ull); break;
      case kOptVerify: o.verify = true; break;
      case kOptJson: o.json = true; break;
      case kOptCpu: {
        o.cpu = static_cast<int>(parse_uint(opt, optarg, 0, CPU_SETSIZE - 1));
        cpu_set_t allowed;
        CPU_ZERO(&allowed);
        if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && !CPU_ISSET(o.cpu, &allowed)) {
          usage_error("--cpu: CPU %d is not available to this process", o.cpu);
        }
        break;
      }
      case kOptQuiet: o.quiet = true; break;
      case kOptIndirect: o.indirect = true; break;
      case kOptSegSize:
        o.seg_size = parse_size(opt, optarg);
        if (o.seg_size < 512 || o.seg_size % 512 != 0 || o.seg_size > kMaxBs) {
          usage_error("--seg-size: %s must be a multiple of 512 in 512..8m", optarg);
        }
        o.seg_size_given = true;
        break;
      case kOptHelp:
        std::fputs(kUsage, stdout);
        std::exit(kExitOk);
      case ':':
        usage_error("%s needs a value", argv[optind - 1]);
      default:
        if (optopt != 0 && optopt < 256) usage_error("unknown option '-%c'", optopt);
        usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
  if (o.socket.empty()) usage_error("--socket PATH is required");
  if (o.lun_given && o.proto != Proto::kScsi) usage_error("--lun applies to --proto scsi only");
  if (rwmix_given && o.rw != Rw::kRandRw) usage_error("--rwmix-read applies to --rw randrw only");
  if (!iodepth_given && o.iodepth > o.vq_size) o.iodepth = o.vq_size;  // the default follows a small --vq-size
  if (o.iodepth > o.vq_size) {
    usage_error("--iodepth %u exceeds the virtqueue size %u (--vq-size)", o.iodepth, o.vq_size);
  }
  if (o.offset % 512 != 0) usage_error("--offset: must be a multiple of 512");
  if (size_given && o.size < o.bs) usage_error("--size: smaller than --bs");
  return o;
}

}  // namespace lg
