/* SPDX-License-Identifier: MIT */
/*
 * VMGENID-DRBG: OpenSSL's own DRBG (CTR-DRBG by default), wrapped so that
 * libvmgenid is asked before every generate, reseed and get_seed. When the
 * generation moved (VM restore or clone, fork), the wrapped DRBG reseeds
 * with prediction resistance, i.e. from fresh OS entropy through its
 * parents, before a byte goes out; if libvmgenid reports an error, nothing
 * goes out (fail closed).
 *
 * `[random] random = VMGENID-DRBG` makes rand_new_drbg() (crypto/rand/
 * rand_lib.c) create the primary DRBG (parent: the seed source) and each
 * thread's public and private DRBGs (parent: the primary) with this
 * algorithm. Our wrapped DRBGs are chained the same way: a public or
 * private one has the primary's wrapped DRBG as its parent, so OpenSSL's
 * own parent checks (reseed counter, strength, locking) work unchanged.
 *
 * The wrapper has no lock of its own: its state is the wrapped DRBG (every
 * call to it takes its lock) and one atomic generation. So no lock is held
 * while libvmgenid dispatches callbacks, and a callback may call
 * RAND_bytes() (it is then told the generation being dispatched).
 */
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <vmgenid.h>

#include "provider.h"

/*
 * Generate again while the generation moves meanwhile: a step per try for
 * this many tries is a generation driven in a loop, not VM restores or
 * forks; fail closed then rather than spin for ever.
 */
#define VP_GENERATE_TRIES 1000

struct vp_drbg {
	struct vp_prov *prov;
	EVP_RAND_CTX *inner;		/* the wrapped DRBG */
	struct vp_drbg *parent;		/* when ours; outlives us */
	uint64_t seeded;		/* generation it was seeded for, 0: none */
	size_t max_request;		/* cached at instantiate, 0 before */
};

/* The generation, once libvmgenid has handled it; 0 and an error if not. */
static int vp_generation(const struct vp_prov *prov, uint64_t *gen)
{
	struct vmgen_txn txn;
	int err;

	err = vmgen_txn_begin(&txn);
	if (err < 0) {
		VP_RAISE(prov, VP_R_VMGENID, "libvmgenid: %s (%d)",
			 vmgen_strerror(err), err);
		return 0;
	}
	*gen = txn.generation;
	return 1;
}

/* Reseed from fresh entropy unless already seeded for generation gen. */
static int vp_catch_up(struct vp_drbg *d, uint64_t gen)
{
	if (__atomic_load_n(&d->seeded, __ATOMIC_ACQUIRE) == gen)
		return 1;
	if (!EVP_RAND_reseed(d->inner, 1, NULL, 0, NULL, 0)) {
		VP_RAISE(d->prov, VP_R_RESEED_FAILED,
			 "prediction-resistant reseed for generation %llu",
			 (unsigned long long)gen);
		return 0;
	}
	/*
	 * Racing threads may store an older gen after a newer one: that
	 * costs one more reseed, never a missed one. A prediction-resistant
	 * reseed draws through the parent with prediction resistance too
	 * (get_entropy() in drbg.c), so our parent is fresh as well.
	 */
	__atomic_store_n(&d->seeded, gen, __ATOMIC_RELEASE);
	if (d->parent != NULL)
		__atomic_store_n(&d->parent->seeded, gen, __ATOMIC_RELEASE);
	return 1;
}

/*
 * The whole contract in one place (the OpenSSL 3.5 random_provider entry
 * would call this too): bytes go out only if they were generated from a
 * state seeded for the generation libvmgenid reports before and after.
 */
static int vp_generate_checked(struct vp_drbg *d, unsigned char *out,
			       size_t outlen, unsigned int strength, int pr,
			       const unsigned char *adin, size_t adin_len)
{
	uint64_t gen, after;
	int i;

	if (!vp_generation(d->prov, &gen))
		goto fail;
	for (i = 0; i < VP_GENERATE_TRIES; i++) {
		if (!vp_catch_up(d, gen) ||
		    !EVP_RAND_generate(d->inner, out, outlen, strength, pr,
				       adin, adin_len) ||
		    !vp_generation(d->prov, &after))
			goto fail;
		if (after == gen)
			return 1;
		gen = after;	/* a step landed while generating: again */
	}
	VP_RAISE(d->prov, VP_R_GENERATION_UNSTABLE, "after %d tries", i);
fail:
	OPENSSL_cleanse(out, outlen);
	return 0;
}

static void *vp_drbg_newctx(void *provctx, void *parent,
			    const OSSL_DISPATCH *parent_dispatch)
{
	struct vp_prov *prov = provctx;
	struct vp_drbg *d;
	EVP_RAND_CTX *pctx = NULL, *adapter = NULL;
	EVP_RAND *rand;

	d = OPENSSL_zalloc(sizeof(*d));
	if (d == NULL)
		return NULL;
	d->prov = prov;
	vp_prov_ref(prov);
	if (parent != NULL && parent_dispatch == vp_drbg_functions) {
		/* Ours: chain the wrapped DRBGs as OpenSSL chains its own. */
		d->parent = parent;
		pctx = d->parent->inner;
		if (!EVP_RAND_enable_locking(pctx)) {
			VP_RAISE(prov, VP_R_BAD_PARENT, "cannot share parent");
			goto fail;
		}
	} else if (parent != NULL) {
		pctx = adapter = vp_parent_new(prov, parent, parent_dispatch);
		if (pctx == NULL)
			goto fail;
	}
	rand = EVP_RAND_fetch(prov->child, prov->drbg_name, prov->drbg_propq);
	if (rand == NULL) {
		VP_RAISE(prov, VP_R_NO_WRAPPED_DRBG, "cannot fetch %s (%s)",
			 prov->drbg_name,
			 prov->drbg_propq ? prov->drbg_propq : "");
		goto fail;
	}
	d->inner = EVP_RAND_CTX_new(rand, pctx);
	EVP_RAND_free(rand);
	if (d->inner == NULL) {
		VP_RAISE(prov, VP_R_NO_WRAPPED_DRBG, "cannot make %s",
			 prov->drbg_name);
		goto fail;
	}
	EVP_RAND_CTX_free(adapter);	/* EVP_RAND_CTX_new() took a reference */
	return d;
fail:
	EVP_RAND_CTX_free(adapter);
	vp_prov_unref(prov);
	OPENSSL_free(d);
	return NULL;
}

static void vp_drbg_freectx(void *vctx)
{
	struct vp_drbg *d = vctx;

	if (d == NULL)
		return;
	EVP_RAND_CTX_free(d->inner);
	vp_prov_unref(d->prov);
	OPENSSL_free(d);
}

static int vp_drbg_instantiate(void *vctx, unsigned int strength, int pr,
			       const unsigned char *pstr, size_t pstr_len,
			       const OSSL_PARAM params[])
{
	struct vp_drbg *d = vctx;
	size_t max_request = 0;
	OSSL_PARAM get[] = {
		OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, &max_request),
		OSSL_PARAM_END
	};

	/*
	 * libvmgenid is not asked here: it may run the application's
	 * callbacks, and one that calls RAND_bytes() would re-enter
	 * RAND_get0_primary() under the write lock it holds while creating
	 * the primary (the lock is not recursive: the callback's draw
	 * fails), or make a second public DRBG for this thread before this
	 * one is stored (a leak). seeded stays 0, which no generation
	 * equals: the first generate asks, and reseeds.
	 */
	if (!EVP_RAND_instantiate(d->inner, strength, pr, pstr, pstr_len,
				  params) ||
	    !EVP_RAND_CTX_get_params(d->inner, get))
		return 0;
	__atomic_store_n(&d->max_request, max_request, __ATOMIC_RELAXED);
	return 1;
}

static int vp_drbg_uninstantiate(void *vctx)
{
	struct vp_drbg *d = vctx;

	return EVP_RAND_uninstantiate(d->inner);
}

static int vp_drbg_generate(void *vctx, unsigned char *out, size_t outlen,
			    unsigned int strength, int pr,
			    const unsigned char *adin, size_t adin_len)
{
	return vp_generate_checked(vctx, out, outlen, strength, pr, adin,
				   adin_len);
}

static int vp_drbg_reseed(void *vctx, int pr, const unsigned char *ent,
			  size_t ent_len, const unsigned char *adin,
			  size_t adin_len)
{
	struct vp_drbg *d = vctx;
	uint64_t gen;
	int stale;

	if (!vp_generation(d->prov, &gen))
		return 0;
	stale = __atomic_load_n(&d->seeded, __ATOMIC_ACQUIRE) != gen;
	if (!EVP_RAND_reseed(d->inner, pr || stale, ent, ent_len, adin,
			     adin_len))
		return 0;
	if (stale)
		__atomic_store_n(&d->seeded, gen, __ATOMIC_RELEASE);
	return 1;
}

/*
 * A DRBG made by the application with ours as its parent draws its seed
 * here; as ossl_drbg_get_seed() does, it is generated output, checked.
 */
static size_t vp_drbg_get_seed(void *vctx, unsigned char **pout,
			       int entropy, size_t min_len, size_t max_len,
			       int pr, const unsigned char *adin,
			       size_t adin_len)
{
	struct vp_drbg *d = vctx;
	size_t n = entropy > 0 ? ((size_t)entropy + 7) / 8 : 0;
	unsigned char *buf;

	if (n < min_len)
		n = min_len;
	if (n > max_len)
		n = max_len;
	buf = OPENSSL_secure_malloc(n);
	if (buf == NULL)
		return 0;
	if (!vp_generate_checked(d, buf, n, 0, pr, adin, adin_len)) {
		OPENSSL_secure_clear_free(buf, n);
		return 0;
	}
	*pout = buf;
	return n;
}

/* See parent_clear_seed(): OpenSSL 3.0 passes the child, not us. */
static void vp_drbg_clear_seed(void *vctx, unsigned char *out, size_t outlen)
{
	OPENSSL_secure_clear_free(out, outlen);
}

static int vp_drbg_enable_locking(void *vctx)
{
	struct vp_drbg *d = vctx;

	return EVP_RAND_enable_locking(d->inner);
}

static int vp_drbg_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	struct vp_drbg *d = vctx;
	size_t max_request;
	OSSL_PARAM *p;

	/* EVP_RAND_generate() asks this on every call: answer it here. */
	max_request = __atomic_load_n(&d->max_request, __ATOMIC_RELAXED);
	if (params != NULL && params[0].key != NULL &&
	    params[1].key == NULL && max_request != 0 &&
	    strcmp(params[0].key, OSSL_RAND_PARAM_MAX_REQUEST) == 0)
		return OSSL_PARAM_set_size_t(&params[0], max_request);
	p = OSSL_PARAM_locate(params, VP_PARAM_GENERATION);
	if (p != NULL &&
	    !OSSL_PARAM_set_uint64(p, __atomic_load_n(&d->seeded,
						      __ATOMIC_ACQUIRE)))
		return 0;
	p = OSSL_PARAM_locate(params, VP_PARAM_SOURCE);
	if (p != NULL) {
		int kind = vmgen_source();
		const char *name = kind >= 0 ? vmgen_source_name(kind) : NULL;
		const char *why = NULL;

		/* auto found nothing yet on a machine with a VM device */
		if (kind == VMGEN_SOURCE_NONE &&
		    vmgen_source_race_free(&why) == 0 && why != NULL &&
		    strncmp(why, "none, waiting", 13) == 0)
			name = "none (waiting for a source)";
		if (!OSSL_PARAM_set_utf8_ptr(p, name != NULL ? name : "error"))
			return 0;
	}
	return EVP_RAND_CTX_get_params(d->inner, params);
}

/* The wrapped DRBG's gettable list plus ours, made once per provider. */
static const OSSL_PARAM *vp_drbg_gettable_ctx_params(void *vctx,
						     void *provctx)
{
	struct vp_prov *prov = provctx;
	const OSSL_PARAM *inner = NULL, *q;
	EVP_RAND *rand;
	OSSL_PARAM *list;
	size_t n = 0;

	pthread_mutex_lock(&prov->lock);
	if (prov->gettables != NULL)
		goto out;
	rand = EVP_RAND_fetch(prov->child, prov->drbg_name, prov->drbg_propq);
	if (rand != NULL)
		inner = EVP_RAND_gettable_ctx_params(rand);
	for (q = inner; q != NULL && q->key != NULL; q++)
		n++;
	list = OPENSSL_zalloc((n + 3) * sizeof(*list));
	if (list != NULL) {
		if (n > 0)
			memcpy(list, inner, n * sizeof(*list));
		list[n] = OSSL_PARAM_construct_uint64(VP_PARAM_GENERATION,
						      NULL);
		list[n + 1] = OSSL_PARAM_construct_utf8_ptr(VP_PARAM_SOURCE,
							    NULL, 0);
		list[n + 2] = OSSL_PARAM_construct_end();
		prov->gettables = list;
	}
	EVP_RAND_free(rand);	/* keys are static strings of its provider */
out:
	pthread_mutex_unlock(&prov->lock);
	return prov->gettables;
}

static const OSSL_PARAM *vp_drbg_settable_ctx_params(void *vctx,
						     void *provctx)
{
	struct vp_drbg *d = vctx;

	return d != NULL ? EVP_RAND_CTX_settable_params(d->inner) : NULL;
}

static int vp_drbg_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	struct vp_drbg *d = vctx;

	return EVP_RAND_CTX_set_params(d->inner, params);
}

static int vp_drbg_verify_zeroization(void *vctx)
{
	struct vp_drbg *d = vctx;

	return EVP_RAND_verify_zeroization(d->inner);
}

const OSSL_DISPATCH vp_drbg_functions[] = {
	{ OSSL_FUNC_RAND_NEWCTX, (void (*)(void))vp_drbg_newctx },
	{ OSSL_FUNC_RAND_FREECTX, (void (*)(void))vp_drbg_freectx },
	{ OSSL_FUNC_RAND_INSTANTIATE, (void (*)(void))vp_drbg_instantiate },
	{ OSSL_FUNC_RAND_UNINSTANTIATE,
	  (void (*)(void))vp_drbg_uninstantiate },
	{ OSSL_FUNC_RAND_GENERATE, (void (*)(void))vp_drbg_generate },
	{ OSSL_FUNC_RAND_RESEED, (void (*)(void))vp_drbg_reseed },
	{ OSSL_FUNC_RAND_ENABLE_LOCKING,
	  (void (*)(void))vp_drbg_enable_locking },
	{ OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS,
	  (void (*)(void))vp_drbg_gettable_ctx_params },
	{ OSSL_FUNC_RAND_SETTABLE_CTX_PARAMS,
	  (void (*)(void))vp_drbg_settable_ctx_params },
	{ OSSL_FUNC_RAND_GET_CTX_PARAMS,
	  (void (*)(void))vp_drbg_get_ctx_params },
	{ OSSL_FUNC_RAND_SET_CTX_PARAMS,
	  (void (*)(void))vp_drbg_set_ctx_params },
	{ OSSL_FUNC_RAND_VERIFY_ZEROIZATION,
	  (void (*)(void))vp_drbg_verify_zeroization },
	{ OSSL_FUNC_RAND_GET_SEED, (void (*)(void))vp_drbg_get_seed },
	{ OSSL_FUNC_RAND_CLEAR_SEED, (void (*)(void))vp_drbg_clear_seed },
	{ 0, NULL }
};
