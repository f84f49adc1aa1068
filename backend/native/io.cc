// Vectored file I/O straight between a file and caller views (guest memory
// included): preadv/pwritev/fdatasync on the addon's own worker threads,
// completions delivered on the JS thread through one uv_async_t.
//
// Why not uv_queue_work: the libuv pool is shared with fs, dns and zlib and
// costs a round trip per request (performance.md §3); our pool is private,
// grows on demand up to kMaxThreads, and keeps one thread (and so one
// wake-up path) at queue depth 1.
//
// Memory safety of in-flight requests:
//  - views into mmap()ed regions: the request takes an I/O hold on each
//    mapping it touches (memory.h); munmap() detaches at once but unmaps
//    only when the last hold goes, just before the callback runs;
//  - any other view: a napi reference on its ArrayBuffer keeps the backing
//    store alive until completion.
// Steady state allocates nothing per request on our side: request objects
// and their vectors are recycled.
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "addon.h"
#include "common.h"
#include "iov.h"
#include "memory.h"

namespace vhs {

namespace {

constexpr size_t kMaxThreads = 4;
constexpr size_t kWorkerStack = 256 * 1024;
constexpr uint64_t kFlagDsync = 1;  // binding.d.ts: flags bit 0 = RWF_DSYNC

enum class IoOp : uint8_t { kRead, kWrite, kSync };

struct IoReq {
  IoReq* next = nullptr;
  IoOp op = IoOp::kRead;
  int fd = -1;
  bool dsync = false;
  uint64_t pos = 0;
  std::vector<iovec> iov;
  std::vector<Mapping*> held;      // I/O holds on guest-memory mappings
  std::vector<napi_ref> bufRefs;   // references on other ArrayBuffers
  napi_ref callback = nullptr;
  // Result, written by the worker.
  uint64_t done = 0;
  int err = 0;
  const char* syscall = nullptr;
};

// Consume n bytes from the front of an iovec array (n <= bytes remaining).
void Advance(iovec** iov, int* cnt, size_t n) {
  while (n > 0) {
    iovec* v = *iov;
    if (n >= v->iov_len) {
      n -= v->iov_len;
      ++*iov;
      --*cnt;
    } else {
      v->iov_base = static_cast<uint8_t*>(v->iov_base) + n;
      v->iov_len -= n;
      n = 0;
    }
  }
}

// preadv until every byte is read, EOF, or an error. Returns bytes read;
// *err is 0 on success and on EOF. Modifies the iovecs.
uint64_t ReadFull(int fd, iovec* iov, int cnt, uint64_t pos, int* err,
                  const char** syscall) {
  uint64_t total = 0;
  *err = 0;
  while (cnt > 0) {
    ssize_t n = ::preadv(fd, iov, cnt, static_cast<off_t>(pos + total));
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      *syscall = "preadv";
      break;
    }
    if (n == 0) break;  // EOF: report what we have
    total += static_cast<uint64_t>(n);
    Advance(&iov, &cnt, static_cast<size_t>(n));
  }
  return total;
}

int DataSync(int fd) {
  while (::fdatasync(fd) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

// pwritev (or pwritev2 with RWF_DSYNC) until every byte is written or an
// error. Returns bytes written. Modifies the iovecs.
uint64_t WriteFull(int fd, iovec* iov, int cnt, uint64_t pos, bool dsync, int* err,
                   const char** syscall) {
  uint64_t total = 0;
  bool fallback = false;  // RWF_DSYNC unsupported here: pwritev + fdatasync
  *err = 0;
  while (cnt > 0) {
    ssize_t n;
    if (dsync && !fallback) {
      n = ::pwritev2(fd, iov, cnt, static_cast<off_t>(pos + total), RWF_DSYNC);
      if (n < 0 && (errno == ENOSYS || errno == EOPNOTSUPP)) {
        fallback = true;
        continue;
      }
    } else {
      n = ::pwritev(fd, iov, cnt, static_cast<off_t>(pos + total));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      *syscall = dsync && !fallback ? "pwritev2" : "pwritev";
      return total;
    }
    if (n == 0) {
      // No progress on a non-empty request: never spin; the medium refused.
      *err = EIO;
      *syscall = "pwritev";
      return total;
    }
    total += static_cast<uint64_t>(n);
    Advance(&iov, &cnt, static_cast<size_t>(n));
  }
  if (fallback) {
    // FUA semantics without RWF_DSYNC (reliability.md §4.6): the data is
    // acknowledged only once fdatasync covered it.
    if ((*err = DataSync(fd)) != 0) *syscall = "fdatasync";
  }
  return total;
}

void Execute(IoReq* r) {
  int cnt = static_cast<int>(r->iov.size());
  switch (r->op) {
    case IoOp::kRead:
      r->done = ReadFull(r->fd, r->iov.data(), cnt, r->pos, &r->err, &r->syscall);
      break;
    case IoOp::kWrite:
      r->done = WriteFull(r->fd, r->iov.data(), cnt, r->pos, r->dsync, &r->err, &r->syscall);
      break;
    case IoOp::kSync:
      r->done = 0;
      if ((r->err = DataSync(r->fd)) != 0) r->syscall = "fdatasync";
      break;
  }
}

}  // namespace

struct IoEngine {
  napi_env env = nullptr;
  uv_loop_t* loop = nullptr;
  uv_async_t* async = nullptr;  // freed in its close callback
  napi_async_context asyncContext = nullptr;

  std::mutex mu;  // guards the submission queue and the thread set
  std::condition_variable cv;
  IoReq* qHead = nullptr;
  IoReq* qTail = nullptr;
  size_t qLen = 0;
  size_t idle = 0;
  bool stopping = false;
  std::vector<pthread_t> threads;

  std::mutex doneMu;  // guards the completion list
  IoReq* dHead = nullptr;
  IoReq* dTail = nullptr;

  // JS thread only.
  IoReq* freeList = nullptr;
  size_t outstanding = 0;
  IovScratch scratch;
  bool scratchBusy = false;
};

namespace {

void* WorkerMain(void* arg) {
  IoEngine* e = static_cast<IoEngine*>(arg);
  for (;;) {
    IoReq* r;
    {
      std::unique_lock<std::mutex> lock(e->mu);
      while (!e->stopping && e->qHead == nullptr) {
        e->idle++;
        e->cv.wait(lock);
        e->idle--;
      }
      if (e->stopping) return nullptr;  // queued requests are dropped by teardown
      r = e->qHead;
      e->qHead = r->next;
      if (e->qHead == nullptr) e->qTail = nullptr;
      e->qLen--;
    }
    r->next = nullptr;
    Execute(r);
    {
      std::lock_guard<std::mutex> lock(e->doneMu);
      if (e->dTail != nullptr) e->dTail->next = r;
      else e->dHead = r;
      e->dTail = r;
    }
    uv_async_send(e->async);
  }
}

// Caller holds e->mu. Returns 0 or an errno.
int SpawnWorkerLocked(IoEngine* e) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kWorkerStack);
  // Signals belong to the JS thread (Node's handlers); workers block all.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, WorkerMain, e);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc == 0) e->threads.push_back(tid);
  return rc;
}

IoReq* AllocReq(IoEngine* e) {
  IoReq* r = e->freeList;
  if (r != nullptr) {
    e->freeList = r->next;
    r->next = nullptr;
    return r;
  }
  return new IoReq();
}

void RecycleReq(IoEngine* e, IoReq* r) {
  r->iov.clear();
  r->held.clear();
  r->bufRefs.clear();
  r->callback = nullptr;
  r->done = 0;
  r->err = 0;
  r->syscall = nullptr;
  r->next = e->freeList;
  e->freeList = r;
}

// Drop everything a request keeps alive. JS thread.
void ReleaseReq(IoEngine* e, IoReq* r) {
  ReleaseMappingsFromIo(&r->held);
  for (napi_ref ref : r->bufRefs) napi_delete_reference(e->env, ref);
  r->bufRefs.clear();
}

void OnAsync(uv_async_t* handle) {
  IoEngine* e = static_cast<IoEngine*>(handle->data);
  IoReq* list;
  {
    std::lock_guard<std::mutex> lock(e->doneMu);
    list = e->dHead;
    e->dHead = e->dTail = nullptr;
  }
  Napi::Env env(e->env);
  // Every completion is processed even if a callback throws or the env is
  // being terminated: holds and references are released first, so nothing
  // leaks when the JS call itself cannot happen.
  while (list != nullptr) {
    IoReq* r = list;
    list = r->next;
    Napi::HandleScope scope(env);
    ReleaseReq(e, r);  // unmaps deferred munmap()s before the callback runs
    napi_value cb = nullptr;
    napi_get_reference_value(e->env, r->callback, &cb);
    napi_delete_reference(e->env, r->callback);
    napi_value argv[2];
    if (r->err != 0) {
      argv[0] = MakeSystemError(env, r->err, r->syscall).Value();
    } else {
      argv[0] = env.Null();
    }
    argv[1] = Napi::Number::New(env, static_cast<double>(r->done));
    RecycleReq(e, r);
    if (--e->outstanding == 0) uv_unref(reinterpret_cast<uv_handle_t*>(e->async));
    if (cb != nullptr) {
      napi_make_callback(e->env, e->asyncContext, env.Global(), cb, 2, argv, nullptr);
      RethrowAsUncaught(env);
    }
  }
}

// Take holds/references for the decoded views, then queue the request.
Napi::Value Submit(Napi::Env env, IoEngine* e, IovScratch* sp, IoOp op, int fd, uint64_t pos,
                   bool dsync, napi_value callback) {
  IoReq* r = AllocReq(e);
  r->op = op;
  r->fd = fd;
  r->pos = pos;
  r->dsync = dsync;
  if (sp != nullptr) {
    IovScratch& s = *sp;
    FillIovecs(s, &r->iov);
    KeepViewsAlive(env, s, &r->held, &r->bufRefs);
  }
  napi_create_reference(env, callback, 1, &r->callback);

  int spawnErr = 0;
  {
    std::lock_guard<std::mutex> lock(e->mu);
    if (e->qLen + 1 > e->idle && e->threads.size() < kMaxThreads) {
      spawnErr = SpawnWorkerLocked(e);
      // With at least one worker alive the request still runs, later.
      if (spawnErr != 0 && !e->threads.empty()) spawnErr = 0;
    }
    if (spawnErr == 0) {
      if (e->qTail != nullptr) e->qTail->next = r;
      else e->qHead = r;
      e->qTail = r;
      e->qLen++;
    }
  }
  if (spawnErr != 0) {
    ReleaseReq(e, r);
    napi_delete_reference(env, r->callback);
    RecycleReq(e, r);
    ThrowSystemError(env, spawnErr, "pthread_create");
    return env.Undefined();
  }
  e->cv.notify_one();
  if (e->outstanding++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(e->async));
  return env.Undefined();
}

IoEngine* EngineOf(const Napi::CallbackInfo& info) {
  return static_cast<IoEngine*>(info.Data());
}

// preadv(fd, iov, position, callback)
Napi::Value Preadv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoEngine* e = EngineOf(info);
  int fd = -1;
  uint64_t position = 0;
  napi_value cb = nullptr;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 2, "position", kMaxSafeInteger, &position)) return env.Undefined();
  if (!ArgFunction(info, 3, "callback", &cb)) return env.Undefined();
  ScratchLease lease(&e->scratch, &e->scratchBusy);
  if (!DecodeIov(env, lease.get(), info[1], "preadv")) return env.Undefined();
  if (!CheckEnd(env, position, lease.get())) return env.Undefined();
  return Submit(env, e, &lease.get(), IoOp::kRead, fd, position, false, cb);
}

// pwritev(fd, iov, position, flags, callback)
Napi::Value Pwritev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoEngine* e = EngineOf(info);
  int fd = -1;
  uint64_t position = 0, flags = 0;
  napi_value cb = nullptr;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 2, "position", kMaxSafeInteger, &position)) return env.Undefined();
  if (!ArgUint(info, 3, "flags", kFlagDsync, &flags)) return env.Undefined();
  if (!ArgFunction(info, 4, "callback", &cb)) return env.Undefined();
  ScratchLease lease(&e->scratch, &e->scratchBusy);
  if (!DecodeIov(env, lease.get(), info[1], "pwritev")) return env.Undefined();
  if (!CheckEnd(env, position, lease.get())) return env.Undefined();
  return Submit(env, e, &lease.get(), IoOp::kWrite, fd, position, (flags & kFlagDsync) != 0,
                cb);
}

// fdatasync(fd, callback)
Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoEngine* e = EngineOf(info);
  int fd = -1;
  napi_value cb = nullptr;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgFunction(info, 1, "callback", &cb)) return env.Undefined();
  return Submit(env, e, nullptr, IoOp::kSync, fd, 0, false, cb);
}

// preadvSync(fd, iov, position): bytes read (short only at EOF).
Napi::Value PreadvSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoEngine* e = EngineOf(info);
  int fd = -1;
  uint64_t position = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 2, "position", kMaxSafeInteger, &position)) return env.Undefined();
  ScratchLease lease(&e->scratch, &e->scratchBusy);
  IovScratch& s = lease.get();
  if (!DecodeIov(env, s, info[1], "preadv")) return env.Undefined();
  if (!CheckEnd(env, position, s)) return env.Undefined();
  std::vector<iovec>& iov = s.iov;
  FillIovecs(s, &iov);
  int err = 0;
  const char* sc = nullptr;
  uint64_t n = ReadFull(fd, iov.data(), static_cast<int>(iov.size()), position, &err, &sc);
  if (err != 0) {
    ThrowSystemError(env, err, sc);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// pwritevSync(fd, iov, position, flags): bytes written (all of them).
Napi::Value PwritevSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoEngine* e = EngineOf(info);
  int fd = -1;
  uint64_t position = 0, flags = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 2, "position", kMaxSafeInteger, &position)) return env.Undefined();
  if (!ArgUint(info, 3, "flags", kFlagDsync, &flags)) return env.Undefined();
  ScratchLease lease(&e->scratch, &e->scratchBusy);
  IovScratch& s = lease.get();
  if (!DecodeIov(env, s, info[1], "pwritev")) return env.Undefined();
  if (!CheckEnd(env, position, s)) return env.Undefined();
  std::vector<iovec>& iov = s.iov;
  FillIovecs(s, &iov);
  int err = 0;
  const char* sc = nullptr;
  uint64_t n = WriteFull(fd, iov.data(), static_cast<int>(iov.size()), position,
                         (flags & kFlagDsync) != 0, &err, &sc);
  if (err != 0) {
    ThrowSystemError(env, err, sc);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// punchHole(fd, offset, length): deallocate a range, keeping the file size
// (SBC-3 UNMAP / WRITE SAME with UNMAP on a thin file).
Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint64_t offset = 0, length = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 1, "offset", kMaxSafeInteger, &offset)) return env.Undefined();
  if (!ArgUint(info, 2, "length", kMaxSafeInteger, &length)) return env.Undefined();
  if (length == 0) {
    ThrowRangeError(env, "The value of \"length\" is out of range. It must be >= 1");
    return env.Undefined();
  }
  while (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                     static_cast<off_t>(offset), static_cast<off_t>(length)) < 0) {
    if (errno == EINTR) continue;
    ThrowSystemError(env, errno, "fallocate");
    return env.Undefined();
  }
  return env.Undefined();
}

// lseekData(fd, offset, whence): lseek(2) with SEEK_DATA (3) or SEEK_HOLE (4)
// for GET LBA STATUS. Returns the resulting offset, or -1 for ENXIO (no data
// at or after offset). Synchronous: a metadata lookup, no data I/O.
Napi::Value LseekData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint64_t offset = 0, whence = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 1, "offset", kMaxSafeInteger, &offset)) return env.Undefined();
  if (!ArgUint(info, 2, "whence", SEEK_HOLE, &whence)) return env.Undefined();
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    ThrowRangeError(env, "The value of \"whence\" is out of range. It must be 3 (SEEK_DATA) or 4 (SEEK_HOLE)");
    return env.Undefined();
  }
  off_t r = ::lseek(fd, static_cast<off_t>(offset), static_cast<int>(whence));
  if (r < 0) {
    if (errno == ENXIO) return Napi::Number::New(env, -1);
    ThrowSystemError(env, errno, "lseek");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(r));
}

}  // namespace

IoEngine* CreateIoEngine(Napi::Env env, uv_loop_t* loop) {
  IoEngine* e = new IoEngine();
  e->env = env;
  e->loop = loop;
  e->async = new uv_async_t();
  uv_async_init(loop, e->async, OnAsync);
  e->async->data = e;
  // Referenced only while requests are outstanding: idle, the addon never
  // keeps the process alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(e->async));
  napi_async_init(env, Napi::Object::New(env), Napi::String::New(env, "VhostScsiIo"),
                  &e->asyncContext);
  return e;
}

void RegisterIo(Napi::Env env, Napi::Object exports, IoEngine* e) {
  exports.Set("preadv", Napi::Function::New(env, Preadv, "preadv", e));
  exports.Set("pwritev", Napi::Function::New(env, Pwritev, "pwritev", e));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync", e));
  exports.Set("preadvSync", Napi::Function::New(env, PreadvSync, "preadvSync", e));
  exports.Set("pwritevSync", Napi::Function::New(env, PwritevSync, "pwritevSync", e));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole, "punchHole", e));
  exports.Set("lseekData", Napi::Function::New(env, LseekData, "lseekData", e));
}

void DestroyIoEngine(IoEngine* e) {
  {
    std::lock_guard<std::mutex> lock(e->mu);
    e->stopping = true;
  }
  e->cv.notify_all();
  // Waits for requests already inside a syscall; queued ones never start.
  for (pthread_t t : e->threads) pthread_join(t, nullptr);
  e->threads.clear();
  IoReq* lists[2] = {e->qHead, e->dHead};
  e->qHead = e->qTail = e->dHead = e->dTail = nullptr;
  for (IoReq* r : lists) {
    while (r != nullptr) {
      IoReq* next = r->next;
      ReleaseReq(e, r);
      napi_delete_reference(e->env, r->callback);
      delete r;
      r = next;
    }
  }
  while (e->freeList != nullptr) {
    IoReq* next = e->freeList->next;
    delete e->freeList;
    e->freeList = next;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(e->async),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  if (e->asyncContext != nullptr) napi_async_destroy(e->env, e->asyncContext);
  delete e;
}

}  // namespace vhs
