/* SPDX-License-Identifier: MIT */
/*
 * Initialisation: parse the source spec, probe the sources best first,
 * set up fork detection and notification, publish the fast path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmgenid-internal.h"

struct vmgen_state vmgen_g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.kind = VMGEN_SOURCE_NONE,
	.src_fd = -1,
	.epfd = -1,
	.ifd = -1,
	.kickfd = -1,
	.stopfd = -1,
	.next_id = 1,
	.callbacks = CDS_LIST_HEAD_INIT(vmgen_g.callbacks),
};

/* The none source reads this: it never changes. */
static const uint32_t vmgen_zero_counter;
/* The GUID words of a source without a GUID page. */
static const uint64_t vmgen_zero_words[2];

void vmgen_lock(void)
{
	pthread_mutex_lock(&vmgen_g.lock);
}

void vmgen_unlock(void)
{
	pthread_mutex_unlock(&vmgen_g.lock);
}

void vmgen_reject(int kind, const char *reason)
{
	vmgen_g.rejected[kind] = reason;
}

int vmgen_replace_fd(int old, int newfd)
{
	if (old < 0 || old == newfd)
		return newfd;
	if (dup3(newfd, old, O_CLOEXEC) < 0) {
		int err = -errno;

		close(newfd);
		return err;
	}
	close(newfd);
	return old;
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

/* Map one page of @fd read-only and shared (the drivers allow no more). */
int vmgen_map_source(int kind, int fd)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	void *map;

	if (pagesz <= 0)
		pagesz = 4096;
	map = mmap(NULL, (size_t)pagesz, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		int err = -errno;

		vmgen_reject(kind, "mmap failed");
		return err;
	}
	vmgen_g.map = map;
	vmgen_g.map_len = (size_t)pagesz;
	return 0;
}

/* Make a mapped source the one in use; on failure the caller cleans up. */
int vmgen_source_adopt(int kind, int fd, const char *path,
		       uint32_t counter_kind)
{
	vmgen_g.path = strdup(path);
	if (!vmgen_g.path)
		return -ENOMEM;
	vmgen_g.kind = kind;
	vmgen_g.src_fd = fd;
	vmgen_g.fastpath.counter_kind = counter_kind;
	vmgen_g.fastpath.counter = vmgen_g.map;
	return 0;
}

void vmgen_source_close_locked(void)
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
	vmgen_g.kind = VMGEN_SOURCE_NONE;
}

/*
 * In a fork child the device fd is shared with the parent: its
 * acknowledged generation, tracking and poll state would be too. Give the
 * child its own open file, under the same fd number.
 */
int vmgen_source_reopen_locked(void)
{
	int fd, ret;

	if (!vmgen_g.src_is_chr || vmgen_g.src_fd < 0)
		return 0;
	if (vmgen_g.kind == VMGEN_SOURCE_SYSGENID)
		fd = vmgen_sysgenid_open_fd(vmgen_g.path);
	else if ((fd = open(vmgen_g.path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
			    O_NONBLOCK)) < 0)
		fd = -errno;
	if (fd < 0)
		return fd;
	ret = vmgen_replace_fd(vmgen_g.src_fd, fd);
	if (ret < 0)
		return ret;
	if (vmgen_g.kind == VMGEN_SOURCE_SYSGENID && vmgen_g.tracking)
		(void)vmgen_sysgenid_set_tracking(true);
	return 0;
}

int vmgen_source_read_locked(uint64_t *value)
{
	if (vmgen_g.fastpath.counter_kind == VMGEN__COUNTER_VMCLOCK)
		return vmgen_vmclock_read(vmgen_g.fastpath.counter, value);
	*value = __atomic_load_n((const uint32_t *)vmgen_g.fastpath.counter,
				 __ATOMIC_ACQUIRE);
	return 0;
}

static int setup_none(void)
{
	vmgen_g.kind = VMGEN_SOURCE_NONE;
	vmgen_g.src_is_chr = false;
	vmgen_g.notify = VMGEN_NOTIFY_NONE;
	vmgen_g.fastpath.counter_kind = VMGEN__COUNTER_U32;
	vmgen_g.fastpath.counter = &vmgen_zero_counter;
	return 0;
}

/* "auto" | "none" | "vmclock[:PATH]" | "sysgenid[:PATH]" | "file:PATH" */
static int open_spec(const char *spec)
{
	const char *path;
	int ret;

	if (!strcmp(spec, "auto")) {
		ret = vmgen_vmclock_open(VMGEN_DEFAULT_VMCLOCK, false);
		if (ret < 0)
			ret = vmgen_sysgenid_open(VMGEN_DEFAULT_SYSGENID, false);
		if (ret < 0)
			ret = setup_none();
		return ret;
	}
	if (!strcmp(spec, "none"))
		return setup_none();
	if (!strcmp(spec, "vmclock"))
		return vmgen_vmclock_open(VMGEN_DEFAULT_VMCLOCK, false);
	if (!strcmp(spec, "sysgenid"))
		return vmgen_sysgenid_open(VMGEN_DEFAULT_SYSGENID, false);
	if (!strncmp(spec, "vmclock:", 8)) {
		path = spec + 8;
		return *path ? vmgen_vmclock_open(path, true) : -EINVAL;
	}
	if (!strncmp(spec, "sysgenid:", 9)) {
		path = spec + 9;
		return *path ? vmgen_sysgenid_open(path, true) : -EINVAL;
	}
	if (!strncmp(spec, "file:", 5)) {
		path = spec + 5;
		return *path ? vmgen_file_open(path) : -EINVAL;
	}
	return -EINVAL;
}

/* Describe the source to the VMGENID_1.1 inline code; kind goes last. */
static void fast_publish_locked(void)
{
	const unsigned char *page = vmgen_g.fastpath.counter;

	vmgen__fast.size = sizeof(vmgen__fast);
	vmgen__fast.local = &vmgen_g.page->fast;
	if (vmgen_g.fastpath.counter_kind == VMGEN__COUNTER_VMCLOCK) {
		vmgen__fast.counter = (const uint32_t *)(const void *)
				      (page + VMCLOCK_OFF_SEQ);
		vmgen__fast.word = (const uint64_t *)(const void *)
				   (page + VMCLOCK_OFF_GEN);
		__atomic_store_n(&vmgen__fast.kind, VMGEN__FAST_VMCLOCK,
				 __ATOMIC_RELEASE);
		return;
	}
	vmgen__fast.counter = vmgen_g.fastpath.counter;
	vmgen__fast.word = vmgen_zero_words;
	__atomic_store_n(&vmgen__fast.kind, VMGEN__FAST_WORDS,
			 __ATOMIC_RELEASE);
}

void vmgen_teardown_locked(void)
{
	__atomic_store_n(&vmgen__fast.kind, VMGEN__FAST_SLOW,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&vmgen__fastpath, NULL, __ATOMIC_RELEASE);
	vmgen_notify_close_locked();
	vmgen_fork_release_locked();
	vmgen_source_close_locked();
	vmgen_callbacks_free_all_locked();
	memset(&vmgen_g.fastpath, 0, sizeof(vmgen_g.fastpath));
	vmgen__fast.counter = NULL;
	vmgen__fast.word = NULL;
	vmgen__fast.local = NULL;
	vmgen_g.guid_fold = 0;
	vmgen_g.handled = 0;
	vmgen_g.target = 0;
	vmgen_g.reasons = 0;
	vmgen_g.src_seen = 0;
	vmgen_g.last_error = 0;
	vmgen_g.fork_seen = false;
	vmgen_g.dispatching = false;
	vmgen_g.poller = false;
	vmgen_g.watcher_restart = false;
	__atomic_store_n(&vmgen_g.init_state, 0, __ATOMIC_RELEASE);
}

static int init_locked(const char *spec, unsigned int flags)
{
	uint64_t value;
	int ret;

	memset(vmgen_g.rejected, 0, sizeof(vmgen_g.rejected));
	vmgen_g.init_attempted = true;
	if (!spec) {
		/* secure_getenv: a setuid program must not be redirected. */
		spec = secure_getenv("VMGENID_SOURCE");
		if (!spec || !*spec)
			spec = "auto";
	}
	ret = open_spec(spec);
	if (ret < 0)
		goto fail;
	if (flags & VMGEN_INIT_TRACKING) {
		ret = vmgen_g.kind == VMGEN_SOURCE_SYSGENID ?
		      vmgen_sysgenid_set_tracking(true) : -EOPNOTSUPP;
		if (ret < 0)
			goto fail;
	}
	ret = vmgen_fork_setup_locked();
	if (ret < 0)
		goto fail;
	ret = vmgen_source_read_locked(&value);
	if (ret < 0)
		goto fail;

	vmgen_g.fastpath.size = sizeof(vmgen_g.fastpath);
	vmgen_g.fastpath.local = &vmgen_g.page->local;
	vmgen_g.src_seen = value;
	vmgen_g.handled = 1;
	vmgen_g.target = 1;
	vmgen_g.reasons = 0;
	vmgen_g.last_error = 0;
	vmgen_g.fork_seen = false;
	vmgen_publish_locked(1, value);
	__atomic_store_n(&vmgen__fastpath, &vmgen_g.fastpath, __ATOMIC_RELEASE);
	fast_publish_locked();
	__atomic_store_n(&vmgen_g.init_state, 1, __ATOMIC_RELEASE);
	return 0;

fail:
	vmgen_teardown_locked();
	return ret;
}

VMGEN_PUBLIC int vmgen_init(const char *source, unsigned int flags)
{
	int ret;

	vmgen_lock();
	if (flags & ~(unsigned int)(VMGEN_INIT_WATCHER | VMGEN_INIT_TRACKING)) {
		ret = -EINVAL;
		goto fail_closed;
	}
	/* A failed init, lazy or explicit, may be replaced by a new one. */
	if (vmgen_g.init_state > 0) {
		vmgen_unlock();
		return -EALREADY;
	}
	ret = init_locked(source, flags);
	if (ret < 0)
		goto fail_closed;
	vmgen_unlock();
	if (ret == 0 && (flags & VMGEN_INIT_WATCHER))
		ret = vmgen_watcher_start();
	return ret;

fail_closed:
	/*
	 * The caller demanded something we could not give: never fall back
	 * to a lazy default behind its back (it may log the error and carry
	 * on). Every later call reports this error until an init succeeds.
	 */
	if (vmgen_g.init_state <= 0) {
		vmgen_g.init_attempted = true;
		__atomic_store_n(&vmgen_g.init_state, ret, __ATOMIC_RELEASE);
	}
	vmgen_unlock();
	return ret;
}

/*
 * Every entry point but the inline fast path comes here: initialise on
 * first use, notice a fork. Returns 0 with the state lock held, or a
 * negative errno without it.
 */
int vmgen_enter(void)
{
	int state = __atomic_load_n(&vmgen_g.init_state, __ATOMIC_ACQUIRE);

	vmgen_lock();
	if (state <= 0) {
		state = vmgen_g.init_state;
		if (state == 0) {
			state = init_locked(NULL, 0);
			if (state < 0)	/* sticky: every call reports it */
				__atomic_store_n(&vmgen_g.init_state, state,
						 __ATOMIC_RELEASE);
			else
				state = 1;
		}
		if (state < 0) {
			vmgen_unlock();
			return state;
		}
	}
	if (vmgen_fork_check_locked() && vmgen_g.watcher_restart) {
		vmgen_unlock();
		vmgen_watcher_restart_if_needed();
		vmgen_lock();
	}
	return 0;
}
