/* SPDX-License-Identifier: MIT */
/*
 * A tiny TAP-like reporter for the programs that run inside the test guest,
 * where no test framework is installed. One line per test:
 *
 *	ok N - name
 *	ok N - name # SKIP reason
 *	not ok N - name: reason
 *
 * and last "P passed, F failed" (skips count as neither), so that the
 * harness can parse the serial console.
 *
 * A test is a function returning NULL on success, or a reason. FAIL() and
 * CHECK() build the reason; SKIP() marks the test skipped. Tests run in a
 * child process each, so they share only what the kernel keeps.
 */
#ifndef GUEST_TAP_H
#define GUEST_TAP_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static char tap_why[1024];
static bool tap_skipped;
static int tap_n, tap_pass, tap_fail, tap_skip;

#define FAIL(...)							\
	do {								\
		snprintf(tap_why, sizeof(tap_why), __VA_ARGS__);	\
		return tap_why;						\
	} while (0)

#define CHECK(cond, ...)						\
	do {								\
		if (!(cond))						\
			FAIL(__VA_ARGS__);				\
	} while (0)

/* A syscall that must succeed: the reason names it and errno. */
#define CHECK_SYS(expr)							\
	do {								\
		if ((expr) < 0)						\
			FAIL("%s: %s", #expr, strerror(errno));		\
	} while (0)

/* A syscall that must fail with errno err. */
#define CHECK_ERR(expr, err)						\
	do {								\
		long r_ = (long)(expr);					\
		int e_ = errno;						\
		if (r_ != -1 || e_ != (err))				\
			FAIL("%s = %ld (%s), want -1 (%s)", #expr, r_,	\
			     r_ == -1 ? strerror(e_) : "no error",	\
			     strerror(err));				\
	} while (0)

#define SKIP(...)							\
	do {								\
		tap_skipped = true;					\
		snprintf(tap_why, sizeof(tap_why), __VA_ARGS__);	\
		return tap_why;						\
	} while (0)

typedef const char *(*tap_fn)(void);

/*
 * Each test runs in a child process: a test that fails half-way leaves no
 * open fd or tracked watcher behind to skew the next one, and a crash is
 * a failure, not the end of the run. The verdict comes back over a pipe:
 * 'p' (passed), 's' (skipped) or 'f' (failed), then the reason.
 */
static inline void tap_run(const char *name, tap_fn fn)
{
	char msg[sizeof(tap_why) + 1] = "";
	ssize_t got = 0, n;
	int pfd[2], status = 0;
	pid_t pid;

	fflush(stdout);
	if (pipe(pfd) || (pid = fork()) < 0) {
		snprintf(msg, sizeof(msg), "fcannot fork: %s",
			 strerror(errno));
	} else if (pid == 0) {
		const char *why;

		close(pfd[0]);
		tap_skipped = false;
		why = fn();
		snprintf(msg, sizeof(msg), "%c%s",
			 !why ? 'p' : tap_skipped ? 's' : 'f', why ? why : "");
		n = write(pfd[1], msg, strlen(msg));
		_exit(n < 0);
	} else {
		close(pfd[1]);
		/*
		 * Wait for the test first, then take what it wrote without
		 * blocking: processes it left running (on purpose, as the
		 * restore test's waiters) still hold the pipe open.
		 */
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		fcntl(pfd[0], F_SETFL, O_NONBLOCK);
		while (got < (ssize_t)sizeof(msg) - 1 &&
		       (n = read(pfd[0], msg + got,
				 sizeof(msg) - 1 - (size_t)got)) > 0)
			got += n;
		msg[got] = '\0';
		close(pfd[0]);
		if (!got && WIFSIGNALED(status))
			snprintf(msg, sizeof(msg), "fkilled by signal %d",
				 WTERMSIG(status));
		else if (!got)
			snprintf(msg, sizeof(msg), "fno verdict");
	}

	tap_n++;
	if (msg[0] == 'p') {
		tap_pass++;
		printf("ok %d - %s\n", tap_n, name);
	} else if (msg[0] == 's') {
		tap_skip++;
		printf("ok %d - %s # SKIP %s\n", tap_n, name, msg + 1);
	} else {
		tap_fail++;
		printf("not ok %d - %s: %s\n", tap_n, name, msg + 1);
	}
	fflush(stdout);
}

/* Prints the summary; the exit status for main(). */
static inline int tap_done(void)
{
	if (tap_skip)
		printf("# %d skipped\n", tap_skip);
	printf("%d passed, %d failed\n", tap_pass, tap_fail);
	fflush(stdout);
	return tap_fail ? 1 : 0;
}

#endif /* GUEST_TAP_H */
