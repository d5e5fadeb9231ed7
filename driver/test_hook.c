// SPDX-License-Identifier: GPL-2.0
/*
 * A hook for the guest tests only: run the vmfork notifier callback the
 * way the kernel's vmgenid driver does where it binds through device tree
 * (6.10+), from its interrupt handler, i.e. in hard-IRQ context. x86 has
 * no such path, so without this hook no test could show that the callback
 * is safe there (lockdep and DEBUG_ATOMIC_SLEEP kernels report it if not).
 *
 *	echo irq > /sys/module/sysgenid/parameters/test_hook
 *		the module forgets which GUID it handled, then queues an
 *		irq_work (IRQ_WORK_INIT_HARD: hard IRQ even on PREEMPT_RT)
 *		that runs the callback, as after a restore;
 *	echo irq-reseed-fails > ...
 *		the same, and the module's own reseed fails once: the
 *		counter must move all the same (the kernel reseeded).
 *
 * Mode "notifier" only (-EOPNOTSUPP otherwise: no kernel reseed stands
 * behind a notification there). Root only (0200); what it can cause is
 * what a restore causes: one reseed and one bump.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/irq_work.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/string.h>

#include "internal.h"

static DEFINE_MUTEX(hook_lock);
static bool hook_live;		/* under hook_lock */

/* What the irq_work saw, for the log line of the test (in_hardirq()). */
static bool hook_in_hardirq;

static void sysgenid_hook_irq(struct irq_work *work)
{
	WRITE_ONCE(hook_in_hardirq, in_hardirq() && irqs_disabled());
	sysgenid_notifier_call();
}

static struct irq_work hook_work = IRQ_WORK_INIT_HARD(sysgenid_hook_irq);

static int sysgenid_hook_set(const char *val, const struct kernel_param *kp)
{
	bool fail_reseed;
	int ret = 0;

	if (sysfs_streq(val, "irq"))
		fail_reseed = false;
	else if (sysfs_streq(val, "irq-reseed-fails"))
		fail_reseed = true;
	else
		return -EINVAL;

	mutex_lock(&hook_lock);
	if (!hook_live) {
		ret = -ENODEV;
	} else if (sysgenid_mode != SYSGENID_MODE_NOTIFIER) {
		ret = -EOPNOTSUPP;
	} else {
		sysgenid_guid_forget();
		if (fail_reseed)
			sysgenid_fail_next_reseed();
		WRITE_ONCE(hook_in_hardirq, false);
		irq_work_queue(&hook_work);
		irq_work_sync(&hook_work);
		pr_info("test hook: vmfork callback ran %s\n",
			READ_ONCE(hook_in_hardirq) ?
			"in hard IRQ" : "NOT in hard IRQ");
	}
	mutex_unlock(&hook_lock);
	return ret;
}

static const struct kernel_param_ops sysgenid_hook_ops = {
	.set = sysgenid_hook_set,
};

module_param_cb(test_hook, &sysgenid_hook_ops, NULL, 0200);
MODULE_PARM_DESC(test_hook,
		 "tests only: \"irq\" runs the vmfork callback in hard IRQ after forgetting the handled GUID; \"irq-reseed-fails\" also fails the module's own reseed once");

/* After the notifier is registered. */
void sysgenid_test_hook_init(void)
{
	mutex_lock(&hook_lock);
	hook_live = true;
	mutex_unlock(&hook_lock);
}

/* Before the notifier is unregistered: no hook runs after this. */
void sysgenid_test_hook_exit(void)
{
	mutex_lock(&hook_lock);
	hook_live = false;
	mutex_unlock(&hook_lock);
}
