// The command line (README.md "Options"). Every value is validated here; what depends on the
// device (block size, capacity, queue count) is checked once the device has told us.
#pragma once

#include <cstdint>
#include <string>

namespace lg {

enum class Proto { kScsi, kBlk };
enum class Rw { kRandRead, kRandWrite, kRead, kWrite, kRandRw };
enum class Mode { kIrq, kPoll };

struct Options {
  std::string socket;
  Proto proto = Proto::kScsi;
  uint32_t lun = 0;
  bool lun_given = false;
  Rw rw = Rw::kRandRead;
  uint32_t rwmix_read = 50;
  uint64_t bs = 4096;
  uint32_t iodepth = 32;
  uint32_t queues = 1;
  double runtime = 10.0;
  double ramp = 0.0;
  uint64_t size = 0;  // 0: from --offset to the end of the device
  uint64_t offset = 0;
  bool event_idx = true;
  Mode mode = Mode::kIrq;
  uint32_t vq_size = 256;
  uint64_t mem_mib = 64;
  uint64_t seed = 1;
  bool verify = false;
  bool json = false;
  int cpu = -1;
  bool quiet = false;
  bool indirect = false;
  uint64_t seg_size = 1 << 20;
  bool seg_size_given = false;
};

// Parses argv; exits 2 with a message on any mistake, 0 after --help.
Options parse_options(int argc, char** argv);

const char* proto_name(Proto p);
const char* rw_name(Rw rw);
const char* mode_name(Mode m);
inline bool rw_random(Rw rw) { return rw == Rw::kRandRead || rw == Rw::kRandWrite || rw == Rw::kRandRw; }
inline bool rw_writes(Rw rw) { return rw == Rw::kRandWrite || rw == Rw::kWrite || rw == Rw::kRandRw; }
inline bool rw_reads(Rw rw) { return rw == Rw::kRandRead || rw == Rw::kRead || rw == Rw::kRandRw; }

}  // namespace lg
