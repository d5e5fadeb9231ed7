/* SPDX-License-Identifier: MIT */
/*
 * Orchestration: the sysgenid ioctls that let an orchestrator wait until
 * every tracked process has handled a generation, and trigger a change.
 * The file source simulates the trigger so that tests and demos can too.
 */
#include <errno.h>
#include <sys/ioctl.h>

#include <linux/sysgenid.h>

#include "vmgenid-internal.h"

static int sysgenid_fd_locked(void)
{
	if (vmgen_g.kind != VMGEN_SOURCE_SYSGENID) {
		vmgen_unlock();
		return -EOPNOTSUPP;
	}
	return vmgen_g.src_fd;
}

static int set_tracking(bool on)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = sysgenid_fd_locked();
	if (ret < 0)
		return ret;
	ret = vmgen_sysgenid_set_tracking(on);
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

/* -1 waits forever; 0 is the shortest wait the ioctl can express (1 ms). */
VMGEN_PUBLIC int vmgen_wait_watchers(int timeout_ms)
{
	unsigned long arg;
	int fd, ret;

	if (timeout_ms < -1)
		return -EINVAL;
	ret = vmgen_enter();
	if (ret < 0)
		return ret;
	fd = sysgenid_fd_locked();
	if (fd < 0)
		return fd;
	vmgen_unlock();
	arg = timeout_ms == -1 ? 0 : timeout_ms == 0 ? 1 :
	      (unsigned long)timeout_ms;
	ret = ioctl(fd, SYSGENID_WAIT_WATCHERS, arg);
	if (ret < 0)
		/* The ioctl times out with ETIME; vmgen_wait() says ETIMEDOUT. */
		return errno == ETIME ? -ETIMEDOUT : -errno;
	return ret;
}

VMGEN_PUBLIC int vmgen_trigger(uint32_t min_generation)
{
	int fd, ret = vmgen_enter();

	if (ret < 0)
		return ret;
	if (vmgen_g.kind == VMGEN_SOURCE_FILE) {
		ret = vmgen_file_trigger_locked(min_generation);
		vmgen_unlock();
		return ret;
	}
	fd = sysgenid_fd_locked();
	if (fd < 0)
		return fd;
	vmgen_unlock();
	ret = ioctl(fd, SYSGENID_TRIGGER_GEN_UPDATE,
		    (unsigned long)min_generation);
	return ret < 0 ? -errno : ret;
}
