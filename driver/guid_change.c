// SPDX-License-Identifier: GPL-2.0
/*
 * Handling a change of the VM generation ID: once per change, whoever
 * notices it first.
 *
 * sysgenid_guid_handle() compares the GUID in memory with the one the
 * module last handled. If it moved, it mixes the new one into the kernel's
 * input pool (add_device_randomness(): no entropy credited), makes the
 * kernel's crng reseed (crng_reseed.c), records the GUID as handled, and
 * only then bumps the counter. So a counter that moved promises user space
 * that getrandom() no longer returns what it did before the change, in
 * every clone. It returns once the GUID that was in memory at the call has
 * been handled, by this call or by the one it waited for.
 *
 * Three callers, one mutex:
 *   - SYSGENID_HANDLE_GUID_CHANGE (any process that saw the GUID move in
 *     the mapped page; interruptible);
 *   - mode "acpi": our ACPI notify handler;
 *   - mode "notifier": the kernel's vmfork notifier chain, which its
 *     vmgenid driver runs after its own add_vmfork_randomness() reseed
 *     (through a work item: the chain may run in hard IRQ). There our own
 *     reseed failing does not keep the counter: the kernel's stands.
 *
 * Interleavings (mode "notifier"; mode "acpi" is the same with our notify
 * handler in place of the kernel's chain, and no reseed of its own):
 *   - ACPI first: the kernel driver mixes and reseeds, runs the chain; we
 *     find GUID != handled: mix, reseed again (cheap, and it makes our
 *     promise independent of what the driver read), bump. A later ioctl
 *     finds GUID == handled and returns 0: the counter has moved.
 *   - ioctl first: mix, reseed, bump under the mutex. The kernel's
 *     notification comes later: the driver compares with its own copy,
 *     mixes and reseeds (a second, harmless reseed) and runs the chain; we
 *     find GUID == handled and do nothing: no second bump.
 *   - ioctl while the chain runs us (or the reverse): the second waits on
 *     the mutex, then finds GUID == handled. No deadlock: the ioctl path
 *     never takes the chain's rwsem nor waits for the ACPI notify worker;
 *     under the mutex it takes only random.c's spinlocks (input pool,
 *     base crng) and the counter's.
 *   - two ioctls: serialised; the second finds GUID == handled.
 *   - the GUID moves again while a change is handled (a restore of a
 *     snapshot taken mid-way): the handler bumps for the GUID it read and
 *     mixed; the newer one differs from "handled", so the next caller
 *     (at the latest the notification the hypervisor sends for it)
 *     handles it.
 * Net: one bump per GUID value seen, always after a reseed of the pool
 * that contains that GUID. add_vmfork_randomness() is not called: it is
 * not exported where CONFIG_VMGENID=y, and it would run the chain (and so
 * us) from inside the mutex.
 *
 * Why no privilege is needed: RNDRESEEDCRNG wants CAP_SYS_ADMIN because a
 * caller who could reseed at will after every small input could guess each
 * input in turn (a "premature next"). Here a reseed happens only when the
 * hypervisor has written a new GUID, at most once per GUID value, and it is
 * the reseed the kernel itself makes (add_vmfork_randomness()) for the same
 * event, only earlier. A caller learns nothing it could not read from the
 * counter a little later.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/ktime.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/random.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include "internal.h"

static DEFINE_MUTEX(handle_lock);
static u8 handled_guid[SYSGENID_GUID_SIZE];	/* under handle_lock */

static const char *const cause_name[] = {
	[SYSGENID_BY_REQUEST] = "on request",
	[SYSGENID_BY_ACPI] = "ACPI notification",
	[SYSGENID_BY_KERNEL] = "kernel vmfork notifier",
	[SYSGENID_BY_SCI] = "SCI path",
};

/* At load, before any caller: the GUID of this boot is handled. */
void sysgenid_guid_change_init(void)
{
	sysgenid_guid_read(handled_guid);
}

/* Test hook (test_hook.c): the next caller finds the GUID changed. */
void sysgenid_guid_forget(void)
{
	mutex_lock(&handle_lock);
	memset(handled_guid, 0, sizeof(handled_guid));
	mutex_unlock(&handle_lock);
}

/* Test hook: the module's next reseed fails, as a real one could. */
static atomic_t fail_next_reseed = ATOMIC_INIT(0);

void sysgenid_fail_next_reseed(void)
{
	atomic_set(&fail_next_reseed, 1);
}

static int sysgenid_reseed(void)
{
	if (atomic_xchg(&fail_next_reseed, 0))
		return -EIO;
	return sysgenid_crng_reseed();
}

/*
 * 0 once the GUID in memory now is handled; -EINTR (request only) if a
 * signal came while waiting for another caller; -EIO if the kernel RNG
 * could not be reseeded (then nothing is recorded or bumped, and the next
 * caller tries again).
 */
int sysgenid_guid_handle(enum sysgenid_cause cause)
{
	u8 now[SYSGENID_GUID_SIZE];
	ktime_t start;
	int ret;
	u32 gen;

	/* Never from the vmfork chain directly: it may run in hard IRQ. */
	might_sleep();
	if (cause == SYSGENID_BY_REQUEST) {
		ret = mutex_lock_interruptible(&handle_lock);
		if (ret)
			return ret;
	} else {
		mutex_lock(&handle_lock);
	}

	sysgenid_guid_read(now);
	if (!memcmp(now, handled_guid, sizeof(now))) {
		/* Not logged for requests: anyone may ask, any number. */
		if (cause != SYSGENID_BY_REQUEST)
			pr_info("%s: GUID change already handled, generation stays %u\n",
				cause_name[cause], sysgenid_generation());
		ret = 0;
		goto out;
	}

	start = ktime_get();
	add_device_randomness(now, sizeof(now));
	ret = sysgenid_reseed();
	if (ret == -ENODATA) {
		/* As add_vmfork_randomness(): the pool has it for the seed. */
		pr_notice("crng not seeded yet: the GUID waits in the pool for its first seed\n");
		ret = 0;
	}
	if (ret && cause == SYSGENID_BY_KERNEL) {
		/*
		 * The kernel has already reseeded for this change before it
		 * ran its chain: the promise holds without our reseed, and
		 * a restore must never be lost.
		 */
		pr_warn("%s: cannot reseed the kernel RNG again (%d); the kernel's own reseed stands\n",
			cause_name[cause], ret);
		ret = 0;
	}
	if (ret) {
		pr_err("%s: cannot reseed the kernel RNG (%d): generation %u kept\n",
		       cause_name[cause], ret, sysgenid_generation());
		ret = -EIO;
		goto out;
	}
	memcpy(handled_guid, now, sizeof(now));
	gen = sysgenid_bump(0);
	pr_info("VM fork: generation %u, kernel RNG reseeded by the module (%s) in %lld us\n",
		gen, cause_name[cause], ktime_us_delta(ktime_get(), start));
out:
	mutex_unlock(&handle_lock);
	memzero_explicit(now, sizeof(now));
	return ret;
}

/*
 * Mode "notifier": the kernel's notification, after its own reseed. Each
 * one moves the counter unless a request already handled the GUID it is
 * for. Process context, in the worker.
 */
static void sysgenid_vmfork_work_fn(struct work_struct *work)
{
	if (sysgenid_guid_present())
		sysgenid_guid_handle(SYSGENID_BY_KERNEL);
	else
		pr_info("VM fork: generation %u\n", sysgenid_bump(0));
}

static DECLARE_WORK(sysgenid_vmfork_work, sysgenid_vmfork_work_fn);

/*
 * The chain is run from the ACPI notify worker on x86, but from the
 * driver's interrupt handler where vmgenid binds through device tree
 * (6.10+): hard-IRQ context, where neither the mutex, the reseed nor the
 * log may be used. So the callback only queues the work, in any context.
 * Notifications that come while the work is pending share its run, which
 * handles the GUID then in memory: the newest.
 */
static int sysgenid_vmfork(struct notifier_block *nb, unsigned long action,
			   void *data)
{
	schedule_work(&sysgenid_vmfork_work);
	return NOTIFY_DONE;
}

static struct notifier_block sysgenid_nb = {
	.notifier_call = sysgenid_vmfork,
};

int sysgenid_notifier_register(void)
{
	int ret = register_random_vmfork_notifier(&sysgenid_nb);

	if (ret)
		pr_err("cannot register the vmfork notifier: %d\n", ret);
	return ret;
}

/* Waits for a notifier call in flight, then for the work it queued. */
void sysgenid_notifier_unregister(void)
{
	unregister_random_vmfork_notifier(&sysgenid_nb);
	flush_work(&sysgenid_vmfork_work);
}

/* The callback, as the chain would run it (test_hook.c, any context). */
void sysgenid_notifier_call(void)
{
	sysgenid_nb.notifier_call(&sysgenid_nb, 0, NULL);
}
