/* SPDX-License-Identifier: MIT */
/*
 * Memory the library adds to a process: resident set before any library
 * call, after vmgen_init() with the watcher thread, and after 10 callbacks
 * have run for two steps (one dispatched here, one by the watcher).
 * Anonymous memory (heap, the watcher's stack, the wipe-on-fork page,
 * liburcu's reader registry) is what the process pays for alone;
 * file-backed pages (the library's code, the counter page, libc code the
 * library is the first to touch) are shared with every other user of the
 * file. Target: anonymous growth < 64 KiB.
 *
 * /proc/self/smaps_rollup is read with read(2) into a static buffer, so
 * that measuring does not allocate what it measures.
 */
#include <sched.h>

#include <vmgenid.h>

#include "bench.h"

struct mem {
	long rss_kib;
	long anon_kib;
};

static long field_kib(const char *text, const char *name)
{
	const char *p = strstr(text, name);

	return p ? strtol(p + strlen(name), NULL, 10) : -1;
}

static struct mem mem_now(void)
{
	static char buf[4096];
	struct mem m = { -1, -1 };
	ssize_t n;
	int fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return m;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return m;
	buf[n] = '\0';
	m.rss_kib = field_kib(buf, "\nRss:");
	m.anon_kib = field_kib(buf, "\nAnonymous:");
	return m;
}

static int on_change(const struct vmgen_event *event, void *arg)
{
	__atomic_add_fetch((int *)arg, 1, __ATOMIC_RELAXED);
	return 0;
}

int main(void)
{
	struct bench_counter counter;
	struct mem m0, m1, m2;
	int calls = 0, err;
	long anon;

	bench_counter_open(&counter);
	m0 = mem_now();
	if (m0.rss_kib < 0 || m0.anon_kib < 0) {
		printf("SKIP: /proc/self/smaps_rollup unreadable\n");
		bench_counter_close(&counter);
		return 77;
	}

	err = vmgen_init(counter.spec, VMGEN_INIT_WATCHER);
	if (err < 0)
		bench_die("vmgen_init", err);
	vmgen_generation();
	m1 = mem_now();

	for (int i = 0; i < 10; i++) {
		err = vmgen_callback_register(on_change, &calls,
					      VMGEN_EVENT_ANY);
		if (err < 0)
			bench_die("vmgen_callback_register", err);
	}
	bench_counter_step(&counter);
	vmgen_generation();
	/* Give the watcher its turn too, so its wake-up path is counted. */
	bench_counter_step(&counter);
	for (int i = 0; i < 1000 && __atomic_load_n(&calls, __ATOMIC_RELAXED)
			< 20; i++)
		usleep(1000);
	vmgen_generation();
	m2 = mem_now();

	anon = m2.anon_kib - m0.anon_kib;
	printf("memory added by the library (KiB), file source\n");
	printf("  %-36s %8s %8s\n", "", "RSS", "anon");
	printf("  %-36s %8ld %8ld\n", "vmgen_init + watcher",
	       m1.rss_kib - m0.rss_kib, m1.anon_kib - m0.anon_kib);
	printf("  %-36s %8ld %8ld\n", "+ 10 callbacks, 2 steps dispatched",
	       m2.rss_kib - m0.rss_kib, anon);
	printf("  (RSS - anon = file-backed, shared pages: the library's "
	       "code, libc code\n   touched first, the counter page)\n");
	printf("  anonymous growth target < 64 KiB  %s\n",
	       bench_label(anon < 64));
	bench_counter_close(&counter);
	if (calls != 20) {
		printf("ERROR: 10 callbacks ran %d times over 2 steps\n",
		       calls);
		return 1;
	}
	return 0;
}
