// Shared helpers for the virtqueue tests (not a test file itself).
import { FakeGuestMemory, FakeSplitDriver, FakeSplitDriverOptions, SplitQueue, SplitQueueConfig, VirtqueueError } from '../../virtqueue';

export interface Rig {
  mem: FakeGuestMemory;
  drv: FakeSplitDriver;
  /** Build the device side now (after the driver has set up what it wants). */
  queue(overrides?: Partial<SplitQueueConfig>): SplitQueue;
}

export function rig(size: number, opts: FakeSplitDriverOptions = {}, mem = new FakeGuestMemory()): Rig {
  const drv = new FakeSplitDriver(mem, size, opts);
  return {
    mem,
    drv,
    queue: (overrides = {}) => new SplitQueue(mem.toGuestMemory(), drv.config(overrides), drv.startIdx),
  };
}

/** The VirtqueueError code fn throws, or a description of what happened instead. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof VirtqueueError) return e.code;
    return `${(e as Error)?.name}: ${(e as Error)?.message}`;
  }
  return 'no error';
}

export function concat(segs: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(segs.reduce((n, s) => n + s.length, 0));
  let off = 0;
  for (const s of segs) {
    out.set(s, off);
    off += s.length;
  }
  return out;
}

/** Deterministic PRNG (mulberry32) for the fuzz tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
