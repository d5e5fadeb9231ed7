#!/bin/sh
# SPDX-License-Identifier: MIT
# meson test --wrap: run ELF test programs under valgrind memcheck, and
# script tests (whose interpreter's own leaks are not ours) as they are.
# --fair-sched: spinning test threads must not starve the watcher thread
# behind valgrind's default, unfair, big lock.
if [ "$(head -c 4 "$1" 2>/dev/null | tail -c 3)" = ELF ]; then
	exec valgrind --quiet --fair-sched=yes --error-exitcode=1 --leak-check=full \
		--errors-for-leak-kinds=definite "$@"
fi
exec "$@"
