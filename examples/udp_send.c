/* SPDX-License-Identifier: MIT */
/*
 * udp_send: a network send wrapped in a transaction, so that a message
 * built before a VM restore (with a nonce that a clone would repeat) is
 * never sent after it: when the commit fails, the message is rebuilt.
 *
 * Commit right before the send: whatever was built under the old
 * generation is thrown away, and a restore after the commit is the
 * unavoidable window of any check-then-act.
 *
 * Build: cc udp_send.c -o udp_send $(pkg-config --cflags --libs vmgenid)
 * Run:   VMGENID_SOURCE=file:/tmp/gen ./udp_send [--simulate-restore]
 *        (the option bumps the file's counter between build and send)
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vmgenid.h>

static int build(char *msg, size_t len, const struct vmgen_txn *txn)
{
	uint64_t nonce;

	if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
		return -1;
	return snprintf(msg, len, "generation=%" PRIu64 " nonce=%016" PRIx64,
			txn->generation, nonce);
}

int main(int argc, char **argv)
{
	int simulate = argc > 1 && strcmp(argv[1], "--simulate-restore") == 0;
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	char msg[128], got[128];
	struct vmgen_txn txn;
	int rx, tx, len, r;
	ssize_t n;

	/* A receiver on loopback, standing in for the peer. */
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	tx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (rx < 0 || tx < 0 || bind(rx, (struct sockaddr *)&addr,
				     sizeof(addr)) < 0 ||
	    getsockname(rx, (struct sockaddr *)&addr, &alen) < 0) {
		perror("udp_send: socket");
		return 1;
	}

	for (;;) {
		r = vmgen_txn_begin(&txn);
		if (r < 0) {
			fprintf(stderr, "udp_send: %s\n", vmgen_strerror(r));
			return 1;
		}
		len = build(msg, sizeof(msg), &txn);
		if (len < 0)
			return 1;
		if (simulate) {
			simulate = 0;	/* a restore lands right here, once */
			r = vmgen_trigger(0);
			if (r < 0) {
				fprintf(stderr, "udp_send: trigger: %s\n",
					vmgen_strerror(r));
				return 1;
			}
		}
		if (vmgen_txn_commit(&txn))
			break;
		printf("discarded: %s\n", msg);
	}
	if (sendto(tx, msg, (size_t)len, 0, (struct sockaddr *)&addr,
		   sizeof(addr)) != len) {
		perror("udp_send: sendto");
		return 1;
	}
	n = recv(rx, got, sizeof(got) - 1, 0);
	if (n < 0) {
		perror("udp_send: recv");
		return 1;
	}
	got[n] = '\0';
	printf("received: %s\n", got);
	close(rx);
	close(tx);
	return 0;
}
