#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Python binding against the library's file source: a temporary file
whose first 4 bytes are the counter, bumped in place as `vmgenid trigger`
does. Run by `meson test --suite python` with Debian's python3; needs
libvmgenid.so.0 on the loader's path and the binding on PYTHONPATH.
Every wait has a deadline (a hang guard, never a measurement)."""
import errno
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import unittest

DEADLINE = 20

_dir = tempfile.TemporaryDirectory(prefix="vmgenid-py-")
GEN = os.path.join(_dir.name, "generation")


def write_counter(value):
    fd = os.open(GEN, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, struct.pack("=I", value), 0)     # in place: mapped
    finally:
        os.close(fd)


def bump():
    with open(GEN, "rb") as f:
        value = struct.unpack("=I", f.read(4))[0]
    write_counter(value + 1)


write_counter(1)
os.environ["VMGENID_SOURCE"] = "file:" + GEN
import vmgenid  # noqa: E402  (after the source is set)


def in_child(fn):
    """Run fn() in a fork child; return what it wrote (bytes) and assert
    that it exited 0."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.write(w, fn())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    while True:
        ready, _, _ = select.select([r], [], [], DEADLINE)
        if not ready:
            os.kill(pid, 9)
            raise AssertionError("child hung")
        chunk = os.read(r, 4096)
        if not chunk:
            break
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out


class Generation(unittest.TestCase):
    def test_source(self):
        info = vmgenid.source_info()
        self.assertEqual(info.kind, "file")
        self.assertEqual(info.path, GEN)
        self.assertFalse(info.race_free)
        self.assertTrue(info.reason)
        self.assertIn(info.fork_mode, ("wipeonfork", "atfork"))

    def test_steps(self):
        g0 = vmgenid.generation()
        bump()
        self.assertEqual(vmgenid.generation(), g0 + 1)
        vmgenid.trigger()
        self.assertEqual(vmgenid.generation(), g0 + 2)
        self.assertEqual(vmgenid.generation(), g0 + 2)

    def test_wait(self):
        g = vmgenid.generation()
        self.assertEqual(vmgenid.wait(g, timeout=0.05), g)
        bump()
        self.assertEqual(vmgenid.wait(g, timeout=DEADLINE), g + 1)

    def test_bad_init_fails_closed(self):
        # A fresh process: an explicit init that fails must stay failed.
        code = ("import vmgenid\n"
                "try:\n vmgenid.init('no-such-source:x')\n"
                "except vmgenid.Error as e: print(e.errno)\n"
                "try:\n vmgenid.generation()\n"
                "except vmgenid.Error as e: print(e.errno)\n")
        out = subprocess.run([sys.executable, "-c", code], text=True,
                             capture_output=True, timeout=DEADLINE)
        self.assertEqual(out.returncode, 0, out.stderr)
        first, later = out.stdout.split()
        self.assertEqual(int(first), errno.EINVAL)
        self.assertGreater(int(later), 0)


class Transactions(unittest.TestCase):
    def test_commit(self):
        t = vmgenid.transaction()
        self.assertEqual(t.generation, vmgenid.generation())
        self.assertTrue(t.commit())
        self.assertTrue(t.commit())

    def test_step_fails_commit(self):
        t = vmgenid.transaction()
        bump()
        self.assertFalse(t.commit())
        self.assertTrue(vmgenid.transaction().commit())

    def test_context_manager(self):
        with vmgenid.transaction() as t:
            self.assertTrue(t.commit())
        with self.assertRaises(vmgenid.StaleTransaction):
            with vmgenid.transaction():
                bump()
        # An exception from the block is not replaced.
        with self.assertRaises(KeyError):
            with vmgenid.transaction():
                bump()
                raise KeyError("mine")

    def test_retry(self):
        calls = []

        def build():
            calls.append(1)
            if len(calls) < 3:
                bump()          # a step while building: built again
            return len(calls)
        self.assertEqual(vmgenid.retry(build), 3)

        def always_stale():
            bump()
        with self.assertRaises(vmgenid.StaleTransaction):
            vmgenid.retry(always_stale, attempts=2)

    def test_fork_child_never_commits(self):
        t = vmgenid.transaction()

        def child():
            return b"%d %d" % (t.commit(), vmgenid.transaction().commit())
        self.assertEqual(in_child(child), b"0 1")
        self.assertTrue(t.commit())


class Callbacks(unittest.TestCase):
    def test_once_per_step(self):
        seen = []
        cb = vmgenid.register(seen.append, vmgenid.VM)
        try:
            g = vmgenid.generation()
            bump()
            for _ in range(3):
                vmgenid.generation()
                vmgenid.transaction()
            bump()
            vmgenid.generation()
            self.assertEqual(seen, [vmgenid.Event(vmgenid.VM, g, g + 1),
                                    vmgenid.Event(vmgenid.VM, g + 1, g + 2)])
        finally:
            vmgenid.unregister(cb)
        bump()
        vmgenid.generation()
        self.assertEqual(len(seen), 2)

    def test_exception_fails_closed(self):
        armed = [True]

        def cb(event):
            if armed[0]:
                raise ValueError("cannot reseed")
        cb_id = vmgenid.register(cb)
        try:
            t = vmgenid.transaction()
            bump()
            with self.assertRaises(vmgenid.Error) as caught:
                vmgenid.generation()
            self.assertEqual(caught.exception.errno, errno.ECANCELED)
            self.assertIsInstance(caught.exception.__cause__, ValueError)
            with self.assertRaises(vmgenid.Error):
                vmgenid.transaction()       # retried, fails again
            self.assertFalse(t.commit())
            armed[0] = False
            g = vmgenid.generation()        # retried, succeeds
            self.assertTrue(vmgenid.transaction().commit())
            self.assertEqual(vmgenid.transaction().generation, g)
        finally:
            vmgenid.unregister(cb_id)

    def test_negative_errno_and_bad_return(self):
        results = [-errno.EAGAIN, 5]
        cb_id = vmgenid.register(lambda e: results.pop(0) if results else 0)
        try:
            bump()
            with self.assertRaises(vmgenid.Error) as caught:
                vmgenid.generation()
            self.assertEqual(caught.exception.errno, errno.EAGAIN)
            with self.assertRaises(vmgenid.Error) as caught:
                vmgenid.generation()
            self.assertIsInstance(caught.exception.__cause__, TypeError)
            vmgenid.generation()
        finally:
            vmgenid.unregister(cb_id)

    def test_unregister_itself(self):
        ids = []

        def once(event):
            vmgenid.unregister(ids[0])
            ids.append(event)
        ids.append(vmgenid.register(once))
        bump()
        vmgenid.generation()
        bump()
        vmgenid.generation()
        self.assertEqual(len(ids), 2)
        with self.assertRaises(vmgenid.Error):
            vmgenid.unregister(ids[0])

    def test_watcher_thread(self):
        import threading
        ran = threading.Event()
        where = []

        def cb(event):
            where.append(threading.get_ident())
            ran.set()
        cb_id = vmgenid.register(cb)
        try:
            vmgenid.watcher_start()
            bump()
            # No call into the library from this thread: the watcher runs it.
            self.assertTrue(ran.wait(DEADLINE))
            self.assertNotEqual(where[0], threading.get_ident())
        finally:
            vmgenid.watcher_stop()
            vmgenid.unregister(cb_id)

    def test_fork_callback_in_child(self):
        seen = []
        cb_id = vmgenid.register(seen.append, vmgenid.FORK)
        try:
            def child():
                vmgenid.generation()
                return b"%d" % len(seen) + b" %d" % seen[0].reasons
            self.assertEqual(in_child(child), b"1 %d" % vmgenid.FORK)
            vmgenid.generation()
            self.assertEqual(seen, [])
        finally:
            vmgenid.unregister(cb_id)

    def test_bad_arguments(self):
        with self.assertRaises(TypeError):
            vmgenid.register(42)
        with self.assertRaises(vmgenid.Error) as caught:
            vmgenid.register(print, 0)
        self.assertEqual(caught.exception.errno, errno.EINVAL)
        with self.assertRaises(vmgenid.Error):
            vmgenid.unregister(-1)


# C code that enters the library holding the GIL (the OpenSSL provider
# under ssl.RAND_bytes; here the library's begin through ctypes.PyDLL)
# while another thread dispatches: with Python callbacks inside the
# library's dispatch, that thread waits for the GIL and this one for the
# dispatch, for ever (seen: the system test's late load, the source
# switch dispatched by the library's probe thread).
GIL_HELD_CHILD = r"""
import ctypes, os, struct, sys
import vmgenid
gen_path = os.environ["VMGENID_SOURCE"][len("file:"):]
steps = []
vmgenid.register(steps.append)
vmgenid.watcher_start()
lib = ctypes.PyDLL("libvmgenid.so.0")
txn = ctypes.c_uint64()
for _ in range(200):
    with open(gen_path, "r+b") as f:
        value = struct.unpack("=I", f.read(4))[0]
        f.seek(0)
        f.write(struct.pack("=I", value + 1))
    for _ in range(50):
        assert lib.vmgen_txn_begin(ctypes.byref(txn)) == 0
vmgenid.watcher_stop()
vmgenid.generation()
print(len(steps) > 0, flush=True)
"""


class Deadlock(unittest.TestCase):
    def test_c_caller_holding_gil(self):
        try:
            out = subprocess.run([sys.executable, "-c", GIL_HELD_CHILD],
                                 capture_output=True, text=True,
                                 timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.fail("deadlock: a thread holding the GIL waited in the "
                      "library for a Python callback")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "True\n")

CLONE_CHILD = r"""
import os, random, sys
import vmgenid
mode = sys.argv[1]
if mode == "environment":   # as at start, from the .pth file
    import site
    site.addsitedir(os.path.dirname(vmgenid.__file__))
random.setstate(eval(sys.stdin.readline()))
if mode == "checked":
    vmgenid.reseed_random_on_restore()
elif mode == "callback":
    vmgenid.reseed_random_on_restore(check_draws=False)
print("ready", flush=True)
sys.stdin.readline()                # the parent stepped the generation
if mode == "callback":
    vmgenid.generation()            # lazy: the reseed runs on this call
print(" ".join("%016x" % random.getrandbits(64) for _ in range(4)),
      random.random(), random.randint(0, 10**9), flush=True)
"""


FORKED_TWINS = r"""
import os, random, struct, sys
import vmgenid
gen_path = os.environ["VMGENID_SOURCE"][len("file:"):]
random.seed(2026)
if sys.argv[1] == "opt-in":
    vmgenid.reseed_random_on_restore()
state = random.getstate()
children = []
for _ in range(2):
    to_child, from_parent = os.pipe()
    from_child, to_parent = os.pipe()
    pid = os.fork()
    if pid == 0:
        # A clone has no fork reseed: undo CPython's (Lib/random.py).
        random.setstate(state)
        os.write(to_parent, b"r")
        os.read(to_child, 1)
        os.write(to_parent, b"%016x" % random.getrandbits(64))
        os._exit(0)
    children.append((pid, from_child, from_parent))
for pid, rd, wr in children:
    assert os.read(rd, 1) == b"r"
with open(gen_path, "r+b") as f:         # the step: a restore, as seen
    value = struct.unpack("=I", f.read(4))[0]
    f.seek(0)
    f.write(struct.pack("=I", value + 1))
outs = []
for pid, rd, wr in children:
    os.write(wr, b"g")
    outs.append(os.read(rd, 16))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
print("same" if outs[0] == outs[1] else "differ", outs[0].decode(),
      outs[1].decode())
"""


class ProtectRandom(unittest.TestCase):
    """A simulated clone: processes with the same `random` state (one
    parent's, as a restored VM's copies of a program have), then a step."""

    def clones(self, modes):
        state = repr(random.getstate())
        procs = []
        for mode in modes:
            env = dict(os.environ)
            if mode == "environment":
                env["VMGENID_RESEED_RANDOM"] = "1"
            p = subprocess.Popen([sys.executable, "-c", CLONE_CHILD, mode],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env)
            p.stdin.write(state + "\n")
            p.stdin.flush()
            self.assertEqual(p.stdout.readline(), "ready\n")
            procs.append(p)
        bump()
        outs = []
        for p in procs:
            try:
                out, _ = p.communicate("go\n", timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise
            outs.append(out)
            self.assertEqual(p.returncode, 0)
        return outs

    def test_clones(self):
        control1, control2, checked1, checked2, cb1, cb2, env = \
            self.clones(["control", "control", "checked", "checked",
                         "callback", "callback", "environment"])
        self.assertEqual(control1, control2)        # the twin repeats
        outs = [control1, checked1, checked2, cb1, cb2, env]
        self.assertEqual(len(set(outs)), len(outs), outs)
        for o in outs:
            self.assertEqual(len(o.split()), 6)

    def test_environment_opt_in_fails_closed(self):
        code = ("import os, site, vmgenid\n"
                "site.addsitedir(os.path.dirname(vmgenid.__file__))\n"
                "print('unprotected')\n")
        env = dict(os.environ, VMGENID_RESEED_RANDOM="1",
                   VMGENID_SOURCE="no-such-source:x")
        out = subprocess.run([sys.executable, "-c", code], env=env,
                             capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(out.returncode, 70, out)
        self.assertEqual(out.stdout, "")
        self.assertIn("VMGENID_RESEED_RANDOM=1: cannot protect", out.stderr)
        env["VMGENID_RESEED_RANDOM"] = "0"
        out = subprocess.run([sys.executable, "-c", code], env=env,
                             capture_output=True, text=True, timeout=DEADLINE)
        self.assertEqual(out.stdout, "unprotected\n", out)

    def test_forked_twins(self):
        # Two children forked from one parent, with its `random` state;
        # then a step. The parent opted in or not.
        for mode, want in (("control", "same"), ("opt-in", "differ")):
            out = subprocess.run([sys.executable, "-c", FORKED_TWINS, mode],
                                 capture_output=True, text=True,
                                 timeout=DEADLINE)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.split()[0], want, (mode, out.stdout))

    def test_threads_draw_across_steps(self):
        # Four threads draw while steps land and the watcher dispatches:
        # no deadlock between the library's dispatch and the GIL, no
        # error, every step reseeds.
        def child():
            import threading
            vmgenid.reseed_random_on_restore()
            steps = []
            cb_id = vmgenid.register(steps.append)
            vmgenid.watcher_start()
            stop = threading.Event()
            errors = []

            def draw():
                try:
                    while not stop.is_set():
                        random.random()
                        random.randint(0, 9)
                except BaseException as e:
                    errors.append(e)
            threads = [threading.Thread(target=draw) for _ in range(4)]
            for t in threads:
                t.start()
            g0 = vmgenid.generation()
            for _ in range(50):
                bump()
                vmgenid.wait(vmgenid.generation() - 1, timeout=DEADLINE)
            stop.set()
            for t in threads:
                t.join(DEADLINE)
            alive = sum(t.is_alive() for t in threads)
            vmgenid.watcher_stop()
            g1 = vmgenid.generation()
            vmgenid.unregister(cb_id)
            return b"%d %d %d %d" % (alive, len(errors), g1 - g0,
                                     steps[-1].new_generation == g1)
        self.assertEqual(in_child(child), b"0 0 50 1")

    def test_instances_and_pickle(self):
        import pickle

        def child():
            mine = random.Random(7)
            twin = random.Random(7)
            vmgenid.reseed_random_on_restore(mine, random.SystemRandom())
            vmgenid.reseed_random_on_restore(mine)      # idempotent
            back = pickle.loads(pickle.dumps(mine))
            self.assertIs(type(back), random.Random)
            bump()
            a, b = mine.random(), twin.random()
            # gauss() caches a value: the reseed must drop it.
            g = random.Random(3)
            vmgenid.reseed_random_on_restore(g)
            g.gauss()
            twin_g = random.Random(3)
            twin_g.gauss()
            bump()
            return b"%d %d" % (a != b, g.gauss() != twin_g.gauss())
        self.assertEqual(in_child(child), b"1 1")
        with self.assertRaises(TypeError):
            vmgenid.reseed_random_on_restore(object())

    def test_slotted_subclass(self):
        class Slotted(random.Random):
            __slots__ = ("extra",)

        def child():
            mine, twin = Slotted(11), Slotted(11)
            vmgenid.reseed_random_on_restore(mine)
            self.assertIsInstance(mine, Slotted)
            bump()
            return b"%d" % (mine.random() != twin.random())
        self.assertEqual(in_child(child), b"1")

    def test_callback_failure_fails_draw_closed(self):
        def child():
            vmgenid.reseed_random_on_restore()
            cb_id = vmgenid.register(lambda e: -errno.EIO)
            bump()
            try:
                random.random()
            except vmgenid.Error as e:
                vmgenid.unregister(cb_id)
                random.random()
                return b"%d" % e.errno
            return b"drew"
        self.assertEqual(in_child(child), b"%d" % errno.EIO)


if __name__ == "__main__":
    unittest.main()
