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
	}
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
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_non_null(vmgen__fastpath);
	assert_int_equal(vmgen__fastpath->size, sizeof(struct vmgen__fastpath));
	assert_int_equal(vmgen__fastpath->counter_kind, VMGEN__COUNTER_U32);
	assert_int_equal(vmgen__fast_generation(), 1);
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
		T(names),
		T(strerror_total),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
