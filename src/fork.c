/* SPDX-License-Identifier: MIT */
/*
 * Fork detection. The fast path reads struct vmgen__local from a page
 * marked MADV_WIPEONFORK, so a fork child reads generation 0 and takes the
 * slow path without any hook having to run. Where the kernel (or an
 * emulator such as qemu-user) ignores the advice, a pthread_atfork child
 * handler zeroes the page instead, and the slow path also compares
 * getpid() with the pid of the last fork check, which catches a raw clone.
 *
 * VMGENID_FORK_DETECTION=atfork in the environment forces the fallback
 * (read at initialisation; tests use it to cover both modes).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urcu-bp.h>

#include "vmgenid-internal.h"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

pthread_mutex_t vmgen_watcher_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Does the advice really wipe? Clone a child that reports what it reads.
 * A raw clone, not fork(): fork() would run the application's atfork
 * handlers and ours, which take the state lock the caller holds. The child
 * only loads one word and exits.
 */
static bool wipeonfork_works(struct vmgen_local_page *page)
{
	int status = 0;
	pid_t pid, r;

	__atomic_store_n(&page->armed, 1, __ATOMIC_RELAXED);
	pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL,
			     NULL, NULL);
	if (pid < 0)
		return false;
	if (pid == 0)
		syscall(SYS_exit_group,
			__atomic_load_n(&page->armed, __ATOMIC_RELAXED) ? 1 : 0);
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	/* SIGCHLD ignored: the child was reaped for us; cannot confirm. */
	if (r != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool want_atfork_mode(void)
{
	const char *mode = secure_getenv("VMGENID_FORK_DETECTION");

	return mode && !strcmp(mode, "atfork");
}

int vmgen_fork_setup_locked(void)
{
	long pagesz = sysconf(_SC_PAGESIZE);
	void *page;

	if (pagesz <= 0)
		pagesz = 4096;
	page = mmap(NULL, (size_t)pagesz, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		return -errno;
	vmgen_g.page = page;
	vmgen_g.fork_mode = VMGEN_FORK_ATFORK;
	if (!want_atfork_mode() &&
	    madvise(page, (size_t)pagesz, MADV_WIPEONFORK) == 0 &&
	    wipeonfork_works(vmgen_g.page))
		vmgen_g.fork_mode = VMGEN_FORK_WIPEONFORK;
	__atomic_store_n(&vmgen_g.page->armed, 1, __ATOMIC_RELAXED);
	vmgen_g.pid = getpid();
	vmgen_atfork_register();
	return 0;
}

void vmgen_fork_release_locked(void)
{
	long pagesz = sysconf(_SC_PAGESIZE);

	if (vmgen_g.page)
		munmap(vmgen_g.page, (size_t)(pagesz > 0 ? pagesz : 4096));
	vmgen_g.page = NULL;
}

/*
 * Called on every slow-path entry. In a fork child: give the child its own
 * fds (sharing the parent's would share acknowledgement and wake-ups),
 * forget the parent's dispatcher and watcher threads, and record the fork
 * so that the next observation folds it into one generation step.
 */
bool vmgen_fork_check_locked(void)
{
	struct vmgen_local_page *page = vmgen_g.page;
	pid_t pid;

	if (!page)
		return false;
	if (__atomic_load_n(&page->armed, __ATOMIC_RELAXED) &&
	    (pid = getpid()) == vmgen_g.pid)
		return false;
	pid = getpid();
	/* After a raw clone nothing zeroed the page: stop the fast path. */
	__atomic_store_n(&page->local.generation, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&page->fast.generation, 0, __ATOMIC_RELEASE);
	vmgen_g.pid = pid;
	__atomic_store_n(&page->armed, 1, __ATOMIC_RELAXED);
	vmgen_g.dispatching = false;
	vmgen_g.poller = false;
	vmgen_callbacks_free_deferred_locked();
	vmgen_watcher_forget_locked();
	vmgen_probe_forget_locked();
	(void)vmgen_source_reopen_locked();
	(void)vmgen_notify_reset_locked();
	vmgen_g.fork_seen = true;
	return true;
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&vmgen_g.lock);
	urcu_bp_before_fork();
}

static void atfork_parent(void)
{
	urcu_bp_after_fork_parent();
	pthread_mutex_unlock(&vmgen_g.lock);
}

static void atfork_child(void)
{
	pthread_condattr_t attr;
	struct vmgen_local_page *page = vmgen_g.page;

	urcu_bp_after_fork_child();
	if (page && vmgen_g.fork_mode == VMGEN_FORK_ATFORK) {
		__atomic_store_n(&page->local.generation, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&page->local.source_seen, 0,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&page->fast.generation, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&page->fast.source_seen, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&page->armed, 0, __ATOMIC_RELAXED);
	}
	/* Threads that waited on these do not exist in the child. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&vmgen_g.dispatch_cond, &attr);
	pthread_cond_init(&vmgen_g.wait_cond, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&vmgen_watcher_lock, NULL);
	pthread_mutex_unlock(&vmgen_g.lock);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_install(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&vmgen_g.dispatch_cond, &attr);
	pthread_cond_init(&vmgen_g.wait_cond, &attr);
	pthread_condattr_destroy(&attr);
	/*
	 * liburcu-bp leaves its fork hooks to its user: we hold its locks
	 * across fork so that the child's registry is consistent.
	 */
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void vmgen_atfork_register(void)
{
	pthread_once(&atfork_once, atfork_install);
}
