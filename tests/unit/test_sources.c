/* SPDX-License-Identifier: MIT */
/*
 * Sources (DESIGN §3): VMClock validation and seqcount reads, a file
 * standing in for sysgenid, the file source, the spec syntax.
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define VMC_OK_FLAGS VMCLOCK_FLAG_VM_GEN_COUNTER

/*
 * The VMClock reader yields between tries: counting the yields (each still
 * a real sched_yield) shows how many tries precede -EAGAIN.
 */
static unsigned long yields;

int sched_yield(void)
{
	__atomic_add_fetch(&yields, 1, __ATOMIC_RELAXED);
	return (int)syscall(SYS_sched_yield);
}

static void vmclock_valid(void **state)
{
	struct fake f;

	fake_vmclock(&f, VMCLOCK_MAGIC, 4096, VMC_OK_FLAGS, 0x1234);
	assert_int_equal(vmgen_init(spec("vmclock", &f), 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_VMCLOCK);
	assert_string_equal(vmgen_source_path(), f.path);
	assert_int_equal(source_gen(), 0x1234);
	assert_int_equal(vmgen_generation(), 1);
	/* Non-repeating, not increasing: a smaller value is a change too. */
	vmclock_set_gen(&f, 7);
	assert_int_equal(source_gen(), 7);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(vmgen_generation(), 2);
	/* All 64 bits reach the caller. */
	vmclock_set_gen(&f, UINT64_C(0x8000000000000007));
	{
		uint64_t v = 0;

		assert_int_equal(vmgen_source_generation(&v), 0);
		assert_true(v == UINT64_C(0x8000000000000007));
		assert_int_equal(vmgen_source_generation(NULL), -EINVAL);
	}
	assert_int_equal(vmgen_generation(), 3);
	vmgen__test_reset();
	fake_close(&f);
}

static void vmclock_rejects(void **state)
{
	/* size 0 below: one byte more than the page the library maps */
	static const struct {
		uint32_t magic, size;
		uint16_t version;
		uint64_t flags;
		const char *reason;
	} cases[] = {
		{ 0x12345678, 4096, 1, VMC_OK_FLAGS, "wrong magic" },
		{ VMCLOCK_MAGIC, 104, 1, VMC_OK_FLAGS,
		  "too small (size < 112)" },
		{ VMCLOCK_MAGIC, 4096, 1, 0, "VM_GEN_COUNTER_PRESENT not set" },
		{ VMCLOCK_MAGIC, 4096, 1, VMCLOCK_FLAG_NOTIFICATION,
		  "VM_GEN_COUNTER_PRESENT not set" },
		/* As the kernel's vmclock_probe(): version 1 only... */
		{ VMCLOCK_MAGIC, 4096, 0, VMC_OK_FLAGS, "version is not 1" },
		{ VMCLOCK_MAGIC, 4096, 2, VMC_OK_FLAGS, "version is not 1" },
		{ VMCLOCK_MAGIC, 4096, 0x0101, VMC_OK_FLAGS,
		  "version is not 1" },
		/* ...and no size beyond what is mapped. */
		{ VMCLOCK_MAGIC, 0, 1, VMC_OK_FLAGS,
		  "size larger than the mapped page" },
		{ VMCLOCK_MAGIC, UINT32_MAX, 1, VMC_OK_FLAGS,
		  "size larger than the mapped page" },
	};
	uint32_t size;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;

		size = cases[i].size ? cases[i].size :
		       (uint32_t)sysconf(_SC_PAGESIZE) + 1;
		fake_vmclock(&f, cases[i].magic, size, cases[i].flags, 1);
		memcpy((char *)f.map + VMCLOCK_OFF_VERSION, &cases[i].version,
		       sizeof(cases[i].version));
		assert_int_equal(vmgen_init(spec("vmclock", &f), 0), -ENODEV);
		assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_VMCLOCK),
				    cases[i].reason);
		vmgen__test_reset();
		fake_close(&f);
	}
}

/* A stand-in file shorter than the VMClock structure. */
static void vmclock_short_file(void **state)
{
	struct fake f;

	fake_open(&f, 64);
	assert_int_equal(vmgen_init(spec("vmclock", &f), 0), -ENODEV);
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_VMCLOCK),
			    "too small (size < 112)");
	fake_close(&f);
}

static void vmclock_missing(void **state)
{
	assert_int_equal(vmgen_init("vmclock:/nonexistent/vmclock0", 0),
			 -ENOENT);
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_VMCLOCK),
			    "missing");
	/* A failed explicit init fails closed until an init succeeds. */
	assert_int_equal(vmgen_init("none", 0), 0);
}

/* The default path must be a character device, never a regular file. */
static void default_path_needs_chardev(void **state)
{
	assert_int_equal(vmgen_open_source(VMGEN_SOURCE_SYSGENID, "/etc/hostname",
					   false, false), -ENODEV);
	assert_string_equal(vmgen_g.rejected[VMGEN_SOURCE_SYSGENID],
			    "not a character device");
	assert_int_equal(vmgen_init("sysgenid:/dev/null", 0) < 0, 1);
}

/* Odd seqcount: the read waits (bounded) and gives -EAGAIN, then works. */
static void vmclock_odd_then_even(void **state)
{
	struct fake f;
	uint64_t v;

	fake_vmclock(&f, VMCLOCK_MAGIC, 4096, VMC_OK_FLAGS, 5);
	assert_int_equal(vmgen_init(spec("vmclock", &f), 0), 0);
	assert_int_equal(vmgen_generation(), 1);
	__atomic_store_n(vmclock_seq(&f), 3, __ATOMIC_RELEASE);
	/* The bound the man pages give: 1000 reads, a yield between two. */
	assert_int_equal(VMCLOCK_READ_TRIES, 1000);
	__atomic_store_n(&yields, 0, __ATOMIC_RELAXED);
	assert_int_equal(vmgen_vmclock_read(f.map, &v), -EAGAIN);
	assert_int_equal(__atomic_load_n(&yields, __ATOMIC_RELAXED),
			 VMCLOCK_READ_TRIES - 1);
	assert_int_equal(source_gen(), -EAGAIN);
	assert_int_equal(vmgen_generation(), -EAGAIN);
	{
		struct vmgen_txn t;

		assert_int_equal(vmgen_txn_begin(&t), -EAGAIN);
		assert_int_equal(t.generation, 0);
		assert_false(vmgen_txn_commit(&t));
	}
	__atomic_store_n(vmclock_gen(&f), 6, __ATOMIC_RELAXED);
	__atomic_store_n(vmclock_seq(&f), 4, __ATOMIC_RELEASE);
	assert_int_equal(vmgen_generation(), 2);
	vmgen__test_reset();
	fake_close(&f);
}

/* A writer thread holds the seqcount odd for a while, then completes. */
static void *slow_update_main(void *arg)
{
	struct fake *f = arg;
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	__atomic_store_n(vmclock_seq(f), 5, __ATOMIC_RELAXED);
	nanosleep(&ts, NULL);
	/* release: a reader that sees 77 sees the odd count before it */
	__atomic_store_n(vmclock_gen(f), 77, __ATOMIC_RELEASE);
	__atomic_store_n(vmclock_seq(f), 6, __ATOMIC_RELEASE);
	return NULL;
}

static void vmclock_writer_thread(void **state)
{
	struct fake f;
	pthread_t th;
	int64_t gen;
	int i;

	fake_vmclock(&f, VMCLOCK_MAGIC, 4096, VMC_OK_FLAGS, 5);
	__atomic_store_n(vmclock_seq(&f), 4, __ATOMIC_RELEASE);
	assert_int_equal(vmgen_init(spec("vmclock", &f), 0), 0);
	assert_int_equal(pthread_create(&th, NULL, slow_update_main, &f), 0);
	/* Bounded retries: every answer is either -EAGAIN or right. */
	for (i = 0; i < 1000000; i++) {
		gen = vmgen_generation();
		assert_true(gen == -EAGAIN || gen == 1 || gen == 2);
		if (gen == 2)
			break;
	}
	pthread_join(th, NULL);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(source_gen(), 77);
	vmgen__test_reset();
	fake_close(&f);
}

/*
 * A writer flips the seqcount around every update as fast as it can; each
 * update writes the two halves of the counter separately, so a reader that
 * ignored the seqcount would see a value never written (a torn read).
 */
struct flipper {
	struct fake *f;
	int stop;
	uint64_t written;
};

static void *flip_main(void *arg)
{
	struct flipper *fl = arg;
	uint32_t *seq = vmclock_seq(fl->f);
	uint32_t *half = (uint32_t *)vmclock_gen(fl->f);
	uint32_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
	uint64_t i;

	for (i = 1; !__atomic_load_n(&fl->stop, __ATOMIC_ACQUIRE); i++) {
		__atomic_store_n(seq, ++s, __ATOMIC_RELAXED);
		/*
		 * Both halves equal in every complete value. release: a
		 * reader that sees a new half sees the odd count before it.
		 */
		__atomic_store_n(&half[0], (uint32_t)i, __ATOMIC_RELEASE);
		if (i % 64 == 0)
			sched_yield();	/* widen the window: torn state */
		__atomic_store_n(&half[1], (uint32_t)i, __ATOMIC_RELEASE);
		__atomic_store_n(seq, ++s, __ATOMIC_RELEASE);
		if (i % 64 == 32)
			sched_yield();	/* and let readers in when whole */
	}
	fl->written = i;
	return NULL;
}

static void vmclock_torn_updates(void **state)
{
	struct fake f;
	struct flipper fl = { .f = &f };
	pthread_t th;
	int i, ok = 0;

	fake_vmclock(&f, VMCLOCK_MAGIC, 4096, VMC_OK_FLAGS, 0);
	assert_int_equal(vmgen_init(spec("vmclock", &f), 0), 0);
	assert_int_equal(pthread_create(&th, NULL, flip_main, &fl), 0);
	for (i = 0; i < 20000; i++) {
		uint64_t v;

		if (vmgen_vmclock_read(f.map, &v) == 0) {
			assert_int_equal((uint32_t)v, (uint32_t)(v >> 32));
			ok++;
		}
	}
	__atomic_store_n(&fl.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	assert_true(ok > 0);
	vmgen__test_reset();
	fake_close(&f);
}

static void sysgenid_standin(void **state)
{
	struct fake f;

	fake_u32(&f, 41);
	assert_int_equal(vmgen_init(spec("sysgenid", &f), 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_SYSGENID);
	assert_int_equal(source_gen(), 41);
	assert_int_equal(vmgen_generation(), 1);
	fake_u32_write(&f, 42);
	assert_int_equal(vmgen_generation(), 2);
	/* No ioctls on a file: passed through, not faked. */
	assert_int_equal(vmgen_trigger(0), -ENOTTY);
	assert_int_equal(vmgen_tracking_enable(), -ENOTTY);
	/* Acknowledging a stand-in would write into it: skipped. */
	assert_int_equal(vmgen_wait_watchers(10), -ENOTTY);
	assert_int_equal(vmgen_g.ack_attempts, 0);
	vmgen__test_reset();
	fake_close(&f);
}

static void tracking_flag_needs_device(void **state)
{
	struct fake f;

	fake_u32(&f, 1);
	assert_int_equal(vmgen_init(spec("sysgenid", &f), VMGEN_INIT_TRACKING),
			 -ENOTTY);
	assert_int_equal(vmgen_init(spec("file", &f), VMGEN_INIT_TRACKING),
			 -EOPNOTSUPP);
	assert_int_equal(vmgen_init(spec("file", &f), 0), 0);
	vmgen__test_reset();
	fake_close(&f);
}

/*
 * The file source's trigger at the top of the u32: cur + 1 wraps to 0 and
 * the counter becomes max(min, 0); the library's generation keeps going
 * up. As in the module's sysgenid_bump(), except that the module never
 * lands on the current value: trigger(0xffffffff) at 0xffffffff writes
 * the same value here (no change is seen): vmgen_trigger(3) BUGS says so.
 */
static void file_trigger_wraps(void **state)
{
	struct fake f;

	fake_u32(&f, 0xffffffff);
	assert_int_equal(vmgen_init(spec("file", &f), 0), 0);
	assert_int_equal(vmgen_generation(), 1);
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(source_gen(), 0);
	assert_int_equal(vmgen_generation(), 2);
	fake_u32_write(&f, 0xffffffff);
	assert_int_equal(vmgen_generation(), 3);
	assert_int_equal(vmgen_trigger(7), 0);
	assert_int_equal(source_gen(), 7);
	assert_int_equal(vmgen_generation(), 4);
	fake_u32_write(&f, 0xffffffff);
	assert_int_equal(vmgen_generation(), 5);
	assert_int_equal(vmgen_trigger(0xffffffff), 0);
	assert_int_equal(source_gen(), 0);
	assert_int_equal(vmgen_generation(), 6);
	vmgen__test_reset();
	fake_close(&f);
}

static void sysgenid_short_file(void **state)
{
	struct fake f;

	fake_open(&f, 2);
	assert_int_equal(vmgen_init(spec("sysgenid", &f), 0), -ENODEV);
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_SYSGENID),
			    "too small (< 4 bytes)");
	fake_close(&f);
}

static void file_source(void **state)
{
	struct fake f;

	fake_u32(&f, 0);
	assert_int_equal(vmgen_init(spec("file", &f), 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
	assert_int_equal(vmgen_generation(), 1);
	assert_int_equal(vmgen_trigger(0), 0);
	assert_int_equal(source_gen(), 1);
	assert_int_equal(vmgen_trigger(100), 0);
	assert_int_equal(source_gen(), 100);
	assert_int_equal(vmgen_trigger(5), 0);	/* max(min, cur + 1) */
	assert_int_equal(source_gen(), 101);
	/* Three changes seen at once: one step. */
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(vmgen_tracking_enable(), -EOPNOTSUPP);
	assert_int_equal(vmgen_wait_watchers(0), -EOPNOTSUPP);
	vmgen__test_reset();
	fake_close(&f);
}

static void file_needs_regular(void **state)
{
	assert_int_equal(vmgen_init("file:/dev/null", 0), -ENODEV);
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_FILE),
			    "not a regular file");
}

/* A FIFO put where a source should be: rejected, without blocking. */
static void fifo_rejected(void **state)
{
	char dir[] = "/tmp/vmgenid-fifo-XXXXXX", path[64], spec_[80];
	static const char *const kinds[] = { "file", "sysgenid", "vmclock" };
	size_t i;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	for (i = 0; i < 3; i++) {
		snprintf(spec_, sizeof(spec_), "%s:%s", kinds[i], path);
		assert_int_equal(vmgen_init(spec_, 0), -ENODEV);
	}
	unlink(path);
	rmdir(dir);
}

/* How many inotify instances this process holds. */
static int inotify_fds(void)
{
	char link[300], target[64];
	struct dirent *d;
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;
	ssize_t len;

	assert_non_null(dir);
	while ((d = readdir(dir))) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", d->d_name);
		len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		n += strcmp(target, "anon_inode:inotify") == 0;
	}
	closedir(dir);
	return n;
}

/*
 * Begin and commit need no notification: the inotify instance (128 per
 * user) is made only for vmgen_fd(), vmgen_wait() and the watcher.
 */
static void notification_is_lazy(void **state)
{
	struct vmgen_txn t;
	struct fake f;
	int before = inotify_fds();

	fake_u32(&f, 0);
	assert_int_equal(vmgen_init(spec("file", &f), 0), 0);
	assert_int_equal(vmgen_txn_begin(&t), 0);
	fake_u32_write(&f, 1);
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(inotify_fds(), before);
	assert_true(vmgen_fd() >= 0);
	assert_int_equal(inotify_fds(), before + 1);
	/* Made once: the fd stays the same. */
	assert_int_equal(vmgen_fd(), vmgen_fd());
	assert_int_equal(inotify_fds(), before + 1);
	vmgen__test_reset();
	fake_close(&f);
}

static void none_source(void **state)
{
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_NONE);
	assert_null(vmgen_source_path());
	assert_int_equal(source_gen(), 0);
	assert_int_equal(vmgen_generation(), 1);
	assert_int_equal(vmgen_trigger(1), -EOPNOTSUPP);
	assert_int_equal(vmgen_tracking_disable(), -EOPNOTSUPP);
	assert_int_equal(vmgen_init("none", 0), -EALREADY);
}

/* auto never fails: missing devices are a state, not an error. */
static void auto_source(void **state)
{
	int kind;

	assert_int_equal(vmgen_init("auto", 0), 0);
	kind = vmgen_source();
	assert_true(kind >= 0 && kind < VMGEN_SOURCE_COUNT);
	if (kind == VMGEN_SOURCE_NONE) {
		assert_non_null(vmgen_source_rejected(VMGEN_SOURCE_VMCLOCK));
		assert_non_null(vmgen_source_rejected(VMGEN_SOURCE_SYSGENID));
	}
	assert_null(vmgen_source_rejected(VMGEN_SOURCE_FILE));
}

static void bad_specs(void **state)
{
	static const char *const bad[] = {
		"", "bogus", "file", "file:", "vmclock:", "sysgenid:",
		"none:x", "auto:", "VMCLOCK", " none",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vmgen_init(bad[i], 0), -EINVAL);
	assert_int_equal(vmgen_init("none", 1u << 7), -EINVAL);
	assert_int_equal(vmgen_init("none", VMGEN_INIT_TRACKING), -EOPNOTSUPP);
	assert_int_equal(vmgen_init("none", 0), 0);
}

/* A bad VMGENID_SOURCE fails lazily, and every call reports it. */
static void bad_env_is_sticky(void **state)
{
	struct vmgen_txn t = { 99 };

	setenv("VMGENID_SOURCE", "file:/nonexistent/counter", 1);
	assert_int_equal(vmgen_generation(), -ENOENT);
	assert_int_equal(vmgen_txn_begin(&t), -ENOENT);
	assert_int_equal(t.generation, 0);
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_callback_register((vmgen_callback_fn)1, NULL,
						 VMGEN_EVENT_VM), -ENOENT);
	assert_int_equal(vmgen_source(), -ENOENT);
	assert_null(vmgen_source_path());
	assert_string_equal(vmgen_source_rejected(VMGEN_SOURCE_FILE),
			    "missing");
	assert_int_equal(vmgen_fd(), -ENOENT);
	setenv("VMGENID_SOURCE", "bogus", 1);
	vmgen__test_reset();
	assert_int_equal(vmgen_generation(), -EINVAL);
	/* An explicit init may replace the failed lazy one. */
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_int_equal(vmgen_generation(), 1);
}

static void env_source(void **state)
{
	struct fake f;

	fake_u32(&f, 3);
	setenv("VMGENID_SOURCE", spec("file", &f), 1);
	assert_int_equal(vmgen_source(), VMGEN_SOURCE_FILE);
	assert_int_equal(vmgen_init(NULL, 0), -EALREADY);
	vmgen__test_reset();
	fake_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(vmclock_valid),
		T(vmclock_rejects),
		T(vmclock_short_file),
		T(vmclock_missing),
		T(default_path_needs_chardev),
		T(vmclock_odd_then_even),
		T(vmclock_writer_thread),
		T(vmclock_torn_updates),
		T(sysgenid_standin),
		T(sysgenid_short_file),
		T(tracking_flag_needs_device),
		T(file_source),
		T(file_trigger_wraps),
		T(file_needs_regular),
		T(fifo_rejected),
		T(notification_is_lazy),
		T(none_source),
		T(auto_source),
		T(bad_specs),
		T(bad_env_is_sticky),
		T(env_source),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
