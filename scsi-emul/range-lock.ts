// Per-LU LBA range lock: makes COMPARE AND WRITE, WRITE ATOMIC and FORMAT UNIT atomic with
// respect to every other command touching their blocks (SBC-3 r36 §5.2: "the device server
// shall ... perform the compare and write operations as an uninterrupted series of actions";
// reliability.md V7.9), without costing READ/WRITE anything while no such command exists.
//
// Two kinds of holders:
//  - shared (READ, WRITE, VERIFY, WRITE SAME, UNMAP, ...): never conflict with each other;
//  - exclusive (COMPARE AND WRITE, WRITE ATOMIC, FORMAT UNIT): conflict with any overlap.
//
// Fast path: while no exclusive holder is held or waiting, a shared acquire only counts
// itself (`fast`): no list, no allocation, no range. An exclusive request cannot know where
// those untracked holders are, so it waits until all of them are gone (a one-time drain);
// shared requests arriving meanwhile are tracked with their range and only wait when they
// overlap an exclusive one. Waiters are granted in arrival order among overlapping requests,
// so neither kind starves. Everything runs on the JS thread: no atomics are needed.
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

function overlaps(a: Task, b: Task): boolean {
  return a.lockLba < b.lockEnd && b.lockLba < a.lockEnd;
}

function conflicts(a: Task, b: Task): boolean {
  return (a.lockExclusive || b.lockExclusive) && overlaps(a, b);
}

export class RangeLock {
  /** untracked shared holders */
  private fast = 0;
  /** exclusive requests held or waiting: while > 0, shared requests are tracked */
  private exclusives = 0;
  private held: Task | null = null;
  private waitHead: Task | null = null;
  private waitTail: Task | null = null;
  private pumping = false;
  private again = false;
  /** Called for a waiter once granted (ScsiTarget.resume runs its execute() again). */
  private readonly grant: (task: Task) => void;

  constructor(grant: (task: Task) => void = (t) => t.core!.resume(t)) {
    this.grant = grant;
  }

  /**
   * Requests blocks [lba, end). Returns true when granted now; false when the task waits (its
   * execute() returns EXECUTE_ASYNC and is run again on grant). A granted task must be
   * released exactly once (ScsiTarget.finish does it for every completed task).
   */
  acquire(task: Task, lba: number, end: number, exclusive: boolean): boolean {
    task.lockLba = lba;
    task.lockEnd = end;
    task.lockExclusive = exclusive;
    if (!exclusive && this.exclusives === 0) {
      this.fast++;
      task.lockState = LockState.FAST;
      return true;
    }
    if (exclusive) this.exclusives++;
    if (this.grantable(task, null)) {
      this.hold(task);
      return true;
    }
    task.lockState = LockState.WAITING;
    task.lockNext = null;
    if (this.waitTail === null) this.waitHead = task;
    else this.waitTail.lockNext = task;
    this.waitTail = task;
    return false;
  }

  release(task: Task): void {
    const state = task.lockState;
    task.lockState = LockState.NONE;
    if (state === LockState.FAST) {
      // Only an exclusive waiter can be waiting for untracked holders.
      if (--this.fast === 0 && this.waitHead !== null) this.pump();
      return;
    }
    if (state === LockState.HELD) this.unlink(task, true);
    else if (state === LockState.WAITING) this.unlink(task, false);
    else return;
    if (task.lockExclusive) this.exclusives--;
    if (this.waitHead !== null) this.pump();
  }

  /** Holders and waiters (tests, diagnostics). */
  get size(): { fast: number; held: number; waiting: number } {
    let held = 0;
    let waiting = 0;
    for (let t = this.held; t !== null; t = t.lockNext) held++;
    for (let t = this.waitHead; t !== null; t = t.lockNext) waiting++;
    return { fast: this.fast, held, waiting };
  }

  /**
   * `task` may be granted when it conflicts with no holder and with no waiter ahead of it
   * (`stop`: the first waiter not ahead; null = all of them), and, if exclusive, when no
   * untracked holder remains.
   */
  private grantable(task: Task, stop: Task | null): boolean {
    if (task.lockExclusive && this.fast > 0) return false;
    for (let h = this.held; h !== null; h = h.lockNext) if (conflicts(task, h)) return false;
    for (let w = this.waitHead; w !== null && w !== stop; w = w.lockNext) if (conflicts(task, w)) return false;
    return true;
  }

  private hold(task: Task): void {
    task.lockState = LockState.HELD;
    task.lockNext = this.held;
    this.held = task;
  }

  private unlink(task: Task, fromHeld: boolean): void {
    let prev: Task | null = null;
    let t = fromHeld ? this.held : this.waitHead;
    while (t !== null && t !== task) {
      prev = t;
      t = t.lockNext;
    }
    if (t === null) return;
    const next = task.lockNext;
    if (fromHeld) {
      if (prev === null) this.held = next;
      else prev.lockNext = next;
    } else {
      if (prev === null) this.waitHead = next;
      else prev.lockNext = next;
      if (this.waitTail === task) this.waitTail = prev;
    }
    task.lockNext = null;
  }

  /**
   * Grants every waiter that has become compatible, in order. A grant runs the task, which
   * may complete (and release) synchronously, so this is re-entrancy safe: a nested call only
   * asks the running loop to scan again.
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
          this.grant(w);
          this.again = true; // the lists changed under the loop: rescan
          break;
        }
      } while (this.again);
    } finally {
      this.pumping = false;
    }
  }
}
