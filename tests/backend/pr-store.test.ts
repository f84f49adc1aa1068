// backend/pr-store.ts: the on-disk persistent reservation state (reliability.md §4.7). Atomic
// saves into the APTPL-chosen directory, the stale copy removed, the newer copy chosen at start,
// a temporary file never read, and every kind of damage a PrStateError naming the file.
import t from 'tap';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
import { FilePrPersistence, PrStateError, loadPrState, prStateFileName } from '../../backend/pr-store';
import { LogicalUnit, PrSnapshot, ScsiTarget, createRamStore } from '../../scsi-emul';
import { run, submit } from '../../scsi-emul/testing';

const root = mkdtempSync(join(tmpdir(), 'vst-prstore-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function dirs(): { persistentDir: string; volatileDir: string } {
  const d = join(root, `case${++n}`);
  return { persistentDir: join(d, 'var-lib'), volatileDir: join(d, 'run') };
}

function snapshot(seq: number, aptpl: boolean, key = '00000000000000aa'): PrSnapshot {
  return {
    version: 1, seq, generation: seq, aptpl,
    registrations: [{ initiatorPort: 'naa.5001405000000a01', targetPortId: 1, allTargetPorts: false, key }],
    reservation: { type: 5, scope: 0, holder: 0 },
  };
}

function save(p: FilePrPersistence, key: string, s: PrSnapshot): Promise<Error | null> {
  return new Promise((resolve) => p.save(key, s, resolve));
}

/** A state file built here from the documented layout (not with the code under test). */
function fileBytes(payload: Uint8Array, opts: { version?: number; reserved?: number; length?: number; hash?: Buffer } = {}): Buffer {
  const h = Buffer.alloc(48);
  Buffer.from([0x89, 0x56, 0x53, 0x54, 0x53, 0x50, 0x52, 0x0a]).copy(h, 0);
  h.writeUInt16BE(opts.version ?? 1, 8);
  h.writeUInt16BE(opts.reserved ?? 0, 10);
  h.writeUInt32BE(opts.length ?? payload.length, 12);
  (opts.hash ?? createHash('sha256').update(payload).digest()).copy(h, 16);
  return Buffer.concat([h, payload]);
}

t.test('file names: safe characters kept, the rest escaped, distinct keys stay distinct', (t) => {
  t.equal(prStateFileName('lu-0123abcd'), 'lu-0123abcd.pr');
  t.equal(prStateFileName('naa.6025654a1b2c3d4e'), 'naa.6025654a1b2c3d4e.pr');
  t.equal(prStateFileName('a/b c'), 'a%2Fb%20c.pr');
  t.equal(prStateFileName('a%2Fb'), 'a%252Fb.pr', '% itself is escaped, so escaping is one-to-one');
  t.equal(prStateFileName('.hidden'), '%2Ehidden.pr', 'no hidden or relative names');
  t.equal(prStateFileName('..'), '%2E..pr');
  t.equal(prStateFileName('é'), '%C3%A9.pr');
  t.throws(() => prStateFileName(''), RangeError);
  t.throws(() => prStateFileName('x'.repeat(230)), /too long/);
  t.end();
});

t.test('APTPL=0 goes to the volatile directory, APTPL=1 to the persistent one; the other copy goes', async (t) => {
  const d = dirs();
  const p = new FilePrPersistence(d);
  t.equal(await save(p, 'lu-1', snapshot(1, false)), null);
  const file = 'lu-1.pr';
  t.ok(existsSync(join(d.volatileDir, file)), 'volatile copy');
  t.notOk(existsSync(join(d.persistentDir, file)));
  t.equal(statSync(d.volatileDir).mode & 0o777, 0o700, 'directory created 0700');
  t.equal(statSync(join(d.volatileDir, file)).mode & 0o777, 0o600, 'file 0600');
  t.same(loadPrState(d, 'lu-1'), snapshot(1, false));
  t.equal(await save(p, 'lu-1', snapshot(2, true)), null);
  t.ok(existsSync(join(d.persistentDir, file)), 'persistent copy');
  t.notOk(existsSync(join(d.volatileDir, file)), 'the volatile copy is removed once the new one is durable');
  t.same(loadPrState(d, 'lu-1'), snapshot(2, true));
  t.equal(await save(p, 'lu-1', snapshot(3, false)), null);
  t.notOk(existsSync(join(d.persistentDir, file)), 'APTPL=0 again: a power loss must not bring back the APTPL=1 state');
  t.same(loadPrState(d, 'lu-1'), snapshot(3, false));
  t.same(readdirSync(d.volatileDir), [file], 'no temporary files left');
  t.end();
});

t.test('the written file: magic, version, length, SHA-256, msgpack payload', async (t) => {
  const d = dirs();
  await save(new FilePrPersistence(d), 'lu-h', snapshot(1, true));
  const b = readFileSync(join(d.persistentDir, 'lu-h.pr'));
  t.equal(b.subarray(0, 12).toString('hex'), '89565354535052' + '0a' + '0001' + '0000');
  t.equal(b.readUInt32BE(12), b.length - 48);
  t.equal(b.subarray(16, 48).toString('hex'), createHash('sha256').update(b.subarray(48)).digest('hex'));
  t.same(b.subarray(48), pack({ key: 'lu-h', state: snapshot(1, true) }));
  t.end();
});

t.test('nothing saved: null; both copies (a crash before the stale one was removed): the newer one', async (t) => {
  const d = dirs();
  t.equal(loadPrState(d, 'lu-2'), null, 'no directories at all');
  const p = new FilePrPersistence(d);
  await save(p, 'lu-2', snapshot(5, true));
  const keep = join(root, 'keep.pr');
  copyFileSync(join(d.persistentDir, 'lu-2.pr'), keep);
  await save(p, 'lu-2', snapshot(6, false));
  copyFileSync(keep, join(d.persistentDir, 'lu-2.pr'));
  t.same(loadPrState(d, 'lu-2'), snapshot(6, false), 'save 6 (volatile) over save 5 (persistent)');
  await save(p, 'lu-2', snapshot(7, true));
  mkdirSync(d.volatileDir, { recursive: true });
  writeFileSync(join(d.volatileDir, 'lu-2.pr'), fileBytes(pack({ key: 'lu-2', state: snapshot(4, false) })));
  t.same(loadPrState(d, 'lu-2'), snapshot(7, true), 'save 7 (persistent) over save 4 (volatile)');
  writeFileSync(join(d.volatileDir, 'lu-2.pr'), fileBytes(pack({ key: 'lu-2', state: snapshot(7, false) })));
  t.throws(() => loadPrState(d, 'lu-2'), /both claim save number 7/, 'a tie is not guessed');
  t.end();
});

t.test('a temporary file is never read, and is cleaned up at load', async (t) => {
  const d = dirs();
  mkdirSync(d.persistentDir, { recursive: true });
  const temp = join(d.persistentDir, 'lu-3.pr.tmp-999-1');
  writeFileSync(temp, fileBytes(pack({ key: 'lu-3', state: snapshot(9, true) })));
  t.equal(loadPrState(d, 'lu-3'), null, 'an interrupted save is not state');
  t.notOk(existsSync(temp), 'and is removed');
  await save(new FilePrPersistence(d), 'lu-3', snapshot(1, true));
  writeFileSync(temp, 'garbage');
  t.same(loadPrState(d, 'lu-3'), snapshot(1, true), 'the renamed file is what counts');
  t.end();
});

t.test('damaged files: PrStateError naming the file and the damage, never a silent reset', async (t) => {
  const d = dirs();
  await save(new FilePrPersistence(d), 'lu-4', snapshot(1, true));
  const file = join(d.persistentDir, 'lu-4.pr');
  const good = readFileSync(file);
  const payload = pack({ key: 'lu-4', state: snapshot(1, true) });
  const flipped = Buffer.from(good);
  flipped[good.length - 3] ^= 0x01;
  const cases: [string, Buffer | string, RegExp][] = [
    ['empty', Buffer.alloc(0), /truncated: 0 bytes/],
    ['truncated', good.subarray(0, good.length - 5), /announces \d+ payload bytes, the file has \d+/],
    ['text', 'not a state file at all, just some text here for you', /wrong magic number/],
    ['version 2', fileBytes(payload, { version: 2 }), /format version 2; this program reads version 1/],
    ['reserved header bytes', fileBytes(payload, { reserved: 1 }), /reserved bytes/],
    ['a flipped bit', flipped, /SHA-256 checksum does not match/],
    ['not a record', fileBytes(Buffer.from([0xc1])), /payload is not a \{ key, state \} record/],
    ['cut msgpack', fileBytes(Buffer.from([0x92, 0x01])), /payload does not decode/],
    ['another LU\'s state', fileBytes(pack({ key: 'lu-other', state: snapshot(1, true) })), /holds the state of logical unit "lu-other", not of "lu-4"/],
    ['invalid content', fileBytes(pack({ key: 'lu-4', state: { ...snapshot(1, true), generation: -1 } })), /invalid content: generation/],
  ];
  for (const [what, bytes, re] of cases) {
    writeFileSync(file, bytes);
    try {
      loadPrState(d, 'lu-4');
      t.fail(`${what}: no error`);
    } catch (e) {
      t.type(e, PrStateError, what);
      t.match((e as Error).message, re, what);
      t.ok((e as Error).message.startsWith(file), `${what}: names the file`);
      t.equal((e as PrStateError).file, file);
    }
  }
  rmSync(file);
  mkdirSync(file);
  t.throws(() => loadPrState(d, 'lu-4'), /lu-4\.pr: cannot be read \(EISDIR\)/, 'unreadable');
  t.end();
});

t.test('a save that cannot be written reports the error and leaves no temporary file', async (t) => {
  const d = dirs();
  mkdirSync(join(d.persistentDir, '..'), { recursive: true });
  writeFileSync(d.persistentDir, 'a file where the directory should be');
  const err = await save(new FilePrPersistence(d), 'lu-5', snapshot(1, true));
  t.ok(err !== null, 'done(err)');
  t.match((err as NodeJS.ErrnoException).code, /EEXIST|ENOTDIR/);
  const bad = await new Promise<Error | null>((r) => new FilePrPersistence(d).save('', snapshot(1, false), r));
  t.type(bad, RangeError, 'a key that cannot name a file');
  t.end();
});

t.test('saves of one key are written in order', async (t) => {
  const d = dirs();
  const p = new FilePrPersistence(d);
  const results = await Promise.all([save(p, 'lu-6', snapshot(1, false)), save(p, 'lu-6', snapshot(2, true)), save(p, 'lu-6', snapshot(3, false))]);
  t.same(results, [null, null, null]);
  t.same(loadPrState(d, 'lu-6'), snapshot(3, false));
  t.notOk(existsSync(join(d.persistentDir, 'lu-6.pr')));
  t.end();
});

t.test('end to end: registrations saved by the core are there after a restart', async (t) => {
  const d = dirs();
  const nexus = { initiatorPort: 'naa.5001405000000a01', targetPortId: 1, protocolId: 6 };
  const start = (): ScsiTarget => {
    const target = new ScsiTarget();
    target.addLogicalUnit(0, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), {
      persistentReservations: { persistence: new FilePrPersistence(d), key: 'lu-e2e', restored: loadPrState(d, 'lu-e2e') },
    }));
    run(target, { nexus, cdb: [0x00, 0, 0, 0, 0, 0] }); // POWER ON
    return target;
  };
  const prOut = (target: ScsiTarget, sa: number, type: number, list: number[]): Promise<number> => new Promise((resolve) => {
    const r = submit(target, { nexus, cdb: [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], dataOut: Uint8Array.from(list) });
    const poll = (): void => { if (r.completions > 0) resolve(r.status); else setImmediate(poll); };
    poll();
  });
  let target = start();
  const key = [0, 0, 0, 0, 0, 0, 0, 0xaa];
  t.equal(await prOut(target, 0x00, 0, [0, 0, 0, 0, 0, 0, 0, 0, ...key, 0, 0, 0, 0, 0x01, 0, 0, 0]), 0, 'REGISTER, APTPL=1');
  t.equal(await prOut(target, 0x01, 0x05, [...key, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0, 'RESERVE WERO');
  target = start();
  const r = run(target, { nexus, cdb: [0x5e, 0x01, 0, 0, 0, 0, 0, 0, 24, 0], dataIn: 24 });
  t.equal(Buffer.from(r.data).toString('hex'), '00000001' + '00000010' + '00000000000000aa' + '00000000' + '00' + '05' + '0000',
    'READ RESERVATION after the restart: PRGENERATION 1, key AAh, type 5');
  t.end();
});
