#!/bin/bash
# Guest side of bench/guest.ts, which fills in the double-underscore placeholders and hands this
# to the test guest's /init (qemu-scripts/guest-init.sh). It runs as root in a TCG guest with
# three disks of the same size, one per backend, and /mnt/out, a read-write 9p share for fio's
# JSON. Markers, one per line, that the host parses (the host samples the backends' CPU time
# when it sees RUN-BEGIN and RUN-END, so nothing but fio runs between the two):
#   BENCH-INFO k=v ...                           guest facts
#   BENCH-DEV <backend> dev=/dev/X k=v ...       the disk that backend serves, as the guest sees it
#   BENCH-FAIL text                              a disk is missing or wrong: nothing was measured
#   BENCH-WARM <backend> status=N                the unrecorded warm-up ran
#   BENCH-RUN-BEGIN <point> <backend> round=N
#   BENCH-RUN-END <point> <backend> round=N status=N
#   BENCH-END
# fio's JSON goes to /mnt/out/<point>.<backend>.<round>.json.
set -u
O=/mnt/out
SIZE=__SIZE__
RUNTIME=__RUNTIME__
RAMP=__RAMP__
WARMUP=__WARMUP__
ROUNDS=__ROUNDS__
POINTS="__POINTS__"
BACKENDS="__BACKENDS__"
# A fio run that takes this much longer than its ramp + runtime is stuck (a backend gone, a
# lost completion): it is killed and recorded as failed, and the next run goes on. SIGKILL, not
# SIGTERM: fio stops gracefully on SIGTERM and would write a truncated result with status 0.
FIO_TIMEOUT=$((RAMP + RUNTIME + 120))

# The fio arguments of each point, one POINT_<name>="..." line per point.
__POINT_VARS__
point_args() { local v=POINT_$1; echo "${!v}"; }

echo "BENCH-INFO vcpus=$(nproc) kernel=$(uname -r) mem_kib=$(awk '/^MemTotal/ {print $2}' /proc/meminfo) fio=$(fio --version)"

# --- find the three disks ------------------------------------------------------------------
# The two SCSI disks by the INQUIRY product identification the host gave each (SPC-4 §6.6.1;
# sysfs pads it with blanks), the virtio-blk disk by its driver: it is the only one.
declare -A DEV=()
for s in /sys/block/sd*; do
	[ -r "$s/device/model" ] || continue
	case "$(tr -d ' ' <"$s/device/model")" in
	__OURS_PRODUCT__) b=ours ;;
	__QEMU_PRODUCT__) b=qemu-scsi ;;
	*) continue ;;
	esac
	[ -z "${DEV[$b]:-}" ] || { echo "BENCH-FAIL two disks claim to be $b: /dev/${DEV[$b]} and /dev/${s##*/}"; exit 1; }
	DEV[$b]=${s##*/}
done
for s in /sys/block/vd*; do
	[ -e "$s/device/driver" ] || continue
	[ "$(basename "$(readlink -f "$s/device/driver")")" = virtio_blk ] || continue
	[ -z "${DEV[qsd-blk]:-}" ] || { echo "BENCH-FAIL more than one virtio-blk disk: /dev/${DEV[qsd-blk]} and /dev/${s##*/}"; exit 1; }
	DEV[qsd-blk]=${s##*/}
done

missing=
for b in $BACKENDS; do
	d=${DEV[$b]:-}
	if [ -z "$d" ]; then
		missing="$missing $b"
	elif [ "$(blockdev --getsize64 /dev/$d)" != "$SIZE" ]; then
		echo "BENCH-FAIL $b: /dev/$d has $(blockdev --getsize64 /dev/$d) bytes, expected $SIZE"
		exit 1
	fi
done
if [ -n "$missing" ]; then
	echo "BENCH-FAIL no disk found for:$missing"
	echo "block devices: $(ls /sys/block | tr '\n' ' ')"
	lsscsi 2>&1
	exit 1
fi

# Same block-layer settings on all three, whatever each device reports: no I/O scheduler (the
# kernel would give mq-deadline to single-queue devices only) and no entropy sampling per
# completion (sd turns it on for disks that do not report a medium rotation rate).
for b in $BACKENDS; do
	q=/sys/block/${DEV[$b]}/queue
	echo none >$q/scheduler
	echo 0 >$q/add_random
done

for b in $BACKENDS; do
	d=${DEV[$b]} s=/sys/block/${DEV[$b]}
	extra=
	if [ -r $s/device/model ]; then
		hctl=$(basename "$(readlink -f $s/device)")
		extra="hctl=$hctl vendor=$(tr -d ' ' <$s/device/vendor) model=$(tr -d ' ' <$s/device/model) queue_depth=$(cat $s/device/queue_depth) cache=$(tr ' ' _ </sys/class/scsi_disk/$hctl/cache_type)"
	else
		extra="driver=virtio_blk cache=$(tr ' ' _ <$s/cache_type 2>/dev/null || echo ?)"
	fi
	echo "BENCH-DEV $b dev=/dev/$d $extra bytes=$(blockdev --getsize64 /dev/$d)" \
		"logical_block=$(cat $s/queue/logical_block_size) max_sectors_kb=$(cat $s/queue/max_sectors_kb)" \
		"max_segments=$(cat $s/queue/max_segments) hw_queues=$(ls $s/mq | wc -l) nr_requests=$(cat $s/queue/nr_requests)" \
		"scheduler=$(sed 's/.*\[\(.*\)\].*/\1/' $s/queue/scheduler) rotational=$(cat $s/queue/rotational)"
done

# fio_run NAME DEV OUTPUT ARGS...: one time-based libaio direct=1 job on the whole disk.
fio_run() {
	local name=$1 dev=$2 out=$3
	shift 3
	timeout -s KILL $FIO_TIMEOUT fio --name=$name --filename=/dev/$dev --ioengine=libaio --direct=1 "$@" \
		--time_based --norandommap --randrepeat=0 --output-format=json --output=$out >/tmp/fio.err 2>&1
}

# A fresh backend (JIT, thread pools, first touch of the image) warms up on mixed 4 KiB I/O
# first; nothing of it is recorded. Every backend gets the same.
if [ "$WARMUP" -gt 0 ]; then
	for b in $BACKENDS; do
		fio_run warmup ${DEV[$b]} /dev/null --rw=randrw --bs=4k --iodepth=32 --runtime=$WARMUP
		st=$?
		echo "BENCH-WARM $b status=$st"
		[ $st = 0 ] || tail -3 /tmp/fio.err | sed 's/^/  fio: /'
	done
fi

# Interleaved rounds: each round runs the point once on every disk; the order rotates by one
# per round, so each backend takes each place in the sequence equally often and slow drift
# (host load, page cache, TCG code cache) does not favour one of them.
read -r -a ORDER <<<"$BACKENDS"
N=${#ORDER[@]}
for p in $POINTS; do
	for round in $(seq 1 $ROUNDS); do
		for ((i = 0; i < N; i++)); do
			b=${ORDER[$(((i + round - 1) % N))]}
			echo "BENCH-RUN-BEGIN $p $b round=$round"
			# shellcheck disable=SC2046 # the point's arguments split on purpose
			fio_run $p ${DEV[$b]} /tmp/fio.json $(point_args $p) --runtime=$RUNTIME --ramp_time=$RAMP
			st=$?
			echo "BENCH-RUN-END $p $b round=$round status=$st"
			[ $st = 0 ] || tail -5 /tmp/fio.err | sed 's/^/  fio: /'
			cp /tmp/fio.json "$O/$p.$b.$round.json" 2>/dev/null
			rm -f /tmp/fio.json
		done
	done
done
echo "BENCH-END"
