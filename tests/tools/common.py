# SPDX-License-Identifier: MIT
"""Helpers shared by the tool and example tests: a file generation source
in a temporary directory, bounded waits, and process handling. Every wait
has a deadline so that a broken build fails instead of hanging; no test
asserts on how long anything took."""
import os
import struct
import subprocess
import sys
import tempfile
import time

DEADLINE = 20.0         # seconds; a hang guard, never a measurement
SKIP = 77


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Counter:
    """The library's file source: a regular file whose first 4 bytes are a
    native u32 counter."""

    def __init__(self, value=0):
        self.dir = tempfile.TemporaryDirectory(prefix="vmgenid-test-")
        self.path = os.path.join(self.dir.name, "generation")
        self.write(value)

    @property
    def spec(self):
        return "file:" + self.path

    def read(self):
        with open(self.path, "rb") as f:
            return struct.unpack("=I", f.read(4))[0]

    def write(self, value):
        # In place, never by rename: the library maps this very inode.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, struct.pack("=I", value), 0)
        finally:
            os.close(fd)

    def bump(self):
        self.write(self.read() + 1)
        return self.read()

    def env(self, extra=None):
        env = dict(os.environ)
        env["VMGENID_SOURCE"] = self.spec
        env.update(extra or {})
        return env

    def file(self, name):
        return os.path.join(self.dir.name, name)


def run(argv, env=None, timeout=DEADLINE):
    p = subprocess.run(argv, env=env, capture_output=True, text=True,
                       errors="replace", timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def wait_until(pred, what, deadline=DEADLINE, step=0.02):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise Failure("gave up waiting for " + what)


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def lines(path):
    return [l for l in read_text(path).splitlines() if l.strip()]


def finish(proc, deadline=DEADLINE):
    """The exit code of proc, killing it if it outlives the deadline."""
    try:
        return proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure(f"{proc.args!r} did not exit")


def main(cases):
    """argv: CASE [PATHS...]; runs cases[CASE](*PATHS)."""
    if len(sys.argv) < 2 or sys.argv[1] not in cases:
        print("usage: %s CASE [ARGS...]; cases: %s"
              % (sys.argv[0], " ".join(sorted(cases))), file=sys.stderr)
        sys.exit(2)
    try:
        cases[sys.argv[1]](*sys.argv[2:])
    except Failure as e:
        print("FAIL:", e, file=sys.stderr)
        sys.exit(1)
    print("ok")
    sys.exit(0)

