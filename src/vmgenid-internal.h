/* SPDX-License-Identifier: MIT */
/*
 * libvmgenid internals shared by the files of src/. Nothing here is ABI.
 *
 * Locking: one mutex, vmgen_g.lock, protects the whole state below except
 * what is marked atomic. Callbacks run with it released, inside an urcu-bp
 * read-side critical section, in the one "dispatcher" thread at a time.
 * The watcher has its own mutex (watcher_lock) because stopping it means
 * joining a thread that may need vmgen_g.lock to finish.
 */
#ifndef VMGENID_INTERNAL_H
#define VMGENID_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <urcu/list.h>

#include "vmgenid.h"

#define VMGEN_HIDDEN __attribute__((visibility("hidden")))

/* VMClock ABI (include/uapi/linux/vmclock-abi.h, Linux 6.13+). */
#define VMCLOCK_MAGIC			0x4b4c4356u	/* "VCLK" */
#define VMCLOCK_OFF_MAGIC		0
#define VMCLOCK_OFF_SIZE		4
#define VMCLOCK_OFF_VERSION		8	/* le16 */
#define VMCLOCK_VERSION			1
#define VMCLOCK_OFF_SEQ			VMGEN__VMCLOCK_SEQ_OFFSET
#define VMCLOCK_OFF_FLAGS		24
#define VMCLOCK_OFF_GEN			VMGEN__VMCLOCK_GEN_OFFSET
#define VMCLOCK_MIN_SIZE		112u
#define VMCLOCK_FLAG_VM_GEN_COUNTER	(1ull << 8)
#define VMCLOCK_FLAG_NOTIFICATION	(1ull << 9)
/* A hypervisor never holds the seqcount odd for long: give up after this. */
#define VMCLOCK_READ_TRIES		1000

#define VMGEN_DEFAULT_VMCLOCK		"/dev/vmclock0"
#define VMGEN_DEFAULT_SYSGENID		"/dev/sysgenid"

/* How the watcher, vmgen_fd() and vmgen_wait() learn that the source moved. */
enum vmgen_notify {
	VMGEN_NOTIFY_NONE,	/* none source: nothing to watch */
	VMGEN_NOTIFY_FD,	/* the source fd polls (sysgenid, vmclock) */
	VMGEN_NOTIFY_INOTIFY,	/* a regular file: inotify on its path */
	VMGEN_NOTIFY_TIMER,	/* VMClock without notifications: 1 ms tick */
	VMGEN_NOTIFY_REPROBE,	/* none, waiting for a source: a slow tick */
};

/*
 * none, waiting for a source: how often to look for it (reprobe.c). The
 * module loads during boot; a process that cannot see the device node
 * (a service with PrivateDevices=yes) must not wake 10 times a second for
 * ever: every 100 ms for the first minute, every second until the tenth,
 * then every 10 s.
 */
#define VMGEN_REPROBE_MS		100
#define VMGEN_REPROBE_SLOW_MS		1000
#define VMGEN_REPROBE_SLOWEST_MS	10000

/*
 * VMGENID_1.0's fast path, frozen: binaries built against 0.1 have inline
 * code that reads it, and read any counter_kind but U32 as a VMClock page.
 * So it only ever describes a u32 counter or a VMClock page: for sysgenid
 * with the GUID page it is the counter-only view, which gives those
 * binaries what 0.1 gave them (NULL instead would make every commit fail:
 * their inline commit has no slow path).
 */
enum {
	VMGEN__COUNTER_U32 = 0,		/* sysgenid, file, none */
	VMGEN__COUNTER_VMCLOCK = 1,	/* seqcount-protected u64 */
};

struct vmgen__fastpath {
	uint32_t size;			/* sizeof(struct vmgen__fastpath) */
	uint32_t counter_kind;		/* VMGEN__COUNTER_* */
	const void *counter;		/* u32 counter, or the VMClock page */
	struct vmgen__local *local;
};

VMGEN_PUBLIC extern const struct vmgen__fastpath *vmgen__fastpath;

/* The MADV_WIPEONFORK page: zero in a fork child. */
struct vmgen_local_page {
	struct vmgen__local local;	/* VMGENID_1.0 view: the counter only */
	uint64_t armed;			/* 1 in the process that set it up */
	struct vmgen__local fast;	/* VMGENID_1.1 view: with the GUID */
};

struct vmgen_cb {
	struct cds_list_head node;	/* vmgen_g.callbacks, RCU */
	struct vmgen_cb *next_free;	/* deferred free while dispatching */
	int id;
	unsigned int events;
	vmgen_callback_fn fn;
	void *arg;
	uint64_t done;			/* atomic: last generation completed */
	int removed;			/* atomic */
};

struct vmgen_state {
	pthread_mutex_t lock;

	/* 0: not initialised; 1: ready; -errno: lazy init failed for good */
	int init_state;			/* atomic for the unlocked peek */
	bool init_attempted;		/* rejected[] holds its findings */

	/* source */
	const struct vmgen_source_ops *ops;	/* the back-end in use */
	int kind;			/* enum vmgen_source_kind */
	char *path;			/* NULL for none */
	const char *rejected[VMGEN_SOURCE_COUNT];
	int src_fd;			/* O_RDONLY, -1 for none */
	bool src_is_chr;		/* a real device, not a stand-in */
	bool src_writable;		/* sysgenid opened O_RDWR: can ack */
	void *map;
	size_t map_len;
	uint64_t vmclock_flags;
	bool tracking;			/* sysgenid watcher tracking on */

	/* fast path: what the back-end describes, the core publishes */
	struct vmgen__fastpath fastpath;	/* VMGENID_1.0 view */
	uint32_t fast_kind;		/* VMGENID_1.1 view: VMGEN__FAST_* */
	const uint32_t *fast_counter;
	const uint64_t *fast_word;
	uint64_t guid_fold;		/* GUID words XORed, as handled; or 0 */

	/* sysgenid's GUID page (race-free on plain vmgenid), if offered */
	void *guid_map;			/* the page, or NULL */
	const uint64_t *guid;		/* the 16-byte GUID in it */
	uint64_t guid_handled[2];	/* the GUID the last step stands for */
	const char *race_reason;	/* why not race-free, or NULL */
	char race_reason_buf[192];	/* when the reason quotes the module */
	struct vmgen_local_page *page;
	int fork_mode;			/* enum vmgen_fork_mode */
	pid_t pid;

	/* the combined generation */
	uint64_t handled;		/* last published */
	uint64_t target;		/* >= handled; > when a step is pending */
	uint32_t reasons;		/* of the pending step */
	uint64_t src_seen;		/* source value the target stands for */
	int last_error;			/* of the last failed dispatch */
	bool fork_seen;			/* a fork not yet folded into target */

	/* dispatch */
	bool dispatching;
	pthread_t dispatcher;
	pthread_cond_t dispatch_cond;	/* dispatch ended */
	uint64_t dispatch_ends;		/* bumped as each dispatch ends */
	uint64_t reg_seq;		/* bumped by every registration */
	struct vmgen_cb *deferred;	/* unregistered by the dispatcher */
	struct cds_list_head callbacks;
	int next_id;

	/* notification */
	int notify;			/* enum vmgen_notify */
	int epfd;			/* vmgen_fd() */
	int ifd;			/* inotify or timerfd, -1 if unused */
	int kickfd;			/* eventfd: wakes the vmgen_wait() poller */

	/* vmgen_wait() */
	bool poller;			/* a waiter is in poll() */
	uint64_t wake_seq;		/* bumped on every publish / poll end */
	pthread_cond_t wait_cond;

	/* watcher (watcher_lock for start/stop; these under lock) */
	bool watcher_running;
	bool watcher_restart;		/* fork child of a watching parent */
	pthread_t watcher;
	int stopfd;

	/* none under auto while a VM device exists: waiting for a source */
	bool watching;
	int64_t next_probe_ms;		/* CLOCK_MONOTONIC_COARSE */
	int64_t watch_since_ms;		/* when waiting began, same clock */
	int probe_tick_ms;		/* the REPROBE timerfd's interval */
	unsigned int probe_given_up;	/* 1 << kind: its open failed */
	bool probe_running;		/* the probe thread, ours to stop */
	bool probe_restart;		/* fork child of a probing parent */
	pthread_t probe_thread;
	int probe_stopfd;
	void *marker;			/* "libvmgenid:SOURCE" in maps */
	char marker_name[64];

	/* counters that tests read */
	unsigned long ack_attempts;
	unsigned long dispatches;
	unsigned long probes;
	unsigned long switches;
};

extern struct vmgen_state vmgen_g VMGEN_HIDDEN;
extern pthread_mutex_t vmgen_watcher_lock VMGEN_HIDDEN;

/* init.c */
VMGEN_HIDDEN int vmgen_enter(void);
VMGEN_HIDDEN void vmgen_teardown_locked(void);
VMGEN_HIDDEN void vmgen_lock(void);
VMGEN_HIDDEN void vmgen_unlock(void);

/*
 * A generation source back-end (STYLE.md item 11): the core calls these
 * and nothing else of a back-end; back-ends call only the helpers of
 * source.c. Optional members are NULL where a source has no such thing.
 */
struct vmgen_source_ops {
	const char *name;		/* as in a source spec */
	const char *default_path;	/* NULL: takes no path, or needs one */
	bool needs_path;		/* "file:PATH" */
	/* Open @path (NULL for none); on failure vmgen_reject() says why. */
	int (*open)(const char *path, bool explicit_path);
	/* The source's own value now (vmgen_source_generation()). */
	int (*read)(uint64_t *value);
	/*
	 * Before a read that may start a step: 0 once whatever the source
	 * saw is safe to act on (the GUID variant: the kernel has reseeded
	 * for the GUID in memory), else a negative errno.
	 */
	int (*confirm)(void);
	/* 1 with the race-free path, else 0 and *reason says why. */
	int (*race_free)(const char **reason);
	void (*drain)(int fd);		/* the notification fd was readable */
	void (*ack)(uint64_t value);	/* a dispatch for @value completed */
	int (*trigger)(uint32_t min_generation);
	int (*set_tracking)(bool on);
	int (*wait_watchers)(int timeout_ms);
	int (*reopen)(void);		/* fork child: an open file of its own */
	void (*close)(void);
};

VMGEN_HIDDEN extern const struct vmgen_source_ops vmgen_vmclock_ops;
VMGEN_HIDDEN extern const struct vmgen_source_ops vmgen_sysgenid_ops;
VMGEN_HIDDEN extern const struct vmgen_source_ops vmgen_file_ops;
VMGEN_HIDDEN extern const struct vmgen_source_ops vmgen_none_ops;

/* source.c: what the back-ends share */
VMGEN_HIDDEN void vmgen_reject(int kind, const char *reason);
VMGEN_HIDDEN int vmgen_open_source(int kind, const char *path,
				   bool explicit_path, bool want_regular);
VMGEN_HIDDEN void *vmgen_map_page(int kind, int fd, unsigned long pgoff);
VMGEN_HIDDEN int vmgen_map_source(int kind, int fd);
VMGEN_HIDDEN int vmgen_source_adopt(const struct vmgen_source_ops *ops,
				    int kind, int fd, const char *path);
VMGEN_HIDDEN void vmgen_describe_u32(const uint32_t *counter);
VMGEN_HIDDEN int vmgen_read_u32(uint64_t *value);
VMGEN_HIDDEN void vmgen_source_release(void);
VMGEN_HIDDEN int vmgen_reopen_ro(void);

/*
 * source_sysgenid.c: how long vmgen_generation() and a begin wait for the
 * kernel's reseed after the GUID moved, when the module cannot handle the
 * change on request (documented in vmgen_txn_begin(3) and vmgenid(7)).
 */
#define VMGEN_GUID_CONFIRM_MS		1000
/* The GUID ioctls go through this; the unit tests fake them. */
VMGEN_HIDDEN extern int (*vmgen_guid_ioctl)(int fd, unsigned long request,
					    unsigned long arg);

/* source_vmclock.c: also for the tests and the fuzzer */
VMGEN_HIDDEN int vmgen_vmclock_read(const void *page, uint64_t *value);

/* init.c: the core's view of the source in use */
VMGEN_HIDDEN extern const struct vmgen_source_ops *const
	vmgen_backends[VMGEN_SOURCE_COUNT];
VMGEN_HIDDEN void vmgen_fast_publish_locked(void);
VMGEN_HIDDEN int vmgen_source_read_locked(uint64_t *value);
VMGEN_HIDDEN void vmgen_source_close_locked(void);
VMGEN_HIDDEN int vmgen_source_reopen_locked(void);

/* fork.c */
VMGEN_HIDDEN int vmgen_fork_setup_locked(void);
VMGEN_HIDDEN void vmgen_fork_release_locked(void);
VMGEN_HIDDEN bool vmgen_fork_check_locked(void);
VMGEN_HIDDEN int vmgen_enter_outside_callback(void);
VMGEN_HIDDEN void vmgen_atfork_register(void);

/* generation.c */
VMGEN_HIDDEN void vmgen_publish_locked(uint64_t generation, uint64_t seen);
VMGEN_HIDDEN int64_t vmgen_settle_locked(void);
VMGEN_HIDDEN bool vmgen_in_dispatch_locked(void);

/* callbacks.c */
VMGEN_HIDDEN int vmgen_callbacks_run(uint64_t generation, uint32_t reasons,
				     uint64_t old_generation);
VMGEN_HIDDEN void vmgen_callbacks_free_deferred_locked(void);
VMGEN_HIDDEN void vmgen_callbacks_free_all_locked(void);

/* watcher.c */
VMGEN_HIDDEN int vmgen_notify_ensure_locked(void);
VMGEN_HIDDEN void vmgen_notify_close_locked(void);
VMGEN_HIDDEN int vmgen_notify_reset_locked(void);
VMGEN_HIDDEN void vmgen_notify_drain(void);
VMGEN_HIDDEN void vmgen_watcher_restart_if_needed(void);
VMGEN_HIDDEN void vmgen_watcher_forget_locked(void);

/* reprobe.c: none under auto must not be forever */
VMGEN_HIDDEN extern const char *vmgen_probe_sysfs;
VMGEN_HIDDEN extern int vmgen_probe_kind;
VMGEN_HIDDEN extern const char *vmgen_probe_path;
VMGEN_HIDDEN bool vmgen_vm_device_present(void);
VMGEN_HIDDEN void vmgen_reprobe_locked(void);
VMGEN_HIDDEN int vmgen_reprobe_interval_locked(void);
VMGEN_HIDDEN void vmgen_watch_begin_locked(void);
VMGEN_HIDDEN void vmgen_probe_start_locked(void);
VMGEN_HIDDEN void vmgen_probe_forget_locked(void);
VMGEN_HIDDEN void vmgen_probe_stop(bool from_destructor);
VMGEN_HIDDEN void vmgen_marker_set_locked(void);
VMGEN_HIDDEN void vmgen_marker_clear_locked(void);

/* watcher.c: the epoll set follows a source that appeared */
VMGEN_HIDDEN int vmgen_notify_switch_locked(void);

/* wait.c */
VMGEN_HIDDEN void vmgen_wake_waiters_locked(void);

/* Replace fd number @old by @newfd (keeps the number stable across fork). */
VMGEN_HIDDEN int vmgen_replace_fd(int old, int newfd);

#endif /* VMGENID_INTERNAL_H */
