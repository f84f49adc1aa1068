import t from 'tap';
import { sgLength, sgRead, sgSlice, sgWrite } from '../../virtqueue';

const bytes = (...v: number[]) => Uint8Array.from(v);

t.test('sgLength', (t) => {
  t.equal(sgLength([]), 0);
  t.equal(sgLength([bytes(1, 2), bytes(), bytes(3, 4, 5)]), 5);
  t.end();
});

t.test('sgRead gathers across segments from an offset', (t) => {
  const segs = [bytes(0, 1, 2), bytes(3), bytes(4, 5, 6, 7)];
  const dst = new Uint8Array(4);
  t.equal(sgRead(segs, 2, dst), 4);
  t.same([...dst], [2, 3, 4, 5]);
  const big = new Uint8Array(10).fill(0xee);
  t.equal(sgRead(segs, 5, big), 3, 'clipped to what exists');
  t.same([...big.subarray(0, 4)], [5, 6, 7, 0xee], 'the rest of dst untouched');
  t.equal(sgRead(segs, 8, big), 0, 'offset at the end');
  t.equal(sgRead(segs, 100, big), 0, 'offset past the end');
  t.equal(sgRead(segs, 0, new Uint8Array(0)), 0, 'empty dst');
  t.throws(() => sgRead(segs, -1, dst), RangeError, 'negative offset is a caller bug (V10.1)');
  t.throws(() => sgRead(segs, 0.5, dst), RangeError);
  t.end();
});

t.test('sgWrite scatters across segments and clips', (t) => {
  const a = new Uint8Array(2);
  const b = new Uint8Array(3);
  const segs = [a, b];
  t.equal(sgWrite(segs, 1, bytes(9, 8, 7)), 3);
  t.same([...a], [0, 9]);
  t.same([...b], [8, 7, 0]);
  t.equal(sgWrite(segs, 3, bytes(1, 2, 3, 4)), 2, 'clipped to the space');
  t.same([...b], [8, 1, 2]);
  t.equal(sgWrite(segs, 5, bytes(1)), 0);
  t.throws(() => sgWrite(segs, NaN, bytes(1)), RangeError);
  t.end();
});

t.test('sgSlice returns sub-views', (t) => {
  const backing = bytes(0, 1, 2, 3, 4, 5, 6, 7);
  const segs = [backing.subarray(0, 3), backing.subarray(3, 4), backing.subarray(4, 8)];
  const out: Uint8Array[] = [];
  t.equal(sgSlice(segs, 2, 4, out), 4);
  t.same(
    out.map((s) => [...s]),
    [[2], [3], [4, 5]],
  );
  t.equal(out[2].buffer, backing.buffer, 'views, not copies');
  out[2][0] = 0x44;
  t.equal(backing[4], 0x44);
  const out2: Uint8Array[] = [];
  t.equal(sgSlice(segs, 6, 100, out2), 2, 'clipped');
  t.same([...out2[0]], [6, 7]);
  t.equal(sgSlice(segs, 8, 1, []), 0);
  t.equal(sgSlice(segs, 0, 0, []), 0);
  t.throws(() => sgSlice(segs, 0, -1, []), RangeError);
  t.end();
});
