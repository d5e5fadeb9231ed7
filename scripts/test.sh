#!/bin/sh
# SPDX-License-Identifier: MIT
# Sets everything up on a fresh Debian 12 machine (as root) and runs every
# test suite: unit, tool, examples, man, stress, fuzz regressions, and the
# in-guest suites (the sysgenid module in a QEMU guest, the snapshot-clone
# test). Extra arguments go to `meson test`, e.g. `--suite unit`.
set -eu
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [ -d build ]; then
	meson setup --reconfigure build -Dwerror=true >/dev/null
else
	meson setup build -Dwerror=true >/dev/null
fi
meson compile -C build
meson test -C build --print-errorlogs "$@"
