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

#endif /* VMGENID_TESTING_H */
