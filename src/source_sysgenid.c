/* SPDX-License-Identifier: MIT */
/*
 * SysGenID (/dev/sysgenid): a u32 counter in a read-only page, with poll,
 * write-acknowledge and the watcher-tracking ioctls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/sysgenid.h>

#include "vmgenid-internal.h"

/*
 * Acknowledging is a write(), and the device lets only a writable fd be
 * tracked: open it read-write when permitted (the module makes it 0644,
 * so root), else read-only, which still reads, maps and polls.
 */
int vmgen_sysgenid_open_fd(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	vmgen_g.src_writable = fd >= 0;
	if (fd < 0 && errno != EACCES && errno != EPERM && errno != EROFS)
		return -errno;
	if (fd < 0)
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

int vmgen_sysgenid_open(const char *path, bool explicit_path)
{
	struct stat st1, st2;
	int fd, rw, ret;

	fd = vmgen_open_source(VMGEN_SOURCE_SYSGENID, path, explicit_path,
			       false);
	if (fd < 0)
		return fd;
	vmgen_g.src_writable = false;
	if (vmgen_g.src_is_chr) {
		rw = vmgen_sysgenid_open_fd(path);
		/* Keep it only if it is still the device we checked. */
		if (rw >= 0 && vmgen_g.src_writable && fstat(fd, &st1) == 0 &&
		    fstat(rw, &st2) == 0 && st1.st_rdev == st2.st_rdev &&
		    S_ISCHR(st2.st_mode)) {
			close(fd);
			fd = rw;
		} else {
			if (rw >= 0)
				close(rw);
			vmgen_g.src_writable = false;
		}
	}
	ret = vmgen_map_source(VMGEN_SOURCE_SYSGENID, fd);
	if (ret == 0)
		ret = vmgen_source_adopt(VMGEN_SOURCE_SYSGENID, fd, path,
					 VMGEN__COUNTER_U32);
	if (ret < 0) {
		vmgen_source_close_locked();
		close(fd);
		return ret;
	}
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

	if (vmgen_g.kind != VMGEN_SOURCE_SYSGENID || !vmgen_g.src_is_chr ||
	    !vmgen_g.src_writable)
		return;
	vmgen_g.ack_attempts++;
	do
		n = write(vmgen_g.src_fd, &value, sizeof(value));
	while (n < 0 && errno == EINTR);
}
