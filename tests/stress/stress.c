/* SPDX-License-Identifier: MIT */
/*
 * Stress: the library's promises under contention, against the file source.
 *
 *   8 threads   begin/commit transactions in a loop;
 *   2 threads   register and unregister callbacks (some remove themselves);
 *   1 stepper   writes a new counter into the file STEPS times, calling
 *               vmgen_generation() after each write, and forks a child
 *               every FORK_EVERY steps.
 *
 * Usage: stress lazy|watcher (watcher: the watcher thread competes for
 * the dispatches too). Checks, each with no false alarm by construction:
 *
 * - Every permanent callback runs exactly once per combined generation,
 *   with old_generation = new - 1 (the man page: the generation starts at
 *   1 and moves by one per observed change; the stepper observes each of
 *   its writes, so none coalesce): per-callback, per-generation counters.
 * - Reseed before use: when begin() or vmgen_generation() returns G, every
 *   permanent callback has completed for G.
 * - No transaction commits across a write. The stepper bumps `started`
 *   before its pwrite() and `done` after it returns. A transaction loads
 *   s = started after begin() and d = done before commit(). Begin read the
 *   counter before s was loaded, so it saw no write after the s-th;
 *   commit read it after d was loaded, so it saw the d-th or a later one.
 *   Every write stores a new value, so d > s proves the counter changed
 *   between the two reads, and such a commit must return false. (Stores
 *   and loads are seq_cst; the file page is the page the library maps.)
 * - Unregister: once vmgen_callback_unregister() has returned, the callback
 *   is not running and never runs again; no registration runs twice for
 *   one generation; a callback may unregister itself.
 * - Fork: a transaction begun before fork() never commits in the child;
 *   the child's first vmgen_generation() is the parent's + 1, after every
 *   permanent callback ran once for it with the FORK reason; in the parent
 *   the same transaction still commits (nothing changed there).
 * - Liveness: with nothing changing, a fresh transaction commits.
 *
 * A watchdog ends the run if it hangs (a deadlock is a failure too).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmgenid.h>

#define STEPS 10000
#define FORK_EVERY 500
#define TXN_THREADS 8
#define REG_THREADS 2
#define PERMANENT 4
#define MAX_GEN (STEPS + 16)
#define REG_SLOTS 100000	/* registrations per registering thread */
#define WATCHDOG_S 100
#define CHILD_TIMEOUT_MS 20000

static int64_t gen0;		/* the generation before the first step */
static bool stop;		/* atomic */
static unsigned long violations; /* atomic */
static unsigned long steps_done; /* atomic, for the watchdog */

/* The stepper's write counters (see the top comment). */
static uint64_t writes_started, writes_done;

__attribute__((format(printf, 1, 2)))
static void violation(const char *fmt, ...)
{
	unsigned long n = __atomic_add_fetch(&violations, 1,
					     __ATOMIC_RELAXED);
	va_list ap;

	if (n > 20)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "VIOLATION: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static bool stopping(void)
{
	return __atomic_load_n(&stop, __ATOMIC_RELAXED);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- permanent callbacks: counted per generation ------------------------ */

static unsigned int perm_count[PERMANENT][MAX_GEN];	/* atomic */
static uint32_t perm_reasons[PERMANENT][MAX_GEN];

static bool gen_in_range(uint64_t g)
{
	return g >= 1 && g < MAX_GEN;
}

static int permanent_cb(const struct vmgen_event *ev, void *arg)
{
	int p = (int)(intptr_t)arg;
	uint64_t g = ev->new_generation;

	if (!gen_in_range(g)) {
		violation("callback %d: generation %llu out of range", p,
			  (unsigned long long)g);
		return 0;
	}
	if (ev->old_generation + 1 != g)
		violation("callback %d: step %llu -> %llu is not one step", p,
			  (unsigned long long)ev->old_generation,
			  (unsigned long long)g);
	if (ev->reserved != 0)
		violation("callback %d: reserved = %u", p, ev->reserved);
	/*
	 * A callback may call the read functions (one of them does), and
	 * one lingers, to widen the window in which a generation published
	 * too early would be seen.
	 */
	if (p == 0 && vmgen_source_generation(&(uint64_t){ 0 }) < 0)
		violation("vmgen_source_generation() failed in a callback");
	if (p == PERMANENT - 1)
		sched_yield();
	perm_reasons[p][g] = ev->reasons;
	/* Counted last: the count means "completed". */
	__atomic_add_fetch(&perm_count[p][g], 1, __ATOMIC_RELEASE);
	return 0;
}

/* Reseed before use: every permanent callback completed for g. */
static void check_reseeded(uint64_t g, const char *who)
{
	if (g == (uint64_t)gen0)
		return;
	if (!gen_in_range(g)) {
		violation("%s returned generation %llu, out of range", who,
			  (unsigned long long)g);
		return;
	}
	for (int p = 0; p < PERMANENT; p++)
		if (!__atomic_load_n(&perm_count[p][g], __ATOMIC_ACQUIRE))
			violation("%s returned generation %llu before "
				  "callback %d completed for it", who,
				  (unsigned long long)g, p);
}

/* --- transactions ------------------------------------------------------ */

struct txn_stats {
	unsigned long begun, committed, crossed, waited;
};

static void *txn_thread(void *arg)
{
	struct txn_stats *st = arg;
	struct vmgen_txn txn;
	unsigned long i = 0;

	while (!stopping()) {
		uint64_t s, d;
		bool ok;
		int err;

		err = vmgen_txn_begin(&txn);
		s = __atomic_load_n(&writes_started, __ATOMIC_SEQ_CST);
		if (err < 0) {
			violation("vmgen_txn_begin: %d", err);
			break;
		}
		st->begun++;
		check_reseeded(txn.generation, "vmgen_txn_begin");
		/* Now and then hold the txn open until a write lands. */
		if ((++i & 63) == 0) {
			uint64_t t0 = now_ms();

			st->waited++;
			while (__atomic_load_n(&writes_done,
					       __ATOMIC_SEQ_CST) <= s &&
			       !stopping() && now_ms() - t0 < 50)
				sched_yield();
		}
		d = __atomic_load_n(&writes_done, __ATOMIC_SEQ_CST);
		ok = vmgen_txn_commit(&txn);
		if (d > s) {
			st->crossed++;
			if (ok)
				violation("txn of generation %llu committed "
					  "across write %llu",
					  (unsigned long long)txn.generation,
					  (unsigned long long)d);
		}
		st->committed += ok;
	}
	return NULL;
}

/* --- transient callbacks: registered and unregistered ------------------- */

struct slot {
	int id;			/* atomic; 0 until register returned */
	bool self_remove;	/* unregisters itself on its first call */
	bool removed;		/* atomic: unregister returned */
	int running;		/* atomic */
	uint64_t last_gen;	/* atomic */
	unsigned long calls;	/* atomic */
};

struct reg_stats {
	struct slot *slots;
	unsigned long registered, self_removed, calls;
};

static int transient_cb(const struct vmgen_event *ev, void *arg)
{
	struct slot *s = arg;
	uint64_t last;
	int id;

	if (__atomic_load_n(&s->removed, __ATOMIC_ACQUIRE))
		violation("callback %d ran after its unregister returned",
			  s->id);
	__atomic_add_fetch(&s->running, 1, __ATOMIC_ACQ_REL);
	last = __atomic_exchange_n(&s->last_gen, ev->new_generation,
				   __ATOMIC_ACQ_REL);
	if (ev->new_generation <= last)
		violation("callback %d ran for generation %llu after %llu",
			  s->id, (unsigned long long)ev->new_generation,
			  (unsigned long long)last);
	__atomic_add_fetch(&s->calls, 1, __ATOMIC_RELAXED);
	/* Linger, so that an unregister that does not wait is caught. */
	sched_yield();
	id = __atomic_load_n(&s->id, __ATOMIC_ACQUIRE);
	if (s->self_remove && id > 0) {
		int err = vmgen_callback_unregister(id);

		if (err < 0 && err != -ENOENT && err != -EINVAL)
			violation("self-unregister of %d: %d", id, err);
		__atomic_store_n(&s->removed, true, __ATOMIC_RELEASE);
	}
	if (__atomic_load_n(&s->removed, __ATOMIC_ACQUIRE) && !s->self_remove)
		violation("callback %d still running after its unregister "
			  "returned", id);
	__atomic_sub_fetch(&s->running, 1, __ATOMIC_ACQ_REL);
	return 0;
}

static void *reg_thread(void *arg)
{
	struct reg_stats *st = arg;
	struct vmgen_txn txn;

	for (unsigned long n = 0; n < REG_SLOTS && !stopping(); n++) {
		struct slot *s = &st->slots[n];
		int id, err;

		s->self_remove = n % 8 == 7;
		id = vmgen_callback_register(transient_cb, s,
					     n % 3 ? VMGEN_EVENT_ANY
						   : VMGEN_EVENT_VM);
		if (id <= 0) {
			violation("vmgen_callback_register: %d", id);
			break;
		}
		__atomic_store_n(&s->id, id, __ATOMIC_RELEASE);
		st->registered++;
		/* Let a step or two happen while registered, sometimes. */
		for (unsigned long k = n % 4; k > 0; k--) {
			if (vmgen_txn_begin(&txn) == 0)
				check_reseeded(txn.generation,
					       "vmgen_txn_begin (registrar)");
			sched_yield();
		}
		err = vmgen_callback_unregister(id);
		if (s->self_remove) {
			if (err < 0 && err != -ENOENT && err != -EINVAL)
				violation("unregister of self-removing %d: %d",
					  id, err);
			if (__atomic_load_n(&s->removed, __ATOMIC_RELAXED))
				st->self_removed++;
		} else if (err < 0) {
			violation("vmgen_callback_unregister(%d): %d", id,
				  err);
		}
		/*
		 * Only an unregister that found the callback promises it is
		 * not running: one that lost the race to the callback's own
		 * unregister returns at once, with the callback finishing.
		 */
		if (err == 0 && __atomic_load_n(&s->running, __ATOMIC_ACQUIRE))
			violation("callback %d running after its unregister "
				  "returned", id);
		__atomic_store_n(&s->removed, true, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* --- fork ---------------------------------------------------------------- */

/* In the child: returns the exit status. */
static int child_checks(const struct vmgen_txn *before, int64_t parent_gen)
{
	unsigned long v0 = __atomic_load_n(&violations, __ATOMIC_RELAXED);
	struct vmgen_txn txn;
	int64_t g;

	if (vmgen_txn_commit(before)) {
		fprintf(stderr, "child: a txn begun before fork committed\n");
		return 10;
	}
	g = vmgen_generation();
	if (g != parent_gen + 1) {
		fprintf(stderr, "child: generation %lld, parent had %lld\n",
			(long long)g, (long long)parent_gen);
		return 11;
	}
	for (int p = 0; p < PERMANENT; p++) {
		if (perm_count[p][g] != 1) {
			fprintf(stderr, "child: callback %d ran %u times for "
				"the fork step\n", p, perm_count[p][g]);
			return 12;
		}
		if (!(perm_reasons[p][g] & VMGEN_EVENT_FORK)) {
			fprintf(stderr, "child: callback %d reasons %#x "
				"without FORK\n", p, perm_reasons[p][g]);
			return 13;
		}
	}
	if (vmgen_txn_begin(&txn) < 0 || txn.generation != (uint64_t)g ||
	    !vmgen_txn_commit(&txn)) {
		fprintf(stderr, "child: a fresh txn did not commit\n");
		return 14;
	}
	if (__atomic_load_n(&violations, __ATOMIC_RELAXED) != v0)
		return 15;
	return 0;
}

static pid_t children[STEPS / FORK_EVERY];
static unsigned int nchildren;

static void fork_round(int64_t gen, unsigned int *forks)
{
	struct vmgen_txn txn;
	struct pollfd pfd;
	unsigned char verdict;
	int fds[2], r;
	pid_t pid;

	if (vmgen_txn_begin(&txn) < 0 || txn.generation != (uint64_t)gen) {
		violation("begin before fork: not generation %lld",
			  (long long)gen);
		return;
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		violation("pipe: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		violation("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		verdict = (unsigned char)child_checks(&txn, gen);
		if (write(fds[1], &verdict, 1) != 1)
			_exit(2);
		_exit(verdict);
	}
	close(fds[1]);
	children[nchildren++] = pid;
	/*
	 * Wait for the child's verdict, not for its exit: on a loaded machine
	 * the kernel can take seconds to tear down an exiting process's
	 * inotify instance (an SRCU grace period), which is no hang of ours.
	 * The children are reaped at the end.
	 */
	pfd = (struct pollfd){ .fd = fds[0], .events = POLLIN };
	do
		r = poll(&pfd, 1, CHILD_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0 || read(fds[0], &verdict, 1) != 1) {
		violation("fork child died or hung before its verdict (a lock "
			  "held across fork?)");
		kill(pid, SIGKILL);
	} else if (verdict != 0) {
		violation("fork child failed: check %u", verdict);
	}
	close(fds[0]);
	if (!vmgen_txn_commit(&txn))
		violation("parent: a txn begun before fork no longer commits");
	(*forks)++;
}

static void reap_children(void)
{
	for (unsigned int i = 0; i < nchildren; i++)
		while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
			;
}

/* --- the stepper and main ---------------------------------------------- */

static void *watchdog(void *arg)
{
	for (int s = 0; s < WATCHDOG_S; s++) {
		sleep(1);
		if (stopping())
			return NULL;
	}
	fprintf(stderr, "FAIL: no progress within %d s (%lu of %d steps): "
		"deadlock?\n", WATCHDOG_S,
		__atomic_load_n(&steps_done, __ATOMIC_RELAXED), STEPS);
	_exit(1);
}

static int make_counter_file(char *path, size_t len)
{
	const char *dir = getenv("TMPDIR");
	uint32_t v = 1;
	int fd;

	snprintf(path, len, "%s/vmgenid-stress-XXXXXX",
		 dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || pwrite(fd, &v, sizeof(v), 0) != sizeof(v)) {
		perror("counter file");
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	static struct slot slots[REG_THREADS][REG_SLOTS];
	struct txn_stats tstats[TXN_THREADS] = { 0 };
	struct reg_stats rstats[REG_THREADS] = { 0 };
	pthread_t txn_tids[TXN_THREADS], reg_tids[REG_THREADS], dog;
	unsigned long begun = 0, committed = 0, crossed = 0, waited = 0;
	unsigned long regs = 0;
	unsigned long self_removed = 0, transient_calls = 0;
	unsigned int forks = 0, missing = 0;
	const char *mode = argc > 1 ? argv[1] : "lazy";
	bool use_watcher = strcmp(mode, "watcher") == 0;
	char path[256], spec[272];
	struct vmgen_txn txn;
	int64_t g;
	int fd, err;

	if (!use_watcher && strcmp(mode, "lazy") != 0) {
		fprintf(stderr, "usage: %s lazy|watcher\n", argv[0]);
		return 2;
	}
	fd = make_counter_file(path, sizeof(path));
	snprintf(spec, sizeof(spec), "file:%s", path);
	err = vmgen_init(spec, use_watcher ? VMGEN_INIT_WATCHER : 0);
	if (err < 0) {
		fprintf(stderr, "vmgen_init(%s): %s\n", spec,
			vmgen_strerror(err));
		unlink(path);
		return 1;
	}
	for (int p = 0; p < PERMANENT; p++) {
		err = vmgen_callback_register(permanent_cb, (void *)(intptr_t)p,
					      VMGEN_EVENT_ANY);
		if (err <= 0) {
			fprintf(stderr, "register: %d\n", err);
			unlink(path);
			return 1;
		}
	}
	gen0 = vmgen_generation();
	if (gen0 < 1 || gen0 >= MAX_GEN - STEPS - 2) {
		fprintf(stderr, "initial generation %lld\n", (long long)gen0);
		unlink(path);
		return 1;
	}

	pthread_create(&dog, NULL, watchdog, NULL);
	for (int i = 0; i < TXN_THREADS; i++)
		pthread_create(&txn_tids[i], NULL, txn_thread, &tstats[i]);
	for (int i = 0; i < REG_THREADS; i++) {
		rstats[i].slots = slots[i];
		pthread_create(&reg_tids[i], NULL, reg_thread, &rstats[i]);
	}

	for (uint32_t k = 1; k <= STEPS; k++) {
		uint32_t v = 1 + k;

		__atomic_store_n(&writes_started, k, __ATOMIC_SEQ_CST);
		if (pwrite(fd, &v, sizeof(v), 0) != sizeof(v)) {
			violation("pwrite: %s", strerror(errno));
			break;
		}
		__atomic_store_n(&writes_done, k, __ATOMIC_SEQ_CST);
		if (use_watcher) {
			/* Give the watcher a chance to get there first. */
			uint64_t t0 = now_ms();

			while (!__atomic_load_n(&perm_count[PERMANENT - 1]
						[gen0 + k], __ATOMIC_ACQUIRE) &&
			       now_ms() - t0 < 20)
				sched_yield();
		}
		g = vmgen_generation();
		if (g != gen0 + (int64_t)k)
			violation("step %u: vmgen_generation() = %lld, "
				  "expected %lld", k, (long long)g,
				  (long long)(gen0 + k));
		if (g > 0)
			check_reseeded((uint64_t)g, "vmgen_generation");
		if (vmgen_txn_begin(&txn) < 0 || !vmgen_txn_commit(&txn))
			violation("step %u: a txn with nothing changing did "
				  "not commit", k);
		if (k % FORK_EVERY == 0 && g > 0)
			fork_round(g, &forks);
		__atomic_store_n(&steps_done, k, __ATOMIC_RELAXED);
		if (__atomic_load_n(&violations, __ATOMIC_RELAXED) > 100)
			break;
	}

	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
	for (int i = 0; i < TXN_THREADS; i++) {
		pthread_join(txn_tids[i], NULL);
		begun += tstats[i].begun;
		committed += tstats[i].committed;
		crossed += tstats[i].crossed;
		waited += tstats[i].waited;
	}
	for (int i = 0; i < REG_THREADS; i++) {
		pthread_join(reg_tids[i], NULL);
		regs += rstats[i].registered;
		self_removed += rstats[i].self_removed;
		for (unsigned long n = 0; n < rstats[i].registered; n++)
			transient_calls += slots[i][n].calls;
	}
	pthread_join(dog, NULL);
	reap_children();

	/* Exactly one run per permanent callback per generation. */
	g = vmgen_generation();
	for (int p = 0; p < PERMANENT; p++)
		for (int64_t x = 1; x < MAX_GEN; x++) {
			unsigned int want = x > gen0 && x <= g;

			if (perm_count[p][x] != want) {
				if (missing++ < 10)
					fprintf(stderr, "VIOLATION: callback "
						"%d ran %u times for "
						"generation %lld\n", p,
						perm_count[p][x],
						(long long)x);
			}
		}

	printf("stress (%s): %lu steps, generation %lld -> %lld, %u forks\n",
	       mode, __atomic_load_n(&steps_done, __ATOMIC_RELAXED),
	       (long long)gen0, (long long)g, forks);
	printf("  txns: %lu begun, %lu committed, %lu spanned a write (all "
	       "must fail; %lu held open for one)\n", begun, committed,
	       crossed, waited);
	printf("  registrations: %lu (%lu removed themselves), %lu transient "
	       "calls\n", regs, self_removed, transient_calls);
	printf("  violations: %lu, per-generation count errors: %u\n",
	       violations, missing);

	close(fd);
	unlink(path);
	if (violations || missing)
		return 1;
	if (g != gen0 + STEPS || forks != STEPS / FORK_EVERY) {
		fprintf(stderr, "FAIL: the run did not complete\n");
		return 1;
	}
	/* A run that never exercised a check proves nothing. */
	if (committed == 0 || crossed == 0 || regs == 0 ||
	    transient_calls == 0 || self_removed == 0) {
		fprintf(stderr, "FAIL: a check was never exercised\n");
		return 1;
	}
	return 0;
}
