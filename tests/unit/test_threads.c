/* SPDX-License-Identifier: MIT */
/*
 * Threads (DESIGN §5 "Thread safety", "Callbacks", "Reseed before use"):
 * 8 threads begin/commit while a stepper moves the file source, another
 * thread registers and unregisters callbacks, and the watcher runs.
 * Every callback runs at most once per generation; the permanent ones run
 * for exactly the same generations; whatever begin returns has been
 * handled by every permanent callback.
 */
#include <pthread.h>
#include <sched.h>

#include "helpers.h"

#define NTHREADS	8
#define NSTEPS		300
#define NPERM		4
#define NTRANS		4
#define MAXGEN		(NSTEPS + 16)

static struct fake src;
static int stop;
static unsigned int counts[NPERM][MAXGEN];
static unsigned int bad;	/* violations seen inside callbacks */
static unsigned long ops, commits_seen;

static int count_cb(const struct vmgen_event *ev, void *p)
{
	int idx = (int)(intptr_t)p;

	if (ev->new_generation >= MAXGEN ||
	    ev->old_generation >= ev->new_generation) {
		__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
		return 0;
	}
	__atomic_fetch_add(&counts[idx][ev->new_generation], 1,
			   __ATOMIC_RELAXED);
	return 0;
}

static void *begin_main(void *arg)
{
	unsigned long commits = 0;

	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		struct vmgen_txn t;
		int i;

		if (vmgen_txn_begin(&t) != 0 || t.generation == 0) {
			__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
			continue;
		}
		/* Reseed before use: all permanent callbacks done for it. */
		for (i = 0; t.generation > 1 && i < NPERM; i++)
			if (t.generation >= MAXGEN ||
			    __atomic_load_n(&counts[i][t.generation],
					    __ATOMIC_RELAXED) != 1)
				__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
		if (vmgen_txn_commit(&t)) {
			commits++;
			__atomic_fetch_add(&commits_seen, 1, __ATOMIC_RELAXED);
		}
		__atomic_fetch_add(&ops, 1, __ATOMIC_RELAXED);
	}
	return (void *)commits;
}

/* A transient callback: never twice for one generation, never backwards. */
struct trans {
	uint64_t last;
};

static int trans_cb(const struct vmgen_event *ev, void *p)
{
	struct trans *t = p;

	if (ev->new_generation <= t->last)
		__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
	t->last = ev->new_generation;
	return 0;
}

static void *churn_main(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		struct trans tr[NTRANS];
		int ids[NTRANS], i;

		for (i = 0; i < NTRANS; i++) {
			tr[i].last = 0;
			ids[i] = vmgen_callback_register(trans_cb, &tr[i],
							 VMGEN_EVENT_ANY);
		}
		sched_yield();
		/* tr[] goes out of scope: unregister must have waited. */
		for (i = 0; i < NTRANS; i++)
			if (vmgen_callback_unregister(ids[i]) != 0)
				__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void threads_stress(void **state)
{
	pthread_t th[NTHREADS], churn;
	unsigned long commits = 0;
	int64_t last;
	int i, g, steps;

	fake_u32(&src, 0);
	assert_int_equal(vmgen_init(spec("file", &src), VMGEN_INIT_WATCHER), 0);
	for (i = 0; i < NPERM; i++)
		assert_true(vmgen_callback_register(count_cb,
				(void *)(intptr_t)i, VMGEN_EVENT_ANY) > 0);
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, begin_main,
						NULL), 0);
	assert_int_equal(pthread_create(&churn, NULL, churn_main, NULL), 0);
	/* Overlap for real: let the threads get going first. */
	while (__atomic_load_n(&ops, __ATOMIC_RELAXED) < 1000)
		sched_yield();
	for (steps = 0; steps < NSTEPS; steps++) {
		assert_int_equal(vmgen_trigger(0), 0);
		sched_yield();
		if (steps % 3 == 0) {	/* else let changes coalesce */
			int64_t g0 = vmgen_generation();

			assert_true(g0 > 0);
		}
	}
	/* No more changes: commits must succeed again. */
	while (__atomic_load_n(&commits_seen, __ATOMIC_RELAXED) < 1000)
		sched_yield();
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NTHREADS; i++) {
		void *c;

		pthread_join(th[i], &c);
		commits += (unsigned long)c;
	}
	pthread_join(churn, NULL);
	last = vmgen_generation();
	print_message("generations: %lld, commits: %lu\n", (long long)last,
		      commits);
	assert_true(last > 1 && last < MAXGEN);
	assert_int_equal(bad, 0);
	assert_true(commits > 0);
	for (g = 2; g <= last; g++) {
		for (i = 0; i < NPERM; i++)
			assert_true(counts[i][g] <= 1);
		for (i = 1; i < NPERM; i++)
			assert_int_equal(counts[i][g], counts[0][g]);
	}
	for (i = 0; i < NPERM; i++)
		assert_int_equal(counts[i][last], 1);
	assert_int_equal(vmgen_watcher_stop(), 0);
	vmgen__test_reset();
	fake_close(&src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(threads_stress),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
