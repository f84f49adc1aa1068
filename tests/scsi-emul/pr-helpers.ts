// Shared helpers for the persistent reservation tests (not a test file itself): a multi-nexus
// topology, CDB and parameter-list builders with the literal SPC-4 layouts, and a recording
// PrPersistence whose saves the test completes.
import {
  BlockStore, ITNexus, LogicalUnit, PrPersistence, PrSnapshot, ScsiStatus, ScsiTarget, createRamStore,
} from '../../scsi-emul';
import { CommandResult, run, submit } from '../../scsi-emul/testing';
import { be32, consumeUa, hex, toHex } from './helpers';

// Initiators A, B, C (SAS names, tcm_loop style) reaching the target through target ports 1
// and 2; D is never registered. A nexus object per (initiator, port).
export const A1: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000a01', targetPortId: 1, protocolId: 6 });
export const A2: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000a01', targetPortId: 2, protocolId: 6 });
export const B1: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000b01', targetPortId: 1, protocolId: 6 });
export const B2: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000b01', targetPortId: 2, protocolId: 6 });
export const C1: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000c01', targetPortId: 1, protocolId: 6 });
export const D1: ITNexus = Object.freeze({ initiatorPort: 'naa.5001405000000d01', targetPortId: 1, protocolId: 6 });
export const ALL_NEXUSES = [A1, A2, B1, B2, C1, D1];

export const GOOD = ScsiStatus.GOOD;
export const CHECK = ScsiStatus.CHECK_CONDITION;
export const CONFLICT = ScsiStatus.RESERVATION_CONFLICT;

/** PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2), as literal codes. */
export const SA = {
  REGISTER: 0x00, RESERVE: 0x01, RELEASE: 0x02, CLEAR: 0x03, PREEMPT: 0x04, PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE: 0x06, REGISTER_AND_MOVE: 0x07,
} as const;
/** TYPE codes (§6.16.2). */
export const TYPE = { WE: 0x1, EA: 0x3, WERO: 0x5, EARO: 0x6, WEAR: 0x7, EAAR: 0x8 } as const;
/** Byte 20 of the basic parameter list (§6.16.3). */
export const SPEC_I_PT = 0x08;
export const ALL_TG_PT = 0x04;
export const APTPL = 0x01;

export function be64(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** The 24-byte basic PERSISTENT RESERVE OUT parameter list, plus `extra` bytes. */
export function basicList(key: bigint, saKey: bigint, byte20 = 0, extra: number[] = []): Uint8Array {
  return Uint8Array.from([...be64(key), ...be64(saKey), 0, 0, 0, 0, byte20, 0, 0, 0, ...extra]);
}

/** REGISTER AND MOVE parameter list (§6.16.4): keys, UNREG/APTPL, RELATIVE TARGET PORT IDENTIFIER, TransportID. */
export function moveList(key: bigint, saKey: bigint, rtpi: number, transportId: ArrayLike<number>, byte17 = 0): Uint8Array {
  return Uint8Array.from([
    ...be64(key), ...be64(saKey), 0, byte17, (rtpi >>> 8) & 0xff, rtpi & 0xff, ...be32(transportId.length), ...Array.from(transportId),
  ]);
}

/** SAS TransportID (SPC-4 §7.6.4) for naa.<hex>. */
export function sasTransportId(naaHex: string): number[] {
  return [0x06, 0, 0, 0, ...Array.from(hex(naaHex)), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
}

/** PERSISTENT RESERVE OUT CDB (§6.16.1). */
export function prOutCdb(sa: number, scopeType: number, length: number): number[] {
  return [0x5f, sa, scopeType, 0, 0, ...be32(length), 0x00];
}

/** PERSISTENT RESERVE IN CDB (§6.15.1). */
export function prInCdb(sa: number, alloc = 0x2000): number[] {
  return [0x5e, sa, 0, 0, 0, 0, 0, (alloc >>> 8) & 0xff, alloc & 0xff, 0x00];
}

export function prOut(target: ScsiTarget, nexus: ITNexus, sa: number, type: number, list: Uint8Array): CommandResult {
  return run(target, { nexus, cdb: prOutCdb(sa, type, list.length), dataOut: list });
}

export function submitPrOut(target: ScsiTarget, nexus: ITNexus, sa: number, type: number, list: Uint8Array): CommandResult {
  return submit(target, { nexus, cdb: prOutCdb(sa, type, list.length), dataOut: list });
}

export function register(target: ScsiTarget, nexus: ITNexus, key: bigint, byte20 = 0): CommandResult {
  return prOut(target, nexus, SA.REGISTER, 0, basicList(0n, key, byte20));
}

export function reserve(target: ScsiTarget, nexus: ITNexus, key: bigint, type: number): CommandResult {
  return prOut(target, nexus, SA.RESERVE, type, basicList(key, 0n));
}

export function prIn(target: ScsiTarget, nexus: ITNexus, sa: number, alloc = 0x2000): CommandResult {
  return run(target, { nexus, cdb: prInCdb(sa, alloc), dataIn: alloc });
}

/** READ KEYS → [generation, keys]. */
export function readKeys(target: ScsiTarget, nexus: ITNexus = D1): { generation: number; keys: bigint[] } {
  const d = prIn(target, nexus, 0x00).data;
  const n = ((d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7]) / 8;
  const keys: bigint[] = [];
  for (let i = 0; i < n; i++) {
    let k = 0n;
    for (let j = 0; j < 8; j++) k = (k << 8n) | BigInt(d[8 + 8 * i + j]);
    keys.push(k);
  }
  return { generation: ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0, keys };
}

/** READ RESERVATION → hex of the 24 (or 8) bytes. */
export function readReservation(target: ScsiTarget, nexus: ITNexus = D1): string {
  return toHex(prIn(target, nexus, 0x01).data);
}

/** Fixed-format UNIT ATTENTION sense for asc/ascq. */
export function uaSense(asc: number, ascq: number): string {
  return `70 00 06 00 00 00 00 0a 00 00 00 00 ${asc.toString(16).padStart(2, '0')} ${ascq.toString(16).padStart(2, '0')} 00 00 00 00`;
}

/** ILLEGAL REQUEST sense with a field pointer (SKSV, C/D, BPV, bit) at `byte`. */
export function illegal(asc: number, ascq: number, cd: boolean | null, byte = 0, bit?: number): string {
  const sks = cd === null ? '00 00 00' :
    `${(0x80 | (cd ? 0x40 : 0) | (bit !== undefined ? 0x08 | bit : 0)).toString(16).padStart(2, '0')} ${((byte >>> 8) & 0xff).toString(16).padStart(2, '0')} ${(byte & 0xff).toString(16).padStart(2, '0')}`;
  return `70 00 05 00 00 00 00 0a 00 00 00 00 ${asc.toString(16).padStart(2, '0')} ${ascq.toString(16).padStart(2, '0')} 00 ${sks}`;
}

/** TEST UNIT READY through `nexus`: the pending UA's sense as hex, or '' when none. */
export function pendingUa(target: ScsiTarget, nexus: ITNexus, lun = 0): string {
  const r = run(target, { nexus, lun, cdb: [0x03, 0, 0, 0, 18, 0], dataIn: 18 });
  return r.data[2] === 0x06 ? toHex(r.data) : '';
}

/** A PrPersistence that records saves; in manual mode the test completes them. */
export class FakePrPersistence implements PrPersistence {
  readonly saves: { key: string; state: PrSnapshot; done: (err: Error | null) => void; completed: boolean }[] = [];
  manual: boolean;
  /** error the next save fails with (then cleared) */
  failNext: Error | null = null;

  constructor(manual = false) {
    this.manual = manual;
  }

  save(key: string, state: PrSnapshot, done: (err: Error | null) => void): void {
    const entry = { key, state: JSON.parse(JSON.stringify(state)) as PrSnapshot, done, completed: false };
    this.saves.push(entry);
    if (!this.manual) this.complete(this.saves.length - 1);
  }

  /** Completes save i (default: the oldest pending one) with err, or the injected failure. */
  complete(i = this.saves.findIndex((s) => !s.completed), err: Error | null = null): void {
    const s = this.saves[i];
    if (s === undefined || s.completed) throw new Error('FakePrPersistence: no such pending save');
    s.completed = true;
    const e = err ?? this.failNext;
    this.failNext = null;
    s.done(e);
  }

  pending(): number {
    return this.saves.filter((s) => !s.completed).length;
  }
}

export interface PrSetup {
  target: ScsiTarget;
  lu: LogicalUnit;
  store: BlockStore;
  persistence: FakePrPersistence;
}

/** One LU at LUN 0 (and optionally more), every nexus of ALL_NEXUSES known and its UAs consumed. */
export function prSetup(opts: { store?: BlockStore; persistence?: FakePrPersistence; restored?: PrSnapshot | null;
  luns?: number } = {}): PrSetup {
  const target = new ScsiTarget();
  const persistence = opts.persistence ?? new FakePrPersistence();
  const store = opts.store ?? createRamStore({ sizeBytes: 1 << 20, name: 'pr-lu' });
  const lu = new LogicalUnit(store, { persistentReservations: { persistence, key: 'lu0', restored: opts.restored } });
  target.addLogicalUnit(0, lu);
  for (let i = 1; i < (opts.luns ?? 1); i++) target.addLogicalUnit(i, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 })));
  for (const n of ALL_NEXUSES) for (let i = 0; i < (opts.luns ?? 1); i++) consumeUa(target, i, n);
  return { target, lu, store, persistence };
}
