/* SPDX-License-Identifier: MIT */
/*
 * The combined generation: observe the source and fork, fold what was seen
 * into one step, dispatch the callbacks for it, publish it for the fast
 * path. Fail closed: nothing is published until every callback succeeded.
 */
#include <errno.h>

#include "vmgenid-internal.h"

VMGEN_PUBLIC const struct vmgen__fastpath *vmgen__fastpath;
VMGEN_PUBLIC struct vmgen__fast vmgen__fast;

/*
 * The seqlock discipline the inline vmgen__fast_generation() expects: a
 * reader that sees the new source_seen (acquire) sees generation 0 or the
 * new one when it re-reads it, never the old one.
 */
static void publish_view(struct vmgen__local *local, uint64_t generation,
			 uint64_t seen)
{
	__atomic_store_n(&local->generation, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&local->source_seen, seen, __ATOMIC_RELEASE);
	__atomic_store_n(&local->generation, generation, __ATOMIC_RELEASE);
}

/*
 * Both views: 0.1's inline code compares the counter alone, ours the
 * counter XOR the GUID words (zeros without a GUID page).
 */
void vmgen_publish_locked(uint64_t generation, uint64_t seen)
{
	publish_view(&vmgen_g.page->local, generation, seen);
	publish_view(&vmgen_g.page->fast, generation, seen ^ vmgen_g.guid_fold);
}

bool vmgen_in_dispatch_locked(void)
{
	return vmgen_g.dispatching &&
	       pthread_equal(vmgen_g.dispatcher, pthread_self());
}

/*
 * vmgen_enter() for the calls that would wait for the very dispatch they
 * are called from (wait, dispatch, watcher start and stop): -EDEADLK
 * inside a callback.
 */
int vmgen_enter_outside_callback(void)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	if (vmgen_in_dispatch_locked()) {
		vmgen_unlock();
		return -EDEADLK;
	}
	return 0;
}

/* Fold a fork and any source change seen now into at most one step. */
static int observe_locked(void)
{
	bool step = false, moved = false;
	uint64_t now;
	int ret;

	/* The GUID variant: its change, once the kernel has reseeded. */
	if (vmgen_g.ops->confirm) {
		ret = vmgen_g.ops->confirm();
		if (ret < 0)
			return ret;
		moved = ret > 0;
	}
	ret = vmgen_source_read_locked(&now);
	if (ret < 0)
		return ret;
	if (vmgen_g.fork_seen) {
		vmgen_g.fork_seen = false;
		vmgen_g.reasons |= VMGEN_EVENT_FORK;
		step = true;
	}
	if (now != vmgen_g.src_seen || moved) {
		vmgen_g.src_seen = now;
		vmgen_g.reasons |= VMGEN_EVENT_VM;
		step = true;
	}
	if (step)
		vmgen_g.target++;
	/* none under auto, waiting: the source may have appeared */
	vmgen_reprobe_locked();
	return 0;
}

static int dispatch_locked(void)
{
	uint64_t target = vmgen_g.target, old = vmgen_g.handled, seq;
	uint32_t reasons = vmgen_g.reasons;
	int err;

	vmgen_g.dispatching = true;
	vmgen_g.dispatcher = pthread_self();
	/*
	 * A callback registered by another thread while we run may have been
	 * missed by the list walk: walk again until no registration raced.
	 */
	do {
		seq = vmgen_g.reg_seq;
		vmgen_unlock();
		err = vmgen_callbacks_run(target, reasons, old);
		vmgen_lock();
	} while (!err && seq != vmgen_g.reg_seq);
	vmgen_g.dispatching = false;
	vmgen_g.dispatch_ends++;
	vmgen_callbacks_free_deferred_locked();
	vmgen_g.dispatches++;
	/*
	 * A callback that forked returns here in the child too: the child
	 * must not publish the parent's step; the fork folds into a new one.
	 */
	if (!err && vmgen_fork_check_locked()) {
		pthread_cond_broadcast(&vmgen_g.dispatch_cond);
		return 0;
	}
	if (!err) {
		vmgen_g.handled = target;
		vmgen_g.reasons = 0;
		vmgen_g.last_error = 0;
		vmgen_publish_locked(target, vmgen_g.src_seen);
		if (vmgen_g.ops->ack)
			vmgen_g.ops->ack(vmgen_g.src_seen);
	} else {
		vmgen_g.last_error = err;
	}
	pthread_cond_broadcast(&vmgen_g.dispatch_cond);
	vmgen_wake_waiters_locked();
	return err;
}

/*
 * Bring the handled generation up to date: returns it, or the error of a
 * failed callback. Called with the lock held; drops it while callbacks
 * run. Only one thread dispatches; the others wait for it and look again.
 * Inside a callback, returns the generation being dispatched at once:
 * waiting there would wait for ourselves.
 */
int64_t vmgen_settle_locked(void)
{
	int ret;

	for (;;) {
		if (vmgen_g.dispatching) {
			if (vmgen_in_dispatch_locked())
				return (int64_t)vmgen_g.target;
			pthread_cond_wait(&vmgen_g.dispatch_cond,
					  &vmgen_g.lock);
			continue;
		}
		ret = observe_locked();
		if (ret < 0)
			return ret;
		if (vmgen_g.target == vmgen_g.handled)
			return (int64_t)vmgen_g.handled;
		ret = dispatch_locked();
		if (ret < 0)
			return ret;
	}
}

VMGEN_PUBLIC int64_t vmgen_generation(void)
{
	int64_t gen;
	int ret;

	ret = vmgen_enter();
	if (ret < 0)
		return ret;
	gen = vmgen_settle_locked();
	vmgen_unlock();
	return gen;
}

VMGEN_PUBLIC int vmgen__txn_begin_slow(struct vmgen_txn *txn)
{
	int64_t gen;

	if (!txn)
		return -EINVAL;
	gen = vmgen_generation();
	if (gen < 0) {
		txn->generation = 0;
		return (int)gen;
	}
	txn->generation = (uint64_t)gen;
	return 0;
}
