// Public surface of the virtqueue module. It knows guest memory and split rings only:
// nothing about SCSI, sockets, fds or the addon (DESIGN.md; tests/architecture.test.ts).

export { VirtqueueError } from './errors';
export type { VirtqueueErrorCode } from './errors';
export { VirtioFeature, featureBit, hasFeature } from './features';
export { GuestMemory } from './guest-memory';
export type { GuestRegion } from './guest-memory';
export { sgLength, sgRead, sgWrite, sgSlice } from './scatter-gather';
export {
  SplitQueue,
  DescriptorChain,
  vringNeedEvent,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY,
  VIRTQ_MAX_SIZE,
  VIRTQ_MAX_INDIRECT_ENTRIES,
  VIRTQ_MAX_CHAIN_BYTES,
} from './split-queue';
export type { SplitQueueConfig } from './split-queue';
export { FakeGuestMemory, FakeSplitDriver, FAKE_QVA_BIAS, FAKE_GUARD_BYTES, FAKE_GUARD_CANARY } from './fake-driver';
export type {
  FakeRegionSpec,
  FakeBufferSpec,
  FakeBufferRef,
  FakeSplitDriverOptions,
  AddChainOptions,
  DescSpec,
  RawDesc,
  UsedElem,
} from './fake-driver';
