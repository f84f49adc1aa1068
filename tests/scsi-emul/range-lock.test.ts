// RangeLock with holders other than commands (range-lock.ts RangeLockHolder): the tracked
// shared requests EXTENDED COPY makes, the default grant (holder.lockGranted()), Task as one
// holder among others, and re-entrant grants.
import t from 'tap';
import { ScsiCommand } from '../../scsi-emul';
import { Task, TaskCore } from '../../scsi-emul/command';
import { LockState, RangeLock, RangeLockHolder } from '../../scsi-emul/range-lock';

/** A holder that records its grants; `onGrant` runs inside the lock's grant loop. */
class Holder implements RangeLockHolder {
  lockState = 0;
  lockExclusive = false;
  lockLba = 0;
  lockEnd = 0;
  lockNext: RangeLockHolder | null = null;
  onGrant: (() => void) | null = null;

  constructor(readonly name: string, private readonly log: string[]) {}

  lockGranted(): void {
    this.log.push(this.name);
    if (this.onGrant !== null) this.onGrant();
  }
}

function holders(log: string[], ...names: string[]): Holder[] {
  return names.map((n) => new Holder(n, log));
}

t.test('tracked shared holders: exclusive requests see their ranges and wait only on overlap', (t) => {
  const log: string[] = [];
  const lock = new RangeLock<Holder>();
  const [copy, cawOver, cawApart, read] = holders(log, 'copy', 'cawOver', 'cawApart', 'read');
  t.equal(lock.acquireTracked(copy, 0, 2048), true, 'no exclusive anywhere: granted');
  t.equal(copy.lockState, LockState.HELD, 'tracked even with no exclusive request around');
  t.same(lock.size, { fast: 0, held: 1, waiting: 0 });
  t.equal(lock.acquire(cawApart, 4096, 4097, true), true, 'disjoint exclusive: granted at once (no drain)');
  t.equal(lock.acquire(cawOver, 100, 101, true), false, 'overlapping exclusive: waits');
  t.equal(lock.acquire(read, 50, 150, false), false, 'a shared request overlapping the waiting exclusive queues behind it');
  t.same(lock.size, { fast: 0, held: 2, waiting: 2 });
  lock.release(copy);
  t.same(log, ['cawOver'], 'the copy range gone: the waiting exclusive is granted, through lockGranted()');
  lock.release(cawOver);
  t.same(log, ['cawOver', 'read']);
  lock.release(read);
  lock.release(cawApart);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});

t.test('a tracked shared request waits behind an overlapping exclusive holder, FIFO with others', (t) => {
  const log: string[] = [];
  const lock = new RangeLock<Holder>();
  const [x, c1, x2, c2] = holders(log, 'x', 'c1', 'x2', 'c2');
  t.equal(lock.acquire(x, 10, 20, true), true);
  t.equal(lock.acquireTracked(c1, 0, 11), false, 'overlaps the exclusive holder');
  t.equal(lock.acquire(x2, 0, 5, true), false, 'overlaps the waiting c1: queued behind it');
  t.equal(lock.acquireTracked(c2, 30, 40), true, 'disjoint from everything: granted');
  t.same(lock.size, { fast: 0, held: 2, waiting: 2 });
  lock.release(x);
  t.same(log, ['c1'], 'c1 first; x2 still conflicts with it');
  lock.release(c1);
  t.same(log, ['c1', 'x2']);
  lock.release(x2);
  lock.release(c2);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});

t.test('an exclusive request still drains untracked (fast) holders, not tracked ones', (t) => {
  const log: string[] = [];
  const lock = new RangeLock<Holder>();
  const [fastRead, copy, x] = holders(log, 'fastRead', 'copy', 'x');
  t.equal(lock.acquire(fastRead, 900, 901, false), true);
  t.equal(fastRead.lockState, LockState.FAST);
  t.equal(lock.acquireTracked(copy, 0, 8), true);
  t.equal(lock.acquire(x, 100, 101, true), false, 'the fast holder could be anywhere');
  lock.release(copy);
  t.same(log, [], 'a tracked holder leaving does not end the drain');
  lock.release(fastRead);
  t.same(log, ['x']);
  lock.release(x);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});

t.test('releasing a waiting holder withdraws it: no grant ever comes', (t) => {
  const log: string[] = [];
  const lock = new RangeLock<Holder>();
  const [x, c, d] = holders(log, 'x', 'c', 'd');
  lock.acquire(x, 0, 10, true);
  t.equal(lock.acquireTracked(c, 5, 6), false);
  t.equal(lock.acquireTracked(d, 8, 9), false);
  lock.release(c);
  t.equal(c.lockState, LockState.NONE);
  t.same(lock.size, { fast: 0, held: 1, waiting: 1 });
  lock.release(x);
  t.same(log, ['d'], 'only the holder still waiting');
  lock.release(d);
  lock.release(d); // a second release is a no-op
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});

t.test('re-entrant grants: a holder releasing (and re-acquiring) inside lockGranted', (t) => {
  const log: string[] = [];
  const lock = new RangeLock<Holder>();
  const [x, a, b, c] = holders(log, 'x', 'a', 'b', 'c');
  lock.acquire(x, 0, 100, true);
  lock.acquire(a, 0, 10, true);
  lock.acquireTracked(b, 5, 6);
  lock.acquireTracked(c, 50, 60);
  // a completes synchronously (a RAM store) inside its grant and asks for its range again.
  let again: boolean | null = null;
  a.onGrant = () => {
    a.onGrant = null;
    lock.release(a);
    again = lock.acquire(a, 0, 10, true);
  };
  lock.release(x);
  t.equal(again, false, 'the new request overlaps the waiting b: it queues behind it');
  t.same(log, ['a', 'b', 'c'], 'the nested release made the running pump rescan: b and c granted');
  t.equal(a.lockState, LockState.WAITING);
  lock.release(c);
  t.same(log, ['a', 'b', 'c'], 'c was never in the way');
  lock.release(b);
  t.same(log, ['a', 'b', 'c', 'a'], 'b gone: a again');
  lock.release(a);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});

t.test('Task and other holders share one lock; a Task grant resumes it through its core', (t) => {
  const resumed: Task[] = [];
  const core: TaskCore = { ioComplete: () => undefined, resume: (task) => resumed.push(task) };
  const lock = new RangeLock<RangeLockHolder>();
  const log: string[] = [];
  const [copy] = holders(log, 'copy');
  const task = new ScsiCommand()._task;
  task.core = core;
  t.equal(lock.acquireTracked(copy, 0, 8), true);
  t.equal(lock.acquire(task, 4, 5, true), false, 'COMPARE AND WRITE waits for the copy chunk');
  lock.release(copy);
  t.same(resumed, [task], 'Task.lockGranted → TaskCore.resume (execute() runs again)');
  t.equal(task.lockState, LockState.HELD);
  lock.release(task);
  t.same(lock.size, { fast: 0, held: 0, waiting: 0 });
  t.end();
});
