/* SPDX-License-Identifier: MIT */
/*
 * The vmgenid OpenSSL provider: what its three parts share. The provider
 * entry (provider.c) owns the child library context the wrapped DRBGs live
 * in; drbg.c is the DRBG algorithm OpenSSL's [random] section selects;
 * parent.c lets a wrapped DRBG draw from a parent that is not ours (the
 * seed source under the primary DRBG).
 */
#ifndef VMGENID_PROVIDER_H
#define VMGENID_PROVIDER_H

#include <pthread.h>
#include <stdint.h>
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

/* The name `[random] random = ...` selects, and our property. */
#define VP_DRBG_NAME "VMGENID-DRBG"
#define VP_PROPERTIES "provider=vmgenid"

/* get_ctx_params keys of ours: the generation the DRBG is seeded for, */
#define VP_PARAM_GENERATION "vmgenid-generation"
/* and the name of libvmgenid's generation source ("none": fork only). */
#define VP_PARAM_SOURCE "vmgenid-source"

/* Reasons for the errors we raise (see vp_reason_strings). */
enum {
	VP_R_VMGENID = 1,	/* libvmgenid returned an error */
	VP_R_NO_WRAPPED_DRBG,	/* the wrapped DRBG cannot be fetched/made */
	VP_R_RESEED_FAILED,	/* the reseed after a generation step failed */
	VP_R_GENERATION_UNSTABLE, /* the generation kept moving */
	VP_R_BAD_PARENT,	/* a parent DRBG we cannot draw from */
};

/* The provider context: one per load of the module in a library context. */
struct vp_prov {
	const OSSL_CORE_HANDLE *handle;
	OSSL_LIB_CTX *child;		/* mirrors the loading context */
	OSSL_PROVIDER *parent_prov;	/* parent.c's, in the child */
	char *drbg_name;		/* the wrapped DRBG, "CTR-DRBG" */
	char *drbg_propq;		/* its properties, or NULL */
	int refs;			/* the provider, plus one per DRBG */
	pthread_mutex_t lock;		/* guards gettables */
	OSSL_PARAM *gettables;		/* the wrapped DRBG's list plus ours */
	OSSL_FUNC_core_new_error_fn *new_error;
	OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
	OSSL_FUNC_core_vset_error_fn *vset_error;
};

void vp_prov_ref(struct vp_prov *prov);
void vp_prov_unref(struct vp_prov *prov);

/* Raise an error on the calling thread's OpenSSL error queue. */
void vp_raise(const struct vp_prov *prov, uint32_t reason, const char *file,
	      int line, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
#define VP_RAISE(prov, reason, ...) \
	vp_raise((prov), (reason), __FILE__, __LINE__, __func__, __VA_ARGS__)

extern const OSSL_DISPATCH vp_drbg_functions[];

/*
 * parent.c: an EVP_RAND_CTX in the child library context that forwards to
 * a parent given as (algctx, dispatch), so that the wrapped DRBG can have
 * it as its parent. Registered once per child context.
 */
OSSL_PROVIDER *vp_parent_register(OSSL_LIB_CTX *child);
EVP_RAND_CTX *vp_parent_new(struct vp_prov *prov, void *parent,
			    const OSSL_DISPATCH *parent_dispatch);

#endif /* VMGENID_PROVIDER_H */
