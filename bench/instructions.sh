#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per begin+commit pair on each source, and per iteration of
# the raw-load floor, counted by valgrind (callgrind): unlike wall time,
# the same on a loaded machine. Runs N and 2N pairs and takes the
# difference, so that start-up and initialisation cancel out.
# Usage: instructions.sh BENCH-PAIRS BENCH-PAIRS-GUID
set -eu
pairs=$1
pairs_guid=$2
command -v valgrind >/dev/null 2>&1 ||
	{ echo "SKIP: valgrind not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=200000

count() {	# PROGRAM SOURCE N -> instructions of the whole run
	valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
		"$1" "$2" "$3" 2>"$tmp/log" >/dev/null ||
		{ cat "$tmp/log"; echo "FAIL: $1 $2 $3"; exit 1; }
	# the largest: the library's fork probe is counted as a process too
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log" |
		sort -n | tail -n 1
}

per() {		# PROGRAM SOURCE -> instructions per iteration
	a=$(count "$1" "$2" $n)
	b=$(count "$1" "$2" $((2 * n)))
	echo $(( (b - a) / n ))
}

floor=$(per "$pairs" floor)
echo "instructions per begin+commit pair (valgrind), floor $floor per iteration"
for source in file none sysgenid vmclock guid; do
	prog=$pairs
	[ "$source" = guid ] && prog=$pairs_guid
	i=$(per "$prog" "$source")
	echo "  $source: $i  ($(awk -v a="$i" -v b="$floor" \
		'BEGIN { printf "%.1fx the floor", a / b }'))"
done
