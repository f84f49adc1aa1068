import t from 'tap';
import { VirtioFeature, featureBit, hasFeature } from '../../virtqueue';

t.test('feature bit numbers (virtio 1.2 §6)', (t) => {
  t.equal(VirtioFeature.NOTIFY_ON_EMPTY, 24);
  t.equal(VirtioFeature.ANY_LAYOUT, 27);
  t.equal(VirtioFeature.RING_INDIRECT_DESC, 28);
  t.equal(VirtioFeature.RING_EVENT_IDX, 29);
  t.equal(VirtioFeature.VERSION_1, 32);
  t.equal(VirtioFeature.ACCESS_PLATFORM, 33);
  t.equal(VirtioFeature.RING_PACKED, 34);
  t.equal(VirtioFeature.IN_ORDER, 35);
  t.equal(VirtioFeature.RING_RESET, 40);
  t.end();
});

t.test('masks', (t) => {
  t.equal(featureBit(VirtioFeature.RING_INDIRECT_DESC), 0x1000_0000n);
  t.equal(featureBit(VirtioFeature.VERSION_1), 0x1_0000_0000n);
  t.equal(featureBit(63), 0x8000_0000_0000_0000n);
  // A typical virtio-scsi offer: VERSION_1 | EVENT_IDX | INDIRECT_DESC.
  const f = 0x1_3000_0000n;
  t.ok(hasFeature(f, VirtioFeature.VERSION_1));
  t.ok(hasFeature(f, VirtioFeature.RING_EVENT_IDX));
  t.ok(hasFeature(f, VirtioFeature.RING_INDIRECT_DESC));
  t.notOk(hasFeature(f, VirtioFeature.RING_PACKED));
  t.throws(() => featureBit(64), RangeError);
  t.throws(() => hasFeature(f, -1), RangeError);
  t.end();
});
