#include "common.h"

#include <uv.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace vhs {

namespace {

const char* TypeName(napi_valuetype t) {
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

napi_valuetype TypeOf(Napi::Env env, napi_value v) {
  napi_valuetype t = napi_undefined;
  if (napi_typeof(env, v, &t) != napi_ok) return napi_undefined;
  return t;
}

void ThrowWrongType(Napi::Env env, const char* name, const char* expected,
                    napi_value got) {
  ThrowTypeError(env, "ERR_INVALID_ARG_TYPE",
                 std::string("The \"") + name + "\" argument must be " + expected +
                     ". Received type " + TypeName(TypeOf(env, got)));
}

std::string FormatNumber(double d) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.16g", d);
  return buf;
}

void SetString(Napi::Object& o, const char* key, const char* value) {
  o.Set(key, Napi::String::New(o.Env(), value));
}

}  // namespace

const char* ErrnoName(int err) {
  // glibc >= 2.32 knows every errno it defines; libuv's table is the fallback.
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  return uv_err_name(-err);
}

Napi::Error MakeSystemErrorWithCode(Napi::Env env, const char* code, int err,
                                    const char* syscall) {
  std::string message = std::string(syscall) + " " + code;
  Napi::Error e = Napi::Error::New(env, message);
  Napi::Object o = e.Value();
  SetString(o, "code", code);
  o.Set("errno", Napi::Number::New(env, -static_cast<double>(err)));
  SetString(o, "syscall", syscall);
  return e;
}

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall,
                            const char* path) {
  const char* code = ErrnoName(err);
  std::string message = std::string(syscall) + " " + code;
  if (path != nullptr) message += std::string(" ") + path;
  Napi::Error e = Napi::Error::New(env, message);
  Napi::Object o = e.Value();
  SetString(o, "code", code);
  o.Set("errno", Napi::Number::New(env, -static_cast<double>(err)));
  SetString(o, "syscall", syscall);
  if (path != nullptr) SetString(o, "path", path);
  return e;
}

void ThrowSystemError(Napi::Env env, int err, const char* syscall,
                      const char* path) {
  MakeSystemError(env, err, syscall, path).ThrowAsJavaScriptException();
}

void ThrowTypeError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::TypeError e = Napi::TypeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
}

void ThrowRangeError(Napi::Env env, const std::string& msg) {
  Napi::RangeError e = Napi::RangeError::New(env, msg);
  e.Value().Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  e.ThrowAsJavaScriptException();
}

void RethrowAsUncaught(Napi::Env env) {
  if (!env.IsExceptionPending()) return;
  Napi::Error e = env.GetAndClearPendingException();
  napi_fatal_exception(env, e.Value());
}

bool ArgUintValue(Napi::Env env, napi_value v, const char* name, uint64_t max,
                  uint64_t* out) {
  if (TypeOf(env, v) != napi_number) {
    ThrowWrongType(env, name, "of type number", v);
    return false;
  }
  if (max > kMaxSafeInteger) max = kMaxSafeInteger;
  double d = 0;
  napi_get_value_double(env, v, &d);
  // NaN fails every comparison, so it lands in the error branch too.
  if (!(d >= 0) || !(d <= static_cast<double>(max)) || std::floor(d) != d) {
    ThrowRangeError(env, std::string("The value of \"") + name +
                             "\" is out of range. It must be an integer >= 0 and <= " +
                             std::to_string(max) + ". Received " +
                             FormatNumber(d));
    return false;
  }
  *out = static_cast<uint64_t>(d);
  return true;
}

bool ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name,
             uint64_t max, uint64_t* out) {
  return ArgUintValue(info.Env(), info[i], name, max, out);
}

bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name, int* out) {
  uint64_t v = 0;
  if (!ArgUint(info, i, name, INT_MAX, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool ArgBigUint(const Napi::CallbackInfo& info, size_t i, const char* name,
                uint64_t max, uint64_t* out) {
  Napi::Env env = info.Env();
  napi_value v = info[i];
  if (TypeOf(env, v) != napi_bigint) {
    ThrowWrongType(env, name, "of type bigint", v);
    return false;
  }
  uint64_t u = 0;
  bool lossless = false;
  napi_get_value_bigint_uint64(env, v, &u, &lossless);
  // lossless is false for negative values and for values >= 2^64.
  if (!lossless || u > max) {
    ThrowRangeError(env, std::string("The value of \"") + name +
                             "\" is out of range. It must be >= 0n and <= " +
                             std::to_string(max) + "n");
    return false;
  }
  *out = u;
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name, bool* out) {
  Napi::Env env = info.Env();
  if (TypeOf(env, info[i]) != napi_boolean) {
    ThrowWrongType(env, name, "of type boolean", info[i]);
    return false;
  }
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

bool ArgFunction(const Napi::CallbackInfo& info, size_t i, const char* name,
                 napi_value* out) {
  Napi::Env env = info.Env();
  if (TypeOf(env, info[i]) != napi_function) {
    ThrowWrongType(env, name, "of type function", info[i]);
    return false;
  }
  *out = info[i];
  return true;
}

bool ArgCString(const Napi::CallbackInfo& info, size_t i, const char* name,
                bool allowEmpty, std::string* out) {
  Napi::Env env = info.Env();
  if (TypeOf(env, info[i]) != napi_string) {
    ThrowWrongType(env, name, "of type string", info[i]);
    return false;
  }
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   std::string("The argument '") + name +
                       "' must be a string without null bytes");
    return false;
  }
  if (!allowEmpty && s.empty()) {
    ThrowTypeError(env, "ERR_INVALID_ARG_VALUE",
                   std::string("The argument '") + name + "' must not be empty");
    return false;
  }
  *out = std::move(s);
  return true;
}

bool Uint8ArrayValue(Napi::Env env, napi_value v, const char* name,
                     uint8_t** data, size_t* length, napi_value* arrayBuffer) {
  bool isTyped = false;
  napi_is_typedarray(env, v, &isTyped);
  napi_typedarray_type type = napi_int8_array;
  size_t len = 0;
  void* ptr = nullptr;
  napi_value ab = nullptr;
  size_t byteOffset = 0;
  if (isTyped) {
    // napi_get_typedarray_info materialises on-heap typed arrays into an
    // off-heap ArrayBuffer first, so the pointer stays valid while the
    // buffer is alive (V8 does not move ArrayBuffer backing stores).
    napi_get_typedarray_info(env, v, &type, &len, &ptr, &ab, &byteOffset);
  }
  if (!isTyped || type != napi_uint8_array) {
    ThrowWrongType(env, name, "an instance of Uint8Array", v);
    return false;
  }
  *data = len == 0 ? nullptr : static_cast<uint8_t*>(ptr);
  *length = len;
  if (arrayBuffer != nullptr) *arrayBuffer = ab;
  return true;
}

bool ArgByteRange(const Napi::CallbackInfo& info, size_t i, uint8_t** data,
                  size_t* length) {
  Napi::Env env = info.Env();
  uint8_t* base = nullptr;
  size_t size = 0;
  if (!Uint8ArrayValue(env, info[i], "buf", &base, &size, nullptr)) return false;
  uint64_t offset = 0, len = 0;
  if (!ArgUint(info, i + 1, "offset", size, &offset)) return false;
  if (!ArgUint(info, i + 2, "length", size - offset, &len)) return false;
  *data = base == nullptr ? nullptr : base + offset;
  *length = static_cast<size_t>(len);
  return true;
}

}  // namespace vhs
