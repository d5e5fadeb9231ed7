#!/bin/sh
# SPDX-License-Identifier: MIT
# The version script and the symbols the shared library exports agree:
# every name in the script is defined, versioned VMGENID_1.0, and nothing
# else is exported.
# Usage: check-symbols.sh LIBRARY.so VERSION-SCRIPT
set -eu
lib=$1
script=$2
command -v nm >/dev/null 2>&1 || { echo "SKIP: nm not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);[[:space:]]*$/\1/p' \
	"$script" | sort -u >"$tmp/script"
nm -D --defined-only "$lib" | awk '$3 != "" { print $3 }' |
	grep -v '^VMGENID_1\.0$' >"$tmp/raw"
if grep -v '@@VMGENID_1\.0$' "$tmp/raw"; then
	echo "FAIL: exported symbols above are not versioned VMGENID_1.0"
	exit 1
fi
sed 's/@@VMGENID_1\.0$//' "$tmp/raw" | sort -u >"$tmp/lib"
if ! diff -u "$tmp/script" "$tmp/lib"; then
	echo "FAIL: version script (-) and exported symbols (+) differ"
	exit 1
fi
echo "ok: $(wc -l <"$tmp/lib") symbols, all VMGENID_1.0"
