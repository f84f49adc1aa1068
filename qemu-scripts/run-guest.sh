#!/usr/bin/env bash
# Boot the vhost-scsi-ts test guest in QEMU (see --help).
# shellcheck disable=SC2054 # commas inside words are QEMU option syntax
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<'EOF'
Usage: qemu-scripts/run-guest.sh [options] [-- extra QEMU arguments]

Boots Debian's 6.1 kernel with the test initramfs (built and cached by
build-guest.sh). /init loads the virtio/SCSI/9p modules, scans the SCSI
hosts, mounts every 9p share at /mnt/<tag>, runs the --script with bash, and
powers off (or gives a shell). Tools: busybox, bash, fio, sg3-utils, lsscsi.

Devices (each may be repeated):
  --vhost-user-scsi SOCK[,KEY=VAL...]
        vhost-user-scsi-pci on the back-end listening at SOCK. Keys:
        num_queues (default 1), virtqueue_size, reconnect (ms, default 1000,
        0 = off); any other KEY=VAL is passed to the device (e.g. hotplug=on,
        param_change=off, max_sectors=N).
  --vhost-user-blk SOCK[,num-queues=N,...]   vhost-user-blk-pci (comparison)
  --scsi-hd IMG[,format=raw|qcow2][,cache=MODE]
        QEMU's own virtio-scsi with a scsi-hd per image (comparison/bench);
        images become LUN 0, 1, ... of one target.
  --share DIR[,tag=TAG][,ro]
        9p share mounted at /mnt/TAG (tags: share, share2, ... by default).
        A script runs with /mnt/share as its working directory when present.

Guest:
  --script FILE      shell script /init runs (delivered through fw_cfg);
                     output goes to the serial console between markers
  --run PATH         run PATH inside the guest instead (e.g. /mnt/share/t.sh)
  --shell            a shell on the serial console (after --script, if any);
                     'exit' powers off, Ctrl-A X kills QEMU, Ctrl-A C monitor
  --mem SIZE         guest RAM, e.g. 1G or 2048M (default 1G); memfd, shared
  --smp N|auto       vCPUs (default auto: the largest num_queues asked for, at
                     least 1; Linux's virtio_scsi uses min(num_queues, CPUs)
                     request queues, and every extra vCPU slows TCG boot)
  --lio              load configfs, target_core_user, tcm_loop and mount
                     configfs at boot (a script may also modprobe them)
  --append ARGS      extra kernel command line
  --scan IDS         SCSI target ids /init scans on each HBA: comma list or
                     'all' (default 0; all 256 ids take ~9 s under TCG)
  --verbose          kernel messages on the console (drops 'quiet')

QEMU:
  --accel tcg|kvm|auto   default $VHOST_SCSI_ACCEL or auto: KVM only when the
                     CPU has vmx/svm, /dev/kvm is usable and the host KVM is
                     not PVM (kvm_pvm), whose guests hang with stock kernels
  --qmp SOCK         QMP server on a unix socket (no wait)
  --serial-file PATH console to a file instead of stdio
  --kernel K --initrd I  use these instead of build-guest.sh's
  --qemu BIN         QEMU binary (default $QEMU or qemu-system-x86_64)
  --dry-run          print the command line and exit
The QEMU command line is printed to stderr before QEMU starts (exec: the
script's PID becomes QEMU's).
EOF
}

die() { echo "run-guest: error: $*" >&2; exit 2; }

QEMU=${QEMU:-qemu-system-x86_64}
ACCEL=${VHOST_SCSI_ACCEL:-auto}
MEM=1G
SMP=auto
LIO=0
KERNEL=
INITRD=
SCRIPT=
RUN=
SHELL_MODE=0
VERBOSE=0
SCAN=0
QMP=
SERIAL_FILE=
DRY_RUN=0
APPEND_EXTRA=
VUS=()
VUB=()
HDS=()
SHARES=()
EXTRA=()

need() { [[ $# -ge 2 ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	--vhost-user-scsi) need "$@"; VUS+=("$2"); shift 2 ;;
	--vhost-user-blk) need "$@"; VUB+=("$2"); shift 2 ;;
	--scsi-hd) need "$@"; HDS+=("$2"); shift 2 ;;
	--share) need "$@"; SHARES+=("$2"); shift 2 ;;
	--script) need "$@"; SCRIPT=$2; shift 2 ;;
	--run) need "$@"; RUN=$2; shift 2 ;;
	--shell) SHELL_MODE=1; shift ;;
	--mem) need "$@"; MEM=$2; shift 2 ;;
	--smp) need "$@"; SMP=$2; shift 2 ;;
	--append) need "$@"; APPEND_EXTRA+=" $2"; shift 2 ;;
	--verbose) VERBOSE=1; shift ;;
	--lio) LIO=1; shift ;;
	--scan) need "$@"; SCAN=$2; shift 2 ;;
	--accel) need "$@"; ACCEL=$2; shift 2 ;;
	--qmp) need "$@"; QMP=$2; shift 2 ;;
	--serial-file) need "$@"; SERIAL_FILE=$2; shift 2 ;;
	--kernel) need "$@"; KERNEL=$2; shift 2 ;;
	--initrd) need "$@"; INITRD=$2; shift 2 ;;
	--qemu) need "$@"; QEMU=$2; shift 2 ;;
	--dry-run) DRY_RUN=1; shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; EXTRA+=("$@"); break ;;
	*) die "unknown option '$1' (try --help)" ;;
	esac
done

command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install -t bookworm-backports qemu-system-x86)"

# --- memory size in MiB --------------------------------------------------------
case "$MEM" in
*[Gg]) MEM_MIB=$(( ${MEM%[Gg]} * 1024 )) ;;
*[Mm]) MEM_MIB=${MEM%[Mm]} ;;
*[!0-9]*|'') die "--mem '$MEM': use e.g. 1G or 512M" ;;
*) MEM_MIB=$MEM ;;
esac
[[ $MEM_MIB =~ ^[0-9]+$ && $MEM_MIB -ge 128 ]] || die "--mem '$MEM': at least 128M"
[[ $SMP = auto || $SMP =~ ^[1-9][0-9]*$ ]] || die "--smp '$SMP': a positive integer or auto"
[[ $SCAN = all || $SCAN =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--scan '$SCAN': ids like 0,1 or 'all'"

# --- accelerator -----------------------------------------------------------------
kvm_usable() {
	[[ -r /dev/kvm && -w /dev/kvm ]] || return 1
	grep -qwE 'vmx|svm' /proc/cpuinfo || return 1
	# PVM (kvm_pvm) exposes /dev/kvm without hardware virtualisation; stock
	# guest kernels hang on it.
	[[ ! -e /sys/module/kvm_pvm ]] || return 1
	return 0
}
case "$ACCEL" in
auto) if kvm_usable; then ACCEL=kvm; else ACCEL=tcg; fi ;;
tcg|kvm) ;;
*) die "--accel '$ACCEL': tcg, kvm or auto" ;;
esac
if [[ $ACCEL = kvm ]]; then
	ACCEL_ARGS=(-accel kvm -cpu host)
else
	# 'max' gives the guest SSE4.2/PCLMUL, so crc32c-intel and
	# crct10dif-pclmul load as on real hardware.
	ACCEL_ARGS=(-accel tcg,thread=multi -cpu max)
fi

# --- kernel and initramfs ----------------------------------------------------------
if [[ -z $KERNEL || -z $INITRD ]]; then
	out=$("$HERE/build-guest.sh") || die "build-guest.sh failed"
	[[ -n $KERNEL ]] || KERNEL=$(sed -n 's/^KERNEL=//p' <<<"$out")
	[[ -n $INITRD ]] || INITRD=$(sed -n 's/^INITRD=//p' <<<"$out")
fi
[[ -f $KERNEL ]] || die "kernel '$KERNEL' not found"
[[ -f $INITRD ]] || die "initramfs '$INITRD' not found"

# QEMU >= 9 spells the chardev reconnect delay in ms; older ones in seconds.
QEMU_MAJOR=$("$QEMU" --version | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
QEMU_MAJOR=${QEMU_MAJOR:-0}
reconnect_opt() { # reconnect_opt MS -> ",reconnect-ms=MS" or ",reconnect=SECS"
	local ms=$1
	[[ $ms =~ ^[0-9]+$ ]] || die "reconnect '$ms': milliseconds"
	((ms > 0)) || return 0
	if ((QEMU_MAJOR >= 9)); then
		echo ",reconnect-ms=$ms"
	else
		echo ",reconnect=$(( (ms + 999) / 1000 ))"
	fi
}
no_comma() { [[ $1 != *,* ]] || die "'$1': QEMU option values cannot contain ','"; }

ARGS=(
	"$QEMU" -name vst-guest -nodefaults -no-user-config
	-machine q35 "${ACCEL_ARGS[@]}"
	# vhost-user back-ends map guest RAM: it must be a shareable memfd.
	-m "${MEM_MIB}M"
	-object "memory-backend-memfd,id=mem,size=${MEM_MIB}M,share=on" -numa node,memdev=mem
	-kernel "$KERNEL" -initrd "$INITRD"
	-no-reboot
)

# --- vhost-user-scsi -------------------------------------------------------------------
i=0
MAX_NQ=1
for spec in "${VUS[@]}"; do
	IFS=, read -r -a parts <<<"$spec"
	sock=${parts[0]}
	[[ -n $sock ]] || die "--vhost-user-scsi needs a socket path"
	nq=1; reconnect=1000; dev_extra=""
	for kv in "${parts[@]:1}"; do
		case "$kv" in
		num_queues=*) nq=${kv#*=} ;;
		reconnect=*) reconnect=${kv#*=} ;;
		*=*) dev_extra+=",$kv" ;;
		*) die "--vhost-user-scsi: '$kv' is not KEY=VAL" ;;
		esac
	done
	[[ $nq =~ ^[1-9][0-9]*$ ]] || die "--vhost-user-scsi: num_queues '$nq'"
	((nq > MAX_NQ)) && MAX_NQ=$nq
	ARGS+=(-chardev "socket,id=vus$i,path=$sock$(reconnect_opt "$reconnect")"
		-device "vhost-user-scsi-pci,id=vus${i}dev,chardev=vus$i,num_queues=$nq$dev_extra")
	i=$((i + 1))
done

# --- vhost-user-blk --------------------------------------------------------------------
i=0
for spec in "${VUB[@]}"; do
	IFS=, read -r -a parts <<<"$spec"
	sock=${parts[0]}
	reconnect=1000; dev_extra=""
	for kv in "${parts[@]:1}"; do
		case "$kv" in
		reconnect=*) reconnect=${kv#*=} ;;
		*=*) dev_extra+=",$kv" ;;
		*) die "--vhost-user-blk: '$kv' is not KEY=VAL" ;;
		esac
	done
	ARGS+=(-chardev "socket,id=vub$i,path=$sock$(reconnect_opt "$reconnect")"
		-device "vhost-user-blk-pci,id=vub${i}dev,chardev=vub$i$dev_extra")
	i=$((i + 1))
done

# --- QEMU's own virtio-scsi + scsi-hd ----------------------------------------------
if ((${#HDS[@]})); then
	ARGS+=(-device virtio-scsi-pci,id=qscsi0)
	lun=0
	for spec in "${HDS[@]}"; do
		IFS=, read -r -a parts <<<"$spec"
		img=${parts[0]}
		[[ -e $img ]] || die "--scsi-hd: '$img' not found"
		fmt=raw; [[ $img == *.qcow2 ]] && fmt=qcow2
		cache=writeback
		for kv in "${parts[@]:1}"; do
			case "$kv" in
			format=*) fmt=${kv#*=} ;;
			cache=*) cache=${kv#*=} ;;
			*) die "--scsi-hd: unknown option '$kv'" ;;
			esac
		done
		ARGS+=(-drive "file=$img,if=none,id=qhd$lun,format=$fmt,cache=$cache"
			-device "scsi-hd,drive=qhd$lun,bus=qscsi0.0,channel=0,scsi-id=0,lun=$lun")
		lun=$((lun + 1))
	done
fi

# --- 9p shares -------------------------------------------------------------------------
i=0
NINEP_MODES=()
for spec in "${SHARES[@]}"; do
	IFS=, read -r -a parts <<<"$spec"
	dir=${parts[0]}
	[[ -d $dir ]] || die "--share: '$dir' is not a directory"
	tag=share; ((i == 0)) || tag=share$((i + 1))
	ro=""
	for kv in "${parts[@]:1}"; do
		case "$kv" in
		tag=*) tag=${kv#*=} ;;
		ro) ro=",readonly=on" ;;
		*) die "--share: unknown option '$kv'" ;;
		esac
	done
	[[ $tag =~ ^[A-Za-z0-9_-]{1,31}$ ]] || die "--share: tag '$tag' (letters, digits, _ -, at most 31)"
	# A read-only tree (e.g. the host's /usr) can be cached freely in the guest.
	[[ -n $ro ]] && NINEP_MODES+=("$tag:loose:ro")
	ARGS+=(-fsdev "local,id=fsdev$i,path=$dir,security_model=none$ro"
		-device "virtio-9p-pci,fsdev=fsdev$i,mount_tag=$tag")
	i=$((i + 1))
done

[[ $SMP = auto ]] && SMP=$MAX_NQ
ARGS+=(-smp "$SMP")

# --- script, console, kernel command line -------------------------------------------
if [[ -n $SCRIPT ]]; then
	[[ -f $SCRIPT ]] || die "--script: '$SCRIPT' not found"
	no_comma "$SCRIPT"
	ARGS+=(-fw_cfg "name=opt/vhost-scsi-ts/script,file=$SCRIPT")
fi
[[ -n $QMP ]] && ARGS+=(-qmp "unix:$QMP,server=on,wait=off")

# scsi_mod.scan=manual: /init scans only the target ids in vst.scan (a full
# scan of the 256 ids virtio-scsi advertises takes ~9 s under TCG). mitigations=off: nothing to protect in
# a throw-away guest, and TCG runs the mitigation code slowly.
APPEND="console=ttyS0 panic=-1 scsi_mod.scan=manual vst.scan=$SCAN mitigations=off random.trust_cpu=on"
((VERBOSE)) || APPEND+=" quiet"
((LIO)) && APPEND+=" vst.lio=1"
[[ -n $RUN ]] && APPEND+=" vst.run=$RUN"
((${#NINEP_MODES[@]})) && APPEND+=" vst.9p=$(IFS=,; echo "${NINEP_MODES[*]}")"
if ((SHELL_MODE)); then
	APPEND+=" vst.shell=1"
	if [[ -t 0 ]] && size=$(stty size 2>/dev/null); then
		APPEND+=" vst.tty=${size% *}x${size#* }"
	fi
fi
APPEND+=$APPEND_EXTRA
ARGS+=(-append "$APPEND")

if [[ -n $SERIAL_FILE ]]; then
	ARGS+=(-display none -serial "file:$SERIAL_FILE" -monitor none)
elif ((SHELL_MODE)); then
	# Console and monitor multiplexed on the terminal: Ctrl-C reaches the guest
	# shell; Ctrl-A X quits, Ctrl-A C switches to the monitor.
	ARGS+=(-display none -chardev stdio,id=con,mux=on,signal=off -serial chardev:con -mon chardev=con,mode=readline)
else
	ARGS+=(-display none -chardev stdio,id=con -serial chardev:con -monitor none)
fi
ARGS+=("${EXTRA[@]}")

# Printed so a person can rerun or tweak it: words quoted only where the shell needs it.
quote() {
	if [[ $1 =~ ^[A-Za-z0-9_./,:=@%+-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
{
	printf 'run-guest:'
	for a in "${ARGS[@]}"; do printf ' '; quote "$a"; done
	printf '\n'
} >&2
((DRY_RUN)) && exit 0
exec "${ARGS[@]}"
