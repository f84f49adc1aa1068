// Log-linear latency histogram: values below 2^kSubBits ns are exact, above that every power
// of two is split into 2^kSubBits equal buckets (relative error < 1/128). Fixed size, no
// allocation after construction; one per worker thread, merged at the end.
#pragma once

#include <cstdint>
#include <vector>

namespace lg {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  // Values up to 2^(kSubBits + kOctaves) - 1 ns (≈ 18 minutes) have their own bucket.
  static constexpr unsigned kOctaves = 34;
  static constexpr uint64_t kBuckets = (kOctaves + 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void add(uint64_t ns) {
    ++counts_[index(ns)];
    ++count_;
    sum_ += ns;
    if (ns > max_) max_ = ns;
  }
  void merge(const Histogram& o);
  void clear();

  uint64_t count() const { return count_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }
  uint64_t max() const { return max_; }
  // The value below which a fraction q (0..1] of the samples lie: the midpoint of the bucket
  // holding the ceil(q * count)-th sample, never above the exact maximum.
  double quantile(double q) const;

 private:
  static uint64_t index(uint64_t v) {
    if (v < kSub) return v;
    unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));
    unsigned shift = msb - kSubBits;
    if (shift >= kOctaves) return kBuckets - 1;
    // (shift + 1) selects the octave, the kSubBits bits below the leading one the bucket.
    return (uint64_t{shift + 1} << kSubBits) | ((v >> shift) & (kSub - 1));
  }

  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace lg
