/* SPDX-License-Identifier: MIT */
/*
 * Fork children reseed: an OpenSSL program that knows nothing of
 * libvmgenid forks (and its child forks again); each child's first draws
 * come from DRBGs the provider reseeded for the child's own generation,
 * and differ from what the parent draws next.
 *
 * OpenSSL reseeds after a fork by itself (it compares getpid()); what this
 * adds is that the provider saw the fork through libvmgenid (the DRBGs say
 * they are seeded for a new generation) and that nothing hangs or fails
 * in a child.
 */
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "counter.h"

#define CHILDREN 4

static int child_draws(int fd, uint64_t parent_generation)
{
	unsigned char buf[32], priv[32];
	struct drbg_state pub, prv;

	if (RAND_bytes(buf, sizeof(buf)) != 1 ||
	    RAND_priv_bytes(priv, sizeof(priv)) != 1) {
		fprintf(stderr, "FAIL child %d: RAND_bytes\n", getpid());
		ERR_print_errors_fp(stderr);
		return 1;
	}
	pub = drbg_state(RAND_get0_public(NULL));
	prv = drbg_state(RAND_get0_private(NULL));
	if (!pub.ok || !prv.ok || pub.generation == parent_generation ||
	    prv.generation == parent_generation) {
		fprintf(stderr, "FAIL child %d: DRBGs seeded for generation "
			"%llu/%llu, the parent's is %llu\n", getpid(),
			(unsigned long long)pub.generation,
			(unsigned long long)prv.generation,
			(unsigned long long)parent_generation);
		return 1;
	}
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		return 1;
	return 0;
}

/* Fork once; the child draws (and maybe forks again); compare. */
static int fork_and_compare(int depth)
{
	unsigned char mine[32], theirs[32];
	uint64_t generation;
	int fds[2], status, bad = 0;
	pid_t pid;

	if (RAND_bytes(mine, sizeof(mine)) != 1)
		return 1;
	generation = drbg_state(RAND_get0_public(NULL)).generation;
	if (pipe(fds) < 0)
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(fds[0]);
		alarm(30);
		status = child_draws(fds[1], generation);
		if (status == 0 && depth > 0)
			status = fork_and_compare(depth - 1);
		_exit(status);
	}
	close(fds[1]);
	if (RAND_bytes(mine, sizeof(mine)) != 1)
		bad = 1;
	if (read(fds[0], theirs, sizeof(theirs)) != (ssize_t)sizeof(theirs)) {
		fprintf(stderr, "FAIL: no bytes from child %d\n", pid);
		bad = 1;
	} else if (memcmp(mine, theirs, sizeof(mine)) == 0) {
		fprintf(stderr, "FAIL: child %d drew the parent's bytes\n",
			pid);
		bad = 1;
	}
	close(fds[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "FAIL: child %d ended with status %#x\n", pid,
			status);
		bad = 1;
	}
	return bad;
}

int main(void)
{
	int i, bad = 0;

	counter_init();
	alarm(60);
	if (!drbg_is_ours(RAND_get0_public(NULL))) {
		fprintf(stderr, "FAIL: the public DRBG is not VMGENID-DRBG: "
			"the provider is not configured\n");
		return 1;
	}
	for (i = 0; i < CHILDREN; i++) {
		bad |= fork_and_compare(1);
		if (i == 1)
			counter_step();	/* a VM step between forks, too */
	}
	if (bad)
		return 1;
	printf("ok: %d children and grandchildren reseeded for their own "
	       "generation\n", CHILDREN);
	return 0;
}
