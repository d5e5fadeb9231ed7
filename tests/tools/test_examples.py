#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Smoke runs of the examples against the library's file source, asserting
what each one is there to show.
Usage: test_examples.py CASE PATHS..."""
import os
import re
import shlex
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Counter, check, run, wait_until, read_text, lines,
                    finish, main)


def start(exe, c, args):
    """Runs exe with stdout to a file; returns it once it printed ready."""
    out = c.file(os.path.basename(exe) + ".out")
    with open(out, "w") as f:
        proc = subprocess.Popen([exe] + args, stdout=f, env=c.env())
    wait_until(lambda: "ready" in read_text(out) or proc.poll() is not None,
               f"{exe} to get ready")
    check(proc.poll() is None, f"{exe} exited early: {read_text(out)}")
    return proc, out


def step_and_wait(c, proc, out, pattern, steps):
    """One trigger at a time, each answered by one more matching line."""
    for n in range(1, steps + 1):
        c.bump()
        wait_until(lambda: len(re.findall(pattern, read_text(out))) >= n
                   or proc.poll() is not None, f"answer {n} to a trigger")
    check(finish(proc) == 0, f"exited {proc.returncode}: {read_text(out)}")
    found = re.findall(pattern, read_text(out))
    check(len(found) == steps, f"{len(found)} answers to {steps} triggers:"
          f" {read_text(out)}")
    return found


def uuid_cache(exe):
    c = Counter(0)
    proc, out = start(exe, c, ["3"])
    took = step_and_wait(c, proc, out,
                         r"(?m)^generation (\d+): took (\S+)$", 3)
    first = re.search(r"took (\S+), queued (\S+)", read_text(out))
    check(first is not None, read_text(out))
    uuids = [first.group(1), first.group(2)] + [u for _, u in took]
    # The example itself fails if the queued UUID survived the step; the
    # UUIDs it handed out must all differ, and be version 4.
    check(len(set(uuids)) == len(uuids), f"a UUID repeats: {uuids}")
    for u in uuids:
        check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                           r"[89ab][0-9a-f]{3}-[0-9a-f]{12}", u), u)
    gens = [int(g) for g, _ in took]
    check(gens == sorted(set(gens)), f"generations: {gens}")


def udp_send(exe):
    c = Counter(0)
    rc, out, err = run([exe], env=c.env())
    check(rc == 0, f"udp_send exited {rc}: {err}")
    check("discarded" not in out and "received: generation=" in out, out)

    rc, out, err = run([exe, "--simulate-restore"], env=c.env())
    check(rc == 0, f"udp_send --simulate-restore exited {rc}: {err}")
    dropped = re.findall(r"discarded: generation=(\d+) nonce=(\w+)", out)
    got = re.findall(r"received: generation=(\d+) nonce=(\w+)", out)
    check(len(dropped) == 1, f"not rebuilt exactly once: {out}")
    check(len(got) == 1, f"nothing received: {out}")
    check(int(got[0][0]) > int(dropped[0][0]),
          f"sent under the old generation: {out}")
    check(got[0][1] != dropped[0][1], f"the nonce was reused: {out}")
    check(c.read() == 1, f"counter {c.read()} after one simulated restore")


def event_loop(exe):
    c = Counter(5)
    proc, out = start(exe, c, ["3"])
    found = step_and_wait(c, proc, out,
                          r"(?m)^callback \d+: generation (\d+) -> (\d+)$", 3)
    steps = [(int(a), int(b)) for a, b in found]
    for i, (old, new) in enumerate(steps):
        check(new > old, f"no step: {steps}")
        if i:
            check(old == steps[i - 1][1], f"a step was lost: {steps}")


def openssl_reseed(exe):
    c = Counter(0)
    proc, out = start(exe, c, ["2"])
    step_and_wait(c, proc, out,
                  r"(?m)^generation \d+: key ([0-9a-f]{32})$", 2)
    reseeds = re.findall(r"reseed count (\d+) -> (\d+)", read_text(out))
    check(len(reseeds) == 2, f"callbacks: {read_text(out)}")
    for before, after in reseeds:
        check(int(after) > int(before),
              f"the primary DRBG did not reseed: {read_text(out)}")


def hooks_service(tool, unit, hook):
    """Runs the unit's ExecStart, with this build's vmgenid and a scratch
    hook directory, through two generation steps and a stop."""
    execstart = None
    for line in read_text(unit).splitlines():
        if line.startswith("ExecStart="):
            execstart = shlex.split(line[len("ExecStart="):])
    check(execstart and execstart[0] == "/usr/bin/vmgenid", f"{execstart}")
    c = Counter(0)
    hooks = c.file("restore.d")
    os.mkdir(hooks)
    log = c.file("hooks.log")
    script = os.path.join(hooks, "10-record")
    with open(script, "w") as f:
        f.write('#!/bin/sh\necho "$VMGENID_SOURCE_GENERATION" >> "%s"\n'
                % log)
    os.chmod(script, 0o755)
    # run-parts skips names with a dot: this one must never run.
    with open(os.path.join(hooks, "20-skipped.sh"), "w") as f:
        f.write('#!/bin/sh\necho skipped >> "%s"\n' % log)
    os.chmod(os.path.join(hooks, "20-skipped.sh"), 0o755)
    # The shipped example hook must run cleanly as well (logger may be
    # missing in a container: then it is left out).
    if any(os.access(os.path.join(d, "logger"), os.X_OK)
           for d in os.environ.get("PATH", "").split(":")):
        os.symlink(os.path.abspath(hook), os.path.join(hooks,
                                                       "50-log-restore"))

    argv = [tool] + [hooks if a == "/etc/vmgenid/restore.d" else a
                     for a in execstart[1:]]
    errfile = c.file("unit.err")
    with open(errfile, "w") as err:
        proc = subprocess.Popen(argv, stderr=err, env=c.env())
    wait_until(lambda: "watching" in read_text(errfile) or
               proc.poll() is not None, "the unit's command to arm")
    check(proc.poll() is None, f"ExecStart exited: {read_text(errfile)}")
    for n in (1, 2):
        c.bump()
        wait_until(lambda: len(lines(log)) >= n, f"hook run {n}")
    proc.send_signal(signal.SIGTERM)       # systemctl stop
    check(finish(proc) == 0, f"stop: exit {proc.returncode}")
    check(lines(log) == ["1", "2"], f"hook runs: {lines(log)}")
    err = read_text(errfile)
    check("exited with status" not in err, f"a hook failed: {err}")


if __name__ == "__main__":
    main({f.__name__: f for f in (uuid_cache, udp_send, event_loop,
                                  openssl_reseed, hooks_service)})
