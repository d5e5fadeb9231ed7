#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Static checks of the module:
#   - sparse (make C=2) against each kernel build tree, no warning allowed;
#   - the kernel's checkpatch.pl --strict, from Debian's linux-source
#     tarball (scripts/checkpatch.pl, spelling.txt, const_structs.checkpatch).
#
# Usage: driver/check.sh [KDIR...]
#   Without KDIR: the trees that $SYSGENID_CHECK_VMCTL (a vmctl.py command
#   line) fetches for the kernels in $SYSGENID_CHECK_KERNELS (default
#   "generic 6.12 cloud"), else the running kernel's.
#   $LINUX_SOURCE: the tarball (default: the newest /usr/src/linux-source-*);
#   $SYSGENID_CHECK_CACHE: where to keep the scripts unpacked from it.
# Exit: 0 clean, 1 findings, 77 when sparse, a tree or the tarball is absent.
#
# One checkpatch type is ignored, argued here: LINUX_VERSION_CODE. An
# in-tree driver is written for the kernel it is merged into; this module
# is built out of tree for Debian 12's 6.1 and 6.12, and needs the test in
# two places: vm_flags_mod() replaced direct vm_flags writes in 6.3, and the
# build must fail clearly before 6.0.
set -u

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

skip() {
	echo "SKIP: $*"
	exit 77
}

command -v sparse >/dev/null 2>&1 || skip "sparse is not installed (apt-get install sparse)"
command -v perl >/dev/null 2>&1 || skip "perl is not installed"

if [ $# -eq 0 ]; then
	if [ -n "${SYSGENID_CHECK_VMCTL:-}" ]; then
		for k in ${SYSGENID_CHECK_KERNELS:-generic 6.12 cloud}; do
			# shellcheck disable=SC2086
			d=$($SYSGENID_CHECK_VMCTL --kernel "$k" fetch \
				--print-headers) || skip "no headers for kernel $k"
			set -- "$@" "$d"
		done
	elif [ -d "/lib/modules/$(uname -r)/build" ]; then
		set -- "/lib/modules/$(uname -r)/build"
	else
		skip "no kernel build tree given or found"
	fi
fi

# sparse, with the compiler each tree was configured with
for kdir in "$@"; do
	[ -f "$kdir/include/config/auto.conf" ] || skip "$kdir: not a configured kernel build tree"
	cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\{0,1\}\([^ "]*\).*/\1/p' \
		"$kdir/include/config/auto.conf")
	command -v "$cc" >/dev/null 2>&1 || skip "$cc (the compiler of $kdir) is not installed"
	rm -rf "$tmp/src"
	mkdir "$tmp/src"
	cp -r "$here"/*.c "$here"/*.h "$here"/Kbuild "$here"/Makefile \
		"$here"/uapi "$tmp/src/"
	if ! make -s -C "$tmp/src" KDIR="$kdir" CC="$cc" C=2 \
		>"$tmp/sparse.log" 2>&1; then
		echo "FAIL: build with sparse against $kdir:"
		cat "$tmp/sparse.log"
		status=1
		continue
	fi
	# Anything but the BTF note that trees without vmlinux print.
	if grep -v '^Skipping BTF generation' "$tmp/sparse.log" | grep -q .; then
		echo "FAIL: sparse or the compiler against $kdir:"
		grep -v '^Skipping BTF generation' "$tmp/sparse.log"
		status=1
	else
		echo "ok: sparse against $kdir: no warnings"
	fi
done

# checkpatch
src=${LINUX_SOURCE:-$(ls /usr/src/linux-source-*.tar.* 2>/dev/null | sort -V | tail -n 1)}
[ -n "$src" ] && [ -f "$src" ] || skip "no linux-source tarball (apt-get install linux-source)"
top=$(tar tf "$src" 2>/dev/null | head -n 1 | cut -d/ -f1)
# Unpacking three files reads the whole tarball (a minute or two): keep
# them in $SYSGENID_CHECK_CACHE, keyed by the tarball's digest.
cpdir=$tmp/$top
if [ -n "${SYSGENID_CHECK_CACHE:-}" ]; then
	key=$(sha256sum "$src" | cut -c1-16)
	mkdir -p "$SYSGENID_CHECK_CACHE/checkpatch/$key/$top" 2>/dev/null &&
		cpdir=$SYSGENID_CHECK_CACHE/checkpatch/$key/$top
fi
if [ ! -f "$cpdir/scripts/.complete" ]; then
	mkdir -p "$cpdir" && tar xf "$src" -C "$cpdir/.." \
		"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
		"$top/scripts/const_structs.checkpatch" ||
		skip "$src: no scripts/checkpatch.pl"
	touch "$cpdir/scripts/.complete"
fi
if perl "$cpdir/scripts/checkpatch.pl" --strict --no-tree --terse \
	--show-types --ignore LINUX_VERSION_CODE -f \
	"$here"/*.c "$here"/*.h "$here"/uapi/linux/*.h >"$tmp/cp.log" 2>&1 &&
	! grep -q -E '(ERROR|WARNING|CHECK):' "$tmp/cp.log"; then
	echo "ok: checkpatch.pl --strict ($top): clean"
else
	echo "FAIL: checkpatch.pl --strict ($top):"
	grep -E '(ERROR|WARNING|CHECK):' "$tmp/cp.log" || cat "$tmp/cp.log"
	status=1
fi
exit $status
