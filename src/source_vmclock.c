/* SPDX-License-Identifier: MIT */
/*
 * VMClock: a page the hypervisor updates before the guest resumes, so a
 * restore is visible before any guest code runs. The generation counter is
 * non-repeating, not increasing: compare it with !=.
 */
#include <endian.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmgenid-internal.h"

static uint16_t le16_at(const unsigned char *page, size_t off)
{
	uint16_t v;

	memcpy(&v, page + off, sizeof(v));
	return le16toh(v);
}

static uint32_t le32_at(const unsigned char *page, size_t off)
{
	uint32_t v;

	memcpy(&v, page + off, sizeof(v));
	return le32toh(v);
}

static uint64_t le64_at(const unsigned char *page, size_t off)
{
	uint64_t v;

	memcpy(&v, page + off, sizeof(v));
	return le64toh(v);
}

static int vmclock_open(const char *path, bool explicit_path)
{
	const unsigned char *page;
	int fd, ret;

	fd = vmgen_open_source(VMGEN_SOURCE_VMCLOCK, path, explicit_path,
			       false);
	if (fd < 0)
		return fd;
	ret = vmgen_map_source(VMGEN_SOURCE_VMCLOCK, fd);
	if (ret < 0)
		goto fail;
	page = vmgen_g.map;
	ret = -ENODEV;
	if (le32_at(page, VMCLOCK_OFF_MAGIC) != VMCLOCK_MAGIC) {
		vmgen_reject(VMGEN_SOURCE_VMCLOCK, "wrong magic");
		goto fail_unmap;
	}
	/* The kernel's vmclock_probe() refuses both of these. */
	if (le16_at(page, VMCLOCK_OFF_VERSION) != VMCLOCK_VERSION) {
		vmgen_reject(VMGEN_SOURCE_VMCLOCK, "version is not 1");
		goto fail_unmap;
	}
	if (le32_at(page, VMCLOCK_OFF_SIZE) < VMCLOCK_MIN_SIZE) {
		vmgen_reject(VMGEN_SOURCE_VMCLOCK, "too small (size < 112)");
		goto fail_unmap;
	}
	if (le32_at(page, VMCLOCK_OFF_SIZE) > vmgen_g.map_len) {
		vmgen_reject(VMGEN_SOURCE_VMCLOCK,
			     "size larger than the mapped page");
		goto fail_unmap;
	}
	vmgen_g.vmclock_flags = le64_at(page, VMCLOCK_OFF_FLAGS);
	if (!(vmgen_g.vmclock_flags & VMCLOCK_FLAG_VM_GEN_COUNTER)) {
		vmgen_reject(VMGEN_SOURCE_VMCLOCK,
			     "VM_GEN_COUNTER_PRESENT not set");
		goto fail_unmap;
	}
	ret = vmgen_source_adopt(&vmgen_vmclock_ops, VMGEN_SOURCE_VMCLOCK, fd,
				 path);
	if (ret < 0)
		goto fail_unmap;
	vmgen_g.fastpath.counter_kind = VMGEN__COUNTER_VMCLOCK;
	vmgen_g.fastpath.counter = page;
	vmgen_g.fast_kind = VMGEN__FAST_VMCLOCK;
	vmgen_g.fast_counter = (const uint32_t *)(const void *)
			       (page + VMCLOCK_OFF_SEQ);
	vmgen_g.fast_word = (const uint64_t *)(const void *)
			    (page + VMCLOCK_OFF_GEN);
	/*
	 * Recent kernels let the device fd poll when the hypervisor sends
	 * notifications (VMCLOCK_FLAG_NOTIFICATION_PRESENT); without them
	 * poll() returns POLLHUP at once, so fall back to a 1 ms tick.
	 */
	if (vmgen_g.src_is_chr &&
	    (vmgen_g.vmclock_flags & VMCLOCK_FLAG_NOTIFICATION))
		vmgen_g.notify = VMGEN_NOTIFY_FD;
	else
		vmgen_g.notify = VMGEN_NOTIFY_TIMER;
	return 0;

fail_unmap:
	munmap(vmgen_g.map, vmgen_g.map_len);
	vmgen_g.map = NULL;
	vmgen_g.map_len = 0;
fail:
	close(fd);
	return ret;
}

/* The generation counter under the seqcount, as the hypervisor writes it. */
int vmgen_vmclock_read(const void *counter, uint64_t *value)
{
	const unsigned char *page = counter;
	const uint32_t *seq = (const uint32_t *)(page + VMCLOCK_OFF_SEQ);
	const uint64_t *gen = (const uint64_t *)(page + VMCLOCK_OFF_GEN);
	uint32_t s1, s2;
	uint64_t v;
	int i;

	for (i = 0; i < VMCLOCK_READ_TRIES; i++) {
		if (i)
			sched_yield();
		s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (le32toh(s1) & 1)
			continue;
		/* acquire: the re-read of seq stays after it */
		v = __atomic_load_n(gen, __ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(seq, __ATOMIC_RELAXED);
		if (s1 == s2) {
			*value = le64toh(v);
			return 0;
		}
	}
	return -EAGAIN;
}

static int vmclock_read_source(uint64_t *value)
{
	return vmgen_vmclock_read(vmgen_g.map, value);
}

/* The device re-arms poll on read. */
static void vmclock_drain(int fd)
{
	char buf[16];

	(void)!pread(fd, buf, sizeof(buf), 0);
}

static int vmclock_race_free(const char **reason)
{
	return 1;	/* written by the hypervisor before the guest runs */
}

const struct vmgen_source_ops vmgen_vmclock_ops = {
	.name = "vmclock",
	.default_path = VMGEN_DEFAULT_VMCLOCK,
	.open = vmclock_open,
	.read = vmclock_read_source,
	.race_free = vmclock_race_free,
	.drain = vmclock_drain,
	.reopen = vmgen_reopen_ro,
	.close = vmgen_source_release,
};
