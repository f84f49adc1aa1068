// Asymmetric logical unit access (SPC-4 r37 §5.15): target port groups and their asymmetric
// access states, the per-state command gate, REPORT TARGET PORT GROUPS (§6.37) and SET TARGET
// PORT GROUPS (§6.45).
//
// Model. A target port is a relative target port id (one per vhost-user socket, one per TCMU
// path). Target port groups are target-wide: every logical unit is reached through every port,
// so one set of groups and states serves every LU (SPC-4 lets LUs share them; they behave as
// one logical unit group). The hot path reads one byte: the state of the command's port.
//
// Where a port's group comes from:
//  - never configured: from the fabric's ITNexus.targetPortGroup (default 1) of the first
//    nexus seen on the port; such groups start active/optimized, not preferred;
//  - configured (setTargetPortGroups): the configuration, which is authoritative. A port the
//    configuration does not list is put in group 0 (an id configurations cannot use), whose
//    state is UNAVAILABLE: an operator who configured ALUA did not mean that path to carry I/O.
import type { Task } from './command';
import { AluaAccess } from './command-def';
import type { CommandDef, Core } from './command-def';
import type { NexusRecord } from './nexus';
import { Sense, SenseCondition, SenseError } from './sense';
import { be16, be32, copyFromSegments, putBe16, putBe32 } from './bytes';

/** SPC-4 §6.37 table (ASYMMETRIC ACCESS STATE field). LBA dependent (4h) is not supported. */
export const enum AluaState {
  ACTIVE_OPTIMIZED = 0x0,
  ACTIVE_NON_OPTIMIZED = 0x1,
  STANDBY = 0x2,
  UNAVAILABLE = 0x3,
  /** SPC-4 defines offline as a secondary (per-port) state; here it applies to a whole group */
  OFFLINE = 0xe,
  TRANSITIONING = 0xf,
}

/** SPC-4 §6.37 STATUS CODE of a target port group descriptor. */
export const enum TargetPortGroupStatus {
  NO_STATUS = 0x00,
  ALTERED_BY_SET_TARGET_PORT_GROUPS = 0x01,
  ALTERED_BY_IMPLICIT_BEHAVIOR = 0x02,
}

/** SPC-4 §6.6.2 standard INQUIRY byte 5 TPGS (bits 5-4) = 11b: implicit and explicit ALUA. */
export const TPGS_IMPLICIT_AND_EXPLICIT = 0x30;

/** MAINTENANCE IN (A3h) service action REPORT TARGET PORT GROUPS (SPC-4 §6.37). */
export const MAINTENANCE_IN_REPORT_TARGET_PORT_GROUPS = 0x0a;
/** MAINTENANCE OUT operation code (SPC-4 annex D.3.1). */
export const OPCODE_MAINTENANCE_OUT = 0xa4;
/** MAINTENANCE OUT (A4h) service action SET TARGET PORT GROUPS (SPC-4 §6.45). */
export const MAINTENANCE_OUT_SET_TARGET_PORT_GROUPS = 0x0a;

/** One target port group of the configuration (ScsiTarget.setTargetPortGroups). */
export interface TargetPortGroupConfig {
  /** TARGET PORT GROUP, 1..65535 */
  id: number;
  state: AluaState;
  /** PREF bit of REPORT TARGET PORT GROUPS; default false */
  preferred?: boolean;
  /** relative target port ids 1..65535, each in exactly one group; at most 255 per group */
  ports: number[];
}

export interface AluaOptions {
  /**
   * REPORT TARGET PORT GROUPS extended header IMPLICIT TRANSITION TIME in seconds, 0..255 (0:
   * not specified). Linux uses it as its transition timeout. Default 10.
   */
  implicitTransitionSeconds?: number;
}

/** A target port group as ScsiTarget.targetPortGroups() reports it. */
export interface TargetPortGroupInfo {
  readonly id: number;
  readonly state: AluaState;
  readonly preferred: boolean;
  /** relative target port ids, ascending */
  readonly ports: readonly number[];
}

export const DEFAULT_IMPLICIT_TRANSITION_SECONDS = 10;
/** Group of the ports a configuration does not list (configured ids are 1..65535). */
export const UNCONFIGURED_PORTS_GROUP = 0;
/** TARGET PORT COUNT is one byte (SPC-4 §6.37). */
const MAX_PORTS_PER_GROUP = 255;

// SPC-4 §6.37 target port group descriptor byte 1: T_SUP, O_SUP, LBD_SUP, U_SUP, S_SUP,
// AN_SUP, AO_SUP. Every group can be put in every state we implement (LBA dependent excluded).
const T_SUP = 0x80;
const O_SUP = 0x40;
const U_SUP = 0x08;
const S_SUP = 0x04;
const AN_SUP = 0x02;
const AO_SUP = 0x01;
const SUPPORTED_STATES = T_SUP | O_SUP | U_SUP | S_SUP | AN_SUP | AO_SUP;

/** REPORT TARGET PORT GROUPS PARAMETER DATA FORMAT (CDB byte 1 bits 7-5; SPC-4 §6.37). */
const enum RtpgFormat {
  LENGTH_ONLY = 0x0,
  EXTENDED = 0x1,
}

const NAMES: readonly [AluaState, string, string][] = [
  [AluaState.ACTIVE_OPTIMIZED, 'active/optimized', 'active-optimized'],
  [AluaState.ACTIVE_NON_OPTIMIZED, 'active/non-optimized', 'active-non-optimized'],
  [AluaState.STANDBY, 'standby', 'standby'],
  [AluaState.UNAVAILABLE, 'unavailable', 'unavailable'],
  [AluaState.OFFLINE, 'offline', 'offline'],
  [AluaState.TRANSITIONING, 'transitioning', 'transitioning'],
];

/** The Linux sysfs access_state spelling (scsi_dh_alua), e.g. 'active/non-optimized'. */
export function aluaStateName(s: AluaState): string {
  for (const [state, name] of NAMES) if (state === s) return name;
  return `reserved (${Number(s).toString(16)}h)`;
}

/** The state named `text`: the sysfs spellings, or the hyphenated config ones ('active-optimized'). */
export function parseAluaState(text: string): AluaState | null {
  if (typeof text !== 'string') return null;
  const t = text.trim().toLowerCase();
  for (const [state, name, config] of NAMES) if (t === name || t === config) return state;
  return null;
}

function isAluaState(s: unknown): s is AluaState {
  return s === AluaState.ACTIVE_OPTIMIZED || s === AluaState.ACTIVE_NON_OPTIMIZED || s === AluaState.STANDBY ||
    s === AluaState.UNAVAILABLE || s === AluaState.OFFLINE || s === AluaState.TRANSITIONING;
}

// ---- the gate (SPC-4 §5.15.2.4) ----

/**
 * The most permissive AluaAccess class each state lets through, indexed by state; -1 lets
 * nothing through. The sets nest (transitioning ⊂ unavailable ⊂ standby ⊂ active), so one
 * comparison decides (SPC-4 §5.15.2.4, one subclause per state):
 *  - active/optimized, active/non-optimized: everything;
 *  - standby (§5.15.2.4.4): up to STANDBY;
 *  - unavailable (§5.15.2.4.5): up to UNAVAILABLE;
 *  - transitioning: ALWAYS only;
 *  - offline (a secondary state): nothing, the port does not reach the logical unit.
 */
const CEILING = new Int8Array(16).fill(-1);
CEILING[AluaState.ACTIVE_OPTIMIZED] = AluaAccess.ACTIVE;
CEILING[AluaState.ACTIVE_NON_OPTIMIZED] = AluaAccess.ACTIVE;
CEILING[AluaState.STANDBY] = AluaAccess.STANDBY;
CEILING[AluaState.UNAVAILABLE] = AluaAccess.UNAVAILABLE;
CEILING[AluaState.TRANSITIONING] = AluaAccess.ALWAYS;

/** NOT READY condition of each state for a command it does not allow (SPC-4 annex D.2). */
const DENIAL: (SenseCondition | null)[] = new Array<SenseCondition | null>(16).fill(null);
DENIAL[AluaState.STANDBY] = Sense.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE;
DENIAL[AluaState.UNAVAILABLE] = Sense.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE;
DENIAL[AluaState.OFFLINE] = Sense.LOGICAL_UNIT_NOT_READY_OFFLINE;
DENIAL[AluaState.TRANSITIONING] = Sense.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION;

/**
 * The ALUA gate for a port that is not active/optimized (the caller tests that case): null
 * when `state` allows the command, else the NOT READY condition to report. An unknown
 * command (def null) is not one a restricted state allows. O(1), allocation free.
 */
export function aluaDenial(state: number, def: CommandDef | null): SenseCondition | null {
  const access = def === null ? AluaAccess.ACTIVE : def.alua;
  return access <= CEILING[state] ? null : DENIAL[state];
}

// ---- target port groups ----

interface Group {
  readonly id: number;
  state: AluaState;
  preferred: boolean;
  status: TargetPortGroupStatus;
  /** relative target port ids, ascending */
  ports: number[];
}

function newGroup(id: number, state: AluaState, preferred: boolean, status = TargetPortGroupStatus.NO_STATUS): Group {
  return { id, state, preferred, status, ports: [] };
}

function addPort(g: Group, port: number): void {
  g.ports.push(port);
  g.ports.sort((a, b) => a - b);
}

/** A stable description of a group set, to tell whether a reconfiguration changed anything. */
function signature(groups: Map<number, Group>): string {
  return [...groups.values()].filter((g) => g.ports.length > 0).sort((a, b) => a.id - b.id)
    .map((g) => `${g.id}:${g.state}:${g.preferred ? 1 : 0}:${g.ports.join(',')}`).join(';');
}

function describeValue(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** Validates a configuration; RangeError naming the first fault. */
function validateConfig(groups: unknown, options: unknown): { groups: TargetPortGroupConfig[]; seconds: number } {
  const what = 'setTargetPortGroups';
  if (!Array.isArray(groups)) throw new RangeError(`${what}: groups must be an array`);
  const ids = new Set<number>();
  const owner = new Map<number, number>();
  groups.forEach((g: unknown, i: number) => {
    if (g === null || typeof g !== 'object') throw new RangeError(`${what}: groups[${i}] must be an object`);
    const { id, state, preferred, ports } = g as Record<string, unknown>;
    if (!Number.isInteger(id) || (id as number) < 1 || (id as number) > 0xffff) {
      throw new RangeError(`${what}: groups[${i}].id must be an integer 1..65535, got ${describeValue(id)}`);
    }
    const gid = id as number;
    if (ids.has(gid)) throw new RangeError(`${what}: target port group ${gid} is configured twice`);
    ids.add(gid);
    if (!isAluaState(state)) {
      throw new RangeError(`${what}: target port group ${gid}: ${describeValue(state)} is not an asymmetric access state ` +
        '(active/optimized 0, active/non-optimized 1, standby 2, unavailable 3, offline 14, transitioning 15)');
    }
    if (preferred !== undefined && typeof preferred !== 'boolean') {
      throw new RangeError(`${what}: target port group ${gid}: preferred must be a boolean, got ${describeValue(preferred)}`);
    }
    if (!Array.isArray(ports) || ports.length === 0) {
      throw new RangeError(`${what}: target port group ${gid}: ports must be a non-empty array of relative target port ids`);
    }
    if (ports.length > MAX_PORTS_PER_GROUP) {
      throw new RangeError(`${what}: target port group ${gid} has ${ports.length} ports; a group holds at most ${MAX_PORTS_PER_GROUP} (TARGET PORT COUNT is one byte)`);
    }
    for (const p of ports as unknown[]) {
      if (!Number.isInteger(p) || (p as number) < 1 || (p as number) > 0xffff) {
        throw new RangeError(`${what}: target port group ${gid}: relative target port ids are integers 1..65535, got ${describeValue(p)}`);
      }
      const other = owner.get(p as number);
      if (other !== undefined) {
        throw new RangeError(other === gid
          ? `${what}: target port group ${gid} lists relative target port ${p} twice`
          : `${what}: relative target port ${p} is in target port groups ${other} and ${gid}; a port belongs to one group`);
      }
      owner.set(p as number, gid);
    }
  });
  let seconds = DEFAULT_IMPLICIT_TRANSITION_SECONDS;
  if (options !== undefined) {
    if (options === null || typeof options !== 'object') throw new RangeError(`${what}: options must be an object`);
    const s = (options as AluaOptions).implicitTransitionSeconds;
    if (s !== undefined) {
      if (!Number.isInteger(s) || s < 0 || s > 255) {
        throw new RangeError(`${what}: implicitTransitionSeconds must be an integer 0..255, got ${describeValue(s)}`);
      }
      seconds = s;
    }
  }
  return { groups: groups as TargetPortGroupConfig[], seconds };
}

/** SET TARGET PORT GROUPS: the private copy of the parameter list and the validated descriptors (reused). */
let stpgCopy = new Uint8Array(64);
const stpgGroups: Group[] = [];
const stpgStates: AluaState[] = [];

/** INVALID FIELD IN PARAMETER LIST; the field pointer is 16 bits, so offsets beyond it go without one. */
function invalidParameter(byte: number, bit?: number): SenseError {
  return byte <= 0xffff ? SenseError.invalidParameterField(byte, bit) : new SenseError(Sense.INVALID_FIELD_IN_PARAMETER_LIST);
}

function msb(v: number): number {
  return 31 - Math.clz32(v);
}

/**
 * The target's target port groups and their states. One per ScsiTarget; it tells the target
 * which unit attentions to establish through `raise`.
 */
export class TargetPortGroups {
  /**
   * @internal Asymmetric access state of every relative target port (index: the port id), the
   * only thing the ALUA gate reads. A port no nexus came through reads active/optimized, but
   * the core registers a port (portSeen) before any command of it reaches the gate.
   */
  readonly stateByPort = new Uint8Array(0x10000);
  private groups = new Map<number, Group>();
  private readonly groupOfPort = new Map<number, Group>();
  /** ports an I_T nexus came through */
  private readonly seen = new Set<number>();
  private configured = false;
  private transitionSeconds = DEFAULT_IMPLICIT_TRANSITION_SECONDS;

  /**
   * `records`: every known I_T nexus. `raise`: establishes a unit attention for a nexus on every
   * logical unit.
   */
  constructor(private readonly records: () => readonly NexusRecord[],
    private readonly raise: (rec: NexusRecord, c: SenseCondition) => void) {
    // Never configured: one group 1, active/optimized, for every port the fabric does not
    // place elsewhere (ITNexus.targetPortGroup).
    this.groups.set(1, newGroup(1, AluaState.ACTIVE_OPTIMIZED, false));
  }

  /** @internal First nexus through a port (or any new nexus): places the port, and names its group in the record (VPD 83h). */
  portSeen(rec: NexusRecord): void {
    const port = rec.targetPortId;
    let g = this.groupOfPort.get(port);
    if (g === undefined) {
      g = this.configured ? this.unconfiguredGroup() : this.defaultGroup(rec.targetPortGroup);
      addPort(g, port);
      this.groupOfPort.set(port, g);
      this.stateByPort[port] = g.state;
    }
    this.seen.add(port);
    rec.targetPortGroup = g.id;
  }

  private defaultGroup(hint: number): Group {
    let g = this.groups.get(hint);
    if (g === undefined) {
      g = newGroup(hint, AluaState.ACTIVE_OPTIMIZED, false);
      this.groups.set(hint, g);
    }
    return g;
  }

  private unconfiguredGroup(): Group {
    let g = this.groups.get(UNCONFIGURED_PORTS_GROUP);
    if (g === undefined) {
      g = newGroup(UNCONFIGURED_PORTS_GROUP, AluaState.UNAVAILABLE, false);
      this.groups.set(UNCONFIGURED_PORTS_GROUP, g);
    }
    return g;
  }

  /**
   * Replaces the configuration (validated whole first: a RangeError changes nothing). A group
   * keeping its id keeps its status code unless its state changes (then 02h, implicit). If any
   * group's state, preference or ports changed, every I_T nexus gets ASYMMETRIC ACCESS STATE
   * CHANGED on every LU; a nexus whose port moved to another group first gets INQUIRY DATA
   * HAS CHANGED (its VPD 83h target port group designator changed; SPC-4 §6.6.1).
   */
  configure(config: TargetPortGroupConfig[], options?: AluaOptions): void {
    const v = validateConfig(config, options);
    const before = signature(this.groups);
    const oldGroupOfPort = new Map<number, number>();
    for (const p of this.seen) oldGroupOfPort.set(p, this.groupOfPort.get(p)!.id);
    const next = new Map<number, Group>();
    for (const c of v.groups) {
      const old = this.groups.get(c.id);
      const status = old === undefined ? TargetPortGroupStatus.NO_STATUS
        : old.state !== c.state ? TargetPortGroupStatus.ALTERED_BY_IMPLICIT_BEHAVIOR : old.status;
      const g = newGroup(c.id, c.state, c.preferred === true, status);
      g.ports = [...c.ports].sort((a, b) => a - b);
      next.set(c.id, g);
    }
    const old0 = this.groups.get(UNCONFIGURED_PORTS_GROUP);
    for (const p of this.groupOfPort.keys()) this.stateByPort[p] = 0;
    this.groupOfPort.clear();
    this.groups = next;
    this.configured = true;
    this.transitionSeconds = v.seconds;
    for (const g of next.values()) for (const p of g.ports) this.groupOfPort.set(p, g);
    for (const p of this.seen) {
      if (this.groupOfPort.has(p)) continue;
      const g = this.unconfiguredGroup();
      if (old0 !== undefined) {
        g.status = old0.state === g.state ? old0.status : TargetPortGroupStatus.ALTERED_BY_IMPLICIT_BEHAVIOR;
      }
      addPort(g, p);
      this.groupOfPort.set(p, g);
    }
    this.refreshPorts();
    const regrouped = new Set<number>();
    for (const [p, gid] of oldGroupOfPort) if (this.groupOfPort.get(p)!.id !== gid) regrouped.add(p);
    if (signature(this.groups) !== before || regrouped.size > 0) this.changed(regrouped, null);
  }

  /**
   * An operator changes group `id` to `state`: an implicit transition (SPC-4 §5.15.2.5), which
   * completes at once. Status code 02h; ASYMMETRIC ACCESS STATE CHANGED for every I_T nexus on
   * every LU. RangeError for an unknown group or state. Setting the current state is a no-op.
   */
  setState(id: number, state: AluaState): void {
    if (!isAluaState(state)) throw new RangeError(`setTargetPortGroupState: ${describeValue(state)} is not an asymmetric access state`);
    const g = Number.isInteger(id) ? this.groups.get(id) : undefined;
    if (g === undefined) throw new RangeError(`setTargetPortGroupState: no target port group ${describeValue(id)}`);
    if (this.configured && id === UNCONFIGURED_PORTS_GROUP) {
      throw new RangeError('setTargetPortGroupState: group 0 holds the ports the configuration does not list; configure them in a group');
    }
    if (g.state === state) return;
    g.state = state;
    g.status = TargetPortGroupStatus.ALTERED_BY_IMPLICIT_BEHAVIOR;
    this.refreshPorts();
    this.changed(null, null);
  }

  /** Groups that have ports, ascending by id. */
  list(): readonly TargetPortGroupInfo[] {
    return this.sortedGroups().map((g) => Object.freeze({
      id: g.id, state: g.state, preferred: g.preferred, ports: Object.freeze([...g.ports]),
    }));
  }

  private sortedGroups(): Group[] {
    return [...this.groups.values()].filter((g) => g.ports.length > 0).sort((a, b) => a.id - b.id);
  }

  private refreshPorts(): void {
    for (const [p, g] of this.groupOfPort) this.stateByPort[p] = g.state;
    for (const r of this.records()) r.targetPortGroup = this.groupOfPort.get(r.targetPortId)?.id ?? r.targetPortGroup;
  }

  private changed(regrouped: ReadonlySet<number> | null, except: NexusRecord | null): void {
    for (const r of this.records()) {
      if (regrouped !== null && regrouped.has(r.targetPortId)) this.raise(r, Sense.INQUIRY_DATA_HAS_CHANGED);
      // SPC-4 §5.15.2.5: after an implicit change every I_T nexus; after SET TARGET PORT GROUPS
      // every I_T nexus other than the one the command came through.
      if (r !== except) this.raise(r, Sense.ASYMMETRIC_ACCESS_STATE_CHANGED);
    }
  }

  /**
   * REPORT TARGET PORT GROUPS parameter data (SPC-4 §6.37) into core.response(); returns its
   * full length (the core clamps to the ALLOCATION LENGTH). Extended format: byte 4 FORMAT
   * TYPE 001b, byte 5 IMPLICIT TRANSITION TIME. RETURN DATA LENGTH counts every byte after it.
   */
  report(core: Core, extended: boolean): number {
    const groups = this.sortedGroups();
    const header = extended ? 8 : 4;
    let n = header;
    for (const g of groups) n += 8 + 4 * Math.min(g.ports.length, MAX_PORTS_PER_GROUP);
    const b = core.response(n);
    putBe32(b, 0, n - 4);
    if (extended) {
      b[4] = RtpgFormat.EXTENDED << 4;
      b[5] = this.transitionSeconds;
    }
    let p = header;
    for (const g of groups) {
      const count = Math.min(g.ports.length, MAX_PORTS_PER_GROUP);
      b[p] = (g.preferred ? 0x80 : 0) | g.state;
      b[p + 1] = SUPPORTED_STATES;
      putBe16(b, p + 2, g.id);
      b[p + 5] = g.status;
      b[p + 7] = count;
      p += 8;
      // Target port descriptor: bytes 0-1 obsolete, 2-3 RELATIVE TARGET PORT IDENTIFIER.
      for (let i = 0; i < count; i++, p += 4) putBe16(b, p + 2, g.ports[i]);
    }
    return n;
  }

  /**
   * SET TARGET PORT GROUPS (SPC-4 §6.45) with a parameter list of `len` bytes (a multiple of 4,
   * at least 4: parse checked). Every descriptor is validated before any state changes; then
   * the named groups take their states (explicit transitions complete at once), status code
   * 01h where the state changed, and every other I_T nexus gets ASYMMETRIC ACCESS STATE CHANGED.
   */
  setFromCommand(dataOut: readonly Uint8Array[], len: number, from: NexusRecord): void {
    const count = (len - 4) >>> 2;
    // Validation stops at the first fault, and a valid list names each group at most once, so
    // a fault always lies within the first (groups + 1) descriptors: only those are copied.
    const checked = Math.min(count, this.groups.size + 1);
    const n = 4 + 4 * checked;
    if (stpgCopy.length < n) stpgCopy = new Uint8Array(n);
    const p = stpgCopy;
    // guest-controlled: copied privately before validation (reliability.md V9.2), validated here.
    copyFromSegments(dataOut, 0, p, 0, n);
    for (let i = 0; i < 4; i++) if (p[i] !== 0) throw invalidParameter(i, msb(p[i]));
    stpgGroups.length = 0;
    stpgStates.length = 0;
    for (let k = 0; k < checked; k++) {
      const off = 4 + 4 * k;
      if ((p[off] & 0xf0) !== 0) throw invalidParameter(off, msb(p[off] & 0xf0));
      const state = p[off] & 0x0f;
      // Only the primary states may be requested (SPC-4 §6.45); transitioning is the target's
      // own, offline and LBA dependent are not offered to initiators.
      if (state !== AluaState.ACTIVE_OPTIMIZED && state !== AluaState.ACTIVE_NON_OPTIMIZED &&
          state !== AluaState.STANDBY && state !== AluaState.UNAVAILABLE) {
        throw invalidParameter(off, 3);
      }
      if (p[off + 1] !== 0) throw invalidParameter(off + 1, msb(p[off + 1]));
      const id = be16(p, off + 2);
      const g = this.groups.get(id);
      // Unknown groups, groups REPORT TARGET PORT GROUPS does not show (no ports), the group of
      // unconfigured ports (the operator's to place), a group named twice, and an offline group
      // (taken out of service by the operator) cannot be set.
      if (g === undefined || g.ports.length === 0 || (this.configured && id === UNCONFIGURED_PORTS_GROUP) ||
          stpgGroups.includes(g) || g.state === AluaState.OFFLINE) {
        throw invalidParameter(off + 2);
      }
      // A group the operator holds in transition: NOT READY, retryable (Linux scsi_dh_alua
      // retries on 04/0A), rather than overriding the operator.
      if (g.state === AluaState.TRANSITIONING) throw new SenseError(Sense.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION);
      stpgGroups.push(g);
      stpgStates.push(state as AluaState);
    }
    if (checked < count) throw invalidParameter(4 + 4 * checked + 2); // unreachable: see above
    let changed = false;
    for (let k = 0; k < stpgGroups.length; k++) {
      const g = stpgGroups[k];
      if (g.state === stpgStates[k]) continue;
      g.state = stpgStates[k];
      g.status = TargetPortGroupStatus.ALTERED_BY_SET_TARGET_PORT_GROUPS;
      changed = true;
    }
    stpgGroups.length = 0;
    stpgStates.length = 0;
    if (!changed) return;
    this.refreshPorts();
    this.changed(null, from);
  }
}

// ---- REPORT TARGET PORT GROUPS (MAINTENANCE IN A3h / 0Ah, SPC-4 §6.37) ----

/** CDB: byte 1 bits 7-5 PARAMETER DATA FORMAT, bytes 6-9 ALLOCATION LENGTH. */
export function parseReportTargetPortGroups(task: Task, cdb: Uint8Array): void {
  const format = cdb[1] >>> 5;
  // 000b length only, 001b extended header; the rest are reserved.
  if (format !== RtpgFormat.LENGTH_ONLY && format !== RtpgFormat.EXTENDED) throw SenseError.invalidCdbField(1, 7);
  task.aux = format;
  task.dataLength = be32(cdb, 6);
}

export function executeReportTargetPortGroups(core: Core, task: Task): number {
  return core.portGroups.report(core, task.aux === RtpgFormat.EXTENDED);
}

// ---- SET TARGET PORT GROUPS (MAINTENANCE OUT A4h / 0Ah, SPC-4 §6.45) ----

const STPG_HEADER = 4;
const STPG_DESCRIPTOR = 4;

/** CDB: bytes 6-9 PARAMETER LIST LENGTH. */
export function parseSetTargetPortGroups(task: Task, cdb: Uint8Array, _lu: unknown, core: Core): void {
  // guest-controlled: validated here. Bounded like every data-out by MAXIMUM TRANSFER LENGTH.
  const len = be32(cdb, 6);
  if (len > core.maxTransferBytes) throw SenseError.invalidCdbField(6);
  // 0: nothing to do, not an error. Otherwise the 4-byte header and whole 4-byte descriptors:
  // a length that cuts the header or a descriptor short is PARAMETER LIST LENGTH ERROR.
  if (len > 0 && (len < STPG_HEADER || (len - STPG_HEADER) % STPG_DESCRIPTOR !== 0)) {
    throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);
  }
  task.dataLength = len;
}

export function executeSetTargetPortGroups(core: Core, task: Task): number {
  const len = task.dataLength;
  if (len === 0) return 0;
  core.portGroups.setFromCommand(task.cmd.dataOut, len, task.nexus!);
  task.cmd.dataOutTransferred = len;
  return 0;
}
