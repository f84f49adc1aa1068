#!/usr/bin/env bash
# Provides tcmu-runner's "file" handler (handler_file.so) for bench/host-exposure.ts.
#
# Why this exists: upstream tcmu-runner builds its file handler (file_example.c, subtype
# "file", dev_config=file/<path>) but its CMakeLists.txt has no install() rule for it, so
# Debian's tcmu-runner package ships only handler_file_optical, handler_file_zbc,
# handler_qcow and handler_rbd. This script installs the Debian package if it is missing,
# then compiles file_example.c from the Debian source package of exactly the installed
# version (with Debian's own patches and hardening flags), so the handler matches the
# installed daemon's ABI. Nothing is installed system-wide besides the tcmu-runner package:
# the source lists, the source and the .so live under OUT_DIR.
#
# Usage: bench/tcmu-runner-file-handler.sh [OUT_DIR]   (default: <repo>/.cache/bench/tcmu-runner)
# On success the last line of stdout is HANDLER_DIR=<dir> (pass it to tcmu-runner --handler-path).
# Environment: TCMU_SRC_DIR=<unpacked tcmu source tree> skips the download.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/../.cache/bench/tcmu-runner}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DAEMON=/usr/bin/tcmu-runner
SYS_HANDLERS=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/tcmu-runner

die() { echo "tcmu-runner-file-handler: $*" >&2; exit 1; }
log() { echo "tcmu-runner-file-handler: $*" >&2; }

# 1. The daemon itself, from Debian.
if ! version=$(dpkg-query -W -f '${Version}' tcmu-runner 2>/dev/null) || [[ -z $version || ! -x $DAEMON ]]; then
	[[ $(id -u) = 0 ]] || die "tcmu-runner is not installed; run: apt-get install -y tcmu-runner"
	log "installing tcmu-runner (apt-get install -y tcmu-runner)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y tcmu-runner >&2 ||
		die "apt-get install -y tcmu-runner failed"
	version=$(dpkg-query -W -f '${Version}' tcmu-runner)
fi

# 2. A packaging that does install the file handler needs nothing more.
if [[ -f $SYS_HANDLERS/handler_file.so ]]; then
	echo "HANDLER_DIR=$SYS_HANDLERS"
	exit 0
fi

HDIR=$OUT/handlers
STAMP="tcmu-runner $version"
if [[ -f $HDIR/handler_file.so && -f $HDIR/.built-for && $(cat "$HDIR/.built-for") == "$STAMP" ]]; then
	echo "HANDLER_DIR=$HDIR"
	exit 0
fi

# 3. The Debian source of the installed version. The deb-src line is derived from where apt
# found the binary package; a private source list and state directory keep /etc/apt untouched.
if [[ -n ${TCMU_SRC_DIR:-} ]]; then
	SRC=$TCMU_SRC_DIR
else
	for t in apt-get apt-cache dpkg-source; do command -v $t >/dev/null || die "$t not found (apt-get install -y dpkg-dev)"; done
	# "tcmu-runner | 1.5.4-4.1 | http://deb.debian.org/debian bookworm/main amd64 Packages"
	origin=$(apt-cache madison tcmu-runner | awk -F'|' -v v="$version" '{ for (i = 1; i <= NF; i++) gsub(/^ +| +$/, "", $i) } $2 == v { print $3; exit }')
	[[ -n $origin ]] || die "apt-cache madison does not say where tcmu-runner $version comes from; set TCMU_SRC_DIR"
	read -r uri suite_comp _ <<<"$origin"
	suite=${suite_comp%%/*}
	comp=${suite_comp#*/}
	A=$OUT/apt
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/src"
	echo "deb-src $uri $suite $comp" >"$A/sources.list"
	aptopts=(-q -o "Dir::Etc::SourceList=$A/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o APT::Sandbox::User=root)
	log "fetching the Debian source of tcmu $version from $uri $suite/$comp"
	apt-get "${aptopts[@]}" update >&2 || die "apt-get update of $A/sources.list failed"
	# The source package is "tcmu"; apt resolves the binary name to it.
	(cd "$A/src" && apt-get "${aptopts[@]}" --download-only source "tcmu-runner=$version" >&2) ||
		die "apt-get source tcmu-runner=$version failed"
	dsc=$(ls "$A/src"/tcmu_*.dsc 2>/dev/null | head -1)
	[[ -n $dsc ]] || die "no tcmu_*.dsc downloaded"
	rm -rf "$A/src/tree"
	dpkg-source -x "$dsc" "$A/src/tree" >&2 || die "dpkg-source -x $dsc failed"
	SRC=$A/src/tree
fi
[[ -f $SRC/file_example.c ]] || die "$SRC/file_example.c not found"

# 4. Compile it as Debian compiles the rest of the package (debian/rules: hardening=+all;
# upstream CMakeLists: -Wall -std=c99, handler built as a PREFIX-less shared library with
# ccan on the include path). Its unresolved symbols (tcmur_*, tcmu_*) come from the
# tcmu-runner executable (exported through main-syms.txt) and libtcmu.so.2 at dlopen time.
command -v gcc >/dev/null || die "gcc not found (apt-get install -y gcc)"
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
read -ra cflags <<<"$(dpkg-buildflags --get CFLAGS 2>/dev/null || echo -O2 -g)"
read -ra cppflags <<<"$(dpkg-buildflags --get CPPFLAGS 2>/dev/null || true)"
read -ra ldflags <<<"$(dpkg-buildflags --get LDFLAGS 2>/dev/null || true)"
mkdir -p "$HDIR"
rm -f "$HDIR/handler_file.so" "$HDIR/.built-for"
gcc "${cppflags[@]}" "${cflags[@]}" -Wall -std=c99 -fPIC -I"$SRC" -I"$SRC/ccan" \
	-shared "${ldflags[@]}" -o "$HDIR/handler_file.so" "$SRC/file_example.c" >&2 ||
	die "compiling $SRC/file_example.c failed"

# Every symbol the handler needs must be exported by the daemon or libtcmu.
exported=$( { nm -D --defined-only "$DAEMON"; nm -D --defined-only "$(ldconfig -p | awk '/libtcmu\.so\.2 .*x86-64/ { print $NF; exit }')"; } 2>/dev/null | awk '{ print $3 }' | sort -u)
missing=$(nm -D --undefined-only "$HDIR/handler_file.so" | awk '$2 ~ /^tcmu/ { print $2 }' | sort -u | comm -23 - <(echo "$exported"))
[[ -z $missing ]] || die "handler_file.so needs symbols the installed tcmu-runner does not export: $missing"

echo "$STAMP" >"$HDIR/.built-for"
log "built $HDIR/handler_file.so from $SRC for $STAMP"
echo "HANDLER_DIR=$HDIR"
