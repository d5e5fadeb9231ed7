/* SPDX-License-Identifier: MIT */
/*
 * The callback registry: an RCU list (liburcu-bp, which needs no thread
 * registration from the application) walked by the one dispatching thread
 * with the state lock released, so that callbacks may call back into the
 * library. Writers hold the state lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <urcu-bp.h>
#include <urcu/rculist.h>

#include "vmgenid-internal.h"

int vmgen_callbacks_run(uint64_t generation, uint32_t reasons,
			uint64_t old_generation)
{
	struct vmgen_cb *cb;
	int err = 0;

	urcu_bp_read_lock();
	cds_list_for_each_entry_rcu(cb, &vmgen_g.callbacks, node) {
		if (__atomic_load_n(&cb->removed, __ATOMIC_ACQUIRE))
			continue;
		if (__atomic_load_n(&cb->done, __ATOMIC_RELAXED) >= generation)
			continue;
		if (cb->events & reasons) {
			struct vmgen_event ev = {
				.reasons = reasons,
				.old_generation = old_generation,
				.new_generation = generation,
			};
			int ret = cb->fn(&ev, cb->arg);

			if (ret) {
				/* Only negative errnos are errors we can name. */
				err = ret > 0 ? -EINVAL : ret;
				break;
			}
		}
		__atomic_store_n(&cb->done, generation, __ATOMIC_RELAXED);
	}
	urcu_bp_read_unlock();
	return err;
}

/* Only the dispatcher walks the list, and it has finished: free at once. */
void vmgen_callbacks_free_deferred_locked(void)
{
	struct vmgen_cb *cb;

	while ((cb = vmgen_g.deferred)) {
		vmgen_g.deferred = cb->next_free;
		free(cb);
	}
}

void vmgen_callbacks_free_all_locked(void)
{
	struct vmgen_cb *cb, *tmp;

	vmgen_callbacks_free_deferred_locked();
	cds_list_for_each_entry_safe(cb, tmp, &vmgen_g.callbacks, node) {
		cds_list_del(&cb->node);
		free(cb);
	}
}

VMGEN_PUBLIC int vmgen_callback_register(vmgen_callback_fn fn, void *arg,
					 unsigned int events)
{
	struct vmgen_cb *cb;
	int ret;

	if (!fn || !events || (events & ~(unsigned int)VMGEN_EVENT_ANY))
		return -EINVAL;
	cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	ret = vmgen_enter();
	if (ret < 0) {
		free(cb);
		return ret;
	}
	if (vmgen_g.next_id == INT_MAX) {	/* ids are never reused */
		vmgen_unlock();
		free(cb);
		return -ENOSPC;
	}
	cb->id = vmgen_g.next_id++;
	cb->fn = fn;
	cb->arg = arg;
	cb->events = events;
	/*
	 * Start at the last handled generation, so that a step observed but
	 * not yet dispatched (or being dispatched) runs this callback too.
	 */
	cb->done = vmgen_g.handled;
	cds_list_add_tail_rcu(&cb->node, &vmgen_g.callbacks);
	vmgen_g.reg_seq++;
	ret = cb->id;
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC int vmgen_callback_unregister(int id)
{
	struct vmgen_cb *cb, *found = NULL;
	bool wait;
	int ret;

	if (id <= 0)
		return -EINVAL;
	ret = vmgen_enter();
	if (ret < 0)
		return ret;
	cds_list_for_each_entry(cb, &vmgen_g.callbacks, node) {
		if (cb->id == id) {
			found = cb;
			break;
		}
	}
	if (!found) {
		vmgen_unlock();
		return -ENOENT;
	}
	/* The dispatcher checks this before each call: it never runs again. */
	__atomic_store_n(&found->removed, 1, __ATOMIC_RELEASE);
	cds_list_del_rcu(&found->node);
	if (vmgen_in_dispatch_locked()) {
		/* From a callback: the walk may still stand on it. */
		found->next_free = vmgen_g.deferred;
		vmgen_g.deferred = found;
		vmgen_unlock();
		return 0;
	}
	wait = vmgen_g.dispatching;
	vmgen_unlock();
	/* Another thread dispatches: wait until its walk (and call) ended. */
	if (wait)
		urcu_bp_synchronize_rcu();
	free(found);
	return 0;
}
