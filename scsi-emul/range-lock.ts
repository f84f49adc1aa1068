// Per-LU LBA range lock: makes COMPARE AND WRITE, WRITE ATOMIC and FORMAT UNIT atomic with
// respect to every other command touching their blocks (SBC-3 r36 §5.2: "the device server
// shall ... perform the compare and write operations as an uninterrupted series of actions";
// reliability.md V7.9), without costing READ/WRITE anything while no such command exists.
//
// Two kinds of holders:
//  - shared (READ, WRITE, VERIFY, WRITE SAME, UNMAP, each store operation of an EXTENDED COPY,
//    ...): never conflict with each other;
//  - exclusive (COMPARE AND WRITE, WRITE ATOMIC, FORMAT UNIT): conflict with any overlap.
//
// Fast path: while no exclusive holder is held or waiting, a shared acquire only counts
// itself (`fast`): no list, no allocation, no range. An exclusive request cannot know where
// those untracked holders are, so it waits until all of them are gone (a one-time drain);
// shared requests arriving meanwhile are tracked with their range and only wait when they
// overlap an exclusive one. A shared holder may also ask to be tracked from the start
// (`acquireTracked`): EXTENDED COPY does, so an exclusive request waits for a copy chunk only
// when it overlaps it. Waiters are granted in arrival order among overlapping requests, so
// neither kind starves. Everything runs on the JS thread: no atomics are needed.
//
// The holder is whatever owns the lock state: a command's Task, or a copy job's holder
// (xcopy.ts). The lock keeps its lists in the holders' own fields, so it never allocates.
import type { Task } from './command';

export const enum LockState {
  NONE = 0,
  /** shared, untracked (no exclusive existed when it was granted) */
  FAST = 1,
  /** granted and in the held list */
  HELD = 2,
  /** in the waiting list */
  WAITING = 3,
}

/**
 * What a RangeLock needs of a holder: its request and the links of the held / waiting lists,
 * owned by the lock while lockState ≠ NONE, and the method a grant calls.
 */
export interface RangeLockHolder {
  /** LockState */
  lockState: number;
  lockExclusive: boolean;
  /** locked blocks [lockLba, lockEnd) */
  lockLba: number;
  lockEnd: number;
  /** next in the lock's held or waiting list */
  lockNext: RangeLockHolder | null;
  /**
   * The holder waited and has now been granted (it is in the held list). Runs inside the lock's
   * grant loop, so it must not assume anything about the lock's lists beyond its own entry;
   * releasing (even synchronously) is allowed.
   */
  lockGranted(): void;
}

function overlaps(a: RangeLockHolder, b: RangeLockHolder): boolean {
  return a.lockLba < b.lockEnd && b.lockLba < a.lockEnd;
}

function conflicts(a: RangeLockHolder, b: RangeLockHolder): boolean {
  return (a.lockExclusive || b.lockExclusive) && overlaps(a, b);
}

function grantHolder(holder: RangeLockHolder): void {
  holder.lockGranted();
}

/**
 * H is the holder type the grant hook receives. It defaults to Task, for locks only commands
 * use; a logical unit's lock is RangeLock<RangeLockHolder> because copy jobs hold ranges too.
 */
export class RangeLock<H extends RangeLockHolder = Task> {
  /** untracked shared holders */
  private fast = 0;
  /** exclusive requests held or waiting: while > 0, shared requests are tracked */
  private exclusives = 0;
  private held: RangeLockHolder | null = null;
  private waitHead: RangeLockHolder | null = null;
  private waitTail: RangeLockHolder | null = null;
  private pumping = false;
  private again = false;
  /** Called for a waiter once granted; by default its lockGranted() (Task: ScsiTarget.resume). */
  private readonly grant: (holder: H) => void;

  constructor(grant: (holder: H) => void = grantHolder) {
    this.grant = grant;
  }

  /**
   * Requests blocks [lba, end). Returns true when granted now; false when the holder waits (a
   * Task's execute() returns EXECUTE_ASYNC and is run again on grant). A granted or waiting
   * holder must be released exactly once (ScsiTarget.finish does it for every completed task).
   */
  acquire(holder: H, lba: number, end: number, exclusive: boolean): boolean {
    holder.lockLba = lba;
    holder.lockEnd = end;
    holder.lockExclusive = exclusive;
    if (!exclusive && this.exclusives === 0) {
      this.fast++;
      holder.lockState = LockState.FAST;
      return true;
    }
    if (exclusive) this.exclusives++;
    return this.enter(holder);
  }

  /**
   * A shared request that is always tracked (in the held list with its range), so exclusive
   * requests see where it is and wait for it only when they overlap. For holders that are few
   * and hold large ranges briefly (EXTENDED COPY chunks); commands use acquire().
   */
  acquireTracked(holder: H, lba: number, end: number): boolean {
    holder.lockLba = lba;
    holder.lockEnd = end;
    holder.lockExclusive = false;
    return this.enter(holder);
  }

  /** Gives up a granted range, or a wait (the grant then never comes). */
  release(holder: H): void {
    const state = holder.lockState;
    holder.lockState = LockState.NONE;
    if (state === LockState.FAST) {
      // Only an exclusive waiter can be waiting for untracked holders.
      if (--this.fast === 0 && this.waitHead !== null) this.pump();
      return;
    }
    if (state === LockState.HELD) this.unlink(holder, true);
    else if (state === LockState.WAITING) this.unlink(holder, false);
    else return;
    if (holder.lockExclusive) this.exclusives--;
    if (this.waitHead !== null) this.pump();
  }

  /** Holders and waiters (tests, diagnostics). */
  get size(): { fast: number; held: number; waiting: number } {
    let held = 0;
    let waiting = 0;
    for (let h = this.held; h !== null; h = h.lockNext) held++;
    for (let h = this.waitHead; h !== null; h = h.lockNext) waiting++;
    return { fast: this.fast, held, waiting };
  }

  /** Holds a tracked request now, or queues it. */
  private enter(holder: RangeLockHolder): boolean {
    if (this.grantable(holder, null)) {
      this.hold(holder);
      return true;
    }
    holder.lockState = LockState.WAITING;
    holder.lockNext = null;
    if (this.waitTail === null) this.waitHead = holder;
    else this.waitTail.lockNext = holder;
    this.waitTail = holder;
    return false;
  }

  /**
   * `holder` may be granted when it conflicts with no holder and with no waiter ahead of it
   * (`stop`: the first waiter not ahead; null = all of them), and, if exclusive, when no
   * untracked holder remains.
   */
  private grantable(holder: RangeLockHolder, stop: RangeLockHolder | null): boolean {
    if (holder.lockExclusive && this.fast > 0) return false;
    for (let h = this.held; h !== null; h = h.lockNext) if (conflicts(holder, h)) return false;
    for (let w = this.waitHead; w !== null && w !== stop; w = w.lockNext) if (conflicts(holder, w)) return false;
    return true;
  }

  private hold(holder: RangeLockHolder): void {
    holder.lockState = LockState.HELD;
    holder.lockNext = this.held;
    this.held = holder;
  }

  private unlink(holder: RangeLockHolder, fromHeld: boolean): void {
    let prev: RangeLockHolder | null = null;
    let h = fromHeld ? this.held : this.waitHead;
    while (h !== null && h !== holder) {
      prev = h;
      h = h.lockNext;
    }
    if (h === null) return;
    const next = holder.lockNext;
    if (fromHeld) {
      if (prev === null) this.held = next;
      else prev.lockNext = next;
    } else {
      if (prev === null) this.waitHead = next;
      else prev.lockNext = next;
      if (this.waitTail === holder) this.waitTail = prev;
    }
    holder.lockNext = null;
  }

  /**
   * Grants every waiter that has become compatible, in order. A grant runs the holder's
   * continuation, which may complete (and release) synchronously, so this is re-entrancy
   * safe: a nested call only asks the running loop to scan again.
   */
  private pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        for (let w = this.waitHead; w !== null; w = w.lockNext) {
          if (!this.grantable(w, w)) continue;
          this.unlink(w, false);
          this.hold(w);
          // Only acquire() / acquireTracked() put holders in the lists, and they take an H.
          this.grant(w as H);
          this.again = true; // the lists changed under the loop: rescan
          break;
        }
      } while (this.again);
    } finally {
      this.pumping = false;
    }
  }
}
