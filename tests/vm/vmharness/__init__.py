# SPDX-License-Identifier: MIT
"""The VM test harness, one module per concern (README.md next to vmctl.py):

  common        Skip, HarnessError, log, phase, timings, run, the cache,
                the markers and patterns /init and the checks share
  kernels       which Debian kernel, its ABI from apt, fetch, debug kernel
  module_build  build_module, cached by the digest of its inputs
  initramfs     /init and the busybox initramfs
  qemu          QMP, VM (one QEMU process), qemu_binary, choose_accel
  clones        restore_clones and what must differ between clones
  checks        verdicts from a serial log (TAP, insmod, kernel trouble)
  cli           vmctl.py's command line, run_guarded

Every name of every module is also a name of this package and of vmctl
(which is what the tests import), as when vmctl.py was one file. Setting
one of them (a test patching vmctl.run, say) sets it in every module that
uses it, so the patch reaches the code as it did then.
"""

import sys
import types

from . import common, kernels, module_build, initramfs, qemu, clones, \
	checks, cli

PARTS = (common, kernels, module_build, initramfs, qemu, clones, checks,
	 cli)
_MISSING = object()


class _Reexport(types.ModuleType):
	"""A module whose names are the parts' names, shared with them."""

	def __setattr__(self, name, value):
		old = self.__dict__.get(name, _MISSING)
		if old is not _MISSING:
			for mod in PARTS + (sys.modules[__name__],):
				if mod is not self and \
				   mod.__dict__.get(name, _MISSING) is old:
					setattr(mod, name, value)
		super().__setattr__(name, value)


def _reexport(module):
	"""Give module every name the parts define or import (the first
	part's object where two hold one name: they are the same object,
	imported from it) and make a name set on module reach the parts."""
	for part in PARTS:
		for name, value in vars(part).items():
			if not name.startswith('__') and \
			   name not in module.__dict__:
				setattr(module, name, value)
	module.__class__ = _Reexport


_reexport(sys.modules[__name__])
