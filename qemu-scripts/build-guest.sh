#!/usr/bin/env bash
# Build (or reuse) the test guest: Debian bookworm's kernel and an initramfs
# with busybox, bash, fio, sg3-utils, lsscsi, the kernel modules the tests need and
# qemu-scripts/guest-init.sh as /init.
#
# Usage: qemu-scripts/build-guest.sh [--force] [--refresh-kernel]
#   --force           rebuild the initramfs even if the cached one is current
#   --refresh-kernel  re-resolve linux-image-amd64 and download its kernel again
# Output: the last two lines on stdout are KERNEL=<path> and INITRD=<path>;
# progress goes to stderr.
#
# Cache: $VHOST_SCSI_GUEST_CACHE (default <repo>/.cache/guest). The kernel .deb
# is kept there and reused until --refresh-kernel; the initramfs is rebuilt
# when this script, guest-init.sh, the kernel or any packaged tool changes.
# Host needs: apt-get + dpkg (kernel), xz-utils (vmlinux), cpio, bash,
# busybox-static, fio, sg3-utils, lsscsi.
# VHOST_SCSI_GUEST_KERNEL_PKG=linux-image-X overrides the kernel package;
# VHOST_SCSI_GUEST_EXTRA_MODULES="a b" adds modules.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${VHOST_SCSI_GUEST_CACHE:-$REPO/.cache/guest}
FORCE=0
REFRESH_KERNEL=0
for a in "$@"; do
	case "$a" in
	--force) FORCE=1 ;;
	--refresh-kernel) REFRESH_KERNEL=1; FORCE=1 ;;
	-h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "build-guest: unknown argument '$a' (try --help)" >&2; exit 2 ;;
	esac
done

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

# Modules the tests use; their dependencies come from modules.dep. What is
# built into Debian's 6.1 kernel (devtmpfs, tmpfs, 8250 console, PCI, bsg,
# ext4 is a module but unneeded) needs no file.
ROOT_MODULES=(
	virtio_pci virtio_scsi virtio_blk qemu_fw_cfg
	scsi_mod sd_mod sr_mod sg
	# ALUA device handler: the SCSI layer loads it (request_module) for a LUN reporting TPGS
	scsi_dh_alua
	9p 9pnet_virtio netfs
	configfs target_core_mod target_core_user tcm_loop uio
	# target_core_mod asks for these when the first backstore is made
	target_core_iblock target_core_file target_core_pscsi
	crc32c_generic crc32c_intel libcrc32c crct10dif_generic crct10dif_pclmul
)
# shellcheck disable=SC2206
ROOT_MODULES+=(${VHOST_SCSI_GUEST_EXTRA_MODULES:-})

# Tools copied from the host, with the Debian package that provides each.
declare -A TOOL_PKG=([busybox]=busybox-static [fio]=fio [lsscsi]=lsscsi [sg_inq]=sg3-utils [cpio]=cpio [bash]=bash [xz]=xz-utils)

mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.lock"
flock 9 # concurrent test files share one build

for t in busybox fio lsscsi sg_inq cpio bash xz; do
	command -v "$t" >/dev/null || die "'$t' not found: apt-get install ${TOOL_PKG[$t]}"
done
command -v dpkg >/dev/null || die "dpkg not found"

# --- kernel package -----------------------------------------------------------
resolve_kernel_pkg() {
	if [[ -n ${VHOST_SCSI_GUEST_KERNEL_PKG:-} ]]; then
		echo "$VHOST_SCSI_GUEST_KERNEL_PKG"
		return
	fi
	local pkg
	# linux-image-amd64 is a meta package; its candidate's dependency names the
	# versioned image (e.g. linux-image-6.1.0-56-amd64). The candidate is
	# bookworm's (backports has a lower pin priority).
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	if [[ -z $pkg ]]; then
		log "linux-image-amd64 unknown to apt: running apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	fi
	[[ -n $pkg ]] || die "cannot resolve linux-image-amd64 to a versioned kernel package"
	echo "$pkg"
}

kernel_deb() { # prints the cached kernel .deb, downloading it if needed
	local deb pkg
	if [[ $REFRESH_KERNEL = 0 ]]; then
		deb=$(find "$CACHE/debs" -maxdepth 1 -name "${VHOST_SCSI_GUEST_KERNEL_PKG:-linux-image-*}_*.deb" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
		if [[ -n $deb ]]; then echo "$deb"; return; fi
	fi
	pkg=$(resolve_kernel_pkg)
	log "downloading $pkg"
	rm -f "$CACHE"/debs/linux-image-*.deb "$CACHE"/debs/*.partial
	# apt drops privileges to _apt for downloads; a private dir it can write avoids
	# the "download is performed unsandboxed" warning and works as non-root too.
	local tmp
	tmp=$(mktemp -d "$CACHE/debs/dl.XXXXXX")
	chmod 777 "$tmp"
	if ! (cd "$tmp" && apt-get download -q "$pkg" >&2); then
		log "apt-get download $pkg failed: running apt-get update and retrying"
		apt-get update -qq >&2 || true
		(cd "$tmp" && apt-get download -q "$pkg" >&2) || { rm -rf "$tmp"; die "cannot download $pkg"; }
	fi
	mv "$tmp"/*.deb "$CACHE/debs/"
	rmdir "$tmp"
	find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -1
}

DEB=$(kernel_deb)
[[ -f $DEB ]] || die "no kernel package in $CACHE/debs"

# --- tool list -----------------------------------------------------------------
is_elf() { local m; IFS= LC_ALL=C read -r -N 4 m <"$1" 2>/dev/null; [[ $m == $'\x7fELF' ]]; }

BINARIES=()
add_bin() { local p; p=$(command -v "$1") && BINARIES+=("$(readlink -f "$p")"); }
add_bin fio
add_bin lsscsi
# Scripts run under bash: Debian's busybox ash is built with SH_STANDALONE, so
# it runs its own applets ahead of PATH (busybox 'lsscsi' instead of the real one).
add_bin bash
# Everything sg3-utils ships: its programs, and its bash scripts
# (rescan-scsi-bus.sh, scsi_logging_level, ...), which busybox tools serve.
if dpkg -L sg3-utils >/dev/null 2>&1; then
	mapfile -t SG < <(dpkg -L sg3-utils | grep -E '^/usr/s?bin/')
else
	mapfile -t SG < <(ls -d /usr/bin/sg_* /usr/bin/sginfo /usr/bin/sgp_dd /usr/bin/sgm_dd 2>/dev/null)
fi
SCRIPTS=()
for f in "${SG[@]}"; do
	[[ -f $f ]] || continue
	if is_elf "$f"; then BINARIES+=("$f"); else SCRIPTS+=("$f"); fi
done
BUSYBOX=$(readlink -f "$(command -v busybox)")

# --- cache key -----------------------------------------------------------------
KEY=$(
	{
		cat "${BASH_SOURCE[0]}" "$HERE/guest-init.sh"
		echo "deb=$(basename "$DEB") $(stat -c %s "$DEB")"
		echo "modules=${ROOT_MODULES[*]}"
		stat -L -c '%n %s %Y' "$BUSYBOX" "${BINARIES[@]}" "${SCRIPTS[@]}"
		dpkg-query -W -f '${Package} ${Version}\n' busybox-static fio sg3-utils lsscsi libc6 2>/dev/null || true
	} | sha256sum | cut -d' ' -f1
)
KERNEL_OUT=$CACHE/vmlinux
[[ -f $KERNEL_OUT ]] || KERNEL_OUT=$CACHE/vmlinuz
INITRD_OUT=$CACHE/initrd.img
if [[ $FORCE = 0 && -f $KERNEL_OUT && -f $INITRD_OUT && -f $CACHE/build.key && $(cat "$CACHE/build.key") == "$KEY" ]]; then
	echo "KERNEL=$KERNEL_OUT"
	echo "INITRD=$INITRD_OUT"
	exit 0
fi

log "building the guest from $(basename "$DEB")"
WORK=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
dpkg -x "$DEB" "$WORK/kpkg"
KVER=$(find "$WORK/kpkg/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -1)
[[ -n $KVER && -f $WORK/kpkg/boot/vmlinuz-$KVER ]] || die "$(basename "$DEB") has no vmlinuz/modules"
KTREE=$WORK/kpkg/lib/modules/$KVER

# --- modules: the closure of ROOT_MODULES over their 'depends' ----------------
# Read from each module's own .modinfo, so neither the host's kmod nor a depmod
# of the whole 4000-module tree is needed.
declare -A MOD_PATH=()
while IFS= read -r f; do
	n=${f##*/}
	n=${n%%.ko*}
	MOD_PATH[${n//-/_}]=$f
done < <(find "$KTREE/kernel" -name '*.ko*')
declare -A BUILTIN=()
if [[ -f $KTREE/modules.builtin ]]; then
	while IFS= read -r f; do
		n=${f##*/}; n=${n%%.ko*}; BUILTIN[${n//-/_}]=1
	done <"$KTREE/modules.builtin"
fi
modinfo_depends() { # the depends= string of a module's .modinfo (NUL-separated key=value)
	tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -1
}
declare -A WANT=()
queue=("${ROOT_MODULES[@]}")
while ((${#queue[@]})); do
	m=${queue[0]//-/_}
	queue=("${queue[@]:1}")
	[[ -n $m && -z ${WANT[$m]:-} ]] || continue
	if [[ -z ${MOD_PATH[$m]:-} ]]; then
		[[ -n ${BUILTIN[$m]:-} ]] && continue
		die "module $m is neither a module nor built into $KVER"
	fi
	WANT[$m]=1
	for d in $(modinfo_depends "${MOD_PATH[$m]}" | tr ',' ' '); do queue+=("$d"); done
done

# --- stage the root ------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,run,tmp,mnt,root,etc}
ln -s usr/bin "$R/bin"
ln -s usr/sbin "$R/sbin"
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
chmod 1777 "$R/tmp"
# A console node lets the kernel give /init its stdio; without root, /init
# attaches to /dev/console itself after mounting devtmpfs.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true

cp "$BUSYBOX" "$R/usr/bin/busybox"
declare -A LIBS=()
# busybox-static needs none; a dynamic busybox brings its libraries along.
while read -r lib; do LIBS[$lib]=1; done < <(ldd "$BUSYBOX" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
# One link per applet, at the path busybox wants (bin/sh, sbin/modprobe, ...).
busybox --list-full | while IFS= read -r p; do
	[[ $p == */* ]] || p=usr/bin/$p
	[[ -e $R/$p || -L $R/$p ]] && continue
	mkdir -p "$(dirname "$R/$p")"
	ln -s /usr/bin/busybox "$R/$p"
done

for b in "${BINARIES[@]}"; do
	dest=$R/usr/bin/$(basename "$b")
	rm -f "$dest" # a busybox applet of the same name (lsscsi) yields to the real tool
	cp "$b" "$dest"
	while read -r lib; do LIBS[$lib]=1; done < <(ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
for f in "${SCRIPTS[@]}"; do
	rm -f "$R/usr/bin/${f##*/}"
	cp "$f" "$R/usr/bin/${f##*/}"
done
# ld.so, libc and friends are reached through the paths ldd printed (the guest
# has the same merged-/usr layout), resolved to the real files.
for lib in "${!LIBS[@]}"; do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done

mkdir -p "$R/lib/modules/$KVER"
for m in "${!WANT[@]}"; do
	rel=${MOD_PATH[$m]#"$KTREE/"}
	mkdir -p "$(dirname "$R/lib/modules/$KVER/$rel")"
	cp "${MOD_PATH[$m]}" "$R/lib/modules/$KVER/$rel"
done
cp "$KTREE"/modules.builtin* "$KTREE"/modules.order "$R/lib/modules/$KVER/" 2>/dev/null || true
if command -v depmod >/dev/null 2>&1; then
	depmod -b "$R" "$KVER"
else
	busybox depmod -b "$R" "$KVER"
fi

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
tty:x:5:
disk:x:6:
EOF
# shellcheck disable=SC2016 # expanded by the guest's shell at each prompt
echo 'PS1='"'"'vst-guest:$PWD# '"'" >"$R/etc/profile"
install -m 755 "$HERE/guest-init.sh" "$R/init"

# --- pack ----------------------------------------------------------------------
# Uncompressed: under TCG the guest inflates gzip at ~20 MB/s, and fio's
# libraries (librbd, libicudata, ...) make the archive ~90 MB. The kernel
# unpacks a plain cpio in the background while it initialises.
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$WORK/initrd.img"

# The kernel: bzImage decompression (xz) runs in the guest before the kernel's
# clock starts and takes ~4 s under TCG. Debian builds with CONFIG_PVH, so
# QEMU can load the ELF vmlinux directly through its PVH entry point: unpack it
# here once. Falls back to the bzImage if no payload is found.
BZ=$WORK/kpkg/boot/vmlinuz-$KVER
extract_vmlinux() { # extract_vmlinux MAGIC_REGEX DECOMPRESSOR...
	local magic=$1 off
	shift
	for off in $(LC_ALL=C grep -obUaP "$magic" "$BZ" | cut -d: -f1); do
		# The payload is followed by the rest of the image: the decompressor
		# complains about trailing data after writing the whole kernel.
		tail -c +$((off + 1)) "$BZ" | "$@" >"$WORK/vmlinux" 2>/dev/null || true
		if [[ $(head -c 4 "$WORK/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]]; then return 0; fi
	done
	return 1
}
if extract_vmlinux '\xfd7zXZ\x00' xz -dcq || extract_vmlinux '\x28\xb5\x2f\xfd' zstd -dcq ||
	extract_vmlinux '\x1f\x8b\x08' gzip -dcq; then
	KERNEL_OUT=$CACHE/vmlinux
	mv -f "$WORK/vmlinux" "$KERNEL_OUT"
	rm -f "$CACHE/vmlinuz"
else
	log "no ELF payload found in the bzImage: booting it as is"
	KERNEL_OUT=$CACHE/vmlinuz
	cp "$BZ" "$WORK/vmlinuz"
	mv -f "$WORK/vmlinuz" "$KERNEL_OUT"
	rm -f "$CACHE/vmlinux"
fi
mv -f "$WORK/initrd.img" "$INITRD_OUT"
echo "$KEY" >"$CACHE/build.key"
echo "$KVER" >"$CACHE/kernel.release"
log "kernel $KVER, ${#WANT[@]} modules, ${#BINARIES[@]} programs + ${#SCRIPTS[@]} scripts, initramfs $(du -h "$INITRD_OUT" | cut -f1)"
echo "KERNEL=$KERNEL_OUT"
echo "INITRD=$INITRD_OUT"
