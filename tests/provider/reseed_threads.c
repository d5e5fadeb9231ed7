/* SPDX-License-Identifier: MIT */
/*
 * An OpenSSL program that knows nothing of libvmgenid (it links only to
 * libcrypto and gets the provider from OPENSSL_CONF) reseeds every DRBG in
 * every thread on its first call after a generation step, and only then.
 *
 * Each round, every thread draws from its public and private DRBGs and
 * notes their reseed counters; the main thread makes a step (or, in a
 * control round, does not); then every thread draws once more from each
 * and checks: after a step the public, private and primary counters moved
 * and the DRBG says it is seeded for the new generation; without a step
 * nothing moved (so the check is not passed by DRBGs that reseed always).
 */
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "counter.h"

#define THREADS 4

static const int round_steps[] = { 1, 0, 1, 1, 0, 1 };
#define ROUNDS (int)(sizeof(round_steps) / sizeof(round_steps[0]))

static pthread_barrier_t barrier;
static int failures;

static void fail(int t, int round, const char *what)
{
	fprintf(stderr, "FAIL thread %d round %d: %s\n", t, round, what);
	ERR_print_errors_fp(stderr);
	__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
}

static int draw(void)
{
	unsigned char buf[32];

	return RAND_bytes(buf, sizeof(buf)) == 1 &&
	       RAND_priv_bytes(buf, sizeof(buf)) == 1;
}

static void check(int t, int round, const char *name, struct drbg_state a,
		  struct drbg_state b, int step)
{
	char msg[160];

	if (!a.ok || !b.ok) {
		snprintf(msg, sizeof(msg), "%s: parameters unreadable", name);
		fail(t, round, msg);
	} else if (step && (b.reseeds == a.reseeds ||
			    b.generation == a.generation)) {
		snprintf(msg, sizeof(msg), "%s did not reseed after the step "
			 "(reseeds %u -> %u, generation %llu -> %llu)", name,
			 a.reseeds, b.reseeds,
			 (unsigned long long)a.generation,
			 (unsigned long long)b.generation);
		fail(t, round, msg);
	} else if (!step && (b.reseeds != a.reseeds ||
			     b.generation != a.generation)) {
		snprintf(msg, sizeof(msg), "%s reseeded with no step "
			 "(reseeds %u -> %u)", name, a.reseeds, b.reseeds);
		fail(t, round, msg);
	}
}

static void *worker(void *arg)
{
	int t = (int)(intptr_t)arg, round;
	struct drbg_state pub, priv;

	for (round = 0; round < ROUNDS; round++) {
		if (!draw())
			fail(t, round, "RAND_bytes before the step");
		if (!drbg_is_ours(RAND_get0_public(NULL)) ||
		    !drbg_is_ours(RAND_get0_private(NULL)))
			fail(t, round, "this thread's DRBGs are not "
				       "VMGENID-DRBG: the provider is not "
				       "configured");
		pub = drbg_state(RAND_get0_public(NULL));
		priv = drbg_state(RAND_get0_private(NULL));
		pthread_barrier_wait(&barrier);	/* main steps */
		pthread_barrier_wait(&barrier);
		if (!draw())
			fail(t, round, "RAND_bytes after the step");
		check(t, round, "public", pub,
		      drbg_state(RAND_get0_public(NULL)), round_steps[round]);
		check(t, round, "private", priv,
		      drbg_state(RAND_get0_private(NULL)), round_steps[round]);
		pthread_barrier_wait(&barrier);	/* main checks primary */
		pthread_barrier_wait(&barrier);
	}
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	struct drbg_state prim;
	int i, round;

	counter_init();
	pthread_barrier_init(&barrier, NULL, THREADS + 1);
	for (i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (round = 0; round < ROUNDS; round++) {
		pthread_barrier_wait(&barrier);
		prim = drbg_state(RAND_get0_primary(NULL));
		if (round_steps[round])
			counter_step();
		pthread_barrier_wait(&barrier);
		pthread_barrier_wait(&barrier);
		check(-1, round, "primary", prim,
		      drbg_state(RAND_get0_primary(NULL)), round_steps[round]);
		pthread_barrier_wait(&barrier);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok: %d threads x %d rounds: every DRBG reseeded on its "
	       "first use after each step, none without one\n", THREADS,
	       ROUNDS);
	return 0;
}
