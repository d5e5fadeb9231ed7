/* SPDX-License-Identifier: MIT */
/*
 * krng_window: which getrandom() values drawn after a restore come from the
 * pre-restore crng? Run by vmctl.py's /init as `krng_window KO PHASE`, with
 * the sysgenid module loaded. KRNG_SCI (kernel command line) is 1 for the
 * module's SCI path, 0 for the control: then before-save reloads the module
 * with sci_path=0.
 *
 * before-save: two drawer processes are started that outlive the phase (the
 * snapshot carries them into every clone): "sleep" draws getrandom(8) and
 * sleeps 0.5 ms, "busy" draws without a pause. Then the kernel's crng is
 * made to reseed (RNDRESEEDCRNG): the 6.1 and 6.12 kernels reseed on their
 * own only once the last reseed is older than max(1 s, uptime / 2) (60 s
 * past 120 s of uptime), and the guest's clock does not move while the VM
 * is saved, so for the 100 ms each drawer records after the resume no
 * scheduled reseed can happen: what diverges is what the restore made
 * diverge.
 *
 * Telling a draw after the resume from one before: QEMU writes the new
 * GUID into guest memory before any vCPU runs, and the module maps that
 * page. Each drawer reads the GUID before and after each getrandom():
 *   P  new before the call: the call began after the resume;
 *   S  old before, new after: the call straddles the save (at most one
 *      per drawer; its bytes may have been made before the save);
 *   (old after the call: drawn before the save, not kept.)
 * Each drawer keeps up to MAX_POST values drawn within POST_NS of its first
 * P (and the S before it) and prints "KRNG drawn NAME" when done; the host then sends
 * after-restore, which prints them (so no new process takes bytes from the
 * crng before the drawers are done) with the module's sci_path state and
 * the first kernel log line about a reseed after the resume. The host
 * counts the P values that another clone also drew.
 *
 * Times are CLOCK_MONOTONIC in ns (the module's sysfs times are the same
 * clock); kernel log times are mapped onto it through a line this program
 * writes to /dev/kmsg.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/random.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../../driver/uapi/linux/sysgenid.h"
#include "krng_common.h"

#define MAX_POST	1500
#define POST_NS		100000000LL
#define SYNC_LINE	"krng_window: clock sync"
#define SCI_SYSFS	"/sys/class/misc/sysgenid/sci_path"

static const char *const drawers[] = { "sleep", "busy" };

static void sleep_ns(long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };

	nanosleep(&ts, NULL);
}

static char *read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void result_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "/tmp/krng_window.%s", name);
}

/* ------------------------------------------------------------- GUID --- */

/* The GUID page's two words; QEMU puts the GUID at byte 40 (aligned). */
static const uint64_t *guid_words;
static uint64_t boot_guid[2];

static int map_guid(void)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = open("/dev/sysgenid", O_RDONLY | O_CLOEXEC);
	const uint8_t *p;
	int off;

	if (fd < 0)
		return -errno;
	off = ioctl(fd, SYSGENID_GET_GUID_OFFSET);
	if (off < 0 || off % 8) {
		close(fd);
		return off < 0 ? -errno : -EINVAL;
	}
	p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd,
		 SYSGENID_GUID_PGOFF * page);
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	guid_words = (const uint64_t *)(p + off);
	boot_guid[0] = __atomic_load_n(&guid_words[0], __ATOMIC_ACQUIRE);
	boot_guid[1] = __atomic_load_n(&guid_words[1], __ATOMIC_ACQUIRE);
	return 0;
}

static bool guid_moved(void)
{
	return __atomic_load_n(&guid_words[0], __ATOMIC_ACQUIRE) !=
	       boot_guid[0] ||
	       __atomic_load_n(&guid_words[1], __ATOMIC_ACQUIRE) !=
	       boot_guid[1];
}

/* ---------------------------------------------------------- drawers --- */

struct draw {
	int64_t t;
	uint64_t v;
	char cls;
};

static struct draw kept[MAX_POST + 1];

static void drawer(const char *name, bool sleeping)
{
	int64_t last_old = 0, first_new = 0, t;
	unsigned long long pre = 0;
	char path[64], tmp[80];
	int n = 0, straddle = 0;
	FILE *f;

	for (;;) {
		bool before = guid_moved(), after;
		int64_t t_after;
		uint64_t v;

		/* read after the GUID: a new GUID makes t post-resume */
		t = mono_ns();
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			_exit(3);
		/* read before it: an old GUID makes t_after pre-save */
		t_after = mono_ns();
		after = guid_moved();
		if (!after) {
			pre++;
			last_old = t_after;
		} else {
			if (!first_new && before)
				first_new = t;
			kept[n].t = t;
			kept[n].v = v;
			kept[n].cls = before ? 'P' : 'S';
			straddle += !before;
			n++;
			if (n > MAX_POST || (first_new && t - first_new > POST_NS))
				break;
		}
		if (sleeping)
			sleep_ns(500000);
	}
	result_path(path, sizeof(path), name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		_exit(4);
	fprintf(f, "KRNG drawer %s pre=%llu last_old=%" PRId64
		" first_new=%" PRId64 " kept=%d straddle=%d\n", name, pre,
		last_old, first_new, n, straddle);
	for (int i = 0; i < n; i++)
		fprintf(f, "KRNG v %s %c %" PRId64 " %016" PRIx64 "\n", name,
			kept[i].cls, kept[i].t, kept[i].v);
	fclose(f);
	rename(tmp, path);
	printf("KRNG drawn %s\n", name);
	fflush(stdout);
	_exit(0);
}

/* -------------------------------------------------------- the module --- */

/* Reload the module with sci_path=0: the control. */
static int reload_without_sci(const char *ko)
{
	int fd;

	if (syscall(SYS_delete_module, "sysgenid", O_NONBLOCK) < 0)
		return -errno;
	fd = open(ko, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "sci_path=0", 0) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	close(fd);
	return 0;
}

/* The module's own lines about the SCI path (its cost measured at load). */
static void print_sci_log(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	static char rec[8192];
	unsigned long long us;
	char *msg;

	if (fd < 0)
		return;
	while (krng_kmsg_next(fd, rec, sizeof(rec), &us, &msg))
		if (strstr(msg, "sysgenid: SCI path"))
			printf("KRNG kmsg %s\n", msg);
	close(fd);
}

static int before_save(const char *ko)
{
	const char *sci = getenv("KRNG_SCI");
	bool control = sci && strcmp(sci, "0") == 0;
	char buf[256], why[128];
	int ret;

	if (control) {
		ret = reload_without_sci(ko);
		snprintf(why, sizeof(why), "%s", strerror(-ret));
		check(ret == 0, "module reloaded with sci_path=0", why);
	}
	print_sci_log();
	read_file(SCI_SYSFS, buf, sizeof(buf));
	buf[strcspn(buf, "\n")] = '\0';
	printf("KRNG sci-state %s\n", buf);
	check(control ? strncmp(buf, "off", 3) == 0 :
			strncmp(buf, "active", 6) == 0,
	      control ? "SCI path off" : "SCI path active", buf);
	ret = map_guid();
	snprintf(why, sizeof(why), "%s", strerror(-ret));
	check(ret == 0, "GUID page mapped", why);
	if (ret)
		goto out;
	for (size_t i = 0; i < sizeof(drawers) / sizeof(drawers[0]); i++) {
		char path[64];

		result_path(path, sizeof(path), drawers[i]);
		unlink(path);
		if (fork() == 0) {
			/* detach: /init waits for the phase's process only */
			setsid();
			if (fork() == 0)
				drawer(drawers[i], i == 0);
			_exit(0);
		}
	}
	sleep_ns(200000000);
	krng_reseed_now();
out:
	return krng_summary();
}

/* ------------------------------------------------------- after-restore --- */

/*
 * The kernel log after the resume, on CLOCK_MONOTONIC through a line of our
 * own: the first line about a reseed (the kernel's "crng reseeded due to
 * virtual machine fork" or the module's), whether the kernel's own vmgenid
 * path reseeded at all, and how many times the module found a change
 * already handled (the later paths, after the first).
 */
static void kernel_log(int64_t resume)
{
	int fd = open("/dev/kmsg", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	int fork_lines = 0, already = 0;
	static char rec[8192];
	unsigned long long us;
	int64_t off = 0;
	bool said = false;
	char *msg;

	if (fd < 0) {
		printf("KRNG kmsg error=%s\n", strerror(errno));
		return;
	}
	if (krng_kmsg_sync(fd, SYNC_LINE, rec, sizeof(rec), &off)) {
		while (krng_kmsg_next(fd, rec, sizeof(rec), &us, &msg)) {
			int64_t at = (int64_t)us * 1000 - off;

			if (at < resume)
				continue;
			fork_lines += !!strstr(msg, "due to virtual machine fork");
			already += !!strstr(msg, "already handled");
			if (!said && (strstr(msg, "crng reseeded") ||
				      (strstr(msg, "sysgenid") &&
				       strstr(msg, "reseeded")))) {
				printf("KRNG reseed at=%" PRId64 " line=%s\n",
				       at, msg);
				said = true;
			}
		}
	}
	if (!said)
		printf("KRNG reseed at=none\n");
	printf("KRNG kernel-fork-lines %d\nKRNG already-handled %d\n",
	       fork_lines, already);
	close(fd);
}

static int after_restore(void)
{
	static char buf[128 * 1024];
	int64_t resume = 0;

	for (size_t i = 0; i < sizeof(drawers) / sizeof(drawers[0]); i++) {
		char path[64];
		char *s, *p;

		result_path(path, sizeof(path), drawers[i]);
		s = read_file(path, buf, sizeof(buf));
		check(s != NULL, drawers[i], "no result file");
		if (!s)
			continue;
		fputs(s, stdout);
		p = strstr(s, " last_old=");
		if (p && atoll(p + 10) > resume)
			resume = atoll(p + 10);
	}
	printf("KRNG resume at=%" PRId64 "\n", resume);
	/* the kernel's own path (ACPI notify, vmfork chain) has time to end */
	sleep_ns(1500000000L);
	if (read_file("/sys/class/misc/sysgenid/generation", buf, sizeof(buf)))
		printf("KRNG generation %s", buf);
	if (read_file(SCI_SYSFS, buf, sizeof(buf))) {
		char *nl = strchr(buf, '\n');

		if (nl) {
			*nl = '\0';
			printf("KRNG sci-state %s\n", buf);
			nl[1 + strcspn(nl + 1, "\n")] = '\0';
			printf("KRNG sci %s\n", nl + 1);
		}
	}
	kernel_log(resume);
	return krng_summary();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[2], "before-save") == 0)
		return before_save(argv[1]);
	if (argc == 3 && strcmp(argv[2], "after-restore") == 0)
		return after_restore();
	fprintf(stderr, "usage: %s KO before-save|after-restore\n", argv[0]);
	return 2;
}
