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
	struct vmgen_txn txn;
	uint64_t commits = 0;

	for (uint64_t i = 0; i < n; i++) {
		vmgen_txn_begin(&txn);
		commits += vmgen_txn_commit(&txn);
	}
	return commits;
}
