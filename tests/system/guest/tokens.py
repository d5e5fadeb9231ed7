#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A long-running service that draws a token from each of Python's random
streams every 100 ms and writes them to a console: ssl.RAND_bytes (the
system OpenSSL, so the provider when openssl.cnf enables it), the random
module's Mersenne Twister, os.urandom (the kernel RNG). The system test
compares what clones of one saved guest print after the resume.
Usage: tokens.py DEVICE (default /dev/ttyS0)."""

import os
import random
import ssl
import sys
import time

dev = sys.argv[1] if len(sys.argv) > 1 else '/dev/ttyS0'
fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
seq = 0
while True:
	seq += 1
	# one write per line, so that lines from other writers cannot cut it
	line = 'TOK py-ssl %d %s\nTOK py-random %d %032x\nTOK py-urandom %d %s\n' % (
		seq, ssl.RAND_bytes(16).hex(), seq, random.getrandbits(128),
		seq, os.urandom(16).hex())
	os.write(fd, line.encode())
	time.sleep(0.1)
