# SPDX-License-Identifier: MIT
"""Verdicts from a guest's serial log: the programs' TAP lines and
summaries, insmod results, kernel warnings and kmemleak reports."""

import re

from .common import KERNEL_TROUBLE, log


# ------------------------------------------------------------- results ---

TAP_RX = re.compile(r'^(not ok|ok) (\d+) - (.*?)\s*$', re.M)
SUM_RX = re.compile(r'^(\d+) passed, (\d+) failed\s*$', re.M)


def check_run(text, prog, ph, xfail=None):
	"""Parse one program's output between its run/exit markers; return
	(passed, failed, messages). Tests whose name matches the regex xfail
	must fail (at least one must), and then the exit status is not
	checked: negative runs prove that a check can fail."""
	m = re.search(r'^vmctl: run %s %s\s*$(.*?)^vmctl: exit %s %s rc=(\d+)'
		      % (re.escape(prog), re.escape(ph), re.escape(prog),
			 re.escape(ph)), text, re.M | re.S)
	if not m:
		return 0, 1, ['%s %s: no run/exit markers' % (prog, ph)]
	out, rc = m.group(1), int(m.group(2))
	results = TAP_RX.findall(out)
	xrx = re.compile(xfail) if xfail else None
	fails = ['%s %s: not ok %s - %s' % (prog, ph, n, name)
		 for st, n, name in results if st == 'not ok'
		 and not (xrx and xrx.search(name))]
	if xrx:
		xfailed = [n for st, n, name in results
			   if st == 'not ok' and xrx.search(name)]
		xpassed = [n for st, n, name in results
			   if st == 'ok' and xrx.search(name)]
		if not xfailed or xpassed:
			fails.append('%s %s: expected failure %r: failed %s, '
				     'passed %s' % (prog, ph, xfail,
						    xfailed, xpassed))
		else:
			log('%s %s: expected failures: %s' %
			    (prog, ph, ' '.join(xfailed)))
	# "ok N - name # SKIP why" counts as neither passed nor failed
	passed = sum(1 for st, _, name in results
		     if st == 'ok' and '# SKIP' not in name)
	skipped = sum(1 for st, _, name in results
		      if st == 'ok' and '# SKIP' in name)
	s = SUM_RX.findall(out)
	if not results:
		fails.append('%s %s: no ok/not ok lines' % (prog, ph))
	if not s:
		fails.append('%s %s: no "N passed, N failed" line' % (prog, ph))
	elif (int(s[-1][0]), int(s[-1][1])) != \
			(passed, len(results) - passed - skipped):
		fails.append('%s %s: summary %s passed, %s failed disagrees with '
			     'the ok lines' % (prog, ph, s[-1][0], s[-1][1]))
	if rc != 0 and not xrx:
		fails.append('%s %s: exit status %d' % (prog, ph, rc))
	return passed, len(fails), fails


def report(vm, runs, xfail=None):
	text = vm.read_log()
	total_p = total_f = 0
	msgs = []
	for prog, ph in runs:
		p, f, m = check_run(text, prog, ph, xfail)
		total_p += p
		total_f += f
		msgs += m
	for line in msgs:
		log('FAIL ' + line)
	log('%s: %d passed, %d failures' % (vm.name, total_p, total_f))
	return total_f == 0


def dump_log(vm):
	print('----- %s serial log (%s) -----' % (vm.name, vm.logpath))
	print(vm.read_log().rstrip())
	print('----- end of %s -----' % vm.name, flush=True)


def _insmod_ok(vm):
	bad = re.findall(r'^vmctl: insmod (\S+) rc=([1-9]\d*)', vm.read_log(),
			 re.M)
	for name, rc in bad:
		log('FAIL insmod %s: rc=%s' % (name, rc))
	return not bad


def kernel_ok(vm):
	"""No kernel warning, oops or panic in the guest's log, no leak that
	kmemleak reported (the debug kernel), every module unloaded where
	/init unloads them (the same)."""
	text = vm.read_log()
	bad = kernel_trouble(text)
	for line in bad:
		log('FAIL %s: kernel: %s' % (vm.name, line))
	leaks = kmemleak_leaks(text)
	for leak in leaks:
		log('FAIL %s: kmemleak: %s' % (vm.name, leak))
	stuck = re.findall(r'^vmctl: rmmod (\S+) rc=([1-9]\d*)', text, re.M)
	for name, rc in stuck:
		log('FAIL %s: rmmod %s at the end: rc=%s' % (vm.name, name, rc))
	# a checker that stopped working proves nothing
	blind = re.findall(r'^vmctl: kmemleak (\S+) scan failed', text, re.M)
	for when in blind:
		log('FAIL %s: kmemleak scan %s failed' % (vm.name, when))
	return not bad and not leaks and not stuck and not blind


def kernel_trouble(text):
	"""The lines of a serial log that KERNEL_TROUBLE matches."""
	return [line.strip() for line in re.findall(
		r'^(?:vmctl: kernel: )?(.*(?:%s).*)$' % KERNEL_TROUBLE, text,
		re.M)]


def kmemleak_leaks(text):
	"""kmemleak's reports that /init copied into the log, one string
	each (its lines joined by ' | ')."""
	leaks = []
	for line in re.findall(r'^vmctl: kmemleak: (.*)$', text, re.M):
		line = line.rstrip()
		if line.startswith('unreferenced object'):
			leaks.append(line)
		elif leaks and line:
			leaks[-1] += ' | ' + line.strip()
	return leaks
