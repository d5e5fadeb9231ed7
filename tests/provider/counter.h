/* SPDX-License-Identifier: MIT */
/*
 * The generation counter the tests step, without libvmgenid: the file
 * named by VMGENID_SOURCE=file:PATH (the provider's libvmgenid reads the
 * same variable), whose first 4 bytes are a native u32, written in place
 * as `vmgenid trigger` does. Also a reseed-counter reader for the DRBGs.
 */
#ifndef PROVIDER_TEST_COUNTER_H
#define PROVIDER_TEST_COUNTER_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define TEST_SKIP 77

static uint32_t counter_value;

static void counter_write(uint32_t v)
{
	const char *spec = getenv("VMGENID_SOURCE");
	int fd;

	if (spec == NULL || strncmp(spec, "file:", 5) != 0) {
		fprintf(stderr, "VMGENID_SOURCE must be file:PATH\n");
		exit(2);
	}
	fd = open(spec + 5, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || pwrite(fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		fprintf(stderr, "%s: %s\n", spec + 5, strerror(errno));
		exit(2);
	}
	close(fd);
	counter_value = v;
}

/* Call before the first OpenSSL call: the source must exist by then. */
static inline void counter_init(void)
{
	counter_write(1);
}

static inline void counter_step(void)
{
	counter_write(counter_value + 1);
}

/* A DRBG's reseed counter and the generation the provider seeded it for. */
struct drbg_state {
	unsigned int reseeds;
	uint64_t generation;
	int ok;
};

static inline struct drbg_state drbg_state(EVP_RAND_CTX *ctx)
{
	struct drbg_state s = { 0, 0, 0 };
	OSSL_PARAM params[] = {
		OSSL_PARAM_uint(OSSL_DRBG_PARAM_RESEED_COUNTER, &s.reseeds),
		OSSL_PARAM_uint64("vmgenid-generation", &s.generation),
		OSSL_PARAM_END
	};

	s.ok = ctx != NULL && EVP_RAND_CTX_get_params(ctx, params) &&
	       OSSL_PARAM_modified(&params[0]);
	return s;
}

static inline int drbg_is_ours(EVP_RAND_CTX *ctx)
{
	return ctx != NULL && strcmp(EVP_RAND_get0_name(
		EVP_RAND_CTX_get0_rand(ctx)), "VMGENID-DRBG") == 0;
}

#endif /* PROVIDER_TEST_COUNTER_H */
