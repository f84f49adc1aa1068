// The front-end side of the vhost-user control channel (QEMU docs/interop/vhost-user.rst):
// one UNIX socket, 12-byte headers, fds over SCM_RIGHTS. Every failure is fatal with a message
// naming the request: this is a benchmark tool, a backend that misbehaves ends the run.
#pragma once

#include <cstdint>
#include <string>

namespace lg {

// "Front-end message types".
enum VhostUserRequest : uint32_t {
  VHOST_USER_GET_FEATURES = 1,
  VHOST_USER_SET_FEATURES = 2,
  VHOST_USER_SET_OWNER = 3,
  VHOST_USER_SET_MEM_TABLE = 5,
  VHOST_USER_SET_VRING_NUM = 8,
  VHOST_USER_SET_VRING_ADDR = 9,
  VHOST_USER_SET_VRING_BASE = 10,
  VHOST_USER_GET_VRING_BASE = 11,
  VHOST_USER_SET_VRING_KICK = 12,
  VHOST_USER_SET_VRING_CALL = 13,
  VHOST_USER_GET_PROTOCOL_FEATURES = 15,
  VHOST_USER_SET_PROTOCOL_FEATURES = 16,
  VHOST_USER_GET_QUEUE_NUM = 17,
  VHOST_USER_SET_VRING_ENABLE = 18,
  VHOST_USER_GET_CONFIG = 24,
};

// "Communication": GET_FEATURES bit 30 announces GET/SET_PROTOCOL_FEATURES.
constexpr unsigned VHOST_USER_F_PROTOCOL_FEATURES = 30;
// "Protocol features".
constexpr unsigned VHOST_USER_PROTOCOL_F_MQ = 0;
constexpr unsigned VHOST_USER_PROTOCOL_F_REPLY_ACK = 3;
constexpr unsigned VHOST_USER_PROTOCOL_F_CONFIG = 9;

const char* vhost_user_request_name(uint32_t request);

// "Memory region description".
struct VhostUserMemRegion {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};

class VhostUserFrontend {
 public:
  // Connects to a listening back-end or exits with a message saying why not.
  explicit VhostUserFrontend(const std::string& path);
  ~VhostUserFrontend();
  VhostUserFrontend(const VhostUserFrontend&) = delete;
  VhostUserFrontend& operator=(const VhostUserFrontend&) = delete;

  int fd() const { return fd_; }

  uint64_t get_features();
  void set_features(uint64_t features);
  uint64_t get_protocol_features();
  // Remembers whether REPLY_ACK is now in force: from then on every request without a reply
  // body of its own carries NEED_REPLY and its ack is checked.
  void set_protocol_features(uint64_t features);
  uint64_t get_queue_num();
  void set_owner();
  // Reads `size` bytes of the device config space at `offset`; false if the back-end refuses
  // (an empty reply, "vhost-user back-end uses zero length of payload to indicate an error").
  bool get_config(uint32_t offset, uint32_t size, uint8_t* out);
  void set_mem_table(const VhostUserMemRegion& region, int fd);
  void set_vring_num(uint32_t index, uint32_t num);
  void set_vring_base(uint32_t index, uint32_t base);
  void set_vring_addr(uint32_t index, uint64_t desc, uint64_t used, uint64_t avail);
  void set_vring_kick(uint32_t index, int fd);
  void set_vring_call(uint32_t index, int fd);
  void set_vring_enable(uint32_t index, bool enable);
  // Stops the ring in the back-end and returns its next avail index.
  uint32_t get_vring_base(uint32_t index);
  // Without REPLY_ACK a request's failure only shows as a closed connection later: a request
  // with a reply (GET_FEATURES) proves everything sent before it was taken.
  void sync();
  void close();

 private:
  void send(uint32_t request, const void* payload, uint32_t size, const int* fds, int nfds, bool need_reply);
  // Receives the reply to `request`; returns the payload size (at most `capacity` bytes).
  uint32_t receive(uint32_t request, void* payload, uint32_t capacity);
  void read_exact(uint32_t request, void* buf, size_t len);
  uint64_t request_u64(uint32_t request);
  // A request without a reply body: sent with NEED_REPLY under REPLY_ACK, ack checked.
  void command(uint32_t request, const void* payload, uint32_t size, const int* fds, int nfds,
               const char* what);

  int fd_ = -1;
  std::string path_;
  bool reply_ack_ = false;
};

}  // namespace lg
