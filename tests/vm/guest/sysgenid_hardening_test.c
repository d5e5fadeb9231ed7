/* SPDX-License-Identifier: MIT */
/*
 * The module's findings of issue 15, one test each where a test can show
 * it; each fails against the module before its fix:
 *   - the vmfork callback run in hard IRQ (test_hook, through irq_work),
 *     also while other CPUs' syscalls hold the counter's lock: the
 *     counter moves, the kernel logs no BUG, WARNING or lockdep report;
 *   - the module's own reseed failing: the kernel's notification still
 *     moves the counter;
 *   - the mode follows a bound vmgenid driver, not the kernel's config
 *     (the kernel's driver unbound: mode acpi, the module binds it);
 *   - the GUID page claimed in /proc/iomem inside reserved or ACPI NVS
 *     memory, released on unload;
 *   - no executable and no private mappings of either page;
 *   - a read after MADV_DONTNEED faults the counter page back (no
 *     SIGBUS); the kernel refuses it on the GUID page (VM_PFNMAP);
 *   - PROT_WRITE: EACCES on a read-only fd (the kernel), EPERM otherwise;
 *   - no unbind attribute on the module's ACPI driver;
 *   - a bounded WAIT_WATCHERS interrupted by a signal fails with EINTR
 *     even under SA_RESTART; an unbounded one is restarted;
 *   - TRIGGER never wraps the counter (EOVERFLOW).
 *
 * Usage (as root in the guest, the module loaded):
 *	sysgenid_hardening_test KO PHASE	(the VM harness's convention)
 * Output and exit status as sysgenid_abi_test (guest_tap.h).
 *
 * Build: cc -static -O2 -I driver/uapi -o sysgenid_hardening_test \
 *	tests/vm/guest/sysgenid_hardening_test.c
 */
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "guest_tap.h"
#include "guest_util.h"

#define PAGE	((size_t)sysconf(_SC_PAGESIZE))
/* A hang becomes a failure after this long; no test relies on the value. */
#define LIMIT_MS	30000
#define HOOK	"/sys/module/sysgenid/parameters/test_hook"
#define QEMU_VGID	"QEMUVGID:00"

/* What a kernel prints when our code misbehaves, on any debug option. */
static const char *const bad_words[] = {
	"BUG:", "WARNING:", "possible recursive locking",
	"inconsistent lock state", "possible circular locking",
	"sleeping function called from invalid context",
	"scheduling while atomic", "KASAN", "UBSAN", "Oops", NULL,
};

static bool path_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	r = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
	close(fd);
	return r;
}

static bool mode_is(const char *want)
{
	char mode[64];

	return sysfs_attr_str("mode", mode, sizeof(mode)) &&
	       !strcmp(mode, want);
}

static bool guid_offered(void)
{
	char st[256];

	return sysfs_attr_str("guid_page", st, sizeof(st)) &&
	       !strcmp(st, "offered");
}

/* The counter moves past from within the limit (it is polled). */
static bool counter_moves_from(long from)
{
	for (long waited = 0; waited < LIMIT_MS; waited += 10) {
		if (gen_now() != from)
			return true;
		sleep_ms(10);
	}
	return false;
}

/* ---- finding 1 and 2: the vmfork callback in hard IRQ ---- */

static const char *hook_once(const char *what, const char *log_word)
{
	char marker[96];
	const char *bad;
	char *log;
	long g = gen_now();

	snprintf(marker, sizeof(marker), "sysgenid-test: hook %s %lld", what,
		 mono_us());
	CHECK_SYS(kmsg_mark(marker));
	CHECK(write_str(HOOK, what) == 0, "write %s to %s: %s", what, HOOK,
	      strerror(errno));
	CHECK(counter_moves_from(g), "hook %s: the counter stayed %ld", what,
	      g);
	log = klog_since(marker);
	CHECK(log, "kernel log: %s", strerror(errno));
	if (!strstr(log, "test hook: vmfork callback ran in hard IRQ")) {
		free(log);
		FAIL("hook %s: no \"ran in hard IRQ\" line in the log", what);
	}
	if (log_word && !strstr(log, log_word)) {
		free(log);
		FAIL("hook %s: no \"%s\" in the log", what, log_word);
	}
	free(log);
	bad = klog_clean_since(marker, bad_words);
	return bad;
}

static const char *t_hook_not_notifier(void)
{
	if (!path_exists(HOOK))
		FAIL("no %s", HOOK);
	if (mode_is("notifier"))
		SKIP("mode notifier: the hook runs (next tests)");
	CHECK_ERR(write_str(HOOK, "irq"), EOPNOTSUPP);
	return NULL;
}

static const char *t_hook_irq(void)
{
	if (!mode_is("notifier"))
		SKIP("mode acpi: no kernel notifier to stand in for");
	return hook_once("irq", "VM fork: generation");
}

static const char *t_hook_irq_reseed_fails(void)
{
	if (!mode_is("notifier"))
		SKIP("mode acpi: no kernel notifier to stand in for");
	return hook_once("irq-reseed-fails",
			 "cannot reseed the kernel RNG again");
}

/*
 * 20 hard-IRQ callbacks while two processes take the counter's lock in a
 * loop (trigger, ack, tracking): an IRQ-unsafe lock in the callback path
 * shows as a lockdep report, or as a hang on the same CPU.
 */
static const char *t_hook_irq_under_load(void)
{
	const char *why = NULL;
	pid_t kids[2];
	int n = 0;

	if (!mode_is("notifier"))
		SKIP("mode acpi: no kernel notifier to stand in for");
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		CHECK_SYS(kids[k]);
		if (kids[k] == 0) {
			int fd = dev_open(O_RDWR);

			if (fd < 0)
				_exit(1);
			for (;;) {
				(void)ioctl(fd, SYSGENID_SET_WATCHER_TRACKING,
					    1);
				(void)trigger(fd, 0);
				(void)ack(fd);
				(void)ioctl(fd, SYSGENID_SET_WATCHER_TRACKING,
					    0);
			}
		}
	}
	for (; n < 20 && !why; n++)
		why = hook_once("irq", NULL);
	for (int k = 0; k < 2; k++) {
		kill(kids[k], SIGKILL);
		waitpid(kids[k], NULL, 0);
	}
	if (why)
		FAIL("callback %d: %s", n, why);
	return NULL;
}

/* ---- finding 5 and 8: mappings ---- */

static const char *t_no_exec_no_private(void)
{
	off_t offs[2] = { 0, (off_t)(SYSGENID_GUID_PGOFF * PAGE) };
	int fd = dev_open(O_RDWR);

	CHECK_SYS(fd);
	for (int i = 0; i < (guid_offered() ? 2 : 1); i++) {
		void *p;

		CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED,
			       fd, offs[i]), EPERM);
		CHECK_ERR(mmap(NULL, PAGE, PROT_EXEC, MAP_SHARED, fd, offs[i]),
			  EPERM);
		CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd,
			       offs[i]), EINVAL);
		p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, offs[i]);
		CHECK(p != MAP_FAILED, "mmap offset %lld: %s",
		      (long long)offs[i], strerror(errno));
		CHECK_ERR(mprotect(p, PAGE, PROT_READ | PROT_EXEC), EACCES);
		CHECK_ERR(mprotect(p, PAGE, PROT_EXEC), EACCES);
		munmap(p, PAGE);
	}
	close(fd);
	return NULL;
}

static const char *t_write_errors(void)
{
	int ro = dev_open(O_RDONLY), rw = dev_open(O_RDWR);

	CHECK_SYS(ro);
	CHECK_SYS(rw);
	/* The kernel refuses a shared writable mapping of a read-only fd. */
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0),
		  EACCES);
	/* The module refuses it on a writable fd. */
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0),
		  EPERM);
	close(ro);
	close(rw);
	return NULL;
}

/*
 * MADV_DONTNEED zaps the pages; the next read must fault them back with
 * the current contents (a SIGBUS kills the test's child: a failure).
 */
static const char *t_madv_dontneed(void)
{
	int fd = dev_open(O_RDWR);
	volatile uint32_t *c;
	volatile uint8_t *g = NULL;
	uint8_t before[16];
	long off = -1;

	CHECK_SYS(fd);
	c = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(c != MAP_FAILED, "mmap: %s", strerror(errno));
	CHECK(c[0] == (uint32_t)gen_now(), "page %u", c[0]);
	CHECK_SYS(madvise((void *)c, PAGE, MADV_DONTNEED));
	CHECK_SYS(trigger(fd, 0));
	CHECK(c[0] == (uint32_t)gen_now(), "after MADV_DONTNEED: page %u, counter %ld",
	      c[0], gen_now());
	CHECK_SYS(madvise((void *)c, PAGE, MADV_DONTNEED));
	CHECK(c[0] == (uint32_t)gen_now(), "again: page %u", c[0]);

	if (guid_offered()) {
		off = ioctl(fd, SYSGENID_GET_GUID_OFFSET, 0);
		CHECK(off >= 0, "GET_GUID_OFFSET: %s", strerror(errno));
		g = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd,
			 (off_t)(SYSGENID_GUID_PGOFF * PAGE));
		CHECK(g != MAP_FAILED, "mmap GUID: %s", strerror(errno));
		for (int i = 0; i < 16; i++)
			before[i] = g[off + i];
		/* VM_PFNMAP: the kernel refuses to zap it at all. */
		CHECK_ERR(madvise((void *)g, PAGE, MADV_DONTNEED), EINVAL);
		for (int i = 0; i < 16; i++)
			CHECK(g[off + i] == before[i],
			      "GUID byte %d changed after MADV_DONTNEED", i);
		munmap((void *)g, PAGE);
	}
	munmap((void *)c, PAGE);
	close(fd);
	if (off < 0)
		printf("# GUID page not offered: counter page only\n");
	return NULL;
}

/* ---- finding 4: the GUID page in the iomem tree ---- */

/*
 * The line of /proc/iomem that names ours, and its parent (the nearest
 * line above it indented less), without the addresses.
 */
static bool iomem_claim(char *parent, size_t len)
{
	char line[256], stack[8][256];
	FILE *f = fopen("/proc/iomem", "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		size_t depth = strspn(line, " ") / 2;
		const char *name = strstr(line, " : ");

		if (depth >= 8 || !name)
			continue;
		snprintf(stack[depth], sizeof(stack[depth]), "%.*s",
			 (int)strcspn(name + 3, "\n"), name + 3);
		if (!strcmp(stack[depth], "sysgenid GUID page")) {
			found = true;
			snprintf(parent, len, "%s",
				 depth ? stack[depth - 1] : "(top level)");
		}
	}
	fclose(f);
	return found;
}

static const char *t_guid_page_claimed(void)
{
	char parent[256];

	if (!guid_offered())
		SKIP("GUID page not offered here");
	CHECK(iomem_claim(parent, sizeof(parent)),
	      "no \"sysgenid GUID page\" in /proc/iomem");
	printf("# /proc/iomem: sysgenid GUID page inside \"%s\"\n", parent);
	CHECK(!strcmp(parent, "Reserved") ||
	      !strcmp(parent, "ACPI Non-volatile Storage"),
	      "claimed inside \"%s\"", parent);
	if (!ko_path)
		return NULL;
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	CHECK(!iomem_claim(parent, sizeof(parent)),
	      "the claim outlived the module");
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	CHECK(iomem_claim(parent, sizeof(parent)), "no claim after reload");
	return NULL;
}

/* ---- finding 3 and 6: binding ---- */

/* The device the kernel's vmgenid driver is bound to, and its driver dir. */
static bool kernel_driver_device(char *drvdir, size_t dlen, char *dev,
				 size_t len)
{
	static const char *const dirs[] = {
		"/sys/bus/acpi/drivers/vmgenid",
		"/sys/bus/platform/drivers/vmgenid",
	};

	for (size_t i = 0; i < 2; i++) {
		struct dirent *e;
		DIR *d = opendir(dirs[i]);

		if (!d)
			continue;
		while ((e = readdir(d)))
			if (strchr(e->d_name, ':')) {
				snprintf(drvdir, dlen, "%s", dirs[i]);
				snprintf(dev, len, "%.100s", e->d_name);
				closedir(d);
				return true;
			}
		closedir(d);
	}
	return false;
}

static const char *t_no_unbind_attr(void)
{
	if (!mode_is("acpi"))
		SKIP("mode notifier: the module binds nothing");
	CHECK(path_exists("/sys/bus/acpi/drivers/sysgenid"),
	      "mode acpi but no /sys/bus/acpi/drivers/sysgenid");
	CHECK(!path_exists("/sys/bus/acpi/drivers/sysgenid/unbind") &&
	      !path_exists("/sys/bus/acpi/drivers/sysgenid/bind"),
	      "the module's ACPI driver has bind/unbind attributes");
	return NULL;
}

/*
 * The kernel's driver unbound (or never loaded): the module must not
 * listen on a chain nobody runs. It binds the device itself (mode acpi),
 * or, where the device cannot be bound (6.12: the platform driver's
 * unbind leaves the ACPI device unbindable), refuses to load and says
 * why. Then the kernel's driver is bound again where it can be (6.12's
 * cannot: its notify handler stays installed), and the module loaded
 * again must be in mode notifier. Runs last: on 6.12 it leaves the
 * module unloadable until the next boot.
 */
static const char *t_mode_follows_binding(void)
{
	char drvdir[128], dev[128], path[256], link[512];
	const char *why = NULL;
	char *log;
	ssize_t n;

	if (!ko_path)
		SKIP("no module path given");
	if (!kernel_driver_device(drvdir, sizeof(drvdir), dev, sizeof(dev)))
		SKIP("the kernel's vmgenid driver is bound to nothing here");
	CHECK(mode_is("notifier"), "the kernel's driver is bound, mode not notifier");
	printf("# unbinding %s from %s\n", dev, drvdir);
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/unbind", drvdir);
	CHECK(write_str(path, dev) == 0, "unbind: %s", strerror(errno));
	CHECK_SYS(kmsg_mark("sysgenid-test: kernel driver unbound"));
	if (mod_load()) {
		int e = errno;

		log = klog_since("sysgenid-test: kernel driver unbound");
		if (e != ENODEV || !log ||
		    !strstr(log, "sysgenid: no vmgenid driver is bound and "))
			why = "the kernel's driver unbound: load failed without saying why";
		else
			printf("# %.*s\n",
			       (int)strcspn(strstr(log, "sysgenid: no"), "\n"),
			       strstr(log, "sysgenid: no"));
		free(log);
	} else if (!mode_is("acpi")) {
		why = "the kernel's driver unbound, yet mode is not acpi";
	} else {
		n = readlink("/sys/bus/acpi/devices/" QEMU_VGID "/driver", link,
			     sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		if (!strstr(link, "/sysgenid"))
			why = "mode acpi, but " QEMU_VGID " is not bound to sysgenid";
		else
			printf("# mode acpi, %s bound to sysgenid\n", QEMU_VGID);
	}
	/* Put things back as far as the kernel allows. */
	(void)mod_unload();
	snprintf(path, sizeof(path), "%s/bind", drvdir);
	if (write_str(path, dev)) {
		printf("# the kernel's driver cannot be bound again: %s\n",
		       strerror(errno));
		if (why)
			FAIL("%s", why);
		return NULL;
	}
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	if (why)
		FAIL("%s", why);
	CHECK(mode_is("notifier"), "the kernel's driver bound again, mode not notifier");
	return NULL;
}

/* ---- finding 8: WAIT_WATCHERS and signals ---- */

static volatile sig_atomic_t got_signal;
/* Shared with a child process that must act after the signal. */
static volatile int *signal_seen;

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
	if (signal_seen)
		*signal_seen = 1;
}

/* An outdated tracked watcher that nobody acknowledges, the caller acked. */
static const char *wait_setup(int *o, int *w)
{
	*o = dev_open(O_RDWR);
	*w = dev_open(O_RDWR);
	CHECK_SYS(*o);
	CHECK_SYS(*w);
	CHECK_SYS(ioctl(*w, SYSGENID_SET_WATCHER_TRACKING, 1));
	CHECK_SYS(trigger(*o, 0));
	CHECK_SYS(ack(*o));
	return NULL;
}

static const char *t_wait_signal(void)
{
	struct sigaction sa = { .sa_handler = on_signal,
				.sa_flags = SA_RESTART };
	const char *why;
	int o, w, st;
	pid_t pid;
	long r;

	why = wait_setup(&o, &w);
	if (why)
		return why;
	sigaction(SIGALRM, &sa, NULL);

	/* Bounded: EINTR, although SA_RESTART asks for a restart. */
	got_signal = 0;
	alarm(1);
	r = ioctl(o, SYSGENID_WAIT_WATCHERS, (unsigned long)LIMIT_MS * 4);
	st = errno;
	alarm(0);
	CHECK(got_signal, "the wait ended before the signal: %ld (%s)", r,
	      strerror(st));
	CHECK(r == -1 && st == EINTR, "bounded wait, signal: %ld (%s), want EINTR",
	      r, r ? strerror(st) : "0");

	/* Unbounded: restarted, ends when the watcher acknowledges. */
	signal_seen = mmap(NULL, sizeof(*signal_seen), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(signal_seen != MAP_FAILED, "mmap: %s", strerror(errno));
	*signal_seen = 0;
	got_signal = 0;
	pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		/* Acknowledge only once the signal reached the waiter. */
		for (long t = 0; t < LIMIT_MS && !*signal_seen; t += 10)
			sleep_ms(10);
		_exit(ack(w) ? 1 : 0);
	}
	alarm(1);
	r = ioctl(o, SYSGENID_WAIT_WATCHERS, 0);
	st = errno;
	alarm(0);
	CHECK(wait_child(pid, LIMIT_MS * 2) == 0, "acknowledging child failed");
	CHECK(got_signal, "unbounded wait ended without the signal");
	CHECK(r == 0, "unbounded wait: %ld (%s), want 0 after a restart", r,
	      strerror(st));
	close(w);
	close(o);
	return NULL;
}

/* ---- finding 7: no wrap ---- */

static const char *t_trigger_no_wrap(void)
{
	int fd;

	if (!ko_path)
		SKIP("no module path given (the counter would stay at the top)");
	fd = dev_open(O_RDWR);
	CHECK_SYS(fd);
	CHECK_SYS(trigger(fd, UINT32_MAX - 1));
	CHECK(gen_now() == UINT32_MAX - 1, "counter %ld", gen_now());
	CHECK_SYS(trigger(fd, 0));
	CHECK(gen_now() == UINT32_MAX, "counter %ld", gen_now());
	CHECK_ERR(trigger(fd, 0), EOVERFLOW);
	CHECK_ERR(trigger(fd, 7), EOVERFLOW);
	CHECK_ERR(trigger(fd, UINT32_MAX), EOVERFLOW);
	CHECK(gen_now() == UINT32_MAX, "counter %ld after refusals",
	      gen_now());
	close(fd);
	CHECK(mod_unload() == 0, "unload: %s", strerror(errno));
	CHECK(mod_load() == 0, "reload: %s", strerror(errno));
	CHECK(gen_now() == 0, "counter %ld after reload", gen_now());
	return NULL;
}

static const char *t_log_clean(void)
{
	char *log = klog_since(NULL);
	const char *hit;

	CHECK(log, "kernel log: %s", strerror(errno));
	hit = klog_find_any(log, bad_words);
	if (hit)
		snprintf(tap_why, sizeof(tap_why), "kernel log: %.200s", hit);
	free(log);
	return hit ? tap_why : NULL;
}

int main(int argc, char **argv)
{
	static const struct guest_test tests[] = {
		{ "test_hook: EOPNOTSUPP outside mode notifier",
		  t_hook_not_notifier },
		{ "vmfork callback in hard IRQ: counter moves, log clean",
		  t_hook_irq },
		{ "the module's reseed fails: the kernel's notification still moves the counter",
		  t_hook_irq_reseed_fails },
		{ "20 hard-IRQ callbacks while other processes hold the lock",
		  t_hook_irq_under_load },
		{ "no PROT_EXEC, no mprotect to exec, no MAP_PRIVATE (both pages)",
		  t_no_exec_no_private },
		{ "PROT_WRITE: EACCES on a read-only fd, EPERM on a writable one",
		  t_write_errors },
		{ "read after MADV_DONTNEED: counter page faulted back, GUID page EINVAL",
		  t_madv_dontneed },
		{ "GUID page claimed in /proc/iomem inside reserved memory",
		  t_guid_page_claimed },
		{ "mode acpi: no bind/unbind attributes", t_no_unbind_attr },
		{ "WAIT_WATCHERS and a signal: bounded EINTR, unbounded restarted",
		  t_wait_signal },
		{ "TRIGGER never wraps the counter (EOVERFLOW)",
		  t_trigger_no_wrap },
		{ "mode follows a bound kernel driver, not its config",
		  t_mode_follows_binding },
		{ "no BUG, WARNING, lockdep, KASAN report since boot",
		  t_log_clean },
	};
	const char *phase = "abi";

	if (argc == 3 && argv[1][0] != '-') {
		ko_path = argv[1];
		phase = argv[2];
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [KO PHASE]\n", argv[0]);
		return 2;
	}
	return guest_run_tests("sysgenid hardening", phase, tests,
			       sizeof(tests) / sizeof(tests[0]));
}
