/* SPDX-License-Identifier: MIT */
/*
 * Test-only hook, built into the internal static library and never into
 * the shipped ones: return the library to its uninitialised state so that
 * one test binary can exercise several initialisations. Single-threaded
 * callers only.
 */
#include "vmgenid-internal.h"
#include "vmgenid-testing.h"

void vmgen__test_reset(void)
{
	if (__atomic_load_n(&vmgen_g.init_state, __ATOMIC_ACQUIRE) > 0)
		(void)vmgen_watcher_stop();
	vmgen_probe_stop(false);
	vmgen_lock();
	vmgen_teardown_locked();
	memset(vmgen_g.rejected, 0, sizeof(vmgen_g.rejected));
	vmgen_g.init_attempted = false;
	vmgen_g.ack_attempts = 0;
	vmgen_g.dispatches = 0;
	vmgen_g.probes = 0;
	vmgen_g.switches = 0;
	vmgen_unlock();
}

void vmgen__test_reprobe(const char *sysfs_root, int kind, const char *path)
{
	vmgen_probe_sysfs = sysfs_root ? sysfs_root : "/sys";
	vmgen_probe_kind = path ? kind : -1;
	vmgen_probe_path = path;
}

static int (*real_guid_ioctl)(int, unsigned long, unsigned long);

void vmgen__test_guid_ioctl(int (*fn)(int fd, unsigned long request,
				      unsigned long arg))
{
	if (!real_guid_ioctl)
		real_guid_ioctl = vmgen_guid_ioctl;
	vmgen_guid_ioctl = fn ? fn : real_guid_ioctl;
}
