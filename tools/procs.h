/* SPDX-License-Identifier: MIT */
/* The processes that use libvmgenid, from /proc (procs.c). */
#ifndef VMGENID_TOOL_PROCS_H
#define VMGENID_TOOL_PROCS_H

#include <stdbool.h>
#include <stddef.h>

struct proc_use {
	int pid;
	char comm[32];
	char source[32];	/* "sysgenid", "none-waiting"...; "": unknown */
	bool library;		/* libvmgenid.so mapped */
	bool initialised;	/* the library's source mapping seen */
	const char *device;	/* the VM device mapped, or NULL */
};

struct proc_scan {
	struct proc_use *v;
	size_t n, cap;
	unsigned int unreadable;	/* maps not readable (other users') */
	unsigned int not_users;		/* --pid: gone, or not a user */
};

/*
 * Every process but @self, or only @pids when @npids > 0. 0 or -errno
 * (no /proc, out of memory); processes that vanish are skipped.
 */
int procs_scan(const int *pids, int npids, int self, struct proc_scan *scan);
/* On none (or waiting for a source): not protected against a restore. */
bool procs_unprotected(const struct proc_use *u);
void procs_free(struct proc_scan *scan);

#endif /* VMGENID_TOOL_PROCS_H */
