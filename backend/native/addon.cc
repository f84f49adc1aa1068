// Entry point of vhost_scsi_native.node (surface: backend/binding.d.ts).
// Only what Node cannot do lives here; framing, validation of protocol
// values and all policy are TypeScript (DESIGN.md "The native addon").
#include "addon.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "common.h"
#include "uring.h"

namespace vhs {

// Bytes this addon ever memcpy'd between caller buffers. File I/O goes
// straight between the file and the views it is given (guest memory
// included) and adds nothing; copyBytes (the RAM backstore's one copy per
// I/O) adds what it copies. The benchmarks read it as their proof of both.
std::atomic<uint64_t> g_copiedBytes{0};

namespace {

struct AddonState {
  IoEngine* io = nullptr;
  PollerSet* pollers = nullptr;
  UringSet* urings = nullptr;
};

void Teardown(void* arg) {
  AddonState* state = static_cast<AddonState*>(arg);
  // Rings first: their teardown waits for the kernel to finish with iovecs.
  DestroyUringSet(state->urings);
  DestroyPollerSet(state->pollers);
  DestroyIoEngine(state->io);
  delete state;
}

// Keep this shared object mapped for the life of the process. A worker
// thread's env unloads its addons after its cleanup hooks, but libuv runs our
// uv_close callbacks, Node runs external-buffer finalizers, and ours are the
// functions they point at, later than that. RTLD_NODELETE makes the final
// dlclose a no-op.
void PinLibrary() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&PinLibrary), &info) != 0 && info.dli_fname != nullptr) {
    // The extra handle is never closed, on purpose.
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

Napi::Value Fence(const Napi::CallbackInfo& info) {
  // Notification suppression (virtio 1.2 §2.7.7 used, §2.7.10 available)
  // needs a store->load barrier: publish used->idx (or re-enable kicks),
  // then read the driver's avail_event/flags (or avail->idx). JS Atomics
  // give no standalone fence, so the ring code calls this one.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  return info.Env().Undefined();
}

// copyBytes(dst, dstOffset, src, srcOffset, length): memcpy between two
// views without creating subarrays in JS (no allocation per copy).
// Overlapping ranges are allowed (memmove).
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* dst = nullptr;
  uint8_t* src = nullptr;
  size_t dstLen = 0, srcLen = 0;
  uint64_t dstOff = 0, srcOff = 0, n = 0;
  if (!Uint8ArrayValue(env, info[0], "dst", &dst, &dstLen, nullptr)) return env.Undefined();
  if (!ArgUint(info, 1, "dstOffset", kMaxSafeInteger, &dstOff)) return env.Undefined();
  if (!Uint8ArrayValue(env, info[2], "src", &src, &srcLen, nullptr)) return env.Undefined();
  if (!ArgUint(info, 3, "srcOffset", kMaxSafeInteger, &srcOff)) return env.Undefined();
  if (!ArgUint(info, 4, "length", kMaxSafeInteger, &n)) return env.Undefined();
  if (dstOff > dstLen || n > dstLen - dstOff || srcOff > srcLen || n > srcLen - srcOff) {
    ThrowRangeError(env, "copyBytes: range outside a view");
    return env.Undefined();
  }
  if (n > 0) {
    memmove(dst + dstOff, src + srcOff, n);
    g_copiedBytes.fetch_add(n, std::memory_order_relaxed);
  }
  return env.Undefined();
}

Napi::Value CopiedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(g_copiedBytes.load(std::memory_order_relaxed)));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "vhost_scsi_native: no libuv loop").ThrowAsJavaScriptException();
    return exports;
  }
  PinLibrary();
  AddonState* state = new AddonState();
  state->io = CreateIoEngine(env, loop);
  state->pollers = CreatePollerSet(env, loop);
  state->urings = CreateUringSet(env, loop);
  napi_add_env_cleanup_hook(env, Teardown, state);

  RegisterSockets(env, exports);
  RegisterMemory(env, exports);
  RegisterEventfd(env, exports);
  RegisterPoller(env, exports, state->pollers);
  RegisterIo(env, exports, state->io);
  RegisterUring(env, exports, state->urings);
  exports.Set("fence", Napi::Function::New(env, Fence, "fence"));
  exports.Set("copiedBytes", Napi::Function::New(env, CopiedBytes, "copiedBytes"));
  exports.Set("copyBytes", Napi::Function::New(env, CopyBytes, "copyBytes"));
  return exports;
}

}  // namespace vhs

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return vhs::Init(env, exports);
}

NODE_API_MODULE(vhost_scsi_native, InitModule)
