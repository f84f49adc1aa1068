// vhost_loadgen: process-wide helpers (exit statuses, messages, the clock, little-endian access).
#pragma once

#include <endian.h>
#include <time.h>

#include <cstdint>
#include <cstring>

namespace lg {

// Exit statuses (README.md "Exit status").
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // setup, protocol, I/O or verify failure
constexpr int kExitUsage = 2;    // bad command line
constexpr int kExitTimeout = 3;  // the backend stopped answering

// Set by --quiet: informational stderr lines are dropped, errors never are.
extern bool g_quiet;

// "vhost_loadgen: error: ..." on stderr, then _exit(status). Usable from any thread: the
// process ends without unwinding, so no thread is left waiting on a backend that stopped.
[[noreturn]] void fatal(int status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// A command-line mistake: the message and a pointer to --help, exit 2.
[[noreturn]] void usage_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Wire fields of virtio 1.x, vhost-user and SBC are fixed-endian whatever the host is.
inline void put_le16(void* p, uint16_t v) { v = htole16(v); std::memcpy(p, &v, 2); }
inline void put_le32(void* p, uint32_t v) { v = htole32(v); std::memcpy(p, &v, 4); }
inline void put_le64(void* p, uint64_t v) { v = htole64(v); std::memcpy(p, &v, 8); }
inline uint16_t get_le16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return le16toh(v); }
inline uint32_t get_le32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return le32toh(v); }
inline uint64_t get_le64(const void* p) { uint64_t v; std::memcpy(&v, p, 8); return le64toh(v); }
inline void put_be32(void* p, uint32_t v) { v = htobe32(v); std::memcpy(p, &v, 4); }
inline void put_be64(void* p, uint64_t v) { v = htobe64(v); std::memcpy(p, &v, 8); }
inline uint32_t get_be32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return be32toh(v); }
inline uint64_t get_be64(const void* p) { uint64_t v; std::memcpy(&v, p, 8); return be64toh(v); }

inline uint64_t round_up(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

// A spin-wait hint: lets the sibling hyperthread (or the hypervisor) run while we poll.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace lg
