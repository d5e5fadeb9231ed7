/* SPDX-License-Identifier: MIT */
/*
 * openssl_reseed: reseed OpenSSL 3's random generators from a libvmgenid
 * callback when the VM is restored or cloned.
 *
 * OpenSSL reseeds by itself after a fork (it checks the pid), but a VM
 * clone keeps the pid and the DRBG state: two clones would draw the same
 * RAND_bytes(). The callback reseeds the primary DRBG from the operating
 * system, which the kernel reseeded on the restore. Every thread's public
 * and private DRBG compares its parent's reseed count before generating,
 * so they all reseed from the primary on their next use; the calling
 * thread's two are reseeded at once.
 *
 * Build: cc openssl_reseed.c -o openssl_reseed \
 *            $(pkg-config --cflags --libs vmgenid openssl)
 * Run:   VMGENID_SOURCE=file:/tmp/gen ./openssl_reseed [STEPS]
 *        then change the generation STEPS times (vmgenid trigger).
 */
#include <stdio.h>
#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <vmgenid.h>

static unsigned int reseed_count(EVP_RAND_CTX *drbg)
{
	unsigned int count = 0;
	OSSL_PARAM params[] = {
		OSSL_PARAM_uint(OSSL_DRBG_PARAM_RESEED_COUNTER, &count),
		OSSL_PARAM_END,
	};

	EVP_RAND_CTX_get_params(drbg, params);
	return count;
}

static int reseed(const struct vmgen_event *ev, void *arg)
{
	EVP_RAND_CTX *primary = RAND_get0_primary(NULL);
	unsigned int before = reseed_count(primary);

	/* prediction resistance: fresh entropy from the OS, not the state */
	if (!EVP_RAND_reseed(primary, 1, NULL, 0, NULL, 0) ||
	    !EVP_RAND_reseed(RAND_get0_public(NULL), 0, NULL, 0, NULL, 0) ||
	    !EVP_RAND_reseed(RAND_get0_private(NULL), 0, NULL, 0, NULL, 0))
		return -EIO;	/* fail closed: no txn commits until it works */
	printf("reseeded for generation %llu: primary reseed count %u -> %u\n",
	       (unsigned long long)ev->new_generation, before,
	       reseed_count(primary));
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int steps = argc > 1 ? atoi(argv[1]) : 1;
	unsigned char key[16];
	int64_t gen;
	int r, i, k;

	r = vmgen_init(NULL, 0);
	if (r >= 0)
		r = vmgen_callback_register(reseed, NULL, VMGEN_EVENT_VM);
	gen = vmgen_generation();
	if (r < 0 || gen < 0) {
		fprintf(stderr, "openssl_reseed: %s\n",
			vmgen_strerror(r < 0 ? r : (int)gen));
		return 1;
	}
	printf("ready generation %lld\n", (long long)gen);
	for (i = 0; i < steps; i++) {
		fflush(stdout);
		/* Returns once the callbacks ran for the new generation. */
		gen = vmgen_wait((uint64_t)gen, -1);
		if (gen < 0 || RAND_bytes(key, sizeof(key)) != 1)
			return 1;
		printf("generation %lld: key ", (long long)gen);
		for (k = 0; k < (int)sizeof(key); k++)
			printf("%02x", key[k]);
		printf("\n");
	}
	return 0;
}
