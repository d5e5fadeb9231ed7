#!/bin/bash
# SPDX-License-Identifier: MIT
# CI: the system test (tests/system) on Debian 12's three kernels, then the
# late-load run on the cloud kernel, as root. Builds the .debs once
# (.ci/build-debs.sh), reuses or builds the base image (mmdebstrap, cached
# in VMCTL_CACHE, default /var/cache/libvmgenid), makes one disk with the
# packages installed by apt and DKMS builds for the three kernels, and per
# kernel boots, checks, saves and restores 4 clones. Prints the summary
# and the time of each step.
# Environment: SYSTEM_KERNELS (default "cloud generic 6.12"),
# SYSTEM_LATE_LOAD (kernel of the late-load run, default cloud; empty:
# none), KEEP_WORK=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

[ "$(id -u)" -eq 0 ] || { echo "system-test: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
	mmdebstrap qemu-system-x86 qemu-utils e2fsprogs openssl >/dev/null

work=$(mktemp -d /tmp/system-test.XXXXXX)
cleanup() {
	rc=$?
	if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
		echo "system-test: work directory kept: $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT

args=()
for k in ${SYSTEM_KERNELS:-cloud generic 6.12}; do
	args+=(--kernel "$k")
done
late=${SYSTEM_LATE_LOAD-cloud}
[ -z "$late" ] || args+=(--late-load "$late")
[ "${KEEP_WORK:-0}" != 1 ] || args+=(--keep)

python3 "$top/tests/system/system_test.py" --workdir "$work" "${args[@]}"
echo "system-test: passed in ${SECONDS}s"
