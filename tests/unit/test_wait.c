/* SPDX-License-Identifier: MIT */
/*
 * Eager mode (DESIGN §5 "Eager mode"): vmgen_wait(), vmgen_fd() with
 * vmgen_dispatch(), the watcher thread, with inotify on the file source
 * and the 1 ms tick of a VMClock that cannot notify.
 */
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "helpers.h"

static struct fake src;
static int ran;
static struct timespec ran_at;

static int flag_cb(const struct vmgen_event *ev, void *p)
{
	clock_gettime(CLOCK_MONOTONIC, &ran_at);
	__atomic_fetch_add(&ran, 1, __ATOMIC_RELEASE);
	return 0;
}

static int file_setup(void **state)
{
	reset_setup(state);
	ran = 0;
	fake_u32(&src, 0);
	assert_int_equal(vmgen_init(spec("file", &src), 0), 0);
	return 0;
}

static int file_teardown(void **state)
{
	vmgen__test_reset();
	fake_close(&src);
	return 0;
}

#define TF(fn) cmocka_unit_test_setup_teardown(fn, file_setup, file_teardown)

/* Wait up to about 10 s for a callback: a bound, not a measurement. */
static bool wait_ran(int n)
{
	struct timespec ms = { 0, 1000000 };
	int i;

	for (i = 0; i < 10000; i++) {
		if (__atomic_load_n(&ran, __ATOMIC_ACQUIRE) >= n)
			return true;
		nanosleep(&ms, NULL);
	}
	return false;
}

static void wait_basics(void **state)
{
	assert_int_equal(vmgen_wait(0, 0), 1);		/* differs: at once */
	assert_int_equal(vmgen_wait(7, -1), 1);
	assert_int_equal(vmgen_wait(1, 0), -ETIMEDOUT);
	assert_int_equal(vmgen_wait(1, 20), -ETIMEDOUT);
	fake_u32_write(&src, 1);
	assert_int_equal(vmgen_wait(1, 0), 2);
}

struct waiter {
	pthread_t th;
	int64_t got;
};

static void *wait_main(void *p)
{
	struct waiter *w = p;

	w->got = vmgen_wait(1, -1);
	return NULL;
}

/* Several waiters, no watcher: one polls, all see the change. */
static void several_waiters(void **state)
{
	struct waiter w[6];
	int i;

	assert_true(vmgen_callback_register(flag_cb, NULL, VMGEN_EVENT_VM) > 0);
	for (i = 0; i < 6; i++)
		assert_int_equal(pthread_create(&w[i].th, NULL, wait_main,
						&w[i]), 0);
	for (i = 0; i < 50; i++)
		sched_yield();
	fake_u32_write(&src, 5);
	for (i = 0; i < 6; i++) {
		pthread_join(w[i].th, NULL);
		assert_int_equal(w[i].got, 2);
	}
	assert_int_equal(ran, 1);
}

/* A waiter keeps waiting when another thread handled the change. */
static void waiter_and_lazy_reader(void **state)
{
	struct waiter w;
	int i;

	assert_int_equal(pthread_create(&w.th, NULL, wait_main, &w), 0);
	for (i = 0; i < 50; i++)
		sched_yield();
	fake_u32_write(&src, 9);
	assert_int_equal(vmgen_generation(), 2);	/* handled here */
	pthread_join(w.th, NULL);
	assert_int_equal(w.got, 2);
}

static void fd_and_dispatch(void **state)
{
	struct pollfd pfd = { .events = POLLIN };

	assert_true(vmgen_callback_register(flag_cb, NULL, VMGEN_EVENT_VM) > 0);
	pfd.fd = vmgen_fd();
	assert_true(pfd.fd >= 0);
	assert_int_equal(vmgen_fd(), pfd.fd);		/* stable */
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(vmgen_dispatch(), 0);
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_int_equal(vmgen_dispatch(), 1);
	assert_int_equal(ran, 1);
	assert_int_equal(poll(&pfd, 1, 0), 0);		/* drained */
	assert_int_equal(vmgen_dispatch(), 0);
	assert_int_equal(vmgen_generation(), 2);
}

static void watcher_dispatches(void **state)
{
	struct timespec t0;
	long us;

	assert_true(vmgen_callback_register(flag_cb, NULL, VMGEN_EVENT_VM) > 0);
	assert_int_equal(vmgen_watcher_start(), 0);
	assert_int_equal(vmgen_watcher_start(), -EALREADY);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vmgen_trigger(0), 0);
	/* No call into the library here: the watcher does it. */
	assert_true(wait_ran(1));
	us = (ran_at.tv_sec - t0.tv_sec) * 1000000L +
	     (ran_at.tv_nsec - t0.tv_nsec) / 1000;
	print_message("watcher latency (inotify): %ld us\n", us);
	assert_int_equal(vmgen_wait(1, 10000), 2);
	assert_int_equal(vmgen_watcher_stop(), 0);
	assert_int_equal(vmgen_watcher_stop(), -ESRCH);
	/* Stopped: nothing runs until asked. */
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(ran, 1);
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(ran, 2);
}

static void init_with_watcher(void **state)
{
	vmgen__test_reset();
	assert_int_equal(vmgen_init(spec("file", &src), VMGEN_INIT_WATCHER), 0);
	assert_true(vmgen_callback_register(flag_cb, NULL, VMGEN_EVENT_VM) > 0);
	assert_int_equal(vmgen_watcher_start(), -EALREADY);
	fake_u32_write(&src, 3);
	assert_true(wait_ran(1));
}

static int steps_done;

/* Keep stepping until the waiters have seen enough (bounded). */
static void *step_main(void *p)
{
	int i;

	for (i = 0; i < 100000; i++) {
		if (__atomic_load_n(&steps_done, __ATOMIC_ACQUIRE))
			break;
		(void)vmgen_trigger(0);
		sched_yield();
	}
	return NULL;
}

/* Waiters in a loop with the watcher: each returns a newer generation. */
static void waiters_with_watcher(void **state)
{
	pthread_t stepper;
	int64_t g = 1, n;
	int i;

	assert_int_equal(vmgen_watcher_start(), 0);
	assert_int_equal(pthread_create(&stepper, NULL, step_main, NULL), 0);
	for (i = 0; i < 5; i++) {
		n = vmgen_wait((uint64_t)g, 10000);
		assert_true(n > g);
		g = n;
	}
	__atomic_store_n(&steps_done, 1, __ATOMIC_RELEASE);
	pthread_join(stepper, NULL);
	assert_int_equal(vmgen_watcher_stop(), 0);
}

/* A VMClock without notifications is polled by a 1 ms tick. */
static void vmclock_tick(void **state)
{
	struct fake vc;

	vmgen__test_reset();
	fake_vmclock(&vc, VMCLOCK_MAGIC, 4096, VMCLOCK_FLAG_VM_GEN_COUNTER, 1);
	assert_int_equal(vmgen_init(spec("vmclock", &vc), VMGEN_INIT_WATCHER),
			 0);
	assert_true(vmgen_callback_register(flag_cb, NULL, VMGEN_EVENT_VM) > 0);
	vmclock_set_gen(&vc, 99);
	assert_true(wait_ran(1));
	assert_int_equal(vmgen_wait(1, 10000), 2);
	vmgen__test_reset();
	fake_close(&vc);
}

static void none_waits(void **state)
{
	vmgen__test_reset();
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_true(vmgen_fd() >= 0);
	assert_int_equal(vmgen_wait(1, 10), -ETIMEDOUT);
	assert_int_equal(vmgen_dispatch(), 0);
	assert_int_equal(vmgen_watcher_start(), 0);
	assert_int_equal(vmgen_watcher_stop(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TF(wait_basics),
		TF(several_waiters),
		TF(waiter_and_lazy_reader),
		TF(fd_and_dispatch),
		TF(watcher_dispatches),
		TF(init_with_watcher),
		TF(waiters_with_watcher),
		TF(vmclock_tick),
		TF(none_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
