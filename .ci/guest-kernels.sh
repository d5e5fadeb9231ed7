#!/bin/bash
# SPDX-License-Identifier: MIT
# CI: the guest suites on every Debian 12 kernel a VM may run. The main run
# (scripts/test.sh) boots the default kernel, generic; this runs, for each of
# the other two (cloud: no vmgenid driver, the module binds the device
# itself; 6.12), meson's suite `guest` (the module's ABI, restore and
# syscall fuzz tests, the kernel-RNG test, a 2-clone snapshot-clone run),
# then prints one line per kernel, generic's taken from the main run's log:
#
#   kernel <name> (<abi>): N passed, M failed
#
# A skip counts as a failure: CI installs everything the tests need.
# Usage: .ci/guest-kernels.sh [BUILD_DIR]   (default build, already built)
# Environment: GUEST_KERNELS (default "cloud 6.12"), GUEST_FUZZ_SECONDS
# (the syscall fuzz's duration on these kernels, default 15; 45 in the main
# run).
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
kernels=${GUEST_KERNELS:-cloud 6.12}
fuzz_seconds=${GUEST_FUZZ_SECONDS:-15}
logs=$build/meson-logs
status=0
lines=()
start=$SECONDS

# "N passed, M failed" of the suite-guest tests in a meson JSON log.
count() {
	python3 .ci/count-guest.py "$1" "$expected"
}

abi_of() {
	python3 tests/vm/vmctl.py --kernel "$1" fetch 2>/dev/null |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["abi"])'
}

# the suite's test names, e.g. "libvmgenid:vm+guest / vm-kernel-rng"
expected=$(meson test -C "$build" --list --suite guest 2>/dev/null |
	sed -n 's|^.* / ||p' | tr '\n' ' ')
if [ -z "$expected" ]; then
	echo "no tests in suite guest in $build" >&2
	exit 1
fi

if [ -f "$logs/testlog.json" ]; then
	abi=$(abi_of generic) || abi=unknown
	res=$(count "$logs/testlog.json")
	lines+=("kernel generic ($abi): $res (main run)")
	case $res in *' 0 failed'*) ;; *) status=1 ;; esac
fi

for k in $kernels; do
	t0=$SECONDS
	printf '\n=== guest suites on kernel %s (%ss)\n' "$k" "$SECONDS"
	if ! abi=$(abi_of "$k"); then
		lines+=("kernel $k (?): 0 passed, 1 failed (fetch failed)")
		status=1
		continue
	fi
	rm -f "$logs/testlog-guest-$k.json"
	VMCTL_KERNEL=$k VMCTL_APPEND="SYSGENID_FUZZ_SECONDS=$fuzz_seconds" \
		meson test -C "$build" --suite guest \
		--print-errorlogs --logbase "testlog-guest-$k"
	res=$(count "$logs/testlog-guest-$k.json")
	lines+=("kernel $k ($abi): $res ($((SECONDS - t0)) s)")
	case $res in *' 0 failed'*) ;; *) status=1 ;; esac
done

printf '\n=== guest kernels (%s s)\n' "$((SECONDS - start))"
printf '%s\n' "${lines[@]}"
exit $status
