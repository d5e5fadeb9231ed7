/* SPDX-License-Identifier: MIT */
/* The begin/commit loop compiled against the exported symbols. */
#ifndef VMGENID_BENCH_FASTPATH_H
#define VMGENID_BENCH_FASTPATH_H

#include <stdint.h>

/* n begin+commit pairs through the exported symbols; returns the commits. */
uint64_t bench_pairs_exported(uint64_t n);

#endif /* VMGENID_BENCH_FASTPATH_H */
