#include "histogram.h"

#include <algorithm>
#include <cmath>

namespace lg {

void Histogram::merge(const Histogram& o) {
  for (uint64_t i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  max_ = std::max(max_, o.max_);
}

void Histogram::clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = sum_ = max_ = 0;
}

double Histogram::quantile(double q) const {
  if (count_ == 0) return 0.0;
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank < 1) rank = 1;
  if (rank > count_) rank = count_;
  uint64_t seen = 0;
  for (uint64_t i = 0; i < kBuckets; i++) {
    seen += counts_[i];
    if (seen < rank) continue;
    double mid;
    if (i < kSub) {
      mid = static_cast<double>(i);
    } else {
      uint64_t shift = (i >> kSubBits) - 1;
      uint64_t low = (kSub | (i & (kSub - 1))) << shift;
      mid = static_cast<double>(low) + static_cast<double>((uint64_t{1} << shift) - 1) / 2.0;
    }
    return std::min(mid, static_cast<double>(max_));
  }
  return static_cast<double>(max_);
}

}  // namespace lg
