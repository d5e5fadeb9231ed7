/* SPDX-License-Identifier: MIT */
/*
 * Export the header's inline functions as real symbols, for FFI and
 * dlopen users that cannot compile the inline code (liburing does the
 * same). The version script keeps vmgen__fast_generation local.
 */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

#define VMGEN_INLINE VMGEN_PUBLIC
#include "vmgenid.h"
