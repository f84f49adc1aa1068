import t from 'tap';
import { jsByteCopier, type ByteCopier, RAM_CHUNK_SIZE, RamStore, createRamStore } from '../../scsi-emul';

function io(store: RamStore, kind: 'read' | 'write', offset: number, segs: Uint8Array[], len: number): Error | null {
  let result: Error | null | undefined;
  if (kind === 'read') store.read(offset, segs, len, (e) => (result = e));
  else store.write(offset, segs, len, false, (e) => (result = e));
  if (result === undefined) throw new Error('RAM store completes synchronously');
  return result;
}

t.test('lazily allocated: a 1 GiB LUN costs nothing until written', (t) => {
  const s = createRamStore({ sizeBytes: 1 << 30, name: 'big' }) as RamStore;
  t.equal(s.sizeBytes, 1 << 30);
  t.equal(s.name, 'big');
  t.equal(s.readOnly, false);
  t.equal(s.allocatedBytes, 0);
  const buf = new Uint8Array(4096).fill(0xee);
  t.equal(io(s, 'read', 123 * 4096, [buf], 4096), null);
  t.same(buf, new Uint8Array(4096), 'never written: zeros');
  t.equal(s.allocatedBytes, 0, 'reads allocate nothing');
  io(s, 'write', 5 * RAM_CHUNK_SIZE + 512, [new Uint8Array(512).fill(1)], 512);
  t.equal(s.allocatedBytes, RAM_CHUNK_SIZE, 'one chunk');
  t.end();
});

t.test('I/O across a chunk boundary and across segments', (t) => {
  const s = new RamStore(4 * RAM_CHUNK_SIZE, 'r');
  const len = 8192;
  const src = new Uint8Array(len);
  for (let i = 0; i < len; i++) src[i] = (i * 13) & 0xff;
  const off = RAM_CHUNK_SIZE - 3000;
  const segsOut = [src.subarray(0, 100), src.subarray(100, 5000), src.subarray(5000)];
  t.equal(io(s, 'write', off, segsOut, len), null);
  t.equal(s.allocatedBytes, 2 * RAM_CHUNK_SIZE, 'both chunks');
  const a = new Uint8Array(2999);
  const b = new Uint8Array(1);
  const c = new Uint8Array(len - 3000 + 10); // longer than needed
  t.equal(io(s, 'read', off, [a, b, c], len), null);
  const back = new Uint8Array([...a, ...b, ...c.subarray(0, len - 3000)]);
  t.same(back, src);
  t.same(c.subarray(len - 3000), new Uint8Array(10), 'bytes past len are not touched');
  const edge = new Uint8Array(2);
  io(s, 'read', RAM_CHUNK_SIZE - 1, [edge], 2);
  t.same(edge, src.subarray(2999, 3001));
  t.end();
});

t.test('zero-length segments and exact end of store', (t) => {
  const s = new RamStore(RAM_CHUNK_SIZE, 'r');
  const data = new Uint8Array(512).fill(9);
  t.equal(io(s, 'write', RAM_CHUNK_SIZE - 512, [new Uint8Array(0), data], 512), null);
  const back = new Uint8Array(512);
  t.equal(io(s, 'read', RAM_CHUNK_SIZE - 512, [new Uint8Array(0), new Uint8Array(0), back], 512), null);
  t.same(back, data);
  t.end();
});

t.test('range and segment checks', (t) => {
  const s = new RamStore(RAM_CHUNK_SIZE, 'r');
  const buf = new Uint8Array(1024);
  t.match(io(s, 'read', RAM_CHUNK_SIZE - 512, [buf], 1024), { code: 'ERANGE' });
  t.match(io(s, 'write', -512, [buf], 512), { code: 'ERANGE' });
  t.match(io(s, 'read', 0, [buf], 2048), { code: 'EINVAL' }, 'segments shorter than len');
  t.equal(s.allocatedBytes, 0, 'a failed write allocates nothing');
  let closed: Error | null | undefined;
  s.close((e) => (closed = e));
  t.equal(closed, null);
  t.match(io(s, 'read', 0, [buf], 512), { code: 'EBADF' });
  let flushed: Error | null | undefined;
  s.flush((e) => (flushed = e));
  t.match(flushed, { code: 'EBADF' });
  t.end();
});

t.test('size validation', (t) => {
  t.throws(() => createRamStore({ sizeBytes: 0 }), RangeError);
  t.throws(() => createRamStore({ sizeBytes: 1000 }), RangeError);
  t.throws(() => createRamStore({ sizeBytes: 2 ** 60 }), RangeError);
  t.end();
});

t.test('an injected copier moves every byte, once, and nothing else copies', (t) => {
  const calls: string[] = [];
  let bytes = 0;
  const copy: ByteCopier = (dst, dstOffset, src, srcOffset, length) => {
    calls.push(`${dst.length}@${dstOffset}<-${src.length}@${srcOffset}+${length}`);
    bytes += length;
    jsByteCopier(dst, dstOffset, src, srcOffset, length);
  };
  const store = new RamStore(4 << 20, 'copier', copy);
  const a = new Uint8Array(3000).fill(0xa1);
  const b = new Uint8Array(2000).fill(0xb2);
  // 4096 bytes straddling the 1 MiB chunk boundary, from two segments (the second used in part).
  const at = RAM_CHUNK_SIZE - 1000;
  store.write(at, [a, b], 4096, false, (err) => t.equal(err, null));
  t.same(calls, [
    `${RAM_CHUNK_SIZE}@${RAM_CHUNK_SIZE - 1000}<-3000@0+1000`,
    `${RAM_CHUNK_SIZE}@0<-3000@1000+2000`,
    `${RAM_CHUNK_SIZE}@2000<-2000@0+1096`,
  ]);
  t.equal(bytes, 4096, 'exactly one copy of each byte');
  const back = new Uint8Array(4096);
  store.read(at, [back], 4096, (err) => t.equal(err, null));
  t.equal(bytes, 8192);
  t.equal(back[0], 0xa1);
  t.equal(back[2999], 0xa1);
  t.equal(back[3000], 0xb2);
  t.equal(back[4095], 0xb2);
  t.end();
});
