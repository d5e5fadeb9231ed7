# SPDX-License-Identifier: MIT
"""Clones restored from one saved VM, and what must differ between them."""

import re

from .common import END_MARKER, log


def restore_clones(vm, path, names, parallel=True, timeout=120):
	"""Restore one clone per name from a saved file, all at once (they
	load concurrently) or one after the other; return them running."""
	clones = [vm.restore_from(path, n) for n in names]
	if parallel:
		for c in clones:
			c.start()
		for c in clones:
			c.resume(timeout)
	else:
		for c in clones:
			c.start()
			c.resume(timeout)
	return clones


DISTINCT_RX = re.compile(r'^vmctl-distinct: (\S+)\s*$', re.M)


def check_distinct(clones):
	"""Values that guest programs print as 'vmctl-distinct: X' after the
	restore must differ between clones: equal values mean the clones
	shared state that should have been renewed."""
	seen = {}
	ok = True
	for c in clones:
		for val in DISTINCT_RX.findall(c.read_log()):
			if val in seen:
				log('FAIL %s and %s both printed %s' %
				    (seen[val], c.name, val))
				ok = False
			seen[val] = c.name
	if seen:
		log('%d distinct values across %d clones' % (len(seen),
							    len(clones)))
	return ok


def check_channel(clones):
	"""Both directions of the control port in restored clones: a shell
	command sent by the host writes a line back through ttyS1."""
	ok = True
	lines = set()
	for c in clones:
		rc = c.shell('echo "vmctl-ctl $(cat '
			     '/proc/sys/kernel/random/uuid)" >&3', 60)
		line = c.recv_line(30)
		good = rc == 0 and re.fullmatch(r'vmctl-ctl [0-9a-f-]{36}', line)
		log('%s: control port %s: rc=%d %r' %
		    (c.name, 'ok' if good else 'FAIL', rc, line))
		ok &= bool(good) and line not in lines
		lines.add(line)
		c.send('exit')
		c.wait_for('^' + END_MARKER, 60)
	return ok
