/* SPDX-License-Identifier: MIT */
/*
 * vmgenid watch: run a command on every generation step, the shell's
 * after-restore hook.
 *
 * CMD runs from the tool's own reseed callback, so the step counts as
 * handled (and, with --track, is acknowledged to the sysgenid device) only
 * once CMD has finished: an orchestrator in "vmgenid wait-watchers" waits
 * for the hooks, not just for this process. A failing CMD is reported and
 * the callback still succeeds, or the library would retry the step, and
 * run CMD again, on every dispatch.
 *
 * Signals arrive through a signalfd, so that SIGINT and SIGTERM can be
 * forwarded to a running CMD and end the watch only between steps.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vmgenid.h>

#include "tool.h"

extern char **environ;

struct watch {
	const struct vmgenid_opts *opts;
	int sigfd;
	uint64_t steps;
	bool stop;			/* SIGINT or SIGTERM seen */
	int stop_signal;
};

/* Reads the pending signals; forwards a stop request to child if any. */
static void drain_signals(struct watch *w, pid_t child)
{
	struct signalfd_siginfo si;

	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo != SIGINT && si.ssi_signo != SIGTERM)
			continue;	/* SIGCHLD: waitpid() will tell */
		w->stop = true;
		w->stop_signal = (int)si.ssi_signo;
		if (child > 0)
			kill(child, (int)si.ssi_signo);
	}
}

/* VMGENID_* names CMD gets from us replace any inherited ones. */
static bool ours(const char *entry)
{
	static const char *const names[] = {
		"VMGENID_GENERATION=", "VMGENID_PREVIOUS=",
		"VMGENID_SOURCE_GENERATION=", "VMGENID_REASON=",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(entry, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

static const char *reason_name(uint32_t reasons)
{
	switch (reasons & VMGEN_EVENT_ANY) {
	case VMGEN_EVENT_VM:
		return "vm";
	case VMGEN_EVENT_FORK:
		return "fork";
	case VMGEN_EVENT_ANY:
		return "vm,fork";
	default:
		return "";
	}
}

/*
 * A private environment rather than setenv(): the library may have threads
 * of its own, and setenv() under a concurrent getenv() is undefined.
 */
static char **make_env(const struct watch *w, const struct vmgen_event *ev,
		       char bufs[4][64])
{
	const char *source = w->opts->source;
	size_t n = 0, k = 0, i;
	uint64_t src;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 6, sizeof(*env));
	if (!env)
		return NULL;
	for (i = 0; i < n; i++) {
		/* hooks that use the library see the source we watch */
		if (source && strncmp(environ[i], "VMGENID_SOURCE=", 15) == 0)
			continue;
		if (!ours(environ[i]))
			env[k++] = environ[i];
	}
	snprintf(bufs[0], 64, "VMGENID_GENERATION=%" PRIu64,
		 ev->new_generation);
	snprintf(bufs[1], 64, "VMGENID_PREVIOUS=%" PRIu64, ev->old_generation);
	snprintf(bufs[2], 64, "VMGENID_REASON=%s", reason_name(ev->reasons));
	env[k++] = bufs[0];
	env[k++] = bufs[1];
	env[k++] = bufs[2];
	if (vmgen_source_generation(&src) == 0) {
		snprintf(bufs[3], 64, "VMGENID_SOURCE_GENERATION=%" PRIu64,
			 src);
		env[k++] = bufs[3];
	}
	if (source) {
		/* the spec may be longer than a buffer: build it apart */
		char *s = malloc(strlen(source) + 16);

		if (!s) {
			free(env);
			return NULL;
		}
		sprintf(s, "VMGENID_SOURCE=%s", source);
		env[k++] = s;
	}
	env[k] = NULL;
	return env;
}

static void free_env(const struct watch *w, char **env)
{
	size_t k = 0;

	if (!env)
		return;
	while (env[k])
		k++;
	if (w->opts->source && k > 0)
		free(env[k - 1]);	/* the VMGENID_SOURCE entry, last */
	free(env);
}

static void report(const char *cmd, int status, uint64_t gen)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	if (WIFEXITED(status))
		fprintf(stderr, "vmgenid: watch: %s exited with status %d "
			"(generation %" PRIu64 ")\n", cmd,
			WEXITSTATUS(status), gen);
	else if (WIFSIGNALED(status))
		fprintf(stderr, "vmgenid: watch: %s killed by signal %d "
			"(generation %" PRIu64 ")\n", cmd, WTERMSIG(status),
			gen);
}

static void run_cmd(struct watch *w, const struct vmgen_event *ev)
{
	char **argv = w->opts->cmd_argv;
	posix_spawnattr_t attr;
	char bufs[4][64];
	sigset_t none, dfl;
	int r, status = 0;
	char **env;
	pid_t pid;

	env = make_env(w, ev, bufs);
	if (!env) {
		fprintf(stderr, "vmgenid: watch: out of memory\n");
		return;
	}
	/* CMD starts with the signal state a shell would give it. */
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGCHLD);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSIGDEF);
	r = posix_spawnp(&pid, argv[0], NULL, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	free_env(w, env);
	if (r != 0) {
		fprintf(stderr, "vmgenid: watch: cannot run %s: %s "
			"(generation %" PRIu64 ")\n", argv[0], strerror(r),
			ev->new_generation);
		return;
	}
	for (;;) {
		struct pollfd pfd = { .fd = w->sigfd, .events = POLLIN };

		r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		/*
		 * Not forever: the step may run in a thread of the library
		 * (the one that waits for a source under auto), and then the
		 * main thread's poll can take the SIGCHLD meant for us.
		 */
		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			break;
		drain_signals(w, pid);
	}
	if (r == pid)
		report(argv[0], status, ev->new_generation);
}

static int on_step(const struct vmgen_event *ev, void *arg)
{
	struct watch *w = arg;

	if (w->stop || (w->opts->count && w->steps >= w->opts->count))
		return 0;
	w->steps++;
	run_cmd(w, ev);
	return 0;
}

int cmd_watch(const struct vmgenid_opts *opts)
{
	struct watch w = { .opts = opts, .sigfd = -1 };
	struct pollfd pfd[2];
	int id, fd, r, code = VMGENID_EXIT_FAILURE;
	const char *path;
	int64_t gen;
	sigset_t set;

	/*
	 * Block before the library starts any thread, so every thread
	 * inherits the mask and the signals wait for the signalfd.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return tool_fail("blocking signals", -errno);
	w.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (w.sigfd < 0)
		return tool_fail("signalfd", -errno);

	if (tool_init(opts, 0) < 0)
		goto out;
	/* Not VMGEN_INIT_TRACKING: that fails init on the other sources. */
	if (opts->track) {
		r = vmgen_tracking_enable();
		if (r == -EOPNOTSUPP)
			fprintf(stderr, "vmgenid: watch: --track needs the "
				"sysgenid source; going on without\n");
		else if (r < 0) {
			tool_fail("enabling watcher tracking", r);
			goto out;
		}
	}
	id = vmgen_callback_register(on_step, &w, VMGEN_EVENT_ANY);
	if (id < 0) {
		tool_fail("registering the callback", id);
		goto out;
	}
	fd = vmgen_fd();
	gen = vmgen_generation();
	if (fd < 0 || gen < 0) {
		tool_fail("watching the source", fd < 0 ? fd : (int)gen);
		goto unregister;
	}
	/* Also tells a test or a supervisor that the watch is armed. */
	path = vmgen_source_path();
	fprintf(stderr, "vmgenid: watching the %s source%s%s from generation %"
		PRId64 "\n", vmgen_source_name(vmgen_source()),
		path ? " " : "", path ? path : "", gen);

	pfd[0] = (struct pollfd){ .fd = fd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = w.sigfd, .events = POLLIN };
	code = VMGENID_EXIT_OK;
	while (!w.stop && !(opts->count && w.steps >= opts->count)) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			code = tool_fail("poll", -errno);
			break;
		}
		if (pfd[1].revents)
			drain_signals(&w, 0);
		if (w.stop)
			break;
		if (pfd[0].revents & (POLLERR | POLLNVAL)) {
			fprintf(stderr, "vmgenid: watch: the source's fd "
				"failed\n");
			code = VMGENID_EXIT_FAILURE;
			break;
		}
		if (pfd[0].revents) {
			r = vmgen_dispatch();
			if (r < 0) {
				code = tool_fail("dispatch", r);
				break;
			}
		}
	}
unregister:
	vmgen_callback_unregister(id);
out:
	close(w.sigfd);
	return code;
}
