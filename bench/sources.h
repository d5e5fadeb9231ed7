/* SPDX-License-Identifier: MIT */
/*
 * The generation sources the fast-path benchmarks run on, from one counter
 * file: file, none, a sysgenid stand-in (counter only), a VMClock stand-in
 * and, where the library's test hook is linked in (BENCH_GUID_HOOK),
 * sysgenid with the GUID page.
 */
#ifndef VMGENID_BENCH_SOURCES_H
#define VMGENID_BENCH_SOURCES_H

#include <sys/mman.h>

#include <vmgenid.h>

#include "bench.h"

#ifdef BENCH_GUID_HOOK
#include <linux/sysgenid.h>

#include "vmgenid-testing.h"

#define GUID_OFFSET 40		/* where QEMU puts it in its page */

/* The module's two GUID ioctls, as the unit tests fake them. */
static inline int fake_guid_ioctl(int fd, unsigned long request, unsigned long arg)
{
	(void)fd;
	(void)arg;
	if (request == SYSGENID_GET_GUID_OFFSET)
		return GUID_OFFSET;
	return 0;	/* HANDLE: this GUID is handled */
}

/* A memfd: the u32 counter in page 0, a GUID in page 1. */
static inline int guid_source(char *spec, size_t size)
{
	static const uint8_t guid[16] = {
		0x6b, 0x2c, 0x1a, 0x9e, 0x50, 0x41, 0x4d, 0x11,
		0x8a, 0x3f, 0x27, 0xc5, 0x90, 0x0d, 0xe2, 0x74,
	};
	int fd = memfd_create("vmgenid-bench-guid", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, 8192) < 0 ||
	    pwrite(fd, guid, sizeof(guid), 4096 + GUID_OFFSET) !=
	    (ssize_t)sizeof(guid))
		bench_die("guid memfd", errno);
	vmgen__test_guid_ioctl(fake_guid_ioctl);
	snprintf(spec, size, "sysgenid:/proc/self/fd/%d", fd);
	return vmgen_init(spec, 0);
}
#endif

/* The counter file laid out as a VMClock page (vmclock-abi.h). */
static inline void vmclock_layout(struct bench_counter *c)
{
	uint32_t magic = 0x4b4c4356, size = 4096, seq = 2;
	uint16_t version = 1;
	uint64_t flags = 1u << 8, gen = 7;	/* VM_GEN_COUNTER_PRESENT */

	if (ftruncate(c->fd, 4096) < 0 ||
	    pwrite(c->fd, &magic, 4, 0) != 4 ||
	    pwrite(c->fd, &size, 4, 4) != 4 ||
	    pwrite(c->fd, &version, 2, 8) != 2 ||
	    pwrite(c->fd, &seq, 4, 12) != 4 ||
	    pwrite(c->fd, &flags, 8, 24) != 8 ||
	    pwrite(c->fd, &gen, 8, 104) != 8)
		bench_die("vmclock layout", errno);
}

static inline int init_source(const char *which, struct bench_counter *c)
{
	char spec[300];

	if (strcmp(which, "file") == 0)
		return vmgen_init(c->spec, 0);
	if (strcmp(which, "none") == 0)
		return vmgen_init("none", 0);
	if (strcmp(which, "sysgenid") == 0) {	/* a stand-in: counter only */
		snprintf(spec, sizeof(spec), "sysgenid:%s", c->path);
		return vmgen_init(spec, 0);
	}
	if (strcmp(which, "vmclock") == 0) {
		vmclock_layout(c);
		snprintf(spec, sizeof(spec), "vmclock:%s", c->path);
		return vmgen_init(spec, 0);
	}
#ifdef BENCH_GUID_HOOK
	if (strcmp(which, "guid") == 0)
		return guid_source(spec, sizeof(spec));
#endif
	return -EINVAL;
}

#endif /* VMGENID_BENCH_SOURCES_H */
