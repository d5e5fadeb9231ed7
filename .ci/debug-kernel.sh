#!/bin/bash
# SPDX-License-Identifier: MIT
# CI: the guest suites on the debug kernel (DESIGN section 12): Debian 12's
# linux-source-6.1 built with lockdep, KASAN and kmemleak from a small
# config (tests/vm/debug_kernel.py), vmgenid a module. Builds the kernel,
# or reuses the cached build (/var/cache/libvmgenid/debug-kernel-<digest of
# its inputs>), then runs meson's suite `guest` (the module's ABI, unload,
# restore and syscall fuzz tests, the kernel-RNG test, a 2-clone
# snapshot-clone run) twice on it:
#
#   load  /init loads vmgenid.ko first: our module runs in notifier mode
#   none  vmgenid.ko stays out: our module binds the ACPI device itself
#
# Any BUG:, WARNING:, lockdep, KASAN or ODEBUG report, kmemleak leak (a
# scan after the tests and one after unloading every module) or module
# that will not unload at the end fails the VM's test (vmctl.kernel_ok).
# Prints one line per mode, non-zero exit on any failure or skip:
#
#   debug kernel (<mode>): N passed, M failed
#
# Usage: .ci/debug-kernel.sh [BUILD_DIR]   (default build, already built)
# Environment: DEBUG_KERNEL_MODES (default "load none"), GUEST_FUZZ_SECONDS
# (the syscall fuzz's duration, default 15), DEBUG_TIMEOUT_MULTIPLIER
# (meson's, default 3: the debug kernel runs 2-4 times slower under TCG).
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
modes=${DEBUG_KERNEL_MODES:-load none}
fuzz_seconds=${GUEST_FUZZ_SECONDS:-15}
mult=${DEBUG_TIMEOUT_MULTIPLIER:-3}
logs=$build/meson-logs
status=0
lines=()
start=$SECONDS

# "N passed, M failed" of the suite-guest tests in a meson JSON log.
count() {
	python3 .ci/count-guest.py "$1" "$expected"
}

expected=$(meson test -C "$build" --list --suite guest 2>/dev/null |
	sed -n 's|^.* / ||p' | tr '\n' ' ')
if [ -z "$expected" ]; then
	echo "no tests in suite guest in $build" >&2
	exit 1
fi

# The build (about an hour the first time) before the tests: a test
# waiting on it would run into its meson timeout.
printf '\n=== debug kernel: build or reuse (%ss)\n' "$SECONDS"
t0=$SECONDS
if ! info=$(python3 tests/vm/vmctl.py --kernel debug fetch); then
	echo "debug kernel (build): 0 passed, 1 failed"
	exit 1
fi
abi=$(printf '%s' "$info" |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["abi"])')
lines+=("debug kernel $abi: ready in $((SECONDS - t0)) s")

for mode in $modes; do
	t0=$SECONDS
	printf '\n=== guest suites on the debug kernel, VMGENID_DRIVER=%s (%ss)\n' \
		"$mode" "$SECONDS"
	rm -f "$logs/testlog-debug-$mode.json"
	VMCTL_KERNEL=debug \
	VMCTL_APPEND="VMGENID_DRIVER=$mode SYSGENID_FUZZ_SECONDS=$fuzz_seconds" \
		meson test -C "$build" --suite guest --print-errorlogs \
		--timeout-multiplier "$mult" --logbase "testlog-debug-$mode"
	res=$(count "$logs/testlog-debug-$mode.json")
	lines+=("debug kernel ($mode): $res ($((SECONDS - t0)) s)")
	case $res in *' 0 failed'*) ;; *) status=1 ;; esac
done

printf '\n=== debug kernel (%s s)\n' "$((SECONDS - start))"
printf '%s\n' "${lines[@]}"
exit $status
