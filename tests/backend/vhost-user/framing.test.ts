// MessageAssembler and reply encoding (vhost-user.rst "Message Specification"; V1.1, V1.4,
// V1.5). Bytes are written out literally (little-endian hosts).
import t from 'tap';
import { MessageAssembler, encodeReply, encodeMessage } from '../../../backend/vhost-user/framing';
import { ProtocolError } from '../../../backend/vhost-user/errors';

// SET_VRING_NUM (8), flags version 1, size 8, {index 2, num 256}.
const SET_VRING_NUM_2_256 = Uint8Array.from([8, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0]);
// SET_VRING_KICK (12), flags 1, size 8, u64 index 1.
const SET_VRING_KICK_1 = Uint8Array.from([12, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
// SET_OWNER (3), flags 1, size 0.
const SET_OWNER = Uint8Array.from([3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);

function rig(opts?: { maxPayload?: number; maxFds?: number }) {
  const closed: number[] = [];
  const a = new MessageAssembler((fd) => closed.push(fd), opts);
  const all = () => {
    const out = [];
    for (let m = a.next(); m; m = a.next()) out.push(m);
    return out;
  };
  return { a, closed, all };
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

t.test('one message in one chunk', (t) => {
  const { a, all } = rig();
  a.push(SET_VRING_NUM_2_256);
  const [m, ...rest] = all();
  t.same(rest, []);
  t.equal(m.request, 8);
  t.equal(m.flags, 1);
  t.same([...m.payload], [2, 0, 0, 0, 0, 1, 0, 0]);
  t.same(m.fds, []);
  t.equal(a.pendingBytes, 0);
  t.end();
});

t.test('a header split byte by byte', (t) => {
  const { a, all } = rig();
  for (let i = 0; i < SET_VRING_NUM_2_256.length - 1; i++) {
    a.push(SET_VRING_NUM_2_256.subarray(i, i + 1));
    t.same(all(), [], `nothing after ${i + 1} bytes`);
    t.equal(a.pendingBytes, i + 1);
  }
  a.push(SET_VRING_NUM_2_256.subarray(SET_VRING_NUM_2_256.length - 1));
  const ms = all();
  t.equal(ms.length, 1);
  t.same([...ms[0].payload], [2, 0, 0, 0, 0, 1, 0, 0]);
  t.end();
});

t.test('the payload is a private copy', (t) => {
  const { a, all } = rig();
  const chunk = SET_VRING_NUM_2_256.slice();
  a.push(chunk);
  chunk.fill(0xee);
  t.same([...all()[0].payload], [2, 0, 0, 0, 0, 1, 0, 0]);
  t.end();
});

t.test('a zero-size message completes at the end of its header', (t) => {
  const { a, all } = rig();
  a.push(SET_OWNER);
  const ms = all();
  t.equal(ms.length, 1);
  t.equal(ms[0].request, 3);
  t.equal(ms[0].payload.length, 0);
  t.end();
});

t.test('fds belong to the last message that starts in their chunk', (t) => {
  const { a, all } = rig();
  // Two messages glued by the kernel; the kick fd came with the second (its skb is last).
  a.push(cat(SET_VRING_NUM_2_256, SET_VRING_KICK_1), [41]);
  const ms = all();
  t.same(ms.map((m) => [m.request, m.fds]), [[8, []], [12, [41]]]);

  // The tail of one message, then a whole message with an fd.
  a.push(SET_VRING_NUM_2_256.subarray(0, 15));
  a.push(cat(SET_VRING_NUM_2_256.subarray(15), SET_VRING_KICK_1), [42]);
  t.same(all().map((m) => [m.request, m.fds]), [[8, []], [12, [42]]]);

  // A message whose fds came with its first chunk, completed later.
  a.push(SET_VRING_KICK_1.subarray(0, 5), [43]);
  t.same(all(), []);
  a.push(SET_VRING_KICK_1.subarray(5));
  t.same(all().map((m) => [m.request, m.fds]), [[12, [43]]]);
  t.end();
});

t.test('fds on a chunk that only continues a message: error, every held fd closed', (t) => {
  const { a, closed, all } = rig();
  a.push(SET_VRING_KICK_1.subarray(0, 4), [50]);
  t.throws(() => a.push(SET_VRING_KICK_1.subarray(4), [51]), ProtocolError);
  t.same(closed.sort(), [50, 51]);
  t.same(all(), []);
  // Broken from now on: new fds are closed too.
  t.throws(() => a.push(SET_OWNER, [52]), ProtocolError);
  t.same(closed.sort(), [50, 51, 52]);
  t.end();
});

t.test('a payload size above the limit is refused before any payload arrives', (t) => {
  const { a, closed } = rig();
  // GET_CONFIG (24) claiming 269 bytes: one more than VhostUserConfig (12 + 256).
  const hdr = Uint8Array.from([24, 0, 0, 0, 1, 0, 0, 0, 0x0d, 0x01, 0, 0]);
  t.throws(() => a.push(hdr, [7]), { name: 'ProtocolError', message: /payload size 269 exceeds the largest accepted \(268\)/ });
  t.same(closed, [7]);

  const ok = rig();
  ok.a.push(encodeMessage(24, 1, new Uint8Array(268)));
  t.equal(ok.all()[0].payload.length, 268, '268 bytes is accepted');

  const huge = rig();
  t.throws(() => huge.a.push(Uint8Array.from([5, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])), ProtocolError, 'size 0xffffffff');
  t.end();
});

t.test('more fds than any message carries are refused and closed', (t) => {
  const { a, closed } = rig();
  const fds = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  t.throws(() => a.push(SET_OWNER, fds), { message: /9 fds in one message, at most 8/ });
  t.same(closed, fds);
  t.end();
});

t.test('fds without bytes are refused and closed', (t) => {
  const { a, closed } = rig();
  t.throws(() => a.push(new Uint8Array(0), [9]), ProtocolError);
  t.same(closed, [9]);
  t.end();
});

t.test('dispose closes the fds of a partial message and of messages not taken', (t) => {
  const { a, closed } = rig();
  a.push(SET_VRING_KICK_1, [60]); // complete, not taken
  a.push(SET_VRING_KICK_1.subarray(0, 3), [61]); // partial
  a.dispose();
  t.same(closed.sort(), [60, 61]);
  t.equal(a.next(), null);
  a.dispose();
  t.same(closed.length, 2, 'idempotent');
  t.end();
});

t.test('an error also closes the fds of complete messages not yet taken', (t) => {
  const { a, closed } = rig({ maxPayload: 8 });
  const big = Uint8Array.from([5, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0]);
  t.throws(() => a.push(cat(SET_VRING_KICK_1, big), [70]));
  t.same(closed, [70]);
  t.end();
});

t.test('encodeReply: flags are version 1 | REPLY (0x5)', (t) => {
  // GET_FEATURES reply with u64 0x40000000 (bit 30).
  const r = encodeReply(1, Uint8Array.from([0, 0, 0, 0x40, 0, 0, 0, 0]));
  t.same([...r], [1, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0]);
  t.same([...encodeReply(24)], [24, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0], 'zero-length reply');
  t.end();
});
