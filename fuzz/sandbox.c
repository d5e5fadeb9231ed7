/* SPDX-License-Identifier: MIT */
/*
 * The interposers: the executable's open*() and inotify_add_watch() win
 * over libc's for the library linked into it. They reach the kernel with
 * syscall(), so they work under the sanitizers too. Built without
 * _FILE_OFFSET_BITS, so that open and open64 are two symbols to define.
 */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

int open64(const char *path, int flags, ...);
int openat64(int dirfd, const char *path, int flags, ...);
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);

static int armed;
static int dirfd_ = -1;
static char dirpath[256];

/* Empties and removes the sandbox when the harness exits normally. */
static void sandbox_remove(void)
{
	struct dirent *de;
	DIR *dir;
	int fd = dup(dirfd_);

	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd_, de->d_name,
				 de->d_type == DT_DIR ? AT_REMOVEDIR : 0);
	closedir(dir);
	rmdir(dirpath);
}

int sandbox_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	if (dirfd_ >= 0)
		return dirfd_;
	snprintf(dirpath, sizeof(dirpath), "%s/vmgenid-fuzz-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dirpath)) {
		perror("sandbox: mkdtemp");
		abort();
	}
	dirfd_ = (int)syscall(SYS_openat, AT_FDCWD, dirpath,
			      O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd_ < 0) {
		perror("sandbox: open");
		abort();
	}
	atexit(sandbox_remove);
	return dirfd_;
}

void sandbox_write(const char *name, const void *data, size_t len)
{
	/*
	 * Write, then cut to length: no O_TRUNC, because on ext4 a truncate
	 * to zero before a rewrite forces a flush (auto_da_alloc), which
	 * costs milliseconds per input.
	 */
	int fd = (int)syscall(SYS_openat, sandbox_dir(), name,
			      O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0 || (len && pwrite(fd, data, len, 0) != (ssize_t)len) ||
	    ftruncate(fd, (off_t)len) < 0) {
		perror("sandbox: write");
		abort();
	}
	close(fd);
}

void sandbox_arm(int on)
{
	armed = on;
}

/* The directory fd to resolve @path in, or -1 for "not allowed". */
static int confine(const char **path)
{
	if (!armed)
		return AT_FDCWD;
	if (!*path || !**path || strchr(*path, '/') ||
	    !strcmp(*path, ".") || !strcmp(*path, ".."))
		return -1;
	return sandbox_dir();
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	int at = confine(&path);

	if (at == -1) {
		errno = ENOENT;
		return -1;
	}
	if (at != AT_FDCWD)
		dirfd = at;
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

#define MODE_ARG(flags, mode)						\
	do {								\
		if (((flags) & O_CREAT) ||				\
		    ((flags) & O_TMPFILE) == O_TMPFILE) {		\
			va_list ap;					\
			va_start(ap, flags);				\
			mode = va_arg(ap, mode_t);			\
			va_end(ap);					\
		}							\
	} while (0)

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	MODE_ARG(flags, mode);
	return do_openat(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;

	MODE_ARG(flags, mode);
	return do_openat(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	MODE_ARG(flags, mode);
	return do_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	MODE_ARG(flags, mode);
	return do_openat(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}

int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
	char full[512];

	if (confine(&path) == -1) {
		errno = ENOENT;
		return -1;
	}
	if (armed) {
		snprintf(full, sizeof(full), "%s/%s", dirpath, path);
		path = full;
	}
	return (int)syscall(SYS_inotify_add_watch, fd, path, mask);
}
