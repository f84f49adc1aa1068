// --verify data: every 8-byte word of the device is a hash of (seed, generation of its block,
// its byte offset on the device), so a misplaced, stale, torn or zero block is caught wherever
// it came from. Generation 0 is what the fill phase writes; each later write of a block uses
// the next generation.
#pragma once

#include <cstdint>

namespace lg {

constexpr uint32_t kUnknownGeneration = 0xffffffffu;  // a write to the block failed: not checked

// SplitMix64's output function: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ull;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z;
}

inline uint64_t pattern_key(uint64_t seed, uint32_t generation) {
  return mix64(seed ^ (0x9e3779b97f4a7c15ull * (uint64_t{generation} + 1)));
}

inline uint64_t pattern_word(uint64_t key, uint64_t byte_offset) { return mix64(key + byte_offset); }

inline void pattern_fill(uint8_t* buf, uint32_t len, uint64_t key, uint64_t device_offset) {
  uint64_t* w = reinterpret_cast<uint64_t*>(buf);  // 4 KiB-aligned buffers, len a multiple of 512
  for (uint32_t i = 0; i < len / 8; i++) w[i] = pattern_word(key, device_offset + 8ull * i);
}

struct PatternMismatch {
  uint64_t offset = 0;  // device byte offset of the first bad word
  uint64_t expected = 0;
  uint64_t got = 0;
};

// Returns the number of bad words; the first is described in *first.
inline uint32_t pattern_check(const uint8_t* buf, uint32_t len, uint64_t key, uint64_t device_offset,
                              PatternMismatch* first) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(buf);
  uint32_t bad = 0;
  for (uint32_t i = 0; i < len / 8; i++) {
    uint64_t want = pattern_word(key, device_offset + 8ull * i);
    if (w[i] != want) {
      if (bad++ == 0) *first = {device_offset + 8ull * i, want, w[i]};
    }
  }
  return bad;
}

}  // namespace lg
