/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * SysGenID: a system generation counter that user space can mmap, read,
 * poll and acknowledge. The ABI of the 2021 "sysgenid" patch series, as
 * carried by Amazon Linux kernels; shared by the libvmgenid library and
 * its out-of-tree module.
 *
 * Extensions of the libvmgenid module (ioctl numbers 4 and up, and a second
 * mmap offset) leave the original ABI unchanged: page offset 0 still maps
 * the counter page, with the u32 counter at byte 0.
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
/*
 * arg: min_gen; the counter becomes max(min_gen, counter + 1). The
 * libvmgenid module fails it with EOVERFLOW where the counter is U32_MAX.
 */
#define SYSGENID_TRIGGER_GEN_UPDATE	_IO(SYSGENID_IOCTL, 3)

/*
 * The hypervisor's VM generation ID, where the module offers it (see
 * sysgenid(4)): the page that holds nothing but QEMU's vmgenid blob, which
 * the hypervisor rewrites before any vCPU runs after a restore.
 *
 * mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd,
 *      SYSGENID_GUID_PGOFF * page_size) maps it.
 */
#define SYSGENID_GUID_PGOFF		1
#define SYSGENID_GUID_SIZE		16
/*
 * Returns the byte offset of the 16-byte GUID within that page (>= 0), or
 * fails with ENODEV where the page is not offered. arg: unused, 0.
 */
#define SYSGENID_GET_GUID_OFFSET	_IO(SYSGENID_IOCTL, 4)
/*
 * Handle a generation ID change now instead of waiting for the ACPI
 * notification: if the GUID in memory differs from the one the module last
 * handled, mix it into the kernel's entropy pool, reseed the kernel's crng,
 * then bump the counter. Returns 0 once the GUID that was in memory at the
 * call has been handled (by this call or an earlier one), so the counter
 * has moved for it; ENODEV where the module does not read the GUID. No
 * privilege: a caller can cause at most one reseed per real change.
 * arg: unused, 0.
 */
#define SYSGENID_HANDLE_GUID_CHANGE	_IO(SYSGENID_IOCTL, 5)

#endif /* _UAPI_LINUX_SYSGENID_H */
