#include "iov.h"

#include <cerrno>
#include <climits>

#include "memory.h"

namespace vhs {

bool DecodeIov(Napi::Env env, IovScratch& s, napi_value arr, const char* syscall) {
  s.values.clear();
  s.ptrs.clear();
  s.lens.clear();
  s.buffers.clear();
  bool isArray = false;
  napi_is_array(env, arr, &isArray);
  if (!isArray) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"iov\" argument must be an Array of Uint8Array");
    return false;
  }
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  if (n > kMaxIovecs) {
    ThrowSystemError(env, EINVAL, syscall);  // what the kernel says beyond UIO_MAXIOV
    return false;
  }
  for (uint32_t k = 0; k < n; k++) {
    napi_value v = nullptr;
    if (napi_get_element(env, arr, k, &v) != napi_ok) return false;  // a getter threw
    s.values.push_back(v);
  }
  for (uint32_t k = 0; k < n; k++) {
    uint8_t* data = nullptr;
    size_t len = 0;
    napi_value ab = nullptr;
    if (!Uint8ArrayValue(env, s.values[k], "iov[i]", &data, &len, &ab)) return false;
    if (len == 0) continue;
    s.ptrs.push_back(data);
    s.lens.push_back(len);
    s.buffers.push_back(ab);
  }
  return true;
}

bool CheckEnd(Napi::Env env, uint64_t position, const IovScratch& s) {
  // Both are far below 2^63 in practice (position <= 2^53 - 1, at most 1024
  // buffers): a cheap guard, not a hot limit.
  uint64_t total = 0;
  for (size_t len : s.lens) total += len;
  if (total > static_cast<uint64_t>(INT64_MAX) - position) {
    ThrowRangeError(env, "position + length exceeds the largest file offset");
    return false;
  }
  return true;
}

void FillIovecs(const IovScratch& s, std::vector<iovec>* out) {
  out->clear();
  for (size_t k = 0; k < s.ptrs.size(); k++) {
    out->push_back(iovec{const_cast<uint8_t*>(s.ptrs[k]), s.lens[k]});
  }
}

void KeepViewsAlive(Napi::Env env, IovScratch& s, std::vector<Mapping*>* held, std::vector<napi_ref>* bufRefs) {
  if (s.ptrs.empty()) return;
  HoldMappingsForIo(s.ptrs, s.lens, &s.inMapping, held);
  napi_value lastRef = nullptr;
  for (size_t k = 0; k < s.ptrs.size(); k++) {
    if (s.inMapping[k]) continue;
    bool same = false;
    if (lastRef != nullptr) napi_strict_equals(env, lastRef, s.buffers[k], &same);
    if (same) continue;  // consecutive views of one buffer need one reference
    napi_ref ref = nullptr;
    napi_create_reference(env, s.buffers[k], 1, &ref);
    bufRefs->push_back(ref);
    lastRef = s.buffers[k];
  }
}

}  // namespace vhs
