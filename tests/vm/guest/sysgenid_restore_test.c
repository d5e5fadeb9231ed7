/* SPDX-License-Identifier: MIT */
/*
 * A real VM generation change, seen through /dev/sysgenid: waiters blocked
 * before a snapshot must wake in the restored clone, once, with the new
 * counter.
 *
 * Usage (as root in the guest):
 *	sysgenid_restore_test before-save   [--dir DIR]
 *	sysgenid_restore_test after-restore [--dir DIR] [--timeout S]
 *	sysgenid_restore_test across        [--dir DIR] [--timeout S]
 *	sysgenid_restore_test KO PHASE	(the VM harness's convention: PHASE
 *		before-save or after-restore; "abi" skips)
 *
 * before-save records the counter and leaves background waiters blocked
 * (readers, pollers holding a pre-snapshot mapping, an epoll waiter, a
 * tracked watcher), then prints SYSGENID-READY-FOR-SAVE and exits.
 * after-restore waits for those waiters and checks: the counter moved
 * exactly once, every waiter woke with the new value, the pre-snapshot
 * mapping shows it, the tracked watcher acknowledged (wait-watchers
 * returns), and the kernel logged its reseed and our notifier.
 * across does both in one process, waiting for the change in between,
 * for harnesses that cannot start a command in the restored guest.
 *
 * DIR (default /tmp/sysgenid-restore, carried by the snapshot) holds the
 * state between phases.
 * --timeout (default 60 s, or $SYSGENID_RESTORE_TIMEOUT) only turns a
 * missing wake-up into a failure.
 * Output: TAP-like lines and "P passed, F failed" per phase (guest_tap.h);
 * exit 0 when nothing failed, 1 otherwise, 77 when there is no device.
 *
 * Build: cc -static -O2 -I driver/uapi -o sysgenid_restore_test \
 *	tests/vm/guest/sysgenid_restore_test.c
 */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "guest_tap.h"
#include "guest_util.h"

#define NREADERS	4
#define NPOLLERS	2

enum kind { READER, POLLER, EPOLLER, TRACKED, NKINDS };
static const char *const kind_name[NKINDS] = {
	"reader", "poller", "epoller", "tracked",
};
static const int kind_count[NKINDS] = { NREADERS, NPOLLERS, 1, 1 };

static const char *dir = "/tmp/sysgenid-restore";
static long timeout_s = 60;
static uint32_t gen_before;

static void result_path(char *buf, size_t len, enum kind k, int i)
{
	snprintf(buf, len, "%s/%s.%d", dir, kind_name[k], i);
}

/* Written whole, then renamed, so a reader never sees half a result. */
static void put_result(enum kind k, int i, uint32_t gen, unsigned int extra)
{
	char path[512], tmp[520];
	FILE *f;

	result_path(path, sizeof(path), k, i);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		_exit(3);
	fprintf(f, "%u %u\n", gen, extra);
	if (fclose(f) || rename(tmp, path))
		_exit(3);
}

static int get_result(enum kind k, int i, uint32_t *gen, unsigned int *extra)
{
	char path[512];
	FILE *f;
	int n;

	result_path(path, sizeof(path), k, i);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fscanf(f, "%u %u", gen, extra);
	fclose(f);
	return n == 2 ? 0 : -1;
}

/*
 * One background waiter. It opens its own fd (so it is up to date at the
 * recorded generation), says it is ready, blocks, and records what it saw.
 */
static void waiter(enum kind k, int i, int ready_fd)
{
	int fd = dev_open(O_RDWR);
	volatile uint32_t *page;
	uint32_t g = 0;
	unsigned int extra = 0;

	if (fd < 0)
		_exit(1);
	page = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ,
		    MAP_SHARED, fd, 0);
	if (page == MAP_FAILED)
		_exit(1);
	if (k == TRACKED && ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1))
		_exit(1);
	if (write(ready_fd, "r", 1) != 1)
		_exit(1);

	switch (k) {
	case READER:
		if (read(fd, &g, sizeof(g)) != sizeof(g))
			_exit(2);
		break;
	case POLLER:
	case TRACKED: {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, -1) != 1)
			_exit(2);
		extra = (unsigned int)p.revents;
		/* What the pre-snapshot mapping shows once woken. */
		g = page[0];
		if (k == TRACKED && ack(fd))
			_exit(2);
		break;
	}
	case EPOLLER: {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };

		if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) ||
		    epoll_wait(ep, &ev, 1, -1) != 1)
			_exit(2);
		extra = ev.events;
		if (read(fd, &g, sizeof(g)) != sizeof(g))
			_exit(2);
		break;
	}
	default:
		_exit(1);
	}
	put_result(k, i, g, extra);
	_exit(0);
}

/* The counter that before-save recorded (each test runs in its own child). */
static int load_gen_before(void)
{
	char path[512];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "%s/generation", dir);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fscanf(f, "%u", &gen_before);
	fclose(f);
	return n == 1 ? 0 : -1;
}

static const char *t_waiters_blocked(void)
{
	char path[512];
	int ready[2], n = 0;
	FILE *f;
	char c;

	mkdir(dir, 0700);
	for (int k = 0; k < NKINDS; k++)
		for (int i = 0; i < kind_count[k]; i++) {
			result_path(path, sizeof(path), (enum kind)k, i);
			unlink(path);
		}
	gen_before = (uint32_t)gen_now();
	CHECK(gen_now() >= 0, "no generation attribute");
	snprintf(path, sizeof(path), "%s/generation", dir);
	f = fopen(path, "we");
	CHECK(f, "%s: %s", path, strerror(errno));
	fprintf(f, "%u\n", gen_before);
	CHECK(fclose(f) == 0, "%s: %s", path, strerror(errno));

	CHECK_SYS(pipe(ready));
	for (int k = 0; k < NKINDS; k++)
		for (int i = 0; i < kind_count[k]; i++) {
			pid_t pid = fork();

			CHECK_SYS(pid);
			if (pid == 0) {
				/* Outlive this process; not in its session. */
				setsid();
				close(ready[0]);
				waiter((enum kind)k, i, ready[1]);
			}
			n++;
		}
	close(ready[1]);
	for (int i = 0; i < n; i++)
		CHECK(read(ready[0], &c, 1) == 1, "only %d of %d waiters", i,
		      n);
	close(ready[0]);
	/* None may have woken: nothing changed yet. */
	sleep_ms(200);
	for (int k = 0; k < NKINDS; k++)
		for (int i = 0; i < kind_count[k]; i++) {
			uint32_t g;
			unsigned int x;

			CHECK(get_result((enum kind)k, i, &g, &x) < 0,
			      "%s %d woke before any change (gen %u)",
			      kind_name[k], i, g);
		}
	CHECK((uint32_t)gen_now() == gen_before, "counter moved: %u -> %ld",
	      gen_before, gen_now());
	printf("# generation %u, %d waiters blocked\n", gen_before, n);
	return NULL;
}

static void before_save(void)
{
	tap_run("before-save: waiters blocked at the recorded generation",
		t_waiters_blocked);
	printf("SYSGENID-READY-FOR-SAVE\n");
}

/* Waits until every waiter has written its result, or the deadline. */
static int wait_results(void)
{
	for (long waited = 0; waited <= timeout_s * 1000; waited += 50) {
		int missing = 0;

		for (int k = 0; k < NKINDS; k++)
			for (int i = 0; i < kind_count[k]; i++) {
				uint32_t g;
				unsigned int x;

				missing += get_result((enum kind)k, i, &g,
						      &x) < 0;
			}
		if (!missing)
			return 0;
		sleep_ms(50);
	}
	return -1;
}

static const char *t_counter_once(void)
{
	volatile uint32_t *page;
	int fd;

	CHECK(load_gen_before() == 0, "no state from before-save in %s: %s",
	      dir, strerror(errno));
	CHECK(wait_results() == 0, "not every waiter woke within %ld s",
	      timeout_s);
	fd = dev_open(O_RDONLY);
	CHECK_SYS(fd);
	page = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ,
		    MAP_SHARED, fd, 0);
	CHECK(page != MAP_FAILED, "mmap: %s", strerror(errno));
	CHECK(page[0] == gen_before + 1, "counter %u, want %u (%u + 1)",
	      page[0], gen_before + 1, gen_before);
	CHECK(gen_now() == (long)page[0], "sysfs %ld, page %u", gen_now(),
	      page[0]);
	munmap((void *)page, (size_t)sysconf(_SC_PAGESIZE));
	close(fd);
	return NULL;
}

static const char *t_waiters_woke(void)
{
	uint32_t want;

	CHECK(load_gen_before() == 0, "no state from before-save");
	want = gen_before + 1;

	for (int k = 0; k < NKINDS; k++)
		for (int i = 0; i < kind_count[k]; i++) {
			uint32_t g = 0;
			unsigned int x = 0;

			CHECK(get_result((enum kind)k, i, &g, &x) == 0,
			      "%s %d never woke", kind_name[k], i);
			CHECK(g == want, "%s %d saw %u, want %u",
			      kind_name[k], i, g, want);
			if (k == POLLER || k == TRACKED)
				CHECK(x & POLLIN, "%s %d revents %#x",
				      kind_name[k], i, x);
			if (k == EPOLLER)
				CHECK(x & EPOLLIN, "epoll events %#x", x);
		}
	return NULL;
}

static const char *t_tracked_released(void)
{
	int fd = dev_open(O_RDWR);
	long r;

	CHECK_SYS(fd);
	/* Opened after the change: up to date, so it may wait. */
	r = ioctl(fd, SYSGENID_WAIT_WATCHERS, 10000);
	CHECK(r == 0, "wait-watchers: %ld (%s)", r, strerror(errno));
	CHECK(sysfs_attr("outdated_watchers") == 0, "outdated_watchers %ld",
	      sysfs_attr("outdated_watchers"));
	close(fd);
	return NULL;
}

static const char *t_kernel_log(void)
{
	static const char *const reseed[] = {
		"crng reseeded due to virtual machine fork", NULL,
	};
	char ours[64];
	const char *const mine[] = { ours, NULL };
	char *log = klog_since(NULL);

	CHECK(log, "cannot read the kernel log: %s", strerror(errno));
	CHECK(load_gen_before() == 0, "no state from before-save");
	snprintf(ours, sizeof(ours), "sysgenid: VM fork: generation %u",
		 gen_before + 1);
	if (!klog_find_any(log, reseed)) {
		free(log);
		FAIL("no \"%s\" in the kernel log", reseed[0]);
	}
	if (!klog_find_any(log, mine)) {
		free(log);
		FAIL("no \"%s\" in the kernel log", ours);
	}
	free(log);
	return NULL;
}

static void after_restore(void)
{
	tap_run("after-restore: counter advanced exactly once", t_counter_once);
	tap_run("after-restore: every blocked waiter woke with it",
		t_waiters_woke);
	tap_run("after-restore: tracked watcher acked, wait-watchers returns",
		t_tracked_released);
	tap_run("after-restore: kernel logged the reseed and the notifier",
		t_kernel_log);
}

/* Blocks (without limit: the snapshot comes when it comes) for a change. */
static const char *t_change_seen(void)
{
	struct pollfd p = { .events = POLLIN };
	int fd = dev_open(O_RDONLY);

	CHECK_SYS(fd);
	CHECK(load_gen_before() == 0, "no state from before-save");
	p.fd = fd;
	/* An fd opened after a change is up to date with it: look first. */
	if ((uint32_t)gen_now() == gen_before)
		CHECK(poll(&p, 1, -1) == 1, "poll: %s", strerror(errno));
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *env = getenv("SYSGENID_RESTORE_TIMEOUT");
	int fd, first_opt = 2;

	if (env)
		timeout_s = strtol(env, NULL, 10);

	/* The harness runs every program as PROG KO PHASE. */
	if (argc == 3 && (!strcmp(argv[2], "before-save") ||
			  !strcmp(argv[2], "after-restore") ||
			  !strcmp(argv[2], "abi"))) {
		mode = argv[2];
		first_opt = argc;
	}
	if (!strcmp(mode, "abi")) {
		setvbuf(stdout, NULL, _IOLBF, 0);
		printf("ok 1 - VM restore # SKIP runs in phases before-save and after-restore\n");
		return tap_done();
	}
	for (int i = first_opt; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			timeout_s = strtol(argv[++i], NULL, 10);
		} else {
			mode = "";
			break;
		}
	}
	if (strcmp(mode, "before-save") && strcmp(mode, "after-restore") &&
	    strcmp(mode, "across")) {
		fprintf(stderr,
			"usage: %s before-save|after-restore|across [--dir DIR] [--timeout S]\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = dev_open(O_RDONLY);
	if (fd < 0) {
		printf("# SKIP: cannot open %s: %s\n", dev_path,
		       strerror(errno));
		return 77;
	}
	close(fd);

	if (strcmp(mode, "after-restore"))
		before_save();
	if (!strcmp(mode, "across") && !tap_fail)
		tap_run("across: a generation change arrived", t_change_seen);
	if (strcmp(mode, "before-save") && !tap_fail)
		after_restore();
	return tap_done();
}
