/* SPDX-License-Identifier: MIT */
/*
 * Randomized system calls against /dev/sysgenid from several processes at
 * once: open, close, dup, fork, read, write, poll, epoll, mmap, mprotect,
 * mremap, munmap and ioctl with random sizes, values, flags and pointers,
 * the GUID page (mmap offset 1) and its two ioctls included.
 * Every result must be a success or an errno that the call may return;
 * no call may block for more than a few seconds; afterwards the watcher
 * counts are back, the module is unused, unloads and reloads, and the
 * kernel log and taint flags show no oops, warning or hung task.
 *
 * Usage (as root in the guest, module loaded):
 *	sysgenid_syscall_fuzz KO PHASE	(the VM harness's convention)
 * Runs in PHASE "abi" and skips in the others. Environment:
 *	SYSGENID_FUZZ_SECONDS	how long the workers run (default 45)
 *	SYSGENID_FUZZ_SEED	base seed; worker i uses seed + i (default:
 *				from the clock). The seeds are printed; with
 *				the same seed each worker makes the same
 *				choices until the others' triggers change
 *				what it sees.
 *
 * Build: cc -static -O2 -I driver/uapi -o sysgenid_syscall_fuzz \
 *	tests/vm/guest/sysgenid_syscall_fuzz.c
 */
/* O_PATH, mremap() */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "guest_tap.h"
#include "guest_util.h"

#define NWORKERS	6
#define MAX_FDS		16
#define MAX_MAPS	4
/* A call that takes longer than this is stuck (SIGALRM, a failure). */
#define STUCK_S		5
/* Failure messages kept per worker; the count covers all of them. */
#define MAX_MSGS	8
#define MSG_LEN		200

/* A kernel pointer and an unmapped user one: both must give EFAULT. */
#define KERNEL_PTR	((void *)0xffff888000000000UL)
#define BAD_USER_PTR	((void *)0x10UL)

enum op {
	OP_OPEN, OP_CLOSE, OP_DUP, OP_FORK, OP_READ, OP_WRITE, OP_POLL,
	OP_EPOLL, OP_MMAP, OP_MPROTECT, OP_MREMAP, OP_MUNMAP, OP_IOCTL_TRACK,
	OP_IOCTL_WAIT, OP_IOCTL_TRIGGER, OP_IOCTL_GUID, OP_IOCTL_OTHER, OP_NR
};

static const char *const op_names[OP_NR] = {
	"open", "close", "dup", "fork", "read", "write", "poll", "epoll",
	"mmap", "mprotect", "mremap", "munmap", "ioctl-track", "ioctl-wait",
	"ioctl-trigger", "ioctl-guid", "ioctl-other",
};

/* What each worker reports, in memory shared with the parent. */
struct report {
	unsigned long calls[OP_NR];
	unsigned long ok[OP_NR];
	unsigned long failures;
	char msgs[MAX_MSGS][MSG_LEN];
};

/*
 * Triggers begun and finished by all workers. The counter is a u32 that
 * the triggers' min_gen moves anywhere, so it can come back to the value
 * an fd acknowledged, which makes that fd current again without a write:
 * a read after POLLIN is held to succeed only when no trigger ran between.
 */
struct triggers {
	unsigned long begun, done;
};

static struct triggers *triggers;
static unsigned int fuzz_seconds = 45;
static unsigned long base_seed;
static struct report *reports;

/* Taken in main() before the tests, checked after. */
static long start_watchers, start_outdated;
static unsigned long start_taint;
static char klog_marker[96];

/* ---- the worker's state ---- */

struct wfd {
	int fd;
	int flags;	/* as opened */
};

struct wmap {
	void *addr;
	size_t len;
	int prot;
};

static struct wfd fds[MAX_FDS];
static int nfds;
static struct wmap maps[MAX_MAPS];
static int nmaps;
static uint64_t rng;
static struct report *me;
static int epfd = -1;
static timer_t kick_timer;
static size_t page;
/* Whether the module offers the GUID page, and where the GUID sits. */
static bool guid_offered;
static long guid_off = -1;

static volatile sig_atomic_t stuck;

static void on_alarm(int sig)
{
	(void)sig;
	stuck = 1;
}

/* Only there to interrupt a call that waits on purpose. */
static void on_kick(int sig)
{
	(void)sig;
}

static uint64_t rnd(void)
{
	/* splitmix64: tiny, and one seed gives one sequence. */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* 0..n-1 */
static unsigned long below(unsigned long n)
{
	return (unsigned long)(rnd() % n);
}

static bool chance(unsigned int percent)
{
	return below(100) < percent;
}

static void report_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void report_fail(const char *fmt, ...)
{
	va_list ap;

	if (me->failures < MAX_MSGS) {
		va_start(ap, fmt);
		vsnprintf(me->msgs[me->failures], MSG_LEN, fmt, ap);
		va_end(ap);
	}
	me->failures++;
}

/* Brackets each call: alarm() makes a stuck call a failure. */
static void enter(enum op op)
{
	me->calls[op]++;
	alarm(STUCK_S);
}

/*
 * Checks a call's result: r >= 0, or errno in allowed (a 0-terminated
 * list). Returns true when the call succeeded.
 */
static bool leave(enum op op, long r, int err, const int *allowed,
		  const char *args)
{
	alarm(0);
	if (stuck) {
		stuck = 0;
		report_fail("%s(%s) blocked for over %d s", op_names[op],
			    args, STUCK_S);
		return r >= 0;
	}
	if (r >= 0) {
		me->ok[op]++;
		return true;
	}
	for (; *allowed; allowed++)
		if (*allowed == err)
			return false;
	report_fail("%s(%s): unexpected %s", op_names[op], args,
		    strerror(err));
	return false;
}

/*
 * Interrupts the calls that may wait (blocking read, poll, wait-watchers)
 * every 20 ms until kick_stop(): EINTR, not a hang. It repeats, so a
 * signal that lands just before the call still leaves one for the call.
 */
static void kick_start(void)
{
	struct itimerspec its = {
		.it_value = { 0, 20000000 }, .it_interval = { 0, 20000000 },
	};

	timer_settime(kick_timer, 0, &its, NULL);
}

static void kick_stop(void)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };

	timer_settime(kick_timer, 0, &its, NULL);
}

static struct wfd *pick_fd(void)
{
	return nfds ? &fds[below((unsigned long)nfds)] : NULL;
}

static bool readable(int flags)
{
	return !(flags & O_PATH) && (flags & O_ACCMODE) != O_WRONLY &&
	       (flags & O_ACCMODE) != O_ACCMODE;
}

static bool writable(int flags)
{
	return !(flags & O_PATH) && (flags & O_ACCMODE) != O_RDONLY &&
	       (flags & O_ACCMODE) != O_ACCMODE;
}

static uint32_t page_gen(void)
{
	long g = gen_now();

	return (uint32_t)g;
}

/* A buffer argument: usually good, sometimes NULL, kernel or unmapped. */
static void *pick_buf(void *good, bool *bad)
{
	switch (below(16)) {
	case 0:
		*bad = true;
		return NULL;
	case 1:
		*bad = true;
		return KERNEL_PTR;
	case 2:
		*bad = true;
		return BAD_USER_PTR;
	default:
		*bad = false;
		return good;
	}
}

static size_t pick_len(size_t max)
{
	switch (below(6)) {
	case 0:
		return 0;
	case 1:
	case 2:
		return 4;
	case 3:
		return 1 + below(8);
	case 4:
		return below(max + 1);
	default:
		/* Larger than the buffer: only with a bad pointer, below. */
		return (size_t)1 << (12 + below(20));
	}
}

/* ---- the operations ---- */

static void do_open(void)
{
	static const int modes[] = { O_RDONLY, O_WRONLY, O_RDWR, O_RDWR,
				     O_ACCMODE };
	static const int errs[] = { ENOTDIR, EEXIST, EINVAL, ENOMEM, EMFILE,
				    EINTR, 0 };
	int flags = modes[below(5)];
	char args[96];
	int fd, e;

	if (nfds == MAX_FDS)
		return;
	if (chance(50))
		flags |= O_NONBLOCK;
	if (chance(50))
		flags |= O_CLOEXEC;
	if (chance(3))
		flags |= O_DIRECTORY;
	if (chance(3))
		flags |= O_CREAT | O_EXCL;
	if (chance(3))
		flags = O_PATH | (flags & O_CLOEXEC);
	if (chance(5))
		flags |= O_APPEND | O_SYNC | O_NOCTTY;
	snprintf(args, sizeof(args), "flags %#x", flags);
	enter(OP_OPEN);
	fd = open(dev_path, flags, 0600);
	e = errno;
	if (!leave(OP_OPEN, fd, e, errs, args)) {
		/* Newer kernels refuse O_CREAT | O_DIRECTORY as such. */
		if (e == EINVAL && (flags & (O_CREAT | O_DIRECTORY)) !=
				   (O_CREAT | O_DIRECTORY))
			report_fail("open(%s): EINVAL", args);
		return;
	}
	if (flags & (O_DIRECTORY | O_EXCL)) {
		report_fail("open(%s) succeeded", args);
		close(fd);
		return;
	}
	fds[nfds].fd = fd;
	fds[nfds].flags = flags;
	nfds++;
	if (chance(30)) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

		/* O_PATH fds have no poll: EBADF is fine here. */
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

static void forget_fd(struct wfd *w)
{
	*w = fds[--nfds];
}

static void do_close(void)
{
	static const int errs[] = { EINTR, 0 };
	struct wfd *w = pick_fd();
	char args[32];
	int r, e;

	if (!w)
		return;
	snprintf(args, sizeof(args), "fd %d", w->fd);
	enter(OP_CLOSE);
	r = close(w->fd);
	e = errno;
	leave(OP_CLOSE, r, e, errs, args);
	forget_fd(w);
}

static void do_dup(void)
{
	static const int errs[] = { EMFILE, 0 };
	struct wfd *w = pick_fd();
	char args[32];
	int fd, e;

	if (!w || nfds == MAX_FDS)
		return;
	snprintf(args, sizeof(args), "fd %d", w->fd);
	enter(OP_DUP);
	fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
	e = errno;
	if (leave(OP_DUP, fd, e, errs, args)) {
		fds[nfds].fd = fd;
		fds[nfds].flags = w->flags;
		nfds++;
	}
}

/*
 * A child that inherits every fd and mapping, uses one, and exits: the
 * last close of shared files happens in either process.
 */
static void do_fork(void)
{
	static const int errs[] = { EAGAIN, ENOMEM, 0 };
	int status = 0;
	pid_t pid;

	enter(OP_FORK);
	pid = fork();
	if (pid == 0) {
		alarm(0);
		for (int i = 0; i < nmaps; i++)
			if (maps[i].prot & PROT_READ)
				(void)*(volatile uint32_t *)maps[i].addr;
		if (nfds) {
			struct wfd *w = &fds[below((unsigned long)nfds)];

			if (writable(w->flags))
				ioctl(w->fd, SYSGENID_SET_WATCHER_TRACKING, 1);
			/* Only when read() cannot block: no alarm here. */
			if (chance(50) && (poll_now(w->fd) & POLLIN))
				ack(w->fd);
		}
		_exit(0);
	}
	if (!leave(OP_FORK, pid, errno, errs, ""))
		return;
	/* The child's exit closes what it inherited, tracked or not. */
	alarm(STUCK_S);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR && !stuck)
		;
	alarm(0);
	if (stuck) {
		stuck = 0;
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		report_fail("fork child still running after %d s", STUCK_S);
	} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		report_fail("fork child status %#x", status);
	}
}

static void do_read(void)
{
	static const int errs[] = { EINVAL, EAGAIN, EFAULT, EBADF, EINTR, 0 };
	struct wfd *w = pick_fd();
	uint32_t buf[4] = { 0 };
	bool bad = false, kicked = false, ready, quiet;
	unsigned long begun;
	size_t len;
	char args[96];
	ssize_t r;
	void *p;
	int e, fl;

	if (!w)
		return;
	p = pick_buf(buf, &bad);
	len = pick_len(sizeof(buf));
	if (len > sizeof(buf) && !bad)
		len = sizeof(buf);
	fl = fcntl(w->fd, F_GETFL);
	begun = __atomic_load_n(&triggers->begun, __ATOMIC_SEQ_CST);
	quiet = __atomic_load_n(&triggers->done, __ATOMIC_SEQ_CST) == begun;
	ready = readable(w->flags) && (poll_now(w->fd) & POLLIN);
	/* A blocking read on an acked fd waits for a trigger: kick it. */
	if (fl >= 0 && !(fl & O_NONBLOCK) && !ready) {
		kick_start();
		kicked = true;
	}
	snprintf(args, sizeof(args), "fd %d flags %#x, %p, %zu", w->fd,
		 w->flags, p, len);
	enter(OP_READ);
	r = read(w->fd, p, len);
	e = errno;
	if (kicked)
		kick_stop();
	quiet = quiet &&
		__atomic_load_n(&triggers->begun, __ATOMIC_SEQ_CST) == begun;
	if (!leave(OP_READ, r, e, errs, args)) {
		/*
		 * Only this process acknowledges on its fds: without a
		 * trigger between, POLLIN stays until it writes, so a good
		 * read must have succeeded.
		 */
		if (ready && quiet && !bad && len >= 4 && e != EINTR)
			report_fail("read(%s) after POLLIN: %s", args,
				    strerror(e));
		if (!readable(w->flags) && e != EBADF && e != EINTR)
			report_fail("read(%s) on a non-readable fd: %s", args,
				    strerror(e));
		return;
	}
	if (r != 4 || bad || len < 4 || !readable(w->flags))
		report_fail("read(%s) = %zd", args, r);
}

static void do_write(void)
{
	static const int errs[] = { EINVAL, ENOBUFS, EFAULT, EBADF, EINTR,
				    0 };
	struct wfd *w = pick_fd();
	uint32_t buf[4];
	bool bad = false;
	size_t len;
	char args[96];
	ssize_t r;
	void *p;
	int e;

	if (!w)
		return;
	for (int i = 0; i < 4; i++)
		buf[i] = (uint32_t)rnd();
	if (chance(60))
		buf[0] = page_gen();
	else if (chance(20))
		buf[0] = page_gen() + (uint32_t)below(3) - 1;
	p = pick_buf(buf, &bad);
	len = pick_len(sizeof(buf));
	if (len > sizeof(buf) && !bad)
		len = sizeof(buf);
	snprintf(args, sizeof(args), "fd %d flags %#x, %p = %u, %zu", w->fd,
		 w->flags, p, buf[0], len);
	enter(OP_WRITE);
	r = write(w->fd, p, len);
	e = errno;
	if (!leave(OP_WRITE, r, e, errs, args)) {
		if (!bad && writable(w->flags) && len != 4 && e != ENOBUFS)
			report_fail("write(%s): %s, want ENOBUFS", args,
				    strerror(e));
		return;
	}
	if (r != 4 || bad || len != 4 || !writable(w->flags))
		report_fail("write(%s) = %zd", args, r);
}

static void do_poll(void)
{
	static const int errs[] = { EINTR, EFAULT, EINVAL, 0 };
	struct pollfd pf[MAX_FDS + 1];
	int n = 0, timeout = (int)below(21), r, e;
	char args[64];

	for (int i = 0; i < nfds; i++)
		if (chance(50)) {
			pf[n].fd = fds[i].fd;
			pf[n].events = (short)(chance(80) ? POLLIN :
					       rnd() & 0xffff);
			n++;
		}
	if (chance(10))
		timeout = -1;	/* forever: the kick ends it */
	snprintf(args, sizeof(args), "%d fds, %d ms", n, timeout);
	if (timeout < 0)
		kick_start();
	enter(OP_POLL);
	r = chance(5) ? poll(KERNEL_PTR, (nfds_t)n, timeout) :
			poll(pf, (nfds_t)n, timeout);
	e = errno;
	if (timeout < 0)
		kick_stop();
	if (!leave(OP_POLL, r, e, errs, args))
		return;
	for (int i = 0; i < n && r > 0; i++)
		if (pf[i].revents & ~(POLLIN | POLLRDNORM | POLLNVAL))
			report_fail("poll(%s): revents %#x on fd %d", args,
				    pf[i].revents, pf[i].fd);
}

static void do_epoll(void)
{
	static const int errs[] = { EINTR, EFAULT, 0 };
	struct epoll_event ev[MAX_FDS];
	int r, e;

	enter(OP_EPOLL);
	r = epoll_wait(epfd, ev, MAX_FDS, (int)below(21));
	e = errno;
	if (!leave(OP_EPOLL, r, e, errs, "epoll_wait"))
		return;
	for (int i = 0; i < r; i++)
		if (ev[i].events & ~(uint32_t)(EPOLLIN | EPOLLRDNORM))
			report_fail("epoll_wait: events %#x on fd %d",
				    ev[i].events, ev[i].data.fd);
}

static void do_mmap(void)
{
	static const int errs[] = { EINVAL, EPERM, EACCES, ENOMEM, ENODEV,
				    EOVERFLOW, EBADF, 0 };
	static const int prots[] = {
		PROT_READ, PROT_READ, PROT_READ, PROT_NONE,
		PROT_READ | PROT_WRITE, PROT_WRITE, PROT_READ | PROT_EXEC,
		PROT_READ | PROT_WRITE | PROT_EXEC,
	};
	struct wfd *w = pick_fd();
	int prot = prots[below(8)], flags, e;
	size_t len;
	off_t off;
	char args[128];
	void *p;

	if (!w || nmaps == MAX_MAPS)
		return;
	switch (below(5)) {
	case 0:
		len = 0;
		break;
	case 1:
		len = 1 + below(page);
		break;
	case 2:
		len = page * (1 + below(4));
		break;
	default:
		len = page;
	}
	switch (below(6)) {
	case 0:
		off = (off_t)page * (off_t)below(4);
		break;
	case 1:
		off = (off_t)below(page);	/* unaligned: EINVAL */
		break;
	case 2:
		off = (off_t)((rnd() & ~(uint64_t)(page - 1)) >> 1);
		break;
	default:
		off = 0;
	}
	flags = chance(70) ? MAP_SHARED : MAP_PRIVATE;
	if (chance(10))
		flags |= MAP_POPULATE;
	snprintf(args, sizeof(args), "len %zu prot %#x flags %#x fd %d (%#x) off %#llx",
		 len, prot, flags, w->fd, w->flags, (unsigned long long)off);
	enter(OP_MMAP);
	p = mmap(NULL, len, prot, flags, w->fd, off);
	e = errno;
	if (!leave(OP_MMAP, p == MAP_FAILED ? -1 : 0, e, errs, args)) {
		if (e == ENODEV && (guid_offered || off != (off_t)page))
			report_fail("mmap(%s): ENODEV", args);
		return;
	}
	/*
	 * The device maps one read-only page at offset 0 (the counter) and,
	 * where offered, one read-only shared page at offset 1 (the GUID),
	 * and nothing else.
	 */
	/*
	 * Never writable, never executable, never private (copy-on-write
	 * could make a private one writable), at either offset.
	 */
	if (len > page || (prot & (PROT_WRITE | PROT_EXEC)) || !len ||
	    !(flags & MAP_SHARED) || (off != 0 && off != (off_t)page) ||
	    (off == (off_t)page && !guid_offered))
		report_fail("mmap(%s) succeeded", args);
	if (prot & PROT_READ) {
		volatile uint8_t *v = p;
		size_t from = off ? (size_t)guid_off : 0;
		size_t to = off ? from + 16 : sizeof(uint32_t);

		for (size_t i = 0; i < page; i++)
			if (v[i] && (i < from || i >= to)) {
				report_fail("mmap(%s): byte %zu is %#x", args,
					    i, v[i]);
				break;
			}
	}
	maps[nmaps].addr = p;
	maps[nmaps].len = len;
	maps[nmaps].prot = prot;
	nmaps++;
}

static void do_mprotect(void)
{
	static const int errs[] = { EACCES, EINVAL, ENOMEM, 0 };
	static const int prots[] = {
		PROT_READ, PROT_NONE, PROT_READ | PROT_WRITE, PROT_WRITE,
		PROT_READ | PROT_EXEC,
	};
	struct wmap *m;
	int prot = prots[below(5)], r, e;
	char args[64];

	if (!nmaps)
		return;
	m = &maps[below((unsigned long)nmaps)];
	snprintf(args, sizeof(args), "%p, %zu, %#x", m->addr, m->len, prot);
	enter(OP_MPROTECT);
	r = mprotect(m->addr, m->len, prot);
	e = errno;
	if (!leave(OP_MPROTECT, r, e, errs, args))
		return;
	/* VM_MAYWRITE and VM_MAYEXEC are gone. */
	if (prot & (PROT_WRITE | PROT_EXEC))
		report_fail("mprotect(%s) made the page %s", args,
			    prot & PROT_WRITE ? "writable" : "executable");
	m->prot = prot;
	/* A page zapped by MADV_DONTNEED faults back in: no SIGBUS. */
	if (chance(30))
		(void)madvise(m->addr, m->len, MADV_DONTNEED);
	if (prot & PROT_READ)
		(void)*(volatile uint32_t *)m->addr;
}

static void do_mremap(void)
{
	static const int errs[] = { EFAULT, EINVAL, ENOMEM, 0 };
	struct wmap *m;
	size_t len = page * (1 + below(3));
	char args[64];
	void *p;
	int e;

	if (!nmaps)
		return;
	m = &maps[below((unsigned long)nmaps)];
	snprintf(args, sizeof(args), "%p, %zu -> %zu", m->addr, m->len, len);
	enter(OP_MREMAP);
	p = mremap(m->addr, m->len, len, MREMAP_MAYMOVE);
	e = errno;
	if (!leave(OP_MREMAP, p == MAP_FAILED ? -1 : 0, e, errs, args))
		return;
	/* VM_DONTEXPAND: it may move or stay, but not grow. */
	if (len > page)
		report_fail("mremap(%s) left a mapping over a page", args);
	m->addr = p;
	m->len = len;
	if (m->prot & PROT_READ)
		(void)*(volatile uint32_t *)p;
}

static void do_munmap(void)
{
	static const int errs[] = { 0 };
	struct wmap *m;
	char args[48];
	int r, e;

	if (!nmaps)
		return;
	m = &maps[below((unsigned long)nmaps)];
	snprintf(args, sizeof(args), "%p, %zu", m->addr, m->len);
	enter(OP_MUNMAP);
	r = munmap(m->addr, m->len);
	e = errno;
	leave(OP_MUNMAP, r, e, errs, args);
	*m = maps[--nmaps];
}

/* An ioctl argument: small, near the u32 limit, or anything. */
static unsigned long pick_arg(void)
{
	switch (below(6)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return below(100);
	case 3:
		return UINT32_MAX - below(4);
	case 4:
		return (unsigned long)UINT32_MAX + 1 + below(4);
	default:
		return (unsigned long)rnd();
	}
}

static void do_ioctl_track(void)
{
	static const int errs[] = { EBADF, 0 };
	struct wfd *w = pick_fd();
	unsigned long arg = pick_arg();
	char args[64];
	int r, e;

	if (!w)
		return;
	snprintf(args, sizeof(args), "fd %d flags %#x, track %#lx", w->fd,
		 w->flags, arg);
	enter(OP_IOCTL_TRACK);
	r = ioctl(w->fd, SYSGENID_SET_WATCHER_TRACKING, arg);
	e = errno;
	if (!leave(OP_IOCTL_TRACK, r, e, errs, args)) {
		/* O_PATH and O_ACCMODE opens refuse both; O_RDONLY only on. */
		if (writable(w->flags))
			report_fail("ioctl-track(%s): %s", args,
				    strerror(e));
		return;
	}
	if (arg && !writable(w->flags))
		report_fail("ioctl-track(%s) tracked a read-only fd", args);
}

static void do_ioctl_wait(void)
{
	static const int errs[] = { ETIME, EINTR, EBADF, 0 };
	struct wfd *w = pick_fd();
	unsigned long ms = 1 + below(20);
	bool kicked = false;
	char args[64];
	int r, e;

	if (!w)
		return;
	/*
	 * 0 and huge timeouts wait forever; the kick ends them, which also
	 * takes the signal path through the hrtimer wait.
	 */
	if (chance(5)) {
		ms = chance(50) ? 0 : ULONG_MAX - below(2);
		kicked = true;
		kick_start();
	}
	snprintf(args, sizeof(args), "fd %d flags %#x, %lu ms", w->fd,
		 w->flags, ms);
	enter(OP_IOCTL_WAIT);
	r = ioctl(w->fd, SYSGENID_WAIT_WATCHERS, ms);
	e = errno;
	if (kicked)
		kick_stop();
	leave(OP_IOCTL_WAIT, r, e, errs, args);
}

static void do_ioctl_trigger(void)
{
	static const int errs[] = { EINVAL, EBADF, EOVERFLOW, 0 };
	struct wfd *w = pick_fd();
	unsigned long arg;
	char args[64];
	int r, e;

	if (!w)
		return;
	/* Mostly +1, so that the counter reaches U32_MAX only now and then. */
	arg = chance(70) ? 0 : pick_arg();
	snprintf(args, sizeof(args), "fd %d flags %#x, min_gen %#lx", w->fd,
		 w->flags, arg);
	__atomic_add_fetch(&triggers->begun, 1, __ATOMIC_SEQ_CST);
	enter(OP_IOCTL_TRIGGER);
	r = ioctl(w->fd, SYSGENID_TRIGGER_GEN_UPDATE, arg);
	e = errno;
	__atomic_add_fetch(&triggers->done, 1, __ATOMIC_SEQ_CST);
	if (!leave(OP_IOCTL_TRIGGER, r, e, errs, args)) {
		if (e == EINVAL && arg <= UINT32_MAX)
			report_fail("ioctl-trigger(%s): EINVAL", args);
		/* Refused only where it would wrap; nothing brings it down. */
		if (e == EOVERFLOW && gen_now() != UINT32_MAX)
			report_fail("ioctl-trigger(%s): EOVERFLOW at counter %ld",
				    args, gen_now());
		return;
	}
	if (arg > UINT32_MAX || (w->flags & O_PATH))
		report_fail("ioctl-trigger(%s) succeeded", args);
}

/*
 * GET_GUID_OFFSET (40 where offered, else ENODEV) or HANDLE_GUID_CHANGE
 * (0: the GUID does not change during the run; EINTR: a kick while it
 * waited for another caller); a nonzero argument is EINVAL; O_PATH EBADF.
 */
static void do_ioctl_guid(void)
{
	static const int errs[] = { EINVAL, ENODEV, EINTR, EBADF, 0 };
	struct wfd *w = pick_fd();
	unsigned long arg = chance(60) ? 0 : pick_arg();
	bool get = chance(50);
	char args[80];
	long r;
	int e;

	if (!w)
		return;
	snprintf(args, sizeof(args), "fd %d flags %#x, %s %#lx", w->fd,
		 w->flags, get ? "get-offset" : "handle", arg);
	enter(OP_IOCTL_GUID);
	r = ioctl(w->fd, get ? SYSGENID_GET_GUID_OFFSET :
		  SYSGENID_HANDLE_GUID_CHANGE, arg);
	e = errno;
	if (!leave(OP_IOCTL_GUID, r, e, errs, args)) {
		if ((e == EINVAL && !arg) || (e == EBADF && !(w->flags & O_PATH)) ||
		    (e == ENODEV && (!get || guid_offered || arg)) ||
		    (e == EINTR && get))
			report_fail("ioctl-guid(%s): %s", args, strerror(e));
		return;
	}
	if (arg || (w->flags & O_PATH) || (get && r != guid_off) ||
	    (!get && r != 0))
		report_fail("ioctl-guid(%s) returned %ld", args, r);
}

static bool real_cmd(unsigned int cmd)
{
	return cmd == SYSGENID_SET_WATCHER_TRACKING ||
	       cmd == SYSGENID_WAIT_WATCHERS ||
	       cmd == SYSGENID_TRIGGER_GEN_UPDATE ||
	       cmd == SYSGENID_GET_GUID_OFFSET ||
	       cmd == SYSGENID_HANDLE_GUID_CHANGE;
}

/*
 * Types of the commands that the VFS handles before the driver (FIOCLEX,
 * FIONBIO, FIFREEZE, FS_IOC_*, FIBMAP): those are not the device's, and
 * FIONBIO would change the fd under the worker's feet.
 */
static bool vfs_type(unsigned int cmd)
{
	unsigned int t = _IOC_TYPE(cmd);

	return t == 0 || t == 'T' || t == 'f' || t == 'X' || t == 0x94 ||
	       t == 0x15 || t == 'v';
}

static void do_ioctl_other(void)
{
	static const int errs[] = { ENOTTY, EBADF, 0 };
	struct wfd *w = pick_fd();
	unsigned long arg = pick_arg();
	unsigned int cmd;
	char args[64];
	int r, e;

	if (!w)
		return;
	do {
		switch (below(4)) {
		case 0:
			cmd = _IO(SYSGENID_IOCTL, below(256));
			break;
		case 1:
			cmd = _IOC((unsigned int)below(4), SYSGENID_IOCTL,
				   (unsigned int)below(8),
				   (unsigned int)below(1 << 14));
			break;
		case 2:
			cmd = _IO(SYSGENID_IOCTL - 1 + below(3), 1 + below(3));
			break;
		default:
			cmd = (unsigned int)rnd();
		}
	} while (real_cmd(cmd) || vfs_type(cmd));
	if (chance(10))
		arg = (unsigned long)KERNEL_PTR;
	snprintf(args, sizeof(args), "fd %d, cmd %#x, arg %#lx", w->fd, cmd,
		 arg);
	enter(OP_IOCTL_OTHER);
	r = ioctl(w->fd, cmd, arg);
	e = errno;
	if (leave(OP_IOCTL_OTHER, r, e, errs, args))
		report_fail("ioctl-other(%s) succeeded", args);
}

/* What the module says of the GUID page, which the results must match. */
static int guid_probe(void)
{
	char st[256];
	int fd = dev_open(O_RDONLY);

	guid_offered = sysfs_attr_str("guid_page", st, sizeof(st)) &&
		       !strcmp(st, "offered");
	if (fd >= 0 && guid_offered)
		guid_off = ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
	if (fd >= 0)
		close(fd);
	if (guid_offered && guid_off < 0) {
		report_fail("guid_page offered, GET_GUID_OFFSET: %s",
			    strerror(errno));
		return -1;
	}
	return 0;
}

static void (*const ops[OP_NR])(void) = {
	[OP_OPEN] = do_open, [OP_CLOSE] = do_close, [OP_DUP] = do_dup,
	[OP_FORK] = do_fork, [OP_READ] = do_read, [OP_WRITE] = do_write,
	[OP_POLL] = do_poll, [OP_EPOLL] = do_epoll, [OP_MMAP] = do_mmap,
	[OP_MPROTECT] = do_mprotect, [OP_MREMAP] = do_mremap,
	[OP_MUNMAP] = do_munmap, [OP_IOCTL_TRACK] = do_ioctl_track,
	[OP_IOCTL_WAIT] = do_ioctl_wait,
	[OP_IOCTL_TRIGGER] = do_ioctl_trigger,
	[OP_IOCTL_GUID] = do_ioctl_guid,
	[OP_IOCTL_OTHER] = do_ioctl_other,
};

/* Relative weights: open and the data path most, fork least. */
static const unsigned int weights[OP_NR] = {
	[OP_OPEN] = 10, [OP_CLOSE] = 7, [OP_DUP] = 2, [OP_FORK] = 1,
	[OP_READ] = 12, [OP_WRITE] = 12, [OP_POLL] = 5, [OP_EPOLL] = 3,
	[OP_MMAP] = 6, [OP_MPROTECT] = 3, [OP_MREMAP] = 2, [OP_MUNMAP] = 4,
	[OP_IOCTL_TRACK] = 8, [OP_IOCTL_WAIT] = 5, [OP_IOCTL_TRIGGER] = 4,
	[OP_IOCTL_GUID] = 5, [OP_IOCTL_OTHER] = 6,
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int worker(int i)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct sigaction sk = { .sa_handler = on_kick };
	struct sigevent sev = {
		.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1,
	};
	unsigned int total = 0;
	double end;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	me = &reports[i];
	rng = base_seed + (uint64_t)i;
	page = (size_t)sysconf(_SC_PAGESIZE);
	if (guid_probe())
		return 1;
	/* No SA_RESTART: a signal must end the call it interrupts. */
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGUSR1, &sk, NULL);
	if (timer_create(CLOCK_MONOTONIC, &sev, &kick_timer)) {
		report_fail("timer_create: %s", strerror(errno));
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		report_fail("epoll_create1: %s", strerror(errno));
		return 1;
	}
	for (int k = 0; k < OP_NR; k++)
		total += weights[k];
	end = now_s() + fuzz_seconds;
	while (now_s() < end) {
		unsigned long x = below(total);
		int k = 0;

		while (x >= weights[k])
			x -= weights[k++];
		ops[k]();
	}
	/* Exit closes the rest; close some by hand to take both paths. */
	while (nfds > MAX_FDS / 2)
		do_close();
	return 0;
}

/* ---- the checks ---- */

static const char *t_fuzz(void)
{
	pid_t pids[NWORKERS];
	unsigned long calls = 0, fails = 0;
	int st[NWORKERS];

	for (int i = 0; i < NWORKERS; i++) {
		printf("# worker %d seed %lu\n", i, base_seed + (unsigned long)i);
		fflush(stdout);
		pids[i] = fork();
		CHECK_SYS(pids[i]);
		if (pids[i] == 0)
			_exit(worker(i));
	}
	/* The workers stop themselves; this only catches a hung one. */
	for (int i = 0; i < NWORKERS; i++)
		st[i] = wait_child(pids[i], (fuzz_seconds + 60) * 1000L);

	for (int k = 0; k < OP_NR; k++) {
		unsigned long c = 0, ok = 0;

		for (int i = 0; i < NWORKERS; i++) {
			c += reports[i].calls[k];
			ok += reports[i].ok[k];
		}
		printf("# %-14s %8lu calls %8lu succeeded\n", op_names[k], c,
		       ok);
		calls += c;
	}
	printf("# %lu calls in %u s from %d processes\n", calls,
	       fuzz_seconds, NWORKERS);
	for (int i = 0; i < NWORKERS; i++) {
		fails += reports[i].failures;
		for (unsigned long m = 0;
		     m < reports[i].failures && m < MAX_MSGS; m++)
			printf("# worker %d: %s\n", i, reports[i].msgs[m]);
	}
	for (int i = 0; i < NWORKERS; i++)
		CHECK(st[i] == 0, "worker %d (seed %lu) exit status %d%s", i,
		      base_seed + (unsigned long)i, st[i],
		      st[i] == -1 ? " (hung, killed)" :
		      st[i] == -2 ? " (killed by a signal)" : "");
	for (int i = 0; i < NWORKERS; i++)
		CHECK(!reports[i].failures,
		      "%lu bad results, first from worker %d (seed %lu): %s",
		      fails, i, base_seed + (unsigned long)i,
		      reports[i].msgs[0]);
	CHECK(calls > 1000, "only %lu calls", calls);
	return NULL;
}

static const char *t_counts_back(void)
{
	long w = sysfs_attr("watchers"), o = sysfs_attr("outdated_watchers");
	FILE *f = fopen("/sys/module/" SYSGENID_DEVICE_NAME "/refcnt", "re");
	long ref = -1;

	CHECK(w == start_watchers, "watchers %ld, was %ld", w,
	      start_watchers);
	CHECK(o == start_outdated, "outdated_watchers %ld, was %ld", o,
	      start_outdated);
	/* No file or mapping of the device is left: nothing pins it. */
	if (f) {
		if (fscanf(f, "%ld", &ref) != 1)
			ref = -1;
		fclose(f);
		CHECK(ref == 0, "module refcnt %ld after all workers exited",
		      ref);
	}
	return NULL;
}

static const char *t_klog_clean(void)
{
	/*
	 * Not soft lockups or RCU stalls: under an overloaded TCG host the
	 * guest clock jumps and those watchdogs fire on their own. A hang in
	 * the module shows as a worker's blocked call instead.
	 */
	static const char *const bad[] = {
		"Oops", "BUG:", "kernel BUG", "WARNING:", "hung_task",
		"blocked for more than", "general protection", "KASAN",
		"refcount_t", "list_add corruption", "list_del corruption",
		NULL,
	};

	return klog_clean_since(klog_marker, bad);
}

static const char *t_reload(void)
{
	int r = -1, fd;

	if (!ko_path)
		SKIP("no module path given");
	/*
	 * delete_module(O_NONBLOCK) fails at once while anything holds the
	 * module; give a reference dropped by a late exit a moment.
	 */
	for (int i = 0; i < 20 && r; i++) {
		r = (int)syscall(SYS_delete_module, SYSGENID_DEVICE_NAME,
				 O_NONBLOCK);
		if (r)
			sleep_ms(100);
	}
	CHECK(r == 0, "unload: %s", strerror(errno));
	fd = open(ko_path, O_RDONLY | O_CLOEXEC);
	CHECK_SYS(fd);
	r = (int)syscall(SYS_finit_module, fd, "", 0);
	close(fd);
	CHECK(r == 0, "reload: %s", strerror(errno));
	fd = dev_open(O_RDWR);
	CHECK(fd >= 0, "open after reload: %s", strerror(errno));
	CHECK(ioctl(fd, SYSGENID_SET_WATCHER_TRACKING, 1) == 0,
	      "track after reload: %s", strerror(errno));
	CHECK(trigger(fd, 0) == 0 && ack(fd) == 0, "use after reload: %s",
	      strerror(errno));
	close(fd);
	CHECK(sysfs_attr("watchers") == 0 && sysfs_attr("generation") == 1,
	      "after reload: watchers %ld generation %ld",
	      sysfs_attr("watchers"), sysfs_attr("generation"));
	return NULL;
}

static unsigned long read_taint(void)
{
	FILE *f = fopen("/proc/sys/kernel/tainted", "re");
	unsigned long t = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%lu", &t) != 1)
		t = 0;
	fclose(f);
	return t;
}

static const char *t_no_new_taint(void)
{
	/* 7 = D (oops), 9 = W (warning); O and E come with the module. */
	unsigned long bits = 1UL << 7 | 1UL << 9;
	unsigned long t = read_taint();

	CHECK(!(t & bits & ~start_taint), "taint %#lx, was %#lx", t,
	      start_taint);
	return NULL;
}

/* Writes value to a /proc file; returns the old value or -1. */
static long proc_swap(const char *path, long value)
{
	FILE *f = fopen(path, "re");
	long old = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &old) != 1)
		old = -1;
	fclose(f);
	f = fopen(path, "we");
	if (!f)
		return -1;
	fprintf(f, "%ld\n", value);
	if (fclose(f))
		return -1;
	return old;
}

int main(int argc, char **argv)
{
	static const char *hung = "/proc/sys/kernel/hung_task_timeout_secs";
	const char *phase, *env;
	long old_hung;
	int fd, ret;

	if (argc != 3) {
		fprintf(stderr, "usage: %s KO PHASE\n", argv[0]);
		return 2;
	}
	ko_path = argv[1];
	phase = argv[2];
	ret = guest_abi_preflight("sysgenid syscall fuzz", phase);
	if (ret >= 0)
		return ret;
	env = getenv("SYSGENID_FUZZ_SECONDS");
	if (env && atoi(env) > 0)
		fuzz_seconds = (unsigned int)atoi(env);
	env = getenv("SYSGENID_FUZZ_SEED");
	base_seed = env ? strtoul(env, NULL, 0) :
			  (unsigned long)time(NULL) ^
			  ((unsigned long)getpid() << 16);
	printf("# SYSGENID_FUZZ_SEED=%lu SYSGENID_FUZZ_SECONDS=%u\n",
	       base_seed, fuzz_seconds);
	reports = mmap(NULL, sizeof(*reports) * NWORKERS + sizeof(*triggers),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (reports == MAP_FAILED) {
		printf("# cannot map the reports: %s\n", strerror(errno));
		return 1;
	}
	triggers = (struct triggers *)(reports + NWORKERS);

	/* The detector reports only after this long in D state. */
	old_hung = proc_swap(hung, 5);
	if (old_hung < 0)
		printf("# no %s: hung tasks are caught only by the workers' own deadline\n",
		       hung);
	else
		printf("# hung_task_timeout_secs 5 (was %ld)\n", old_hung);
	start_watchers = sysfs_attr("watchers");
	start_outdated = sysfs_attr("outdated_watchers");
	start_taint = read_taint();
	if (start_watchers)
		printf("# %ld watchers before the start\n", start_watchers);
	snprintf(klog_marker, sizeof(klog_marker),
		 "sysgenid_syscall_fuzz: start %ld", (long)getpid());
	if (kmsg_mark(klog_marker))
		printf("# cannot write to /dev/kmsg: %s\n", strerror(errno));

	tap_run("6 processes of random syscalls: allowed results, no hang",
		t_fuzz);
	tap_run("watcher counts back, module unused", t_counts_back);
	tap_run("kernel log clean since the start", t_klog_clean);
	tap_run("module unloads and reloads", t_reload);
	tap_run("no new W or D taint", t_no_new_taint);
	ret = tap_done();

	if (old_hung >= 0)
		proc_swap(hung, old_hung);
	if (access(dev_path, F_OK)) {
		fd = open(ko_path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			syscall(SYS_finit_module, fd, "", 0);
			close(fd);
		}
	}
	return ret;
}
