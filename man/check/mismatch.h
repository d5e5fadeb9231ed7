/* SPDX-License-Identifier: MIT */
/*
 * Test fixture for check-man.py: a prototype that differs from the one in
 * its man page (the page says "unsigned int flags").
 */
#define VMGEN_PUBLIC
VMGEN_PUBLIC int vmgen_init(const char *source, int flags);
