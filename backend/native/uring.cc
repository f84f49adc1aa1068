// An io_uring owned by the addon: vectored reads, writes and fdatasync
// straight between a file and caller views (guest memory included), queued
// by JS, submitted with one io_uring_enter per batch, completed on the JS
// thread in batches (one JS call per eventfd wake-up).
//
// Why our own ring and not libuv's: libuv uses io_uring only opt-in (since
// CVE-2024-22017) and only for its own fs requests; its thread pool costs a
// cross-thread round trip per request (performance.md §3). Why not SQPOLL by
// default: the kernel's SQ thread competes for this 2-vCPU box's CPU and
// wakes across vCPUs (performance.md §1.3); it is an option.
//
// The ring, raw (no liburing): io_uring_setup(2) gives the ring sizes and the
// offsets of head, tail, mask, flags and array in the SQ and CQ rings; we map
// the SQ ring, the CQ ring (the same mapping with IORING_FEAT_SINGLE_MMAP) and
// the SQE array. Ordering follows io_uring(7) and the kernel's
// io_uring/io_uring.c header comment:
//  - SQ: fill the SQE, then store-release the tail (the kernel load-acquires
//    it); load-acquire the head the kernel advances to see free entries.
//    With SQPOLL, a full fence between publishing the tail and reading
//    IORING_SQ_NEED_WAKEUP, or a sleeping SQ thread could miss the entries.
//  - CQ: load-acquire the tail (pairs with the kernel's release after
//    writing the CQE), read the CQEs, then store-release the head, so the
//    kernel cannot overwrite an entry we are still reading.
// The SQ index array is the identity, written once: SQEs are used in ring
// order.
//
// Completions: an eventfd registered with IORING_REGISTER_EVENTFD, watched by
// a uv_poll_t on the env's loop. One wake-up reads the eventfd (first, so a
// CQE posted while we reap signals again) and reaps every CQE into two typed
// arrays allocated once per ring, then makes one JS call.
//
// Capacity: at most cq_entries (2 x SQ entries) requests are in flight, so the
// CQ ring can never overflow with our own completions; a request beyond that,
// or beyond free SQ space, is refused (readv() returns false) and the caller
// submits and retries or falls back. The kernel's overflow list
// (IORING_FEAT_NODROP) is still flushed if it is ever used.
//
// Memory safety of in-flight requests, as in io.cc:
//  - views into mmap()ed regions take an I/O hold on each mapping (memory.h);
//    munmap() detaches at once and unmaps when the last hold goes, which is
//    after the CQE, just before the JS call;
//  - any other view: a napi reference on its ArrayBuffer until the CQE;
//  - the iovec array the SQE points to lives in the request's slot until the
//    CQE, whatever IORING_FEAT_SUBMIT_STABLE promises.
// Per-request state is a table indexed by an internal tag (the SQE's
// user_data) allocated when the ring is created; its vectors keep their
// capacity, so the steady state allocates nothing on our side.
//
// close() drops what the kernel has not consumed yet, cancels the rest
// (IORING_OP_ASYNC_CANCEL, any request) and lets them drain in the
// background: nothing is released before its CQE, and no JS runs for them.
// Env teardown does the same but waits (io_uring_enter GETEVENTS), like
// io.cc joining a worker that is inside preadv.
//
// -EAGAIN: passed through as the result, not retried here. The kernel
// retries itself when a request would block (io-wq workers for files, an
// armed poll for pipes and sockets; on Linux 6.18 even an O_NONBLOCK FIFO
// read waits rather than failing), so it is not expected; where it does come
// back, an immediate resubmission would only spin. The caller decides.
#include "uring.h"

#include <linux/io_uring.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "iov.h"
#include "memory.h"

namespace vhs {

namespace {

// IORING_MAX_ENTRIES (io_uring/io_uring.h): the kernel refuses more.
constexpr uint64_t kMaxEntries = 32768;
// user_data of the close-time cancel request; never a tag.
constexpr uint64_t kCancelTag = UINT64_MAX;
// With SQPOLL, how long the kernel thread spins before it sleeps and needs
// an IORING_ENTER_SQ_WAKEUP: short, since each millisecond of spinning is
// taken from the other vCPU.
constexpr unsigned kSqThreadIdleMs = 10;
// Flushing an overflow list is bounded: a few rounds can only happen if the
// kernel keeps completing while we reap.
constexpr int kOverflowRounds = 4;

enum class Op : uint8_t { kRead, kWrite, kSync };

const char* OpName(Op op) {
  switch (op) {
    case Op::kRead: return "readv";
    case Op::kWrite: return "writev";
    case Op::kSync: return "fdatasync";
  }
  return "?";
}

// ---- raw system calls (no liburing here) ------------------------------------

int SysSetup(uint32_t entries, io_uring_params* p) {
  long r = ::syscall(__NR_io_uring_setup, entries, p);
  return r < 0 ? -errno : static_cast<int>(r);
}

int SysEnter(int fd, uint32_t toSubmit, uint32_t minComplete, uint32_t flags) {
  long r = ::syscall(__NR_io_uring_enter, fd, toSubmit, minComplete, flags, nullptr, 0);
  return r < 0 ? -errno : static_cast<int>(r);
}

int SysRegister(int fd, unsigned opcode, const void* arg, unsigned nrArgs) {
  long r = ::syscall(__NR_io_uring_register, fd, opcode, arg, nrArgs);
  return r < 0 ? -errno : static_cast<int>(r);
}

inline uint32_t LoadAcquire(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline uint32_t LoadRelaxed(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void StoreRelease(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

// ---- state -----------------------------------------------------------------

// One request, from readv() to its CQE.
struct Req {
  bool busy = false;
  uint32_t slot = 0;              // the caller's id, echoed in the completion
  std::vector<iovec> iov;         // what the SQE points to
  std::vector<Mapping*> held;     // I/O holds on guest-memory mappings
  std::vector<napi_ref> bufRefs;  // references on other ArrayBuffers
};

enum class RingState : uint8_t { kOpen, kDraining };

}  // namespace

class UringWrap;

struct Ring {
  UringSet* set = nullptr;
  Ring* prev = nullptr;  // the set's list of live rings
  Ring* next = nullptr;
  UringWrap* wrap = nullptr;  // null once closed
  RingState state = RingState::kOpen;
  bool sqpoll = false;
  bool leaked = false;  // teardown could not release it (see DestroyUringSet)
  int ringFd = -1;
  int eventFd = -1;
  uv_poll_t poll;
  bool pollInit = false;
  bool pollRef = true;  // uv handles start referenced

  // Mappings of the kernel's rings.
  void* sqMap = MAP_FAILED;
  size_t sqMapLen = 0;
  void* cqMap = MAP_FAILED;  // == sqMap with IORING_FEAT_SINGLE_MMAP
  size_t cqMapLen = 0;
  io_uring_sqe* sqes = nullptr;
  size_t sqesLen = 0;

  uint32_t* sqHead = nullptr;  // kernel writes
  uint32_t* sqTail = nullptr;  // we write
  uint32_t* sqFlags = nullptr;
  uint32_t sqMask = 0;
  uint32_t sqEntries = 0;
  // Next SQE to fill. [*sqTail, sqLocal) are filled and not yet published.
  uint32_t sqLocal = 0;

  uint32_t* cqHead = nullptr;  // we write
  uint32_t* cqTail = nullptr;  // kernel writes
  io_uring_cqe* cqes = nullptr;
  uint32_t cqMask = 0;
  uint32_t cqEntries = 0;

  std::vector<Req> reqs;  // indexed by tag; size = capacity = cqEntries
  std::vector<uint32_t> freeTags;
  uint32_t inflight = 0;  // busy tags: queued, submitted or running

  // JS side (deleted at close).
  napi_ref onComplete = nullptr;
  napi_ref slotsRef = nullptr;    // Uint32Array(capacity)
  napi_ref resultsRef = nullptr;  // Int32Array(capacity)
  uint32_t* slotsData = nullptr;
  int32_t* resultsData = nullptr;

  IovScratch scratch;
  bool scratchBusy = false;
};

struct UringSet {
  napi_env env = nullptr;
  uv_loop_t* loop = nullptr;
  Ring* head = nullptr;
  Napi::FunctionReference ctor;
  napi_async_context asyncContext = nullptr;
};

namespace {

// ---- ring mechanics ------------------------------------------------------------

uint32_t SqFree(const Ring* r) {
  return r->sqEntries - (r->sqLocal - LoadAcquire(r->sqHead));
}

// Requests not handed to the kernel yet (submit() hands them). Without SQPOLL
// that includes published entries an io_uring_enter did not consume.
uint32_t Queued(const Ring* r) {
  if (r->sqpoll) return r->sqLocal - *r->sqTail;
  return r->sqLocal - LoadAcquire(r->sqHead);
}

// Publish the filled SQEs and get the kernel to consume them. Returns how
// many it consumed (SQPOLL: how many were published), or -errno for a hard
// failure. EAGAIN/EBUSY (the kernel is short of request memory, or of CQ
// room) leave the entries queued for the next call.
int Submit(Ring* r) {
  uint32_t tail = r->sqLocal;
  uint32_t published = *r->sqTail;  // only this thread writes it
  if (tail != published) StoreRelease(r->sqTail, tail);
  if (r->sqpoll) {
    // The SQ thread sets NEED_WAKEUP and then re-reads the tail before it
    // sleeps; our tail store and this flag load must not be reordered.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if ((LoadRelaxed(r->sqFlags) & IORING_SQ_NEED_WAKEUP) != 0) {
      int rc;
      do {
        rc = SysEnter(r->ringFd, 0, 0, IORING_ENTER_SQ_WAKEUP);
      } while (rc == -EINTR);
      if (rc < 0 && rc != -EAGAIN && rc != -EBUSY) return rc;
    }
    return static_cast<int>(tail - published);
  }
  uint32_t total = 0;
  for (;;) {
    uint32_t toSubmit = tail - LoadAcquire(r->sqHead);
    if (toSubmit == 0) break;
    int n = SysEnter(r->ringFd, toSubmit, 0, 0);
    if (n == -EINTR) continue;
    if (n == -EAGAIN || n == -EBUSY) break;
    if (n < 0) return n;
    if (n == 0) break;
    total += static_cast<uint32_t>(n);
  }
  return static_cast<int>(total);
}

void ReleaseReq(napi_env env, Req& q) {
  ReleaseMappingsFromIo(&q.held);  // performs munmaps deferred on them
  for (napi_ref ref : q.bufRefs) napi_delete_reference(env, ref);
  q.bufRefs.clear();
  q.iov.clear();
  q.busy = false;
}

void FreeTag(Ring* r, uint32_t tag) {
  ReleaseReq(r->set->env, r->reqs[tag]);
  r->freeTags.push_back(tag);
  r->inflight--;
}

// Referenced (keeps the loop alive) exactly while the kernel owes us CQEs.
void UpdateRef(Ring* r) {
  bool want = r->inflight > 0;
  if (want == r->pollRef || !r->pollInit) return;
  r->pollRef = want;
  if (want) uv_ref(reinterpret_cast<uv_handle_t*>(&r->poll));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&r->poll));
}

// Consume every CQE. With deliver, (slot, res) pairs go to the JS arrays;
// returns how many. At most `inflight` CQEs can be ours and the arrays hold
// `capacity` >= inflight entries, so they cannot overrun.
uint32_t Reap(Ring* r, bool deliver) {
  uint32_t n = 0;
  for (int round = 0; round < kOverflowRounds; round++) {
    uint32_t head = *r->cqHead;  // only this thread writes it
    uint32_t tail = LoadAcquire(r->cqTail);
    while (head != tail) {
      const io_uring_cqe* cqe = &r->cqes[head & r->cqMask];
      uint64_t tag = cqe->user_data;
      int32_t res = cqe->res;
      head++;
      // The close-time cancel (kCancelTag) and anything that is not a busy
      // tag carry no request.
      if (tag >= r->reqs.size() || !r->reqs[tag].busy) continue;
      if (deliver) {
        r->slotsData[n] = r->reqs[tag].slot;
        r->resultsData[n] = res;
        n++;
      }
      FreeTag(r, static_cast<uint32_t>(tag));
    }
    StoreRelease(r->cqHead, head);
    // CQEs the kernel had no room for wait on its overflow list until an
    // io_uring_enter(GETEVENTS) moves them into the ring.
    if ((LoadRelaxed(r->sqFlags) & IORING_SQ_CQ_OVERFLOW) == 0) break;
    int rc = SysEnter(r->ringFd, 0, 0, IORING_ENTER_GETEVENTS);
    if (rc < 0 && rc != -EINTR) break;
  }
  return n;
}

// Forget every request the kernel has not consumed: not published, or (no
// SQPOLL) published but not taken by an io_uring_enter. Without SQPOLL the
// kernel reads the SQ only inside io_uring_enter on this thread, so moving
// the tail back is safe; with SQPOLL only unpublished entries can be.
void DropUnconsumed(Ring* r) {
  uint32_t from = r->sqpoll ? *r->sqTail : LoadAcquire(r->sqHead);
  for (uint32_t i = from; i != r->sqLocal; i++) {
    uint64_t tag = r->sqes[i & r->sqMask].user_data;
    if (tag < r->reqs.size() && r->reqs[tag].busy) FreeTag(r, static_cast<uint32_t>(tag));
  }
  r->sqLocal = from;
  if (*r->sqTail != from) StoreRelease(r->sqTail, from);
}

// Ask the kernel to cancel everything in flight. Requests that are running
// (a read inside the file system) still finish normally; queued io-wq work
// completes at once with -ECANCELED. Kernels before 5.19 refuse
// IORING_ASYNC_CANCEL_ANY with -EINVAL: then we simply wait.
void QueueCancel(Ring* r) {
  if (SqFree(r) == 0) return;
  io_uring_sqe* e = &r->sqes[r->sqLocal & r->sqMask];
  std::memset(e, 0, sizeof(*e));
  e->opcode = IORING_OP_ASYNC_CANCEL;
  e->fd = -1;
  e->cancel_flags = IORING_ASYNC_CANCEL_ANY;
  e->user_data = kCancelTag;
  r->sqLocal++;
  (void)Submit(r);
}

void DeleteJsRefs(Ring* r) {
  napi_env env = r->set->env;
  for (napi_ref* ref : {&r->onComplete, &r->slotsRef, &r->resultsRef}) {
    if (*ref != nullptr) napi_delete_reference(env, *ref);
    *ref = nullptr;
  }
  r->slotsData = nullptr;
  r->resultsData = nullptr;
}

void UnmapRing(Ring* r) {
  if (r->sqes != nullptr) ::munmap(r->sqes, r->sqesLen);
  if (r->cqMap != MAP_FAILED && r->cqMap != r->sqMap) ::munmap(r->cqMap, r->cqMapLen);
  if (r->sqMap != MAP_FAILED) ::munmap(r->sqMap, r->sqMapLen);
  r->sqes = nullptr;
  r->cqMap = r->sqMap = MAP_FAILED;
  // With requests still in flight (a leaked ring) the kernel keeps its own
  // references to the ring and finishes them after the close.
  if (r->ringFd >= 0) ::close(r->ringFd);
  r->ringFd = -1;
}

void Unlink(Ring* r) {
  UringSet* set = r->set;
  if (r->prev != nullptr) r->prev->next = r->next;
  else if (set->head == r) set->head = r->next;
  if (r->next != nullptr) r->next->prev = r->prev;
  r->prev = r->next = nullptr;
}

void OnPollClosed(uv_handle_t* h) {
  Ring* r = static_cast<Ring*>(h->data);
  // libuv has stopped watching the fd by now.
  if (r->eventFd >= 0) ::close(r->eventFd);
  r->eventFd = -1;
  // A leaked ring's request table holds iovecs the kernel may still read.
  if (!r->leaked) delete r;
}

// Everything is complete (or leaked): give the ring back. The Ring itself is
// freed in the uv_close callback, a later loop phase, so a caller up the
// stack (OnPoll after a JS call) never touches freed memory.
void DestroyRing(Ring* r) {
  Unlink(r);
  DeleteJsRefs(r);
  UnmapRing(r);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->poll), OnPollClosed);
}

// Typed-array views of the result arrays; replaced if JS detached their
// buffers (a transfer), so we never write into memory V8 has given away.
bool EnsureResultArrays(Ring* r, Napi::Env env) {
  struct Which {
    napi_ref* ref;
    napi_typedarray_type type;
    void** data;
  } which[2] = {{&r->slotsRef, napi_uint32_array, reinterpret_cast<void**>(&r->slotsData)},
                {&r->resultsRef, napi_int32_array, reinterpret_cast<void**>(&r->resultsData)}};
  for (Which& w : which) {
    napi_value arr = nullptr;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (napi_get_reference_value(env, *w.ref, &arr) != napi_ok || arr == nullptr) return false;
    napi_get_typedarray_info(env, arr, &type, &length, &data, nullptr, nullptr);
    if (length < r->cqEntries || data == nullptr) {
      napi_value ab = nullptr;
      if (napi_create_arraybuffer(env, size_t{r->cqEntries} * 4, &data, &ab) != napi_ok) return false;
      if (napi_create_typedarray(env, w.type, r->cqEntries, ab, 0, &arr) != napi_ok) return false;
      napi_delete_reference(env, *w.ref);
      napi_create_reference(env, arr, 1, w.ref);
    }
    *w.data = data;
  }
  return true;
}

void OnPoll(uv_poll_t* handle, int /*status*/, int /*events*/) {
  Ring* r = static_cast<Ring*>(handle->data);
  // Reset the eventfd before reaping: a CQE posted from here on signals it
  // again, so none is left behind until some unrelated wake-up.
  uint64_t counter;
  while (::read(r->eventFd, &counter, sizeof(counter)) < 0 && errno == EINTR) {
  }
  if (r->state == RingState::kDraining) {
    Reap(r, false);
    if (r->inflight == 0) DestroyRing(r);
    return;
  }
  Napi::Env env(r->set->env);
  Napi::HandleScope scope(env);
  if (!EnsureResultArrays(r, env)) {
    // Out of memory for two small arrays: complete nothing now (the CQEs
    // stay in the ring) and come back on the next wake-up.
    RethrowAsUncaught(env);
    return;
  }
  uint32_t n = Reap(r, true);
  UpdateRef(r);
  if (n == 0) return;
  napi_value cb = nullptr, argv[3];
  napi_get_reference_value(env, r->onComplete, &cb);
  napi_get_reference_value(env, r->slotsRef, &argv[0]);
  napi_get_reference_value(env, r->resultsRef, &argv[1]);
  argv[2] = Napi::Number::New(env, n);
  if (cb == nullptr) return;
  // MakeCallback, like Node's own handles: async_hooks context, then the
  // nextTick and microtask queues. The callback may close the ring; nothing
  // below touches r.
  napi_make_callback(env, r->set->asyncContext, env.Global(), cb, 3, argv, nullptr);
  RethrowAsUncaught(env);
}

// Close: JS no longer hears about this ring. Requests the kernel never
// consumed are dropped; the others are cancelled where possible and drain
// in the background (OnPoll in the draining state).
void CloseRing(Ring* r) {
  r->wrap = nullptr;
  DeleteJsRefs(r);
  DropUnconsumed(r);
  if (r->inflight > 0) QueueCancel(r);
  if (r->inflight == 0) {
    DestroyRing(r);
    return;
  }
  r->state = RingState::kDraining;
  UpdateRef(r);
}

// Block until the kernel completed every request. Used at env teardown,
// where the loop no longer runs.
void WaitAll(Ring* r) {
  for (;;) {
    Reap(r, false);
    if (r->inflight == 0) return;
    int rc = SysEnter(r->ringFd, 0, 1, IORING_ENTER_GETEVENTS);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return;  // ring unusable
  }
}

// ---- creating a ring -------------------------------------------------------------

// Returns 0 or an errno, with *syscallName set.
int SetUpRing(Ring* r, uint32_t entries, const char** syscallName) {
  io_uring_params p;
  uint32_t extra = 0;
#ifdef IORING_SETUP_SUBMIT_ALL
  // One bad SQE (say, a stale fd) fails alone instead of stopping the rest
  // of the batch at the kernel's door. Linux >= 5.18; retried without.
  extra = IORING_SETUP_SUBMIT_ALL;
#endif
  int fd;
  for (;;) {
    std::memset(&p, 0, sizeof(p));
    p.flags = extra;
    if (r->sqpoll) {
      p.flags |= IORING_SETUP_SQPOLL;
      p.sq_thread_idle = kSqThreadIdleMs;
    }
    fd = SysSetup(entries, &p);
    if (fd == -EINVAL && extra != 0) {
      extra = 0;
      continue;
    }
    break;
  }
  *syscallName = "io_uring_setup";
  if (fd < 0) return -fd;
  r->ringFd = fd;
  // Before 5.11 SQPOLL only took registered files; we pass plain fds.
  if (r->sqpoll && (p.features & IORING_FEAT_SQPOLL_NONFIXED) == 0) return EINVAL;

  r->sqMapLen = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  r->cqMapLen = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) r->sqMapLen = r->cqMapLen = std::max(r->sqMapLen, r->cqMapLen);
  *syscallName = "mmap";
  r->sqMap = ::mmap(nullptr, r->sqMapLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQ_RING);
  if (r->sqMap == MAP_FAILED) return errno;
  if (single) {
    r->cqMap = r->sqMap;
  } else {
    r->cqMap = ::mmap(nullptr, r->cqMapLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                      IORING_OFF_CQ_RING);
    if (r->cqMap == MAP_FAILED) return errno;
  }
  r->sqesLen = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = ::mmap(nullptr, r->sqesLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                      IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return errno;
  r->sqes = static_cast<io_uring_sqe*>(sqes);

  uint8_t* sq = static_cast<uint8_t*>(r->sqMap);
  r->sqHead = reinterpret_cast<uint32_t*>(sq + p.sq_off.head);
  r->sqTail = reinterpret_cast<uint32_t*>(sq + p.sq_off.tail);
  r->sqFlags = reinterpret_cast<uint32_t*>(sq + p.sq_off.flags);
  r->sqMask = *reinterpret_cast<uint32_t*>(sq + p.sq_off.ring_mask);
  r->sqEntries = *reinterpret_cast<uint32_t*>(sq + p.sq_off.ring_entries);
  uint32_t* array = reinterpret_cast<uint32_t*>(sq + p.sq_off.array);
  for (uint32_t i = 0; i < r->sqEntries; i++) array[i] = i;
  r->sqLocal = *r->sqTail;

  uint8_t* cq = static_cast<uint8_t*>(r->cqMap);
  r->cqHead = reinterpret_cast<uint32_t*>(cq + p.cq_off.head);
  r->cqTail = reinterpret_cast<uint32_t*>(cq + p.cq_off.tail);
  r->cqMask = *reinterpret_cast<uint32_t*>(cq + p.cq_off.ring_mask);
  r->cqEntries = *reinterpret_cast<uint32_t*>(cq + p.cq_off.ring_entries);
  r->cqes = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);

  *syscallName = "eventfd";
  r->eventFd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->eventFd < 0) return errno;
  *syscallName = "io_uring_register";
  int rc = SysRegister(fd, IORING_REGISTER_EVENTFD, &r->eventFd, 1);
  if (rc < 0) return -rc;

  r->reqs.resize(r->cqEntries);
  r->freeTags.reserve(r->cqEntries);
  for (uint32_t t = r->cqEntries; t > 0; t--) r->freeTags.push_back(t - 1);
  return 0;
}

}  // namespace

// ---- the JS object -------------------------------------------------------------

class UringWrap : public Napi::ObjectWrap<UringWrap> {
 public:
  static Napi::Function Define(Napi::Env env, UringSet* set) {
    return DefineClass(env, "Uring",
                       {InstanceMethod<&UringWrap::Readv>("readv"),
                        InstanceMethod<&UringWrap::Writev>("writev"),
                        InstanceMethod<&UringWrap::Fdatasync>("fdatasync"),
                        InstanceMethod<&UringWrap::SubmitJs>("submit"),
                        InstanceMethod<&UringWrap::Close>("close"),
                        InstanceAccessor<&UringWrap::Pending>("pending"),
                        InstanceAccessor<&UringWrap::QueuedJs>("queued"),
                        InstanceAccessor<&UringWrap::Entries>("entries"),
                        InstanceAccessor<&UringWrap::Capacity>("capacity")},
                       set);
  }

  // new Uring(entries, onComplete, options?)
  explicit UringWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UringWrap>(info) {
    Napi::Env env = info.Env();
    UringSet* set = static_cast<UringSet*>(info.Data());
    uint64_t entries = 0;
    napi_value cb = nullptr;
    if (!ArgUint(info, 0, "entries", kMaxEntries, &entries)) return;
    if (entries == 0) {
      ThrowRangeError(env, "The value of \"entries\" is out of range. It must be >= 1 and <= " +
                               std::to_string(kMaxEntries) + ". Received 0");
      return;
    }
    if (!ArgFunction(info, 1, "onComplete", &cb)) return;
    bool sqpoll = false;
    if (!info[2].IsUndefined()) {
      if (!info[2].IsObject() || info[2].IsFunction()) {
        ThrowTypeError(env, "ERR_INVALID_ARG_TYPE", "The \"options\" argument must be of type object");
        return;
      }
      Napi::Value v = info[2].As<Napi::Object>().Get("sqpoll");  // may run a getter
      if (env.IsExceptionPending()) return;
      if (!v.IsUndefined()) {
        if (!v.IsBoolean()) {
          ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                         "The \"options.sqpoll\" property must be of type boolean");
          return;
        }
        sqpoll = v.As<Napi::Boolean>().Value();
      }
    }

    Ring* r = new Ring();
    r->set = set;
    r->sqpoll = sqpoll;
    const char* sc = nullptr;
    int err = SetUpRing(r, static_cast<uint32_t>(entries), &sc);
    if (err == 0) {
      int rc = uv_poll_init(set->loop, &r->poll, r->eventFd);
      if (rc < 0) {
        err = -rc;
        sc = "uv_poll_init";
      }
    }
    if (err != 0) {
      UnmapRing(r);
      if (r->eventFd >= 0) ::close(r->eventFd);
      delete r;
      ThrowSystemError(env, err, sc);
      return;
    }
    r->pollInit = true;
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE, OnPoll);
    UpdateRef(r);  // idle: does not keep the process alive

    // The result arrays, allocated once; EnsureResultArrays keeps them valid.
    napi_value slotsAb, resultsAb, slots, results;
    void* data = nullptr;
    napi_create_arraybuffer(env, size_t{r->cqEntries} * 4, &data, &slotsAb);
    r->slotsData = static_cast<uint32_t*>(data);
    napi_create_arraybuffer(env, size_t{r->cqEntries} * 4, &data, &resultsAb);
    r->resultsData = static_cast<int32_t*>(data);
    napi_create_typedarray(env, napi_uint32_array, r->cqEntries, slotsAb, 0, &slots);
    napi_create_typedarray(env, napi_int32_array, r->cqEntries, resultsAb, 0, &results);
    napi_create_reference(env, slots, 1, &r->slotsRef);
    napi_create_reference(env, results, 1, &r->resultsRef);
    napi_create_reference(env, cb, 1, &r->onComplete);

    r->next = set->head;
    if (set->head != nullptr) set->head->prev = r;
    set->head = r;
    r->wrap = this;
    ring_ = r;
    sqEntries_ = r->sqEntries;
    cqEntries_ = r->cqEntries;
    // Like an open Node handle: never collected while open, so the callback
    // and the ring live until close().
    Ref();
  }

  ~UringWrap() override {
    if (ring_ != nullptr) CloseRing(ring_);
  }

  // Env teardown: the set closes the ring itself.
  void Forget() { ring_ = nullptr; }

 private:
  Ring* OpenRing(Napi::Env env) {
    if (ring_ == nullptr || ring_->state != RingState::kOpen) {
      ThrowTypeError(env, "ERR_INVALID_STATE", "Uring is closed");
      return nullptr;
    }
    return ring_;
  }

  Napi::Value Queue(const Napi::CallbackInfo& info, Op op) {
    Napi::Env env = info.Env();
    if (OpenRing(env) == nullptr) return env.Undefined();
    const char* sc = OpName(op);
    uint64_t slot = 0, position = 0;
    int fd = -1;
    bool dsync = false;
    if (!ArgUint(info, 0, "slot", UINT32_MAX, &slot)) return env.Undefined();
    if (!ArgFd(info, 1, "fd", &fd)) return env.Undefined();
    if (op != Op::kSync) {
      if (!ArgUint(info, 3, "position", kMaxSafeInteger, &position)) return env.Undefined();
      if (op == Op::kWrite && !ArgBool(info, 4, "dsync", &dsync)) return env.Undefined();
    }
    ScratchLease lease(&ring_->scratch, &ring_->scratchBusy);
    IovScratch& s = lease.get();
    if (op != Op::kSync) {
      if (!DecodeIov(env, s, info[2], sc)) return env.Undefined();
      if (!CheckEnd(env, position, s)) return env.Undefined();
    } else {
      s.ptrs.clear();
      s.lens.clear();
      s.buffers.clear();
    }
    // Decoding may have run JS (index getters) that closed the ring.
    Ring* r = OpenRing(env);
    if (r == nullptr) return env.Undefined();
    if (r->freeTags.empty() || SqFree(r) == 0) return Napi::Boolean::New(env, false);

    uint32_t tag = r->freeTags.back();
    r->freeTags.pop_back();
    Req& q = r->reqs[tag];
    q.busy = true;
    q.slot = static_cast<uint32_t>(slot);
    FillIovecs(s, &q.iov);
    KeepViewsAlive(env, s, &q.held, &q.bufRefs);

    io_uring_sqe* e = &r->sqes[r->sqLocal & r->sqMask];
    std::memset(e, 0, sizeof(*e));
    e->fd = fd;
    e->user_data = tag;
    switch (op) {
      case Op::kRead:
      case Op::kWrite:
        e->opcode = op == Op::kRead ? IORING_OP_READV : IORING_OP_WRITEV;
        e->off = position;
        e->addr = reinterpret_cast<uintptr_t>(q.iov.data());
        e->len = static_cast<uint32_t>(q.iov.size());
        e->rw_flags = dsync ? RWF_DSYNC : 0;  // per-write FUA (pwritev2 semantics)
        break;
      case Op::kSync:
        e->opcode = IORING_OP_FSYNC;
        e->fsync_flags = IORING_FSYNC_DATASYNC;
        break;
    }
    r->sqLocal++;
    r->inflight++;
    UpdateRef(r);
    return Napi::Boolean::New(env, true);
  }

  // readv(slot, fd, iov, position)
  Napi::Value Readv(const Napi::CallbackInfo& info) { return Queue(info, Op::kRead); }
  // writev(slot, fd, iov, position, dsync)
  Napi::Value Writev(const Napi::CallbackInfo& info) { return Queue(info, Op::kWrite); }
  // fdatasync(slot, fd)
  Napi::Value Fdatasync(const Napi::CallbackInfo& info) { return Queue(info, Op::kSync); }

  Napi::Value SubmitJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Ring* r = OpenRing(env);
    if (r == nullptr) return env.Undefined();
    int n = Submit(r);
    if (n < 0) {
      ThrowSystemError(env, -n, "io_uring_enter");
      return env.Undefined();
    }
    return Napi::Number::New(env, n);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (ring_ == nullptr) return info.Env().Undefined();  // idempotent
    Ring* r = ring_;
    ring_ = nullptr;
    CloseRing(r);
    Unref();  // collectable from now on
    return info.Env().Undefined();
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    // Once closed the ring may still be draining; JS hears nothing of it.
    return Napi::Number::New(info.Env(), ring_ == nullptr ? 0 : ring_->inflight);
  }

  Napi::Value QueuedJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ring_ == nullptr ? 0 : Queued(ring_));
  }

  Napi::Value Entries(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), sqEntries_);
  }

  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cqEntries_);
  }

  Ring* ring_ = nullptr;
  uint32_t sqEntries_ = 0;  // kept for the getters after close()
  uint32_t cqEntries_ = 0;
};

UringSet* CreateUringSet(Napi::Env env, uv_loop_t* loop) {
  UringSet* set = new UringSet();
  set->env = env;
  set->loop = loop;
  napi_async_init(env, Napi::Object::New(env), Napi::String::New(env, "VhostScsiUring"),
                  &set->asyncContext);
  return set;
}

void RegisterUring(Napi::Env env, Napi::Object exports, UringSet* set) {
  set->ctor = Napi::Persistent(UringWrap::Define(env, set));
  exports.Set("createUring",
              Napi::Function::New(
                  env,
                  [](const Napi::CallbackInfo& info) -> Napi::Value {
                    UringSet* s = static_cast<UringSet*>(info.Data());
                    return s->ctor.New({info[0], info[1], info[2]});
                  },
                  "createUring", set));
}

void DestroyUringSet(UringSet* set) {
  while (set->head != nullptr) {
    Ring* r = set->head;
    if (r->wrap != nullptr) r->wrap->Forget();
    r->wrap = nullptr;
    DeleteJsRefs(r);
    DropUnconsumed(r);
    if (r->inflight > 0) {
      QueueCancel(r);
      WaitAll(r);
    }
    // Only if the ring itself failed under us: keep the request table (and
    // its holds) forever rather than free what the kernel may still use.
    r->leaked = r->inflight > 0;
    DestroyRing(r);
  }
  set->ctor.Reset();
  if (set->asyncContext != nullptr) napi_async_destroy(set->env, set->asyncContext);
  delete set;
}

}  // namespace vhs
