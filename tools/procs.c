/* SPDX-License-Identifier: MIT */
/*
 * vmgenid status: which processes use libvmgenid, and on which source.
 *
 * From /proc/PID/maps, the only place that says it without the process's
 * help: the shared library mapped (libvmgenid.so.*), and the mapping that
 * an initialised library names after its source ("/memfd:libvmgenid:
 * sysgenid", ":none", ":none-waiting", ...). A process that loaded the
 * library but never used it has the first and not the second; a static
 * link shows only the second. Other users' maps need root (ptrace read
 * access): those processes are counted, not listed.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procs.h"

#define MARKER "/memfd:libvmgenid:"

static void classify(const char *path, struct proc_use *u)
{
	const char *base = strrchr(path, '/');
	size_t n;

	base = base ? base + 1 : path;
	if (!strncmp(base, "libvmgenid.so", strlen("libvmgenid.so"))) {
		u->library = true;
	} else if (!strncmp(path, MARKER, strlen(MARKER))) {
		path += strlen(MARKER);
		n = strcspn(path, " \n");
		if (n >= sizeof(u->source))
			n = sizeof(u->source) - 1;
		memcpy(u->source, path, n);
		u->source[n] = '\0';
		u->initialised = true;
	} else if (!strcmp(path, "/dev/sysgenid")) {
		u->device = "sysgenid";
	} else if (!strncmp(path, "/dev/vmclock", strlen("/dev/vmclock"))) {
		u->device = "vmclock";
	}
}

/* 1 if @pid uses the library, 0 if not, -errno if unreadable. */
static int scan_one(int pid, struct proc_use *u)
{
	char path[64], line[4352];
	FILE *f;
	int n;

	memset(u, 0, sizeof(*u));
	u->pid = pid;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		n = 0;
		/* address perms offset dev inode path */
		if (sscanf(line, "%*s %*s %*s %*s %*s %n", &n) < 0 || n <= 0 ||
		    line[n] == '\0')
			continue;
		line[strcspn(line, "\n")] = '\0';
		classify(line + n, u);
	}
	/* a kernel thread's maps read empty; another user's: EACCES */
	if (ferror(f)) {
		n = -errno;
		fclose(f);
		return n ? n : -EIO;
	}
	fclose(f);
	if (!u->library && !u->initialised)
		return 0;
	/* a library older than the marker: the device tells */
	if (!u->initialised && u->device)
		snprintf(u->source, sizeof(u->source), "%s", u->device);
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(u->comm, sizeof(u->comm), f))
			u->comm[strcspn(u->comm, "\n")] = '\0';
		fclose(f);
	}
	return 1;
}

static int add(struct proc_scan *scan, const struct proc_use *u)
{
	struct proc_use *v;

	if (scan->n == scan->cap) {
		size_t cap = scan->cap ? 2 * scan->cap : 16;

		v = realloc(scan->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		scan->v = v;
		scan->cap = cap;
	}
	scan->v[scan->n++] = *u;
	return 0;
}

static int scan_pid(struct proc_scan *scan, int pid)
{
	struct proc_use u;
	int ret = scan_one(pid, &u);

	if (ret == -ENOENT || ret == -ESRCH || ret == 0)
		return 0;		/* gone, or not a user */
	if (ret < 0) {
		scan->unreadable++;
		return 0;
	}
	return add(scan, &u);
}

int procs_scan(const int *pids, int npids, int self, struct proc_scan *scan)
{
	struct dirent *de;
	DIR *dir;
	int i, ret = 0;
	char *end;
	long pid;

	memset(scan, 0, sizeof(*scan));
	if (npids > 0) {
		for (i = 0; i < npids && ret == 0; i++) {
			size_t before = scan->n;

			ret = scan_pid(scan, pids[i]);
			if (ret == 0 && scan->n == before)
				scan->not_users++;
		}
		return ret;
	}
	dir = opendir("/proc");
	if (!dir)
		return -errno;
	while (ret == 0 && (de = readdir(dir))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0 || pid == self)
			continue;
		ret = scan_pid(scan, (int)pid);
	}
	closedir(dir);
	return ret;
}

bool procs_unprotected(const struct proc_use *u)
{
	return !strncmp(u->source, "none", 4);
}

void procs_free(struct proc_scan *scan)
{
	free(scan->v);
	scan->v = NULL;
	scan->n = scan->cap = 0;
}
