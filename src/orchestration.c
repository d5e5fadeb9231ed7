/* SPDX-License-Identifier: MIT */
/*
 * Orchestration: the sysgenid ioctls that let an orchestrator wait until
 * every tracked process has handled a generation, and trigger a change.
 * The file source simulates the trigger so that tests and demos can too.
 * Sources without them say -EOPNOTSUPP.
 */
#include <errno.h>

#include "vmgenid-internal.h"

static int set_tracking(bool on)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_g.ops->set_tracking ? vmgen_g.ops->set_tracking(on) :
					  -EOPNOTSUPP;
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC int vmgen_tracking_enable(void)
{
	return set_tracking(true);
}

VMGEN_PUBLIC int vmgen_tracking_disable(void)
{
	return set_tracking(false);
}

VMGEN_PUBLIC int vmgen_wait_watchers(int timeout_ms)
{
	const struct vmgen_source_ops *ops;
	int ret;

	if (timeout_ms < -1)
		return -EINVAL;
	ret = vmgen_enter();
	if (ret < 0)
		return ret;
	ops = vmgen_g.ops;
	vmgen_unlock();
	/* It blocks: not under the lock. The source stays until exit. */
	return ops->wait_watchers ? ops->wait_watchers(timeout_ms) :
				    -EOPNOTSUPP;
}

VMGEN_PUBLIC int vmgen_trigger(uint32_t min_generation)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_g.ops->trigger ? vmgen_g.ops->trigger(min_generation) :
				     -EOPNOTSUPP;
	vmgen_unlock();
	return ret;
}
