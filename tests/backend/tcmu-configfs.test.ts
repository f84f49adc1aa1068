// Host exposure through configfs (TCMU user backstore + tcm_loop), against FakeConfigfs: the
// kernel's steps in their order, the names tcm_loop refuses, the missing modules, rollback,
// removal with and without a served ring, crash leftovers, re-attach, and `host list`.
import t from 'tap';
import { readFileSync, readlinkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConfigfsHost, HostExposureError, type ExposedDevice, type HostExposureSpec,
} from '../../backend/tcmu/configfs';
import { FakeConfigfs, type FakeConfigfsOptions, type FakeOp } from '../../backend/tcmu/fake-configfs';
import { hostCommand } from '../../backend/host-cli';

const SPEC: HostExposureSpec = {
  lun: 3, name: 'vst_abc_lun3', wwn: 'naa.5001405abcdef001', initiator: 'naa.5001405abcdef002',
  sizeBytes: 64 * 2 ** 20, blockSize: 512,
};
const B = 'config/target/core/user_0/vst_abc_lun3';
const W = 'config/target/loopback/naa.5001405abcdef001';
const T = `${W}/tpgt_1`;

function setup(t: { teardown(fn: () => void): void }, opts?: FakeConfigfsOptions): { fake: FakeConfigfs; host: ConfigfsHost } {
  const fake = new FakeConfigfs(opts);
  t.teardown(() => fake.dispose());
  return { fake, host: new ConfigfsHost(fake.hostOptions()) };
}

function steps(ops: FakeOp[]): string[][] {
  return ops.map((o) => (o.value === undefined ? [o.op, o.path] : [o.op, o.path, o.value]));
}

/** expose() and the callback's outcome. */
function expose(host: ConfigfsHost, spec: HostExposureSpec): { d: ExposedDevice; attached: Promise<ExposedDevice> } {
  let resolve!: (d: ExposedDevice) => void;
  let reject!: (e: Error) => void;
  const attached = new Promise<ExposedDevice>((res, rej) => { resolve = res; reject = rej; });
  const d = host.expose(spec, (err, dev) => (err ? reject(err) : resolve(dev)));
  return { d, attached };
}

function read(fake: FakeConfigfs, rel: string): string {
  return readFileSync(join(fake.root, rel), 'utf8');
}

function thrown(fn: () => unknown): HostExposureError {
  try {
    fn();
  } catch (e) {
    if (e instanceof HostExposureError) return e;
    throw e;
  }
  throw new Error('did not throw');
}

const CREATE_STEPS = [
  ['mkdir', 'config/target/core/user_0'],
  ['mkdir', B],
  ['write', `${B}/alias`, 'vhost-scsi-ts lun=3 wwn=naa.5001405abcdef001'],
  ['write', `${B}/control`, 'dev_config=vhost-scsi-ts/vst_abc_lun3'],
  ['write', `${B}/control`, 'dev_size=67108864'],
  ['write', `${B}/control`, 'hw_block_size=512'],
  ['write', `${B}/control`, 'nl_reply_supported=-1'],
  ['write', `${B}/enable`, '1'],
  ['write', `${B}/attrib/pgr_support`, '0'],
  ['write', `${B}/attrib/alua_support`, '0'],
  ['write', `${B}/attrib/tmr_notification`, '1'],
  ['write', `${B}/attrib/cmd_time_out`, '20'],
  ['mkdir', 'config/target/loopback'],
  ['mkdir', W],
  ['mkdir', T],
  ['write', `${T}/nexus`, 'naa.5001405abcdef002'],
  ['mkdir', `${T}/lun/lun_0`],
  ['symlink', `${T}/lun/lun_0/vst_abc_lun3`, B],
];

t.test('expose: the kernel steps in order, then the LUN link off the event loop', async (t) => {
  const { fake, host } = setup(t);
  const { d, attached } = expose(host, SPEC);
  t.equal(d.state, 'unlinked', 'expose() returns before the link is made');
  t.equal(d.scsiAddress, null);
  t.equal(d.uioPath, join(fake.dev, 'uio0'));
  t.equal(d.backstoreDir, join(fake.root, B));
  t.equal(d.tpgDir, join(fake.root, T));
  t.equal(d.reattached, false);
  const a = await attached;
  t.equal(a, d);
  t.strictSame(steps(fake.ops), CREATE_STEPS);
  t.equal(d.state, 'online');
  t.equal(d.scsiAddress, '2:0:1:0', 'tpgt_1 address "2:0:1" and lun_0');
  t.equal(d.blockDevice, 'sda');
  t.equal(d.linkPath, join(fake.root, T, 'lun/lun_0/vst_abc_lun3'));
  // What the kernel shows afterwards.
  t.equal(read(fake, 'sys/class/uio/uio0/name'), 'tcm-user/0/vst_abc_lun3/vhost-scsi-ts/vst_abc_lun3\n');
  t.equal(read(fake, 'sys/class/uio/uio0/maps/map0/size'), '0x0000000040800000\n', '8 MiB mailbox + ring, 1 GiB data area');
  t.equal(read(fake, `${B}/attrib/dev_config`), 'vhost-scsi-ts/vst_abc_lun3\n');
  t.equal(read(fake, `${B}/attrib/dev_size`), '67108864\n');
  t.equal(read(fake, `${B}/attrib/hw_block_size`), '512\n');
  t.equal(read(fake, `${B}/attrib/nl_reply_supported`), '-1\n');
  t.equal(read(fake, `${B}/attrib/pgr_support`), '0\n');
  t.equal(read(fake, `${B}/attrib/alua_support`), '0\n');
  t.equal(read(fake, `${B}/attrib/tmr_notification`), '1\n');
  t.equal(read(fake, `${B}/attrib/cmd_time_out`), '20\n');
  t.equal(read(fake, `${T}/nexus`), 'naa.5001405abcdef002\n');
  t.equal(readlinkSync(join(fake.root, T, 'lun/lun_0/vst_abc_lun3')), '../../../../../core/user_0/vst_abc_lun3', 'relative, as configfs shows it');
  t.strictSame(fake.deviceState(join(fake.root, B)), { configured: true, blocked: false, resets: [], exports: 1, uio: 0 });
  t.strictSame(fake.stalls, []);
  t.throws(() => host.expose(SPEC), /already exposed by this process/);
});

t.test('expose: hw_max_sectors and cmd_time_out when given; a second LUN reuses user_0 and loopback', async (t) => {
  const { fake, host } = setup(t);
  await expose(host, SPEC).attached;
  fake.ops.length = 0;
  const spec2: HostExposureSpec = {
    lun: 4, name: 'vst_abc_lun4', wwn: 'naa.5001405abcdef003', initiator: 'naa.5001405abcdef004',
    sizeBytes: 2 ** 30, blockSize: 4096, hwMaxSectors: 2048, cmdTimeOutSeconds: 45,
  };
  const d = await expose(host, spec2).attached;
  const B4 = 'config/target/core/user_0/vst_abc_lun4';
  const T4 = 'config/target/loopback/naa.5001405abcdef003/tpgt_1';
  t.strictSame(steps(fake.ops), [
    ['mkdir', B4],
    ['write', `${B4}/alias`, 'vhost-scsi-ts lun=4 wwn=naa.5001405abcdef003'],
    ['write', `${B4}/control`, 'dev_config=vhost-scsi-ts/vst_abc_lun4'],
    ['write', `${B4}/control`, 'dev_size=1073741824'],
    ['write', `${B4}/control`, 'hw_block_size=4096'],
    ['write', `${B4}/control`, 'hw_max_sectors=2048'],
    ['write', `${B4}/control`, 'nl_reply_supported=-1'],
    ['write', `${B4}/enable`, '1'],
    ['write', `${B4}/attrib/pgr_support`, '0'],
    ['write', `${B4}/attrib/alua_support`, '0'],
    ['write', `${B4}/attrib/tmr_notification`, '1'],
    ['write', `${B4}/attrib/cmd_time_out`, '45'],
    ['mkdir', 'config/target/loopback/naa.5001405abcdef003'],
    ['mkdir', T4],
    ['write', `${T4}/nexus`, 'naa.5001405abcdef004'],
    ['mkdir', `${T4}/lun/lun_0`],
    ['symlink', `${T4}/lun/lun_0/vst_abc_lun4`, B4],
  ]);
  t.equal(d.uioPath, join(fake.dev, 'uio1'));
  t.equal(d.scsiAddress, '3:0:1:0', 'a second tcm_loop host');
  t.equal(d.blockDevice, 'sdb');
});

t.test('names and sizes tcm_loop or TCMU would refuse are rejected before any step', async (t) => {
  const { fake, host } = setup(t);
  const bad: [Partial<HostExposureSpec>, RegExp][] = [
    [{ initiator: 'fc.21000024ff314c48' }, /initiator fc\.21000024ff314c48 and wwn naa\.5001405abcdef001 name different protocols/],
    [{ wwn: 'fc.21000024ff314c48' }, /different protocols/],
    [{ wwn: 'iqn.2003-01.org.example:t1', initiator: 'naa.5001405abcdef002' }, /different protocols/],
    [{ wwn: 'eui.0123456789abcdef', initiator: 'eui.0123456789abcde0' }, /wwn "eui\.0123456789abcdef": tcm_loop has no eui\. names/],
    [{ wwn: 'iqn.2003-01.org.naa.x', initiator: 'iqn.2003-01.org.example:i' }, /tcm_loop would take it for a SAS name/],
    [{ wwn: 'iqn.2003-01.org.fc.x', initiator: 'iqn.2003-01.org.example:i' }, /tcm_loop would take it for a FCP name/],
    [{ wwn: 'NAA.5001405ABCDEF001' }, /prefix in lower case \(naa\.\)/],
    [{ wwn: 'iqn.2003-01.org.example:t', initiator: 'iqn.1994-05.com.redhat:client1,i,0x23d000000001' }, /no ISID/],
    [{ wwn: 'naa.5001405abcdef0' }, /naa\. must be followed by exactly 16 hexadecimal digits/],
    [{ wwn: '' }, /wwn: a name is required/],
    [{ name: 'bad/name' }, /backstore name "bad\/name"/],
    [{ name: '' }, /backstore name/],
    [{ name: 'x'.repeat(129) }, /backstore name/],
    [{ lun: 16384 }, /lun must be an integer 0\.\.16383/],
    [{ lun: -1 }, /lun must be/],
    [{ blockSize: 1000 }, /block size 1000: use 512, 1024, 2048 or 4096/],
    [{ sizeBytes: 1000 }, /size 1000: must be a positive multiple of the 512-byte block size/],
    [{ sizeBytes: 0 }, /size 0/],
    [{ hwMaxSectors: 0 }, /hwMaxSectors 0/],
    [{ cmdTimeOutSeconds: -1 }, /cmdTimeOutSeconds -1/],
    [{ cmdTimeOutSeconds: 4294968 }, /cmdTimeOutSeconds 4294968: must be an integer 0\.\.4294967/],
  ];
  for (const [patch, re] of bad) {
    const e = thrown(() => host.expose({ ...SPEC, ...patch }));
    t.match(e.message, re, JSON.stringify(patch));
  }
  t.strictSame(fake.ops, [], 'nothing was touched');
  // The same protocol on both sides passes, FC and iSCSI included.
  const fc = await expose(host, { ...SPEC, name: 'fc', wwn: 'fc.21000024ff314c48', initiator: 'fc.21000024ff314c49' }).attached;
  t.equal(fc.state, 'online');
  const iscsi = await expose(host, { ...SPEC, name: 'is', wwn: 'iqn.2003-01.org.example:t1', initiator: 'iqn.1994-05.com.redhat:client1' }).attached;
  t.equal(iscsi.state, 'online');
});

t.test('missing configfs, LIO core, target_core_user or tcm_loop: a clear error naming it', async (t) => {
  const cases: [FakeConfigfsOptions['modules'], RegExp, RegExp | null][] = [
    [{ configfs: false }, /needs configfs, and .*config does not exist: modprobe configfs; mount -t configfs none /, null],
    [{ configfsMounted: false }, /configfs is not mounted at .*config \(the LIO target core is loaded.*\): mount -t configfs none /, null],
    [{ target_core_mod: false, target_core_user: false, tcm_loop: false },
      /target_core_mod\) is not loaded: modprobe target_core_mod.*target_core_user .* modprobe target_core_user.*tcm_loop .* modprobe tcm_loop/, null],
    [{ target_core_user: false }, /kernel module target_core_user \(TCMU, the user-space backstore\) is not loaded: modprobe target_core_user/, /tcm_loop/],
    [{ tcm_loop: false }, /kernel module tcm_loop \(the loopback fabric that gives the host its \/dev\/sdX\) is not loaded: modprobe tcm_loop/, /target_core_user/],
  ];
  for (const [modules, re, not] of cases) {
    const { fake, host } = setup(t, { modules });
    const e = thrown(() => host.checkAvailable());
    t.match(e.message, re, JSON.stringify(modules));
    if (not) t.notMatch(e.message, not, 'names only what is missing');
    t.match(thrown(() => host.expose(SPEC)).message, re, 'expose() checks first');
    t.strictSame(fake.ops, [], 'and touches nothing');
    const out: string[] = [];
    const err: string[] = [];
    t.equal(hostCommand(['list', '--configfs', fake.configfs, '--sysfs', fake.sysfs, '--dev', fake.dev], (s) => out.push(s), (s) => err.push(s)), 1);
    t.match(err.join(''), re);
    t.strictSame(out, []);
  }
  const { host } = setup(t);
  t.doesNotThrow(() => host.checkAvailable(), 'all there');
});

t.test('a failing step undoes the earlier ones in reverse and names the path and errno', async (t) => {
  const { fake, host } = setup(t);
  fake.failNext('write', 'tpgt_1/nexus', 'EINVAL');
  const e = thrown(() => host.expose(SPEC));
  t.equal(e.code, 'EINVAL');
  t.equal(e.path, join(fake.root, T, 'nexus'));
  t.match(e.message, `writing "naa.5001405abcdef002" to ${join(fake.root, T, 'nexus')}: EINVAL (the kernel refused the value`);
  const at = fake.ops.findIndex((o) => o.path === `${T}/nexus`);
  t.strictSame(steps(fake.ops.slice(at + 1)), [
    ['rmdir', T],
    ['rmdir', W],
    ['rmdir', B],
    ['rmdir', 'config/target/core/user_0'],
  ]);
  t.notOk(existsSync(join(fake.root, B)) || existsSync(join(fake.root, W)), 'backstore and WWN gone');
  t.notOk(existsSync(join(fake.sysfs, 'class/uio/uio0')) || existsSync(join(fake.dev, 'uio0')), 'the UIO device went with the backstore');
  t.strictSame(host.list(), []);

  // Before enable: only the directories.
  fake.ops.length = 0;
  fake.failNext('write', '/enable', 'ENOMEM');
  t.equal(thrown(() => host.expose(SPEC)).code, 'ENOMEM');
  t.strictSame(steps(fake.ops.slice(-2)), [['rmdir', B], ['rmdir', 'config/target/core/user_0']]);

  // An undo step that fails too is reported with the original error.
  fake.failNext('write', 'tpgt_1/nexus', 'EINVAL');
  fake.failNext('rmdir', 'tpgt_1', 'EBUSY');
  const e2 = thrown(() => host.expose(SPEC));
  t.equal(e2.code, 'EINVAL');
  t.match(e2.message, /; undoing vst_abc_lun3 left: removing .*tpgt_1: EBUSY/);
});

t.test('a failing LUN link undoes everything, reported through the callback', async (t) => {
  const { fake, host } = setup(t);
  fake.failNext('symlink', 'lun_0/vst_abc_lun3', 'ENODEV');
  const { attached } = expose(host, SPEC);
  const e = await attached.then(() => null, (err: HostExposureError) => err);
  t.ok(e instanceof HostExposureError);
  t.equal(e?.code, 'ENODEV');
  t.match(e?.message, /linking the LUN .*lun_0\/vst_abc_lun3: ENODEV/);
  const at = fake.ops.findIndex((o) => o.op === 'symlink');
  t.strictSame(steps(fake.ops.slice(at + 1)), [
    ['rmdir', `${T}/lun/lun_0`],
    ['write', `${T}/nexus`, 'NULL'],
    ['rmdir', T],
    ['rmdir', W],
    ['rmdir', B],
    ['rmdir', 'config/target/core/user_0'],
  ]);
  t.strictSame(host.list(), []);
});

t.test('the LUN link completes only once the ring is served (the kernel scans inside symlink)', async (t) => {
  const { fake, host } = setup(t, { autoServe: false });
  let done = false;
  const d = host.expose(SPEC, () => { done = true; });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  t.equal(done, false, 'INQUIRY waits in the ring');
  t.equal(d.state, 'unlinked');
  fake.serve(d.uioPath); // the TcmuDevice maps the ring and answers
  for (let i = 0; i < 5 && !done; i++) await new Promise((r) => setImmediate(r));
  t.equal(done, true);
  t.equal(d.scsiAddress, '2:0:1:0');
});

t.test('detach while serving, then unexpose: the reverse order', async (t) => {
  const { fake, host } = setup(t);
  const d = await expose(host, SPEC).attached;
  fake.ops.length = 0;
  const err = await new Promise<HostExposureError | null>((r) => host.detach(d, r));
  t.equal(err, null);
  t.strictSame(steps(fake.ops), [['unlink', `${T}/lun/lun_0/vst_abc_lun3`]], 'only the link, off the event loop');
  t.equal(d.state, 'unlinked');
  t.equal(d.scsiAddress, null);
  t.notOk(existsSync(join(fake.dev, 'sda')), 'the host disk is gone');
  fake.ops.length = 0;
  host.unexpose(d);
  t.strictSame(steps(fake.ops), [
    ['write', `${T}/nexus`, 'NULL'],
    ['rmdir', `${T}/lun/lun_0`],
    ['rmdir', T],
    ['rmdir', W],
    ['rmdir', B],
    ['rmdir', 'config/target/core/user_0'],
  ]);
  t.strictSame(fake.stalls, []);
  t.notOk(existsSync(join(fake.root, 'config/target/core/user_0')));
  t.notOk(existsSync(join(fake.sysfs, 'class/uio/uio0')));
  t.ok(existsSync(join(fake.root, 'config/target/loopback')), 'the fabric directory is shared and stays');
  // Everything already gone: nothing throws, nothing is removed twice.
  fake.ops.length = 0;
  t.doesNotThrow(() => host.unexpose(d));
  t.strictSame(steps(fake.ops).filter((s) => s[0] !== 'open'), []);
  // No link: detach completes at once.
  t.equal(await new Promise<HostExposureError | null>((r) => host.detach(d, r)), null);
});

t.test('unexpose with the link still there: offline, no write cache, ring reset, then unlink; the kernel waits on nothing', async (t) => {
  const { fake, host } = setup(t, { autoServe: false });
  const { d, attached } = expose(host, SPEC);
  fake.serve(d.uioPath);
  await attached;
  fake.unserve(d.uioPath); // the TcmuDevice stopped
  fake.ops.length = 0;
  host.unexpose(d);
  t.strictSame(steps(fake.ops), [
    ['write', 'sys/class/scsi_device/2:0:1:0/device/state', 'offline\n'],
    ['write', 'sys/class/scsi_disk/2:0:1:0/cache_type', 'temporary write through\n'],
    ['write', `${B}/action/block_dev`, '1'],
    ['write', `${B}/action/reset_ring`, '1'],
    ['unlink', `${T}/lun/lun_0/vst_abc_lun3`],
    ['write', `${T}/nexus`, 'NULL'],
    ['rmdir', `${T}/lun/lun_0`],
    ['rmdir', T],
    ['rmdir', W],
    ['rmdir', B],
    ['rmdir', 'config/target/core/user_0'],
  ]);
  t.strictSame(fake.stalls, [], 'no SYNCHRONIZE CACHE into a ring nobody serves');
  t.strictSame(host.list(), []);
});

t.test('unexpose while the link is being made: the scan is ended, the removal runs once the link is done', async (t) => {
  const { fake, host } = setup(t);
  fake.holdLinks();
  const { d, attached } = expose(host, SPEC);
  const n = fake.ops.length;
  host.unexpose(d);
  t.strictSame(steps(fake.ops.slice(n)), [['write', `${B}/action/reset_ring`, '2']],
    'INQUIRY waiting in the ring gets CHECK CONDITION; nothing removed under the pending link');
  fake.releaseLinks();
  const e = await attached.then(() => null, (err: Error) => err);
  t.match(e?.message, /removed while its LUN link was being made/);
  t.strictSame(host.list(), []);
  t.notOk(existsSync(join(fake.root, W)));
  t.notOk(existsSync(join(fake.sysfs, 'class/scsi_device/2:0:1:0')), 'the failed scan made no SCSI device');
  t.strictSame(fake.stalls, []);
  t.equal(await new Promise<HostExposureError | null>((r) => host.detach(d, r)), null);
});

t.test('a ring that is never served: unexpose does not wait for cmd_time_out', async (t) => {
  const { fake, host } = setup(t, { autoServe: false });
  const { d, attached } = expose(host, SPEC);
  // The TcmuDevice failed to start; nobody will answer the scan's INQUIRY.
  host.unexpose(d);
  const e = await attached.then(() => null, (err: Error) => err);
  t.match(e?.message, /removed while its LUN link was being made/);
  t.strictSame(host.list(), []);
  t.strictSame(fake.stalls, []);
});

t.test('unexpose while detach() is unlinking: done after it', async (t) => {
  const { fake, host } = setup(t);
  const d = await expose(host, SPEC).attached;
  const detached = new Promise<HostExposureError | null>((r) => host.detach(d, r));
  const n = fake.ops.length;
  host.unexpose(d);
  t.strictSame(steps(fake.ops.slice(n)), [], 'nothing else while the unlink runs');
  const again = await new Promise<HostExposureError | null>((r) => host.detach(d, r));
  t.match(again?.message, /still being removed/);
  t.equal(await detached, null);
  t.strictSame(host.list(), []);
  t.notOk(existsSync(join(fake.root, B)));
});

t.test('list and host list: LUN, backstore, WWN, nexus, address, /dev/sdX, uio, state', async (t) => {
  const { fake, host } = setup(t);
  await expose(host, SPEC).attached;
  await expose(host, { lun: 5, name: 'vst_abc_lun5', wwn: 'fc.21000024ff314c48', initiator: 'fc.21000024ff314c49', sizeBytes: 2 ** 30, blockSize: 4096 }).attached;
  // A crash right after our mark: a partial entry.
  const P = join(fake.configfs, 'target/core/user_0/vst_abc_lun7');
  fake.mkdir(P);
  fake.write(join(P, 'alias'), 'vhost-scsi-ts lun=7 wwn=naa.5001405abcdef0ff');
  // Another tool's backstore is not listed.
  fake.mkdir(join(fake.configfs, 'target/core/user_0/theirs'));
  fake.write(join(fake.configfs, 'target/core/user_0/theirs/control'), 'dev_config=glfs/vol@host/img');
  fake.write(join(fake.configfs, 'target/core/user_0/theirs/enable'), '1');

  const l = host.list();
  t.strictSame(l.map((d) => [d.spec.lun, d.spec.name, d.state]), [[3, 'vst_abc_lun3', 'online'], [5, 'vst_abc_lun5', 'online'], [7, 'vst_abc_lun7', 'partial']]);
  t.strictSame(l[0].spec, { ...SPEC, hwMaxSectors: 128, cmdTimeOutSeconds: 20 });
  t.equal(read(fake, 'config/target/loopback/fc.21000024ff314c48/tpgt_1/nexus'), '21000024ff314c49\n', 'tcm_loop keeps an FC nexus without "fc."');
  t.equal(l[1].spec.initiator, 'fc.21000024ff314c49', 'list() gives it back its prefix');
  t.equal(l[1].scsiAddress, '3:0:1:0');
  t.equal(l[1].blockDevice, 'sdb');
  t.equal(l[1].uioPath, join(fake.dev, 'uio1'));
  t.strictSame([l[2].spec.wwn, l[2].uioPath, l[2].tpgDir, l[2].scsiAddress], ['naa.5001405abcdef0ff', '', '', null]);

  const argv = ['list', '--configfs', fake.configfs, '--sysfs', fake.sysfs, '--dev', fake.dev];
  const out: string[] = [];
  t.equal(hostCommand(argv, (s) => out.push(s)), 0);
  const u0 = join(fake.dev, 'uio0');
  const u1 = join(fake.dev, 'uio1');
  // Columns as wide as their widest cell, two spaces apart; the last one unpadded.
  const widths = [3, 12, 20, 20, 7, 8, u0.length];
  const row = (...cells: string[]): string => cells.map((c, i) => (i < widths.length ? c.padEnd(widths[i]) : c)).join('  ');
  t.equal(out.join(''), [
    row('LUN', 'BACKSTORE', 'WWN', 'NEXUS', 'ADDRESS', 'DEVICE', 'UIO', 'STATE'),
    row('3', 'vst_abc_lun3', 'naa.5001405abcdef001', 'naa.5001405abcdef002', '2:0:1:0', '/dev/sda', u0, 'online'),
    row('5', 'vst_abc_lun5', 'fc.21000024ff314c48', 'fc.21000024ff314c49', '3:0:1:0', '/dev/sdb', u1, 'online'),
    row('7', 'vst_abc_lun7', 'naa.5001405abcdef0ff', '-', '-', '-', '-', 'partial'),
    '',
  ].join('\n'));
  t.equal(out.join('').split('\n')[1], `3    vst_abc_lun3  naa.5001405abcdef001  naa.5001405abcdef002  2:0:1:0  /dev/sda  ${u0}  online`);
  const jout: string[] = [];
  t.equal(hostCommand([...argv, '--json'], (s) => jout.push(s)), 0);
  t.strictSame(JSON.parse(jout.join('')), [
    {
      lun: 3, backstore: 'vst_abc_lun3', backstoreDir: join(fake.root, B), wwn: 'naa.5001405abcdef001', protocol: 'SAS',
      nexus: 'naa.5001405abcdef002', scsiAddress: '2:0:1:0', blockDevice: '/dev/sda', uio: u0, sizeBytes: 67108864, blockSize: 512, state: 'online',
    },
    {
      lun: 5, backstore: 'vst_abc_lun5', backstoreDir: join(fake.configfs, 'target/core/user_0/vst_abc_lun5'), wwn: 'fc.21000024ff314c48', protocol: 'FC',
      nexus: 'fc.21000024ff314c49', scsiAddress: '3:0:1:0', blockDevice: '/dev/sdb', uio: u1, sizeBytes: 1073741824, blockSize: 4096, state: 'online',
    },
    {
      lun: 7, backstore: 'vst_abc_lun7', backstoreDir: P, wwn: 'naa.5001405abcdef0ff', protocol: 'SAS',
      nexus: null, scsiAddress: null, blockDevice: null, uio: null, sizeBytes: 0, blockSize: 0, state: 'partial',
    },
  ]);
});

t.test('host list: an empty host, usage errors', async (t) => {
  const { fake } = setup(t);
  const argv = ['list', `--configfs=${fake.configfs}`, `--sysfs=${fake.sysfs}`, `--dev=${fake.dev}`];
  const out: string[] = [];
  t.equal(hostCommand(argv, (s) => out.push(s)), 0);
  t.equal(out.join(''), 'no LUNs of vhost-scsi-ts are exposed on this host\n');
  out.length = 0;
  t.equal(hostCommand([...argv, '--json'], (s) => out.push(s)), 0);
  t.equal(out.join(''), '[]\n');
  const usage: [string[], number, RegExp][] = [
    [[], 2, /^usage: vhost-scsi-ts host list \[--json\]/],
    [['--help'], 0, /^usage:/],
    [['list', '--help'], 0, /^usage:/],
    [['show'], 2, /unknown host command "show"/],
    [['list', '--bogus'], 2, /unknown argument "--bogus" for host list/],
    [['list', '--configfs'], 2, /--configfs needs a directory/],
  ];
  for (const [a, code, re] of usage) {
    const text: string[] = [];
    t.equal(hostCommand(a, (s) => text.push(s)), code, a.join(' '));
    t.match(text.join(''), re);
  }
});

t.test('cleanStale: a crashed run\'s unwanted entries go, live and wanted ones stay, the kernel waits on nothing', async (t) => {
  const { fake } = setup(t, { autoServe: false });
  const before = new ConfigfsHost(fake.hostOptions());
  const ds: ExposedDevice[] = [];
  for (const lun of [1, 2, 3]) {
    const { d, attached } = expose(before, { ...SPEC, lun, name: `vst_abc_lun${lun}`, wwn: `naa.5001405abcdef10${lun}`, initiator: `naa.5001405abcdef20${lun}` });
    fake.serve(d.uioPath);
    ds.push(await attached);
  }
  // The process is killed: its rings are served no more; lun3's ring belongs to another live backend.
  for (const d of ds) fake.unserve(d.uioPath);
  fake.setUioBusy(ds[2].uioPath, true);
  const after = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  const removed = after.cleanStale(['vst_abc_lun1']);
  t.strictSame(removed.map((d) => d.spec.name), ['vst_abc_lun2']);
  const B2 = 'config/target/core/user_0/vst_abc_lun2';
  const T2 = 'config/target/loopback/naa.5001405abcdef102/tpgt_1';
  t.strictSame(steps(fake.ops), [
    ['open', 'dev/uio1'],
    ['write', 'sys/class/scsi_device/3:0:1:0/device/state', 'offline\n'],
    ['write', 'sys/class/scsi_disk/3:0:1:0/cache_type', 'temporary write through\n'],
    ['write', `${B2}/action/block_dev`, '1'],
    ['write', `${B2}/action/reset_ring`, '1'],
    ['unlink', `${T2}/lun/lun_0/vst_abc_lun2`],
    ['write', `${T2}/nexus`, 'NULL'],
    ['rmdir', `${T2}/lun/lun_0`],
    ['rmdir', T2],
    ['rmdir', 'config/target/loopback/naa.5001405abcdef102'],
    ['rmdir', B2],
    ['open', 'dev/uio2'],
  ], 'user_0 still holds others: it stays; lun3 is held by a live process: left alone');
  t.strictSame(fake.stalls, []);
  t.strictSame(after.list().map((d) => d.spec.name), ['vst_abc_lun1', 'vst_abc_lun3']);
  // unexpose() of a live entry of another process refuses.
  const live = after.list()[1];
  const e = thrown(() => after.unexpose(live));
  t.equal(e.code, 'EBUSY');
  t.match(e.message, /held by another process: that exposure is live/);
});

t.test('re-attach after a crash: block_dev, reset_ring, unblock; nothing rebuilt', async (t) => {
  const { fake } = setup(t);
  const first = new ConfigfsHost(fake.hostOptions());
  const old = await expose(first, SPEC).attached;
  // SIGKILL: nothing removed. The next start:
  const host = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  const { d, attached } = expose(host, SPEC);
  t.strictSame(steps(fake.ops), [
    ['open', 'dev/uio0'],
    ['write', `${B}/action/block_dev`, '1'],
    ['write', `${B}/action/reset_ring`, '1'],
    ['write', `${B}/action/block_dev`, '0'],
  ]);
  t.equal(d.reattached, true);
  t.equal(d.state, 'online');
  t.equal(d.uioPath, old.uioPath);
  t.equal(d.scsiAddress, '2:0:1:0');
  await attached;
  t.equal(d.blockDevice, 'sda', 'the host keeps its disk');
  t.strictSame(fake.deviceState(join(fake.root, B)), { configured: true, blocked: false, resets: [1], exports: 1, uio: 0 });
  // It is ours now: a clean removal.
  await new Promise((r) => host.detach(d, r));
  host.unexpose(d);
  t.strictSame(host.list(), []);
});

t.test('re-attach refused while another process holds the ring', async (t) => {
  const { fake } = setup(t);
  const old = await expose(new ConfigfsHost(fake.hostOptions()), SPEC).attached;
  fake.setUioBusy(old.uioPath, true);
  const host = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  const e = thrown(() => host.expose(SPEC));
  t.equal(e.code, 'EBUSY');
  t.match(e.message, /uio0 .* is held by another process: another backend still serves vst_abc_lun3/);
  t.strictSame(steps(fake.ops), [['open', 'dev/uio0']], 'the live ring is left alone');
});

t.test('an incomplete or changed entry of an earlier run is removed and rebuilt', async (t) => {
  const { fake } = setup(t);
  const old = await expose(new ConfigfsHost(fake.hostOptions()), SPEC).attached;
  // Killed half way through a detach: the link is gone, the rest is there.
  fake.unlinkSync(old.linkPath!);
  let host = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  let d = await expose(host, SPEC).attached;
  t.strictSame(steps(fake.ops.slice(0, 7)), [
    ['open', 'dev/uio0'],
    ['write', `${T}/nexus`, 'NULL'],
    ['rmdir', `${T}/lun/lun_0`],
    ['rmdir', T],
    ['rmdir', W],
    ['rmdir', B],
    ['rmdir', 'config/target/core/user_0'],
  ]);
  t.strictSame(steps(fake.ops.slice(7)), CREATE_STEPS.filter((s) => s[1] !== 'config/target/loopback'));
  t.equal(d.reattached, false);
  t.equal(d.state, 'online');

  // The LU's block size changed: the host's disk must be rebuilt too (the link goes first).
  host = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  d = await expose(host, { ...SPEC, blockSize: 4096 }).attached;
  t.strictSame(steps(fake.ops.slice(0, 6)).map((s) => s.slice(0, 2)), [
    ['open', 'dev/uio1'],
    ['write', 'sys/class/scsi_device/3:0:1:0/device/state'],
    ['write', 'sys/class/scsi_disk/3:0:1:0/cache_type'],
    ['write', `${B}/action/block_dev`],
    ['write', `${B}/action/reset_ring`],
    ['unlink', `${T}/lun/lun_0/vst_abc_lun3`],
  ]);
  t.equal(read(fake, `${B}/attrib/hw_block_size`), '4096\n');
  t.equal(d.reattached, false);
  t.strictSame(fake.stalls, []);

  // A leftover that a live process still holds is not torn down under it.
  fake.setUioBusy(d.uioPath, true);
  host = new ConfigfsHost(fake.hostOptions());
  fake.ops.length = 0;
  const e = thrown(() => host.expose({ ...SPEC, blockSize: 512 }));
  t.equal(e.code, 'EBUSY');
  t.strictSame(steps(fake.ops), [['open', 'dev/uio2']]);
});

t.test('conflicts: a foreign backstore of the same name, a WWN that exposes something else', async (t) => {
  const { fake, host } = setup(t);
  await expose(host, SPEC).attached;
  const e = thrown(() => host.expose({ ...SPEC, lun: 4, name: 'vst_abc_lun4' }));
  t.equal(e.code, 'EEXIST');
  t.match(e.message, /tcm_loop WWN naa\.5001405abcdef001 already exposes .*vst_abc_lun3: choose another wwn/);
  fake.mkdir(join(fake.configfs, 'target/core/user_0/taken'));
  fake.write(join(fake.configfs, 'target/core/user_0/taken/control'), 'dev_config=file/x');
  const e2 = thrown(() => host.expose({ ...SPEC, lun: 4, name: 'taken', wwn: 'naa.5001405abcdef009' }));
  t.match(e2.message, /user_0\/taken exists and is not ours \(dev_config "file\/x"\)/);
});

t.test('the fake answers as the kernel does', async (t) => {
  const { fake } = setup(t);
  const code = (fn: () => void): string | null => {
    try {
      fn();
      return null;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code ?? null;
    }
  };
  const c = fake.configfs;
  const hba = join(c, 'target/core/user_7');
  const dev = join(hba, 'd');
  t.equal(code(() => fake.mkdir(join(c, 'target/core/fileio_0'))), 'EINVAL', 'only the user plugin here');
  t.equal(code(() => fake.mkdir(join(c, 'target/core/user_x'))), 'EINVAL');
  fake.mkdir(hba);
  fake.mkdir(dev);
  t.equal(code(() => fake.mkdir(dev)), 'EEXIST');
  t.equal(code(() => fake.write(join(dev, 'control'), 'hw_block_size=0')), 'EINVAL', 'tcmu_set_dev_attrib: must be > 0');
  t.equal(code(() => fake.write(join(dev, 'control'), 'dev_size=lots')), 'EINVAL', 'match_u64');
  t.equal(code(() => fake.write(join(dev, 'control'), 'frobnicate=1,hw_block_size=abc')), null, 'unknown and unmatched tokens are ignored');
  t.equal(read(fake, 'config/target/core/user_7/d/attrib/hw_block_size'), '0\n');
  t.equal(code(() => fake.write(join(dev, 'control'), 'dev_config=x/y\nhw_block_size=4096,max_data_area_mb=64')), null, 'one write, several tokens');
  t.equal(read(fake, 'config/target/core/user_7/d/attrib/hw_block_size'), '4096\n');
  t.equal(code(() => fake.write(join(dev, 'action/block_dev'), '1')), 'EINVAL', 'not configured');
  t.equal(code(() => fake.write(join(dev, 'enable'), '0')), 'EINVAL');
  fake.write(join(dev, 'enable'), '1');
  t.equal(read(fake, 'sys/class/uio/uio0/name'), 'tcm-user/7/d/x/y\n');
  t.equal(read(fake, 'sys/class/uio/uio0/maps/map0/size'), '0x0000000004800000\n', '64 MiB data area + 8 MiB ring');
  t.equal(code(() => fake.write(join(dev, 'enable'), '1')), 'EEXIST');
  t.equal(code(() => fake.write(join(dev, 'control'), 'max_data_area_mb=512')), 'EINVAL', 'not after enable');
  t.equal(code(() => fake.write(join(dev, 'attrib/dev_size'), '4096')), 'ESRCH', 'RECONFIG without a netlink listener');
  t.equal(code(() => fake.write(join(dev, 'attrib/tmr_notification'), '2')), 'EINVAL');
  t.equal(code(() => fake.write(join(dev, 'attrib/hw_block_size'), '512')), 'EACCES', 'read-only');
  t.equal(code(() => fake.write(join(dev, 'attrib/qfull_time_out'), '-2')), 'EINVAL');
  t.equal(code(() => fake.write(join(dev, 'action/reset_ring'), '3')), 'EINVAL');
  t.equal(code(() => fake.write(join(dev, 'action/reset_ring'), '2')), null);
  t.equal(code(() => fake.write(join(dev, 'action/block_dev'), '1\n')), null);
  t.equal(read(fake, 'config/target/core/user_7/d/action/block_dev'), 'blocked\n');
  t.equal(code(() => fake.read(join(dev, 'control'))), 'EACCES', 'write-only');
  t.equal(code(() => fake.write(join(dev, 'nonesuch'), '1')), 'ENOENT');

  const lb = join(c, 'target/loopback');
  fake.mkdir(lb);
  t.equal(code(() => fake.mkdir(join(lb, 'eui.0123456789abcdef'))), 'EINVAL', 'no eui. in tcm_loop');
  const wwn = join(lb, 'naa.5001405000000001');
  fake.mkdir(wwn);
  t.equal(code(() => fake.mkdir(join(wwn, 'tpgt_32'))), 'EINVAL', 'TL_TPGS_PER_HBA');
  t.equal(code(() => fake.mkdir(join(wwn, 'tpg_1'))), 'EINVAL');
  const tpg = join(wwn, 'tpgt_1');
  fake.mkdir(tpg);
  t.equal(read(fake, 'config/target/loopback/naa.5001405000000001/tpgt_1/address'), '2:0:1\n');
  t.equal(code(() => fake.read(join(tpg, 'nexus'))), 'ENODEV', 'no nexus yet');
  t.equal(code(() => fake.write(join(tpg, 'nexus'), 'NULL')), 'ENODEV');
  t.equal(code(() => fake.write(join(tpg, 'nexus'), 'fc.21000024ff314c48')), 'EINVAL', 'FC initiator on a SAS port');
  t.equal(code(() => fake.write(join(tpg, 'nexus'), 'iqn.2003-01.org.x:naa.y')), null, 'strstr finds "naa." first: SAS');
  t.equal(code(() => fake.write(join(tpg, 'nexus'), 'naa.5001405000000002')), 'EEXIST');
  const lun = join(tpg, 'lun/lun_0');
  fake.mkdir(lun);
  await new Promise<void>((r, j) => fake.symlink(dev, join(lun, 'x'), (e) => (e ? j(e) : r())));
  const again = await new Promise<NodeJS.ErrnoException | null>((r) => fake.symlink(dev, join(lun, 'y'), r));
  t.equal(again?.code, 'EEXIST', 'one link per LUN');
  t.equal(code(() => fake.write(join(tpg, 'nexus'), 'NULL')), 'EPERM', 'not while a LUN is linked');
  t.equal(code(() => fake.write(join(dev, 'attrib/cmd_time_out'), '10')), 'EINVAL', 'not while exported');
  t.equal(code(() => fake.rmdir(dev)), 'EBUSY', 'the link pins the backstore');
  t.equal(code(() => fake.rmdir(lun)), 'ENOTEMPTY');
  t.equal(code(() => fake.rmdir(tpg)), 'ENOTEMPTY');
  t.equal(code(() => fake.rmdir(hba)), 'ENOTEMPTY');
  t.equal(code(() => fake.write(join(fake.sysfs, 'class/scsi_device/2:0:1:0/device/state'), 'blocked\n')), 'EINVAL');
  t.equal(code(() => fake.write(join(fake.sysfs, 'class/scsi_disk/2:0:1:0/cache_type'), 'write through')), null);
  t.strictSame(fake.stalls, [], 'autoServe: the ring answers MODE SELECT');
  // An unconfigured device cannot be linked.
  const dev2 = join(hba, 'e');
  fake.mkdir(dev2);
  const lun1 = join(tpg, 'lun/lun_1');
  fake.mkdir(lun1);
  const unconf = await new Promise<NodeJS.ErrnoException | null>((r) => fake.symlink(dev2, join(lun1, 'e'), r));
  t.equal(unconf?.code, 'ENODEV');
});

t.test('the fake records a stall when the kernel would wait on a ring nobody serves', async (t) => {
  const { fake, host } = setup(t, { autoServe: false });
  const { d, attached } = expose(host, SPEC);
  fake.serve(d.uioPath);
  await attached;
  fake.unserve(d.uioPath);
  fake.unlinkSync(d.linkPath!);
  t.strictSame(fake.stalls, [`SYNCHRONIZE CACHE to 2:0:1:0 while removing ${T}/lun/lun_0/vst_abc_lun3: nobody serves dev/uio0`]);
});
