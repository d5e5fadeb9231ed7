/* SPDX-License-Identifier: MIT */
/*
 * Hand-rolled rather than getopt_long(): getopt keeps global state and
 * prints its own messages, and the fuzzer calls this function many times
 * in one process.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "options.h"

static const struct {
	const char *name;
	enum vmgenid_command command;
} commands[] = {
	{ "status", VMGENID_CMD_STATUS },
	{ "wait", VMGENID_CMD_WAIT },
	{ "watch", VMGENID_CMD_WATCH },
	{ "trigger", VMGENID_CMD_TRIGGER },
	{ "wait-watchers", VMGENID_CMD_WAIT_WATCHERS },
	{ "help", VMGENID_CMD_HELP },
};

/* Which option was given, to check it against the command at the end. */
enum {
	SEEN_JSON = 1u << 0,
	SEEN_TIMEOUT = 1u << 1,
	SEEN_SINCE = 1u << 2,
	SEEN_MIN = 1u << 3,
	SEEN_COUNT = 1u << 4,
	SEEN_TRACK = 1u << 5,
	SEEN_CHECK = 1u << 6,
	SEEN_PID = 1u << 7,
};

const char *vmgenid_command_name(enum vmgenid_command command)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].command == command)
			return commands[i].name;
	return NULL;
}

__attribute__((format(printf, 2, 3)))
static int fail(struct vmgenid_opts *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->error, sizeof(out->error), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Decimal digits only: no sign, no blanks, no base prefix, no overflow. */
static int parse_u64(const char *s, uint64_t max, uint64_t *value)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		unsigned int digit;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		digit = (unsigned int)(*s - '0');
		if (v > (max - digit) / 10)
			return -ERANGE;
		v = v * 10 + digit;
	}
	*value = v;
	return 0;
}

/*
 * SECONDS[.FRACTION] to milliseconds, rounding a fraction up so that a
 * tiny timeout never becomes "do not wait at all" by accident. Not strtod():
 * its result depends on the locale and accepts "inf", "nan" and hex.
 */
static int parse_seconds(const char *s, int *ms)
{
	uint64_t whole = 0, frac_ms = 0, scale = 100;
	bool round_up = false, any = false;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++, any = true) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > INT_MAX / 1000)
			return -ERANGE;
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, any = true) {
			if (scale)
				frac_ms += scale * (uint64_t)(*p - '0');
			else if (*p != '0')
				round_up = true;
			scale /= 10;
		}
	}
	if (!any || *p != '\0')
		return -EINVAL;
	whole = whole * 1000 + frac_ms + round_up;
	if (whole > INT_MAX)
		return -ERANGE;
	*ms = (int)whole;
	return 0;
}

/*
 * Matches "--name", "--name=VALUE" or, when short is set, "-x". For an
 * option that takes a value, *value gets it, from "=VALUE" or from the next
 * word (advancing *i); NULL value means the option takes none.
 */
static int match(int argc, char **argv, int *i, const char *name,
		 const char *shortopt, const char **value,
		 struct vmgenid_opts *out)
{
	const char *arg = argv[*i];
	size_t len = strlen(name);
	const char *rest;

	if (shortopt && strcmp(arg, shortopt) == 0) {
		rest = "";
	} else if (strncmp(arg, name, len) == 0 &&
		   (arg[len] == '\0' || arg[len] == '=')) {
		rest = arg + len;
	} else {
		return 0;
	}
	if (!value) {
		if (*rest == '=')
			return fail(out, "option %s takes no value", name);
		return 1;
	}
	if (*rest == '=') {
		*value = rest + 1;
		return 1;
	}
	if (*i + 1 >= argc || argv[*i + 1] == NULL)
		return fail(out, "option %s needs a value", name);
	*i += 1;
	*value = argv[*i];
	return 1;
}

static int check_allowed(unsigned int seen, struct vmgenid_opts *out)
{
	static const struct {
		unsigned int bit;
		const char *name;
		unsigned int commands;	/* 1 << VMGENID_CMD_* */
	} rules[] = {
		{ SEEN_JSON, "--json", 1u << VMGENID_CMD_STATUS },
		{ SEEN_CHECK, "--check", 1u << VMGENID_CMD_STATUS },
		{ SEEN_PID, "--pid", 1u << VMGENID_CMD_STATUS },
		{ SEEN_TIMEOUT, "--timeout", 1u << VMGENID_CMD_WAIT |
			1u << VMGENID_CMD_WAIT_WATCHERS },
		{ SEEN_SINCE, "--since", 1u << VMGENID_CMD_WAIT },
		{ SEEN_MIN, "--min", 1u << VMGENID_CMD_TRIGGER },
		{ SEEN_COUNT, "--count/--once", 1u << VMGENID_CMD_WATCH },
		{ SEEN_TRACK, "--track", 1u << VMGENID_CMD_WATCH },
	};
	size_t i;

	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		if ((seen & rules[i].bit) &&
		    !(rules[i].commands & (1u << out->command)))
			return fail(out, "option %s does not apply to '%s'",
				    rules[i].name,
				    vmgenid_command_name(out->command));
	}
	return 0;
}

static int positional(int argc, char **argv, int i, struct vmgenid_opts *out)
{
	size_t k;

	if (out->command == VMGENID_CMD_WATCH) {
		out->cmd_argc = argc - i;
		out->cmd_argv = argv + i;
		return 1;		/* the rest belongs to CMD */
	}
	if (out->command == VMGENID_CMD_HELP)
		return 0;		/* "help TOPIC": one page serves all */
	if (out->command != VMGENID_CMD_NONE)
		return fail(out, "unexpected argument '%.60s'", argv[i]);
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(argv[i], commands[k].name) == 0) {
			out->command = commands[k].command;
			return 0;
		}
	}
	return fail(out, "unknown command '%.60s'", argv[i]);
}

int vmgenid_parse_args(int argc, char **argv, struct vmgenid_opts *out)
{
	unsigned int seen = 0;
	bool options_done = false;
	int i, r;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->timeout_ms = -1;
	if (argc < 1 || !argv)
		return fail(out, "no command given");

	for (i = 1; i < argc && argv[i]; i++) {
		const char *arg = argv[i], *value = NULL;
		uint64_t n;

		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			r = positional(argc, argv, i, out);
			if (r < 0)
				return r;
			if (r > 0)
				break;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if ((r = match(argc, argv, &i, "--help", "-h", NULL, out))) {
			if (r < 0)
				return r;
			out->command = VMGENID_CMD_HELP;
			return 0;
		}
		if ((r = match(argc, argv, &i, "--version", "-V", NULL, out))) {
			if (r < 0)
				return r;
			out->command = VMGENID_CMD_VERSION;
			return 0;
		}
		if ((r = match(argc, argv, &i, "--source", "-s", &value, out))) {
			if (r < 0)
				return r;
			if (*value == '\0')
				return fail(out, "--source needs a SPEC");
			out->source = value;
		} else if ((r = match(argc, argv, &i, "--json", "-j", NULL,
				      out))) {
			if (r < 0)
				return r;
			out->json = true;
			seen |= SEEN_JSON;
		} else if ((r = match(argc, argv, &i, "--check", NULL, NULL,
				      out))) {
			if (r < 0)
				return r;
			out->check = true;
			seen |= SEEN_CHECK;
		} else if ((r = match(argc, argv, &i, "--pid", "-p", &value,
				      out))) {
			if (r < 0)
				return r;
			if (parse_u64(value, INT32_MAX, &n) < 0 || n == 0)
				return fail(out, "bad --pid '%.40s'", value);
			if (out->npids == VMGENID_MAX_PIDS)
				return fail(out, "at most %d --pid options",
					    VMGENID_MAX_PIDS);
			out->pids[out->npids++] = (int)n;
			seen |= SEEN_PID;
		} else if ((r = match(argc, argv, &i, "--timeout", "-t", &value,
				      out))) {
			if (r < 0)
				return r;
			if (parse_seconds(value, &out->timeout_ms) < 0)
				return fail(out, "bad --timeout '%.40s': want "
					    "seconds, e.g. 5 or 0.25", value);
			seen |= SEEN_TIMEOUT;
		} else if ((r = match(argc, argv, &i, "--since", NULL, &value,
				      out))) {
			if (r < 0)
				return r;
			if (parse_u64(value, UINT64_MAX, &out->since) < 0)
				return fail(out, "bad --since '%.40s'", value);
			out->have_since = true;
			seen |= SEEN_SINCE;
		} else if ((r = match(argc, argv, &i, "--min", "-m", &value,
				      out))) {
			if (r < 0)
				return r;
			if (parse_u64(value, UINT32_MAX, &n) < 0)
				return fail(out, "bad --min '%.40s': want 0 to "
					    "%u", value, UINT32_MAX);
			out->min_generation = (uint32_t)n;
			seen |= SEEN_MIN;
		} else if ((r = match(argc, argv, &i, "--count", "-n", &value,
				      out))) {
			if (r < 0)
				return r;
			if (parse_u64(value, UINT64_MAX, &out->count) < 0 ||
			    out->count == 0)
				return fail(out, "bad --count '%.40s': want a "
					    "number above 0", value);
			seen |= SEEN_COUNT;
		} else if ((r = match(argc, argv, &i, "--once", NULL, NULL,
				      out))) {
			if (r < 0)
				return r;
			out->count = 1;
			seen |= SEEN_COUNT;
		} else if ((r = match(argc, argv, &i, "--track", NULL, NULL,
				      out))) {
			if (r < 0)
				return r;
			out->track = true;
			seen |= SEEN_TRACK;
		} else {
			return fail(out, "unknown option '%.60s'", arg);
		}
	}

	if (out->command == VMGENID_CMD_NONE)
		return fail(out, "no command given");
	if (out->command == VMGENID_CMD_HELP)
		return 0;
	if (out->command == VMGENID_CMD_WATCH && out->cmd_argc == 0)
		return fail(out, "watch needs a command: watch -- CMD [ARGS...]");
	return check_allowed(seen, out);
}
