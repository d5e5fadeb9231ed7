/* SPDX-License-Identifier: MIT */
/*
 * SysGenID (/dev/sysgenid): a u32 counter in a read-only page, with poll,
 * write-acknowledge and the watcher-tracking ioctls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sysgenid.h>

#include "vmgenid-internal.h"

int vmgen_sysgenid_open(const char *path, bool explicit_path)
{
	int fd, ret;

	fd = vmgen_open_source(VMGEN_SOURCE_SYSGENID, path, explicit_path,
			       false);
	if (fd < 0)
		return fd;
	ret = vmgen_map_source(VMGEN_SOURCE_SYSGENID, fd);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	vmgen_g.path = strdup(path);
	if (!vmgen_g.path) {
		vmgen_source_close_locked();
		close(fd);
		return -ENOMEM;
	}
	vmgen_g.kind = VMGEN_SOURCE_SYSGENID;
	vmgen_g.src_fd = fd;
	vmgen_g.fastpath.counter_kind = VMGEN__COUNTER_U32;
	vmgen_g.fastpath.counter = vmgen_g.map;
	/* A file standing in for the device cannot poll: watch its inode. */
	vmgen_g.notify = vmgen_g.src_is_chr ? VMGEN_NOTIFY_FD :
					      VMGEN_NOTIFY_INOTIFY;
	return 0;
}

int vmgen_sysgenid_set_tracking(bool on)
{
	if (ioctl(vmgen_g.src_fd, SYSGENID_SET_WATCHER_TRACKING,
		  (unsigned long)on) < 0)
		return -errno;
	vmgen_g.tracking = on;
	return 0;
}

/*
 * Tell the device this fd has handled the counter value we published, so
 * that an orchestrator waiting for tracked watchers can go on. EINVAL means
 * the counter moved again meanwhile: the fd stays readable and the next
 * dispatch acknowledges the newer value.
 */
void vmgen_sysgenid_ack_locked(void)
{
	uint32_t value = (uint32_t)vmgen_g.src_seen;
	ssize_t n;

	if (vmgen_g.kind != VMGEN_SOURCE_SYSGENID || !vmgen_g.src_is_chr)
		return;
	vmgen_g.ack_attempts++;
	do
		n = write(vmgen_g.src_fd, &value, sizeof(value));
	while (n < 0 && errno == EINTR);
}
