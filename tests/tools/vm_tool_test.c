/* SPDX-License-Identifier: MIT */
/*
 * The vmgenid command against the real /dev/sysgenid, in the test guest
 * (tests/vm/vmctl.py): what the file source cannot show.
 *
 * Usage (as root in the guest, the harness's convention):
 *	vm_tool_test KO abi		status (race-free too), trigger, wait,
 *					watch --track
 *					and wait-watchers on one boot
 *	vm_tool_test KO before-save	starts a background "vmgenid watch"
 *	vm_tool_test KO after-restore	the restore ran its CMD, and
 *					"vmgenid wait --since" saw the step
 *
 * The tool is expected at /usr/bin/vmgenid (a static build, put there
 * with vmctl.py --file). Output: guest_tap.h lines and a summary.
 */
#include <stdint.h>
#include <sys/stat.h>

#include "guest_tap.h"
#include "guest_util.h"
#include "vm_tool_util.h"

#define TOOL "/usr/bin/vmgenid"
#define STATE "/tmp/vm-tool-test"

/* Runs the tool; its stdout (at most len - 1 bytes) lands in out. */
static int tool(char *out, size_t len, const char *const *args)
{
	const char *argv[16] = { TOOL };
	int i;

	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	return run_capture(out, len, argv);
}

#define TOOL_RUN(out, ...) \
	tool(out, sizeof(out), (const char *const[]){ __VA_ARGS__, NULL })

/* A number from the status JSON; -1 for null, -2 when absent. */
static long json_num(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(json, pat);
	if (!p)
		return -2;
	p += strlen(pat);
	return strncmp(p, "null", 4) == 0 ? -1 : strtol(p, NULL, 10);
}

/* Starts "vmgenid watch OPT -- sh -c SCRIPT", stderr to errfile. */
static pid_t start_watch(const char *errfile, const char *opt,
			 const char *script)
{
	const char *const argv[] = { TOOL, "watch", opt, "--", "/bin/sh",
				     "-c", script, NULL };

	return watch_start(errfile, argv, false);
}

static const char *test_status(void)
{
	char out[2048];
	int rc = TOOL_RUN(out, "status", "--json");

	CHECK(rc == 0, "status --json exited %d", rc);
	CHECK(strstr(out, "\"source\": \"sysgenid\""), "source: %.900s", out);
	CHECK(strstr(out, "\"path\": \"/dev/sysgenid\""), "path: %.900s", out);
	CHECK(json_num(out, "source_generation") == gen_now(),
	      "source_generation vs sysfs %ld: %.900s", gen_now(), out);
	CHECK(json_num(out, "watchers") == sysfs_attr("watchers") &&
	      json_num(out, "outdated_watchers") ==
	      sysfs_attr("outdated_watchers"), "watcher counts: %.900s", out);
	rc = TOOL_RUN(out, "status");
	CHECK(rc == 0 && strstr(out, "outdated watchers:"), "text: %.900s", out);
	return NULL;
}

/*
 * Race-free or not, as the module says: the GUID page "offered" means the
 * library uses it; otherwise the tool quotes the module's reason. The mode
 * is the module's own.
 */
static const char *test_status_race_free(void)
{
	char out[2048], want[512], mode[64], page[256];
	int rc = TOOL_RUN(out, "status", "--json");

	CHECK(rc == 0, "status --json exited %d", rc);
	CHECK(sysfs_attr_str("mode", mode, sizeof(mode)) &&
	      sysfs_attr_str("guid_page", page, sizeof(page)),
	      "the module has no mode or guid_page attribute");
	snprintf(want, sizeof(want), "\"module_mode\": \"%s\"", mode);
	CHECK(strstr(out, want), "module_mode, sysfs %s: %.500s", mode, out);
	snprintf(want, sizeof(want), "\"guid_page\": \"%s\"", page);
	CHECK(strstr(out, want), "guid_page, sysfs %s: %.500s", page, out);
	if (strcmp(page, "offered") == 0) {
		CHECK(strstr(out, "\"race_free\": true") &&
		      strstr(out, "\"race_free_reason\": null"),
		      "GUID page offered, not race-free: %.500s", out);
	} else {
		snprintf(want, sizeof(want), "\"race_free_reason\": "
			 "\"module does not offer the GUID page: %s\"", page);
		CHECK(strstr(out, "\"race_free\": false") && strstr(out, want),
		      "GUID page %s: %.500s", page, out);
	}
	rc = TOOL_RUN(out, "status");
	CHECK(rc == 0 && strstr(out, "race-free:") &&
	      strstr(out, "module mode:") && strstr(out, "guid page:"),
	      "text: %.500s", out);
	return NULL;
}

static const char *test_trigger(void)
{
	char out[64];
	long before = gen_now();

	CHECK(TOOL_RUN(out, "trigger") == 0, "trigger failed");
	CHECK(gen_now() == before + 1, "%ld -> %ld", before, gen_now());
	CHECK(TOOL_RUN(out, "trigger", "--min", "1000") == 0, "--min");
	CHECK(gen_now() == (before + 2 > 1000 ? before + 2 : 1000),
	      "--min 1000 from %ld gave %ld", before + 1, gen_now());
	return NULL;
}

static const char *test_wait(void)
{
	char out[2048], gen[32];
	int rc;

	CHECK(TOOL_RUN(out, "status", "--json") == 0, "status");
	snprintf(gen, sizeof(gen), "%ld", json_num(out, "source_generation"));
	rc = TOOL_RUN(out, "wait", "--since", gen, "--timeout", "0.2");
	CHECK(rc == 3, "wait without a step exited %d, not 3", rc);
	CHECK(TOOL_RUN(out, "trigger") == 0, "trigger");
	rc = TOOL_RUN(out, "wait", "--since", gen, "--timeout", "10");
	CHECK(rc == 0, "wait --since after a trigger exited %d", rc);
	return NULL;
}

/*
 * --track: wait-watchers must hold until the CMD of the step finished,
 * since the tool acknowledges only after its callback (and CMD) returned.
 */
static const char *test_watch_track(void)
{
	const char *done = STATE "/track.done", *go = STATE "/track.go";
	char out[2048];
	pid_t pid;
	int rc, status, fd;

	mkdir(STATE, 0755);
	unlink(done);
	unlink(go);
	/* CMD holds until told to go, so the wait below cannot race it. */
	pid = start_watch(STATE "/track.err", "--track",
			  "while [ ! -e " STATE "/track.go ]; do sleep 1; "
			  "done; echo $VMGENID_SOURCE_GENERATION > "
			  STATE "/track.done");
	CHECK(pid > 0, "watch --track did not arm: %s", watch_err);
	CHECK(TOOL_RUN(out, "status", "--json") == 0 &&
	      json_num(out, "watchers") >= 1, "not tracked: %.900s", out);
	CHECK(TOOL_RUN(out, "trigger") == 0, "trigger");
	rc = TOOL_RUN(out, "wait-watchers", "--timeout", "0.1");
	CHECK(rc == 3, "wait-watchers during CMD exited %d, not 3", rc);
	CHECK(TOOL_RUN(out, "status", "--json") == 0 &&
	      json_num(out, "outdated_watchers") >= 1,
	      "no outdated watcher while CMD runs: %.900s", out);
	fd = open(go, O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0, "%s: %s", go, strerror(errno));
	close(fd);
	rc = TOOL_RUN(out, "wait-watchers", "--timeout", "60");
	CHECK(rc == 0, "wait-watchers exited %d", rc);
	CHECK(file_exists(done), "acknowledged before CMD finished");
	kill(pid, SIGTERM);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0, "watch did not end cleanly");
	return NULL;
}

static int phase_abi(void)
{
	tap_run("status --json matches sysfs", test_status);
	tap_run("status: race-free as the module says", test_status_race_free);
	tap_run("trigger and --min", test_trigger);
	tap_run("wait --since, --timeout", test_wait);
	tap_run("watch --track holds wait-watchers", test_watch_track);
	return tap_done();
}

static const char *test_arm(void)
{
	char out[2048];
	FILE *f;

	mkdir(STATE, 0755);
	unlink(STATE "/restored");
	CHECK(TOOL_RUN(out, "status", "--json") == 0, "status");
	f = fopen(STATE "/gen", "w");
	CHECK(f, "%s", strerror(errno));
	fprintf(f, "%ld\n", json_num(out, "source_generation"));
	fclose(f);
	CHECK(start_watch(STATE "/watch.err", "--once",
			  "echo $VMGENID_SOURCE_GENERATION > "
			  STATE "/restored.tmp; mv " STATE "/restored.tmp "
			  STATE "/restored") > 0, "watch did not arm: %s",
	      watch_err);
	return NULL;
}

static const char *test_restored(void)
{
	char out[256], gen[32] = "";
	long now;
	FILE *f;
	int i, rc;

	f = fopen(STATE "/gen", "r");
	CHECK(f && fgets(gen, sizeof(gen), f), "no state from before-save");
	fclose(f);
	gen[strcspn(gen, "\n")] = '\0';
	/* The counter moves once the guest handled the ACPI notification. */
	rc = TOOL_RUN(out, "wait", "--since", gen, "--timeout", "60");
	CHECK(rc == 0, "wait --since %s exited %d", gen, rc);
	for (i = 0; i < 3000 && !file_exists(STATE "/restored"); i++)
		usleep(10000);
	f = fopen(STATE "/restored", "r");
	CHECK(f && fgets(out, sizeof(out), f), "the watch's CMD did not run");
	fclose(f);
	now = gen_now();
	CHECK(strtol(out, NULL, 10) > strtol(gen, NULL, 10) &&
	      strtol(out, NULL, 10) <= now, "CMD saw generation %.60s (before "
	      "%s, now %ld)", out, gen, now);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *phase = argc > 2 ? argv[2] : "abi";

	if (!file_exists(dev_path)) {
		printf("%s missing\n", dev_path);
		return 77;
	}
	if (strcmp(phase, "abi") == 0)
		return phase_abi();
	if (strcmp(phase, "before-save") == 0) {
		tap_run("watch armed before the snapshot", test_arm);
		return tap_done();
	}
	if (strcmp(phase, "after-restore") == 0) {
		tap_run("restore ran the watch's CMD", test_restored);
		return tap_done();
	}
	printf("unknown phase %s\n", phase);
	return 1;
}
