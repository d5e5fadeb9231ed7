#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Host-side checks of kernel_rng_check.py's verdicts, without QEMU: the
comparison of the clones' bytes and the parsing of the probe's lines must
fail when they should."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernel_rng_check as krc  # noqa: E402

LOG = '''vmctl: run kernel_rng_probe after-restore
ok 1 - sysgenid counter moved after the restore
KRNG result mode=module gen0=0 gen1=1 restore=1000000000 seen=1200000000 \
jump=5.1 counter=1100000000 read=1100500000 bytes=%s
KRNG kmsg-offset ns=-66000000
KRNG reseed at=1090000000 line=sysgenid: VM fork: generation 1, kernel RNG \
reseeded by the module (acpi) in 40 us
KRNG sysfs-mode=acpi
'''


class Kernel:
	def __init__(self, name):
		self.name = name


def fig(name, data):
	f = krc.parse_clone(LOG % data)
	f['name'] = name
	return f


class Verdict(unittest.TestCase):
	def test_verdict(self):
		self.assertEqual(krc.verdict(['a', 'b', 'c'])[0], 'distinct')
		self.assertEqual(krc.verdict(['a', 'a', 'a'])[0], 'identical')
		self.assertEqual(krc.verdict(['a', 'a', 'b']),
				 ('mixed', 1, 3))

	def test_parse(self):
		f = krc.parse_clone(LOG % 'ab')
		self.assertEqual(f['bytes'], 'ab')
		self.assertEqual(krc.ms(f['restore'], f['counter']), '100.0')
		self.assertEqual(krc.ms(f['restore'], f['reseed']), '90.0')
		self.assertEqual(f['sysfs_mode'], 'acpi')
		self.assertIsNone(krc.parse_clone('KRNG result error read: EIO'))
		self.assertEqual(krc.ms('0', '5'), '-')
		self.assertEqual(krc.ms('1', 'none'), '-')

	def test_cloud(self):
		k = Kernel('cloud')
		same = [fig('c1', 'aa'), fig('c2', 'aa')]
		diff = [fig('c1', 'aa'), fig('c2', 'bb')]
		self.assertEqual(krc.check(k, 'module', diff, 2), (True,
								   'distinct'))
		self.assertFalse(krc.check(k, 'module', same, 2)[0])
		self.assertTrue(krc.check(k, 'control', same, 2)[0])
		self.assertFalse(krc.check(k, 'control', diff, 2)[0])
		# a clone without a result fails the run
		self.assertFalse(krc.check(k, 'module', diff[:1], 2)[0])

	def test_module_mode_and_counter(self):
		# generic wants the notifier mode: 'acpi' there is a failure
		self.assertFalse(krc.check(Kernel('generic'), 'module',
					   [fig('c1', 'aa'), fig('c2', 'bb')],
					   2)[0])
		still = [fig('c1', 'aa'), fig('c2', 'bb')]
		still[1]['gen1'] = still[1]['gen0']
		self.assertFalse(krc.check(Kernel('cloud'), 'module', still,
					   2)[0])

	def test_generic_control_not_asserted(self):
		k = Kernel('6.12')
		for data in (('aa', 'aa'), ('aa', 'bb')):
			self.assertTrue(krc.check(
				k, 'control', [fig('c1', data[0]),
					       fig('c2', data[1])], 2)[0])


if __name__ == '__main__':
	unittest.main()
