# SPDX-License-Identifier: MIT
"""What every part of the harness shares: the two exceptions a test
entry point turns into its exit status, the log and its step timings,
running a command, the cache's place, and the markers and kernel-trouble
patterns that the guest's /init and the host's checks agree on."""

import contextlib
import os
import subprocess
import time


SKIP = 77
TCG_BOOT_TIMEOUT = 240		# kernel to /init under TCG takes ~6 s idle
KVM_PROBE_TIMEOUT = 12	# over twice what TCG needs for the same boot
BOOT_MARKER = 'vmctl: booted'
END_MARKER = 'vmctl: end'
FORK_LINE = 'crng reseeded due to virtual machine fork'


class Skip(Exception):
	"""The environment cannot run the VM tests: exit 77 with the reason."""


class HarnessError(Exception):
	"""Something failed that should have worked."""


_t0 = time.monotonic()
_timings = []		# (step, seconds), for the closing summary


def log(msg):
	print('vmctl: [%7.2f] %s' % (time.monotonic() - _t0, msg), flush=True)


@contextlib.contextmanager
def phase(name):
	"""Print how long a step took; the figures go into reports."""
	start = time.monotonic()
	log('%s ...' % name)
	try:
		yield
	finally:
		took = time.monotonic() - start
		_timings.append((name, took))
		log('%s took %.2f s' % (name, took))


def timings():
	"""One line: every step's duration so far and the total."""
	return '; '.join('%s %.1f s' % t for t in _timings) + \
		'; total %.1f s' % (time.monotonic() - _t0)


def run(cmd, timeout=600, **kw):
	"""Run a command, return its stdout; fail with its stderr."""
	try:
		res = subprocess.run(cmd, stdout=subprocess.PIPE,
				     stderr=subprocess.PIPE, text=True,
				     timeout=timeout, **kw)
	except subprocess.TimeoutExpired:
		raise HarnessError('%s: timed out after %d s' %
				   (' '.join(cmd), timeout)) from None
	except FileNotFoundError as e:
		raise HarnessError('%s: %s' % (cmd[0], e)) from None
	if res.returncode != 0:
		raise HarnessError('%s: exit %d\n%s%s' %
				   (' '.join(cmd), res.returncode,
				    res.stdout[-2000:], res.stderr[-2000:]))
	return res.stdout


# Kernel log lines that mean a kernel or module bug, whatever the tests say.
# Most reports of the debug kernel's checkers start with "WARNING:" or
# "BUG:" (lockdep, might_sleep, KASAN); the rest are named too, and so are
# lockdep's headlines, should a kernel print them on their own.
KERNEL_TROUBLE = (r'WARNING:|BUG:|Oops|Call Trace|general protection|'
		  r'UBSAN:|KASAN:|refcount_t:|list_add corruption|'
		  r'list_del corruption|'
		  r'blocked for more than|Kernel panic|stack-protector|'
		  r'kernel tried to execute|unable to handle|'
		  r'possible circular locking|possible recursive locking|'
		  r'inconsistent lock state|'
		  r'sleeping function called from invalid context|'
		  r'suspicious RCU usage|bad unlock balance|'
		  r'lock held when returning|trying to register non-static key|'
		  r'ODEBUG:|suspected memory leaks|'
		  r'memory leak detector disabled|Memory pool empty')


def default_cache():
	"""Where kernels, module builds and images are kept: outside any
	clone, so that a fresh one (CI) reuses them; entries are keyed by the
	digest of their inputs. $VMCTL_CACHE overrides."""
	if os.environ.get('VMCTL_CACHE'):
		return os.environ['VMCTL_CACHE']
	if os.geteuid() == 0:
		return '/var/cache/libvmgenid'
	return os.path.join(os.environ.get('XDG_CACHE_HOME') or
			    os.path.expanduser('~/.cache'), 'libvmgenid')
