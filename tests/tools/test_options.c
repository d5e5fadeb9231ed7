/* SPDX-License-Identifier: MIT */
/*
 * vmgenid_parse_args(): the accepted forms, the rejected ones, and that it
 * stays well-behaved on what a fuzzer feeds it (no exit, no output, no
 * state kept between calls).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "options.h"

static int failures;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
		failures++;						\
	}								\
} while (0)

#define ARGV(...) ((char *[]){ "vmgenid", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof(ARGV(__VA_ARGS__)) / sizeof(char *)) - 1)
#define PARSE(o, ...) vmgenid_parse_args(ARGC(__VA_ARGS__), \
					 ARGV(__VA_ARGS__), (o))

static void test_accepted(void)
{
	struct vmgenid_opts o;
	char **argv;

	CHECK(PARSE(&o, "status") == 0 && o.command == VMGENID_CMD_STATUS);
	CHECK(!o.json && o.source == NULL && o.timeout_ms == -1);
	CHECK(PARSE(&o, "--source", "file:/x", "status", "--json") == 0);
	CHECK(o.json && strcmp(o.source, "file:/x") == 0);
	CHECK(PARSE(&o, "status", "-j", "--source=none") == 0);
	CHECK(o.json && strcmp(o.source, "none") == 0);
	CHECK(PARSE(&o, "-s", "auto", "wait", "-t", "2.5") == 0);
	CHECK(o.command == VMGENID_CMD_WAIT && o.timeout_ms == 2500);
	CHECK(PARSE(&o, "wait", "--timeout=0.0001") == 0 && o.timeout_ms == 1);
	CHECK(PARSE(&o, "wait", "--timeout", "0") == 0 && o.timeout_ms == 0);
	CHECK(PARSE(&o, "wait", "--timeout", ".5") == 0 &&
	      o.timeout_ms == 500);
	CHECK(PARSE(&o, "wait", "--timeout", "2147483") == 0 &&
	      o.timeout_ms == 2147483000);
	CHECK(PARSE(&o, "wait", "--since", "18446744073709551615") == 0);
	CHECK(o.have_since && o.since == UINT64_MAX);
	CHECK(PARSE(&o, "trigger", "--min", "4294967295") == 0 &&
	      o.min_generation == 4294967295u);
	CHECK(PARSE(&o, "wait-watchers", "--timeout", "1") == 0 &&
	      o.command == VMGENID_CMD_WAIT_WATCHERS);
	CHECK(PARSE(&o, "status") == 0 && !o.check && o.npids == 0);
	CHECK(PARSE(&o, "status", "--check", "--pid", "12", "-p",
		    "2147483647") == 0);
	CHECK(o.check && o.npids == 2 && o.pids[0] == 12 &&
	      o.pids[1] == 2147483647);

	argv = ARGV("watch", "--count", "2", "--", "run-parts", "--test", "d");
	CHECK(vmgenid_parse_args(8, argv, &o) == 0);
	CHECK(o.command == VMGENID_CMD_WATCH && o.count == 2);
	CHECK(o.cmd_argc == 3 && o.cmd_argv == argv + 5);
	/* without "--", CMD starts at the first word that is no option */
	argv = ARGV("watch", "--once", "sh", "-c", "exit 1");
	CHECK(vmgenid_parse_args(6, argv, &o) == 0);
	CHECK(o.count == 1 && o.cmd_argc == 3 && o.cmd_argv == argv + 3);
	CHECK(PARSE(&o, "watch", "--track", "--", "--odd-name") == 0);
	CHECK(o.track && o.cmd_argc == 1);

	CHECK(PARSE(&o, "--help") == 0 && o.command == VMGENID_CMD_HELP);
	CHECK(PARSE(&o, "status", "-h", "--bogus") == 0 &&
	      o.command == VMGENID_CMD_HELP);
	CHECK(PARSE(&o, "-V") == 0 && o.command == VMGENID_CMD_VERSION);
	CHECK(PARSE(&o, "help", "watch") == 0);
}

static void test_rejected(void)
{
	struct vmgenid_opts o;

#define REJECT(...) do {						\
	o.error[0] = '\0';						\
	CHECK(PARSE(&o, __VA_ARGS__) == -EINVAL && o.error[0] != '\0'); \
} while (0)
	REJECT("bogus");
	REJECT("--bogus", "status");
	REJECT("status", "status");
	REJECT("--source");
	REJECT("--source=", "status");
	REJECT("status", "--json=1");
	REJECT("status", "--timeout", "1");
	REJECT("trigger", "--json");
	REJECT("wait", "--check");
	REJECT("watch", "--pid", "1", "--", "true");
	REJECT("status", "--check=1");
	REJECT("status", "--pid");
	REJECT("status", "--pid", "0");
	REJECT("status", "--pid", "-1");
	REJECT("status", "--pid", "2147483648");
	REJECT("status", "--pid", "1", "--pid", "2", "--pid", "3", "--pid",
	       "4", "--pid", "5", "--pid", "6", "--pid", "7", "--pid", "8",
	       "--pid", "9", "--pid", "10", "--pid", "11", "--pid", "12",
	       "--pid", "13", "--pid", "14", "--pid", "15", "--pid", "16",
	       "--pid", "17");
	REJECT("wait", "--min", "1");
	REJECT("wait", "--timeout");
	REJECT("wait", "--timeout", "");
	REJECT("wait", "--timeout", "-1");
	REJECT("wait", "--timeout", "1e3");
	REJECT("wait", "--timeout", "nan");
	REJECT("wait", "--timeout", "0x10");
	REJECT("wait", "--timeout", "2147484");
	REJECT("wait", "--timeout", "99999999999999999999999");
	REJECT("wait", "--since", "18446744073709551616");
	REJECT("wait", "--since", " 1");
	REJECT("trigger", "--min", "4294967296");
	REJECT("trigger", "--min", "+1");
	REJECT("watch");
	REJECT("watch", "--");
	REJECT("watch", "--count", "0", "true");
	REJECT("watch", "--count", "-3", "true");
	REJECT("watch", "--once=2", "true");
	REJECT("-");
#undef REJECT
	CHECK(PARSE(&o, "wait", "--timeout", "1.") == 0 &&
	      o.timeout_ms == 1000);
	CHECK(PARSE(&o, "wait", "--timeout", ".") == -EINVAL);
}

static void test_robust(void)
{
	struct vmgenid_opts o;
	char *none[] = { NULL };
	char *holes[] = { "vmgenid", NULL, "status", NULL };
	char *truncated[] = { "vmgenid", "wait", "--timeout" };
	char *empty[] = { "vmgenid", "", NULL };
	char long_arg[4096];

	CHECK(vmgenid_parse_args(0, none, &o) == -EINVAL);
	CHECK(vmgenid_parse_args(1, NULL, &o) == -EINVAL);
	CHECK(vmgenid_parse_args(1, none, NULL) == -EINVAL);
	/* a NULL entry ends the vector, as in main()'s argv */
	CHECK(vmgenid_parse_args(3, holes, &o) == -EINVAL);
	/* argc is the bound, even without a terminating NULL */
	CHECK(vmgenid_parse_args(3, truncated, &o) == -EINVAL);
	CHECK(vmgenid_parse_args(2, empty, &o) == -EINVAL);
	memset(long_arg, 'x', sizeof(long_arg) - 1);
	long_arg[sizeof(long_arg) - 1] = '\0';
	CHECK(PARSE(&o, long_arg) == -EINVAL);
	CHECK(strlen(o.error) < sizeof(o.error));
	/* no state carried over: a failure does not taint the next call */
	CHECK(PARSE(&o, "status") == 0 && o.error[0] == '\0');
}

int main(void)
{
	test_accepted();
	test_rejected();
	test_robust();
	if (failures)
		fprintf(stderr, "%d checks failed\n", failures);
	return failures ? 1 : 0;
}
