/* SPDX-License-Identifier: MIT */
/*
 * rand_tokens: an ordinary OpenSSL program, linked to libcrypto only,
 * that prints RAND_bytes() tokens. It knows nothing of libvmgenid: the
 * provider, if any, comes from the OpenSSL configuration (OPENSSL_CONF).
 * The snapshot-clone test runs it through a restore and looks for tokens
 * that two clones share; the host tests run it where it must fail.
 *
 * Usage: rand_tokens [-n COUNT] [-i MILLISECONDS] [--expect-fail]
 *   -n COUNT   tokens to print (default 1; 0: until killed)
 *   -i MS      pause between tokens (default 0)
 *   --expect-fail  exit 0 only if RAND_bytes() and RAND_priv_bytes() both
 *              fail (fail closed), 1 if either returns bytes
 * Exit: 0, 1 if a RAND_bytes() failed, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/rand.h>

static int expect_fail(void)
{
	unsigned char buf[16];
	int pub = RAND_bytes(buf, sizeof(buf));
	int priv = RAND_priv_bytes(buf, sizeof(buf));

	ERR_print_errors_fp(stdout);
	if (pub == 1 || priv == 1) {
		fprintf(stderr, "FAIL: RAND_bytes %d, RAND_priv_bytes %d: "
			"bytes were handed out\n", pub, priv);
		return 1;
	}
	printf("ok: failed closed (RAND_bytes %d, RAND_priv_bytes %d)\n",
	       pub, priv);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long count = 1, i;
	long interval_ms = 0;
	unsigned char tok[16];
	struct timespec ts;
	int a, k;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--expect-fail") == 0)
			return expect_fail();
		if (strcmp(argv[a], "-n") == 0 && a + 1 < argc)
			count = strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "-i") == 0 && a + 1 < argc)
			interval_ms = strtol(argv[++a], NULL, 10);
		else {
			fprintf(stderr, "usage: rand_tokens [-n COUNT] "
				"[-i MS] [--expect-fail]\n");
			return 2;
		}
	}
	ts.tv_sec = interval_ms / 1000;
	ts.tv_nsec = (interval_ms % 1000) * 1000000L;
	for (i = 0; count == 0 || i < count; i++) {
		if (i > 0 && interval_ms > 0)
			nanosleep(&ts, NULL);
		if (RAND_bytes(tok, sizeof(tok)) != 1) {
			fprintf(stderr, "rand_tokens: RAND_bytes failed\n");
			ERR_print_errors_fp(stderr);
			return 1;
		}
		for (k = 0; k < (int)sizeof(tok); k++)
			printf("%02x", tok[k]);
		printf("\n");
		fflush(stdout);
	}
	return 0;
}
