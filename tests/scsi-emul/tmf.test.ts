// Task management (SAM-5 §7, virtio 1.2 §5.6.6.2, reliability.md §4.4).
import t from 'tap';
import {
  ITNexus, LogicalUnit, ScsiStatus, ScsiTarget, ServiceResponse, TaskAttribute, TaskManagementFunction as TMF,
  TmfResponse,
} from '../../scsi-emul';
import { FakeBlockStore, TEST_NEXUS, run, submit } from '../../scsi-emul/testing';
import { consumeUa, rw10, toHex } from './helpers';

const OTHER: ITNexus = { initiatorPort: 'other-initiator', targetPortId: 1 };

function manualSetup(luns = 1) {
  const target = new ScsiTarget();
  const stores: FakeBlockStore[] = [];
  for (let i = 0; i < luns; i++) {
    const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
    stores.push(store);
    target.addLogicalUnit(i, new LogicalUnit(store));
  }
  for (let i = 0; i < luns; i++) {
    consumeUa(target, i, TEST_NEXUS);
    consumeUa(target, i, OTHER);
  }
  return { target, stores, store: stores[0] };
}

interface TmfResult { response: TmfResponse | null; log: string[] }

function tmf(target: ScsiTarget, fn: TMF, opts: { lun?: number; tag?: bigint; nexus?: ITNexus; log?: string[] } = {}): TmfResult {
  const res: TmfResult = { response: null, log: opts.log ?? [] };
  target.taskManagement(fn, opts.nexus ?? TEST_NEXUS, opts.lun ?? 0, opts.tag ?? 0n, (r) => {
    res.response = r;
    res.log.push('tmf done');
  });
  return res;
}

t.test('ABORT TASK of a command whose store read is pending', (t) => {
  const { target, store } = manualSetup();
  const log: string[] = [];
  const r = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 42n });
  const onComplete = r.cmd.onComplete!;
  r.cmd.onComplete = (c) => {
    log.push('command done');
    onComplete(c);
  };
  t.equal(store.pending('read').length, 1);
  const q = tmf(target, TMF.QUERY_TASK, { tag: 42n });
  t.equal(q.response, TmfResponse.FUNCTION_SUCCEEDED, 'QUERY TASK sees it');
  const a = tmf(target, TMF.ABORT_TASK, { tag: 42n, log });
  t.equal(a.response, null, 'the TMF waits: the kernel I/O cannot be recalled');
  t.equal(r.completions, 0);
  store.pending('read')[0].complete();
  t.equal(r.serviceResponse, ServiceResponse.ABORTED);
  t.equal(r.cmd.dataInTransferred, 0);
  t.equal(r.sense.length, 0);
  t.equal(a.response, TmfResponse.FUNCTION_COMPLETE);
  t.same(log, ['command done', 'tmf done'], 'the effect is visible before the TMF completes (virtio §5.6.6.2)');
  t.equal(tmf(target, TMF.QUERY_TASK, { tag: 42n }).response, TmfResponse.FUNCTION_COMPLETE, 'gone from the task set');
  t.end();
});

t.test('ABORT TASK matches nexus and tag only; a missing task is FUNCTION COMPLETE', (t) => {
  const { target, store } = manualSetup();
  const mine = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 1n });
  const theirs = submit(target, { nexus: OTHER, cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 1n });
  t.equal(tmf(target, TMF.ABORT_TASK, { tag: 99n }).response, TmfResponse.FUNCTION_COMPLETE);
  const a = tmf(target, TMF.ABORT_TASK, { tag: 1n });
  for (const op of store.pending()) op.complete();
  t.equal(mine.serviceResponse, ServiceResponse.ABORTED);
  t.equal(theirs.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(theirs.status, ScsiStatus.GOOD);
  t.equal(a.response, TmfResponse.FUNCTION_COMPLETE);
  t.end();
});

t.test('ABORT TASK SET: all of this nexus on this LU; QUERY TASK SET', (t) => {
  const { target, stores } = manualSetup(2);
  const a = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 1n });
  const b = submit(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512), tag: 2n });
  const other = submit(target, { nexus: OTHER, cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 3n });
  const lu1 = submit(target, { lun: 1, cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 4n });
  t.equal(tmf(target, TMF.QUERY_TASK_SET).response, TmfResponse.FUNCTION_SUCCEEDED);
  const x = tmf(target, TMF.ABORT_TASK_SET);
  t.equal(x.response, null);
  for (const op of stores[0].pending()) op.complete();
  t.equal(a.serviceResponse, ServiceResponse.ABORTED);
  t.equal(b.serviceResponse, ServiceResponse.ABORTED);
  t.equal(b.cmd.dataOutTransferred, 0);
  t.equal(other.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(x.response, TmfResponse.FUNCTION_COMPLETE);
  t.equal(lu1.completions, 0, 'LU 1 untouched');
  stores[1].pending()[0].complete();
  t.equal(lu1.status, ScsiStatus.GOOD);
  t.equal(tmf(target, TMF.QUERY_TASK_SET).response, TmfResponse.FUNCTION_COMPLETE);
  t.end();
});

t.test('CLEAR TASK SET: every nexus; the others get COMMANDS CLEARED BY ANOTHER INITIATOR', (t) => {
  const { target, store } = manualSetup();
  const a = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const b = submit(target, { nexus: OTHER, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const c = tmf(target, TMF.CLEAR_TASK_SET);
  for (const op of store.pending()) op.complete();
  t.equal(a.serviceResponse, ServiceResponse.ABORTED);
  t.equal(b.serviceResponse, ServiceResponse.ABORTED);
  t.equal(c.response, TmfResponse.FUNCTION_COMPLETE);
  t.equal(toHex(run(target, { nexus: OTHER, cdb: [0, 0, 0, 0, 0, 0] }).sense),
    '70 00 06 00 00 00 00 0a 00 00 00 00 2f 00 00 00 00 00');
  t.equal(run(target, { cdb: [0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD, 'not for the nexus that cleared');
  t.end();
});

t.test('LOGICAL UNIT RESET: RESET for running and waiting commands, 29/03 for every nexus', (t) => {
  const { target, store } = manualSetup();
  const log: string[] = [];
  const running = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const ordered = submit(target, { cdb: rw10(0x2a, 0, 1), dataOut: new Uint8Array(512), taskAttribute: TaskAttribute.ORDERED });
  const otherNexus = submit(target, { nexus: OTHER, cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 });
  t.equal(ordered.completions + otherNexus.completions, 0, 'both wait behind the running read');
  const r = tmf(target, TMF.LOGICAL_UNIT_RESET, { log });
  t.equal(ordered.serviceResponse, ServiceResponse.RESET, 'waiting commands complete at once');
  t.equal(otherNexus.serviceResponse, ServiceResponse.RESET);
  t.equal(r.response, null, 'waits for the read in flight');
  store.pending()[0].complete();
  t.equal(running.serviceResponse, ServiceResponse.RESET);
  t.equal(r.response, TmfResponse.FUNCTION_COMPLETE);
  t.same(store.ops.map((o) => o.kind), ['read'], 'the waiting WRITE never reached the store');
  for (const nexus of [TEST_NEXUS, OTHER]) {
    t.equal(toHex(run(target, { nexus, cdb: [0, 0, 0, 0, 0, 0] }).sense),
      '70 00 06 00 00 00 00 0a 00 00 00 00 29 03 00 00 00 00', `29/03 for ${nexus.initiatorPort}`);
  }
  t.end();
});

t.test('I_T NEXUS RESET: this nexus on every LU; 29/07 for it', (t) => {
  const { target, stores } = manualSetup(2);
  const a = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const b = submit(target, { lun: 1, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const o = submit(target, { nexus: OTHER, cdb: rw10(0x28, 0, 1), dataIn: 512 });
  const r = tmf(target, TMF.I_T_NEXUS_RESET, { lun: 5 /* the LUN does not matter */ });
  for (const s of stores) for (const op of s.pending()) op.complete();
  t.equal(a.serviceResponse, ServiceResponse.RESET);
  t.equal(b.serviceResponse, ServiceResponse.RESET);
  t.equal(o.serviceResponse, ServiceResponse.COMMAND_COMPLETE);
  t.equal(r.response, TmfResponse.FUNCTION_COMPLETE);
  for (const lun of [0, 1]) {
    t.equal(toHex(run(target, { lun, cdb: [0, 0, 0, 0, 0, 0] }).sense),
      '70 00 06 00 00 00 00 0a 00 00 00 00 29 07 00 00 00 00', `29/07 on LU ${lun}`);
  }
  t.equal(run(target, { nexus: OTHER, cdb: [0, 0, 0, 0, 0, 0] }).status, ScsiStatus.GOOD);
  t.end();
});

t.test('QUERY ASYNCHRONOUS EVENT, CLEAR ACA, unknown LUN, closed target', (t) => {
  const { target, store } = manualSetup();
  t.equal(tmf(target, TMF.QUERY_ASYNCHRONOUS_EVENT).response, TmfResponse.FUNCTION_COMPLETE);
  target.nexusEstablished(TEST_NEXUS);
  t.equal(tmf(target, TMF.QUERY_ASYNCHRONOUS_EVENT).response, TmfResponse.FUNCTION_SUCCEEDED, 'a UA is pending');
  t.equal(tmf(target, TMF.CLEAR_ACA).response, TmfResponse.FUNCTION_REJECTED);
  t.equal(tmf(target, 99 as TMF).response, TmfResponse.FUNCTION_REJECTED);
  for (const fn of [TMF.ABORT_TASK, TMF.ABORT_TASK_SET, TMF.CLEAR_TASK_SET, TMF.LOGICAL_UNIT_RESET, TMF.QUERY_TASK,
    TMF.QUERY_TASK_SET, TMF.QUERY_ASYNCHRONOUS_EVENT, TMF.CLEAR_ACA]) {
    t.equal(tmf(target, fn, { lun: 3 }).response, TmfResponse.INCORRECT_LOGICAL_UNIT_NUMBER, `fn ${fn}`);
  }
  t.equal(tmf(target, TMF.ABORT_TASK, { nexus: { initiatorPort: 'x', targetPortId: 0 } }).response,
    TmfResponse.SERVICE_DELIVERY_OR_TARGET_FAILURE);
  let closed = false;
  target.close(() => (closed = true));
  t.equal(tmf(target, TMF.ABORT_TASK).response, TmfResponse.SERVICE_DELIVERY_OR_TARGET_FAILURE, 'while closing');
  store.pending('flush')[0].complete();
  store.pending('close')[0].complete();
  t.ok(closed);
  t.equal(tmf(target, TMF.ABORT_TASK).response, TmfResponse.SERVICE_DELIVERY_OR_TARGET_FAILURE);
  t.end();
});

t.test('an aborted write still lands (SAM allows it), its status does not', (t) => {
  const { target, store } = manualSetup();
  const data = new Uint8Array(512).fill(0x5a);
  const w = submit(target, { cdb: rw10(0x2a, 3, 1), dataOut: data, tag: 7n });
  tmf(target, TMF.ABORT_TASK, { tag: 7n });
  store.pending()[0].complete();
  t.equal(w.serviceResponse, ServiceResponse.ABORTED);
  t.same(store.data!.subarray(3 * 512, 4 * 512), data);
  t.end();
});

t.test('a slot reused from onComplete is not mistaken for the aborted command', (t) => {
  const { target, store } = manualSetup();
  const r = submit(target, { cdb: rw10(0x28, 0, 1), dataIn: 512, tag: 1n });
  const cmd = r.cmd;
  let reused = false;
  const first = cmd.onComplete!;
  cmd.onComplete = (c) => {
    first(c);
    if (!reused) {
      reused = true;
      // the fabric reuses the slot at once for an unrelated command
      cmd.setCdb([0x12, 0, 0, 0, 36, 0]);
      cmd.dataIn = [new Uint8Array(36)];
      cmd.dataInLength = 36;
      cmd.tag = 2n;
      target.submit(cmd);
    }
  };
  const x = tmf(target, TMF.ABORT_TASK_SET);
  store.pending()[0].complete();
  t.equal(x.response, TmfResponse.FUNCTION_COMPLETE);
  t.equal(r.completions, 2);
  t.equal(r.serviceResponse, ServiceResponse.COMMAND_COMPLETE, 'the reused slot ran normally');
  t.equal(r.status, ScsiStatus.GOOD);
  t.end();
});
