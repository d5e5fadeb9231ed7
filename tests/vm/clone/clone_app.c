/* SPDX-License-Identifier: MIT */
/*
 * clone_app: the guest application of the snapshot-clone test.
 *
 * It holds two ChaCha20 generators in process memory, seeded identically
 * once at start from getrandom(): "lib" is reseeded by a libvmgenid callback,
 * "ctl" (the control) never is. OpenSSL's DRBG gets a reseed callback too.
 * A loop emits one token every --period-ms: each one built between
 * vmgen_txn_begin() and vmgen_txn_commit() and printed only if the commit
 * succeeds. After a snapshot is restored twice, the host compares the two
 * clones' logs: the control tokens must be identical (same memory, same
 * bytes: the problem), the lib and OpenSSL tokens committed under the new
 * generation must differ (the fix).
 *
 * Output: one line per event, "CLONE <what> key=value...", written with a
 * single write(2) so that lines from two threads never mix. Times are
 * CLOCK_MONOTONIC (mono) and CLOCK_BOOTTIME (boot) in nanoseconds.
 *
 *   CLONE start source=S fork=F gen=G sgid=C watcher=0|1 race_free=R ...
 *   CLONE txn-inflight-begun gen=G mono=T
 *   CLONE tok seq=N gen=G sgid=C res=0|1 cres=0|1 inf=0|1 bmono=T mono=T
 *             boot=T lib=X ossl=X ctl=X
 *   CLONE abort seq=N gen=G ... ctl=X        (commit failed: token dropped)
 *   CLONE cb name=chacha|openssl reasons=R old=G new=G n=K start=T end=T
 *   CLONE resume mono=T prev=T jump=S        (the VM was resumed)
 *   CLONE txn-inflight-commit ok=0 gen=G now=G mono=T
 *   CLONE done after=N seq=N race_free=R
 *
 * race_free is 1 when the library detects a restore from the hypervisor's
 * generation ID itself (vmgen_source_race_free()), 0 when it relies on the
 * counter alone (race_free_why then says why), "error" when it cannot
 * tell.
 *
 * Detecting the resume inside the guest. Under QEMU the guest's monotonic
 * and realtime clocks do not jump across a save and a restore: the virtual
 * clock stops with the VM and the saved state carries it, so a restored
 * guest sees no gap at all. The emulated CMOS RTC, however, follows the
 * host's wall clock (QEMU's default -rtc clock=host), and its distance from
 * CLOCK_MONOTONIC jumps by the time the VM spent stopped. The host keeps
 * that time above 3 s, well over the RTC's 1 s resolution, so a jump above
 * 1.5 s marks the resume exactly, with no channel latency to correct for.
 * A thread reads the RTC every millisecond to time the resume ("resume"
 * line: the VM stopped, and so resumed in guest time, just after prev, its
 * last read before the jump; mono is when it noticed, which the slow first
 * moments of a restored guest can delay); the token loop also reads it
 * right before each vmgen_txn_begin() ("res=1": the whole transaction ran
 * after the resume; bmono is when it was begun) and right before each
 * vmgen_txn_commit() ("cres=1":
 * the commit certainly came after the resume). A token with cres=1
 * committed under the pre-restore generation is a race-window token: it
 * left the guest although the guest had already been cloned (with the
 * counter alone, because it moves only once the guest kernel has handled
 * the ACPI notification). A token with cres=0 in a clone's log was
 * committed before the save and reached the console late. From "prev" to
 * the last "cb ... end" is the restore-to-reseed time. Without /dev/rtc0
 * (on a host) res and cres are always 0.
 *
 * --fifo P runs the whole process (every thread inherits it) at SCHED_FIFO
 * priority P: its token loop then runs whenever a round is due, also while
 * the guest kernel handles the ACPI notification in a kworker, so the
 * counter alone shows its window reliably instead of only when the
 * kworker happens to lose the race for the one vCPU.
 *
 * Usage: clone_app [--period-ms N] [--after N] [--max N] [--fifo P]
 *                  [--lazy]
 *        clone_app --selftest
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <vmgenid.h>

#include "chacha_rng.h"
#include "../resume_rtc.h"

static struct chacha_rng lib_rng;	/* reseeded by the library */
static struct chacha_rng ctl_rng;	/* the control: never reseeded */
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

/* How many times each callback ran for the generation it last ran for. */
struct cb_count {
	const char *name;
	uint64_t gen;
	unsigned int runs;
};

static struct cb_count chacha_count = { .name = "chacha" };
static struct cb_count openssl_count = { .name = "openssl" };

static int rtc_fd = -1;
static int64_t rtc_base_ns;		/* RTC minus CLOCK_MONOTONIC at start */
static atomic_bool resume_seen;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void emit(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int len;
	size_t off = 0;

	memcpy(line, "CLONE ", 6);
	va_start(ap, fmt);
	len = vsnprintf(line + 6, sizeof(line) - 7, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	len += 6;
	if ((size_t)len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	while (off < (size_t)len) {
		ssize_t n = write(STDOUT_FILENO, line + off, (size_t)len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (size_t)n;
	}
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int fill_random(uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);

		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

/* Counts runs per generation, so the host can check "exactly once". */
static unsigned int count_run(struct cb_count *c, uint64_t gen)
{
	if (c->gen != gen) {
		c->gen = gen;
		c->runs = 0;
	}
	return ++c->runs;
}

static int reseed_chacha(const struct vmgen_event *ev, void *arg)
{
	int64_t start = clock_ns(CLOCK_MONOTONIC);
	uint8_t seed[32];
	unsigned int runs;
	int ret;

	ret = fill_random(seed, sizeof(seed));
	if (ret < 0)
		return ret;	/* fail closed: no token commits until it works */
	pthread_mutex_lock(&lib_lock);
	chacha_rng_reseed(&lib_rng, seed);
	pthread_mutex_unlock(&lib_lock);
	memset(seed, 0, sizeof(seed));
	runs = count_run(&chacha_count, ev->new_generation);
	emit("cb name=chacha reasons=%" PRIu32 " old=%" PRIu64 " new=%" PRIu64
	     " n=%u start=%" PRId64 " end=%" PRId64, ev->reasons,
	     ev->old_generation, ev->new_generation, runs, start,
	     clock_ns(CLOCK_MONOTONIC));
	return 0;
}

/*
 * OpenSSL 3 keeps a primary DRBG and per-thread public/private children;
 * a child reseeds itself from the primary on its next use once it sees the
 * primary's reseed counter move. So reseeding the primary, from whichever
 * thread runs this callback, reaches the DRBG the token loop draws from.
 * RAND_seed() reseeds the primary with fresh entropy from its own source
 * plus our getrandom() bytes as additional input.
 */
static int reseed_openssl(const struct vmgen_event *ev, void *arg)
{
	int64_t start = clock_ns(CLOCK_MONOTONIC);
	uint8_t seed[32];
	EVP_RAND_CTX *primary;
	unsigned int runs;
	int ret;

	ret = fill_random(seed, sizeof(seed));
	if (ret < 0)
		return ret;
	primary = RAND_get0_primary(NULL);
	if (primary == NULL ||
	    EVP_RAND_reseed(primary, 0, NULL, 0, seed, sizeof(seed)) != 1) {
		memset(seed, 0, sizeof(seed));
		return -EIO;
	}
	memset(seed, 0, sizeof(seed));
	runs = count_run(&openssl_count, ev->new_generation);
	emit("cb name=openssl reasons=%" PRIu32 " old=%" PRIu64 " new=%" PRIu64
	     " n=%u start=%" PRId64 " end=%" PRId64, ev->reasons,
	     ev->old_generation, ev->new_generation, runs, start,
	     clock_ns(CLOCK_MONOTONIC));
	return 0;
}

static int64_t rtc_offset_ns(void)
{
	return resume_rtc_offset_ns(rtc_fd);
}

/* True once the RTC has jumped ahead of the guest clock (sticky). */
static bool resumed_now(void)
{
	int64_t off;

	if (atomic_load(&resume_seen))
		return true;
	off = rtc_offset_ns();
	return resume_rtc_jumped(off, rtc_base_ns);
}

static void *resume_watch(void *arg)
{
	struct timespec period = { 0, 1000000 };
	int64_t prev = clock_ns(CLOCK_MONOTONIC);

	for (;;) {
		int64_t off = rtc_offset_ns();
		int64_t now = clock_ns(CLOCK_MONOTONIC);

		if (resume_rtc_jumped(off, rtc_base_ns)) {
			emit("resume mono=%" PRId64 " boot=%" PRId64
			     " prev=%" PRId64 " jump=%.1f", now,
			     clock_ns(CLOCK_BOOTTIME), prev,
			     (double)(off - rtc_base_ns) / 1e9);
			atomic_store(&resume_seen, true);
			return NULL;
		}
		prev = now;
		nanosleep(&period, NULL);
	}
}

static int rtc_setup(void)
{
	rtc_fd = resume_rtc_open(&rtc_base_ns);
	return rtc_fd < 0 ? rtc_fd : 0;
}

static int selftest(void)
{
	/* RFC 8439 A.1 vectors 1 and 2: zero key, zero nonce, blocks 0, 1. */
	static const uint8_t want0[16] = {
		0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90,
		0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28,
	};
	static const uint8_t want1[16] = {
		0x9f, 0x07, 0xe7, 0xbe, 0x55, 0x51, 0x38, 0x7a,
		0x98, 0xba, 0x97, 0x7c, 0x73, 0x2d, 0x08, 0x0d,
	};
	uint8_t seed[32] = { 0 }, out[128], again[16];
	struct chacha_rng a, b;

	chacha_rng_seed(&a, seed);
	chacha_rng_bytes(&a, out, 10);		/* odd sizes cross blocks */
	chacha_rng_bytes(&a, out + 10, 118);
	if (memcmp(out, want0, 16) || memcmp(out + 64, want1, 16)) {
		fprintf(stderr, "selftest: ChaCha20 keystream mismatch\n");
		return 1;
	}
	chacha_rng_seed(&a, seed);
	chacha_rng_seed(&b, seed);
	chacha_rng_bytes(&a, out, 16);
	chacha_rng_bytes(&b, again, 16);
	if (memcmp(out, again, 16)) {
		fprintf(stderr, "selftest: same seed, different bytes\n");
		return 1;
	}
	seed[0] = 1;
	chacha_rng_reseed(&b, seed);
	chacha_rng_bytes(&a, out, 16);
	chacha_rng_bytes(&b, again, 16);
	if (!memcmp(out, again, 16)) {
		fprintf(stderr, "selftest: reseed did not change the stream\n");
		return 1;
	}
	printf("selftest: ok\n");
	return 0;
}

/* The source's counter as printed: the value, or a negative errno. */
static int64_t source_counter(void)
{
	uint64_t value;
	int ret = vmgen_source_generation(&value);

	return ret < 0 ? ret : (int64_t)value;
}

static const char *source_name(void)
{
	const char *name = vmgen_source_name(vmgen_source());

	return name ? name : "?";
}

/* Whether the library sees a restore before the counter moves. */
static const char *race_free(const char **why)
{
	int ret;

	*why = "";
	ret = vmgen_source_race_free(why);
	if (*why == NULL)
		*why = "";
	if (ret < 0)
		*why = vmgen_strerror(ret);
	return ret > 0 ? "1" : ret == 0 ? "0" : "error";
}

static void usage(void)
{
	fprintf(stderr, "usage: clone_app [--period-ms N] [--after N] "
		"[--max N] [--fifo P] [--lazy] | --selftest\n");
}

int main(int argc, char **argv)
{
	long period_ms = 15, after = 50, max_tokens = 1000000, fifo = 0;
	bool lazy = false, inflight_reported = false;
	const char *rf, *rf_why;
	struct vmgen_txn inflight;
	uint64_t start_gen;
	uint8_t seed[32];
	pthread_t watch;
	int64_t seq;
	long tokens_after = 0;
	int ret, i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *end;

		if (!strcmp(a, "--selftest"))
			return selftest();
		if (!strcmp(a, "--lazy")) {
			lazy = true;
			continue;
		}
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		errno = 0;
		if (!strcmp(a, "--period-ms"))
			period_ms = strtol(argv[++i], &end, 10);
		else if (!strcmp(a, "--after"))
			after = strtol(argv[++i], &end, 10);
		else if (!strcmp(a, "--max"))
			max_tokens = strtol(argv[++i], &end, 10);
		else if (!strcmp(a, "--fifo"))
			fifo = strtol(argv[++i], &end, 10);
		else {
			usage();
			return 2;
		}
		if (errno || *end || period_ms < 1 || period_ms > 10000 ||
		    after < 1 || max_tokens < 1 || fifo < 0 || fifo > 99) {
			usage();
			return 2;
		}
	}
	if (fifo) {
		struct sched_param sp = { .sched_priority = (int)fifo };

		/* Before any thread exists: they all inherit it. */
		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
			emit("error what=sched_setscheduler err=%d", -errno);
			return 1;
		}
	}

	/* One seed, two generators: identical until the library steps in. */
	ret = fill_random(seed, sizeof(seed));
	if (ret < 0) {
		emit("error what=getrandom err=%d", ret);
		return 1;
	}
	chacha_rng_seed(&lib_rng, seed);
	chacha_rng_seed(&ctl_rng, seed);
	memset(seed, 0, sizeof(seed));
	if (RAND_status() != 1) {
		emit("error what=openssl-rand");
		return 1;
	}

	ret = vmgen_init(NULL, lazy ? 0 : VMGEN_INIT_WATCHER);
	if (ret < 0) {
		emit("error what=vmgen_init err=%d msg=\"%s\"", ret,
		     vmgen_strerror(ret));
		return 1;
	}
	ret = vmgen_callback_register(reseed_chacha, NULL, VMGEN_EVENT_ANY);
	if (ret > 0)
		ret = vmgen_callback_register(reseed_openssl, NULL,
					      VMGEN_EVENT_ANY);
	if (ret < 0) {
		emit("error what=register err=%d", ret);
		return 1;
	}

	ret = rtc_setup();
	if (ret == 0) {
		ret = -pthread_create(&watch, NULL, resume_watch, NULL);
		if (ret < 0)	/* the token loop still reads the RTC */
			emit("note resume-watch=unavailable err=%d", ret);
	} else {
		emit("note rtc=unavailable err=%d", ret);
	}

	ret = vmgen_txn_begin(&inflight);
	if (ret < 0) {
		emit("error what=begin err=%d", ret);
		return 1;
	}
	start_gen = inflight.generation;
	rf = race_free(&rf_why);
	emit("start source=%s fork=%d gen=%" PRIu64 " sgid=%" PRId64
	     " watcher=%d period_ms=%ld after=%ld fifo=%ld race_free=%s"
	     " race_free_why=\"%s\" openssl=\"%s\"",
	     source_name(), vmgen_fork_mode(),
	     start_gen, source_counter(), !lazy, period_ms, after, fifo,
	     rf, rf_why, OpenSSL_version(OPENSSL_VERSION));
	emit("txn-inflight-begun gen=%" PRIu64 " mono=%" PRId64,
	     inflight.generation, clock_ns(CLOCK_MONOTONIC));

	for (seq = 0; seq < max_tokens; seq++) {
		struct timespec nap = { period_ms / 1000,
					(period_ms % 1000) * 1000000 };
		uint8_t lib[8], ossl[8], ctl[8];
		char lib_hex[17], ossl_hex[17], ctl_hex[17];
		struct vmgen_txn txn;
		int64_t sgid, bmono, mono, boot;
		bool ok, res, cres, inf;

		res = resumed_now();
		bmono = clock_ns(CLOCK_MONOTONIC);
		/* The control draws every round, committed or not, so both
		 * clones stay in step with each other by seq. */
		chacha_rng_bytes(&ctl_rng, ctl, sizeof(ctl));
		hex(ctl_hex, ctl, sizeof(ctl));

		ret = vmgen_txn_begin(&txn);
		if (ret < 0) {
			emit("begin-error seq=%" PRId64 " err=%d", seq, ret);
			nanosleep(&nap, NULL);
			continue;
		}
		pthread_mutex_lock(&lib_lock);
		chacha_rng_bytes(&lib_rng, lib, sizeof(lib));
		pthread_mutex_unlock(&lib_lock);
		if (RAND_bytes(ossl, sizeof(ossl)) != 1)
			memset(ossl, 0, sizeof(ossl));
		/* Read between begin and commit: if the commit succeeds,
		 * this is the counter the token was built under. */
		sgid = source_counter();
		cres = resumed_now();
		ok = vmgen_txn_commit(&txn);
		mono = clock_ns(CLOCK_MONOTONIC);
		boot = clock_ns(CLOCK_BOOTTIME);
		inf = vmgen_txn_commit(&inflight);
		hex(lib_hex, lib, sizeof(lib));
		hex(ossl_hex, ossl, sizeof(ossl));

		if (ok)
			emit("tok seq=%" PRId64 " gen=%" PRIu64 " sgid=%" PRId64
			     " res=%d cres=%d inf=%d bmono=%" PRId64
			     " mono=%" PRId64 " boot=%" PRId64
			     " lib=%s ossl=%s ctl=%s", seq, txn.generation,
			     sgid, res, cres, inf, bmono, mono, boot, lib_hex,
			     ossl_hex, ctl_hex);
		else
			emit("abort seq=%" PRId64 " gen=%" PRIu64
			     " res=%d cres=%d bmono=%" PRId64 " mono=%" PRId64
			     " ctl=%s", seq, txn.generation, res, cres, bmono,
			     mono, ctl_hex);
		if (!inf && !inflight_reported) {
			emit("txn-inflight-commit ok=0 gen=%" PRIu64
			     " now=%" PRId64 " mono=%" PRId64,
			     inflight.generation, vmgen_generation(), mono);
			inflight_reported = true;
		}
		if (ok && txn.generation != start_gen && ++tokens_after >= after)
			break;
		nanosleep(&nap, NULL);
	}
	rf = race_free(&rf_why);
	emit("done after=%ld seq=%" PRId64 " race_free=%s race_free_why=\"%s\"",
	     tokens_after, seq, rf, rf_why);
	return 0;
}
