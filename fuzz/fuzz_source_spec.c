/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the VMGENID_SOURCE parser and everything it leads to: the spec
 * goes to vmgen_init(), which parses it and opens, validates and maps the
 * source it names; then the state is torn down for the next input. Paths
 * are confined to a sandbox (sandbox.h) holding a few files that a spec
 * can name: "counter" (a valid file source), "page" (a valid VMClock
 * page), "short" (2 bytes), "empty", the directory "dir" and the FIFO
 * "fifo", which must be refused, not waited on. A leading '!' asks for
 * watcher tracking, which only sysgenid supports.
 *
 * A hang is a failure too: a signal, one second into vmgen_init(),
 * interrupts any blocking system call (none on these files should block),
 * so that a blocked open() ends as -EINTR and fails the check.
 *
 * Checked beyond "no crash": the result is 0 or a negative errno, and a
 * source that initialised works (a generation >= 1, a txn that commits).
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmgenid-internal.h"
#include "fuzz.h"
#include "sandbox.h"

static timer_t hang_timer;

static void on_hang_signal(int sig)
{
	(void)sig;	/* only here to interrupt a blocked system call */
}

/* A one-shot signal to this thread after @seconds; 0 disarms. */
static void hang_timer_arm(time_t seconds)
{
	struct itimerspec its = { .it_value = { .tv_sec = seconds } };

	timer_settime(hang_timer, 0, &its, NULL);
}

static void hang_timer_setup(void)
{
	/* No SA_RESTART: the point is to end the blocked call. */
	struct sigaction sa = { .sa_handler = on_hang_signal };
	struct sigevent sev = {
		.sigev_notify = SIGEV_THREAD_ID,
		.sigev_signo = SIGRTMIN + 1,
	};

	sev._sigev_un._tid = gettid();
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN + 1, &sa, NULL) < 0 ||
	    timer_create(CLOCK_MONOTONIC, &sev, &hang_timer) < 0) {
		perror("hang timer");
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static unsigned char page[4096];
	uint32_t counter = 7, magic = VMCLOCK_MAGIC, size = 4096;
	uint64_t flags = VMCLOCK_FLAG_VM_GEN_COUNTER, gen = 42;
	uint16_t version = VMCLOCK_VERSION;

	/* No probing clone per input: it is the same answer every time. */
	setenv("VMGENID_FORK_DETECTION", "atfork", 1);
	/*
	 * Nor a wait for a source under auto on a VM host: its thread would
	 * outlive the teardown below, and its sysfs scan (opendir, which the
	 * sandbox does not confine) is the same answer every time too.
	 */
	vmgen_probe_sysfs = "/nonexistent";
	hang_timer_setup();
	memcpy(page + VMCLOCK_OFF_MAGIC, &magic, sizeof(magic));
	memcpy(page + VMCLOCK_OFF_SIZE, &size, sizeof(size));
	memcpy(page + VMCLOCK_OFF_VERSION, &version, sizeof(version));
	memcpy(page + VMCLOCK_OFF_FLAGS, &flags, sizeof(flags));
	memcpy(page + VMCLOCK_OFF_GEN, &gen, sizeof(gen));
	sandbox_write("counter", &counter, sizeof(counter));
	sandbox_write("page", page, sizeof(page));
	sandbox_write("short", &counter, 2);
	sandbox_write("empty", NULL, 0);
	mkdirat(sandbox_dir(), "dir", 0700);
	mkfifoat(sandbox_dir(), "fifo", 0600);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned int flags = 0;
	char spec[512];
	int ret;

	if (size >= sizeof(spec))
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	if (spec[0] == '!')
		flags = VMGEN_INIT_TRACKING;

	sandbox_arm(1);
	hang_timer_arm(1);
	ret = vmgen_init(spec + (flags ? 1 : 0), flags);
	hang_timer_arm(0);
	sandbox_arm(0);
	FUZZ_CHECK(ret != -EINTR);	/* it blocked, see above */
	FUZZ_CHECK(ret <= 0 && ret > -4096);
	if (ret == 0) {
		struct vmgen_txn txn;
		int kind = vmgen_source();

		FUZZ_CHECK(kind >= 0 && kind < VMGEN_SOURCE_COUNT);
		FUZZ_CHECK(vmgen_source_name(kind) != NULL);
		FUZZ_CHECK(vmgen_generation() >= 1);
		FUZZ_CHECK(vmgen_txn_begin(&txn) == 0);
		FUZZ_CHECK(vmgen_txn_commit(&txn));
	}
	vmgen_lock();
	vmgen_teardown_locked();
	vmgen_unlock();
	return 0;
}
