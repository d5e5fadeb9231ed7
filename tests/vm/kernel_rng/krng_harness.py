# SPDX-License-Identifier: MIT
"""What the kernel-RNG host checks (kernel_rng_check.py, krng_window_check.py)
do the same way: their common options, the kernel and module they boot, the
guest's initramfs, the origin's boot and before-save, the clones' results
and the clean-up. Each check keeps its own verdicts."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
import vmctl  # noqa: E402

# The probe's first kernel log line about a reseed after the restore.
RESEED_RX = re.compile(r'^KRNG reseed at=(\S+)(?: line=(.*))?$', re.M)


def add_args(ap, probe_help, workdir, clones):
	"""The options both checks take, but --modes."""
	ap.add_argument('--probe', required=True, help=probe_help)
	ap.add_argument('--driver', default=os.path.join(HERE, '..', '..',
							 '..', 'driver'))
	ap.add_argument('--cache', default=vmctl.default_cache())
	ap.add_argument('--workdir', default=os.path.join(os.getcwd(),
							  workdir))
	ap.add_argument('--kernel', choices=list(vmctl.KERNELS),
			help='default $VMCTL_KERNEL, else generic')
	ap.add_argument('--clones', type=int, default=clones)


def finish_args(ap, args, modes):
	"""Split --modes, check it and --clones, make the paths absolute."""
	args.modes = [m for m in args.modes.split(',') if m]
	if any(m not in modes for m in args.modes) or args.clones < 2:
		ap.error('--modes takes %s; --clones >= 2' %
			 ' and/or '.join(modes))
	args.probe = os.path.abspath(args.probe)
	args.driver = os.path.abspath(args.driver)
	args.cache = os.path.abspath(args.cache)
	args.workdir = os.path.abspath(args.workdir)


def prepare(args, module=True):
	"""The kernel, the module's .ko files (none unless module) and the
	accelerator."""
	vmctl.qemu_binary()
	os.makedirs(args.workdir, exist_ok=True)
	with vmctl.phase('fetch'):
		kernel = vmctl.fetch(args.cache, args.kernel)
	kos = []
	if module:
		with vmctl.phase('build-module'):
			kos = vmctl.build_module(kernel, args.driver,
						 os.path.join(args.workdir,
							      'module'))
	accel = vmctl.choose_accel(kernel, args.cache, args.workdir)
	return kernel, kos, accel


def guest(kernel, kos, args, mode):
	"""One run's work directory, initramfs (the probe and kos) and /init
	environment."""
	work = os.path.join(args.workdir, mode)
	os.makedirs(work, exist_ok=True)
	with vmctl.phase('%s: initramfs' % mode):
		initrd = vmctl.build_initramfs(
			kernel, os.path.join(work, 'initramfs.cpio.gz'),
			modules=kos, progs=[args.probe])
	env = {'VMCTL_PHASES': 'before-save,after-restore',
	       'VMCTL_PROGS': os.path.basename(args.probe)}
	if kos:
		env['VMCTL_MODULES'] = ','.join(os.path.basename(k)[:-3]
						for k in kos)
	return work, initrd, env


def boot_before_save(origin, prog, mode):
	"""Boot the origin through its before-save phase; whether the modules
	loaded and the phase passed."""
	with vmctl.phase('%s: boot and before-save' % mode):
		origin.start()
		origin.wait_for('^' + vmctl.BOOT_MARKER,
				vmctl.TCG_BOOT_TIMEOUT)
		origin.wait_for('^vmctl: await after-restore', 120)
	ok = vmctl._insmod_ok(origin)
	ok &= vmctl.report(origin, [(prog, 'before-save')])
	return ok


def collect(clones, prog, parse_clone):
	"""Each clone's after-restore verdict and figures: (ok, figures),
	each figure named after its clone."""
	ok = True
	figures = []
	for c in clones:
		c.wait_exit(60)
		ok &= vmctl.report(c, [(prog, 'after-restore')])
		ok &= vmctl.kernel_ok(c)
		fig = parse_clone(c.read_log())
		if fig is None:
			vmctl.log('FAIL %s: no result from the probe' % c.name)
			ok = False
			continue
		fig['name'] = c.name
		figures.append(fig)
	return ok, figures


def clean_up(vms, ok, finished, verbose, state):
	"""Dump the logs on failure (a harness error, a clone that never
	ends, needs them most), stop the VMs, drop the saved state if ok."""
	if not ok or not finished or verbose:
		for v in vms:
			vmctl.dump_log(v)
	for v in vms:
		v.kill()
	if ok and os.path.exists(state):
		os.unlink(state)
