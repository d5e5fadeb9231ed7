#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every libFuzzer harness for SECONDS (default 20) from its committed
# seed corpus, and fails if any of them finds a crash, a leak, a failed
# check or a timeout. New inputs go to a scratch copy of the corpus, not
# to fuzz/corpus/; a crashing input is kept next to it and printed, to be
# added to fuzz/corpus/NAME/ as a regression input once the bug is fixed.
#
# Usage: fuzz/run.sh [BUILDDIR] [SECONDS]
#   with BUILDDIR set up by: CC=clang meson setup BUILDDIR -Dfuzz=true
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-fuzz}
seconds=${2:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/vmgenid-fuzz.XXXXXX")
status=0

for corpus in "$here"/corpus/*/; do
	name=$(basename "$corpus")
	bin="$build/fuzz/fuzz-$(echo "$name" | tr _ -)"
	if [ ! -x "$bin" ]; then
		echo "fuzz: $bin missing (meson setup $build -Dfuzz=true)" >&2
		status=1
		continue
	fi
	mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
	echo "fuzz: $name for ${seconds}s"
	if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/$name/artifacts/" \
		"$work/$name/corpus" "$corpus" >"$work/$name/log" 2>&1; then
		status=1
		echo "fuzz: $name FAILED; log: $work/$name/log" >&2
		grep -E 'ERROR|check failed|SUMMARY' "$work/$name/log" | \
			head -5 >&2 || true
		for a in "$work/$name/artifacts"/*; do
			[ -e "$a" ] && echo "fuzz: input: $a" >&2
		done
	else
		grep -E '^stat::number_of_executed_units|^Done' \
			"$work/$name/log" | sed "s/^/fuzz: $name: /"
	fi
done

if [ "$status" -eq 0 ]; then
	rm -rf "$work"
	echo "fuzz: no failures"
else
	echo "fuzz: failures; inputs and logs kept in $work" >&2
fi
exit "$status"
