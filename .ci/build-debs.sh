#!/bin/bash
# SPDX-License-Identifier: MIT
# The Debian packages of one commit, built as CI builds them: installs the
# build dependencies (debian/control), exports the commit (git archive),
# runs dpkg-buildpackage -us -uc -b and checks that debian/rules clean takes
# the tree back to the export. Used by .ci/debian-install.sh and by the
# system test (tests/system), so both test the same packages.
# Usage: build-debs.sh OUTDIR   (the .debs and .changes land in OUTDIR;
# OUTDIR/src is the build tree, OUTDIR/build.log its log)
# Environment: REF (the commit to build, default HEAD); DEBS_CACHE, where
# each commit's output is kept by its commit id (default: debs/ in the VM
# test cache, ${VMCTL_CACHE:-/var/cache/libvmgenid}; empty: no cache). A
# commit built already (its export, build and clean check passed) is
# copied from there, not built again: CI's .ci/debian-install.sh and
# .ci/system-test.sh build it once. The commit is the whole input (git
# archive); the build dependencies are Debian 12's of the day.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
fail() { echo "build-debs: FAIL: $*" >&2; exit 1; }

[ $# -eq 1 ] || fail "usage: $0 OUTDIR"
out=$1
[ "$(id -u)" -eq 0 ] || fail "run as root (apt-get build-dep)"
command -v git >/dev/null || fail "git not found"
ref=$(git rev-parse --verify "${REF:-HEAD}^{commit}") || fail "no commit ${REF:-HEAD}"
mkdir -p "$out"
[ ! -e "$out/src" ] || fail "$out/src exists"
cache=${DEBS_CACHE-${VMCTL_CACHE:-/var/cache/libvmgenid}/debs}
if [ -n "$cache" ] && [ -e "$cache/$ref/.complete" ]; then
	echo "build-debs: $ref built already, copied from $cache/$ref"
	find "$cache/$ref" -maxdepth 1 -type f ! -name .complete \
		-exec cp -p {} "$out/" \;
	ls "$out"/*.deb
	exit 0
fi

apt_get update -qq
apt_get build-dep -y -qq "$top" >/dev/null

echo "build-debs: dpkg-buildpackage -us -uc -b from a clean export of $ref"
mkdir "$out/src"
git archive "$ref" | tar -x -C "$out/src"
(cd "$out/src" && DEB_BUILD_OPTIONS=parallel=2 \
	dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) || {
	tail -n 60 "$out/build.log" >&2
	fail "dpkg-buildpackage (log: $out/build.log)"
}
# debian/rules clean must take the tree back to the export.
(cd "$out/src" && debian/rules clean >"$out/clean.log" 2>&1) ||
	{ cat "$out/clean.log" >&2; fail "debian/rules clean"; }
mkdir "$out/ref"
git archive "$ref" | tar -x -C "$out/ref"
diff -r "$out/ref" "$out/src" || fail "debian/rules clean left files"
rm -rf "$out/ref"
if [ -n "$cache" ]; then
	# one writer per commit wins (rename); keep the 8 newest commits
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
	find "$out" -maxdepth 1 -type f -exec cp -p {} "$tmp/" \;
	touch "$tmp/.complete"
	chmod 755 "$tmp"
	mv -T "$tmp" "$cache/$ref" 2>/dev/null || rm -rf "$tmp"
	ls -dt "$cache"/*/ | tail -n +9 | xargs -r rm -rf
fi
ls "$out"/*.deb
