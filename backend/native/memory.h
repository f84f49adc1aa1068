// The process-wide registry of mmap()ed regions (guest memory, inflight
// regions). A mapping is unmapped exactly once, when both hold:
//   - JS gave it up: munmap() detached its ArrayBuffer, or the ArrayBuffer's
//     finalizer ran; and
//   - no asynchronous I/O (io.cc) still has iovecs pointing into it.
// That is how "munmap while a preadv into that region is in flight" stays
// safe without blocking the event loop (cf. SPDK #3132, reliability.md C13).
//
// The registry is global rather than per-env because the memory is
// process-wide and ArrayBuffer finalizers may run after per-env state is
// gone. All access is under one mutex; only JS threads touch it.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vhs {

struct Mapping;

// Under one lock: for each [ptrs[k], ptrs[k] + lens[k]) that lies inside a
// live mapping, take an I/O hold on that mapping and append it to held (once
// per mapping); (*inMapping)[k] tells whether range k is covered that way
// (otherwise the caller must keep its ArrayBuffer alive itself).
void HoldMappingsForIo(const std::vector<const uint8_t*>& ptrs,
                       const std::vector<size_t>& lens, std::vector<bool>* inMapping,
                       std::vector<Mapping*>* held);

// Drop the holds taken above; performs any unmap that was deferred on them.
void ReleaseMappingsFromIo(std::vector<Mapping*>* held);

void RegisterMemory(Napi::Env env, Napi::Object exports);

}  // namespace vhs
