// Device-independent virtio feature bit numbers, virtio 1.2 §6 "Reserved Feature Bits".
// Bit numbers, not masks: feature words are 64-bit (vhost-user GET/SET_FEATURES carry a
// u64), so masks are bigint and built with featureBit().

export const VirtioFeature = {
  /** Legacy only (§6.3): notify when the ring runs empty despite suppression. */
  NOTIFY_ON_EMPTY: 24,
  /** Legacy only (§6.3, §2.7.4.3): no framing assumptions. Implied by VERSION_1. */
  ANY_LAYOUT: 27,
  /** VIRTIO_F_INDIRECT_DESC, §6 / §2.7.5.3. */
  RING_INDIRECT_DESC: 28,
  /** VIRTIO_F_EVENT_IDX, §6 / §2.7.7, §2.7.10. */
  RING_EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  NOTIF_CONFIG_DATA: 39,
  RING_RESET: 40,
} as const;

function checkBit(bit: number): void {
  if (!Number.isInteger(bit) || bit < 0 || bit > 63) {
    throw new RangeError(`virtio feature bit ${bit} is not in 0..63`);
  }
}

/** The mask of one feature bit: 1n << bit. */
export function featureBit(bit: number): bigint {
  checkBit(bit);
  return 1n << BigInt(bit);
}

/** True if `bit` is set in the 64-bit feature word `features`. */
export function hasFeature(features: bigint, bit: number): boolean {
  checkBit(bit);
  return ((features >> BigInt(bit)) & 1n) === 1n;
}
