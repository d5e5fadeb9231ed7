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
(which is what the tests import), as when vmctl.py was one file. A test
that patches a name patches it in the module that uses it
(vmharness.qemu.run), not in vmctl.
"""

import sys

from . import common, kernels, module_build, initramfs, qemu, clones, \
	checks, cli

PARTS = (common, kernels, module_build, initramfs, qemu, clones, checks,
	 cli)


def _reexport(module):
	"""Give module every name the parts define or import (the first
	part's object where two hold one name: they are the same object,
	imported from it)."""
	for part in PARTS:
		for name, value in vars(part).items():
			if not name.startswith('__') and \
			   name not in module.__dict__:
				setattr(module, name, value)


_reexport(sys.modules[__name__])
