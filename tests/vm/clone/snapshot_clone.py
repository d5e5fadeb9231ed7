#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The snapshot-clone test: one guest, saved once, restored N times.

A guest runs clone_app (tokens from a libvmgenid-protected ChaCha20 RNG, from
OpenSSL reseeded by a libvmgenid callback, and from an unprotected control
RNG with the same seed). The host saves the guest to a file mid-stream,
restores --clones clones from that one file (each new QEMU gets a new VM
generation ID), lets each emit --tokens tokens under the new generation and
compares the logs of every pair of clones.

Two modes, chosen by how the module is loaded:

  race-free     insmod sysgenid.ko (guid_page auto): the library reads the
                hypervisor's generation ID and sees the restore at once.
                Every clone: 0 tokens committed under the old generation
                after the resume; every stream: 0 tokens repeated between
                any two clones, race window included.
  counter-only  insmod sysgenid.ko guid_page=0 sci_path=0, the control:
                the library has only the counter, which moves once the
                guest kernel has handled the ACPI notification. The test
                fails unless it still sees that window: a clone with a token committed
                under the old generation after the resume, and such tokens
                repeated between clones (tokens under the new generation
                must still all differ).

In both modes: in each clone the counter and the combined generation step
once, each reseed callback runs once, the transaction begun before the save
does not commit, and the control RNG repeats itself in every pair of clones
(so the comparison that must find nothing in race-free mode can find
something). It reports, per clone, the time from the resume to the end of
the reseed callbacks, in guest time. Exit 0 pass, 1 fail, 77 skip.
"""

import argparse
import inspect
import itertools
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import vmctl  # noqa: E402  (the harness, one directory up)

# QEMU's emulated RTC follows the host's clock: the guest sees the resume as
# an RTC jump, which needs the VM stopped well over the RTC's 1 s resolution
# (clone_app.c flags jumps above 1.5 s).
MIN_STOPPED_S = 4.0
MODES = ('race-free', 'counter-only')
# The module parameter that selects the mode (sysgenid(4)).
# The control also turns the module's SCI path off: with it, the counter
# moves before user space runs after the resume, and there is no window
# left for the control to show (tests/vm/kernel_rng/README.md).
MODE_PARAMS = {'race-free': '', 'counter-only': 'guid_page=0 sci_path=0'}
SYSFS = '/sys/class/misc/sysgenid'
LINE_RX = re.compile(r'^CLONE (\S+)(.*)$', re.M)
KV_RX = re.compile(r'(\w+)=("[^"]*"|\S+)')
# A line cut short (the last one the saved guest was printing when it was
# stopped, or one a kernel message broke into) is dropped, not trusted.
REQUIRED = {
	'start': ('source', 'gen', 'sgid'),
	'tok': ('seq', 'gen', 'sgid', 'res', 'cres', 'inf', 'mono', 'boot',
		'lib', 'ossl', 'ctl'),
	'abort': ('seq', 'gen', 'res', 'cres', 'mono', 'ctl'),
	'cb': ('name', 'reasons', 'old', 'new', 'n', 'start', 'end'),
	'resume': ('mono', 'boot', 'prev', 'jump'),
	'txn-inflight-begun': ('gen', 'mono'),
	'txn-inflight-commit': ('ok', 'gen', 'now', 'mono'),
	'module': ('mode', 'guid_page', 'param'),
	'openssl-check': ('rc',),
	'prov': ('tok',),
	'plain': ('tok',),
}
HEX16 = re.compile(r'^[0-9a-f]{16}$')
HEX32 = re.compile(r'^[0-9a-f]{32}$')
# An unmodified OpenSSL program (libcrypto only) in the guest, twice: with
# the libvmgenid provider configured through OPENSSL_CONF, and without (the
# control). Where the provider and the files it needs go in the guest: the
# loader's default directories, since the build tree's RUNPATH means
# nothing there.
GUEST_LIBDIR = '/usr/lib/x86_64-linux-gnu'
GUEST_PROVIDER = GUEST_LIBDIR + '/ossl-modules/vmgenid.so'
GUEST_CONF = '/etc/vmgenid-openssl.cnf'
OSSL_PROGS = (
	('prov', 'OpenSSL program + provider', 'OPENSSL_CONF=%s ' % GUEST_CONF),
	('plain', 'same, no provider', ''),
)
# The token streams the clones are compared on: (field, label, protected).
STREAMS = (
	('lib', 'libvmgenid ChaCha20', True),
	('ossl', 'OpenSSL, callback', True),
	('ctl', 'control (no library)', False),
)


class Log:
	"""The CLONE lines of one guest, parsed."""

	def __init__(self, name, text):
		self.name = name
		self.text = text
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
		if what in ('prov', 'plain'):
			return bool(HEX32.match(kv['tok']))
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
	def __init__(self, brief=False):
		self.failures = []
		self.passes = []
		self.brief = brief	# print failures only

	def check(self, ok, what):
		(self.passes if ok else self.failures).append(what)
		if not ok or not self.brief:
			print('%s %s' % ('ok  ' if ok else 'FAIL', what),
			      flush=True)
		return ok


def analyse_clone(c, gen0, sgid0):
	"""Figures for one clone; None where the log lacks them."""
	toks = c.tokens()
	rounds = [kv for w, kv in c.events if w in ('tok', 'abort')]

	def old(t):
		return int(t['gen']) == gen0

	res = c.one('resume')
	cbs = c.all('cb')
	fig = {
		'gens': sorted({int(t['gen']) for t in toks}),
		'sgids': sorted({int(t['sgid']) for t in toks if not old(t)}),
		# committed before the save, reached the console after it
		'late': [t for t in toks if old(t) and t['cres'] == '0'],
		# committed after the resume under the old generation
		'window': [t for t in toks if old(t) and t['cres'] == '1'],
		'new': [t for t in toks if not old(t)],
		# every token this clone committed after the resume
		'after': [t for t in toks if not old(t) or t['cres'] == '1'],
		# the control draws every round, committed or not
		'rounds_after': [t for t in rounds
				 if not old(t) or t['cres'] == '1'],
		'aborts': c.all('abort'),
		'cbs': cbs,
		'inflight': c.one('txn-inflight-commit'),
		'resume': res,
		'resume_to_cb_ms': None,
		'resume_detect_ms': None,
		'resume_to_first_new_ms': None,
		'begin_to_cb_ms': None,
		'new_gen': gen0 + 1,
		'new_sgid': sgid0 + 1,
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
	if res and fig['new']:
		fig['resume_to_first_new_ms'] = ns_to_ms(
			int(fig['new'][0]['mono']) - int(res['prev']))
	# The library's own part: from its first call after the resume that
	# looks past the fast path to the end of the callbacks. That call is
	# the first vmgen_txn_begin() begun after the resume or, if a round
	# straddled the resume, the app's vmgen_generation() right after that
	# round's failed commit (its "mono" is taken just before).
	calls = [int(t['bmono']) for t in rounds
		 if t['res'] == '1' and 'bmono' in t][:1]
	calls += [int(t['mono']) for t in fig['aborts']
		  if t['cres'] == '1'][:1]
	if calls and cbs:
		fig['begin_to_cb_ms'] = ns_to_ms(
			max(int(cb['end']) for cb in cbs) - min(calls))
	return fig


def repeats(sets):
	"""Tokens shared by pairs of clones: (pairs, distinct tokens), where
	pairs counts each token once per pair of clones that both emitted it."""
	pairs = 0
	shared = set()
	for a, b in itertools.combinations(sets, 2):
		both = a & b
		pairs += len(both)
		shared |= both
	return pairs, len(shared)


def cross_figures(figs):
	"""Per stream, the repeats over all pairs of clones: of every token
	committed after the resume, of those under the new generation only,
	and of the race-window tokens."""
	out = {}
	for field, _, _ in STREAMS:
		key = 'rounds_after' if field == 'ctl' else 'after'
		out[field] = {
			'all': repeats([{t[field] for t in f[key]}
					for f in figs]),
			'new': repeats([{t[field] for t in f['new']}
					for f in figs]),
			'window': repeats([{t[field] for t in f['window']}
					   for f in figs]),
		}
	return out


def in_state(state, tok):
	"""Whether the 128-bit token tok (hex) is in the saved guest's memory,
	as text or as bytes: then it was drawn before the save. Each half is
	looked for alone, so that a token split by a page boundary is found
	too (at least one half stays whole)."""
	h = tok.encode()
	b = bytes.fromhex(tok)
	return any(p in state for p in (h[:16], h[16:], b[:8], b[8:]))


def prestop_counts(state, logs):
	"""For each OpenSSL program stream: how many of its first tokens were
	drawn before the save. The program writes its tokens in order to a
	file in the guest's tmpfs, so every token drawn before the save is in
	the saved memory, and those drawn after the resume are not: the first
	clone's stream is a prefix found in the state, then tokens that are
	not; a binary search finds the boundary."""
	out = {}
	for field, _, _ in OSSL_PROGS:
		toks = [t['tok'] for t in logs[0].all(field)]
		lo, hi = 0, len(toks)
		while lo < hi:
			mid = (lo + hi) // 2
			if in_state(state, toks[mid]):
				lo = mid + 1
			else:
				hi = mid
		# the boundary must be sharp: the tokens just after it
		# are all new
		sharp = not any(in_state(state, t) for t in toks[lo:lo + 5])
		out[field] = lo if sharp else None
	return out


def check_openssl(clones, prestop, mode, chk):
	"""The OpenSSL program with and without the provider; returns the
	figures: per stream, (repeated pairs, distinct) after the resume."""
	figs = {}
	for field, label, _ in OSSL_PROGS:
		n = prestop.get(field)
		if not chk.check(n is not None,
				 '%s: tokens drawn before the save told apart '
				 'from those drawn after the resume' % label):
			continue
		streams = [[t['tok'] for t in c.all(field)] for c in clones]
		pre = {tuple(s[:n]) for s in streams}
		chk.check(len(pre) == 1,
			  '%s: the %d tokens drawn before the save are the same '
			  'in every clone' % (label, n))
		after = [s[n:] for s in streams]
		least = min(len(a) for a in after)
		chk.check(least >= 20,
			  '%s: every clone drew tokens after the resume (at '
			  'least %d; want >= 20)' % (label, least))
		figs[field] = repeats([set(a) for a in after])
		pairs, distinct = figs[field]
		if field == 'plain':
			sets = [set(a) for a in after]
			fewest = min((len(a & b) for a, b in
				      itertools.combinations(sets, 2)),
				     default=0)
			chk.check(fewest >= 20,
				  '%s: every pair of clones repeats at least '
				  '%d tokens (want >= 20; %d repeated in all)'
				  % (label, fewest, pairs))
		elif mode == 'race-free':
			chk.check(pairs == 0,
				  '%s: %d token(s) repeated across the pairs of '
				  'clones, race window included (want 0)'
				  % (label, pairs))
	return figs


def kernel_trouble(log):
	"""Kernel warnings, kmemleak reports and modules that would not
	unload at the end (the last two on the debug kernel only)."""
	bad = re.findall(r'^(?:vmctl: kernel: )?(.*(?:%s).*)$'
			 % vmctl.KERNEL_TROUBLE, log.text, re.M)
	bad += ['kmemleak: ' + leak for leak in vmctl.kmemleak_leaks(log.text)]
	bad += ['rmmod %s at the end: rc=%s' % m for m in re.findall(
		r'^vmctl: rmmod (\S+) rc=([1-9]\d*)', log.text, re.M)]
	bad += ['kmemleak scan %s failed' % w for w in re.findall(
		r'^vmctl: kmemleak (\S+) scan failed', log.text, re.M)]
	return bad


def check_origin(origin, mode, chk):
	"""The origin's checks; (gen0, sgid0) or None."""
	start = origin.one('start')
	if not chk.check(start is not None, 'origin: clone_app started'):
		return None
	chk.check(start.get('source') == 'sysgenid',
		  'origin: library source is sysgenid (got %s)'
		  % start.get('source'))
	mod = origin.one('module')
	if mod:
		print('     module: mode %s, GUID page %s, guid_page=%s'
		      % (mod['mode'], mod['guid_page'], mod['param']))
	rf, why = start.get('race_free', '?'), start.get('race_free_why', '')
	if mode == 'race-free':
		chk.check(rf == '1',
			  'origin: library reports the race-free path in use '
			  '(race_free=%s%s)' % (rf, ' ' + why if why else ''))
	else:
		chk.check(rf == '0',
			  'origin: library reports the counter-only path '
			  '(race_free=%s%s)' % (rf, ' ' + why if why else ''))
	if mode == 'race-free':
		chk.check(mod is not None and mod['guid_page'] == 'offered',
			  'origin: module offers the GUID page (%s)'
			  % (mod or {}).get('guid_page'))
	else:
		chk.check(mod is not None and
			  mod['guid_page'].startswith('not offered'),
			  'origin: module does not offer the GUID page (%s)'
			  % (mod or {}).get('guid_page'))
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
	return gen0, sgid0


def check_clone(c, f, gen0, mode, want_tokens, chk):
	n = c.name
	chk.check(c.one('done') is not None, '%s: app finished' % n)
	chk.check(not c.all('error') and not c.all('begin-error'),
		  '%s: no errors%s' % (n, ''.join(
			  ' [%s]' % ' '.join('%s=%s' % kv for kv in e.items())
			  for e in c.all('error') + c.all('begin-error'))[:300]))
	chk.check(f['gens'] in ([f['new_gen']], [gen0, f['new_gen']]),
		  '%s: combined generation %d -> %d, one step (seen %s)'
		  % (n, gen0, f['new_gen'], f['gens']))
	chk.check(f['sgids'] == [f['new_sgid']],
		  '%s: sysgenid counter %d -> %d, one step (seen %s)'
		  % (n, f['new_sgid'] - 1, f['new_sgid'], f['sgids']))
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
		  '%s: in-flight txn (gen %d) failed to commit' % (n, gen0))
	chk.check(f['resume'] is not None,
		  '%s: guest saw the resume (RTC jump %s s)'
		  % (n, f['resume']['jump'] if f['resume'] else '-'))
	bad = kernel_trouble(c)
	chk.check(not bad, '%s: no kernel warning%s'
		  % (n, (': ' + bad[0].strip()) if bad else ''))
	if mode == 'race-free':
		chk.check(not f['window'],
			  '%s: %d token(s) committed under the old generation '
			  'after the resume (want 0)' % (n, len(f['window'])))


def check_cross(clones, figs, cross, mode, want_tokens, chk):
	"""The comparisons over every pair of clones."""
	npairs = len(clones) * (len(clones) - 1) // 2
	for field, label, protected in STREAMS:
		pairs, distinct = cross[field]['all']
		if protected and mode == 'race-free':
			chk.check(pairs == 0,
				  '%s: %d token(s) repeated across the %d pairs '
				  'of clones, race window included (want 0)'
				  % (label, pairs, npairs))
		elif protected:
			npairs_new, _ = cross[field]['new']
			chk.check(npairs_new == 0,
				  '%s: %d token(s) under the new generation '
				  'repeated across the %d pairs of clones '
				  '(want 0)' % (label, npairs_new, npairs))
	# The control repeats, and the comparison above must see it.
	ctl_sets = [{t['ctl'] for t in f['rounds_after']} for f in figs]
	least = min((len(a & b) for a, b in
		     itertools.combinations(ctl_sets, 2)), default=0)
	chk.check(least >= want_tokens,
		  'control RNG: every pair of clones repeats at least %d '
		  'tokens (want >= %d; %d repeated in all)'
		  % (least, want_tokens, cross['ctl']['all'][0]))
	by_seq = [{int(t['seq']): t['ctl'] for t in f['rounds_after']}
		  for f in figs]
	diff = sum(1 for a, b in itertools.combinations(by_seq, 2)
		   for s in set(a) & set(b) if a[s] != b[s])
	chk.check(diff == 0, 'control RNG: same round, same token in every '
		  'clone (%d differ)' % diff)
	if mode == 'counter-only':
		with_window = [c.name for c, f in zip(clones, figs)
			       if f['window']]
		chk.check(with_window != [],
			  'counter-only: the race window is visible: %d of %d '
			  'clones committed under the old generation after the '
			  'resume (want >= 1)' % (len(with_window), len(clones)))
		pairs, distinct = cross['lib']['window']
		chk.check(pairs > 0,
			  'counter-only: race-window tokens repeated across '
			  'clones: %d (%d distinct; want >= 1)'
			  % (pairs, distinct))


def check_all(origin, clones, mode, want_tokens, chk, prestop=None):
	"""Every assertion of the test; returns (per-clone figures, cross).
	prestop: for the OpenSSL program streams, if they ran (see
	prestop_counts)."""
	base = check_origin(origin, mode, chk)
	if base is None:
		return None, None
	gen0, sgid0 = base
	if prestop is not None:
		check = origin.one('openssl-check')
		chk.check(check is not None and check['rc'] == '0',
			  'origin: vmgenid-openssl-check says the provider is '
			  'wired (rc=%s)' % (check or {}).get('rc'))
	figs = []
	for c in clones:
		f = analyse_clone(c, gen0, sgid0)
		figs.append(f)
		check_clone(c, f, gen0, mode, want_tokens, chk)
		if prestop is not None:
			errs = c.all('prov-err') + c.all('plain-err')
			chk.check(not errs, '%s: the OpenSSL programs ran '
				  'without an error%s' % (c.name, ' (%d lines)'
							  % len(errs)
							  if errs else ''))
	cross = cross_figures(figs)
	if len(clones) >= 2:
		check_cross(clones, figs, cross, mode, want_tokens, chk)
		if prestop is not None:
			for field, pr in check_openssl(clones, prestop, mode,
						       chk).items():
				cross[field] = {'all': pr}
	return figs, cross


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
	for a, b in itertools.combinations(clones, 2):
		lib_a = {int(t['seq']): t['lib'] for t in a.tokens()}
		lib_b = {int(t['seq']): t['lib'] for t in b.tokens()}
		common = sorted(set(lib_a) & set(lib_b))
		chk.check(len(common) >= want_tokens and
			  all(lib_a[s] == lib_b[s] for s in common),
			  'without a new generation ID %s and %s emit the same '
			  'libvmgenid tokens (%d rounds compared)'
			  % (a.name, b.name, len(common)))


def side_by_side(origin, clones, rows, brief=False):
	"""A table a person can read: two clones' tokens round by round
	(brief: without the rounds before the save)."""
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
		mark = '*' if kv['cres'] == '1' and int(kv['gen']) == gen0 \
			else ' '
		return 'g%s%s %s %s' % (kv['gen'], mark, kv['lib'],
					 kv['ossl'][:8])

	print()
	if not brief:
		print('Before the save (one guest): protected and control RNG '
		      'agree,')
		print('they share the seed and nothing has happened yet.')
		print('  round  gen  libvmgenid       openssl   control')
		for t in otoks[-3:]:
			print('  %5s  g%s   %s %s  %s' %
			      (t['seq'], t['gen'], t['lib'], t['ossl'][:8],
			       t['ctl']))
		print()
	print('After the restore: two clones of that guest, round by round.')
	print('  gN = combined generation; * = committed after the guest had '
	      'resumed')
	print('  but under the old generation (race window)')
	print('         %-29s  %-29s' % (a.name, b.name))
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


def ms(v):
	return '%.1f' % v if v is not None else 'n/a'


def report(mode, origin, clones, figs, cross):
	start = origin.one('start') or {}
	print('Figures, %s mode, %d clones (race_free=%s; times in ms of '
	      'guest time, CLOCK_MONOTONIC, from the resume):'
	      % (mode, len(clones), start.get('race_free', '?')))
	print('  %-8s %8s %8s %5s %11s %11s %13s' %
	      ('clone', 'old-gen', 'aborted', 'late', 'callbacks',
	       'user space', 'first call'))
	print('  %-8s %8s %8s %5s %11s %11s %13s' %
	      ('', 'commits', '', '', 'done', 'ran again', '-> callbacks'))
	for c, f in zip(clones, figs):
		print('  %-8s %8d %8d %5d %11s %11s %13s' %
		      (c.name, len(f['window']), len(f['aborts']),
		       len(f['late']), ms(f['resume_to_cb_ms']),
		       ms(f['resume_detect_ms']), ms(f['begin_to_cb_ms'])))
	print('  old-gen commits: committed after the resume under the old '
	      'generation (the race')
	print('  window); late: committed before the save, printed after it;'
	      ' user space ran again:')
	print('  the resume thread\'s first read after it; first call: the '
	      'first library call')
	print('  after the resume that leaves the fast path.')
	n = len(clones)
	print('Repeated tokens across the %d pairs of %d clones (pairs, '
	      'distinct tokens):' % (n * (n - 1) // 2, n))
	print('  %-22s %16s %16s %16s' % ('stream', 'after the resume',
					  'race window', 'new generation'))
	for field, label, _ in STREAMS:
		x = cross[field]
		print('  %-22s %16s %16s %16s' %
		      (label, '%d (%d)' % x['all'], '%d (%d)' % x['window'],
		       '%d (%d)' % x['new']))
	for field, label, _ in OSSL_PROGS:
		if field in cross:
			print('  %-26s %12s' % (label, '%d (%d)'
						 % cross[field]['all']))


def figures_json(mode, origin, clones, figs, cross):
	start = origin.one('start') or {}
	return {
		'mode': mode,
		'race_free': start.get('race_free'),
		'race_free_why': start.get('race_free_why'),
		'module': origin.one('module'),
		'clones': [{
			'name': c.name,
			'old_gen_commits': len(f['window']),
			'aborted': len(f['aborts']),
			'late': len(f['late']),
			'resume_to_callbacks_ms': f['resume_to_cb_ms'],
			'resume_to_first_new_ms': f['resume_to_first_new_ms'],
			'resume_detect_ms': f['resume_detect_ms'],
			'begin_to_callbacks_ms': f['begin_to_cb_ms'],
		} for c, f in zip(clones, figs)],
		'repeated': {field: {k: list(v) for k, v in x.items()}
			     for field, x in cross.items()},
	}


def analyse(logs, args, workdir=None, prestop=None):
	"""Check and report; logs are the origin then the clones."""
	chk = Checker(args.brief)
	origin, clones = logs[0], logs[1:]
	if args.fixed_guid:
		check_fixed_guid(origin, clones, args.tokens, chk)
		vmctl.log('%d checks passed, %d failed'
			  % (len(chk.passes), len(chk.failures)))
		return not chk.failures
	figs, cross = check_all(origin, clones, args.mode, args.tokens, chk,
				prestop)
	if figs and args.show and len(clones) >= 2:
		side_by_side(origin, clones, args.rows, args.brief)
	if figs:
		report(args.mode, origin, clones, figs, cross)
		if workdir:
			with open(os.path.join(workdir, 'figures.json'),
				  'w') as f:
				json.dump(figures_json(args.mode, origin,
						       clones, figs, cross),
					  f, indent=1)
	vmctl.log('%s mode, %d clones: %d checks passed, %d failed'
		  % (args.mode, len(clones), len(chk.passes),
		     len(chk.failures)))
	return not chk.failures


def analyse_saved(logdir, args):
	"""Re-check the serial logs a previous run left in logdir."""
	with open(os.path.join(logdir, 'run.json')) as f:
		saved = json.load(f)
	args.mode = saved['mode']
	args.tokens = saved['tokens']
	args.fixed_guid = saved.get('fixed_guid')
	logs = []
	for name in ['origin'] + saved['clones']:
		with open(os.path.join(logdir, name + '.log'), 'rb') as f:
			logs.append(Log(name, f.read().decode('utf-8',
							      'replace')))
	return 0 if analyse(logs, args, logdir, saved.get('prestop')) else 1


def fetch_kernel(cache, kind):
	"""The harness's kernel for kind (generic, cloud, 6.12), where it can
	choose; the one kernel it has otherwise."""
	if 'name' in inspect.signature(vmctl.fetch).parameters:
		return vmctl.fetch(cache, name=kind)
	if kind not in (None, 'generic'):
		raise vmctl.Skip('this vmctl.py cannot boot the %s kernel'
				 % kind)
	return vmctl.fetch(cache)


def load_module(vm, ko, mode):
	"""insmod from the guest's shell, with the mode's parameter."""
	params = MODE_PARAMS[mode]
	name = os.path.basename(ko)
	rc = vm.shell('insmod /lib/modules/%s %s' % (name, params), 60)
	if rc != 0:
		raise vmctl.HarnessError('insmod %s %s failed (rc=%d):\n%s'
					 % (name, params, rc,
					    vm.read_log()[-1500:]))
	# One line the host parses: how the module runs (sysgenid(4)).
	vm.shell('echo "CLONE module mode=$(cat %s/mode 2>/dev/null || '
		 'echo unknown) guid_page=\\"$(cat %s/guid_page 2>/dev/null '
		 '|| echo unknown)\\" param=$(cat /sys/module/sysgenid/'
		 'parameters/guid_page 2>/dev/null || echo none)"'
		 % (SYSFS, SYSFS), 60)


def main(argv=None):
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--app', help='static clone_app')
	ap.add_argument('--logs', metavar='DIR',
			help='only re-check the serial logs of an earlier run')
	ap.add_argument('--driver', default=os.path.join(HERE, '..', '..', '..',
							 'driver'),
			help='module source to build (default: driver/)')
	ap.add_argument('--cache', default=vmctl.default_cache())
	ap.add_argument('--workdir', default=os.path.join(os.getcwd(),
							  'vm-clone'))
	ap.add_argument('--kernel',
			help='guest kernel: generic, cloud or 6.12 (default '
			     '$VMCTL_KERNEL, else generic)')
	ap.add_argument('--mode', choices=MODES, default='race-free',
			help='race-free (the module as loaded by default) or '
			     'counter-only (guid_page=0 sci_path=0, the '
			     'control)')
	ap.add_argument('--clones', type=int, default=2,
			help='clones restored from the one saved state')
	# On 2 cores under TCG, one at a time stretches the guests' resume
	# path the least, and no batch size was reliably quicker (8 clones:
	# 23-29 s; all at once 47 s); see README.md.
	ap.add_argument('--batch', type=int, default=1,
			help='clones restored at the same time (default 1; '
			     '0: all); each batch runs to its end before the '
			     'next is restored')
	ap.add_argument('--tokens', type=int, default=50,
			help='tokens each clone emits under the new generation')
	ap.add_argument('--before', type=int, default=20,
			help='tokens the guest emits before the save')
	ap.add_argument('--period-ms', type=int, default=15)
	# The same priority in both modes. Without it, on an idle host the
	# guest kernel's ACPI work often ran before the app's first round
	# after the resume, and the counter-only control saw no window.
	ap.add_argument('--fifo', type=int, default=10, metavar='PRIO',
			help='SCHED_FIFO priority of clone_app, so its rounds '
			     'run while the guest kernel handles the '
			     'notification (default 10; 0: normal)')
	ap.add_argument('--fixed-guid', metavar='UUID',
			help='negative run: restore with this fixed generation '
			     'ID and expect no reseed and duplicate tokens')
	ap.add_argument('--openssl-prog', metavar='PROG',
			help='an OpenSSL program linked to libcrypto only '
			     '(tests/provider/rand_tokens.c) to run with and '
			     'without the provider')
	ap.add_argument('--provider', metavar='SO',
			help='the libvmgenid OpenSSL provider module')
	ap.add_argument('--provider-check', metavar='PROG',
			help='vmgenid-openssl-check, run once in the guest')
	ap.add_argument('--provider-conf', metavar='TEMPLATE',
			default=os.path.join(HERE, '..', '..', '..', 'provider',
					     'vmgenid-provider.cnf.in'),
			help='the provider configuration template')
	ap.add_argument('--append', default='',
			help='more kernel command line (e.g. loglevel=6 to see '
			     'the kernel reseed line)')
	ap.add_argument('--show', action='store_true',
			help='print the first two clones side by side')
	ap.add_argument('--rows', type=int, default=16)
	ap.add_argument('--brief', action='store_true',
			help='print failed checks only, then the figures')
	ap.add_argument('-v', '--verbose', action='store_true',
			help='print the serial logs')
	args = ap.parse_args(argv)
	if args.logs:
		return analyse_saved(args.logs, args)
	if not args.app:
		ap.error('--app is required')
	if args.clones < 1:
		ap.error('--clones must be at least 1')
	if bool(args.openssl_prog) != bool(args.provider) or \
	   bool(args.provider) != bool(args.provider_check):
		ap.error('--openssl-prog, --provider and --provider-check go '
			 'together')
	return vmctl.run_guarded(run, args)


def provider_files(args, work):
	"""(src, dest) pairs for the initramfs: the provider, the libraries
	it needs that the programs do not bring, its configuration."""
	conf = os.path.join(work, 'vmgenid-openssl.cnf')
	with open(args.provider_conf) as f:
		text = f.read()
	with open(conf, 'w') as f:
		f.write(text.replace('@HEADER@', 'openssl_conf = openssl_init')
			.replace('@MODULE@', GUEST_PROVIDER))
	files = [(args.provider, GUEST_PROVIDER), (conf, GUEST_CONF)]
	for lib in vmctl._ldd_deps(args.provider):
		if re.match(r'/(usr/)?lib(64)?/', lib):
			files.append((lib, lib))
		else:	# the build tree's libvmgenid
			files.append((lib, GUEST_LIBDIR + '/' +
				      os.path.basename(lib)))
	return files


def start_openssl_progs(vm, args):
	"""The check program, then both OpenSSL programs in the background,
	one token every --period-ms into a file in /tmp each."""
	check = os.path.basename(args.provider_check)
	vm.shell('OPENSSL_CONF=%s /tests/%s; echo "CLONE openssl-check rc=$?"'
		 % (GUEST_CONF, check), 60)
	prog = os.path.basename(args.openssl_prog)
	for field, _, env in OSSL_PROGS:
		rc = vm.shell('%s/tests/%s -n 0 -i %d >/tmp/%s.tok '
			      '2>/tmp/%s.err & echo $! >/tmp/%s.pid'
			      % (env, prog, args.period_ms, field, field,
				 field), 60)
		if rc != 0:
			raise vmctl.HarnessError('%s: cannot start %s' %
						 (vm.name, prog))


def collect_openssl_progs(vm):
	"""Stop the OpenSSL programs; their tokens to the console."""
	vm.shell('for f in %s; do kill $(cat /tmp/$f.pid); '
		 'sed "s/^/CLONE $f tok=/" /tmp/$f.tok; '
		 'sed "s/^/CLONE $f-err /" /tmp/$f.err; done'
		 % ' '.join(f for f, _, _ in OSSL_PROGS), 120)


def run_clones(origin, state, names, args, vms):
	"""Restore names from state in batches, appending them to vms; each
	batch runs to its end before the next starts."""
	batch = args.batch if args.batch > 0 else len(names)
	for i in range(0, len(names), batch):
		group = names[i:i + batch]
		with vmctl.phase('restore %s' % ' '.join(group)):
			clones = [origin.restore_from(state, n) for n in group]
			vms += clones
			for c in clones:
				c.start()
			for c in clones:
				c.resume()
		with vmctl.phase('run %s' % ' '.join(group)):
			if args.fixed_guid:
				# nothing steps, so the app never finishes:
				# let it run as many rounds as it would have
				last = int(re.findall(r'^CLONE tok seq=(\d+) ',
						      origin.read_log(),
						      re.M)[-1])
				for c in clones:
					c.wait_for(r'^CLONE tok seq=%d '
						   % (last + args.tokens + 1),
						   300)
			else:
				for c in clones:
					finish_clone(c, args)
		for c in clones:
			c.kill()


def finish_clone(c, args):
	"""Wait for the app to end (done, or exit on an error), collect the
	OpenSSL programs' tokens, let /init report kernel warnings. A clone
	that hangs is left to the checks, which then say what is missing."""
	try:
		# the app is the shell loop's command number shell_n
		c.wait_for(r'^(CLONE done |vmctl: done %d rc=)' % c.shell_n,
			   120)
		if args.provider:
			collect_openssl_progs(c)
		c.send('exit')
		c.wait_for('^' + vmctl.END_MARKER, 60)
	except vmctl.HarnessError as e:
		vmctl.log(str(e).splitlines()[0])


def run(args):
	cache = os.path.abspath(args.cache)
	work = os.path.abspath(args.workdir)
	os.makedirs(work, exist_ok=True)
	# the negative run has no use for the OpenSSL programs
	if args.fixed_guid:
		args.provider = None
	t_start = time.monotonic()
	vmctl.qemu_binary()
	with vmctl.phase('fetch'):
		kernel = fetch_kernel(cache, args.kernel)
	with vmctl.phase('build-module'):
		kos = vmctl.build_module(kernel, os.path.abspath(args.driver),
					 os.path.join(work, 'module'))
	progs, files = [args.app], []
	if args.provider:
		progs += [args.openssl_prog, args.provider_check]
		files = provider_files(args, work)
	with vmctl.phase('initramfs'):
		initrd = vmctl.build_initramfs(
			kernel, os.path.join(work, 'initramfs.cpio.gz'),
			modules=kos, progs=progs, files=files)
	accel = vmctl.choose_accel(kernel, cache, work)
	vmctl.log('accelerator: %s; kernel %s; %s mode, %d clones, %s'
		  % (accel, kernel.abi, args.mode, args.clones,
		     'all at once' if args.batch <= 0 or
		     args.batch >= args.clones else '%d at a time'
		     % args.batch))
	names = ['clone%d' % i for i in range(1, args.clones + 1)]
	runinfo = {'mode': args.mode, 'tokens': args.tokens, 'clones': names,
		 'fixed_guid': args.fixed_guid, 'kernel': kernel.abi}
	with open(os.path.join(work, 'run.json'), 'w') as f:
		json.dump(runinfo, f)
	# The module is loaded from the guest's shell, so that the mode can
	# set its parameter.
	env = {'VMCTL_SHELL': '1'}
	origin = vmctl.VM(kernel, initrd, work, 'origin', env, accel,
			  args.append, guid=args.fixed_guid or 'auto')
	vms = [origin]
	state = os.path.join(work, 'state.bin')
	ok = False
	try:
		with vmctl.phase('boot to /init'):
			origin.start()
			origin.wait_for('^vmctl: shell', vmctl.TCG_BOOT_TIMEOUT)
		ko = [k for k in kos if os.path.basename(k) == 'sysgenid.ko']
		if not ko:
			raise vmctl.HarnessError('no sysgenid.ko in %s' % kos)
		load_module(origin, ko[0], args.mode)
		if args.provider:
			start_openssl_progs(origin, args)
		with vmctl.phase('clone_app: %d tokens' % args.before):
			origin.send('/tests/%s --period-ms %d --after %d --fifo %d'
				    % (os.path.basename(args.app),
				       args.period_ms, args.tokens, args.fifo))
			# the shell loop counts it as a command too
			origin.shell_n += 1
			m = origin.wait_for(r'^CLONE (start|error)', 120)
			if m.group(1) == 'error':
				raise vmctl.HarnessError(
					'clone_app failed:\n' +
					origin.read_log()[-1500:])
			origin.wait_for(r'^CLONE tok seq=%d ' % args.before, 120)
		with vmctl.phase('save'):
			origin.save(state)
		saved = time.monotonic()
		vmctl.log('saved state: %.1f MB'
			  % (os.path.getsize(state) / 1e6))
		# keep the VM stopped long enough for the RTC to show it
		time.sleep(max(0.0, saved + MIN_STOPPED_S - time.monotonic()))
		with vmctl.phase('%d clones' % args.clones):
			run_clones(origin, state, names, args, vms)
		logs = [Log(v.name, v.read_log()) for v in vms]
		prestop = None
		if args.provider and not args.fixed_guid:
			with open(state, 'rb') as f:
				prestop = prestop_counts(f.read(), logs[1:])
			runinfo['prestop'] = prestop
			with open(os.path.join(work, 'run.json'), 'w') as f:
				json.dump(runinfo, f)
		ok = analyse(logs, args, work, prestop)
		vmctl.log('total %.1f s' % (time.monotonic() - t_start))
	finally:
		if not ok or args.verbose:
			for v in vms:
				vmctl.dump_log(v)
		for v in vms:
			v.kill()
	if ok:
		# ~90 MB; kept after a failure, to look at
		os.unlink(state)
	return 0 if ok else 1


if __name__ == '__main__':
	sys.exit(main())
