#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>

namespace lg {

bool g_quiet = false;

namespace {

void vmessage(const char* tag, const char* fmt, va_list ap) {
  // One buffer, one write: lines from several threads do not interleave.
  char buf[1024];
  int n = std::snprintf(buf, sizeof buf, "vhost_loadgen: %s", tag);
  if (n < 0) n = 0;
  int m = std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  size_t len = m < 0 ? static_cast<size_t>(n) : std::min(sizeof buf - 2, static_cast<size_t>(n + m));
  buf[len++] = '\n';
  std::fwrite(buf, 1, len, stderr);
}

}  // namespace

void fatal(int status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("error: ", fmt, ap);
  va_end(ap);
  std::fflush(nullptr);
  _exit(status);
}

void usage_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("", fmt, ap);
  va_end(ap);
  std::fputs("Try 'vhost_loadgen --help'.\n", stderr);
  std::fflush(nullptr);
  _exit(kExitUsage);
}

void warn(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage("warning: ", fmt, ap);
  va_end(ap);
}

void info(const char* fmt, ...) {
  if (g_quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vmessage("", fmt, ap);
  va_end(ap);
}

}  // namespace lg
