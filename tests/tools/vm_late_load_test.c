/* SPDX-License-Identifier: MIT */
/*
 * Boot order in the test guest (tests/vm/vmctl.py, run with --no-insmod):
 * a program started under auto before the module is loaded waits for a
 * source (the guest has QEMU's vmgenid device), switches to /dev/sysgenid
 * once the module is inserted, with one generation step, and then sees a
 * restore like any other.
 *
 * Usage (as root in the guest):
 *	vm_late_load_test KO before-save	start "vmgenid watch" on auto,
 *						insmod, see the switch
 *	vm_late_load_test KO after-restore	the restore is one more step
 *
 * The init script has loaded nothing (--no-insmod), so KO is not the
 * module's path: it is /lib/modules/sysgenid.ko. The tool is expected at
 * /usr/bin/vmgenid (a static build). Output: guest_tap.h lines.
 */
#include <stdint.h>
#include <sys/stat.h>

#include "guest_tap.h"
#include "guest_util.h"
#include "vm_tool_util.h"

#define TOOL "/usr/bin/vmgenid"
#define MODULE "/lib/modules/sysgenid.ko"
#define STATE "/tmp/vm-late-load"
#define STEPS STATE "/steps"

static int status_of(char *out, size_t len, pid_t pid)
{
	char pidarg[16];
	const char *argv[] = { TOOL, "status", "--json", "--pid", pidarg,
			       NULL };

	snprintf(pidarg, sizeof(pidarg), "%d", (int)pid);
	return run_capture(out, len, argv);
}

/* Lines of the steps file: "GENERATION PREVIOUS REASON SOURCE_GEN". */
static int read_steps(char lines[][64], int max)
{
	FILE *f = fopen(STEPS, "r");
	int n = 0;

	if (!f)
		return 0;
	while (n < max && fgets(lines[n], 64, f)) {
		lines[n][strcspn(lines[n], "\n")] = '\0';
		n++;
	}
	fclose(f);
	return n;
}

static int wait_steps(char lines[][64], int want)
{
	int i, n = 0;

	/* 60 s: a hang guard for a slow TCG, never a measurement */
	for (i = 0; i < 6000 && (n = read_steps(lines, 8)) < want; i++)
		usleep(10000);
	return n;
}

static pid_t start_watch(void)
{
	const char *const argv[] = { TOOL, "watch", "--", "/bin/sh", "-c",
		"echo \"$VMGENID_GENERATION $VMGENID_PREVIOUS "
		"$VMGENID_REASON $VMGENID_SOURCE_GENERATION\" >> " STEPS,
		NULL };

	mkdir(STATE, 0755);
	unlink(STEPS);
	return watch_start(STATE "/watch.err", argv, true);
}

/* tap_run() runs each test in a child: the watch's pid goes in a file. */
static void save_watch_pid(pid_t pid)
{
	FILE *f = fopen(STATE "/watch.pid", "w");

	if (f) {
		fprintf(f, "%d\n", (int)pid);
		fclose(f);
	}
}

static pid_t load_watch_pid(void)
{
	FILE *f = fopen(STATE "/watch.pid", "r");
	int pid = -1;

	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = -1;
		fclose(f);
	}
	return pid;
}

static const char *test_waits_before_insmod(void)
{
	char out[4096];

	unlink(STATE "/watch.pid");
	CHECK(!file_exists(dev_path), "%s exists: the module was loaded before "
	      "the test (run vmctl.py with --no-insmod)", dev_path);
	pid_t watch_pid = start_watch();

	CHECK(watch_pid > 0, "watch did not arm: %s", watch_err);
	save_watch_pid(watch_pid);
	CHECK(strstr(watch_err, "the none source"), "not on none: %s",
	      watch_err);
	CHECK(status_of(out, sizeof(out), watch_pid) == 0, "status: %.900s",
	      out);
	CHECK(strstr(out, "\"source\": \"none-waiting\""),
	      "the watch does not wait for a source: %.900s", out);
	CHECK(strstr(out, "none, waiting for a source"),
	      "status's own race-free reason: %.900s", out);
	return NULL;
}

static const char *test_switch_after_insmod(void)
{
	char out[4096], lines[8][64];
	const char *insmod[] = { "/bin/busybox", "insmod", MODULE, NULL };
	pid_t watch_pid = load_watch_pid();
	int n;

	CHECK(watch_pid > 0, "no watch from the test before");
	CHECK(run_capture(out, sizeof(out), insmod) == 0, "insmod %s: %.300s",
	      MODULE, out);
	CHECK(file_exists(dev_path), "no %s after insmod", dev_path);
	n = wait_steps(lines, 1);
	CHECK(n == 1, "%d steps after insmod, not 1", n);
	/* generation 2 from 1, a VM event: callbacks ran as after a restore */
	CHECK(!strncmp(lines[0], "2 1 vm ", 7), "the switch's step: '%s'",
	      lines[0]);
	CHECK(strtol(lines[0] + 7, NULL, 10) == gen_now(),
	      "source generation '%s', the device's %ld", lines[0], gen_now());
	CHECK(status_of(out, sizeof(out), watch_pid) == 0, "status");
	CHECK(strstr(out, "\"source\": \"sysgenid\"") &&
	      strstr(out, "\"unprotected\": 0"),
	      "the watch is not on sysgenid: %.900s", out);
	/* Still one step, a while later: no second switch. */
	usleep(500000);
	CHECK(read_steps(lines, 8) == 1, "more than one step for the switch");
	return NULL;
}

static const char *test_restore_after_switch(void)
{
	char out[4096], lines[8][64];
	int n = wait_steps(lines, 2);

	CHECK(n == 2, "%d steps after the restore, not 2", n);
	CHECK(!strncmp(lines[1], "3 2 vm ", 7), "the restore's step: '%s'",
	      lines[1]);
	CHECK(strtol(lines[1] + 7, NULL, 10) == gen_now(),
	      "source generation '%s', the device's %ld", lines[1], gen_now());
	CHECK(run_capture(out, sizeof(out), (const char *[]){ TOOL, "status",
			"--json", "--check", NULL }) == 0,
	      "status --check: %.900s", out);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *phase = argc > 2 ? argv[2] : "before-save";

	if (strcmp(phase, "before-save") == 0) {
		tap_run("auto before the module: none, waiting",
			test_waits_before_insmod);
		tap_run("insmod: switch to sysgenid, one vm step",
			test_switch_after_insmod);
		return tap_done();
	}
	if (strcmp(phase, "after-restore") == 0) {
		tap_run("restore after the switch: one more step",
			test_restore_after_switch);
		return tap_done();
	}
	printf("unknown phase %s\n", phase);
	return 1;
}
