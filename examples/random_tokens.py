#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A long-running program that hands out tokens drawn from Python's
`random` module, made safe across VM restores and clones with one line:
vmgenid.reseed_random_on_restore(). Without it (--control), every clone
of a saved VM prints the same tokens as every other clone.

It also shows a transaction: a token goes out only if the generation did
not move while it was built (vmgenid.retry).

Run: python3 random_tokens.py [--count N] [--interval SECONDS] [--control]
     (needs python3-vmgenid, or PYTHONPATH at the source's python/)
Each line: "generation G token T" (T: 16 hex digits).
"""
import argparse
import random
import sys
import time

import vmgenid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=0, help="0: for ever")
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--control", action="store_true",
                    help="leave `random` unprotected")
    ap.add_argument("--step-on-stdin", action="store_true",
                    help="print a token per line read from stdin instead")
    args = ap.parse_args()

    if not args.control:
        vmgenid.reseed_random_on_restore()      # the one line
    print("ready source", vmgenid.source_info().kind, flush=True)

    n = 0
    while args.count == 0 or n < args.count:
        if args.step_on_stdin:
            if not sys.stdin.readline():
                break
        else:
            time.sleep(args.interval)
        # The generation and the token, built under one transaction.
        gen, token = vmgenid.retry(
            lambda: (vmgenid.generation(), "%016x" % random.getrandbits(64)))
        print("generation", gen, "token", token, flush=True)
        n += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
