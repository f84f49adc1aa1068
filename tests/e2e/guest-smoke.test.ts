// The test guest on its own, with no vhost-scsi-ts back-end: QEMU's built-in
// virtio-scsi serves a raw image, and the guest's lsscsi, sg3-utils, fio and
// a 9p share must work. If this fails, every other e2e test is meaningless.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  e2eAvailable, ensureGuest, GuestError, MARKERS, parseConsole, QmpClient, repoRoot, runGuest, runGuestArgs, startGuest,
} from './harness';

const avail = e2eAvailable();
const skip = avail.ok ? false : `e2e unavailable: ${avail.reason}`;

t.test('parseConsole splits a transcript at /init\'s markers', async (t) => {
  const transcript =
    '[    0.912345] some early kernel line\n' +
    '<<<VST-BOOTED uptime=5.73 kernel=6.1.0-56-amd64>>>\n' +
    '<<<VST-SCRIPT-BEGIN>>>\n' +
    'line one\nline two\n' +
    '\n<<<VST-SCRIPT-END status=3>>>\n<<<VST-POWEROFF>>>\n';
  t.same(parseConsole(transcript), { scriptOutput: 'line one\nline two\n', scriptStatus: 3, bootSeconds: 5.73 });

  // A script whose last line has no newline: /init's newline closes it.
  t.same(parseConsole('<<<VST-SCRIPT-BEGIN>>>\nno-eol\n<<<VST-SCRIPT-END status=0>>>\n'),
    { scriptOutput: 'no-eol', scriptStatus: 0, bootSeconds: null });

  // Killed mid-script: output so far, no status.
  t.same(parseConsole('<<<VST-BOOTED uptime=6.00 kernel=x>>>\n<<<VST-SCRIPT-BEGIN>>>\npartial'),
    { scriptOutput: 'partial', scriptStatus: null, bootSeconds: 6 });

  // Never booted.
  t.same(parseConsole('[    1.0] Kernel panic - not syncing\n'), { scriptOutput: '', scriptStatus: null, bootSeconds: null });
});

t.test('runGuestArgs maps options to run-guest.sh flags', async (t) => {
  t.same(runGuestArgs({
    vhostUserScsi: [{ socket: '/run/a.sock', numQueues: 4, virtqueueSize: 256, reconnectMs: 0, props: { hotplug: true, max_sectors: 2048 } }],
    scsiHd: ['/tmp/d.img'],
    share: '/tmp/share',
    shares: [{ dir: '/usr', tag: 'hostusr', readonly: true }],
    memoryMiB: 512,
    qmp: '/tmp/q.sock',
    lio: true,
    scanTargets: [0, 1],
    accel: 'tcg',
    extraArgs: ['-device', 'virtio-rng-pci'],
  }), [
    '--vhost-user-scsi', '/run/a.sock,num_queues=4,virtqueue_size=256,reconnect=0,hotplug=on,max_sectors=2048',
    '--scsi-hd', '/tmp/d.img',
    '--share', '/tmp/share',
    '--share', '/usr,tag=hostusr,ro',
    '--mem', '512M',
    '--qmp', '/tmp/q.sock',
    '--lio',
    '--scan', '0,1',
    '--accel', 'tcg',
    '--', '-device', 'virtio-rng-pci',
  ]);
  t.throws(() => runGuestArgs({ vhostUserScsi: [{ socket: '/tmp/a,b.sock' }] }), /contains a comma/);
});

t.test('run-guest.sh --dry-run composes the QEMU command line', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vst-dry-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ['k', 'i', 'd.img']) fs.writeFileSync(path.join(dir, f), '');
  const r = spawnSync('bash', [
    path.join(repoRoot(), 'qemu-scripts', 'run-guest.sh'), '--dry-run', '--accel', 'tcg',
    '--kernel', path.join(dir, 'k'), '--initrd', path.join(dir, 'i'),
    ...runGuestArgs({
      vhostUserScsi: [{ socket: `${dir}/a.sock`, numQueues: 2 }, { socket: `${dir}/b.sock`, reconnectMs: 0 }],
      scsiHd: [`${dir}/d.img`],
      share: dir,
      memoryMiB: 512,
      qmp: `${dir}/q.sock`,
    }),
  ], { encoding: 'utf8' });
  t.equal(r.status, 0, 'dry run exits 0');
  if (r.status !== 0) t.comment(r.stderr);
  const line = /^run-guest: (.*)$/m.exec(r.stderr)?.[1] ?? '';
  const qemuMajor = Number(/version (\d+)\./.exec(spawnSync(process.env.QEMU ?? 'qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).stdout)?.[1]);
  const reconnect = qemuMajor >= 9 ? 'reconnect-ms=1000' : 'reconnect=1';
  for (const want of [
    '-machine q35',
    '-accel tcg,thread=multi -cpu max',
    '-m 512M',
    // vhost-user needs guest RAM the back-end can mmap: a shared memfd bound to the NUMA node.
    '-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem',
    `-chardev socket,id=vus0,path=${dir}/a.sock,${reconnect}`,
    '-device vhost-user-scsi-pci,id=vus0dev,chardev=vus0,num_queues=2',
    `-chardev socket,id=vus1,path=${dir}/b.sock -device vhost-user-scsi-pci,id=vus1dev,chardev=vus1,num_queues=1`,
    '-device virtio-scsi-pci,id=qscsi0',
    `-drive file=${dir}/d.img,if=none,id=qhd0,format=raw,cache=writeback`,
    '-device scsi-hd,drive=qhd0,bus=qscsi0.0,channel=0,scsi-id=0,lun=0',
    `-fsdev local,id=fsdev0,path=${dir},security_model=none -device virtio-9p-pci,fsdev=fsdev0,mount_tag=share`,
    '-smp 2', // auto: the largest num_queues
    `-qmp unix:${dir}/q.sock,server=on,wait=off`,
    `-fw_cfg name=opt/vhost-scsi-ts/script,file=`,
    '-no-reboot',
    "console=ttyS0 panic=-1 scsi_mod.scan=manual vst.scan=0",
  ]) {
    if (want.startsWith('-fw_cfg')) {
      t.notOk(line.includes(want), 'no fw_cfg script without --script');
    } else {
      t.ok(line.includes(want), `command line has: ${want}`);
    }
  }
  const bad = spawnSync('bash', [path.join(repoRoot(), 'qemu-scripts', 'run-guest.sh'), '--dry-run', '--smp', '0'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--smp '0'/);
});

const qsdAvailable = spawnSync('qemu-storage-daemon', ['--version'], { stdio: 'ignore' }).status === 0;

t.test('guest boots on QEMU\'s virtio-scsi: lsscsi, sg3-utils, fio --verify, 9p, QMP, vhost-user-blk', { skip }, async (t) => {
  const { kernel, initrd } = await ensureGuest();
  t.ok(fs.statSync(kernel).size > 1 << 20, `kernel ${kernel}`);
  t.ok(fs.statSync(initrd).size > 1 << 20, `initramfs ${initrd}`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vst-smoke-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'disk.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 16 << 20); // 32768 blocks of 512 bytes
  const share = path.join(dir, 'share');
  fs.mkdirSync(share);
  fs.writeFileSync(path.join(share, 'from-host.txt'), 'hello from the host\n');
  const qmpSock = path.join(dir, 'qmp.sock');

  // vhost-user itself (shared memfd RAM, the socket, the vrings), proven with
  // QEMU's own back-end: qemu-storage-daemon's vhost-user-blk export.
  const vubSock = path.join(dir, 'vub.sock');
  const vubImg = path.join(dir, 'vub.img');
  if (qsdAvailable) {
    fs.writeFileSync(vubImg, '');
    fs.truncateSync(vubImg, 8 << 20);
    const qsd = spawn('qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=f,filename=${vubImg}`,
      '--export', `type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=${vubSock},writable=on`,
    ], { stdio: 'ignore' });
    t.teardown(() => { qsd.kill('SIGKILL'); });
    for (let i = 0; i < 200 && !fs.existsSync(vubSock); i++) await new Promise((r) => setTimeout(r, 50));
    t.ok(fs.existsSync(vubSock), 'qemu-storage-daemon listens');
  } else {
    t.comment('qemu-storage-daemon not found: vhost-user-blk part skipped');
  }

  const g = startGuest({
    scsiHd: [img],
    vhostUserBlk: qsdAvailable ? [{ socket: vubSock }] : [],
    share,
    qmp: qmpSock,
    timeoutMs: 240_000,
    script: [
      'set -e',
      'echo "== lsscsi"; lsscsi',
      'echo "== sg_inq"; sg_inq /dev/sda',
      'echo "== sg_readcap"; sg_readcap /dev/sda',
      'echo "== share"; pwd; cat /mnt/share/from-host.txt; echo "hello from the guest" > /mnt/share/from-guest.txt',
      'grep " /mnt/share 9p " /proc/mounts',
      'echo "== fio"',
      'fio --name=scsi --filename=/dev/sda --rw=randwrite --bs=4k --size=8M --verify=crc32c --direct=1 --ioengine=libaio --iodepth=4',
      ...(qsdAvailable
        ? [
          'echo "== vhost-user-blk"; cat /sys/block/vda/size',
          'fio --name=vub --filename=/dev/vda --rw=randwrite --bs=4k --size=4M --verify=crc32c --direct=1 --ioengine=libaio --iodepth=4',
        ]
        : []),
      'echo "== done"',
    ].join('\n'),
  });
  const qmp = await QmpClient.connect(qmpSock, 60_000);
  t.teardown(() => qmp.close());
  t.same(await qmp.execute('query-status'), { running: true, status: 'running' });

  const booted = await g.waitForOutput(MARKERS.booted, 180_000);
  t.match(booted, /kernel=6\.1\.0-\d+-amd64/);
  const run = await g.wait(240_000);
  t.comment(`boot to /init ready: ${run.bootSeconds} s guest uptime; whole run ${run.durationMs} ms`);

  t.equal(run.scriptStatus, 0, 'script exit status');
  t.equal(run.exitCode, 0, 'QEMU powered off cleanly');
  const out = run.scriptOutput;
  t.match(out, /^\[0:0:0:0\]\s+disk\s+QEMU\s+QEMU HARDDISK\s+\S+\s+\/dev\/sda\s*$/m, 'lsscsi lists the scsi-hd');
  t.match(out, /PQual=0\s+PDT=0\b/, 'INQUIRY: peripheral qualifier 0, direct-access device');
  t.match(out, /Vendor identification: QEMU\s*$/m);
  t.match(out, /Product identification: QEMU HARDDISK\s*$/m);
  t.match(out, /Last LBA=32767 \(0x7fff\), Number of logical blocks=32768/, 'READ CAPACITY of a 16 MiB image');
  t.match(out, /Logical block length=512 bytes/);
  t.match(out, /== share\n\/mnt\/share\nhello from the host\n/, 'script runs in /mnt/share and reads the host file');
  t.equal(fs.readFileSync(path.join(share, 'from-guest.txt'), 'utf8'), 'hello from the guest\n', 'guest write reached the host');
  t.match(out, /scsi: \(groupid=0, jobs=1\): err= 0:/, 'fio on /dev/sda finished without error');
  t.match(out, /== fio\n[^]*WRITE: bw=.*io=8192KiB/, 'fio wrote 8 MiB');
  t.match(out, /== fio\n[^]*READ: bw=.*io=8192KiB/, 'fio read back 8 MiB to verify');
  t.notMatch(out, /verify: bad|verify failed/i);
  t.match(out, /== done\n$/, 'the script ran to its end');

  // fio's writes reached the image QEMU serves: its first 8 MiB are no longer zero.
  const sampled = (file: string, bytes: number): number => {
    const data = fs.readFileSync(file).subarray(0, bytes);
    let nonZero = 0;
    for (let i = 0; i < data.length; i += 4096) if (data[i] !== 0 || data[i + 8] !== 0) nonZero++;
    return nonZero;
  };
  const n = sampled(img, 8 << 20);
  t.ok(n > 1500, `written blocks visible in the image (${n} of 2048 sampled)`);

  if (qsdAvailable) {
    t.match(out, /== vhost-user-blk\n16384\n/, 'virtio-blk capacity: 8 MiB in 512-byte sectors');
    t.match(out, /vub: \(groupid=0, jobs=1\): err= 0:/, 'fio on /dev/vda (vhost-user-blk) finished without error');
    const m = sampled(vubImg, 4 << 20);
    t.ok(m > 700, `vhost-user-blk writes reached qemu-storage-daemon's image (${m} of 1024 sampled)`);
  }

  const ev = await qmp.waitEvent('SHUTDOWN', 10_000);
  t.match(ev.data, { guest: true, reason: 'guest-shutdown' }, 'QMP saw the guest power off');
});

t.test('runGuest kills a guest that outlives its timeout and reports it', { skip }, async (t) => {
  await ensureGuest();
  const err = await runGuest({ script: 'sleep 600', timeoutMs: 1500 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, GuestError);
  const ge = err as GuestError;
  t.match(ge.message, /guest timed out after 1500 ms and was killed/);
  t.match(ge.message, /run-guest: .*qemu-system-x86_64/, 'the message carries the command line');
  t.equal(ge.run.scriptStatus, null);
});

t.test('runGuest rejects when QEMU cannot start (no back-end on the socket)', { skip }, async (t) => {
  await ensureGuest();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vst-nobackend-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const err = await runGuest({
    vhostUserScsi: [{ socket: path.join(dir, 'nobody.sock'), reconnectMs: 0 }],
    script: 'true',
    timeoutMs: 60_000,
  }).then(() => undefined, (e: unknown) => e);
  t.type(err, GuestError);
  const ge = err as GuestError;
  t.match(ge.message, /guest ended without finishing the script \(QEMU exit code 1/);
  t.match(ge.run.stderr, /nobody\.sock/, 'QEMU names the socket it could not reach');
});
