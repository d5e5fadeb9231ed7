# SPDX-License-Identifier: MIT
"""Clones of one saved system and what they emit after the resume.

The saved guest's disk (a qcow2 over the run's raw disk) is frozen as the
saved disk; before each clone a fresh overlay of it takes the same path,
so every clone runs with the same command line, one after the other. Right
after each resume a real client on the host (`openssl s_client`) makes a
few TLS handshakes with each nginx and records the ServerHello random;
the guest's token services go on printing. STREAMS says what each stream
is expected to do across clones.
"""

import collections
import os
import re
import select
import subprocess
import time

from base_image import vmctl

# name -> (what, expectation): 'distinct' must have 0 values repeated
# across clones, 'repeats' (a control) must repeat, 'report' is reported
# only (a stream that is not covered yet: turn it into 'distinct' when the
# work that covers it lands).
STREAMS = collections.OrderedDict([
	('nginx', ('nginx, provider on: ServerHello random', 'distinct')),
	('nginx-control', ('nginx, provider off: ServerHello random',
			   'repeats')),
	('py-ssl', ('Python ssl.RAND_bytes', 'distinct')),
	# python3-vmgenid's opt-in, VMGENID_RESEED_RANDOM=1
	('py-random', ('Python random.getrandbits, VMGENID_RESEED_RANDOM=1',
		       'distinct')),
	('py-control-random', ('Python random.getrandbits, no opt-in '
			       '(control)', 'repeats')),
	# the kernel RNG: the module's SCI path reseeds it before the
	# interrupted task returns to user space (DESIGN section 4; the
	# control, the path off, is tests/vm/kernel_rng's)
	('py-urandom', ('Python os.urandom', 'distinct')),
	# Node.js with the system's openssl.cnf (the .include sets
	# nodejs_conf): the provider
	('node-bytes', ('Node.js crypto.randomBytes', 'distinct')),
	('node-uuid-nocache', ('Node.js crypto.randomUUID({disableEntropy'
			       'Cache: true})', 'distinct')),
	('node-control-bytes', ('Node.js crypto.randomBytes, '
				'--openssl-config without the .include '
				'(control)', 'repeats')),
	('node-control-uuid-nocache', ('Node.js crypto.randomUUID({disable'
				       'EntropyCache: true}), without the '
				       '.include (control)', 'repeats')),
	# outside OpenSSL: the preload (NODE_OPTIONS=--require=...) covers
	# them; without it they are reported
	('node-uuid', ('Node.js crypto.randomUUID() (cached)', 'report')),
	('node-math', ('Node.js Math.random', 'report')),
	('node-preload-uuid', ('Node.js crypto.randomUUID() (cached), '
			       'with the preload', 'distinct')),
	('node-preload-math', ('Node.js Math.random, with the preload',
			       'distinct')),
])
TOKEN_RX = re.compile(r'^TOK (\S+) (\d+) (\S+)\r?$', re.M)
HANDSHAKES = 3		# per server per clone, right after the resume
TOKENS = 20		# per stream per clone: 2 s of each service's output
# the ServerHello as `openssl s_client -msg` prints it
HELLO_RX = re.compile(r'^<<< \S+ [\d.]+, Handshake \[length [0-9a-f]+\], '
		      r'ServerHello\n((?:    [0-9a-f ]+\n)+)', re.M)


def server_random(port, timeout=60):
	"""One TLS handshake with 127.0.0.1:port through `openssl s_client`;
	the server's random (hex), or None and why. s_client quits on EOF
	from its stdin before the server has answered: its stdin stays open
	until the handshake is done (the summary's "Verify return code")."""
	proc = subprocess.Popen(
		['openssl', 's_client', '-connect', '127.0.0.1:%d' % port,
		 '-msg', '-no_ticket'], stdin=subprocess.PIPE,
		stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
	out = b''
	deadline = time.monotonic() + timeout
	try:
		while b'Verify return code' not in out:
			left = deadline - time.monotonic()
			if left <= 0:
				return None, 'timed out'
			ready, _, _ = select.select([proc.stdout], [], [], left)
			if ready:
				data = os.read(proc.stdout.fileno(), 65536)
				if not data:
					break
				out += data
		proc.stdin.close()
		out += proc.stdout.read()
		proc.wait(timeout=timeout)
	except subprocess.TimeoutExpired:
		return None, 'timed out'
	finally:
		if proc.poll() is None:
			proc.kill()
			proc.wait()
	text = out.decode('utf-8', 'replace')
	m = HELLO_RX.search(text)
	if not m:
		return None, text[-300:]
	data = bytes.fromhex(''.join(m.group(1).split()))
	# type (1), length (3), legacy version (2), random (32)
	return data[6:38].hex(), None


def freeze_disk(disk):
	"""After the save: keep the disk as it was, as the clones' base."""
	saved = disk + '.saved'
	os.rename(disk, saved)
	return saved


def fresh_overlay(disk, backing, fmt='qcow2'):
	if os.path.exists(disk):
		os.unlink(disk)
	vmctl.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', backing,
		   '-F', fmt, disk])


class CloneResult:
	def __init__(self, name):
		self.name = name
		self.values = collections.defaultdict(list)	# stream -> values
		self.errors = []
		self.hook = False
		self.log = ''


# the token services' stream prefixes (guest/*.service), longest first
SERVICES = ('py-control', 'py', 'node-control', 'node-preload', 'node')
# ticks a service may have drawn before the save that reach the console
# only after the resume (the guest's serial backlog): measured, a whole
# tick of the Node.js service absent from the saved log, printed by
# every clone with the same values
BACKLOG_TICKS = 1


def service_of(stream):
	return next((p for p in SERVICES if stream.startswith(p + '-')),
		    stream)


def last_seqs(log):
	"""{stream: the last token number drawn before the save}: from the
	saved guest's log, the highest number any stream of the same
	service printed (its lines of one tick go out in one write that
	the save may cut) plus BACKLOG_TICKS, so that clones count only
	what their services drew after the resume."""
	last = {}
	for stream, seq, _ in TOKEN_RX.findall(log):
		svc = service_of(stream)
		last[svc] = max(last.get(svc, 0), int(seq))
	return {stream: last[service_of(stream)] + BACKLOG_TICKS
		for stream, _, _ in TOKEN_RX.findall(log)}


def run_clone(vm, state, saved_disk, name, timeout, saved_seqs,
	      need_hook=True):
	"""Restore one clone, shake hands, collect the first TOKENS tokens
	of each stream drawn after the save (and wait for the hook's line
	if need_hook); kill it."""
	res = CloneResult(name)
	fresh_overlay(vm.disk, saved_disk)
	clone = vm.restore_from(state, name)
	try:
		clone.start()
		clone.resume(timeout)
		for port, stream in zip(clone.ports, ('nginx', 'nginx-control')):
			for _ in range(HANDSHAKES):
				val, err = server_random(port)
				if val:
					res.values[stream].append(val)
				else:
					res.errors.append('%s: %s' % (stream, err))
		deadline = time.monotonic() + timeout
		while True:
			toks = collections.defaultdict(list)
			for stream, seq, val in TOKEN_RX.findall(clone.read_log()):
				if int(seq) > saved_seqs.get(stream, 0):
					toks[stream].append(val)
			want = [s for s in STREAMS if not s.startswith('nginx')]
			if all(len(toks[s]) >= TOKENS for s in want) and \
			   ('SYSIMG: hook ran' in clone.logtext or
			    not need_hook):
				break
			if time.monotonic() > deadline or not clone.alive():
				res.errors.append('tokens or hook missing: %s, '
						  'hook %s' % (
							  {s: len(toks[s]) for s in want},
							  'SYSIMG: hook ran' in clone.logtext))
				break
			time.sleep(0.2)
		for s, vals in toks.items():
			res.values[s] += vals[:TOKENS]
		res.hook = 'SYSIMG: hook ran' in clone.logtext
		res.log = clone.logtext
	finally:
		clone.kill()
	return res


def compare(results):
	"""{stream: (clones with values, values, distinct values seen in 2+
	clones, values that another clone also emitted)}"""
	out = collections.OrderedDict()
	for stream in STREAMS:
		seen = collections.defaultdict(set)
		n = 0
		for r in results:
			for v in r.values.get(stream, []):
				seen[v].add(r.name)
				n += 1
		repeated = sum(1 for v, who in seen.items() if len(who) > 1)
		shared = sum(1 for r in results for v in r.values.get(stream, [])
			     if len(seen[v]) > 1)
		clones = sum(1 for r in results if r.values.get(stream))
		out[stream] = (clones, n, repeated, shared)
	return out


def verdicts(table, nclones, expect=None):
	"""Lines for the report and the failures, by STREAMS (or expect,
	which overrides an expectation per stream)."""
	lines, failures = [], []
	for stream, (clones, n, repeated, shared) in table.items():
		what, want = STREAMS[stream]
		want = (expect or {}).get(stream, want)
		ok = True
		if clones < nclones:
			ok = want == 'report'
			why = 'values from %d of %d clones' % (clones, nclones)
		elif want == 'distinct':
			ok = repeated == 0
			why = 'want 0 repeated'
		elif want == 'repeats':
			ok = repeated > 0
			why = 'control: want repeats'
		else:
			why = 'reported'
		lines.append('%-18s %4d values, %4d also in another clone '
			     '(%3d distinct)  [%s: %s] %s' %
			     (stream, n, shared, repeated, want,
			      'ok' if ok else 'FAIL', what))
		if not ok:
			failures.append('%s: %d of %d values repeated (%s)'
					% (stream, repeated, n, why))
	return lines, failures
