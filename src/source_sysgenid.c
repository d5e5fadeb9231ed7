/* SPDX-License-Identifier: MIT */
/*
 * SysGenID (/dev/sysgenid): a u32 counter in a read-only page, with poll,
 * write-acknowledge, the watcher-tracking and trigger ioctls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/sysgenid.h>

#include "vmgenid-internal.h"

/* What the module says about the GUID page (driver/counter_dev.c). */
#define SYSFS_GUID_PAGE "/sys/class/misc/sysgenid/guid_page"

static int real_ioctl(int fd, unsigned long request, unsigned long arg)
{
	return ioctl(fd, request, arg);
}

int (*vmgen_guid_ioctl)(int fd, unsigned long request,
			unsigned long arg) = real_ioctl;

static long page_size(void)
{
	long pagesz = sysconf(_SC_PAGESIZE);

	return pagesz > 0 ? pagesz : 4096;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The hypervisor writes the 16 bytes while no vCPU runs, so a torn read
 * can only happen across a restore, and then the next read differs.
 */
static void guid_read(uint64_t guid[2])
{
	guid[0] = __atomic_load_n(&vmgen_g.guid[0], __ATOMIC_ACQUIRE);
	guid[1] = __atomic_load_n(&vmgen_g.guid[1], __ATOMIC_ACQUIRE);
}

static bool guid_equal(const uint64_t a[2], const uint64_t b[2])
{
	return a[0] == b[0] && a[1] == b[1];
}

static void guid_record(const uint64_t guid[2])
{
	vmgen_g.guid_handled[0] = guid[0];
	vmgen_g.guid_handled[1] = guid[1];
	/* what the inline code XORs into the counter */
	vmgen_g.guid_fold = guid[0] ^ guid[1];
}

/* "module does not offer the GUID page: <the module's own reason>" */
static const char *not_offered_reason(void)
{
	static const char prefix[] = "module does not offer the GUID page";
	char text[160];
	ssize_t n = -1;
	int fd;

	if (vmgen_g.src_is_chr &&
	    (fd = open(SYSFS_GUID_PAGE, O_RDONLY | O_CLOEXEC)) >= 0) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
	}
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\0'))
		n--;
	if (n <= 0)
		return prefix;
	snprintf(vmgen_g.race_reason_buf, sizeof(vmgen_g.race_reason_buf),
		 "%s: %.*s", prefix, (int)n, text);
	return vmgen_g.race_reason_buf;
}

/*
 * Where the module offers it, map the page that holds the hypervisor's
 * GUID and let the fast path compare it: then a transaction begun before a
 * restore fails to commit from the first instruction after it, before the
 * kernel has even seen the ACPI notification. Otherwise say why not.
 */
static void guid_setup(int fd)
{
	uint64_t before[2], after[2];
	struct stat st;
	void *map;
	int off, i;

	off = vmgen_guid_ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
	if (off < 0) {
		if (errno == ENODEV)
			vmgen_g.race_reason = not_offered_reason();
		else if (!vmgen_g.src_is_chr)
			vmgen_g.race_reason =
				"counter only: a file standing in for the device";
		else if (errno == ENOTTY)
			vmgen_g.race_reason =
				"counter only: old module or kernel driver (no GUID page)";
		else
			vmgen_g.race_reason =
				"counter only: SYSGENID_GET_GUID_OFFSET failed";
		return;
	}
	/* The inline code loads it as two aligned u64 words. */
	if (off % 8 || off + SYSGENID_GUID_SIZE > page_size()) {
		vmgen_g.race_reason =
			"counter only: the module gave an unusable GUID offset";
		return;
	}
	if (!vmgen_g.src_is_chr &&
	    (fstat(fd, &st) < 0 || st.st_size < 2 * page_size())) {
		vmgen_g.race_reason =
			"counter only: the stand-in file has no GUID page";
		return;
	}
	map = vmgen_map_page(VMGEN_SOURCE_SYSGENID, fd, SYSGENID_GUID_PGOFF);
	if (!map) {
		vmgen_g.race_reason =
			"counter only: the GUID page could not be mapped";
		return;
	}
	vmgen_g.guid_map = map;
	vmgen_g.guid = (const uint64_t *)(const void *)((char *)map + off);
	/*
	 * No step and no callback exist yet; still, have the kernel handle
	 * the GUID of now, so that its RNG is reseeded for it before we
	 * report a generation (best effort: the fast path sees any change).
	 */
	for (i = 0; i < 3; i++) {
		guid_read(before);
		(void)vmgen_guid_ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0);
		guid_read(after);
		if (guid_equal(before, after))
			break;
	}
	guid_record(after);
	vmgen_g.fast_word = vmgen_g.guid;
	vmgen_g.race_reason = NULL;
}

/*
 * Called before every observation: 0 if the GUID is the one the last step
 * stands for, 1 once it moved and the kernel has reseeded for it (a VM
 * step is due), or -ESTALE if that is not confirmed within
 * VMGEN_GUID_CONFIRM_MS. Nothing commits meanwhile: the fast path compares
 * the GUID with the handled one.
 */
static int sysgenid_confirm(void)
{
	uint64_t before[2], now[2];
	int64_t deadline = -1;
	struct timespec ms = { 0, 1000000 };
	int ret;

	if (!vmgen_g.guid)
		return 0;
	guid_read(now);
	if (guid_equal(now, vmgen_g.guid_handled))
		return 0;
	/* 0.1's inline code compares the counter alone: stop it too. */
	__atomic_store_n(&vmgen_g.page->local.generation, 0, __ATOMIC_RELEASE);
	for (;;) {
		guid_read(before);
		ret = vmgen_guid_ioctl(vmgen_g.src_fd,
				       SYSGENID_HANDLE_GUID_CHANGE, 0);
		guid_read(now);
		/* The kernel mixed it in, reseeded, bumped the counter. */
		if (ret == 0 && guid_equal(before, now))
			break;
		/*
		 * The module could not do it on request: its own path (the
		 * ACPI notification) bumps the counter after the reseed.
		 */
		if (ret < 0 && errno != EINTR &&
		    __atomic_load_n(vmgen_g.fast_counter, __ATOMIC_ACQUIRE) !=
		    (uint32_t)vmgen_g.src_seen)
			break;
		if (deadline < 0)
			deadline = now_ms() + VMGEN_GUID_CONFIRM_MS;
		else if (now_ms() >= deadline)
			return -ESTALE;
		if (ret < 0)
			nanosleep(&ms, NULL);
	}
	guid_record(now);
	return 1;
}

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
	guid_setup(fd);
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
	*reason = vmgen_g.race_reason;
	return vmgen_g.guid != NULL;
}

static void sysgenid_close(void)
{
	if (vmgen_g.guid_map)
		munmap(vmgen_g.guid_map, (size_t)page_size());
	vmgen_g.guid_map = NULL;
	vmgen_g.guid = NULL;
	memset(vmgen_g.guid_handled, 0, sizeof(vmgen_g.guid_handled));
	vmgen_g.race_reason = NULL;
	vmgen_source_release();
}

const struct vmgen_source_ops vmgen_sysgenid_ops = {
	.name = "sysgenid",
	.default_path = VMGEN_DEFAULT_SYSGENID,
	.open = sysgenid_open,
	.read = vmgen_read_u32,
	.confirm = sysgenid_confirm,
	.race_free = sysgenid_race_free,
	.ack = sysgenid_ack,
	.trigger = sysgenid_trigger,
	.set_tracking = sysgenid_set_tracking,
	.wait_watchers = sysgenid_wait_watchers,
	.reopen = sysgenid_reopen,
	.close = sysgenid_close,
};
