// Memory ordering for the split ring, in one place (DESIGN.md: "memory ordering in one
// small file").
//
// The guest runs on other CPUs and reads and writes the rings concurrently with us.
// Ring indices are 16-bit fields that the other side polls, so every access to one
// goes through Atomics on a naturally aligned Uint16Array view (reliability.md V9.3,
// D22): a single 16-bit access that cannot tear. Node's buf.readUInt16LE() is two byte
// loads and may tear.
//
// Ordering comes from the same operations. JS Atomics are sequentially consistent and
// work on non-shared ArrayBuffers too (only Atomics.wait/notify need a SAB). V8 emits
// them as xchg / plain mov on x86-64 (a full barrier on the store side) and as
// stlr / ldar on arm64, which gives the four orderings the protocol needs:
//
//   1. load avail->idx, THEN read ring entries and descriptors     (acquire)
//      virtio 1.2 §2.7.13.3: the driver writes the ring entry before idx.
//   2. write used elements (and the data), THEN store used->idx     (release)
//      virtio 1.2 §2.7.8.2: "The device MUST set len prior to updating the used idx".
//   3. store used->idx, THEN load used_event / avail->flags          (store-load)
//      otherwise we may miss that the driver asked for a notification (Linux
//      virtio_ring's "virtio_mb before reading used_event" is the same rule).
//   4. store avail_event / used->flags, THEN reload avail->idx       (store-load)
//      the "re-enable and re-check" race of §2.7.10: without it a buffer made
//      available between our last look and the re-enable is never noticed.
//
// Plain typed-array accesses are used for everything else (descriptor fields, ring
// entries, used elements); they are ordered by the index operations around them.
// Data that native I/O threads wrote into guest memory is ordered before our release
// store because its completion reached this thread through libuv (a mutex handoff).

/** Acquire-load of a 16-bit ring index (avail->idx, used_event, avail->flags). */
export function loadIndex(view: Uint16Array, index: number): number {
  return Atomics.load(view, index);
}

/** Release-store of a 16-bit ring field (used->idx, avail_event, used->flags). */
export function storeIndex(view: Uint16Array, index: number, value: number): void {
  Atomics.store(view, index, value);
}

/**
 * Plain (single 16-bit, untorn) store of an advisory field whose ordering does not
 * matter at this point: avail_event advanced by pop() while notifications are on. The
 * ordered store happens in enableNotification(), which is where the race lives.
 */
export function storeHint(view: Uint16Array, index: number, value: number): void {
  view[index] = value;
}

/** True if typed-array accesses are little-endian on this host (virtio 1.x rings are LE). */
export const HOST_IS_LITTLE_ENDIAN: boolean = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
