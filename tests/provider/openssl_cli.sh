#!/bin/sh
# SPDX-License-Identifier: MIT
# The unmodified openssl command with the provider configured: it lists
# VMGENID-DRBG, draws bytes through it across a generation step, and
# fails closed when the configured module is missing. Then the .include
# file, appended to this system's own openssl.cnf, wires OpenSSL up.
# Usage: openssl_cli.sh OPENSSL GOOD_CONF MISSING_MODULE_CONF INCLUDE CHECK
set -u
openssl=$1 good=$2 missing=$3 include=$4 check=$5
gen=${VMGENID_SOURCE#file:}
fail() { echo "FAIL: $*"; exit 1; }

printf '\001\000\000\000' > "$gen" || fail "cannot write $gen"
OPENSSL_CONF=$good "$openssl" list -random-generators | grep -q '^ *VMGENID-DRBG @ vmgenid$' ||
	fail "openssl list -random-generators does not show VMGENID-DRBG"
a=$(OPENSSL_CONF=$good "$openssl" rand -hex 32) || fail "openssl rand"
printf '\002\000\000\000' > "$gen"
b=$(OPENSSL_CONF=$good "$openssl" rand -hex 32) || fail "openssl rand after a step"
[ ${#a} -eq 64 ] && [ "$a" != "$b" ] || fail "openssl rand gave '$a' then '$b'"
if OPENSSL_CONF=$missing "$openssl" rand -hex 16 >/dev/null 2>&1; then
	fail "openssl rand gave bytes with the configured module missing"
fi
echo "ok: openssl lists VMGENID-DRBG, draws through it, fails closed without it"

dir=$("$openssl" version -d | sed -n 's/^OPENSSLDIR: "\(.*\)"$/\1/p')
if [ ! -r "$dir/openssl.cnf" ]; then
	echo "SKIP (the rest): no system openssl.cnf in '$dir'"
	exit 0
fi
conf=$(mktemp) || fail mktemp
trap 'rm -f "$conf"' EXIT
{ cat "$dir/openssl.cnf"; echo; echo ".include $include"; } > "$conf"
out=$(OPENSSL_CONF=$conf "$check") || fail "$dir/openssl.cnf plus .include $include is not wired: $out"
# It says which source this process's libvmgenid uses (a file here).
echo "$out" | grep -q '^primary *VMGENID-DRBG, .*, source file$' ||
	fail "the check does not name the source: $out"
out=$(OPENSSL_CONF=$conf VMGENID_SOURCE=none "$check") || fail "check on none: $out"
echo "$out" | grep -q 'source none (forks only: not protected' ||
	fail "the check does not say none protects only forks: $out"
echo "ok: $dir/openssl.cnf with the .include line is wired, the check names the source"
