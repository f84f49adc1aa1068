// The addon's own io_uring (uring.cc): createUring() in backend/binding.d.ts.
// Rings are per env (bound to its libuv loop) and torn down by the addon's env
// cleanup hook, which waits for the kernel to finish with every iovec first.
#pragma once

#include <napi.h>
#include <uv.h>

namespace vhs {

struct UringSet;

UringSet* CreateUringSet(Napi::Env env, uv_loop_t* loop);
void RegisterUring(Napi::Env env, Napi::Object exports, UringSet* set);
// Closes every ring of the env: requests the kernel has not taken are
// dropped, the others cancelled and waited for (blocking, as joining a
// thread inside preadv would; only if the ring itself fails is their memory
// leaked rather than released under the kernel). No JS callback runs.
void DestroyUringSet(UringSet* set);

}  // namespace vhs
