// Fakes shipped beside the code for tests and benches of scsi-emul and of its fabrics:
// a backstore whose completions the test controls, a recording IoEngine, a recording
// target, and small helpers to build and run commands.
import { ScsiCommand, ITNexus } from './command';
import { ScsiStatus, ServiceResponse, TaskAttribute, TaskManagementFunction, TmfResponse } from './constants';
import { ScsiTarget, ScsiTargetOptions } from './target';
import { BlockStore, IoEngine, rangeError, storeError } from './store';
import { copyFromSegments, copyIntoSegmentsAt, segmentsLength } from './bytes';

export type StoreOpKind = 'read' | 'write' | 'flush' | 'close';

export interface StoreOp {
  readonly kind: StoreOpKind;
  readonly offset: number;
  readonly len: number;
  readonly fua: boolean;
  readonly segments: readonly Uint8Array[];
  /** Completes the operation (moving the bytes first unless err is given). Once only. */
  complete(err?: Error | null): void;
  readonly completed: boolean;
}

export interface FakeBlockStoreOptions {
  sizeBytes: number;
  name?: string;
  readOnly?: boolean;
  /** keep data in memory (default true when sizeBytes ≤ 64 MiB); otherwise reads return zeros */
  backing?: boolean;
  /** complete operations synchronously (default) or leave them to the test (StoreOp.complete) */
  manual?: boolean;
}

/**
 * A BlockStore that records every operation. In manual mode nothing completes until the
 * test calls op.complete(), so commands with I/O in flight can be aborted, ordered, drained.
 */
export class FakeBlockStore implements BlockStore {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly name: string;
  manual: boolean;
  readonly ops: StoreOp[] = [];
  readonly data: Uint8Array | null;
  /** error to fail the next operations of a kind with (then cleared) */
  failNext: Partial<Record<StoreOpKind, Error>> = {};
  closed = false;

  constructor(opts: FakeBlockStoreOptions) {
    this.sizeBytes = opts.sizeBytes;
    this.readOnly = opts.readOnly === true;
    this.name = opts.name ?? 'fake';
    this.manual = opts.manual === true;
    const backing = opts.backing ?? opts.sizeBytes <= 64 << 20;
    this.data = backing ? new Uint8Array(opts.sizeBytes) : null;
  }

  /** Operations not yet completed. */
  pending(kind?: StoreOpKind): StoreOp[] {
    return this.ops.filter((o) => !o.completed && (kind === undefined || o.kind === kind));
  }

  read(offset: number, segments: readonly Uint8Array[], len: number, cb: (err: Error | null) => void): void {
    this.record('read', offset, segments, len, false, cb);
  }

  write(offset: number, segments: readonly Uint8Array[], len: number, fua: boolean, cb: (err: Error | null) => void): void {
    this.record('write', offset, segments, len, fua, cb);
  }

  flush(cb: (err: Error | null) => void): void {
    this.record('flush', 0, [], 0, false, cb);
  }

  close(cb: (err: Error | null) => void): void {
    this.closed = true;
    this.record('close', 0, [], 0, false, cb);
  }

  private record(kind: StoreOpKind, offset: number, segments: readonly Uint8Array[], len: number, fua: boolean,
    cb: (err: Error | null) => void): void {
    const store = this;
    let completed = false;
    const injected = this.failNext[kind];
    if (injected !== undefined) delete this.failNext[kind];
    const op: StoreOp = {
      kind, offset, len, fua, segments,
      get completed() { return completed; },
      complete(err?: Error | null) {
        if (completed) throw new Error(`FakeBlockStore: ${kind} completed twice`);
        completed = true;
        let e = err ?? injected ?? null;
        if (e === null && (kind === 'read' || kind === 'write')) e = rangeError(store, offset, len);
        if (e === null && kind === 'write' && store.readOnly) e = storeError('EROFS', 'read-only');
        if (e === null && (kind === 'read' || kind === 'write') && segmentsLength(segments) < len) {
          e = storeError('EINVAL', 'segment list too short');
        }
        if (e === null && store.data !== null) {
          if (kind === 'read') copyIntoSegmentsAt(store.data, offset, len, segments, 0);
          else if (kind === 'write') copyFromSegments(segments, 0, store.data, offset, len);
        } else if (e === null && kind === 'read') {
          let left = len;
          for (const s of segments) {
            const n = Math.min(left, s.byteLength);
            s.fill(0, 0, n);
            left -= n;
          }
        }
        cb(e);
      },
    };
    this.ops.push(op);
    if (!this.manual) op.complete();
  }
}

export type EngineCallKind = 'preadv' | 'pwritev' | 'fdatasync';

export interface EngineCall {
  readonly kind: EngineCallKind;
  readonly fd: number;
  readonly position: number;
  readonly len: number;
  readonly dsync: boolean;
  readonly iov: readonly Uint8Array[];
  /** Completes the call: bytes defaults to the full length. Once only. */
  complete(err?: NodeJS.ErrnoException | null, bytes?: number): void;
  readonly completed: boolean;
}

/**
 * An IoEngine that records calls in order, with the completion events, and lets the test
 * complete them in any order (libuv completes thread-pool work in any order). With a
 * `delegate` engine, completing a call first performs it for real.
 */
export class RecordingIoEngine implements IoEngine {
  readonly calls: EngineCall[] = [];
  /** every call and completion in the order they happened, e.g. "pwritev@0", "done pwritev@0" */
  readonly events: string[] = [];
  manual: boolean;
  private readonly delegate: IoEngine | null;

  constructor(opts: { manual?: boolean; delegate?: IoEngine } = {}) {
    this.manual = opts.manual !== false;
    this.delegate = opts.delegate ?? null;
  }

  pending(kind?: EngineCallKind): EngineCall[] {
    return this.calls.filter((c) => !c.completed && (kind === undefined || c.kind === kind));
  }

  preadv(fd: number, iov: readonly Uint8Array[], position: number,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void {
    this.add('preadv', fd, iov, position, false, cb);
  }

  pwritev(fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void {
    this.add('pwritev', fd, iov, position, dsync, cb);
  }

  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
    this.add('fdatasync', fd, [], 0, false, (err) => cb(err));
  }

  private add(kind: EngineCallKind, fd: number, iov: readonly Uint8Array[], position: number, dsync: boolean,
    cb: (err: NodeJS.ErrnoException | null, bytes: number) => void): void {
    const len = segmentsLength(iov);
    const label = kind === 'fdatasync' ? kind : `${kind}@${position}${dsync ? '+dsync' : ''}`;
    this.events.push(label);
    let completed = false;
    const events = this.events;
    const delegate = this.delegate;
    const call: EngineCall = {
      kind, fd, position, len, dsync, iov,
      get completed() { return completed; },
      complete(err?: NodeJS.ErrnoException | null, bytes?: number) {
        if (completed) throw new Error(`RecordingIoEngine: ${label} completed twice`);
        completed = true;
        const finish = (e: NodeJS.ErrnoException | null, n: number): void => {
          events.push(`done ${label}${e ? ` ${e.code}` : ''}`);
          cb(e, n);
        };
        if (err) {
          finish(err, 0);
          return;
        }
        if (delegate === null) {
          finish(null, bytes ?? len);
          return;
        }
        if (kind === 'preadv') delegate.preadv(fd, iov, position, finish);
        else if (kind === 'pwritev') delegate.pwritev(fd, iov, position, dsync, finish);
        else delegate.fdatasync(fd, (e) => finish(e, 0));
      },
    };
    this.calls.push(call);
    if (!this.manual) call.complete();
  }
}

export interface CommandSpec {
  nexus?: ITNexus;
  lun?: number;
  cdb: ArrayLike<number>;
  /** data-in buffer size (one segment), or explicit segments */
  dataIn?: number | Uint8Array[];
  dataOut?: Uint8Array | Uint8Array[];
  tag?: bigint;
  taskAttribute?: TaskAttribute;
}

export const TEST_NEXUS: ITNexus = Object.freeze({ initiatorPort: 'test-initiator', targetPortId: 1 });

/** Builds a ScsiCommand from a spec (tests and benches; fabrics fill their slots directly). */
export function makeCommand(spec: CommandSpec, into?: ScsiCommand): ScsiCommand {
  const cmd = into ?? new ScsiCommand(spec.nexus ?? TEST_NEXUS);
  cmd.nexus = spec.nexus ?? cmd.nexus;
  cmd.lun = spec.lun ?? 0;
  cmd.setCdb(spec.cdb);
  cmd.tag = spec.tag ?? 0n;
  cmd.taskAttribute = spec.taskAttribute ?? TaskAttribute.SIMPLE;
  const din = spec.dataIn ?? [];
  cmd.dataIn = typeof din === 'number' ? [new Uint8Array(din)] : din;
  cmd.dataInLength = segmentsLength(cmd.dataIn);
  const dout = spec.dataOut ?? [];
  cmd.dataOut = dout instanceof Uint8Array ? [dout] : dout;
  cmd.dataOutLength = segmentsLength(cmd.dataOut);
  return cmd;
}

export interface CommandResult {
  cmd: ScsiCommand;
  serviceResponse: ServiceResponse;
  status: ScsiStatus;
  sense: Uint8Array;
  data: Uint8Array;
  completions: number;
}

/**
 * Submits and returns a live result record, filled in when onComplete runs (check
 * `completions`). Data-in is the concatenation of dataInTransferred bytes.
 */
export function submit(target: ScsiTarget, spec: CommandSpec | ScsiCommand): CommandResult {
  const cmd = spec instanceof ScsiCommand ? spec : makeCommand(spec);
  const result: CommandResult = {
    cmd, serviceResponse: -1 as ServiceResponse, status: -1 as ScsiStatus,
    sense: new Uint8Array(0), data: new Uint8Array(0), completions: 0,
  };
  cmd.onComplete = (c) => {
    result.completions++;
    result.serviceResponse = c.serviceResponse;
    result.status = c.status;
    result.sense = c.sense.slice(0, c.senseLength);
    const data = new Uint8Array(c.dataInTransferred);
    copyFromSegments(c.dataIn, 0, data, 0, c.dataInTransferred);
    result.data = data;
  };
  target.submit(cmd);
  return result;
}

/** Runs a command that completes synchronously (no manual store) and returns its result. */
export function run(target: ScsiTarget, spec: CommandSpec | ScsiCommand): CommandResult {
  const r = submit(target, spec);
  if (r.completions !== 1) throw new Error(`command did not complete synchronously (${r.completions})`);
  return r;
}

export interface RecordedTmf {
  fn: TaskManagementFunction;
  nexus: ITNexus;
  lun: number;
  tag: bigint;
  response: TmfResponse | null;
}

/**
 * A ScsiTarget that records what a fabric hands it. With `passThrough` (default) commands
 * and TMFs run in the real core; without, they stay pending until the test completes them
 * with complete(), so a fabric can be tested against any status, sense or residual.
 */
export class RecordingScsiTarget extends ScsiTarget {
  readonly submitted: ScsiCommand[] = [];
  readonly cdbs: Uint8Array[] = [];
  readonly tmfs: RecordedTmf[] = [];
  readonly established: ITNexus[] = [];
  passThrough: boolean;

  constructor(opts: ScsiTargetOptions & { passThrough?: boolean } = {}) {
    super(opts);
    this.passThrough = opts.passThrough !== false;
  }

  override nexusEstablished(nexus: ITNexus): void {
    this.established.push(nexus);
    super.nexusEstablished(nexus);
  }

  override submit(cmd: ScsiCommand): void {
    this.submitted.push(cmd);
    this.cdbs.push(cmd.cdb.slice(0, cmd.cdbLength));
    if (this.passThrough) super.submit(cmd);
  }

  /** Completes a command held back (passThrough=false) with the given results. */
  complete(cmd: ScsiCommand, r: {
    serviceResponse?: ServiceResponse; status?: ScsiStatus; sense?: ArrayLike<number>; dataIn?: ArrayLike<number>;
  } = {}): void {
    cmd.reset();
    cmd.serviceResponse = r.serviceResponse ?? ServiceResponse.COMMAND_COMPLETE;
    cmd.status = r.status ?? ScsiStatus.GOOD;
    if (r.sense !== undefined) {
      cmd.sense.set(Array.from(r.sense).slice(0, cmd.sense.length));
      cmd.senseLength = Math.min(r.sense.length, cmd.sense.length);
    }
    if (r.dataIn !== undefined) {
      const src = Uint8Array.from(r.dataIn);
      let off = 0;
      for (const seg of cmd.dataIn) {
        if (off >= src.length || off >= cmd.dataInLength) break;
        const n = Math.min(seg.byteLength, src.length - off, cmd.dataInLength - off);
        seg.set(src.subarray(off, off + n));
        off += n;
      }
      cmd.dataInTransferred = off;
    }
    const cb = cmd.onComplete;
    if (cb !== null) cb(cmd);
  }

  override taskManagement(fn: TaskManagementFunction, nexus: ITNexus, lun: number, tag: bigint,
    done: (response: TmfResponse) => void): void {
    const rec: RecordedTmf = { fn, nexus, lun, tag, response: null };
    this.tmfs.push(rec);
    const wrapped = (r: TmfResponse): void => {
      rec.response = r;
      done(r);
    };
    if (this.passThrough) super.taskManagement(fn, nexus, lun, tag, wrapped);
  }
}
