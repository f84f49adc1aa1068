// End to end: live LUN changes seen by a running Linux guest, without a reboot. The backend is the
// real CLI started with --config; the host edits the config file and sends SIGHUP, as a person
// would. The guest only watches sysfs while it waits: it sends no SCSI command of its own, so
// what it sees comes from the virtio-scsi events (PARAM_CHANGE → Linux re-reads the capacity;
// TRANSPORT_RESET RESCAN/REMOVED → Linux adds/removes the device), not from a nudge.
import t from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { e2eAvailable, ensureGuest, startGuest } from './harness';
import { spawnBackend } from './backend-process';

const MiB = 1 << 20;

// The guest announces each phase, then polls sysfs (no SCSI commands) until the change shows.
const SCRIPT = String.raw`
wait_for() { # wait_for WHAT TEST...: poll every 0.1 s, at most 120 s
	local what=$1; shift
	for i in $(seq 1 1200); do "$@" && { echo "seen: $what after $i polls"; return 0; }; usleep 100000; done
	echo "NOT SEEN: $what"; return 1
}
sda=$(basename /sys/bus/scsi/devices/*:0:0:0/block/*)
echo "phase-resize sda=$sda size=$(cat /sys/block/$sda/size)"
wait_for resize sh -c "test \$(cat /sys/block/$sda/size) != 131072" || exit 1
echo "resized size=$(cat /sys/block/$sda/size)"
# The new blocks are usable: write and read back the last one.
dd if=/dev/urandom of=/tmp/blk bs=512 count=1 2>/dev/null
dd if=/tmp/blk of=/dev/$sda bs=512 seek=196607 oflag=direct conv=fsync 2>/dev/null || echo "write beyond the old end failed"
dd if=/dev/$sda bs=512 skip=196607 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/blk && echo "last-block=ok"

echo "phase-add"
wait_for hot-add sh -c 'ls /sys/bus/scsi/devices/*:0:0:1/block/ >/dev/null 2>&1' || exit 1
sdb=$(basename /sys/bus/scsi/devices/*:0:0:1/block/*)
# sd binds asynchronously after the device appears: wait for its capacity.
wait_for sdb-capacity sh -c "test -e /sys/block/$sdb/size && test \$(cat /sys/block/$sdb/size) -gt 0" || exit 1
echo "added $sdb size=$(cat /sys/block/$sdb/size)"
lsscsi
dd if=/dev/urandom of=/tmp/pat bs=4096 count=4 2>/dev/null
dd if=/tmp/pat of=/dev/$sdb bs=4096 oflag=direct conv=fsync 2>/dev/null
dd if=/dev/$sdb bs=4096 count=4 iflag=direct 2>/dev/null | cmp -s - /tmp/pat && echo "hot-added-io=ok"

echo "phase-remove"
wait_for hot-remove sh -c '! ls -d /sys/bus/scsi/devices/*:0:0:1 >/dev/null 2>&1' || exit 1
test -e /dev/$sdb && echo "/dev/$sdb still there" || echo "removed $sdb"
echo "sda still size=$(cat /sys/block/$sda/size)"
dd if=/dev/$sda bs=512 skip=196607 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/blk && echo "sda-after-remove=ok"
`;

const avail = e2eAvailable();
if (!avail.ok) {
  t.plan(0, `e2e unavailable: ${avail.reason}`);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'vst-live-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'vhost-scsi.sock');
  const config = join(dir, 'vhost-scsi.json');
  const img0 = join(dir, 'disk0.img');
  const img1 = join(dir, 'disk1.img');

  const writeConfig = (luns: object[]): void => {
    writeFileSync(config, JSON.stringify({ socket, luns }, null, 2));
  };

  t.before(async () => {
    await ensureGuest();
  });

  t.test('resize, hot-add and hot-remove through the config file and SIGHUP, seen by a running guest', async (t) => {
    writeConfig([{ lun: 0, backstore: 'file', path: img0, size: '64M' }]);
    const backend = spawnBackend(['--config', config]);
    t.teardown(() => backend.stop());
    await backend.waitFor(/listening on/);
    const hup = (): void => { backend.process.kill('SIGHUP'); };

    const guest = startGuest({
      // hotplug and param_change are QEMU's defaults for vhost-user-scsi-pci; spelled out because
      // without them the driver gets no events (VIRTIO_SCSI_F_HOTPLUG / VIRTIO_SCSI_F_CHANGE).
      vhostUserScsi: [{ socket, props: { hotplug: 'on', param_change: 'on' } }],
      timeoutMs: 400_000,
      script: SCRIPT,
    });
    t.teardown(() => guest.kill());

    // 1. Resize: 64 MiB → 96 MiB.
    await guest.waitForOutput(/phase-resize sda=\w+ size=131072/, 300_000);
    writeConfig([{ lun: 0, backstore: 'file', path: img0, size: '96M' }]);
    hup();
    await backend.waitFor(/LUN 0 grown from 67108864 to 100663296 bytes; PARAM_CHANGE event sent/, 30_000);
    t.equal(statSync(img0).size, 96 * MiB, 'the image file grew');
    await guest.waitForOutput(/resized size=196608/, 150_000);
    await guest.waitForOutput(/last-block=ok/, 60_000);

    // 2. Hot-add LUN 1 (a new sparse image).
    await guest.waitForOutput(/phase-add/, 60_000);
    writeConfig([
      { lun: 0, backstore: 'file', path: img0, size: '96M' },
      { lun: 1, backstore: 'file', path: img1, size: '32M', product: 'HOTPLUGGED' },
    ]);
    hup();
    await backend.waitFor(/LUN 1 added \(file .*disk1\.img, 33554432 bytes\); TRANSPORT_RESET\/RESCAN event sent/, 30_000);
    await guest.waitForOutput(/added sd\w+ size=65536/, 150_000);
    await guest.waitForOutput(/hot-added-io=ok/, 60_000);

    // 3. Hot-remove LUN 1.
    await guest.waitForOutput(/phase-remove/, 60_000);
    writeConfig([{ lun: 0, backstore: 'file', path: img0, size: '96M' }]);
    hup();
    await backend.waitFor(/LUN 1 removed; TRANSPORT_RESET\/REMOVED event sent/, 30_000);

    const run = await guest.wait(200_000);
    const out = run.scriptOutput;
    t.equal(run.scriptStatus, 0, `guest script succeeded\n${out}`);
    t.match(out, /seen: resize after \d+ polls/, 'the guest saw the new capacity by itself (no command sent)');
    t.match(out, /resized size=196608/, '96 MiB in 512-byte sectors');
    t.match(out, /last-block=ok/, 'the new last block is readable and writable');
    t.match(out, /seen: hot-add/, 'a new disk appeared without a rescan command');
    t.match(out, /disk\s+VHOST-TS\s+HOTPLUGGED\s+0\.1\s+\/dev\/sd\w+/, 'lsscsi shows the hot-added LUN');
    t.match(out, /hot-added-io=ok/, 'I/O on the hot-added disk');
    t.match(out, /seen: hot-remove/, 'the removed disk disappeared');
    t.match(out, /removed sd\w+/);
    t.match(out, /sda-after-remove=ok/, 'LUN 0 unaffected');
    t.match(backend.output(), /LUN 1 drained, flushed and closed/);
    t.equal(backend.process.exitCode, null, 'the backend kept running throughout');
    t.equal(await backend.stop(), 0);
  });
}
