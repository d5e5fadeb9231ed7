/* SPDX-License-Identifier: MIT */
/*
 * Initialisation (DESIGN §5 "Errors"): a failed explicit vmgen_init()
 * fails closed.
 */
#include "helpers.h"

/*
 * A failed explicit init never turns into a lazy default (here "none" from
 * the environment, which would run transactions unprotected): every later
 * call reports the init error until an init succeeds (DESIGN §5 "Errors").
 */
static void failed_init_fails_closed(void **state)
{
	static const char *const bad[] = {
		"file:/nonexistent/counter", "bogus", NULL,
	};
	static const int errs[] = { -ENOENT, -EINVAL, -EINVAL };
	size_t i;

	setenv("VMGENID_SOURCE", "none", 1);
	for (i = 0; i < 3; i++) {
		struct vmgen_txn t = { 99 };

		vmgen__test_reset();
		if (bad[i])
			assert_int_equal(vmgen_init(bad[i], 0), errs[i]);
		else	/* an unknown flag is a failed init too */
			assert_int_equal(vmgen_init("none", 1u << 9), errs[i]);
		assert_int_equal(vmgen_generation(), errs[i]);
		assert_int_equal(vmgen_txn_begin(&t), errs[i]);
		assert_int_equal(t.generation, 0);
		assert_false(vmgen_txn_commit(&t));
		assert_int_equal(vmgen_callback_register((vmgen_callback_fn)1,
							 NULL, VMGEN_EVENT_VM),
				 errs[i]);
		assert_int_equal(vmgen_source(), errs[i]);
		assert_int_equal(source_gen(), errs[i]);
		assert_int_equal(vmgen_fd(), errs[i]);
		assert_int_equal(vmgen_watcher_start(), errs[i]);
		assert_null(vmgen_source_path());
		/* Still sticky after many calls; then an init replaces it. */
		assert_int_equal(vmgen_generation(), errs[i]);
		assert_int_equal(vmgen_init("none", 0), 0);
		assert_int_equal(vmgen_generation(), 1);
		assert_int_equal(vmgen_txn_begin(&t), 0);
		assert_true(vmgen_txn_commit(&t));
	}
	vmgen__test_reset();
	assert_int_equal(vmgen_init("file:/nonexistent/counter", 0), -ENOENT);
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_FILE),
			    "missing");
	/* A flag error after a success leaves the library as it was. */
	vmgen__test_reset();
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_int_equal(vmgen_init("none", 1u << 9), -EINVAL);
	assert_int_equal(vmgen_generation(), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(failed_init_fails_closed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
