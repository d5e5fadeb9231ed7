/* SPDX-License-Identifier: MIT */
/*
 * Seeing a VM restore from inside the guest, for the guest programs.
 *
 * Under QEMU the guest's monotonic clock does not jump across a save and a
 * restore: the virtual clock stops with the VM and the saved state carries
 * it. The emulated CMOS RTC follows the host's wall clock (-rtc clock=host,
 * the default), so its distance from CLOCK_MONOTONIC jumps by the time the
 * VM spent stopped. The hosts keep that above 3 s, well over the RTC's 1 s
 * resolution: a jump above RESUME_JUMP_NS marks the resume.
 */
#ifndef RESUME_RTC_H
#define RESUME_RTC_H

#include <errno.h>
#include <fcntl.h>
#include <linux/rtc.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define RESUME_JUMP_NS 1500000000LL

static inline int64_t resume_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* RTC time minus CLOCK_MONOTONIC, in ns; INT64_MIN when unreadable. */
static inline int64_t resume_rtc_offset_ns(int fd)
{
	struct rtc_time rt;
	struct tm tm;
	int64_t mono;

	if (fd < 0 || ioctl(fd, RTC_RD_TIME, &rt) < 0)
		return INT64_MIN;
	mono = resume_mono_ns();
	memset(&tm, 0, sizeof(tm));
	tm.tm_sec = rt.tm_sec;
	tm.tm_min = rt.tm_min;
	tm.tm_hour = rt.tm_hour;
	tm.tm_mday = rt.tm_mday;
	tm.tm_mon = rt.tm_mon;
	tm.tm_year = rt.tm_year;
	return (int64_t)timegm(&tm) * 1000000000LL - mono;
}

/*
 * Opens /dev/rtc0; returns its fd and the baseline offset in *base, or a
 * negative errno. The RTC ticks in whole seconds: the baseline is the
 * largest offset seen over just over a second of reads, so it sits at the
 * top of the quantisation band and later readings stay within 1 s below.
 */
static inline int resume_rtc_open(int64_t *base)
{
	int64_t end = resume_mono_ns() + 1100000000LL;
	int fd = open("/dev/rtc0", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	*base = INT64_MIN;
	while (resume_mono_ns() < end) {
		struct timespec ms = { 0, 5000000 };
		int64_t off = resume_rtc_offset_ns(fd);

		if (off == INT64_MIN) {
			close(fd);
			return -EIO;
		}
		if (off > *base)
			*base = off;
		nanosleep(&ms, NULL);
	}
	return fd;
}

/* True when @off, read after the baseline @base, shows a resume. */
static inline bool resume_rtc_jumped(int64_t off, int64_t base)
{
	return off != INT64_MIN && off - base > RESUME_JUMP_NS;
}

#endif /* RESUME_RTC_H */
