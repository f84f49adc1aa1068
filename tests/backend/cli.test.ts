// The command line and config file: every mistake is one clear line and exit status 2.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLunSpec, parsePortSpec, parseTpgSpec, loadConfigFile, finishConfig } from '../../backend/config';
import { parseServeArgs, qemuArgs } from '../../backend/cli';
import { CLI } from '../e2e/backend-process';

const dir = mkdtempSync(join(tmpdir(), 'vst-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('--lun specs', async (t) => {
  t.same(parseLunSpec('0:file:path=/x.img,size=4G,readonly,direct'), {
    lun: 0, backstore: 'file', path: '/x.img', size: 4 * 2 ** 30, readOnly: true, direct: true, io: 'auto', blockSize: 512, writeCache: true,
  });
  t.same(parseLunSpec('0:file:path=/x.img,io=inline').io, 'inline');
  t.same(parseLunSpec('0:file:path=/x.img,io=uring').io, 'uring');
  t.same(parseLunSpec('0:file:path=/x.img,io=threads').io, 'threads');
  t.same(parseLunSpec('1:ram:size=512M,block-size=4096,write-cache=off,vendor=ACME,serial=S1'), {
    lun: 1, backstore: 'ram', size: 512 * 2 ** 20, readOnly: false, direct: false, io: 'auto', blockSize: 4096, writeCache: false, vendor: 'ACME', serial: 'S1',
  });
  t.same(parseLunSpec('2:ram:size=1G,physical-block-size=4096'), {
    lun: 2, backstore: 'ram', size: 2 ** 30, readOnly: false, direct: false, io: 'auto', blockSize: 512, physicalBlockSize: 4096, writeCache: true,
  }, '512e');
  const bad: [string, RegExp][] = [
    ['0:ram:size=1G,physical-block-size=1024', /physical-block-size must be 512 or 4096/],
    ['0:ram:size=1G,block-size=4096,physical-block-size=512', /physical-block-size 512 is smaller than the 4096-byte block size/],
    ['x:ram:size=1G', /LUN must be an integer/],
    ['16384:ram:size=1G', /LUN must be an integer 0\.\.16383/],
    ['0:tape:size=1G', /unknown backstore "tape"/],
    ['0:ram', /needs size=/],
    ['0:file:size=1G', /needs path=/],
    ['0:ram:size=1G,path=/x', /takes no path/],
    ['0:ram:size=banana', /size/],
    ['0:ram:size=1G,colour=red', /unknown option "colour"/],
    ['0:ram:size=1G,size=2G', /given twice/],
    ['0:ram:size=1000', /not a multiple of the 512-byte block size/],
    ['0:ram:size=1G,block-size=1024', /block-size must be 512 or 4096/],
    ['0:ram:size=1G,vendor=MUCHTOOLONGVENDOR', /vendor must be 1\.\.8 printable/],
    ['0:ram:size=1G,readonly=maybe', /expected on\/off/],
    ['0:file:path=/x,io=fast', /io must be one of auto, inline, threads, uring/],
    ['0:ram:size=1G,io=inline', /io applies to file backstores only/],
    ['0:file:path=/x,io=inline,direct', /io=inline cannot be combined with direct/],
    ['nonsense', /expected LUN:BACKSTORE/],
  ];
  for (const [spec, re] of bad) t.throws(() => parseLunSpec(spec), re, spec);
});

t.test('config file', async (t) => {
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ socket: '/run/x.sock', queues: 2, pollUs: 20, logLevel: 'warn', luns: [{ lun: 3, backstore: 'ram', size: '1G' }] }));
  const c = finishConfig(loadConfigFile(good));
  t.equal(c.socket, '/run/x.sock');
  t.equal(c.queues, 2);
  t.equal(c.pollUs, 20);
  t.equal(finishConfig({ socket: '/run/y.sock', luns: [{ lun: 0, backstore: 'ram', size: 1 << 20, readOnly: false, direct: false, io: 'auto', blockSize: 512, writeCache: true }] }).pollUs, 0, 'no spinning by default');
  t.match(c.initiatorId, /^naa\.5025654[0-9a-f]{9}$/, 'default initiator port name: a SAS address derived from the socket path');
  t.equal(c.initiatorId, finishConfig(loadConfigFile(good)).initiatorId, 'the same at every start');
  t.same(c.ports.map((p) => [p.socket, p.targetPortId, p.group, p.queues]), [['/run/x.sock', 1, 1, 2]], 'one port from "socket"');
  t.match(c.ports[0].wwn, /^naa\.5025654[0-9a-f]{9}$/);
  t.not(c.ports[0].wwn, c.initiatorId, 'target and initiator names differ');
  t.equal(c.luns[0].lun, 3);
  const cases: [unknown, RegExp][] = [
    [[], /top level must be an object/],
    [{ socket: 5 }, /socket must be a path/],
    [{ queues: 0 }, /queues must be an integer 1\.\.64/],
    [{ pollUs: 1001 }, /pollUs must be an integer 0\.\.1000/],
    [{ pollUs: -1 }, /pollUs must be an integer 0\.\.1000/],
    [{ logLevel: 'loud' }, /logLevel must be/],
    [{ luns: {} }, /luns must be an array/],
    [{ luns: [{ lun: 0 }] }, /backstore must be/],
    [{ colour: 1 }, /unknown key "colour"/],
    [{ ports: {} }, /ports must be an array/],
    [{ ports: [{}] }, /ports\[0\]: socket=PATH is required/],
    [{ ports: [{ socket: 'a', wwn: 'naa.12' }] }, /ports\[0\]: wwn: /],
    [{ ports: [{ socket: 'a', id: 0 }] }, /id must be an integer 1\.\.65535/],
    [{ ports: [{ socket: 'a', colour: 'red' }] }, /unknown option "colour"/],
    [{ targetPortGroups: [{ id: 1, state: 'sleepy' }] }, /state must be one of active-optimized/],
    [{ targetPortGroups: [{ id: 1, state: 'transitioning' }] }, /state must be one of/],
    [{ targetPortGroups: [{ id: 1, state: 'standby', colour: 1 }] }, /unknown key "colour"/],
    [{ initiatorId: 'vhost-user:x' }, /initiatorId: /],
  ];
  for (const [body, re] of cases) {
    const p = join(dir, 'bad.json');
    writeFileSync(p, JSON.stringify(body));
    t.throws(() => loadConfigFile(p), re, JSON.stringify(body));
  }
  const notJson = join(dir, 'broken.json');
  writeFileSync(notJson, '{ "socket": ');
  t.throws(() => loadConfigFile(notJson), /not valid JSON/);
  t.throws(() => loadConfigFile(join(dir, 'missing.json')), /ENOENT/);
  t.throws(() => finishConfig({ socket: 's', luns: [parseLunSpec('0:ram:size=1M'), parseLunSpec('0:ram:size=1M')] }), /configured twice/);
  t.throws(() => finishConfig({ socket: 's', luns: [parseLunSpec('0:file:path=a'), parseLunSpec('1:file:path=a')] }), /used by two LUNs/);
  t.throws(() => finishConfig({ luns: [] }), /no socket/);
  t.throws(() => finishConfig({ socket: 's', luns: [] }), /no LUNs/);
});

t.test('ports and target port groups', async (t) => {
  const lun = [parseLunSpec('0:ram:size=1M')];
  const c = finishConfig({
    socket: '/run/a.sock', luns: lun,
    ports: [parsePortSpec('socket=/run/b.sock,wwn=fc.2100000000000002,initiator=fc.2000000000000002,group=2,queues=4')],
    targetPortGroups: [parseTpgSpec('1:active-optimized:preferred'), parseTpgSpec('2:standby')],
  });
  t.same(c.ports.map((p) => [p.socket, p.targetPortId, p.group, p.queues]), [['/run/a.sock', 1, 1, 1], ['/run/b.sock', 2, 2, 4]]);
  t.same([c.ports[1].wwn, c.ports[1].initiator], ['fc.2100000000000002', 'fc.2000000000000002']);
  t.same(c.targetPortGroups, [{ id: 1, state: 0, preferred: true }, { id: 2, state: 2, preferred: false }], 'states as SPC-4 codes');
  t.same(parseTpgSpec('3:active-non-optimized'), { id: 3, state: 1, preferred: false });
  t.same(parseTpgSpec('4:unavailable'), { id: 4, state: 3, preferred: false });
  t.same(parsePortSpec('socket=x,id=7,wwn=iqn.2003-01.org.example:t1,initiator=iqn.1994-05.com.example:vm1'),
    { socket: 'x', targetPortId: 7, wwn: 'iqn.2003-01.org.example:t1', initiator: 'iqn.1994-05.com.example:vm1' });
  const bad: [() => unknown, RegExp][] = [
    [() => parsePortSpec('wwn=naa.5001405000000001'), /socket=PATH is required/],
    [() => parsePortSpec('socket=x,group=0'), /group must be an integer 1\.\.65535/],
    [() => parsePortSpec('socket=x,queues=99'), /queues must be an integer 1\.\.64/],
    [() => parsePortSpec('socket=x,id=1,id=2'), /given twice/],
    [() => parseTpgSpec('1'), /expected ID:STATE\[:preferred\]/],
    [() => parseTpgSpec('1:offline'), /state must be one of/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a' }, { socket: 'a' }] }), /socket a is configured twice/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a', targetPortId: 3 }, { socket: 'b', targetPortId: 3 }] }), /relative target port id 3 is used by two ports/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a', wwn: 'naa.5001405000000001' }, { socket: 'b', wwn: 'naa.5001405000000001' }] }), /used by two ports/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a', wwn: 'naa.5001405000000001', initiator: 'fc.2000000000000002' }] }), /name different protocols/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a', group: 2 }] }), /define the groups/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a', group: 2 }], targetPortGroups: [{ id: 1, state: 0, preferred: false }] }), /which targetPortGroups does not define/],
    [() => finishConfig({ luns: lun, ports: [{ socket: 'a' }], targetPortGroups: [{ id: 1, state: 0, preferred: false }, { id: 1, state: 2, preferred: false }] }), /group 1 is configured twice/],
  ];
  for (const [f, re] of bad) t.throws(f, re);
  t.equal(finishConfig({ socket: 'a', luns: lun, ports: [{ socket: 'a' }] }).ports.length, 1, '--socket and a --port on the same path are one port');
  const argv = parseServeArgs(['--socket', 'a.sock', '--socket', 'b.sock', '--port', 'socket=c.sock,group=2', '--tpg', '1:active-optimized', '--tpg', '2:standby',
    '--state-dir', '/tmp/st', '--run-dir', '/tmp/rn', '--lun', '0:ram:size=1M']);
  t.same(argv.config.ports.map((p) => [p.socket, p.targetPortId, p.group]), [['a.sock', 1, 1], ['b.sock', 2, 1], ['c.sock', 3, 2]]);
  t.same([argv.config.stateDir, argv.config.runDir], ['/tmp/st', '/tmp/rn']);
  t.same(qemuArgs(argv.config, '1G', argv.config.ports.slice(0, 2)).filter((a) => a.startsWith('vhost-user-scsi-pci')),
    ['vhost-user-scsi-pci,chardev=vus0,num_queues=1', 'vhost-user-scsi-pci,chardev=vus1,num_queues=1'], 'one VM, two controllers');
});

t.test('argument parsing and the QEMU arguments', async (t) => {
  const p = parseServeArgs(['--socket', 'v.sock', '--lun', '0:ram:size=1G', '--queues=2', '--log-level', 'debug']);
  t.equal(p.config.queues, 2);
  t.equal(p.config.logLevel, 'debug');
  const args = qemuArgs(p.config);
  t.ok(args.includes('memory-backend-memfd,id=mem0,size=1G,share=on'), 'shared memfd guest memory');
  t.ok(args.some((a) => /^vhost-user-scsi-pci,chardev=vus0,num_queues=2$/.test(a)));
  t.throws(() => parseServeArgs(['--socket']), /--socket needs a value/);
  t.throws(() => parseServeArgs(['--bogus']), /unknown argument "--bogus"/);
  t.throws(() => parseServeArgs(['--socket', 's', '--lun', '0:ram:size=1G', '--log-level', 'loud']), /--log-level/);
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
}

t.test('the real CLI: one line and exit 2 for every mistake', async (t) => {
  for (const args of [
    ['serve'],
    ['serve', '--socket', join(dir, 's.sock')],
    ['serve', '--socket', join(dir, 's.sock'), '--lun', '0:ram'],
    ['serve', '--socket', join(dir, 's.sock'), '--lun', `0:file:path=${join(dir, 'absent.img')}`],
    ['frobnicate'],
  ]) {
    const r = cli(...args);
    t.equal(r.status, 2, `${args.join(' ')} → exit 2`);
    t.match(r.stderr, /^vhost-scsi-ts: .+\n$/, `one clear line: ${r.stderr.trim()}`);
  }
  const help = cli('serve', '--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /--lun LUN:BACKSTORE/);
  const caps = cli('--print-capabilities');
  t.same(JSON.parse(caps.stdout), { type: 'scsi' });
  const qa = cli('serve', '--socket', 'x.sock', '--lun', '0:ram:size=1G', '--print-qemu-args');
  t.equal(qa.status, 0);
  t.match(qa.stdout, /vhost-user-scsi-pci,chardev=vus0,num_queues=1/);
});
