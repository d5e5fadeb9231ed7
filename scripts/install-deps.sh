#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs, from Debian 12's packages, everything needed to build libvmgenid,
# run all its tests and the snapshot-clone demo. Run as root; idempotent.
set -eu

packages="
	build-essential gcc gcc-12 clang meson ninja-build pkg-config
	liburcu-dev libcmocka-dev libssl-dev
	python3 python3-distutils busybox-static kmod
	valgrind groff-base man-db
	strace sparse linux-source-6.1
	flex bison bc libelf-dev
	mmdebstrap e2fsprogs openssl
"
# QEMU without recommends: the recommends pull a whole GUI stack.
qemu_packages="qemu-system-x86 qemu-utils"

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (apt-get needs it)" >&2
	exit 1
fi

missing=""
for p in $packages $qemu_packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $packages >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $qemu_packages >/dev/null
echo "install-deps: done"
