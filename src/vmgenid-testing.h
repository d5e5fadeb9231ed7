/* SPDX-License-Identifier: MIT */
/* Hooks that only the internal static library (unit tests) provides. */
#ifndef VMGENID_TESTING_H
#define VMGENID_TESTING_H

#include <string.h>

void vmgen__test_reset(void);

#endif /* VMGENID_TESTING_H */
