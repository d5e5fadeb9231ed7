/* SPDX-License-Identifier: MIT */
/*
 * The SysGenID device ABI, clause by clause, against the real module in a
 * guest: mmap, read, write, poll/epoll, the ioctls, and robustness (leaks,
 * many waiters, module unload while in use, load/unload cycles).
 *
 * Usage (as root in the guest):
 *	sysgenid_abi_test [--ko PATH/sysgenid.ko] [--dev /dev/sysgenid]
 *	sysgenid_abi_test KO PHASE	(the VM harness's convention)
 *
 * Without a module path the tests that unload and reload it are skipped.
 * In the harness form the tests run in PHASE "abi" and skip in the others
 * (before-save, after-restore), which belong to sysgenid_restore_test.
 * The module must be loaded on entry; it is loaded again on exit.
 * Output: TAP-like lines and a "P passed, F failed" summary (guest_tap.h);
 * exit 0 when nothing failed, 1 otherwise, 77 when there is no device.
 *
 * Build: cc -static -O2 -I driver/uapi -o sysgenid_abi_test \
 *	tests/vm/guest/sysgenid_abi_test.c
 */
#include <dirent.h>
#include <linux/capability.h>
#include <limits.h>
#include <stdint.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "guest_tap.h"
#include "guest_util.h"

#define PAGE	((size_t)sysconf(_SC_PAGESIZE))
/* A hang becomes a failure after this long; no test relies on the value. */
#define LIMIT_MS	20000

static volatile sig_atomic_t alarm_fired;

static void on_alarm(int sig)
{
	(void)sig;	/* there to interrupt a blocked call, and say so */
	alarm_fired = 1;
}

/* Arms SIGALRM without SA_RESTART, so a stuck call fails with EINTR. */
static void guard(unsigned int seconds)
{
	struct sigaction sa = { .sa_handler = on_alarm };

	alarm_fired = 0;
	sigaction(SIGALRM, &sa, NULL);
	alarm(seconds);
}

/* ---- mmap ---- */

static const char *t_mmap_shows_counter(void)
{
	int fd = dev_open(O_RDWR);
	volatile uint32_t *p;
	uint32_t before;

	CHECK_SYS(fd);
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	before = p[0];
	CHECK(before == (uint32_t)gen_now(), "page %u, sysfs %ld", before,
	      gen_now());
	CHECK_SYS(trigger(fd, 0));
	CHECK(p[0] == before + 1, "page %u after trigger from %u", p[0],
	      before);
	CHECK(p[0] == (uint32_t)gen_now(), "page %u, sysfs %ld", p[0],
	      gen_now());
	/* The rest of the page is zero: readers may rely on nothing else. */
	for (size_t i = 1; i < PAGE / sizeof(uint32_t); i++)
		CHECK(p[i] == 0, "word %zu of the page is %u", i, p[i]);
	munmap((void *)p, PAGE);
	close(fd);
	return NULL;
}

static const char *t_mmap_write_eperm(void)
{
	int fd = dev_open(O_RDWR);

	CHECK_SYS(fd);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
		  EPERM);
	close(fd);
	return NULL;
}

static const char *t_mprotect_write_fails(void)
{
	int fd = dev_open(O_RDWR);
	void *p;

	CHECK_SYS(fd);
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	CHECK_ERR(mprotect(p, PAGE, PROT_READ | PROT_WRITE), EACCES);
	munmap(p, PAGE);
	close(fd);
	return NULL;
}

static const char *t_mmap_size_offset_einval(void)
{
	int fd = dev_open(O_RDWR);

	CHECK_SYS(fd);
	CHECK_ERR(mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	/* Offset 1 is the GUID page (below); 2 and beyond hold nothing. */
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, (off_t)(2 * PAGE)),
		  EINVAL);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
		       (off_t)(100 * PAGE)), EINVAL);
	CHECK_ERR(mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, (off_t)PAGE),
		  EINVAL);
	close(fd);
	return NULL;
}

/* ---- read ---- */

static const char *t_read_short_einval(void)
{
	int fd = dev_open(O_RDWR | O_NONBLOCK);
	char buf[4];

	CHECK_SYS(fd);
	CHECK_SYS(trigger(fd, 0));	/* data pending: size is the reason */
	for (size_t n = 0; n < 4; n++)
		CHECK_ERR(read(fd, buf, n), EINVAL);
	close(fd);
	return NULL;
}

static const char *t_read_nonblock_eagain(void)
{
	int fd = dev_open(O_RDWR | O_NONBLOCK);
	uint32_t g;

	CHECK_SYS(fd);
	CHECK_ERR(read(fd, &g, sizeof(g)), EAGAIN);
	close(fd);
	return NULL;
}

/*
 * A child blocks in read() on an up-to-date fd; a trigger from this
 * process wakes it with the new counter.
 */
static const char *t_read_blocks_until_trigger(void)
{
	int fd = dev_open(O_RDWR), pfd[2];
	uint32_t got = 0, want;
	pid_t pid;
	int st;

	CHECK_SYS(fd);
	CHECK_SYS(pipe(pfd));
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		uint32_t g;

		if (read(fd, &g, sizeof(g)) != sizeof(g))
			_exit(1);
		_exit(write(pfd[1], &g, sizeof(g)) == sizeof(g) ? 0 : 1);
	}
	sleep_ms(300);
	CHECK(child_running(pid), "read() returned on an up-to-date fd");
	want = (uint32_t)gen_now() + 1;
	CHECK_SYS(trigger(fd, 0));
	st = wait_child(pid, LIMIT_MS);
	CHECK(st == 0, "reader exit status %d", st);
	CHECK(read(pfd[0], &got, sizeof(got)) == sizeof(got), "no value");
	CHECK(got == want, "reader got %u, want %u", got, want);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	return NULL;
}

static const char *t_read_repeats_until_ack(void)
{
	int fd = dev_open(O_RDWR | O_NONBLOCK);
	uint32_t g1 = 0, g2 = 0;

	CHECK_SYS(fd);
	CHECK_SYS(trigger(fd, 0));
	CHECK(read(fd, &g1, sizeof(g1)) == sizeof(g1), "read 1: %s",
	      strerror(errno));
	CHECK(read(fd, &g2, sizeof(g2)) == sizeof(g2), "read 2: %s",
	      strerror(errno));
	CHECK(g1 == g2 && g1 == (uint32_t)gen_now(), "reads %u %u, gen %ld",
	      g1, g2, gen_now());
	CHECK(write(fd, &g1, sizeof(g1)) == sizeof(g1), "ack: %s",
	      strerror(errno));
	CHECK_ERR(read(fd, &g2, sizeof(g2)), EAGAIN);
	close(fd);
	return NULL;
}

/* ---- write ---- */

static const char *t_write_size_enobufs(void)
{
	int fd = dev_open(O_RDWR);
	uint32_t g[2] = { 0, 0 };

	CHECK_SYS(fd);
	CHECK_SYS(trigger(fd, 0));
	g[0] = (uint32_t)gen_now();
	CHECK_ERR(write(fd, g, 0), ENOBUFS);
	CHECK_ERR(write(fd, g, 3), ENOBUFS);
	CHECK_ERR(write(fd, g, 5), ENOBUFS);
	CHECK_ERR(write(fd, g, 8), ENOBUFS);
	CHECK(poll_now(fd) & POLLIN, "a bad write acknowledged");
	close(fd);
	return NULL;
}

static const char *t_write_stale_einval(void)
{
	int fd = dev_open(O_RDWR);
	uint32_t old;

	CHECK_SYS(fd);
	old = (uint32_t)gen_now();
	CHECK_SYS(trigger(fd, 0));
	CHECK_ERR(write(fd, &old, sizeof(old)), EINVAL);
	old += 2;	/* the future is no better */
	CHECK_ERR(write(fd, &old, sizeof(old)), EINVAL);
	CHECK(poll_now(fd) & POLLIN, "a stale write acknowledged");
	close(fd);
	return NULL;
}

static const char *t_write_ack_clears_poll(void)
{
	int fd = dev_open(O_RDWR);
	uint32_t g;

	CHECK_SYS(fd);
	CHECK_SYS(trigger(fd, 0));
	g = (uint32_t)gen_now();
	CHECK(poll_now(fd) == (POLLIN | POLLRDNORM) || poll_now(fd) == POLLIN,
	      "revents %#x before ack", poll_now(fd));
	CHECK(write(fd, &g, sizeof(g)) == sizeof(g), "ack: %s",
	      strerror(errno));
	CHECK(poll_now(fd) == 0, "revents %#x after ack", poll_now(fd));
	/* Acknowledging again is harmless. */
	CHECK(write(fd, &g, sizeof(g)) == sizeof(g), "second ack: %s",
	      strerror(errno));
	close(fd);
	return NULL;
}

/* ---- poll and epoll ---- */

static const char *t_poll_exactly_while_unacked(void)
{
	int fd = dev_open(O_RDWR);
	struct pollfd p = { .events = POLLIN | POLLRDNORM };

	CHECK_SYS(fd);
	p.fd = fd;
	CHECK(poll(&p, 1, 0) == 0, "fresh fd ready: %#x", p.revents);
	CHECK_SYS(trigger(fd, 0));
	CHECK(poll(&p, 1, 0) == 1, "not ready after trigger");
	CHECK(p.revents == (POLLIN | POLLRDNORM), "revents %#x", p.revents);
	CHECK_SYS(ack(fd));
	CHECK(poll(&p, 1, 0) == 0, "ready after ack: %#x", p.revents);
	close(fd);
	return NULL;
}

/* A child blocked in poll() without timeout is woken by a trigger. */
static const char *t_poll_wakes_other_process(void)
{
	int fd = dev_open(O_RDWR);
	pid_t pid;
	int st;

	CHECK_SYS(fd);
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, -1) != 1)
			_exit(1);
		_exit(p.revents & POLLIN ? 0 : 2);
	}
	sleep_ms(300);
	CHECK(child_running(pid), "poll() returned on an up-to-date fd");
	CHECK_SYS(trigger(fd, 0));
	st = wait_child(pid, LIMIT_MS);
	CHECK(st == 0, "poller exit status %d", st);
	close(fd);
	return NULL;
}

static const char *t_epoll(void)
{
	int fd = dev_open(O_RDWR), ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN }, out[2];
	pid_t pid;
	int n, st;

	CHECK_SYS(fd);
	CHECK_SYS(ep);
	ev.data.fd = fd;
	CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	CHECK((n = epoll_wait(ep, out, 2, 0)) == 0, "%d events when acked", n);

	/* Woken while blocked, by another process's trigger. */
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		int tfd = dev_open(O_RDWR);

		sleep_ms(200);
		_exit(tfd >= 0 && trigger(tfd, 0) == 0 ? 0 : 1);
	}
	guard(20);
	n = epoll_wait(ep, out, 2, -1);
	alarm(0);
	st = wait_child(pid, LIMIT_MS);
	CHECK(st == 0, "trigger child status %d", st);
	CHECK(n == 1 && (out[0].events & EPOLLIN) && out[0].data.fd == fd,
	      "epoll_wait %d (%s), events %#x", n, strerror(errno),
	      n > 0 ? out[0].events : 0);
	/* Level-triggered: still ready until acknowledged. */
	CHECK((n = epoll_wait(ep, out, 2, 0)) == 1, "%d events unacked", n);
	CHECK_SYS(ack(fd));
	CHECK((n = epoll_wait(ep, out, 2, 0)) == 0, "%d events after ack", n);
	close(ep);
	close(fd);
	return NULL;
}

/* ---- ioctls ---- */

/* Runs a trigger in a child holding only the capabilities in caps. */
static int trigger_with_caps(uint64_t caps, int *err)
{
	int pfd[2], res[2] = { -1, 0 };
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct __user_cap_header_struct h = {
			.version = _LINUX_CAPABILITY_VERSION_3,
		};
		struct __user_cap_data_struct d[2] = { { 0 } };
		int fd = dev_open(O_RDWR), r[2];

		d[0].effective = d[0].permitted = (uint32_t)caps;
		d[1].effective = d[1].permitted = (uint32_t)(caps >> 32);
		if (fd < 0 || syscall(SYS_capset, &h, d))
			_exit(1);
		r[0] = trigger(fd, 0);
		r[1] = errno;
		_exit(write(pfd[1], r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	if (wait_child(pid, LIMIT_MS) != 0 ||
	    read(pfd[0], res, sizeof(res)) != sizeof(res))
		res[0] = -2;
	close(pfd[0]);
	close(pfd[1]);
	*err = res[1];
	return res[0];
}

static const char *t_trigger_needs_caps(void)
{
	long g = gen_now();
	int r, err;

	r = trigger_with_caps(0, &err);
	CHECK(r == -1 && err == EACCES, "no caps: %d (%s), want EACCES", r,
	      strerror(err));
	CHECK(gen_now() == g, "counter moved without caps: %ld -> %ld", g,
	      gen_now());
	r = trigger_with_caps(1ULL << CAP_CHECKPOINT_RESTORE, &err);
	CHECK(r == 0, "CAP_CHECKPOINT_RESTORE alone: %d (%s)", r,
	      strerror(err));
	r = trigger_with_caps(1ULL << CAP_SYS_ADMIN, &err);
	CHECK(r == 0, "CAP_SYS_ADMIN alone: %d (%s)", r, strerror(err));
	CHECK(gen_now() == g + 2, "counter %ld, want %ld", gen_now(), g + 2);
	return NULL;
}

static const char *t_trigger_min_gen(void)
{
	int fd = dev_open(O_RDWR);
	long g;

	CHECK_SYS(fd);
	g = gen_now();
	CHECK_SYS(trigger(fd, (unsigned long)g + 10));
	CHECK(gen_now() == g + 10, "min_gen g+10: %ld from %ld", gen_now(), g);
	CHECK_SYS(trigger(fd, 0));
	CHECK(gen_now() == g + 11, "min_gen 0: %ld, want %ld", gen_now(),
	      g + 11);
	CHECK_SYS(trigger(fd, (unsigned long)g));
	CHECK(gen_now() == g + 12, "min_gen in the past: %ld, want %ld",
	      gen_now(), g + 12);
	CHECK_SYS(trigger(fd, (unsigned long)g + 13));
	CHECK(gen_now() == g + 13, "min_gen = counter + 1: %ld, want %ld",
	      gen_now(), g + 13);
	/* Not a u32: refused rather than truncated (an extension). */
	if (sizeof(long) > 4)
		CHECK_ERR(trigger(fd, 1UL << 32 | 5), EINVAL);
	close(fd);
	return NULL;
}

static const char *t_unknown_ioctl_enotty(void)
{
	int fd = dev_open(O_RDWR);

	CHECK_SYS(fd);
	CHECK_ERR(ioctl(fd, _IO(SYSGENID_IOCTL, 0), 0), ENOTTY);
	CHECK_ERR(ioctl(fd, _IO(SYSGENID_IOCTL, 6), 0), ENOTTY);
	CHECK_ERR(ioctl(fd, _IOR(SYSGENID_IOCTL, 4, int), 0), ENOTTY);
	CHECK_ERR(ioctl(fd, _IOR(SYSGENID_IOCTL, 1, int), 0), ENOTTY);
	CHECK_ERR(ioctl(fd, FIONREAD, 0), ENOTTY);
	close(fd);
	return NULL;
}

static const char *t_tracking_needs_write(void)
{
	int fd = dev_open(O_RDONLY);
	long w = sysfs_attr("watchers");

	CHECK_SYS(fd);
	CHECK_ERR(ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1), EBADF);
	CHECK_SYS(ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 0));
	CHECK(sysfs_attr("watchers") == w, "watchers %ld -> %ld", w,
	      sysfs_attr("watchers"));
	close(fd);
	return NULL;
}

/*
 * An orchestrator fd (untracked) and two tracked watchers: the wait times
 * out while a watcher is behind and returns once both acknowledged.
 */
static const char *t_wait_watchers(void)
{
	int o = dev_open(O_RDWR), w1 = dev_open(O_RDWR), w2 = dev_open(O_RDWR);
	long base_w = sysfs_attr("watchers");
	pid_t pid;
	long r;
	int st;

	CHECK_SYS(o);
	CHECK_SYS(w1);
	CHECK_SYS(w2);
	CHECK(base_w >= 0, "no watchers attribute");
	CHECK_SYS(ioctl(w1, SYSGENID_SET_WATCHER_TRACKING, 1));
	CHECK_SYS(ioctl(w2, SYSGENID_SET_WATCHER_TRACKING, 1));
	CHECK_SYS(ioctl(w2, SYSGENID_SET_WATCHER_TRACKING, 1));	/* no-op */
	CHECK(sysfs_attr("watchers") == base_w + 2, "watchers %ld, want %ld",
	      sysfs_attr("watchers"), base_w + 2);

	/* Nobody behind: returns at once. */
	CHECK_SYS(ioctl(o, SYSGENID_WAIT_WATCHERS, 1000));

	CHECK_SYS(trigger(o, 0));
	CHECK_SYS(ack(o));
	CHECK(sysfs_attr("outdated_watchers") == 2, "outdated %ld, want 2",
	      sysfs_attr("outdated_watchers"));
	CHECK_ERR(ioctl(o, SYSGENID_WAIT_WATCHERS, 100), ETIME);
	CHECK_SYS(ack(w1));
	CHECK(sysfs_attr("outdated_watchers") == 1, "outdated %ld, want 1",
	      sysfs_attr("outdated_watchers"));
	CHECK_ERR(ioctl(o, SYSGENID_WAIT_WATCHERS, 50), ETIME);

	/* The last watcher acknowledges from another process. */
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		sleep_ms(200);
		_exit(ack(w2) ? 1 : 0);
	}
	guard(20);
	r = ioctl(o, SYSGENID_WAIT_WATCHERS, 0);
	alarm(0);
	st = wait_child(pid, LIMIT_MS);
	CHECK(r == 0, "wait forever: %ld (%s)", r, strerror(errno));
	CHECK(st == 0, "acknowledging child status %d", st);
	CHECK(sysfs_attr("outdated_watchers") == 0, "outdated %ld after acks",
	      sysfs_attr("outdated_watchers"));

	/* Closing or untracking an outdated watcher releases the wait. */
	CHECK_SYS(trigger(o, 0));
	CHECK_SYS(ack(o));
	close(w1);
	CHECK_SYS(ioctl(w2, SYSGENID_SET_WATCHER_TRACKING, 0));
	CHECK_SYS(ioctl(o, SYSGENID_WAIT_WATCHERS, 1000));
	CHECK(sysfs_attr("watchers") == base_w, "watchers %ld, want %ld",
	      sysfs_attr("watchers"), base_w);
	/* Tracking an outdated fd counts it at once. */
	CHECK_SYS(trigger(o, 0));
	CHECK_SYS(ack(o));
	CHECK_SYS(ioctl(w2, SYSGENID_SET_WATCHER_TRACKING, 1));
	CHECK(sysfs_attr("outdated_watchers") == 1, "outdated %ld, want 1",
	      sysfs_attr("outdated_watchers"));
	close(w2);
	CHECK(sysfs_attr("outdated_watchers") == 0, "outdated %ld, want 0",
	      sysfs_attr("outdated_watchers"));
	close(o);
	return NULL;
}

static const char *t_wait_watchers_eintr(void)
{
	int o = dev_open(O_RDWR), w = dev_open(O_RDWR);
	pid_t pid;
	long r;
	int st;

	CHECK_SYS(o);
	CHECK_SYS(w);
	CHECK_SYS(ioctl(w, SYSGENID_SET_WATCHER_TRACKING, 1));
	/* The caller itself is behind: EINTR at once, even untracked. */
	CHECK_SYS(trigger(o, 0));
	CHECK_ERR(ioctl(o, SYSGENID_WAIT_WATCHERS, 10000), EINTR);
	CHECK_ERR(ioctl(o, SYSGENID_WAIT_WATCHERS, 0), EINTR);

	/* A change while waiting makes the caller behind: EINTR. */
	CHECK_SYS(ack(o));
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		int tfd = dev_open(O_RDWR);

		sleep_ms(200);
		_exit(tfd >= 0 && trigger(tfd, 0) == 0 ? 0 : 1);
	}
	guard(20);
	r = ioctl(o, SYSGENID_WAIT_WATCHERS, 0);
	st = errno;
	alarm(0);
	CHECK(wait_child(pid, LIMIT_MS) == 0, "trigger child failed");
	CHECK(r == -1 && st == EINTR, "wait: %ld (%s), want EINTR", r,
	      strerror(st));
	close(w);
	close(o);
	return NULL;
}

/* ---- the GUID page (offset SYSGENID_GUID_PGOFF) and its ioctls ---- */

static bool path_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* The kernel's own vmgenid driver (an ACPI driver in 6.1, platform later). */
static bool kernel_has_vmgenid_driver(void)
{
	return path_exists("/sys/bus/acpi/drivers/vmgenid") ||
	       path_exists("/sys/bus/platform/drivers/vmgenid");
}

#define QEMU_VGID	"/sys/bus/acpi/devices/QEMUVGID:00"

/*
 * Where the harness runs us (QEMU, SeaBIOS, -cpu max), the default module
 * must offer the page: QEMU's layout, and RDRAND for the kernel's reseed.
 */
static bool cpu_has_rng(void)
{
	char line[4096];
	bool yes = false;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return false;
	while (!yes && fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5))
			yes = strstr(line, " rdrand") || strstr(line, " rdseed");
	fclose(f);
	return yes;
}

static const char *t_sysfs_mode(void)
{
	char mode[64], link[512];
	ssize_t n;

	CHECK(sysfs_attr_str("mode", mode, sizeof(mode)), "no mode attribute");
	printf("# mode: %s\n", mode);
	if (kernel_has_vmgenid_driver()) {
		CHECK(!strcmp(mode, "notifier"),
		      "mode \"%s\" where the kernel has a vmgenid driver", mode);
		return NULL;
	}
	CHECK(!strcmp(mode, "acpi"),
	      "mode \"%s\" where the kernel has no vmgenid driver", mode);
	/* The module bound the device itself. */
	n = readlink(QEMU_VGID "/driver", link, sizeof(link) - 1);
	CHECK(n > 0, "%s/driver: %s", QEMU_VGID, strerror(errno));
	link[n] = '\0';
	CHECK(strstr(link, "/sysgenid"), "QEMUVGID:00 bound to %s", link);
	return NULL;
}

/* The load-time log says the mode and the decision on the page. */
static const char *t_load_log(void)
{
	char mode[64], state[256], want[96];
	char *log = klog_since(NULL), *last, *p;
	const char *page_line;

	CHECK(log, "cannot read the kernel log: %s", strerror(errno));
	CHECK(sysfs_attr_str("mode", mode, sizeof(mode)), "no mode");
	CHECK(sysfs_attr_str("guid_page", state, sizeof(state)),
	      "no guid_page");
	/* The last load only. */
	last = NULL;
	for (p = log; (p = strstr(p, "sysgenid: GUID page ")); p++)
		last = p;
	if (!last) {
		free(log);
		FAIL("no \"sysgenid: GUID page\" line in the kernel log");
	}
	page_line = last;
	snprintf(want, sizeof(want), "sysgenid: mode %s: ", mode);
	p = strstr(last, want);
	printf("# %.*s\n", (int)strcspn(page_line, "\n"), page_line);
	if (p)
		printf("# %.*s\n", (int)strcspn(p, "\n"), p);
	if (!p) {
		free(log);
		FAIL("no \"%s\" line after the GUID page line", want);
	}
	if (!strcmp(state, "offered")) {
		p = strstr(page_line, "GUID page offered");
	} else {
		snprintf(want, sizeof(want), "GUID page %.80s", state);
		p = strstr(page_line, want);
	}
	free(log);
	CHECK(p == page_line + strlen("sysgenid: "),
	      "the log line disagrees with guid_page \"%s\"", state);
	return NULL;
}

static const char *t_guid_page_offered(void)
{
	char state[256];
	bool want = cpu_has_rng() && path_exists(QEMU_VGID);

	CHECK(sysfs_attr_str("guid_page", state, sizeof(state)),
	      "no guid_page attribute");
	printf("# guid_page: %s\n", state);
	if (want)
		CHECK(!strcmp(state, "offered"),
		      "QEMU's vmgenid and a CPU RNG, yet \"%s\"", state);
	else if (path_exists(QEMU_VGID))
		/* Auto mode: the page qualifies, the CPU has no RNG. */
		CHECK(!strcmp(state, "not offered: no CPU RNG feeds the kernel's reseed (guid_page=1 offers the page anyway)"),
		      "QEMU's vmgenid without a CPU RNG, yet \"%s\"", state);
	else
		CHECK(!strncmp(state, "not offered: ", 13) && state[13],
		      "no QEMU vmgenid, yet \"%s\"", state);
	return NULL;
}

/* Skips when the page is not offered (t_guid_page_offered says if right). */
#define NEED_GUID_PAGE()						\
	do {								\
		char st_[256];						\
		if (!sysfs_attr_str("guid_page", st_, sizeof(st_)) ||	\
		    strcmp(st_, "offered"))				\
			SKIP("GUID page %s", st_);			\
	} while (0)

static bool guid_page_offered(void)
{
	char st[256];

	return sysfs_attr_str("guid_page", st, sizeof(st)) &&
	       !strcmp(st, "offered");
}

static const char *t_guid_offset_ioctl(void)
{
	int fd = dev_open(O_RDONLY);
	long off;

	CHECK_SYS(fd);
	if (!guid_page_offered()) {
		/* Not offered: neither the offset nor the page. */
		CHECK_ERR(ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0), ENODEV);
		CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
			       (off_t)(SYSGENID_GUID_PGOFF * PAGE)), ENODEV);
		CHECK_ERR(ioctl(fd, SYSGENID_GET_GUID_OFFSET, 1), EINVAL);
		close(fd);
		return NULL;
	}
	off = ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
	CHECK(off == 40, "GET_GUID_OFFSET = %ld (%s), want QEMU's 40", off,
	      off < 0 ? strerror(errno) : "");
	CHECK_ERR(ioctl(fd, SYSGENID_GET_GUID_OFFSET, 1), EINVAL);
	close(fd);
	return NULL;
}

static void hex16(char out[33], const volatile uint8_t *g)
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", g[i]);
}

static const char *t_guid_page_content(void)
{
	int fd = dev_open(O_RDONLY), fd2 = dev_open(O_RDONLY);
	volatile uint8_t *p, *q;
	char hex[33];
	long off;
	size_t nz = 0;

	NEED_GUID_PAGE();
	CHECK_SYS(fd);
	CHECK_SYS(fd2);
	off = ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
	CHECK(off >= 0 && off + 16 <= (long)PAGE, "offset %ld", off);
	/* A read-only fd suffices: the page is for every reader. */
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
		 (off_t)(SYSGENID_GUID_PGOFF * PAGE));
	CHECK(p != MAP_FAILED, "mmap offset 1: %s", strerror(errno));
	for (long i = 0; i < 16; i++)
		nz += p[off + i] != 0;
	CHECK(nz, "the GUID is all zero");
	for (size_t i = 0; i < PAGE; i++)
		CHECK(p[i] == 0 || ((long)i >= off && (long)i < off + 16),
		      "byte %zu of the GUID page is %#x", i, p[i]);
	/* A second mapping, of another fd, shows the same bytes. */
	q = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd2,
		 (off_t)(SYSGENID_GUID_PGOFF * PAGE));
	CHECK(q != MAP_FAILED, "second mmap: %s", strerror(errno));
	CHECK(!memcmp((const void *)p, (const void *)q, PAGE),
	      "two mappings differ");
	hex16(hex, p + off);
	printf("# GUID bytes at offset %ld: %s\n", off, hex);
	/* The counter page is still the counter page. */
	munmap((void *)q, PAGE);
	q = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd2, 0);
	CHECK(q != MAP_FAILED, "mmap offset 0: %s", strerror(errno));
	CHECK(*(volatile uint32_t *)q == (uint32_t)gen_now(),
	      "offset 0 no longer shows the counter");
	munmap((void *)q, PAGE);
	munmap((void *)p, PAGE);
	close(fd2);
	close(fd);
	return NULL;
}

static const char *t_guid_mmap_refusals(void)
{
	off_t off1 = (off_t)(SYSGENID_GUID_PGOFF * PAGE);
	int fd = dev_open(O_RDWR);
	void *p, *r;

	NEED_GUID_PAGE();
	CHECK_SYS(fd);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		       off1), EPERM);
	CHECK_ERR(mmap(NULL, PAGE, PROT_WRITE, MAP_SHARED, fd, off1), EPERM);
	/* Private: copy-on-write could make it writable. */
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, off1), EINVAL);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
		       off1), EPERM);
	CHECK_ERR(mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, off1),
		  EINVAL);
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, off1);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	CHECK_ERR(mprotect(p, PAGE, PROT_READ | PROT_WRITE), EACCES);
	CHECK_ERR(mprotect(p, PAGE, PROT_WRITE), EACCES);
	r = mremap(p, PAGE, 2 * PAGE, MREMAP_MAYMOVE);
	CHECK(r == MAP_FAILED, "mremap grew the GUID mapping");
	munmap(p, PAGE);
	close(fd);
	return NULL;
}

/* With nothing changed, HANDLE_GUID_CHANGE is a no-op, for anybody. */
static const char *t_handle_no_change(void)
{
	int fd = dev_open(O_RDONLY), pfd[2], res[2] = { -1, 0 };
	long g = gen_now();
	pid_t pid;

	CHECK_SYS(fd);
	CHECK(ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0) == 0,
	      "HANDLE_GUID_CHANGE: %s", strerror(errno));
	CHECK(gen_now() == g, "counter moved without a change: %ld -> %ld",
	      g, gen_now());
	CHECK(poll_now(fd) == 0, "fd outdated after a no-op");
	CHECK_ERR(ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 1), EINVAL);

	/* No privilege needed: as nobody, without capabilities. */
	CHECK_SYS(pipe(pfd));
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		int r[2];

		if (setgid(65534) || setuid(65534))
			_exit(1);
		r[0] = (int)ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0);
		r[1] = errno;
		_exit(write(pfd[1], r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	CHECK(wait_child(pid, LIMIT_MS) == 0 &&
	      read(pfd[0], res, sizeof(res)) == sizeof(res),
	      "unprivileged child failed");
	CHECK(res[0] == 0, "HANDLE_GUID_CHANGE as nobody: %d (%s)", res[0],
	      strerror(res[1]));
	CHECK(gen_now() == g, "counter moved: %ld -> %ld", g, gen_now());
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
	return NULL;
}

/* ---- robustness ---- */

static long meminfo_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static int open_map_close(int track)
{
	int fd = dev_open(O_RDWR);
	void *p;

	if (fd < 0)
		return -1;
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return -1;
	}
	if (track && ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1)) {
		munmap(p, PAGE);
		close(fd);
		return -1;
	}
	munmap(p, PAGE);
	return close(fd);
}

/* active_objs of a slab cache in /proc/slabinfo, or -1. */
static long slab_objs(const char *cache)
{
	char line[512], name[64];
	long v = -1, active;
	FILE *f = fopen("/proc/slabinfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %ld", name, &active) == 2 &&
		    !strcmp(name, cache))
			v = active;
	fclose(f);
	return v;
}

struct mem_sample {
	long slab_kb, kmalloc8, filp, free_kb;
};

/*
 * Files are freed after an RCU grace period, so a sample taken right after
 * a burst of close() counts objects that are already on their way out.
 * membarrier(GLOBAL) waits for a grace period; the smallest of a few
 * samples then leaves only what is really held.
 */
/*
 * Under KASAN (the debug kernel) freed objects wait in a quarantine of up
 * to 1/32 of memory, counted in Slab, to catch a use after free: about
 * 1.2 MB of files and VMAs after the 10,000 cycles below. Shrinking a
 * cache empties its part of the quarantine; elsewhere it only returns
 * empty slabs. Needs /sys/kernel/slab (SLUB); no-op without.
 */
static void slab_shrink_all(void)
{
	DIR *d = opendir("/sys/kernel/slab");
	struct dirent *e;
	char path[320];
	int fd;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/slab/%s/shrink",
			 e->d_name);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (write(fd, "1", 1) < 0) {
			/* read-only or absent: nothing to give back */
		}
		close(fd);
	}
	closedir(d);
}

static void mem_settle_sample(struct mem_sample *m)
{
	m->slab_kb = m->kmalloc8 = m->filp = LONG_MAX;
	m->free_kb = 0;
	for (int i = 0; i < 5; i++) {
		long v;

		syscall(SYS_membarrier, 1 /* MEMBARRIER_CMD_GLOBAL */, 0);
		slab_shrink_all();
		sleep_ms(100);
		v = meminfo_kb("Slab");
		if (v < m->slab_kb)
			m->slab_kb = v;
		v = slab_objs("kmalloc-8");
		if (v < m->kmalloc8)
			m->kmalloc8 = v;
		v = slab_objs("filp");
		if (v < m->filp)
			m->filp = v;
		v = meminfo_kb("MemFree");
		if (v > m->free_kb)
			m->free_kb = v;
	}
}

/*
 * 10,000 cycles. What the module allocates per open is one kmalloc-8
 * object; a leak of it, or of the file, would add 10,000 objects to that
 * cache, and a leaked page 40 MB. Measured after a warm-up so that the
 * caches have already grown.
 */
static const char *t_open_mmap_close_no_leak(void)
{
	struct mem_sample a, b;
	long w0 = sysfs_attr("watchers");

	for (int i = 0; i < 500; i++)
		CHECK(open_map_close(i & 1) == 0, "warm-up %d: %s", i,
		      strerror(errno));
	mem_settle_sample(&a);
	for (int i = 0; i < 10000; i++)
		CHECK(open_map_close(i & 1) == 0, "cycle %d: %s", i,
		      strerror(errno));
	mem_settle_sample(&b);
	printf("# 10000 cycles: Slab %+ld kB, kmalloc-8 %+ld, filp %+ld, MemFree %+ld kB\n",
	       b.slab_kb - a.slab_kb, b.kmalloc8 - a.kmalloc8,
	       b.filp - a.filp, b.free_kb - a.free_kb);
	CHECK(sysfs_attr("watchers") == w0, "watchers %ld, was %ld",
	      sysfs_attr("watchers"), w0);
	if (a.kmalloc8 >= 0 && b.kmalloc8 >= 0)
		CHECK(b.kmalloc8 - a.kmalloc8 < 5000, "kmalloc-8 grew by %ld",
		      b.kmalloc8 - a.kmalloc8);
	if (a.filp >= 0 && b.filp >= 0)
		CHECK(b.filp - a.filp < 5000, "filp grew by %ld",
		      b.filp - a.filp);
	CHECK(b.slab_kb - a.slab_kb < 128, "Slab grew by %ld kB",
	      b.slab_kb - a.slab_kb);
	CHECK(a.free_kb - b.free_kb < 4096, "MemFree fell by %ld kB",
	      a.free_kb - b.free_kb);
	return NULL;
}

#define NREADERS 16

static const char *t_sixteen_readers_one_trigger(void)
{
	int ready[2], res[2], fd = dev_open(O_RDWR);
	pid_t pids[NREADERS];
	uint32_t want, got;
	char c;

	CHECK_SYS(fd);
	CHECK_SYS(pipe(ready));
	CHECK_SYS(pipe(res));
	for (int i = 0; i < NREADERS; i++) {
		pids[i] = fork();
		CHECK_SYS(pids[i]);
		if (pids[i] == 0) {
			int rfd = dev_open(O_RDWR);
			uint32_t g;

			if (rfd < 0 || write(ready[1], "r", 1) != 1)
				_exit(1);
			if (read(rfd, &g, sizeof(g)) != sizeof(g))
				_exit(2);
			_exit(write(res[1], &g, sizeof(g)) == sizeof(g) ? 0 : 3);
		}
	}
	guard(20);
	for (int i = 0; i < NREADERS; i++)
		CHECK(read(ready[0], &c, 1) == 1, "reader %d not ready", i);
	alarm(0);
	/* Give them time to block; a late reader returns at once anyway. */
	sleep_ms(200);
	want = (uint32_t)gen_now() + 1;
	CHECK_SYS(trigger(fd, 0));
	for (int i = 0; i < NREADERS; i++) {
		int st = wait_child(pids[i], LIMIT_MS);

		CHECK(st == 0, "reader %d status %d", i, st);
		CHECK(read(res[0], &got, sizeof(got)) == sizeof(got),
		      "no value from reader %d", i);
		CHECK(got == want, "a reader got %u, want %u", got, want);
	}
	close(ready[0]);
	close(ready[1]);
	close(res[0]);
	close(res[1]);
	close(fd);
	return NULL;
}

#define NSTRESS 8

/* One stress worker: open, maybe track, trigger now and then, ack, close. */
static int stress_worker(int seed)
{
	for (int i = 0; i < 400; i++) {
		int fd = dev_open(O_RDWR | O_NONBLOCK);
		uint32_t g;

		if (fd < 0)
			return 1;
		if ((i + seed) % 2 &&
		    ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1))
			return 2;
		if ((i + seed) % 16 == 0 && trigger(fd, 0))
			return 3;
		if (read(fd, &g, sizeof(g)) == sizeof(g) &&
		    write(fd, &g, sizeof(g)) != sizeof(g) && errno != EINVAL)
			return 4;	/* EINVAL: another bump came between */
		if ((i + seed) % 3 == 0)
			poll_now(fd);
		close(fd);
	}
	return 0;
}

/*
 * Openers, trackers, triggers and acks from several processes at once,
 * while this one waits for watchers: nothing may hang, and once all are
 * closed the counts must be back where they were.
 */
static const char *t_concurrent_stress(void)
{
	long w0 = sysfs_attr("watchers");
	int o = dev_open(O_RDWR), waits = 0, left = NSTRESS;
	int status[NSTRESS];
	pid_t pids[NSTRESS];

	CHECK_SYS(o);
	for (int i = 0; i < NSTRESS; i++) {
		pids[i] = fork();
		CHECK_SYS(pids[i]);
		if (pids[i] == 0) {
			/* Gone with the test, should it fail half-way. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			_exit(stress_worker(i));
		}
	}
	guard(120);	/* a hang fails the test (EINTR below), not the run */
	while (left) {
		long r = ioctl(o, SYSGENID_WAIT_WATCHERS, 10);

		if (alarm_fired)
			FAIL("workers still running after 120 s");
		CHECK(r == 0 || errno == ETIME || errno == EINTR,
		      "wait-watchers: %s", strerror(errno));
		if (r < 0 && errno == EINTR) {
			int n = 0;

			/* EINVAL: a bump between read and write; again. */
			while (ack(o) && errno == EINVAL && ++n < 1000)
				;
		}
		waits++;
		for (int i = 0; i < NSTRESS; i++)
			if (pids[i] > 0 &&
			    waitpid(pids[i], &status[i], WNOHANG) == pids[i]) {
				pids[i] = 0;
				left--;
			}
	}
	alarm(0);
	for (int i = 0; i < NSTRESS; i++)
		CHECK(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0,
		      "worker %d status %#x", i, status[i]);
	CHECK(sysfs_attr("watchers") == w0, "watchers %ld, was %ld",
	      sysfs_attr("watchers"), w0);
	CHECK(sysfs_attr("outdated_watchers") == 0, "outdated %ld",
	      sysfs_attr("outdated_watchers"));
	printf("# stress: %d waits while %d workers ran\n", waits, NSTRESS);
	close(o);
	return NULL;
}

static const char *t_unload_refused_while_used(void)
{
	struct stat st;
	int fd, r, e;
	void *p;

	if (!ko_path)
		SKIP("no --ko given");
	fd = dev_open(O_RDWR);
	CHECK_SYS(fd);
	r = mod_unload();
	e = errno;
	CHECK(r == -1 && busy_errno(e), "unload with an open fd: %d (%s)", r,
	      r ? strerror(e) : "unloaded");

	/* A mapping alone, fd closed, pins the module too. */
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	close(fd);
	r = mod_unload();
	e = errno;
	CHECK(r == -1 && busy_errno(e), "unload with a mapping: %d (%s)", r,
	      r ? strerror(e) : "unloaded");
	CHECK(*(volatile uint32_t *)p == (uint32_t)gen_now(), "page stale");
	munmap(p, PAGE);

	CHECK(mod_unload() == 0, "unload when unused: %s", strerror(errno));
	CHECK(stat(dev_path, &st) == -1 && errno == ENOENT,
	      "%s still there after unload", dev_path);
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	CHECK(gen_now() == 0, "counter %ld after reload, want 0", gen_now());
	return NULL;
}

/* The module's guid_page parameter as it reads back, or -100. */
static int guid_page_param(void)
{
	FILE *f = fopen("/sys/module/sysgenid/parameters/guid_page", "re");
	int v = -100;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -100;
		fclose(f);
	}
	return v;
}

/*
 * guid_page=0: the page is never offered (ENODEV at offset 1 and from
 * GET_GUID_OFFSET) and the original ABI is untouched; guid_page=1 offers
 * it where the page qualifies; other values refuse to load.
 */
static const char *t_guid_page_param(void)
{
	off_t off1 = (off_t)(SYSGENID_GUID_PGOFF * PAGE);
	char state[256];
	volatile uint32_t *p;
	int fd, r, e;

	if (!ko_path)
		SKIP("no --ko given");
	CHECK(guid_page_param() == -1, "default guid_page %d, want -1",
	      guid_page_param());
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	CHECK(mod_load_with("guid_page=0") == 0, "load guid_page=0: %s",
	      strerror(errno));
	CHECK(guid_page_param() == 0, "guid_page reads %d", guid_page_param());
	CHECK(sysfs_attr_str("guid_page", state, sizeof(state)) &&
	      !strcmp(state, "not offered: disabled by guid_page=0"),
	      "guid_page=0: attribute \"%s\"", state);
	fd = dev_open(O_RDWR);
	CHECK_SYS(fd);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, off1), ENODEV);
	CHECK_ERR(ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0), ENODEV);
	/* Offset 2 stays EINVAL, whether or not 1 is offered. */
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 2 * off1),
		  EINVAL);
	/* The module still reads the GUID: handling works, a no-op here. */
	if (path_exists(QEMU_VGID))
		CHECK(ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0) == 0,
		      "HANDLE_GUID_CHANGE with guid_page=0: %s",
		      strerror(errno));
	/* The original ABI, unchanged. */
	p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap offset 0: %s", strerror(errno));
	CHECK(p[0] == 0 && gen_now() == 0, "counter %u after reload", p[0]);
	CHECK_SYS(trigger(fd, 0));
	CHECK(p[0] == 1 && poll_now(fd) & POLLIN, "trigger: page %u", p[0]);
	CHECK_SYS(ack(fd));
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0),
		  EPERM);
	munmap((void *)p, PAGE);
	close(fd);

	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	CHECK(mod_load_with("guid_page=1") == 0, "load guid_page=1: %s",
	      strerror(errno));
	CHECK(sysfs_attr_str("guid_page", state, sizeof(state)),
	      "no guid_page");
	if (path_exists(QEMU_VGID))
		CHECK(!strcmp(state, "offered"), "guid_page=1: \"%s\"", state);
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));

	r = mod_load_with("guid_page=2");
	e = errno;
	CHECK(r == -1 && e == EINVAL, "load guid_page=2: %d (%s), want EINVAL",
	      r, r ? strerror(e) : "loaded");
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	CHECK(guid_page_param() == -1, "guid_page %d after reload",
	      guid_page_param());
	return NULL;
}

/*
 * Loaded where "/dev/urandom" is not the kernel's random device (here a
 * private /dev whose urandom is the null device), the module cannot
 * reseed the kernel RNG. Mode acpi: nothing could then handle a change,
 * so it refuses to load (ENODEV, a log line). Mode notifier: the kernel
 * reseeds, so it loads, but reads no GUID: no page, HANDLE_GUID_CHANGE
 * ENODEV, the counter ABI intact.
 */
static const char *t_no_random_device(void)
{
	static const char why[] = "/dev/urandom is not the random device";
	char state[256], want[160];
	int pfd[2], res[2] = { -2, 0 }, fd;
	char *log;
	pid_t pid;

	if (!ko_path)
		SKIP("no --ko given");
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	CHECK_SYS(pipe(pfd));
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		int r[2] = { -3, 0 };

		if (!unshare(CLONE_NEWNS) &&
		    !mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) &&
		    !mount("tmpfs", "/dev", "tmpfs", 0, NULL) &&
		    !mknod("/dev/urandom", S_IFCHR | 0666, makedev(1, 3))) {
			r[0] = mod_load();
			r[1] = errno;
		} else {
			r[1] = errno;
		}
		_exit(write(pfd[1], r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	CHECK(wait_child(pid, LIMIT_MS) == 0 &&
	      read(pfd[0], res, sizeof(res)) == sizeof(res),
	      "the loading child failed");
	close(pfd[0]);
	close(pfd[1]);
	CHECK(res[0] != -3, "cannot set up a private /dev: %s",
	      strerror(res[1]));

	if (!kernel_has_vmgenid_driver()) {
		CHECK(res[0] == -1 && res[1] == ENODEV,
		      "mode acpi without a random device: load %d (%s), want ENODEV",
		      res[0], res[0] ? strerror(res[1]) : "loaded");
		snprintf(want, sizeof(want),
			 "no vmgenid driver is bound and the module cannot reseed the kernel RNG (%s); not loading",
			 why);
		log = klog_since(NULL);
		CHECK(log, "cannot read the kernel log");
		fd = strstr(log, want) != NULL;
		free(log);
		CHECK(fd, "no \"%s\" in the kernel log", want);
		CHECK(access(dev_path, F_OK), "%s exists", dev_path);
	} else {
		CHECK(res[0] == 0, "mode notifier without a random device: load: %s",
		      strerror(res[1]));
		snprintf(want, sizeof(want), "not offered: %s", why);
		CHECK(sysfs_attr_str("guid_page", state, sizeof(state)) &&
		      !strcmp(state, want), "guid_page \"%s\", want \"%s\"",
		      state, want);
		fd = dev_open(O_RDWR);
		CHECK_SYS(fd);
		CHECK_ERR(ioctl(fd, SYSGENID_HANDLE_GUID_CHANGE, 0), ENODEV);
		CHECK_ERR(ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0), ENODEV);
		CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
			       (off_t)(SYSGENID_GUID_PGOFF * PAGE)), ENODEV);
		CHECK_SYS(trigger(fd, 0));
		CHECK(gen_now() == 1, "counter %ld after a trigger", gen_now());
		close(fd);
		CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	}
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	CHECK(sysfs_attr_str("guid_page", state, sizeof(state)),
	      "no guid_page after reload");
	return NULL;
}

static const char *t_load_unload_100(void)
{
	/*
	 * What a broken module leaves in the log. Not "soft lockup" or RCU
	 * stall reports: under an overloaded TCG host the guest clock jumps
	 * and the watchdogs fire on their own; a real hang in the module
	 * fails the test by its deadline instead.
	 */
	static const char *const bad[] = {
		"WARNING:", "BUG: kernel", "BUG: unable", "BUG: Bad",
		"BUG: sleeping", "BUG: scheduling", "BUG: KASAN", "Oops",
		"general protection", "refcount_t", "list_add corruption",
		"list_del corruption", "sysfs: cannot create duplicate",
		"kernel BUG", NULL,
	};
	char marker[64];
	const char *why;

	if (!ko_path)
		SKIP("no --ko given");
	for (int i = 0; i < 100; i++) {
		int fd;
		void *p;

		/* Checked every 10 cycles, before the ring buffer wraps. */
		if (i % 10 == 0) {
			snprintf(marker, sizeof(marker),
				 "sysgenid_abi_test: cycle %d of %ld", i,
				 (long)getpid());
			CHECK(kmsg_mark(marker) == 0,
			      "cannot write to /dev/kmsg: %s", strerror(errno));
		}
		CHECK(mod_unload() == 0, "unload %d: %s", i, strerror(errno));
		CHECK(mod_load() == 0, "load %d: %s", i, strerror(errno));
		fd = dev_open(O_RDWR);
		CHECK(fd >= 0, "open after load %d: %s", i, strerror(errno));
		p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
		CHECK(p != MAP_FAILED, "mmap %d: %s", i, strerror(errno));
		CHECK(ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1) == 0 &&
		      trigger(fd, 0) == 0 && ack(fd) == 0,
		      "use after load %d: %s", i, strerror(errno));
		munmap(p, PAGE);
		close(fd);
		if (i % 10 == 9) {
			why = klog_clean_since(marker, bad);
			if (why)
				return why;
		}
	}
	return NULL;
}

/* No WARN or oops since boot: the taint flags would say so. */
static const char *t_kernel_not_tainted_by_warn(void)
{
	FILE *f = fopen("/proc/sys/kernel/tainted", "re");
	unsigned long t = 0;

	CHECK(f, "no /proc/sys/kernel/tainted");
	CHECK(fscanf(f, "%lu", &t) == 1, "unreadable taint");
	fclose(f);
	/* 7 = D (oops), 9 = W (warning); O and E are expected here. */
	CHECK(!(t & (1UL << 7 | 1UL << 9)), "kernel tainted %#lx", t);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct guest_test tests[] = {
		{ "mmap read-only shows the counter", t_mmap_shows_counter },
		{ "mmap PROT_WRITE is EPERM", t_mmap_write_eperm },
		{ "mprotect to writable fails", t_mprotect_write_fails },
		{ "mmap over a page or at an offset past 1 is EINVAL",
		  t_mmap_size_offset_einval },
		{ "read under 4 bytes is EINVAL", t_read_short_einval },
		{ "read O_NONBLOCK when acked is EAGAIN",
		  t_read_nonblock_eagain },
		{ "read blocks until another process triggers",
		  t_read_blocks_until_trigger },
		{ "read returns the counter until acked",
		  t_read_repeats_until_ack },
		{ "write of the wrong size is ENOBUFS", t_write_size_enobufs },
		{ "write of a stale value is EINVAL", t_write_stale_einval },
		{ "write of the counter acks and clears poll",
		  t_write_ack_clears_poll },
		{ "poll is POLLIN exactly while unacked",
		  t_poll_exactly_while_unacked },
		{ "poll blocked in another process wakes",
		  t_poll_wakes_other_process },
		{ "epoll is EPOLLIN exactly while unacked", t_epoll },
		{ "trigger needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN",
		  t_trigger_needs_caps },
		{ "trigger sets max(min_gen, counter + 1)", t_trigger_min_gen },
		{ "unknown ioctl is ENOTTY", t_unknown_ioctl_enotty },
		{ "sysfs mode: notifier with a kernel vmgenid driver, else acpi and bound",
		  t_sysfs_mode },
		{ "sysfs guid_page: offered with QEMU's vmgenid and a CPU RNG, else why not",
		  t_guid_page_offered },
		{ "the load log names the mode and the GUID page decision",
		  t_load_log },
		{ "GET_GUID_OFFSET is QEMU's 40 (not offered: it and mmap ENODEV); nonzero arg EINVAL",
		  t_guid_offset_ioctl },
		{ "mmap offset 1: 16 GUID bytes, the rest of the page zero",
		  t_guid_page_content },
		{ "mmap offset 1: writable EPERM, private EINVAL, no mprotect/mremap",
		  t_guid_mmap_refusals },
		{ "HANDLE_GUID_CHANGE without a change: 0, no bump, even as nobody",
		  t_handle_no_change },
		{ "tracking needs a writable fd", t_tracking_needs_write },
		{ "wait-watchers times out, then returns when all acked",
		  t_wait_watchers },
		{ "wait-watchers is EINTR when the caller is outdated",
		  t_wait_watchers_eintr },
		{ "10000 open/mmap/close cycles leak nothing",
		  t_open_mmap_close_no_leak },
		{ "16 blocked readers woken by one trigger",
		  t_sixteen_readers_one_trigger },
		{ "concurrent open/track/trigger/ack/close from 8 processes",
		  t_concurrent_stress },
		{ "unload refused while an fd or mapping is open",
		  t_unload_refused_while_used },
		{ "guid_page=0 offers nothing (ENODEV), =1 offers, =2 refused",
		  t_guid_page_param },
		{ "no random device at load: mode acpi refuses (ENODEV), notifier reads no GUID",
		  t_no_random_device },
		{ "100 load/unload cycles, nothing in the kernel log",
		  t_load_unload_100 },
		{ "kernel has no WARN or oops taint",
		  t_kernel_not_tainted_by_warn },
	};
	const char *phase = "abi";

	if (argc == 3 && argv[1][0] != '-') {
		ko_path = argv[1];
		phase = argv[2];
	} else {
		for (int i = 1; i < argc; i++) {
			if (!strcmp(argv[i], "--ko") && i + 1 < argc) {
				ko_path = argv[++i];
			} else if (!strcmp(argv[i], "--dev") && i + 1 < argc) {
				dev_path = argv[++i];
			} else {
				fprintf(stderr,
					"usage: %s [--ko sysgenid.ko] [--dev PATH] | KO PHASE\n",
					argv[0]);
				return 2;
			}
		}
	}
	return guest_run_tests("sysgenid ABI", phase, tests,
			       sizeof(tests) / sizeof(tests[0]));
}
