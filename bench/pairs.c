/* SPDX-License-Identifier: MIT */
/*
 * N begin+commit pairs on one source, and nothing else: the program that
 * instructions.sh counts under valgrind, where wall time on a shared
 * machine says nothing. "floor" runs the raw-load floor loop instead.
 * Usage: bench-pairs SOURCE|floor N
 */
#include <vmgenid.h>

#include "bench.h"
#include "fastpath.h"
#include "sources.h"

int main(int argc, char **argv)
{
	struct bench_counter counter;
	uint64_t n, done = 0;
	const uint32_t *page;
	int err;

	if (argc != 3) {
		fprintf(stderr, "usage: %s SOURCE|floor N\n", argv[0]);
		return 2;
	}
	n = strtoull(argv[2], NULL, 0);
	bench_counter_open(&counter);
	if (strcmp(argv[1], "floor") == 0) {
		page = mmap(NULL, 4096, PROT_READ, MAP_SHARED, counter.fd, 0);
		if (page == MAP_FAILED)
			bench_die("mmap", errno);
		for (uint64_t i = 0; i < n; i++) {
			uint32_t g = __atomic_load_n(page, __ATOMIC_ACQUIRE);

			done += __atomic_load_n(page, __ATOMIC_ACQUIRE) == g;
		}
	} else {
		err = init_source(argv[1], &counter);
		if (err < 0)
			bench_die("vmgen_init", err);
		bench_pairs(1);
		done = bench_pairs(n);
	}
	bench_counter_close(&counter);
	if (done != n) {
		fprintf(stderr, "%llu of %llu pairs committed\n",
			(unsigned long long)done, (unsigned long long)n);
		return 1;
	}
	return 0;
}
