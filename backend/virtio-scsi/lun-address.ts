// The 8-byte LUN field of virtio-scsi requests (virtio 1.2 §5.6.6.1): byte 0 is 1, byte 1 the
// target, bytes 2-3 a single-level LUN (SAM-5 §4.7.7: peripheral 00b or flat 01b addressing),
// bytes 4-7 zero. Linux always sends the flat format (0x40 | lun >> 8, lun & 0xff).

import { REPORT_LUNS_WLUN } from '../../scsi-emul';

export const SERVED_TARGET = 0;
export const MAX_LUN = 16383;

/** Decoded LUN, or -1 when the field does not address a LUN of target 0 (→ VIRTIO_SCSI_S_BAD_TARGET). */
export function decodeLunField(field: Uint8Array, offset: number): number {
  // guest-controlled: every byte is checked, nothing is "rounded" to a valid LUN (V6.3).
  if (field[offset] !== 1 || field[offset + 1] !== SERVED_TARGET) return -1;
  if ((field[offset + 4] | field[offset + 5] | field[offset + 6] | field[offset + 7]) !== 0) return -1;
  const b2 = field[offset + 2];
  const b3 = field[offset + 3];
  const method = b2 >> 6;
  if (method === 0b00) return b2 === 0 ? b3 : -1; // peripheral device addressing: bus 0 only
  if (method === 0b01) return ((b2 & 0x3f) << 8) | b3; // flat space addressing
  // Extended addressing, well known LUN 01h (SAM-5 §4.7.8.5): the REPORT LUNS well known LU.
  // Linux sends its W-LUN C101h as C1 01 (virtio_scsi ORs 40h into byte 2, already set).
  // It goes to the core as REPORT_LUNS_WLUN; every other extended address is rejected.
  if (b2 === 0xc1 && b3 === 0x01) return REPORT_LUNS_WLUN;
  return -1;
}

/** Encode a LUN the way Linux does (flat addressing), for events and test fakes. */
export function encodeLunField(lun: number, out: Uint8Array, offset: number): void {
  out[offset] = 1;
  out[offset + 1] = SERVED_TARGET;
  out[offset + 2] = 0x40 | ((lun >> 8) & 0x3f);
  out[offset + 3] = lun & 0xff;
  out.fill(0, offset + 4, offset + 8);
}

/**
 * The LUN field of an event (virtio 1.2 §5.6.6.3): the LUN as REPORT LUNS lists it, peripheral
 * addressing below 256 and flat above (SAM-5 §4.7.7). Linux takes bytes 2-3 of an event as its
 * own LUN number ((lun[2] << 8) | lun[3]) and looks devices up by it, and its scan names LUN 3
 * "3" (from REPORT LUNS), not 0x4003: a flat-encoded small LUN would hot-add a second device for
 * the same LU and make REMOVED miss the scanned one. QEMU and Linux vhost-scsi encode events so.
 */
export function encodeEventLunField(lun: number, out: Uint8Array, offset: number): void {
  out[offset] = 1;
  out[offset + 1] = SERVED_TARGET;
  out[offset + 2] = lun < 256 ? 0 : 0x40 | ((lun >> 8) & 0x3f);
  out[offset + 3] = lun & 0xff;
  out.fill(0, offset + 4, offset + 8);
}
