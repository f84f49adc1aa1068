// memfd, mmap/munmap as external, detachable ArrayBuffers, and the mapping
// registry described in memory.h.
#include "memory.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <mutex>

#include "addon.h"
#include "common.h"

namespace vhs {

struct Mapping {
  uint8_t* addr;
  size_t length;
  uint32_t ioHolds = 0;     // in-flight async I/O requests pointing into it
  bool released = false;    // JS gave it up (munmap() or finalizer)
  bool unmapped = false;    // munmap(2) done, removed from the registry
  bool finalized = false;   // the ArrayBuffer finalizer ran
  bool creating = true;     // inside napi_create_external_arraybuffer
};

namespace {

std::mutex g_mu;
// Live mappings (mapped, including deferred unmaps), keyed by start address.
std::map<uintptr_t, Mapping*> g_live;

// Largest ArrayBuffer Node will wrap around external memory: Node < 22
// builds external ArrayBuffers through node::Buffer, capped at
// v8::TypedArray::kMaxLength = 2^32 on 64-bit hosts. Guest RAM regions
// larger than this must be mapped in several pieces by the caller.
uint64_t g_maxMappingLength = uint64_t{1} << 32;

// Unmap if JS let go and no I/O holds it. Caller holds g_mu.
void MaybeUnmapLocked(Mapping* m) {
  if (m->unmapped || !m->released || m->ioHolds != 0) return;
  g_live.erase(reinterpret_cast<uintptr_t>(m->addr));
  // munmap only fails for invalid arguments, which would be our bug; there
  // is nothing useful to do about it at this point.
  (void)::munmap(m->addr, m->length);
  m->unmapped = true;
}

// Free the bookkeeping once nothing can reach it. Caller holds g_mu.
// Returns true if m was deleted.
bool MaybeDeleteLocked(Mapping* m) {
  if (!m->unmapped || !m->finalized) return false;
  delete m;
  return true;
}

Mapping* FindContainingLocked(uintptr_t p, size_t len) {
  auto it = g_live.upper_bound(p);
  if (it == g_live.begin()) return nullptr;
  --it;
  Mapping* m = it->second;
  uintptr_t start = reinterpret_cast<uintptr_t>(m->addr);
  if (p < start || len > m->length || p - start > m->length - len) return nullptr;
  return m;
}

void FinalizeMapping(napi_env /*env*/, void* /*data*/, void* hint) {
  Mapping* m = static_cast<Mapping*>(hint);
  std::lock_guard<std::mutex> lock(g_mu);
  m->finalized = true;
  if (m->creating) return;  // creation failed; Mmap() cleans up
  m->released = true;
  MaybeUnmapLocked(m);
  MaybeDeleteLocked(m);
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  uint64_t size = 0;
  if (!ArgCString(info, 0, "name", true, &name)) return env.Undefined();
  if (!ArgUint(info, 1, "size", kMaxSafeInteger, &size)) return env.Undefined();
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    ThrowSystemError(env, errno, "memfd_create");
    return env.Undefined();
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) < 0) {
    int err = errno;
    ::close(fd);
    ThrowSystemError(env, err, "ftruncate");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value FileSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    ThrowSystemError(env, errno, "fstat");
    return env.Undefined();
  }
  return Napi::BigInt::New(env, static_cast<int64_t>(st.st_size));
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint64_t offset = 0, length = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgBigUint(info, 1, "offset", INT64_MAX, &offset)) return env.Undefined();
  if (!ArgUint(info, 2, "length", kMaxSafeInteger, &length)) return env.Undefined();
  if (length == 0 || length > g_maxMappingLength) {
    ThrowRangeError(env, "The value of \"length\" is out of range. It must be >= 1 and <= " +
                             std::to_string(g_maxMappingLength));
    return env.Undefined();
  }
  static const uint64_t pageSize = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % pageSize != 0) {
    // mmap(2) would say EINVAL itself; saying it here keeps the error the
    // same whatever the fd is.
    ThrowSystemError(env, EINVAL, "mmap");
    return env.Undefined();
  }
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    ThrowSystemError(env, errno, "mmap");
    return env.Undefined();
  }
  // Touching a page of a file mapping beyond EOF raises SIGBUS, which kills
  // Node with no JS handler (reliability.md V3.1). The TS side checks region
  // bounds first; this is the last line for regular files and memfds.
  if (S_ISREG(st.st_mode) &&
      (st.st_size < 0 || offset + length > static_cast<uint64_t>(st.st_size))) {
    ThrowSystemError(env, EINVAL, "mmap");
    return env.Undefined();
  }
  // MAP_SHARED: guest memory is shared with QEMU and the guest; never
  // PROT_EXEC (reliability.md V3.1).
  void* addr = ::mmap(nullptr, static_cast<size_t>(length), PROT_READ | PROT_WRITE,
                      MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    ThrowSystemError(env, errno, "mmap");
    return env.Undefined();
  }
  Mapping* m = new Mapping{static_cast<uint8_t*>(addr), static_cast<size_t>(length)};
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_live.emplace(reinterpret_cast<uintptr_t>(addr), m);
  }
  napi_value ab = nullptr;
  napi_status status =
      napi_create_external_arraybuffer(env, addr, m->length, FinalizeMapping, m, &ab);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    m->creating = false;
    if (status != napi_ok) {
      // Node refused the external buffer (a build with the V8 sandbox, or a
      // size limit): whether or not it already ran the finalizer, it will
      // not run it later, so the mapping is ours to undo.
      m->released = true;
      m->finalized = true;
      MaybeUnmapLocked(m);
      MaybeDeleteLocked(m);
    }
  }
  if (status != napi_ok) {
    if (!env.IsExceptionPending()) {
      Napi::Error::New(env, "mmap: Node.js refused an external ArrayBuffer")
          .ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  return Napi::Value(env, ab);
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value v = info[0];
  bool isAb = false;
  napi_is_arraybuffer(env, v, &isAb);
  if (!isAb) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"buffer\" argument must be an instance of ArrayBuffer");
    return env.Undefined();
  }
  bool detached = false;
  napi_is_detached_arraybuffer(env, v, &detached);
  if (detached) return env.Undefined();  // idempotent
  void* data = nullptr;
  size_t length = 0;
  napi_get_arraybuffer_info(env, v, &data, &length);
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_live.find(reinterpret_cast<uintptr_t>(data));
    if (it != g_live.end() && it->second->length == length && !it->second->released) {
      m = it->second;
      // Pin it across the detach below, in case Node runs the finalizer
      // synchronously from there (it defers it today).
      m->ioHolds++;
    }
  }
  if (m == nullptr) {
    // Never detach (let alone unmap) a buffer we did not map.
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   "The \"buffer\" argument is not a live mapping returned by mmap()");
    return env.Undefined();
  }
  // Detach first, so no JS view can touch the pages from here on; the
  // backing store's finalizer may follow later and is then a no-op.
  napi_status status = napi_detach_arraybuffer(env, v);
  std::lock_guard<std::mutex> lock(g_mu);
  m->ioHolds--;  // the pin; m cannot have been deleted while it was held
  if (status != napi_ok) {
    MaybeUnmapLocked(m);  // only if the finalizer ran meanwhile
    MaybeDeleteLocked(m);
    if (!env.IsExceptionPending()) {
      Napi::Error::New(env, "munmap: the ArrayBuffer cannot be detached")
          .ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  m->released = true;
  MaybeUnmapLocked(m);  // deferred while I/O holds remain
  MaybeDeleteLocked(m);
  return env.Undefined();
}

Napi::Value MappingCount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_mu);
  return Napi::Number::New(info.Env(), static_cast<double>(g_live.size()));
}

}  // namespace

void HoldMappingsForIo(const std::vector<const uint8_t*>& ptrs,
                       const std::vector<size_t>& lens, std::vector<bool>* inMapping,
                       std::vector<Mapping*>* held) {
  std::lock_guard<std::mutex> lock(g_mu);
  inMapping->assign(ptrs.size(), false);
  if (g_live.empty()) return;
  for (size_t k = 0; k < ptrs.size(); k++) {
    Mapping* m = FindContainingLocked(reinterpret_cast<uintptr_t>(ptrs[k]), lens[k]);
    if (m == nullptr) continue;
    (*inMapping)[k] = true;
    bool already = false;
    for (Mapping* h : *held) already = already || h == m;
    if (!already) {
      m->ioHolds++;
      held->push_back(m);
    }
  }
}

void ReleaseMappingsFromIo(std::vector<Mapping*>* held) {
  if (held->empty()) return;
  std::lock_guard<std::mutex> lock(g_mu);
  for (Mapping* m : *held) {
    m->ioHolds--;
    MaybeUnmapLocked(m);
    MaybeDeleteLocked(m);
  }
  held->clear();
}

void RegisterMemory(Napi::Env env, Napi::Object exports) {
  const napi_node_version* version = nullptr;
  if (napi_get_node_version(env, &version) == napi_ok && version->major >= 22) {
    // Node 22 (V8 12.4) lifted the Buffer/TypedArray limit to 2^53 - 1.
    g_maxMappingLength = kMaxSafeInteger;
  }
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("fileSize", Napi::Function::New(env, FileSize, "fileSize"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("mappingCount", Napi::Function::New(env, MappingCount, "mappingCount"));
}

}  // namespace vhs
