/* SPDX-License-Identifier: MIT */
/*
 * The callback registry: an RCU list of struct cds_list_head walked by the
 * one dispatching thread inside an urcu-bp read-side section (urcu-bp needs
 * no thread registration from the application) with the state lock
 * released, so that callbacks may call back into the library. Writers hold
 * the state lock. Unregister from another thread waits on a condition
 * variable for the dispatch in progress to end, then frees.
 *
 * The publication uses C11 release/acquire on the next pointers rather
 * than liburcu 0.13's rculist (a compiler barrier and a volatile store):
 * same ordering on every architecture we build for, and ThreadSanitizer
 * can see it, so a real race in here would not drown in false reports.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <urcu-bp.h>
#include <urcu/compiler.h>

#include "vmgenid-internal.h"

static void list_add_tail_publish(struct cds_list_head *elem,
				  struct cds_list_head *head)
{
	elem->next = head;
	elem->prev = head->prev;
	__atomic_store_n(&head->prev->next, elem, __ATOMIC_RELEASE);
	head->prev = elem;
}

/* elem->next stays valid: a walker standing on elem goes on from there. */
static void list_del_publish(struct cds_list_head *elem)
{
	elem->next->prev = elem->prev;
	__atomic_store_n(&elem->prev->next, elem->next, __ATOMIC_RELEASE);
}

int vmgen_callbacks_run(uint64_t generation, uint32_t reasons,
			uint64_t old_generation)
{
	struct cds_list_head *pos;
	struct vmgen_cb *cb;
	int err = 0;

	urcu_bp_read_lock();
	for (pos = __atomic_load_n(&vmgen_g.callbacks.next, __ATOMIC_ACQUIRE);
	     pos != &vmgen_g.callbacks;
	     pos = __atomic_load_n(&pos->next, __ATOMIC_ACQUIRE)) {
		cb = caa_container_of(pos, struct vmgen_cb, node);
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
	list_add_tail_publish(&cb->node, &vmgen_g.callbacks);
	vmgen_g.reg_seq++;
	ret = cb->id;
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC int vmgen_callback_unregister(int id)
{
	struct vmgen_cb *cb, *found = NULL;
	uint64_t ends;
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
	list_del_publish(&found->node);
	if (vmgen_in_dispatch_locked()) {
		/* From a callback: the walk may still stand on it. */
		found->next_free = vmgen_g.deferred;
		vmgen_g.deferred = found;
		vmgen_unlock();
		return 0;
	}
	/* Another thread dispatches: wait until its walk (and call) ended. */
	ends = vmgen_g.dispatch_ends;
	while (vmgen_g.dispatching && vmgen_g.dispatch_ends == ends)
		pthread_cond_wait(&vmgen_g.dispatch_cond, &vmgen_g.lock);
	vmgen_unlock();
	free(found);
	return 0;
}
