// eventfd(2): the vring kick/call/err notifiers (vhost-user.rst
// VHOST_USER_SET_VRING_KICK/CALL/ERR). The counter is a u64 in host byte
// order, read and written 8 bytes at a time.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "addon.h"
#include "common.h"

namespace vhs {

namespace {

// The fds we are handed by the frontend are normally O_NONBLOCK, but a
// hostile or buggy frontend could pass a blocking eventfd and then drain (or
// saturate) it itself, parking the event loop in read()/write() for ever.
// Its file status flags are shared with the frontend, so they are not ours
// to change; instead:
//  - reads use preadv2(RWF_NOWAIT), which eventfd honours (FMODE_NOWAIT):
//    never blocks, no race;
//  - writes (eventfd has no RWF_NOWAIT write path) on a blocking fd are
//    preceded by poll(POLLOUT, 0), which promises room for at least 1.
//    Notifications write 1, so they cannot block unless the peer refills
//    the counter between the two calls; larger values on a blocking fd
//    carry that residual risk. QEMU's eventfds are always non-blocking.
bool IsBlocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & O_NONBLOCK);  // errors surface in read/write
}

bool NotWritable(int fd) {
  pollfd p{fd, POLLOUT, 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n == 0;
}

Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t initial = 0;
  bool nonblock = false;
  if (!ArgUint(info, 0, "initial", UINT32_MAX, &initial)) return env.Undefined();
  if (!ArgBool(info, 1, "nonblock", &nonblock)) return env.Undefined();
  int fd = ::eventfd(static_cast<unsigned>(initial), EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
  if (fd < 0) {
    ThrowSystemError(env, errno, "eventfd");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  uint64_t value = 0;
  iovec iov{&value, sizeof(value)};
  ssize_t n;
  do {
    // Offset -1: the file position is not used (and eventfd has none).
    n = ::preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EOPNOTSUPP) {
    // Kernels without NOWAIT support for this fd: look before reading.
    pollfd p{fd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, 0);
    } while (r < 0 && errno == EINTR);
    if (r == 0 && IsBlocking(fd)) return Napi::Number::New(env, 0);
    do {
      n = ::read(fd, &value, sizeof(value));
    } while (n < 0 && errno == EINTR);
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    ThrowSystemError(env, errno, "read");
    return env.Undefined();
  }
  if (n != sizeof(value)) {
    // Not an eventfd (eventfd reads are all-or-nothing 8 bytes).
    ThrowSystemError(env, EINVAL, "read");
    return env.Undefined();
  }
  if (value > kMaxSafeInteger) value = kMaxSafeInteger;
  return Napi::Number::New(env, static_cast<double>(value));
}

Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint64_t value = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgUint(info, 1, "value", kMaxSafeInteger, &value)) return env.Undefined();
  // A full counter only means the other side has not consumed earlier
  // notifications yet; it will wake up anyway, so EAGAIN is success.
  if (IsBlocking(fd) && NotWritable(fd)) return env.Undefined();
  ssize_t n;
  do {
    n = ::write(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Undefined();
    ThrowSystemError(env, errno, "write");
    return env.Undefined();
  }
  if (n != sizeof(value)) ThrowSystemError(env, EINVAL, "write");
  return env.Undefined();
}

}  // namespace

void RegisterEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
}

}  // namespace vhs
