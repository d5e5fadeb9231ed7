#!/bin/bash
# SPDX-License-Identifier: MIT
# The Debian packages of one commit, built as CI builds them: installs the
# build dependencies (debian/control), exports the commit (git archive),
# runs dpkg-buildpackage -us -uc -b and checks that debian/rules clean takes
# the tree back to the export. Used by .ci/debian-install.sh and by the
# system test (tests/system), so both test the same packages.
# Usage: build-debs.sh OUTDIR   (the .debs and .changes land in OUTDIR;
# OUTDIR/src is the build tree, OUTDIR/build.log its log)
# Environment: REF (the commit to build, default HEAD).
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
ls "$out"/*.deb
