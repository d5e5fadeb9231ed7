/* SPDX-License-Identifier: MIT */
/*
 * ABI (DESIGN §5 "ABI", "Errors"): the public structs the inline fast path
 * and callbacks see are frozen; names and error strings are total.
 */
#include <limits.h>

#include "helpers.h"

static void struct_sizes(void **state)
{
	assert_int_equal(sizeof(struct vmgen_event), 24);
	assert_int_equal(offsetof(struct vmgen_event, reasons), 0);
	assert_int_equal(offsetof(struct vmgen_event, reserved), 4);
	assert_int_equal(offsetof(struct vmgen_event, old_generation), 8);
	assert_int_equal(offsetof(struct vmgen_event, new_generation), 16);
	assert_int_equal(sizeof(struct vmgen_txn), 8);
	assert_int_equal(sizeof(struct vmgen__local), 16);
	assert_int_equal(offsetof(struct vmgen__local, generation), 0);
	assert_int_equal(offsetof(struct vmgen__local, source_seen), 8);
	if (sizeof(void *) == 8) {
		assert_int_equal(sizeof(struct vmgen__fastpath), 24);
		assert_int_equal(offsetof(struct vmgen__fastpath, counter), 8);
		assert_int_equal(offsetof(struct vmgen__fastpath, local), 16);
		assert_int_equal(offsetof(struct vmgen__fast, counter), 8);
		assert_int_equal(offsetof(struct vmgen__fast, word), 16);
		assert_int_equal(offsetof(struct vmgen__fast, local), 24);
	}
	/* VMGENID_1.1: one aligned half cache line, on 32 and 64 bits. */
	assert_int_equal(sizeof(struct vmgen__fast), 32);
	assert_int_equal(_Alignof(struct vmgen__fast), 32);
	assert_int_equal((uintptr_t)&vmgen__fast % 32, 0);
	assert_int_equal(offsetof(struct vmgen__fast, kind), 0);
	assert_int_equal(offsetof(struct vmgen__fast, size), 4);
	assert_int_equal(VMGEN__FAST_SLOW, 0);
	assert_int_equal(VMGEN__FAST_WORDS, 1);
	assert_int_equal(VMGEN__FAST_VMCLOCK, 2);
	assert_int_equal(VMGEN__COUNTER_U32, 0);
	assert_int_equal(VMGEN__COUNTER_VMCLOCK, 1);
	assert_int_equal(VMGEN__VMCLOCK_SEQ_OFFSET, 12);
	assert_int_equal(VMGEN__VMCLOCK_GEN_OFFSET, 104);
	assert_int_equal(VMGEN_EVENT_VM, 1);
	assert_int_equal(VMGEN_EVENT_FORK, 2);
	assert_int_equal(VMGEN_SOURCE_VMCLOCK, 0);
	assert_int_equal(VMGEN_SOURCE_NONE, 3);
	assert_int_equal(VMGEN_FORK_WIPEONFORK, 1);
	assert_int_equal(VMGEN_FORK_ATFORK, 2);
}

/* The published fast path describes itself. */
static void fastpath_published(void **state)
{
	assert_null(vmgen__fastpath);
	assert_int_equal(vmgen__fast.kind, VMGEN__FAST_SLOW);
	assert_int_equal(vmgen__fast_generation(), 0);
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_non_null(vmgen__fastpath);
	assert_int_equal(vmgen__fastpath->size, sizeof(struct vmgen__fastpath));
	assert_int_equal(vmgen__fastpath->counter_kind, VMGEN__COUNTER_U32);
	assert_int_equal(vmgen__fast.size, sizeof(struct vmgen__fast));
	assert_int_equal(vmgen__fast.kind, VMGEN__FAST_WORDS);
	assert_int_equal(vmgen__fast_generation(), 1);
}

/*
 * 0.1's inline code, as binaries built against it carry it: reads
 * VMGENID_1.0's vmgen__fastpath and takes any kind but U32 for VMClock.
 */
static uint64_t fast_generation_0_1(void)
{
	const struct vmgen__fastpath *fp;
	const struct vmgen__local *local;
	uint64_t gen, seen, now, again;

	fp = __atomic_load_n(&vmgen__fastpath, __ATOMIC_ACQUIRE);
	if (fp == NULL)
		return 0;
	local = fp->local;
	gen = __atomic_load_n(&local->generation, __ATOMIC_ACQUIRE);
	seen = __atomic_load_n(&local->source_seen, __ATOMIC_ACQUIRE);
	if (fp->counter_kind == VMGEN__COUNTER_U32) {
		now = __atomic_load_n((const uint32_t *)fp->counter,
				      __ATOMIC_ACQUIRE);
	} else {
		const unsigned char *page = fp->counter;
		uint32_t s1, s2;

		s1 = __atomic_load_n((const uint32_t *)(const void *)
				     (page + 12), __ATOMIC_ACQUIRE);
		now = __atomic_load_n((const uint64_t *)(const void *)
				      (page + 104), __ATOMIC_ACQUIRE);
		s2 = __atomic_load_n((const uint32_t *)(const void *)
				     (page + 12), __ATOMIC_RELAXED);
		if ((s1 & 1) || s1 != s2)
			return 0;
	}
	again = __atomic_load_n(&local->generation, __ATOMIC_RELAXED);
	if (gen != again || seen != now)
		return 0;
	return gen;
}

/* Old binaries keep 0.1's behaviour on every source (DESIGN §5 "ABI"). */
static void fastpath_0_1_view(void **state)
{
	struct fake u, v;

	fake_u32(&u, 7);
	fake_vmclock(&v, VMCLOCK_MAGIC, 4096, VMCLOCK_FLAG_VM_GEN_COUNTER, 9);
	assert_int_equal(vmgen_init(spec("file", &u), 0), 0);
	assert_int_equal(fast_generation_0_1(), 1);
	assert_int_equal(vmgen__fast_generation(), 1);
	fake_u32_write(&u, 8);
	assert_int_equal(fast_generation_0_1(), 0);
	assert_int_equal(vmgen__fast_generation(), 0);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(fast_generation_0_1(), 2);
	assert_int_equal(vmgen__fast_generation(), 2);
	vmgen__test_reset();
	assert_int_equal(vmgen_init(spec("vmclock", &v), 0), 0);
	assert_int_equal(vmgen__fastpath->counter_kind, VMGEN__COUNTER_VMCLOCK);
	assert_int_equal(vmgen__fast.kind, VMGEN__FAST_VMCLOCK);
	assert_int_equal(fast_generation_0_1(), 1);
	assert_int_equal(vmgen__fast_generation(), 1);
	vmclock_set_gen(&v, 10);
	assert_int_equal(fast_generation_0_1(), 0);
	assert_int_equal(vmgen__fast_generation(), 0);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(fast_generation_0_1(), 2);
	assert_int_equal(vmgen__fast_generation(), 2);
	vmgen__test_reset();
	fake_close(&u);
	fake_close(&v);
}

/* A kind this inline code does not know goes to the slow path. */
static void unknown_kind_goes_slow(void **state)
{
	struct vmgen_txn t;

	assert_int_equal(vmgen_init("none", 0), 0);
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_true(vmgen_txn_commit(&t));
	__atomic_store_n(&vmgen__fast.kind, 3, __ATOMIC_RELEASE);
	assert_int_equal(vmgen__fast_generation(), 0);
	assert_false(vmgen_txn_commit(&t));
	/* begin still works, through the slow path */
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_int_equal(t.generation, 1);
	__atomic_store_n(&vmgen__fast.kind, VMGEN__FAST_WORDS,
			 __ATOMIC_RELEASE);
	assert_true(vmgen_txn_commit(&t));
}

static void names(void **state)
{
	assert_string_equal(vmgen_source_name(VMGEN_SOURCE_VMCLOCK), "vmclock");
	assert_string_equal(vmgen_source_name(VMGEN_SOURCE_SYSGENID),
			    "sysgenid");
	assert_string_equal(vmgen_source_name(VMGEN_SOURCE_FILE), "file");
	assert_string_equal(vmgen_source_name(VMGEN_SOURCE_NONE), "none");
}

static void strerror_total(void **state)
{
	int e;

	for (e = -4200; e <= 5; e++)
		assert_non_null(vmgen_strerror(e));
	/* Negative but no errno: unknown, not "not negative". */
	assert_string_equal(vmgen_strerror(INT_MIN), "Unknown error");
	assert_string_equal(vmgen_strerror(-INT_MAX), "Unknown error");
	assert_string_equal(vmgen_strerror(-4096), "Unknown error");
	assert_string_equal(vmgen_strerror(1), "Not a negative errno");
	assert_string_equal(vmgen_strerror(INT_MAX), "Not a negative errno");
	assert_string_equal(vmgen_strerror(0), "Success");
	assert_string_equal(vmgen_strerror(-ESRCH), "Watcher not running");
	assert_string_equal(vmgen_strerror(-EIO), "Input/output error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(struct_sizes),
		T(fastpath_published),
		T(fastpath_0_1_view),
		T(unknown_kind_goes_slow),
		T(names),
		T(strerror_total),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
