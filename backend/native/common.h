// Shared helpers of the vhost-scsi-ts native addon: Node-style errors and
// fail-closed argument decoding. Everything here runs on the JS thread.
//
// Conventions (see backend/binding.d.ts):
//  - OS failures become "system errors": an Error whose message is
//    "<syscall> <CODE>", with .code (errno name), .errno (-errno, as Node does)
//    and .syscall.
//  - Bad arguments become TypeError (wrong type, code ERR_INVALID_ARG_TYPE or
//    ERR_INVALID_ARG_VALUE) or RangeError (ERR_OUT_OF_RANGE). Values are never
//    coerced: a string where a number is expected is an error, not a
//    conversion.
//  - Every Arg* helper returns false with a JS exception pending; callers
//    return immediately.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace vhs {

// 2^53 - 1: the largest integer a JS Number carries exactly.
constexpr uint64_t kMaxSafeInteger = (uint64_t{1} << 53) - 1;

// Linux SCM_MAX_FD (include/net/scm.h): the kernel refuses more fds than this
// in one SCM_RIGHTS message, so it is both our send limit and the size of the
// receive control buffer.
constexpr size_t kScmMaxFd = 253;

// Linux UIO_MAXIOV (IOV_MAX): the kernel's limit on iovecs per preadv/pwritev.
constexpr size_t kMaxIovecs = 1024;

// ---- errors ----------------------------------------------------------------

// errno -> "EBADF" etc.
const char* ErrnoName(int err);

// Error{message: "<syscall> <code>[ <path>]", code, errno: -err, syscall[, path]}
Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const char* path = nullptr);
// Same, with a code that is not an errno name (e.g. ECTRUNC).
Napi::Error MakeSystemErrorWithCode(Napi::Env env, const char* code, int err,
                                    const char* syscall);
void ThrowSystemError(Napi::Env env, int err, const char* syscall,
                      const char* path = nullptr);

void ThrowTypeError(Napi::Env env, const char* code, const std::string& msg);
void ThrowRangeError(Napi::Env env, const std::string& msg);

// Re-raise an exception that escaped a JS callback invoked from a libuv
// callback (no JS frame below us to catch it): route it to
// process.on('uncaughtException'), as Node does for its own handles.
void RethrowAsUncaught(Napi::Env env);

// ---- argument decoding -------------------------------------------------------

// A file descriptor: an integer Number in [0, INT32_MAX].
bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name, int* out);

// An integer Number in [0, max] (max <= kMaxSafeInteger).
bool ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name,
             uint64_t max, uint64_t* out);
bool ArgUintValue(Napi::Env env, napi_value v, const char* name, uint64_t max,
                  uint64_t* out);

// A BigInt in [0, max].
bool ArgBigUint(const Napi::CallbackInfo& info, size_t i, const char* name,
                uint64_t max, uint64_t* out);

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name, bool* out);

bool ArgFunction(const Napi::CallbackInfo& info, size_t i, const char* name,
                 napi_value* out);

// A string without NUL characters (a NUL would silently truncate a path or
// name at the C boundary). Empty strings are rejected when !allowEmpty.
bool ArgCString(const Napi::CallbackInfo& info, size_t i, const char* name,
                bool allowEmpty, std::string* out);

// A Uint8Array (Buffer included); returns its data pointer and byte length.
// A detached view yields (nullptr, 0).
bool Uint8ArrayValue(Napi::Env env, napi_value v, const char* name,
                     uint8_t** data, size_t* length, napi_value* arrayBuffer);

// buf[offset, offset + length) for a (buf, offset, length) triple at
// info[i..i+2], all checked against the view's current length.
bool ArgByteRange(const Napi::CallbackInfo& info, size_t i, uint8_t** data,
                  size_t* length);

}  // namespace vhs
