#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Does the guest kernel's RNG diverge across clones of a saved VM?

Boots the kernel that VMCTL_KERNEL (or --kernel) names, runs
kernel_rng_probe in it, forces a crng reseed, saves the VM, restores N
clones from the file and compares the getrandom() bytes each clone read
right after the restore. Two runs:

  module   the sysgenid module loaded; each clone reads once the module's
           counter moved (the module promises that the kernel's crng was
           reseeded before it bumps the counter). Must differ in every pair
           of clones, on every kernel.
  control  no module; each clone reads as soon as it sees the restore. On
           the cloud kernel nothing else reseeds (no vmgenid driver), so the
           bytes must be identical: this shows that the comparison can fail.
           On generic and 6.12 the kernel's own vmgenid driver reseeds, racing
           with the read: the outcome is reported, not asserted.

Prints restore-to-counter, restore-to-read and restore-to-kernel-reseed per
clone (guest CLOCK_MONOTONIC, see kernel_rng_probe.c) and one summary line.
"""

import argparse
import itertools
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from krng_harness import RESEED_RX, vmctl  # noqa: E402
import krng_harness  # noqa: E402

# What each run must show, per kernel: 'distinct', 'identical', or None
# (reported only).
EXPECT = {
	'generic': {'module': 'distinct', 'control': None},
	'cloud': {'module': 'distinct', 'control': 'identical'},
	'6.12': {'module': 'distinct', 'control': None},
}
# The module's /sys/class/misc/sysgenid/mode on each kernel: the kernel's
# vmgenid driver and its vmfork notifier, or none and the module binds the
# ACPI device itself.
MODULE_MODE = {'generic': 'notifier', 'cloud': 'acpi', '6.12': 'notifier'}


def profile(kernel):
	"""The key of EXPECT and MODULE_MODE for a kernel: the debug kernel
	behaves as generic with its vmgenid.ko loaded, as cloud without."""
	if kernel.name != 'debug':
		return kernel.name
	return 'generic' if vmctl.vmgenid_driver_loaded(kernel) else 'cloud'
# Keep the VM stopped long enough that the guest's RTC shows the gap.
MIN_STOPPED_S = 4.0
RESULT_RX = re.compile(r'^KRNG result (.*)$', re.M)
SYSFS_RX = re.compile(r'^KRNG sysfs-mode=(\S+)', re.M)


def parse_clone(text):
	"""The probe's figures in one clone's log, or None."""
	m = RESULT_RX.search(text)
	if not m or m.group(1).startswith('error'):
		return None
	res = dict(kv.split('=', 1) for kv in m.group(1).split())
	r = RESEED_RX.search(text)
	res['reseed'] = r.group(1) if r else 'none'
	res['reseed_line'] = (r.group(2) or '') if r else ''
	s = SYSFS_RX.search(text)
	res['sysfs_mode'] = s.group(1) if s else None
	return res


def ms(a, b):
	"""b - a in ms, from ns strings; '-' when either is unknown."""
	try:
		a, b = int(a), int(b)
	except (TypeError, ValueError):
		return '-'
	if a <= 0 or b <= 0:
		return '-'
	return '%.1f' % ((b - a) / 1e6)


def verdict(values):
	"""'distinct' when no two clones share bytes, 'identical' when all
	do, else 'mixed'."""
	pairs = list(itertools.combinations(values, 2))
	same = sum(1 for a, b in pairs if a == b)
	if same == 0:
		return 'distinct', same, len(pairs)
	if same == len(pairs):
		return 'identical', same, len(pairs)
	return 'mixed', same, len(pairs)


def one_run(kernel, kos, accel, args, mode):
	"""Boot, before-save, save, restore the clones, after-restore; return
	(ok, verdict, per-clone figures)."""
	module = mode == 'module'
	prog = os.path.basename(args.probe)
	work, initrd, env = krng_harness.guest(kernel, kos if module else [],
					       args, mode)
	origin = vmctl.VM(kernel, initrd, work, 'origin', env, accel,
			  'KRNG_MODE=' + mode)
	vms = [origin]
	ok = False
	figures = []
	result = None
	state = os.path.join(work, 'state.bin')
	finished = False
	try:
		ok = krng_harness.boot_before_save(origin, prog, mode)
		with vmctl.phase('%s: save' % mode):
			origin.save(state)
		saved = time.monotonic()
		time.sleep(max(0.0, saved + MIN_STOPPED_S - time.monotonic()))
		names = ['clone%d' % i for i in range(1, args.clones + 1)]
		with vmctl.phase('%s: restore %d clones' % (mode, args.clones)):
			clones = vmctl.restore_clones(origin, state, names)
		vms += clones
		with vmctl.phase('%s: after-restore' % mode):
			# nothing may run in a clone before its watcher has
			# read: a new process takes bytes from the crng
			for c in clones:
				c.wait_for('^KRNG read', 120)
			for c in clones:
				c.send('after-restore')
			for c in clones:
				c.wait_phase('after-restore')
			for c in clones:
				c.wait_for('^' + vmctl.END_MARKER, 180)
		c_ok, figures = krng_harness.collect(clones, prog, parse_clone)
		ok &= c_ok
		result = check(kernel, mode, figures, args.clones)
		ok &= result[0]
		finished = True
	finally:
		krng_harness.clean_up(vms, ok, finished, args.verbose, state)
	return ok, (result[1] if result else 'failed'), figures


def check(kernel, mode, figures, nclones):
	"""The verdict of one run against what this kernel must show."""
	ok = len(figures) == nclones
	for f in figures:
		vmctl.log('%s %s: bytes %s gen %s->%s restore-to-counter %s ms '
			  'restore-to-read %s ms restore-to-reseed %s ms (%s)%s' %
			  (mode, f['name'], f['bytes'][:16], f['gen0'],
			   f['gen1'], ms(f['restore'], f['counter']),
			   ms(f['restore'], f['read']),
			   ms(f['restore'], f['reseed']),
			   f['reseed_line'] or 'no reseed line',
			   ' module mode %s' % f['sysfs_mode']
			   if mode == 'module' else ''))
		if mode == 'module':
			if f['gen1'] == f['gen0']:
				vmctl.log('FAIL %s: counter did not move' %
					  f['name'])
				ok = False
			want = MODULE_MODE[profile(kernel)]
			if f['sysfs_mode'] != want:
				vmctl.log('FAIL %s: module mode %s, want %s' %
					  (f['name'], f['sysfs_mode'], want))
				ok = False
	if len(figures) < 2:
		return False, 'failed'
	got, same, pairs = verdict([f['bytes'] for f in figures])
	want = EXPECT[profile(kernel)][mode]
	vmctl.log('%s: getrandom() after the restore %s across %d clones '
		  '(%d of %d pairs equal); expected %s' %
		  (mode, got, len(figures), same, pairs,
		   want or 'either (not asserted: the kernel driver reseeds '
		   'on its own, racing with the read)'))
	if want and got != want:
		vmctl.log('FAIL %s: %s, want %s' % (mode, got, want))
		ok = False
	return ok, got


def run(args):
	kernel, kos, accel = krng_harness.prepare(args,
						  'module' in args.modes)
	vmctl.log('kernel %s (%s), %s, accelerator %s' %
		  (kernel.name, kernel.abi, kernel.boot_method, accel))
	ok = True
	summary = []
	for mode in args.modes:
		r_ok, got, figs = one_run(kernel, kos, accel, args, mode)
		ok &= r_ok
		want = EXPECT[profile(kernel)][mode]
		part = '%s %s (expected %s)' % (mode, got, want or 'either')
		if mode == 'module':
			part += ', restore-to-counter %s ms, restore-to-reseed ' \
				'%s ms' % (
					'/'.join(ms(f['restore'], f['counter'])
						 for f in figs) or '-',
					'/'.join(ms(f['restore'], f['reseed'])
						 for f in figs) or '-')
		else:
			part += ', restore-to-read %s ms' % (
				'/'.join(ms(f['restore'], f['read'])
					 for f in figs) or '-')
		summary.append(part)
	print('kernel-rng %s (%s), %d clones: %s: %s' %
	      (kernel.name, kernel.abi, args.clones, '; '.join(summary),
	       'PASS' if ok else 'FAIL'), flush=True)
	return 0 if ok else 1


def main(argv=None):
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	krng_harness.add_args(ap, 'the static kernel_rng_probe',
			      'kernel-rng-work', 2)
	ap.add_argument('--modes', default='module,control',
			help='comma separated: module, control')
	ap.add_argument('-v', '--verbose', action='store_true')
	args = ap.parse_args(argv)
	krng_harness.finish_args(ap, args, ('module', 'control'))
	return vmctl.run_guarded(run_with_kernel, args)


def run_with_kernel(args):
	args.kernel = vmctl.kernel_name(args.kernel)
	# one work directory per kernel: CI runs the test on each in turn
	args.workdir = os.path.join(args.workdir, args.kernel)
	return run(args)


if __name__ == '__main__':
	sys.exit(main())
