/* SPDX-License-Identifier: MIT */
/*
 * The begin/commit loop, compiled twice: inline in bench_fastpath.c, and
 * through the exported symbols in fastpath_exported.c, which defines
 * VMGEN_NO_INLINE before it includes <vmgenid.h>.
 */
#ifndef VMGENID_BENCH_FASTPATH_H
#define VMGENID_BENCH_FASTPATH_H

#include <stdint.h>

#include <vmgenid.h>

/* n begin+commit pairs; returns how many committed. */
static inline uint64_t bench_pairs(uint64_t n)
{
	struct vmgen_txn txn;
	uint64_t commits = 0;

	for (uint64_t i = 0; i < n; i++) {
		vmgen_txn_begin(&txn);
		commits += vmgen_txn_commit(&txn);
	}
	return commits;
}

/* The same loop through the exported symbols. */
uint64_t bench_pairs_exported(uint64_t n);

#endif /* VMGENID_BENCH_FASTPATH_H */
