/* SPDX-License-Identifier: MIT */
/*
 * Eager mode. vmgen_fd() is an epoll fd that becomes readable when the
 * source may have moved: the sysgenid fd itself (readable until this fd
 * acknowledges), the VMClock fd when the hypervisor notifies, inotify on
 * a file standing in for a device, or else a 1 ms timerfd for a VMClock
 * that cannot notify (polling the page is all that is possible there).
 * The watcher thread polls that fd and dispatches.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmgenid-internal.h"

/* After a failed dispatch, retry this much later rather than spin. */
#define WATCHER_RETRY_MS	100
#define VMCLOCK_TICK_NS		1000000L

static int open_notify_fd(void)
{
	struct itimerspec its = {
		.it_interval = { .tv_nsec = VMCLOCK_TICK_NS },
		.it_value = { .tv_nsec = VMCLOCK_TICK_NS },
	};
	int fd;

	/* Waiting for a source: wake to look for it (reprobe.c). */
	if (vmgen_g.notify == VMGEN_NOTIFY_REPROBE) {
		int ms = vmgen_reprobe_interval_locked();

		its.it_interval.tv_sec = ms / 1000;
		its.it_interval.tv_nsec = ms % 1000 * 1000000L;
		its.it_value = its.it_interval;
		vmgen_g.probe_tick_ms = ms;
	}

	switch (vmgen_g.notify) {
	case VMGEN_NOTIFY_INOTIFY:
		fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (inotify_add_watch(fd, vmgen_g.path, IN_MODIFY |
				      IN_CLOSE_WRITE | IN_ATTRIB) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		return fd;
	case VMGEN_NOTIFY_TIMER:
	case VMGEN_NOTIFY_REPROBE:
		fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (fd < 0)
			return -errno;
		if (timerfd_settime(fd, 0, &its, NULL) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		return fd;
	default:
		return -1;
	}
}

/* Build the epoll set into fresh fds; the caller installs them. */
static int build(int *epfd, int *ifd, int *kickfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int watched, err;

	*ifd = -1;
	*kickfd = -1;
	*epfd = epoll_create1(EPOLL_CLOEXEC);
	if (*epfd < 0)
		return -errno;
	*kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (*kickfd < 0) {
		err = -errno;
		goto fail;
	}
	watched = -1;
	if (vmgen_g.notify == VMGEN_NOTIFY_FD) {
		watched = vmgen_g.src_fd;
		/* A device without poll support: fall back to the tick. */
		if (epoll_ctl(*epfd, EPOLL_CTL_ADD, watched, &ev) == 0)
			return 0;
		if (errno != EPERM) {
			err = -errno;
			goto fail;
		}
		vmgen_g.notify = VMGEN_NOTIFY_TIMER;
	}
	if (vmgen_g.notify != VMGEN_NOTIFY_NONE) {
		*ifd = open_notify_fd();
		if (*ifd < 0) {
			err = *ifd;
			goto fail;
		}
		watched = *ifd;
	}
	if (watched >= 0 &&
	    epoll_ctl(*epfd, EPOLL_CTL_ADD, watched, &ev) < 0) {
		err = -errno;
		goto fail;
	}
	return 0;

fail:
	if (*ifd >= 0)
		close(*ifd);
	if (*kickfd >= 0)
		close(*kickfd);
	close(*epfd);
	*epfd = *ifd = *kickfd = -1;
	return err;
}

/*
 * Built on first need (vmgen_fd(), vmgen_wait(), the watcher), not at
 * initialisation: a process that only begins and commits should hold no
 * inotify instance (128 per user) and no 1 ms VMClock tick.
 */
int vmgen_notify_ensure_locked(void)
{
	int ret;

	if (vmgen_g.epfd >= 0)
		return 0;
	ret = build(&vmgen_g.epfd, &vmgen_g.ifd, &vmgen_g.kickfd);
	return ret < 0 ? ret : 0;
}

void vmgen_notify_close_locked(void)
{
	if (vmgen_g.epfd >= 0)
		close(vmgen_g.epfd);
	if (vmgen_g.ifd >= 0)
		close(vmgen_g.ifd);
	if (vmgen_g.kickfd >= 0)
		close(vmgen_g.kickfd);
	vmgen_g.epfd = vmgen_g.ifd = vmgen_g.kickfd = -1;
	vmgen_g.notify = VMGEN_NOTIFY_NONE;
}

/*
 * The source appeared while waiting: watch it in the same epoll set, so
 * that vmgen_fd() keeps its number and whoever polls it now wakes for
 * the source (the probe tick goes).
 */
int vmgen_notify_switch_locked(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int fd;

	if (vmgen_g.epfd < 0)
		return 0;
	if (vmgen_g.ifd >= 0) {
		(void)epoll_ctl(vmgen_g.epfd, EPOLL_CTL_DEL, vmgen_g.ifd, NULL);
		close(vmgen_g.ifd);
		vmgen_g.ifd = -1;
	}
	if (vmgen_g.notify == VMGEN_NOTIFY_FD) {
		if (epoll_ctl(vmgen_g.epfd, EPOLL_CTL_ADD, vmgen_g.src_fd,
			      &ev) == 0)
			return 0;
		if (errno != EPERM)
			return -errno;
		vmgen_g.notify = VMGEN_NOTIFY_TIMER;
	}
	if (vmgen_g.notify == VMGEN_NOTIFY_NONE)
		return 0;
	fd = open_notify_fd();
	if (fd < 0)
		return fd;
	if (epoll_ctl(vmgen_g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	vmgen_g.ifd = fd;
	return 0;
}

/*
 * Fork child: the inherited epoll, inotify, timer and eventfd descriptions
 * are shared with the parent, which would drain our wake-ups. Build new
 * ones and move them onto the old numbers, so vmgen_fd() stays the same.
 */
int vmgen_notify_reset_locked(void)
{
	int epfd, ifd, kickfd, ret;

	if (vmgen_g.epfd < 0)
		return 0;
	ret = build(&epfd, &ifd, &kickfd);
	if (ret < 0)
		return ret;
	vmgen_g.epfd = vmgen_replace_fd(vmgen_g.epfd, epfd);
	vmgen_g.kickfd = vmgen_replace_fd(vmgen_g.kickfd, kickfd);
	vmgen_g.ifd = ifd < 0 ? ifd : vmgen_replace_fd(vmgen_g.ifd, ifd);
	return 0;
}

/* Consume what made vmgen_fd() readable, before looking at the source. */
void vmgen_notify_drain(void)
{
	char buf[4096] __attribute__((aligned(8)));
	int fd, notify;

	vmgen_lock();
	notify = vmgen_g.notify;
	fd = notify == VMGEN_NOTIFY_FD ? vmgen_g.src_fd : vmgen_g.ifd;
	vmgen_unlock();
	if (fd < 0)		/* nothing built yet: nothing to consume */
		return;
	switch (notify) {
	case VMGEN_NOTIFY_INOTIFY:
	case VMGEN_NOTIFY_TIMER:
	case VMGEN_NOTIFY_REPROBE:
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		break;
	case VMGEN_NOTIFY_FD:
		/* VMClock re-arms poll on read; sysgenid re-arms on ack. */
		if (vmgen_g.ops->drain)
			vmgen_g.ops->drain(fd);
		break;
	default:
		break;
	}
}

VMGEN_PUBLIC int vmgen_fd(void)
{
	int ret = vmgen_enter();

	if (ret < 0)
		return ret;
	ret = vmgen_notify_ensure_locked();
	if (ret == 0)
		ret = vmgen_g.epfd;
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC int vmgen_dispatch(void)
{
	uint64_t before;
	int64_t gen;
	int ret;

	ret = vmgen_enter_outside_callback();
	if (ret < 0)
		return ret;
	vmgen_unlock();
	vmgen_notify_drain();
	vmgen_lock();
	before = vmgen_g.handled;
	gen = vmgen_settle_locked();
	vmgen_unlock();
	if (gen < 0)
		return (int)gen;
	return (uint64_t)gen != before;
}

static void *watcher_main(void *arg)
{
	int stopfd = (int)(intptr_t)arg;
	int timeout = -1;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = stopfd, .events = POLLIN },
			{ .fd = vmgen_g.epfd, .events = POLLIN },
		};
		int n = poll(pfd, timeout < 0 ? 2 : 1, timeout);

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (timeout >= 0) {	/* back-off over: just retry */
			timeout = -1;
		} else if (n <= 0 || !pfd[1].revents) {
			continue;
		}
		timeout = vmgen_dispatch() < 0 ? WATCHER_RETRY_MS : -1;
	}
	return NULL;
}

/* Called with vmgen_watcher_lock held, not the state lock. */
static int watcher_start_locked(void)
{
	sigset_t all, old;
	int stopfd, ret;

	vmgen_lock();
	if (vmgen_g.watcher_running) {
		vmgen_unlock();
		return -EALREADY;
	}
	ret = vmgen_notify_ensure_locked();
	if (ret < 0) {
		vmgen_unlock();
		return ret;
	}
	vmgen_g.watcher_restart = false;
	stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stopfd < 0) {
		ret = -errno;
		vmgen_unlock();
		return ret;
	}
	/* The application's signals belong to its own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&vmgen_g.watcher, NULL, watcher_main,
			      (void *)(intptr_t)stopfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		close(stopfd);
	} else {
		vmgen_g.stopfd = stopfd;
		vmgen_g.watcher_running = true;
	}
	vmgen_unlock();
	return ret;
}

VMGEN_PUBLIC int vmgen_watcher_start(void)
{
	/* A callback could be in the watcher a stop is joining. */
	int ret = vmgen_enter_outside_callback();

	if (ret < 0)
		return ret;
	vmgen_unlock();
	pthread_mutex_lock(&vmgen_watcher_lock);
	ret = watcher_start_locked();
	pthread_mutex_unlock(&vmgen_watcher_lock);
	return ret;
}

/* Fork child of a watching parent: start our own when first needed. */
void vmgen_watcher_restart_if_needed(void)
{
	bool restart;

	pthread_mutex_lock(&vmgen_watcher_lock);
	vmgen_lock();
	restart = vmgen_g.watcher_restart;
	vmgen_unlock();
	if (restart)
		(void)watcher_start_locked();
	pthread_mutex_unlock(&vmgen_watcher_lock);
}

/* Fork child: the watcher thread was not copied. */
void vmgen_watcher_forget_locked(void)
{
	if (vmgen_g.watcher_running) {
		vmgen_g.watcher_running = false;
		vmgen_g.watcher_restart = true;
	}
	if (vmgen_g.stopfd >= 0)
		close(vmgen_g.stopfd);
	vmgen_g.stopfd = -1;
}

static int watcher_stop(bool from_destructor)
{
	pthread_t thread;
	uint64_t one = 1;
	int stopfd;

	if (from_destructor) {
		if (pthread_mutex_trylock(&vmgen_watcher_lock))
			return -EBUSY;
	} else {
		pthread_mutex_lock(&vmgen_watcher_lock);
	}
	vmgen_lock();
	if (!vmgen_g.watcher_running || vmgen_g.pid != getpid() ||
	    (from_destructor && vmgen_g.dispatching)) {
		/* A fork child that never restarted it: cancel the restart. */
		bool pending = vmgen_g.watcher_restart;

		vmgen_g.watcher_restart = false;
		vmgen_unlock();
		pthread_mutex_unlock(&vmgen_watcher_lock);
		return pending ? 0 : -ESRCH;
	}
	thread = vmgen_g.watcher;
	stopfd = vmgen_g.stopfd;
	vmgen_unlock();
	(void)!write(stopfd, &one, sizeof(one));
	pthread_join(thread, NULL);
	vmgen_lock();
	vmgen_g.watcher_running = false;
	close(vmgen_g.stopfd);
	vmgen_g.stopfd = -1;
	vmgen_unlock();
	pthread_mutex_unlock(&vmgen_watcher_lock);
	return 0;
}

VMGEN_PUBLIC int vmgen_watcher_stop(void)
{
	int ret = vmgen_enter_outside_callback();

	if (ret < 0)
		return ret;
	vmgen_unlock();
	return watcher_stop(false);
}

/* A watcher must not outlive the library (dlclose, exit). */
__attribute__((destructor)) static void vmgen_fini(void)
{
	if (__atomic_load_n(&vmgen_g.init_state, __ATOMIC_ACQUIRE) > 0) {
		(void)watcher_stop(true);
		vmgen_probe_stop(true);
	}
}
