/* SPDX-License-Identifier: MIT */
/* What the library found and chose, for tools and diagnostics. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "vmgenid-internal.h"

static const char *const source_names[VMGEN_SOURCE_COUNT] = {
	[VMGEN_SOURCE_VMCLOCK] = "vmclock",
	[VMGEN_SOURCE_SYSGENID] = "sysgenid",
	[VMGEN_SOURCE_FILE] = "file",
	[VMGEN_SOURCE_NONE] = "none",
};

VMGEN_PUBLIC int vmgen_source(void)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_g.kind;
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC const char *vmgen_source_name(int kind)
{
	if (kind < 0 || kind >= VMGEN_SOURCE_COUNT)
		return NULL;
	return source_names[kind];
}

/* Stable until the process exits: the path is never changed once set. */
VMGEN_PUBLIC const char *vmgen_source_path(void)
{
	const char *path;

	if (vmgen_enter() < 0)
		return NULL;
	path = vmgen_g.path;
	vmgen_unlock();
	return path;
}

/* Also after a failed initialisation: that is when it is most useful. */
VMGEN_PUBLIC const char *vmgen_source_rejected(int kind)
{
	const char *reason;

	if (kind < 0 || kind >= VMGEN_SOURCE_COUNT)
		return NULL;
	vmgen_lock();
	/* Report the attempt that failed rather than start another one. */
	if (!vmgen_g.init_attempted) {
		vmgen_unlock();
		if (vmgen_enter() < 0)
			vmgen_lock();
	}
	reason = vmgen_g.rejected[kind];
	vmgen_unlock();
	return reason;
}

/* Through a pointer: VMClock's counter uses all 64 bits. */
VMGEN_PUBLIC int vmgen_source_generation(uint64_t *value)
{
	uint64_t now;
	int ret;

	if (!value)
		return -EINVAL;
	ret = vmgen_enter();
	if (ret < 0)
		return ret;
	ret = vmgen_source_read_locked(&now);
	vmgen_unlock();
	if (ret < 0)
		return ret;
	*value = now;
	return 0;
}

/*
 * Whether a transaction begun before a restore can still commit after it,
 * in the moments before the kernel has handled the restore: not with
 * VMClock, nor with sysgenid's GUID page. The reason is static, or quotes
 * the module and then stays the same until the process exits.
 */
VMGEN_PUBLIC int vmgen_source_race_free(const char **reason)
{
	const char *why = NULL;
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_g.ops->race_free(&why);
	vmgen_unlock();
	if (reason)
		*reason = ret ? NULL : why;
	return ret;
}

VMGEN_PUBLIC int vmgen_fork_mode(void)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_g.fork_mode;
	vmgen_unlock();
	return ret;
}

/* Static strings only: safe from any thread, never NULL. */
VMGEN_PUBLIC const char *vmgen_strerror(int err)
{
	const char *desc;

	if (err == 0)
		return "Success";
	if (err > 0)
		return "Not a negative errno";
	/* Negative, but no errno: and -INT_MIN would overflow. */
	if (err == INT_MIN)
		return "Unknown error";
	switch (-err) {
	case ESTALE:
		return "The VM was restored, but the kernel has not confirmed its RNG reseed (nothing commits, no callback ran)";
	case EALREADY:
		return "Already initialised (or watcher already running)";
	case ENODEV:
		return "Not a usable generation source (see vmgen_source_rejected)";
	case EOPNOTSUPP:
		return "Not supported by this generation source";
	case ESRCH:
		return "Watcher not running";
	case EDEADLK:
		return "Not allowed from inside a callback";
	case ETIMEDOUT:
		return "Timed out";
	case EAGAIN:
		return "Source busy: update in progress, try again";
	case ENOENT:
		return "No such callback, or source missing";
	case EINVAL:
		return "Invalid argument, or a callback failed without an errno";
	case ENOTTY:
		return "Not a sysgenid device (a stand-in file has no ioctls)";
	case EBADF:
		return "Device opened read-only: no permission to acknowledge or be tracked";
	case ENOSPC:
		return "Callback ids exhausted";
	}
	desc = strerrordesc_np(-err);
	return desc ? desc : "Unknown error";
}
