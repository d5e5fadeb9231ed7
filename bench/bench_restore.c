/* SPDX-License-Identifier: MIT */
/*
 * Restore to callbacks, on the host: the library's own cost of handling a
 * restore seen through the GUID page, from the store of a new GUID into
 * the page to the end of the last of N reseed callbacks (N = 1, 2), each
 * doing a real reseed (getrandom() of a 32-byte key into a ChaCha-like
 * state). The restore is handled lazily, by the first vmgen_txn_begin()
 * after it: the GUID page cannot be polled, so the watcher thread does not
 * see a GUID change (it wakes on the counter, which the module bumps after
 * its reseed on the ACPI notification); the run checks that too.
 *
 * A memfd stands in for /dev/sysgenid, as in tests/unit/test_guid.c: page 0
 * holds the counter, page 1 the GUID at offset 40 (QEMU's layout), and the
 * library's test hook plays the module's SYSGENID_HANDLE_GUID_CHANGE: the
 * first call for a new GUID records it and bumps the counter, where the
 * module mixes it in and reseeds the kernel's RNG first. That reseed and
 * a VM's resume are not in these figures; tests/vm/clone has the guest's.
 *
 * Baselines, interleaved with the restores so that the machine's noise
 * falls on all of them alike: the same callbacks called directly, a
 * counter step (no GUID change) handled by vmgen_txn_begin(), one
 * vmgen_txn_begin() with nothing changed, and two clock reads. Fails only
 * when the library misbehaves: a callback not run exactly once per
 * change, a commit that succeeds across a change.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>

#include <linux/sysgenid.h>

#include <vmgenid.h>

#include "bench.h"
#include "vmgenid-testing.h"

#define CHANGES 1000
#define WARMUP 20
#define MAX_CALLBACKS 2
#define GUID_OFFSET 40		/* where QEMU puts it in its page */
#define WATCHER_CHANGES 5
#define WATCHER_WAIT_NS 100000000u	/* 100 ms per change */

/* The module's side: its copy of the handled GUID, and what it did. */
static struct {
	void *map;		/* both pages, writable: we are the module */
	uint64_t handled[2];
	uint64_t handles;	/* SYSGENID_HANDLE_GUID_CHANGE calls */
	uint64_t reseeds;	/* GUID changes handled (counter bumps) */
	uint64_t next_guid;
} mod;

static uint32_t *counter_word(void)
{
	return (uint32_t *)mod.map;
}

static uint64_t *guid_words(void)
{
	return (uint64_t *)(void *)((char *)mod.map + 4096 + GUID_OFFSET);
}

/* The hypervisor writes a new GUID (here: while the guest "runs"). */
static void write_guid(void)
{
	uint64_t *g = guid_words();

	mod.next_guid++;
	__atomic_store_n(&g[0], mod.next_guid * 0x9e3779b97f4a7c15ull,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&g[1], ~mod.next_guid, __ATOMIC_RELEASE);
}

/* driver/guid_change.c without the kernel: once per GUID, bump after. */
static int fake_ioctl(int fd, unsigned long request, unsigned long arg)
{
	const uint64_t *g = guid_words();
	uint64_t now[2];

	(void)fd;
	(void)arg;
	if (request == SYSGENID_GET_GUID_OFFSET)
		return GUID_OFFSET;
	if (request != SYSGENID_HANDLE_GUID_CHANGE) {
		errno = ENOTTY;
		return -1;
	}
	__atomic_add_fetch(&mod.handles, 1, __ATOMIC_RELAXED);
	now[0] = __atomic_load_n(&g[0], __ATOMIC_ACQUIRE);
	now[1] = __atomic_load_n(&g[1], __ATOMIC_ACQUIRE);
	if (now[0] != mod.handled[0] || now[1] != mod.handled[1]) {
		mod.handled[0] = now[0];
		mod.handled[1] = now[1];
		__atomic_add_fetch(&mod.reseeds, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(counter_word(), 1, __ATOMIC_RELEASE);
	}
	return 0;
}

/* What a reseed callback keeps: a ChaCha20-like generator's state. */
struct rng {
	uint32_t key[8];
	uint64_t block;		/* block counter */
	uint8_t buf[64];	/* keystream not yet handed out */
	unsigned int avail;
	uint64_t calls;		/* reseeds, library and direct */
};

static struct rng rngs[MAX_CALLBACKS];
static uint64_t last_end;	/* when the last callback to run ended */

static int on_restore(const struct vmgen_event *event, void *arg)
{
	struct rng *r = arg;

	(void)event;
	if (getrandom(r->key, sizeof(r->key), 0) != (ssize_t)sizeof(r->key))
		return -errno;	/* fail closed: nothing commits */
	r->block = 0;
	explicit_bzero(r->buf, sizeof(r->buf));
	r->avail = 0;
	__atomic_add_fetch(&r->calls, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&last_end, bench_now_ns(), __ATOMIC_RELEASE);
	return 0;
}

__attribute__((format(printf, 1, 2)))
static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("ERROR: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

/* Every registered callback ran exactly once since *before. */
/* One step: the old transaction fails, the new one is one later and commits. */
static void check_step(const struct vmgen_txn *old, const struct vmgen_txn *t,
		       const char *what)
{
	if (vmgen_txn_commit(old))
		fail("a transaction of generation %llu committed across a "
		     "%s (now %llu)", (unsigned long long)old->generation,
		     what, (unsigned long long)t->generation);
	if (t->generation != old->generation + 1 || !vmgen_txn_commit(t))
		fail("after a %s: generation %llu, expected %llu, or it did "
		     "not commit", what, (unsigned long long)t->generation,
		     (unsigned long long)old->generation + 1);
}

static void check_calls(int n, uint64_t before[], const char *what)
{
	for (int k = 0; k < n; k++) {
		uint64_t now = __atomic_load_n(&rngs[k].calls,
					       __ATOMIC_ACQUIRE);

		if (now != before[k] + 1) {
			printf("ERROR: %s: callback %d ran %llu times for one "
			       "change\n", what, k,
			       (unsigned long long)(now - before[k]));
			exit(1);
		}
		before[k] = now;
	}
}

static void snapshot_calls(int n, uint64_t out[])
{
	for (int k = 0; k < n; k++)
		out[k] = __atomic_load_n(&rngs[k].calls, __ATOMIC_ACQUIRE);
}

struct series {
	const char *name;
	uint64_t v[CHANGES];
};

enum {
	S_RESTORE_CB,		/* GUID store -> end of the last callback */
	S_RESTORE_BEGIN,	/* GUID store -> begin() returned */
	S_DIRECT,		/* the callbacks, called directly */
	S_COUNTER,		/* counter bump -> begin() returned */
	S_UNCHANGED,		/* begin() with nothing changed */
	S_GETPID,		/* one syscall(SYS_getpid) */
	S_CLOCK,		/* two clock reads */
	S_COUNT
};

static struct series series[S_COUNT] = {
	{ "restore: GUID store -> last callback end" },
	{ "restore: GUID store -> begin() returned" },
	{ "baseline: the callbacks called directly" },
	{ "baseline: counter step -> begin() returned" },
	{ "baseline: begin(), nothing changed" },
	{ "baseline: one getpid() syscall" },
	{ "baseline: two clock reads, nothing between" },
};

/* One round of every measurement; i < 0 is warm-up, not recorded. */
static void round_once(int n, int i)
{
	struct vmgen_event ev = { .reasons = VMGEN_EVENT_VM };
	uint64_t calls[MAX_CALLBACKS], t0, t1, reseeds;
	struct vmgen_txn old, t;
	uint64_t r[S_COUNT];
	int ret;

	/* The same callbacks, no library. */
	t0 = bench_now_ns();
	for (int k = 0; k < n; k++)
		if (on_restore(&ev, &rngs[k]) < 0)
			bench_die("getrandom", errno);
	r[S_DIRECT] = __atomic_load_n(&last_end, __ATOMIC_ACQUIRE) - t0;

	t0 = bench_now_ns();
	t1 = bench_now_ns();
	r[S_CLOCK] = t1 - t0;

	t0 = bench_now_ns();
	bench_sink((uint64_t)syscall(SYS_getpid));
	t1 = bench_now_ns();
	r[S_GETPID] = t1 - t0;

	t0 = bench_now_ns();
	ret = vmgen_txn_begin(&t);
	t1 = bench_now_ns();
	r[S_UNCHANGED] = t1 - t0;
	if (ret < 0)
		bench_die("vmgen_txn_begin", ret);
	if (!vmgen_txn_commit(&t))
		fail("a pair did not commit with nothing changing");

	/* The restore: a new GUID, then the first begin() after it. */
	old = t;
	snapshot_calls(n, calls);
	reseeds = __atomic_load_n(&mod.reseeds, __ATOMIC_RELAXED);
	t0 = bench_now_ns();
	write_guid();
	/* Warm-up rounds, untimed: the fast path alone refuses the old one. */
	if (i < 0 && vmgen_txn_commit(&old))
		fail("a transaction committed right after a GUID store");
	ret = vmgen_txn_begin(&t);
	t1 = bench_now_ns();
	r[S_RESTORE_BEGIN] = t1 - t0;
	r[S_RESTORE_CB] = __atomic_load_n(&last_end, __ATOMIC_ACQUIRE) - t0;
	if (ret < 0)
		bench_die("vmgen_txn_begin after a GUID change", ret);
	check_calls(n, calls, "GUID change");
	if (__atomic_load_n(&mod.reseeds, __ATOMIC_RELAXED) != reseeds + 1)
		fail("the module handled %llu GUID changes for one",
		     (unsigned long long)(__atomic_load_n(&mod.reseeds,
		     __ATOMIC_RELAXED) - reseeds));
	check_step(&old, &t, "GUID change");

	/* The same step without a GUID change: the counter alone. */
	old = t;
	t0 = bench_now_ns();
	__atomic_add_fetch(counter_word(), 1, __ATOMIC_RELEASE);
	ret = vmgen_txn_begin(&t);
	t1 = bench_now_ns();
	r[S_COUNTER] = t1 - t0;
	if (ret < 0)
		bench_die("vmgen_txn_begin after a counter step", ret);
	check_calls(n, calls, "counter step");
	check_step(&old, &t, "counter step");

	if (i >= 0)
		for (int s = 0; s < S_COUNT; s++)
			series[s].v[i] = r[s];
}

static void run(int n)
{
	uint64_t handles = mod.handles, med[S_COUNT], p99[S_COUNT];
	double own_cb, own_all;

	for (int i = -WARMUP; i < CHANGES; i++)
		round_once(n, i);
	handles = mod.handles - handles;
	for (int s = 0; s < S_COUNT; s++) {
		med[s] = bench_percentile(series[s].v, CHANGES, 50);
		p99[s] = bench_percentile(series[s].v, CHANGES, 99);
	}
	printf("%d reseed callback%s (getrandom 32 bytes each), %d GUID "
	       "changes, lazy (first begin() after the change)\n", n,
	       n > 1 ? "s" : "", CHANGES);
	printf("  %-44s %9s %9s\n", "", "median", "p99");
	for (int s = 0; s < S_COUNT; s++)
		printf("  %-44s %6.2f us %6.2f us\n", series[s].name,
		       med[s] / 1e3, p99[s] / 1e3);
	printf("  ratios of medians: restore / callbacks direct %.2fx, "
	       "restore / counter step %.2fx,\n"
	       "    restore / unchanged begin() %.0fx\n",
	       (double)med[S_RESTORE_CB] / (double)med[S_DIRECT],
	       (double)med[S_RESTORE_BEGIN] / (double)med[S_COUNTER],
	       (double)med[S_RESTORE_BEGIN] / (double)med[S_UNCHANGED]);
	own_cb = (double)med[S_RESTORE_CB] - (double)med[S_DIRECT];
	own_all = (double)med[S_RESTORE_BEGIN] - (double)med[S_DIRECT];
	printf("  library's own share (restore - direct): %.2f us to the last "
	       "callback's end,\n    %.2f us to begin()'s return = %.1f "
	       "getpid() syscalls\n", own_cb / 1e3, own_all / 1e3,
	       own_all / (double)med[S_GETPID]);
	printf("  HANDLE ioctls per GUID change: %.2f\n",
	       (double)handles / (WARMUP + CHANGES));
}

/*
 * The watcher thread running: does it handle a GUID change by itself?
 * Only the counter (through the device's poll, here inotify on the
 * stand-in) wakes it, and nothing bumps the counter until someone asks
 * the module or its ACPI path runs. Counts how many changes it handled
 * within WATCHER_WAIT_NS; then a begin() must run each callback once.
 */
static void watcher_check(int n)
{
	uint64_t calls[MAX_CALLBACKS], t0, seen;
	struct timespec ms = { 0, 1000000 };
	struct vmgen_txn t;
	int ret, done = 0;

	ret = vmgen_watcher_start();
	if (ret < 0) {
		printf("watcher: not started (%s); not checked\n",
		       vmgen_strerror(ret));
		return;
	}
	for (int i = 0; i < WATCHER_CHANGES; i++) {
		snapshot_calls(n, calls);
		seen = calls[n - 1];
		ret = vmgen_txn_begin(&t);
		if (ret < 0)
			bench_die("vmgen_txn_begin, watcher running", ret);
		write_guid();
		if (vmgen_txn_commit(&t))
			fail("a transaction committed right after a GUID "
			     "store, watcher running");
		t0 = bench_now_ns();
		while (__atomic_load_n(&rngs[n - 1].calls, __ATOMIC_ACQUIRE)
		       == seen && bench_now_ns() - t0 < WATCHER_WAIT_NS)
			nanosleep(&ms, NULL);
		if (__atomic_load_n(&rngs[n - 1].calls, __ATOMIC_ACQUIRE)
		    != seen)
			done++;
		ret = vmgen_txn_begin(&t);
		if (ret < 0)
			bench_die("vmgen_txn_begin, watcher running", ret);
		check_calls(n, calls, "GUID change, watcher running");
	}
	vmgen_watcher_stop();
	printf("watcher thread running: it handled %d of %d GUID changes "
	       "within %u ms each%s\n", done, WATCHER_CHANGES,
	       WATCHER_WAIT_NS / 1000000,
	       done ? "" : " (the GUID page cannot be polled: only lazy "
	       "handling is measured)");
}

int main(void)
{
	char spec[64];
	const char *why = NULL;
	int fd, ret;

	fd = memfd_create("vmgenid-bench-restore", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 8192) < 0)
		bench_die("memfd", errno);
	mod.map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mod.map == MAP_FAILED)
		bench_die("mmap memfd", errno);
	__atomic_store_n(counter_word(), 1, __ATOMIC_RELEASE);
	write_guid();
	fake_ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0);	/* at module load */
	mod.handles = mod.reseeds = 0;

	vmgen__test_guid_ioctl(fake_ioctl);
	snprintf(spec, sizeof(spec), "sysgenid:/proc/self/fd/%d", fd);
	ret = vmgen_init(spec, 0);
	if (ret < 0)
		bench_die("vmgen_init", ret);
	if (vmgen_source_race_free(&why) != 1) {
		printf("ERROR: the GUID page is not in use: %s\n",
		       why ? why : "(no reason)");
		return 1;
	}
	for (int n = 1; n <= MAX_CALLBACKS; n++) {
		ret = vmgen_callback_register(on_restore, &rngs[n - 1],
					      VMGEN_EVENT_VM);
		if (ret < 0)
			bench_die("vmgen_callback_register", ret);
		run(n);
	}
	watcher_check(MAX_CALLBACKS);
	vmgen__test_guid_ioctl(NULL);
	return 0;
}
