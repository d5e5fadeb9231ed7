#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A long-running service that draws a token from each of Python's random
streams every 100 ms and writes them to a console: ssl.RAND_bytes (the
system OpenSSL, so the provider when openssl.cnf enables it), the random
module's Mersenne Twister, os.urandom (the kernel RNG). The system test
compares what clones of one saved guest print after the resume.
Usage: tokens.py [DEVICE [PREFIX]] (default /dev/ttyS0 and py: the
streams are PREFIX-ssl, PREFIX-random, PREFIX-urandom). Whether `random`
reseeds on a restore is the environment's choice (VMGENID_RESEED_RANDOM=1,
python3-vmgenid), not this program's."""

import os
import random
import ssl
import sys
import time

dev = sys.argv[1] if len(sys.argv) > 1 else '/dev/ttyS0'
prefix = sys.argv[2] if len(sys.argv) > 2 else 'py'
fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
seq = 0
while True:
	seq += 1
	# one write per line, so that lines from other writers cannot cut it
	line = ('TOK {0}-ssl {1} {2}\nTOK {0}-random {1} {3:032x}\n'
		'TOK {0}-urandom {1} {4}\n').format(
		prefix, seq, ssl.RAND_bytes(16).hex(), random.getrandbits(128),
		os.urandom(16).hex())
	os.write(fd, line.encode())
	time.sleep(0.1)
