/* SPDX-License-Identifier: MIT */
/*
 * vmgen_wait(): block until the handled generation differs from the one the
 * caller knows. One waiter at a time polls vmgen_fd() (plus a private
 * eventfd that a publish by any other thread kicks); the others sleep on a
 * condition variable that every publish and every end of a poll broadcast.
 */
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "vmgenid-internal.h"

void vmgen_wake_waiters_locked(void)
{
	uint64_t one = 1;

	vmgen_g.wake_seq++;
	pthread_cond_broadcast(&vmgen_g.wait_cond);
	if (vmgen_g.poller && vmgen_g.kickfd >= 0)
		(void)!write(vmgen_g.kickfd, &one, sizeof(one));
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll as the one poller, with the lock dropped. */
static void poll_once(int timeout_ms)
{
	struct pollfd pfd[2];
	uint64_t drain;
	int n;

	pfd[0].fd = vmgen_g.epfd;
	pfd[0].events = POLLIN;
	pfd[1].fd = vmgen_g.kickfd;
	pfd[1].events = POLLIN;
	vmgen_g.poller = true;
	vmgen_unlock();
	n = poll(pfd, 2, timeout_ms);
	if (n > 0 && pfd[1].revents)
		(void)!read(pfd[1].fd, &drain, sizeof(drain));
	if (n > 0 && pfd[0].revents)
		vmgen_notify_drain();
	vmgen_lock();
	vmgen_g.poller = false;
	/* Let a sleeping waiter take over the polling if we return. */
	vmgen_g.wake_seq++;
	pthread_cond_broadcast(&vmgen_g.wait_cond);
}

static void sleep_once(int64_t deadline)
{
	uint64_t seq = vmgen_g.wake_seq;
	struct timespec ts;

	while (seq == vmgen_g.wake_seq) {
		if (deadline < 0) {
			pthread_cond_wait(&vmgen_g.wait_cond, &vmgen_g.lock);
			continue;
		}
		ts.tv_sec = (time_t)(deadline / 1000);
		ts.tv_nsec = (long)(deadline % 1000) * 1000000;
		if (pthread_cond_timedwait(&vmgen_g.wait_cond, &vmgen_g.lock,
					   &ts) == ETIMEDOUT)
			break;
	}
}

VMGEN_PUBLIC int64_t vmgen_wait(uint64_t generation, int timeout_ms)
{
	int64_t gen, deadline = -1, left;
	int ret;

	if (timeout_ms < -1)
		return -EINVAL;
	/* Inside a callback the generation cannot move until we return. */
	ret = vmgen_enter_outside_callback();
	if (ret < 0)
		return ret;
	ret = vmgen_notify_ensure_locked();
	if (ret < 0) {
		vmgen_unlock();
		return ret;
	}
	if (timeout_ms >= 0)
		deadline = now_ms() + timeout_ms;
	for (;;) {
		gen = vmgen_settle_locked();
		if (gen < 0 || (uint64_t)gen != generation)
			break;
		left = -1;
		if (deadline >= 0) {
			left = deadline - now_ms();
			if (left <= 0) {
				gen = -ETIMEDOUT;
				break;
			}
		}
		if (!vmgen_g.poller)
			poll_once((int)left);
		else
			sleep_once(deadline);
	}
	vmgen_unlock();
	return gen;
}
