/* SPDX-License-Identifier: MIT */
/*
 * Test fixture for check-man.py: a public function that has no man page,
 * declared over two lines as a header may do. The check must fail on it.
 */
#define VMGEN_PUBLIC
VMGEN_PUBLIC int
vmgen_no_such_page(unsigned int flags);
