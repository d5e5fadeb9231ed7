/* SPDX-License-Identifier: MIT */
/*
 * vmgenid-openssl-check: is this program's OpenSSL drawing its random
 * numbers through the vmgenid provider? It links only to libcrypto and
 * reads the configuration every OpenSSL program reads (OPENSSL_CONF, or
 * the system openssl.cnf), so what it says holds for other programs that
 * load the default configuration.
 *
 * It prints, for each DRBG, its algorithm and, for ours, the generation
 * it is seeded for and the source libvmgenid uses in this process
 * ("none": forks only; "none (waiting for a source)": the machine has a
 * VM device whose source has not appeared yet, see vmgenid(7)).
 *
 * Exit 0: the primary, public and private DRBGs are VMGENID-DRBG and a
 * RAND_bytes() and a RAND_priv_bytes() succeeded. Exit 1: not wired (the
 * DRBGs are OpenSSL's own). Exit 2: wired but failing closed, or no DRBG
 * at all (the configuration names a provider that did not load).
 */
#include <stdio.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define WANT "VMGENID-DRBG"

static int show(const char *which, EVP_RAND_CTX *ctx)
{
	uint64_t gen = 0;
	unsigned int reseeds = 0;
	char *source = NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_uint64("vmgenid-generation", &gen),
		OSSL_PARAM_uint(OSSL_DRBG_PARAM_RESEED_COUNTER, &reseeds),
		OSSL_PARAM_utf8_ptr("vmgenid-source", &source, 0),
		OSSL_PARAM_END
	};
	const char *name;

	if (ctx == NULL) {
		printf("%-8s none: OpenSSL could not make this DRBG\n", which);
		return 0;
	}
	name = EVP_RAND_get0_name(EVP_RAND_CTX_get0_rand(ctx));
	if (!EVP_RAND_CTX_get_params(ctx, params))
		printf("%-8s %s (its parameters cannot be read)\n", which,
		       name);
	else if (OSSL_PARAM_modified(&params[0]))
		printf("%-8s %s, seeded for generation %llu, reseeds %u, "
		       "source %s%s\n", which, name, (unsigned long long)gen,
		       reseeds, source != NULL ? source : "?",
		       source != NULL && strncmp(source, "none", 4) == 0 ?
		       " (forks only: not protected against a VM restore)" :
		       "");
	else
		printf("%-8s %s, reseeds %u\n", which, name, reseeds);
	return strcmp(name, WANT) == 0;
}

int main(void)
{
	unsigned char buf[16];
	int pub_ok, priv_ok, wired;

	pub_ok = RAND_bytes(buf, sizeof(buf)) == 1;
	priv_ok = RAND_priv_bytes(buf, sizeof(buf)) == 1;
	wired = show("primary", RAND_get0_primary(NULL));
	wired &= show("public", RAND_get0_public(NULL));
	wired &= show("private", RAND_get0_private(NULL));
	if (!pub_ok || !priv_ok) {
		printf("RAND_bytes: %s, RAND_priv_bytes: %s\n",
		       pub_ok ? "ok" : "FAILED", priv_ok ? "ok" : "FAILED");
		ERR_print_errors_fp(stdout);
		printf("failing closed: no random bytes are handed out\n");
		return 2;
	}
	if (!wired) {
		printf("not wired: OpenSSL uses its own DRBGs; see "
		       "vmgenid-provider(7)\n");
		return 1;
	}
	printf("wired: every DRBG reseeds on a VM or fork generation step\n");
	return 0;
}
