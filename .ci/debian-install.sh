#!/bin/bash
# SPDX-License-Identifier: MIT
# CI: the Debian packages, from a clean export of HEAD, on Debian 12, as
# root. Builds them (dpkg-buildpackage -us -uc -b), runs lintian (fails on
# an error), installs them with apt-get, compiles and runs a consumer
# through pkg-config, runs `vmgenid status` and the OpenSSL provider's
# check, runs `dkms build` of
# sysgenid-dkms against the headers of each Debian 12 kernel (generic 6.1,
# cloud 6.1, 6.12; fetched by tests/vm/vmctl.py), then purges the packages
# and checks that nothing they made is left.
# Environment: VMCTL_CACHE (kernel download cache, default as in
# tests/vm/vmctl.py: /var/cache/libvmgenid as root), KEEP_WORK=1 keeps the
# work directory, REF (the commit to build, default HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock rather than fail when another apt runs.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

step() { printf '\n=== debian-install: %s (%ss)\n' "$*" "$SECONDS"; }
fail() { echo "debian-install: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (apt-get, dkms)"
command -v git >/dev/null || fail "git not found"

# One commit for the whole run, though the branch may move meanwhile.
ref=$(git rev-parse --verify "${REF:-HEAD}^{commit}") || fail "no commit ${REF:-HEAD}"
work=$(mktemp -d /tmp/debian-install.XXXXXX)
installed=""	# our packages while they are installed

cleanup() {
	rc=$?
	if [ -n "$installed" ]; then
		echo "debian-install: purging after a failure:$installed" >&2
		# shellcheck disable=SC2086
		apt_get purge -y -qq $installed >/dev/null 2>&1 || true
	fi
	if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		echo "debian-install: work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT

step "build dependencies (debian/control) and lintian"
apt_get update -qq
apt_get install -y -qq --no-install-recommends lintian >/dev/null

step "dpkg-buildpackage -us -uc -b (.ci/build-debs.sh)"
REF=$ref "$top/.ci/build-debs.sh" "$work" >/dev/null
changes=$(ls "$work"/*.changes)

step "packages"
printf '%-32s %-10s %-6s %10s %14s\n' package version arch "deb bytes" \
	"installed KiB"
for deb in "$work"/*.deb; do
	printf '%-32s %-10s %-6s %10s %14s\n' \
		"$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
		"$(dpkg-deb -f "$deb" Architecture)" "$(stat -c %s "$deb")" \
		"$(dpkg-deb -f "$deb" Installed-Size)"
done

step "lintian"
lintian --fail-on error --display-level '>=warning' "$changes" ||
	fail "lintian reports errors"

step "install with apt-get"
debs=""
for d in "$work"/*.deb; do
	case $d in *-dbgsym_*) ;; *) debs="$debs $d" ;; esac
done
pkgs=$(for d in $debs; do dpkg-deb -f "$d" Package; done | tr '\n' ' ')
# A failed earlier run may have left them.
# shellcheck disable=SC2086
apt_get purge -y -qq $pkgs >/dev/null 2>&1 || true
# What exists before: the directories the packages share with the system.
for d in $debs; do dpkg-deb -c "$d"; done |
	awk '{ p = $6; sub(/^\./, "", p); sub(/\/$/, "", p);
	       if (p != "") print p }' | sort -u >"$work/paths"
while read -r p; do
	if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
done <"$work/paths" >"$work/before"
installed=" $pkgs"
# shellcheck disable=SC2086
apt_get install -y -qq --no-install-recommends $debs >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log"; fail "apt-get install"; }
for p in $pkgs; do dpkg -L "$p"; done | grep -vx '/\.' | sort -u >"$work/listed"
[ -L /etc/systemd/system/multi-user.target.wants/vmgenid-hooks.service ] ||
	fail "vmgenid-hooks.service not enabled"
[ -L /etc/systemd/system/sysinit.target.wants/sysgenid-load.service ] ||
	fail "sysgenid-load.service not enabled"
[ -d /etc/vmgenid/restore.d ] || fail "/etc/vmgenid/restore.d missing"
getent group sysgenid >/dev/null || fail "group sysgenid not created"
dkms status -m sysgenid | grep -q 'added\|built\|installed' ||
	fail "sysgenid not in the DKMS tree: $(dkms status -m sysgenid)"

step "a consumer through pkg-config"
cat >"$work/consumer.c" <<'EOF'
/* Links against the installed library; a fork must step the generation. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vmgenid.h>

int main(void)
{
	struct vmgen_txn txn;
	int64_t gen = vmgen_generation();
	int kind = vmgen_source();
	int status;
	pid_t pid;

	if (gen < 1 || kind < 0) {
		fprintf(stderr, "consumer: %s\n",
			vmgen_strerror((int)(gen < 1 ? gen : kind)));
		return 1;
	}
	if (vmgen_txn_begin(&txn) < 0)
		return 1;
	pid = fork();
	if (pid == 0)
		_exit(vmgen_generation() > gen ? 0 : 1);
	if (pid < 0 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "consumer: the fork child saw no new generation\n");
		return 1;
	}
	if (!vmgen_txn_commit(&txn)) {
		fprintf(stderr, "consumer: commit failed with nothing changed\n");
		return 1;
	}
	printf("consumer: source %s, generation %lld, fork seen\n",
	       vmgen_source_name(kind), (long long)gen);
	return 0;
}
EOF
flags=$(pkg-config --cflags --libs vmgenid) || fail "pkg-config vmgenid"
echo "pkg-config --cflags --libs vmgenid: $flags"
# shellcheck disable=SC2086
cc -Wall -Werror -o "$work/consumer" "$work/consumer.c" $flags
lib=$(ldd "$work/consumer" | awk '$1 == "libvmgenid.so.0" { print $3 }')
want=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/libvmgenid.so.0
if [ -z "$lib" ] || [ "$(readlink -f "$lib")" != "$(readlink -f "$want")" ]; then
	ldd "$work/consumer"
	fail "consumer not linked to the installed library"
fi
"$work/consumer"
man -w vmgen_txn_begin vmgenid.7 vmgenid.1 sysgenid.4 vmgenid-provider.7 \
	vmgenid-openssl-check >/dev/null ||
	fail "manual pages missing"

step "vmgenid status"
(cd / && vmgenid status) || fail "vmgenid status"

step "the OpenSSL provider through its shipped configuration"
# Without the configuration OpenSSL keeps its own DRBGs (exit 1); with it
# every DRBG is VMGENID-DRBG (exit 0).
rc=0
(cd / && OPENSSL_CONF=/dev/null vmgenid-openssl-check) >/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "vmgenid-openssl-check without the provider: exit $rc, want 1"
(cd / && OPENSSL_CONF=/usr/share/libvmgenid/vmgenid-openssl.cnf \
	vmgenid-openssl-check) || fail "vmgenid-openssl-check with the provider"

step "the Python binding with Debian's python3"
# The module, the random opt-in through the environment (the .pth file),
# and a fork seen from Python.
(cd / && VMGENID_RESEED_RANDOM=1 /usr/bin/python3 -c '
import os, random, vmgenid
info = vmgenid.source_info()
assert type(random._inst) is not random.Random, "opt-in not applied"
t = vmgenid.transaction()
pid = os.fork()
if pid == 0:
    os._exit(0 if not t.commit() and vmgenid.generation() > t.generation else 1)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "fork not seen"
assert t.commit()
print("python3: vmgenid from", vmgenid.__file__, "source", info.kind,
      "generation", vmgenid.generation(), "random opt-in on, fork seen")
') || fail "python3-vmgenid"

step "dkms build against each Debian 12 kernel's headers"
ver=$(dpkg-query -W -f='${Version}' sysgenid-dkms)
ver=${ver%%-*}
for k in generic cloud 6.12; do
	kdir=$(python3 "$top/tests/vm/vmctl.py" --kernel "$k" \
		fetch --print-headers | tail -n 1) ||
		fail "vmctl.py fetch --kernel $k"
	abi=${kdir##*/linux-headers-}
	echo "--- $k: $abi ($kdir)"
	dkms build -m sysgenid -v "$ver" -k "$abi" --kernelsourcedir "$kdir" ||
		{ cat "/var/lib/dkms/sysgenid/$ver/build/make.log" 2>/dev/null
		  fail "dkms build for $k ($abi)"; }
	ko=$(find "/var/lib/dkms/sysgenid/$ver/$abi" -name 'sysgenid.ko*' | head -n 1)
	[ -n "$ko" ] || fail "no sysgenid.ko for $abi"
	vermagic=$(modinfo -F vermagic "$ko")
	case $vermagic in
	"$abi "*) echo "$ko: vermagic $vermagic" ;;
	*) fail "$ko: vermagic '$vermagic' is not for $abi" ;;
	esac
done
dkms status -m sysgenid

step "purge"
# shellcheck disable=SC2086
apt_get purge -y -qq $pkgs >"$work/purge.log" 2>&1 ||
	{ cat "$work/purge.log"; fail "apt-get purge"; }
installed=""
for p in $pkgs; do
	if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qv 'not-installed'; then
		fail "$p still known to dpkg: $(dpkg-query -W -f='${Status}' "$p")"
	fi
done
# Every path dpkg listed is gone, except directories that were there before.
bad=0
while read -r p; do
	if [ -e "$p" ] || [ -L "$p" ]; then
		if ! grep -qxF -- "$p" "$work/before"; then
			echo "left behind: $p" >&2
			bad=1
		fi
	fi
done <"$work/listed"
[ "$bad" -eq 0 ] || fail "paths left after purge"
[ -z "$(dkms status -m sysgenid)" ] || fail "dkms status: $(dkms status -m sysgenid)"
[ ! -e /var/lib/dkms/sysgenid ] || fail "/var/lib/dkms/sysgenid left"
[ ! -e "/usr/src/sysgenid-$ver" ] || fail "/usr/src/sysgenid-$ver left"
! getent group sysgenid >/dev/null || fail "group sysgenid left"
[ ! -e /etc/vmgenid ] || fail "/etc/vmgenid left"
if ls /etc/systemd/system/*/vmgenid-hooks.service >/dev/null 2>&1 ||
   find /var/lib/systemd/deb-systemd-helper-enabled -name '*vmgenid*' \
	2>/dev/null | grep -q .; then
	fail "vmgenid-hooks.service enablement left"
fi
echo "nothing left: $(wc -l <"$work/listed") listed paths checked"

step "passed in ${SECONDS}s"
