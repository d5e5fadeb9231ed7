/* SPDX-License-Identifier: MIT */
/*
 * A consumer of the installed header, built as C and as C++ with strict
 * warnings, linked against the shared library: the inline fast path and
 * the exported symbols must both work from application code.
 */
#include <vmgenid.h>

#include <stdio.h>

static int reseed(const struct vmgen_event *ev, void *arg)
{
	(void)ev;
	++*(int *)arg;
	return 0;
}

int main(void)
{
	struct vmgen_txn txn;
	int calls = 0;
	int id;

	if (vmgen_init("none", 0) != 0)
		return 1;
	id = vmgen_callback_register(reseed, &calls, VMGEN_EVENT_ANY);
	if (id <= 0)
		return 2;
	if (vmgen_txn_begin(&txn) != 0 || txn.generation != 1)
		return 3;
	if (!vmgen_txn_commit(&txn))
		return 4;
	if (vmgen_callback_unregister(id) != 0)
		return 5;
	printf("%s: generation %llu, source %s\n",
#ifdef __cplusplus
	       "c++",
#else
	       "c",
#endif
	       (unsigned long long)txn.generation,
	       vmgen_source_name(vmgen_source()));
	return calls == 0 ? 0 : 6;
}
