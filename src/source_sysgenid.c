/* SPDX-License-Identifier: MIT */
/*
 * SysGenID (/dev/sysgenid): a u32 counter in a read-only page, with poll,
 * write-acknowledge, the watcher-tracking and trigger ioctls.
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
static int open_fd(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	vmgen_g.src_writable = fd >= 0;
	if (fd < 0 && errno != EACCES && errno != EPERM && errno != EROFS)
		return -errno;
	if (fd < 0)
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int sysgenid_open(const char *path, bool explicit_path)
{
	struct stat st1, st2;
	int fd, rw, ret;

	fd = vmgen_open_source(VMGEN_SOURCE_SYSGENID, path, explicit_path,
			       false);
	if (fd < 0)
		return fd;
	vmgen_g.src_writable = false;
	if (vmgen_g.src_is_chr) {
		rw = open_fd(path);
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
		ret = vmgen_source_adopt(&vmgen_sysgenid_ops,
					 VMGEN_SOURCE_SYSGENID, fd, path);
	if (ret < 0) {
		if (vmgen_g.src_fd != fd)
			close(fd);
		vmgen_source_release();
		return ret;
	}
	vmgen_describe_u32(vmgen_g.map);
	/* A file standing in for the device cannot poll: watch its inode. */
	vmgen_g.notify = vmgen_g.src_is_chr ? VMGEN_NOTIFY_FD :
					      VMGEN_NOTIFY_INOTIFY;
	return 0;
}

static int sysgenid_set_tracking(bool on)
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
static void sysgenid_ack(uint64_t seen)
{
	uint32_t value = (uint32_t)seen;
	ssize_t n;

	if (!vmgen_g.src_is_chr || !vmgen_g.src_writable)
		return;
	vmgen_g.ack_attempts++;
	do
		n = write(vmgen_g.src_fd, &value, sizeof(value));
	while (n < 0 && errno == EINTR);
}

/* -1 waits forever; 0 is the shortest wait the ioctl can express (1 ms). */
static int sysgenid_wait_watchers(int timeout_ms)
{
	unsigned long arg = timeout_ms == -1 ? 0 : timeout_ms == 0 ? 1 :
			    (unsigned long)timeout_ms;

	if (ioctl(vmgen_g.src_fd, SYSGENID_WAIT_WATCHERS, arg) < 0)
		/* The ioctl times out with ETIME; vmgen_wait() says ETIMEDOUT. */
		return errno == ETIME ? -ETIMEDOUT : -errno;
	return 0;
}

static int sysgenid_trigger(uint32_t min_generation)
{
	int ret = ioctl(vmgen_g.src_fd, SYSGENID_TRIGGER_GEN_UPDATE,
			(unsigned long)min_generation);

	return ret < 0 ? -errno : ret;
}

/* Fork child: its own open file, tracked again if the parent's was. */
static int sysgenid_reopen(void)
{
	int fd;

	if (!vmgen_g.src_is_chr || vmgen_g.src_fd < 0)
		return 0;
	fd = open_fd(vmgen_g.path);
	if (fd < 0)
		return fd;
	fd = vmgen_replace_fd(vmgen_g.src_fd, fd);
	if (fd < 0)
		return fd;
	if (vmgen_g.tracking)
		(void)sysgenid_set_tracking(true);
	return 0;
}

static int sysgenid_race_free(const char **reason)
{
	*reason = vmgen_g.src_is_chr ?
		  "counter only: moves after the kernel handled the restore" :
		  "counter only: a file standing in for the device";
	return 0;
}

const struct vmgen_source_ops vmgen_sysgenid_ops = {
	.name = "sysgenid",
	.default_path = VMGEN_DEFAULT_SYSGENID,
	.open = sysgenid_open,
	.read = vmgen_read_u32,
	.race_free = sysgenid_race_free,
	.ack = sysgenid_ack,
	.trigger = sysgenid_trigger,
	.set_tracking = sysgenid_set_tracking,
	.wait_watchers = sysgenid_wait_watchers,
	.reopen = sysgenid_reopen,
	.close = vmgen_source_release,
};
