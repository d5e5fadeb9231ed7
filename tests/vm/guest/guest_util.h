/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the in-guest sysgenid tests: device access, children
 * with a deadline, and the kernel log. Header-only so that each guest
 * program stays one static binary built from one .c file.
 */
#ifndef GUEST_UTIL_H
#define GUEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/sysgenid.h>

#include "guest_tap.h"

static const char *dev_path = "/dev/" SYSGENID_DEVICE_NAME;
static const char *sysfs_dir = "/sys/class/misc/" SYSGENID_DEVICE_NAME;

static inline int dev_open(int flags)
{
	return open(dev_path, flags | O_CLOEXEC);
}

/* A sysfs attribute of the device as a number, or -1. */
static inline long sysfs_attr(const char *name)
{
	char path[256], buf[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", sysfs_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* A sysfs attribute of the device as text, newline dropped; NULL if none. */
static inline const char *sysfs_attr_str(const char *name, char *buf,
					 size_t len)
{
	char path[256];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", sysfs_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	if (buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return buf;
}

/* The counter, as sysfs shows it; the tests cross-check it with mmap. */
static inline long gen_now(void)
{
	return sysfs_attr("generation");
}

static inline int trigger(int fd, unsigned long min_gen)
{
	return ioctl(fd, SYSGENID_TRIGGER_GEN_UPDATE, min_gen);
}

/* Acknowledges whatever read() returns; 0 or -1 with errno. */
static inline int ack(int fd)
{
	uint32_t g;

	if (read(fd, &g, sizeof(g)) != sizeof(g))
		return -1;
	if (write(fd, &g, sizeof(g)) != sizeof(g))
		return -1;
	return 0;
}

/* poll() revents with a zero timeout, or -1. */
static inline int poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = poll(&p, 1, 0);

	return r < 0 ? -1 : p.revents;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * Waits up to limit_ms for child pid; its exit status, or -1 if it is
 * still running then (it is killed) or -2 if it died by a signal. The
 * limit only turns a hang into a failure; no test depends on its value.
 */
static inline int wait_child(pid_t pid, long limit_ms)
{
	int status;
	long waited = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited >= limit_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		sleep_ms(10);
		waited += 10;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

/* True if pid has not exited yet (and is not reaped). */
static inline bool child_running(pid_t pid)
{
	int status;

	return waitpid(pid, &status, WNOHANG) == 0;
}

/* Writes a line into the kernel log, to find our place in it later. */
static inline int kmsg_mark(const char *text)
{
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	char line[256];
	int n, r;

	if (fd < 0)
		return -1;
	/*
	 * One write() per record; not dprintf(), whose stream seeks, which
	 * /dev/kmsg refuses (EINVAL).
	 */
	n = snprintf(line, sizeof(line), "%s\n", text);
	r = write(fd, line, (size_t)n) == n ? 0 : -1;
	close(fd);
	return r;
}

/*
 * The kernel log after the last occurrence of marker (all of it when
 * marker is NULL), malloc'd; NULL if it cannot be read or the marker is
 * not in it (ENOENT).
 */
static inline char *klog_since(const char *marker)
{
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *buf, *from = NULL, *p;
	int n;

	if (size <= 0)
		size = 1 << 20;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return NULL;
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, size);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (!marker)
		return buf;
	for (p = buf; (p = strstr(p, marker)); p++)
		from = p;
	if (!from) {
		free(buf);
		errno = ENOENT;
		return NULL;
	}
	memmove(buf, from, strlen(from) + 1);
	return buf;
}

static inline long long mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * The timestamp (printk clock, microseconds) of the last /dev/kmsg record
 * that contains needle, or -1. Records: "prio,seq,usec,flags;text".
 */
static inline long long kmsg_usec_of(const char *needle)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	long long found = -1;
	char rec[2048];
	ssize_t n;

	if (fd < 0)
		return -1;
	for (;;) {
		long long usec;
		const char *text;

		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten while we read: go on */
		if (n <= 0)
			break;
		rec[n] = '\0';
		text = strchr(rec, ';');
		if (!text || sscanf(rec, "%*u,%*u,%lld", &usec) != 1)
			continue;
		if (strstr(text, needle))
			found = usec;
	}
	close(fd);
	return found;
}

/* Prints, as TAP comments, the /dev/kmsg records that contain needle. */
static inline void kmsg_print(const char *needle)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	char rec[2048];
	ssize_t n;

	if (fd < 0)
		return;
	for (;;) {
		long long usec;
		const char *text;

		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		text = strchr(rec, ';');
		if (!text || sscanf(rec, "%*u,%*u,%lld", &usec) != 1 ||
		    !strstr(text, needle))
			continue;
		printf("# [%lld.%06lld] %.*s\n", usec / 1000000,
		       usec % 1000000, (int)strcspn(text + 1, "\n"), text + 1);
	}
	close(fd);
}

/* The first line of log that contains any of the words, or NULL. */
static inline const char *klog_find_any(const char *log,
					const char *const *words)
{
	for (; *words; words++) {
		const char *p = strstr(log, *words);

		if (p)
			return p;
	}
	return NULL;
}

/* NULL if the kernel log since marker has none of the words, else why. */
static inline const char *klog_clean_since(const char *marker,
					   const char *const *bad)
{
	const char *hit;
	char *log = klog_since(marker);

	if (!log && errno == ENOENT)
		FAIL("the kernel log wrapped past our marker: "
		     "something logs heavily");
	CHECK(log, "cannot read the kernel log: %s", strerror(errno));
	hit = klog_find_any(log, bad);
	if (hit)
		snprintf(tap_why, sizeof(tap_why), "kernel log: %.200s", hit);
	free(log);
	return hit ? tap_why : NULL;
}

/*
 * The start of a test that runs in phase "abi" only: other phases report
 * one skipped test; the device must open and we must be root (triggers,
 * module loads). Returns -1 to go on, else the exit status to return.
 */
static inline int guest_abi_preflight(const char *what, const char *phase)
{
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(phase, "abi")) {
		printf("ok 1 - %s # SKIP runs in phase abi, not %s\n", what,
		       phase);
		return tap_done();
	}
	fd = dev_open(O_RDWR);
	if (fd < 0) {
		printf("# SKIP: cannot open %s: %s\n", dev_path,
		       strerror(errno));
		return 77;
	}
	close(fd);
	if (geteuid() != 0) {
		printf("# SKIP: needs root (trigger, module load)\n");
		return 77;
	}
	return -1;
}

/*
 * The module file given on the command line (KO), or NULL: the tests that
 * unload and reload the module need it.
 */
static const char *ko_path;

static inline int mod_unload(void)
{
	return (int)syscall(SYS_delete_module, SYSGENID_DEVICE_NAME,
			    O_NONBLOCK);
}

/* Load ko_path with these parameters; errno is finit_module's. */
static inline int mod_load_with(const char *params)
{
	int fd = open(ko_path, O_RDONLY | O_CLOEXEC), r, e;

	if (fd < 0)
		return -1;
	r = (int)syscall(SYS_finit_module, fd, params, 0);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

static inline int mod_load(void)
{
	return mod_load_with("");
}

/* The errno of an unload refused because the module is in use. */
static inline bool busy_errno(int e)
{
	return e == EWOULDBLOCK || e == EAGAIN || e == EBUSY;
}

struct guest_test {
	const char *name;
	tap_fn fn;
};

/*
 * The body of an abi-phase test program: the preflight, each test in
 * turn, then the module loaded again if a test left it unloaded (for
 * whatever runs next). Returns the exit status.
 */
static inline int guest_run_tests(const char *what, const char *phase,
				  const struct guest_test *tests, size_t n)
{
	int ret = guest_abi_preflight(what, phase);

	if (ret >= 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		tap_run(tests[i].name, tests[i].fn);
	if (ko_path && access(dev_path, F_OK))
		mod_load();
	return tap_done();
}

#endif /* GUEST_UTIL_H */
