/* SPDX-License-Identifier: MIT */
/*
 * Command-line parsing for the vmgenid tool, kept apart from main() so that
 * a fuzzer can drive it: it never exits, never prints and keeps no state
 * between calls.
 */
#ifndef VMGENID_TOOL_OPTIONS_H
#define VMGENID_TOOL_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

enum vmgenid_command {
	VMGENID_CMD_NONE = 0,
	VMGENID_CMD_HELP,		/* --help, -h or "help" */
	VMGENID_CMD_VERSION,		/* --version, -V */
	VMGENID_CMD_STATUS,
	VMGENID_CMD_WAIT,
	VMGENID_CMD_WATCH,
	VMGENID_CMD_TRIGGER,
	VMGENID_CMD_WAIT_WATCHERS,
};

/* Exit codes, documented in vmgenid(1). */
enum {
	VMGENID_EXIT_OK = 0,
	VMGENID_EXIT_FAILURE = 1,
	VMGENID_EXIT_USAGE = 2,
	VMGENID_EXIT_TIMEOUT = 3,
	VMGENID_EXIT_UNPROTECTED = 4,	/* status --check */
};

/* status --pid, at most this many */
#define VMGENID_MAX_PIDS 16

struct vmgenid_opts {
	enum vmgenid_command command;
	const char *source;		/* --source SPEC; NULL: VMGENID_SOURCE */
	bool json;			/* status --json */
	bool check;			/* status --check */
	int npids;			/* status --pid PID, repeatable */
	int pids[VMGENID_MAX_PIDS];
	int timeout_ms;			/* --timeout; -1: forever */
	bool have_since;		/* wait --since */
	uint64_t since;			/* source generation to wait away from */
	uint32_t min_generation;	/* trigger --min */
	uint64_t count;			/* watch --count/--once; 0: forever */
	bool track;			/* watch --track */
	int cmd_argc;			/* watch: CMD [ARGS...], pointing into */
	char **cmd_argv;		/* the caller's argv */
	char error[160];		/* why parsing failed, for the usage line */
};

/*
 * Parse argv[1..argc-1] into *out. Returns 0, or -EINVAL with out->error
 * set for a usage error. argv[0] is ignored; strings are not modified and
 * out->cmd_argv points into argv (NULL-terminated when argv is main()'s).
 */
int vmgenid_parse_args(int argc, char **argv, struct vmgenid_opts *out);

/* The name of a command, as typed ("wait-watchers"), or NULL. */
const char *vmgenid_command_name(enum vmgenid_command command);

#endif /* VMGENID_TOOL_OPTIONS_H */
