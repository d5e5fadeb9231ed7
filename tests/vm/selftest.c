/* SPDX-License-Identifier: MIT */
/*
 * The harness's own guest program: proves that a VM restored by vmctl.py
 * really is a new VM generation, without our module or library, so that a
 * failure in the module tests cannot be the harness's fault.
 *
 *   selftest KO PHASE
 *
 * before-save (and abi): the vmgenid ACPI device is bound to the kernel's
 * driver; remember a marker in /tmp (memory that the snapshot carries).
 * after-restore: the marker survived; the kernel logged its VM-fork reseed;
 * print a getrandom() token that the host compares between clones (two
 * clones of one snapshot print the same token unless the kernel reseeded).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define STATE_FILE "/tmp/vmctl-selftest.state"
#define FORK_LINE "crng reseeded due to virtual machine fork"
#define VMGENID_BOUND "/sys/bus/acpi/drivers/vmgenid/QEMUVGID:00"
/*
 * The notifier runs within about a second of the restore; be generous.
 * VMCTL_SELFTEST_RESEED_WAIT_MS (kernel command line) shortens the wait in
 * the negative run, where the reseed must not come.
 */
#define RESEED_WAIT_MS 60000

static int passed, failed, num;

static void check(int ok, const char *name)
{
	printf("%sok %d - %s\n", ok ? "" : "not ", ++num, name);
	if (ok)
		passed++;
	else
		failed++;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/*
 * Read /dev/kmsg from the start of the ring until FORK_LINE shows up or
 * the timeout passes; waiting with poll() on new records, not sleeping.
 */
static int wait_kmsg(const char *needle, int timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	char rec[8192];
	int fd, found = 0;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (!found) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long left;

		if (n > 0) {
			rec[n] = '\0';
			found = strstr(rec, needle) != NULL;
			continue;
		}
		if (n < 0 && errno == EPIPE)	/* overwritten records */
			continue;
		if (n < 0 && errno != EAGAIN)
			break;
		left = deadline - now_ms();
		if (left <= 0)
			break;
		poll(&pfd, 1, (int)left);
	}
	close(fd);
	return found;
}

static void before_save(void)
{
	unsigned char tok[16];
	FILE *f;

	check(access(VMGENID_BOUND, F_OK) == 0,
	      "vmgenid ACPI device bound to the kernel driver");
	check(access("/dev/ttyS1", F_OK) == 0, "control port /dev/ttyS1");
	check(getrandom(tok, sizeof(tok), GRND_NONBLOCK) == sizeof(tok),
	      "kernel RNG ready before the save");
	f = fopen(STATE_FILE, "w");
	check(f && fprintf(f, "saved\n") > 0 && fclose(f) == 0,
	      "marker written to tmpfs");
}

static void after_restore(void)
{
	const char *wait = getenv("VMCTL_SELFTEST_RESEED_WAIT_MS");
	int wait_ms = wait ? atoi(wait) : RESEED_WAIT_MS;
	unsigned char tok[16];
	char buf[16] = "";
	FILE *f;
	int i;

	f = fopen(STATE_FILE, "r");
	check(f && fgets(buf, sizeof(buf), f) && !strcmp(buf, "saved\n"),
	      "marker from before the save survived the restore");
	if (f)
		fclose(f);
	check(wait_kmsg(FORK_LINE, wait_ms) == 1,
	      "kernel reseeded its RNG for the VM fork");
	if (getrandom(tok, sizeof(tok), 0) == sizeof(tok)) {
		/* the host requires these to differ between clones */
		printf("vmctl-distinct: ");
		for (i = 0; i < (int)sizeof(tok); i++)
			printf("%02x", tok[i]);
		printf("\n");
	}
}

int main(int argc, char **argv)
{
	const char *ph = argc > 2 ? argv[2] : "abi";

	if (!strcmp(ph, "abi") || !strcmp(ph, "before-save")) {
		before_save();
	} else if (!strcmp(ph, "after-restore")) {
		after_restore();
	} else {
		fprintf(stderr, "usage: %s KO abi|before-save|after-restore\n",
			argv[0]);
		return 2;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
