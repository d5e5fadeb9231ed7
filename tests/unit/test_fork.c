/* SPDX-License-Identifier: MIT */
/*
 * Fork (DESIGN §3 fork detection, §5 "Transactions", "Reseed before use",
 * "Eager mode" restart in a child), in MADV_WIPEONFORK mode and in the
 * forced pthread_atfork fallback (VMGENID_FORK_DETECTION=atfork).
 */
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "helpers.h"

/* cmocka's asserts must not unwind inside a child: report and exit. */
#define CHILD_CHECK(cond)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "child %s:%d: %s\n", __FILE__,	\
				__LINE__, #cond);			\
			_exit(1);					\
		}							\
	} while (0)

static struct fake src;

struct forkrec {
	int calls;
	pid_t pid;
	struct vmgen_event ev;
};

static int on_fork(const struct vmgen_event *ev, void *p)
{
	struct forkrec *r = p;

	r->calls++;
	r->pid = getpid();
	r->ev = *ev;
	return 0;
}

static int setup_mode(const char *mode)
{
	reset_setup(NULL);
	if (mode)
		setenv("VMGENID_FORK_DETECTION", mode, 1);
	fake_u32(&src, 0);
	assert_int_equal(vmgen_init(spec("file", &src), 0), 0);
	return 0;
}

static int setup_wipe(void **state)
{
	return setup_mode(NULL);
}

static int setup_atfork(void **state)
{
	return setup_mode("atfork");
}

static int teardown(void **state)
{
	vmgen__test_reset();
	fake_close(&src);
	return 0;
}

static void wait_child(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void mode_reported(void **state)
{
	const char *forced = getenv("VMGENID_FORK_DETECTION");

	if (forced)
		assert_int_equal(vmgen_fork_mode(), VMGEN_FORK_ATFORK);
	else
		/* Linux >= 4.14 natively; ATFORK under emulators. */
		assert_true(vmgen_fork_mode() == VMGEN_FORK_WIPEONFORK ||
			    vmgen_fork_mode() == VMGEN_FORK_ATFORK);
}

static void child_sees_new_generation(void **state)
{
	struct forkrec r = { 0 };
	struct vmgen_txn t0, t;
	int fd = vmgen_fd();
	pid_t pid;

	assert_true(vmgen_callback_register(on_fork, &r, VMGEN_EVENT_FORK) > 0);
	assert_int_equal(vmgen_txn_begin(&t0), 0);
	assert_int_equal(t0.generation, 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* In flight across the fork: must not commit here. */
		CHILD_CHECK(!vmgen_txn_commit(&t0));
		CHILD_CHECK(r.calls == 0);
		CHILD_CHECK(vmgen_txn_begin(&t) == 0);
		/* The fork callback ran before begin returned. */
		CHILD_CHECK(r.calls == 1);
		CHILD_CHECK(r.pid == getpid());
		CHILD_CHECK(r.ev.reasons == VMGEN_EVENT_FORK);
		CHILD_CHECK(r.ev.old_generation == 1);
		CHILD_CHECK(r.ev.new_generation == 2);
		CHILD_CHECK(t.generation == 2);
		CHILD_CHECK(vmgen_txn_commit(&t));
		CHILD_CHECK(!vmgen_txn_commit(&t0));
		CHILD_CHECK(vmgen_generation() == 2);
		CHILD_CHECK(r.calls == 1);
		/* Same fd number, but the child's own epoll set. */
		CHILD_CHECK(vmgen_fd() == fd);
		/* A grandchild steps again. */
		pid = fork();
		if (pid == 0) {
			CHILD_CHECK(vmgen_generation() == 3);
			CHILD_CHECK(r.calls == 2);
			_exit(0);
		}
		CHILD_CHECK(pid > 0);
		{
			int st;

			CHILD_CHECK(waitpid(pid, &st, 0) == pid);
			CHILD_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
		_exit(0);
	}
	wait_child(pid);
	assert_true(vmgen_txn_commit(&t0));
	assert_int_equal(r.calls, 0);
	assert_int_equal(vmgen_generation(), 1);
}

/* A VM change and a fork seen together: one step, both reasons. */
static void fork_and_change_coalesce(void **state)
{
	struct forkrec r = { 0 };
	pid_t pid;

	assert_true(vmgen_callback_register(on_fork, &r, VMGEN_EVENT_ANY) > 0);
	assert_int_equal(vmgen_generation(), 1);
	fake_u32_write(&src, 7);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		CHILD_CHECK(vmgen_generation() == 2);
		CHILD_CHECK(r.calls == 1);
		CHILD_CHECK(r.ev.reasons ==
			    (VMGEN_EVENT_FORK | VMGEN_EVENT_VM));
		_exit(0);
	}
	wait_child(pid);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.ev.reasons, VMGEN_EVENT_VM);
}

/* A failing fork callback blocks the child's commits, not the parent's. */
static int fail_in_child(const struct vmgen_event *ev, void *p)
{
	return (ev->reasons & VMGEN_EVENT_FORK) ? -ECANCELED : 0;
}

static void child_fails_closed(void **state)
{
	struct vmgen_txn t;
	pid_t pid;

	assert_true(vmgen_callback_register(fail_in_child, NULL,
					    VMGEN_EVENT_ANY) > 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		CHILD_CHECK(vmgen_txn_begin(&t) == -ECANCELED);
		CHILD_CHECK(!vmgen_txn_commit(&t));
		_exit(0);
	}
	wait_child(pid);
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_true(vmgen_txn_commit(&t));
}

/* The child restarts a watcher that ran in the parent, when first used. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static void child_restarts_watcher(void **state)
{
	pid_t pid;

#ifdef UNDER_TSAN
	/*
	 * ThreadSanitizer cannot follow a thread started in the child of a
	 * threaded parent ("dup thread with used id"): every other build
	 * runs this case.
	 */
	fprintf(stderr, "skip: TSan does not support threads after fork\n");
	skip();
#endif
	assert_int_equal(vmgen_watcher_start(), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int64_t g = vmgen_generation();

		CHILD_CHECK(g == 2);
		CHILD_CHECK(vmgen_watcher_start() == -EALREADY);
		/* The child's watcher sees a change by itself. */
		CHILD_CHECK(vmgen_trigger(0) == 0);
		CHILD_CHECK(vmgen_wait((uint64_t)g, 10000) == 3);
		CHILD_CHECK(vmgen_watcher_stop() == 0);
		CHILD_CHECK(vmgen_watcher_stop() == -ESRCH);
		_exit(0);
	}
	wait_child(pid);
	assert_int_equal(vmgen_watcher_stop(), 0);
	/* The child's trigger moved the shared file: the parent steps too. */
	assert_int_equal(vmgen_generation(), 2);
}

/*
 * A raw clone runs no atfork handler: the getpid() check of the slow path
 * still finds it.
 */
static void raw_clone_detected(void **state)
{
	pid_t pid;

	assert_int_equal(vmgen_generation(), 1);
	pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL,
			     NULL, NULL);
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Only raw syscalls here: no atfork handler ran. */
		syscall(SYS_exit_group, vmgen_generation() == 2 ? 0 : 1);
	}
	wait_child(pid);
	assert_int_equal(vmgen_generation(), 1);
}

/*
 * Acknowledge (DESIGN §5): after a successful dispatch the library writes
 * the handled value to the sysgenid fd, and not after a failed one. A
 * character device stands in for /dev/sysgenid: /dev/zero maps, polls and
 * takes writes (it never changes, so a fork makes the step).
 */
static int fail_once(const struct vmgen_event *ev, void *p)
{
	int *n = p;

	return (*n)++ == 0 ? -EIO : 0;
}

static void ack_after_dispatch(void **state)
{
	int fails = 0;
	pid_t pid;

	vmgen__test_reset();
	if (access("/dev/zero", R_OK | W_OK) != 0)
		skip();
	assert_int_equal(vmgen_init("sysgenid:/dev/zero", 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_SYSGENID);
	assert_int_equal(vmgen_tracking_enable(), -ENOTTY);
	assert_true(vmgen_callback_register(fail_once, &fails,
					    VMGEN_EVENT_FORK) > 0);
	assert_int_equal(vmgen_g.ack_attempts, 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		CHILD_CHECK(vmgen_generation() == -EIO);
		CHILD_CHECK(vmgen_g.ack_attempts == 0);
		CHILD_CHECK(vmgen_generation() == 2);
		CHILD_CHECK(vmgen_g.ack_attempts == 1);
		_exit(0);
	}
	wait_child(pid);
	assert_int_equal(vmgen_g.ack_attempts, 0);
}

/*
 * A VM callback that forks, once: the child returns into the parent's
 * dispatch. (The child's own step still carries the VM reason, so the
 * callback runs there again.)
 */
static pid_t forked_in_callback = -1;

static int fork_inside(const struct vmgen_event *ev, void *p)
{
	if (forked_in_callback == -1)
		forked_in_callback = fork();
	return forked_in_callback < 0 ? -errno : 0;
}

static void fork_inside_callback(void **state)
{
	struct forkrec r = { 0 };
	struct vmgen_txn t;
	int ret;

	forked_in_callback = -1;
	assert_true(vmgen_callback_register(fork_inside, NULL,
					    VMGEN_EVENT_VM) > 0);
	assert_true(vmgen_callback_register(on_fork, &r, VMGEN_EVENT_FORK) > 0);
	assert_int_equal(vmgen_generation(), 1);
	fake_u32_write(&src, 1);
	/* Both processes come back from this dispatch. */
	ret = vmgen_txn_begin(&t);
	if (forked_in_callback == 0) {
		/*
		 * The child must not publish the parent's step as its own:
		 * its fork callback runs before its begin returns.
		 */
		CHILD_CHECK(ret == 0);
		CHILD_CHECK(r.calls == 1);
		CHILD_CHECK(r.pid == getpid());
		CHILD_CHECK(t.generation == 3);
		CHILD_CHECK(vmgen_txn_commit(&t));
		_exit(0);
	}
	assert_int_equal(ret, 0);
	assert_true(forked_in_callback > 0);
	wait_child(forked_in_callback);
	assert_int_equal(t.generation, 2);
	assert_int_equal(r.calls, 0);
	assert_true(vmgen_txn_commit(&t));
}

#define TW(fn) cmocka_unit_test_setup_teardown(fn, setup_wipe, teardown)
#define TA(fn) cmocka_unit_test_setup_teardown(fn, setup_atfork, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TW(mode_reported),
		TW(child_sees_new_generation),
		TW(fork_and_change_coalesce),
		TW(child_fails_closed),
		TW(child_restarts_watcher),
		TW(raw_clone_detected),
		TW(ack_after_dispatch),
		TW(fork_inside_callback),
		TA(mode_reported),
		TA(child_sees_new_generation),
		TA(fork_and_change_coalesce),
		TA(child_fails_closed),
		TA(child_restarts_watcher),
		TA(raw_clone_detected),
		TA(fork_inside_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
