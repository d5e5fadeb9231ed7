/* SPDX-License-Identifier: MIT */
/*
 * Callbacks at scale: the time one generation step takes to dispatch with
 * 1, 100 and 10,000 registered callbacks (lazy dispatch: the step is
 * handled by vmgen_generation() in this thread), and the cost of one
 * register and one unregister. The per-callback cost, (t(N) - t(1)) /
 * (N - 1), should not grow with N: dispatch is a walk of a list.
 */
#include <stdbool.h>
#include <stdlib.h>

#include <vmgenid.h>

#include "bench.h"

#define MAX_CALLBACKS 10000
#define UNREGISTER_BUDGET_NS 10000000000ull	/* stop early if quadratic */

static uint64_t calls;

static int on_change(const struct vmgen_event *event, void *arg)
{
	calls++;	/* only this thread dispatches: no watcher */
	return 0;
}

/* Median nanoseconds to dispatch one step to nregistered callbacks. */
static uint64_t time_dispatch(struct bench_counter *counter, int nregistered,
			      int reps)
{
	uint64_t *t = calloc((size_t)reps, sizeof(*t));
	uint64_t median;

	if (!t)
		bench_die("calloc", ENOMEM);
	for (int i = 0; i < reps; i++) {
		uint64_t before = calls, t0;
		int64_t gen;

		bench_counter_step(counter);
		t0 = bench_now_ns();
		gen = vmgen_generation();
		t[i] = bench_now_ns() - t0;
		if (gen < 0)
			bench_die("vmgen_generation", (int)gen);
		if (calls - before != (uint64_t)nregistered) {
			printf("ERROR: one step ran %llu callbacks, %d are "
			       "registered\n",
			       (unsigned long long)(calls - before),
			       nregistered);
			exit(1);
		}
	}
	median = bench_percentile(t, (size_t)reps, 50);
	free(t);
	return median;
}

/* The dispatch time beyond the 1-callback case, per extra callback. */
static double per_callback(const uint64_t *t, int s, int n)
{
	return ((double)t[s] - (double)t[0]) / (n - 1);
}

int main(void)
{
	static int ids[MAX_CALLBACKS];
	static const int sizes[] = { 1, 100, MAX_CALLBACKS };
	static const int reps[] = { 1000, 300, 30 };
	uint64_t t_dispatch[3], t_reg = 0, t_unreg, t0;
	struct bench_counter counter;
	int nreg = 0, nunreg = 0, err;

	bench_counter_open(&counter);
	err = vmgen_init(counter.spec, 0);
	if (err < 0)
		bench_die("vmgen_init", err);
	vmgen_generation();

	for (int s = 0; s < 3; s++) {
		t0 = bench_now_ns();
		for (; nreg < sizes[s]; nreg++) {
			ids[nreg] = vmgen_callback_register(on_change, NULL,
							    VMGEN_EVENT_ANY);
			if (ids[nreg] < 0)
				bench_die("vmgen_callback_register",
					  ids[nreg]);
		}
		if (s == 2)	/* the 9,900 registered on top of 100 */
			t_reg = bench_now_ns() - t0;
		t_dispatch[s] = time_dispatch(&counter, nreg, reps[s]);
	}

	t0 = bench_now_ns();
	for (; nunreg < nreg; nunreg++) {
		err = vmgen_callback_unregister(ids[nunreg]);
		if (err < 0)
			bench_die("vmgen_callback_unregister", err);
		if (bench_now_ns() - t0 > UNREGISTER_BUDGET_NS)
			break;
	}
	t_unreg = bench_now_ns() - t0;
	if (nunreg < nreg)
		nunreg++;	/* the one that ran out the budget counted */

	printf("callbacks at scale, file source, lazy dispatch (median)\n");
	printf("  %10s %14s %18s\n", "callbacks", "dispatch us",
	       "ns per callback");
	for (int s = 0; s < 3; s++) {
		if (s == 0)
			printf("  %10d %14.2f %18s\n", sizes[s],
			       t_dispatch[s] / 1e3, "(fixed cost)");
		else
			printf("  %10d %14.2f %18.1f\n", sizes[s],
			       t_dispatch[s] / 1e3,
			       per_callback(t_dispatch, s, sizes[s]));
	}
	printf("  per-callback ratio 10000/100: %.2f (1.0 = linear)\n",
	       per_callback(t_dispatch, 2, MAX_CALLBACKS) /
	       per_callback(t_dispatch, 1, 100));
	printf("  register:   %.2f us each (9,900 on top of 100)\n",
	       t_reg / 1e3 / (MAX_CALLBACKS - 100));
	printf("  unregister: %.2f us each (%d of %d, oldest first)\n",
	       t_unreg / 1e3 / nunreg, nunreg, nreg);
	bench_counter_close(&counter);
	return 0;
}
