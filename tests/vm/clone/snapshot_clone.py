#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The snapshot-clone test: one guest, saved once, restored twice.

A guest runs clone_app (tokens from a libvmgenid-protected ChaCha20 RNG, from
OpenSSL, and from an unprotected control RNG with the same seed). The host
saves the guest to a file mid-stream, restores two clones from that one file
(each new QEMU gets a new VM generation ID), lets each emit --tokens tokens
under the new generation and compares the logs:

  - in each clone the sysgenid counter and the combined generation moved
    exactly once, and each reseed callback ran exactly once;
  - every protected token (ChaCha20 and OpenSSL) committed under the new
    generation differs between the clones;
  - the control tokens after the restore are identical between the clones
    (the failure the library exists to prevent, shown happening);
  - the transaction begun before the save failed to commit after it.

It reports the race window (tokens committed under the old generation
although the guest had already resumed; see clone_app.c for how the guest
detects the resume) and the time from the resume to the end of the reseed
callbacks, in guest time. Exit 0 pass, 1 fail, 77 skip.
"""

import argparse
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import vmctl  # noqa: E402  (the harness, one directory up)

# QEMU's emulated RTC follows the host's clock: the guest sees the resume as
# an RTC jump, which needs the VM stopped well over the RTC's 1 s resolution
# (clone_app.c flags jumps above 1.5 s).
MIN_STOPPED_S = 4.0
LINE_RX = re.compile(r'^CLONE (\S+)(.*)$', re.M)
KV_RX = re.compile(r'(\w+)=("[^"]*"|\S+)')
# A line cut short (the last one the saved guest was printing when it was
# stopped, or one a kernel message broke into) is dropped, not trusted.
REQUIRED = {
	'start': ('source', 'gen', 'sgid'),
	'tok': ('seq', 'gen', 'sgid', 'res', 'inf', 'mono', 'boot', 'lib',
		'ossl', 'ctl'),
	'abort': ('seq', 'gen', 'res', 'mono', 'ctl'),
	'cb': ('name', 'reasons', 'old', 'new', 'n', 'start', 'end'),
	'resume': ('mono', 'boot', 'prev', 'jump'),
	'txn-inflight-begun': ('gen', 'mono'),
	'txn-inflight-commit': ('ok', 'gen', 'now', 'mono'),
}
HEX16 = re.compile(r'^[0-9a-f]{16}$')


class Log:
	"""The CLONE lines of one guest, parsed."""

	def __init__(self, name, text):
		self.name = name
		self.events = []
		self.dropped = 0
		for m in LINE_RX.finditer(text):
			what = m.group(1)
			kv = {k: v.strip('"') for k, v in KV_RX.findall(m.group(2))}
			if not self._complete(what, kv):
				self.dropped += 1
				continue
			self.events.append((what, kv))

	@staticmethod
	def _complete(what, kv):
		if any(k not in kv for k in REQUIRED.get(what, ())):
			return False
		return all(HEX16.match(kv[k]) for k in ('lib', 'ossl', 'ctl')
			   if k in kv)

	def all(self, what):
		return [kv for w, kv in self.events if w == what]

	def one(self, what):
		found = self.all(what)
		return found[0] if found else None

	def tokens(self):
		return self.all('tok')


def ns_to_ms(ns):
	return ns / 1e6


class Checker:
	def __init__(self):
		self.failures = []
		self.passes = []

	def check(self, ok, what):
		(self.passes if ok else self.failures).append(what)
		print('%s %s' % ('ok  ' if ok else 'FAIL', what), flush=True)
		return ok


def analyse_clone(c, origin_gen, origin_sgid):
	"""Figures for one clone; None where the log lacks them."""
	toks = c.tokens()
	old = [t for t in toks if int(t['gen']) == origin_gen]
	new = [t for t in toks if int(t['gen']) != origin_gen]
	res = c.one('resume')
	cbs = c.all('cb')
	fig = {
		'gens': sorted({int(t['gen']) for t in toks}),
		'sgids': sorted({int(t['sgid']) for t in new}),
		'old_before_save': [t for t in old if t['res'] == '0'],
		'race': [t for t in old if t['res'] == '1'],
		'new': new,
		'aborts': c.all('abort'),
		'cbs': cbs,
		'inflight': c.one('txn-inflight-commit'),
		'resume': res,
		'resume_to_cb_ms': None,
		'resume_detect_ms': None,
		'resume_to_first_new_ms': None,
	}
	# The guest clock resumes where it stopped, and before the stop the
	# detector read the RTC every millisecond: its last read before the
	# jump ("prev") marks the resume to within about a millisecond (an
	# upper bound on the times below). "mono" is when the guest, slowed by
	# the restore, got round to noticing.
	if res and cbs:
		end = max(int(cb['end']) for cb in cbs)
		fig['resume_to_cb_ms'] = ns_to_ms(end - int(res['prev']))
	if res:
		fig['resume_detect_ms'] = ns_to_ms(int(res['mono']) -
						   int(res['prev']))
	if res and new:
		fig['resume_to_first_new_ms'] = ns_to_ms(
			int(new[0]['mono']) - int(res['prev']))
	fig['new_gen'] = origin_gen + 1
	fig['new_sgid'] = origin_sgid + 1
	return fig


def check_all(origin, clones, want_tokens, chk):
	"""Every assertion of the test; returns per-clone figures."""
	start = origin.one('start')
	if not chk.check(start is not None, 'origin: clone_app started'):
		return None
	chk.check(start.get('source') == 'sysgenid',
		  'origin: library source is sysgenid (got %s)'
		  % start.get('source'))
	gen0, sgid0 = int(start['gen']), int(start['sgid'])
	otoks = origin.tokens()
	chk.check(len(otoks) > 0, 'origin: %d tokens before the save'
		  % len(otoks))
	chk.check(all(int(t['gen']) == gen0 and int(t['sgid']) == sgid0
		      for t in otoks),
		  'origin: generation %d, sysgenid %d throughout' % (gen0, sgid0))
	chk.check(all(t['lib'] == t['ctl'] for t in otoks),
		  'origin: protected and control RNG identical before the '
		  'save (same seed)')
	chk.check(not origin.all('cb'), 'origin: no callback ran')
	chk.check(origin.one('txn-inflight-begun') is not None and
		  all(t['inf'] == '1' for t in otoks) and
		  not origin.all('txn-inflight-commit'),
		  'origin: in-flight txn begun and still committable at save')

	figs = []
	for c in clones:
		f = analyse_clone(c, gen0, sgid0)
		figs.append(f)
		n = c.name
		chk.check(c.one('done') is not None, '%s: app finished' % n)
		chk.check(not c.all('error') and not c.all('begin-error'),
			  '%s: no errors' % n)
		chk.check(f['gens'] in ([f['new_gen']], [gen0, f['new_gen']]),
			  '%s: combined generation %d -> %d, one step (seen %s)'
			  % (n, gen0, f['new_gen'], f['gens']))
		chk.check(f['sgids'] == [f['new_sgid']],
			  '%s: sysgenid counter %d -> %d, one step (seen %s)'
			  % (n, sgid0, f['new_sgid'], f['sgids']))
		for name in ('chacha', 'openssl'):
			runs = [cb for cb in f['cbs'] if cb['name'] == name]
			chk.check(len(runs) == 1 and runs[0]['n'] == '1' and
				  int(runs[0]['new']) == f['new_gen'] and
				  int(runs[0]['old']) == gen0,
				  '%s: callback %s ran exactly once, for %d -> %d'
				  % (n, name, gen0, f['new_gen']))
		chk.check(len(f['new']) >= want_tokens,
			  '%s: %d tokens under the new generation (want %d)'
			  % (n, len(f['new']), want_tokens))
		inf = f['inflight']
		chk.check(inf is not None and inf['ok'] == '0' and
			  int(inf['gen']) == gen0,
			  '%s: in-flight txn (gen %d) failed to commit'
			  % (n, gen0))
		chk.check(f['resume'] is not None,
			  '%s: guest saw the resume (RTC jump %s s)'
			  % (n, f['resume']['jump'] if f['resume'] else '-'))

	if len(clones) < 2:
		return figs
	a, b = clones[0], clones[1]
	fa, fb = figs[0], figs[1]
	for field, label in (('lib', 'libvmgenid ChaCha20'),
			     ('ossl', 'OpenSSL RAND_bytes')):
		all_a = {t[field] for t in a.tokens()}
		all_b = {t[field] for t in b.tokens()}
		new_a = {t[field] for t in fa['new']}
		new_b = {t[field] for t in fb['new']}
		same = (new_a & all_b) | (new_b & all_a)
		chk.check(not same and len(new_a) == len(fa['new']) and
			  len(new_b) == len(fb['new']),
			  '%s tokens after the step differ between the clones '
			  '(%d shared)' % (label, len(same)))
	ctl_a = {int(kv['seq']): kv['ctl'] for w, kv in a.events
		 if w in ('tok', 'abort')}
	ctl_b = {int(kv['seq']): kv['ctl'] for w, kv in b.events
		 if w in ('tok', 'abort')}
	common = sorted(set(ctl_a) & set(ctl_b))
	diff = [s for s in common if ctl_a[s] != ctl_b[s]]
	chk.check(len(common) >= want_tokens and not diff,
		  'control RNG identical in both clones after the restore '
		  '(%d common rounds, %d differ)' % (len(common), len(diff)))
	return figs


def check_fixed_guid(origin, clones, want_tokens, chk):
	"""The negative run: QEMU restored the clones with the saved generation
	ID, as a hypervisor that forgets to change it would. Nothing may step,
	and the clones must then repeat each other's protected tokens: proof
	that the comparisons above see duplicates when there are some."""
	start = origin.one('start')
	if not chk.check(start is not None, 'origin: clone_app started'):
		return
	gen0, sgid0 = int(start['gen']), int(start['sgid'])
	for c in clones:
		toks = c.tokens()
		chk.check(len(toks) >= want_tokens and
			  all(int(t['gen']) == gen0 and int(t['sgid']) == sgid0
			      for t in toks),
			  '%s: %d tokens, all under generation %d, sysgenid %d'
			  % (c.name, len(toks), gen0, sgid0))
		chk.check(not c.all('cb') and not c.all('txn-inflight-commit'),
			  '%s: no callback ran, the in-flight txn still commits'
			  % c.name)
	if len(clones) < 2:
		return
	lib_a = {int(t['seq']): t['lib'] for t in clones[0].tokens()}
	lib_b = {int(t['seq']): t['lib'] for t in clones[1].tokens()}
	common = sorted(set(lib_a) & set(lib_b))
	chk.check(len(common) >= want_tokens and
		  all(lib_a[s] == lib_b[s] for s in common),
		  'without a new generation ID the clones emit the same '
		  'libvmgenid tokens (%d rounds compared)' % len(common))


def side_by_side(origin, clones, figs, rows):
	"""A table a person can read: the clones' tokens round by round."""
	a, b = clones[0], clones[1]
	by_a = {int(kv['seq']): (w, kv) for w, kv in a.events
		if w in ('tok', 'abort')}
	by_b = {int(kv['seq']): (w, kv) for w, kv in b.events
		if w in ('tok', 'abort')}
	otoks = origin.tokens()

	gen0 = int(origin.one('start')['gen'])

	def cell(e):
		if e is None:
			return '%-29s' % ''
		w, kv = e
		if w == 'abort':
			return '%-29s' % ('g%s  commit failed: dropped'
					  % kv['gen'])
		mark = '*' if kv['res'] == '1' and int(kv['gen']) == gen0 \
			else ' '
		return 'g%s%s %s %s' % (kv['gen'], mark, kv['lib'],
					 kv['ossl'][:8])

	print()
	print('Before the save (one guest): protected and control RNG agree,')
	print('they share the seed and nothing has happened yet.')
	print('  round  gen  libvmgenid       openssl   control')
	for t in otoks[-3:]:
		print('  %5s  g%s   %s %s  %s' % (t['seq'], t['gen'], t['lib'],
						 t['ossl'][:8], t['ctl']))
	print()
	print('After the restore: two clones of that guest, round by round.')
	print('  gN = combined generation; * = committed after the guest had '
	      'resumed')
	print('  but under the old generation (race window)')
	print('         %-29s  %-29s' % ('clone1', 'clone2'))
	print('  round  %-29s  %-29s  control' %
	      ('gen libvmgenid       openssl', 'gen libvmgenid       openssl'))
	seqs = sorted(set(by_a) | set(by_b))
	for s in seqs[:rows]:
		ea, eb = by_a.get(s), by_b.get(s)
		ca = ea[1]['ctl'] if ea else None
		cb = eb[1]['ctl'] if eb else None
		ctl = ca or cb or ''
		same = 'same in both' if ca and cb and ca == cb else \
		       ('DIFFERENT' if ca and cb else '')
		print('  %5d  %s  %s  %s %s' % (s, cell(ea), cell(eb), ctl,
						same))
	if len(seqs) > rows:
		print('  ... %d more rounds' % (len(seqs) - rows))
	print()


def report(clones, figs):
	print('Figures (guest time, CLOCK_MONOTONIC):')
	for c, f in zip(clones, figs):
		def ms(v):
			return '%.1f ms' % v if v is not None else 'n/a'
		print('  %s: resume -> reseed callbacks done %s; resume -> '
		      'first token under the new generation %s (the guest '
		      'itself ran again %s after the resume)'
		      % (c.name, ms(f['resume_to_cb_ms']),
			 ms(f['resume_to_first_new_ms']),
			 ms(f['resume_detect_ms'])))
		print('  %s: race window: %d token(s) committed under the old '
		      'generation after the resume; %d txn(s) aborted at the '
		      'step; %d old token(s) from before the save flushed late'
		      % (c.name, len(f['race']), len(f['aborts']),
			 len(f['old_before_save'])))
	if len(figs) >= 2:
		ra = {t['lib'] for t in figs[0]['race']}
		rb = {t['lib'] for t in figs[1]['race']}
		print('  race-window tokens emitted by both clones (duplicates): '
		      '%d' % len(ra & rb))


def main(argv=None):
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--app', help='static clone_app')
	ap.add_argument('--logs', metavar='DIR',
			help='only re-check the serial logs of an earlier run')
	ap.add_argument('--driver', default=os.path.join(HERE, '..', '..', '..',
							 'driver'),
			help='module source to build (default: driver/)')
	ap.add_argument('--cache', default=os.environ.get(
		'VMCTL_CACHE', os.path.join(os.getcwd(), 'vm-cache')))
	ap.add_argument('--workdir', default=os.path.join(os.getcwd(),
							  'vm-clone'))
	ap.add_argument('--tokens', type=int, default=50,
			help='tokens each clone emits under the new generation')
	ap.add_argument('--before', type=int, default=20,
			help='tokens the guest emits before the save')
	ap.add_argument('--period-ms', type=int, default=15)
	ap.add_argument('--parallel', action='store_true',
			help='restore the clones at the same time')
	ap.add_argument('--fixed-guid', metavar='UUID',
			help='negative run: restore with this fixed generation '
			     'ID and expect no reseed and duplicate tokens')
	ap.add_argument('--append', default='',
			help='more kernel command line (e.g. loglevel=6 to see '
			     'the kernel reseed line)')
	ap.add_argument('--show', action='store_true',
			help='print the clones side by side')
	ap.add_argument('--rows', type=int, default=16)
	ap.add_argument('-v', '--verbose', action='store_true',
			help='print the serial logs')
	args = ap.parse_args(argv)
	# meson stops a test with SIGTERM: unwind so that QEMU gets killed
	signal.signal(signal.SIGTERM, vmctl._on_signal)
	if args.logs:
		return analyse_saved(args.logs, args)
	if not args.app:
		ap.error('--app is required')
	try:
		return run(args)
	except vmctl.Skip as e:
		print('SKIP: %s' % e, flush=True)
		return vmctl.SKIP
	except vmctl.HarnessError as e:
		vmctl.log('ERROR: %s' % e)
		return 1
	finally:
		vmctl._kill_all()


def analyse(logs, args):
	"""Check and report; logs are origin, clone1, clone2."""
	chk = Checker()
	if args.fixed_guid:
		check_fixed_guid(logs[0], logs[1:], args.tokens, chk)
		vmctl.log('%d checks passed, %d failed'
			  % (len(chk.passes), len(chk.failures)))
		return not chk.failures
	figs = check_all(logs[0], logs[1:], args.tokens, chk)
	if figs and args.show:
		side_by_side(logs[0], logs[1:], figs, args.rows)
	if figs:
		report(logs[1:], figs)
	vmctl.log('%d checks passed, %d failed'
		  % (len(chk.passes), len(chk.failures)))
	return not chk.failures


def analyse_saved(logdir, args):
	"""Re-check the serial logs a previous run left in logdir."""
	logs = []
	for name in ('origin', 'clone1', 'clone2'):
		with open(os.path.join(logdir, name + '.log'), 'rb') as f:
			logs.append(Log(name, f.read().decode('utf-8',
							      'replace')))
	return 0 if analyse(logs, args) else 1


def run(args):
	cache = os.path.abspath(args.cache)
	work = os.path.abspath(args.workdir)
	os.makedirs(work, exist_ok=True)
	t_start = time.monotonic()
	vmctl.qemu_binary()
	with vmctl.phase('fetch'):
		kernel = vmctl.fetch(cache)
	with vmctl.phase('build-module'):
		kos = vmctl.build_module(kernel, os.path.abspath(args.driver),
					 os.path.join(work, 'module'))
	with vmctl.phase('initramfs'):
		initrd = vmctl.build_initramfs(
			kernel, os.path.join(work, 'initramfs.cpio.gz'),
			modules=kos, progs=[args.app])
	accel = vmctl.choose_accel(kernel, cache, work)
	vmctl.log('accelerator: ' + accel)
	env = {'VMCTL_MODULES': ','.join(os.path.basename(k)[:-3]
					 for k in kos),
	       'VMCTL_SHELL': '1'}
	origin = vmctl.VM(kernel, initrd, work, 'origin', env, accel,
			  args.append, guid=args.fixed_guid or 'auto')
	vms = [origin]
	ok = False
	try:
		with vmctl.phase('boot to /init'):
			origin.start()
			origin.wait_for('^vmctl: shell', vmctl.TCG_BOOT_TIMEOUT)
		if re.search(r'^vmctl: insmod \S+ rc=[1-9]', origin.read_log(),
			     re.M):
			raise vmctl.HarnessError('insmod failed:\n' +
						 origin.read_log()[-1500:])
		with vmctl.phase('clone_app: %d tokens' % args.before):
			origin.send('/tests/%s --period-ms %d --after %d'
				    % (os.path.basename(args.app),
				       args.period_ms, args.tokens))
			m = origin.wait_for(r'^CLONE (start|error)', 120)
			if m.group(1) == 'error':
				raise vmctl.HarnessError(
					'clone_app failed:\n' +
					origin.read_log()[-1500:])
			origin.wait_for(r'^CLONE tok seq=%d ' % args.before, 120)
		state = os.path.join(work, 'state.bin')
		with vmctl.phase('save'):
			origin.save(state)
		saved = time.monotonic()
		vmctl.log('saved state: %.1f MB'
			  % (os.path.getsize(state) / 1e6))
		# keep the VM stopped long enough for the RTC to show it
		time.sleep(max(0.0, saved + MIN_STOPPED_S - time.monotonic()))
		with vmctl.phase('restore 2 clones %s' %
				 ('in parallel' if args.parallel
				  else 'in sequence')):
			clones = vmctl.restore_clones(
				origin, state, ['clone1', 'clone2'],
				args.parallel)
		vms += clones
		with vmctl.phase('clones run'):
			if args.fixed_guid:
				# nothing steps, so the app never finishes:
				# let it run as many rounds as it would have
				last = int(re.findall(r'^CLONE tok seq=(\d+) ',
						      origin.read_log(),
						      re.M)[-1])
				for c in clones:
					c.wait_for(r'^CLONE tok seq=%d '
						   % (last + args.tokens + 1), 120)
			else:
				for c in clones:
					c.wait_for(r'^CLONE done ', 120)
					c.send('exit')
		for c in clones:
			try:
				c.wait_exit(0 if args.fixed_guid else 30)
			except vmctl.HarnessError:
				c.kill()
		ok = analyse([Log(v.name, v.read_log()) for v in vms], args)
		vmctl.log('total %.1f s' % (time.monotonic() - t_start))
	finally:
		if not ok or args.verbose:
			for v in vms:
				vmctl.dump_log(v)
		for v in vms:
			v.kill()
	return 0 if ok else 1


if __name__ == '__main__':
	sys.exit(main())
