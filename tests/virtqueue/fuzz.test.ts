// Seeded, bounded fuzz of the split-ring walker: offer valid requests, corrupt the rings
// at random, then process. Every outcome is either success or a VirtqueueError; every
// view handed out lies inside a region; nothing outside the used ring is written; the
// guard zones stay intact; nothing hangs (pops are bounded per round).
import t from 'tap';
import {
  DescriptorChain,
  FakeGuestMemory,
  FakeSplitDriver,
  SplitQueue,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VirtqueueError,
} from '../../virtqueue';
import { prng } from './util';

const ITERATIONS = 1500;
const SEED = 0x5eed_2024;

t.test(`random ring corruption (${ITERATIONS} rounds, seed ${SEED.toString(16)})`, (t) => {
  const rnd = prng(SEED);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const outcomes = new Map<string, number>();
  const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  let failures = 0;

  for (let iter = 0; iter < ITERATIONS && failures < 5; iter++) {
    const mem = new FakeGuestMemory([
      { gpa: 0x10_0000, size: 0x4000 },
      { gpa: 0x10_4000, size: 0x4000, userAddr: 0x6000_0000_0000 }, // adjacent in GPA only
      { gpa: 0x80_0000, size: 0x4000 }, // after a gap
    ]);
    const size = pick([1, 2, 4, 8, 16]);
    const indirect = rnd() < 0.7;
    const startIdx = rnd() < 0.3 ? 65536 - int(4) - 1 : int(3);
    const drv = new FakeSplitDriver(mem, size, { indirect, eventIdx: rnd() < 0.5, startIdx, region: int(3) });

    // Valid requests first.
    const offered = int(size) + 1;
    for (let i = 0; i < offered; i++) {
      const rd = Array.from({ length: int(3) }, () => int(64) + 1);
      const wr = Array.from({ length: int(3) }, () => int(64) + 1);
      if (rd.length + wr.length === 0) rd.push(1);
      try {
        drv.addChain(rd, wr, {
          indirect: indirect && rnd() < 0.5,
          directPrefix: int(2),
          indirectWriteFlag: rnd() < 0.2,
          split: rnd() < 0.2 ? 'per-byte' : 'none',
        });
      } catch {
        break; // out of descriptors: fine
      }
    }

    // Then corrupt.
    const interesting = [0, 1, size - 1, size, size + 1, 0x8000, 0xffff, 0xffff_ffff, 0x1_0000, 16, 17, 0x4000, 0x10_3ff8];
    const corruptions = int(4);
    for (let k = 0; k < corruptions; k++) {
      const d = int(size);
      switch (int(9)) {
        case 0:
          mem.write(drv.descTable + int(16 * size), Uint8Array.of(int(256)));
          break;
        case 1:
          drv.setDesc(d, { len: pick(interesting) });
          break;
        case 2:
          drv.setDesc(d, { next: pick(interesting) & 0xffff });
          break;
        case 3:
          drv.setDesc(d, { flags: int(8) | (rnd() < 0.1 ? 0x8080 : 0) });
          break;
        case 4:
          drv.setDesc(d, {
            addr: pick<bigint | number>([0, 0x10_3ff0, 0x10_3fff, 0x10_8000, 0x80_3ff8, 2n ** 53n, 2n ** 64n - 1n, int(0x90_0000)]),
          });
          break;
        case 5:
          drv.setAvailIdx((startIdx + pick([0, 1, size, size + 1, 0x8000, 0xffff])) & 0xffff);
          break;
        case 6:
          drv.setAvailRing(int(size), pick(interesting) & 0xffff);
          break;
        case 7: {
          // Corrupt inside an indirect table, if this descriptor points to one.
          const desc = drv.getDesc(d);
          if ((desc.flags & VIRTQ_DESC_F_INDIRECT) !== 0 && desc.len > 0 && desc.addr < 0x90_0000n) {
            try {
              mem.write(Number(desc.addr) + int(desc.len), Uint8Array.of(pick([0, 1, 2, 4, 7, 0xff, int(256)])));
            } catch {
              /* table not mapped: already hostile */
            }
          }
          break;
        }
        case 8: {
          // Build a small hostile chain by hand.
          const flags = pick([VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 0]);
          drv.setDesc(d, { addr: 0x10_0000 + int(0x8000), len: int(64), flags, next: int(size + 1) });
          drv.offer(d);
          break;
        }
      }
    }

    const snapshot = mem.regions.map((r) => Uint8Array.from(r.bytes));
    const usedStart = drv.usedRing;
    const usedEnd = drv.usedRing + 6 + 8 * size;

    const q = new SplitQueue(mem.toGuestMemory(), drv.config(), startIdx);
    let popped = 0;
    const held: DescriptorChain[] = [];
    try {
      for (let round = 0; round < 2 * size + 2; round++) {
        if (rnd() < 0.3) q.disableNotification();
        const c = q.pop();
        if (c === null) {
          q.enableNotification();
          break;
        }
        popped++;
        for (const seg of [...c.readable, ...c.writable]) {
          if (!mem.contains(seg)) {
            failures++;
            t.fail(`round ${iter}: a view outside every region`);
          }
        }
        if (c.readable.reduce((n, s) => n + s.length, 0) !== c.readableLength) t.fail('readableLength mismatch');
        if (c.writable.reduce((n, s) => n + s.length, 0) !== c.writableLength) t.fail('writableLength mismatch');
        // Complete now, or keep it in flight for a while (reaches the in-flight checks).
        if (rnd() < 0.5) held.push(c);
        else q.pushUsed(c, int(c.writableLength + 8));
        if (rnd() < 0.5) q.publishUsed();
      }
      for (const c of held) q.pushUsed(c, c.writableLength);
      q.publishUsed();
      count(popped > 0 ? 'success' : 'empty');
    } catch (e) {
      if (e instanceof VirtqueueError) count(e.code);
      else {
        failures++;
        t.fail(`round ${iter}: ${(e as Error)?.stack ?? String(e)}`);
      }
    }

    // Write scope: nothing outside the used ring changed, guards intact.
    mem.regions.forEach((r, i) => {
      const before = snapshot[i];
      for (let off = 0; off < r.size; off++) {
        if (r.bytes[off] === before[off]) continue;
        const gpa = r.guestPhysAddr + off;
        if (gpa < usedStart || gpa >= usedEnd) {
          failures++;
          t.fail(`round ${iter}: byte at 0x${gpa.toString(16)} written outside the used ring`);
          break;
        }
      }
    });
    if (!mem.guardsIntact()) {
      failures++;
      t.fail(`round ${iter}: guard zone written`);
    }
  }

  t.equal(failures, 0, 'no unexpected outcome');
  const summary = Object.fromEntries([...outcomes].sort());
  t.comment(JSON.stringify(summary));
  t.ok((outcomes.get('success') ?? 0) > ITERATIONS / 10, 'many rounds still succeed');
  const codes = [...outcomes.keys()].filter((k) => k !== 'success' && k !== 'empty');
  t.ok(codes.length >= 10, `the corruptions reach many distinct checks (${codes.length})`);
  t.end();
});
