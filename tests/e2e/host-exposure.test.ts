// End to end: a LUN exposed on the host through tcm_loop + TCMU, served by our core. The host here
// has no configfs or LIO, so "the host" is a TCG guest: its root is this machine's root shared
// read-only over 9p, and the backend (node) runs inside it in a chroot. The guest script starts
// the real CLI with --host-lun, then checks through the kernel's /dev/sdX and, next to it,
// through a vhost-user frontend (tests/e2e/vhost-client.ts) on the same LUN:
//  - the disk has our INQUIRY identity and the fabric's (SAS) protocol identifier in VPD 83h;
//  - fio --verify on /dev/sdX;
//  - data written through the host disk is read back through vhost-user, and the other way round;
//  - a reservation taken through the vhost-user path makes host writes conflict;
//  - the backend killed (SIGKILL) and restarted while /dev/sdX is held open comes back (the
//    configfs entries are re-attached) without losing an acknowledged write;
//  - `vhost-scsi-ts host list` shows the exposure; SIGTERM removes it.
import t from 'tap';
import { e2eAvailable, ensureGuest, repoRoot, runGuest } from './harness';

const SCRIPT = String.raw`
R=/mnt/hostroot
# Scratch space visible inside and outside the chroot at the same path: a tmpfs under the guest's
# /dev, which the chroot sees through its rbind. (A tmpfs over the chroot's /tmp would hide a
# repository checked out under the host's /tmp.)
W=/dev/vst
mkdir -p $W && mount -t tmpfs -o mode=1777 tmpfs $W
for d in proc sys dev; do mount --rbind /$d $R/$d; done
REPO=__REPO__
node() { chroot $R /usr/bin/node "$@"; }
cli() { node $REPO/dist/backend/cli.js "$@"; }
client() { node $REPO/dist/tests/e2e/vhost-client.js $W/vst.sock "$@"; }
ARGS="serve --socket $W/vst.sock --lun 0:file:path=$W/disk.img,size=64M,product=HOSTLUN --host-lun 0,wwn=naa.5001405abcdef001,initiator=naa.5001405abcdef002 --state-dir $W/state --run-dir $W/run"
start_backend() {
	chroot $R /usr/bin/node $REPO/dist/backend/cli.js $ARGS >>$W/backend.log 2>&1 &
	bpid=$!
	for i in $(seq 1 600); do grep -q "exposed on this host" $W/backend.log 2>/dev/null && [ "$(grep -c 'exposed on this host' $W/backend.log)" -ge "$1" ] && return 0; kill -0 $bpid 2>/dev/null || break; usleep 100000; done
	echo "backend did not start"; cat $W/backend.log; exit 1
}
start_backend 1
# tcm_loop adds the LUN asynchronously: find the disk whose product is ours.
for i in $(seq 1 300); do
	dev=$(lsscsi | awk '/HOSTLUN/ {print $NF}' | head -1)
	[ -b "$dev" ] && break; usleep 100000
done
echo "host disk: $dev"
lsscsi
sg_inq $dev | grep -E "Vendor identification|Product identification"
sg_vpd -p di $dev
cli host list

fio --name=v --filename=$dev --rw=randwrite --bs=4k --size=16M --ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 >/tmp/fio.txt 2>&1 && echo "fio-verify=ok" || { echo "fio failed"; tail -20 /tmp/fio.txt; }

# Host → vhost-user
dd if=/dev/urandom of=$W/a.bin bs=4096 count=4 2>/dev/null
dd if=$W/a.bin of=$dev bs=4096 seek=512 oflag=direct conv=fsync 2>/dev/null
client read 4096 32 $W/a.back
cmp $W/a.bin $W/a.back && echo "host-to-vhost=ok"
# vhost-user → host
dd if=/dev/urandom of=$W/b.bin bs=4096 count=4 2>/dev/null
client write 8192 $W/b.bin
dd if=$dev of=/tmp/b.back bs=4096 skip=1024 count=4 iflag=direct 2>/dev/null
cmp $W/b.bin /tmp/b.back && echo "vhost-to-host=ok"

# A reservation through vhost-user (Exclusive Access, type 3) stops host writes and reads.
client register 0x77
client reserve 0x77 3
dd if=$W/a.bin of=$dev bs=4096 seek=0 count=1 oflag=direct 2>/dev/null && echo "host write allowed?!" || echo "host-write-conflict=ok"
dmesg | grep -i -m1 "reservation conflict"
client release 0x77 3
client unregister 0x77
dd if=$W/a.bin of=$dev bs=4096 seek=0 count=1 oflag=direct 2>/dev/null && echo "host-write-after-release=ok"

# Kill -9 the backend while the host holds the disk open; restart it; nothing acknowledged lost.
exec 3<$dev
dd if=/dev/urandom of=/tmp/c.bin bs=4096 count=8 2>/dev/null
dd if=/tmp/c.bin of=$dev bs=4096 seek=2048 oflag=direct conv=fsync 2>/dev/null && echo "acknowledged write done"
kill -9 $bpid; wait $bpid 2>/dev/null
echo "backend killed"
start_backend 2
dd if=$dev of=/tmp/c.back bs=4096 skip=2048 count=8 iflag=direct 2>/dev/null
cmp /tmp/c.bin /tmp/c.back && echo "after-restart=ok"
exec 3<&-
grep -E "re-attach|reattach|stale" $W/backend.log | head -3

kill -TERM $bpid; wait $bpid; echo "backend exit=$?"
ls /sys/kernel/config/target/loopback/ | grep -c naa. | sed 's/^/loopback wwns left: /'
`;

const avail = e2eAvailable();
if (!avail.ok) {
  t.plan(0, `e2e unavailable: ${avail.reason}`);
} else {
  t.before(async () => {
    await ensureGuest();
  });

  t.test('a LUN on the host through tcm_loop + TCMU, shared with the vhost-user path', async (t) => {
    const run = await runGuest({
      lio: true,
      shares: [{ dir: '/', tag: 'hostroot', readonly: true }],
      timeoutMs: 600_000,
      memoryMiB: 2048,
      script: SCRIPT.replace(/__REPO__/g, repoRoot()),
    });
    const out = run.scriptOutput;
    t.equal(run.scriptStatus, 0, `guest script succeeded\n${out}`);
    t.match(out, /host disk: \/dev\/sd[a-z]+/, 'the exposed LUN appears as a host disk');
    t.match(out, /Vendor identification: VHOST-TS/, 'our INQUIRY identity');
    t.match(out, /Product identification: HOSTLUN/);
    t.match(out, /transport: Serial Attached SCSI/i, 'VPD 83h: SAS protocol identifier (naa. WWN)');
    t.match(out, /fio-verify=ok/, 'fio --verify on the host disk');
    t.match(out, /host-to-vhost=ok/, 'written through the host disk, read through vhost-user');
    t.match(out, /vhost-to-host=ok/, 'written through vhost-user, read through the host disk');
    t.match(out, /reserve: status=0x00/);
    t.match(out, /host-write-conflict=ok/, 'a vhost-user reservation makes host writes conflict');
    t.match(out, /sd \d+:0:\d+:0: reservation conflict/, 'the host kernel saw RESERVATION CONFLICT');
    t.match(out, /host-write-after-release=ok/);
    t.match(out, /acknowledged write done\nbackend killed/);
    t.match(out, /after-restart=ok/, 'no acknowledged write lost across kill -9 and restart');
    t.match(out, /re-attached the exposure of an earlier run \(\/dev\/uio\d+, ring reset\)/, 'the restarted backend re-attached the configfs entries');
    t.match(out, /0\s+vst_\w+_lun0\s+naa\.5001405abcdef001\s+naa\.5001405abcdef002\s+\d+:0:\d+:0\s+\/dev\/sd[a-z]+\s+\/dev\/uio\d+\s+online/, 'host list: LUN, backstore, WWN, nexus, address, disk, uio');
    t.match(out, /backend exit=0/, 'SIGTERM: clean exit');
    t.match(out, /loopback wwns left: 0/, 'teardown removed the configfs entries');
  });
}
