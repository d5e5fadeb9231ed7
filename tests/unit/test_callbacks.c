/* SPDX-License-Identifier: MIT */
/*
 * Callbacks (DESIGN §5 "Callbacks", "Reseed before use", "Fail closed",
 * "Errors"): order, filters, coalescing, failures, re-entrancy.
 */
#include <pthread.h>
#include <time.h>

#include "helpers.h"

#define MAXLOG 64

struct log {
	int n;
	int who[MAXLOG];
	struct vmgen_event ev[MAXLOG];
};

static struct log lg;
static struct fake src;

struct cbarg {
	int who;
	int ret;		/* what to return */
	int calls;
	int other_id;		/* for callbacks that unregister another */
	int self_id;
	int64_t seen_gen;	/* vmgen_generation() inside the callback */
};

static int rec(const struct vmgen_event *ev, void *p)
{
	struct cbarg *a = p;

	a->calls++;
	if (lg.n < MAXLOG) {
		lg.who[lg.n] = a->who;
		lg.ev[lg.n] = *ev;
		lg.n++;
	}
	return a->ret;
}

static int src_setup(void **state)
{
	reset_setup(state);
	memset(&lg, 0, sizeof(lg));
	fake_u32(&src, 0);
	assert_int_equal(vmgen_init(spec("file", &src), 0), 0);
	return 0;
}

static int src_teardown(void **state)
{
	vmgen__test_reset();
	fake_close(&src);
	return 0;
}

#define TS(fn) cmocka_unit_test_setup_teardown(fn, src_setup, src_teardown)

static void bump(void)
{
	assert_int_equal(vmgen_trigger(0), 0);
}

static void order_and_event(void **state)
{
	struct cbarg a = { .who = 1 }, b = { .who = 2 }, c = { .who = 3 };
	struct vmgen_txn t;
	int ia, ib, ic;

	ia = vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY);
	ib = vmgen_callback_register(rec, &b, VMGEN_EVENT_VM);
	ic = vmgen_callback_register(rec, &c, VMGEN_EVENT_ANY);
	assert_true(ia > 0 && ib > ia && ic > ib);
	/* Registration alone runs nothing. */
	assert_int_equal(vmgen_generation(), 1);
	assert_int_equal(lg.n, 0);
	bump();
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_int_equal(t.generation, 2);
	assert_int_equal(lg.n, 3);
	assert_int_equal(lg.who[0], 1);
	assert_int_equal(lg.who[1], 2);
	assert_int_equal(lg.who[2], 3);
	assert_int_equal(lg.ev[0].reasons, VMGEN_EVENT_VM);
	assert_int_equal(lg.ev[0].reserved, 0);
	assert_int_equal(lg.ev[0].old_generation, 1);
	assert_int_equal(lg.ev[0].new_generation, 2);
	assert_true(vmgen_txn_commit(&t));
}

/* A callback that wants only forks does not run for a VM change. */
static void event_filter(void **state)
{
	struct cbarg f = { .who = 1 }, v = { .who = 2 };

	assert_true(vmgen_callback_register(rec, &f, VMGEN_EVENT_FORK) > 0);
	assert_true(vmgen_callback_register(rec, &v, VMGEN_EVENT_VM) > 0);
	bump();
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(f.calls, 0);
	assert_int_equal(v.calls, 1);
}

static void coalescing(void **state)
{
	struct cbarg a = { .who = 1 };

	assert_true(vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY) > 0);
	bump();
	bump();
	bump();
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(a.calls, 1);
	assert_int_equal(lg.ev[0].old_generation, 1);
	assert_int_equal(lg.ev[0].new_generation, 2);
}

/* Fail closed: no commit, begin reports, a later success publishes. */
static void fail_closed(void **state)
{
	struct cbarg a = { .who = 1 }, b = { .who = 2, .ret = -EIO },
		     c = { .who = 3 };
	struct vmgen_txn t0, t;

	assert_true(vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY) > 0);
	assert_true(vmgen_callback_register(rec, &b, VMGEN_EVENT_ANY) > 0);
	assert_true(vmgen_callback_register(rec, &c, VMGEN_EVENT_ANY) > 0);
	assert_int_equal(vmgen_txn_begin(&t0), 0);
	bump();
	assert_false(vmgen_txn_commit(&t0));
	assert_int_equal(vmgen_txn_begin(&t), -EIO);
	assert_int_equal(t.generation, 0);
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_generation(), -EIO);
	assert_int_equal(a.calls, 1);		/* done for 2: not rerun */
	assert_int_equal(b.calls, 2);
	assert_int_equal(c.calls, 0);		/* after the failure: not run */
	assert_false(vmgen_txn_commit(&t0));
	/* Positive returns are not errnos: reported as -EINVAL. */
	b.ret = 5;
	assert_int_equal(vmgen_generation(), -EINVAL);
	b.ret = 0;
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_int_equal(t.generation, 2);
	assert_true(vmgen_txn_commit(&t));
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 4);
	assert_int_equal(c.calls, 1);
}

/* A new step while one is pending: every callback runs once for it. */
static void fail_then_new_step(void **state)
{
	struct cbarg a = { .who = 1 }, b = { .who = 2, .ret = -EIO };

	assert_true(vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY) > 0);
	assert_true(vmgen_callback_register(rec, &b, VMGEN_EVENT_ANY) > 0);
	bump();
	assert_int_equal(vmgen_generation(), -EIO);
	bump();
	b.ret = 0;
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(a.calls, 2);
	assert_int_equal(b.calls, 2);
	assert_int_equal(lg.ev[lg.n - 1].old_generation, 1);
	assert_int_equal(lg.ev[lg.n - 1].new_generation, 3);
}

/* Registered while a step is pending: it runs for that step too. */
static void register_while_pending(void **state)
{
	struct cbarg a = { .who = 1, .ret = -EAGAIN }, b = { .who = 2 };

	assert_true(vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY) > 0);
	bump();
	assert_int_equal(vmgen_generation(), -EAGAIN);
	assert_true(vmgen_callback_register(rec, &b, VMGEN_EVENT_ANY) > 0);
	a.ret = 0;
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(b.calls, 1);
}

static int unreg_self(const struct vmgen_event *ev, void *p)
{
	struct cbarg *a = p;

	rec(ev, p);
	assert_int_equal(vmgen_callback_unregister(a->self_id), 0);
	assert_int_equal(vmgen_callback_unregister(a->self_id), -ENOENT);
	return 0;
}

static int unreg_other(const struct vmgen_event *ev, void *p)
{
	struct cbarg *a = p;

	rec(ev, p);
	if (a->other_id)
		assert_int_equal(vmgen_callback_unregister(a->other_id), 0);
	a->other_id = 0;
	return 0;
}

static struct cbarg late = { .who = 9 };
static struct vmgen_txn inside;	/* begun inside a callback */

static int reg_new(const struct vmgen_event *ev, void *p)
{
	struct cbarg *a = p;

	rec(ev, p);
	a->seen_gen = vmgen_generation();
	if (a->calls == 1) {
		struct vmgen_txn t;

		assert_true(vmgen_callback_register(rec, &late,
						    VMGEN_EVENT_ANY) > 0);
		/* Inside: the generation being dispatched, not committable. */
		assert_int_equal(vmgen_txn_begin(&t), 0);
		assert_int_equal(t.generation, ev->new_generation);
		assert_false(vmgen_txn_commit(&t));
		inside = t;
		assert_int_equal(vmgen_wait(0, 0), -EDEADLK);
		assert_int_equal(vmgen_dispatch(), -EDEADLK);
		assert_int_equal(vmgen_watcher_stop(), -EDEADLK);
		assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
		assert_int_equal(source_gen(), 1);
	}
	return 0;
}

static void reentrancy(void **state)
{
	struct cbarg s = { .who = 1 }, o = { .who = 2 }, victim = { .who = 3 },
		     r = { .who = 4 };

	s.self_id = vmgen_callback_register(unreg_self, &s, VMGEN_EVENT_ANY);
	assert_true(s.self_id > 0);
	o.self_id = vmgen_callback_register(unreg_other, &o, VMGEN_EVENT_ANY);
	victim.self_id = vmgen_callback_register(rec, &victim, VMGEN_EVENT_ANY);
	o.other_id = victim.self_id;
	assert_true(vmgen_callback_register(reg_new, &r, VMGEN_EVENT_ANY) > 0);
	bump();
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(s.calls, 1);
	assert_int_equal(o.calls, 1);
	assert_int_equal(victim.calls, 0);	/* removed before its turn */
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.seen_gen, 2);
	assert_int_equal(late.calls, 1);	/* registered during: ran for 2 */
	/* Begun inside, commits once the dispatch has published it. */
	assert_true(vmgen_txn_commit(&inside));
	bump();
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(s.calls, 1);
	assert_int_equal(r.calls, 2);
	assert_int_equal(late.calls, 2);
	assert_int_equal(vmgen_callback_unregister(victim.self_id), -ENOENT);
}

/*
 * vmgen_trigger() inside a callback: allowed (no -EDEADLK), it does not
 * dispatch there; its change is a new step that the call which ran the
 * dispatch runs next, before it returns.
 */
static int trigger_once(const struct vmgen_event *ev, void *p)
{
	struct cbarg *a = p;

	rec(ev, p);
	if (a->calls == 1) {
		assert_int_equal(vmgen_trigger(0), 0);
		assert_int_equal(source_gen(), 2);
		/* Not dispatched here: still the step being dispatched. */
		assert_int_equal(vmgen_generation(), ev->new_generation);
	}
	return 0;
}

static void trigger_inside(void **state)
{
	struct cbarg a = { .who = 1 };

	assert_true(vmgen_callback_register(trigger_once, &a,
					    VMGEN_EVENT_ANY) > 0);
	bump();
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(a.calls, 2);
	assert_int_equal(lg.ev[0].old_generation, 1);
	assert_int_equal(lg.ev[0].new_generation, 2);
	assert_int_equal(lg.ev[1].reasons, VMGEN_EVENT_VM);
	assert_int_equal(lg.ev[1].old_generation, 2);
	assert_int_equal(lg.ev[1].new_generation, 3);
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(a.calls, 2);
}

/* After unregister returns, the callback is not running. */
struct slow {
	int in, out;
};

static int slow_cb(const struct vmgen_event *ev, void *p)
{
	struct slow *s = p;
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	__atomic_store_n(&s->in, 1, __ATOMIC_RELEASE);
	nanosleep(&ts, NULL);
	__atomic_store_n(&s->out, 1, __ATOMIC_RELEASE);
	return 0;
}

static void *gen_main(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)vmgen_generation();
}

static void unregister_waits(void **state)
{
	struct slow s = { 0, 0 };
	pthread_t th;
	void *ret;
	int id;

	id = vmgen_callback_register(slow_cb, &s, VMGEN_EVENT_ANY);
	assert_true(id > 0);
	bump();
	assert_int_equal(pthread_create(&th, NULL, gen_main, NULL), 0);
	while (!__atomic_load_n(&s.in, __ATOMIC_ACQUIRE))
		sched_yield();
	assert_int_equal(vmgen_callback_unregister(id), 0);
	assert_int_equal(__atomic_load_n(&s.out, __ATOMIC_ACQUIRE), 1);
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, 2);
	assert_int_equal(vmgen_callback_unregister(id), -ENOENT);
}

static void bad_arguments(void **state)
{
	struct cbarg a = { .who = 1 };
	int id;

	assert_int_equal(vmgen_callback_register(NULL, NULL, VMGEN_EVENT_VM),
			 -EINVAL);
	assert_int_equal(vmgen_callback_register(rec, &a, 0), -EINVAL);
	assert_int_equal(vmgen_callback_register(rec, &a, 1u << 5), -EINVAL);
	assert_int_equal(vmgen_callback_unregister(0), -EINVAL);
	assert_int_equal(vmgen_callback_unregister(-3), -EINVAL);
	assert_int_equal(vmgen_callback_unregister(12345), -ENOENT);
	id = vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY);
	assert_int_equal(vmgen_callback_unregister(id), 0);
	assert_int_equal(vmgen_callback_unregister(id), -ENOENT);
	/* Ids are never reused. */
	assert_true(vmgen_callback_register(rec, &a, VMGEN_EVENT_ANY) > id);
	assert_int_equal(vmgen_txn_begin(NULL), -EINVAL);
	assert_false(vmgen_txn_commit(NULL));
	assert_int_equal(vmgen__txn_begin_slow(NULL), -EINVAL);
	assert_int_equal(vmgen_wait(1, -2), -EINVAL);
	assert_int_equal(vmgen_wait_watchers(-2), -EINVAL);
	assert_null(vmgen_source_name(-1));
	assert_null(vmgen_source_name(VMGEN_SOURCE_COUNT));
	assert_null(vmgen_source_rejected(-1));
	assert_null(vmgen_source_rejected(99));
	assert_int_equal(vmgen_watcher_stop(), -ESRCH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TS(order_and_event),
		TS(event_filter),
		TS(coalescing),
		TS(fail_closed),
		TS(fail_then_new_step),
		TS(register_while_pending),
		TS(reentrancy),
		TS(trigger_inside),
		TS(unregister_waits),
		TS(bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
