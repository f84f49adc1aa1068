// Shared helpers for the scsi-emul tests (not a test file itself).
import { LogicalUnit, LogicalUnitOptions, ScsiTarget, ScsiTargetOptions, createRamStore, ITNexus, BlockStore } from '../../scsi-emul';
import { CommandSpec, TEST_NEXUS, run } from '../../scsi-emul/testing';

/** "70 00 05" → bytes. Whitespace is ignored. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0) throw new Error(`odd hex string ${s}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** bytes → "70 00 05" */
export function toHex(b: ArrayLike<number>): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

export function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

export interface Setup {
  target: ScsiTarget;
  lu: LogicalUnit;
  store: BlockStore;
}

/** A target with one RAM LU at LUN 0 whose initial POWER ON/RESET UA is already consumed. */
export function setup(opts: { sizeBytes?: number; lu?: LogicalUnitOptions; target?: ScsiTargetOptions; store?: BlockStore;
  nexus?: ITNexus; keepUa?: boolean } = {}): Setup {
  const target = new ScsiTarget(opts.target);
  const store = opts.store ?? createRamStore({ sizeBytes: opts.sizeBytes ?? 1 << 20, name: 'lun0' });
  const lu = new LogicalUnit(store, opts.lu);
  target.addLogicalUnit(0, lu);
  if (!opts.keepUa) consumeUa(target, 0, opts.nexus ?? TEST_NEXUS);
  return { target, lu, store };
}

/** Sends REQUEST SENSE until no unit attention is left for (lun, nexus). */
export function consumeUa(target: ScsiTarget, lun: number, nexus: ITNexus = TEST_NEXUS): void {
  for (let i = 0; i < 32; i++) {
    const r = run(target, { lun, nexus, cdb: [0x03, 0, 0, 0, 252, 0], dataIn: 252 });
    if (r.data[2] !== 0x06) return;
  }
  throw new Error('unit attentions do not drain');
}

export function cmd(spec: CommandSpec): CommandSpec {
  return spec;
}

/** Fixed-format sense (18 bytes) for key/asc/ascq without field pointer. */
export function fixedSense(key: number, asc: number, ascq: number): string {
  return toHex(hex(`70 00 ${key.toString(16).padStart(2, '0')} 00 00 00 00 0a 00 00 00 00 ${asc.toString(16).padStart(2, '0')} ${ascq.toString(16).padStart(2, '0')} 00 00 00 00`));
}

export function be64(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

export function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** READ(16)/WRITE(16) CDB. */
export function rw16(op: 0x88 | 0x8a, lba: bigint, blocks: number, byte1 = 0): number[] {
  return [op, byte1, ...be64(lba), ...be32(blocks), 0, 0];
}

/** READ(10)/WRITE(10) CDB. */
export function rw10(op: 0x28 | 0x2a, lba: number, blocks: number, byte1 = 0): number[] {
  return [op, byte1, ...be32(lba), 0, (blocks >>> 8) & 0xff, blocks & 0xff, 0];
}

/** `v` as `bytes` big-endian hex bytes ("00 01 f4"), for parameter lists written as hex. */
export function hx(v: number, bytes: number): string {
  const out: string[] = [];
  for (let i = bytes - 1; i >= 0; i--) out.push((Math.floor(v / 2 ** (8 * i)) % 256).toString(16).padStart(2, '0'));
  return out.join(' ');
}
