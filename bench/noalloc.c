/* SPDX-License-Identifier: MIT */
/*
 * The fast path does not allocate. This program interposes malloc and
 * friends (the executable's definitions win over libc's for every shared
 * object, the library included), counts the calls, and checks that
 * 1,000,000 begin+commit pairs make none, before and after a generation
 * step. It first proves that the counter sees calls made inside a shared
 * library, so that a zero cannot come from a broken interposer.
 *
 * Not built under sanitizers, which interpose malloc themselves. Under
 * valgrind, which replaces the executable's malloc too, nothing can be
 * counted: the run says so and checks the rest.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>

#include <vmgenid.h>

#include "bench.h"

#define PAIRS 1000000u

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t nmemb, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void __libc_free(void *ptr);

static unsigned long nalloc;

static void count(void)
{
	__atomic_add_fetch(&nalloc, 1, __ATOMIC_RELAXED);
}

static unsigned long allocations(void)
{
	return __atomic_load_n(&nalloc, __ATOMIC_RELAXED);
}

void *malloc(size_t size)
{
	count();
	return __libc_malloc(size);
}

void *calloc(size_t nmemb, size_t size)
{
	count();
	return __libc_calloc(nmemb, size);
}

void *realloc(void *ptr, size_t size)
{
	count();
	return __libc_realloc(ptr, size);
}

void free(void *ptr)
{
	count();
	__libc_free(ptr);
}

void *memalign(size_t alignment, size_t size)
{
	count();
	return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
	count();
	return __libc_memalign(alignment, size);
}

int posix_memalign(void **ptr, size_t alignment, size_t size)
{
	void *p;

	count();
	if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
		return EINVAL;
	p = __libc_memalign(alignment, size);
	if (!p)
		return ENOMEM;
	*ptr = p;
	return 0;
}

/* Valgrind preloads its allocator through LD_PRELOAD. */
static bool under_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");

	return preload && strstr(preload, "vgpreload");
}

/* Returns how many pairs committed; *delta gets the allocations made. */
static unsigned long run_pairs(unsigned long *delta)
{
	struct vmgen_txn txn;
	unsigned long before = allocations(), commits = 0;

	for (unsigned long i = 0; i < PAIRS; i++) {
		if (vmgen_txn_begin(&txn) == 0)
			commits += vmgen_txn_commit(&txn);
	}
	*delta = allocations() - before;
	return commits;
}

int main(void)
{
	struct bench_counter counter;
	unsigned long before, delta, commits;
	bool counting = true;
	char *copy;
	int err, failed = 0;

	/* strdup() allocates inside libc.so: this is the path to check. */
	before = allocations();
	copy = strdup("interposed?");
	free(copy);
	if (allocations() - before != 2) {
		if (!under_valgrind()) {
			printf("FAIL: the counting allocator saw %lu calls "
			       "for strdup+free, expected 2\n",
			       allocations() - before);
			return 1;
		}
		/*
		 * Valgrind replaces malloc in the executable too, so nothing
		 * can be counted here; the run still checks the commits and
		 * gives memcheck the fast path to watch.
		 */
		printf("note: under valgrind, allocations are not counted\n");
		counting = false;
	}

	bench_counter_open(&counter);
	err = vmgen_init(counter.spec, 0);
	if (err < 0) {
		printf("FAIL: vmgen_init(%s): %s\n", counter.spec,
		       vmgen_strerror(err));
		bench_counter_close(&counter);
		return 1;
	}
	vmgen_generation();

	for (int round = 0; round < 2; round++) {
		commits = run_pairs(&delta);
		printf("%s step: %lu pairs, %lu committed, %lu allocator "
		       "calls\n", round ? "after a" : "before any", PAIRS,
		       commits, delta);
		if (counting && delta != 0) {
			printf("FAIL: the fast path called the allocator\n");
			failed = 1;
		}
		if (commits != PAIRS) {
			printf("FAIL: pairs failed to commit with nothing "
			       "changing, so the slow path ran\n");
			failed = 1;
		}
		/* A step, handled here: the fast path must come back. */
		bench_counter_step(&counter);
		if (vmgen_generation() < 0) {
			printf("FAIL: vmgen_generation after a step\n");
			failed = 1;
		}
	}
	bench_counter_close(&counter);
	return failed;
}
