#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""examples/random_tokens.py against the file source: one token per line
of input, a generation step between tokens; each token line names the
generation it was built in. Usage: test_example.py PYTHON EXAMPLE"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tools"))
from common import Counter, check, finish, main  # noqa: E402


def random_tokens(python, example):
    c = Counter(1)
    for extra in ([], ["--control"]):
        proc = subprocess.Popen([python, example, "--step-on-stdin",
                                 "--count", "3"] + extra,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=c.env(), text=True)
        first = proc.stdout.readline()
        check(first == "ready source file\n", f"first line {first!r}")
        gens, tokens = [], []
        for _ in range(3):
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            m = re.fullmatch(r"generation (\d+) token ([0-9a-f]{16})\n", line)
            check(m is not None, f"line {line!r}")
            gens.append(int(m.group(1)))
            tokens.append(m.group(2))
            c.bump()
        proc.stdin.close()
        proc.stdout.close()
        check(finish(proc) == 0, f"exit {proc.returncode}")
        check(gens == [gens[0], gens[0] + 1, gens[0] + 2], f"gens {gens}")
        check(len(set(tokens)) == 3, f"tokens {tokens}")


if __name__ == "__main__":
    main({"random_tokens": random_tokens})
