// Module wiring of the vhost-scsi-ts native addon. Each source file registers
// its part of the surface declared in backend/binding.d.ts; the two parts with
// per-environment state (the I/O engine and the pollers, both bound to the
// env's libuv loop) are created here and torn down by an env cleanup hook,
// so the addon also works, and unloads cleanly, inside worker_threads.
#pragma once

#include <napi.h>
#include <uv.h>

namespace vhs {

struct IoEngine;
struct PollerSet;

void RegisterSockets(Napi::Env env, Napi::Object exports);
void RegisterMemory(Napi::Env env, Napi::Object exports);
void RegisterEventfd(Napi::Env env, Napi::Object exports);

IoEngine* CreateIoEngine(Napi::Env env, uv_loop_t* loop);
void RegisterIo(Napi::Env env, Napi::Object exports, IoEngine* engine);
// Joins the worker threads, drops every pending request (their callbacks are
// never called: JS cannot run any more) and closes the uv handle.
void DestroyIoEngine(IoEngine* engine);

PollerSet* CreatePollerSet(Napi::Env env, uv_loop_t* loop);
void RegisterPoller(Napi::Env env, Napi::Object exports, PollerSet* set);
// Closes every poller that is still open.
void DestroyPollerSet(PollerSet* set);

}  // namespace vhs
