/* SPDX-License-Identifier: MIT */
/*
 * A sandbox for the harnesses that drive the library's source probing with
 * fuzzed input. While it is armed, every path the library opens or watches
 * is confined to a private temporary directory: a bare name ("page") means
 * that file in the sandbox, and anything else (an absolute path, "..",
 * "/dev/watchdog") fails with ENOENT. So the fuzzer explores the parser and
 * the validation of the files it can see, and never opens the host's
 * devices.
 */
#ifndef VMGENID_FUZZ_SANDBOX_H
#define VMGENID_FUZZ_SANDBOX_H

#include <stddef.h>

/* Creates the sandbox directory once; returns its fd (aborts on failure). */
int sandbox_dir(void);

/* Replaces the sandbox file @name with @len bytes of @data. */
void sandbox_write(const char *name, const void *data, size_t len);

/* Confine (true) or release (false) the library's opens. */
void sandbox_arm(int armed);

#endif /* VMGENID_FUZZ_SANDBOX_H */
