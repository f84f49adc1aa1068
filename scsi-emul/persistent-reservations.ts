// Persistent reservations (SPC-4 r37 §5.9) and SPC-2 reservations: the state of one logical unit,
// its persistence contract, and the reservation gate every command of every I_T nexus passes.
// The PERSISTENT RESERVE IN / OUT and RESERVE / RELEASE handlers are pr-in.ts, pr-out.ts and
// pr-spc2.ts.
//
// Model
// - A registration is (initiator port name, relative target port identifier, reservation key).
//   Identity is by name and port id, never by NexusRecord: a registration made through SPEC_I_PT
//   or REGISTER AND MOVE for an initiator that has not connected yet, or restored at start, is
//   matched when that nexus appears. Names are compared canonically (transport-id.ts).
// - An ALL_TG_PT registration is one registration for every target port of its initiator port
//   (targetPortId 0, which no real port has). It is handled as a unit, as illumos COMSTAR does: a
//   new key or an unregistration through any of its I_T nexuses applies to all of them, and when it
//   holds the reservation every I_T nexus it covers is a holder. At most one registration covers
//   an I_T nexus.
// - The reservation is (type, holder registration); the all registrants types have no single
//   holder: every registered I_T nexus holds them (§5.9.10), and they end with the last
//   registration.
// - The committed state is replaced, never edited: a PERSISTENT RESERVE OUT works on a copy, the
//   copy is saved, and only a saved copy becomes the state (pr-out.ts). A failed save therefore
//   leaves the state as it was, the gate never sees a state that is not durable, and PERSISTENT
//   RESERVE IN reports only committed state.
// - An SPC-2 reservation is held by one I_T nexus (NexusRecord), is never saved, and ends with
//   RELEASE, LOGICAL UNIT RESET or the holder's I_T nexus loss (SPC-2 r20 §5.5.1); persistent
//   reservations survive all three (SPC-4 §5.9.5: only a power loss without APTPL ends them).
import type { Task } from './command';
import { CommandDef, PrAccess } from './command-def';
import type { NexusRecord } from './nexus';
import { canonicalPortName } from './transport-id';

/** SPC-4 r37 §6.16.2: persistent reservation TYPE codes. */
export const enum PrType {
  WRITE_EXCLUSIVE = 0x1,
  EXCLUSIVE_ACCESS = 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8,
}

/** SPC-4 r37 §6.16.2: SCOPE; LU_SCOPE is the only one not obsolete. */
export const enum PrScope {
  LU_SCOPE = 0x0,
}

/** SPC-4 r37 §6.15.1: PERSISTENT RESERVE IN service actions. */
export const enum PrInServiceAction {
  READ_KEYS = 0x00,
  READ_RESERVATION = 0x01,
  REPORT_CAPABILITIES = 0x02,
  READ_FULL_STATUS = 0x03,
}

/** SPC-4 r37 §6.16.2: PERSISTENT RESERVE OUT service actions. */
export const enum PrOutServiceAction {
  REGISTER = 0x00,
  RESERVE = 0x01,
  RELEASE = 0x02,
  CLEAR = 0x03,
  PREEMPT = 0x04,
  PREEMPT_AND_ABORT = 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY = 0x06,
  REGISTER_AND_MOVE = 0x07,
}

export function validPrType(t: number): boolean {
  return t === PrType.WRITE_EXCLUSIVE || t === PrType.EXCLUSIVE_ACCESS ||
    (t >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY && t <= PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS);
}

export function isAllRegistrants(t: number): boolean {
  return t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

export function isRegistrantsOnly(t: number): boolean {
  return t === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || t === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY;
}

/** Write Exclusive types: non-holders may still read (SPC-4 §6.16.2 TYPE descriptions: "reads shared"). */
export function isWriteExclusive(t: number): boolean {
  return t === PrType.WRITE_EXCLUSIVE || t === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY ||
    t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS;
}

/**
 * Registrations a logical unit holds at most. SPEC_I_PT lets one command create many, so an
 * initiator could otherwise grow the state (and its file) without bound; past this the command
 * ends with INSUFFICIENT REGISTRATION RESOURCES (SPC-4 §5.9.7). Clusters use a few per host.
 */
export const MAX_REGISTRATIONS = 2048;

/** One registration (see the model above). */
export class Registration {
  constructor(
    /** canonical initiator port name */
    readonly initiatorPort: string,
    /** relative target port identifier, or 0 for ALL_TG_PT (every target port) */
    readonly targetPortId: number,
    /** reservation key, never 0 */
    public key: bigint,
  ) {}

  get allTargetPorts(): boolean {
    return this.targetPortId === 0;
  }

  /** Covers the I_T nexus of initiator port `name` (canonical) through target port `port`. */
  covers(name: string, port: number): boolean {
    return this.initiatorPort === name && (this.targetPortId === 0 || this.targetPortId === port);
  }
}

/** Persistent reservation state; committed instances are never modified (see the model). */
export class PrData {
  /** in registration order, which READ KEYS and READ FULL STATUS report */
  registrations: Registration[] = [];
  /** PrType of the reservation, 0 when there is none */
  type = 0;
  /** the holding registration; null for the all registrants types (and when there is no reservation) */
  holder: Registration | null = null;
  /** PRGENERATION, a 32-bit wrapping counter (SPC-4 §6.15.2) */
  generation = 0;
  /** the last valid APTPL value received (SPC-4 §5.9.5) */
  aptpl = false;

  /** The registration covering the I_T nexus (name canonical), or null. */
  find(name: string, port: number): Registration | null {
    const regs = this.registrations;
    for (let i = 0; i < regs.length; i++) if (regs[i].covers(name, port)) return regs[i];
    return null;
  }

  /** Whether `reg` holds the reservation (SPC-4 §5.9.10). */
  holds(reg: Registration): boolean {
    return this.type !== 0 && (isAllRegistrants(this.type) || this.holder === reg);
  }

  /** A deep copy; `map` then finds a registration's copy. */
  clone(): PrData {
    const c = new PrData();
    c.registrations = this.registrations.map((r) => new Registration(r.initiatorPort, r.targetPortId, r.key));
    c.type = this.type;
    c.holder = this.holder === null ? null : c.registrations[this.registrations.indexOf(this.holder)];
    c.generation = this.generation;
    c.aptpl = this.aptpl;
    return c;
  }

  /** The copy of `original` (a registration of the instance this one was cloned from). */
  map(from: PrData, original: Registration): Registration {
    return this.registrations[from.registrations.indexOf(original)];
  }

  bumpGeneration(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  release(): void {
    this.type = 0;
    this.holder = null;
  }

  /** Removes `reg`; an all registrants reservation ends with its last registration (§5.9.11.3). */
  remove(reg: Registration): void {
    const i = this.registrations.indexOf(reg);
    if (i >= 0) this.registrations.splice(i, 1);
    if (this.holder === reg) this.release();
    if (this.registrations.length === 0) this.release();
  }
}

// ---------------------------------------------------------------- persistence contract

/** Format version of PrSnapshot. */
export const PR_SNAPSHOT_VERSION = 1;

/** One registration in a snapshot. */
export interface PrRegistrationSnapshot {
  /** canonical initiator port name */
  initiatorPort: string;
  /** relative target port identifier 1..65535, or 0 when allTargetPorts */
  targetPortId: number;
  /** registered with ALL_TG_PT=1: covers every target port of the initiator port */
  allTargetPorts: boolean;
  /** reservation key, 16 lower-case hexadecimal digits, not all zero */
  key: string;
}

export interface PrReservationSnapshot {
  /** PrType */
  type: number;
  /** PrScope (always LU_SCOPE) */
  scope: number;
  /** index in `registrations` of the holder; -1 for the all registrants types */
  holder: number;
}

/**
 * Everything a logical unit's persistent reservations are: plain data, JSON and msgpack-able.
 * SPC-2 reservations are not part of it (they do not persist).
 */
export interface PrSnapshot {
  version: number;
  /** save counter: every save has a larger one, so the newer of two copies is known */
  seq: number;
  /** PRGENERATION */
  generation: number;
  /** last valid APTPL received: true → keep across power loss (persistent directory) */
  aptpl: boolean;
  registrations: PrRegistrationSnapshot[];
  reservation: PrReservationSnapshot | null;
}

/**
 * Where snapshots go. save() must make `state` durable (for its `aptpl`: across power loss, or
 * across a restart of the process only) before calling done(null), and call done exactly once,
 * asynchronously or not. A PERSISTENT RESERVE OUT that changes anything completes only after
 * done(null); done(err) rolls it back and ends it with CHECK CONDITION.
 */
export interface PrPersistence {
  save(key: string, state: PrSnapshot, done: (err: Error | null) => void): void;
}

/** LogicalUnitOptions.persistentReservations. */
export interface PersistentReservationsOptions {
  persistence: PrPersistence;
  /** the logical unit's name for the persistence (stable across restarts) */
  key: string;
  /** state found at start (loadPrState), if any */
  restored?: PrSnapshot | null;
}

const KEY_HEX = /^[0-9a-f]{16}$/;

function keyHex(k: bigint): string {
  return k.toString(16).padStart(16, '0');
}

/**
 * Null when `s` is a well-formed snapshot, otherwise what is wrong with it (a restored state is
 * validated as strictly as a parameter list: a damaged state is an error, never a reset).
 */
export function validatePrSnapshot(s: unknown): string | null {
  if (s === null || typeof s !== 'object' || Array.isArray(s)) return 'not an object';
  const o = s as Record<string, unknown>;
  if (o.version !== PR_SNAPSHOT_VERSION) return `version ${String(o.version)} is not ${PR_SNAPSHOT_VERSION}`;
  if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 0) return 'seq is not a non-negative integer';
  if (!Number.isInteger(o.generation) || (o.generation as number) < 0 || (o.generation as number) > 0xffffffff) {
    return 'generation is not a 32-bit unsigned integer';
  }
  if (typeof o.aptpl !== 'boolean') return 'aptpl is not a boolean';
  if (!Array.isArray(o.registrations)) return 'registrations is not an array';
  const regs = o.registrations as unknown[];
  if (regs.length > MAX_REGISTRATIONS) return `more than ${MAX_REGISTRATIONS} registrations`;
  const seen: PrRegistrationSnapshot[] = [];
  for (let i = 0; i < regs.length; i++) {
    const r = regs[i] as Record<string, unknown>;
    const at = `registrations[${i}]`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) return `${at} is not an object`;
    if (typeof r.initiatorPort !== 'string' || r.initiatorPort.length > 0xffff) return `${at}.initiatorPort is not a string`;
    if (canonicalPortName(r.initiatorPort) !== r.initiatorPort) return `${at}.initiatorPort is not in canonical (lower-case) form`;
    if (typeof r.allTargetPorts !== 'boolean') return `${at}.allTargetPorts is not a boolean`;
    if (!Number.isInteger(r.targetPortId) || (r.targetPortId as number) < 0 || (r.targetPortId as number) > 0xffff ||
        ((r.targetPortId as number) === 0) !== r.allTargetPorts) {
      return `${at}.targetPortId must be 1..65535, or 0 exactly when allTargetPorts`;
    }
    if (typeof r.key !== 'string' || !KEY_HEX.test(r.key) || r.key === '0000000000000000') {
      return `${at}.key is not 16 lower-case hexadecimal digits other than zero`;
    }
    for (const p of seen) {
      if (p.initiatorPort === r.initiatorPort &&
          (p.allTargetPorts || r.allTargetPorts || p.targetPortId === r.targetPortId)) {
        return `${at} covers an I_T nexus another registration covers`;
      }
    }
    seen.push(r as unknown as PrRegistrationSnapshot);
  }
  const res = o.reservation;
  if (res !== null) {
    if (typeof res !== 'object' || Array.isArray(res)) return 'reservation is neither null nor an object';
    const v = res as Record<string, unknown>;
    if (typeof v.type !== 'number' || !validPrType(v.type)) return `reservation.type ${String(v.type)} is not a reservation type`;
    if (v.scope !== PrScope.LU_SCOPE) return 'reservation.scope is not LU_SCOPE (0)';
    if (regs.length === 0) return 'a reservation without registrations';
    if (isAllRegistrants(v.type)) {
      if (v.holder !== -1) return 'reservation.holder must be -1 for an all registrants type';
    } else if (!Number.isInteger(v.holder) || (v.holder as number) < 0 || (v.holder as number) >= regs.length) {
      return 'reservation.holder is not the index of a registration';
    }
  }
  return null;
}

function fromSnapshot(s: PrSnapshot): PrData {
  const d = new PrData();
  d.registrations = s.registrations.map((r) => new Registration(r.initiatorPort, r.targetPortId, BigInt(`0x${r.key}`)));
  d.generation = s.generation;
  d.aptpl = s.aptpl;
  if (s.reservation !== null) {
    d.type = s.reservation.type;
    d.holder = s.reservation.holder >= 0 ? d.registrations[s.reservation.holder] : null;
  }
  return d;
}

function toSnapshot(d: PrData, seq: number): PrSnapshot {
  return {
    version: PR_SNAPSHOT_VERSION,
    seq,
    generation: d.generation,
    aptpl: d.aptpl,
    registrations: d.registrations.map((r) => ({
      initiatorPort: r.initiatorPort, targetPortId: r.targetPortId, allTargetPorts: r.allTargetPorts, key: keyHex(r.key),
    })),
    reservation: d.type === 0 ? null : {
      type: d.type, scope: PrScope.LU_SCOPE, holder: d.holder === null ? -1 : d.registrations.indexOf(d.holder),
    },
  };
}

// ---------------------------------------------------------------- per logical unit

/** A PERSISTENT RESERVE OUT waiting for the one in flight to finish saving (pr-out.ts). */
export interface QueuedPrOut {
  readonly task: Task;
  readonly params: Uint8Array;
}

/** The reservation state of one logical unit, shared by all its I_T nexuses. */
export class PersistentReservations {
  /**
   * The gate's fast path (reliability.md V7.11 without a cost when unused): false while neither a
   * persistent nor an SPC-2 reservation exists, so the gate is one field test.
   */
  gateActive = false;
  /** holder of the SPC-2 reservation (RESERVE(6)/(10)), or null */
  spc2Holder: NexusRecord | null = null;
  /** @internal a PERSISTENT RESERVE OUT is saving; others wait in `queue` (pr-out.ts) */
  busy = false;
  /** @internal */
  readonly queue: QueuedPrOut[] = [];
  private committed: PrData;
  private readonly persistence: PrPersistence | null;
  private readonly key: string;
  private seq: number;
  /** registration covering each nexus, for the committed state (cleared on commit) */
  private readonly byNexus = new Map<NexusRecord, Registration | null>();
  private readonly names = new Map<NexusRecord, string>();

  constructor(options: PersistentReservationsOptions | undefined, luName: string) {
    this.committed = new PrData();
    this.persistence = null;
    this.key = '';
    this.seq = 0;
    if (options === undefined) return;
    if (options === null || typeof options !== 'object' || typeof options.persistence?.save !== 'function') {
      throw new TypeError(`LogicalUnit ${luName}: persistentReservations needs a persistence with a save() method`);
    }
    if (typeof options.key !== 'string' || options.key.length === 0 || options.key.length > 255) {
      throw new RangeError(`LogicalUnit ${luName}: persistentReservations.key must be a string of 1..255 characters`);
    }
    this.persistence = options.persistence;
    this.key = options.key;
    const r = options.restored;
    if (r !== undefined && r !== null) {
      const why = validatePrSnapshot(r);
      if (why !== null) throw new RangeError(`LogicalUnit ${luName}: restored persistent reservation state is invalid: ${why}`);
      this.committed = fromSnapshot(r);
      this.seq = r.seq;
    }
    this.updateGate();
  }

  /** The committed state (never modify it: clone, then commit). */
  get data(): PrData {
    return this.committed;
  }

  /** Canonical initiator port name of a nexus (cached: the gate asks for every command). */
  nameOf(rec: NexusRecord): string {
    let n = this.names.get(rec);
    if (n === undefined) {
      n = canonicalPortName(rec.initiatorPort);
      this.names.set(rec, n);
    }
    return n;
  }

  /** The committed registration covering `rec`, or null. */
  registrationOf(rec: NexusRecord): Registration | null {
    let r = this.byNexus.get(rec);
    if (r === undefined) {
      r = this.committed.find(this.nameOf(rec), rec.targetPortId);
      this.byNexus.set(rec, r);
    }
    return r;
  }

  /** Known I_T nexuses a registration covers. */
  nexusesOf(reg: { initiatorPort: string; targetPortId: number }, known: readonly NexusRecord[], out: NexusRecord[]): void {
    for (const rec of known) {
      if (this.nameOf(rec) === reg.initiatorPort && (reg.targetPortId === 0 || reg.targetPortId === rec.targetPortId)) {
        out.push(rec);
      }
    }
  }

  /** Makes `next` the state (after it was saved). */
  commit(next: PrData): void {
    this.committed = next;
    this.byNexus.clear();
    this.updateGate();
  }

  /**
   * Saves `next` through the persistence; done(null) once durable. Without a persistence there
   * is nothing to save. The save number is used up even when the save fails: a failure may come
   * after the new file landed, and the next save must supersede it.
   */
  save(next: PrData, done: (err: Error | null) => void): void {
    const persistence = this.persistence;
    if (persistence === null) {
      done(null);
      return;
    }
    const seq = ++this.seq;
    let called = false;
    const once = (err: Error | null): void => {
      if (called) return; // a persistence calling twice must not complete a command twice
      called = true;
      done(err);
    };
    try {
      persistence.save(this.key, toSnapshot(next, seq), (err) => once(err ?? null));
    } catch (e) {
      once(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** The snapshot of the committed state (diagnostics, tests). */
  snapshot(): PrSnapshot {
    return toSnapshot(this.committed, this.seq);
  }

  setSpc2Holder(rec: NexusRecord | null): void {
    this.spc2Holder = rec;
    this.updateGate();
  }

  /** I_T nexus loss (SAM-5 §6.3.4): its SPC-2 reservation ends; persistent ones stay (SPC-4 §5.9.5). */
  nexusLost(rec: NexusRecord): void {
    if (this.spc2Holder === rec) this.setSpc2Holder(null);
  }

  /** LOGICAL UNIT RESET: the SPC-2 reservation ends (SPC-2 r20 §5.5.1); persistent ones stay. */
  logicalUnitReset(): void {
    if (this.spc2Holder !== null) this.setSpc2Holder(null);
  }

  private updateGate(): void {
    this.gateActive = this.committed.type !== 0 || this.spc2Holder !== null;
  }
}

// ---------------------------------------------------------------- the gate

/** SBC-3 r36 table 13: START STOP UNIT with START=1 and POWER CONDITION 0h does not conflict. */
function startStopAllowed(cdb: Uint8Array): boolean {
  return (cdb[4] & 0x01) !== 0 && (cdb[4] & 0xf0) === 0;
}

/** SPC-4 table 45 / SPC-2 table 10: PREVENT ALLOW MEDIUM REMOVAL with PREVENT=00b does not conflict. */
function preventAllowAllowed(cdb: Uint8Array): boolean {
  return (cdb[4] & 0x03) === 0;
}

/**
 * True when `def` from the task's I_T nexus meets RESERVATION CONFLICT. Called only while
 * pr.gateActive (a reservation exists).
 */
export function reservationConflict(pr: PersistentReservations, def: CommandDef, task: Task): boolean {
  const access = def.pr;
  const rec = task.nexus!;
  const cdb = task.cmd.cdb;
  if (pr.spc2Holder !== null) {
    // SPC-2 r20 §5.5.1: while an SPC-2 reservation exists every PERSISTENT RESERVE IN/OUT
    // conflicts, whoever sends it; other commands conflict for other I_T nexuses as table 10 says.
    if (access === PrAccess.PERSISTENT_RESERVE_IN || access === PrAccess.PERSISTENT_RESERVE_OUT) return true;
    if (pr.spc2Holder === rec) return false;
    switch (access) {
      case PrAccess.ALLOWED:
      case PrAccess.RESERVE_RELEASE: // RESERVE conflicts, RELEASE succeeds without effect: the handler
        return false;
      case PrAccess.START_STOP:
        return !startStopAllowed(cdb);
      case PrAccess.PREVENT_ALLOW:
        return !preventAllowAllowed(cdb);
      default:
        return true;
    }
  }
  const data = pr.data;
  const type = data.type;
  if (type === 0) return false;
  switch (access) {
    case PrAccess.ALLOWED:
    case PrAccess.TEST_UNIT_READY:
    case PrAccess.PERSISTENT_RESERVE_IN:
    case PrAccess.PERSISTENT_RESERVE_OUT: // table 46: the service action's key checks decide
    case PrAccess.RESERVE_RELEASE: // SPC-4 §5.9.3: the handler decides
      return false;
    default:
      break;
  }
  const reg = pr.registrationOf(rec);
  if (reg !== null) {
    // Table 45 "from registered I_T nexus": allowed under registrants only and all registrants
    // types. Under Write Exclusive / Exclusive Access only the holder is exempt.
    if (type !== PrType.WRITE_EXCLUSIVE && type !== PrType.EXCLUSIVE_ACCESS) return false;
    if (data.holder === reg) return false;
  }
  switch (access) {
    case PrAccess.ALLOWED_WRITE_EXCLUSIVE:
      return !isWriteExclusive(type);
    case PrAccess.START_STOP:
      return !startStopAllowed(cdb);
    case PrAccess.PREVENT_ALLOW:
      return !preventAllowAllowed(cdb);
    default:
      return true;
  }
}
