// Decoding an `iov` argument (an Array of Uint8Array views) into iovecs for
// the asynchronous I/O entry points (io.cc's thread pool, uring.cc's ring),
// and keeping the views' memory alive until the kernel is done with it.
#ifndef VHS_IOV_H_
#define VHS_IOV_H_

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "common.h"

namespace vhs {

struct Mapping;

// Decoded views; reused across calls on the JS thread.
struct IovScratch {
  std::vector<napi_value> values;
  std::vector<const uint8_t*> ptrs;
  std::vector<size_t> lens;
  std::vector<napi_value> buffers;
  std::vector<bool> inMapping;
  std::vector<iovec> iov;  // for the synchronous variants
};

// The owner's scratch, or a private one when a JS getter re-entered us while
// the owner's scratch is in use.
class ScratchLease {
 public:
  ScratchLease(IovScratch* shared, bool* busy) : busy_(busy), owner_(!*busy) {
    s_ = owner_ ? shared : &local_;
    *busy = true;
  }
  ~ScratchLease() {
    if (owner_) *busy_ = false;
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  IovScratch& get() { return *s_; }

 private:
  bool* busy_;
  bool owner_;
  IovScratch local_;
  IovScratch* s_;
};

// Two passes: the first reads the elements (index getters may run JS), the
// second takes the data pointers with no JS in between, so nothing can detach
// a view after its pointer was captured. Empty and detached views are
// dropped. More than kMaxIovecs elements throw what the kernel would say
// (EINVAL from `syscall`). False with an exception pending on error.
bool DecodeIov(Napi::Env env, IovScratch& s, napi_value arr, const char* syscall);

// position + total length must stay a valid off_t (RangeError otherwise).
bool CheckEnd(Napi::Env env, uint64_t position, const IovScratch& s);

void FillIovecs(const IovScratch& s, std::vector<iovec>* out);

// For I/O that outlives the call: an I/O hold on every mmap()ed mapping the
// views touch (munmap is deferred until released), and a reference on every
// other ArrayBuffer (consecutive views of one buffer share one).
void KeepViewsAlive(Napi::Env env, IovScratch& s, std::vector<Mapping*>* held, std::vector<napi_ref>* bufRefs);

}  // namespace vhs

#endif  // VHS_IOV_H_
