/* SPDX-License-Identifier: MIT */
/*
 * The file source: a regular file whose first 4 bytes are a native u32
 * counter, mapped read-only. Writers must update it in place (write or
 * pwrite: inotify reports those; stores through a mapping it does not),
 * never by rename, which would leave us watching the old inode.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmgenid-internal.h"

static int file_open(const char *path, bool explicit_path)
{
	int fd, ret;

	fd = vmgen_open_source(VMGEN_SOURCE_FILE, path, true, true);
	if (fd < 0)
		return fd;
	ret = vmgen_map_source(VMGEN_SOURCE_FILE, fd);
	if (ret == 0)
		ret = vmgen_source_adopt(&vmgen_file_ops, VMGEN_SOURCE_FILE,
					 fd, path);
	if (ret < 0) {
		if (vmgen_g.src_fd != fd)
			close(fd);
		vmgen_source_release();
		return ret;
	}
	vmgen_describe_u32(vmgen_g.map);
	vmgen_g.notify = VMGEN_NOTIFY_INOTIFY;
	return 0;
}

/* Simulate a change, as the sysgenid trigger ioctl does: max(min, cur+1). */
static int file_trigger(uint32_t min_generation)
{
	uint32_t cur, next;
	ssize_t n;
	int fd, err = 0;

	cur = __atomic_load_n((const uint32_t *)vmgen_g.map, __ATOMIC_ACQUIRE);
	next = cur + 1;
	if (min_generation > next)
		next = min_generation;
	/* Only u32 wrap-around lands on the current value; never stay. */
	if (next == cur)
		next++;
	fd = open(vmgen_g.path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	n = pwrite(fd, &next, sizeof(next), 0);
	if (n < 0)
		err = -errno;
	else if (n != sizeof(next))
		err = -EIO;
	close(fd);
	return err;
}

static int file_race_free(const char **reason)
{
	*reason = "file source: a counter that a process writes after the fact";
	return 0;
}

const struct vmgen_source_ops vmgen_file_ops = {
	.name = "file",
	.needs_path = true,
	.open = file_open,
	.read = vmgen_read_u32,
	.race_free = file_race_free,
	.trigger = file_trigger,
	.close = vmgen_source_release,
};
