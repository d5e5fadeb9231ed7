// SPDX-License-Identifier: MIT
/*
 * Module unload against every kind of user the module can have, run as
 * PROG KO PHASE in the test guest (phase abi). Written for the debug
 * kernel (lockdep, KASAN, kmemleak: the harness fails the run on any
 * report, and scans for leaks after this program and after the module's
 * final unload), it also runs on the production kernels.
 *
 * Each user pins the module: an open fd, a blocked poll() and a blocked
 * read() in other processes, a process blocked in WAIT_WATCHERS, a
 * mapping of the counter page and of the GUID page (where offered) after
 * their fd is closed. Unload is refused (EBUSY/EWOULDBLOCK) until the last
 * is gone, then succeeds and the module loads again; a process killed with
 * all of these open leaves nothing that pins the module. The ABI test
 * covers plain load/unload cycles; this one releases the users in every
 * order the kernel's release paths can see.
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "guest_util.h"

#define PAGE 4096
#define LIMIT_MS 60000
#define CYCLES 10

/* NULL if unload is refused as busy, else why not. */
static const char *unload_refused(const char *with)
{
	static char why[160];
	int r = mod_unload(), e = errno;

	if (r == -1 && busy_errno(e))
		return NULL;
	snprintf(why, sizeof(why), "unload with %s: %d (%s)", with, r,
		 r ? strerror(e) : "unloaded");
	if (r == 0)
		mod_load();
	return why;
}

static bool guid_page_offered(void)
{
	int fd = dev_open(O_RDONLY);
	long off;

	if (fd < 0)
		return false;
	off = ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
	close(fd);
	return off >= 0;
}

/*
 * A child that blocks in the kernel on its own fd until killed: 'p' in
 * poll(), 'r' in read(), 'w' in WAIT_WATCHERS (behind an outdated watcher
 * that it keeps). It writes one byte to ready just before blocking.
 */
static pid_t blocked_child(char how, int ready)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/*
	 * Only its own users: not the fds it inherited (the mappings are
	 * MADV_DONTFORK), or the parent could not release the module alone.
	 */
	for (int f = 3; f < 256; f++)
		if (f != ready)
			close(f);
	int fd = dev_open(O_RDWR), w = -1;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint32_t g;

	/* a new fd starts acknowledged: poll() and read() block */
	if (fd < 0)
		_exit(1);
	if (how == 'w') {
		w = dev_open(O_RDWR);
		if (w < 0 || ioctl(w, SYSGENID_SET_WATCHER_TRACKING, 1) ||
		    trigger(fd, 0) || ack(fd))
			_exit(1);
	}
	if (write(ready, "x", 1) != 1)
		_exit(1);
	switch (how) {
	case 'p':
		poll(&p, 1, -1);
		break;
	case 'r':
		if (read(fd, &g, sizeof(g)) < 0)
			_exit(1);
		break;
	case 'w':
		ioctl(fd, SYSGENID_WAIT_WATCHERS, 0);
		break;
	}
	_exit(2);	/* woken: not what the test wanted */
}

static int wait_ready(int ready)
{
	struct pollfd p = { .fd = ready, .events = POLLIN };
	char c;

	if (poll(&p, 1, LIMIT_MS) != 1 || read(ready, &c, 1) != 1)
		return -1;
	sleep_ms(100);	/* from the write to the syscall it blocks in */
	return 0;
}

static int kill_child(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : -1;
}

/*
 * Every kind of user at once; released one by one, unload refused until
 * the last goes. The order of release is rotated by round so that each
 * kind is the last one in some round.
 */
static const char *users_released_in_turn(int round)
{
	enum { FD, POLLER, READER, WAITER, COUNTER_MAP, GUID_MAP, NKINDS };
	static const char *const names[NKINDS] = {
		"an open tracked fd", "a blocked poll()", "a blocked read()",
		"a blocked WAIT_WATCHERS", "a mapping of the counter page",
		"a mapping of the GUID page",
	};
	bool guid = guid_page_offered();
	int fd, pfd[2], order[NKINDS], n = 0;
	pid_t kids[NKINDS] = { 0 };
	void *maps[NKINDS] = { NULL };
	const char *why;
	struct stat st;

	CHECK_SYS(pipe(pfd));
	fd = dev_open(O_RDWR);
	CHECK_SYS(fd);
	CHECK_SYS(ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1));
	maps[COUNTER_MAP] = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(maps[COUNTER_MAP] != MAP_FAILED, "mmap counter: %s",
	      strerror(errno));
	CHECK_SYS(madvise(maps[COUNTER_MAP], PAGE, MADV_DONTFORK));
	if (guid) {
		maps[GUID_MAP] = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
				      (off_t)(SYSGENID_GUID_PGOFF * PAGE));
		CHECK(maps[GUID_MAP] != MAP_FAILED, "mmap GUID page: %s",
		      strerror(errno));
		CHECK_SYS(madvise(maps[GUID_MAP], PAGE, MADV_DONTFORK));
	}
	/* the waiter first: its trigger would wake the others */
	kids[WAITER] = blocked_child('w', pfd[1]);
	CHECK(kids[WAITER] > 0 && !wait_ready(pfd[0]), "waiter");
	kids[POLLER] = blocked_child('p', pfd[1]);
	CHECK(kids[POLLER] > 0 && !wait_ready(pfd[0]), "poller");
	kids[READER] = blocked_child('r', pfd[1]);
	CHECK(kids[READER] > 0 && !wait_ready(pfd[0]), "reader");

	for (int i = 0; i < NKINDS; i++) {
		int k = (i + round) % NKINDS;

		if (k == GUID_MAP && !guid)
			continue;
		order[n++] = k;
	}
	for (int i = 0; i < n; i++) {
		int k = order[i];

		why = unload_refused(names[k]);
		if (why)
			return why;
		switch (k) {
		case FD:
			close(fd);
			break;
		case POLLER:
		case READER:
		case WAITER:
			CHECK(kill_child(kids[k]) == 0,
			      "%s was not blocked (it exited)", names[k]);
			break;
		default:
			/* the mapping still reads the counter */
			if (k == COUNTER_MAP)
				CHECK(*(volatile uint32_t *)maps[k] ==
				      (uint32_t)gen_now(),
				      "counter page stale");
			CHECK_SYS(munmap(maps[k], PAGE));
			break;
		}
	}
	CHECK(mod_unload() == 0, "unload once all users are gone: %s",
	      strerror(errno));
	CHECK(stat(dev_path, &st) == -1 && errno == ENOENT,
	      "%s still there after unload", dev_path);
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	close(pfd[0]);
	close(pfd[1]);
	return NULL;
}

static const char *t_users_released_in_turn(void)
{
	if (!ko_path)
		SKIP("no module path given");
	for (int round = 0; round < CYCLES; round++) {
		const char *why = users_released_in_turn(round);

		if (why) {
			static char msg[sizeof(tap_why) + 32];

			snprintf(msg, sizeof(msg), "round %d: %s", round,
				 why);
			return msg;
		}
	}
	return NULL;
}

/*
 * A process killed while it holds fds (tracked, outdated), both mappings
 * and a blocked reader: its exit releases everything, and unload works
 * at once (files and mappings go before the parent can reap it).
 */
static const char *t_killed_user_pins_nothing(void)
{
	bool guid = guid_page_offered();

	if (!ko_path)
		SKIP("no module path given");
	for (int i = 0; i < CYCLES; i++) {
		int pfd[2], t;
		pid_t pid, grandchild = 0;

		CHECK_SYS(pipe(pfd));
		pid = fork();
		CHECK_SYS(pid);
		if (pid == 0) {
			int fds[4], gp[2];
			void *m1, *m2 = NULL;
			pid_t g;

			for (int j = 0; j < 4; j++) {
				fds[j] = dev_open(O_RDWR);
				if (fds[j] < 0 ||
				    ioctl(fds[j],
					  SYSGENID_SET_WATCHER_TRACKING, 1))
					_exit(1);
			}
			/* three outdated watchers, one up to date */
			m1 = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fds[1], 0);
			if (guid)
				m2 = mmap(NULL, PAGE, PROT_READ, MAP_SHARED,
					  fds[2],
					  (off_t)(SYSGENID_GUID_PGOFF * PAGE));
			if (trigger(fds[0], 0) || ack(fds[0]) ||
			    m1 == MAP_FAILED || m2 == MAP_FAILED ||
			    madvise(m1, PAGE, MADV_DONTFORK) ||
			    (m2 && madvise(m2, PAGE, MADV_DONTFORK)))
				_exit(1);
			/* a grandchild blocked in read(); then its pid */
			if (pipe(gp))
				_exit(1);
			g = blocked_child('r', gp[1]);
			if (g < 0 || wait_ready(gp[0]) ||
			    write(pfd[1], &g, sizeof(g)) != sizeof(g))
				_exit(1);
			pause();
			_exit(2);
		}
		CHECK(poll(&(struct pollfd){ .fd = pfd[0], .events = POLLIN },
			   1, LIMIT_MS) == 1 &&
		      read(pfd[0], &grandchild, sizeof(grandchild)) ==
		      sizeof(grandchild) && grandchild > 0,
		      "the user did not set up (cycle %d)", i);
		CHECK(sysfs_attr("outdated_watchers") == 3,
		      "outdated %ld, want 3", sysfs_attr("outdated_watchers"));
		CHECK(unload_refused("a live user") == NULL,
		      "cycle %d: unload while the user lives", i);
		CHECK(kill_child(pid) == 0, "cycle %d: the user exited", i);
		CHECK(sysfs_attr("outdated_watchers") == 0,
		      "cycle %d: outdated %ld after the user died", i,
		      sysfs_attr("outdated_watchers"));
		/* the grandchild, blocked in read(), still holds its fd */
		CHECK(unload_refused("the grandchild's fd") == NULL,
		      "cycle %d: unload while the grandchild reads", i);
		CHECK_SYS(kill(grandchild, SIGKILL));
		close(pfd[0]);
		close(pfd[1]);
		/* an orphan: it exits on its own time, nobody reaps it here */
		for (t = 0; t < 500 && mod_unload(); t++)
			sleep_ms(20);
		CHECK(access(dev_path, F_OK) == -1,
		      "cycle %d: unload after the users died: %s", i,
		      strerror(errno));
		CHECK(mod_load() == 0, "cycle %d: reload: %s", i,
		      strerror(errno));
		CHECK(sysfs_attr("watchers") == 0 &&
		      sysfs_attr("outdated_watchers") == 0,
		      "cycle %d: a fresh module has watchers %ld, outdated %ld",
		      i, sysfs_attr("watchers"), sysfs_attr("outdated_watchers"));
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct guest_test tests[] = {
		{ "unload refused until every user is gone, in each order",
		  t_users_released_in_turn },
		{ "a killed user pins nothing; the reloaded module is fresh",
		  t_killed_user_pins_nothing },
	};
	const char *phase = "abi";

	if (argc == 3) {
		ko_path = argv[1];
		phase = argv[2];
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [KO PHASE]\n", argv[0]);
		return 2;
	}
	return guest_run_tests("sysgenid unload", phase, tests,
			       sizeof(tests) / sizeof(tests[0]));
}
