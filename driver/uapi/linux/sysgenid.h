/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * SysGenID: a system generation counter that user space can mmap, read,
 * poll and acknowledge. The ABI of the 2021 "sysgenid" patch series, as
 * carried by Amazon Linux kernels; shared by the libvmgenid library and
 * its out-of-tree module.
 */
#ifndef _UAPI_LINUX_SYSGENID_H
#define _UAPI_LINUX_SYSGENID_H

#include <linux/ioctl.h>

#define SYSGENID_DEVICE_NAME		"sysgenid"

#define SYSGENID_IOCTL			0xE4
/* arg: non-zero enables watcher tracking for this fd, zero disables it */
#define SYSGENID_SET_WATCHER_TRACKING	_IO(SYSGENID_IOCTL, 1)
/* arg: timeout in milliseconds, 0 waits forever */
#define SYSGENID_WAIT_WATCHERS		_IO(SYSGENID_IOCTL, 2)
/* arg: min_gen; the counter becomes max(min_gen, counter + 1) */
#define SYSGENID_TRIGGER_GEN_UPDATE	_IO(SYSGENID_IOCTL, 3)

#endif /* _UAPI_LINUX_SYSGENID_H */
