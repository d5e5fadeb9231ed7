#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tests of the vmgenid command against the library's file source.
Usage: test_tool.py CASE PATH-TO-vmgenid"""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Counter, check, run, wait_until, read_text,
                    lines, finish, main)


def usage(tool):
    bad = [
        [],
        ["bogus"],
        ["status", "--bogus"],
        ["status", "extra"],
        ["--source"],
        ["--source="],
        ["status", "--min", "3"],
        ["wait", "--timeout", "abc"],
        ["wait", "--timeout", "-1"],
        ["wait", "--timeout", "1e3"],
        ["wait", "--since", "x"],
        ["trigger", "--min", "-1"],
        ["trigger", "--min", "4294967296"],
        ["watch"],
        ["watch", "--count", "0", "--", "true"],
        ["watch", "--once", "--"],
        ["wait-watchers", "--json"],
        ["status", "--json=yes"],
    ]
    for args in bad:
        rc, out, err = run([tool] + args)
        check(rc == 2, f"vmgenid {args} exited {rc}, not 2: {err}")
        check("Usage:" in err, f"vmgenid {args} printed no usage: {err}")
        check(out == "", f"vmgenid {args} wrote to stdout: {out}")
    for args in (["--help"], ["-h"], ["help"], ["status", "--help"]):
        rc, out, err = run([tool] + args)
        check(rc == 0 and "Usage:" in out, f"{args}: {rc} {out} {err}")
    rc, out, _ = run([tool, "--version"])
    check(rc == 0 and out.startswith("vmgenid "), f"--version: {rc} {out}")


def status(tool):
    c = Counter(7)
    rc, out, err = run([tool, "--source", c.spec, "status"])
    check(rc == 0, f"status exited {rc}: {err}")
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip():
            fields[key.strip()] = value.strip()
    check(fields.get("source") == "file", f"source: {out}")
    check(fields.get("path") == c.path, f"path: {out}")
    check(fields.get("source generation") == "7", f"source gen: {out}")
    check(fields.get("generation", "x").isdigit(), f"generation: {out}")
    check(fields.get("fork detection") in ("wipeonfork", "atfork"),
          f"fork detection: {out}")
    check(fields.get("race-free", "").startswith("no: file source"),
          f"race-free: {out}")
    # The environment selects the source as well as --source does.
    rc, out2, err = run([tool, "status"], env=c.env())
    check(rc == 0 and c.path in out2, f"VMGENID_SOURCE: {rc} {out2} {err}")


def status_json(tool):
    c = Counter(41)
    rc, out, err = run([tool, "--source", c.spec, "status", "--json"])
    check(rc == 0, f"status --json exited {rc}: {err}")
    # The tool the issue names, then our own look at the fields.
    p = subprocess.run([sys.executable, "-m", "json.tool"], input=out,
                       capture_output=True, text=True)
    check(p.returncode == 0, f"json.tool rejects: {out} {p.stderr}")
    doc = json.loads(out)
    check(doc["source"] == "file", f"source: {doc}")
    check(doc["path"] == c.path, f"path: {doc}")
    check(doc["source_generation"] == 41, f"source_generation: {doc}")
    check(isinstance(doc["generation"], int) and doc["generation"] > 0,
          f"generation: {doc}")
    check(doc["fork_detection"] in ("wipeonfork", "atfork"), f"fork: {doc}")
    check(isinstance(doc["rejected"], dict), f"rejected: {doc}")
    check(doc["watchers"] is None and doc["outdated_watchers"] is None,
          f"watchers outside sysgenid: {doc}")
    # A file is never race-free, and says why; no module outside sysgenid.
    check(doc["race_free"] is False and
          "file source" in (doc["race_free_reason"] or ""),
          f"race_free: {doc}")
    check(doc["module_mode"] is None and doc["guid_page"] is None,
          f"module attributes outside sysgenid: {doc}")

    # A path no JSON writer should trust: quotes, backslash, control
    # characters and a byte that is not UTF-8.
    name = os.fsencode(c.dir.name) + b'/q"b\\s\n\t\x01\xff\xc3\xa9'
    with open(name, "wb") as f:
        f.write((5).to_bytes(4, sys.byteorder))
    p = subprocess.run([tool, "--source", b"file:" + name, "status",
                        "--json"], capture_output=True)
    check(p.returncode == 0, f"odd path: {p.returncode} {p.stderr}")
    doc = json.loads(p.stdout.decode("utf-8"))
    check(doc["path"] == os.fsdecode(c.dir.name) +
          '/q"b\\s\n\t\x01\ufffd\u00e9', f"odd path: {doc['path']!r}")


def bad_source(tool):
    c = Counter(0)
    missing = c.file("missing")
    rc, out, err = run([tool, "--source", "file:" + missing, "status"])
    check(rc == 1, f"missing file source exited {rc}: {err}")
    check("file" in err and missing in err, f"no reason given: {err}")
    # Each rejected source gets a line of its own, with its reason.
    rc, out, err = run([tool, "--source", "vmclock:" + missing, "status"])
    check(rc == 1, f"forced vmclock exited {rc}: {err}")
    check("vmclock:" in err, f"vmclock's reason missing: {err}")
    rc, out, err = run([tool, "--source", "sysgenid:" + missing, "status"])
    check(rc == 1 and "sysgenid:" in err, f"forced sysgenid: {rc} {err}")
    rc, out, err = run([tool, "--source", "file:" + c.dir.name, "status"])
    check(rc == 1 and "file:" in err, f"directory as file: {rc} {err}")
    rc, out, err = run([tool, "status"],
                       env=dict(os.environ, VMGENID_SOURCE="bogus:x"))
    check(rc == 1 and "bogus" in err, f"bad VMGENID_SOURCE: {rc} {err}")
    check(out == "", f"a failed status wrote to stdout: {out}")

    # auto on a host without the devices: none, and says why.
    rc, out, err = run([tool, "--source", "auto", "status", "--json"])
    check(rc == 0, f"auto: {rc} {err}")
    doc = json.loads(out)
    for kind, dev in (("vmclock", "/dev/vmclock0"),
                      ("sysgenid", "/dev/sysgenid")):
        if doc["source"] != kind and not os.path.exists(dev):
            check(kind in doc["rejected"] and doc["rejected"][kind],
                  f"auto gives no reason for {kind}: {doc}")


def wait(tool):
    c = Counter(3)
    proc = subprocess.Popen([tool, "--source", c.spec, "wait",
                             "--timeout", "30"])
    # The wait may not be armed yet when a trigger lands, so trigger from
    # another process until it sees one: it must return 0 on the first
    # step it observes.
    def stepped():
        rc, _, err = run([tool, "--source", c.spec, "trigger"])
        check(rc == 0, f"trigger failed: {err}")
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        return proc.returncode is not None
    wait_until(stepped, "wait to return after a trigger", step=0)
    check(proc.returncode == 0, f"wait exited {proc.returncode}")


def wait_since(tool):
    c = Counter(10)
    rc, out, err = run([tool, "--source", c.spec, "status", "--json"])
    gen = json.loads(out)["source_generation"]
    # Already elsewhere: returns at once, however long the timeout.
    rc, _, err = run([tool, "--source", c.spec, "wait", "--since",
                      str(gen - 1), "--timeout", "0"])
    check(rc == 0, f"wait --since an old generation exited {rc}: {err}")
    # --since closes the race between reading and waiting: a single
    # trigger, whenever it lands, ends the wait.
    proc = subprocess.Popen([tool, "--source", c.spec, "wait", "--since",
                             str(gen), "--timeout", "30"])
    rc, _, err = run([tool, "--source", c.spec, "trigger"])
    check(rc == 0, f"trigger: {err}")
    check(finish(proc) == 0, f"wait --since exited {proc.returncode}")


def wait_timeout(tool):
    c = Counter(1)
    for t in ("0", "0.2"):
        rc, out, err = run([tool, "--source", c.spec, "wait", "--timeout",
                            t])
        check(rc == 3, f"wait --timeout {t} exited {rc}, not 3: {err}")
    check(c.read() == 1, "a wait changed the counter")


def trigger_min(tool):
    c = Counter(7)
    base = [tool, "--source", c.spec, "trigger"]
    for args, want in (([], 8), (["--min", "100"], 100),
                       (["--min=5"], 101), (["-m", "4294967295"],
                                            4294967295)):
        rc, _, err = run(base + args)
        check(rc == 0, f"trigger {args} exited {rc}: {err}")
        check(c.read() == want, f"trigger {args}: {c.read()}, not {want}")
    rc, _, err = run([tool, "--source", "none", "trigger"])
    check(rc == 1 and "none" in err, f"trigger on none: {rc} {err}")


def start_watch(tool, c, args, cmd):
    errfile = c.file("watch.err")
    stderr = open(errfile, "w")
    proc = subprocess.Popen([tool, "--source", c.spec, "watch"] + args +
                            ["--"] + cmd, stderr=stderr)
    stderr.close()
    wait_until(lambda: "watching" in read_text(errfile) or
               proc.poll() is not None, "the watch to arm")
    check(proc.poll() is None, f"watch exited: {read_text(errfile)}")
    return proc, errfile


RECORD = ('echo "$VMGENID_PREVIOUS $VMGENID_GENERATION '
          '$VMGENID_SOURCE_GENERATION $VMGENID_REASON" >> "$0"')


def watch(tool):
    c = Counter(20)
    out = c.file("runs")
    proc, errfile = start_watch(tool, c, ["--count", "3"],
                                ["sh", "-c", RECORD, out])
    check(lines(out) == [], "CMD ran before any step")
    for n in (1, 2, 3):
        c.bump()
        wait_until(lambda: len(lines(out)) >= n or proc.poll() is not None,
                   f"run {n} of CMD")
    check(finish(proc) == 0, f"watch --count 3 exited {proc.returncode}: "
          f"{read_text(errfile)}")
    runs = [l.split() for l in lines(out)]
    check(len(runs) == 3, f"CMD ran {len(runs)} times for 3 steps: {runs}")
    for i, r in enumerate(runs):
        check(len(r) == 4, f"missing variables: {r}")
        prev, gen, src = int(r[0]), int(r[1]), int(r[2])
        check(gen > prev, f"generation did not move: {r}")
        check(src == 21 + i, f"run {i} saw source generation {src}")
        check(r[3] == "vm", f"reason {r[3]}")
        if i:
            check(prev == int(runs[i - 1][1]),
                  f"VMGENID_PREVIOUS breaks the chain: {runs}")


def watch_failing_cmd(tool):
    c = Counter(0)
    out = c.file("runs")
    proc, errfile = start_watch(
        tool, c, ["-n", "2"],
        ["sh", "-c", 'echo "$VMGENID_GENERATION" >> "$0"; exit 3', out])
    for n in (1, 2):
        c.bump()
        wait_until(lambda: len(lines(out)) >= n or proc.poll() is not None,
                   f"run {n} of the failing CMD")
    check(finish(proc) == 0, f"watch exited {proc.returncode}")
    check(len(lines(out)) == 2, f"runs: {lines(out)}")
    err = read_text(errfile)
    check(err.count("exited with status 3") == 2, f"not reported: {err}")

    # A CMD that cannot start at all is reported too.
    c2 = Counter(0)
    proc, errfile = start_watch(tool, c2, ["--once"],
                                [c2.file("no-such-command")])
    c2.bump()
    check(finish(proc) == 0, f"watch exited {proc.returncode}")
    check("cannot run" in read_text(errfile), read_text(errfile))


def watch_signal(tool):
    for sig in (signal.SIGTERM, signal.SIGINT):
        c = Counter(0)
        proc, errfile = start_watch(tool, c, [], ["true"])
        proc.send_signal(sig)
        check(finish(proc) == 0, f"{sig.name}: exited {proc.returncode}")

    # During a long CMD: forwarded to it, then the watch ends.
    c = Counter(0)
    out = c.file("runs")
    proc, errfile = start_watch(
        tool, c, [], ["sh", "-c", 'echo started >> "$0"; exec sleep 60',
                      out])
    c.bump()
    wait_until(lambda: lines(out) == ["started"], "the long CMD to start")
    proc.send_signal(signal.SIGTERM)
    check(finish(proc) == 0, f"exited {proc.returncode}")
    check("killed by signal" in read_text(errfile), read_text(errfile))


def maps(pid):
    return read_text(f"/proc/{pid}/maps")


def status_processes(tool):
    """Real processes on a file source, on none, and one that loaded the
    library but never used it: status lists each with its source, and
    says (and --check exits 4) that the one on none is not protected."""
    c = Counter(3)
    procs = []
    try:
        on_file, _ = start_watch(tool, c, [], ["true"])
        procs.append(on_file)
        wait_until(lambda: "libvmgenid:file" in maps(on_file.pid),
                   "the file source's mapping")
        none_err = open(c.file("none.err"), "w")
        on_none = subprocess.Popen([tool, "--source", "none", "watch", "--",
                                    "true"], stderr=none_err)
        none_err.close()
        procs.append(on_none)
        wait_until(lambda: "libvmgenid:none" in maps(on_none.pid),
                   "the none source's mapping")
        # The library the tool uses, loaded and never called.
        lib = next((l.split()[-1] for l in maps(on_file.pid).splitlines()
                    if "/libvmgenid.so" in l), None)
        if lib is None:
            print("SKIP: the tool is not linked to a shared libvmgenid")
            sys.exit(77)
        idle = subprocess.Popen(
            [sys.executable, "-c",
             "import ctypes, sys; ctypes.CDLL(sys.argv[1]); "
             "print('loaded', flush=True); sys.stdin.read()", lib],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(idle)
        check(idle.stdout.readline().strip() == "loaded", "ctypes load")
        pids = [p.pid for p in procs]
        scope = sum((["--pid", str(pid)] for pid in pids), [])

        rc, out, err = run([tool, "--source", c.spec, "status"] + scope)
        check(rc == 0, f"status exited {rc}: {err}")
        rows = {int(l.split()[0]): l for l in out.splitlines()
                if l.startswith("  ") and l.split()[0].isdigit()}
        check(set(rows) == set(pids), f"listed: {out}")
        check(rows[on_file.pid].split()[2:] == ["file"], f"file: {out}")
        check("none" in rows[on_none.pid] and
              "NOT PROTECTED" in rows[on_none.pid], f"none: {out}")
        check("not initialised" in rows[idle.pid] and
              "NOT PROTECTED" not in rows[idle.pid], f"idle: {out}")
        check("3 use libvmgenid" in out, f"count: {out}")
        check(any(l.startswith("WARNING:") and "1 process on none" in l
                  for l in out.splitlines()), f"no warning: {out}")

        rc, out, err = run([tool, "--source", c.spec, "status", "--check"]
                           + scope)
        check(rc == 4, f"--check with a process on none: {rc} {err}")
        rc, out, err = run([tool, "--source", c.spec, "status", "--check",
                            "--pid", str(on_file.pid), "--pid",
                            str(idle.pid)])
        check(rc == 0 and "WARNING" not in out, f"--check, none on none: "
              f"{rc} {out} {err}")
        # Where the machine has no source, none protects as well as any.
        rc, out, err = run([tool, "--source", "none", "status", "--check"]
                           + scope)
        check(rc == 0 and "NOT PROTECTED" not in out,
              f"--check on a machine without a source: {rc} {out} {err}")

        rc, out, err = run([tool, "--source", c.spec, "status", "--json"]
                           + scope)
        check(rc == 0, f"status --json exited {rc}: {err}")
        doc = json.loads(out)
        by_pid = {p["pid"]: p for p in doc["processes"]}
        check(set(by_pid) == set(pids), f"json pids: {doc}")
        check(by_pid[on_file.pid]["source"] == "file" and
              by_pid[on_file.pid]["protected"] is True and
              by_pid[on_file.pid]["initialised"] is True, f"file: {doc}")
        check(by_pid[on_none.pid]["source"] == "none" and
              by_pid[on_none.pid]["protected"] is False, f"none: {doc}")
        check(by_pid[idle.pid]["source"] is None and
              by_pid[idle.pid]["initialised"] is False and
              by_pid[idle.pid]["protected"] is None, f"idle: {doc}")
        check(doc["unprotected"] == 1, f"unprotected: {doc}")
        check(by_pid[on_file.pid]["comm"] == "vmgenid", f"comm: {doc}")

        # Unscoped: every process we may read, ours among them.
        rc, out, err = run([tool, "--source", c.spec, "status", "--json"])
        check(rc == 0, f"unscoped status exited {rc}: {err}")
        doc = json.loads(out)
        listed = {p["pid"] for p in doc["processes"]}
        check(set(pids) <= listed, f"unscoped: {pids} not in {listed}")
        check(isinstance(doc["processes_unreadable"], int), f"{doc}")
        # A process that does not use the library is not listed.
        rc, out, err = run([tool, "--source", c.spec, "status", "--pid",
                            str(os.getpid())])
        check(rc == 0 and "0 use libvmgenid" in out and
              "1 of the --pid not using it" in out, f"self: {out} {err}")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_watchers(tool):
    c = Counter(0)
    rc, _, err = run([tool, "--source", c.spec, "wait-watchers",
                      "--timeout", "1"])
    check(rc == 1 and "sysgenid" in err, f"on a file source: {rc} {err}")


if __name__ == "__main__":
    main({f.__name__: f for f in (usage, status, status_json, bad_source,
                                  wait, wait_since, wait_timeout,
                                  trigger_min, watch, watch_failing_cmd,
                                  watch_signal, wait_watchers,
                                  status_processes)})
