// Readiness watcher on the env's libuv loop (uv_poll_t), used for the vring
// kick eventfds and the vhost-user socket.
//
// Lifetime rules:
//  - The uv handle lives in a PollHandle that is freed only in its uv_close
//    callback, which libuv runs in a later loop phase than any poll
//    callback. So close() from inside the poller's own callback, or while
//    one is running, never frees memory still in use.
//  - The JS object is strongly referenced from creation until close(), like
//    an open Node handle: a poller is never collected behind the caller's
//    back, and no GC finalizer runs for it (Node 20 has a use-after-free
//    when a napi finalizer is queued while a worker terminates). The loop is
//    kept alive only while started (libuv's ref counting of active handles).
//  - The JS callback hangs off the JS object under a private symbol, so
//    close() releases both at once.
//  - The fd is never closed here: the caller owns it, and must stop or
//    close the poller before closing the fd (libuv requirement).
#include <cerrno>

#include "addon.h"
#include "common.h"

namespace vhs {

class PollerWrap;

struct PollHandle {
  uv_poll_t poll;
  PollerWrap* wrap = nullptr;  // null once closed
  PollerSet* set = nullptr;
  PollHandle* prev = nullptr;
  PollHandle* next = nullptr;
  int fd = -1;
};

struct PollerSet {
  napi_env env;
  uv_loop_t* loop;
  PollHandle* head = nullptr;  // every open handle, for env teardown
  Napi::FunctionReference ctor;
  Napi::Reference<Napi::Symbol> callbackKey;
  napi_async_context asyncContext = nullptr;
};

namespace {

void Unlink(PollHandle* h) {
  PollerSet* set = h->set;
  if (h->prev != nullptr) h->prev->next = h->next;
  else set->head = h->next;
  if (h->next != nullptr) h->next->prev = h->prev;
  h->prev = h->next = nullptr;
}

void OnClosed(uv_handle_t* handle) { delete static_cast<PollHandle*>(handle->data); }

// Detach h from its wrapper and give it to libuv to close.
void CloseHandle(PollHandle* h) {
  Unlink(h);
  h->wrap = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnClosed);
}

}  // namespace

class PollerWrap : public Napi::ObjectWrap<PollerWrap> {
 public:
  static Napi::Function Define(Napi::Env env, PollerSet* set) {
    return DefineClass(env, "Poller",
                       {InstanceMethod<&PollerWrap::Start>("start"),
                        InstanceMethod<&PollerWrap::Stop>("stop"),
                        InstanceMethod<&PollerWrap::Close>("close")},
                       set);
  }

  explicit PollerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PollerWrap>(info) {
    Napi::Env env = info.Env();
    set_ = static_cast<PollerSet*>(info.Data());
    int fd = -1;
    napi_value cb = nullptr;
    if (!ArgFd(info, 0, "fd", &fd)) return;
    if (!ArgFunction(info, 1, "callback", &cb)) return;
    // libuv allows one active poll handle per fd and loop ("it is not okay
    // to have multiple active poll handles for the same socket"), but it
    // only notices once both are started. Refuse the second one up front.
    for (PollHandle* o = set_->head; o != nullptr; o = o->next) {
      if (o->fd == fd) {
        ThrowSystemError(env, EEXIST, "uv_poll_init");
        return;
      }
    }
    PollHandle* h = new PollHandle();
    h->set = set_;
    h->fd = fd;
    // uv_poll_init also sets O_NONBLOCK on the fd.
    int rc = uv_poll_init(set_->loop, &h->poll, fd);
    if (rc < 0) {
      delete h;  // not registered with the loop on failure
      ThrowSystemError(env, -rc, "uv_poll_init");
      return;
    }
    h->poll.data = h;
    // Read-only, non-enumerable, non-configurable.
    Napi::Object self = info.This().As<Napi::Object>();
    self.DefineProperty(Napi::PropertyDescriptor::Value(set_->callbackKey.Value(),
                                                        Napi::Value(env, cb), napi_default));
    h->wrap = this;
    h->next = set_->head;
    if (set_->head != nullptr) set_->head->prev = h;
    set_->head = h;
    handle_ = h;
    Ref();  // until close()
  }

  ~PollerWrap() override {
    if (handle_ != nullptr) CloseHandle(handle_);
  }

  // Env teardown: the handle is being closed by the set (and the reference
  // is finalized by Node with the env).
  void ForgetHandle() { handle_ = nullptr; }

  static void OnPoll(uv_poll_t* poll, int status, int events) {
    PollHandle* h = static_cast<PollHandle*>(poll->data);
    PollerWrap* self = h->wrap;
    if (self == nullptr) return;  // closed; libuv will not call again
    PollerSet* set = h->set;
    Napi::Env env(set->env);
    Napi::HandleScope scope(env);
    Napi::Object obj = self->Value();  // strongly referenced until close()
    if (obj.IsEmpty()) return;
    Napi::Value cb = obj.Get(set->callbackKey.Value());
    if (env.IsExceptionPending() || !cb.IsFunction()) {
      RethrowAsUncaught(env);
      return;
    }
    napi_value argv[2] = {Napi::Number::New(env, status),
                          Napi::Number::New(env, events & (UV_READABLE | UV_WRITABLE))};
    // MakeCallback, like Node's own handles: async_hooks context, then
    // process.nextTick and microtask queues drained after the callback.
    napi_make_callback(env, set->asyncContext, obj, cb, 2, argv, nullptr);
    RethrowAsUncaught(env);
    // Nothing may touch h or self from here: the callback may have closed
    // the poller (h stays allocated until OnClosed, but we are done anyway).
  }

 private:
  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t events = 0;
    if (!ArgUint(info, 0, "events", UV_READABLE | UV_WRITABLE, &events)) return;
    if (events == 0) {
      ThrowRangeError(env, "The value of \"events\" is out of range. It must be 1, 2 or 3");
      return;
    }
    if (handle_ == nullptr) {
      ThrowTypeError(env, "ERR_INVALID_STATE", "Poller is closed");
      return;
    }
    int rc = uv_poll_start(&handle_->poll, static_cast<int>(events), OnPoll);
    if (rc < 0) ThrowSystemError(env, -rc, "uv_poll_start");
  }

  void Stop(const Napi::CallbackInfo& /*info*/) {
    if (handle_ == nullptr) return;
    uv_poll_stop(&handle_->poll);
  }

  void Close(const Napi::CallbackInfo& /*info*/) {
    if (handle_ == nullptr) return;  // idempotent
    CloseHandle(handle_);  // uv_close stops the watcher first
    handle_ = nullptr;
    Unref();  // collectable from now on
  }

  PollerSet* set_ = nullptr;
  PollHandle* handle_ = nullptr;
};

PollerSet* CreatePollerSet(Napi::Env env, uv_loop_t* loop) {
  PollerSet* set = new PollerSet();
  set->env = env;
  set->loop = loop;
  set->callbackKey = Napi::Persistent(Napi::Symbol::New(env, "vhost_scsi_native.pollerCallback"));
  napi_async_init(env, Napi::Object::New(env), Napi::String::New(env, "VhostScsiPoller"),
                  &set->asyncContext);
  return set;
}

void RegisterPoller(Napi::Env env, Napi::Object exports, PollerSet* set) {
  set->ctor = Napi::Persistent(PollerWrap::Define(env, set));
  exports.Set("createPoller",
              Napi::Function::New(
                  env,
                  [](const Napi::CallbackInfo& info) -> Napi::Value {
                    PollerSet* s = static_cast<PollerSet*>(info.Data());
                    return s->ctor.New({info[0], info[1]});
                  },
                  "createPoller", set));
}

void DestroyPollerSet(PollerSet* set) {
  while (set->head != nullptr) {
    PollHandle* h = set->head;
    if (h->wrap != nullptr) h->wrap->ForgetHandle();
    CloseHandle(h);
  }
  set->ctor.Reset();
  set->callbackKey.Reset();
  if (set->asyncContext != nullptr) napi_async_destroy(set->env, set->asyncContext);
  delete set;
}

}  // namespace vhs
