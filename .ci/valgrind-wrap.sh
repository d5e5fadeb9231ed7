#!/bin/sh
# SPDX-License-Identifier: MIT
# meson test --wrap: run ELF test programs under valgrind memcheck, and
# script tests (whose interpreter's own leaks are not ours) as they are.
if [ "$(head -c 4 "$1" 2>/dev/null | tail -c 3)" = ELF ]; then
	exec valgrind --quiet --error-exitcode=1 --leak-check=full \
		--errors-for-leak-kinds=definite "$@"
fi
exec "$@"
