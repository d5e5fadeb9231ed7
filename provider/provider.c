/* SPDX-License-Identifier: MIT */
/*
 * The provider entry: OSSL_provider_init, the algorithm table, provider
 * parameters, error strings and teardown.
 *
 * The wrapped DRBGs live in a child library context (OSSL_LIB_CTX_new_child):
 * it sees the providers the loading context has (default, or FIPS), so the
 * DRBG we wrap is the one OpenSSL would have used, fetched the supported way
 * rather than by linking to OpenSSL's internals.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "provider.h"

#ifndef VP_VERSION
#define VP_VERSION "0"
#endif

void vp_raise(const struct vp_prov *prov, uint32_t reason, const char *file,
	      int line, const char *func, const char *fmt, ...)
{
	va_list ap;

	if (prov == NULL || prov->new_error == NULL)
		return;
	prov->new_error(prov->handle);
	if (prov->set_error_debug != NULL)
		prov->set_error_debug(prov->handle, file, line, func);
	if (prov->vset_error != NULL) {
		va_start(ap, fmt);
		prov->vset_error(prov->handle, reason, fmt, ap);
		va_end(ap);
	}
}

void vp_prov_ref(struct vp_prov *prov)
{
	__atomic_add_fetch(&prov->refs, 1, __ATOMIC_RELAXED);
}

/*
 * The child context goes when the provider and every DRBG made from it
 * are gone: thread-local DRBGs may be freed after the provider's teardown.
 */
void vp_prov_unref(struct vp_prov *prov)
{
	if (__atomic_sub_fetch(&prov->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (prov->parent_prov != NULL)
		OSSL_PROVIDER_unload(prov->parent_prov);
	OSSL_LIB_CTX_free(prov->child);
	OPENSSL_free(prov->gettables);
	free(prov->drbg_name);
	free(prov->drbg_propq);
	pthread_mutex_destroy(&prov->lock);
	free(prov);
}

static const OSSL_ALGORITHM vp_rands[] = {
	{ VP_DRBG_NAME, VP_PROPERTIES, vp_drbg_functions,
	  "the default DRBG, reseeded from the OS on every VM or fork "
	  "generation step (libvmgenid)" },
	{ NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *vp_query(void *provctx, int operation_id,
				      int *no_cache)
{
	*no_cache = 0;
	return operation_id == OSSL_OP_RAND ? vp_rands : NULL;
}

static const OSSL_PARAM vp_param_types[] = {
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
	OSSL_PARAM_END
};

static const OSSL_PARAM *vp_gettable_params(void *provctx)
{
	return vp_param_types;
}

static int vp_get_params(void *provctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
	if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "libvmgenid provider"))
		return 0;
	p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
	if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, VP_VERSION))
		return 0;
	p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
	if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "libvmgenid " VP_VERSION))
		return 0;
	p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
	if (p != NULL && !OSSL_PARAM_set_int(p, 1))
		return 0;
	return 1;
}

/* OSSL_ITEM holds a void *; the strings are never written. */
static const OSSL_ITEM vp_reason_strings[] = {
	{ VP_R_VMGENID, (void *)"libvmgenid reports an error: no bytes "
				"until it handles the generation step" },
	{ VP_R_NO_WRAPPED_DRBG, (void *)"cannot make the wrapped DRBG" },
	{ VP_R_RESEED_FAILED, (void *)"reseed after a generation step failed" },
	{ VP_R_GENERATION_UNSTABLE,
	  (void *)"the generation kept changing while generating" },
	{ VP_R_BAD_PARENT, (void *)"the parent DRBG cannot supply seed" },
	{ 0, NULL },
};

static const OSSL_ITEM *vp_get_reason_strings(void *provctx)
{
	return vp_reason_strings;
}

static void vp_teardown(void *provctx)
{
	vp_prov_unref(provctx);
}

static const OSSL_DISPATCH vp_provider_functions[] = {
	{ OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))vp_teardown },
	{ OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
	  (void (*)(void))vp_gettable_params },
	{ OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))vp_get_params },
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))vp_query },
	{ OSSL_FUNC_PROVIDER_GET_REASON_STRINGS,
	  (void (*)(void))vp_get_reason_strings },
	{ 0, NULL }
};

/*
 * Settings from the provider's own config section:
 *   drbg = CTR-DRBG            the DRBG to wrap (HASH-DRBG, HMAC-DRBG)
 *   drbg_properties = ...      the property query to fetch it with
 */
static int vp_read_config(struct vp_prov *prov,
			  OSSL_FUNC_core_get_params_fn *get_params)
{
	char *name = NULL, *propq = NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_utf8_ptr("drbg", &name, 0),
		OSSL_PARAM_utf8_ptr("drbg_properties", &propq, 0),
		OSSL_PARAM_END
	};

	if (get_params != NULL && !get_params(prov->handle, params))
		return 0;
	prov->drbg_name = strdup(name != NULL && *name ? name : "CTR-DRBG");
	if (prov->drbg_name == NULL)
		return 0;
	if (propq != NULL && *propq) {
		prov->drbg_propq = strdup(propq);
		if (prov->drbg_propq == NULL)
			return 0;
	}
	return 1;
}

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
		       const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
		       void **provctx);

__attribute__((visibility("default")))
int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
		       const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
		       void **provctx)
{
	OSSL_FUNC_core_get_params_fn *get_params = NULL;
	struct vp_prov *prov;
	const OSSL_DISPATCH *f;

	prov = calloc(1, sizeof(*prov));
	if (prov == NULL)
		return 0;
	prov->handle = handle;
	prov->refs = 1;
	pthread_mutex_init(&prov->lock, NULL);
	for (f = in; f->function_id != 0; f++) {
		switch (f->function_id) {
		case OSSL_FUNC_CORE_GET_PARAMS:
			get_params = OSSL_FUNC_core_get_params(f);
			break;
		case OSSL_FUNC_CORE_NEW_ERROR:
			prov->new_error = OSSL_FUNC_core_new_error(f);
			break;
		case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
			prov->set_error_debug = OSSL_FUNC_core_set_error_debug(f);
			break;
		case OSSL_FUNC_CORE_VSET_ERROR:
			prov->vset_error = OSSL_FUNC_core_vset_error(f);
			break;
		}
	}
	if (!vp_read_config(prov, get_params))
		goto fail;
	prov->child = OSSL_LIB_CTX_new_child(handle, in);
	if (prov->child == NULL)
		goto fail;
	prov->parent_prov = vp_parent_register(prov->child);
	if (prov->parent_prov == NULL)
		goto fail;
	*out = vp_provider_functions;
	*provctx = prov;
	return 1;
fail:
	vp_prov_unref(prov);
	return 0;
}
