// PERSISTENT RESERVE OUT (SPC-4 r37 §6.16): the eight service actions of §5.9.7-§5.9.11, their
// reservation key checks (table 46), unit attentions, PREEMPT AND ABORT's aborts, and the save
// every change makes before the command completes.
//
// A command runs in three steps:
//  1. decide(): checks the parameter list and the keys against the committed state and builds
//     the next state as a copy (persistent-reservations.ts: committed state is never edited). The
//     outcome is RESERVATION CONFLICT, GOOD without a change, a SenseError, or a change.
//  2. A change is saved (PrPersistence); commands arriving meanwhile wait in the LU's queue, so
//     each one decides against the state its predecessor left.
//  3. On a successful save the copy becomes the state, unit attentions are established, PREEMPT
//     AND ABORT aborts the preempted commands, and the command completes when those have. A
//     failed save changes nothing (the copy is dropped) and ends the command with CHECK
//     CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE (44/00): the fault is the target's own
//     storage, not the medium (MEDIUM ERROR would tell the initiator its data is damaged) nor the
//     request (ILLEGAL REQUEST would tell it not to retry); the state is unchanged, so a retry is
//     safe.
// Completion with RESERVATION CONFLICT (a status without sense, SAM-5 §5.3.1) sets task.goodStatus:
// the core reports it for a command that ends without an exception.
import type { Task } from './command';
import { EXECUTE_ASYNC, type Core } from './command-def';
import { ScsiStatus, ServiceResponse } from './constants';
import type { NexusRecord } from './nexus';
import { be16, be32, copyFromSegments } from './bytes';
import { Sense, SenseCondition, SenseError } from './sense';
import { decodeTransportId } from './transport-id';
import {
  MAX_REGISTRATIONS, PersistentReservations, PrData, PrOutServiceAction, PrScope, Registration,
  isAllRegistrants, isRegistrantsOnly, validPrType,
} from './persistent-reservations';

/** Basic parameter list length (SPC-4 §6.16.3) and its SPEC_I_PT header. */
const BASIC_LENGTH = 24;
const SPEC_I_PT_HEADER = 28;
/**
 * Largest parameter list we take (SPEC_I_PT lists grow with their TransportIDs): 64 KiB holds
 * more TransportIDs than MAX_REGISTRATIONS allows.
 */
export const MAX_PR_OUT_PARAMETER_LIST = 65536;

// Byte 20 of the basic parameter list (§6.16.3).
const SPEC_I_PT = 0x08;
const ALL_TG_PT = 0x04;
const APTPL = 0x01;
const BYTE20_RESERVED = 0xf2;
// Byte 17 of the REGISTER AND MOVE parameter list (§6.16.4).
const UNREG = 0x02;
const MOVE_APTPL = 0x01;
const BYTE17_RESERVED = 0xfc;

const CONFLICT = -1;
const UNCHANGED = 0;

interface PendingUa {
  readonly initiatorPort: string;
  readonly targetPortId: number;
  readonly condition: SenseCondition;
}

/** A decided change: the next state and what follows its commit. */
interface Change {
  readonly next: PrData;
  readonly uas: PendingUa[];
  /** PREEMPT AND ABORT: registrations whose I_T nexuses' commands are aborted (§5.9.11.5) */
  abort: readonly Registration[] | null;
}

function change(next: PrData): Change {
  return { next, uas: [], abort: null };
}

/** Unit attention `c` for the I_T nexuses of `regs` (the sender's own nexus is skipped when applied). */
function ua(ch: Change, regs: readonly Registration[], c: SenseCondition): void {
  for (const r of regs) ch.uas.push({ initiatorPort: r.initiatorPort, targetPortId: r.targetPortId, condition: c });
}

function highestBit(x: number): number {
  return 31 - Math.clz32(x);
}

function keyAt(b: Uint8Array, off: number): bigint {
  return (BigInt(be32(b, off)) << 32n) | BigInt(be32(b, off + 4));
}

const parameterListLengthError = (): SenseError => new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);

// ---------------------------------------------------------------- CDB

/**
 * CDB (SPC-4 §6.16.1): SERVICE ACTION, SCOPE and TYPE in byte 2, PARAMETER LIST LENGTH
 * in bytes 5-8. SCOPE and TYPE are checked where they count (RESERVE, RELEASE, PREEMPT, PREEMPT
 * AND ABORT; §6.16.2), and ignored by the other service actions.
 */
export function parsePrOut(task: Task, cdb: Uint8Array): void {
  const sa = cdb[1] & 0x1f;
  const length = be32(cdb, 5); // guest-controlled: validated here
  if (length > MAX_PR_OUT_PARAMETER_LIST) throw SenseError.invalidCdbField(5);
  if (sa === PrOutServiceAction.RESERVE || sa === PrOutServiceAction.RELEASE ||
      sa === PrOutServiceAction.PREEMPT || sa === PrOutServiceAction.PREEMPT_AND_ABORT) {
    if ((cdb[2] >>> 4) !== PrScope.LU_SCOPE) throw SenseError.invalidCdbField(2, 7); // element/extent scopes are obsolete
    if (!validPrType(cdb[2] & 0x0f)) throw SenseError.invalidCdbField(2, 3);
  }
  task.dataLength = length;
}

// ---------------------------------------------------------------- driver

export function executePrOut(core: Core, task: Task): number {
  const pr = task.lu!.pr;
  // A private copy (reliability.md V9.2): the guest may rewrite its buffer while we parse.
  const params = new Uint8Array(task.dataLength);
  copyFromSegments(task.cmd.dataOut, 0, params, 0, params.length);
  task.cmd.dataOutTransferred = params.length;
  // Behind a save in flight, or behind commands still waiting for one (a command completing
  // inside the drain may make its initiator send another at once): keep arrival order.
  if (pr.busy || pr.queue.length > 0) {
    pr.queue.push({ task, params });
    return core.startOwnIo(task);
  }
  return run(core, task, params, false);
}

/** Decides and acts. `queued`: the command waited, so it already is own I/O and ends through ioDone. */
function run(core: Core, task: Task, params: Uint8Array, queued: boolean): number {
  const pr = task.lu!.pr;
  let d: Change | number;
  try {
    d = decide(core, task, params);
  } catch (e) {
    if (!queued) throw e;
    task.ioDone(e instanceof Error ? e : new Error(String(e)));
    return EXECUTE_ASYNC;
  }
  if (typeof d === 'number') {
    if (d === CONFLICT) task.goodStatus = ScsiStatus.RESERVATION_CONFLICT;
    if (queued) task.ioDone(null);
    return 0;
  }
  const ch = d;
  if (!queued) core.startOwnIo(task);
  pr.busy = true;
  pr.save(ch.next, (err) => settle(core, task, pr, ch, err));
  return EXECUTE_ASYNC;
}

/**
 * The save ended. `pr.busy` stays set until the command has completed, so a command its
 * initiator sends from the completion callback queues behind the ones already waiting.
 */
function settle(core: Core, task: Task, pr: PersistentReservations, ch: Change, err: Error | null): void {
  const lu = task.lu!;
  if (err !== null) {
    task.ioDone(new SenseError(Sense.INTERNAL_TARGET_FAILURE));
    pr.busy = false;
    drain(core, pr);
    return;
  }
  pr.commit(ch.next);
  const sender = task.nexus!;
  const known = core.knownNexuses();
  const recs: NexusRecord[] = [];
  for (const u of ch.uas) {
    recs.length = 0;
    pr.nexusesOf(u, known, recs);
    for (const r of recs) if (r !== sender) lu.establishUnitAttention(r, u.condition);
  }
  let victims: Task[] | null = null;
  if (ch.abort !== null) {
    const preempted = new Set<NexusRecord>();
    for (const reg of ch.abort) {
      recs.length = 0;
      pr.nexusesOf(reg, known, recs);
      for (const r of recs) preempted.add(r);
    }
    victims = [];
    for (let t = lu.head; t !== null; t = t.next) {
      if (t !== task && preempted.has(t.nexus!)) victims.push(t);
    }
    // SAM-5 §5.6 with TAS=0 (Control mode page): commands aborted by another I_T nexus's action
    // are answered without status; their initiators learn it from COMMANDS CLEARED BY ANOTHER
    // INITIATOR, as after CLEAR TASK SET.
    for (const t of victims) if (t.nexus !== sender) lu.establishUnitAttention(t.nexus!, Sense.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
  }
  if (victims !== null && victims.length > 0) {
    // §5.9.11.5: the command completes once the preempted commands are aborted (in-flight store
    // I/O cannot be recalled; abortTasks waits for it).
    core.abortTasks(victims, () => task.ioDone(null));
  } else {
    task.ioDone(null);
  }
  pr.busy = false;
  drain(core, pr);
}

/** Runs the commands that waited for a save, in arrival order, until one starts a save again. */
function drain(core: Core, pr: PersistentReservations): void {
  // Commands aborted while they waited (by a TMF, or by the PREEMPT AND ABORT just committed,
  // which is waiting for them) complete first, whatever is in front of them.
  for (let i = 0; i < pr.queue.length;) {
    const q = pr.queue[i];
    if (q.task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) {
      pr.queue.splice(i, 1);
      q.task.ioDone(null);
    } else {
      i++;
    }
  }
  while (!pr.busy && pr.queue.length > 0) {
    const q = pr.queue.shift()!;
    if (q.task.abortResponse !== ServiceResponse.COMMAND_COMPLETE) q.task.ioDone(null);
    else run(core, q.task, q.params, true);
  }
}

// ---------------------------------------------------------------- decisions

interface Request {
  readonly core: Core;
  readonly pr: PersistentReservations;
  /** committed state */
  readonly data: PrData;
  readonly sa: number;
  readonly type: number;
  readonly params: Uint8Array;
  readonly sender: NexusRecord;
  /** the sender's canonical initiator port name and relative target port */
  readonly name: string;
  readonly port: number;
  /** the registration covering the sender, or null */
  readonly reg: Registration | null;
  readonly rk: bigint;
  readonly sark: bigint;
}

/**
 * Parameter list (guest-controlled: validated here). SPC-4 §6.16.3: 24 bytes unless SPEC_I_PT=1,
 * which only REGISTER takes; §6.16.4: REGISTER AND MOVE's list is 24 bytes plus its TransportID.
 */
function checkParameterList(sa: number, p: Uint8Array): void {
  if (p.length < BASIC_LENGTH) throw parameterListLengthError();
  if (sa === PrOutServiceAction.REGISTER_AND_MOVE) {
    if (p[16] !== 0) throw SenseError.invalidParameterField(16);
    if ((p[17] & BYTE17_RESERVED) !== 0) throw SenseError.invalidParameterField(17, highestBit(p[17] & BYTE17_RESERVED));
    if (BASIC_LENGTH + be32(p, 20) !== p.length) throw parameterListLengthError();
    return;
  }
  if ((p[20] & BYTE20_RESERVED) !== 0) throw SenseError.invalidParameterField(20, highestBit(p[20] & BYTE20_RESERVED));
  if (p[21] !== 0) throw SenseError.invalidParameterField(21);
  const specIpt = (p[20] & SPEC_I_PT) !== 0;
  if (specIpt && sa !== PrOutServiceAction.REGISTER) throw SenseError.invalidParameterField(20, 3);
  if (!specIpt) {
    if (p.length !== BASIC_LENGTH) throw parameterListLengthError();
  } else if (p.length < SPEC_I_PT_HEADER || SPEC_I_PT_HEADER + be32(p, 24) !== p.length) {
    throw parameterListLengthError();
  }
}

function decide(core: Core, task: Task, params: Uint8Array): Change | number {
  const pr = task.lu!.pr;
  const sa = task.def!.serviceAction;
  checkParameterList(sa, params);
  const sender = task.nexus!;
  const name = pr.nameOf(sender);
  const data = pr.data;
  const q: Request = {
    core, pr, data, sa, type: task.cmd.cdb[2] & 0x0f, params, sender, name, port: sender.targetPortId,
    reg: data.find(name, sender.targetPortId), rk: keyAt(params, 0), sark: keyAt(params, 8),
  };
  switch (sa) {
    case PrOutServiceAction.REGISTER: return register(q, false);
    case PrOutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY: return register(q, true);
    case PrOutServiceAction.RESERVE: return reserve(q);
    case PrOutServiceAction.RELEASE: return release(q);
    case PrOutServiceAction.CLEAR: return clear(q);
    case PrOutServiceAction.PREEMPT:
    case PrOutServiceAction.PREEMPT_AND_ABORT: return preempt(q, sa === PrOutServiceAction.PREEMPT_AND_ABORT);
    case PrOutServiceAction.REGISTER_AND_MOVE: return registerAndMove(q);
    default: throw new Error(`PERSISTENT RESERVE OUT: no handler for service action ${sa}`);
  }
}

/** The sender is registered and RESERVATION KEY is its key (the key check of table 46). */
function keyMatches(q: Request): boolean {
  return q.reg !== null && q.reg.key === q.rk;
}

function checkResources(next: PrData): void {
  if (next.registrations.length > MAX_REGISTRATIONS) throw new SenseError(Sense.INSUFFICIENT_REGISTRATION_RESOURCES);
}

/**
 * REGISTER and REGISTER AND IGNORE EXISTING KEY (§5.9.7 and its register behaviour tables). PRGENERATION counts
 * every such request that completes (§6.15.2), the one with nothing to register included.
 */
function register(q: Request, ignore: boolean): Change | number {
  const p = q.params;
  const specIpt = (p[20] & SPEC_I_PT) !== 0;
  const allTgPt = (p[20] & ALL_TG_PT) !== 0;
  const aptpl = (p[20] & APTPL) !== 0;
  const data = q.data;
  if (q.reg === null) {
    if (!ignore && q.rk !== 0n) return CONFLICT;
    const next = data.clone();
    next.bumpGeneration();
    const ch = change(next);
    if (q.sark === 0n) return ch; // "do nothing" (no key to register); ALL_TG_PT, SPEC_I_PT, APTPL unused
    // Registrations of this initiator port through other target ports (it is not registered
    // through this one). ALL_TG_PT=1 registers through every port, "as if received individually
    // through each target port" (§6.16.3): REGISTER meets their keys and conflicts; REGISTER AND
    // IGNORE EXISTING KEY replaces them.
    const others = next.registrations.filter((r) => r.initiatorPort === q.name);
    if (allTgPt && others.length > 0 && !ignore) return CONFLICT;
    const specified = specIpt ? specifiedInitiators(q, allTgPt) : [];
    const own = new Registration(q.name, allTgPt ? 0 : q.port, q.sark);
    if (allTgPt && others.length > 0) {
      const held = next.holder !== null && others.includes(next.holder);
      next.registrations = next.registrations.filter((r) => !others.includes(r));
      if (held) next.holder = own; // the reservation stays with the initiator port's registration
    }
    next.registrations.push(own);
    for (const s of specified) next.registrations.push(new Registration(s, allTgPt ? 0 : q.port, q.sark));
    checkResources(next);
    next.aptpl = aptpl;
    return ch;
  }
  if (!ignore && q.rk !== q.reg.key) return CONFLICT;
  // Table 47: SPEC_I_PT=1 from a registered I_T nexus ends with INVALID FIELD IN CDB.
  if (specIpt) throw new SenseError(Sense.INVALID_FIELD_IN_CDB);
  const next = data.clone();
  const ch = change(next);
  const mine = next.map(data, q.reg);
  if (q.sark !== 0n) {
    mine.key = q.sark;
  } else {
    // §5.9.11.3 unregistering: a holder of a registrants only reservation releases it, and the
    // other registrants are told; an all registrants one lives on with the others.
    const type = next.type;
    const releases = next.holder === mine && isRegistrantsOnly(type);
    next.remove(mine);
    if (releases) ua(ch, next.registrations, Sense.RESERVATIONS_RELEASED);
  }
  next.aptpl = aptpl;
  next.bumpGeneration();
  return ch;
}

/**
 * SPEC_I_PT (§6.16.3): the initiator ports of the TransportIDs, to be registered through the
 * receiving target port (every port with ALL_TG_PT=1). All or nothing: any bad TransportID fails
 * the command before anything is registered.
 */
function specifiedInitiators(q: Request, allTgPt: boolean): string[] {
  const p = q.params;
  const names: string[] = [];
  for (let at = SPEC_I_PT_HEADER; at < p.length;) {
    const t = decodeTransportId(p, at, p.length - at);
    // An initiator port on a target port of another transport cannot form an I_T nexus here.
    if (q.sender.protocolId >= 0 && (p[at] & 0x0f) !== q.sender.protocolId) throw SenseError.invalidParameterField(at, 3);
    // The sender itself, a repeated port, or an I_T nexus that is already registered.
    const registered = allTgPt
      ? q.data.registrations.some((r) => r.initiatorPort === t.name)
      : q.data.find(t.name, q.port) !== null;
    if (t.name === q.name || names.includes(t.name) || registered) throw SenseError.invalidParameterField(at);
    names.push(t.name);
    at += t.length;
  }
  return names;
}

/** RESERVE (§5.9.9). */
function reserve(q: Request): Change | number {
  if (!keyMatches(q)) return CONFLICT;
  const data = q.data;
  if (data.type !== 0) {
    // The holder repeating its reservation: GOOD, nothing changes; any other attempt to create
    // a reservation, or to change its type, conflicts.
    return data.holds(q.reg!) && data.type === q.type ? UNCHANGED : CONFLICT;
  }
  const next = data.clone();
  next.type = q.type;
  next.holder = isAllRegistrants(q.type) ? null : next.map(data, q.reg!);
  return change(next);
}

/** RELEASE (§5.9.11.2). */
function release(q: Request): Change | number {
  if (!keyMatches(q)) return CONFLICT;
  const data = q.data;
  // No reservation, or a registrant that does not hold it: GOOD, nothing released.
  if (data.type === 0 || !data.holds(q.reg!)) return UNCHANGED;
  if (data.type !== q.type) throw new SenseError(Sense.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
  const next = data.clone();
  const ch = change(next);
  next.release();
  if (isRegistrantsOnly(data.type) || isAllRegistrants(data.type)) ua(ch, next.registrations, Sense.RESERVATIONS_RELEASED);
  return ch;
}

/** CLEAR (§5.9.11.6): every registration and the reservation go; the others are told. */
function clear(q: Request): Change | number {
  if (!keyMatches(q)) return CONFLICT;
  const next = q.data.clone();
  const ch = change(next);
  ua(ch, q.data.registrations, Sense.RESERVATIONS_PREEMPTED);
  next.registrations = [];
  next.release();
  next.bumpGeneration();
  return ch;
}

/** PREEMPT and PREEMPT AND ABORT (§5.9.11.4, §5.9.11.5). */
function preempt(q: Request, abort: boolean): Change | number {
  if (!keyMatches(q)) return CONFLICT;
  const data = q.data;
  const allRegistrants = data.type !== 0 && isAllRegistrants(data.type);
  // A zero SERVICE ACTION RESERVATION KEY preempts only an all registrants reservation.
  if (q.sark === 0n && !allRegistrants) throw SenseError.invalidParameterField(8);
  const next = data.clone();
  const ch = change(next);
  const mine = next.map(data, q.reg!);
  let preempted: Registration[];
  const takesReservation = data.type !== 0 && (allRegistrants ? q.sark === 0n : data.holder!.key === q.sark);
  if (!takesReservation) {
    // §5.9.11.4.4 removing registrations: every registration with that key (the sender's too,
    // if it has it); SCOPE and TYPE are ignored. A key nobody has conflicts.
    const lost = data.registrations.filter((r) => r.key === q.sark);
    if (lost.length === 0) return CONFLICT;
    for (const c of lost.map((r) => next.map(data, r))) next.remove(c);
    ua(ch, lost, Sense.REGISTRATIONS_PREEMPTED);
    preempted = lost;
  } else {
    // §5.9.11.4.3: release the holder's reservation, remove the registrations with the key (all
    // but the sender's for an all registrants type), and reserve for the sender with SCOPE and
    // TYPE. Preempting one's own reservation (to change its type) keeps one's registration.
    const lost = data.registrations.filter((r) => r !== q.reg && (allRegistrants || r.key === q.sark));
    const copies = lost.map((r) => next.map(data, r));
    next.release();
    for (const c of copies) next.remove(c);
    next.type = q.type;
    next.holder = isAllRegistrants(q.type) ? null : mine;
    ua(ch, lost, Sense.REGISTRATIONS_PREEMPTED);
    // Item f): a changed type tells the registrants that remain (all but the sender's nexus).
    if (data.type !== q.type) ua(ch, next.registrations, Sense.RESERVATIONS_RELEASED);
    // The commands aborted belong to the I_T nexuses of the preempted reservation and lost
    // registrations (§5.9.11.5): for all registrants, every registrant's.
    preempted = allRegistrants ? data.registrations.slice() : [...lost, data.holder!];
  }
  next.bumpGeneration();
  if (abort) ch.abort = preempted;
  return ch;
}

/** REGISTER AND MOVE (§5.9.8). */
function registerAndMove(q: Request): Change | number {
  const data = q.data;
  const p = q.params;
  if (q.reg === null) {
    if (data.type === 0) throw new SenseError(Sense.INVALID_FIELD_IN_CDB); // nothing to move
    return CONFLICT;
  }
  if (q.rk !== q.reg.key) return CONFLICT;
  if (data.type === 0) throw new SenseError(Sense.INVALID_FIELD_IN_CDB);
  // Only the holder moves the reservation, and an all registrants one cannot be moved.
  if (!data.holds(q.reg) || isAllRegistrants(data.type)) return CONFLICT;
  if (q.sark === 0n) throw SenseError.invalidParameterField(8);
  const rtpi = be16(p, 18);
  const tidLength = be32(p, 20);
  if (tidLength === 0) throw SenseError.invalidParameterField(20);
  // The destination target port: one this target has served (its protocol is then known).
  let port: NexusRecord | null = null;
  for (const r of q.core.knownNexuses()) {
    if (r.targetPortId === rtpi) {
      port = r;
      break;
    }
  }
  if (port === null) throw SenseError.invalidParameterField(18);
  const t = decodeTransportId(p, BASIC_LENGTH, tidLength);
  if (t.length !== tidLength) throw SenseError.invalidParameterField(20);
  if (port.protocolId >= 0 && (p[BASIC_LENGTH] & 0x0f) !== port.protocolId) throw SenseError.invalidParameterField(BASIC_LENGTH, 3);
  // The TransportID naming the sender's own initiator port is INVALID FIELD IN PARAMETER LIST.
  if (t.name === q.name) throw SenseError.invalidParameterField(BASIC_LENGTH);
  const next = data.clone();
  const mine = next.map(data, q.reg);
  let dest = next.find(t.name, rtpi);
  if (dest !== null) {
    dest.key = q.sark; // registered already: it takes the new key (not an error, §5.9.8)
  } else {
    dest = new Registration(t.name, rtpi, q.sark);
    next.registrations.push(dest);
    checkResources(next);
  }
  next.holder = dest; // same type and scope: SCOPE and TYPE of the CDB are ignored
  if ((p[17] & UNREG) !== 0) next.remove(mine);
  next.aptpl = (p[17] & MOVE_APTPL) !== 0;
  next.bumpGeneration();
  return change(next);
}
