/* SPDX-License-Identifier: MIT */
/* vmgenid status: what the library sees, for people and for scripts. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vmgenid.h>

#include "procs.h"
#include "tool.h"

/* Where the sysgenid module publishes its watcher counts. */
#define SYSGENID_SYSFS "/sys/class/misc/sysgenid/"

/* A sysfs counter, or a negative errno when absent or unreadable. */
static int64_t read_sysfs_count(const char *name)
{
	char path[128], buf[32];
	uint64_t v = 0;
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), SYSGENID_SYSFS "%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -ENODATA;
	buf[n] = '\0';
	for (p = buf; *p >= '0' && *p <= '9'; p++) {
		if (v > (uint64_t)INT64_MAX / 10 - 1)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == buf || (*p != '\0' && *p != '\n'))
		return -EINVAL;
	return (int64_t)v;
}

/*
 * A one-line sysfs text attribute of the module ("mode", "guid_page"),
 * without its newline, in @buf; NULL when absent or unreadable.
 */
static const char *read_sysfs_text(const char *name, char *buf, size_t size)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), SYSGENID_SYSFS "%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\0'))
		n--;
	buf[n] = '\0';
	return n ? buf : NULL;
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and values past U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/*
 * Paths are bytes, JSON is Unicode: a byte that is not UTF-8 becomes
 * U+FFFD, so that the output always parses.
 */
static void json_string(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	if (!str) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	while (*s) {
		size_t len;

		if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s++);
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(out, "\\u%04x", *s++);
		} else if ((len = utf8_len(s)) == 0) {
			fputs("\\ufffd", out);
			s++;
		} else {
			fwrite(s, 1, len, out);
			s += len;
		}
	}
	fputc('"', out);
}

static void json_number(FILE *out, int64_t v)
{
	if (v < 0)
		fputs("null", out);
	else
		fprintf(out, "%" PRId64, v);
}

static const char *fork_mode_name(int mode)
{
	switch (mode) {
	case VMGEN_FORK_WIPEONFORK:
		return "wipeonfork";
	case VMGEN_FORK_ATFORK:
		return "atfork";
	default:
		return NULL;
	}
}

struct status {
	int source;
	const char *path;
	int source_generation_err;	/* 0: source_generation is valid */
	uint64_t source_generation;
	int64_t generation;
	const char *fork_mode;
	int64_t watchers;		/* negative: unknown */
	int64_t outdated_watchers;
	int race_free;			/* vmgen_source_race_free() */
	const char *race_reason;	/* why not, or NULL */
	const char *module_mode;	/* sysfs "mode", or NULL */
	const char *guid_page;		/* sysfs "guid_page", or NULL */
	char mode_buf[32];
	char guid_page_buf[192];
	struct proc_scan procs;		/* the processes using the library */
	int procs_err;			/* 0, or why /proc is unreadable */
	unsigned int unprotected;	/* on none, the machine has a source */
	bool scoped;			/* --pid */
};

static bool has_source(const struct status *st)
{
	return st->source != VMGEN_SOURCE_NONE;
}

static void json_processes(FILE *out, const struct status *st)
{
	size_t i;

	fputs(",\n  \"processes\": [", out);
	for (i = 0; i < st->procs.n; i++) {
		const struct proc_use *u = &st->procs.v[i];

		fprintf(out, "%s\n    {\"pid\": %d, \"comm\": ",
			i ? "," : "", u->pid);
		json_string(out, u->comm);
		fputs(", \"source\": ", out);
		json_string(out, u->source[0] ? u->source : NULL);
		fprintf(out, ", \"initialised\": %s, \"protected\": %s}",
			u->initialised ? "true" : "false",
			!u->source[0] ? "null" :
			procs_unprotected(u) ? "false" : "true");
	}
	fputs(st->procs.n ? "\n  ]" : "]", out);
	fputs(",\n  \"processes_unreadable\": ", out);
	json_number(out, st->procs_err ? -1 : (int64_t)st->procs.unreadable);
	fputs(",\n  \"unprotected\": ", out);
	json_number(out, st->procs_err ? -1 : (int64_t)st->unprotected);
}

static void text_processes(FILE *out, const struct status *st)
{
	size_t i;

	if (st->procs_err) {
		fprintf(out, "%-19s unknown: /proc: %s\n", "processes:",
			strerror(-st->procs_err));
		return;
	}
	fprintf(out, "%-19s %zu use%s libvmgenid", "processes:", st->procs.n,
		st->procs.n == 1 ? "s" : "");
	if (st->procs.unreadable)
		fprintf(out, "; %u not readable%s", st->procs.unreadable,
			geteuid() ? " (other users': run as root)" : "");
	if (st->scoped && st->procs.not_users)
		fprintf(out, "; %u of the --pid not using it or gone",
			st->procs.not_users);
	fputc('\n', out);
	for (i = 0; i < st->procs.n; i++) {
		const struct proc_use *u = &st->procs.v[i];

		fprintf(out, "  %7d %-16s %s%s\n", u->pid, u->comm,
			u->source[0] ? u->source : "not initialised",
			has_source(st) && procs_unprotected(u) ?
			"  <- NOT PROTECTED" : "");
	}
	if (st->unprotected)
		fprintf(out, "%-19s %u process%s on none while this machine "
			"has a source (%s): not protected against a VM "
			"restore; restart %s (see vmgenid(7))\n", "WARNING:",
			st->unprotected, st->unprotected == 1 ? "" : "es",
			vmgen_source_name(st->source),
			st->unprotected == 1 ? "it" : "them");
}

static void print_json(FILE *out, const struct status *st)
{
	bool first = true;
	int kind;

	fputs("{\n  \"source\": ", out);
	json_string(out, vmgen_source_name(st->source));
	fputs(",\n  \"path\": ", out);
	json_string(out, st->path);
	fputs(",\n  \"rejected\": {", out);
	for (kind = 0; kind < VMGEN_SOURCE_COUNT; kind++) {
		const char *why = vmgen_source_rejected(kind);

		if (!why)
			continue;
		fputs(first ? "\n    " : ",\n    ", out);
		json_string(out, vmgen_source_name(kind));
		fputs(": ", out);
		json_string(out, why);
		first = false;
	}
	fputs(first ? "},\n" : "\n  },\n", out);
	fputs("  \"source_generation\": ", out);
	if (st->source_generation_err)
		fputs("null", out);
	else
		fprintf(out, "%" PRIu64, st->source_generation);
	fputs(",\n  \"generation\": ", out);
	json_number(out, st->generation);
	fputs(",\n  \"fork_detection\": ", out);
	json_string(out, st->fork_mode);
	fputs(",\n  \"watchers\": ", out);
	json_number(out, st->watchers);
	fputs(",\n  \"outdated_watchers\": ", out);
	json_number(out, st->outdated_watchers);
	fputs(",\n  \"race_free\": ", out);
	fputs(st->race_free < 0 ? "null" : st->race_free ? "true" : "false",
	      out);
	fputs(",\n  \"race_free_reason\": ", out);
	json_string(out, st->race_free == 0 ? st->race_reason : NULL);
	fputs(",\n  \"module_mode\": ", out);
	json_string(out, st->module_mode);
	fputs(",\n  \"guid_page\": ", out);
	json_string(out, st->guid_page);
	json_processes(out, st);
	fputs("\n}\n", out);
}

static void print_count(FILE *out, const char *label, int64_t v)
{
	if (v < 0)
		fprintf(out, "%-19s unknown\n", label);
	else
		fprintf(out, "%-19s %" PRId64 "\n", label, v);
}

static void print_text(FILE *out, const struct status *st)
{
	bool first = true;
	int kind;

	fprintf(out, "%-19s %s\n", "source:", vmgen_source_name(st->source));
	fprintf(out, "%-19s %s\n", "path:", st->path ? st->path : "-");
	for (kind = 0; kind < VMGEN_SOURCE_COUNT; kind++) {
		const char *why = vmgen_source_rejected(kind);

		if (!why)
			continue;
		fprintf(out, "%-19s %s: %s\n", first ? "rejected:" : "",
			vmgen_source_name(kind), why);
		first = false;
	}
	if (st->source_generation_err)
		fprintf(out, "%-19s unknown\n", "source generation:");
	else
		fprintf(out, "%-19s %" PRIu64 "\n", "source generation:",
			st->source_generation);
	print_count(out, "generation:", st->generation);
	fprintf(out, "%-19s %s\n", "fork detection:",
		st->fork_mode ? st->fork_mode : "unknown");
	if (st->race_free < 0)
		fprintf(out, "%-19s unknown\n", "race-free:");
	else if (st->race_free)
		fprintf(out, "%-19s yes\n", "race-free:");
	else
		fprintf(out, "%-19s no: %s\n", "race-free:",
			st->race_reason ? st->race_reason : "unknown");
	if (st->source == VMGEN_SOURCE_SYSGENID) {
		print_count(out, "watchers:", st->watchers);
		print_count(out, "outdated watchers:", st->outdated_watchers);
		fprintf(out, "%-19s %s\n", "module mode:",
			st->module_mode ? st->module_mode : "unknown");
		fprintf(out, "%-19s %s\n", "guid page:",
			st->guid_page ? st->guid_page : "unknown");
	}
	text_processes(out, st);
}

int cmd_status(const struct vmgenid_opts *opts)
{
	struct status st;

	if (tool_init(opts, 0) < 0)
		return VMGENID_EXIT_FAILURE;
	memset(&st, 0, sizeof(st));
	st.source = vmgen_source();
	if (st.source < 0)
		return tool_fail("reading the source", st.source);
	st.path = vmgen_source_path();
	st.source_generation_err =
		vmgen_source_generation(&st.source_generation);
	st.generation = vmgen_generation();
	if (st.generation < 0)
		return tool_fail("reading the generation", (int)st.generation);
	st.fork_mode = fork_mode_name(vmgen_fork_mode());
	st.watchers = -ENOENT;
	st.outdated_watchers = -ENOENT;
	st.race_free = vmgen_source_race_free(&st.race_reason);
	if (st.source == VMGEN_SOURCE_SYSGENID) {
		st.watchers = read_sysfs_count("watchers");
		st.outdated_watchers = read_sysfs_count("outdated_watchers");
		st.module_mode = read_sysfs_text("mode", st.mode_buf,
						 sizeof(st.mode_buf));
		st.guid_page = read_sysfs_text("guid_page", st.guid_page_buf,
					       sizeof(st.guid_page_buf));
	}
	st.scoped = opts->npids > 0;
	st.procs_err = procs_scan(opts->pids, opts->npids, (int)getpid(),
				  &st.procs);
	for (size_t i = 0; i < st.procs.n; i++)
		if (has_source(&st) && procs_unprotected(&st.procs.v[i]))
			st.unprotected++;
	if (opts->json)
		print_json(stdout, &st);
	else
		print_text(stdout, &st);
	procs_free(&st.procs);
	if (opts->check && st.procs_err)
		return tool_fail("listing the processes", st.procs_err);
	return opts->check && st.unprotected ? VMGENID_EXIT_UNPROTECTED :
					       VMGENID_EXIT_OK;
}
