#!/bin/sh
# /init of the vhost-scsi-ts test guest (busybox ash, PID 1 in the initramfs).
#
# Boots to a usable system, runs one script, prints markers the host parses,
# and powers off. Kernel command line switches (read from /proc/cmdline, since
# the kernel keeps dotted parameters out of init's environment):
#   vst.shell=1        after the script (if any), a shell on the console
#   vst.run=PATH       run PATH (e.g. on a 9p share) instead of the fw_cfg script
#   vst.modules=a,b    load these instead of the HBA/disk set (with dependencies)
#   vst.lio=1          also load configfs/target_core_user/tcm_loop, mount configfs
#   vst.scan=T1,T2|all SCSI target ids to scan on each HBA (default 0)
#   vst.settle=SECS    how long to wait for SCSI disks to bind (default 10)
#   vst.tty=ROWSxCOLS  terminal size for the interactive shell
#   vst.9p=TAG:CACHE[:ro],..  9p cache mode per tag (default mmap), read-only
# Markers (each on a line of its own; the host's harness keys on them):
#   <<<VST-BOOTED uptime=S kernel=R>>>
#   <<<VST-SCRIPT-BEGIN>>>
#   <<<VST-SCRIPT-END status=N>>>
#   <<<VST-POWEROFF>>>

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=linux

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs may have no /dev/console node (built without root), in which
# case the kernel started us with no stdio at all: attach to the console now.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /run /tmp /mnt /root
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
hostname vst-guest

cmdline=$(cat /proc/cmdline)
arg() { # arg NAME -> value of NAME=value on the kernel command line
	for w in $cmdline; do
		case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
	done
	return 1
}

# Modules. Each modprobe costs real time under TCG, so: the LIO/TCMU stack
# only on request (vst.lio=1), in the background while the HBAs come up; 9p only
# when there is a 9p device; checksum helpers are pulled in on demand by the
# kernel (request_module) when something needs them. Upper drivers (sd, sr,
# sg) go in before the HBAs so they bind as soon as the scan finds a LUN.
lio_modules=
[ "$(arg vst.lio)" = 1 ] && lio_modules="configfs uio target_core_mod target_core_user tcm_loop"
main_modules="sd_mod sr_mod sg virtio_pci virtio_scsi virtio_blk qemu_fw_cfg"
if v=$(arg vst.modules); then main_modules=$(echo "$v" | tr ',' ' '); fi
lio_pid=
if [ -n "$lio_modules" ]; then
	mkdir -p /etc/target # target_core_mod's db_root; silences its boot warning
	# shellcheck disable=SC2086 # module lists split on purpose
	( modprobe -a $lio_modules && mount -t configfs configfs /sys/kernel/config ) &
	lio_pid=$!
fi
# shellcheck disable=SC2086
[ -n "$main_modules" ] && modprobe -a $main_modules
# virtio device id 9 is 9P transport (virtio 1.2 §5 device ids).
for d in /sys/bus/virtio/devices/*; do
	[ "$(cat "$d/device" 2>/dev/null)" = 0x0009 ] && { modprobe -a 9pnet_virtio 9p; break; }
done

# SCSI scan. The kernel runs with scsi_mod.scan=manual: a full scan probes all
# 256 target ids QEMU's virtio-scsi config advertises (max_target 255), about
# 9 s under TCG. Scan only the targets named by vst.scan (default 0; "all"
# scans everything) on every host; hot-plug events and tcm_loop add devices
# directly and are not affected.
scan=$(arg vst.scan) || scan=0
for h in /sys/class/scsi_host/host*; do
	[ -w "$h/scan" ] || continue
	case "$(cat "$h/proc_name" 2>/dev/null)" in tcm_loopback) continue ;; esac
	if [ "$scan" = all ]; then
		echo "- - -" >"$h/scan"
	else
		for t in $(echo "$scan" | tr ',' ' '); do echo "0 $t -" >"$h/scan"; done
	fi
done

# sd binds asynchronously (PROBE_PREFER_ASYNCHRONOUS): wait until every SCSI
# device of a type that sd/sr drive has its block device, so the script sees
# /dev/sdX at once.
settle=$(arg vst.settle) || settle=10
deadline=$(( $(cut -d. -f1 /proc/uptime) + settle ))
while :; do
	pending=0
	for d in /sys/bus/scsi/devices/*:*:*:*; do
		[ -e "$d/type" ] || continue
		case "$(cat "$d/type")" in
		0|5|7|14) [ -d "$d/block" ] || pending=1 ;;
		esac
	done
	[ $pending = 0 ] && break
	[ "$(cut -d. -f1 /proc/uptime)" -ge "$deadline" ] && { echo "vst-init: SCSI disks still binding after ${settle}s" >&2; break; }
	usleep 20000
done

# Every 9p device is mounted at /mnt/<mount_tag>.
ninep=
if v=$(arg vst.9p); then ninep=$(echo "$v" | tr ',' ' '); fi
for d in /sys/bus/virtio/drivers/9pnet_virtio/virtio*; do
	[ -r "$d/mount_tag" ] || continue
	tag=$(tr -d '\000' <"$d/mount_tag")
	cache=mmap ro=
	for m in $ninep; do # TAG:CACHE[:ro]
		[ "${m%%:*}" = "$tag" ] || continue
		m=${m#*:}
		cache=${m%%:*}
		[ "${m#*:}" = ro ] && ro=,ro
	done
	mkdir -p "/mnt/$tag"
	mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,cache=$cache$ro" "$tag" "/mnt/$tag" ||
		echo "vst-init: mounting 9p tag $tag failed" >&2
done

[ -n "$lio_pid" ] && wait "$lio_pid"
echo "<<<VST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)>>>"

script=
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/vhost-scsi-ts/script/raw
if run=$(arg vst.run); then
	script=$run
elif [ -r "$fwcfg" ]; then
	cp "$fwcfg" /run/vst-script
	script=/run/vst-script
fi

runner="sh"
[ -x /usr/bin/bash ] && runner=bash
if [ -n "$script" ]; then
	cwd=/
	[ -d /mnt/share ] && cwd=/mnt/share
	echo "<<<VST-SCRIPT-BEGIN>>>"
	# bash, not busybox ash: ash runs its applets ahead of PATH (lsscsi!).
	(cd "$cwd" && exec $runner "$script")
	status=$?
	# Flush the console line the script may have left open, then the marker.
	echo
	echo "<<<VST-SCRIPT-END status=$status>>>"
fi

if [ "$(arg vst.shell)" = 1 ]; then
	if size=$(arg vst.tty); then stty -F /dev/ttyS0 rows "${size%x*}" cols "${size#*x}" 2>/dev/null; fi
	echo "vst-guest: shell on the serial console. 'exit' (or Ctrl-D) powers off; Ctrl-A X kills QEMU."
	setsid cttyhack $runner -l
fi

sync
echo "<<<VST-POWEROFF>>>"
poweroff -f
# Only reached if the power-off request itself failed.
sleep 1
echo "vst-init: poweroff failed" >&2
exit 1
