/* SPDX-License-Identifier: MIT */
/*
 * Under auto, none is not forever: a source that appears after
 * initialisation, on a machine with a VM device, is adopted with one
 * generation step. A fake sysfs says whether a device exists; a file that
 * is created after init stands in for the device node.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

/* Generous: the machine is shared; no test asserts on time. */
#define SWITCH_WAIT_MS 20000

static char root[64];		/* fake sysfs, and the counter's place */
static char sysfs_dev[128];	/* root/sys with a device, or without */
static char sysfs_bare[128];
static char counter[128];	/* does not exist at init */

struct seen {
	int calls;
	struct vmgen_event last;
	pthread_t thread;
};

static int record(const struct vmgen_event *ev, void *arg)
{
	struct seen *s = arg;

	s->last = *ev;
	s->thread = pthread_self();
	/* last: the test reads the rest once it sees the count */
	__atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void make_counter(uint32_t value)
{
	int fd = open(counter, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char pad[4096] = { 0 };

	assert_true(fd >= 0);
	memcpy(pad, &value, sizeof(value));
	assert_int_equal(write(fd, pad, sizeof(pad)), sizeof(pad));
	assert_int_equal(close(fd), 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Until @done() or SWITCH_WAIT_MS; the caller asserts on the result. */
static bool wait_for(bool (*done)(void))
{
	int i;

	for (i = 0; i < SWITCH_WAIT_MS / 10; i++) {
		if (done())
			return true;
		sleep_ms(10);
	}
	return done();
}

static bool on_file(void)
{
	return vmgen_source() == VMGEN_SOURCE_FILE;
}

static bool generation_moved(void)
{
	return vmgen_generation() > 1;
}

static bool maps_has(const char *needle)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static unsigned long locked_ulong(const unsigned long *p)
{
	unsigned long v;

	vmgen_lock();
	v = *p;
	vmgen_unlock();
	return v;
}

static int setup(void **state)
{
	char dir[192];

	reset_setup(state);
	snprintf(root, sizeof(root), "/tmp/vmgen-reprobe-XXXXXX");
	assert_non_null(mkdtemp(root));
	snprintf(sysfs_dev, sizeof(sysfs_dev), "%s/sys", root);
	snprintf(sysfs_bare, sizeof(sysfs_bare), "%s/bare", root);
	assert_int_equal(mkdir(sysfs_dev, 0755), 0);
	assert_int_equal(mkdir(sysfs_bare, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/bus", sysfs_dev);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/bus/acpi", sysfs_dev);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/bus/acpi/devices", sysfs_dev);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/bus/acpi/devices/QEMUVGID:00",
		 sysfs_dev);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(dir, sizeof(dir),
		 "%s/bus/acpi/devices/QEMUVGID:00/modalias", sysfs_dev);
	write_file(dir, "acpi:QEMUVGID:VM_GEN_COUNTER:\n");
	snprintf(counter, sizeof(counter), "%s/counter", root);
	vmgen__test_reprobe(sysfs_dev, VMGEN_SOURCE_FILE, counter);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	reset_teardown(state);
	vmgen__test_reprobe(NULL, 0, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

#define TR(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* The source appears: one VM step, callbacks once, the old txn fails. */
static void test_appears_after_init(void **state)
{
	struct vmgen_txn before, after;
	struct seen seen = { 0 };
	const char *why = NULL;
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_NONE);
	assert_int_equal(vmgen_source_race_free(&why), 0);
	assert_non_null(strstr(why, "waiting for a source"));
	assert_true(maps_has("libvmgenid:none-waiting"));
	assert_true(vmgen_callback_register(record, &seen,
					    VMGEN_EVENT_ANY) > 0);
	/* Watching costs the fast path nothing: it stays inline. */
	assert_int_equal(vmgen_txn_begin(&before), 0);
	assert_int_equal(before.generation, 1);
	assert_int_equal(__atomic_load_n(&vmgen__fast.kind, __ATOMIC_ACQUIRE),
			 VMGEN__FAST_WORDS);
	assert_true(vmgen_txn_commit(&before));

	make_counter(7);
	assert_true(wait_for(on_file));
	assert_false(vmgen_txn_commit(&before));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.last.reasons, VMGEN_EVENT_VM);
	assert_int_equal(seen.last.old_generation, 1);
	assert_int_equal(seen.last.new_generation, 2);
	assert_int_equal(locked_ulong(&vmgen_g.switches), 1);
	assert_int_equal(source_gen(), 7);
	assert_string_equal(vmgen_source_path(), counter);
	assert_true(maps_has("libvmgenid:file"));
	assert_false(maps_has("libvmgenid:none"));

	/* Then it is the source like any other: a change is one step. */
	assert_int_equal(vmgen_txn_begin(&after), 0);
	assert_true(vmgen_txn_commit(&after));
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(vmgen_generation(), 3);
	assert_false(vmgen_txn_commit(&after));
	assert_int_equal(seen.calls, 2);
	/* No more looking once it is in use. */
	sleep_ms(3 * VMGEN_REPROBE_MS);
	vmgen_lock();
	assert_false(vmgen_g.watching);
	assert_false(vmgen_g.probe_running);
	vmgen_unlock();
}

/* A stand-in for /dev/sysgenid: the sysgenid back-end, no stale reason. */
static void test_sysgenid_appears(void **state)
{
	struct seen seen = { 0 };
	(void)state;

	vmgen__test_reprobe(sysfs_dev, VMGEN_SOURCE_SYSGENID, counter);
	assert_int_equal(vmgen_init("auto", 0), 0);
	/* auto found no /dev/sysgenid at init (none on a build machine) */
	if (vmgen_source() != VMGEN_SOURCE_NONE)
		skip();
	assert_non_null(vmgen_source_rejected(VMGEN_SOURCE_SYSGENID));
	assert_true(vmgen_callback_register(record, &seen, VMGEN_EVENT_VM) > 0);
	make_counter(4);
	assert_true(wait_for(generation_moved));
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_SYSGENID);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(seen.calls, 1);
	assert_null(vmgen_source_rejected(VMGEN_SOURCE_SYSGENID));
	assert_true(maps_has("libvmgenid:sysgenid"));
}

/* 0.1's inline code (tests/unit/test_abi.c has the whole of it). */
static uint64_t fast_generation_0_1(void)
{
	const struct vmgen__fastpath *fp;
	const struct vmgen__local *local;
	uint64_t gen, seen, now, again;

	fp = __atomic_load_n(&vmgen__fastpath, __ATOMIC_ACQUIRE);
	if (fp == NULL)
		return 0;
	local = fp->local;
	gen = __atomic_load_n(&local->generation, __ATOMIC_ACQUIRE);
	seen = __atomic_load_n(&local->source_seen, __ATOMIC_ACQUIRE);
	now = __atomic_load_n((const uint32_t *)fp->counter, __ATOMIC_ACQUIRE);
	again = __atomic_load_n(&local->generation, __ATOMIC_RELAXED);
	if (gen != again || seen != now)
		return 0;
	return gen;
}

/*
 * Binaries built against 0.1 read the VMGENID_1.0 struct with plain loads
 * and no NULL check, and may be doing so while the switch releases none:
 * releasing a source never leaves a NULL in it. (A race test cannot hit
 * that window reliably: this checks the invariant itself.)
 */
static void test_old_binaries_across_switch(void **state)
{
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_int_equal(fast_generation_0_1(), 1);
	vmgen_lock();
	vmgen_source_release();
	assert_non_null(vmgen_g.fastpath.counter);
	assert_non_null(vmgen_g.fastpath.local);
	assert_int_equal(vmgen_g.fastpath.counter_kind, VMGEN__COUNTER_U32);
	vmgen_unlock();
	/* what an old binary reads meanwhile: a valid struct */
	(void)fast_generation_0_1();
	vmgen_lock();
	assert_int_equal(vmgen_none_ops.open(NULL, false), 0);
	vmgen_unlock();
	make_counter(5);
	assert_true(wait_for(on_file));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(fast_generation_0_1(), 2);
}

/* No VM device: plain none, never a probe, never a thread. */
static void test_no_device(void **state)
{
	(void)state;

	vmgen__test_reprobe(sysfs_bare, VMGEN_SOURCE_FILE, counter);
	assert_int_equal(vmgen_init("auto", 0), 0);
	make_counter(7);
	sleep_ms(3 * VMGEN_REPROBE_MS);
	assert_int_equal(vmgen_generation(), 1);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_NONE);
	assert_int_equal(locked_ulong(&vmgen_g.probes), 0);
	vmgen_lock();
	assert_false(vmgen_g.watching);
	assert_false(vmgen_g.probe_running);
	vmgen_unlock();
	assert_true(maps_has("libvmgenid:none"));
	assert_false(maps_has("libvmgenid:none-waiting"));
}

/* none that the caller or VMGENID_SOURCE asked for is kept. */
static void test_forced_none(void **state)
{
	int round;
	(void)state;

	for (round = 0; round < 2; round++) {
		if (round == 0) {
			assert_int_equal(vmgen_init("none", 0), 0);
		} else {
			setenv("VMGENID_SOURCE", "none", 1);
			assert_int_equal(vmgen_init(NULL, 0), 0);
		}
		make_counter(7);
		sleep_ms(3 * VMGEN_REPROBE_MS);
		assert_int_equal(vmgen_generation(), 1);
		assert_int_equal(vmgen_source(), VMGEN_SOURCE_NONE);
		assert_int_equal(locked_ulong(&vmgen_g.probes), 0);
		assert_int_equal(unlink(counter), 0);
		vmgen__test_reset();
	}
}

/* A candidate that cannot be used: no step, and no more waiting. */
static void test_unusable_candidate(void **state)
{
	struct vmgen_txn txn;
	(void)state;

	/* 4 bytes pass the first look; a VMClock page needs 112. */
	vmgen__test_reprobe(sysfs_dev, VMGEN_SOURCE_VMCLOCK, counter);
	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_true(vmgen_fd() >= 0);
	assert_int_equal(vmgen_txn_begin(&txn), 0);
	make_counter(7);
	assert_int_equal(truncate(counter, 4), 0);
	vmgen_lock();
	while (vmgen_g.watching) {
		vmgen_unlock();
		sleep_ms(10);
		vmgen_lock();
	}
	vmgen_unlock();
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_NONE);
	assert_int_equal(vmgen_generation(), 1);
	assert_true(vmgen_txn_commit(&txn));
	assert_int_equal(locked_ulong(&vmgen_g.switches), 0);
	assert_non_null(vmgen_source_rejected(VMGEN_SOURCE_VMCLOCK));
	assert_true(maps_has("libvmgenid:none"));
	assert_false(maps_has("libvmgenid:none-waiting"));
	/* none for good: vmgen_fd() no longer ticks */
	vmgen_lock();
	assert_int_equal(vmgen_g.notify, VMGEN_NOTIFY_NONE);
	assert_int_equal(vmgen_g.ifd, -1);
	vmgen_unlock();
	assert_int_equal(vmgen_wait(1, 3 * VMGEN_REPROBE_MS), -ETIMEDOUT);
}

/* vmgen_wait() wakes while waiting and returns the switch's step. */
static void test_wait_notices(void **state)
{
	struct seen seen = { 0 };
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_true(vmgen_callback_register(record, &seen, VMGEN_EVENT_VM) > 0);
	/* Only wait's own tick may notice. */
	vmgen_probe_stop(false);
	assert_int_equal(vmgen_wait(1, 3 * VMGEN_REPROBE_MS), -ETIMEDOUT);
	make_counter(3);
	assert_int_equal(vmgen_wait(1, SWITCH_WAIT_MS), 2);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
	assert_int_equal(seen.calls, 1);
	assert_true(pthread_equal(seen.thread, pthread_self()));
}

/* vmgen_fd() ticks while waiting; after the switch it follows the file. */
static void test_fd_notices(void **state)
{
	struct pollfd pfd = { .events = POLLIN };
	int64_t gen = 1;
	int i, ret;
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	vmgen_probe_stop(false);
	pfd.fd = vmgen_fd();
	assert_true(pfd.fd >= 0);
	make_counter(3);
	for (i = 0; i < SWITCH_WAIT_MS / VMGEN_REPROBE_MS && gen == 1; i++) {
		if (poll(&pfd, 1, SWITCH_WAIT_MS) > 0) {
			ret = vmgen_dispatch();
			assert_true(ret >= 0);
		}
		gen = vmgen_generation();
	}
	assert_int_equal(gen, 2);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
	assert_int_equal(vmgen_fd(), pfd.fd);
	/* The same fd now wakes for the file: a write is a step. */
	while (poll(&pfd, 1, 0) > 0 && vmgen_dispatch() > 0)
		;
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(poll(&pfd, 1, SWITCH_WAIT_MS), 1);
	assert_int_equal(vmgen_dispatch(), 1);
	assert_int_equal(vmgen_generation(), 3);
}

/* A process that never sees the node (PrivateDevices=yes) slows down. */
static void test_backoff(void **state)
{
	static const struct { int64_t waited_ms; int interval; } steps[] = {
		{ 0, VMGEN_REPROBE_MS },
		{ 2 * 60 * 1000, VMGEN_REPROBE_SLOW_MS },
		{ 11 * 60 * 1000, VMGEN_REPROBE_SLOWEST_MS },
	};
	size_t i;
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_true(vmgen_fd() >= 0);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		vmgen_lock();
		vmgen_g.watch_since_ms -= steps[i].waited_ms;
		vmgen_g.next_probe_ms = 0;
		vmgen_unlock();
		assert_int_equal(vmgen_generation(), 1);
		vmgen_lock();
		assert_int_equal(vmgen_reprobe_interval_locked(),
				 steps[i].interval);
		assert_int_equal(vmgen_g.probe_tick_ms, steps[i].interval);
		assert_true(vmgen_g.watching);
		vmgen_unlock();
	}
	/* Slow as it is, it still switches. */
	make_counter(3);
	assert_true(wait_for(on_file));
	assert_int_equal(vmgen_generation(), 2);
}

/* The watcher thread notices without the probe thread. */
static void test_watcher_notices(void **state)
{
	struct seen seen = { 0 };
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_true(vmgen_callback_register(record, &seen, VMGEN_EVENT_VM) > 0);
	vmgen_probe_stop(false);
	assert_int_equal(vmgen_watcher_start(), 0);
	make_counter(3);
	for (int i = 0; i < SWITCH_WAIT_MS / 10 &&
	     !__atomic_load_n(&seen.calls, __ATOMIC_SEQ_CST); i++)
		sleep_ms(10);
	assert_int_equal(__atomic_load_n(&seen.calls, __ATOMIC_SEQ_CST), 1);
	assert_false(pthread_equal(seen.thread, pthread_self()));
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(vmgen_watcher_stop(), 0);
}

/* A fork child waits too, with its own thread, and steps once. */
static void test_fork_child(void **state)
{
	struct seen seen = { 0 };
	int status = -1;
	pid_t pid;
	(void)state;

	assert_int_equal(vmgen_init("auto", 0), 0);
	assert_true(vmgen_callback_register(record, &seen,
					    VMGEN_EVENT_ANY) > 0);
#ifdef __SANITIZE_THREAD__
	/*
	 * ThreadSanitizer takes a thread the child creates on the stack of
	 * one that ran in the parent for that one ("dup thread"): let the
	 * parent's end first. The child starts its own all the same.
	 */
	vmgen_probe_stop(false);
#endif
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vmgen_txn txn;

		/* the fork step */
		if (vmgen_txn_begin(&txn) || txn.generation != 2 ||
		    seen.calls != 1 || seen.last.reasons != VMGEN_EVENT_FORK)
			_exit(10);
		make_counter(9);
		if (!wait_for(on_file))
			_exit(11);
		if (vmgen_txn_commit(&txn))
			_exit(12);
		if (vmgen_generation() != 3 || seen.calls != 2 ||
		    seen.last.reasons != VMGEN_EVENT_VM)
			_exit(13);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);	/* else: which check */
	/* The parent sees the same file appear, on its own. */
	assert_true(wait_for(generation_moved));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(seen.calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TR(test_appears_after_init),
		TR(test_sysgenid_appears),
		TR(test_old_binaries_across_switch),
		TR(test_no_device),
		TR(test_forced_none),
		TR(test_unusable_candidate),
		TR(test_wait_notices),
		TR(test_fd_notices),
		TR(test_watcher_notices),
		TR(test_backoff),
		TR(test_fork_child),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
