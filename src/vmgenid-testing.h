/* SPDX-License-Identifier: MIT */
/* Hooks that only the internal static library (unit tests) provides. */
#ifndef VMGENID_TESTING_H
#define VMGENID_TESTING_H

#include <string.h>

void vmgen__test_reset(void);

/*
 * Route the sysgenid GUID ioctls (SYSGENID_GET_GUID_OFFSET,
 * SYSGENID_HANDLE_GUID_CHANGE) to @fn, which answers like ioctl(2): a
 * value >= 0, or -1 with errno set. NULL restores the real ioctl. A
 * regular file has no ioctls: this lets a memfd stand in for the module's
 * GUID page (page 1 of the file) in the unit tests.
 */
void vmgen__test_guid_ioctl(int (*fn)(int fd, unsigned long request,
				      unsigned long arg));

/*
 * Where auto looks for a source that appears after initialisation:
 * @sysfs_root stands for /sys when deciding whether the machine has a VM
 * device (so a directory with bus/acpi/devices/X/modalias naming
 * VM_GEN_COUNTER says "a device exists"); @kind and @path, when @path is
 * not NULL, replace the default device paths (a regular file may stand in,
 * as with an explicit path). NULLs restore the defaults.
 */
void vmgen__test_reprobe(const char *sysfs_root, int kind, const char *path);

#endif /* VMGENID_TESTING_H */
