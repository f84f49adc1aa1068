// End to end: QEMU (TCG) with a Linux guest attached to the real CLI over vhost-user-scsi-pci.
// The guest sees our disks with our identity and capacity, fio --verify passes on them, what the
// guest wrote is in the image file, and a QEMU killed mid-I/O is followed by a new one served by
// the same running backend.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { e2eAvailable, ensureGuest, runGuest, startGuest } from './harness';
import { spawnBackend } from './backend-process';

const avail = e2eAvailable();
if (!avail.ok) {
  t.plan(0, `e2e unavailable: ${avail.reason}`);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'vst-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'vhost-scsi.sock');
  const image = join(dir, 'disk0.img');

  t.before(async () => {
    await ensureGuest();
  });

  t.test('a Linux guest uses a disk served by vhost-scsi-ts', async (t) => {
    const backend = spawnBackend([
      '--socket', socket,
      '--lun', `0:file:path=${image},size=64M,vendor=ACME,product=E2E-DISK,serial=E2E0001`,
      '--lun', '1:ram:size=16M',
    ]);
    t.teardown(() => backend.stop());
    await backend.waitFor(/listening on/);

    const PATTERN_OFFSET = 8 << 20;
    const run = await runGuest({
      vhostUserScsi: [{ socket }],
      timeoutMs: 240_000,
      script: `set -e
lsscsi
sg_inq /dev/sda
echo "sda-blocks=$(cat /sys/block/sda/size) sdb-blocks=$(cat /sys/block/sdb/size)"
fio --name=verify --filename=/dev/sda --rw=randwrite --bs=4k --size=16M --offset=16M --verify=crc32c --do_verify=1 \\
    --direct=1 --ioengine=libaio --iodepth=16 --output-format=terse --terse-version=3 >/tmp/fio.out
echo "fio-errors=$(cut -d';' -f5 /tmp/fio.out)"
fio --name=ram --filename=/dev/sdb --rw=randrw --bs=8k --size=8M --verify=crc32c --direct=1 --ioengine=libaio --iodepth=4 >/dev/null
echo "ram-fio=ok"
dd if=/dev/urandom of=/tmp/pattern bs=4096 count=4 2>/dev/null
dd if=/tmp/pattern of=/dev/sda bs=4096 seek=$((${PATTERN_OFFSET} / 4096)) conv=fsync 2>/dev/null
echo "pattern-md5=$(md5sum /tmp/pattern | cut -d' ' -f1)"
`,
    });
    t.equal(run.scriptStatus, 0, `guest script succeeded\n${run.scriptOutput}`);
    const out = run.scriptOutput;
    t.match(out, /disk\s+ACME\s+E2E-DISK\s+0\.1\s+\/dev\/sda/, 'lsscsi shows our vendor and product');
    t.match(out, /Unit serial number: E2E0001/, 'VPD 80 serial');
    t.match(out, /sda-blocks=131072 sdb-blocks=32768/, 'capacities: 64 MiB and 16 MiB in 512-byte sectors');
    t.match(out, /fio-errors=0\b/, 'fio --verify=crc32c: no errors');
    t.match(out, /ram-fio=ok/);
    const md5 = /pattern-md5=([0-9a-f]{32})/.exec(out)?.[1];
    t.ok(md5, 'guest printed the pattern checksum');

    const fd = openSync(image, 'r');
    const buf = Buffer.alloc(16384);
    readSync(fd, buf, 0, buf.length, PATTERN_OFFSET);
    closeSync(fd);
    t.equal(createHash('md5').update(buf).digest('hex'), md5, 'what the guest wrote is in the image file');

    t.equal(await backend.stop(), 0, 'SIGTERM: drained, flushed, exit 0');
    t.notOk(existsSync(socket), 'the socket is removed');
  });

  t.test('QEMU killed in the middle of I/O; a new QEMU is served by the same backend', async (t) => {
    const backend = spawnBackend(['--socket', socket, '--lun', `0:file:path=${image},size=64M`]);
    t.teardown(() => backend.stop());
    await backend.waitFor(/listening on/);

    const first = startGuest({
      vhostUserScsi: [{ socket, reconnectMs: 0 }],
      timeoutMs: 240_000,
      script: `echo io-starting
fio --name=busy --filename=/dev/sda --rw=randrw --bs=4k --size=32M --direct=1 --ioengine=libaio --iodepth=32 --time_based --runtime=600 >/dev/null
`,
    });
    await first.waitForOutput(/io-starting/, 180_000);
    await new Promise((r) => setTimeout(r, 3000)); // let I/O pile up in flight
    first.kill('SIGKILL');
    await first.exited;
    await backend.waitFor(/frontend disconnected/, 20_000);

    const second = await runGuest({
      vhostUserScsi: [{ socket }],
      timeoutMs: 240_000,
      script: `set -e
fio --name=after --filename=/dev/sda --rw=randwrite --bs=4k --size=8M --verify=crc32c --do_verify=1 --direct=1 \\
    --ioengine=libaio --iodepth=8 --output-format=terse --terse-version=3 >/tmp/fio.out
echo "fio-errors=$(cut -d';' -f5 /tmp/fio.out)"
`,
    });
    t.equal(second.scriptStatus, 0, `second guest ran\n${second.scriptOutput}`);
    t.match(second.scriptOutput, /fio-errors=0\b/, 'fio --verify passes through the same backend');
    t.equal(backend.process.exitCode, null, 'the backend process never exited');
    t.equal(await backend.stop(), 0);
  });
}
