/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the VMClock page reader: the input is the content of the page the
 * hypervisor shares. It goes through the library twice:
 *   - vmgen_vmclock_read() on a page-sized, page-aligned copy, as the
 *     mapping presents it (the bytes past the input read as zero);
 *   - vmgen_init("vmclock:page") on a sandboxed file holding exactly the
 *     input, so the validation (magic, size, flags, file length) and the
 *     mapping run as they do on a device, then the generation and a txn.
 * The oracle: init succeeds only for a page the design accepts (magic
 * "VCLK", version 1, 112 <= size <= the mapped page, as the kernel's
 * vmclock_probe() demands, VM_GEN_COUNTER_PRESENT, at least 112 bytes),
 * always succeeds for such a page with an even seqcount, and then reports
 * the little-endian counter at offset 104, all 64 bits of it.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmgenid-internal.h"
#include "fuzz.h"
#include "sandbox.h"

#define PAGE 4096
#define MAX_INPUT (2 * PAGE)

static uint64_t le_at(const uint8_t *p, size_t off, size_t width)
{
	uint64_t v = 0;

	for (size_t i = 0; i < width; i++)
		v |= (uint64_t)p[off + i] << (8 * i);
	return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	setenv("VMGENID_FORK_DETECTION", "atfork", 1);
	sandbox_dir();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t page[PAGE] __attribute__((aligned(PAGE)));
	uint64_t value = 0;
	bool acceptable, seq_even;
	int ret;

	if (size > MAX_INPUT)
		return 0;
	memset(page, 0, sizeof(page));
	memcpy(page, data, size < PAGE ? size : PAGE);
	seq_even = !(le_at(page, VMCLOCK_OFF_SEQ, 4) & 1);
	acceptable = size >= VMCLOCK_MIN_SIZE &&
		     le_at(page, VMCLOCK_OFF_MAGIC, 4) == VMCLOCK_MAGIC &&
		     le_at(page, VMCLOCK_OFF_VERSION, 2) == VMCLOCK_VERSION &&
		     le_at(page, VMCLOCK_OFF_SIZE, 4) >= VMCLOCK_MIN_SIZE &&
		     le_at(page, VMCLOCK_OFF_SIZE, 4) <=
			     (uint64_t)sysconf(_SC_PAGESIZE) &&
		     (le_at(page, VMCLOCK_OFF_FLAGS, 8) &
		      VMCLOCK_FLAG_VM_GEN_COUNTER);

	/*
	 * An odd seqcount costs the reader its whole retry budget, so only
	 * the init path below takes that branch, once per input.
	 */
	if (seq_even) {
		ret = vmgen_vmclock_read(page, &value);
		FUZZ_CHECK(ret == 0);
		FUZZ_CHECK(value == le_at(page, VMCLOCK_OFF_GEN, 8));
	}

	sandbox_write("page", data, size);
	sandbox_arm(1);
	ret = vmgen_init("vmclock:page", 0);
	sandbox_arm(0);
	FUZZ_CHECK(ret <= 0);
	if (ret == 0) {
		struct vmgen_txn txn;
		uint64_t counter;

		FUZZ_CHECK(acceptable);
		FUZZ_CHECK(vmgen_source() == VMGEN_SOURCE_VMCLOCK);
		FUZZ_CHECK(vmgen_source_generation(&counter) == 0);
		FUZZ_CHECK(counter == le_at(page, VMCLOCK_OFF_GEN, 8));
		FUZZ_CHECK(vmgen_generation() >= 1);
		FUZZ_CHECK(vmgen_txn_begin(&txn) == 0);
		FUZZ_CHECK(vmgen_txn_commit(&txn));
	} else {
		FUZZ_CHECK(!(acceptable && seq_even));
	}
	vmgen_lock();
	vmgen_teardown_locked();
	vmgen_unlock();
	return 0;
}
