// End to end: shared LUNs through several sockets, with real QEMUs and Linux guests.
//  1. Two guests share one disk through two sockets and run the fence_scsi flow with sg_persist:
//     A registers and reserves Write Exclusive - Registrants Only, B's writes conflict, B preempts
//     and aborts A, then A's writes conflict. B's APTPL registration survives a backend restart
//     (a third guest reads it after the restart).
//  2. One guest with two controllers to the same LUN sees two paths; scsi_dh_alua reports their
//     ALUA states (access_state) and follows the operator's changes (config file + SIGHUP).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { e2eAvailable, ensureGuest, runGuest, startGuest } from './harness';
import { spawnBackend } from './backend-process';

// A conflicting write shows as "Reservation Conflict" in sg_raw's status line.
const COMMON = String.raw`
dev=/dev/$(basename /sys/bus/scsi/devices/*:0:0:0/block/*)
dd if=/dev/urandom of=/tmp/blk bs=512 count=1 2>/dev/null
write1() { sg_raw -s 512 -i /tmp/blk $dev 2a 00 00 00 00 00 00 00 01 00 2>&1; }
status() { write1 | grep -q -i 'reservation conflict' && echo conflict || { write1 >/dev/null && echo good || echo other; }; }
`;

const GUEST_A = COMMON + String.raw`
sg_persist -n --out --register --param-sark=0xa $dev && echo "A: registered"
sg_persist -n --out --reserve --param-rk=0xa --prout-type=5 $dev && echo "A: reserved"
write1 >/dev/null && echo "A: holder write ok"
echo "A: waiting to be preempted"
for i in $(seq 1 1200); do
	out=$(write1)
	echo "$out" | grep -q -i 'reservation conflict' && { echo "A: write conflicts after preemption"; break; }
	usleep 200000
done
sg_persist -n --in --read-keys $dev
sg_persist -n --in --read-reservation $dev
`;

const GUEST_B = COMMON + String.raw`
for i in $(seq 1 1200); do
	sg_persist -n --in --read-reservation $dev 2>/dev/null | grep -q -i 'key=0xa' && break
	usleep 200000
done
echo "B: sees A's reservation"
write1 | grep -q -i 'reservation conflict' && echo "B: write conflicts"
sg_persist -n --out --register --param-sark=0xb $dev && echo "B: registered"
sg_persist -n --out --preempt-abort --param-rk=0xb --param-sark=0xa --prout-type=5 $dev && echo "B: preempted A"
write1 >/dev/null && echo "B: write ok"
sg_persist -n --out --register --param-rk=0xb --param-sark=0xb --param-aptpl $dev && echo "B: APTPL set"
`;

const GUEST_C = COMMON + String.raw`
sg_persist -n --in --read-keys $dev
sg_persist -n --in --read-reservation $dev
echo "C: write $(status)"
`;

// Two paths (host0 = port 1, host1 = port 2) to one LUN. Each phase: wait until the kernel's
// ALUA handler shows the expected states, nudging both paths with TEST UNIT READY so the unit
// attention (2A/06) reaches it, then print them and sg_rtpg's view.
const MULTIPATH = String.raw`
p1=$(basename /sys/bus/scsi/devices/0:0:0:0/block/*)
p2=$(basename /sys/bus/scsi/devices/1:0:0:0/block/*)
state() { cat /sys/block/$1/device/access_state 2>/dev/null; }
show() { echo "$1: $p1=$(state $p1) $p2=$(state $p2) dh=$(cat /sys/block/$p1/device/dh_state)"; }
await() { # await PHASE STATE1 STATE2
	for i in $(seq 1 600); do
		sg_turs /dev/$p1 >/dev/null 2>&1; sg_turs /dev/$p2 >/dev/null 2>&1
		[ "$(state $p1)" = "$2" ] && [ "$(state $p2)" = "$3" ] && { show "$1"; return 0; }
		usleep 200000
	done
	show "$1 TIMEOUT"; return 1
}
echo "wwid: $(tr -d '\0' </sys/block/$p1/device/wwid) / $(tr -d '\0' </sys/block/$p2/device/wwid)"
await phase1 active/optimized active/non-optimized || exit 1
sg_rtpg -d /dev/$p1
echo "ready-2"
await phase2 active/optimized standby || exit 1
dd if=/dev/$p1 of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null && echo "read via $p1 ok"
echo "ready-3"
await phase3 standby active/optimized || exit 1
sg_rtpg -d /dev/$p2
dd if=/dev/$p2 of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null && echo "read via $p2 ok"
`;

const avail = e2eAvailable();
if (!avail.ok) {
  t.plan(0, `e2e unavailable: ${avail.reason}`);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'vst-shared-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  t.before(async () => {
    await ensureGuest();
  });

  t.test('two guests, one disk: the fence_scsi flow with persistent reservations; APTPL survives a restart', async (t) => {
    const a = join(dir, 'a.sock');
    const b = join(dir, 'b.sock');
    const args = ['--port', `socket=${a}`, '--port', `socket=${b}`, '--lun', `0:file:path=${join(dir, 'shared.img')},size=64M`,
      '--state-dir', join(dir, 'state'), '--run-dir', join(dir, 'run')];
    let backend = spawnBackend(args);
    t.teardown(() => backend.stop());
    await backend.waitFor(/listening on .*b\.sock/);

    const guestA = startGuest({ vhostUserScsi: [{ socket: a }], timeoutMs: 400_000, script: GUEST_A });
    t.teardown(() => guestA.kill());
    // B starts once A holds the reservation, so the two TCG guests do not boot at the same time.
    await guestA.waitForOutput(/A: waiting to be preempted/, 300_000);
    const runB = await runGuest({ vhostUserScsi: [{ socket: b }], timeoutMs: 300_000, script: GUEST_B });
    const runA = await guestA.wait(300_000);
    const outA = runA.scriptOutput;
    const outB = runB.scriptOutput;
    t.match(outA, /A: registered\nA: reserved\nA: holder write ok/, `A registers, reserves WERO and writes\n${outA}`);
    t.match(outB, /B: sees A's reservation\nB: write conflicts/, `B (not registered) gets RESERVATION CONFLICT\n${outB}`);
    t.match(outB, /B: registered\nB: preempted A\nB: write ok/, 'B registers, preempts and aborts A, and writes');
    t.match(outA, /A: write conflicts after preemption/, 'A\'s writes conflict once preempted');
    t.match(outA, /Key=0xb/i, 'A reads B\'s key');
    t.notMatch(outA.split('preemption')[1] ?? '', /0xa\b/i, 'A\'s key is gone');
    t.match(outA, /Write Exclusive, registrants only/i, 'reservation type WERO');
    t.match(outB, /B: APTPL set/);

    t.equal(await backend.stop(), 0, 'backend stops cleanly');
    backend = spawnBackend(args);
    await backend.waitFor(/listening on .*b\.sock/);
    const runC = await runGuest({ vhostUserScsi: [{ socket: a }], timeoutMs: 300_000, script: GUEST_C });
    const outC = runC.scriptOutput;
    t.match(outC, /1 registered reservation key follows:\s+0xb/i, `after the restart: B's APTPL registration is still there\n${outC}`);
    t.match(outC, /Key=0xb[\s\S]*Write Exclusive, registrants only/i, 'and B\'s reservation');
    t.match(outC, /C: write conflict/, 'a new, unregistered initiator still conflicts');
    t.equal(await backend.stop(), 0);
  });

  t.test('one guest, two controllers: two paths whose ALUA states follow the operator', async (t) => {
    const a = join(dir, 'm1.sock');
    const b = join(dir, 'm2.sock');
    const config = join(dir, 'multipath.json');
    const write = (s1: string, s2: string): void => writeFileSync(config, JSON.stringify({
      ports: [{ socket: a, group: 1 }, { socket: b, group: 2 }],
      targetPortGroups: [{ id: 1, state: s1, preferred: true }, { id: 2, state: s2 }],
      stateDir: join(dir, 'state'), runDir: join(dir, 'run'),
      luns: [{ lun: 0, backstore: 'file', path: join(dir, 'mp.img'), size: '64M' }],
    }));
    write('active-optimized', 'active-non-optimized');
    const backend = spawnBackend(['--config', config]);
    t.teardown(() => backend.stop());
    await backend.waitFor(/listening on .*m2\.sock/);
    const guest = startGuest({
      vhostUserScsi: [{ socket: a }, { socket: b }], timeoutMs: 400_000, script: MULTIPATH,
      // The SCSI layer attaches a device handler only if it is loaded when the LUN is scanned.
      append: 'vst.modules=scsi_dh_alua,sd_mod,sr_mod,sg,virtio_pci,virtio_scsi,qemu_fw_cfg',
    });
    t.teardown(() => guest.kill());

    await guest.waitForOutput(/ready-2/, 300_000);
    write('active-optimized', 'standby');
    backend.process.kill('SIGHUP');
    await backend.waitFor(/target port group 2 is now standby/, 30_000);
    await guest.waitForOutput(/ready-3/, 150_000);
    write('standby', 'active-optimized');
    backend.process.kill('SIGHUP');
    await backend.waitFor(/target port group 1 is now standby/, 30_000);
    const run = await guest.wait(200_000);
    const out = run.scriptOutput;
    t.equal(run.scriptStatus, 0, `guest script succeeded\n${out}`);
    const wwid = /wwid: (\S+) \/ (\S+)/.exec(out);
    t.ok(wwid && wwid[1] === wwid[2], 'both paths report the same LU (wwid)');
    t.match(out, /phase1: sd\w+=active\/optimized sd\w+=active\/non-optimized dh=alua/, 'scsi_dh_alua attached; initial states');
    t.match(out, /target port group id : 0x1 , Pref=1[\s\S]*?asymmetric access state : 0x00 \(active\/optimized\)/, 'sg_rtpg: group 1 preferred, active/optimized');
    t.match(out, /target port group id : 0x2 , Pref=0[\s\S]*?asymmetric access state : 0x01 \(active\/non optimized\)/, 'sg_rtpg: group 2 active/non-optimized');
    t.match(out, /phase2: sd\w+=active\/optimized sd\w+=standby/, 'group 2 to standby: seen by the guest');
    t.match(out, /read via sd\w+ ok/, 'I/O on the active path');
    t.match(out, /phase3: sd\w+=standby sd\w+=active\/optimized/, 'failover: the paths swap');
    t.match(out, /asymmetric access state : 0x02 \(standby\)[\s\S]*?status code : 0x02/, 'sg_rtpg after the change: standby, altered by implicit behaviour');
    t.match(out, /read via sd\w+ ok\s*$/, 'I/O on the new active path');
    t.equal(await backend.stop(), 0);
  });
}
