/* SPDX-License-Identifier: MIT */
/*
 * vmgenid: the library's generation counter for shell scripts and
 * orchestrators. See vmgenid(1).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmgenid.h>

#include "tool.h"

#ifndef VMGENID_TOOL_VERSION
#define VMGENID_TOOL_VERSION "unknown"
#endif

static void usage(FILE *out)
{
	fputs("Usage: vmgenid [--source SPEC] COMMAND [OPTIONS]\n"
	      "\n"
	      "Commands:\n"
	      "  status [--json] [--check] [--pid PID]...\n"
	      "                               show the source and generations,\n"
	      "                               and the processes using the library\n"
	      "  wait [--timeout SECONDS] [--since GEN]\n"
	      "                               wait for the next generation step\n"
	      "  watch [--count N|--once] [--track] -- CMD [ARGS...]\n"
	      "                               run CMD on every generation step\n"
	      "  trigger [--min N]            bump the counter (sysgenid, file)\n"
	      "  wait-watchers [--timeout SECONDS]\n"
	      "                               wait for tracked processes\n"
	      "\n"
	      "Options:\n"
	      "  -s, --source SPEC   auto, vmclock[:PATH], sysgenid[:PATH],\n"
	      "                      file:PATH or none (default: $VMGENID_SOURCE,\n"
	      "                      else auto)\n"
	      "  -h, --help          show this help\n"
	      "  -V, --version       show the version\n"
	      "\n"
	      "Exit status: 0 ok, 1 failure, 2 usage error, 3 timeout,\n"
	      "4 (status --check) a process runs on none while the machine\n"
	      "has a source.\n",
	      out);
}

int tool_fail(const char *what, int err)
{
	fprintf(stderr, "vmgenid: %s: %s\n", what, vmgen_strerror(err));
	return VMGENID_EXIT_FAILURE;
}

int tool_init(const struct vmgenid_opts *opts, unsigned int flags)
{
	const char *spec = opts->source;
	int kind, r;

	r = vmgen_init(spec, flags);
	if (r >= 0)
		return 0;
	if (!spec)
		spec = getenv("VMGENID_SOURCE");
	if (!spec || !*spec)
		spec = "auto";
	/* errno's own words: the reasons below say what was wrong */
	fprintf(stderr, "vmgenid: cannot use generation source '%s': %s\n",
		spec, strerror(-r));
	/* The library remembers why each source it tried was refused. */
	for (kind = 0; kind < VMGEN_SOURCE_COUNT; kind++) {
		const char *why = vmgen_source_rejected(kind);

		if (why)
			fprintf(stderr, "vmgenid:   %s: %s\n",
				vmgen_source_name(kind), why);
	}
	return r;
}

static int cmd_wait(const struct vmgenid_opts *opts)
{
	uint64_t src;
	int64_t gen, r;

	if (tool_init(opts, 0) < 0)
		return VMGENID_EXIT_FAILURE;
	/*
	 * Take the combined generation before looking at the source: a step
	 * between the two reads shows in the comparison with --since, and
	 * any later step moves the combined generation away from gen.
	 */
	gen = vmgen_generation();
	if (gen < 0)
		return tool_fail("reading the generation", (int)gen);
	if (opts->have_since) {
		r = vmgen_source_generation(&src);
		if (r < 0)
			return tool_fail("reading the source generation",
					 (int)r);
		if (src != opts->since)
			return VMGENID_EXIT_OK;
	}
	r = vmgen_wait((uint64_t)gen, opts->timeout_ms);
	if (r == -ETIMEDOUT)
		return VMGENID_EXIT_TIMEOUT;
	if (r < 0)
		return tool_fail("waiting for a generation step", (int)r);
	return VMGENID_EXIT_OK;
}

static int cmd_trigger(const struct vmgenid_opts *opts)
{
	int r;

	if (tool_init(opts, 0) < 0)
		return VMGENID_EXIT_FAILURE;
	r = vmgen_trigger(opts->min_generation);
	if (r == -EOPNOTSUPP) {
		fprintf(stderr, "vmgenid: trigger: the %s source cannot be "
			"triggered (only sysgenid and file can)\n",
			vmgen_source_name(vmgen_source()));
		return VMGENID_EXIT_FAILURE;
	}
	if (r == -EACCES || r == -EPERM) {
		fprintf(stderr, "vmgenid: trigger: %s (sysgenid needs "
			"CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, a file "
			"source write access)\n", strerror(-r));
		return VMGENID_EXIT_FAILURE;
	}
	if (r < 0)
		return tool_fail("trigger", r);
	return VMGENID_EXIT_OK;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd_wait_watchers(const struct vmgenid_opts *opts)
{
	int timeout = opts->timeout_ms, r;
	int64_t deadline;

	if (tool_init(opts, 0) < 0)
		return VMGENID_EXIT_FAILURE;
	/*
	 * -EINTR: a step landed after we opened the device, so our own fd is
	 * outdated and would wait for itself. Handle it and wait again, for
	 * what is left of the timeout.
	 */
	deadline = now_ms() + opts->timeout_ms;
	for (;;) {
		r = vmgen_wait_watchers(timeout);
		if (r != -EINTR)
			break;
		r = (int)vmgen_generation();
		if (r < 0)
			return tool_fail("handling a generation step", r);
		if (opts->timeout_ms >= 0) {
			timeout = (int)(deadline - now_ms());
			if (timeout <= 0)
				return VMGENID_EXIT_TIMEOUT;
		}
	}
	if (r == -ETIMEDOUT)
		return VMGENID_EXIT_TIMEOUT;
	if (r == -EOPNOTSUPP) {
		fprintf(stderr, "vmgenid: wait-watchers: the %s source does "
			"not track watchers (only sysgenid does)\n",
			vmgen_source_name(vmgen_source()));
		return VMGENID_EXIT_FAILURE;
	}
	if (r < 0)
		return tool_fail("wait-watchers", r);
	return VMGENID_EXIT_OK;
}

int main(int argc, char **argv)
{
	struct vmgenid_opts opts;
	int code;

	if (vmgenid_parse_args(argc, argv, &opts) < 0) {
		fprintf(stderr, "vmgenid: %s\n\n", opts.error);
		usage(stderr);
		return VMGENID_EXIT_USAGE;
	}

	switch (opts.command) {
	case VMGENID_CMD_HELP:
		usage(stdout);
		code = VMGENID_EXIT_OK;
		break;
	case VMGENID_CMD_VERSION:
		printf("vmgenid %s\n", VMGENID_TOOL_VERSION);
		code = VMGENID_EXIT_OK;
		break;
	case VMGENID_CMD_STATUS:
		code = cmd_status(&opts);
		break;
	case VMGENID_CMD_WAIT:
		code = cmd_wait(&opts);
		break;
	case VMGENID_CMD_WATCH:
		code = cmd_watch(&opts);
		break;
	case VMGENID_CMD_TRIGGER:
		code = cmd_trigger(&opts);
		break;
	case VMGENID_CMD_WAIT_WATCHERS:
		code = cmd_wait_watchers(&opts);
		break;
	default:
		usage(stderr);
		code = VMGENID_EXIT_USAGE;
		break;
	}
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (code == VMGENID_EXIT_OK)
			fprintf(stderr, "vmgenid: writing output: %s\n",
				strerror(errno));
		return VMGENID_EXIT_FAILURE;
	}
	return code;
}
