#include "vhost_user.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common.h"

namespace lg {

namespace {

// "Header": u32 request, u32 flags, u32 size.
constexpr uint32_t kHeaderSize = 12;
constexpr uint32_t VHOST_USER_VERSION = 0x1;
constexpr uint32_t VHOST_USER_VERSION_MASK = 0x3;
constexpr uint32_t VHOST_USER_REPLY_MASK = 0x4;
constexpr uint32_t VHOST_USER_NEED_REPLY_MASK = 0x8;
// "Virtio device config space": offset, size, flags before the bytes; at most 256 bytes.
constexpr uint32_t kConfigHeaderSize = 12;
constexpr uint32_t kMaxConfigSize = 256;
// The back-end must answer within this long (it is also the I/O watchdog, README.md).
constexpr int kReplyTimeoutMs = 10000;
// The largest reply we accept: a config space reply.
constexpr uint32_t kMaxReply = kConfigHeaderSize + kMaxConfigSize;

}  // namespace

const char* vhost_user_request_name(uint32_t request) {
  switch (request) {
    case VHOST_USER_GET_FEATURES: return "VHOST_USER_GET_FEATURES";
    case VHOST_USER_SET_FEATURES: return "VHOST_USER_SET_FEATURES";
    case VHOST_USER_SET_OWNER: return "VHOST_USER_SET_OWNER";
    case VHOST_USER_SET_MEM_TABLE: return "VHOST_USER_SET_MEM_TABLE";
    case VHOST_USER_SET_VRING_NUM: return "VHOST_USER_SET_VRING_NUM";
    case VHOST_USER_SET_VRING_ADDR: return "VHOST_USER_SET_VRING_ADDR";
    case VHOST_USER_SET_VRING_BASE: return "VHOST_USER_SET_VRING_BASE";
    case VHOST_USER_GET_VRING_BASE: return "VHOST_USER_GET_VRING_BASE";
    case VHOST_USER_SET_VRING_KICK: return "VHOST_USER_SET_VRING_KICK";
    case VHOST_USER_SET_VRING_CALL: return "VHOST_USER_SET_VRING_CALL";
    case VHOST_USER_GET_PROTOCOL_FEATURES: return "VHOST_USER_GET_PROTOCOL_FEATURES";
    case VHOST_USER_SET_PROTOCOL_FEATURES: return "VHOST_USER_SET_PROTOCOL_FEATURES";
    case VHOST_USER_GET_QUEUE_NUM: return "VHOST_USER_GET_QUEUE_NUM";
    case VHOST_USER_SET_VRING_ENABLE: return "VHOST_USER_SET_VRING_ENABLE";
    case VHOST_USER_GET_CONFIG: return "VHOST_USER_GET_CONFIG";
    default: return "unknown request";
  }
}

VhostUserFrontend::VhostUserFrontend(const std::string& path) : path_(path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    fatal(kExitUsage, "--socket %s: path longer than %zu bytes", path.c_str(), sizeof addr.sun_path - 1);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fatal(kExitFailure, "socket(AF_UNIX): %s", strerror(errno));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    const char* hint = (e == ENOENT || e == ECONNREFUSED) ? " (is the backend running and listening there?)" : "";
    fatal(kExitFailure, "cannot connect to %s: %s%s", path.c_str(), strerror(e), hint);
  }
}

VhostUserFrontend::~VhostUserFrontend() { close(); }

void VhostUserFrontend::close() {
  if (fd_ >= 0) {
    // shutdown first: the back-end sees EOF now even if a forked child kept a copy.
    shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    fd_ = -1;
  }
}

void VhostUserFrontend::send(uint32_t request, const void* payload, uint32_t size, const int* fds, int nfds,
                             bool need_reply) {
  uint8_t header[kHeaderSize];
  put_le32(header, request);
  put_le32(header + 4, VHOST_USER_VERSION | (need_reply ? VHOST_USER_NEED_REPLY_MASK : 0));
  put_le32(header + 8, size);
  iovec iov[2] = {{header, kHeaderSize}, {const_cast<void*>(payload), size}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = size > 0 ? 2 : 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  if (nfds > 0) {
    // The fds travel with the first byte of the message ("Communication").
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<size_t>(nfds));
  }
  size_t total = kHeaderSize + size;
  size_t sent = 0;
  while (sent < total) {
    ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      fatal(kExitFailure, "sending %s: %s%s", vhost_user_request_name(request), strerror(e),
            e == EPIPE || e == ECONNRESET ? " (the backend closed the connection)" : "");
    }
    sent += static_cast<size_t>(n);
    // A short send: continue from where it stopped, without the fds (already delivered).
    msg.msg_control = nullptr;
    msg.msg_controllen = 0;
    size_t skip = static_cast<size_t>(n);
    while (msg.msg_iovlen > 0 && skip >= msg.msg_iov[0].iov_len) {
      skip -= msg.msg_iov[0].iov_len;
      ++msg.msg_iov;
      --msg.msg_iovlen;
    }
    if (msg.msg_iovlen > 0) {
      msg.msg_iov[0].iov_base = static_cast<uint8_t*>(msg.msg_iov[0].iov_base) + skip;
      msg.msg_iov[0].iov_len -= skip;
    }
  }
}

void VhostUserFrontend::read_exact(uint32_t request, void* buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, kReplyTimeoutMs);
    if (r < 0) {
      if (errno == EINTR) continue;
      fatal(kExitFailure, "waiting for the reply to %s: %s", vhost_user_request_name(request), strerror(errno));
    }
    if (r == 0) {
      fatal(kExitTimeout, "the backend did not answer %s within %d s", vhost_user_request_name(request),
            kReplyTimeoutMs / 1000);
    }
    iovec iov{static_cast<uint8_t*>(buf) + got, len - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      fatal(kExitFailure, "reading the reply to %s: %s", vhost_user_request_name(request), strerror(errno));
    }
    // No reply we ask for carries fds: close any, so none leaks.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          ::close(fd);
        }
      }
    }
    if (n == 0) {
      fatal(kExitFailure, "the backend closed the connection instead of answering %s (see the backend's log)",
            vhost_user_request_name(request));
    }
    got += static_cast<size_t>(n);
  }
}

uint32_t VhostUserFrontend::receive(uint32_t request, void* payload, uint32_t capacity) {
  uint8_t header[kHeaderSize];
  read_exact(request, header, kHeaderSize);
  uint32_t code = get_le32(header);
  uint32_t flags = get_le32(header + 4);
  uint32_t size = get_le32(header + 8);
  const char* name = vhost_user_request_name(request);
  if (code != request) {
    fatal(kExitFailure, "expected the reply to %s, got a message with request code %u", name, code);
  }
  if ((flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION || !(flags & VHOST_USER_REPLY_MASK)) {
    fatal(kExitFailure, "reply to %s has flags 0x%x (want version 1 and the reply bit)", name, flags);
  }
  if (size > capacity || size > kMaxReply) {
    fatal(kExitFailure, "reply to %s has a %u-byte payload, at most %u expected", name, size, capacity);
  }
  if (size > 0) read_exact(request, payload, size);
  return size;
}

uint64_t VhostUserFrontend::request_u64(uint32_t request) {
  send(request, nullptr, 0, nullptr, 0, false);
  uint8_t p[8];
  uint32_t n = receive(request, p, sizeof p);
  if (n != 8) fatal(kExitFailure, "reply to %s: %u-byte payload, expected 8", vhost_user_request_name(request), n);
  return get_le64(p);
}

void VhostUserFrontend::command(uint32_t request, const void* payload, uint32_t size, const int* fds, int nfds,
                                const char* what) {
  send(request, payload, size, fds, nfds, reply_ack_);
  if (!reply_ack_) return;
  // "REPLY_ACK": u64 zero on success, non-zero on failure.
  uint8_t p[8];
  uint32_t n = receive(request, p, sizeof p);
  if (n != 8) fatal(kExitFailure, "ack of %s: %u-byte payload, expected 8", vhost_user_request_name(request), n);
  uint64_t v = get_le64(p);
  if (v != 0) {
    fatal(kExitFailure, "the backend refused %s%s%s (ack %llu; see the backend's log)", vhost_user_request_name(request),
          what[0] ? " " : "", what, static_cast<unsigned long long>(v));
  }
}

uint64_t VhostUserFrontend::get_features() { return request_u64(VHOST_USER_GET_FEATURES); }

void VhostUserFrontend::set_features(uint64_t features) {
  uint8_t p[8];
  put_le64(p, features);
  command(VHOST_USER_SET_FEATURES, p, sizeof p, nullptr, 0, "");
}

uint64_t VhostUserFrontend::get_protocol_features() { return request_u64(VHOST_USER_GET_PROTOCOL_FEATURES); }

void VhostUserFrontend::set_protocol_features(uint64_t features) {
  uint8_t p[8];
  put_le64(p, features);
  // Sent before REPLY_ACK is in force, as QEMU does.
  command(VHOST_USER_SET_PROTOCOL_FEATURES, p, sizeof p, nullptr, 0, "");
  reply_ack_ = (features >> VHOST_USER_PROTOCOL_F_REPLY_ACK) & 1;
}

uint64_t VhostUserFrontend::get_queue_num() { return request_u64(VHOST_USER_GET_QUEUE_NUM); }

void VhostUserFrontend::set_owner() { command(VHOST_USER_SET_OWNER, nullptr, 0, nullptr, 0, ""); }

bool VhostUserFrontend::get_config(uint32_t offset, uint32_t size, uint8_t* out) {
  if (size == 0 || size > kMaxConfigSize) fatal(kExitFailure, "internal: config read of %u bytes", size);
  uint8_t p[kConfigHeaderSize + kMaxConfigSize] = {};
  put_le32(p, offset);
  put_le32(p + 4, size);
  put_le32(p + 8, 0);  // flags: 0 ("VHOST_SET_CONFIG_TYPE_FRONTEND"), unused for GET
  send(VHOST_USER_GET_CONFIG, p, kConfigHeaderSize + size, nullptr, 0, false);
  uint8_t r[kConfigHeaderSize + kMaxConfigSize];
  uint32_t n = receive(VHOST_USER_GET_CONFIG, r, sizeof r);
  if (n == 0) return false;
  if (n != kConfigHeaderSize + size || get_le32(r + 4) != size) {
    fatal(kExitFailure, "reply to VHOST_USER_GET_CONFIG: %u-byte payload for a %u-byte read", n, size);
  }
  std::memcpy(out, r + kConfigHeaderSize, size);
  return true;
}

void VhostUserFrontend::set_mem_table(const VhostUserMemRegion& region, int fd) {
  // "Multiple Memory regions description": u32 nregions, u32 padding, regions[nregions].
  uint8_t p[8 + 32] = {};
  put_le32(p, 1);
  put_le64(p + 8, region.guest_phys_addr);
  put_le64(p + 16, region.memory_size);
  put_le64(p + 24, region.userspace_addr);
  put_le64(p + 32, region.mmap_offset);
  command(VHOST_USER_SET_MEM_TABLE, p, sizeof p, &fd, 1, "");
}

namespace {
void vring_state(uint8_t* p, uint32_t index, uint32_t num) {
  put_le32(p, index);
  put_le32(p + 4, num);
}
}  // namespace

void VhostUserFrontend::set_vring_num(uint32_t index, uint32_t num) {
  uint8_t p[8];
  vring_state(p, index, num);
  char what[48];
  std::snprintf(what, sizeof what, "(vring %u, size %u)", index, num);
  command(VHOST_USER_SET_VRING_NUM, p, sizeof p, nullptr, 0, what);
}

void VhostUserFrontend::set_vring_base(uint32_t index, uint32_t base) {
  uint8_t p[8];
  vring_state(p, index, base);
  char what[48];
  std::snprintf(what, sizeof what, "(vring %u, base %u)", index, base);
  command(VHOST_USER_SET_VRING_BASE, p, sizeof p, nullptr, 0, what);
}

void VhostUserFrontend::set_vring_addr(uint32_t index, uint64_t desc, uint64_t used, uint64_t avail) {
  // "Vring address description": index, flags, descriptor, used, available, log.
  uint8_t p[40] = {};
  put_le32(p, index);
  put_le32(p + 4, 0);  // no VHOST_VRING_F_LOG
  put_le64(p + 8, desc);
  put_le64(p + 16, used);
  put_le64(p + 24, avail);
  put_le64(p + 32, 0);
  char what[32];
  std::snprintf(what, sizeof what, "(vring %u)", index);
  command(VHOST_USER_SET_VRING_ADDR, p, sizeof p, nullptr, 0, what);
}

void VhostUserFrontend::set_vring_kick(uint32_t index, int fd) {
  // u64: bits 0-7 the index; bit 8 ("no fd", polling mode) stays clear, an fd always goes along.
  uint8_t p[8];
  put_le64(p, index & 0xff);
  char what[32];
  std::snprintf(what, sizeof what, "(vring %u)", index);
  command(VHOST_USER_SET_VRING_KICK, p, sizeof p, &fd, 1, what);
}

void VhostUserFrontend::set_vring_call(uint32_t index, int fd) {
  uint8_t p[8];
  put_le64(p, index & 0xff);
  char what[32];
  std::snprintf(what, sizeof what, "(vring %u)", index);
  command(VHOST_USER_SET_VRING_CALL, p, sizeof p, &fd, 1, what);
}

void VhostUserFrontend::set_vring_enable(uint32_t index, bool enable) {
  uint8_t p[8];
  vring_state(p, index, enable ? 1 : 0);
  char what[32];
  std::snprintf(what, sizeof what, "(vring %u)", index);
  command(VHOST_USER_SET_VRING_ENABLE, p, sizeof p, nullptr, 0, what);
}

uint32_t VhostUserFrontend::get_vring_base(uint32_t index) {
  uint8_t p[8];
  vring_state(p, index, 0);  // "num field is currently reserved and must be set to 0"
  send(VHOST_USER_GET_VRING_BASE, p, sizeof p, nullptr, 0, false);
  uint8_t r[8];
  uint32_t n = receive(VHOST_USER_GET_VRING_BASE, r, sizeof r);
  if (n != 8 || get_le32(r) != index) {
    fatal(kExitFailure, "reply to VHOST_USER_GET_VRING_BASE (vring %u): malformed (%u bytes, index %u)", index, n,
          n >= 4 ? get_le32(r) : 0);
  }
  return get_le32(r + 4);
}

void VhostUserFrontend::sync() {
  if (!reply_ack_) (void)get_features();
}

}  // namespace lg
