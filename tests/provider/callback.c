/* SPDX-License-Identifier: MIT */
/*
 * The provider and the application's own libvmgenid callbacks, in one
 * process (this program links libvmgenid; the provider, loaded through
 * OPENSSL_CONF, uses the same library instance):
 *
 *   fail        a callback that fails makes RAND_bytes() and
 *               RAND_priv_bytes() fail, in every thread, until it
 *               succeeds (fail closed); then the DRBGs are reseeded.
 *   rand        a callback that calls RAND_bytes() and RAND_priv_bytes()
 *               runs in the thread that draws: no deadlock, all succeed.
 *   rand-watcher  the same callback in libvmgenid's watcher thread,
 *               while the main thread draws.
 *   rand-first  the same callback, with a step (and then a fork) pending
 *               before the program's first draw, so that it runs while
 *               OpenSSL is creating its DRBGs.
 *   concurrent  threads draw without pause while steps are dispatched by
 *               a slow callback that draws too.
 *
 * A deadlock ends the test through alarm() (SIGALRM kills it).
 */
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <vmgenid.h>

#include "counter.h"

static int failing, cb_runs, cb_rand_failures, stop, draw_failures;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int draw(void)
{
	unsigned char buf[48];

	return RAND_bytes(buf, sizeof(buf)) == 1 &&
	       RAND_priv_bytes(buf, sizeof(buf)) == 1;
}

static int failing_cb(const struct vmgen_event *ev, void *arg)
{
	return __atomic_load_n(&failing, __ATOMIC_ACQUIRE) ? -EIO : 0;
}

static int rand_cb(const struct vmgen_event *ev, void *arg)
{
	long delay_ms = (long)(intptr_t)arg;

	if (!draw())
		__atomic_add_fetch(&cb_rand_failures, 1, __ATOMIC_RELAXED);
	if (delay_ms > 0)
		sleep_ms(delay_ms);
	__atomic_add_fetch(&cb_runs, 1, __ATOMIC_RELEASE);
	return 0;
}

/* Every DRBG of this thread is seeded for the current generation. */
static int current(void)
{
	int64_t gen = vmgen_generation();
	struct drbg_state pub = drbg_state(RAND_get0_public(NULL));
	struct drbg_state prv = drbg_state(RAND_get0_private(NULL));

	if (gen > 0 && pub.generation == (uint64_t)gen &&
	    prv.generation == (uint64_t)gen)
		return 1;
	fprintf(stderr, "FAIL: generation %lld, DRBGs seeded for %llu/%llu\n",
		(long long)gen, (unsigned long long)pub.generation,
		(unsigned long long)prv.generation);
	return 0;
}

static void *fail_thread(void *arg)
{
	unsigned char buf[16];

	return (void *)(intptr_t)(RAND_bytes(buf, sizeof(buf)) == 1 ||
				  RAND_priv_bytes(buf, sizeof(buf)) == 1);
}

static int test_fail(void)
{
	unsigned char buf[16];
	struct drbg_state pub, prv;
	unsigned long err;
	pthread_t th;
	void *leaked;
	int r;

	if (vmgen_callback_register(failing_cb, NULL, VMGEN_EVENT_ANY) < 0 ||
	    !draw())
		return 1;
	pub = drbg_state(RAND_get0_public(NULL));
	prv = drbg_state(RAND_get0_private(NULL));
	__atomic_store_n(&failing, 1, __ATOMIC_RELEASE);
	counter_step();
	memset(buf, 0xa5, sizeof(buf));
	r = RAND_bytes(buf, sizeof(buf));
	err = ERR_peek_error();
	ERR_print_errors_fp(stdout);
	if (r == 1 || RAND_priv_bytes(buf, sizeof(buf)) == 1) {
		fprintf(stderr, "FAIL: bytes handed out while a libvmgenid "
			"callback fails\n");
		return 1;
	}
	if (err == 0) {
		fprintf(stderr, "FAIL: no error queued\n");
		return 1;
	}
	pthread_create(&th, NULL, fail_thread, NULL);
	pthread_join(th, &leaked);
	if (leaked) {
		fprintf(stderr, "FAIL: another thread got bytes\n");
		return 1;
	}
	__atomic_store_n(&failing, 0, __ATOMIC_RELEASE);
	if (!draw() || !current()) {
		fprintf(stderr, "FAIL: no recovery once the callback works\n");
		ERR_print_errors_fp(stderr);
		return 1;
	}
	if (drbg_state(RAND_get0_public(NULL)).reseeds == pub.reseeds ||
	    drbg_state(RAND_get0_private(NULL)).reseeds == prv.reseeds) {
		fprintf(stderr, "FAIL: the DRBGs did not reseed for the step\n");
		return 1;
	}
	printf("ok: failed closed in two threads while the callback failed, "
	       "reseeded once it succeeded\n");
	return 0;
}

static int test_rand(int watcher)
{
	int64_t gen;
	int i, steps = 5;

	if (vmgen_callback_register(rand_cb, NULL, VMGEN_EVENT_ANY) < 0 ||
	    !draw())
		return 1;
	if (watcher && vmgen_watcher_start() < 0)
		return 1;
	for (i = 0; i < steps; i++) {
		gen = vmgen_generation();
		counter_step();
		if (watcher) {
			/* draw while the watcher dispatches */
			while (vmgen_wait((uint64_t)gen, 0) == -ETIMEDOUT)
				if (!draw())
					return 1;
		}
		if (!draw() || !current())
			return 1;
	}
	if (watcher)
		vmgen_watcher_stop();
	if (__atomic_load_n(&cb_runs, __ATOMIC_ACQUIRE) != steps ||
	    cb_rand_failures != 0) {
		fprintf(stderr, "FAIL: callback ran %d times for %d steps, "
			"%d RAND failures inside it\n", cb_runs, steps,
			cb_rand_failures);
		return 1;
	}
	printf("ok: a callback that calls RAND_bytes() ran %d times%s\n",
	       steps, watcher ? " in the watcher thread" : "");
	return 0;
}

/* A step pending at the first draw: the callback runs inside it. */
static int test_rand_first(void)
{
	int status;
	pid_t pid;

	if (vmgen_callback_register(rand_cb, NULL, VMGEN_EVENT_ANY) < 0)
		return 1;
	counter_step();
	if (!draw() || !current() || cb_runs != 1 || cb_rand_failures) {
		fprintf(stderr, "FAIL: first draw with a step pending: %d "
			"callback runs, %d failures inside\n", cb_runs,
			cb_rand_failures);
		ERR_print_errors_fp(stderr);
		return 1;
	}
	/* The same in a child whose first draw is after the fork. */
	pid = fork();
	if (pid == 0)
		_exit(draw() && current() && cb_runs == 2 &&
		      !cb_rand_failures ? 0 : 1);
	if (pid < 0 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "FAIL: the fork child's first draw\n");
		return 1;
	}
	printf("ok: a callback that calls RAND_bytes() ran inside the first "
	       "draw, after a step and after a fork\n");
	return 0;
}

static void *drawer(void *arg)
{
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		if (!draw()) {
			__atomic_add_fetch(&draw_failures, 1,
					   __ATOMIC_RELAXED);
			ERR_print_errors_fp(stderr);
		}
	}
	return (void *)(intptr_t)!(draw() && current());
}

static int test_concurrent(void)
{
	pthread_t th[4];
	void *bad;
	int i, steps = 20, failed = 0;

	if (vmgen_callback_register(rand_cb, (void *)(intptr_t)2,
				    VMGEN_EVENT_ANY) < 0 || !draw())
		return 1;
	for (i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, drawer, NULL);
	for (i = 0; i < steps; i++) {
		counter_step();
		sleep_ms(5);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], &bad);
		failed |= bad != NULL;
	}
	if (failed || draw_failures || cb_rand_failures || cb_runs == 0) {
		fprintf(stderr, "FAIL: %d draw failures, %d in callbacks, "
			"%d callback runs, final check %s\n", draw_failures,
			cb_rand_failures, cb_runs, failed ? "failed" : "ok");
		return 1;
	}
	printf("ok: 4 threads drew through %d steps (%d dispatches) with no "
	       "failure\n", steps, cb_runs);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	counter_init();
	alarm(60);
	if (strcmp(mode, "rand-first") == 0)	/* before any OpenSSL call */
		return test_rand_first();
	if (!drbg_is_ours(RAND_get0_public(NULL))) {
		fprintf(stderr, "FAIL: the public DRBG is not VMGENID-DRBG: "
			"the provider is not configured\n");
		ERR_print_errors_fp(stderr);
		return 1;
	}
	if (strcmp(mode, "fail") == 0)
		return test_fail();
	if (strcmp(mode, "rand") == 0)
		return test_rand(0);
	if (strcmp(mode, "rand-watcher") == 0)
		return test_rand(1);
	if (strcmp(mode, "concurrent") == 0)
		return test_concurrent();
	fprintf(stderr, "usage: callback fail|rand|rand-watcher|rand-first|"
		"concurrent\n");
	return 2;
}
