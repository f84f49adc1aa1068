// Multi-step SBC commands (VERIFY, WRITE AND VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE,
// PRE-FETCH, FORMAT UNIT) run as a small state machine over store operations. A job carries
// the command's private buffers and a cursor; jobs are pooled, so steady state allocates
// nothing, and store callbacks that complete synchronously (the RAM store) are trampolined so
// a long WRITE SAME cannot grow the stack.
import type { Task } from './command';
import { IoKind } from './command-def';
import type { LogicalUnit } from './logical-unit';
import type { BlockStore } from './store';
import { ServiceResponse } from './constants';

/** One step: called with the previous store operation's error (null at the start). */
export type JobStep = (job: SbcJob, err: Error | null) => void;

/** Reads and writes of a job are cut into pieces of this size. */
export const JOB_BATCH_BYTES = 1 << 20;
/** Buffers larger than this are dropped when a job returns to the pool. */
const KEEP_BYTES = JOB_BATCH_BYTES;
const POOL_MAX = 16;

export class SbcJob {
  /** null for a detached job (PRE-FETCH with IMMED=1 after its command completed) */
  task: Task | null = null;
  lu: LogicalUnit | null = null;
  store: BlockStore | null = null;
  step: JobStep = noStep;
  /** IoKind of the store operation in flight, for the error mapping (READ → 11/00, WRITE → 0C/00) */
  kind: IoKind = IoKind.NONE;
  // cursor, in bytes of the medium unless a step says otherwise
  pos = 0;
  end = 0;
  /** bytes of the range already handled (offset of `pos` within the command's range) */
  done = 0;
  /** command-specific counters */
  a = 0;
  b = 0;
  fua = false;
  /** private scratch: medium data read back */
  buf: Uint8Array = new Uint8Array(0);
  /** private copy of data-out (compare data, write data, parameter lists) */
  copy: Uint8Array = new Uint8Array(0);
  /** [buf] / [copy] as segment lists, kept in step with the buffers */
  bufSeg: Uint8Array[] = [this.buf];
  copySeg: Uint8Array[] = [this.copy];
  /** WRITE SAME: the same block view repeated (one pwritev of many blocks, no copies) */
  repeat: Uint8Array[] = [];
  private pendingErr: Error | null = null;
  private pending = 0;
  private looping = false;
  readonly onIo: (err: Error | null) => void;

  constructor() {
    this.onIo = (err) => {
      this.pendingErr = err;
      this.pending++;
      if (!this.looping) this.loop();
    };
  }

  /** Starts the state machine at `step`. */
  start(step: JobStep): void {
    this.step = step;
    this.onIo(null);
  }

  private loop(): void {
    this.looping = true;
    try {
      while (this.pending > 0) {
        this.pending--;
        const err = this.pendingErr;
        this.pendingErr = null;
        this.step(this, err);
      }
    } finally {
      this.looping = false;
    }
  }

  /** A scratch buffer of at least n bytes (contents undefined: every user fills it first). */
  ensureBuf(n: number): Uint8Array {
    if (this.buf.byteLength < n) {
      this.buf = new Uint8Array(n);
      this.bufSeg[0] = this.buf;
    }
    return this.buf;
  }

  ensureCopy(n: number): Uint8Array {
    if (this.copy.byteLength < n) {
      this.copy = new Uint8Array(n);
      this.copySeg[0] = this.copy;
    }
    return this.copy;
  }

  /** The command was aborted by a TMF: stop issuing I/O. */
  get aborted(): boolean {
    return this.task !== null && this.task.abortResponse !== ServiceResponse.COMMAND_COMPLETE;
  }
}

function noStep(): void {
  throw new Error('SbcJob: no step');
}

const pool: SbcJob[] = [];

/** Takes a job for `task` (null: detached) and marks the task's I/O as in flight. */
export function takeJob(task: Task | null, lu: LogicalUnit): SbcJob {
  const job = pool.pop() ?? new SbcJob();
  job.task = task;
  job.lu = lu;
  job.store = lu.store;
  job.kind = IoKind.NONE;
  job.pos = 0;
  job.end = 0;
  job.done = 0;
  job.a = 0;
  job.b = 0;
  job.fua = false;
  if (task !== null) {
    task.ioActive = true;
    task.ioKind = IoKind.NONE;
  }
  return job;
}

/**
 * Ends the job and completes its command through the core (ScsiTarget.ioComplete): success,
 * a SenseError verdict (MISCOMPARE), or a store error mapped by the kind of the failed step.
 * `dataOut` is the number of data-out bytes the command consumed.
 */
export function finishJob(job: SbcJob, err: Error | null, dataOut: number): void {
  const task = job.task;
  const kind = job.kind;
  releaseJob(job);
  if (task === null) return;
  task.cmd.dataOutTransferred = dataOut;
  // ioComplete sets transfer counts for READ/WRITE kinds from task.dataLength; on success
  // these commands set their own, so the kind only matters for the error mapping.
  task.ioKind = err === null ? IoKind.NONE : kind;
  task.core!.ioComplete(task, err);
}

/** Returns a job to the pool without completing anything (detached jobs). */
export function releaseJob(job: SbcJob): void {
  job.task = null;
  job.lu = null;
  job.store = null;
  job.step = noStep;
  if (job.buf.byteLength > KEEP_BYTES) {
    job.buf = new Uint8Array(0);
    job.bufSeg[0] = job.buf;
  }
  if (job.copy.byteLength > KEEP_BYTES) {
    job.copy = new Uint8Array(0);
    job.copySeg[0] = job.copy;
  }
  job.repeat.length = 0;
  if (pool.length < POOL_MAX) pool.push(job);
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Reads n bytes at `pos` into job.buf; completion (or a throw) goes to the job's step. */
export function jobRead(job: SbcJob, pos: number, n: number): void {
  job.ensureBuf(n);
  job.kind = IoKind.READ;
  try {
    job.store!.read(pos, job.bufSeg, n, job.onIo);
  } catch (e) {
    job.onIo(asError(e));
  }
}

/** Writes n bytes of `segs` at `pos`. */
export function jobWrite(job: SbcJob, pos: number, segs: readonly Uint8Array[], n: number, fua: boolean): void {
  job.kind = IoKind.WRITE;
  try {
    job.store!.write(pos, segs, n, fua, job.onIo);
  } catch (e) {
    job.onIo(asError(e));
  }
}

/** Deallocates [pos, pos+n) (a write, for the error mapping: EIO fails the LU like a write). */
export function jobDeallocate(job: SbcJob, pos: number, n: number): void {
  job.kind = IoKind.WRITE;
  try {
    job.store!.deallocate!(pos, n, job.onIo);
  } catch (e) {
    job.onIo(asError(e));
  }
}

/** Flushes the store (FLUSH kind is not used: a flush error here is a write error of the command). */
export function jobFlush(job: SbcJob): void {
  job.kind = IoKind.WRITE;
  try {
    job.store!.flush(job.onIo);
  } catch (e) {
    job.onIo(asError(e));
  }
}

/** Index of the first byte where a[aOff..] and b[bOff..] differ within n bytes, or -1. */
export function firstMismatch(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, n: number): number {
  for (let i = 0; i < n; i++) if (a[aOff + i] !== b[bOff + i]) return i;
  return -1;
}

export function allZero(b: Uint8Array, off: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[off + i] !== 0) return false;
  return true;
}
