/* SPDX-License-Identifier: MIT */
/*
 * The cost of the OpenSSL provider: RAND_bytes() of 16 and 4096 bytes,
 * with OpenSSL's own DRBG and with VMGENID-DRBG, in 1 and 2 threads, in
 * the same run. Two library contexts in one process, one plain, one loaded
 * with the provider's configuration (argv[1]), measured in alternation;
 * the figure is CPU time per call (thread CPU clocks, so that other load
 * on the machine counts less), the median of the repetitions, and beside
 * it the ratio of the minima (interference only ever adds time).
 *
 * Target: at most 1.10x the plain cost. Informational: never fails.
 */
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bench.h"

#define REPS 11
#define TARGET 1.10

struct job {
	OSSL_LIB_CTX *ctx;
	size_t size;
	long calls;
	uint64_t cpu_ns;
	int failed;
};

static void *run(void *arg)
{
	struct job *j = arg;
	unsigned char buf[4096];
	uint64_t t0;
	long i;

	/* the thread's DRBGs are made on first use: not part of the cost */
	if (RAND_bytes_ex(j->ctx, buf, j->size, 0) != 1)
		j->failed = 1;
	t0 = bench_thread_cpu_ns();
	for (i = 0; i < j->calls; i++)
		if (RAND_bytes_ex(j->ctx, buf, j->size, 0) != 1)
			j->failed = 1;
	j->cpu_ns = bench_thread_cpu_ns() - t0;
	bench_sink(buf[0]);
	return NULL;
}

/* CPU ns per call over nthreads threads doing calls each. */
static double measure(OSSL_LIB_CTX *ctx, size_t size, int nthreads,
		      long calls)
{
	pthread_t th[2];
	struct job jobs[2];
	uint64_t sum = 0;
	int t;

	for (t = 0; t < nthreads; t++) {
		jobs[t] = (struct job){ ctx, size, calls, 0, 0 };
		if (pthread_create(&th[t], NULL, run, &jobs[t]) != 0)
			bench_die("pthread_create", errno);
	}
	for (t = 0; t < nthreads; t++) {
		pthread_join(th[t], NULL);
		if (jobs[t].failed)
			bench_die("RAND_bytes_ex failed", EIO);
		sum += jobs[t].cpu_ns;
	}
	return (double)sum / (double)(calls * nthreads);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v: v[0] is then the minimum. */
static double median(double *v)
{
	qsort(v, REPS, sizeof(*v), cmp_double);
	return v[REPS / 2];
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 16, 4096 };
	struct bench_counter counter;
	OSSL_LIB_CTX *plain, *prov;
	EVP_RAND_CTX *pub;
	double a[REPS], b[REPS], ma, mb;
	int s, nthreads, r, all = 1;
	long calls;

	if (argc != 2) {
		fprintf(stderr, "usage: bench-provider OPENSSL_CONF_FILE\n");
		return 2;
	}
	bench_counter_open(&counter);
	setenv("VMGENID_SOURCE", counter.spec, 1);
	plain = OSSL_LIB_CTX_new();
	prov = OSSL_LIB_CTX_new();
	if (plain == NULL || prov == NULL ||
	    !OSSL_LIB_CTX_load_config(prov, argv[1]))
		bench_die("cannot load the provider's configuration", EINVAL);
	pub = RAND_get0_public(prov);
	if (pub == NULL || strcmp(EVP_RAND_get0_name(
			EVP_RAND_CTX_get0_rand(pub)), "VMGENID-DRBG") != 0)
		bench_die("the provider's context does not use VMGENID-DRBG",
			  EINVAL);
	printf("RAND_bytes() CPU time per call, median of %d, plain OpenSSL "
	       "vs VMGENID-DRBG (target <= %.2fx)\n", REPS, TARGET);
	for (s = 0; s < 2; s++) {
		calls = sizes[s] == 16 ? 30000 : 5000;
		for (nthreads = 1; nthreads <= 2; nthreads++) {
			for (r = 0; r < REPS; r++) {
				/* alternate which goes first */
				if (r & 1) {
					b[r] = measure(prov, sizes[s],
						       nthreads, calls);
					a[r] = measure(plain, sizes[s],
						       nthreads, calls);
				} else {
					a[r] = measure(plain, sizes[s],
						       nthreads, calls);
					b[r] = measure(prov, sizes[s],
						       nthreads, calls);
				}
			}
			ma = median(a);
			mb = median(b);
			all &= mb / ma <= TARGET;
			printf("RAND_bytes(%4zu) %d thread%s: plain %7.1f ns, "
			       "provider %7.1f ns, ratio %.3fx (minima %.3fx)"
			       "  %s\n", sizes[s], nthreads,
			       nthreads > 1 ? "s" : " ", ma, mb, mb / ma,
			       b[0] / a[0], bench_label(mb / ma <= TARGET));
		}
	}
	printf("provider overhead: %s\n", all ? "PASS" : "MISS");
	OSSL_LIB_CTX_free(prov);
	OSSL_LIB_CTX_free(plain);
	bench_counter_close(&counter);
	return 0;
}
