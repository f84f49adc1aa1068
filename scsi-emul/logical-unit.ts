// A logical unit: a BlockStore plus its SCSI identity, mode state, unit attentions and task set.
import { createHash } from 'node:crypto';
import type { BlockStore } from './store';
import { SenseCondition, unitAttentionRank } from './sense';
import { Task, TaskState } from './command';
import { TaskAttribute } from './constants';
import type { NexusRecord } from './nexus';
import { BlockLimits, Provisioning, defaultBlockLimits, defaultProvisioning } from './vpd';
import { RangeLock, RangeLockHolder } from './range-lock';
import { initSbcParameters, storeIsThin } from './sbc-limits';
import { PersistentReservations, type PersistentReservationsOptions } from './persistent-reservations';

export interface LogicalUnitIdentity {
  /** T10 vendor identification, ≤ 8 printable ASCII characters (SPC-4 §6.6.2). */
  vendor?: string;
  /** ≤ 16 printable ASCII characters. */
  product?: string;
  /** ≤ 4 printable ASCII characters. */
  revision?: string;
  /** Unit serial number (VPD 80h), 1..200 printable ASCII characters. */
  serial?: string;
  /** 24-bit IEEE company id for the NAA 6h designator (VPD 83h). */
  naaOui?: number;
}

export interface LogicalUnitOptions {
  identity?: LogicalUnitIdentity;
  blockSize?: 512 | 4096;
  /**
   * Physical block size (READ CAPACITY(16) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT): 4096
   * with 512-byte logical blocks is 512e. Default: the logical block size.
   */
  physicalBlockSize?: 512 | 4096;
  /** default true: write-back, WCE=1 DPOFUA=1 (reliability.md §4.6) */
  writeCache?: boolean;
  readOnly?: boolean;
  name?: string;
  /** LOGICAL UNIT GROUP of the VPD 83h designator type 6h (SPC-4 §7.8.6.8); default 0 */
  logicalUnitGroup?: number;
  /**
   * Where the LU's persistent reservations are saved and what was restored at start
   * (persistent-reservations.ts). Without it they work but live only as long as the process.
   */
  persistentReservations?: PersistentReservationsOptions;
}

/**
 * Defaults. No T10 vendor id is registered for this project, so the vendor field names the
 * project; the NAA company id is a locally administered value (first octet 02h, as in a
 * locally administered MAC address). Sites with their own OUI should configure it.
 */
export const DEFAULT_VENDOR = 'VHOST-TS';
export const DEFAULT_PRODUCT = 'vhost-scsi-ts';
export const DEFAULT_REVISION = '0.1';
export const DEFAULT_NAA_OUI = 0x025654;

export interface ResolvedIdentity {
  /** space padded to 8 / 16 / 4 characters (SPC-4 §4.4.1: left-aligned ASCII) */
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly serial: string;
  readonly naaOui: number;
  /** the 16-byte NAA IEEE Registered Extended designator (SPC-4 §7.8.6.6.5) */
  readonly naa: Uint8Array;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

function asciiField(value: string | undefined, fallback: string, width: number, what: string): string {
  const v = value ?? fallback;
  if (typeof v !== 'string' || v.length > width || !PRINTABLE.test(v)) {
    throw new RangeError(`${what} must be at most ${width} printable ASCII characters, got ${JSON.stringify(v)}`);
  }
  return v.padEnd(width, ' ');
}

/** Serial derived stably from the LU name: the first 16 hex digits of SHA-256. */
export function defaultSerial(name: string): string {
  return createHash('sha256').update(`vhost-scsi-ts/serial/${name}`).digest('hex').slice(0, 16).toUpperCase();
}

/**
 * NAA 6h (IEEE Registered Extended): NAA nibble, 24-bit company id, 36-bit vendor specific
 * identifier and 64-bit extension. The 100 vendor bits are the start of SHA-256(serial), so
 * the designator is stable for a serial and distinct between serials.
 */
export function naaDesignator(oui: number, serial: string): Uint8Array {
  const h = createHash('sha256').update(`vhost-scsi-ts/naa/${serial}`).digest();
  const d = new Uint8Array(16);
  d[0] = 0x60 | ((oui >>> 20) & 0x0f);
  d[1] = (oui >>> 12) & 0xff;
  d[2] = (oui >>> 4) & 0xff;
  d[3] = ((oui & 0x0f) << 4) | (h[0] & 0x0f);
  for (let i = 0; i < 12; i++) d[4 + i] = h[1 + i];
  return d;
}

export function resolveIdentity(id: LogicalUnitIdentity | undefined, name: string): ResolvedIdentity {
  const i = id ?? {};
  const vendor = asciiField(i.vendor, DEFAULT_VENDOR, 8, 'identity.vendor');
  const product = asciiField(i.product, DEFAULT_PRODUCT, 16, 'identity.product');
  const revision = asciiField(i.revision, DEFAULT_REVISION, 4, 'identity.revision');
  const serial = i.serial ?? defaultSerial(name);
  if (typeof serial !== 'string' || serial.length < 1 || serial.length > 200 || !PRINTABLE.test(serial)) {
    throw new RangeError(`identity.serial must be 1..200 printable ASCII characters, got ${JSON.stringify(serial)}`);
  }
  const naaOui = i.naaOui ?? DEFAULT_NAA_OUI;
  if (!Number.isInteger(naaOui) || naaOui < 0 || naaOui > 0xffffff) {
    throw new RangeError(`identity.naaOui must be a 24-bit integer, got ${naaOui}`);
  }
  return Object.freeze({ vendor, product, revision, serial, naaOui, naa: naaDesignator(naaOui, serial) });
}

export class LogicalUnit {
  readonly store: BlockStore;
  readonly blockSize: number;
  /** log2(physical / logical block size): 3 for 512e (SBC-3 r36 §5.16.2) */
  readonly physicalBlockExponent: number;
  /** makes COMPARE AND WRITE, WRITE ATOMIC and FORMAT UNIT atomic against other commands and copies */
  readonly rangeLock = new RangeLock<RangeLockHolder>();
  readonly name: string;
  readonly identity: ResolvedIdentity;
  /** write protected: configured read-only, or the store is (then it is also opened O_RDONLY) */
  readonly readOnly: boolean;
  /** power-on value of WCE (caching mode page default) */
  readonly writeCacheDefault: boolean;
  /** current WCE: true = write-back, false = write-through (reliability.md §4.6) */
  writeCache: boolean;
  /** current D_SENSE of the Control mode page: descriptor-format sense data */
  descriptorSense = false;
  /**
   * current SWP of the Control mode page (SPC-4 §7.5.8): writes get DATA PROTECT / WRITE
   * PROTECTED and MODE SENSE reports WP, like readOnly, but a MODE SELECT can clear it.
   */
  softwareWriteProtect = false;
  /**
   * VPD B0h values (SBC-3 §6.5.3) beyond MAXIMUM TRANSFER LENGTH (which the target derives).
   * Zero means "not reported"; the handlers that enforce a limit read it from here too, so the
   * page and the checks can never disagree.
   */
  readonly blockLimits: BlockLimits = defaultBlockLimits();
  /** VPD B2h values (SBC-3 §6.5.4); READ CAPACITY(16) LBPME/LBPRZ must agree with them. */
  readonly provisioning: Provisioning = defaultProvisioning();
  /** VPD 83h logical unit group (SPC-4 §7.8.6.8). */
  readonly logicalUnitGroup: number;
  /** Persistent and SPC-2 reservations, shared by every I_T nexus (persistent-reservations.ts). */
  readonly pr: PersistentReservations;
  /**
   * Set when a write-back error was reported (fdatasync EIO): Linux may have dropped the
   * dirty pages, so a later flush could "succeed" without the data. Every later write and
   * flush fails until an operator re-opens the LU (reliability.md §4.6, fsyncgate).
   */
  failed: Error | null = null;
  /** @internal set when added to a target */
  attached = false;
  /** @internal ScsiTarget.removeLogicalUnit: runs once neither tasks nor copies use the LU */
  idleWaiter: (() => void) | null = null;
  /**
   * @internal EXTENDED COPY commands received by other LUs that read or write this one
   * (xcopy.ts). Their tasks are not in this LU's task set, so removal waits for them separately.
   */
  copyUsers = 0;

  /** @internal runs the removal's idleWaiter once nothing uses the LU any more */
  checkIdle(): void {
    if (this.idleWaiter !== null && this.taskCount === 0 && this.copyUsers === 0) this.idleWaiter();
  }

  private capacity: number;
  // Task set (SAM-5 §8.6), a list in arrival order with counters for the ordering rules.
  /** @internal */ head: Task | null = null;
  /** @internal */ tail: Task | null = null;
  /** @internal */ taskCount = 0;
  /** @internal incomplete ORDERED + HEAD OF QUEUE tasks */
  blockingCount = 0;
  /** @internal */ waitingCount = 0;
  /** Pending unit attentions per I_T nexus, in establishment order. */
  private readonly unitAttentions = new Map<NexusRecord, SenseCondition[]>();

  constructor(store: BlockStore, options: LogicalUnitOptions = {}) {
    if (store === null || typeof store !== 'object') throw new TypeError('LogicalUnit: store is required');
    const blockSize = options.blockSize ?? 512;
    if (blockSize !== 512 && blockSize !== 4096) {
      throw new RangeError(`LogicalUnit: block size must be 512 or 4096, got ${blockSize}`);
    }
    this.store = store;
    this.blockSize = blockSize;
    const physical = options.physicalBlockSize ?? blockSize;
    if ((physical !== 512 && physical !== 4096) || physical < blockSize) {
      throw new RangeError(`LogicalUnit: physical block size must be 512 or 4096 and at least the logical block size ${blockSize}, got ${physical}`);
    }
    this.physicalBlockExponent = Math.log2(physical / blockSize);
    this.name = options.name ?? store.name;
    if (!Number.isSafeInteger(store.sizeBytes) || store.sizeBytes < blockSize || store.sizeBytes % blockSize !== 0) {
      throw new RangeError(`LogicalUnit ${this.name}: store size ${store.sizeBytes} is not a positive multiple of the block size ${blockSize}`);
    }
    this.capacity = store.sizeBytes / blockSize;
    this.identity = resolveIdentity(options.identity, this.name);
    this.readOnly = options.readOnly === true || store.readOnly === true;
    this.writeCacheDefault = options.writeCache ?? true;
    this.writeCache = this.writeCacheDefault;
    const group = options.logicalUnitGroup ?? 0;
    if (!Number.isInteger(group) || group < 0 || group > 0xffff) {
      throw new RangeError(`LogicalUnit ${this.name}: logicalUnitGroup must be 0..65535, got ${group}`);
    }
    this.logicalUnitGroup = group;
    this.pr = new PersistentReservations(options.persistentReservations, this.name);
    initSbcParameters(this.blockLimits, this.provisioning, blockSize, storeIsThin(store, this.readOnly));
  }

  get capacityBlocks(): bigint {
    return BigInt(this.capacity);
  }

  /** @internal capacity in blocks as an exact number (≤ 2^53 since it derives from a byte count) */
  get blocks(): number {
    return this.capacity;
  }

  /** @internal ScsiTarget.resizeLogicalUnit: the store has grown; take its new size. */
  storeResized(): void {
    this.capacity = Math.floor(this.store.sizeBytes / this.blockSize);
  }

  // ---- unit attentions (SAM-5 §5.14, reliability.md §4.8) ----

  /** Establishes `c` for nexus `n`; a condition already pending is not queued twice. */
  establishUnitAttention(n: NexusRecord, c: SenseCondition): void {
    let list = this.unitAttentions.get(n);
    if (list === undefined) {
      list = [];
      this.unitAttentions.set(n, list);
    }
    for (const p of list) if (p === c) return;
    list.push(c);
  }

  hasUnitAttention(n: NexusRecord): boolean {
    const list = this.unitAttentions.get(n);
    return list !== undefined && list.length > 0;
  }

  /** Removes and returns the highest-priority pending condition for `n` (oldest among equals). */
  takeUnitAttention(n: NexusRecord): SenseCondition | null {
    const list = this.unitAttentions.get(n);
    if (list === undefined || list.length === 0) return null;
    let best = 0;
    let bestRank = unitAttentionRank(list[0]);
    for (let i = 1; i < list.length; i++) {
      const r = unitAttentionRank(list[i]);
      if (r < bestRank) {
        best = i;
        bestRank = r;
      }
    }
    const c = list[best];
    list.splice(best, 1);
    return c;
  }

  /** Clears a specific pending condition for `n` (REPORT LUNS clears 3F/0E). */
  clearUnitAttention(n: NexusRecord, c: SenseCondition): void {
    const list = this.unitAttentions.get(n);
    if (list === undefined) return;
    const i = list.indexOf(c);
    if (i >= 0) list.splice(i, 1);
  }

  /** Pending conditions for `n`, in establishment order (tests, diagnostics). */
  pendingUnitAttentions(n: NexusRecord): readonly SenseCondition[] {
    return this.unitAttentions.get(n) ?? [];
  }

  // ---- task set ----

  /** @internal */
  appendTask(t: Task): void {
    t.prev = this.tail;
    t.next = null;
    if (this.tail !== null) this.tail.next = t;
    else this.head = t;
    this.tail = t;
    this.taskCount++;
    if (t.attr === TaskAttribute.ORDERED || t.attr === TaskAttribute.HEAD_OF_QUEUE) this.blockingCount++;
    if (t.state === TaskState.WAITING) this.waitingCount++;
  }

  /** @internal */
  removeTask(t: Task): void {
    if (t.prev !== null) t.prev.next = t.next;
    else this.head = t.next;
    if (t.next !== null) t.next.prev = t.prev;
    else this.tail = t.prev;
    t.prev = null;
    t.next = null;
    this.taskCount--;
    if (t.attr === TaskAttribute.ORDERED || t.attr === TaskAttribute.HEAD_OF_QUEUE) this.blockingCount--;
    if (t.state === TaskState.WAITING) this.waitingCount--;
  }
}
