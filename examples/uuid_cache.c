/* SPDX-License-Identifier: MIT */
/*
 * uuid_cache: a cache of pre-generated UUIDs that is thrown away and
 * refilled when the VM is restored or cloned, or the process forks.
 *
 * Pre-generating identifiers is a snapshot hazard: every clone restored
 * from one snapshot would hand out the same "next" UUID. The reseed
 * callback refills the cache, and the transaction around each take makes
 * sure a UUID taken while a restore landed is not used.
 *
 * Build: cc uuid_cache.c -o uuid_cache $(pkg-config --cflags --libs vmgenid)
 * Run:   VMGENID_SOURCE=file:/tmp/gen ./uuid_cache [STEPS]
 *        then change the generation STEPS times (vmgenid trigger).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <vmgenid.h>

#define CACHE_SIZE 16

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char cache[CACHE_SIZE][37];
static int next = CACHE_SIZE;		/* CACHE_SIZE: empty */

static int fill_locked(void)
{
	unsigned char b[CACHE_SIZE][16];
	int i;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -EIO;
	for (i = 0; i < CACHE_SIZE; i++) {
		b[i][6] = (b[i][6] & 0x0f) | 0x40;	/* version 4 */
		b[i][8] = (b[i][8] & 0x3f) | 0x80;	/* RFC 4122 variant */
		snprintf(cache[i], sizeof(cache[i]),
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
			 "%02x%02x%02x%02x%02x%02x", b[i][0], b[i][1], b[i][2],
			 b[i][3], b[i][4], b[i][5], b[i][6], b[i][7], b[i][8],
			 b[i][9], b[i][10], b[i][11], b[i][12], b[i][13],
			 b[i][14], b[i][15]);
	}
	next = 0;
	return 0;
}

/* The reseed callback: a failure (-EIO) keeps every txn from committing. */
static int refill(const struct vmgen_event *ev, void *arg)
{
	int r;

	pthread_mutex_lock(&lock);
	r = fill_locked();
	pthread_mutex_unlock(&lock);
	return r;
}

static int uuid_take(char out[37], char upcoming[37])
{
	struct vmgen_txn txn;
	int r;

	do {
		r = vmgen_txn_begin(&txn);	/* runs refill() if needed */
		if (r < 0)
			return r;
		pthread_mutex_lock(&lock);
		if (next == CACHE_SIZE && (r = fill_locked()) < 0) {
			pthread_mutex_unlock(&lock);
			return r;
		}
		memcpy(out, cache[next++], 37);
		if (upcoming)	/* only for the demo's check below */
			memcpy(upcoming, next < CACHE_SIZE ? cache[next] : "", 37);
		pthread_mutex_unlock(&lock);
	} while (!vmgen_txn_commit(&txn));	/* taken across a restore */
	return 0;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 1;
	char uuid[37], queued[37], fresh[37];
	int64_t gen;
	int r, i;

	r = vmgen_init(NULL, 0);
	if (r >= 0)
		r = vmgen_callback_register(refill, NULL, VMGEN_EVENT_ANY);
	if (r < 0 || (r = uuid_take(uuid, queued)) < 0) {
		fprintf(stderr, "uuid_cache: %s\n", vmgen_strerror(r));
		return 1;
	}
	gen = vmgen_generation();
	printf("ready generation %lld: took %s, queued %s\n", (long long)gen,
	       uuid, queued);
	for (i = 0; i < steps; i++) {
		fflush(stdout);
		gen = vmgen_wait((uint64_t)gen, -1);
		if (gen < 0 || uuid_take(fresh, NULL) < 0)
			return 1;
		printf("generation %lld: took %s\n", (long long)gen, fresh);
		/* Without refill() this would be the pre-restore UUID. */
		if (strcmp(fresh, queued) == 0) {
			printf("FAIL: reused a UUID generated before the step\n");
			return 1;
		}
		if (uuid_take(uuid, queued) < 0)
			return 1;
	}
	return 0;
}
