// Live LUN changes from the config file (backend/reload.ts) through the real virtio-scsi device,
// a fake guest driver on fake guest memory and the real target core: the unit attentions a
// guest then meets (SAM-5 §5.14, SPC-4 r37 §6.33) and the exact 16-byte virtio_scsi_event
// structures on the event queue (virtio 1.2 §5.6.6.3: event le32, lun[8], reason le32).
import t from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeGuestMemory, FakeSplitDriver, featureBit, VirtioFeature } from '../../virtqueue';
import { ScsiTarget, type LogicalUnit } from '../../scsi-emul';
import { VirtioScsiDevice } from '../../backend/virtio-scsi/device';
import { VirtioScsiFeature } from '../../backend/virtio-scsi/spec';
import type { VringSetup } from '../../backend/vhost-user/device';
import { Logger } from '../../backend/log';
import { native } from '../../backend/native';
import { IoEngines, openLogicalUnit } from '../../backend/app';
import { loadConfigFile, parseLunSpec, type LunConfig } from '../../backend/config';
import { LunReloader, planReload, type ReloadResult, type RunningLun } from '../../backend/reload';
import { spawnBackend } from '../e2e/backend-process';

const QSIZE = 16;
const REQ_HDR = 51; // virtio_scsi_cmd_req with a 32-byte CDB
const RESP_HDR = 108; // virtio_scsi_cmd_resp with 96 bytes of sense
const EVENTQ = 1;
const REQQ = 2;

const dir = mkdtempSync(join(tmpdir(), 'vst-reload-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const openFds: number[] = [];
const devices: VirtioScsiDevice[] = [];
const targets: ScsiTarget[] = [];
t.afterEach(async () => {
  for (const d of devices.splice(0)) d.disconnect();
  for (const fd of openFds.splice(0)) native.close(fd);
  await Promise.all(targets.splice(0).map((tg) => new Promise((r) => tg.close(r))));
});

class Lines {
  readonly lines: string[] = [];
  write(line: string): void { this.lines.push(line); }
  text(): string { return this.lines.join(''); }
}

interface Rig {
  device: VirtioScsiDevice;
  target: ScsiTarget;
  reloader: LunReloader;
  drivers: FakeSplitDriver[];
  kickFds: number[];
  log: Lines;
  configFile: string;
}

let configCount = 0;

function writeConfig(file: string, luns: unknown[], extra: Record<string, unknown> = {}): void {
  writeFileSync(file, JSON.stringify({ luns, ...extra }));
}

/**
 * A running backend in miniature: the file's LUNs (and any --lun ones) on a target, the device
 * with all its queues started with `features` negotiated, and the reloader of app.ts's kind.
 */
function rig(fileLuns: unknown[], opts: { cli?: LunConfig[]; features?: bigint; hostLuns?: number[] } = {}): Rig {
  const configFile = join(dir, `config-${++configCount}.json`);
  writeConfig(configFile, fileLuns, { socket: '/run/x.sock' });
  const cli = opts.cli ?? [];
  const target = new ScsiTarget();
  targets.push(target);
  // The same path the CLI takes: the file's entries are parsed by loadConfigFile.
  const luns = [...(loadConfigFile(configFile).luns ?? []), ...cli];
  const engines = new IoEngines(new Logger('silent'));
  t.teardown(() => engines.close());
  const open = (l: LunConfig): LogicalUnit => openLogicalUnit(l, engines);
  for (const l of luns) target.addLogicalUnit(l.lun, open(l));
  const device = new VirtioScsiDevice({
    target, nexus: { initiatorPort: 'test-initiator', targetPortId: 1 }, numRequestQueues: 1, log: new Logger('silent'),
  });
  device.connected();
  const log = new Lines();
  const reloader = new LunReloader({
    target, events: device, log: new Logger('info', log), open, hostLuns: opts.hostLuns,
    config: {
      socket: '/run/x.sock', queues: 1, logLevel: 'info', initiatorId: 'test-initiator', luns, configFile,
      commandLineLuns: cli.map((l) => l.lun),
    },
  });
  const features = opts.features ?? (featureBit(VirtioFeature.VERSION_1) | featureBit(VirtioFeature.RING_EVENT_IDX) |
    featureBit(VirtioScsiFeature.HOTPLUG) | featureBit(VirtioScsiFeature.CHANGE));
  const mem = new FakeGuestMemory([{ gpa: 0x10_0000, size: 4 << 20 }]);
  const memory = mem.toGuestMemory();
  const drivers: FakeSplitDriver[] = [];
  const kickFds: number[] = [];
  for (let index = 0; index < device.queueCount; index++) {
    const d = new FakeSplitDriver(mem, QSIZE, { eventIdx: true, indirect: true });
    drivers.push(d);
    const kickFd = native.eventfd(0, true);
    kickFds.push(kickFd);
    openFds.push(kickFd);
    const c = d.config();
    const setup: VringSetup = {
      index, size: QSIZE, memory, descTable: c.descTable, availRing: c.availRing, usedRing: c.usedRing,
      lastAvailIdx: 0, kickFd, callFd: -1, errFd: -1, enabled: true, features,
    };
    device.startQueue(setup);
  }
  devices.push(device);
  return { device, target, reloader, drivers, kickFds, log, configFile };
}

function settle(): Promise<void> {
  return new Promise((r) => setImmediate(() => setImmediate(() => setTimeout(r, 5))));
}

/** Lets the driver post `n` empty 16-byte event buffers, as Linux does at probe time. */
async function postEventBuffers(r: Rig, n: number): Promise<number[]> {
  const d = r.drivers[EVENTQ];
  const heads: number[] = [];
  for (let i = 0; i < n; i++) heads.push(d.addChain([], [16], { kick: false }));
  d.kick(); // publish avail->idx
  native.eventfdWrite(r.kickFds[EVENTQ], 1);
  await settle();
  return heads;
}

/** The events delivered since the last call, each as its 16 bytes. */
async function takeEvents(r: Rig): Promise<number[][]> {
  await settle();
  const d = r.drivers[EVENTQ];
  return d.readUsed().map((u) => {
    if (u.len !== 16) throw new Error(`event buffer used with len ${u.len}`);
    return [...d.readWritable(u.id)];
  });
}

/** LUN field as Linux sends it (flat addressing). */
function lunField(lun: number): number[] {
  return [1, 0, 0x40 | (lun >> 8), lun & 0xff, 0, 0, 0, 0];
}

interface Resp { status: number; response: number; sense: number[]; dataIn: Uint8Array }

async function command(r: Rig, lun: number, cdb: number[], dataInLen = 0): Promise<Resp> {
  const req = new Uint8Array(REQ_HDR);
  req.set(lunField(lun), 0);
  req.set(cdb, 19);
  const d = r.drivers[REQQ];
  const head = d.addChain([req], dataInLen > 0 ? [RESP_HDR, dataInLen] : [RESP_HDR], { kick: false });
  if (d.kick()) native.eventfdWrite(r.kickFds[REQQ], 1);
  await settle();
  if (!d.readUsed().some((u) => u.id === head)) throw new Error('command not completed');
  const w = d.readWritable(head);
  const senseLen = new DataView(w.buffer, w.byteOffset).getUint32(0, true);
  return { status: w[10], response: w[11], sense: [...w.slice(12, 12 + senseLen)], dataIn: w.slice(RESP_HDR) };
}

const TUR = [0, 0, 0, 0, 0, 0];
const READ_CAPACITY_16 = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];

/** TURs until GOOD; returns the (asc, ascq) of each unit attention met, in order. */
async function drainUas(r: Rig, lun: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 8; i++) {
    const resp = await command(r, lun, TUR);
    t.equal(resp.response, 0, 'VIRTIO_SCSI_S_OK');
    if (resp.status === 0) return seen;
    t.same(resp.sense.slice(0, 3), [0x70, 0, 0x06], 'fixed format, UNIT ATTENTION');
    seen.push(`${resp.sense[12].toString(16).padStart(2, '0')}/${resp.sense[13].toString(16).padStart(2, '0')}`);
  }
  throw new Error('unit attentions do not drain');
}

function reload(r: Rig): Promise<ReloadResult> {
  return new Promise((res) => r.reloader.reload(res));
}

t.test('SIGHUP with a larger size and a new LUN: PARAM_CHANGE 0x092a, TRANSPORT_RESET RESCAN, 2A/09 and 3F/0E', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }]);
  await postEventBuffers(r, 4);
  t.same(await drainUas(r, 0), ['29/00'], 'the power-on UA of the session');

  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '16M' }, { lun: 2, backstore: 'ram', size: '4M' }]);
  const res = await reload(r);
  t.same(res, { loaded: true, added: [2], removed: [], resized: [0], refused: [] });
  t.same(await takeEvents(r), [
    // PARAM_CHANGE (3), LUN 0, reason ASC 2Ah | ASCQ 09h << 8 (virtio 1.2 §5.6.6.3.2)
    [3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x09, 0, 0],
    // TRANSPORT_RESET (1), LUN 2 (peripheral addressing, as REPORT LUNS lists it), reason RESCAN (1)
    [1, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0],
  ]);
  t.same(await drainUas(r, 0), ['2a/09', '3f/0e'], 'CAPACITY DATA HAS CHANGED before REPORTED LUNS DATA HAS CHANGED (SAM-5 §5.14 priority)');
  t.same(await drainUas(r, 2), ['29/01'], 'the new LU: POWER ON OCCURRED');
  const cap = await command(r, 0, READ_CAPACITY_16, 32);
  // READ CAPACITY(16): RETURNED LOGICAL BLOCK ADDRESS = 16 MiB / 512 - 1 = 7FFFh, BLOCK LENGTH 512.
  t.same([...cap.dataIn.subarray(0, 12)], [0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0, 0, 2, 0]);
  const rl = await command(r, 0, REPORT_LUNS, 64);
  t.same([...rl.dataIn.subarray(0, 24)], [0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0], 'REPORT LUNS: 0 and 2');
  t.match(r.log.text(), /LUN 0 grown from 8388608 to 16777216 bytes; PARAM_CHANGE event sent/);
  t.match(r.log.text(), /LUN 2 added \(ram, 4194304 bytes\); TRANSPORT_RESET\/RESCAN event sent/);
});

t.test('a LUN left out of the file is removed: TRANSPORT_RESET REMOVED, 3F/0E, then LOGICAL UNIT NOT SUPPORTED', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }, { lun: 300, backstore: 'ram', size: '4M' }]);
  await postEventBuffers(r, 2);
  await drainUas(r, 0);
  await drainUas(r, 300);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }]);
  const res = await reload(r);
  t.same(res, { loaded: true, added: [], removed: [300], resized: [], refused: [] });
  // LUN 300 ≥ 256: flat space addressing 01b, 0x40 | 300 >> 8, 300 & 0xff (SAM-5 §4.7.7); reason REMOVED (2).
  t.same(await takeEvents(r), [[1, 0, 0, 0, 1, 0, 0x41, 0x2c, 0, 0, 0, 0, 2, 0, 0, 0]]);
  t.same(await drainUas(r, 0), ['3f/0e']);
  const gone = await command(r, 300, TUR);
  t.equal(gone.response, 0, 'S_OK: the answer is SCSI sense, not a transport failure');
  t.equal(gone.status, 2, 'CHECK CONDITION');
  t.same(gone.sense, [0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x25, 0, 0, 0, 0, 0], 'LOGICAL UNIT NOT SUPPORTED');
  t.equal(r.target.getLogicalUnit(300), undefined);
  t.notOk(r.reloader.runningLuns().has(300));
});

t.test('a LUN exposed on the host is not removed under it; the rest of the reload applies', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }, { lun: 1, backstore: 'ram', size: '4M' }], { hostLuns: [0] });
  writeConfig(r.configFile, [{ lun: 2, backstore: 'ram', size: '4M' }]);
  const res = await reload(r);
  t.same(res.removed, [1], 'LUN 1 removed');
  t.same(res.added, [2], 'LUN 2 added');
  t.match(res.refused, [/LUN 0: exposed on this host \(hostLuns\); removing it is refused/]);
  t.ok(r.target.getLogicalUnit(0), 'LUN 0 still served');
  t.match(r.log.text(), /LUN 0: exposed on this host/);
});

t.test('no event buffer posted: the event is missed and the next one carries EVENTS_MISSED', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }]);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }, { lun: 1, backstore: 'ram', size: '1M' }]);
  t.same((await reload(r)).added, [1]);
  t.match(r.log.text(), /no event buffer for TRANSPORT_RESET\/RESCAN: the next event carries EVENTS_MISSED/);
  await postEventBuffers(r, 1);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }]);
  t.same((await reload(r)).removed, [1]);
  t.same(await takeEvents(r), [[1, 0, 0, 0x80, 1, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0]], 'TRANSPORT_RESET | VIRTIO_SCSI_T_EVENTS_MISSED (0x80000000)');
});

t.test('without VIRTIO_SCSI_F_HOTPLUG / F_CHANGE no event is posted; the unit attentions still are', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }], { features: featureBit(VirtioFeature.VERSION_1) | featureBit(VirtioFeature.RING_EVENT_IDX) });
  await postEventBuffers(r, 2);
  await drainUas(r, 0);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '9M' }, { lun: 1, backstore: 'ram', size: '1M' }]);
  const res = await reload(r);
  t.same([res.added, res.resized], [[1], [0]]);
  t.same(await takeEvents(r), [], 'the held buffers stay unused');
  t.same(await drainUas(r, 0), ['2a/09', '3f/0e']);
  t.match(r.log.text(), /did not negotiate VIRTIO_SCSI_F_CHANGE/);
  t.match(r.log.text(), /did not negotiate VIRTIO_SCSI_F_HOTPLUG/);
});

t.test('refused changes are logged, the rest of the reload still applies', async (t) => {
  const img = join(dir, 'refuse.img');
  const r = rig([
    { lun: 0, backstore: 'ram', size: '8M' },
    { lun: 1, backstore: 'file', path: img, size: '1M' },
  ], { cli: [parseLunSpec('5:ram:size=1M')] });
  await postEventBuffers(r, 4);
  await drainUas(r, 0);
  await drainUas(r, 1);
  writeConfig(r.configFile, [
    { lun: 0, backstore: 'ram', size: '4M' }, // shrink
    { lun: 1, backstore: 'file', path: img, size: '2M', 'block-size': 4096 }, // block size and size
    { lun: 5, backstore: 'ram', size: '2M' }, // a --lun LUN
    { lun: 6, backstore: 'ram', size: '1M' }, // a genuine addition
  ]);
  const res = await reload(r);
  t.same(res.added, [6]);
  t.same(res.resized, []);
  t.equal(res.refused.length, 3);
  t.match(res.refused[0], /LUN 0: size 4194304 is smaller than the current 8388608 bytes: shrinking a live LUN is refused/);
  t.match(res.refused[1], /LUN 1: block-size 512 → 4096: refused/);
  t.match(res.refused[2], /LUN 5: given with --lun on the command line/);
  t.equal(statSync(img).size, 1 << 20, 'LUN 1 kept its size too: nothing of a refused LUN changes');
  t.same(await takeEvents(r), [[1, 0, 0, 0, 1, 0, 0, 6, 0, 0, 0, 0, 1, 0, 0, 0]], 'only the addition is announced');
  t.same(await drainUas(r, 0), ['3f/0e'], 'no 2A/09');
  t.equal(r.target.getLogicalUnit(5)!.store.sizeBytes, 1 << 20, 'the --lun LUN is untouched');
  t.match(r.log.text(), /error reload: LUN 0: size 4194304 is smaller/);
});

t.test('a config that fails to parse or is inconsistent changes nothing', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }]);
  await postEventBuffers(r, 2);
  await drainUas(r, 0);
  const before = JSON.stringify([...r.reloader.runningLuns()]);
  writeFileSync(r.configFile, '{ "luns": [ { "lun": 1, ');
  t.same(await reload(r), { loaded: false, added: [], removed: [], resized: [], refused: [] });
  t.match(r.log.text(), /not valid JSON .*; nothing changed/);
  writeConfig(r.configFile, [{ lun: 1, backstore: 'ram', size: '1M' }, { lun: 1, backstore: 'ram', size: '2M' }]);
  t.equal((await reload(r)).loaded, false);
  t.match(r.log.text(), /LUN 1 is configured twice; nothing changed/);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }, { lun: 1, backstore: 'tape' }]);
  t.equal((await reload(r)).loaded, false, 'an invalid entry');
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }], { queues: 4 });
  t.same(await reload(r), { loaded: true, added: [], removed: [], resized: [], refused: [] });
  t.match(r.log.text(), /"queues" changed in .*; it takes effect at the next start only/);
  t.match(r.log.text(), /reload: no LUN changes/);
  t.equal(JSON.stringify([...r.reloader.runningLuns()]), before);
  t.same(await takeEvents(r), []);
  t.same(await drainUas(r, 0), []);
});

t.test('a file LUN grows sparsely on disk; a failed addition is retried by the next reload', async (t) => {
  const img = join(dir, 'grow.img');
  const r = rig([{ lun: 0, backstore: 'file', path: img, size: '1M' }]);
  await postEventBuffers(r, 4);
  await drainUas(r, 0);
  const blocks = statSync(img).blocks;
  const add = join(dir, 'absent.img');
  writeConfig(r.configFile, [
    { lun: 0, backstore: 'file', path: img, size: '64M' },
    { lun: 1, backstore: 'file', path: add }, // absent and no size: cannot be created
  ]);
  const res = await reload(r);
  t.same(res.resized, [0]);
  t.match(res.refused[0], /LUN 1: cannot add it: .*does not exist \(give a size to create it\)/);
  t.equal(statSync(img).size, 64 << 20, 'ftruncate to 64 MiB');
  t.equal(statSync(img).blocks, blocks, 'sparse: no blocks allocated');
  t.same(await takeEvents(r), [[3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0x09, 0, 0]]);
  writeConfig(r.configFile, [
    { lun: 0, backstore: 'file', path: img }, // size left out: kept
    { lun: 1, backstore: 'file', path: add, size: '2M' },
  ]);
  const again = await reload(r);
  t.same([again.added, again.resized, again.refused], [[1], [], []]);
  t.equal(statSync(add).size, 2 << 20, 'created sparse');
  t.same(await takeEvents(r), [[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]]);
});

t.test('reloads run one at a time, in order', async (t) => {
  const r = rig([{ lun: 0, backstore: 'ram', size: '8M' }]);
  writeConfig(r.configFile, [{ lun: 0, backstore: 'ram', size: '8M' }, { lun: 1, backstore: 'ram', size: '1M' }]);
  const order: string[] = [];
  const a = new Promise<ReloadResult>((res) => r.reloader.reload((x) => { order.push('a'); res(x); }));
  const b = new Promise<ReloadResult>((res) => r.reloader.apply([parseLunSpec('0:ram:size=8M')], (x) => { order.push('b'); res(x); }));
  const [ra, rb] = await Promise.all([a, b]);
  t.same(order, ['a', 'b']);
  t.same(ra.added, [1]);
  t.same(rb.removed, [1], 'the second saw the first one\'s result');
  await new Promise<void>((res) => r.reloader.close(res));
  const late = await reload(r);
  t.equal(late.loaded, false, 'after close, reloads are refused');
});

t.test('planReload: the pure difference', async (t) => {
  const running = new Map<number, RunningLun>([
    [0, { config: parseLunSpec('0:file:path=a.img'), sizeBytes: 1 << 20, fromCommandLine: false }],
    [1, { config: parseLunSpec('1:ram:size=1M'), sizeBytes: 1 << 20, fromCommandLine: false }],
    [2, { config: parseLunSpec('2:file:path=cli.img'), sizeBytes: 1 << 20, fromCommandLine: true }],
  ]);
  const plan = planReload(running, [
    parseLunSpec(`0:file:path=${join(process.cwd(), 'a.img')},size=2M`), // same image by absolute path
    parseLunSpec('3:ram:size=1M'),
  ]);
  t.same(plan, { remove: [1], grow: [{ lun: 0, from: 1 << 20, to: 2 << 20 }], add: [parseLunSpec('3:ram:size=1M')], refused: [] });
  t.throws(() => planReload(running, [parseLunSpec('4:file:path=cli.img')]), /image cli.img is used by LUN 2 and LUN 4/);
  const vendor = planReload(running, [parseLunSpec('1:ram:size=1M,vendor=ACME')]);
  t.match(vendor.refused[0], /LUN 1: vendor \(unset\) → "ACME": refused/);
  t.same(vendor.remove, [0], 'LUN 0 left out: removed; the --lun LUN 2 never is');
});

t.test('the real CLI: SIGHUP re-reads --config; a bad file changes nothing and the backend stays up', async (t) => {
  const cfg = join(dir, 'cli.json');
  const socket = join(dir, 'cli.sock');
  const img = join(dir, 'cli0.img');
  writeFileSync(cfg, JSON.stringify({ socket, luns: [{ lun: 0, backstore: 'file', path: img, size: '1M' }] }));
  const backend = spawnBackend(['--config', cfg, '--lun', '9:ram:size=1M']);
  t.teardown(() => backend.stop());
  await backend.waitFor(/listening on/);
  writeFileSync(cfg, JSON.stringify({ socket, luns: [{ lun: 0, backstore: 'file', path: img, size: '2M' }, { lun: 1, backstore: 'ram', size: '1M' }] }));
  backend.process.kill('SIGHUP');
  // No frontend is attached, so no feature was negotiated: the unit attentions wait for one.
  await backend.waitFor(/LUN 0 grown from 1048576 to 2097152 bytes; the driver did not negotiate VIRTIO_SCSI_F_CHANGE/);
  await backend.waitFor(/LUN 1 added \(ram, 1048576 bytes\)/);
  t.equal(statSync(img).size, 2 << 20);
  writeFileSync(cfg, '{ "luns": [');
  backend.process.kill('SIGHUP');
  await backend.waitFor(/not valid JSON .*; nothing changed/);
  writeFileSync(cfg, JSON.stringify({ socket, luns: [{ lun: 0, backstore: 'file', path: img }] }));
  backend.process.kill('SIGHUP');
  await backend.waitFor(/LUN 1 removed/);
  t.notMatch(backend.output(), /LUN 9/, 'the --lun LUN is not managed by the file');
  t.equal(backend.process.exitCode, null, 'still running');
  t.equal(await backend.stop(), 0, 'SIGTERM: clean exit');
});
