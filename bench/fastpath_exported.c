/* SPDX-License-Identifier: MIT */
/*
 * A translation unit of its own, so that VMGEN_NO_INLINE turns begin and
 * commit into calls of the library's exported symbols: the cost an FFI or
 * dlopen() user pays.
 */
#define VMGEN_NO_INLINE
#include <vmgenid.h>

#include "fastpath.h"

uint64_t bench_pairs_exported(uint64_t n)
{
	return bench_pairs(n);
}
