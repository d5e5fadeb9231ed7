/* SPDX-License-Identifier: MIT */
/*
 * event_loop: a program built around epoll learns of VM restores through
 * vmgen_fd() and runs the reseed callbacks itself with vmgen_dispatch(),
 * in its own thread, with no watcher thread in the process.
 *
 * Build: cc event_loop.c -o event_loop $(pkg-config --cflags --libs vmgenid)
 * Run:   VMGENID_SOURCE=file:/tmp/gen ./event_loop [STEPS]
 *        then change the generation STEPS times (vmgenid trigger).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vmgenid.h>

static int callbacks;

static int on_restore(const struct vmgen_event *ev, void *arg)
{
	callbacks++;
	printf("callback %d: generation %" PRIu64 " -> %" PRIu64 "\n",
	       callbacks, ev->old_generation, ev->new_generation);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 1;
	struct epoll_event ev = { .events = EPOLLIN };
	int ep, fd, r;

	r = vmgen_init(NULL, 0);
	if (r >= 0)
		r = vmgen_callback_register(on_restore, NULL, VMGEN_EVENT_VM);
	if (r >= 0)
		r = fd = vmgen_fd();
	if (r < 0) {
		fprintf(stderr, "event_loop: %s\n", vmgen_strerror(r));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	/* Other sources of events (sockets, timers) would join here. */
	ev.data.fd = fd;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("event_loop: epoll");
		return 1;
	}
	printf("ready generation %" PRId64 "\n", vmgen_generation());
	fflush(stdout);

	while (callbacks < steps) {
		struct epoll_event got;

		if (epoll_wait(ep, &got, 1, -1) < 0)
			continue;	/* EINTR */
		if (got.data.fd == fd) {
			/* Readiness is a hint: dispatch runs what is due. */
			r = vmgen_dispatch();
			if (r < 0) {
				fprintf(stderr, "event_loop: dispatch: %s\n",
					vmgen_strerror(r));
				return 1;
			}
		}
	}
	close(ep);
	return 0;
}
