/* SPDX-License-Identifier: MIT */
/*
 * kernel_rng_probe: does the guest kernel's RNG give each clone of a saved
 * VM its own bytes? Run by vmctl.py's /init as `kernel_rng_probe KO PHASE`;
 * KRNG_MODE (kernel command line) says what the host expects:
 *
 *   module   the sysgenid module is loaded: after the restore, block in
 *            read() on /dev/sysgenid until its counter moves, then read
 *            getrandom() at once;
 *   control  no module: read getrandom() as soon as the restore is seen.
 *
 * before-save: a watcher process is started that outlives the phase (the
 * snapshot carries it into every clone). Then the kernel's crng is made to
 * reseed (RNDRESEEDCRNG): a 6.1 kernel reseeds on its own when the last
 * reseed is older than max(1 s, uptime / 2), so without a fresh reseed just
 * before the save a clone could reseed by schedule and the control would
 * measure that schedule instead of the restore (DESIGN section 8).
 *
 * The host sends after-restore only once the watcher has printed "KRNG
 * read" (see there).
 *
 * after-restore: wait for the watcher's result and print it, with the
 * kernel log's reseed line, as "KRNG key=value..." lines and ok/not ok
 * lines. The host compares the bytes across clones.
 *
 * Seeing the restore: the guest's clocks do not jump across a save and a
 * restore, but the emulated CMOS RTC follows the host's clock: its distance
 * from CLOCK_MONOTONIC jumps by the time the VM was stopped (the host keeps
 * that above 3 s). A thread reads it every millisecond; its last read before
 * the jump is the restore in guest time ("restore"). Times are
 * CLOCK_MONOTONIC in ns; kernel log times are mapped onto it through a line
 * this program writes to /dev/kmsg.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/random.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../resume_rtc.h"
#include "krng_common.h"

#define RESULT_FILE	"/tmp/kernel_rng.result"
#define READY_FILE	"/tmp/kernel_rng.ready"
#define RNG_BYTES	32
#define SYNC_LINE	"kernel_rng_probe: clock sync"

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static const char *mode(void)
{
	const char *m = getenv("KRNG_MODE");

	return m ? m : "";
}

/* ---------------------------------------------------------------- RTC --- */

static int rtc_fd = -1;
static int64_t rtc_base;		/* RTC minus CLOCK_MONOTONIC, ns */
static _Atomic int64_t restore_at;	/* last read before the jump; 0: none */
static _Atomic int64_t restore_seen;	/* when the jump was noticed */
static _Atomic int64_t restore_jump;

static int rtc_setup(void)
{
	rtc_fd = resume_rtc_open(&rtc_base);
	return rtc_fd < 0 ? rtc_fd : 0;
}

/* Poll the RTC every millisecond until it jumps; record when. */
static void wait_restore(void)
{
	int64_t prev = mono_ns();

	for (;;) {
		int64_t off = resume_rtc_offset_ns(rtc_fd);
		int64_t now = mono_ns();

		if (resume_rtc_jumped(off, rtc_base)) {
			atomic_store(&restore_jump, off - rtc_base);
			atomic_store(&restore_seen, now);
			atomic_store(&restore_at, prev);
			return;
		}
		prev = now;
		sleep_ms(1);
	}
}

static void *restore_thread(void *arg)
{
	(void)arg;
	wait_restore();
	return NULL;
}

/* ------------------------------------------------------------ watcher --- */

static void hex(char *out, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void write_file(const char *path, const char *text)
{
	char tmp[128];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

/*
 * The watcher: runs across the snapshot. Writes RESULT_FILE once it has
 * read getrandom() after the restore, or "error ..." if it cannot.
 */
static void watcher(bool module)
{
	uint8_t rnd[RNG_BYTES];
	char hx[2 * RNG_BYTES + 1], buf[512];
	uint32_t gen0 = 0, gen1 = 0;
	volatile uint32_t *page;
	int64_t t_counter = 0, t_read;
	pthread_t th;
	int fd = -1, ret;

	ret = rtc_setup();
	if (ret < 0) {
		snprintf(buf, sizeof(buf), "error /dev/rtc0: %s\n",
			 strerror(-ret));
		write_file(READY_FILE, buf);
		return;
	}
	if (module) {
		fd = open("/dev/sysgenid", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(buf, sizeof(buf), "error /dev/sysgenid: %s\n",
				 strerror(errno));
			write_file(READY_FILE, buf);
			return;
		}
		/*
		 * A fresh fd has acknowledged the counter as it is now, so
		 * read() blocks until it moves; the mapped page shows it.
		 */
		page = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ,
			    MAP_SHARED, fd, 0);
		if (page != MAP_FAILED)
			gen0 = *page;
		ret = pthread_create(&th, NULL, restore_thread, NULL);
		if (ret) {
			snprintf(buf, sizeof(buf), "error thread: %s\n",
				 strerror(ret));
			write_file(READY_FILE, buf);
			return;
		}
		write_file(READY_FILE, "ready\n");
		if (read(fd, &gen1, sizeof(gen1)) != sizeof(gen1)) {
			snprintf(buf, sizeof(buf), "error read: %s\n",
				 strerror(errno));
			write_file(RESULT_FILE, buf);
			return;
		}
		t_counter = mono_ns();
	} else {
		write_file(READY_FILE, "ready\n");
		wait_restore();
	}
	ret = getrandom(rnd, sizeof(rnd), 0);
	t_read = mono_ns();
	/*
	 * The host waits for this line before it lets /init go on: a process
	 * started earlier (its exec takes random bytes for ASLR and
	 * AT_RANDOM) would move a clone's crng before the read, and the
	 * control's clones would differ for that reason alone.
	 */
	printf("KRNG read\n");
	if (ret != (int)sizeof(rnd)) {
		snprintf(buf, sizeof(buf), "error getrandom: %s\n",
			 strerror(errno));
		write_file(RESULT_FILE, buf);
		return;
	}
	/* the RTC thread notices the restore within a few ms */
	for (int i = 0; i < 10000 && !atomic_load(&restore_at); i++)
		sleep_ms(1);
	hex(hx, rnd, sizeof(rnd));
	snprintf(buf, sizeof(buf),
		 "mode=%s gen0=%" PRIu32 " gen1=%" PRIu32 " restore=%" PRId64
		 " seen=%" PRId64 " jump=%.1f counter=%" PRId64
		 " read=%" PRId64 " bytes=%s\n",
		 module ? "module" : "control", gen0, gen1,
		 atomic_load(&restore_at), atomic_load(&restore_seen),
		 (double)atomic_load(&restore_jump) / 1e9, t_counter, t_read,
		 hx);
	write_file(RESULT_FILE, buf);
}

static char *read_file(const char *path)
{
	static char buf[512];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static char *wait_file(const char *path, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 20) {
		char *s = read_file(path);

		if (s)
			return s;
		sleep_ms(20);
	}
	return NULL;
}

static int before_save(void)
{
	bool module = strcmp(mode(), "module") == 0;
	char *ready;
	uint8_t tok[RNG_BYTES];
	char hx[2 * RNG_BYTES + 1];
	pid_t pid;

	check(module || strcmp(mode(), "control") == 0, "KRNG_MODE given",
	      "KRNG_MODE must be module or control");
	check(module == (access("/dev/sysgenid", F_OK) == 0),
	      module ? "module loaded (/dev/sysgenid)" :
		       "no module loaded (no /dev/sysgenid)",
	      module ? "/dev/sysgenid missing" : "/dev/sysgenid exists");
	unlink(RESULT_FILE);
	unlink(READY_FILE);
	pid = fork();
	if (pid == 0) {
		/* detach: /init waits for the phase's process only */
		setsid();
		if (fork() == 0) {
			watcher(module);
			_exit(0);
		}
		_exit(0);
	}
	ready = wait_file(READY_FILE, 10000);
	check(ready && strncmp(ready, "ready", 5) == 0,
	      "watcher started", ready ? ready : "no answer in 10 s");
	krng_reseed_now();
	if (getrandom(tok, sizeof(tok), 0) == sizeof(tok)) {
		hex(hx, tok, sizeof(tok));
		printf("KRNG before-save mono=%" PRId64 " bytes=%s\n",
		       mono_ns(), hx);
	}
	return krng_summary();
}

/*
 * Kernel log: map its timestamps (local_clock, us) onto CLOCK_MONOTONIC
 * through a line of our own, then print the first reseed-looking line
 * after the restore: the kernel's "crng reseeded due to virtual machine
 * fork" or the module's own.
 */
static void kernel_log(int64_t restore)
{
	char rec[8192];
	int64_t off = 0;
	int fd = open("/dev/kmsg", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	unsigned long long us;
	bool said = false;
	char *msg;

	if (fd < 0) {
		printf("KRNG kmsg error=%s\n", strerror(errno));
		return;
	}
	if (krng_kmsg_sync(fd, SYNC_LINE, rec, sizeof(rec), &off)) {
		printf("KRNG kmsg-offset ns=%" PRId64 "\n", off);
		while (krng_kmsg_next(fd, rec, sizeof(rec), &us, &msg)) {
			if ((int64_t)us * 1000 - off < restore)
				continue;
			if (strstr(msg, "crng reseeded") ||
			    (strstr(msg, "sysgenid") && strstr(msg, "reseed"))) {
				printf("KRNG reseed at=%" PRId64 " line=%s\n",
				       (int64_t)us * 1000 - off, msg);
				said = true;
				break;
			}
		}
	}
	if (!said)
		printf("KRNG reseed at=none\n");
	close(fd);
}

static void sysfs_mode(void)
{
	char *s = read_file("/sys/class/misc/sysgenid/mode");

	if (s) {
		s[strcspn(s, "\n")] = '\0';
		printf("KRNG sysfs-mode=%s\n", s);
	}
}

static int after_restore(void)
{
	bool module = strcmp(mode(), "module") == 0;
	const char *t = getenv("KRNG_TIMEOUT");
	int timeout = t ? atoi(t) : 60;
	char *res = wait_file(RESULT_FILE, timeout * 1000);
	long long restore = 0;
	char *p;

	check(res != NULL, module ?
	      "sysgenid counter moved after the restore" :
	      "restore seen through the RTC",
	      "nothing within KRNG_TIMEOUT seconds");
	if (res) {
		res[strcspn(res, "\n")] = '\0';
		printf("KRNG result %s\n", res);
		check(strncmp(res, "error", 5) != 0,
		      "getrandom() read after it", res);
		p = strstr(res, " restore=");
		if (p)
			restore = atoll(p + 9);
		check(restore > 0, "restore time known",
		      "the RTC never jumped");
	}
	kernel_log(restore);
	if (module)
		sysfs_mode();
	return krng_summary();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[2], "before-save") == 0)
		return before_save();
	if (argc == 3 && strcmp(argv[2], "after-restore") == 0)
		return after_restore();
	fprintf(stderr, "usage: %s KO before-save|after-restore\n", argv[0]);
	return 2;
}
