# SPDX-License-Identifier: MIT
"""libvmgenid for Python: know when this process's memory was duplicated by
a VM snapshot restore, a VM clone or a fork, and reseed before it matters.

    import vmgenid
    vmgenid.reseed_random_on_restore()     # the `random` module, opt-in

    with vmgenid.transaction() as t:
        token = make_token()
        if t.commit():                     # same generation: send it
            send(token)

Reference: README.md (/usr/share/doc/python3-vmgenid), and vmgenid(7).

Why ctypes over libvmgenid.so.0, not a C extension: the library exports
its inline begin/commit as real symbols for FFI users, so ctypes reaches
every function with no compiler at install time, one pure-Python file
that works with every CPython 3 the distribution ships (no rebuild per
Python version, no ABI tag), and the library's own fast path unchanged.
What ctypes costs is its call overhead (a fraction of a microsecond per
call, measured in README.md); the only per-draw path, the check in
front of the `random` draws, uses a call that keeps the GIL and only
loads memory. A C extension would shave that overhead and nothing else.

Threads and the GIL: Python callbacks never run inside the library's
own dispatch. The library makes a thread that enters it wait while
another thread runs callbacks; C code that enters it holding the GIL
(the OpenSSL provider under `ssl.RAND_bytes`) would then wait for a
Python callback that waits for the GIL: a deadlock. So the binding
registers no callback with the library: it runs its callbacks itself,
in Python, once per step it sees (generation(), transaction(), dispatch(),
wait(), a checked `random` draw, or its watcher thread), before any of
its transactions of that generation begins. Calls into the library
that may block release the GIL.
"""

import collections
import ctypes
import errno
import os
import random as _random
import struct
import threading
import time
import weakref

__all__ = [
    "VM", "FORK", "ANY", "Error", "StaleTransaction", "Event", "SourceInfo",
    "init", "generation", "source_info", "transaction", "Transaction",
    "retry", "register", "unregister", "watcher_start", "watcher_stop",
    "fd", "dispatch", "wait", "trigger", "reseed_random_on_restore",
]

VM = 1 << 0         # VMGEN_EVENT_VM: the VM was restored or cloned
FORK = 1 << 1       # VMGEN_EVENT_FORK: this process is a fork child
ANY = VM | FORK

_INIT_WATCHER = 1 << 0
_INIT_TRACKING = 1 << 1
_SOURCE_NAMES = ("vmclock", "sysgenid", "file", "none")
_FORK_MODES = {1: "wipeonfork", 2: "atfork"}


class _Txn(ctypes.Structure):
    _fields_ = [("generation", ctypes.c_uint64)]


def _load():
    name = "libvmgenid.so.0"
    # CDLL releases the GIL around each call: anything that may block
    # (a dispatch of the library's C callbacks) goes through it. PyDLL
    # keeps the GIL: only for vmgen_txn_commit(), a handful of loads.
    lib = ctypes.CDLL(name)
    nogil = ctypes.PyDLL(name)
    sig = {
        "vmgen_init": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_uint]),
        "vmgen_generation": (ctypes.c_int64, []),
        "vmgen_watcher_start": (ctypes.c_int, []),
        "vmgen_watcher_stop": (ctypes.c_int, []),
        "vmgen_fd": (ctypes.c_int, []),
        "vmgen_dispatch": (ctypes.c_int, []),
        "vmgen_wait": (ctypes.c_int64, [ctypes.c_uint64, ctypes.c_int]),
        "vmgen_trigger": (ctypes.c_int, [ctypes.c_uint32]),
        "vmgen_source": (ctypes.c_int, []),
        "vmgen_source_name": (ctypes.c_char_p, [ctypes.c_int]),
        "vmgen_source_path": (ctypes.c_char_p, []),
        "vmgen_source_rejected": (ctypes.c_char_p, [ctypes.c_int]),
        "vmgen_source_generation": (ctypes.c_int,
                                    [ctypes.POINTER(ctypes.c_uint64)]),
        "vmgen_source_race_free": (ctypes.c_int,
                                   [ctypes.POINTER(ctypes.c_char_p)]),
        "vmgen_fork_mode": (ctypes.c_int, []),
        "vmgen_strerror": (ctypes.c_char_p, [ctypes.c_int]),
        "vmgen_txn_begin": (ctypes.c_int, [ctypes.POINTER(_Txn)]),
    }
    for fname, (res, args) in sig.items():
        f = getattr(lib, fname)
        f.restype, f.argtypes = res, args
    # No argtypes: converting the argument would cost more than the call
    # (measured); it is only ever given a pointer to a _Txn made here.
    commit = nogil.vmgen_txn_commit
    commit.restype = ctypes.c_bool
    return lib, commit


_lib, _commit = _load()


class Error(OSError):
    """A libvmgenid call failed; errno is the library's (positive) errno.
    When a Python callback made the dispatch fail, its exception is the
    __cause__."""


class StaleTransaction(Error):
    """The generation moved during a transaction: what was built under it
    must not go out."""

    def __init__(self, msg="the generation changed during the transaction"):
        super().__init__(errno.ESTALE, msg)


_failure_lock = threading.Lock()
_last_failure = None    # the latest callback exception, for __cause__


def _raise(ret):
    global _last_failure
    with _failure_lock:
        cause, _last_failure = _last_failure, None
    msg = _lib.vmgen_strerror(ret)
    err = Error(-ret, msg.decode() if msg else os.strerror(-ret))
    raise err from cause


def _check(ret):
    if ret < 0:
        _raise(ret)
    return ret


def init(source=None, watcher=False, tracking=False):
    """Initialise explicitly (optional: the first use initialises from
    $VMGENID_SOURCE). source is a spec such as "auto", "sysgenid" or
    "file:PATH". Raises Error, and the library then fails closed."""
    flags = (_INIT_WATCHER if watcher else 0) | \
            (_INIT_TRACKING if tracking else 0)
    _check(_lib.vmgen_init(source.encode() if source else None, flags))
    if watcher:
        _watcher_start_py()


def generation():
    """The combined generation, after every pending callback has run."""
    return _run_pending(_check(_lib.vmgen_generation()))


Event = collections.namedtuple("Event",
                               "reasons old_generation new_generation")
Event.__doc__ = "What a callback is told: VM/FORK bits and the generations."

SourceInfo = collections.namedtuple(
    "SourceInfo", "kind path generation race_free reason fork_mode rejected")
SourceInfo.__doc__ = """The source in use: kind ("vmclock", "sysgenid",
"file", "none"), its path (or None), its own counter (or None where it
has none), whether it is race-free and why not, the fork detection mode,
and why each better source was rejected (kind -> reason)."""


def source_info():
    """Which generation source this process uses, and how well."""
    kind = _check(_lib.vmgen_source())
    path = _lib.vmgen_source_path()
    value = ctypes.c_uint64()
    ret = _lib.vmgen_source_generation(ctypes.byref(value))
    if ret < 0 and ret != -errno.EOPNOTSUPP:
        _raise(ret)
    reason = ctypes.c_char_p()
    race_free = _check(_lib.vmgen_source_race_free(ctypes.byref(reason)))
    rejected = {}
    for k, name in enumerate(_SOURCE_NAMES):
        why = _lib.vmgen_source_rejected(k)
        if why:
            rejected[name] = why.decode(errors="replace")
    mode = _lib.vmgen_fork_mode()
    return SourceInfo(
        kind=_SOURCE_NAMES[kind] if kind < len(_SOURCE_NAMES) else str(kind),
        path=path.decode(errors="replace") if path else None,
        generation=value.value if ret >= 0 else None,
        race_free=bool(race_free),
        reason=reason.value.decode(errors="replace") if reason.value else None,
        fork_mode=_FORK_MODES.get(mode, str(mode)),
        rejected=rejected)


class Transaction:
    """A token of the combined generation at begin (the constructor).

    commit() says whether the generation is still the same, i.e. whether
    what was built since begin may go out; it is a few loads, no syscall.
    As a context manager, the with-block ending normally on a moved
    generation raises StaleTransaction: what the block built must not be
    used. A transaction begun before a fork never commits in the child."""

    __slots__ = ("_txn", "_ptr")

    def __init__(self):
        self._txn = _Txn()
        self._ptr = ctypes.pointer(self._txn)
        _check(_lib.vmgen_txn_begin(self._ptr))
        _run_pending(self._txn.generation)

    @property
    def generation(self):
        return self._txn.generation

    def commit(self):
        return bool(_commit(self._ptr))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self.commit():
            raise StaleTransaction()
        return False

    def __repr__(self):
        return "<vmgenid.Transaction generation=%d>" % self.generation


def transaction():
    """Begin a transaction (see Transaction)."""
    return Transaction()


def retry(fn, *args, attempts=8, **kwargs):
    """Call fn(*args, **kwargs) in a transaction until one commits, and
    return its result: a value built wholly in one generation, after that
    generation's callbacks. Raises StaleTransaction after `attempts`."""
    for _ in range(attempts):
        t = Transaction()
        result = fn(*args, **kwargs)
        if t.commit():
            return result
    raise StaleTransaction("the generation moved in each of %d attempts"
                           % attempts)


# The callbacks, run by the binding in Python (module docstring): once per
# step of the combined generation, under _dispatch_lock, in the thread
# that sees the step first or in the watcher thread.
_callbacks = {}         # id -> (fn, events), in registration order
_next_id = 1
_dispatch_lock = threading.RLock()
_local = threading.local()      # .dispatching: a callback is running here
_handled = None         # the generation whose callbacks have run (or None)
_handled_pid = os.getpid()
_handled_source = None  # the source's own counter at _handled (or None)
_watcher = None         # (thread, stop Event) while the watcher runs


def _source_counter():
    value = ctypes.c_uint64()
    if _lib.vmgen_source_generation(ctypes.byref(value)) < 0:
        return None
    return value.value


def _call(fn, event):
    """fn(event) as the library would call a C callback: 0 on success, a
    negative errno (an exception is kept as the cause of the Error)."""
    global _last_failure
    try:
        ret = fn(event)
        if ret is None:
            return 0
        if isinstance(ret, int) and ret <= 0:
            return ret
        raise TypeError("a vmgenid callback returns None, 0 or a "
                        "negative errno, not %r" % (ret,))
    except BaseException as e:          # fail closed
        with _failure_lock:
            _last_failure = e
        if isinstance(e, OSError) and e.errno:
            return -e.errno
        return -errno.ECANCELED


def _run_pending(gen):
    """Run the callbacks of the step to gen, once; return gen. A callback
    that fails leaves the step pending (the next call retries) and raises
    Error: no transaction of this binding begins in that generation."""
    global _handled, _handled_pid, _handled_source
    if gen == _handled or getattr(_local, "dispatching", False):
        return gen
    with _dispatch_lock:
        if _handled is None or not _callbacks:
            # nothing to run: this is where the next step starts from
            _handled, _handled_pid = gen, os.getpid()
            _handled_source = _source_counter()
            return gen
        if gen == _handled:
            return gen
        pid, source = os.getpid(), _source_counter()
        reasons = FORK if pid != _handled_pid else 0
        # a step without a fork, or the source's own counter moved
        if not reasons or source != _handled_source:
            reasons |= VM
        event = Event(reasons, _handled, gen)
        _local.dispatching = True
        try:
            for cb_id, (fn, events) in list(_callbacks.items()):
                # unregistered by an earlier callback of this step
                if events & reasons and cb_id in _callbacks:
                    ret = _call(fn, event)
                    if ret < 0:
                        _raise(ret)
        finally:
            _local.dispatching = False
        _handled, _handled_pid, _handled_source = gen, pid, source
    return gen


def register(fn, events=VM):
    """Run fn(event) once per generation step that includes `events` (VM,
    FORK or ANY), before any transaction of this binding in the new
    generation begins.

    fn runs in a Python thread, holding the GIL: the one that sees the
    step first (generation(), transaction(), dispatch(), wait(), a
    checked `random` draw), or the watcher thread after watcher_start();
    never inside the library's own dispatch, so C code that enters the
    library holding the GIL cannot deadlock against it. C users of the
    library in this process (the OpenSSL provider) do not wait for it.
    It returns None or 0 for success, or a negative errno. An exception,
    or a negative return, fails closed: the step stays pending, the call
    that ran it raises Error (ECANCELED for an exception other than
    OSError, with the exception as __cause__), no transaction begins,
    and the next call retries. After fork(), FORK callbacks run in the
    child (only the forking thread exists there). Returns an id for
    unregister()."""
    global _next_id
    if not callable(fn):
        raise TypeError("fn must be callable")
    if not events or events & ~ANY:
        raise Error(errno.EINVAL, "events must be VM, FORK or ANY, not %r"
                    % (events,))
    # the generation the callback starts from: a step before this call
    # is not its business
    gen = _check(_lib.vmgen_generation())
    with _dispatch_lock:
        _run_pending(gen)
        cb_id, _next_id = _next_id, _next_id + 1
        _callbacks[cb_id] = (fn, events)
    return cb_id


def unregister(cb_id):
    """After this returns, the callback is not running and never runs
    again. May be called from inside a callback."""
    with _dispatch_lock:
        if _callbacks.pop(cb_id, None) is None:
            raise Error(errno.ENOENT, "no callback registered with id %r"
                        % (cb_id,))


def _watch(stop):
    since = None
    while not stop.is_set():
        try:
            if since is None:
                since = _check(_lib.vmgen_generation())
                _run_pending(since)
            # GIL released; wakes twice a second to see stop
            got = _lib.vmgen_wait(since, 500)
            if got == -errno.ETIMEDOUT:
                continue
            since = _run_pending(_check(got))
        except Error:
            # a failed callback: the step stays pending, retried by the
            # next call or after a pause here
            stop.wait(0.1)
            since = None


def _watcher_start_py():
    global _watcher
    with _dispatch_lock:
        if _watcher is not None:
            return
        stop = threading.Event()
        thread = threading.Thread(target=_watch, args=(stop,),
                                  name="vmgenid-watcher", daemon=True)
        thread.start()
        _watcher = (thread, stop)


def watcher_start():
    """Start the watcher thread: callbacks run within about a millisecond
    of a step instead of on the next call (but see
    reseed_random_on_restore). The library's own watcher starts too, for
    C callbacks in this process."""
    _check(_lib.vmgen_watcher_start())
    _watcher_start_py()


def watcher_stop():
    global _watcher
    with _dispatch_lock:
        w, _watcher = _watcher, None
    if w is not None:
        w[1].set()
        if w[0] is not threading.current_thread():
            w[0].join()
    _check(_lib.vmgen_watcher_stop())


def fd():
    """A pollable fd for event loops: readable when a step is pending;
    then call dispatch()."""
    return _check(_lib.vmgen_fd())


def dispatch():
    """Run pending callbacks; returns the number of steps handled."""
    ret = _check(_lib.vmgen_dispatch())
    before = _handled
    gen = generation()
    return max(ret, 1 if before is not None and gen != before else 0)


def wait(since, timeout=None):
    """Block until the generation moves past `since` (timeout in seconds,
    None: for ever); returns the new generation, or `since` on timeout.
    The GIL is released meanwhile; a signal's Python handler runs only
    once the call returns, so loop with a timeout where that matters."""
    ms = -1 if timeout is None else max(0, int(timeout * 1000))
    ret = _lib.vmgen_wait(since, ms)
    if ret == -errno.ETIMEDOUT:
        return since
    return _run_pending(_check(ret))


def trigger(min_generation=0):
    """Move the source's counter forward (the file source, or /dev/sysgenid
    with the right to): a simulated restore, for tests."""
    _check(_lib.vmgen_trigger(min_generation))


def _after_fork_in_child():
    # The forking thread is the only one: locks another thread held are
    # held for ever, the watcher thread is gone. Start it again.
    global _dispatch_lock, _failure_lock, _guard_lock, _watcher
    _dispatch_lock = threading.RLock()
    _failure_lock = threading.Lock()
    _guard_lock = threading.Lock()
    _local.dispatching = False
    if _watcher is not None:
        _watcher = None
        _watcher_start_py()


# The opt-in for the `random` module.

_guard_lock = threading.Lock()
_guarded = weakref.WeakSet()    # Random instances reseeded on a VM step
_guard_id = 0
_checked_classes = {}
_seen = _Txn()                  # a generation every guarded instance has
_seen_ptr = ctypes.pointer(_seen)   # been reseeded for (or 0)


def _catch_up():
    # Slow path: the begin releases the GIL while in the library; then
    # the binding runs _reseed (VM steps) before the draw goes on.
    txn = _Txn()
    _check(_lib.vmgen_txn_begin(ctypes.byref(txn)))
    _run_pending(txn.generation)
    _seen.generation = txn.generation


def _reseed(event):
    for inst in list(_guarded):
        # As CPython's fork child (Lib/random.py: _inst.seed() registered
        # with os.register_at_fork), plus the clock: if the kernel RNG
        # has not yet been reseeded after the restore, clones still differ.
        inst.seed(os.urandom(32) + struct.pack(
            "<QQQ", time.time_ns(), time.perf_counter_ns(),
            event.new_generation))


def _checked_class(cls):
    """A subclass whose raw draws run only in a generation the instance
    has been reseeded for: check, draw, check again (a step that lands
    between the check and the draw would give the same value in every
    clone); on a moved generation, catch up and draw again."""
    sub = _checked_classes.get(cls)
    if sub is not None:
        return sub
    base_random, base_bits = cls.random, cls.getrandbits
    base_gauss = cls.gauss

    def random(self):
        while True:
            if not _commit(_seen_ptr):
                _catch_up()
            value = base_random(self)
            if _commit(_seen_ptr):
                return value

    def getrandbits(self, k):
        while True:
            if not _commit(_seen_ptr):
                _catch_up()
            value = base_bits(self, k)
            if _commit(_seen_ptr):
                return value

    def gauss(self, mu=0.0, sigma=1.0):
        # gauss() caches its second value; the reseed clears the cache.
        while True:
            if not _commit(_seen_ptr):
                _catch_up()
            value = base_gauss(self, mu, sigma)
            if _commit(_seen_ptr):
                return value

    def __reduce__(self):
        return (cls, (), self.getstate())

    sub = type(cls.__name__, (cls,), {
        "random": random, "getrandbits": getrandbits, "gauss": gauss,
        "__reduce__": __reduce__, "__module__": cls.__module__,
        "__slots__": (),        # the same layout: __class__ can be set
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__})
    _checked_classes[cls] = sub
    _checked_classes[sub] = sub
    return sub


def reseed_random_on_restore(*instances, check_draws=True):
    """Reseed the `random` module's generator, and any given
    random.Random instances, on every VM restore or clone, as CPython
    already does in a fork child. Idempotent; call it early, before
    modules run `from random import random`.

    With check_draws (the default), every draw first checks the
    generation (one call that only loads memory) and catches up when it
    moved, so no value drawn after a restore comes from the pre-restore
    state, even on the first draw, whatever the thread. Without it, the
    reseed is a callback: it runs on the next call into this module, or
    in the watcher thread, which may be after the program's next draw.

    Do not use it on an instance that must replay a seed."""
    global _guard_id
    targets = [_random._inst] + list(instances)
    for inst in targets:
        if isinstance(inst, _random.SystemRandom):
            continue
        if not isinstance(inst, _random.Random):
            raise TypeError("not a random.Random instance: %r" % (inst,))
    with _guard_lock:
        if _guard_id == 0:
            _guard_id = register(_reseed, VM)
        for inst in targets:
            if isinstance(inst, _random.SystemRandom):
                continue
            if check_draws and \
                    _checked_classes.get(type(inst)) is not type(inst):
                inst.__class__ = _checked_class(type(inst))
            _guarded.add(inst)
        if check_draws:
            # The module's functions are bound methods of _inst, taken
            # at import: bind them again, to the checked class.
            inst = _random._inst
            for name in dir(_random):
                obj = getattr(_random, name)
                if getattr(obj, "__self__", None) is inst and \
                        callable(obj) and not name.startswith("_"):
                    setattr(_random, name, getattr(inst, name))
    _catch_up()


os.register_at_fork(after_in_child=_after_fork_in_child)
