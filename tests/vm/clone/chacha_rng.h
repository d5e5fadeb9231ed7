/* SPDX-License-Identifier: MIT */
/*
 * A small ChaCha20 keystream generator held in process memory: the kind of
 * user-space RNG whose state a VM snapshot duplicates. Not a library API;
 * shared by clone_app.c and its host-side self-test.
 */
#ifndef CHACHA_RNG_H
#define CHACHA_RNG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct chacha_rng {
	uint32_t key[8];
	uint64_t counter;		/* block counter (words 12-13) */
	uint8_t buf[64];		/* unused keystream of the last block */
	size_t avail;			/* bytes of buf not yet handed out */
};

#define CHACHA_ROTL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define CHACHA_QR(a, b, c, d) do {				\
	a += b; d ^= a; d = CHACHA_ROTL(d, 16);			\
	c += d; b ^= c; b = CHACHA_ROTL(b, 12);			\
	a += b; d ^= a; d = CHACHA_ROTL(d, 8);			\
	c += d; b ^= c; b = CHACHA_ROTL(b, 7);			\
} while (0)

/* RFC 8439 block function, 96-bit nonce zero, 64-bit counter. */
static inline void chacha20_block(const uint32_t key[8], uint64_t counter,
				  uint8_t out[64])
{
	uint32_t in[16], x[16];
	int i;

	in[0] = 0x61707865;
	in[1] = 0x3320646e;
	in[2] = 0x79622d32;
	in[3] = 0x6b206574;
	for (i = 0; i < 8; i++)
		in[4 + i] = key[i];
	in[12] = (uint32_t)counter;
	in[13] = (uint32_t)(counter >> 32);
	in[14] = 0;
	in[15] = 0;
	memcpy(x, in, sizeof(x));
	for (i = 0; i < 10; i++) {
		CHACHA_QR(x[0], x[4], x[8], x[12]);
		CHACHA_QR(x[1], x[5], x[9], x[13]);
		CHACHA_QR(x[2], x[6], x[10], x[14]);
		CHACHA_QR(x[3], x[7], x[11], x[15]);
		CHACHA_QR(x[0], x[5], x[10], x[15]);
		CHACHA_QR(x[1], x[6], x[11], x[12]);
		CHACHA_QR(x[2], x[7], x[8], x[13]);
		CHACHA_QR(x[3], x[4], x[9], x[14]);
	}
	for (i = 0; i < 16; i++) {
		uint32_t v = x[i] + in[i];

		out[4 * i + 0] = (uint8_t)v;
		out[4 * i + 1] = (uint8_t)(v >> 8);
		out[4 * i + 2] = (uint8_t)(v >> 16);
		out[4 * i + 3] = (uint8_t)(v >> 24);
	}
}

static inline void chacha_rng_seed(struct chacha_rng *r, const uint8_t seed[32])
{
	int i;

	for (i = 0; i < 8; i++)
		r->key[i] = (uint32_t)seed[4 * i] |
			    (uint32_t)seed[4 * i + 1] << 8 |
			    (uint32_t)seed[4 * i + 2] << 16 |
			    (uint32_t)seed[4 * i + 3] << 24;
	r->counter = 0;
	r->avail = 0;
	memset(r->buf, 0, sizeof(r->buf));
}

/*
 * Mix fresh seed material into the key rather than replace it, so a weak
 * reseed never makes the state worse; and drop the buffered keystream, which
 * was computed from the old state and is exactly what a clone must not emit.
 */
static inline void chacha_rng_reseed(struct chacha_rng *r,
				     const uint8_t seed[32])
{
	uint8_t block[64];
	int i;

	chacha20_block(r->key, r->counter++, block);
	for (i = 0; i < 8; i++)
		r->key[i] ^= ((uint32_t)seed[4 * i] |
			      (uint32_t)seed[4 * i + 1] << 8 |
			      (uint32_t)seed[4 * i + 2] << 16 |
			      (uint32_t)seed[4 * i + 3] << 24) ^
			     ((uint32_t)block[4 * i] |
			      (uint32_t)block[4 * i + 1] << 8 |
			      (uint32_t)block[4 * i + 2] << 16 |
			      (uint32_t)block[4 * i + 3] << 24);
	r->counter = 0;
	r->avail = 0;
	memset(r->buf, 0, sizeof(r->buf));
	memset(block, 0, sizeof(block));
}

static inline void chacha_rng_bytes(struct chacha_rng *r, void *out, size_t n)
{
	uint8_t *p = out;

	while (n > 0) {
		size_t take;

		if (r->avail == 0) {
			chacha20_block(r->key, r->counter++, r->buf);
			r->avail = sizeof(r->buf);
		}
		take = n < r->avail ? n : r->avail;
		memcpy(p, r->buf + sizeof(r->buf) - r->avail, take);
		/* Erase what was handed out: no copy of it stays behind. */
		memset(r->buf + sizeof(r->buf) - r->avail, 0, take);
		r->avail -= take;
		p += take;
		n -= take;
	}
}

#endif /* CHACHA_RNG_H */
