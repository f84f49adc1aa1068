// The one error family of the virtqueue layer (DESIGN.md "Errors, one family per layer").
// A VirtqueueError means the guest (or the front-end that relayed its ring addresses)
// handed us something malformed. The backend reacts by stopping that queue; it never
// takes the process down. Programming errors of our own callers stay RangeError/Error.

export type VirtqueueErrorCode =
  | 'GPA_UNMAPPED'
  | 'QVA_UNMAPPED'
  | 'BAD_REGION'
  | 'OVERLAPPING_REGIONS'
  | 'BAD_QUEUE_SIZE'
  | 'RING_UNALIGNED'
  | 'AVAIL_IDX_JUMP'
  | 'HEAD_OUT_OF_RANGE'
  | 'NEXT_OUT_OF_RANGE'
  | 'DESC_LOOP'
  | 'ZERO_LENGTH'
  | 'INDIRECT_NOT_NEGOTIATED'
  | 'INDIRECT_BAD_LENGTH'
  | 'INDIRECT_NESTED'
  | 'INDIRECT_WITH_NEXT'
  | 'CHAIN_TOO_LARGE'
  | 'WRITABLE_BEFORE_READABLE'
  | 'HEAD_IN_FLIGHT'
  | 'TOO_MANY_IN_FLIGHT';

export class VirtqueueError extends Error {
  readonly code: VirtqueueErrorCode;

  constructor(code: VirtqueueErrorCode, message: string) {
    super(message);
    this.name = 'VirtqueueError';
    this.code = code;
  }
}
