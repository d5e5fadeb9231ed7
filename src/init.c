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
	.ops = &vmgen_none_ops,
	.kind = VMGEN_SOURCE_NONE,
	.src_fd = -1,
	.epfd = -1,
	.ifd = -1,
	.kickfd = -1,
	.stopfd = -1,
	.probe_stopfd = -1,
	.next_id = 1,
	.callbacks = CDS_LIST_HEAD_INIT(vmgen_g.callbacks),
};


void vmgen_lock(void)
{
	pthread_mutex_lock(&vmgen_g.lock);
}

void vmgen_unlock(void)
{
	pthread_mutex_unlock(&vmgen_g.lock);
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

/* The back-ends, by enum vmgen_source_kind. */
const struct vmgen_source_ops *const vmgen_backends[VMGEN_SOURCE_COUNT] = {
	[VMGEN_SOURCE_VMCLOCK] = &vmgen_vmclock_ops,
	[VMGEN_SOURCE_SYSGENID] = &vmgen_sysgenid_ops,
	[VMGEN_SOURCE_FILE] = &vmgen_file_ops,
	[VMGEN_SOURCE_NONE] = &vmgen_none_ops,
};

int vmgen_source_read_locked(uint64_t *value)
{
	return vmgen_g.ops->read(value);
}

void vmgen_source_close_locked(void)
{
	vmgen_g.ops->close();
}

int vmgen_source_reopen_locked(void)
{
	return vmgen_g.ops->reopen ? vmgen_g.ops->reopen() : 0;
}

/* "auto" | "none" | "vmclock[:PATH]" | "sysgenid[:PATH]" | "file:PATH" */
static int open_spec(const char *spec)
{
	const struct vmgen_source_ops *ops;
	size_t len;
	int kind;

	if (!strcmp(spec, "auto")) {
		for (kind = 0; kind < VMGEN_SOURCE_COUNT; kind++) {
			ops = vmgen_backends[kind];
			/* never the file source: it has no default */
			if (kind == VMGEN_SOURCE_NONE ||
			    (ops->default_path &&
			     ops->open(ops->default_path, false) == 0))
				break;
		}
		return kind == VMGEN_SOURCE_NONE ? vmgen_none_ops.open(NULL,
								       false) : 0;
	}
	for (kind = 0; kind < VMGEN_SOURCE_COUNT; kind++) {
		ops = vmgen_backends[kind];
		len = strlen(ops->name);
		if (strncmp(spec, ops->name, len))
			continue;
		if (spec[len] == '\0' && !ops->needs_path)
			return ops->open(ops->default_path, false);
		/* none takes no path; the others a non-empty one */
		if (spec[len] == ':' && spec[len + 1] &&
		    (ops->default_path || ops->needs_path))
			return ops->open(spec + len + 1, true);
		return -EINVAL;
	}
	return -EINVAL;
}

/* Describe the source to the VMGENID_1.1 inline code; kind goes last. */
void vmgen_fast_publish_locked(void)
{
	vmgen__fast.size = sizeof(vmgen__fast);
	vmgen__fast.local = &vmgen_g.page->fast;
	vmgen__fast.counter = vmgen_g.fast_counter;
	vmgen__fast.word = vmgen_g.fast_word;
	__atomic_store_n(&vmgen__fast.kind, vmgen_g.fast_kind,
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
	vmgen__fast.counter = NULL;
	vmgen__fast.word = NULL;
	vmgen__fast.local = NULL;
	vmgen_g.handled = 0;
	vmgen_g.target = 0;
	vmgen_g.reasons = 0;
	vmgen_g.src_seen = 0;
	vmgen_g.last_error = 0;
	vmgen_g.fork_seen = false;
	vmgen_g.dispatching = false;
	vmgen_g.poller = false;
	vmgen_g.watcher_restart = false;
	vmgen_g.watching = false;
	vmgen_g.probe_restart = false;
	vmgen_g.next_probe_ms = 0;
	vmgen_g.probe_given_up = 0;
	vmgen_marker_clear_locked();
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
	/*
	 * auto found nothing: if the machine has a VM device, its source
	 * may appear later (the module loads after us); else it never will.
	 */
	if (!strcmp(spec, "auto") && vmgen_g.kind == VMGEN_SOURCE_NONE &&
	    vmgen_vm_device_present()) {
		vmgen_watch_begin_locked();
	}
	if (flags & VMGEN_INIT_TRACKING) {
		ret = vmgen_g.ops->set_tracking ?
		      vmgen_g.ops->set_tracking(true) : -EOPNOTSUPP;
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
	vmgen_fast_publish_locked();
	vmgen_marker_set_locked();
	vmgen_probe_start_locked();
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
	if (vmgen_g.probe_restart)
		vmgen_probe_start_locked();	/* a fork child's own */
	return 0;
}
