/* SPDX-License-Identifier: MIT */
/*
 * What the kernel-RNG guest programs (kernel_rng_probe.c, krng_window.c) do
 * the same way: TAP-style checks, CLOCK_MONOTONIC in ns, the crng reseed
 * just before the save, and reading /dev/kmsg with its times mapped onto
 * CLOCK_MONOTONIC through a line of the program's own. Header only: each
 * program is one static binary.
 */
#ifndef KRNG_COMMON_H
#define KRNG_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int tests, failed;

static void check(bool ok, const char *name, const char *why)
{
	tests++;
	if (ok) {
		printf("ok %d - %s\n", tests, name);
	} else {
		failed++;
		printf("not ok %d - %s: %s\n", tests, name, why);
	}
	fflush(stdout);
}

/* The phase's last line and exit status. */
static int krng_summary(void)
{
	printf("%d passed, %d failed\n", tests - failed, failed);
	return failed ? 1 : 0;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Make the kernel's own reseed schedule quiet until after the save. */
static void krng_reseed_now(void)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	int ret = fd < 0 ? -1 : ioctl(fd, RNDRESEEDCRNG);

	check(ret == 0, "kernel crng reseeded now (RNDRESEEDCRNG)",
	      strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * The next /dev/kmsg record of fd: its time (local_clock, us) and its text
 * without the newline, in rec. Returns false at the end of the log.
 */
static bool krng_kmsg_next(int fd, char *rec, size_t len,
			   unsigned long long *us, char **msg)
{
	for (;;) {
		ssize_t n = read(fd, rec, len - 1);

		if (n < 0 && errno == EPIPE)
			continue;
		if (n <= 0)
			return false;
		rec[n] = '\0';
		*msg = strchr(rec, ';');
		if (!*msg || sscanf(rec, "%*u,%*u,%llu", us) != 1)
			continue;
		++*msg;
		(*msg)[strcspn(*msg, "\n")] = '\0';
		return true;
	}
}

/*
 * Write sync_line to the kernel log (fd open O_RDWR) and find it again:
 * *off is then kernel log time (ns) minus CLOCK_MONOTONIC. Leaves fd at
 * the start of the log. Returns false if the line was not found.
 */
static bool krng_kmsg_sync(int fd, const char *sync_line, char *rec,
			   size_t len, int64_t *off)
{
	int64_t m0, m1, sync_us = -1;
	unsigned long long us;
	char line[128];
	char *msg;

	/* with no newline the record would stay open for continuation */
	snprintf(line, sizeof(line), "%s\n", sync_line);
	m0 = mono_ns();
	if (write(fd, line, strlen(line)) < 0)
		printf("KRNG kmsg write error=%s\n", strerror(errno));
	m1 = mono_ns();
	lseek(fd, 0, SEEK_SET);
	while (krng_kmsg_next(fd, rec, len, &us, &msg))
		if (strstr(msg, sync_line))
			sync_us = (int64_t)us;
	lseek(fd, 0, SEEK_SET);
	if (sync_us < 0)
		return false;
	*off = sync_us * 1000 - (m0 + m1) / 2;
	return true;
}

#endif
