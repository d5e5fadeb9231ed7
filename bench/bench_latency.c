/* SPDX-License-Identifier: MIT */
/*
 * Dispatch latency of the watcher thread: from the pwrite() of a new
 * counter into the file source to the first instruction of the reseed
 * callback, with nothing else calling the library. The main thread spins
 * on the callback's counter instead of sleeping, so that its own wake-up
 * is not part of the figure. Target: median < 100 us on the host.
 */
#include <sched.h>
#include <stdbool.h>

#include <vmgenid.h>

#include "bench.h"

#define CHANGES 1000
#define WARMUP 20
#define TIMEOUT_NS 1000000000u	/* a lost change, not a slow one */

static uint64_t cb_time;
static uint64_t cb_calls;

static int on_change(const struct vmgen_event *event, void *arg)
{
	__atomic_store_n(&cb_time, bench_now_ns(), __ATOMIC_RELAXED);
	__atomic_add_fetch(&cb_calls, 1, __ATOMIC_RELEASE);
	return 0;
}

int main(void)
{
	static uint64_t lat[CHANGES];
	struct bench_counter counter;
	unsigned int lost = 0;
	size_t n = 0;
	uint64_t median, p99, max;
	int err;

	bench_counter_open(&counter);
	err = vmgen_init(counter.spec, VMGEN_INIT_WATCHER);
	if (err < 0)
		bench_die("vmgen_init", err);
	err = vmgen_callback_register(on_change, NULL, VMGEN_EVENT_ANY);
	if (err < 0)
		bench_die("vmgen_callback_register", err);
	/* Settle the current generation before the first timed change. */
	vmgen_generation();

	for (int i = 0; i < WARMUP + CHANGES; i++) {
		uint64_t before = __atomic_load_n(&cb_calls, __ATOMIC_ACQUIRE);
		uint64_t t0 = bench_now_ns(), now;
		bool seen = false;

		bench_counter_step(&counter);
		do {
			if (__atomic_load_n(&cb_calls, __ATOMIC_ACQUIRE) !=
			    before) {
				seen = true;
				break;
			}
			now = bench_now_ns();
			/* Let the watcher in if it shares our CPU. */
			if (now - t0 > 200000)
				sched_yield();
		} while (now - t0 < TIMEOUT_NS);
		if (!seen) {
			lost++;
			continue;
		}
		if (i >= WARMUP)
			lat[n++] = __atomic_load_n(&cb_time, __ATOMIC_RELAXED)
				   - t0;
	}

	if (n == 0) {
		printf("ERROR: the watcher dispatched none of %d changes\n",
		       WARMUP + CHANGES);
		bench_counter_close(&counter);
		return 1;
	}
	median = bench_percentile(lat, n, 50);
	p99 = bench_percentile(lat, n, 99);
	max = lat[n - 1];
	printf("dispatch latency, file source, watcher thread, %zu changes\n",
	       n);
	printf("  pwrite -> callback start: median %.1f us, p99 %.1f us, "
	       "max %.1f us\n", median / 1e3, p99 / 1e3, max / 1e3);
	printf("  target median < 100 us  %s\n",
	       bench_label(median < 100000));
	bench_counter_close(&counter);
	if (lost) {
		printf("ERROR: %u changes not dispatched within 1 s\n", lost);
		return 1;
	}
	return 0;
}
