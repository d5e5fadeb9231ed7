#!/bin/sh
# SPDX-License-Identifier: MIT
# The version script and the symbols the shared library exports agree:
# every name in the script is defined with the version of its node, and
# nothing else is exported. VMGENID_1.0 is frozen (binaries built against
# 0.1 need exactly these): its list below must never change.
# Usage: check-symbols.sh LIBRARY.so VERSION-SCRIPT
set -eu
lib=$1
script=$2
command -v nm >/dev/null 2>&1 || { echo "SKIP: nm not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/frozen-1.0" <<'LIST'
vmgen__fastpath@@VMGENID_1.0
vmgen__txn_begin_slow@@VMGENID_1.0
vmgen_callback_register@@VMGENID_1.0
vmgen_callback_unregister@@VMGENID_1.0
vmgen_dispatch@@VMGENID_1.0
vmgen_fd@@VMGENID_1.0
vmgen_fork_mode@@VMGENID_1.0
vmgen_generation@@VMGENID_1.0
vmgen_init@@VMGENID_1.0
vmgen_source@@VMGENID_1.0
vmgen_source_generation@@VMGENID_1.0
vmgen_source_name@@VMGENID_1.0
vmgen_source_path@@VMGENID_1.0
vmgen_source_rejected@@VMGENID_1.0
vmgen_strerror@@VMGENID_1.0
vmgen_tracking_disable@@VMGENID_1.0
vmgen_tracking_enable@@VMGENID_1.0
vmgen_trigger@@VMGENID_1.0
vmgen_txn_begin@@VMGENID_1.0
vmgen_txn_commit@@VMGENID_1.0
vmgen_wait@@VMGENID_1.0
vmgen_wait_watchers@@VMGENID_1.0
vmgen_watcher_start@@VMGENID_1.0
vmgen_watcher_stop@@VMGENID_1.0
LIST

# name@@NODE for every name in the script, from the node it sits in.
awk '
	/^[A-Za-z_][A-Za-z0-9_.]*[[:space:]]*\{/ { node = $1 }
	/^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;[[:space:]]*$/ {
		gsub(/[;[:space:]]/, ""); print $0 "@@" node
	}' "$script" | sort -u >"$tmp/script"
# Defined dynamic symbols, less the version nodes' own names.
nm -D --defined-only "$lib" | awk '$3 != "" { print $3 }' |
	grep '@' | sort -u >"$tmp/lib"
if ! diff -u "$tmp/script" "$tmp/lib"; then
	echo "FAIL: version script (-) and exported symbols (+) differ"
	exit 1
fi
grep '@@VMGENID_1\.0$' "$tmp/lib" >"$tmp/lib-1.0" || true
if ! diff -u "$tmp/frozen-1.0" "$tmp/lib-1.0"; then
	echo "FAIL: the frozen VMGENID_1.0 node (-) was edited (+)"
	exit 1
fi
if grep -v '@@VMGENID_1\.[01]$' "$tmp/lib"; then
	echo "FAIL: symbols above are in an unexpected version node"
	exit 1
fi
echo "ok: $(wc -l <"$tmp/lib") symbols," \
	"$(wc -l <"$tmp/lib-1.0") of them in the frozen VMGENID_1.0"
