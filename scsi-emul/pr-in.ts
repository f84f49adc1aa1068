// PERSISTENT RESERVE IN (SPC-4 r37 §6.15): READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
// READ FULL STATUS, from the committed state (persistent-reservations.ts). Data is built whole
// in core.response(); the core clamps it to the ALLOCATION LENGTH, whose lengths fields still
// describe all of it (§6.15.2).
import type { Task } from './command';
import type { Core } from './command-def';
import { be16, putBe16, putBe32 } from './bytes';
import { isAllRegistrants, PrScope } from './persistent-reservations';
import { encodeTransportId, transportIdLength } from './transport-id';

/** CDB (§6.15.1): bytes 7-8 ALLOCATION LENGTH; bytes 2-6 are reserved (the usage data). */
export function parsePrIn(task: Task, cdb: Uint8Array): void {
  task.dataLength = be16(cdb, 7);
}

function putKey(b: Uint8Array, off: number, key: bigint): void {
  putBe32(b, off, Number(key >> 32n));
  putBe32(b, off + 4, Number(key & 0xffffffffn));
}

/** READ KEYS (§6.15.2): PRGENERATION, ADDITIONAL LENGTH, one 8-byte key per registration. */
export function executeReadKeys(core: Core, task: Task): number {
  const d = task.lu!.pr.data;
  const n = 8 + 8 * d.registrations.length;
  const b = core.response(n);
  putBe32(b, 0, d.generation);
  putBe32(b, 4, n - 8);
  let off = 8;
  for (const r of d.registrations) {
    putKey(b, off, r.key);
    off += 8;
  }
  return n;
}

/**
 * READ RESERVATION (§6.15.3): ADDITIONAL LENGTH 0 without a reservation, else 10h
 * and the reservation descriptor: the holder's key (zero for the all registrants types,
 * §5.9.10), SCOPE and TYPE in byte 21.
 */
export function executeReadReservation(core: Core, task: Task): number {
  const d = task.lu!.pr.data;
  const b = core.response(24);
  putBe32(b, 0, d.generation);
  if (d.type === 0) return 8;
  putBe32(b, 4, 16);
  if (!isAllRegistrants(d.type)) putKey(b, 8, d.holder!.key);
  b[21] = (PrScope.LU_SCOPE << 4) | d.type;
  return 24;
}

/** REPORT CAPABILITIES byte 2: CRH, SIP_C, ATP_C, PTPL_C (§6.15.4; RLR_C=0, no REPLACE LOST RESERVATION). */
const CAPABILITIES = 0x10 | 0x08 | 0x04 | 0x01;
/**
 * Byte 3: TMV=1 and ALLOW COMMANDS 011b (§6.15.4): TEST UNIT READY passes Write Exclusive and
 * Exclusive Access reservations, and MODE SENSE, REPORT SUPPORTED OPERATION CODES / TASK
 * MANAGEMENT FUNCTIONS (and the listed commands we do not implement) pass Write Exclusive ones,
 * as PrAccess.TEST_UNIT_READY and ALLOWED_WRITE_EXCLUSIVE make the gate do. Bit 0 is PTPL_A.
 */
const TMV_ALLOW_COMMANDS = 0x80 | (0b011 << 4);
/**
 * PERSISTENT RESERVATION TYPE MASK (§6.15.4): byte 4 WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC,
 * WR_EX; byte 5 EX_AC_AR. All six types.
 */
const TYPE_MASK_4 = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
const TYPE_MASK_5 = 0x01;

/** REPORT CAPABILITIES (§6.15.4): LENGTH 0008h. */
export function executeReportCapabilities(core: Core, task: Task): number {
  const d = task.lu!.pr.data;
  const b = core.response(8);
  putBe16(b, 0, 8);
  b[2] = CAPABILITIES;
  b[3] = TMV_ALLOW_COMMANDS | (d.aptpl ? 0x01 : 0x00); // PTPL_A: the last APTPL received
  b[4] = TYPE_MASK_4;
  b[5] = TYPE_MASK_5;
  return 8;
}

/** Full status descriptor header length (§6.15.5), before its TransportID. */
const DESCRIPTOR_HEADER = 24;

/**
 * READ FULL STATUS (§6.15.5): one descriptor per registration: key, ALL_TG_PT
 * and R_HOLDER (byte 12), SCOPE and TYPE when a holder (byte 13), RELATIVE TARGET PORT
 * IDENTIFIER (bytes 18-19; not defined, here 0, with ALL_TG_PT=1: the descriptor stands for every
 * target port), ADDITIONAL DESCRIPTOR LENGTH and the initiator port's TransportID.
 */
export function executeReadFullStatus(core: Core, task: Task): number {
  const d = task.lu!.pr.data;
  let n = 8;
  for (const r of d.registrations) n += DESCRIPTOR_HEADER + transportIdLength(r.initiatorPort);
  const b = core.response(n);
  putBe32(b, 0, d.generation);
  putBe32(b, 4, n - 8);
  let off = 8;
  for (const r of d.registrations) {
    putKey(b, off, r.key);
    const holder = d.holds(r);
    b[off + 12] = (r.allTargetPorts ? 0x02 : 0x00) | (holder ? 0x01 : 0x00);
    if (holder) b[off + 13] = (PrScope.LU_SCOPE << 4) | d.type;
    putBe16(b, off + 18, r.targetPortId);
    const len = encodeTransportId(r.initiatorPort, b, off + DESCRIPTOR_HEADER);
    putBe32(b, off + 20, len);
    off += DESCRIPTOR_HEADER + len;
  }
  return n;
}
