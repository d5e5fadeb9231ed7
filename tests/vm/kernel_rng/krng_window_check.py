#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Does any task draw from the pre-restore crng after a resume?

Boots the kernel that VMCTL_KERNEL (or --kernel) names with the sysgenid
module, runs krng_window in it (two drawers of getrandom(8) across the save:
one sleeps 0.5 ms between draws, one never pauses; a forced crng reseed just
before the save), saves the VM, restores N clones from the one file at once,
and counts the values drawn after the resume (calls begun once the new GUID
was in memory) that another clone also drew. Two runs per kernel:

  sci      the module's SCI path on: must be 0 for both drawers;
  control  the module reloaded with sci_path=0 (the kernel or the module
           reseeds only once the ACPI notification went through its slow
           path): must repeat some.

Both: the sysgenid counter moved exactly once in every clone. Prints per
clone resume-to-SCI and resume-to-reseed (guest CLOCK_MONOTONIC) and one
summary line per kernel.
"""

import argparse
import collections
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from krng_harness import RESEED_RX, vmctl  # noqa: E402
import krng_harness  # noqa: E402

DRAWERS = ('sleep', 'busy')

DRAWER_RX = re.compile(r'^KRNG drawer (\S+) (.*)$', re.M)
VALUE_RX = re.compile(r'^KRNG v (\S+) ([PS]) (\d+) ([0-9a-f]{16})$', re.M)
RESUME_RX = re.compile(r'^KRNG resume at=(\d+)', re.M)
SCI_RX = re.compile(r'^KRNG sci scis=(\d+) changes=(\d+) sci_at=(-?\d+) '
		    r'handled_at=(-?\d+)(?: started_at=(-?\d+) '
		    r'interrupted=(\S+))?', re.M)
GEN_RX = re.compile(r'^KRNG generation (\d+)', re.M)
FORK_RX = re.compile(r'^KRNG kernel-fork-lines (\d+)', re.M)
ALREADY_RX = re.compile(r'^KRNG already-handled (\d+)', re.M)


def _int(rx, text, default=None):
	m = rx.search(text)
	return int(m.group(1)) if m else default


def parse_clone(text):
	"""One clone's figures, or None without a resume time."""
	text = text.replace('\r', '')
	resume = _int(RESUME_RX, text)
	if not resume:
		return None
	c = {'resume': resume, 'drawers': {}, 'values': collections.defaultdict(list)}
	for name, rest in DRAWER_RX.findall(text):
		c['drawers'][name] = dict(kv.split('=', 1) for kv in rest.split())
	for name, cls, t, v in VALUE_RX.findall(text):
		c['values'][name].append((cls, int(t), v))
	r = RESEED_RX.search(text)
	c['reseed'] = int(r.group(1)) if r and r.group(1) != 'none' else None
	c['reseed_line'] = (r.group(2) or '') if r else ''
	m = SCI_RX.search(text)
	c['sci'] = tuple(int(x) for x in m.groups()[:4]) if m else None
	c['sci_thread'] = int(m.group(5)) if m and m.group(5) else None
	c['sci_interrupted'] = m.group(6) if m and m.group(6) else '-'
	c['generation'] = _int(GEN_RX, text)
	c['fork_lines'] = _int(FORK_RX, text, 0)
	c['already'] = _int(ALREADY_RX, text, 0)
	return c


def repeats(clones, drawer):
	"""For one drawer: (P values repeated in another clone, summed over
	clones; straddling values repeated; the latest repeated P value's
	time after the resume in ms, or None; P values in all)."""
	where = collections.defaultdict(set)
	for i, c in enumerate(clones):
		for _, _, v in c['values'][drawer]:
			where[v].add(i)
	rep_p = rep_s = total = 0
	window = None
	for i, c in enumerate(clones):
		for cls, t, v in c['values'][drawer]:
			total += cls == 'P'
			if len(where[v]) < 2:
				continue
			if cls == 'S':
				rep_s += 1
				continue
			rep_p += 1
			ms = (t - c['resume']) / 1e6
			window = ms if window is None else max(window, ms)
	return rep_p, rep_s, window, total


def fmt_ms(a, b):
	if a is None or b is None or a <= 0 or b <= 0:
		return '-'
	return '%.2f' % ((b - a) / 1e6)


def check(kernel, mode, clones, nclones, smp=1):
	"""Verdict and summary of one run."""
	ok = len(clones) == nclones
	for c in clones:
		sci = c['sci']
		vmctl.log('%s %s: resume-to-SCI %s ms (it interrupted %s), '
			  'SCI-to-thread %s ms, resume-to-handled %s ms, '
			  'resume-to-first-reseed-line %s ms (%s); generation %s;'
			  ' kernel fork lines %d; already handled %d; %s' % (
				  mode, c['name'],
				  fmt_ms(c['resume'], sci[2]) if sci else '-',
				  c['sci_interrupted'],
				  fmt_ms(sci[2], c['sci_thread']) if sci else '-',
				  fmt_ms(c['resume'], sci[3]) if sci else '-',
				  fmt_ms(c['resume'], c['reseed']),
				  c['reseed_line'] or 'no reseed line',
				  c['generation'], c['fork_lines'], c['already'],
				  ' '.join('%s:%s' % (n, ','.join(
					  '%s=%s' % kv for kv in d.items()
					  if kv[0] in ('kept', 'straddle')))
					  for n, d in sorted(c['drawers'].items()))))
		if c['generation'] != 1:
			vmctl.log('FAIL %s %s: generation %s, want 1 (one bump '
				  'per change)' % (mode, c['name'], c['generation']))
			ok = False
		for d in DRAWERS:
			if not any(cls == 'P' for cls, _, _ in c['values'][d]):
				vmctl.log('FAIL %s %s: drawer %s drew nothing after '
					  'the resume' % (mode, c['name'], d))
				ok = False
		# Where the kernel has its own vmgenid driver, its reseed line
		# must still appear: the module adds a path, it takes none away.
		if vmctl.vmgenid_driver_loaded(kernel) and not c['fork_lines']:
			vmctl.log('FAIL %s %s: the kernel\'s own vmgenid reseed '
				  'did not happen' % (mode, c['name']))
			ok = False
		if mode == 'sci':
			if not sci or sci[1] != 1:
				vmctl.log('FAIL %s: the SCI handler did not see '
					  'the change once (%s)' % (c['name'], sci))
				ok = False
			if c['already'] < 1:
				vmctl.log('FAIL %s: the kernel\'s or the ACPI '
					  'path did not run after the SCI path'
					  % c['name'])
				ok = False
	parts = []
	total_rep = 0
	for d in DRAWERS:
		rep_p, rep_s, window, total = repeats(clones, d)
		total_rep += rep_p
		parts.append('%s: %d of %d repeated, window %s ms, straddling '
			     'draws repeated %d' % (
				     d, rep_p, total, '%.2f' % window
				     if window is not None else '-', rep_s))
		vmctl.log('%s %s' % (mode, parts[-1]))
		if mode == 'sci' and rep_p and smp == 1:
			vmctl.log('FAIL sci: %d values drawn after the resume by '
				  'the %s drawer repeat in another clone' %
				  (rep_p, d))
			ok = False
	if mode == 'control' and not total_rep:
		vmctl.log('FAIL control: no value repeated: the test cannot '
			  'show the window it claims to close')
		ok = False
	sci_ms = [fmt_ms(c['resume'], c['sci'][3]) for c in clones
		  if c['sci'] and mode == 'sci']
	line_ms = [fmt_ms(c['resume'], c['reseed']) for c in clones]
	summary = '%s: %s; resume-to-reseed %s ms' % (
		mode, '; '.join(parts),
		'/'.join(sci_ms if mode == 'sci' else line_ms) or '-')
	return ok, summary


def one_run(kernel, kos, accel, args, mode):
	prog = os.path.basename(args.probe)
	work, initrd, env = krng_harness.guest(kernel, kos, args, mode)
	origin = vmctl.VM(kernel, initrd, work, 'origin', env, accel,
			  'KRNG_SCI=%d' % (mode == 'sci'), smp=args.smp)
	vms = [origin]
	ok = False
	finished = False
	summary = '%s: failed' % mode
	state = os.path.join(work, 'state.bin')
	try:
		ok = krng_harness.boot_before_save(origin, prog, mode)
		# the module's own lines, the SCI handler's cost among them
		for line in re.findall(r'^KRNG kmsg (.*)$', origin.read_log().
				       replace('\r', ''), re.M):
			vmctl.log('%s origin: %s' % (mode, line))
		with vmctl.phase('%s: save' % mode):
			origin.save(state)
		names = ['clone%d' % i for i in range(1, args.clones + 1)]
		# One at a time, each until its drawers are done: a clone that
		# loads while another runs its first 100 ms would stretch that
		# one's guest time (TCG's clock is the host's) and blur the
		# figures; a done clone idles. Then no new process may start in
		# a clone before its drawers are done: an exec takes bytes from
		# the crng.
		clones = []
		with vmctl.phase('%s: restore %d clones' % (mode, args.clones)):
			for n in names:
				c = origin.restore_from(state, n)
				vms.append(c)
				clones.append(c)
				c.start()
				c.resume(120)
				for d in DRAWERS:
					c.wait_for('^KRNG drawn %s' % d, 180)
		with vmctl.phase('%s: after-restore' % mode):
			for c in clones:
				c.send('after-restore')
			for c in clones:
				c.wait_phase('after-restore')
			for c in clones:
				c.wait_for('^' + vmctl.END_MARKER, 180)
		c_ok, figures = krng_harness.collect(clones, prog, parse_clone)
		ok &= c_ok
		r_ok, summary = check(kernel, mode, figures, args.clones,
				     args.smp)
		ok &= r_ok
		finished = True
	finally:
		krng_harness.clean_up(vms, ok, finished, args.verbose, state)
	return ok, summary


def run(args):
	kernel, kos, accel = krng_harness.prepare(args)
	vmctl.log('kernel %s (%s), %s, accelerator %s, %d vCPU' %
		  (kernel.name, kernel.abi, kernel.boot_method, accel, args.smp))
	ok = True
	summary = []
	for mode in args.modes:
		r_ok, part = one_run(kernel, kos, accel, args, mode)
		ok &= r_ok
		summary.append(part)
	print('krng-window %s (%s), %d clones, %d vCPU: %s: %s' %
	      (kernel.name, kernel.abi, args.clones, args.smp,
	       ' | '.join(summary), 'PASS' if ok else 'FAIL'), flush=True)
	return 0 if ok else 1


def main(argv=None):
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	krng_harness.add_args(ap, 'the static krng_window',
			      'krng-window-work', 8)
	ap.add_argument('--smp', type=int, default=1,
			help='vCPUs; with more than 1 the figures are reported '
			'and the sci run is not asserted to be 0')
	ap.add_argument('--modes', default='sci,control',
			help='comma separated: sci, control')
	ap.add_argument('-v', '--verbose', action='store_true')
	args = ap.parse_args(argv)
	krng_harness.finish_args(ap, args, ('sci', 'control'))
	return vmctl.run_guarded(run_with_kernel, args)


def run_with_kernel(args):
	args.kernel = vmctl.kernel_name(args.kernel)
	args.workdir = os.path.join(args.workdir, '%s-smp%d' % (args.kernel,
								 args.smp))
	return run(args)


if __name__ == '__main__':
	sys.exit(main())
