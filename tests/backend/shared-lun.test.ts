// Integration: one backend, one LUN, two sockets (two target ports in two ALUA groups), two fake
// QEMUs. Persistent reservations and ALUA states are shared state of the LUN, seen through both
// ports; APTPL registrations survive a backend restart.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend, type Backend } from '../../backend/app';
import { finishConfig, loadConfigFile, type ServeConfig } from '../../backend/config';
import { Logger } from '../../backend/log';
import { FakeVirtioScsiGuest, type ScsiResult } from '../../backend/virtio-scsi/fake-guest';

const dir = mkdtempSync(join(tmpdir(), 'vst-shared-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const RESERVATION_CONFLICT = 0x18;

function config(file: string, groups: [number, string][]): ServeConfig {
  writeFileSync(file, JSON.stringify({
    logLevel: 'silent',
    ports: [
      { socket: join(dir, 'a.sock'), wwn: 'naa.5001405aaaaaaaa1', initiator: 'naa.5001405aaaaaaaa2', group: 1 },
      { socket: join(dir, 'b.sock'), wwn: 'naa.5001405bbbbbbbb1', initiator: 'naa.5001405bbbbbbbb2', group: 2 },
    ],
    targetPortGroups: groups.map(([id, state]) => ({ id, state })),
    stateDir: join(dir, 'state'),
    runDir: join(dir, 'run'),
    luns: [{ lun: 0, backstore: 'file', path: join(dir, 'disk.img'), size: '4M' }],
  }));
  return finishConfig({ ...loadConfigFile(file), configFile: file });
}

const be64 = (v: bigint): number[] => Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(56 - 8 * i)) & 0xffn));

/** PERSISTENT RESERVE OUT (SPC-4 §6.16): service action, type, 24-byte parameter list. */
function prOut(g: FakeVirtioScsiGuest, sa: number, type: number, key: bigint, saKey: bigint, flags = 0): Promise<ScsiResult> {
  const param = new Uint8Array(24);
  param.set(be64(key), 0);
  param.set(be64(saKey), 8);
  param[20] = flags;
  return g.command(0, [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], { dataOut: param });
}

/** PERSISTENT RESERVE IN (SPC-4 §6.15). */
function prIn(g: FakeVirtioScsiGuest, sa: number): Promise<ScsiResult> {
  return g.command(0, [0x5e, sa, 0, 0, 0, 0, 0, 0x01, 0x00, 0], { dataIn: 256 });
}

const write10 = (g: FakeVirtioScsiGuest): Promise<ScsiResult> =>
  g.command(0, [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: new Uint8Array(512).fill(0x5a) });
const read10 = (g: FakeVirtioScsiGuest): Promise<ScsiResult> =>
  g.command(0, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataIn: 512 });
const senseKey = (r: ScsiResult): [number, number, number] => [r.sense[2] & 0x0f, r.sense[12], r.sense[13]];

async function clearUnitAttentions(g: FakeVirtioScsiGuest): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const r = await g.command(0, [0x00, 0, 0, 0, 0, 0]);
    if (r.status === GOOD) return;
  }
  throw new Error('unit attentions do not clear');
}

function shutdown(b: Backend): Promise<Error | null> {
  return new Promise((r) => b.shutdown((err) => r(err)));
}

t.test('two sockets, one LUN: reservations and ALUA shared through both target ports', async (t) => {
  const file = join(dir, 'cfg.json');
  let backend = startBackend(config(file, [[1, 'active-optimized'], [2, 'active-non-optimized']]), new Logger('silent'));
  let a = await FakeVirtioScsiGuest.attach(join(dir, 'a.sock'));
  let b = await FakeVirtioScsiGuest.attach(join(dir, 'b.sock'));
  await clearUnitAttentions(a);
  await clearUnitAttentions(b);

  // VPD 83h through each port: the relative target port (designator type 4h) and group (5h), SAS PIV.
  for (const [g, port, group] of [[a, 1, 1], [b, 2, 2]] as const) {
    const r = await g.command(0, [0x12, 1, 0x83, 0x01, 0x00, 0], { dataIn: 256 });
    const page = r.data.subarray(0, 4 + ((r.data[2] << 8) | r.data[3]));
    const rel = findDesignator(page, 0x94);
    t.same(rel && [...rel], [0x61, 0x94, 0x00, 0x04, 0, 0, 0, port], `port ${port}: SAS (6h) PIV=1 target port, relative target port ${port}`);
    const tpg = findDesignator(page, 0x95);
    t.same(tpg && [...tpg], [0x61, 0x95, 0x00, 0x04, 0, 0, 0, group], `port ${port}: target port group ${group}`);
  }

  // The fence_scsi flow: A registers and reserves Write Exclusive - Registrants Only (type 5).
  t.equal((await prOut(a, 0x00, 0, 0n, 0xaan)).status, GOOD, 'A REGISTER key AAh');
  t.equal((await prOut(a, 0x01, 0x05, 0xaan, 0n)).status, GOOD, 'A RESERVE WERO');
  t.equal((await write10(a)).status, GOOD, 'A (holder) writes');
  t.equal((await write10(b)).status, RESERVATION_CONFLICT, 'B (not registered) cannot write');
  t.equal((await read10(b)).status, GOOD, 'B may still read under a Write Exclusive type');
  const keys = await prIn(b, 0x00);
  t.same([...keys.data.subarray(4, 8)], [0, 0, 0, 8], 'READ KEYS through the other port: one key');
  t.same([...keys.data.subarray(8, 16)], be64(0xaan), 'A\'s key');

  // B registers and preempts-and-aborts A: B holds the reservation, A is no longer registered.
  t.equal((await prOut(b, 0x00, 0, 0n, 0xbbn)).status, GOOD, 'B REGISTER key BBh');
  t.equal((await prOut(b, 0x05, 0x05, 0xbbn, 0xaan)).status, GOOD, 'B PREEMPT AND ABORT A');
  const ua = await write10(a);
  t.equal(ua.status, CHECK_CONDITION, 'A learns it was preempted');
  t.same(senseKey(ua), [0x6, 0x2a, 0x05], 'UNIT ATTENTION, REGISTRATIONS PREEMPTED 2A/05');
  t.equal((await write10(a)).status, RESERVATION_CONFLICT, 'A\'s writes now conflict');
  t.equal((await write10(b)).status, GOOD, 'B (the new holder) writes');
  const res = await prIn(a, 0x01);
  t.same([...res.data.subarray(8, 16)], be64(0xbbn), 'READ RESERVATION: B\'s key holds it');
  t.equal(res.data[21] & 0x0f, 0x05, 'type WERO');

  // APTPL: registrations survive a backend restart; the state file lives in stateDir.
  t.equal((await prOut(b, 0x00, 0, 0xbbn, 0xbbn, 0x01)).status, GOOD, 'B re-registers the same key with APTPL=1');
  t.ok(readdirSync(join(dir, 'state')).some((f) => f.endsWith('.pr')), 'APTPL state written to the state directory');
  t.notOk(existsSync(join(dir, 'run')) && readdirSync(join(dir, 'run')).some((f) => f.endsWith('.pr')), 'no stale volatile copy');
  await a.detach();
  await b.detach();
  t.equal(await shutdown(backend), null, 'clean shutdown');

  backend = startBackend(config(file, [[1, 'active-optimized'], [2, 'active-non-optimized']]), new Logger('silent'));
  a = await FakeVirtioScsiGuest.attach(join(dir, 'a.sock'));
  b = await FakeVirtioScsiGuest.attach(join(dir, 'b.sock'));
  await clearUnitAttentions(a);
  await clearUnitAttentions(b);
  const after = await prIn(a, 0x01);
  t.same([...after.data.subarray(8, 16)], be64(0xbbn), 'after a restart B still holds the reservation');
  t.equal((await write10(a)).status, RESERVATION_CONFLICT, 'and A still conflicts');
  t.equal((await write10(b)).status, GOOD, 'B writes');

  // ALUA: REPORT TARGET PORT GROUPS (MAINTENANCE IN A3h/0Ah), then an operator change via SIGHUP.
  const rtpg = await a.command(0, [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], { dataIn: 256 });
  t.equal(rtpg.status, GOOD, 'RTPG');
  t.same(groupStates(rtpg.data), [[1, 0x0], [2, 0x1]], 'group 1 active/optimized, group 2 active/non-optimized');
  config(file, [[1, 'active-optimized'], [2, 'standby']]);
  await new Promise((r) => backend.reload(() => r(null)));
  const changed = await read10(b);
  t.same([changed.status, ...senseKey(changed)], [CHECK_CONDITION, 0x6, 0x2a, 0x06], 'B: ASYMMETRIC ACCESS STATE CHANGED 2A/06');
  const standby = await read10(b);
  t.same([standby.status, ...senseKey(standby)], [CHECK_CONDITION, 0x2, 0x04, 0x0b], 'B: NOT READY, TARGET PORT IN STANDBY STATE 04/0B');
  const ua2 = await read10(a);
  t.same(senseKey(ua2), [0x6, 0x2a, 0x06], 'A is told too');
  t.equal((await read10(a)).status, GOOD, 'A\'s port stays active/optimized');
  const rtpg2 = await b.command(0, [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], { dataIn: 256 });
  t.same(groupStates(rtpg2.data), [[1, 0x0], [2, 0x2]], 'RTPG through the standby port: group 2 standby');

  await a.detach();
  await b.detach();
  t.equal(await shutdown(backend), null);
});

t.test('a damaged reservation state file stops the start with a clear error', async (t) => {
  const file = join(dir, 'cfg2.json');
  const cfg = config(file, [[1, 'active-optimized'], [2, 'active-optimized']]);
  const stateFile = readdirSync(join(dir, 'state')).find((f) => f.endsWith('.pr'))!;
  writeFileSync(join(dir, 'state', stateFile), 'not a state file');
  t.throws(() => startBackend(cfg, new Logger('silent')), new RegExp(`LUN 0: persistent reservation state: .*${stateFile.replace('.', '\\.')}`));
  t.notOk(existsSync(join(dir, 'a.sock')), 'nothing left listening');
});

/** A designator of VPD 83h with byte 1 = `typeByte` (PIV | ASSOCIATION | TYPE). */
function findDesignator(page: Uint8Array, typeByte: number): Uint8Array | null {
  for (let p = 4; p + 4 <= page.length; p += 4 + page[p + 3]) {
    if (page[p + 1] === typeByte) return page.subarray(p, p + 4 + page[p + 3]);
  }
  return null;
}

/** [group id, asymmetric access state] of each descriptor of RTPG length-only format data (SPC-4 §6.35). */
function groupStates(d: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  const end = 4 + ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]);
  for (let p = 4; p + 8 <= end; p += 8 + 4 * d[p + 7]) out.push([(d[p + 2] << 8) | d[p + 3], d[p] & 0x0f]);
  return out;
}

t.test('--host-lun on a host without LIO: a clear error naming the module, nothing left listening', async (t) => {
  const { FakeConfigfs } = await import('../../backend/tcmu/fake-configfs');
  const { ConfigfsHost } = await import('../../backend/tcmu/configfs');
  const cases: [Record<string, boolean>, RegExp][] = [
    [{ configfs: false }, /configfs/],
    [{ target_core_user: false }, /target_core_user/],
    [{ tcm_loop: false }, /tcm_loop/],
  ];
  for (const [modules, re] of cases) {
    const fake = new FakeConfigfs({ modules });
    const cfg = finishConfig({
      socket: join(dir, 'h.sock'), logLevel: 'silent', stateDir: join(dir, 'hstate'), runDir: join(dir, 'hrun'),
      luns: [{ lun: 0, backstore: 'ram', size: 1 << 20, readOnly: false, direct: false, io: 'auto', blockSize: 512, writeCache: true }],
      hostLuns: [{ lun: 0 }],
    });
    t.throws(() => startBackend(cfg, new Logger('silent'), -1, { configfs: new ConfigfsHost(fake.hostOptions()) }), re, JSON.stringify(modules));
    t.notOk(existsSync(join(dir, 'h.sock')), 'no socket was created');
    fake.dispose();
  }
});
