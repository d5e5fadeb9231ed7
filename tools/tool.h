/* SPDX-License-Identifier: MIT */
/* Shared between the vmgenid tool's source files; not installed. */
#ifndef VMGENID_TOOL_H
#define VMGENID_TOOL_H

#include "options.h"

/* Initialises the library, explaining on stderr why it could not. */
int tool_init(const struct vmgenid_opts *opts, unsigned int flags);

/* An exit code for a negative errno, after saying what failed. */
int tool_fail(const char *what, int err);

/* The commands; each returns an exit code. */
int cmd_status(const struct vmgenid_opts *opts);
int cmd_watch(const struct vmgenid_opts *opts);

#endif /* VMGENID_TOOL_H */
