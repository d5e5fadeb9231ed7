#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Host-side checks of krng_window_check.py's verdicts, without QEMU: a
value drawn after the resume that another clone also drew must fail the sci
run, a control without one must fail, and the counter must move once."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import krng_window_check as kwc  # noqa: E402

HEAD = '''KRNG drawer sleep pre=10 last_old=1000000000 first_new=1100000000 \
kept=2 straddle=0\r
KRNG v sleep P 1100000000 %s\r
KRNG v sleep P 1101000000 %s\r
KRNG drawer busy pre=99 last_old=1000000500 first_new=1100000000 kept=2 \
straddle=1\r
KRNG v busy S 1000000400 %s\r
KRNG v busy P 1100000000 %s\r
KRNG resume at=1000000500\r
KRNG generation %d\r
KRNG sci-state active\r
KRNG sci scis=1 changes=1 sci_at=1000100500 handled_at=1001000500\r
KRNG reseed at=1000900000 line=sysgenid: VM fork: generation 1, kernel RNG \
reseeded by the module (SCI path) in 90 us\r
KRNG kernel-fork-lines 1\r
KRNG already-handled 1\r
'''


class Kernel:
	def __init__(self, name):
		self.name = name


def clone(i, shared=None, straddle='ffffffffffffffff', gen=1):
	vals = ['%016x' % (i * 16 + k) for k in range(3)]
	if shared:
		vals[0] = shared
	c = kwc.parse_clone(HEAD % (vals[0], vals[1], straddle, vals[2], gen))
	c['name'] = 'clone%d' % i
	return c


class Verdicts(unittest.TestCase):
	def test_parse(self):
		c = clone(1)
		self.assertEqual(c['resume'], 1000000500)
		self.assertEqual(len(c['values']['sleep']), 2)
		self.assertEqual(c['values']['busy'][0][0], 'S')
		self.assertEqual(c['sci'], (1, 1, 1000100500, 1001000500))
		self.assertEqual(c['generation'], 1)

	def test_distinct_passes(self):
		ok, summary = kwc.check(Kernel('generic'), 'sci',
					[clone(i) for i in range(3)], 3)
		self.assertTrue(ok, summary)
		# the straddling draw repeats in all three: counted apart
		self.assertIn('straddling draws repeated 3', summary)

	def test_repeat_fails_sci(self):
		cl = [clone(0, shared='aaaaaaaaaaaaaaaa'),
		      clone(1, shared='aaaaaaaaaaaaaaaa'), clone(2)]
		ok, summary = kwc.check(Kernel('cloud'), 'sci', cl, 3)
		self.assertFalse(ok)
		self.assertIn('sleep: 2 of 6 repeated', summary)
		self.assertEqual(kwc.repeats(cl, 'sleep')[2], 99.9995)

	def test_repeat_reported_smp(self):
		cl = [clone(0, shared='aaaaaaaaaaaaaaaa'),
		      clone(1, shared='aaaaaaaaaaaaaaaa')]
		ok, _ = kwc.check(Kernel('cloud'), 'sci', cl, 2, smp=2)
		self.assertTrue(ok)

	def test_control_must_repeat(self):
		ok, _ = kwc.check(Kernel('cloud'), 'control',
				  [clone(i) for i in range(3)], 3)
		self.assertFalse(ok)
		ok, _ = kwc.check(Kernel('cloud'), 'control',
				  [clone(0, shared='aaaaaaaaaaaaaaaa'),
				   clone(1, shared='aaaaaaaaaaaaaaaa')], 2)
		self.assertTrue(ok)

	def test_two_bumps_fail(self):
		ok, _ = kwc.check(Kernel('generic'), 'sci',
				  [clone(0), clone(1, gen=2)], 2)
		self.assertFalse(ok)

	def test_missing_clone_fails(self):
		ok, _ = kwc.check(Kernel('generic'), 'sci',
				  [clone(0), clone(1)], 3)
		self.assertFalse(ok)


if __name__ == '__main__':
	unittest.main()
