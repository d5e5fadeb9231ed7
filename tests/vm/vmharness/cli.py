# SPDX-License-Identifier: MIT
"""Boot a Debian kernel under QEMU with a vmgenid device, run test programs
in it, save it to a file and restore clones from that file.

The command line of vmctl.py (its subcommands) and run_guarded(), the way
every test entry point runs. See README.md next to vmctl.py for the guest
conventions and the command line.
"""

import argparse
import contextlib
import json
import os
import signal
import sys

from .checks import _insmod_ok, dump_log, kernel_ok, report
from .clones import check_channel, check_distinct, restore_clones
from .common import (BOOT_MARKER, END_MARKER, SKIP, TCG_BOOT_TIMEOUT,
		     HarnessError, Skip, _timings, default_cache, log,
		     phase, timings)
from .initramfs import build_initramfs
from .kernels import DEFAULT_KERNEL, KERNELS, fetch, kernel_name
from .module_build import build_module
from .qemu import VM, _kill_all, _on_signal, choose_accel, qemu_binary


def prepare(args):
	"""fetch + build-module + initramfs + accel: what every test needs."""
	qemu_binary()
	os.makedirs(args.workdir, exist_ok=True)
	with phase('fetch'):
		kernel = fetch(args.cache, args.kernel)
	kos = []
	if args.driver:
		with phase('build-module'):
			kos = build_module(kernel, args.driver,
					   os.path.join(args.workdir, 'module'))
	kos += args.module or []
	with phase('initramfs'):
		initrd = build_initramfs(
			kernel, os.path.join(args.workdir, 'initramfs.cpio.gz'),
			modules=kos, progs=args.prog or [],
			files=[tuple(f.split(':', 1)) if ':' in f
			       else (f, '/files/' + os.path.basename(f))
			       for f in args.file or []])
	accel = choose_accel(kernel, args.cache, args.workdir)
	log('kernel %s (%s), %s, accelerator %s' %
	    (kernel.name, kernel.abi, kernel.boot_method, accel))
	env = {}
	names = [os.path.basename(k)[:-3] for k in kos]
	if names and not args.no_insmod:
		env['VMCTL_MODULES'] = ','.join(names)
	if args.prog:
		env['VMCTL_PROGS'] = ','.join(os.path.basename(p)
					      for p in args.prog)
	return kernel, initrd, accel, env


def cmd_fetch(args):
	# stdout is for what was asked (JSON, or the headers dir): progress
	# lines go to stderr here
	with contextlib.redirect_stdout(sys.stderr):
		k = fetch(args.cache, args.kernel)
	if args.print_headers:
		# for `dkms build -k ABI --kernelsourcedir DIR` and the like
		print(k.kdir)
		return 0
	print(json.dumps({'kernel': k.name, 'abi': k.abi,
			  'vmlinuz': k.vmlinuz, 'image': k.image,
			  'boot': k.boot_method, 'kdir': k.kdir, 'cc': k.cc(),
			  'busybox': k.busybox}, indent=1))
	return 0


def cmd_build_module(args):
	k = fetch(args.cache, args.kernel)
	for ko in build_module(k, args.src, args.out):
		print(ko)
	return 0


def cmd_initramfs(args):
	k = fetch(args.cache, args.kernel)
	build_initramfs(k, args.out, modules=args.module or [],
			progs=args.prog or [],
			files=[tuple(f.split(':', 1)) for f in args.file or []])
	print(args.out)
	return 0


def cmd_run(args):
	"""Boot once, run the programs in phase 'abi' (or --phase), check."""
	kernel, initrd, accel, env = prepare(args)
	env['VMCTL_PHASES'] = args.phase
	vm = VM(kernel, initrd, args.workdir, 'run', env, accel, args.append)
	ok = False
	try:
		with phase('boot to /init'):
			vm.start()
			vm.wait_for('^' + BOOT_MARKER,
				    TCG_BOOT_TIMEOUT * kernel.slowdown)
		with phase('run programs'):
			vm.wait_for('^' + END_MARKER,
				    args.timeout * kernel.slowdown)
		vm.wait_exit(60)
		runs = [(os.path.basename(p), args.phase)
			for p in args.prog or []]
		ok = report(vm, runs) & _insmod_ok(vm) & kernel_ok(vm)
	finally:
		if not ok or args.verbose:
			dump_log(vm)
		vm.kill()
	return 0 if ok else 1


def cmd_snapshot(args):
	"""Boot, run phase before-save, save, restore N clones, send each
	after-restore, check every program in every VM."""
	kernel, initrd, accel, env = prepare(args)
	env['VMCTL_PHASES'] = 'before-save,after-restore'
	if args.check_channel:
		env['VMCTL_SHELL'] = '1'
	vm = VM(kernel, initrd, args.workdir, 'origin', env, accel,
		args.append, guid=args.guid)
	vms = [vm]
	ok = False
	state = os.path.join(args.workdir, 'state.bin')
	try:
		with phase('boot to /init'):
			vm.start()
			vm.wait_for('^' + BOOT_MARKER,
				    TCG_BOOT_TIMEOUT * kernel.slowdown)
		with phase('before-save'):
			vm.wait_for('^vmctl: await after-restore',
				    args.timeout * kernel.slowdown)
		ok = _insmod_ok(vm)
		ok &= report(vm, [(os.path.basename(p), 'before-save')
				  for p in args.prog or []])
		with phase('save'):
			vm.save(state)
		log('saved state: %.1f MB' % (os.path.getsize(state) / 1e6))
		names = ['clone%d' % i for i in range(1, args.clones + 1)]
		# in parallel: all clones load and run at once; in sequence:
		# each runs to its end before the next one is restored
		batches = [[n] for n in names] if args.sequential else [names]
		clones = []
		for batch in batches:
			with phase('restore %s' % ' '.join(batch)):
				now = restore_clones(vm, state, batch)
			vms += now
			clones += now
			with phase('after-restore %s' % ' '.join(batch)):
				for c in now:
					c.send('after-restore')
				for c in now:
					c.wait_phase('after-restore')
				for c in now:
					c.wait_for('^' + END_MARKER
						   if not args.check_channel
						   else '^vmctl: shell',
						   args.timeout * kernel.slowdown)
			if args.check_channel:
				ok &= check_channel(now)
		for c in clones:
			c.wait_exit(60)
			ok &= report(c, [(os.path.basename(p), 'after-restore')
					 for p in args.prog or []], args.xfail)
			ok &= kernel_ok(c)
		ok &= check_distinct(clones)
	finally:
		if not ok or args.verbose:
			for v in vms:
				dump_log(v)
		for v in vms:
			v.kill()
		# ~90 MB per run; kept when it may help to look at a failure
		if ok and not args.keep_state:
			with contextlib.suppress(OSError):
				os.unlink(state)
	return 0 if ok else 1


def main(argv=None):
	# tests/vm, where vmctl.py is (the package is one level down)
	here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--cache', default=default_cache(),
		help='download/unpack cache (default $VMCTL_CACHE, else '
		     '/var/cache/libvmgenid as root, else ~/.cache/libvmgenid)')
	ap.add_argument('--workdir', default=os.path.join(os.getcwd(),
							  'vm-work'),
			help='logs, initramfs, saved state')
	ap.add_argument('--kernel', choices=list(KERNELS),
			help='Debian 12 kernel to boot (default $VMCTL_KERNEL, '
			     'else %s)' % DEFAULT_KERNEL)
	ap.add_argument('-v', '--verbose', action='store_true',
			help='print serial logs even on success')
	sub = ap.add_subparsers(dest='cmd', required=True)

	sp = sub.add_parser('fetch', help='download and unpack the kernel; '
				    'print its paths (JSON)')
	sp.add_argument('--print-headers', action='store_true',
			help='print only the headers build dir (KDIR)')
	sp.set_defaults(fn=cmd_fetch)

	sp = sub.add_parser('build-module', help='make a module against it')
	sp.add_argument('--src', default=os.path.join(here, '..', '..',
							'driver'))
	sp.add_argument('--out', required=True)
	sp.set_defaults(fn=cmd_build_module)

	sp = sub.add_parser('initramfs', help='pack an initramfs')
	sp.add_argument('--out', required=True)
	sp.add_argument('--module', action='append')
	sp.add_argument('--prog', action='append')
	sp.add_argument('--file', action='append', help='SRC:DEST')
	sp.set_defaults(fn=cmd_initramfs)

	for name, fn, hlp in (
		('run', cmd_run, 'boot, run programs once, check'),
		('snapshot', cmd_snapshot,
		 'boot, before-save, save, restore clones, after-restore')):
		sp = sub.add_parser(name, help=hlp)
		sp.add_argument('--driver', help='module source dir to build')
		sp.add_argument('--module', action='append',
				help='a prebuilt .ko')
		sp.add_argument('--no-insmod', action='store_true',
				help='copy modules in but do not load them')
		sp.add_argument('--prog', action='append',
				help='a test program (KO PHASE argv)')
		sp.add_argument('--file', action='append',
				help='extra file, SRC[:DEST]')
		sp.add_argument('--append', default='',
				help='more kernel command line')
		sp.add_argument('--timeout', type=int, default=300,
				help='per phase, seconds')
		if name == 'run':
			sp.add_argument('--phase', default='abi')
		else:
			sp.add_argument('--clones', type=int, default=2)
			sp.add_argument('--sequential', action='store_true')
			sp.add_argument('--keep-state', action='store_true',
					help='keep the saved state file even '
					     'when the run passes')
			sp.add_argument('--check-channel', action='store_true',
					help='also test the control port in '
					     'each clone')
			sp.add_argument('--xfail', metavar='REGEX',
					help='after-restore tests named so must '
					     'fail (negative runs)')
			sp.add_argument('--guid', default='auto',
					help='vmgenid guid; a fixed one makes '
					     'clones keep the generation')
		sp.set_defaults(fn=fn)

	args = ap.parse_args(argv)
	args.cache = os.path.abspath(args.cache)
	try:
		args.kernel = kernel_name(args.kernel)
	except HarnessError as e:
		ap.error(str(e))
	args.workdir = os.path.abspath(args.workdir)
	return run_guarded(args.fn, args)


def run_guarded(fn, *args):
	"""Run a harness entry point the way every test wants it: a Skip
	exits 77, a HarnessError exits 1 with its message, and QEMU is killed
	however the run ends (meson stops a test with SIGTERM)."""
	signal.signal(signal.SIGTERM, _on_signal)
	signal.signal(signal.SIGHUP, _on_signal)
	try:
		return fn(*args)
	except Skip as e:
		print('SKIP: %s' % e, flush=True)
		return SKIP
	except HarnessError as e:
		log('ERROR: %s' % e)
		return 1
	finally:
		_kill_all()
		if _timings:
			log('timings: ' + timings())
