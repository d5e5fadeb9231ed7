/* SPDX-License-Identifier: MIT */
/*
 * libvmgenid: know when this process's memory has been duplicated, by a VM
 * snapshot restore, a VM clone or a fork, and reseed before it matters.
 *
 * Every function returns 0 (or a value) on success and a negative errno on
 * failure; none sets errno as its result. Everything is thread-safe.
 * See vmgenid(7) for the overview and one man page per function.
 */
#ifndef VMGENID_H
#define VMGENID_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMGENID_VERSION_MAJOR 0
#define VMGENID_VERSION_MINOR 2
#define VMGENID_VERSION_PATCH 0

#ifndef VMGEN_PUBLIC
#define VMGEN_PUBLIC
#endif

/* What caused a generation step; also the filter a callback registers. */
enum {
	VMGEN_EVENT_VM = 1u << 0,	/* the VM was restored or cloned */
	VMGEN_EVENT_FORK = 1u << 1,	/* this process is a fork child */
	VMGEN_EVENT_ANY = VMGEN_EVENT_VM | VMGEN_EVENT_FORK,
};

/* The generation sources, best first. */
enum vmgen_source_kind {
	VMGEN_SOURCE_VMCLOCK = 0,
	VMGEN_SOURCE_SYSGENID = 1,
	VMGEN_SOURCE_FILE = 2,
	VMGEN_SOURCE_NONE = 3,
};
#define VMGEN_SOURCE_COUNT 4

/* How fork is detected. */
enum vmgen_fork_mode {
	VMGEN_FORK_WIPEONFORK = 1,	/* a MADV_WIPEONFORK page */
	VMGEN_FORK_ATFORK = 2,		/* pthread_atfork plus a pid check */
};

/* vmgen_init() flags */
enum {
	VMGEN_INIT_WATCHER = 1u << 0,	/* start the watcher thread */
	VMGEN_INIT_TRACKING = 1u << 1,	/* sysgenid watcher tracking on */
};

/* What a callback is told about the step it runs for. Frozen. */
struct vmgen_event {
	uint32_t reasons;		/* VMGEN_EVENT_* bits, coalesced */
	uint32_t reserved;		/* zero */
	uint64_t old_generation;	/* last generation handled */
	uint64_t new_generation;	/* the generation being handled */
};

/* Returns 0, or a negative errno to fail the dispatch (fail closed). */
typedef int (*vmgen_callback_fn)(const struct vmgen_event *event, void *arg);

/* A transaction token: the combined generation at begin. Frozen. */
struct vmgen_txn {
	uint64_t generation;		/* 0: never commits */
};

/* Initialisation (optional: first use initialises from VMGENID_SOURCE). */
VMGEN_PUBLIC int vmgen_init(const char *source, unsigned int flags);

/* The combined generation, after running every pending callback. */
VMGEN_PUBLIC int64_t vmgen_generation(void);

/* Reseed callbacks. register returns an id > 0. */
VMGEN_PUBLIC int vmgen_callback_register(vmgen_callback_fn fn, void *arg,
					 unsigned int events);
VMGEN_PUBLIC int vmgen_callback_unregister(int id);

/* Eager mode and event loops. */
VMGEN_PUBLIC int vmgen_watcher_start(void);
VMGEN_PUBLIC int vmgen_watcher_stop(void);
VMGEN_PUBLIC int vmgen_fd(void);
VMGEN_PUBLIC int vmgen_dispatch(void);
VMGEN_PUBLIC int64_t vmgen_wait(uint64_t generation, int timeout_ms);

/* Orchestration (sysgenid; -EOPNOTSUPP elsewhere). */
VMGEN_PUBLIC int vmgen_tracking_enable(void);
VMGEN_PUBLIC int vmgen_tracking_disable(void);
VMGEN_PUBLIC int vmgen_wait_watchers(int timeout_ms);
VMGEN_PUBLIC int vmgen_trigger(uint32_t min_generation);

/* Status. */
VMGEN_PUBLIC int vmgen_source(void);
VMGEN_PUBLIC const char *vmgen_source_name(int kind);
VMGEN_PUBLIC const char *vmgen_source_path(void);
VMGEN_PUBLIC const char *vmgen_source_rejected(int kind);
VMGEN_PUBLIC int vmgen_source_generation(uint64_t *value);
VMGEN_PUBLIC int vmgen_source_race_free(const char **reason);
VMGEN_PUBLIC int vmgen_fork_mode(void);
VMGEN_PUBLIC const char *vmgen_strerror(int err);

/*
 * The fast path (VMGENID_1.1). Internal layout, compiled into applications:
 * frozen, and size-checked by a test. A release that needs another layout
 * or kind publishes it under a new symbol and keeps this one meaning what
 * it means; the inline code below sends any kind it does not know to the
 * slow path. (VMGENID_1.0's vmgen__fastpath still serves binaries built
 * against 0.1; see src/vmgenid-internal.h.)
 */
struct vmgen__local {			/* in a MADV_WIPEONFORK page */
	uint64_t generation;		/* handled; 0 sends callers slow */
	uint64_t source_seen;		/* source value it was handled for */
};

enum {
	VMGEN__FAST_SLOW = 0,		/* nothing published: go slow */
	/* sysgenid (with or without the GUID), file, none: one path */
	VMGEN__FAST_WORDS = 1,		/* *counter ^ word[0] ^ word[1] */
	VMGEN__FAST_VMCLOCK = 2,	/* u64 *word under seqcount *counter */
};

/*
 * Exported by value, not through a pointer: one dependent load less, and
 * an executable may address it directly. 32 bytes, aligned to 32, so that
 * it never straddles a cache line.
 */
struct vmgen__fast {
	uint32_t kind;			/* VMGEN__FAST_*; written last */
	uint32_t size;			/* sizeof(struct vmgen__fast) */
	const uint32_t *counter;	/* u32 counter, or VMClock's seqcount */
	const uint64_t *word;		/* GUID words or zeros; VMClock's gen */
	struct vmgen__local *local;
} __attribute__((aligned(32)));

#define VMGEN__VMCLOCK_SEQ_OFFSET 12
#define VMGEN__VMCLOCK_GEN_OFFSET 104

VMGEN_PUBLIC extern struct vmgen__fast vmgen__fast;
VMGEN_PUBLIC int vmgen__txn_begin_slow(struct vmgen_txn *txn);

/*
 * vmgen_txn_begin() and vmgen_txn_commit() are inline so that the unchanged
 * path is a handful of loads; the library also exports them as real symbols
 * for FFI and dlopen users. Define VMGEN_NO_INLINE to declare those instead.
 */
#ifdef VMGEN_NO_INLINE
VMGEN_PUBLIC int vmgen_txn_begin(struct vmgen_txn *txn);
VMGEN_PUBLIC bool vmgen_txn_commit(const struct vmgen_txn *txn);
#else
#ifndef VMGEN_INLINE
#define VMGEN_INLINE static inline
#endif

/* 0 when the slow path must decide, else the handled combined generation. */
VMGEN_INLINE uint64_t vmgen__fast_generation(void)
{
	uint32_t kind = __atomic_load_n(&vmgen__fast.kind, __ATOMIC_ACQUIRE);
	const struct vmgen__local *local;
	const uint32_t *counter;
	const uint64_t *word;
	uint64_t gen, seen, now;

	/*
	 * The other fields were written before kind was released: plain
	 * loads, once kind is known. The library publishes generation 0,
	 * then source_seen, then the new generation (release stores).
	 * Reading source_seen first and the generation after it (acquire),
	 * a reader gets a pair that belongs together, or generation 0, or a
	 * generation newer than source_seen; then the source read below has
	 * moved past source_seen (sources never repeat a value), so it goes
	 * slow. No re-read, no standalone fence (ThreadSanitizer can check
	 * this), and on x86 every load is a plain mov.
	 */
	if (__builtin_expect(kind == VMGEN__FAST_WORDS, 1)) {
		local = vmgen__fast.local;
		counter = vmgen__fast.counter;
		word = vmgen__fast.word;
		seen = __atomic_load_n(&local->source_seen, __ATOMIC_ACQUIRE);
		gen = __atomic_load_n(&local->generation, __ATOMIC_ACQUIRE);
		/* Branch-free: the words are zeros where there is no GUID. */
		now = (uint64_t)__atomic_load_n(counter, __ATOMIC_ACQUIRE) ^
		      __atomic_load_n(&word[0], __ATOMIC_RELAXED) ^
		      __atomic_load_n(&word[1], __ATOMIC_RELAXED);
	} else if (kind == VMGEN__FAST_VMCLOCK) {
		uint32_t s1, s2;

		local = vmgen__fast.local;
		counter = vmgen__fast.counter;
		word = vmgen__fast.word;
		seen = __atomic_load_n(&local->source_seen, __ATOMIC_ACQUIRE);
		gen = __atomic_load_n(&local->generation, __ATOMIC_ACQUIRE);
		s1 = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
		now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(counter, __ATOMIC_RELAXED);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		s1 = __builtin_bswap32(s1);	/* the page is little endian */
		s2 = __builtin_bswap32(s2);
		now = __builtin_bswap64(now);
#endif
		if ((s1 & 1) || s1 != s2)
			return 0;
	} else {
		return 0;	/* unpublished, or a kind newer than this code */
	}
	return seen == now ? gen : 0;
}

VMGEN_INLINE int vmgen_txn_begin(struct vmgen_txn *txn)
{
	uint64_t gen;

	if (__builtin_expect(txn == NULL, 0))
		return -EINVAL;
	gen = vmgen__fast_generation();
	if (__builtin_expect(gen != 0, 1)) {
		txn->generation = gen;
		return 0;
	}
	return vmgen__txn_begin_slow(txn);
}

VMGEN_INLINE bool vmgen_txn_commit(const struct vmgen_txn *txn)
{
	return txn != NULL && txn->generation != 0 &&
	       vmgen__fast_generation() == txn->generation;
}
#endif /* VMGEN_NO_INLINE */

#ifdef __cplusplus
}
#endif

#endif /* VMGENID_H */
