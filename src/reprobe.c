/* SPDX-License-Identifier: MIT */
/*
 * Under auto, none must not be forever (vmgenid(7), "A source that
 * appears later"). A process that found no VM source on a machine that
 * has a VM Generation ID or VMClock device (the module is not loaded yet:
 * boot order) keeps watching for the device node and switches to it with
 * one combined-generation step.
 *
 * Why a thread and not only the slow path: the inline begin and commit
 * share one check, so a fast path that sends begin to the slow path fails
 * every commit too, and a program that only begins and commits (the
 * OpenSSL provider) never reaches the slow path while its fast path holds.
 * So while watching the fast path stays as cheap as on plain none, and a
 * small thread looks for the device every VMGEN_REPROBE_MS (slower after
 * a minute, see vmgenid-internal.h); every other entry (the slow path,
 * the watcher, vmgen_fd(), vmgen_wait()) also looks, at most twice as
 * often, by a coarse clock (vDSO, no syscall). The thread ends once the source is in use; the fork child of
 * a probing parent starts its own on its first slow-path entry, which a
 * fork forces (the fast path reads generation 0 in a child).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "vmgenid-internal.h"

/* Where the device is looked for; the unit tests point these elsewhere. */
const char *vmgen_probe_sysfs = "/sys";
int vmgen_probe_kind = -1;		/* -1: vmclock, then sysgenid */
const char *vmgen_probe_path;		/* with vmgen_probe_kind */

/* ACPI ids of the devices a source can appear for (the kernel drivers'). */
static const char *const vm_device_ids[] = {
	"VM_GEN_COUNTER", "VMGENCTR",	/* vmgenid: QEMU, Hyper-V, ... */
	"AMZNC10C", "VMCLOCK",		/* vmclock */
};

static bool names_vm_device(const char *text)
{
	size_t i, n;
	const char *p;

	for (i = 0; i < sizeof(vm_device_ids) / sizeof(vm_device_ids[0]); i++) {
		n = strlen(vm_device_ids[i]);
		for (p = text; *p; p++)
			if (!strncasecmp(p, vm_device_ids[i], n))
				return true;
	}
	return false;
}

static bool file_names_vm_device(int dirfd, const char *name)
{
	char buf[256];
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return names_vm_device(buf);
}

/* ACPI devices: modalias is "acpi:HID:CID:...", hid the HID alone. */
static bool acpi_device_present(const char *root)
{
	char path[512];
	struct dirent *de;
	bool found = false;
	DIR *dir;
	int fd;

	snprintf(path, sizeof(path), "%s/bus/acpi/devices", root);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		fd = openat(dirfd(dir), de->d_name,
			    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		found = file_names_vm_device(fd, "modalias") ||
			file_names_vm_device(fd, "hid");
		close(fd);
	}
	closedir(dir);
	return found;
}

/* A device bound to a platform driver (device-tree machines, 6.10+). */
static bool platform_device_bound(const char *root, const char *driver)
{
	char path[512];
	struct dirent *de;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/bus/platform/drivers/%s", root,
		 driver);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir)))
		found = de->d_type == DT_LNK && strcmp(de->d_name, "module");
	closedir(dir);
	return found;
}

bool vmgen_vm_device_present(void)
{
	const char *root = vmgen_probe_sysfs;

	return acpi_device_present(root) ||
	       platform_device_bound(root, "vmgenid") ||
	       platform_device_bound(root, "vmclock");
}

static int64_t coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vmgen_watch_begin_locked(void)
{
	vmgen_g.watching = true;
	vmgen_g.watch_since_ms = coarse_ms();
	vmgen_g.notify = VMGEN_NOTIFY_REPROBE;
}

int vmgen_reprobe_interval_locked(void)
{
	int64_t waited = coarse_ms() - vmgen_g.watch_since_ms;

	if (waited < 60 * 1000)
		return VMGEN_REPROBE_MS;
	if (waited < 600 * 1000)
		return VMGEN_REPROBE_SLOW_MS;
	return VMGEN_REPROBE_SLOWEST_MS;
}

/* Slow down the tick of vmgen_fd() with the probes (watcher.c made it). */
static void retune_tick_locked(int interval)
{
	struct itimerspec its = {
		.it_interval = { interval / 1000, interval % 1000 * 1000000L },
		.it_value = { interval / 1000, interval % 1000 * 1000000L },
	};

	if (vmgen_g.notify != VMGEN_NOTIFY_REPROBE || vmgen_g.ifd < 0 ||
	    vmgen_g.probe_tick_ms == interval)
		return;
	if (timerfd_settime(vmgen_g.ifd, 0, &its, NULL) == 0)
		vmgen_g.probe_tick_ms = interval;
}

/*
 * Is there something at @path worth a real open? Only this touches
 * nothing of the state, so a node that is not ready costs no switch.
 */
static bool candidate_ready(const char *path, bool explicit_path)
{
	struct stat st;
	bool ok;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return false;
	ok = fstat(fd, &st) == 0 &&
	     (S_ISCHR(st.st_mode) ||
	      (explicit_path && S_ISREG(st.st_mode) &&
	       st.st_size >= (off_t)sizeof(uint32_t)));
	close(fd);
	return ok;
}

/*
 * Leave none for @kind. Nothing commits across the switch: a transaction
 * begun on none may predate a restore that none could not see. The step
 * is folded with any pending one, so callbacks run once, with a VM event.
 */
static int switch_locked(int kind, const char *path, bool explicit_path)
{
	struct vmgen_local_page *page = vmgen_g.page;
	uint64_t value;
	bool pending;
	int ret;

	__atomic_store_n(&vmgen__fast.kind, VMGEN__FAST_SLOW,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&vmgen__fastpath, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&page->local.generation, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&page->fast.generation, 0, __ATOMIC_RELEASE);
	vmgen_source_close_locked();
	ret = vmgen_backends[kind]->open(path, explicit_path);
	if (ret == 0) {
		ret = vmgen_source_read_locked(&value);
		if (ret < 0)
			vmgen_source_close_locked();
	}
	if (ret < 0) {
		/* Back to none as it was; do not try this one again. */
		vmgen_g.probe_given_up |= 1u << kind;
		(void)vmgen_none_ops.open(NULL, false);
		value = vmgen_g.src_seen;
	} else {
		vmgen_g.rejected[kind] = NULL;	/* "missing" at init */
		vmgen_g.watching = false;
		vmgen_g.src_seen = value;
		if (vmgen_g.target == vmgen_g.handled)
			vmgen_g.target++;
		vmgen_g.reasons |= VMGEN_EVENT_VM;
		vmgen_g.switches++;
	}
	pending = vmgen_g.target != vmgen_g.handled;
	vmgen_g.fastpath.size = sizeof(vmgen_g.fastpath);
	vmgen_g.fastpath.local = &page->local;
	vmgen_publish_locked(pending ? 0 : vmgen_g.handled, value);
	__atomic_store_n(&vmgen__fastpath, &vmgen_g.fastpath, __ATOMIC_RELEASE);
	vmgen_fast_publish_locked();
	if (ret == 0) {
		vmgen_marker_set_locked();
		(void)vmgen_notify_switch_locked();
		vmgen_wake_waiters_locked();
	} else {
		vmgen_g.notify = VMGEN_NOTIFY_REPROBE;
	}
	return ret;
}

void vmgen_reprobe_locked(void)
{
	static const int order[] = { VMGEN_SOURCE_VMCLOCK,
				     VMGEN_SOURCE_SYSGENID };
	const char *path;
	int64_t now;
	size_t i;
	int kind;

	if (!vmgen_g.watching)
		return;
	now = coarse_ms();
	if (now < vmgen_g.next_probe_ms)
		return;
	vmgen_g.next_probe_ms = now + vmgen_reprobe_interval_locked() / 2;
	vmgen_g.probes++;
	if (vmgen_probe_kind >= 0) {
		if (!(vmgen_g.probe_given_up & (1u << vmgen_probe_kind)) &&
		    candidate_ready(vmgen_probe_path, true))
			(void)switch_locked(vmgen_probe_kind, vmgen_probe_path,
					    true);
	} else {
		for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
			kind = order[i];
			path = vmgen_backends[kind]->default_path;
			if (vmgen_g.probe_given_up & (1u << kind) ||
			    !candidate_ready(path, false))
				continue;
			if (switch_locked(kind, path, false) == 0)
				break;
		}
	}
	/* Every candidate failed for good: nothing left to wait for. */
	if (vmgen_g.watching &&
	    (vmgen_g.probe_given_up & (1u << VMGEN_SOURCE_SYSGENID)) &&
	    (vmgen_g.probe_given_up & (1u << VMGEN_SOURCE_VMCLOCK)))
		vmgen_g.watching = false;
	if (vmgen_g.watching && vmgen_probe_kind >= 0 &&
	    (vmgen_g.probe_given_up & (1u << vmgen_probe_kind)))
		vmgen_g.watching = false;
	if (vmgen_g.watching) {
		retune_tick_locked(vmgen_reprobe_interval_locked());
		return;
	}
	vmgen_marker_set_locked();
	/* Given up: none for good, and vmgen_fd() stops ticking. */
	if (vmgen_g.kind == VMGEN_SOURCE_NONE) {
		vmgen_g.notify = VMGEN_NOTIFY_NONE;
		(void)vmgen_notify_switch_locked();
	}
}

static void *probe_main(void *arg)
{
	struct pollfd pfd = { .fd = (int)(intptr_t)arg, .events = POLLIN };
	int timeout = VMGEN_REPROBE_MS;
	bool done;

	for (;;) {
		if (poll(&pfd, 1, timeout) > 0)
			break;		/* vmgen_probe_stop() */
		vmgen_lock();
		if (vmgen_g.watching)
			(void)vmgen_settle_locked();
		done = !vmgen_g.watching;
		timeout = vmgen_reprobe_interval_locked();
		/* Ended on our own: nobody will join us. */
		if (done && vmgen_g.probe_running) {
			vmgen_g.probe_running = false;
			close(vmgen_g.probe_stopfd);
			vmgen_g.probe_stopfd = -1;
			pthread_detach(pthread_self());
		}
		vmgen_unlock();
		if (done)
			break;
	}
	return NULL;
}

/* With the state lock held; idempotent. The slow path still probes. */
void vmgen_probe_start_locked(void)
{
	sigset_t all, old;
	int stopfd, ret;

	vmgen_g.probe_restart = false;
	if (!vmgen_g.watching || vmgen_g.probe_running)
		return;
	stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stopfd < 0)
		return;
	/* The application's signals belong to its own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&vmgen_g.probe_thread, NULL, probe_main,
			     (void *)(intptr_t)stopfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		close(stopfd);
		return;
	}
	vmgen_g.probe_stopfd = stopfd;
	vmgen_g.probe_running = true;
}

/* Fork child: the thread was not copied; vmgen_enter() starts one. */
void vmgen_probe_forget_locked(void)
{
	vmgen_g.probe_restart = vmgen_g.watching;
	if (vmgen_g.probe_stopfd >= 0)
		close(vmgen_g.probe_stopfd);
	vmgen_g.probe_stopfd = -1;
	vmgen_g.probe_running = false;
}

/*
 * Without the state lock. From the destructor, do not wait for a thread
 * that may wait for a dispatch that the exiting thread is in.
 */
void vmgen_probe_stop(bool from_destructor)
{
	pthread_t thread;
	uint64_t one = 1;
	int stopfd;

	vmgen_lock();
	vmgen_g.probe_restart = false;
	if (!vmgen_g.probe_running || vmgen_g.pid != getpid() ||
	    pthread_equal(vmgen_g.probe_thread, pthread_self()) ||
	    (from_destructor && vmgen_g.dispatching)) {
		vmgen_unlock();
		return;
	}
	thread = vmgen_g.probe_thread;
	stopfd = vmgen_g.probe_stopfd;
	vmgen_g.probe_running = false;
	vmgen_g.probe_stopfd = -1;
	vmgen_unlock();
	(void)!write(stopfd, &one, sizeof(one));
	pthread_join(thread, NULL);
	close(stopfd);
}

/*
 * Say in /proc/PID/maps which source this process uses, so that
 * `vmgenid status` can tell a process on none from one that loaded the
 * library and never used it: a mapping of an empty memfd named
 * "libvmgenid:SOURCE" ("libvmgenid:none-waiting" while watching). It
 * costs one VMA and no memory (never touched); best effort.
 */
void vmgen_marker_set_locked(void)
{
	char name[64];
	void *map;
	int fd;

	snprintf(name, sizeof(name), "libvmgenid:%s%s",
		 vmgen_source_name(vmgen_g.kind),
		 vmgen_g.watching ? "-waiting" : "");
	if (vmgen_g.marker && !strcmp(name, vmgen_g.marker_name))
		return;
	vmgen_marker_clear_locked();
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		return;
	map = mmap(NULL, 1, PROT_NONE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return;
	vmgen_g.marker = map;
	snprintf(vmgen_g.marker_name, sizeof(vmgen_g.marker_name), "%s", name);
}

void vmgen_marker_clear_locked(void)
{
	if (vmgen_g.marker)
		munmap(vmgen_g.marker, 1);
	vmgen_g.marker = NULL;
	vmgen_g.marker_name[0] = '\0';
}
