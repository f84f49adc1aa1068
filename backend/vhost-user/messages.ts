// Payload codecs (DESIGN.md "Layers inside backend/" 2): one decoder per payload type of
// vhost-user.rst "Payload", each with its syntax check (exact size, reserved bits, counts),
// and the matching encoder for replies and for the fake front-end. 64-bit fields stay
// bigint until the dispatcher range-checks them (V10.2). Semantic checks (index < queue
// count, features offered, ...) belong to the dispatcher, which knows the session.

import { ProtocolError } from './errors';
import { NATIVE_LITTLE_ENDIAN as LE } from './framing';
import {
  MEMORY_REGION_SIZE,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_CONFIG_HDR_SIZE,
  VHOST_USER_MAX_CONFIG_SIZE,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
} from './protocol';

function view(p: Uint8Array): DataView {
  return new DataView(p.buffer, p.byteOffset, p.byteLength);
}

function expectSize(request: number, p: Uint8Array, size: number, what: string): void {
  // front-end-controlled: validated here (V1.4, exact size for fixed-size payloads).
  if (p.length !== size) {
    throw new ProtocolError(request, `${what} payload is ${p.length} bytes, expected ${size}`);
  }
}

/** Requests without a payload ("request payload: N/A") must have size 0. */
export function decodeEmpty(request: number, p: Uint8Array): void {
  expectSize(request, p, 0, 'empty');
}

// ---- A single 64-bit integer -------------------------------------------------------

export const U64_SIZE = 8;

export function decodeU64(request: number, p: Uint8Array): bigint {
  expectSize(request, p, U64_SIZE, 'u64');
  return view(p).getBigUint64(0, LE);
}

export function encodeU64(value: bigint): Uint8Array {
  const out = new Uint8Array(U64_SIZE);
  view(out).setBigUint64(0, BigInt.asUintN(64, value), LE);
  return out;
}

// ---- A vring state description {u32 index, u32 num} ---------------------------------

export const VRING_STATE_SIZE = 8;

export interface VringState {
  index: number;
  num: number;
}

export function decodeVringState(request: number, p: Uint8Array): VringState {
  expectSize(request, p, VRING_STATE_SIZE, 'vring state');
  const v = view(p);
  return { index: v.getUint32(0, LE), num: v.getUint32(4, LE) };
}

export function encodeVringState(index: number, num: number): Uint8Array {
  const out = new Uint8Array(VRING_STATE_SIZE);
  const v = view(out);
  v.setUint32(0, index >>> 0, LE);
  v.setUint32(4, num >>> 0, LE);
  return out;
}

// ---- SET_VRING_KICK/CALL/ERR u64: index bits 0-7, NOFD bit 8 -------------------------

export interface VringFile {
  index: number;
  /** Bit 8: no fd in the ancillary data. */
  noFd: boolean;
}

export function decodeVringFile(request: number, p: Uint8Array): VringFile {
  const u = decodeU64(request, p);
  // front-end-controlled: bits other than the index and NOFD are not defined (V2.3).
  if ((u & ~BigInt(VRING_IDX_MASK | VRING_NOFD_MASK)) !== 0n) {
    throw new ProtocolError(request, `reserved bits set in 0x${u.toString(16)} (only bits 0-8 are defined)`);
  }
  const n = Number(u);
  return { index: n & VRING_IDX_MASK, noFd: (n & VRING_NOFD_MASK) !== 0 };
}

export function encodeVringFile(index: number, noFd: boolean): Uint8Array {
  return encodeU64(BigInt((index & VRING_IDX_MASK) | (noFd ? VRING_NOFD_MASK : 0)));
}

// ---- A vring address description (struct vhost_vring_addr) --------------------------
// u32 index, u32 flags, u64 desc_user_addr, u64 used_user_addr, u64 avail_user_addr,
// u64 log_guest_addr: 40 bytes. Note the order: used before avail.

export const VRING_ADDR_SIZE = 40;

export interface VringAddr {
  index: number;
  flags: number;
  desc: bigint;
  used: bigint;
  avail: bigint;
  log: bigint;
}

export function decodeVringAddr(request: number, p: Uint8Array): VringAddr {
  expectSize(request, p, VRING_ADDR_SIZE, 'vring address');
  const v = view(p);
  return {
    index: v.getUint32(0, LE),
    flags: v.getUint32(4, LE),
    desc: v.getBigUint64(8, LE),
    used: v.getBigUint64(16, LE),
    avail: v.getBigUint64(24, LE),
    log: v.getBigUint64(32, LE),
  };
}

export function encodeVringAddr(a: VringAddr): Uint8Array {
  const out = new Uint8Array(VRING_ADDR_SIZE);
  const v = view(out);
  v.setUint32(0, a.index >>> 0, LE);
  v.setUint32(4, a.flags >>> 0, LE);
  v.setBigUint64(8, BigInt.asUintN(64, a.desc), LE);
  v.setBigUint64(16, BigInt.asUintN(64, a.used), LE);
  v.setBigUint64(24, BigInt.asUintN(64, a.avail), LE);
  v.setBigUint64(32, BigInt.asUintN(64, a.log), LE);
  return out;
}

// ---- Memory region description {u64 gpa, u64 size, u64 user address, u64 mmap offset} -

export interface MemRegion {
  guestPhysAddr: bigint;
  size: bigint;
  userAddr: bigint;
  mmapOffset: bigint;
}

function readRegion(v: DataView, off: number): MemRegion {
  return {
    guestPhysAddr: v.getBigUint64(off, LE),
    size: v.getBigUint64(off + 8, LE),
    userAddr: v.getBigUint64(off + 16, LE),
    mmapOffset: v.getBigUint64(off + 24, LE),
  };
}

function writeRegion(v: DataView, off: number, r: MemRegion): void {
  v.setBigUint64(off, BigInt.asUintN(64, r.guestPhysAddr), LE);
  v.setBigUint64(off + 8, BigInt.asUintN(64, r.size), LE);
  v.setBigUint64(off + 16, BigInt.asUintN(64, r.userAddr), LE);
  v.setBigUint64(off + 24, BigInt.asUintN(64, r.mmapOffset), LE);
}

// ---- Multiple memory regions description (SET_MEM_TABLE) ----------------------------
// u32 nregions, u32 padding, then nregions regions; QEMU sends exactly 8 + 32 * nregions.

export const MEM_TABLE_HEADER_SIZE = 8;

export function decodeMemTable(request: number, p: Uint8Array): MemRegion[] {
  if (p.length < MEM_TABLE_HEADER_SIZE) {
    throw new ProtocolError(request, `memory table payload is ${p.length} bytes, shorter than its 8-byte header`);
  }
  const v = view(p);
  const n = v.getUint32(0, LE);
  // front-end-controlled: validated here (V3.1: 1 <= nregions <= 8; padding ignored).
  if (n < 1 || n > VHOST_MEMORY_BASELINE_NREGIONS) {
    throw new ProtocolError(request, `nregions ${n} is outside 1..${VHOST_MEMORY_BASELINE_NREGIONS}`);
  }
  expectSize(request, p, MEM_TABLE_HEADER_SIZE + MEMORY_REGION_SIZE * n, `memory table of ${n} region(s)`);
  const out: MemRegion[] = [];
  for (let i = 0; i < n; i++) out.push(readRegion(v, MEM_TABLE_HEADER_SIZE + MEMORY_REGION_SIZE * i));
  return out;
}

export function encodeMemTable(regions: readonly MemRegion[]): Uint8Array {
  const out = new Uint8Array(MEM_TABLE_HEADER_SIZE + MEMORY_REGION_SIZE * regions.length);
  const v = view(out);
  v.setUint32(0, regions.length, LE);
  regions.forEach((r, i) => writeRegion(v, MEM_TABLE_HEADER_SIZE + MEMORY_REGION_SIZE * i, r));
  return out;
}

// ---- Single memory region description (ADD_MEM_REG, REM_MEM_REG): u64 padding + region -

export const MEM_REGION_MSG_SIZE = 8 + MEMORY_REGION_SIZE;

export function decodeMemRegionMsg(request: number, p: Uint8Array): MemRegion {
  expectSize(request, p, MEM_REGION_MSG_SIZE, 'single memory region');
  return readRegion(view(p), 8);
}

export function encodeMemRegionMsg(r: MemRegion): Uint8Array {
  const out = new Uint8Array(MEM_REGION_MSG_SIZE);
  writeRegion(view(out), 8, r);
  return out;
}

// ---- Virtio device config space {u32 offset, u32 size, u32 flags, u8 payload[size]} ----

export interface ConfigSpace {
  offset: number;
  flags: number;
  /** A view into the message payload; copy before keeping it. */
  data: Uint8Array;
}

export function decodeConfig(request: number, p: Uint8Array): ConfigSpace {
  if (p.length < VHOST_USER_CONFIG_HDR_SIZE) {
    throw new ProtocolError(request, `config payload is ${p.length} bytes, shorter than its 12-byte header`);
  }
  const v = view(p);
  const offset = v.getUint32(0, LE);
  const size = v.getUint32(4, LE);
  const flags = v.getUint32(8, LE);
  // front-end-controlled: validated here (V1.4, V2.10: size <= 256, payload == 12 + size).
  if (size > VHOST_USER_MAX_CONFIG_SIZE) {
    throw new ProtocolError(request, `config size ${size} exceeds ${VHOST_USER_MAX_CONFIG_SIZE}`);
  }
  expectSize(request, p, VHOST_USER_CONFIG_HDR_SIZE + size, `config access of ${size} byte(s)`);
  return { offset, flags, data: p.subarray(VHOST_USER_CONFIG_HDR_SIZE) };
}

export function encodeConfig(offset: number, flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(VHOST_USER_CONFIG_HDR_SIZE + data.length);
  const v = view(out);
  v.setUint32(0, offset >>> 0, LE);
  v.setUint32(4, data.length, LE);
  v.setUint32(8, flags >>> 0, LE);
  out.set(data, VHOST_USER_CONFIG_HDR_SIZE);
  return out;
}

// ---- Log description {u64 mmap size, u64 mmap offset} (SET_LOG_BASE) ------------------

export const LOG_SIZE = 16;

export interface LogDescription {
  mmapSize: bigint;
  mmapOffset: bigint;
}

export function decodeLog(request: number, p: Uint8Array): LogDescription {
  expectSize(request, p, LOG_SIZE, 'log description');
  const v = view(p);
  return { mmapSize: v.getBigUint64(0, LE), mmapOffset: v.getBigUint64(8, LE) };
}

export function encodeLog(l: LogDescription): Uint8Array {
  const out = new Uint8Array(LOG_SIZE);
  const v = view(out);
  v.setBigUint64(0, BigInt.asUintN(64, l.mmapSize), LE);
  v.setBigUint64(8, BigInt.asUintN(64, l.mmapOffset), LE);
  return out;
}

// ---- Inflight description {u64 mmap size, u64 mmap offset, u16 num queues, u16 queue size}
// QEMU's VhostUserInflight is 20 bytes of fields padded to 24 (u64 alignment).

export const INFLIGHT_SIZE = 24;

export interface InflightDescription {
  mmapSize: bigint;
  mmapOffset: bigint;
  numQueues: number;
  queueSize: number;
}

export function decodeInflight(request: number, p: Uint8Array): InflightDescription {
  expectSize(request, p, INFLIGHT_SIZE, 'inflight description');
  const v = view(p);
  return {
    mmapSize: v.getBigUint64(0, LE),
    mmapOffset: v.getBigUint64(8, LE),
    numQueues: v.getUint16(16, LE),
    queueSize: v.getUint16(18, LE),
  };
}

export function encodeInflight(d: InflightDescription): Uint8Array {
  const out = new Uint8Array(INFLIGHT_SIZE);
  const v = view(out);
  v.setBigUint64(0, BigInt.asUintN(64, d.mmapSize), LE);
  v.setBigUint64(8, BigInt.asUintN(64, d.mmapOffset), LE);
  v.setUint16(16, d.numQueues & 0xffff, LE);
  v.setUint16(18, d.queueSize & 0xffff, LE);
  return out;
}

// ---- SET_STATUS: the virtio device status byte in a u64 -------------------------------

export function decodeStatus(request: number, p: Uint8Array): number {
  const u = decodeU64(request, p);
  // front-end-controlled: the virtio status field is 8 bits (virtio 1.2 §2.1; V2.11).
  if (u > 0xffn) throw new ProtocolError(request, `status 0x${u.toString(16)} does not fit the 8-bit device status`);
  return Number(u);
}
