/* SPDX-License-Identifier: MIT */
/*
 * What the in-guest tests of the vmgenid command (vm_tool_test.c,
 * vm_late_load_test.c) do the same way: run a program and take its output,
 * start a "vmgenid watch" that outlives the phase and wait until it is
 * armed, test for a file. Header-only, after guest_util.h.
 */
#ifndef VM_TOOL_UTIL_H
#define VM_TOOL_UTIL_H

#include <sys/stat.h>

#include "guest_util.h"

/*
 * Runs argv (argv[0] a path); its stdout (at most len - 1 bytes) lands in
 * out, as one line, so that a failure's reason stays one TAP line. Returns
 * the exit status, 128 if killed, -1 if it could not start.
 */
static int run_capture(char *out, size_t len, const char *const *argv)
{
	int pfd[2], status, i;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe(pfd) < 0 || (pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	while (got + 1 < len && (n = read(pfd[0], out + got,
					  len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	for (i = 0; out[i]; i++)
		if (out[i] == '\n')
			out[i] = ' ';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static char watch_err[256];	/* what the last watch_start() saw */

/*
 * Starts argv (a "vmgenid watch" command line, argv[0] a path) in its own
 * session, stderr to errfile, without VMGENID_SOURCE if auto_source;
 * returns its pid once it says "watching", -1 if it ends or never does.
 */
static pid_t watch_start(const char *errfile, const char *const *argv,
			 bool auto_source)
{
	int fd, i, status;
	pid_t pid;

	unlink(errfile);
	watch_err[0] = '\0';
	pid = fork();
	if (pid == 0) {
		fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		/* not the verdict pipe of tap_run(): its reader waits for EOF */
		closefrom(3);
		setsid();	/* outlives the phase that started it */
		if (auto_source)
			unsetenv("VMGENID_SOURCE");
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	/* Armed when it says so; 60 s is a hang guard for a slow TCG. */
	for (i = 0; pid > 0 && i < 6000; i++) {
		fd = open(errfile, O_RDONLY);
		if (fd >= 0) {
			ssize_t n = read(fd, watch_err, sizeof(watch_err) - 1);

			close(fd);
			watch_err[n > 0 ? n : 0] = '\0';
			watch_err[strcspn(watch_err, "\n")] = '\0';
			if (strstr(watch_err, "watching"))
				return pid;
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			return -1;
		usleep(10000);
	}
	return -1;
}

static bool file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

#endif /* VM_TOOL_UTIL_H */
