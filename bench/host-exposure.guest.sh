#!/bin/bash
# Guest side of bench/host-exposure.ts (which fills in the double-underscore placeholders and
# hands this to the test guest's /init; see qemu-scripts/guest-init.sh). It runs as root in the
# TCG guest whose /mnt/hostroot is this machine's root (read-only 9p) and whose /mnt/out is
# the results directory (read-write 9p). Markers, one per line, that the host parses:
#   BENCH-INFO k=v ...                      guest facts
#   BENCH-PHASE <backend> round=N           a backend's turn starts
#   BENCH-DEV <backend> k=v ...             the disk under test
#   BENCH-CONF <backend> text               the backend's configuration as reported
#   BENCH-JOB <backend> <job> round=N status=N usr_ticks=N sys_ticks=N wall_cs=N
#   BENCH-SKIP <backend> reason
#   BENCH-STOP <backend> exit=N
#   BENCH-WARN text                         something went wrong but the run goes on
#   BENCH-END
# fio's JSON goes to /mnt/out/<backend>.<job>.<round>.json.
set -u
R=/mnt/hostroot
O=/mnt/out
# Scratch space, the same path inside and outside the chroots: a tmpfs under the guest's /dev,
# which the chroots see through their rbind of /dev. (A tmpfs over the chroot's /tmp would hide
# a repository checked out under the host's /tmp.)
B=/dev/vst-bench
REPO=__REPO__
SIZE=__SIZE__
SIZE_MIB=__SIZE_MIB__
RUNTIME=__RUNTIME__
RAMP=__RAMP__
WARMUP=__WARMUP__
ROUNDS=__ROUNDS__
JOBS="__JOBS__"
BACKENDS="__BACKENDS__"
HANDLERS="__HANDLERS__"
CPU_PROF=__CPU_PROF__
CFG=/sys/kernel/config/target
KR=$(uname -r)

# That one tmpfs holds every image (one at a time: each phase creates its image and deletes it
# afterwards). Mounted before the rbinds, which copy it.
mkdir -p $B && mount -t tmpfs -o size=__TMPFS_MIB__m,mode=1777 tmpfs $B
for d in proc sys dev; do mount --rbind /$d $R/$d; done

# The fio arguments of each job, one JOB_<name>="..." line per job.
__JOB_VARS__
job_args() { local v=JOB_$1; echo "${!v}"; }

echo "BENCH-INFO vcpus=$(nproc) kernel=$KR mem_kib=$(awk '/^MemTotal/ {print $2}' /proc/meminfo) fio=$(fio --version) node=$(chroot $R /usr/bin/node --version)"

# "utime stime" of a process (all its threads) in clock ticks, proc(5) fields 14 and 15
# (counted after the ") " that ends the command name); "0 0" for none.
cpu_ticks() {
	if [ -n "$1" ] && [ -r /proc/$1/stat ]; then
		sed 's/^.*) //' /proc/$1/stat | awk '{ print $12, $13 }'
	else
		echo 0 0
	fi
}
uptime_cs() { awk '{ split($1, a, "."); print a[1] * 100 + a[2] }' /proc/uptime; }

# wait_disk LOOPBACK_WWN_DIR PID: prints "H:C:T:L sdX" once the LUN's disk is usable.
wait_disk() {
	local L=$1 pid=$2 addr dev
	for _ in $(seq 1 1200); do
		[ -z "$pid" ] || kill -0 $pid 2>/dev/null || return 1
		addr=$(cat $L/tpgt_*/address 2>/dev/null | head -1)
		if [ -n "$addr" ]; then
			dev=$(ls /sys/bus/scsi/devices/$addr:0/block 2>/dev/null | head -1)
			if [ -n "$dev" ] && [ -b /dev/$dev ] && [ "$(blockdev --getsize64 /dev/$dev 2>/dev/null)" = "$SIZE" ]; then
				echo "$addr:0 $dev"; return 0
			fi
		fi
		usleep 100000
	done
	return 1
}

# measure BACKEND H:C:T:L sdX PID ROUND
measure() {
	local name=$1 hctl=$2 dev=$3 pid=$4 round=$5 j st u0 s0 u1 s1 w0 w1
	echo "BENCH-DEV $name dev=/dev/$dev hctl=$hctl vendor=$(tr -d ' ' </sys/block/$dev/device/vendor) model=$(tr -d ' ' </sys/block/$dev/device/model)" \
		"max_sectors_kb=$(cat /sys/block/$dev/queue/max_sectors_kb) queue_depth=$(cat /sys/block/$dev/device/queue_depth)" \
		"cache=$(tr ' ' _ </sys/class/scsi_disk/$hctl/cache_type) bytes=$(blockdev --getsize64 /dev/$dev)"
	# A fresh backend (JIT, thread pools, page faults in the data area) warms up on mixed 4 KiB
	# I/O first; nothing of it is recorded. Every backend gets the same.
	if [ "$WARMUP" -gt 0 ]; then
		fio --name=warmup --filename=/dev/$dev --ioengine=libaio --direct=1 --rw=randrw --bs=4k --iodepth=32 \
			--time_based --runtime=$WARMUP --norandommap --randrepeat=0 >/tmp/fio.err 2>&1 ||
			{ echo "BENCH-WARN $name warm-up failed"; tail -3 /tmp/fio.err; }
	fi
	for j in $JOBS; do
		read -r u0 s0 < <(cpu_ticks "$pid"); w0=$(uptime_cs)
		# shellcheck disable=SC2046 # the job's arguments split on purpose
		fio --name=$j --filename=/dev/$dev --ioengine=libaio --direct=1 $(job_args $j) \
			--time_based --runtime=$RUNTIME --ramp_time=$RAMP --norandommap --randrepeat=0 \
			--output-format=json --output=/tmp/fio.json >/tmp/fio.err 2>&1
		st=$?
		read -r u1 s1 < <(cpu_ticks "$pid"); w1=$(uptime_cs)
		cp /tmp/fio.json "$O/$name.$j.$round.json" 2>/dev/null
		echo "BENCH-JOB $name $j round=$round status=$st usr_ticks=$((u1 - u0)) sys_ticks=$((s1 - s0)) wall_cs=$((w1 - w0))"
		[ $st = 0 ] || tail -5 /tmp/fio.err | sed 's/^/  fio: /'
		rm -f /tmp/fio.json
	done
}

# has_uio PID: the process holds a /dev/uioN open.
has_uio() {
	local f
	for f in /proc/$1/fd/*; do
		case $(readlink "$f" 2>/dev/null) in */dev/uio*) return 0 ;; esac
	done
	return 1
}

mkimage() { dd if=/dev/zero of=$1 bs=1M count=$SIZE_MIB 2>/dev/null; }

# Reverse of the loopback setup: LUN link, nexus, LUN, TPG, WWN.
unloop() {
	local L=$1
	rm -f $L/tpgt_1/lun/lun_0/* 2>/dev/null
	echo -n NULL >$L/tpgt_1/nexus 2>/dev/null
	rmdir $L/tpgt_1/lun/lun_0 $L/tpgt_1 $L 2>/dev/null
}

# A loopback port (tcm_loop) for a backstore: WWN/TPG, nexus first (without it tcm_loop fails
# every CDB), then the LUN link, which makes the kernel scan the LUN.
loop_lun() {
	local L=$CFG/loopback/$1 initiator=$2 so=$3
	mkdir -p $L/tpgt_1/lun/lun_0 && echo -n $initiator >$L/tpgt_1/nexus && ln -s $so $L/tpgt_1/lun/lun_0/${so##*/}
}

phase_ours() { # ROUND
	local pid r
	mkimage $B/ours.img || { echo "BENCH-SKIP ours cannot create the image"; return; }
	local prof=()
	# --cpu-prof: V8 writes the profile when the process exits (our CLI exits on SIGTERM).
	[ "$CPU_PROF" = 1 ] && prof=(--cpu-prof "--cpu-prof-dir=$B/prof")
	chroot $R /usr/bin/node "${prof[@]}" $REPO/dist/backend/cli.js serve --socket $B/vst.sock \
		--lun 0:file:path=$B/ours.img,size=$SIZE,product=BENCH-OURS \
		--host-lun 0,wwn=__OURS_WWN__,initiator=__OURS_INI__ \
		--state-dir $B/state --run-dir $B/run >$B/ours.log 2>&1 &
	pid=$!
	if ! r=$(wait_disk $CFG/loopback/__OURS_WWN__ $pid); then
		echo "BENCH-SKIP ours no host disk appeared"; tail -20 $B/ours.log
		kill -TERM $pid 2>/dev/null; wait $pid; rm -f $B/ours.img; return
	fi
	echo "BENCH-CONF ours $(grep -m1 'exposed on this host' $B/ours.log | sed 's/^.*tcmu: //')"
	measure ours $r $pid $1
	kill -TERM $pid; wait $pid; echo "BENCH-STOP ours exit=$?"
	if [ "$CPU_PROF" = 1 ]; then
		for f in $B/prof/*.cpuprofile; do [ -f "$f" ] && cp "$f" "$O/ours.$1.cpuprofile"; done
		rm -rf $B/prof
	fi
	grep -iE 'error|warn' $B/ours.log | head -5
	rm -f $B/ours.img
}

phase_fileio() { # ROUND
	local F=$CFG/core/fileio_0/bench_fileio r
	mkimage $B/fileio.img || { echo "BENCH-SKIP kernel-fileio cannot create the image"; return; }
	# fd_buffered_io=1: no O_DSYNC, write cache enabled (WCE=1), as the two TCMU backends. The
	# kernel resolves the path in the context of this (unchrooted) shell.
	if ! { mkdir -p $F && echo -n "fd_dev_name=$B/fileio.img,fd_dev_size=$SIZE,fd_buffered_io=1" >$F/control && echo -n 1 >$F/enable; }; then
		echo "BENCH-SKIP kernel-fileio configfs refused the backstore"; rmdir $F $CFG/core/fileio_0 2>/dev/null; rm -f $B/fileio.img; return
	fi
	if loop_lun __FILEIO_WWN__ __FILEIO_INI__ $F && r=$(wait_disk $CFG/loopback/__FILEIO_WWN__ ""); then
		echo "BENCH-CONF kernel-fileio $(sed -n 's/^.*\(File: .*\)$/\1/p' $F/info) emulate_write_cache=$(cat $F/attrib/emulate_write_cache) hw_max_sectors=$(cat $F/attrib/hw_max_sectors) hw_queue_depth=$(cat $F/attrib/hw_queue_depth)"
		measure kernel-fileio $r "" $1
	else
		echo "BENCH-SKIP kernel-fileio no host disk appeared"
	fi
	unloop $CFG/loopback/__FILEIO_WWN__
	rmdir $F $CFG/core/fileio_0
	rm -f $B/fileio.img
}

# tcmu-runner refuses to start unless libkmod finds target_core_user under
# /lib/modules/$(uname -r), which the host root lacks (its kernel is another one). So it runs
# in a root of its own: the host's /usr and /etc, the guest's /dev (with the scratch tmpfs), a
# private /run (its lock file /run/tcmu.lock), this guest kernel's module directory, and the
# handler directory at /handlers.
make_troot() {
	local T=$1 e n d
	mkdir -p $T/usr $T/etc $T/tmp $T/run $T/proc $T/sys $T/dev $T/lib/modules/$KR $T/handlers
	for d in usr etc; do mount --bind $R/$d $T/$d; done
	mount -t tmpfs tmpfs $T/run
	for d in proc sys dev; do mount --rbind /$d $T/$d; done
	ln -sfn usr/bin $T/bin; ln -sfn usr/sbin $T/sbin; ln -sfn usr/lib64 $T/lib64
	for e in $R/usr/lib/*; do
		n=${e##*/}
		[ "$n" = modules ] || ln -sfn /usr/lib/$n $T/lib/$n
	done
	mount --bind /lib/modules/$KR $T/lib/modules/$KR
	mount --bind $R$HANDLERS $T/handlers
}

# nl_guarded CMD...: runs a configfs write that may wait for tcmu-runner's netlink reply
# (enable sends TCMU_CMD_ADDED_DEVICE, removal TCMU_CMD_REMOVED_DEVICE; once a daemon has
# announced reply support the kernel waits for its answer, uninterruptibly). If no answer comes
# within 60 s, the wait is failed through block_netlink/reset_netlink, as tcmu-runner itself
# does on restart, so the guest does not hang.
nl_guarded() {
	local p=/sys/module/target_core_user/parameters cpid
	"$@" &
	cpid=$!
	for _ in $(seq 1 600); do
		kill -0 $cpid 2>/dev/null || { wait $cpid; return; }
		usleep 100000
	done
	echo "BENCH-WARN no netlink reply from tcmu-runner to: $*"
	echo 1 >$p/block_netlink; echo 1 >$p/reset_netlink; echo 0 >$p/block_netlink
	wait $cpid
	return 1
}
cfg_write() { echo -n "$2" >"$1"; }

phase_tcmu_runner() { # ROUND
	local U=$CFG/core/user_9/bench_tcmur T=/troot P=/sys/module/target_core_user/parameters rpid r n0 ready=
	if [ -z "$HANDLERS" ]; then echo "BENCH-SKIP tcmu-runner __TCMUR_WHY__"; return; fi
	[ -d $T/usr ] || make_troot $T
	mkimage $B/tcmur.img || { echo "BENCH-SKIP tcmu-runner cannot create the image"; return; }
	rm -rf $B/tcmu-log; mkdir -p $B/tcmu-log
	# The daemon first, as it is deployed: it subscribes to the TCM-USER netlink group, announces
	# reply support (the kernel logs it), then unblocks netlink; only then is the backstore
	# enabled, and the kernel waits for the daemon's TCMU_CMD_ADDED_DEVICE_DONE.
	n0=$(dmesg | grep -c 'tcmu daemon: command reply support')
	chroot $T /usr/bin/tcmu-runner --handler-path /handlers -l $B/tcmu-log >$B/tcmur.out 2>&1 &
	rpid=$!
	for _ in $(seq 1 600); do
		kill -0 $rpid 2>/dev/null || break
		if [ "$(dmesg | grep -c 'tcmu daemon: command reply support')" -gt "$n0" ] && [ "$(cat $P/block_netlink)" = unblocked ]; then
			ready=1; break
		fi
		usleep 100000
	done
	if [ -z "$ready" ]; then
		echo "BENCH-SKIP tcmu-runner did not come up"; cat $B/tcmur.out; tail -20 $B/tcmu-log/tcmu-runner.log
		kill -TERM $rpid 2>/dev/null; wait $rpid; rm -f $B/tcmur.img; return
	fi
	# Same TCMU defaults as ours gets (data area, ring size, hw_max_sectors); the handler opens
	# "$B/tcmur.img" (the part of dev_config after "file/") in its root.
	if ! { mkdir -p $U && echo -n "dev_config=file/$B/tcmur.img" >$U/control && echo -n "dev_size=$SIZE" >$U/control &&
		echo -n "hw_block_size=512" >$U/control && nl_guarded cfg_write $U/enable 1 && has_uio $rpid; }; then
		echo "BENCH-SKIP tcmu-runner did not take the TCMU device"; cat $B/tcmur.out; tail -20 $B/tcmu-log/tcmu-runner.log
		nl_guarded rmdir $U; rmdir $CFG/core/user_9; kill -TERM $rpid 2>/dev/null; wait $rpid; rm -f $B/tcmur.img; return
	fi
	echo "BENCH-CONF tcmu-runner $(grep -m1 'registered' $B/tcmu-log/tcmu-runner.log | sed 's/^.*\] //') dev_config=$(cat $U/attrib/dev_config 2>/dev/null) hw_max_sectors=$(cat $U/attrib/hw_max_sectors) max_data_area_mb=$(cat $U/attrib/max_data_area_mb 2>/dev/null)"
	if loop_lun __TCMUR_WWN__ __TCMUR_INI__ $U && r=$(wait_disk $CFG/loopback/__TCMUR_WWN__ $rpid); then
		measure tcmu-runner $r $rpid $1
	else
		echo "BENCH-SKIP tcmu-runner no host disk appeared"; tail -20 $B/tcmu-log/tcmu-runner.log
	fi
	unloop $CFG/loopback/__TCMUR_WWN__
	nl_guarded rmdir $U
	rmdir $CFG/core/user_9
	kill -TERM $rpid; wait $rpid; echo "BENCH-STOP tcmu-runner exit=$?"
	grep -E '\[(ERROR|WARN)' $B/tcmu-log/tcmu-runner.log | head -5
	rm -f $B/tcmur.img
}

for round in $(seq 1 $ROUNDS); do
	for b in $BACKENDS; do
		echo "BENCH-PHASE $b round=$round"
		case $b in
		ours) phase_ours $round ;;
		kernel-fileio) phase_fileio $round ;;
		tcmu-runner) phase_tcmu_runner $round ;;
		esac
	done
done
echo "BENCH-END"
