/* SPDX-License-Identifier: MIT */
/*
 * Unit test helpers: fake sources in memfds and temp files, so that no
 * test needs root, a module or a VM. A test file includes this once.
 */
#ifndef VMGEN_TEST_HELPERS_H
#define VMGEN_TEST_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmgenid.h"
#include "vmgenid-internal.h"
#include "vmgenid-testing.h"

#define SKIP_EXIT 77

/* A file standing in for a source: path and a shared writable mapping. */
struct fake {
	int fd;
	char path[64];
	void *map;
	size_t len;
};

/* The source's counter, or its negative errno: one value to assert on. */
static inline int64_t source_gen(void)
{
	uint64_t value;
	int ret = vmgen_source_generation(&value);

	return ret < 0 ? ret : (int64_t)value;
}

static inline void fake_open(struct fake *f, size_t len)
{
	f->fd = memfd_create("vmgen-fake", MFD_CLOEXEC);
	assert_true(f->fd >= 0);
	assert_int_equal(ftruncate(f->fd, (off_t)len), 0);
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
	f->len = len;
	f->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	assert_true(f->map != MAP_FAILED);
}

static inline void fake_close(struct fake *f)
{
	munmap(f->map, f->len);
	close(f->fd);
}

/* A u32 counter file (sysgenid stand-in or file source). */
static inline void fake_u32(struct fake *f, uint32_t value)
{
	fake_open(f, 4096);
	__atomic_store_n((uint32_t *)f->map, value, __ATOMIC_RELEASE);
}

/*
 * Bump a u32 counter as a writer process would: open the path and write.
 * Not through the memfd descriptor itself: recent kernels (seen on 6.18)
 * send no inotify event for writes through such pseudo files, only for
 * files opened by path.
 */
static inline void fake_u32_write(struct fake *f, uint32_t value)
{
	int fd = open(f->path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &value, sizeof(value), 0), sizeof(value));
	close(fd);
}

static inline uint32_t *vmclock_seq(struct fake *f)
{
	return (uint32_t *)((char *)f->map + VMCLOCK_OFF_SEQ);
}

static inline uint64_t *vmclock_gen(struct fake *f)
{
	return (uint64_t *)((char *)f->map + VMCLOCK_OFF_GEN);
}

/* A VMClock page as a hypervisor would lay it out (little endian host). */
static inline void fake_vmclock(struct fake *f, uint32_t magic, uint32_t size,
				uint64_t flags, uint64_t gen)
{
	uint16_t version = VMCLOCK_VERSION;

	fake_open(f, 4096);
	memcpy((char *)f->map + VMCLOCK_OFF_MAGIC, &magic, 4);
	memcpy((char *)f->map + VMCLOCK_OFF_SIZE, &size, 4);
	memcpy((char *)f->map + VMCLOCK_OFF_VERSION, &version, 2);
	memcpy((char *)f->map + VMCLOCK_OFF_FLAGS, &flags, 8);
	__atomic_store_n(vmclock_gen(f), gen, __ATOMIC_RELAXED);
	__atomic_store_n(vmclock_seq(f), 2, __ATOMIC_RELEASE);
}

/* The hypervisor's update: seq odd, write, seq even. */
static inline void vmclock_set_gen(struct fake *f, uint64_t gen)
{
	uint32_t seq = __atomic_load_n(vmclock_seq(f), __ATOMIC_RELAXED);

	__atomic_store_n(vmclock_seq(f), seq + 1, __ATOMIC_RELAXED);
	/* release: a reader that sees the new value sees the odd count */
	__atomic_store_n(vmclock_gen(f), gen, __ATOMIC_RELEASE);
	__atomic_store_n(vmclock_seq(f), seq + 2, __ATOMIC_RELEASE);
}

static inline char *spec(const char *kind, const struct fake *f)
{
	static char buf[128];

	snprintf(buf, sizeof(buf), "%s:%s", kind, f->path);
	return buf;
}

static inline int reset_setup(void **state)
{
	(void)state;
	vmgen__test_reset();
	unsetenv("VMGENID_SOURCE");
	unsetenv("VMGENID_FORK_DETECTION");
	return 0;
}

static inline int reset_teardown(void **state)
{
	(void)state;
	vmgen__test_reset();
	return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, reset_setup, reset_teardown)

#endif /* VMGEN_TEST_HELPERS_H */
