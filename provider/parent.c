/* SPDX-License-Identifier: MIT */
/*
 * A parent the wrapped DRBG can be given. OpenSSL hands our newctx its
 * parent as (algctx, dispatch) (EVP_RAND_CTX_new in crypto/evp/evp_rand.c),
 * but the wrapped DRBG is made with EVP_RAND_CTX_new(), which wants an
 * EVP_RAND_CTX. For a parent of our own type we pass that parent's wrapped
 * DRBG (drbg.c); for any other parent (the seed source OpenSSL puts under
 * the primary DRBG, or one chosen with `seed = ...`) we pass one of these:
 * a RAND in the child context whose every call goes to the real parent.
 *
 * It lives in a built-in provider of the child context only, so it is
 * never listed to applications.
 */
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "provider.h"

#define VP_PARENT_PROVIDER "vmgenid-parent"
#define VP_PARENT_NAME "VMGENID-PARENT"
#define VP_PARAM_TARGET "vmgenid-target"

struct vp_target {
	void *ctx;
	const OSSL_DISPATCH *dispatch;
};

struct vp_parent {
	void *ctx;
	OSSL_FUNC_rand_generate_fn *generate;
	OSSL_FUNC_rand_get_ctx_params_fn *get_ctx_params;
	OSSL_FUNC_rand_enable_locking_fn *enable_locking;
	OSSL_FUNC_rand_lock_fn *lock;
	OSSL_FUNC_rand_unlock_fn *unlock;
	OSSL_FUNC_rand_get_seed_fn *get_seed;
};

static void *parent_newctx(void *provctx, void *parent,
			   const OSSL_DISPATCH *parent_dispatch)
{
	return OPENSSL_zalloc(sizeof(struct vp_parent));
}

static void parent_freectx(void *vctx)
{
	OPENSSL_free(vctx);
}

/* The real parent is instantiated by its owner; nothing to do here. */
static int parent_instantiate(void *vctx, unsigned int strength, int pr,
			      const unsigned char *pstr, size_t pstr_len,
			      const OSSL_PARAM params[])
{
	return 1;
}

static int parent_uninstantiate(void *vctx)
{
	return 1;
}

static int parent_generate(void *vctx, unsigned char *out, size_t outlen,
			   unsigned int strength, int pr,
			   const unsigned char *adin, size_t adin_len)
{
	struct vp_parent *p = vctx;

	return p->generate != NULL &&
	       p->generate(p->ctx, out, outlen, strength, pr, adin, adin_len);
}

static int parent_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	struct vp_parent *p = vctx;

	return p->get_ctx_params != NULL &&
	       p->get_ctx_params(p->ctx, params);
}

static int parent_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	struct vp_parent *p = vctx;
	const OSSL_PARAM *t;
	struct vp_target target;
	const OSSL_DISPATCH *f;

	t = OSSL_PARAM_locate_const(params, VP_PARAM_TARGET);
	if (t == NULL)
		return 1;
	if (t->data_type != OSSL_PARAM_OCTET_STRING ||
	    t->data_size != sizeof(target))
		return 0;
	memcpy(&target, t->data, sizeof(target));
	memset(p, 0, sizeof(*p));
	p->ctx = target.ctx;
	for (f = target.dispatch; f != NULL && f->function_id != 0; f++) {
		switch (f->function_id) {
		case OSSL_FUNC_RAND_GENERATE:
			p->generate = OSSL_FUNC_rand_generate(f);
			break;
		case OSSL_FUNC_RAND_GET_CTX_PARAMS:
			p->get_ctx_params = OSSL_FUNC_rand_get_ctx_params(f);
			break;
		case OSSL_FUNC_RAND_ENABLE_LOCKING:
			p->enable_locking = OSSL_FUNC_rand_enable_locking(f);
			break;
		case OSSL_FUNC_RAND_LOCK:
			p->lock = OSSL_FUNC_rand_lock(f);
			break;
		case OSSL_FUNC_RAND_UNLOCK:
			p->unlock = OSSL_FUNC_rand_unlock(f);
			break;
		case OSSL_FUNC_RAND_GET_SEED:
			p->get_seed = OSSL_FUNC_rand_get_seed(f);
			break;
		}
	}
	return p->get_ctx_params != NULL && p->get_seed != NULL;
}

static int parent_enable_locking(void *vctx)
{
	struct vp_parent *p = vctx;

	return p->enable_locking == NULL || p->enable_locking(p->ctx);
}

static int parent_lock(void *vctx)
{
	struct vp_parent *p = vctx;

	return p->lock == NULL || p->lock(p->ctx);
}

static void parent_unlock(void *vctx)
{
	struct vp_parent *p = vctx;

	if (p->unlock != NULL)
		p->unlock(p->ctx);
}

static size_t parent_get_seed(void *vctx, unsigned char **buffer,
			      int entropy, size_t min_len, size_t max_len,
			      int pr, const unsigned char *adin,
			      size_t adin_len)
{
	struct vp_parent *p = vctx;

	if (p->get_seed == NULL)
		return 0;
	return p->get_seed(p->ctx, buffer, entropy, min_len, max_len, pr,
			   adin, adin_len);
}

/*
 * OpenSSL 3.0's cleanup_entropy() passes the child, not the parent
 * (providers/implementations/rands/drbg.c: parent_clear_seed(drbg, ...)),
 * so the context cannot be used here. Both seed sources and DRBGs hand out
 * OPENSSL_secure_malloc()ed seed, which this frees the same way.
 */
static void parent_clear_seed(void *vctx, unsigned char *out, size_t outlen)
{
	OPENSSL_secure_clear_free(out, outlen);
}

static const OSSL_DISPATCH parent_functions[] = {
	{ OSSL_FUNC_RAND_NEWCTX, (void (*)(void))parent_newctx },
	{ OSSL_FUNC_RAND_FREECTX, (void (*)(void))parent_freectx },
	{ OSSL_FUNC_RAND_INSTANTIATE, (void (*)(void))parent_instantiate },
	{ OSSL_FUNC_RAND_UNINSTANTIATE, (void (*)(void))parent_uninstantiate },
	{ OSSL_FUNC_RAND_GENERATE, (void (*)(void))parent_generate },
	{ OSSL_FUNC_RAND_GET_CTX_PARAMS, (void (*)(void))parent_get_ctx_params },
	{ OSSL_FUNC_RAND_SET_CTX_PARAMS, (void (*)(void))parent_set_ctx_params },
	{ OSSL_FUNC_RAND_ENABLE_LOCKING, (void (*)(void))parent_enable_locking },
	{ OSSL_FUNC_RAND_LOCK, (void (*)(void))parent_lock },
	{ OSSL_FUNC_RAND_UNLOCK, (void (*)(void))parent_unlock },
	{ OSSL_FUNC_RAND_GET_SEED, (void (*)(void))parent_get_seed },
	{ OSSL_FUNC_RAND_CLEAR_SEED, (void (*)(void))parent_clear_seed },
	{ 0, NULL }
};

static const OSSL_ALGORITHM parent_rands[] = {
	{ VP_PARENT_NAME, "provider=" VP_PARENT_PROVIDER, parent_functions,
	  "forwards to a DRBG parent given as algctx and dispatch" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *parent_query(void *provctx, int operation_id,
					  int *no_cache)
{
	*no_cache = 0;
	return operation_id == OSSL_OP_RAND ? parent_rands : NULL;
}

static const OSSL_DISPATCH parent_provider_functions[] = {
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))parent_query },
	{ 0, NULL }
};

static int parent_provider_init(const OSSL_CORE_HANDLE *handle,
				const OSSL_DISPATCH *in,
				const OSSL_DISPATCH **out, void **provctx)
{
	*out = parent_provider_functions;
	*provctx = NULL;
	return 1;
}

OSSL_PROVIDER *vp_parent_register(OSSL_LIB_CTX *child)
{
	if (!OSSL_PROVIDER_add_builtin(child, VP_PARENT_PROVIDER,
				       parent_provider_init))
		return NULL;
	return OSSL_PROVIDER_load(child, VP_PARENT_PROVIDER);
}

EVP_RAND_CTX *vp_parent_new(struct vp_prov *prov, void *parent,
			    const OSSL_DISPATCH *parent_dispatch)
{
	struct vp_target target = { parent, parent_dispatch };
	OSSL_PARAM params[] = {
		OSSL_PARAM_octet_string(VP_PARAM_TARGET, &target,
					sizeof(target)),
		OSSL_PARAM_END
	};
	EVP_RAND *rand;
	EVP_RAND_CTX *ctx;

	rand = EVP_RAND_fetch(prov->child, VP_PARENT_NAME,
			      "provider=" VP_PARENT_PROVIDER);
	if (rand == NULL) {
		VP_RAISE(prov, VP_R_BAD_PARENT, "cannot fetch %s",
			 VP_PARENT_NAME);
		return NULL;
	}
	ctx = EVP_RAND_CTX_new(rand, NULL);
	EVP_RAND_free(rand);
	if (ctx != NULL && !EVP_RAND_CTX_set_params(ctx, params)) {
		EVP_RAND_CTX_free(ctx);
		ctx = NULL;
	}
	if (ctx == NULL)
		VP_RAISE(prov, VP_R_BAD_PARENT,
			 "the parent DRBG offers no get_seed/get_ctx_params");
	return ctx;
}
