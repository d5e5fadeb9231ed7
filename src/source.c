/* SPDX-License-Identifier: MIT */
/*
 * What the source back-ends share: opening a path with the type checks,
 * mapping a page, recording why a source was not used, adopting a source
 * as the one in use and letting it go. Back-ends call these; the core
 * calls the back-ends only through their tables.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmgenid-internal.h"

void vmgen_reject(int kind, const char *reason)
{
	vmgen_g.rejected[kind] = reason;
}

/*
 * Open a source path read-only and check its type. Default device paths
 * must be character devices; a path the caller named may also be a
 * regular file, so that tests and demos can stand a file in for a device.
 */
int vmgen_open_source(int kind, const char *path, bool explicit_path,
		      bool want_regular)
{
	struct stat st;
	int fd, err;

	/* O_NONBLOCK: opening a FIFO put at the path must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = -errno;
		if (err == -ENOENT || err == -ENOTDIR || err == -ENXIO ||
		    err == -ENODEV)
			vmgen_reject(kind, "missing");
		else if (err == -EACCES || err == -EPERM)
			vmgen_reject(kind, "permission denied");
		else
			vmgen_reject(kind, "cannot open");
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		vmgen_reject(kind, "cannot stat");
		return err;
	}
	if (want_regular) {
		if (!S_ISREG(st.st_mode)) {
			close(fd);
			vmgen_reject(kind, "not a regular file");
			return -ENODEV;
		}
	} else if (!S_ISCHR(st.st_mode) &&
		   !(explicit_path && S_ISREG(st.st_mode))) {
		close(fd);
		vmgen_reject(kind, "not a character device");
		return -ENODEV;
	}
	vmgen_g.src_is_chr = S_ISCHR(st.st_mode);
	/* A stand-in file must hold what we read, or the mapping faults. */
	if (S_ISREG(st.st_mode)) {
		off_t need = kind == VMGEN_SOURCE_VMCLOCK ?
			     (off_t)VMCLOCK_MIN_SIZE : (off_t)sizeof(uint32_t);

		if (st.st_size < need) {
			close(fd);
			vmgen_reject(kind, kind == VMGEN_SOURCE_VMCLOCK ?
				     "too small (size < 112)" :
				     "too small (< 4 bytes)");
			return -ENODEV;
		}
	}
	return fd;
}

/*
 * Map page @pgoff of @fd read-only and shared (the drivers allow no more);
 * NULL with errno set on failure.
 */
void *vmgen_map_page(int kind, int fd, unsigned long pgoff)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	void *map;

	if (pagesz <= 0)
		pagesz = 4096;
	map = mmap(NULL, (size_t)pagesz, PROT_READ, MAP_SHARED, fd,
		   (off_t)(pgoff * (unsigned long)pagesz));
	if (map == MAP_FAILED) {
		if (pgoff == 0)
			vmgen_reject(kind, "mmap failed");
		return NULL;
	}
	return map;
}

/* Map the source's first page: vmgen_g.map. */
int vmgen_map_source(int kind, int fd)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	void *map = vmgen_map_page(kind, fd, 0);

	if (!map)
		return -errno;
	vmgen_g.map = map;
	vmgen_g.map_len = (size_t)(pagesz > 0 ? pagesz : 4096);
	return 0;
}

/* Make a mapped source the one in use; on failure the caller cleans up. */
int vmgen_source_adopt(const struct vmgen_source_ops *ops, int kind, int fd,
		       const char *path)
{
	if (path) {
		vmgen_g.path = strdup(path);
		if (!vmgen_g.path)
			return -ENOMEM;
	}
	vmgen_g.ops = ops;
	vmgen_g.kind = kind;
	vmgen_g.src_fd = fd;
	return 0;
}

/* A u32 counter, to both generations of inline code. */
void vmgen_describe_u32(const uint32_t *counter)
{
	static const uint64_t no_guid[2];

	vmgen_g.fastpath.counter_kind = VMGEN__COUNTER_U32;
	vmgen_g.fastpath.counter = counter;
	vmgen_g.fast_kind = VMGEN__FAST_WORDS;
	vmgen_g.fast_counter = counter;
	vmgen_g.fast_word = no_guid;
}

int vmgen_read_u32(uint64_t *value)
{
	*value = __atomic_load_n(vmgen_g.fast_counter, __ATOMIC_ACQUIRE);
	return 0;
}

static const uint32_t released_counter;

void vmgen_source_release(void)
{
	if (vmgen_g.map)
		munmap(vmgen_g.map, vmgen_g.map_len);
	vmgen_g.map = NULL;
	vmgen_g.map_len = 0;
	if (vmgen_g.src_fd >= 0)
		close(vmgen_g.src_fd);
	vmgen_g.src_fd = -1;
	free(vmgen_g.path);
	vmgen_g.path = NULL;
	vmgen_g.src_is_chr = false;
	vmgen_g.src_writable = false;
	vmgen_g.tracking = false;
	/*
	 * Not zeroed: under auto, a switch from none to a source that
	 * appeared releases none while binaries built against 0.1 may be
	 * reading this very struct (their inline code dereferences counter
	 * without a check). A counter that never moves is always safe.
	 */
	vmgen_g.fastpath.counter_kind = VMGEN__COUNTER_U32;
	vmgen_g.fastpath.counter = &released_counter;
	vmgen_g.fast_kind = VMGEN__FAST_SLOW;
	vmgen_g.fast_counter = NULL;
	vmgen_g.fast_word = NULL;
	vmgen_g.guid_fold = 0;
	vmgen_g.ops = &vmgen_none_ops;
	vmgen_g.kind = VMGEN_SOURCE_NONE;
}

/*
 * In a fork child the device fd is shared with the parent: its
 * acknowledged generation, tracking and poll state would be too. Give the
 * child its own open file, under the same fd number.
 */
int vmgen_reopen_ro(void)
{
	int fd;

	if (!vmgen_g.src_is_chr || vmgen_g.src_fd < 0)
		return 0;
	fd = open(vmgen_g.path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	fd = vmgen_replace_fd(vmgen_g.src_fd, fd);
	return fd < 0 ? fd : 0;
}
