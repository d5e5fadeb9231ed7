/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmarks: a clock, a counter file standing in for
 * the generation source, sorting and percentiles, and a PASS/MISS label.
 * Header-only so that each benchmark stays one program.
 *
 * The benchmarks print ratios measured in the same run; the targets are
 * informational and never fail a run, because wall time on a shared
 * machine says little about the code.
 */
#ifndef VMGENID_BENCH_H
#define VMGENID_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bench_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_die(const char *what, int err)
{
	fprintf(stderr, "bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/*
 * A generation source the benchmark controls: a temporary file whose first
 * four bytes are a native u32 counter, as the "file:PATH" source expects.
 * The file is unlinked by bench_counter_close().
 */
struct bench_counter {
	int fd;
	uint32_t value;
	char path[256];
	char spec[272];		/* "file:PATH", for vmgen_init() */
};

static inline void bench_counter_write(struct bench_counter *c, uint32_t v)
{
	c->value = v;
	if (pwrite(c->fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
		bench_die("pwrite counter", errno);
}

static inline void bench_counter_open(struct bench_counter *c)
{
	const char *dir = getenv("TMPDIR");

	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(c->path, sizeof(c->path), "%s/vmgenid-bench-XXXXXX", dir);
	c->fd = mkstemp(c->path);
	if (c->fd < 0)
		bench_die("mkstemp", errno);
	snprintf(c->spec, sizeof(c->spec), "file:%s", c->path);
	bench_counter_write(c, 1);
}

static inline void bench_counter_step(struct bench_counter *c)
{
	bench_counter_write(c, c->value + 1);
}

static inline void bench_counter_close(struct bench_counter *c)
{
	close(c->fd);
	unlink(c->path);
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of v[0..n-1]; sorts v. */
static inline uint64_t bench_percentile(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_u64);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static inline const char *bench_label(int pass)
{
	return pass ? "PASS" : "MISS";
}

/* Keeps a loop's result alive: the compiler must assume it is used. */
static inline void bench_sink(uint64_t v)
{
	__asm__ volatile("" : : "r"(v));
}

#endif /* VMGENID_BENCH_H */
