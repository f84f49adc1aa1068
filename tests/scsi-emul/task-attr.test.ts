// Task attributes (SAM-5 §8.6): SIMPLE runs at once, ORDERED waits for every older task
// and holds back younger ones, HEAD OF QUEUE runs at once and holds back younger ones.
import t from 'tap';
import { LogicalUnit, ScsiStatus, ScsiTarget, TaskAttribute } from '../../scsi-emul';
import { FakeBlockStore, submit } from '../../scsi-emul/testing';
import { consumeUa, rw10 } from './helpers';

const { SIMPLE, ORDERED, HEAD_OF_QUEUE } = TaskAttribute;

function manual() {
  const target = new ScsiTarget();
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  return { target, store };
}

const read = (lba: number, taskAttribute: TaskAttribute) => ({ cdb: rw10(0x28, lba, 1), dataIn: 512, taskAttribute });

t.test('SIMPLE commands run concurrently', (t) => {
  const { target, store } = manual();
  submit(target, read(1, SIMPLE));
  submit(target, read(2, SIMPLE));
  t.same(store.pending().map((o) => o.offset), [512, 1024]);
  t.end();
});

t.test('ORDERED waits for older tasks and blocks younger ones', (t) => {
  const { target, store } = manual();
  const s1 = submit(target, read(1, SIMPLE));
  const o = submit(target, { cdb: rw10(0x2a, 2, 1), dataOut: new Uint8Array(512), taskAttribute: ORDERED });
  const s2 = submit(target, read(3, SIMPLE));
  const inq = submit(target, { cdb: [0x12, 0, 0, 0, 36, 0], dataIn: 36 });
  t.same(store.pending().map((op) => op.kind + op.offset), ['read512'], 'only the older SIMPLE runs');
  t.equal(inq.completions, 0, 'even INQUIRY (SIMPLE) waits behind the ORDERED task');
  store.pending()[0].complete();
  t.equal(s1.status, ScsiStatus.GOOD);
  t.same(store.pending().map((op) => op.kind + op.offset), ['write1024'], 'then the ORDERED one, alone');
  store.pending()[0].complete();
  t.equal(o.status, ScsiStatus.GOOD);
  t.same(store.pending().map((op) => op.kind + op.offset), ['read1536'], 'then the younger ones');
  t.equal(inq.status, ScsiStatus.GOOD);
  store.pending()[0].complete();
  t.equal(s2.status, ScsiStatus.GOOD);
  t.end();
});

t.test('ORDERED on an idle LU runs at once; consecutive ORDERED tasks run one by one', (t) => {
  const { target, store } = manual();
  submit(target, read(1, ORDERED));
  submit(target, read(2, ORDERED));
  t.equal(store.pending().length, 1);
  store.pending()[0].complete();
  t.same(store.pending().map((o) => o.offset), [1024]);
  store.pending()[0].complete();
  t.end();
});

t.test('HEAD OF QUEUE runs at once, past a waiting ORDERED task; younger SIMPLE waits for it', (t) => {
  const { target, store } = manual();
  submit(target, read(1, SIMPLE));
  submit(target, read(2, ORDERED));
  const h = submit(target, read(3, HEAD_OF_QUEUE));
  t.same(store.pending().map((o) => o.offset), [512, 1536], 'HOQ did not wait');
  const s = submit(target, read(4, SIMPLE));
  t.equal(store.pending().length, 2, 'the younger SIMPLE waits');
  store.pending().find((o) => o.offset === 1536)!.complete();
  t.equal(h.status, ScsiStatus.GOOD);
  t.same(store.pending().map((o) => o.offset), [512], 'still behind the ORDERED task');
  store.pending()[0].complete();
  t.same(store.pending().map((o) => o.offset), [1024]);
  store.pending()[0].complete();
  t.same(store.pending().map((o) => o.offset), [2048]);
  store.pending()[0].complete();
  t.equal(s.status, ScsiStatus.GOOD);
  t.end();
});

t.test('synchronous completions while dispatching do not lose or duplicate tasks', (t) => {
  const target = new ScsiTarget();
  const store = new FakeBlockStore({ sizeBytes: 1 << 20, manual: true });
  target.addLogicalUnit(0, new LogicalUnit(store));
  consumeUa(target, 0);
  const first = submit(target, read(0, ORDERED));
  store.manual = false; // from now on the store completes synchronously
  const rest = [];
  for (let i = 1; i <= 20; i++) rest.push(submit(target, read(i, i % 3 === 0 ? ORDERED : SIMPLE)));
  t.equal(rest.filter((r) => r.completions > 0).length, 0);
  store.ops[0].complete();
  t.equal(first.status, ScsiStatus.GOOD);
  t.same(rest.map((r) => r.completions), Array(20).fill(1));
  t.same(store.ops.slice(1).map((o) => o.offset / 512), Array.from({ length: 20 }, (_, i) => i + 1), 'in order');
  t.end();
});
