// Unix stream sockets and SCM_RIGHTS: the vhost-user transport (vhost-user.rst
// "Communication": a unix domain socket, fds passed as ancillary data).
// Every fd we create is O_NONBLOCK|O_CLOEXEC, and every send/receive uses
// MSG_DONTWAIT as well, so an fd inherited in blocking mode (e.g. --fd from a
// supervisor) still cannot stall the event loop.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "addon.h"
#include "common.h"

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04  // Linux >= 6.5; an fd we never ask for (see RecvMsg)
#endif

namespace vhs {

namespace {

// Control buffer for one recvmsg/sendmsg: room for SCM_MAX_FD descriptors,
// aligned for struct cmsghdr.
union FdControl {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * kScmMaxFd)];
};

void CloseQuietly(int fd) {
  // Linux always releases the fd, even when close() reports EINTR.
  (void)::close(fd);
}

// Fill a sockaddr_un for a filesystem path. Abstract names (leading NUL) are
// impossible: ArgCString rejects NUL and empty strings, and abstract sockets
// have no permission check at all (reliability.md §5.1).
bool MakeAddress(Napi::Env env, const std::string& path, const char* syscall,
                 sockaddr_un* addr, socklen_t* len) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  // Keep a terminating NUL inside sun_path so every tool (ss, lsof, the
  // kernel's own /proc/net/unix) sees the same name we do.
  if (path.size() >= sizeof(addr->sun_path)) {
    ThrowSystemError(env, ENAMETOOLONG, syscall, path.c_str());
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// chmod the freshly bound socket to 0600 without following a symlink that
// might have replaced it (glibc implements AT_SYMLINK_NOFOLLOW through an
// O_PATH fd). Returns 0 or an errno.
int ChmodSocket0600(const char* path) {
  if (::fchmodat(AT_FDCWD, path, 0600, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  int err = errno;
  if (err != EOPNOTSUPP && err != ENOTSUP) return err;
  // EOPNOTSUPP means either "that is a symlink" (refuse) or "no /proc to
  // emulate NOFOLLOW with" (fall back to chmod of what is still our socket).
  struct stat st;
  if (::lstat(path, &st) < 0) return errno;
  if (!S_ISSOCK(st.st_mode)) return ELOOP;
  return ::chmod(path, 0600) == 0 ? 0 : errno;
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint64_t backlog = 0;
  if (!ArgCString(info, 0, "path", false, &path)) return env.Undefined();
  if (!ArgUint(info, 1, "backlog", INT_MAX, &backlog)) return env.Undefined();
  sockaddr_un addr;
  socklen_t addrLen = 0;
  if (!MakeAddress(env, path, "bind", &addr, &addrLen)) return env.Undefined();

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowSystemError(env, errno, "socket");
    return env.Undefined();
  }
  // The socket inode takes its mode from the umask at bind() time, so with
  // 0177 it never exists with looser bits than 0600 (libvirt CVE-2019-10132,
  // reliability.md §5.1). umask is process-wide: a file created concurrently
  // by another thread inherits a stricter mask for these few instructions,
  // never a looser one.
  mode_t oldMask = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen);
  int err = errno;
  ::umask(oldMask);
  if (rc < 0) {
    // EADDRINUSE when the path exists: whether it is a stale socket of ours
    // is the caller's decision, never ours.
    CloseQuietly(fd);
    ThrowSystemError(env, err, "bind", path.c_str());
    return env.Undefined();
  }
  const char* failedCall = nullptr;
  if ((err = ChmodSocket0600(path.c_str())) != 0) {
    failedCall = "chmod";
  } else if (::listen(fd, static_cast<int>(backlog)) < 0) {
    err = errno;
    failedCall = "listen";
  }
  if (failedCall != nullptr) {
    // We created this path a moment ago; don't leave it behind.
    ::unlink(path.c_str());
    CloseQuietly(fd);
    ThrowSystemError(env, err, failedCall, path.c_str());
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "listenFd", &fd)) return env.Undefined();
  for (;;) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) return Napi::Number::New(env, c);
    // ECONNABORTED: the peer gave up while queued; look at the next one.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowSystemError(env, errno, "accept");
    return env.Undefined();
  }
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgCString(info, 0, "path", false, &path)) return env.Undefined();
  sockaddr_un addr;
  socklen_t addrLen = 0;
  if (!MakeAddress(env, path, "connect", &addr, &addrLen)) return env.Undefined();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowSystemError(env, errno, "socket");
    return env.Undefined();
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) < 0) {
    int err = errno;
    if (err == EINTR) {
      // An interrupted blocking connect() continues in the background; wait
      // for it and collect its result (connect(2), EINTR).
      pollfd p{fd, POLLOUT, 0};
      while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
      socklen_t l = sizeof(err);
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    }
    if (err != 0) {
      CloseQuietly(fd);
      ThrowSystemError(env, err, "connect", path.c_str());
      return env.Undefined();
    }
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    int err = errno;
    CloseQuietly(fd);
    ThrowSystemError(env, err, "fcntl");
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    ThrowSystemError(env, errno, "socketpair");
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(uint32_t{0}, Napi::Number::New(env, sv[0]));
  a.Set(uint32_t{1}, Napi::Number::New(env, sv[1]));
  return a;
}

Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  ucred cred;
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    ThrowSystemError(env, errno, "getsockopt");
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  if (!ArgByteRange(info, 1, &data, &length)) return env.Undefined();
  if (length == 0) {
    // A zero-length read returns 0, which would be indistinguishable from EOF.
    ThrowRangeError(env, "The value of \"length\" is out of range. It must be >= 1");
    return env.Undefined();
  }
  if (!info[4].IsArray()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                   "The \"fdsOut\" argument must be an instance of Array");
    return env.Undefined();
  }
  Napi::Array fdsOut = info[4].As<Napi::Array>();

  FdControl ctl;
  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof(ctl.buf);
  ssize_t n;
  do {
    // MSG_CMSG_CLOEXEC: received fds must not leak into children we spawn
    // (reliability.md V1.6).
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowSystemError(env, errno, "recvmsg");
    return env.Undefined();
  }

  int fds[kScmMaxFd];
  size_t nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type != SCM_RIGHTS && c->cmsg_type != SCM_PIDFD) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t k = 0; k < count; k++) {
      int rfd;
      std::memcpy(&rfd, p + k * sizeof(int), sizeof(int));  // CMSG_DATA may be unaligned
      if (c->cmsg_type == SCM_PIDFD || nfds == kScmMaxFd) {
        // A pidfd we never asked for (SO_PASSPIDFD is off), or more fds than
        // fit our buffer (impossible given the buffer size): never leak it.
        CloseQuietly(rfd);
      } else {
        fds[nfds++] = rfd;
      }
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // The kernel dropped descriptors that did not fit; the message is
    // incomplete, so nothing received here may be used (reliability.md V1.1).
    for (size_t k = 0; k < nfds; k++) CloseQuietly(fds[k]);
    MakeSystemErrorWithCode(env, "ECTRUNC", EMSGSIZE, "recvmsg").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Hand every fd to the caller. If the array refuses an element (frozen,
  // a throwing setter), close that fd and all after it, then throw: each fd
  // ends up owned by the array or closed, never both, never neither.
  uint32_t base = fdsOut.Length();
  for (size_t k = 0; k < nfds; k++) {
    uint32_t idx = base + static_cast<uint32_t>(k);
    bool ok = fdsOut.Set(idx, Napi::Number::New(env, fds[k]));
    if (ok && !env.IsExceptionPending()) {
      Napi::Value back = fdsOut.Get(idx);
      ok = !env.IsExceptionPending() && back.IsNumber() &&
           back.As<Napi::Number>().Int32Value() == fds[k];
    }
    if (!ok) {
      for (size_t j = k; j < nfds; j++) CloseQuietly(fds[j]);
      if (!env.IsExceptionPending()) {
        ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                       "The \"fdsOut\" array did not accept the received descriptors");
      }
      return env.Undefined();
    }
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();

  // The fds array first: reading its elements may run JS (getters), which
  // could detach or shrink buf; the buffer pointer is taken afterwards, with
  // no JS running between that and the syscall.
  FdControl ctl;
  size_t nfds = 0;
  if (!info[4].IsUndefined()) {
    if (!info[4].IsArray()) {
      ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                     "The \"fds\" argument must be an instance of Array");
      return env.Undefined();
    }
    Napi::Array arr = info[4].As<Napi::Array>();
    uint32_t count = arr.Length();
    if (count > kScmMaxFd) {
      ThrowRangeError(env, "The length of \"fds\" is out of range. It must be <= 253 (SCM_MAX_FD)");
      return env.Undefined();
    }
    int* out = nullptr;
    if (count > 0) {
      cmsghdr* c = reinterpret_cast<cmsghdr*>(ctl.buf);
      std::memset(ctl.buf, 0, sizeof(ctl.buf));
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * count);
      out = reinterpret_cast<int*>(CMSG_DATA(c));
    }
    for (uint32_t k = 0; k < count; k++) {
      Napi::Value v = arr.Get(k);
      if (env.IsExceptionPending()) return env.Undefined();
      uint64_t u = 0;
      if (!ArgUintValue(env, v, "fds[i]", INT_MAX, &u)) return env.Undefined();
      int f = static_cast<int>(u);
      std::memcpy(out + k, &f, sizeof(int));
    }
    nfds = count;
  }
  if (!ArgByteRange(info, 1, &data, &length)) return env.Undefined();
  if (nfds > 0 && length == 0) {
    // On a stream socket the kernel attaches SCM_RIGHTS to data bytes; with
    // no bytes nothing is sent and the fds would silently not arrive.
    ThrowRangeError(env, "The value of \"length\" is out of range. It must be >= 1 when fds are passed");
    return env.Undefined();
  }

  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    // MSG_NOSIGNAL: a vanished peer is EPIPE for the caller, not a SIGPIPE
    // that kills the whole backend.
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    ThrowSystemError(env, errno, "sendmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  // On Linux the descriptor is released even when close() fails with EINTR;
  // retrying could close an fd another thread just received.
  if (::close(fd) < 0 && errno != EINTR) ThrowSystemError(env, errno, "close");
  return env.Undefined();
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = -1;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) {
    ThrowSystemError(env, errno, "fcntl");
    return env.Undefined();
  }
  return Napi::Number::New(env, d);
}

}  // namespace

void RegisterSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg, "recvmsg"));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg, "sendmsg"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
}

}  // namespace vhs
