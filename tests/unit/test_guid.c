/* SPDX-License-Identifier: MIT */
/*
 * The sysgenid source with the GUID page (DESIGN §4 "race-free path on
 * plain vmgenid"). A memfd stands in for the device: page 0 holds the
 * counter, page 1 the GUID at offset 40 as QEMU lays it out; a fake of the
 * two GUID ioctls plays the module (driver/guid_change.c): HANDLE mixes,
 * "reseeds" and bumps the counter once per GUID, or fails, as the test
 * says. What runs the real module is tests/vm.
 */
#include <linux/sysgenid.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>

#include "helpers.h"

#define GUID_OFF 40

enum handle_mode {
	HANDLE_OK,		/* the module handles the change at once */
	HANDLE_FAILS,		/* the ioctl fails; the counter stays */
};

static struct {
	struct fake f;
	int offset;		/* >= 0, or -errno for GET_GUID_OFFSET */
	enum handle_mode mode;
	uint8_t handled[16];	/* the module's copy */
	int handles;		/* HANDLE calls */
	int reseeds;		/* changes the module handled */
} mod;

static uint32_t *counter(void)
{
	return (uint32_t *)mod.f.map;
}

static uint8_t *guid_mem(void)
{
	return (uint8_t *)mod.f.map + 4096 + GUID_OFF;
}

/* The hypervisor writes a new GUID before the guest runs again. */
static void restore(uint8_t seed)
{
	uint8_t g[16];

	for (int i = 0; i < 16; i++)
		g[i] = (uint8_t)(seed * 31 + i * 7 + 1);
	memcpy(guid_mem(), g, 16);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The kernel's own path (the ACPI notification): reseed, then bump. */
static void kernel_handles(void)
{
	if (memcmp(mod.handled, guid_mem(), 16) == 0)
		return;
	memcpy(mod.handled, guid_mem(), 16);
	mod.reseeds++;
	__atomic_add_fetch(counter(), 1, __ATOMIC_RELEASE);
}

static int fake_ioctl(int fd, unsigned long request, unsigned long arg)
{
	(void)fd;
	assert_int_equal(arg, 0);
	if (request == SYSGENID_GET_GUID_OFFSET) {
		if (mod.offset >= 0)
			return mod.offset;
		errno = -mod.offset;
		return -1;
	}
	assert_int_equal(request, SYSGENID_HANDLE_GUID_CHANGE);
	mod.handles++;
	if (mod.mode == HANDLE_FAILS) {
		errno = EIO;
		return -1;
	}
	kernel_handles();
	return 0;
}

static void guid_init(void)
{
	memset(&mod, 0, sizeof(mod));
	fake_open(&mod.f, 8192);
	__atomic_store_n(counter(), 5, __ATOMIC_RELEASE);
	restore(1);
	memcpy(mod.handled, guid_mem(), 16);	/* this boot's GUID */
	mod.offset = GUID_OFF;
	vmgen__test_guid_ioctl(fake_ioctl);
	assert_int_equal(vmgen_init(spec("sysgenid", &mod.f), 0), 0);
	/* init asked once, to be sure this boot's GUID is handled */
	assert_int_equal(mod.handles, 1);
	assert_int_equal(mod.reseeds, 0);
	mod.handles = 0;
}

static void guid_fini(void)
{
	vmgen__test_reset();
	vmgen__test_guid_ioctl(NULL);
	fake_close(&mod.f);
}

/* What a callback saw when it ran. */
struct seen {
	int calls;
	uint32_t reasons;
	uint32_t counter;	/* at the call */
	int reseeds;		/* at the call */
};

static int record(const struct vmgen_event *ev, void *arg)
{
	struct seen *s = arg;

	s->calls++;
	s->reasons = ev->reasons;
	s->counter = __atomic_load_n(counter(), __ATOMIC_ACQUIRE);
	s->reseeds = mod.reseeds;
	return 0;
}

static void race_free_reported(void **state)
{
	const char *why = "unset";

	guid_init();
	assert_int_equal(vmgen_source_race_free(&why), 1);
	assert_null(why);
	assert_int_equal(vmgen_source_race_free(NULL), 1);
	assert_int_equal(vmgen__fast.kind, VMGEN__FAST_WORDS);
	guid_fini();
}

static void not_race_free_reasons(void **state)
{
	static const struct {
		int offset;
		const char *why;
	} cases[] = {
		{ -ENODEV, "module does not offer the GUID page" },
		{ -ENOTTY, "counter only: a file standing in for the device" },
		{ 44, "counter only: the module gave an unusable GUID offset" },
		{ 4090, "counter only: the module gave an unusable GUID offset" },
	};
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&mod, 0, sizeof(mod));
		fake_open(&mod.f, 8192);
		mod.offset = cases[i].offset;
		vmgen__test_guid_ioctl(fake_ioctl);
		assert_int_equal(vmgen_init(spec("sysgenid", &mod.f), 0), 0);
		why = NULL;
		assert_int_equal(vmgen_source_race_free(&why), 0);
		assert_string_equal(why, cases[i].why);
		/* counter only still works */
		assert_int_equal(vmgen_generation(), 1);
		guid_fini();
	}
	/* A stand-in without a second page, and the other sources. */
	fake_u32(&mod.f, 0);
	mod.offset = GUID_OFF;
	vmgen__test_guid_ioctl(fake_ioctl);
	assert_int_equal(vmgen_init(spec("sysgenid", &mod.f), 0), 0);
	assert_int_equal(vmgen_source_race_free(&why), 0);
	assert_string_equal(why, "counter only: the stand-in file has no GUID page");
	vmgen__test_reset();
	vmgen__test_guid_ioctl(NULL);
	assert_int_equal(vmgen_init(spec("file", &mod.f), 0), 0);
	assert_int_equal(vmgen_source_race_free(&why), 0);
	assert_non_null(strstr(why, "file source"));
	vmgen__test_reset();
	assert_int_equal(vmgen_init("none", 0), 0);
	assert_int_equal(vmgen_source_race_free(&why), 0);
	assert_non_null(strstr(why, "no generation source"));
	vmgen__test_reset();
	fake_close(&mod.f);
}

/*
 * The clause the GUID page is for: a transaction begun before a restore
 * fails to commit at once, before anything in the guest (module, kernel,
 * library slow path) has run.
 */
static void commit_fails_at_once(void **state)
{
	struct vmgen_txn t;

	guid_init();
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_true(vmgen_txn_commit(&t));
	restore(2);
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(mod.handles, 0);
	assert_int_equal(__atomic_load_n(counter(), __ATOMIC_ACQUIRE), 5);
	guid_fini();
}

/* Callbacks run once, after the kernel reseeded (the counter moved). */
static void callbacks_after_reseed(void **state)
{
	struct seen s = { 0 };
	struct vmgen_txn t;
	uint64_t v;

	guid_init();
	assert_true(vmgen_callback_register(record, &s, VMGEN_EVENT_ANY) > 0);
	restore(2);
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_int_equal(t.generation, 2);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.reasons, VMGEN_EVENT_VM);
	assert_int_equal(s.reseeds, 1);
	assert_int_equal(s.counter, 6);
	assert_int_equal(mod.handles, 1);
	assert_true(vmgen_txn_commit(&t));
	/* The counter is the source's own value; the GUID is not in it. */
	assert_int_equal(vmgen_source_generation(&v), 0);
	assert_int_equal(v, 6);
	/* The kernel's own notification later finds nothing new. */
	kernel_handles();
	assert_int_equal(__atomic_load_n(counter(), __ATOMIC_ACQUIRE), 6);
	assert_true(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(s.calls, 1);
	guid_fini();
}

/*
 * The module cannot handle it on request and the counter never moves:
 * after the bound, -ESTALE, no callback, no commit; then, once the kernel
 * handles it, everything runs.
 */
static void stale_then_recovers(void **state)
{
	struct seen s = { 0 };
	struct vmgen_txn t, old;
	const char *msg;

	guid_init();
	assert_true(vmgen_callback_register(record, &s, VMGEN_EVENT_VM) > 0);
	assert_int_equal(vmgen_txn_begin(&old), 0);
	mod.mode = HANDLE_FAILS;
	restore(3);
	assert_int_equal(vmgen_txn_begin(&t), -ESTALE);
	assert_int_equal(t.generation, 0);
	assert_false(vmgen_txn_commit(&t));
	assert_false(vmgen_txn_commit(&old));
	assert_int_equal(s.calls, 0);
	assert_true(mod.handles >= 2);	/* it kept asking within the bound */
	msg = vmgen_strerror(-ESTALE);
	assert_non_null(strstr(msg, "not confirmed its RNG reseed"));
	/* Still fails closed on the next call; the 0.1 view too. */
	assert_int_equal(vmgen_generation(), -ESTALE);
	assert_int_equal(vmgen_g.page->local.generation, 0);
	assert_int_equal(s.calls, 0);
	/* The kernel's ACPI path comes at last. */
	kernel_handles();
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.counter, 6);
	assert_int_equal(s.reseeds, 1);
	assert_false(vmgen_txn_commit(&old));
	assert_int_equal(vmgen_txn_begin(&t), 0);
	assert_true(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_g.page->local.generation, 2);
	guid_fini();
}

/* The kernel's own path, within the bound: a wait, then the step. */
static void *late_kernel(void *arg)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 };

	(void)arg;
	nanosleep(&ts, NULL);
	kernel_handles();
	return NULL;
}

static void waits_for_kernel(void **state)
{
	struct seen s = { 0 };
	pthread_t th;

	guid_init();
	assert_true(vmgen_callback_register(record, &s, VMGEN_EVENT_VM) > 0);
	mod.mode = HANDLE_FAILS;
	restore(4);
	assert_int_equal(pthread_create(&th, NULL, late_kernel, NULL), 0);
	assert_int_equal(vmgen_generation(), 2);
	pthread_join(th, NULL);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.counter, 6);
	assert_int_equal(s.reseeds, 1);
	guid_fini();
}

/* Two restores before anyone looked: one step, one callback. */
static void coalesces(void **state)
{
	struct seen s = { 0 };

	guid_init();
	assert_true(vmgen_callback_register(record, &s, VMGEN_EVENT_VM) > 0);
	restore(5);
	kernel_handles();	/* the first one's notification */
	restore(6);
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.reseeds, 2);
	assert_int_equal(s.counter, 7);
	assert_int_equal(vmgen_generation(), 2);
	guid_fini();
}

/* The counter moving without a GUID change (trigger) is a step too. */
static void counter_alone(void **state)
{
	struct vmgen_txn t;

	guid_init();
	assert_int_equal(vmgen_txn_begin(&t), 0);
	__atomic_add_fetch(counter(), 1, __ATOMIC_RELEASE);
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(mod.handles, 0);	/* no GUID change */
	guid_fini();
}

/* Fork still works, and folds with a restore into one step. */
static void fork_and_restore(void **state)
{
	struct seen s = { 0 };
	struct vmgen_txn t;
	pid_t pid;
	int status;

	guid_init();
	assert_true(vmgen_callback_register(record, &s, VMGEN_EVENT_ANY) > 0);
	assert_int_equal(vmgen_txn_begin(&t), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = 0;

		bad |= vmgen_txn_commit(&t) << 0;
		restore(7);
		bad |= (vmgen_generation() != 2) << 1;
		bad |= (s.calls != 1) << 2;
		bad |= (s.reasons != (VMGEN_EVENT_VM | VMGEN_EVENT_FORK)) << 3;
		bad |= (s.reseeds != 1) << 4;
		_exit(bad);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The parent shares the page: it sees the restore, handled. */
	assert_false(vmgen_txn_commit(&t));
	assert_int_equal(vmgen_generation(), 2);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.reasons, VMGEN_EVENT_VM);
	guid_fini();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(race_free_reported),
		T(not_race_free_reasons),
		T(commit_fails_at_once),
		T(callbacks_after_reseed),
		T(stale_then_recovers),
		T(waits_for_kernel),
		T(coalesces),
		T(counter_alone),
		T(fork_and_restore),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
